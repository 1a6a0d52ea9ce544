--- The records of labs under /run/lunas/labs/NAME: what lets `lunas lab down` remove a lab another process
-- built, and `lunas gc` remove what a crashed lunas left half built.
--
-- A record is a directory with two files:
--   journal     JSON lines, appended before each kernel object exists (write-ahead): a header naming the
--               builder (pid and start time), then {"netns": path} before a namespace is persisted, {"failed":
--               path} when that did not happen, {"cgroup": record} before a cgroup is made, {"process": {pid,
--               start}} for each process started in a host, {"kept": true} once the lab is to outlive its builder.
--               Whatever moment the builder dies at, everything it made is named in the journal.
--   state.json  written (atomically) when a kept lab is complete: the lab's description, for show and list.
-- @module lunas.lab_record
local core = require "lunas.core"
local files = require "lunas.files"
local json = require "lunas.json"
local errors = require "lunas.errors"
local process = require "lunas.process"

errors.register_module()

local M = {}

--- Where lunas keeps the state of what outlives a command: /run/lunas (a tmpfs, gone at reboot with the
-- namespaces and cgroups it describes).
M.ROOT = "/run/lunas"
--- The labs' records: /run/lunas/labs/NAME.
M.DIR = M.ROOT .. "/labs"

local Record = {}
Record.__index = Record

local function fail(msg, code)
  errors.raise{ op = "lab", msg = "lab: " .. msg, code = code }
end

local read_text = files.read_text

local function path_of(name, file)
  return M.DIR .. "/" .. name .. (file and ("/" .. file) or "")
end

local function mkdir(path)
  local ok, msg, code = core.mkdir(path)
  if ok or code == "EEXIST" then return true end
  return nil, msg, code
end

-- The directory a record is written in before it takes its name: the builder's pid in it tells gc whether a
-- leftover one is garbage.
local function temporary_path(name, pid)
  return ("%s/.%s.%d"):format(M.DIR, name, pid)
end

local function remove_dir(dir)
  for _, file in ipairs{ "journal", "state.json", "state.json.tmp" } do os.remove(dir .. "/" .. file) end
  return core.rmdir(dir)
end

local function refuse_existing(name)
  local existing = M.read(name)
  local status = existing and existing.status or "unreadable"
  if status == "up" then fail(("%s is up already (lunas lab down %s)"):format(name, name), "EEXIST") end
  if status == "stale" then
    fail(("%s: a crashed lunas left a lab of that name (lunas gc removes it)"):format(name), "EEXIST")
  end
  fail(("%s exists (%s, pid %s)"):format(name, status, tostring(existing and existing.pid)), "EEXIST")
end

--- Starts the record of lab `name`, built by this process: nil, message, code when the directory cannot be
-- made (not root, say), and an error when a record of that name exists (the lab is up, or a crash left it).
-- The record appears whole: its journal and header are written under a temporary name, then renamed into
-- place, so a record of that name never exists without the builder's pid in it.
function M.create(name, header)
  for _, dir in ipairs{ M.ROOT, M.DIR } do
    local ok, msg, code = mkdir(dir)
    if not ok then return nil, msg, code end
  end
  if core.file_type(path_of(name)) then refuse_existing(name) end
  local pid = core.getpid()
  local tmp = temporary_path(name, pid)
  if core.file_type(tmp) then remove_dir(tmp) end -- ours, from a lab of this name that failed to start
  local ok, msg, code = core.mkdir(tmp)
  if not ok then return nil, msg, code end
  local file, err = io.open(tmp .. "/journal", "w")
  if not file then
    core.rmdir(tmp)
    fail(("record %s: %s"):format(name, err), "EIO")
  end
  local self = setmetatable({ name = name, file = file, owner = pid }, Record)
  local h = { lab = name, pid = pid, start = process.start_time(pid), created = os.time() }
  for k, v in pairs(header or {}) do h[k] = v end
  -- A header that cannot be written leaves no temporary record behind, nor an open journal.
  local ok, nerr = pcall(self.note, self, h)
  if not ok then
    error(errors.cleanup(nerr, function()
      self.file = nil
      file:close()
      remove_dir(tmp)
    end), 0)
  end
  -- rename(2) of a directory onto a non-empty one fails: whoever renames first owns the name.
  local renamed, rerr = os.rename(tmp, path_of(name))
  if not renamed then
    file:close()
    remove_dir(tmp)
    if core.file_type(path_of(name)) then refuse_existing(name) end
    fail(("record %s: %s"):format(name, rerr), "EIO")
  end
  return self
end

--- Removes the temporary records (see create) of builders that are gone: they name no kernel object yet.
function M.remove_leftovers()
  for _, entry in ipairs(core.listdir(M.DIR) or {}) do
    local pid = tonumber(entry:match("^%..+%.(%d+)$"))
    if pid and core.file_type("/proc/" .. pid) ~= "dir" then remove_dir(M.DIR .. "/" .. entry) end
  end
end

--- Removes a record's files and directory (by name: the record of another process too).
function M.remove(name)
  local ok, msg, code = remove_dir(path_of(name))
  if not ok and code ~= "ENOENT" then return nil, msg, code end
  return true
end

--- A record as data: {name, pid, start, created, status = "up" | "building" | "in use" | "stale", kept,
-- netns = {paths, in creation order}, cgroups = {cg:record() tables}, processes = {{pid, start}}, firewalls =
-- {{host, netns}} (the hosts given a firewall), state =
-- the decoded state.json or nil}. nil, message when there is no such record.
-- "building": a kept lab whose builder is still at work; "in use": a lab its process is using (it goes when that
-- process closes it); "stale": its builder died before it was complete.
function M.read(name)
  local text = read_text(path_of(name, "journal"))
  if not text then return nil, ("no lab named %s"):format(name) end
  local rec = { name = name, netns = {}, cgroups = {}, processes = {}, firewalls = {} }
  local failed = {}
  for line in text:gmatch("[^\n]+") do
    -- The last line may be cut short by a crash mid-write: what it named was not made yet.
    local ok, entry = pcall(json.decode, line)
    if ok and type(entry) == "table" then
      if entry.lab then
        rec.pid, rec.start, rec.created, rec.netns_dir = entry.pid, entry.start, entry.created, entry.netns_dir
        rec.fabric = entry.fabric
      elseif entry.netns then rec.netns[#rec.netns + 1] = entry.netns
      elseif entry.failed then failed[entry.failed] = true
      elseif entry.cgroup then rec.cgroups[#rec.cgroups + 1] = entry.cgroup
      elseif entry.process then rec.processes[#rec.processes + 1] = entry.process
      elseif entry.kept then rec.kept = true
      elseif type(entry.firewall) == "table" then rec.firewalls[#rec.firewalls + 1] = entry.firewall
      end
    end
  end
  local made = {}
  for _, path in ipairs(rec.netns) do
    if not failed[path] then made[#made + 1] = path end
  end
  rec.netns = made
  local state = read_text(path_of(name, "state.json"))
  if state then
    local ok, decoded = pcall(json.decode, state)
    if ok and type(decoded) == "table" then rec.state = decoded end
  end
  if rec.state and rec.state.status == "up" then
    rec.status = "up"
  elseif rec.pid and process.alive(rec.pid, rec.start) then
    rec.status = rec.kept and "building" or "in use"
  else
    rec.status = "stale"
  end
  return rec
end

--- The names of every recorded lab, sorted.
function M.names()
  local names = {}
  for _, name in ipairs(core.listdir(M.DIR) or {}) do
    if name:sub(1, 1) ~= "." then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

--- An open record: the journal its builder appends to (lab_record.create returns one).
-- @type Record

--- Appends one entry and hands it to the kernel at once, so that it outlives a SIGKILL a moment later.
function Record:note(entry)
  if not self.file then return end
  local ok, err = self.file:write(json.encode(entry), "\n")
  if ok then ok, err = self.file:flush() end
  if not ok then fail(("record %s: %s"):format(self.name, err), "EIO") end
end

--- Writes state.json (through a temporary file and a rename: a reader sees the old state or the new one).
function Record:finish(state)
  local tmp = path_of(self.name, "state.json.tmp")
  local f, err = io.open(tmp, "w")
  if not f then fail(("record %s: %s"):format(self.name, err), "EIO") end
  f:write(json.encode(state, { indent = "  " }), "\n")
  f:close()
  local ok, rerr = os.rename(tmp, path_of(self.name, "state.json"))
  if not ok then fail(("record %s: %s"):format(self.name, rerr), "EIO") end
end

--- Closes the journal (the record stays).
function Record:close()
  if self.file and self.owner == core.getpid() then self.file:close() end
  self.file = nil
end

--- Closes the journal and removes the record (this builder's own lab, gone).
function Record:remove()
  self:close()
  return M.remove(self.name)
end

--- @section end

return M
