--- Host id ranges for the sandboxes root runs: each running sandbox gets 65536 uids and gids of its own, so that
-- its root (and every other id inside) is an unprivileged id on the host that owns nothing there, as
-- systemd-nspawn -U and podman --userns=auto do. Ranges are taken from the span systemd reserves for containers
-- (0x00080000-0x6FFFFFFF), never one that an account, a delegated subordinate range (/etc/subuid, /etc/subgid),
-- a running systemd-nspawn container or another running sandbox uses.
--
-- A range is held by an exclusive lock on /run/lunas/userns/BASE for as long as the lunas process that took it
-- keeps it, and by the sandbox's PID 1 (pid and start time, written in the same file) for as long as the sandbox
-- lives: a sandbox that outlives lunas (die_with_parent = false) still owns its range.
-- @module lunas.idrange
local core = require "lunas.core"
local errors = require "lunas.errors"
local process = require "lunas.process"

errors.register_module()

local M = {}

--- Ids in a range.
M.SIZE = 65536
--- The first base of the span of container ranges (systemd's docs/UIDS-GIDS.md).
M.FIRST = 0x00080000
--- The last base of that span.
M.LAST = 0x6FFF0000
--- Where the locks live.
M.DIR = "/run/lunas/userns"
-- systemd-nspawn --private-users=pick takes a range by a lock file named by its base, here.
local NSPAWN_DIR = "/run/systemd/nspawn-uid"
local SLOTS = (M.LAST - M.FIRST) // M.SIZE + 1
local ATTEMPTS = 100

--- True when this process is root in the initial user namespace: the only case where lunas can give a sandbox
-- a range of host ids (and where a sandbox mapped onto our own ids would be the host's root).
-- @treturn boolean
function M.initial_root()
  if core.ids().euid ~= 0 then return false end
  local f = io.open("/proc/self/uid_map")
  if not f then return false end
  local map = f:read("a")
  f:close()
  return map:match("^%s*0%s+0%s+4294967295%s*$") ~= nil
end

-- The lines of a small file (none when it cannot be read), read at once.
local function read_lines(path)
  local f = io.open(path, "r")
  if not f then return function() return nil end end
  local text = f:read("a") or ""
  f:close()
  return text:gmatch("[^\n]+")
end

-- The ids the machine already gives out, as intervals {first, count}: accounts and groups, and the subordinate
-- ranges delegated to users (their rootless containers use them). Read again at most once a second: a process
-- that starts sandboxes in a loop does not parse four files for each.
local cached_use, cached_at
local function read_ids_in_use()
  local used = {}
  local function add(first, count)
    first, count = tonumber(first), tonumber(count)
    if first and count then used[#used + 1] = { first, count } end
  end
  for line in read_lines("/etc/passwd") do
    local uid, gid = line:match("^[^:]*:[^:]*:(%d+):(%d+):")
    add(uid, 1)
    add(gid, 1)
  end
  for line in read_lines("/etc/group") do add(line:match("^[^:]*:[^:]*:(%d+)"), 1) end
  for _, file in ipairs{ "/etc/subuid", "/etc/subgid" } do
    for line in read_lines(file) do
      local first, count = line:match("^[^:#]+:(%d+):(%d+)")
      add(first, count)
    end
  end
  return used
end

local function ids_in_use()
  local now = core.now()
  if not cached_use or now - cached_at > 1 or now < cached_at then
    cached_use, cached_at = read_ids_in_use(), now
  end
  return cached_use
end

local function overlaps(used, base)
  for _, r in ipairs(used) do
    if r[1] < base + M.SIZE and base < r[1] + r[2] then return true end
  end
  return false
end

-- What a lock file records: "pid start" of the sandbox's first process ("" when nobody recorded yet).
local function read_record(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local record = f:read("a") or ""
  f:close()
  return record
end

-- The sandbox a record names (its PID 1), if it still runs.
local function owner_alive(record)
  local pid, start = record:match("^(%d+) (%d+)")
  return pid ~= nil and process.alive(tonumber(pid), start)
end

local function ensure_dir()
  if core.file_type(M.DIR) == "dir" then return end
  for _, dir in ipairs{ "/run/lunas", M.DIR } do
    local ok, msg, code = core.mkdir(dir, 448)
    if not ok and code ~= "EEXIST" then
      errors.raise{ op = "sandbox", msg = "sandbox: id range: " .. msg, code = code }
    end
  end
end

-- The lock file is still the one we locked (a releaser removes it while holding the lock: whoever waited on
-- the old file must try again).
local function same_file(lock, path)
  local _, held = core.file_type(lock)
  local _, named = core.file_type(path)
  return held ~= nil and held == named
end

-- Tries one base: the lock, on the file that is there now, then nobody alive recorded there. Returns the lock
-- fd or nil. A dead sandbox's file is removed (under its lock) and the base tried once more on a fresh one, so
-- that the record is written through the lock's own descriptor into an empty file: rewriting it through a
-- second one makes the removal cost a third of a millisecond (tmpfs, measured).
local function try_base(base)
  local path = ("%s/%d"):format(M.DIR, base)
  for _ = 1, 2 do
    local lock = errors.check(core.open(path, "a"))
    if not lock:lock("exclusive", { wait = false }) or not same_file(lock, path) then
      lock:close()
      return nil
    end
    local record = read_record(path)
    if record == "" then return lock, path end
    local alive = owner_alive(record)
    if not alive then os.remove(path) end
    lock:close()
    if alive then return nil end
  end
  return nil
end

--- Takes a free range: `{base = first host id, lock = fd, path = lock file}` (close it with `release`).
-- @treturn table
-- @raise a lunas error when no range is free after 100 tries
function M.acquire()
  ensure_dir()
  local used = ids_in_use()
  -- A different walk for every process and moment: concurrent lunas processes rarely try the same base.
  local start = (core.getpid() * 2654435761 + math.floor(core.now() * 1e6)) % SLOTS
  for attempt = 0, ATTEMPTS - 1 do
    local base = M.FIRST + ((start + attempt * 7919) % SLOTS) * M.SIZE
    if not overlaps(used, base) and not io.open(("%s/%d"):format(NSPAWN_DIR, base)) then
      local lock, path = try_base(base)
      if lock then return { base = base, lock = lock, path = path } end
    end
  end
  errors.raise{ op = "sandbox", code = "EBUSY",
    msg = ("sandbox: id range: no free range of %d ids after %d tries"):format(M.SIZE, ATTEMPTS) }
end

--- Records the sandbox that uses the range (its first process, by pid and start time), so the range stays taken
-- while it lives, even after lunas.
-- @tparam table range from acquire
-- @tparam integer pid
function M.record(range, pid)
  local start = process.start_time(pid)
  if start then range.lock:write(("%d %s\n"):format(pid, start)) end
end

--- Gives the range back: the file removed while still locked, then the lock dropped. Idempotent.
-- @tparam table range from acquire
function M.release(range)
  if range.released then return end
  range.released = true
  os.remove(range.path)
  range.lock:close()
end

--- Removes the lock files that nothing holds and that name no running sandbox (left by a lunas that died): what
-- `lunas gc` calls. Returns the bases it freed.
-- @tparam[opt] table opts `{dry_run = true}` only reports
-- @treturn table
function M.gc(opts)
  local freed = {}
  for _, name in ipairs(core.listdir(M.DIR) or {}) do
    local base = tonumber(name)
    local path = M.DIR .. "/" .. name
    local lock = base and core.open(path, "a")
    if lock then
      if lock:lock("exclusive", { wait = false }) and same_file(lock, path) and not owner_alive(read_record(path)) then
        freed[#freed + 1] = base
        if not (opts and opts.dry_run) then os.remove(path) end
      end
      lock:close()
    end
  end
  table.sort(freed)
  return freed
end

return M
