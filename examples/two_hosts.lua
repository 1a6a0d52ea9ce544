-- two_hosts.lua: the smallest network lab. Two hosts (network namespaces that `ip netns` lists while the lab
-- runs) joined by one link, an IPv4 and an IPv6 address on each end, and a ping across in both families.
-- Everything goes away when the lab's scope ends.
-- Run as root: lunas examples/two_hosts.lua
local net = require "lunas.net"

local lab <close> = net.lab{ name = "two-hosts" }
local h1, h2 = lab:host("h1"), lab:host("h2")
local link = lab:link(h1, h2)
h1:addr("eth0", "10.0.0.1/24"):addr("eth0", "fd00::1/64")
h2:addr("eth0", "10.0.0.2/24"):addr("eth0", "fd00::2/64")

print(("link: h1:%s <-> h2:%s"):format(link:names()))
for _, target in ipairs{ "10.0.0.2", "fd00::2" } do
  local result = h1:run{ "ping", "-c", "1", "-W", "2", target, capture = true }
  print(("h1 -> %s: %s"):format(target, result.status == 0 and "reachable" or "unreachable"))
end
