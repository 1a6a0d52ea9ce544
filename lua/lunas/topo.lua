--- Ready topologies, as Mininet has them, with addresses and routes assigned: `net.topo.tree{depth = 2,
-- fanout = 3}` returns the lab, built and addressed; `lunas lab up --topo tree,2,3` keeps one.
--
-- Switched topologies (single, linear, tree): hosts h1..hN on bridges s1..sM, one subnet, 10.0.0.I/8 (and
-- fd00::I/64 with ipv6), as Mininet numbers them. Routed topologies (star, ring, mesh): routers r1..rN, each with
-- its host hI on a LAN of its own (10.A.B.0/24: .1 the router, .2 the host), point-to-point /30s between
-- routers from 10.255.0.0/16, and static routes along the shortest path (fewest hops) to every LAN.
-- @module lunas.topo
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local function misuse(field, fmt, ...)
  errors.raise{ op = "topo", field = field, code = "EINVAL", msg = ("topo: %s: " .. fmt):format(field, ...) }
end

local MAX_HOSTS = 4096

local COMMON = { name = true, link = true, ipv6 = true }

local function count(opts, field, min, max)
  local v = opts[field]
  if math.type(v) ~= "integer" or v < min or v > max then
    misuse(field, "an integer from %d to %d expected, got %s", min, max, tostring(v))
  end
  return v
end

local function check_options(kind, opts, fields)
  if type(opts) ~= "table" then misuse(kind, "options table expected, got %s", type(opts)) end
  for k in pairs(opts) do
    if not COMMON[k] and not fields[k] then misuse(tostring(k), "not an option of %s", kind) end
  end
  if opts.link ~= nil and type(opts.link) ~= "table" then misuse("link", "a table of link parameters expected") end
  if opts.ipv6 ~= nil and type(opts.ipv6) ~= "boolean" then misuse("ipv6", "boolean expected") end
end

-- ---- addresses ---------------------------------------------------------------------------------------------

-- Host I of a switched topology: 10.0.0.0/8 counted from 1, and fd00::I.
local function flat_v4(i) return ("10.%d.%d.%d"):format(i >> 16 & 255, i >> 8 & 255, i & 255) end
local function flat_v6(i) return ("fd00::%x"):format(i) end

-- LAN I of a routed topology: 10.A.B.0/24 with A.B = I (A from 1: 10.0.x would meet nothing, but reads as the
-- switched numbering), fd00:1:I::/64.
local function lan_v4(i, last) return ("10.%d.%d.%d"):format(1 + (i >> 8), i & 255, last) end
local function lan_v6(i, last) return ("fd00:1:%x::%x"):format(i, last) end
-- Point-to-point link J: the J-th /30 of 10.255.0.0/16, fd00:ff:J::/64.
local function p2p_v4(j, last) return ("10.255.%d.%d"):format(j >> 6 & 255, (j & 63) * 4 + last) end
local function p2p_v6(j, last) return ("fd00:ff:%x::%x"):format(j, last) end

-- ---- building ----------------------------------------------------------------------------------------------

local function new_lab(kind, opts)
  local net = require "lunas.net"
  return net.lab{ name = opts.name or kind }
end

local function link(lab, a, b, opts)
  return lab:link(a, b, opts.link)
end

-- Every host on one subnet, numbered in the order given.
local function address_hosts(hosts, opts)
  for i, h in ipairs(hosts) do
    h:addr("eth0", flat_v4(i) .. "/8")
    if opts.ipv6 then h:addr("eth0", flat_v6(i) .. "/64") end
  end
end

-- Builds into a fresh lab with build(lab) -> hosts; the lab goes if anything fails.
local function build(kind, opts, fn)
  local lab = new_lab(kind, opts)
  local ok, err = pcall(fn, lab)
  if not ok then error(errors.cleanup(err, lab.close, lab, err), 0) end
  lab.topology = kind
  return lab
end

--- One switch s1 and n hosts h1..hN on it (Mininet's single,N).
-- @tparam table opts {n =, name =, link = {rate =, delay =, loss = ...}, ipv6 = boolean}
function M.single(opts)
  check_options("single", opts, { n = true })
  local n = count(opts, "n", 1, MAX_HOSTS)
  return build("single", opts, function(lab)
    local s = lab:switch("s1")
    local hosts = {}
    for i = 1, n do
      hosts[i] = lab:host("h" .. i)
      link(lab, hosts[i], s, opts)
    end
    address_hosts(hosts, opts)
  end)
end

--- n switches in a chain s1 - s2 - ... - sN, host hI on switch sI (Mininet's linear,N).
function M.linear(opts)
  check_options("linear", opts, { n = true })
  local n = count(opts, "n", 1, MAX_HOSTS)
  return build("linear", opts, function(lab)
    local hosts, previous = {}, nil
    for i = 1, n do
      local s = lab:switch("s" .. i)
      if previous then link(lab, previous, s, opts) end
      hosts[i] = lab:host("h" .. i)
      link(lab, hosts[i], s, opts)
      previous = s
    end
    address_hosts(hosts, opts)
  end)
end

--- A tree of switches `depth` levels deep, each with `fanout` children; fanout hosts on each switch of the last
-- level: fanout^depth hosts (Mininet's tree,depth,fanout). Switches and hosts are numbered as Mininet numbers
-- them: depth first, a switch before its children.
function M.tree(opts)
  check_options("tree", opts, { depth = true, fanout = true })
  local depth, fanout = count(opts, "depth", 1, 12), count(opts, "fanout", 1, MAX_HOSTS)
  if fanout ^ depth > MAX_HOSTS then misuse("fanout", "fanout^depth is at most %d hosts", MAX_HOSTS) end
  return build("tree", opts, function(lab)
    local hosts, switches = {}, 0
    local function grow(level)
      switches = switches + 1
      local s = lab:switch("s" .. switches)
      for _ = 1, fanout do
        if level == depth then
          local h = lab:host("h" .. (#hosts + 1))
          hosts[#hosts + 1] = h
          link(lab, h, s, opts)
        else
          link(lab, s, grow(level + 1), opts)
        end
      end
      return s
    end
    grow(1)
    address_hosts(hosts, opts)
  end)
end

-- Routed: routers r1..rN each with host hI on its LAN, the router links given as pairs of indexes; static
-- routes to every LAN along a shortest path.
local function routed(lab, n, pairs_list, opts)
  local routers, hosts = {}, {}
  for i = 1, n do
    routers[i] = lab:router("r" .. i)
    hosts[i] = lab:host("h" .. i)
    local l = link(lab, hosts[i], routers[i], opts)
    local _, rif = l:names()
    routers[i]:addr(rif, lan_v4(i, 1) .. "/24")
    hosts[i]:addr("eth0", lan_v4(i, 2) .. "/24"):route("default", lan_v4(i, 1))
    if opts.ipv6 then
      routers[i]:addr(rif, lan_v6(i, 1) .. "/64")
      hosts[i]:addr("eth0", lan_v6(i, 2) .. "/64"):route("default", lan_v6(i, 1))
    end
  end
  -- neighbours[i] = {{peer = j, v4 = j's address on the link, v6 =}}
  local neighbours = {}
  for i = 1, n do neighbours[i] = {} end
  for j, p in ipairs(pairs_list) do
    local a, b = p[1], p[2]
    local l = link(lab, routers[a], routers[b], opts)
    local aif, bif = l:names()
    routers[a]:addr(aif, p2p_v4(j, 1) .. "/30")
    routers[b]:addr(bif, p2p_v4(j, 2) .. "/30")
    local na, nb = { peer = b, v4 = p2p_v4(j, 2) }, { peer = a, v4 = p2p_v4(j, 1) }
    if opts.ipv6 then
      routers[a]:addr(aif, p2p_v6(j, 1) .. "/64")
      routers[b]:addr(bif, p2p_v6(j, 2) .. "/64")
      na.v6, nb.v6 = p2p_v6(j, 2), p2p_v6(j, 1)
    end
    neighbours[a][#neighbours[a] + 1] = na
    neighbours[b][#neighbours[b] + 1] = nb
  end
  -- From each router, breadth first: the first hop towards every other router, then a route to its LAN.
  for i = 1, n do
    local first_hop = { [i] = false }
    local queue, head = { i }, 1
    while head <= #queue do
      local at = queue[head]
      head = head + 1
      for _, nb in ipairs(neighbours[at]) do
        if first_hop[nb.peer] == nil then
          first_hop[nb.peer] = at == i and nb or first_hop[at]
          queue[#queue + 1] = nb.peer
        end
      end
    end
    for target = 1, n do
      local hop = first_hop[target]
      if hop then
        routers[i]:route(lan_v4(target, 0) .. "/24", hop.v4)
        if opts.ipv6 then routers[i]:route(lan_v6(target, 0) .. "/64", hop.v6) end
      end
    end
  end
  return hosts
end

-- The routed topologies: how many routers they take, and which routers each links (pairs of indexes).
local ROUTED = {
  star = { min = 2, max = 1000, links = function(n, list)
    for i = 2, n do list[#list + 1] = { 1, i } end
  end },
  ring = { min = 3, max = 1000, links = function(n, list)
    for i = 1, n do list[#list + 1] = { i, i % n + 1 } end
  end },
  mesh = { min = 2, max = 64, links = function(n, list)
    for a = 1, n - 1 do
      for b = a + 1, n do list[#list + 1] = { a, b } end
    end
  end },
}

local function routed_topology(kind, opts)
  local shape = ROUTED[kind]
  check_options(kind, opts, { n = true })
  local n = count(opts, "n", shape.min, shape.max)
  return build(kind, opts, function(lab)
    local list = {}
    shape.links(n, list)
    routed(lab, n, list, opts)
  end)
end

--- n routers, router r1 in the middle and r2..rN around it, each with its host (a routed star).
function M.star(opts) return routed_topology("star", opts) end

--- n routers in a ring, each with its host; traffic to a LAN goes the shorter way round.
function M.ring(opts) return routed_topology("ring", opts) end

--- n routers, each linked to every other (n(n-1)/2 links), each with its host.
function M.mesh(opts) return routed_topology("mesh", opts) end

--- The topologies by name, with the order of their numeric parameters on a command line
-- (`--topo tree,2,3`: depth 2, fanout 3).
M.KINDS = { single = { "n" }, linear = { "n" }, tree = { "depth", "fanout" }, star = { "n" }, ring = { "n" },
  mesh = { "n" } }

--- Parses "tree,2,3" or "tree,depth=2,fanout=3" into kind, opts; nil, message when it is not one.
function M.parse(text)
  if type(text) ~= "string" then return nil, "a topology expected (single,N linear,N tree,D,F star,N ring,N mesh,N)" end
  local words = {}
  for w in (text .. ","):gmatch("([^,]*),") do words[#words + 1] = w end
  local kind = words[1]
  local params = M.KINDS[kind]
  if not params then return nil, ("unknown topology '%s' (single, linear, tree, star, ring, mesh)"):format(kind) end
  local opts = {}
  for i = 2, #words do
    local key, value = words[i]:match("^(%a+)=(.*)$")
    if not key then key, value = params[i - 1], words[i] end
    local known = false
    for _, p in ipairs(params) do known = known or p == key end
    if not key or not known then return nil, ("%s: unexpected parameter '%s'"):format(kind, words[i]) end
    opts[key] = math.tointeger(tonumber(value))
    if not opts[key] then return nil, ("%s: %s must be an integer, got '%s'"):format(kind, key, value) end
  end
  for _, p in ipairs(params) do
    if opts[p] == nil then return nil, ("%s: %s missing (%s,%s)"):format(kind, p, kind, table.concat(params, ",")) end
  end
  return kind, opts
end

return M
