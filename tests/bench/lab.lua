-- tests/bench/lab.lua - a lab of N hosts on one switch, built and torn down by lunas.net.
--
-- usage: build/bin/lunas tests/bench/lab.lua N
--
-- One switch (br0); N hosts h1..hN, each linked to it (eth0 in the host), with the address
-- 10.250.(i // 250).(i % 250 + 1)/16 on eth0 (the addresses of reference/topo_nl.c); then lab:close().
-- Run it as root inside a network + mount namespace of your own with a tmpfs on /run (tests/bench/run.sh
-- does): the hosts are persisted in /run/netns like `ip netns add` does.
-- Prints on stdout, timed with lunas.core.now() (so without the interpreter's start-up):
--   build_ms <float>
--   teardown_ms <float>
-- tests/bench/run.sh times the whole process and compares it with topo_nl build N -g + teardown N -g.
local core = require "lunas.core"
local net = require "lunas.net"

local args = arg or { ... }
local n = math.tointeger(tonumber(args[1]))
if not n or n < 1 then error("usage: lab.lua N  (N = number of hosts, >= 1)", 0) end

local t0 = core.now()
local lab = net.lab{ name = "b" }
local s = lab:switch("br0")
for i = 1, n do
  local h = lab:host("h" .. i)
  lab:link(h, s)
  h:addr("eth0", ("10.250.%d.%d/16"):format(i // 250, i % 250 + 1))
end
local t1 = core.now()
lab:close()
local t2 = core.now()
io.write(("build_ms %.3f\nteardown_ms %.3f\n"):format((t1 - t0) * 1e3, (t2 - t1) * 1e3))
