-- tests/bench/throughput.lua - in-process spawn throughput of lunas sandboxes.
--
-- usage: build/bin/lunas tests/bench/throughput.lua N [net|-] [raw|default]
--
-- Spawns N sandboxes one after the other, each running /bin/true in new
-- user+pid+mount+uts+ipc namespaces (plus net with "net"), checks that every
-- one exited 0 (raises an error otherwise) and prints, on stdout:
--   spawns_per_sec <float>
--   elapsed_s <float>
--   clock <monotonic|os.time>
-- The rate is timed with lunas.core.now() (CLOCK_MONOTONIC seconds), so the
-- interpreter's start-up is not included. tests/bench/run.sh compares it with
-- "rawns -r N /bin/true" (the reference raw limit, timed as a whole process).
-- The file system: "raw" (the default) does what rawns does, the host's mount
-- table and a fresh /proc (rootfs = "host"), without lunas's hardening;
-- "default" is lunas's default tree
-- (host / read-only, fresh /proc with Docker's masks, minimal /dev, private
-- /tmp, own /sys with net).
local lunas = require "lunas"

local args = arg or { ... }
local n = math.tointeger(tonumber(args[1]))
if not n or n < 1 then
  error("usage: throughput.lua N [net]  (N = number of spawns, >= 1)", 0)
end
if args[2] ~= nil and args[2] ~= "net" and args[2] ~= "-" then
  error("throughput.lua: second argument must be \"net\", \"-\" or absent, got " .. tostring(args[2]), 0)
end
local tree = args[3] or "raw"
if tree ~= "raw" and tree ~= "default" then
  error("throughput.lua: third argument must be \"raw\" or \"default\", got " .. tostring(tree), 0)
end
local namespaces = "user,pid,mount,uts,ipc" .. (args[2] == "net" and ",net" or "")
local spec = { argv = { "/bin/true" }, namespaces = namespaces }
if tree == "raw" then
  spec.rootfs = "host"
  spec.harden = false
end

local now, clock
local ok, core = pcall(require, "lunas.core")
if ok and type(core) == "table" and type(core.now) == "function" then
  now, clock = core.now, "monotonic"
else
  now, clock = os.time, "os.time"
  io.stderr:write("throughput.lua: lunas.core.now unavailable (",
    ok and "no now() in it" or tostring(core):match("[^\n]*"), "); falling back to os.time, 1 s resolution\n")
end

local t0 = now()
for i = 1, n do
  local r, err = lunas.sandbox(spec):run()
  if not r then
    error(("throughput.lua: spawn %d of %d failed: %s"):format(i, n, tostring(err)), 0)
  end
  if r.status ~= 0 then
    error(("throughput.lua: spawn %d of %d: /bin/true exited with status %s"):format(i, n, tostring(r.status)), 0)
  end
end
local dt = now() - t0
if not (dt > 0) then
  error(("throughput.lua: %s clock did not advance over %d spawns; raise N"):format(clock, n), 0)
end
print(("spawns_per_sec %.1f"):format(n / dt))
print(("elapsed_s %.6f"):format(dt))
print("clock " .. clock)
