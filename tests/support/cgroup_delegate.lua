-- A delegated cgroup for the rootless pass of tests/run.sh (run as root), made with lunas's own module:
--
--   lua5.4 tests/support/cgroup_delegate.lua setup UID GID NAME   prints the directories to move a process into
--   lua5.4 tests/support/cgroup_delegate.lua remove NAME          kills what is left inside and removes it
--
-- NAME is created below our own cgroup in every hierarchy and handed to UID:GID (the directory and the files
-- /sys/kernel/cgroup/delegate lists), with a leaf NAME/lunas.leaf for the rootless processes themselves: on v2 a
-- cgroup that gives controllers to children cannot hold processes, and lunas treats a process in a lunas.leaf as
-- owning the cgroup above it. Where the host delegates nothing (no cgroup at all), setup prints nothing.
local cgroup = require "lunas.cgroup"
local errors = require "lunas.errors"

local CONTROLLERS = { "memory", "pids", "cpu", "cpuset", "io", "freezer" }

local command = arg[1]
if command == "setup" then
  local uid, gid, name = math.tointeger(tonumber(arg[2])), math.tointeger(tonumber(arg[3])), arg[4]
  assert(uid and gid and name, "usage: setup UID GID NAME")
  local cg, err = errors.try(cgroup.new, { name = name, controllers = CONTROLLERS, best_effort = true,
    warn = function(msg) io.stderr:write("cgroup_delegate: ", msg, "\n") end })
  if not cg then
    io.stderr:write("cgroup_delegate: no delegated cgroup for the rootless pass: ", tostring(err), "\n")
    os.exit(0)
  end
  -- Not closed here: it outlives this script until `remove`.
  local leaf = cgroup.new{ name = cgroup.LEAF, parent = cg, controllers = CONTROLLERS, best_effort = true }
  cg:delegate(uid, gid)
  leaf:delegate(uid, gid)
  if leaf.dirs.v2 then print(leaf.dirs.v2) end
  for _, dir in pairs(leaf.dirs.v1) do print(dir) end
elseif command == "remove" then
  assert(arg[2], "usage: remove NAME")
  local cg = errors.try(cgroup.open, arg[2])
  if cg then cg:remove() end
else
  error("usage: cgroup_delegate.lua setup UID GID NAME | remove NAME")
end
