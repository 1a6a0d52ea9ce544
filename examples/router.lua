-- router.lua: two subnets joined by a router. Host a sits in 10.1.0.0/24, host b in 10.2.0.0/24; the router r
-- has a leg in each and forwards between them (IPv4 and IPv6 forwarding are on in every lab router). Each host
-- routes through r by default; a ping from a to b crosses one hop, so its TTL arrives one lower.
-- Run as root: lunas examples/router.lua
local net = require "lunas.net"

local lab <close> = net.lab{ name = "router" }
local a, r, b = lab:host("a"), lab:router("r"), lab:host("b")
lab:link(a, r)
lab:link(r, b)
a:addr("eth0", "10.1.0.1/24"):route("default", "10.1.0.254")
b:addr("eth0", "10.2.0.1/24"):route("default", "10.2.0.254")
r:addr("eth0", "10.1.0.254/24"):addr("eth1", "10.2.0.254/24")

print("r forwards IPv4: " .. r:sysctl("net.ipv4.ip_forward"))
for _, pair in ipairs{ { a, "10.2.0.1", "b" }, { b, "10.1.0.1", "a" } } do
  local from, address, name = pair[1], pair[2], pair[3]
  local result = from:run{ "ping", "-c", "1", "-W", "2", address, capture = true }
  local ttl = result.stdout:match("ttl=(%d+)")
  print(("%s -> %s (%s): %s, ttl %s"):format(from.name, name, address,
    result.status == 0 and "reachable" or "unreachable", ttl or "-"))
end
