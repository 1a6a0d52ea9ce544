--- The state of OCI containers, kept in a directory per container under the runtime's root (runc's layout):
-- ROOT/ID/state.json (0600, replaced atomically) and ROOT/ID/exec.fifo while the container waits for `start`.
-- A container's status is read from the kernel every time, never trusted from the file: its process (pid and
-- start time, so that a reused pid is not taken for it), the fifo, its cgroup's freezer.
-- @module lunas.oci.state
local core = require "lunas.core"
local json = require "lunas.json"
local errors = require "lunas.errors"
local process = require "lunas.process"

errors.register_module()

local M = {}

--- Where containers' state lives when no root directory is given (runc's /run/runc).
M.DEFAULT_ROOT = "/run/lunas-oci"

local function fail(msg, code)
  errors.raise{ op = "oci", msg = msg, code = code or "EINVAL" }
end

--- Refuses an id that could name anything but one directory (runc's rule: letters, digits, _ + - .).
-- @tparam string id
function M.check_id(id)
  if type(id) ~= "string" or id == "" or #id > 1024 or not id:match("^[%w_+%-%.]+$") or id == "." or id == ".." then
    fail(("invalid container id %q: letters, digits and _ + - . expected"):format(tostring(id)))
  end
  return id
end

local function dir_of(root, id)
  return root .. "/" .. M.check_id(id)
end

--- Makes the root directory (0711, as runc's) when missing.
-- @tparam string root
function M.ensure_root(root)
  if root:sub(1, 1) ~= "/" then fail("state root " .. root .. ": an absolute path expected", "EINVAL") end
  local path = ""
  for part in root:gmatch("[^/]+") do
    path = path .. "/" .. part
    local ok, msg, code = core.mkdir(path, 457)
    if not ok and code ~= "EEXIST" then fail("mkdir " .. path .. ": " .. msg, code) end
  end
end

--- Claims the directory of a new container: fails with "container with id exists" when it is taken.
-- @tparam string root
-- @tparam string id
-- @treturn string the directory
function M.claim(root, id)
  M.ensure_root(root)
  local dir = dir_of(root, id)
  local ok, msg, code = core.mkdir(dir, 457)
  if not ok then
    if code == "EEXIST" then fail(("container with id %s exists"):format(id), "EEXIST") end
    fail("mkdir " .. dir .. ": " .. msg, code)
  end
  return dir
end

--- Writes ROOT/ID/state.json through a temporary file and a rename: a reader sees the old or the new.
-- @tparam string dir
-- @tparam table record
function M.write(dir, record)
  local tmp = dir .. "/.state.json"
  -- (0600: only root reads a container's state)
  local umask = core.umask(63)
  local f, msg, code = core.open(tmp, "w")
  core.umask(umask)
  if not f then fail("write state: " .. msg, code) end
  local ok
  ok, msg, code = f:write(json.encode(record))
  f:close()
  if ok then ok, msg = os.rename(tmp, dir .. "/state.json") end
  if not ok then fail("write state: " .. tostring(msg), code or "EIO") end
end

--- The record of container id, or nil when there is no such container.
-- @tparam string root
-- @tparam string id
-- @treturn table|nil
function M.read(root, id)
  local dir = dir_of(root, id)
  local f = io.open(dir .. "/state.json", "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local ok, record = pcall(json.decode, text)
  if not ok or type(record) ~= "table" then fail(("state of container %s is damaged: %s"):format(id, tostring(record)), "EIO") end
  record.dir = dir
  return record
end

--- Every container id under root, sorted.
-- @tparam string root
-- @treturn table
function M.ids(root)
  local list = {}
  for _, name in ipairs(core.listdir(root) or {}) do
    if name:match("^[%w_+%-%.]+$") and core.file_type(root .. "/" .. name .. "/state.json") == "file" then
      list[#list + 1] = name
    end
  end
  table.sort(list)
  return list
end

-- The freezer state of the container's cgroup: true when frozen.
local function frozen(record)
  if not record.cgroup then return false end
  local ok, cg = pcall(require("lunas.cgroup").adopt, record.cgroup)
  if not ok then return false end
  local done, is = pcall(cg.frozen, cg)
  cg:close()
  return done and is == true
end

--- The container's status now: "created" (waiting for start), "running", "paused" or "stopped".
-- @tparam table record
-- @treturn string
function M.status(record)
  if not (record.pid and record.start_time and process.alive(record.pid, record.start_time)) then return "stopped" end
  if core.file_type(record.dir .. "/exec.fifo") == "fifo" then return "created" end
  if frozen(record) then return "paused" end
  return "running"
end

--- The state JSON the runtime spec defines (and runc's extra fields) for a given status: what `state` prints, and
-- what hooks read on their stdin ("creating" while the container is made).
-- @tparam table record
-- @tparam string status
-- @tparam[opt] integer pid the container's process (default the record's; 0 when stopped)
-- @treturn table
function M.document(record, status, pid)
  local out = { ociVersion = record.ociVersion, id = record.id, status = status,
    pid = status == "stopped" and 0 or pid or record.pid, bundle = record.bundle, rootfs = record.rootfs,
    created = record.created, owner = "" }
  if record.annotations and next(record.annotations) then out.annotations = record.annotations end
  return out
end

--- The state JSON as `state` prints it (the status read from the kernel now).
-- @tparam table record
-- @treturn table
function M.public(record)
  return M.document(record, M.status(record))
end

--- Removes the container's directory and what is in it.
-- @tparam table record
function M.remove(record)
  for _, name in ipairs(core.listdir(record.dir) or {}) do os.remove(record.dir .. "/" .. name) end
  local ok, msg, code = core.rmdir(record.dir)
  if not ok and code ~= "ENOENT" then fail("remove state: " .. msg, code) end
end

--- An RFC 3339 time in UTC (the state's "created").
-- @treturn string
function M.now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

return M
