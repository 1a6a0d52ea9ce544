-- enter_sandbox.lua: joins a running sandbox from outside, as `lunas enter PID -- CMD` does. A process opens
-- the sandbox's PID 1 as a pidfd (so a reused pid can never be joined by mistake), joins all its namespaces
-- with one setns, and starts the command as a child (a joined pid namespace applies to children). The command
-- then sees what the sandbox sees: its host name, its private /tmp, its processes.
-- Run: lunas examples/enter_sandbox.lua
local lunas = require "lunas"
local core = lunas.core

-- The sandbox: leaves a note in its private /tmp, then waits.
local ready_r, ready_w = core.pipe()
local box <close> = lunas.sandbox{
  argv = { "/bin/sh", "-c", "echo 'written inside' > /tmp/note; echo ready; exec sleep 30" },
  hostname = "box", stdout = ready_w,
}:spawn()
ready_w:close()
assert(ready_r:read(6) == "ready\n")

local target = assert(core.pidfd_open(box.pid))
local visitor = lunas.spawn{ fn = function()
  assert(core.setns(target, "user,mount,uts,ipc,net,pid,cgroup"))
  local command = assert(core.spawn{ argv = { "/bin/sh", "-c",
    'echo "host name: $(hostname)"; echo "note: $(cat /tmp/note)"; grep -q lunas /proc/1/comm && echo "PID 1: the lunas reaper"' } })
  return command:wait().status
end }
local status = lunas.wait(visitor).status
target:close()
print(("host name outside: %s"):format(io.open("/proc/sys/kernel/hostname"):read("l") == "box" and "box" or "unchanged"))
return status
