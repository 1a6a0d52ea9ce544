-- switch.lua: N hosts on one switch (a bridge in the lab's own namespace), N from the command line (default
-- 50). Shows how long building and tearing down take, then pings from the first host to the last.
-- Run as root: lunas examples/switch.lua [N]
local core = require "lunas.core"
local net = require "lunas.net"

local n = math.tointeger(tonumber(arg and arg[1] or "50"))
if not n or n < 2 or n > 60000 then
  io.stderr:write("usage: lunas examples/switch.lua [N]  (2 <= N <= 60000)\n")
  os.exit(2)
end

local function address(i) return ("10.%d.%d.%d/8"):format(i // 65536, i // 256 % 256, i % 256) end

local started = core.now()
local lab = net.lab{ name = "switch" }
local switch = lab:switch("s1")
local hosts = {}
for i = 1, n do
  hosts[i] = lab:host("h" .. i)
  lab:link(hosts[i], switch)
  hosts[i]:addr("eth0", address(i))
end
local built = core.now() - started
io.stderr:write(("built %d hosts in %.0f ms (%.2f ms per host)\n"):format(n, built * 1e3, built * 1e3 / n))

local last = address(n):gsub("/.*", "")
local result = hosts[1]:run{ "ping", "-c", "1", "-W", "2", last, capture = true }
print(("%d hosts on s1; h1 -> h%d (%s): %s"):format(n, n, last, result.status == 0 and "reachable" or "unreachable"))

started = core.now()
lab:close()
io.stderr:write(("torn down in %.0f ms\n"):format((core.now() - started) * 1e3))
