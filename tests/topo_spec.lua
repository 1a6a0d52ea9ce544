-- Ready topologies (lunas.topo, `lunas lab up --topo`): the nodes, links, addresses and routes they make, read
-- from outside (ip -j in each namespace), and real traffic across them.

local json = require "lunas.json"
local util = require "support.util"
local kernel = require "support.kernel"

local function ipj(ns, ...)
  local argv = { "ip", "-n", ns, "-j" }
  for _, a in ipairs{ ... } do argv[#argv + 1] = a end
  local out, code = util.run(argv, { stderr = false })
  assert.are.equal(0, code, table.concat(argv, " ") .. ": " .. out)
  return json.decode(out) or {}
end

local function addresses(ns, ifname)
  local set = {}
  for _, l in ipairs(ipj(ns, "addr", "show", "dev", ifname)) do
    for _, a in ipairs(l.addr_info or {}) do
      if a.scope == "global" then set[#set + 1] = a["local"] .. "/" .. a.prefixlen end
    end
  end
  table.sort(set)
  return set
end

local function ping(ns, address)
  local _, code = util.run{ "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", address }
  return code
end

local function kinds(lab)
  local n = { host = 0, switch = 0, router = 0 }
  for _, node in ipairs(lab:describe().nodes) do n[node.kind] = n[node.kind] + 1 end
  return n
end

describe("net.topo #root", function()
  if not kernel.requires("root") then return end
  local topo = require("lunas.net").topo

  it("single, linear and tree: Mininet's switches and hosts, one subnet, every host reaching every other", function()
    local cleanup = util.cleanups(finally)
    local single = topo.single{ n = 3, name = "tsingle" }
    cleanup(function() single:close() end)
    assert.same({ host = 3, switch = 1, router = 0 }, kinds(single))
    assert.same({ "10.0.0.2/8" }, addresses("h2", "eth0"))
    for _, target in ipairs{ "10.0.0.1", "10.0.0.2", "10.0.0.3" } do assert.are.equal(0, ping("h1", target)) end
    single:close()

    local linear = topo.linear{ n = 3, name = "tlinear", ipv6 = true }
    cleanup(function() linear:close() end)
    assert.same({ host = 3, switch = 3, router = 0 }, kinds(linear))
    assert.same({ "10.0.0.3/8", "fd00::3/64" }, addresses("h3", "eth0"))
    -- h3 hangs off s3, two bridges away from h1's s1
    local links = linear:describe().links
    assert.are.equal(5, #links)
    assert.are.equal(0, ping("h1", "10.0.0.3"))
    assert.are.equal(0, ping("h1", "fd00::3"))
    linear:close()

    local tree = topo.tree{ depth = 2, fanout = 3, name = "ttree" }
    cleanup(function() tree:close() end)
    assert.same({ host = 9, switch = 4, router = 0 }, kinds(tree))
    -- numbered as Mininet does: s1 the root, s2 its first child with h1..h3
    local ports = util.run{ "ip", "-j", "-n", tree:describe().fabric:match("[^/]+$"), "link", "show", "master", "s2" }
    assert.truthy(ports:find("s2-h1", 1, true) and ports:find("s2-h3", 1, true), ports)
    assert.are.equal(0, ping("h1", "10.0.0.9"))
  end)

  it("star, ring and mesh: routers with a LAN each and shortest-path routes, IPv4 and IPv6", function()
    local cleanup = util.cleanups(finally)
    local ring = topo.ring{ n = 5, name = "tring", ipv6 = true }
    cleanup(function() ring:close() end)
    assert.same({ host = 5, switch = 0, router = 5 }, kinds(ring))
    assert.same({ "10.1.3.2/24", "fd00:1:3::2/64" }, addresses("h3", "eth0"))
    -- from r1, LAN 4 is two hops back round (r5, r4), not three forward: the route goes via r5's address on
    -- their link (the 5th point-to-point /30: 10.255.0.20/30, r5 .21, r1 .22)
    local via
    for _, r in ipairs(ipj("r1", "route", "show")) do
      if r.dst == "10.1.4.0/24" then via = r.gateway end
    end
    assert.are.equal("10.255.0.21", via)
    for i = 2, 5 do
      assert.are.equal(0, ping("h1", ("10.1.%d.2"):format(i)), "h" .. i)
      assert.are.equal(0, ping("h1", ("fd00:1:%d::2"):format(i)), "h" .. i .. " (IPv6)")
    end
    ring:close()

    local star = topo.star{ n = 4, name = "tstar" }
    cleanup(function() star:close() end)
    assert.same({ host = 4, switch = 0, router = 4 }, kinds(star))
    assert.are.equal(0, ping("h2", "10.1.4.2"))
    star:close()

    local mesh = topo.mesh{ n = 4, name = "tmesh" }
    cleanup(function() mesh:close() end)
    assert.are.equal(4 + 6, #mesh:describe().links)
    assert.are.equal(0, ping("h4", "10.1.1.2"))
  end)

  it("refuses bad parameters naming them, and leaves nothing when a build fails", function()
    for _, case in ipairs{ { "single", { n = 0 }, "n" }, { "tree", { depth = 2 }, "fanout" },
        { "ring", { n = 2 }, "n" }, { "single", { n = 2, bogus = 1 }, "bogus" }, { "linear", { n = 2, ipv6 = 1 }, "ipv6" } } do
      local ok, err = pcall(topo[case[1]], case[2])
      assert.is_false(ok)
      assert.are.equal(case[3], err.field, tostring(err))
    end
    -- h1 taken by a namespace of someone else's: the topology's lab goes, the other namespace stays
    os.execute("ip netns add h1")
    finally(function() os.execute("ip netns del h1 2>/dev/null") end)
    local ok = pcall(topo.single, { n = 2, name = "tfail" })
    assert.is_false(ok)
    local names = util.run{ "ip", "netns", "list" }
    assert.is_nil(names:find("h2", 1, true))
    assert.truthy(names:find("h1", 1, true))
  end)

  it("parses command-line topologies", function()
    assert.same({ "tree", { depth = 2, fanout = 3 } }, { topo.parse("tree,2,3") })
    assert.same({ "tree", { depth = 2, fanout = 3 } }, { topo.parse("tree,fanout=3,depth=2") })
    assert.same({ "single", { n = 4 } }, { topo.parse("single,4") })
    assert.is_nil((topo.parse("tree,2")))
    assert.is_nil((topo.parse("nope,1")))
    assert.is_nil((topo.parse("ring,x")))
  end)
end)

describe("lunas lab up --topo #root", function()
  if not kernel.requires("root") then return end
  it("keeps a ready topology up until lunas lab down, with the same link parameters on every link", function()
    local out, code = util.run{ util.bin, "lab", "up", "--topo", "single,2", "--name", "tcli", "--link", "rate=50mbit", "--ipv6" }
    finally(function() util.run{ util.bin, "lab", "down", "tcli" } end)
    assert.are.equal(0, code, out)
    assert.matches("lab tcli: 2 hosts, 0 routers, 1 switch, 2 links", out)
    assert.are.equal(0, ping("h1", "fd00::2"))
    local qdisc = json.decode((util.run{ "tc", "-n", "h1", "-j", "qdisc", "show", "dev", "eth0" }))[1]
    assert.are.equal("tbf", qdisc.kind)
    out, code = util.run{ util.bin, "lab", "down", "tcli" }
    assert.are.equal(0, code, out)
    assert.is_nil(util.run{ "ip", "netns", "list" }:find("h1", 1, true))
    out, code = util.run{ util.bin, "lab", "up", "--topo", "tree,2" }
    assert.are.equal(2, code)
    assert.matches("fanout missing", out)
  end)
end)
