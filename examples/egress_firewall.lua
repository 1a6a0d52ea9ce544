-- egress_firewall.lua: a sandbox that reaches "the internet" through NAT (net = "nat"), first with no firewall,
-- then with one that lets out only TCP to port 8080 and refuses port 9090 at once; the firewall's counters say
-- what each rule saw. The whole world is a lab: "office" plays the caller's network (the recipe enters its
-- namespace, so the sandbox's veth pair, masquerade and forwarding land there, never in the machine's own
-- network) and "internet" holds 203.0.113.1 with two servers (busybox nc) on ports 8080 and 9090.
-- Run as root (net = "nat" needs root): lunas examples/egress_firewall.lua
local core = require "lunas.core"
local lunas = require "lunas"
local net = require "lunas.net"

local FAR = "203.0.113.1"

local lab <close> = net.lab{ name = "egress" }
local office, internet = lab:host("office"), lab:host("internet")
lab:link(office, internet)
office:addr("eth0", "198.51.100.1/24"):route("default", "198.51.100.2")
internet:addr("eth0", "198.51.100.2/24"):addr("lo", FAR .. "/32")
internet:spawn{ "busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/echo", "hello from 8080" }
internet:spawn{ "busybox", "nc", "-ll", "-p", "9090", "-e", "/bin/echo", "hello from 9090" }
-- (listening once netstat shows both ports; busybox's own sleep paces the wait)
for _ = 1, 50 do
  local listening = internet:run{ "busybox", "netstat", "-ltn", capture = true }.stdout
  if listening:find(":8080", 1, true) and listening:find(":9090", 1, true) then break end
  internet:run{ "busybox", "sleep", "0.1" }
end

-- Each port: what came back, or how the connection failed (refused at once, or timed out: dropped).
local PROBE = [[
for port in 8080 9090; do
  if out=$(busybox nc -w 2 ]] .. FAR .. [[ $port </dev/null 2>&1); then echo "  $port: $out"
  else echo "  $port: ${out##*: }"; fi
done]]

local function run(title, spec)
  print(title)
  spec.net, spec.argv = "nat", { "/bin/sh", "-c", PROBE }
  io.stdout:flush()
  local result = lunas.sandbox(spec):run()
  for _, c in ipairs(result.firewall or {}) do
    if c.packets > 0 and not c.name:match("^policy_") then print(("  counter %s (%s %s): %d packets"):format(c.name, c.direction, c.action, c.packets)) end
  end
end

-- From here on lunas works inside the office namespace: that is "the caller's network" for net = "nat".
local home <close> = assert(core.ns_open("net"))
assert(core.setns(office:netns()))
local ok, err = pcall(function()
  run("no firewall:", {})
  run("firewall (out: 8080 allowed, 9090 refused, the rest dropped):", { firewall = {
    output = "drop",
    rules = {
      { direction = "out", proto = "tcp", to = FAR, port = 8080, action = "allow", name = "web" },
      { direction = "out", proto = "tcp", to = FAR, port = 9090, action = "reject", name = "refused" },
    },
  } })
end)
assert(core.setns(home))
if not ok then error(err, 0) end
