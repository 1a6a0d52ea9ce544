-- tests/bench/lab_profile.lua - where the time of tests/bench/lab.lua goes, call by call.
--
-- usage: build/bin/lunas tests/bench/lab_profile.lua N     (as root, inside unshare --net --mount, tmpfs on /run)
--
-- Builds and closes the same lab as lab.lua with every lunas.core function and netlink handle method that
-- lunas.net calls wrapped in a timer (lunas.core.now()), then prints per call: count, total ms, us per call and
-- us per host, plus the time spent in Lua outside those calls. The wrapping costs ~1 us per call.
local core = require "lunas.core"
local net = require "lunas.net"

local n = math.tointeger(tonumber((arg or { ... })[1]))
if not n or n < 1 then error("usage: lab_profile.lua N", 0) end

local now = core.now
local stats, order = {}, {}
local function account(name, dt)
  local s = stats[name]
  if not s then
    s = { n = 0, t = 0 }
    stats[name] = s
    order[#order + 1] = name
  end
  s.n, s.t = s.n + 1, s.t + dt
end
local function wrap(name, f)
  return function(...)
    local t = now()
    local r = table.pack(f(...))
    account(name, now() - t)
    return table.unpack(r, 1, r.n)
  end
end

for _, k in ipairs{ "ns_create", "persist", "unpersist", "netlink", "ns_open", "setns", "sysctl", "getpid" } do
  core[k] = wrap("core." .. k, core[k])
end
-- netlink handle methods: wrap them in the shared metatable once a handle exists
do
  local nl = assert(core.netlink())
  local mt = getmetatable(nl)
  local index = mt.__index
  for _, k in ipairs{ "link_add", "link_set", "link_get", "addr_add", "link_del_group", "close" } do
    index[k] = wrap("netlink:" .. k, index[k])
  end
  nl:close()
  stats["netlink:close"], order[#order] = nil, nil
end
local ns_mt_done = false
local real_ns_create = core.ns_create
core.ns_create = function(...)
  local ns, m, c = real_ns_create(...)
  if ns and not ns_mt_done then
    ns_mt_done = true
    local index = getmetatable(ns).__index
    index.close = wrap("ns:close", index.close)
  end
  return ns, m, c
end

local phases = {}
local t0 = now()
local lab = net.lab{ name = "b" }
local s = lab:switch("br0")
phases[#phases + 1] = { "lab + switch", now() - t0 }
local th, tl, ta = 0, 0, 0
for i = 1, n do
  local a = now()
  local h = lab:host("h" .. i)
  local b = now()
  lab:link(h, s)
  local c = now()
  h:addr("eth0", ("10.250.%d.%d/16"):format(i // 250, i % 250 + 1))
  local d = now()
  th, tl, ta = th + (b - a), tl + (c - b), ta + (d - c)
end
phases[#phases + 1] = { "lab:host", th }
phases[#phases + 1] = { "lab:link", tl }
phases[#phases + 1] = { "host:addr", ta }
local t1 = now()
lab:close()
local t2 = now()
phases[#phases + 1] = { "lab:close", t2 - t1 }

print(("N=%d build %.1f ms (%.3f ms/host), teardown %.1f ms"):format(n, (t1 - t0) * 1e3, (t1 - t0) * 1e3 / n,
  (t2 - t1) * 1e3))
print("phase                  total ms   ms/host")
for _, p in ipairs(phases) do print(("%-20s %10.1f %9.3f"):format(p[1], p[2] * 1e3, p[2] * 1e3 / n)) end
print("call                   count   total ms  us/call  us/host")
local inside = 0
for _, k in ipairs(order) do
  local st = stats[k]
  if st then
    inside = inside + (k:match("^netlink:close$") and 0 or st.t)
    print(("%-20s %7d %10.1f %8.1f %8.1f"):format(k, st.n, st.t * 1e3, st.t * 1e6 / st.n, st.t * 1e6 / n))
  end
end
print(("%-20s %7s %10.1f %8s %8.1f"):format("Lua and the rest", "", ((t2 - t0) - inside) * 1e3, "", ((t2 - t0) - inside) * 1e6 / n))
