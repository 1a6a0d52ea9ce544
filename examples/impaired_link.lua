-- impaired_link.lua: a link whose impairments change while traffic flows. Host a sends to host b with iperf3
-- for four seconds over a link shaped to 10 Mbit/s; after two seconds the recipe raises the rate to 40 Mbit/s,
-- and the per-second throughput shows the change. Then, where the kernel has netem, a 20 ms delay each way
-- shows up in ping's round trip.
-- Run as root (needs iperf3): lunas examples/impaired_link.lua
local core = require "lunas.core"
local net = require "lunas.net"
local json = require "dkjson" -- Debian's lua-dkjson (busted depends on it); any JSON reader will do

local lab <close> = net.lab{ name = "impaired" }
local a, b = lab:host("a"), lab:host("b")
local link = lab:link(a, b, { rate = "10mbit" })
a:addr("eth0", "10.0.0.1/24")
b:addr("eth0", "10.0.0.2/24")

b:spawn{ "iperf3", "-s", "-1", "--logfile", "/dev/null" }
b:run{ "sleep", "0.2" } -- the server's time to listen
local report_r, report_w = core.pipe()
local client = a:spawn{ "iperf3", "-c", "10.0.0.2", "-t", "4", "-J", stdout = report_w }
report_w:close()
a:run{ "sleep", "2" }
link:set{ rate = "40mbit" }
print("rate raised to 40mbit after 2 s")
local chunks = {}
repeat
  local data = report_r:read(65536)
  chunks[#chunks + 1] = data
until not data or data == ""
client:wait()
local report = json.decode(table.concat(chunks))
for i, interval in ipairs(report.intervals) do
  print(("second %d: %.1f Mbit/s"):format(i, interval.sum.bits_per_second / 1e6))
end

local ok, err = pcall(link.set, link, { rate = false, delay = "20ms" })
if ok then
  local result = a:run{ "ping", "-c", "1", "-W", "2", "10.0.0.2", capture = true }
  print(("ping with 20 ms each way: %s ms"):format(result.stdout:match("time=([%d.]+) ms") or "?"))
else
  print("no delay: this kernel has no netem (" .. tostring(err.code) .. ")")
end
