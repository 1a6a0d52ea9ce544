-- nat_egress.lua: two hosts on a private LAN reach an "internet" host through a router that masquerades
-- (lab:nat). h1 and h2 sit in 10.0.0.0/24 behind router r; r's outside leg and the internet host share
-- 203.0.113.0/24 (a documentation range). The internet host has no route back to 10.0.0.0/24, so without NAT
-- h1's ping goes out but its reply cannot return; after lab:nat(r), r rewrites the source of what leaves
-- through its outside link, and a TCP listener on the internet host reports that both hosts connect from
-- r's outside address, 203.0.113.1. Every node is a namespace the lab creates: the machine's own network and
-- nftables rules are never touched, and all of it goes away when the lab's scope ends.
-- Run as root (needs perl, which Debian always has): lunas examples/nat_egress.lua
local core = require "lunas.core"
local net = require "lunas.net"

local SERVER_PORT = 8080
local INTERNET = "203.0.113.10"

local lab <close> = net.lab{ name = "nat" }
local lan, r = lab:switch("lan"), lab:router("r")
local h1, h2, internet = lab:host("h1"), lab:host("h2"), lab:host("internet")
lab:link(h1, lan)
lab:link(h2, lan)
lab:link(r, lan)        -- r's eth0: inside
lab:link(r, internet)   -- r's eth1: outside
h1:addr("eth0", "10.0.0.11/24"):route("default", "10.0.0.1")
h2:addr("eth0", "10.0.0.12/24"):route("default", "10.0.0.1")
r:addr("eth0", "10.0.0.1/24"):addr("eth1", "203.0.113.1/24")
internet:addr("eth0", INTERNET .. "/24") -- and no route to 10.0.0.0/24: only NAT brings replies back

local function ping(from)
  local result = from:run{ "ping", "-c", "1", "-W", "1", INTERNET, capture = true }
  return result.status == 0 and "reachable" or "unreachable"
end

local routes = {}
for _, route in ipairs(internet:routes()) do
  if route.family == "inet" then routes[#routes + 1] = route.dst end
end
print("internet's IPv4 routes: " .. table.concat(routes, ", "))
print("before nat: h1 -> internet: " .. ping(h1))
lab:nat(r, { out = "eth1" })
print("after nat:  h1 -> internet: " .. ping(h1))

-- The listener prints "listening" once bound (so no client connects too early), then, for each of two
-- connections, the address the connection came from and the first line the client sent. alarm: it never
-- outlives a failed run.
local SERVER = ([[
use IO::Socket::INET; $| = 1; alarm 10;
my $s = IO::Socket::INET->new(LocalAddr => "%s:%d", Listen => 2, ReuseAddr => 1) or die "listen: $@\n";
print "listening\n";
for (1 .. 2) { my $c = $s->accept or die "accept: $!\n"; my $line = <$c>; chomp $line;
  print $c->peerhost, " ", $line, "\n"; close $c }
]]):format(INTERNET, SERVER_PORT)
local CLIENT = ([[
use IO::Socket::INET;
my $c = IO::Socket::INET->new(PeerAddr => "%s:%d", Timeout => 5) or die "connect: $@\n";
print $c "$ARGV[0]\n";
]]):format(INTERNET, SERVER_PORT)

local out_r, out_w = core.pipe()
local server = internet:spawn{ "perl", "-e", SERVER, stdout = out_w }
out_w:close() -- the server holds the only write end: EOF once it exits

-- Everything the server printed up to its next newline (nil at EOF).
local buffer = ""
local function server_line()
  while not buffer:find("\n", 1, true) do
    local chunk = out_r:read(4096)
    if not chunk or chunk == "" then return nil end
    buffer = buffer .. chunk
  end
  local line, rest = buffer:match("^([^\n]*)\n(.*)$")
  buffer = rest
  return line
end

assert(server_line() == "listening", "nat_egress.lua: the listener did not start")
for _, host in ipairs{ h1, h2 } do
  local result = host:run{ "perl", "-e", CLIENT, host.name }
  if result.status ~= 0 then print(host.name .. ": connect failed") end
  local from, name = (server_line() or ""):match("^(%S+) (%S+)$")
  print(("internet saw %s connect from %s"):format(name or "?", from or "?"))
end
server:wait()
out_r:close()
