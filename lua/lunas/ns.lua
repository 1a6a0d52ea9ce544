--- Namespaces: open, join, persist by name, and list every namespace of the machine.
-- Handles are the core's namespace handles (`lunas.core` ns: type, id, fileno, close). Failures raise a lunas
-- error.
-- @module lunas.ns
local core = require "lunas.core"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"

errors.register_module()

local M = {}

local NETNS_DIR = "/run/netns"

--- Opens a namespace: ns.open("net") (self), ns.open("net", pid), ns.open("/run/netns/NAME").
-- @tparam string what a type (user, pid, mount, uts, ipc, net, cgroup, time) or a namespace file path
-- @tparam[opt] integer pid with a type
-- @return a namespace handle
function M.open(what, pid)
  return errors.check(core.ns_open(what, pid))
end

--- Joins namespaces: ns.enter(handle | path | process, flags).
-- @param target a namespace handle, a namespace file path, or a process handle (then flags name the namespaces)
-- @param[opt] flags namespace names ("net,mount") or a table of them
-- @treturn boolean true
function M.enter(target, flags)
  return errors.check(core.setns(target, flags))
end

--- Namespace inode numbers of a process (self by default), keyed by type.
-- @tparam[opt] integer pid
-- @treturn table `{user = inode, net = inode, ...}`
function M.ids(pid)
  return errors.check(core.ns_ids(pid))
end

local function netns_path(name)
  if type(name) ~= "string" or name == "" or name:find("/", 1, true) or name == "." or name == ".." then
    error("lunas.ns: bad network namespace name '" .. tostring(name) .. "'", 3)
  end
  return NETNS_DIR .. "/" .. name
end

local Persisted = {}
Persisted.__index = Persisted

--- Persists a namespace. A network namespace given a bare name lands in /run/netns/NAME where `ip netns`
-- finds it; anything else needs an absolute path. It stays when the recipe ends; an interruption (SIGINT,
-- SIGTERM: lunas.interrupt) unpersists it unless opts.keep is true or the second result's `keep()` was called.
-- `local _, p <close> = ns.persist(h, "blue")` unpersists it when the scope ends.
-- @param handle a namespace handle
-- @tparam string name_or_path
-- @tparam[opt] table opts `{keep = true}`: never unpersisted by lunas
-- @treturn string the path of the bind mount
-- @return the persisted namespace: `close()` unpersists it, `keep()` keeps it whatever happens
function M.persist(handle, name_or_path, opts)
  local path = name_or_path
  local shared = false
  if opts ~= nil then
    if type(opts) ~= "table" then error("lunas.ns.persist: opts: table expected, got " .. type(opts), 2) end
    for k in pairs(opts) do
      if k ~= "keep" then error("lunas.ns.persist: opts: unknown field '" .. tostring(k) .. "'", 2) end
    end
  end
  if not tostring(name_or_path):find("/", 1, true) then
    if handle:type() ~= "net" then error("lunas.ns.persist: a bare name is only for network namespaces", 2) end
    path, shared = netns_path(name_or_path), true
  end
  errors.check(core.persist(handle, path, { shared_dir = shared }))
  local persisted = setmetatable({ path = path, id = handle:id(), owner = core.getpid() }, Persisted)
  if opts and opts.keep then persisted.closed = true else interrupt.track(persisted) end
  return path, persisted
end

--- Undoes persist (a bare name means /run/netns/NAME).
-- @tparam string name_or_path
-- @treturn boolean true
function M.unpersist(name_or_path)
  local path = name_or_path
  if not tostring(name_or_path):find("/", 1, true) then path = netns_path(name_or_path) end
  return errors.check(core.unpersist(path))
end

-- ---- inventory ----------------------------------------------------------------------------------------------

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local user_names
local function user_name(uid)
  if not user_names then
    user_names = {}
    for line in (read_file("/etc/passwd") or ""):gmatch("[^\n]+") do
      local name, id = line:match("^([^:]*):[^:]*:(%d+):")
      if name then user_names[tonumber(id)] = user_names[tonumber(id)] or name end
    end
  end
  return user_names[uid] or tostring(uid)
end

local function command_of(pid)
  local cmdline = read_file("/proc/" .. pid .. "/cmdline")
  if cmdline and cmdline ~= "" then return (cmdline:gsub("%z$", ""):gsub("%z", " ")) end
  local comm = read_file("/proc/" .. pid .. "/comm")
  return comm and "[" .. comm:gsub("\n$", "") .. "]" or "?"
end

-- Namespaces kept alive by a bind mount (ip netns add, lunas persist): nsfs entries of our mount table, whose
-- root field reads "net:[4026532279]".
local function persisted()
  local list = {}
  for line in (read_file("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local root, point, fstype = line:match("^%d+ %d+ %S+ (%S+) (%S+) .- %- (%S+) ")
    if fstype == "nsfs" then
      local kind, inode = root:match("^(%a+):%[(%d+)%]$")
      if kind then
        point = point:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end)
        list[#list + 1] = { type = kind == "mnt" and "mount" or kind, inode = tonumber(inode), path = point }
      end
    end
  end
  return list
end

--- Every namespace this process can see, as lsns and ip netns show them together: a list of
-- {type, inode, nprocs, pid (the lowest), uid, user, command, paths = {bind mounts}, names = {/run/netns names}},
-- sorted by type then inode. Namespaces only a bind mount keeps alive have nprocs 0 and no pid. Processes we
-- may not inspect (another user's, without privileges) are left out, as lsns leaves them out.
-- @tparam[opt] table opts
-- @tparam[opt] string opts.type only namespaces of this type ("net", "mount", ...)
-- @treturn table
function M.list(opts)
  local only = opts and opts.type
  local by_key, list = {}, {}
  local function entry(kind, inode)
    local key = kind .. ":" .. inode
    local e = by_key[key]
    if not e then
      e = { type = kind, inode = inode, nprocs = 0, paths = {}, names = {} }
      by_key[key] = e
      list[#list + 1] = e
    end
    return e
  end
  local pids = {}
  for _, name in ipairs(core.listdir("/proc") or {}) do
    if name:match("^%d+$") then pids[#pids + 1] = tonumber(name) end
  end
  table.sort(pids)
  for _, pid in ipairs(pids) do
    local ids = core.ns_ids(pid)
    if ids then
      for kind, inode in pairs(ids) do
        if not only or only == kind then
          local e = entry(kind, inode)
          e.nprocs = e.nprocs + 1
          if not e.pid then e.pid = pid end
        end
      end
    end
  end
  for _, p in ipairs(persisted()) do
    if not only or only == p.type then
      local e = entry(p.type, p.inode)
      e.paths[#e.paths + 1] = p.path
      local name = p.path:match("^" .. NETNS_DIR .. "/([^/]+)$")
      if name and p.type == "net" then e.names[#e.names + 1] = name end
    end
  end
  for _, e in ipairs(list) do
    if e.pid then
      local status = read_file("/proc/" .. e.pid .. "/status") or ""
      e.uid = tonumber(status:match("\nUid:%s*(%d+)"))
      e.user = e.uid and user_name(e.uid)
      e.command = command_of(e.pid)
    end
    table.sort(e.paths)
    table.sort(e.names)
  end
  table.sort(list, function(a, b)
    if a.type ~= b.type then return a.type < b.type end
    return a.inode < b.inode
  end)
  return list
end

--- Persisted namespaces.
-- The second result of `persist`: a namespace this process persisted, unpersisted by close (and so by
-- lunas.interrupt.close_all when an interruption ends the recipe) unless kept.
-- @type Persisted

--- Unmounts the namespace file, if it still holds the namespace this process persisted there. Idempotent.
function Persisted:close()
  if self.closed then return end
  self.closed = true
  interrupt.untrack(self)
  if self.owner ~= core.getpid() then return end
  local handle = core.ns_open(self.path)
  if not handle then return end
  local same = handle:id() == self.id
  handle:close()
  if same then errors.check(core.interrupt_defer(core.unpersist, self.path)) end
end
Persisted.__close = errors.closer(Persisted.close)

--- Leaves the namespace persisted whatever ends the recipe.
function Persisted:keep()
  self.closed = true
  interrupt.untrack(self)
end

return M
