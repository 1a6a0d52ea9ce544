--- Namespaces: open, join, persist by name.
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local NETNS_DIR = "/run/netns"

--- Opens a namespace: ns.open("net") (self), ns.open("net", pid), ns.open("/run/netns/NAME").
function M.open(what, pid)
  return errors.check(core.ns_open(what, pid))
end

--- Joins namespaces: ns.enter(handle | path | process, flags).
function M.enter(target, flags)
  return errors.check(core.setns(target, flags))
end

--- Namespace inode numbers of a process (self by default), keyed by type.
function M.ids(pid)
  return errors.check(core.ns_ids(pid))
end

local function netns_path(name)
  if type(name) ~= "string" or name == "" or name:find("/", 1, true) or name == "." or name == ".." then
    error("lunas.ns: bad network namespace name '" .. tostring(name) .. "'", 3)
  end
  return NETNS_DIR .. "/" .. name
end

--- Persists a namespace. A network namespace given a bare name lands in /run/netns/NAME where `ip netns`
-- finds it; anything else needs an absolute path. Returns the path.
function M.persist(handle, name_or_path)
  local path = name_or_path
  local shared = false
  if not tostring(name_or_path):find("/", 1, true) then
    if handle:type() ~= "net" then error("lunas.ns.persist: a bare name is only for network namespaces", 2) end
    path, shared = netns_path(name_or_path), true
  end
  errors.check(core.persist(handle, path, { shared_dir = shared }))
  return path
end

--- Undoes persist (a bare name means /run/netns/NAME).
function M.unpersist(name_or_path)
  local path = name_or_path
  if not tostring(name_or_path):find("/", 1, true) then path = netns_path(name_or_path) end
  return errors.check(core.unpersist(path))
end

return M
