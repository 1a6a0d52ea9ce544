--- The records of running sandboxes under /run/lunas/sandboxes/NAME (root) or $XDG_RUNTIME_DIR/lunas/sandboxes
-- (other users): what `lunas ps`, `lunas top`, `lunas stats` and `lunas events` read, and what `lunas gc`
-- removes when the lunas that ran a sandbox died without removing it.
--
-- A record is a directory holding record.json. Its name is taken before the sandbox is cloned (a directory made
-- under a temporary name with the owner in it, renamed into place: rename(2) onto a non-empty directory fails, so
-- whoever renames first owns the name), then record.json is replaced (written aside, renamed over) once the
-- sandbox's first process exists, and the directory is removed when the sandbox is over, on every path.
-- record.json: {name, owner = {pid, start}, pid, start, created (seconds since the epoch), argv, cgroup =
-- cg:record() or nil, namespaces = {kind = inode}, own = {kind = true: the namespaces the sandbox made}}.
--
-- Starts and exits (with the status) are also appended, one JSON line each, to the events journal next to the
-- records (/run/lunas/events): a record alone cannot tell a watcher how a sandbox ended, since it is gone then.
-- The journal is replaced by a fresh one past EVENTS_MAX bytes (the old one kept as events.old).
-- @module lunas.sandbox_record
local core = require "lunas.core"
local files = require "lunas.files"
local json = require "lunas.json"
local errors = require "lunas.errors"
local process = require "lunas.process"

errors.register_module()

local M = {}

--- Past this size the events journal starts afresh.
M.EVENTS_MAX = 1024 * 1024

--- The directory that holds the records and the events journal for this user: /run/lunas for root,
-- $XDG_RUNTIME_DIR/lunas for others (nil when they have none).
function M.base()
  if core.ids().euid == 0 then return "/run/lunas" end
  local runtime = os.getenv("XDG_RUNTIME_DIR")
  if runtime and runtime:sub(1, 1) == "/" then return runtime .. "/lunas" end
  return nil
end

--- The records' directory (nil without a base).
function M.dir()
  local base = M.base()
  return base and base .. "/sandboxes"
end

--- Is `name` a name a record can have: 1 to 64 characters of letters, digits, '.', '_', '-', not starting with
-- '.' or '-' (a file name that never needs quoting, never hidden, never an option).
function M.valid_name(name)
  return type(name) == "string" and #name >= 1 and #name <= 64 and name:match("^[%w_][%w_.%-]*$") ~= nil
end

local read_text = files.read_text

local function mkdir(path, mode)
  local ok, msg, code = core.mkdir(path, mode)
  if ok or code == "EEXIST" then return true end
  return nil, msg, code
end

-- (a record directory holds record.json and, after a crash in the middle of a write, its temporary file)
local function remove_dir(dir)
  for _, name in ipairs(core.listdir(dir) or {}) do os.remove(dir .. "/" .. name) end
  return core.rmdir(dir)
end

local write_atomic = files.write_atomic

--- Reads one record: the decoded record.json plus `status`: "running" (its owner is alive), "stale" (its owner
-- died without removing it), and `alive` (its first process is still there). nil, message when there is none.
function M.read(name)
  local dir = M.dir()
  if not dir or not M.valid_name(name) then return nil, "no sandbox named " .. tostring(name) end
  local text = read_text(dir .. "/" .. name .. "/record.json")
  if not text then return nil, "no sandbox named " .. name end
  local ok, rec = pcall(json.decode, text)
  if not ok or type(rec) ~= "table" or type(rec.owner) ~= "table" then return nil, "sandbox " .. name .. ": unreadable record" end
  rec.name = name
  local owner_alive = process.alive(rec.owner.pid, rec.owner.start)
  rec.status = owner_alive and "running" or "stale"
  rec.alive = rec.pid ~= nil and process.alive(rec.pid, rec.start) or false
  if owner_alive and not rec.pid then rec.status = "starting" end
  return rec
end

--- The names of every record, sorted.
function M.names()
  local dir = M.dir()
  local names = {}
  for _, name in ipairs(dir and core.listdir(dir) or {}) do
    if M.valid_name(name) then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

--- Every readable record, by name order.
function M.list()
  local out = {}
  for _, name in ipairs(M.names()) do
    local rec = M.read(name)
    if rec then out[#out + 1] = rec end
  end
  return out
end

-- Appends one event line to the journal in base (see the module).
local function append_event(entry, base)
  if not base then return end
  entry.time = entry.time or os.time()
  local path = base .. "/events"
  local f = io.open(path, "a")
  if not f then
    if not mkdir(base, 493) then return end
    f = io.open(path, "a")
    if not f then return end
  end
  -- One write(2) of a line shorter than the buffer: appends of concurrent writers never interleave.
  f:setvbuf("full", 8192)
  f:write(json.encode(entry) .. "\n")
  local size = f:seek("end")
  f:close()
  if size and size > M.EVENTS_MAX then os.rename(path, path .. ".old") end
end

--- Appends one event ({event = "name", ...}; `time` added) to the events journal that lunas events reads. Best
-- effort: a sandbox never fails because its event could not be written.
function M.event(entry)
  if type(entry) ~= "table" or type(entry.event) ~= "string" then
    errors.raise{ op = "sandbox", field = "entry", code = "EINVAL", msg = "sandbox_record.event: {event = name, ...} expected" }
  end
  append_event(entry, M.base())
end

local Record = {}
Record.__index = Record

local function taken(name, existing)
  errors.raise{ op = "sandbox", field = "name", code = "EEXIST",
    msg = ("sandbox: name: a running sandbox is named %s already (pid %s, lunas pid %s)"):format(name,
      tostring(existing.pid or "?"), tostring(existing.owner.pid)) }
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- Takes the name for this process: nil (and nothing recorded) when there is no place for records (an
-- unprivileged user without XDG_RUNTIME_DIR) or it cannot be made there; raises (field "name") when a running
-- sandbox has it. A record left by a lunas that died is replaced.
function M.create(name)
  if not M.valid_name(name) then
    errors.raise{ op = "sandbox", field = "name", code = "EINVAL", msg = ("sandbox: name: bad name %s"):format(tostring(name)) }
  end
  local base = M.base()
  if not base then return nil end
  local dir = base .. "/sandboxes"
  if not mkdir(base, 493) or not mkdir(dir, 493) then return nil end
  local pid = core.getpid()
  local owner = { pid = pid, start = process.start_time(pid) }
  -- (random too: two lunas that are both pid 1 of their own pid namespaces may share /run/lunas)
  local tmp = ("%s/.%s.%d.%s"):format(dir, name, pid, hex(core.random(4)))
  if core.file_type(tmp) then remove_dir(tmp) end
  if not core.mkdir(tmp, 493) then return nil end
  if not write_atomic(tmp .. "/record.json", json.encode{ owner = owner, created = os.time() }) then
    remove_dir(tmp)
    return nil
  end
  local path = dir .. "/" .. name
  for _ = 1, 2 do
    if os.rename(tmp, path) then
      return setmetatable({ name = name, dir = path, base = base, owner = owner }, Record)
    end
    local existing = M.read(name)
    if existing and existing.status ~= "stale" then
      remove_dir(tmp)
      taken(name, existing)
    end
    -- Left by a lunas that died (or half written by one): its cgroup is lunas gc's, the name is free.
    remove_dir(path)
  end
  remove_dir(tmp)
  local existing = M.read(name)
  if existing then taken(name, existing) end
  return nil
end

--- Takes a free name made from `prefix`: PREFIX-PID, or PREFIX-PID-RANDOM when that one runs already (a lunas
-- with the same pid in another pid namespace that shares the records). Returns what create returns.
function M.create_unique(prefix)
  local name = ("%s-%d"):format(prefix, core.getpid())
  for attempt = 1, 8 do
    local ok, rec = pcall(M.create, name)
    if ok then return rec end
    if not (errors.is(rec) and rec.code == "EEXIST") or attempt == 8 then error(rec, 0) end
    name = ("%s-%d-%s"):format(prefix, core.getpid(), hex(core.random(3)))
  end
end

--- Removes the temporary records of owners that are gone.
function M.remove_leftovers()
  local dir = M.dir()
  for _, entry in ipairs(dir and core.listdir(dir) or {}) do
    local pid = tonumber(entry:match("^%..+%.(%d+)%.%x+$"))
    if pid and core.file_type("/proc/" .. pid) ~= "dir" then remove_dir(dir .. "/" .. entry) end
  end
end

--- Removes the record `name` (of another process too: gc).
function M.remove(name)
  local dir = M.dir()
  if not dir or not M.valid_name(name) then return nil end
  local ok, msg, code = remove_dir(dir .. "/" .. name)
  if not ok and code ~= "ENOENT" then return nil, msg, code end
  return true
end

--- Records that no running lunas owns (their owner died): removed unless dry_run, or kept while the sandbox
-- itself still runs (--no-die-with-parent: lunas ps shows it, as stale). Their cgroups are named
-- lunas-PID-RANDOM, which cgroup.gc takes back. Returns {removed = {names}, running = {names kept}}.
function M.gc(opts)
  opts = opts or {}
  if type(opts) ~= "table" then errors.raise{ op = "gc", field = "options", code = "EINVAL", msg = "gc: options table expected" } end
  local dir = M.dir()
  local report = { removed = {}, running = {} }
  if not dir then return report end
  if not opts.dry_run then M.remove_leftovers() end
  for _, name in ipairs(M.names()) do
    local rec = M.read(name)
    if not rec or rec.status == "stale" then
      if rec and rec.alive then
        report.running[#report.running + 1] = name
      else
        report.removed[#report.removed + 1] = name
        if not opts.dry_run then M.remove(name) end
      end
    end
  end
  return report
end

--- An owned record (what create returns).
-- @type Record

--- Completes the record once the sandbox's first process exists: `fields` (pid, start, argv, cgroup,
-- namespaces, own) are written with the owner's, and a "start" event is appended.
function Record:started(fields)
  local rec = { name = self.name, owner = self.owner, created = os.time() }
  for k, v in pairs(fields) do rec[k] = v end
  self.pid = rec.pid
  local ok, err = write_atomic(self.dir .. "/record.json", json.encode(rec))
  if not ok then return nil, err end
  append_event({ event = "start", kind = "sandbox", name = self.name, pid = rec.pid, argv = rec.argv }, self.base)
  return true
end

--- Appends an event about this sandbox (freeze, thaw...).
function Record:event(kind, extra)
  local e = { event = kind, kind = "sandbox", name = self.name, pid = self.pid }
  for k, v in pairs(extra or {}) do e[k] = v end
  append_event(e, self.base)
end

--- Removes the record (by its owner, once the sandbox is over): `result` (nil when the sandbox was killed
-- unwaited or never started) goes into an "exit" event. Idempotent.
function Record:finish(result)
  if self.done or self.owner.pid ~= core.getpid() then return end
  self.done = true
  if self.pid then
    local e = { event = "exit", kind = "sandbox", name = self.name, pid = self.pid }
    if result then
      e.status, e.signal, e.signame, e.elapsed = result.status, result.signal, result.signame, result.elapsed
      e.oom_killed, e.timed_out = result.oom_killed, result.timed_out
      local memory = type(result.usage) == "table" and result.usage.memory
      if type(memory) == "table" then e.oom_kills = memory.oom_kills end
    else
      e.killed = true
    end
    append_event(e, self.base)
  end
  remove_dir(self.dir)
end

--- @section end

return M
