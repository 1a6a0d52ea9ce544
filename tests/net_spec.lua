-- lunas.net: labs observed from outside (ip -j, tc -j, nft -j, /proc/sys inside the namespaces) and with real
-- traffic (ping, iperf3). Everything stays inside namespaces these tests create, within the suite's private
-- network namespace.
local lunas = require "lunas"
local core = require "lunas.core"
local net = require "lunas.net"
local json = require "dkjson"
local kernel = require "support.kernel"
local util = require "support.util"

local serial = 0
local function lab_name()
  serial = serial + 1
  return ("t%d_%d"):format(core.getpid() % 10000, serial)
end

local function new_lab(cleanup, opts)
  opts = opts or {}
  opts.name = opts.name or lab_name()
  local lab = net.lab(opts)
  cleanup(function() lab:close() end)
  return lab
end

-- ip -j output of a command run inside a namespace path (or the test's own namespace with nil).
local function ipj(netns_path, ...)
  local argv = { "ip", "-j" }
  if netns_path then argv = { "nsenter", "--net=" .. netns_path, "ip", "-j" } end
  for _, a in ipairs{ ... } do argv[#argv + 1] = a end
  local out, code = util.run(argv, { stderr = false })
  assert.equal(0, code, table.concat(argv, " ") .. ": " .. out)
  return json.decode(out) or {}
end

local function in_ns(path, ...)
  local argv = { "nsenter", "--net=" .. path }
  for _, a in ipairs{ ... } do argv[#argv + 1] = a end
  return util.run(argv)
end

local function ping(node, address, extra)
  local argv = { "ping", "-c", "1", "-W", "2", address }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  argv.capture = true
  return node:run(argv)
end

local function rtt_ms(output)
  return tonumber(output:match("time=([%d.]+) ms"))
end

local function netns_names()
  local names = {}
  for _, entry in ipairs(core.listdir("/run/netns") or {}) do names[entry] = true end
  return names
end

-- Measured TCP throughput from a to b (bits/s) with iperf3, over `seconds`.
local function iperf(a, b, address, seconds)
  local server = b:spawn{ "iperf3", "-s", "-1", "-p", "5201", "--logfile", "/dev/null" }
  local result, report
  -- The server needs a moment to listen: retry the client briefly.
  for _ = 1, 50 do
    result = a:run{ "iperf3", "-c", address, "-p", "5201", "-t", tostring(seconds), "-J", capture = true }
    report = json.decode(result.stdout)
    if result.status == 0 and type(report) == "table" and report["end"] and report["end"].sum_received then break end
    util.sh("sleep 0.05")
  end
  server:kill("KILL")
  server:wait(5)
  assert.equal(0, result.status, result.stdout)
  assert.is_table(report["end"].sum_received, result.stdout)
  return report["end"].sum_received.bits_per_second
end

local function addresses_of(path, ifname)
  local found = {}
  for _, a in ipairs(ipj(path, "addr", "show", ifname)[1].addr_info) do found[a["local"] .. "/" .. a.prefixlen] = true end
  return found
end

describe("lab #root", function()
  it("links two hosts that ping each other over IPv4 and IPv6, named as ip netns sees them", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local h1, h2 = lab:host("h1"), lab:host("h2")
    local link = lab:link(h1, h2)
    assert.same({ "eth0", "eth0" }, { link:names() })
    h1:addr("eth0", "10.0.0.1/24"):addr("eth0", "fd00::1/64")
    h2:addr("eth0", "10.0.0.2/24"):addr("eth0", "fd00::2/64")
    local names = util.run{ "ip", "netns", "list" }
    assert.truthy(names:find("h1", 1, true) and names:find("h2", 1, true))
    local info = ipj("/run/netns/h1", "-d", "link", "show", "eth0")[1]
    assert.equal("veth", info.linkinfo.info_kind)
    assert.equal("UP", info.operstate)
    assert.equal("UNKNOWN", ipj("/run/netns/h1", "link", "show", "lo")[1].operstate)
    assert.truthy(addresses_of("/run/netns/h1", "eth0")["10.0.0.1/24"])
    assert.truthy(addresses_of("/run/netns/h1", "eth0")["fd00::1/64"])
    assert.equal(0, ping(h1, "10.0.0.2").status)
    assert.equal(0, ping(h2, "fd00::1").status)
    -- The lab added nothing to the namespace it was built from.
    local own = {}
    for _, l in ipairs(ipj(nil, "link", "show")) do own[#own + 1] = l.ifname end
    assert.same({ "lo" }, own)
  end)

  it("names a host's interfaces eth0, eth1, ... in the order of its links, or as asked", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b, c = lab:host("a"), lab:host("b"), lab:host("c")
    assert.same({ "eth0", "eth0" }, { lab:link(a, b):names() })
    assert.same({ "eth1", "eth0" }, { lab:link(a, c):names() })
    assert.same({ "uplink", "eth1" }, { lab:link(a, c, { names = { "uplink" } }):names() })
    local seen = {}
    for _, l in ipairs(ipj("/run/netns/a", "link", "show")) do seen[l.ifname] = true end
    assert.same({ lo = true, eth0 = true, eth1 = true, uplink = true }, seen)
  end)

  it("routes between two subnets through a router that forwards", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, r, b = lab:host("a"), lab:router("r"), lab:host("b")
    lab:link(a, r)
    lab:link(r, b)
    a:addr("eth0", "10.1.0.1/24"):addr("eth0", "fd01::1/64")
    r:addr("eth0", "10.1.0.254/24"):addr("eth1", "10.2.0.254/24"):addr("eth0", "fd01::fe/64"):addr("eth1", "fd02::fe/64")
    b:addr("eth0", "10.2.0.1/24"):addr("eth0", "fd02::1/64")
    a:route("default", "10.1.0.254"):route("default", "fd01::fe")
    b:route("default", "10.2.0.254"):route("default", "fd02::fe")
    assert.equal("1\n", in_ns("/run/netns/r", "cat", "/proc/sys/net/ipv4/ip_forward"))
    assert.equal("0\n", in_ns("/run/netns/a", "cat", "/proc/sys/net/ipv4/ip_forward"))
    local routes = ipj("/run/netns/a", "route", "show", "default")
    assert.equal("10.1.0.254", routes[1].gateway)
    local out = ping(a, "10.2.0.1")
    assert.equal(0, out.status, out.stdout)
    assert.truthy(out.stdout:find("ttl=63", 1, true), out.stdout)
    assert.equal(0, ping(a, "fd02::1").status)
  end)

  it("puts ten hosts on a switch, all reachable, the bridge in the lab's own namespace", function()
    local cleanup = util.cleanups(finally)
    local name = lab_name()
    local lab = new_lab(cleanup, { name = name })
    local s = lab:switch("s1")
    local hosts = {}
    for i = 1, 10 do
      hosts[i] = lab:host("h" .. i)
      lab:link(hosts[i], s)
      hosts[i]:addr("eth0", "10.0.0." .. i .. "/24")
    end
    local ports = 0
    for _, l in ipairs(ipj("/run/netns/lunas-" .. name, "link", "show")) do
      if l.master == "s1" then ports = ports + 1 end
    end
    assert.equal(10, ports)
    for i = 2, 10 do assert.equal(0, ping(hosts[1], "10.0.0." .. i).status, "h1 -> h" .. i) end
    assert.equal(0, ping(hosts[10], "10.0.0.1").status)
  end)

  it("shapes a link with a rate that iperf3 measures, changed while the lab runs", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    local link = lab:link(a, b, { rate = "10mbit" })
    a:addr("eth0", "10.0.0.1/24")
    b:addr("eth0", "10.0.0.2/24")
    local q = util.run{ "tc", "-n", "a", "-j", "qdisc", "show", "dev", "eth0" }
    local qdisc = json.decode(q)[1]
    assert.equal("tbf", qdisc.kind)
    assert.equal(10000000 // 8, qdisc.options.rate)
    local slow = iperf(a, b, "10.0.0.2", 2)
    assert.is_true(slow > 7e6 and slow < 11e6, "measured " .. slow)
    link:set{ rate = "40mbit" }
    local faster = iperf(a, b, "10.0.0.2", 2)
    assert.is_true(faster > 28e6 and faster < 44e6, "measured " .. faster)
    -- Without a rate the link runs at memory speed: the measurement can tell the difference.
    link:set{ rate = false }
    assert.equal("noqueue", json.decode(util.run{ "tc", "-n", "a", "-j", "qdisc", "show", "dev", "eth0" })[1].kind)
    local free = iperf(a, b, "10.0.0.2", 1)
    assert.is_true(free > 200e6, "measured " .. free)
  end)

  it("delays a link by netem, visible in ping round trips, and changes it live", function()
    if not kernel.requires("netem") then return end
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    local link = lab:link(a, b, { delay = "50ms" })
    a:addr("eth0", "10.0.0.1/24")
    b:addr("eth0", "10.0.0.2/24")
    local qdisc = json.decode(util.run{ "tc", "-n", "a", "-j", "qdisc", "show", "dev", "eth0" })[1]
    assert.equal("netem", qdisc.kind)
    local slow = rtt_ms(ping(a, "10.0.0.2").stdout)
    assert.is_true(slow >= 100, "rtt " .. tostring(slow))
    link:set{ delay = "5ms" }
    local fast = rtt_ms(ping(a, "10.0.0.2").stdout)
    assert.is_true(fast >= 10 and fast < 60, "rtt " .. tostring(fast))
    link:set{ loss = 100 }
    assert.are_not.equal(0, ping(a, "10.0.0.2").status)
    link:set{ loss = false, delay = false }
    assert.equal(0, ping(a, "10.0.0.2").status)
  end)

  it("takes a link down and up again, both ends, a switch port too, as ip shows them", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b, s = lab:host("a"), lab:host("b"), lab:switch("s")
    local ab = lab:link(a, b)
    local as = lab:link(a, s)
    a:addr("eth0", "10.0.0.1/24"):addr("eth1", "10.0.1.1/24")
    b:addr("eth0", "10.0.0.2/24")
    local c = lab:host("c")
    lab:link(c, s)
    c:addr("eth0", "10.0.1.2/24")
    local function flags(path, ifname) return ipj(path, "link", "show", ifname)[1].flags end
    local function has(list, word)
      for _, w in ipairs(list) do if w == word then return true end end
      return false
    end
    assert.equal(0, ping(a, "10.0.0.2").status)
    assert.is_true(ab:is_up())
    assert.equal(ab, ab:down())
    assert.is_false(ab:is_up())
    assert.is_false(has(flags("/run/netns/a", "eth0"), "UP"))
    assert.is_false(has(flags("/run/netns/b", "eth0"), "UP"))
    assert.are_not.equal(0, ping(a, "10.0.0.2").status)
    assert.is_true(lab:describe().links[1].down)
    assert.truthy(lab:dot():find("down", 1, true))
    ab:up()
    assert.is_true(has(flags("/run/netns/b", "eth0"), "UP"))
    assert.is_nil(lab:describe().links[1].down)
    assert.equal(0, util.wait_for(function() return ping(a, "10.0.0.2").status == 0 and 0 end, 10))
    -- the switch's end of a host link (a port of the bridge, in the fabric namespace) goes down too
    assert.equal(0, ping(a, "10.0.1.2").status)
    as:down()
    local port = select(2, as:names())
    assert.is_false(has(flags(lab:describe().fabric, port), "UP"))
    assert.are_not.equal(0, ping(a, "10.0.1.2").status)
    as:up()
    assert.equal(0, util.wait_for(function() return ping(a, "10.0.1.2").status == 0 and 0 end, 10))
    lab:close()
    local ok, err = pcall(ab.down, ab)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("closed lab", 1, true))
  end)

  it("masquerades and forwards ports between lab namespaces (NAT through libnftables)", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, r, b = lab:host("a"), lab:router("r"), lab:host("b")
    lab:link(a, r)
    lab:link(r, b)
    a:addr("eth0", "10.1.0.1/24")
    r:addr("eth0", "10.1.0.254/24"):addr("eth1", "10.2.0.254/24")
    b:addr("eth0", "10.2.0.1/24")
    a:route("default", "10.1.0.254")
    -- b has no route back to 10.1.0.0/24: only a masquerading router gets its answers home.
    assert.are_not.equal(0, ping(a, "10.2.0.1").status)
    r:route("default", "10.2.0.1")
    lab:nat(r, { forward = { { proto = "tcp", port = 8080, to = "10.1.0.1", to_port = 80 } } })
    assert.equal(0, ping(a, "10.2.0.1").status)
    local ruleset = util.run{ "ip", "netns", "exec", "r", "nft", "-j", "list", "ruleset" }
    assert.truthy(ruleset:find('"masquerade"', 1, true), ruleset)
    assert.truthy(ruleset:find('"dnat"', 1, true), ruleset)
    assert.truthy(ruleset:find('"eth1"', 1, true), ruleset)
    -- Stating NAT again replaces the table instead of adding a second one.
    lab:nat(r, { out = "eth1" })
    local again = util.run{ "ip", "netns", "exec", "r", "nft", "-j", "list", "ruleset" }
    assert.falsy(again:find('"dnat"', 1, true))
    assert.equal(0, ping(a, "10.2.0.1").status)
  end)

  it("runs sandboxes on a lab host", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    lab:link(a, b)
    a:addr("eth0", "10.0.0.1/24")
    b:addr("eth0", "10.0.0.2/24")
    local r, w = core.pipe()
    -- ping carries file capabilities, which a sandbox with an empty bounding set may not exec: ip reads the
    -- namespace's addresses instead.
    local result = a:sandbox{ argv = { "sh", "-c", "grep -o 'eth0' /proc/net/dev; ip -o -4 addr show eth0 | grep -o '10.0.0.1/24'" },
      stdout = w }:run()
    w:close()
    local out = util.drain(r)
    r:close()
    assert.equal(0, result.status, out)
    assert.equal("eth0\n10.0.0.1/24\n", out)
  end)

  it("plugs sandboxes into a switch with their own namespace, address and gateway", function()
    local cleanup = util.cleanups(finally)
    local name = lab_name()
    local lab = new_lab(cleanup, { name = name })
    local s, h = lab:switch("s1"), lab:host("h")
    lab:link(h, s)
    h:addr("eth0", "10.0.0.1/24")
    local r, w = core.pipe()
    local result = lunas.sandbox{ argv = { "sh", "-c", "ip -o -4 addr show eth0 | grep -o '10.0.0.9/24'; ip -4 route show default" },
      net = { switch = s, address = "10.0.0.9/24", gateway = "10.0.0.1" }, stdout = w }:run()
    w:close()
    local out = util.drain(r)
    r:close()
    assert.equal(0, result.status, out)
    assert.equal("10.0.0.9/24\ndefault via 10.0.0.1 dev eth0 proto static \n", out)
    -- A running one answers from the lab, through a port of the switch.
    local running = lunas.sandbox{ argv = { "sleep", "30" }, net = { switch = s, address = "10.0.0.10/24" } }:spawn()
    cleanup(function() running:close() end)
    assert.equal(0, ping(h, "10.0.0.10").status)
    local ports = 0
    for _, l in ipairs(ipj("/run/netns/lunas-" .. name, "link", "show")) do
      if l.master == "s1" then ports = ports + 1 end
    end
    -- h's port and the running sandbox's (the first sandbox's goes with its namespace, asynchronously).
    assert.is_true(ports >= 2, "ports: " .. ports)
    -- Misuse is refused before anything starts.
    local ok, err = pcall(lunas.sandbox, { argv = { "true" }, net = { switch = s, address = "10.0.0.300/24" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("field 'net.address': bad address '10.0.0.300/24'", 1, true), tostring(err))
    ok, err = pcall(lunas.sandbox, { argv = { "true" }, net = { switch = h } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("field 'net'", 1, true), tostring(err))
  end)

  it("kills what its hosts still run when it closes", function()
    local lab = net.lab{ name = lab_name() }
    local h = lab:host("h")
    local proc = h:spawn{ "sleep", "60" }
    local pid = proc.pid
    assert.is_true(util.alive(pid))
    lab:close()
    assert.is_false(util.alive(pid))
  end)

  it("leaves nothing behind after close, and refuses to be used again", function()
    local name = lab_name()
    local before_netns = util.run{ "ip", "netns", "list" }
    local before_links = util.run{ "ip", "-j", "link" }
    do
      local lab <close> = net.lab{ name = name }
      local s = lab:switch("s")
      local h1, h2, r = lab:host("h1"), lab:host("h2"), lab:router("r")
      lab:link(h1, s, { rate = "5mbit" })
      lab:link(h2, s)
      lab:link(r, h1)
      assert.truthy(util.run{ "ip", "netns", "list" }:find("lunas-" .. name, 1, true))
    end
    assert.equal(before_netns, util.run{ "ip", "netns", "list" })
    assert.equal(before_links, util.run{ "ip", "-j", "link" })
    local lab = net.lab{ name = name }
    lab:close()
    lab:close()
    local ok, err = pcall(lab.host, lab, "x")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("closed lab", 1, true))
  end)

  it("refuses bad input with a clear error and goes on working", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    local function fails(pattern, f, ...)
      local ok, err = pcall(f, ...)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
      return err
    end
    fails("longer than 15 bytes", lab.link, lab, a, b, { names = { "averyveryverylongname" } })
    fails("bad prefix length in '10.0.0.1/33'", a.addr, a, "lo", "10.0.0.1/33")
    fails("bad address '10.0.0.300/24'", a.addr, a, "lo", "10.0.0.300/24")
    fails("exists already", lab.host, lab, "a")
    fails("cannot be linked to itself", lab.link, lab, a, a)
    fails("a node of this lab expected", lab.link, lab, a, "nosuch")
    fails("unknown parameter 'dealy'", lab.link, lab, a, b, { dealy = "10ms" })
    fails("unknown unit in '10 parsecs'", lab.link, lab, a, b, { rate = "10 parsecs" })
    fails("bad name", lab.host, lab, "no/slash")
    local err = fails("No such device", a.addr, a, "eth7", "10.0.0.1/24")
    assert.equal("ENODEV", err.code)
    assert.truthy(tostring(err):find("net_spec.lua:", 1, true), "error points at the recipe line")
    -- Still fine afterwards.
    lab:link(a, b)
    a:addr("eth0", "10.0.0.1/24")
    b:addr("eth0", "10.0.0.2/24")
    assert.equal(0, ping(a, "10.0.0.2").status)
  end)

  it("draws its topology as DOT, and as SVG through Graphviz", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup, { name = "drawing" })
    local s, h, r = lab:switch("s1"), lab:host("h1"), lab:router("r1")
    lab:link(h, s, { rate = "10mbit" })
    lab:link(r, s)
    h:addr("eth0", "10.0.0.1/24")
    local dot = lab:dot()
    assert.truthy(dot:find('graph "drawing" {', 1, true))
    assert.truthy(dot:find('"h1" [shape=box, label="h1\\neth0 10.0.0.1/24"]', 1, true), dot)
    assert.truthy(dot:find('"r1" [shape=diamond', 1, true))
    assert.truthy(dot:find('"s1" [shape=ellipse', 1, true))
    assert.truthy(dot:find('"h1" -- "s1" [taillabel="eth0", headlabel="s1-h1", label="rate 10mbit"]', 1, true), dot)
    if util.run{ "sh", "-c", "command -v dot" } == "" then
      pending("Graphviz's dot is not installed")
      return
    end
    local svg = lab:svg()
    assert.truthy(svg:find("<svg", 1, true))
    assert.truthy(svg:find(">h1<", 1, true))
  end)

  it("keeps hosts out of /run/netns when asked", function()
    local cleanup = util.cleanups(finally)
    local before = util.run{ "ip", "netns", "list" }
    local lab = new_lab(cleanup, { netns_dir = false })
    local a, b = lab:host("a"), lab:host("b")
    lab:link(a, b)
    a:addr("eth0", "10.0.0.1/24")
    b:addr("eth0", "10.0.0.2/24")
    assert.equal(before, util.run{ "ip", "netns", "list" })
    assert.equal(0, ping(a, "10.0.0.2").status)
  end)
end)

-- What the lab does when something fails: the error that caused a clean-up is the one that surfaces, names are
-- checked before anything is made, and nothing of a failed step stays. Failures the kernel will not produce on
-- demand are injected by replacing a lunas.core function for the length of a test.
describe("lab failures #root", function()
  local errors = require "lunas.errors"
  local lab_record = require "lunas.lab_record"

  local function link_names(path)
    local names = {}
    for _, l in ipairs(ipj(path, "link", "show")) do names[#names + 1] = l.ifname end
    table.sort(names)
    return names
  end

  local function fails(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
    return err
  end

  -- The network namespaces `ip netns` lists, as a set.
  local function ip_netns()
    local names = {}
    for _, ns in ipairs(ipj(nil, "netns")) do names[ns.name] = true end
    return names
  end

  -- The pids ip sees in a named namespace.
  local function pids_in(name)
    return util.words(util.run{ "ip", "netns", "pids", name })
  end

  -- Replaces core[name] until the test ends.
  local function inject(cleanup, name, fn)
    local real = core[name]
    cleanup(function() core[name] = real end)
    core[name] = fn
    return real
  end

  -- Stops the collector until the test ends: a descriptor counted before and after must not be closed by __gc
  -- in between.
  local function no_gc(cleanup)
    collectgarbage("collect")
    collectgarbage("stop")
    cleanup(function() collectgarbage("restart") end)
  end

  -- Our descriptors, and those on a network namespace, as /proc shows them.
  local function fds(kind)
    local out = util.run{ "ls", "-l", "/proc/" .. core.getpid() .. "/fd" }
    local n = 0
    for line in out:gmatch("[^\n]+") do
      if line:find(" -> ", 1, true) and (not kind or line:find(kind, 1, true)) then n = n + 1 end
    end
    return n
  end

  it("refuses a bad name for a link's end before making anything, naming the field", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    local err = fails("lab: link: names[1]: interface name longer than 15 bytes", lab.link, lab, a, b,
      { names = { "a-name-longer-than-15", "eth0" } })
    assert.equal("EINVAL", err.code)
    fails("lab: link: names[2]: interface name longer than 15 bytes", lab.link, lab, a, b,
      { names = { "eth0", "a-name-longer-than-15" } })
    fails("lab: link: names[1]: interface name expected, got number", lab.link, lab, a, b, { names = { 2 } })
    fails("lab: link: names[2]: empty interface name", lab.link, lab, a, b, { names = { "x", "" } })
    for _, bad in ipairs{ ".", "..", "a b", "x/y", "a:1" } do
      fails("lab: link: names[1]: bad interface name", lab.link, lab, a, b, { names = { bad } })
    end
    fails("lab: link: names: table {name_a, name_b} expected", lab.link, lab, a, b, { names = { x = "eth5" } })
    assert.same({ "lo" }, link_names("/run/netns/a"))
    assert.same({ "lo" }, link_names("/run/netns/b"))
    -- Nothing was made and deleted either: the first link is the first interface either namespace ever had.
    lab:link(a, b)
    assert.equal(2, ipj("/run/netns/a", "link", "show", "eth0")[1].ifindex)
    assert.equal(2, ipj("/run/netns/b", "link", "show", "eth0")[1].ifindex)
  end)

  it("refuses a name its host uses already, and never deletes an interface it did not make", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b, c = lab:host("a"), lab:host("b"), lab:host("c")
    lab:link(a, b)
    a:addr("eth0", "10.0.0.1/24")
    b:addr("eth0", "10.0.0.2/24")
    local eth0 = ipj("/run/netns/a", "link", "show", "eth0")[1].ifindex
    local err = fails("lab: link: names[1]: a has an interface named 'eth0' already", lab.link, lab, a, c,
      { names = { "eth0" } })
    assert.equal("EINVAL", err.code)
    -- An index where a name goes does not delete by index.
    fails("lab: link: names[1]: interface name expected", lab.link, lab, a, c, { names = { eth0 } })
    -- A name held by an interface the lab did not make: the kernel refuses it, and that interface stays.
    local out, code = util.run{ "ip", "-n", "a", "link", "add", "x0", "type", "bridge" }
    assert.equal(0, code, out)
    err = fails("File exists", lab.link, lab, a, c, { names = { "x0" } })
    assert.equal("EEXIST", err.code)
    assert.same({ "eth0", "lo", "x0" }, link_names("/run/netns/a"))
    assert.same({ "lo" }, link_names("/run/netns/c"))
    assert.equal(eth0, ipj("/run/netns/a", "link", "show", "eth0")[1].ifindex)
    assert.equal(0, ping(a, "10.0.0.2").status)
    -- The automatic names go round the ones asked for.
    assert.same({ "eth1", "eth0" }, { lab:link(a, c, { names = { "eth1" } }):names() })
    assert.same({ "eth2", "eth1" }, { lab:link(a, c):names() })
    assert.same({ "eth0", "eth1", "eth2", "lo", "x0" }, link_names("/run/netns/a"))
  end)

  it("names a switch port so that it never takes a bridge's name", function()
    local cleanup = util.cleanups(finally)
    local name = lab_name()
    local lab = new_lab(cleanup, { name = name })
    local odd, s1, h1 = lab:switch("s1-h1"), lab:switch("s1"), lab:host("h1")
    lab:link(h1, s1)
    lab:link(h1, odd)
    local fabric = {}
    for _, l in ipairs(ipj("/run/netns/lunas-" .. name, "-d", "link", "show")) do fabric[l.ifname] = l end
    assert.equal("bridge", fabric["s1-h1"].linkinfo.info_kind)
    local ports = {}
    for port, l in pairs(fabric) do
      if l.master then ports[#ports + 1] = l.master end
    end
    table.sort(ports)
    assert.same({ "s1", "s1-h1" }, ports)
  end)

  it("refuses to link a host whose set-up failed, and makes nothing", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local b = lab:host("b")
    local real = inject(cleanup, "netlink", function() return nil, "netlink: injected failure", "ENOBUFS" end)
    fails("netlink: injected failure", lab.host, lab, "broken")
    core.netlink = real
    fails("lab: link: first node: broken was not set up", lab.link, lab, "broken", b)
    assert.same({ "lo" }, link_names("/run/netns/b"))
    assert.same({ "lo" }, link_names("/run/netns/broken"))
  end)

  it("checks a link's impairments before making it", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    fails("lab: link: rate: unknown unit in '10 parsecs'", lab.link, lab, a, b, { rate = "10 parsecs" })
    fails("lab: link: rate: bad value 'fast'", lab.link, lab, a, b, { rate = "fast" })
    fails("lab: link: rate: at least 477bit expected", lab.link, lab, a, b, { rate = "100bit" })
    fails("lab: link: delay: number or string like \"10ms\" expected, got table", lab.link, lab, a, b,
      { delay = {} })
    fails("lab: link: delay: non-negative value expected", lab.link, lab, a, b, { delay = -5 })
    fails("lab: link: jitter: jitter needs a delay", lab.link, lab, a, b, { jitter = "5ms" })
    fails("lab: link: reorder: reordering needs a delay", lab.link, lab, a, b, { reorder = 10 })
    fails("lab: link: loss: more than 100%", lab.link, lab, a, b, { loss = 150 })
    fails("lab: link: limit: queue length in packets", lab.link, lab, a, b, { delay = "1ms", limit = 0 })
    fails("lab: link: mtu: integer 68-65535 expected, got 20", lab.link, lab, a, b, { mtu = 20 })
    assert.same({ "lo" }, link_names("/run/netns/a"))
    local link = lab:link(a, b, { rate = "10mbit", mtu = 1400 })
    assert.equal(2, ipj("/run/netns/a", "link", "show", "eth0")[1].ifindex)
    assert.equal(1400, ipj("/run/netns/b", "link", "show", "eth0")[1].mtu)
    assert.same({ rate = "10mbit" }, link.params)
  end)

  it("leaves a link as it was when a change is refused", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local a, b = lab:host("a"), lab:host("b")
    local link = lab:link(a, b, { rate = "10mbit" })
    fails("lab: link:set: rate: bad value 'fast'", link.set, link, { rate = "fast" })
    fails("lab: link:set: jitter: jitter needs a delay", link.set, link, { jitter = "5ms" })
    fails("lab: link:set: mtu: integer 68-65535 expected", link.set, link, { mtu = 1e6 })
    assert.same({ rate = "10mbit" }, lab:describe().links[1].params)
    local qdisc = json.decode(util.run{ "tc", "-n", "a", "-j", "qdisc", "show", "dev", "eth0" })[1]
    assert.equal("tbf", qdisc.kind)
    assert.equal(10000000 // 8, qdisc.options.rate)
    link:set{ rate = "20mbit" }
    assert.same({ rate = "20mbit" }, lab:describe().links[1].params)
  end)

  it("checks what attach is given before reserving a port", function()
    local cleanup = util.cleanups(finally)
    local name = lab_name()
    local lab = new_lab(cleanup, { name = name })
    local s = lab:switch("s")
    local ns = assert(core.ns_create("net"))
    cleanup(function() ns:close() end)
    local fabric = "/run/netns/lunas-" .. name
    local before = link_names(fabric)
    fails("lab: attach: name: interface name longer than 15 bytes", lab.attach, lab, s, ns,
      { name = "averyveryverylongname" })
    fails("lab: attach: name: interface name expected, got number", lab.attach, lab, s, ns, { name = 5 })
    fails("lab: attach: netns: a namespace handle, path or pid expected, got nil", lab.attach, lab, s, nil)
    fails("lab: attach: netns: a namespace handle, path or pid expected, got boolean", lab.attach, lab, s, true)
    local err = fails("No such file", lab.attach, lab, s, "/nonexistent/netns")
    assert.equal("ENOENT", err.code)
    assert.same(before, link_names(fabric))
    -- Every name the lab holds for the fabric is there: a refused attach reserved none.
    local present = {}
    for _, n in ipairs(link_names(fabric)) do present[n] = true end
    for n in pairs(lab.fabric_names) do assert.truthy(present[n], n .. " reserved but not in the fabric") end
    local port = lab:attach(s, ns, { name = "up0" })
    assert.truthy(present[port] == nil and port:find("^s%-a%d+$"), port)
    local nl = assert(core.netlink(ns))
    cleanup(function() nl:close() end)
    assert.truthy(nl:link_get("up0"))
  end)

  it("checks run's timeout before starting anything", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local h = lab:host("h")
    fails("lab: h:run: timeout: non-negative number of seconds expected, got soon", h.run, h,
      { "sleep", "30", timeout = "soon" })
    fails("lab: h:run: timeout: non-negative number of seconds expected, got -1", h.run, h,
      { "sleep", "30", timeout = -1 })
    fails("lab: h:spawn: env: table expected, got string", h.spawn, h, { "sleep", "30", env = "X=1" })
    assert.same({}, pids_in("h"))
    assert.is_true(h:run{ "sleep", "5", timeout = 0.1 }.timed_out)
  end)

  it("tears everything down when the handle a host's spawn returned was closed", function()
    local name = lab_name()
    local lab = net.lab{ name = name }
    finally(function() pcall(lab.close, lab) end)
    local h1, h2 = lab:host("h1"), lab:host("h2")
    lab:link(h1, h2)
    local closed, running, reaped = h1:spawn{ "sleep", "60" }, h2:spawn{ "sleep", "60" }, h2:spawn{ "true" }
    local pids = { closed.pid, running.pid, reaped.pid }
    closed:close()
    reaped:wait()
    assert.truthy(ip_netns().h1)
    lab:close()
    for _, pid in ipairs(pids) do assert.is_nil(core.file_type("/proc/" .. pid), "pid " .. pid .. " left") end
    local left = ip_netns()
    assert.is_nil(left.h1)
    assert.is_nil(left.h2)
    assert.is_nil(left["lunas-" .. name])
    assert.is_nil(core.file_type(lab_record.DIR .. "/" .. name))
    assert.equal("process " .. pids[2] .. " (closed)", tostring(running))
  end)

  it("surfaces the error that ended a <close> scope, with the teardown's failure attached", function()
    local cleanup = util.cleanups(finally)
    local name = lab_name()
    local unpersist
    unpersist = inject(cleanup, "unpersist", function(path)
      if path == "/run/netns/h1" then return nil, "unpersist /run/netns/h1: injected failure", "EBUSY" end
      return unpersist(path)
    end)
    cleanup(function()
      unpersist("/run/netns/h1")
      lab_record.remove(name)
    end)
    local ok, err = pcall(function()
      local lab <close> = net.lab{ name = name }
      lab:host("h1")
      lab:host("h2")
      errors.raise{ msg = "the recipe's own failure" }
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err), tostring(err))
    assert.equal("the recipe's own failure", err.msg)
    local attached = "\n  (then clean-up failed: lab: close: unpersist /run/netns/h1: injected failure)"
    assert.truthy(tostring(err):find(attached, 1, true), tostring(err))
    -- The rest of the teardown went on.
    local left = ip_netns()
    assert.is_nil(left.h2)
    assert.is_nil(left["lunas-" .. name])
  end)

  it("keeps the reason a lab could not be built when its teardown fails too", function()
    local cleanup = util.cleanups(finally)
    local name = lab_name()
    local unpersist = inject(cleanup, "unpersist", function(path)
      return nil, "unpersist " .. path .. ": injected failure", "EBUSY"
    end)
    local netlink = inject(cleanup, "netlink", function() return nil, "netlink: injected failure", "ENOBUFS" end)
    cleanup(function()
      unpersist("/run/netns/lunas-" .. name)
      lab_record.remove(name)
    end)
    local ok, err = pcall(net.lab, { name = name })
    core.unpersist, core.netlink = unpersist, netlink
    assert.is_false(ok)
    assert.equal("ENOBUFS", err.code)
    assert.equal("lab: netlink: injected failure", err.msg)
    assert.truthy(tostring(err):find("then clean-up failed: lab: close: unpersist /run/netns/lunas-" .. name, 1, true),
      tostring(err))
  end)

  it("ends what it started when it cannot come back from a host's namespace, keeping the first failure", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local h = lab:host("h")
    local home = assert(core.ns_open("net"))
    local calls = 0
    local setns, spawn
    setns = inject(cleanup, "setns", function(ns, ...)
      calls = calls + 1
      -- Every second call is the way back: refused (the test goes back itself).
      if calls % 2 == 0 then return nil, "setns: injected failure", "EPERM" end
      return setns(ns, ...)
    end)
    cleanup(function()
      setns(home)
      home:close()
    end)
    local started
    spawn = inject(cleanup, "spawn", function(o)
      local p, msg, code = spawn(o)
      started = p and p.pid
      return p, msg, code
    end)
    local ok, err = pcall(h.spawn, h, { "sleep", "60" })
    assert(setns(home))
    assert.is_false(ok)
    assert.equal("EPERM", err.code)
    assert.truthy(err.msg:find("setns: injected failure", 1, true), err.msg)
    assert.truthy(started)
    assert.is_nil(core.file_type("/proc/" .. started), "the process it started is left")
    core.spawn = function() return nil, "spawn: injected failure", "EAGAIN" end
    ok, err = pcall(h.run, h, { "true" })
    assert(setns(home))
    assert.is_false(ok)
    assert.equal("EPERM", err.code)
    assert.truthy(err.msg:find("setns: injected failure", 1, true), err.msg)
    assert.equal("lab: spawn: injected failure", err.cause.msg)
  end)

  it("reports why a namespace could not be persisted, even when the journal cannot take the failure", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local note = getmetatable(lab.record).note
    cleanup(function() lab.record.note = nil end)
    lab.record.note = function(self, entry)
      if entry.failed then error("journal: injected failure", 0) end
      return note(self, entry)
    end
    local persist = inject(cleanup, "persist", function()
      return nil, "persist /run/netns/h: injected failure", "ENOSPC"
    end)
    no_gc(cleanup)
    local before = fds("net:[")
    local err = fails("lab: persist /run/netns/h: injected failure", lab.host, lab, "h")
    core.persist, lab.record.note = persist, nil
    assert.equal("ENOSPC", err.code)
    assert.truthy(tostring(err):find("then clean-up failed: journal: injected failure", 1, true), tostring(err))
    assert.equal(before, fds("net:["), "the namespace's descriptor is left open")
    lab:host("h")
  end)

  it("ends a process it could not write down in its record", function()
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    local h = lab:host("h")
    local note = getmetatable(lab.record).note
    cleanup(function() lab.record.note = nil end)
    lab.record.note = function(self, entry)
      if entry.process then error("journal: injected failure", 0) end
      return note(self, entry)
    end
    local started
    local spawn
    spawn = inject(cleanup, "spawn", function(o)
      local p, msg, code = spawn(o)
      started = p and p.pid
      return p, msg, code
    end)
    fails("journal: injected failure", h.spawn, h, { "sleep", "60" })
    assert.truthy(started)
    assert.is_nil(core.file_type("/proc/" .. started), "the unrecorded process is left running")
    assert.same({}, pids_in("h"))
  end)

  it("leaves no temporary record when a lab's journal cannot be started", function()
    local cleanup = util.cleanups(finally)
    local other = new_lab(cleanup)
    local Record = getmetatable(other.record)
    local note = Record.note
    cleanup(function() Record.note = note end)
    local name = lab_name()
    Record.note = function(self, entry)
      if entry.lab == name then error("journal: injected failure", 0) end
      return note(self, entry)
    end
    no_gc(cleanup)
    local before = fds()
    fails("journal: injected failure", net.lab, { name = name })
    Record.note = note
    assert.is_nil(core.file_type(("%s/.%s.%d"):format(lab_record.DIR, name, core.getpid())))
    assert.is_nil(core.file_type(lab_record.DIR .. "/" .. name))
    assert.equal(before, fds())
  end)

  it("gc goes on past a stale lab it cannot remove, and names it", function()
    local cleanup = util.cleanups(finally)
    local dead = assert(core.spawn{ fn = function() core.exit(0) end })
    dead:wait()
    dead:close()
    local bad, good = "a" .. lab_name(), "b" .. lab_name()
    local file = "/run/netns/" .. good .. "h"
    cleanup(function()
      os.remove(file)
      lab_record.remove(bad)
      lab_record.remove(good)
    end)
    core.mkdir(lab_record.ROOT)
    core.mkdir(lab_record.DIR)
    local function record(name, ...)
      assert(core.mkdir(lab_record.DIR .. "/" .. name))
      local lines = { json.encode{ lab = name, pid = dead.pid, start = "1", created = os.time(),
        netns_dir = "/run/netns", fabric = "/run/netns/lunas-" .. name } }
      for _, entry in ipairs{ ... } do lines[#lines + 1] = json.encode(entry) end
      util.write(lab_record.DIR .. "/" .. name .. "/journal", table.concat(lines, "\n") .. "\n")
    end
    record(bad, { netns = { 1, 2 } }, { cgroup = 5 }, { process = { pid = "x" } })
    record(good, { netns = file })
    util.write(file, "")
    local ok, err = pcall(net.gc)
    assert.is_false(ok)
    assert.truthy(err.msg:find("lab: gc: 1 of the stale labs could not be removed: lab: down " .. bad
      .. ": the record names a bad namespace path (a table)", 1, true), err.msg)
    assert.same({ good }, err.report.removed)
    assert.equal(bad, err.report.failed[1].name)
    assert.is_nil(core.file_type(file))
    assert.is_nil(core.file_type(lab_record.DIR .. "/" .. good))
    assert.equal("dir", core.file_type(lab_record.DIR .. "/" .. bad))
  end)

  it("draws nothing and leaves nothing open when dot cannot be started", function()
    if util.run{ "sh", "-c", "command -v dot" } == "" then
      pending("Graphviz's dot is not installed")
      return
    end
    local cleanup = util.cleanups(finally)
    local lab = new_lab(cleanup)
    lab:host("h")
    local function temporary_files()
      local n = 0
      for _, entry in ipairs(core.listdir("/tmp") or {}) do
        if entry:find("^lua_") then n = n + 1 end
      end
      return n
    end
    inject(cleanup, "spawn", function() error("spawn: injected failure", 0) end)
    no_gc(cleanup)
    local before, before_files = fds(), temporary_files()
    fails("spawn: injected failure", lab.svg, lab)
    assert.equal(before, fds())
    assert.equal(before_files, temporary_files())
  end)
end)

describe("lab in a user namespace #rootless", function()
  it("builds hosts and links for an unprivileged user and pings across", function()
    if not kernel.requires("userns") then return end
    local ids = core.ids()
    local proc = assert(core.spawn{ flags = "user,net", fn = function()
      local ok, err = pcall(function()
        assert(core.id_maps(0, { uid = { { 0, ids.euid, 1 } }, gid = { { 0, ids.egid, 1 } },
          setgroups = "deny" }))
        local lab <close> = net.lab{ name = "rootless" }
        local a, b, s = lab:host("a"), lab:host("b"), lab:switch("s")
        lab:link(a, s)
        lab:link(b, s)
        a:addr("eth0", "10.0.0.1/24")
        b:addr("eth0", "10.0.0.2/24")
        local result = a:run{ "ping", "-c1", "-W2", "10.0.0.2", capture = true }
        assert(result.status == 0, result.stdout)
      end)
      if not ok then io.stderr:write(tostring(err), "\n") end
      core.exit(ok and 0 or 1)
    end })
    local result = proc:wait(30)
    proc:close()
    assert.equal(0, result.status)
  end)
end)
