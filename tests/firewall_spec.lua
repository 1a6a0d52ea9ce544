-- lunas.firewall, the sandbox's firewall and egress (net = "nat" / "pasta"), host:firewall in labs and lunas
-- run's --net/--allow-out/--deny-out/--firewall. Everything stays inside namespaces these tests make: a fake
-- "internet" namespace (203.0.113.1 on its lo, servers on ports 8080 and 9090) joined to the test's own network
-- namespace by a veth and a default route. Assertions come from outside: `nft -j` in the sandbox's namespace,
-- `ip -j`, /proc/sys, and real connections (answered, refused, or timed out).
local lunas = require "lunas"
local core = require "lunas.core"
local firewall = require "lunas.firewall"
local net = require "lunas.net"
local json = require "dkjson"
local kernel = require "support.kernel"
local util = require "support.util"

local FAR = "203.0.113.1"
local serial = 0

-- The client run inside sandboxes: one line per port, "PORT ok DATA", "PORT refused" or "PORT timeout".
local CLIENT = [[
import socket, sys
for port in sys.argv[2:]:
    try:
        s = socket.create_connection((sys.argv[1], int(port)), timeout=2)
        print(port, "ok", s.recv(100).decode().strip())
    except socket.timeout:
        print(port, "timeout")
    except ConnectionRefusedError:
        print(port, "refused")
    except OSError as e:
        print(port, "error", e.errno)
sys.stdout.flush()
]]
local PYTHON = "/usr/bin/python3"

local function client_argv(...)
  return { PYTHON, "-c", CLIENT, FAR, ... }
end

local function sh(cmd)
  local out, code = util.run({ "/bin/sh", "-c", cmd })
  assert(code == 0, cmd .. ": " .. out)
  return out
end

-- The fake internet: returns its description; the cleanup removes all of it.
local function internet(cleanup)
  serial = serial + 1
  local name = ("fwi%d_%d"):format(core.getpid() % 100000, serial)
  local up = ("fwu%d"):format(serial)
  cleanup(function()
    os.execute("ip netns del " .. name .. " 2>/dev/null; ip link del " .. up .. " 2>/dev/null; ip route del default via 198.51.100.2 2>/dev/null")
  end)
  sh(("ip netns add %s && ip link add %s type veth peer name eth0 netns %s"):format(name, up, name))
  sh(("ip addr add 198.51.100.1/24 dev %s && ip link set %s up && ip link set lo up"):format(up, up))
  sh(("ip -n %s link set lo up && ip -n %s link set eth0 up && ip -n %s addr add 198.51.100.2/24 dev eth0"
    .. " && ip -n %s addr add %s/32 dev lo"):format(name, name, name, name, FAR))
  sh("ip route replace default via 198.51.100.2")
  for _, s in ipairs{ { 8080, "hello" }, { 9090, "other" } } do
    local proc = assert(core.spawn{ argv = { "ip", "netns", "exec", name, "busybox", "nc", "-ll", "-p",
      tostring(s[1]), "-e", "/bin/echo", s[2] } })
    cleanup(function()
      proc:kill("KILL")
      proc:wait(5)
      proc:close()
    end)
  end
  -- listening?
  assert(util.wait_for(function()
    local out = util.run{ "ip", "netns", "exec", name, "busybox", "netstat", "-ltn" }
    return out:find(":9090", 1, true) and out:find(":8080", 1, true)
  end, 5), "the fake internet's servers did not start")
  return { name = name, up = up }
end

-- Runs a sandbox to its end; returns its output (stdout and stderr) and result.
local function capture(spec)
  local r, w = core.pipe()
  spec.stdout, spec.stderr = w, w
  local ok, result = pcall(function() return lunas.sandbox(spec):run() end)
  w:close()
  local out = util.drain(r)
  r:close()
  if not ok then error(result, 0) end
  return out, result
end

local function outcome(out, port)
  return out:match("\n?" .. port .. " (%a+)")
end

local function by_name(list)
  local t = {}
  for _, c in ipairs(list) do t[c.name] = c end
  return t
end

-- nft -j list counters / table inside the network namespace of a pid.
local function nft_json(pid, what)
  local argv = { "nsenter", "--net=/proc/" .. pid .. "/ns/net", "nft", "-j", "list" }
  if what == "counters" then argv[#argv + 1] = "counters" end
  for _, w in ipairs{ "table", "inet", "lunas_fw" } do argv[#argv + 1] = w end
  local out, code = util.run(argv, { stderr = false })
  if code ~= 0 then return nil end
  return json.decode(out)
end

local function nft_counters(doc)
  local t = {}
  for _, item in ipairs(doc.nftables) do
    if item.counter then t[item.counter.name] = { packets = item.counter.packets, bytes = item.counter.bytes } end
  end
  return t
end

local function have_python()
  return core.file_type(PYTHON) == "link" or core.file_type(PYTHON) == "file"
end

local function pasta_processes()
  local n = 0
  for _, entry in ipairs(core.listdir("/proc")) do
    if entry:match("^%d+$") then
      local cmd = util.read("/proc/" .. entry .. "/cmdline") or ""
      if cmd:match("^[^%z]*pasta%z") and cmd:find("lunas-pasta-", 1, true) and util.alive(tonumber(entry)) then n = n + 1 end
    end
  end
  return n
end

local function lunas_tables()
  local out = util.run({ "nft", "-j", "list", "tables" }, { stderr = false })
  local names = {}
  for _, item in ipairs((json.decode(out) or { nftables = {} }).nftables) do
    if item.table and item.table.name:match("^lunas_") then names[#names + 1] = item.table.name end
  end
  return names
end

local function nat_links()
  local names = {}
  for _, l in ipairs(json.decode(util.run({ "ip", "-j", "link" }, { stderr = false })) or {}) do
    if l.ifname:match("^lnat") then names[#names + 1] = l.ifname end
  end
  return names
end

local function without_default_route()
  local out = util.run({ "ip", "-j", "route", "show", "default" }, { stderr = false })
  if #(json.decode(out) or {}) > 0 then pending("needs a test namespace without a default route") end
end

-- ---- the rule language ------------------------------------------------------------------------------------

describe("lunas.firewall rules #rootless", function()
  local function rejects(rules, field, text)
    local ok, err = pcall(firewall.compile, rules)
    assert.is_false(ok, "accepted: " .. field)
    local msg = tostring(err)
    assert.truthy(msg:find("firewall." .. field, 1, true), msg)
    if text then assert.truthy(msg:find(text, 1, true), msg) end
  end
  local function rule(extra)
    local r = { direction = "out", action = "allow" }
    for k, v in pairs(extra) do r[k] = v end
    return { rules = { { direction = "in", action = "drop" }, { direction = "out", action = "drop" }, r } }
  end

  it("names the bad field of a misused rule set", function()
    rejects({ outptu = "drop" }, "outptu")
    rejects({ output = "maybe" }, "output")
    rejects(rule{ direction = "up" }, "rules[3].direction")
    rejects(rule{ action = "permit" }, "rules[3].action")
    rejects(rule{ proto = "sctp" }, "rules[3].proto")
    rejects(rule{ port = 80 }, "rules[3].port", "tcp")
    rejects(rule{ proto = "tcp", port = 70000 }, "rules[3].port")
    rejects(rule{ proto = "tcp", port = "90-80" }, "rules[3].port")
    rejects(rule{ proto = "tcp", port = { 80, "x" } }, "rules[3].port[2]")
    rejects(rule{ to = "10.0.0.256" }, "rules[3].to[1]")
    rejects(rule{ to = "10.0.0.0/33" }, "rules[3].to[1]")
    rejects(rule{ to = "fd00::1::2" }, "rules[3].to[1]")
    rejects(rule{ to = { "10.0.0.1", "fd00:::1" } }, "rules[3].to[2]")
    rejects(rule{ proto = "icmp", to = "fd00::1" }, "rules[3].proto")
    rejects(rule{ to = "10.0.0.1", from = "fd00::1" }, "rules[3]", "no address family")
    rejects(rule{ iif = "eth0" }, "rules[3].iif")
    rejects(rule{ colour = "red" }, "rules[3]", "colour")
    rejects({ rules = { { direction = "out", action = "drop", name = "x" }, { direction = "in", action = "drop", name = "x" } } },
      "rules[2].name", "rules[1]")
    rejects(rule{ name = "policy_output" }, "rules[3].name")
  end)

  it("refuses host names instead of resolving them", function()
    rejects(rule{ to = "example.com" }, "rules[3].to[1]", "host name")
    rejects(rule{ from = { "10.0.0.1", "localhost" } }, "rules[3].from[2]", "host name")
  end)

  it("lets nothing the caller gives reach the nftables text unchecked", function()
    local injections = {
      rule{ name = 'x" accept; #' }, rule{ name = "x\naccept" }, rule{ log = 'p" accept' }, rule{ log = "p\n" },
      rule{ log = "p\\" }, rule{ oif = 'eth0" accept' }, rule{ oif = "e th0" }, rule{ to = "10.0.0.1; accept" },
      rule{ to = "10.0.0.1 }" }, rule{ proto = "tcp", port = "80; accept" }, rule{ proto = "tcp", port = 1.5 },
      { output = { action = "drop", log = '"' } },
    }
    for i, r in ipairs(injections) do
      local ok = pcall(firewall.compile, r)
      assert.is_false(ok, "injection " .. i .. " accepted")
    end
  end)

  it("compiles to one table replaced in one transaction, with a counter per rule and per policy", function()
    local text = firewall.compile{ output = "drop", rules = {
      { direction = "out", proto = "tcp", to = { "10.0.0.0/8", "[fd00::1]" }, port = { 80, "8000-8080" },
        action = "allow", name = "web", log = true },
      { direction = "in", proto = "icmpv6", action = "drop" },
    } }
    local lines = util.lines(text)
    assert.equal("table inet lunas_fw", lines[1])
    assert.equal("delete table inet lunas_fw", lines[2])
    assert.truthy(text:find('counter web { comment "out allow" }', 1, true))
    assert.truthy(text:find('counter rule_2 { comment "in drop" }', 1, true))
    for _, p in ipairs{ "policy_input", "policy_output", "policy_forward" } do
      assert.truthy(text:find("counter " .. p .. " {", 1, true), p)
    end
    -- one rule per family when the rule names addresses of both
    local _, web = text:gsub('counter name "web"', "")
    assert.equal(2, web)
    assert.truthy(text:find("ip6 daddr fd00::1", 1, true))
  end)

  it("the sandbox field refuses a firewall without a network namespace of its own", function()
    local ok, err = pcall(lunas.sandbox, { argv = { "true" }, net = "host", firewall = {} })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("field 'firewall'", 1, true), tostring(err))
    ok, err = pcall(lunas.sandbox, { argv = { "true" }, firewall = { rules = { { direction = "out", action = "allow", to = "x.example" } } } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("field 'firewall.rules[1].to[1]'", 1, true), tostring(err))
  end)
end)

describe("sandbox firewall without root #rootless", function()
  -- A server and its client in the sandbox itself: no network but lo is needed, and loopback = false puts lo
  -- under the rules too.
  local SELF_CONNECT = [[
import socket
srv = socket.socket(); srv.bind(("127.0.0.1", 7070)); srv.listen(1)
try:
    socket.create_connection(("127.0.0.1", 7070), timeout=1); print("7070 ok")
except socket.timeout:
    print("7070 timeout")
except ConnectionRefusedError:
    print("7070 refused")
]]
  it("applies the rules in the sandbox's namespace, whoever runs it, and the counters come back", function()
    if not have_python() then pending("needs " .. PYTHON) end
    local open_out = capture{ argv = { PYTHON, "-c", SELF_CONNECT } }
    assert.equal("ok", outcome(open_out, 7070), open_out)
    local out, result = capture{ argv = { PYTHON, "-c", SELF_CONNECT }, firewall = { loopback = false,
      rules = { { direction = "out", proto = "tcp", to = "127.0.0.1", port = 7070, action = "drop", name = "blocked" } } } }
    assert.equal("timeout", outcome(out, 7070), out)
    local c = by_name(assert(result.firewall, "no counters in the result"))
    assert.is_true(c.blocked.packets >= 1)
    assert.same({ "out", "drop" }, { c.blocked.direction, c.blocked.action })
    out, result = capture{ argv = { PYTHON, "-c", SELF_CONNECT }, firewall = { loopback = false,
      rules = { { direction = "out", proto = "tcp", port = 7070, action = "reject", name = "refused" } } } }
    assert.equal("refused", outcome(out, 7070), out)
    assert.equal(1, by_name(result.firewall).refused.packets)
  end)

  it("matches addresses by family: a rule on [::1] refuses IPv6 and leaves IPv4 alone", function()
    if not have_python() then pending("needs " .. PYTHON) end
    local both = [[
import socket
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam); srv.bind((addr, 7070)); srv.listen(1)
    c = socket.socket(fam); c.settimeout(1)
    try:
        c.connect((addr, 7070)); print(addr, "ok")
    except socket.timeout:
        print(addr, "timeout")
    except ConnectionRefusedError:
        print(addr, "refused")
]]
    local out, result = capture{ argv = { PYTHON, "-c", both }, firewall = { loopback = false, rules = {
      { direction = "out", proto = "tcp", to = "[::1]", port = 7070, action = "reject", name = "v6" } } } }
    assert.truthy(out:find("127.0.0.1 ok", 1, true), out)
    assert.truthy(out:find("::1 refused", 1, true), out)
    assert.equal(1, by_name(result.firewall).v6.packets)
  end)

  it("cannot be removed by the payload, unless the spec leaves it CAP_NET_ADMIN", function()
    if not have_python() then pending("needs " .. PYTHON) end
    if core.file_type("/usr/sbin/nft") == nil then pending("needs nft") end
    local script = "nft delete table inet lunas_fw 2>&1 && echo removed; " .. PYTHON .. ' -c "$0"'
    local fw = { loopback = false, rules = { { direction = "out", proto = "tcp", port = 7070, action = "reject" } } }
    -- the attack, where the protection is off: with CAP_NET_ADMIN kept, the payload drops its firewall
    local out = capture{ argv = { "/bin/sh", "-c", script, SELF_CONNECT }, firewall = fw, caps = { "CAP_NET_ADMIN" } }
    assert.truthy(out:find("removed", 1, true), out)
    assert.equal("ok", outcome(out, 7070), out)
    -- by default every capability is gone before the payload runs: the table stays, the port stays refused
    out = capture{ argv = { "/bin/sh", "-c", script, SELF_CONNECT }, firewall = fw }
    assert.falsy(out:find("removed", 1, true), out)
    assert.equal("refused", outcome(out, 7070), out)
  end)
end)

-- ---- sandboxes --------------------------------------------------------------------------------------------

describe("sandbox firewall #root", function()
  it("is one nftables table in the sandbox's namespace, whose counters lunas reads as nft lists them", function()
    if not have_python() then pending("needs " .. PYTHON) end
    local cleanup = util.cleanups(finally)
    internet(cleanup)
    local r, w = core.pipe()
    cleanup(function() r:close() end)
    local running = lunas.sandbox{ net = "nat", stdout = w, stderr = w,
      argv = { "/bin/sh", "-c", PYTHON .. ' -c "$0" ' .. FAR .. " 8080 9090; echo done; exec sleep 60", CLIENT },
      firewall = { rules = {
        { direction = "out", proto = "tcp", to = FAR, port = 8080, action = "allow", name = "web" },
        { direction = "out", proto = "tcp", to = FAR, port = 9090, action = "reject", name = "refused" },
      } } }:spawn()
    cleanup(function() running:close() end)
    w:close()
    local out = ""
    assert(util.wait_for(function()
      if #core.poll({ r }, 0.2) > 0 then out = out .. (r:read(4096) or "") end
      return out:find("done", 1, true)
    end, 15), "the client did not finish: " .. out)
    assert.equal("ok", outcome(out, 8080), out)
    assert.equal("refused", outcome(out, 9090), out)

    local doc = assert(nft_json(running.pid, "table"), "no table inet lunas_fw in the sandbox's namespace")
    local chains = {}
    for _, item in ipairs(doc.nftables) do
      if item.chain then chains[item.chain.name] = item.chain end
    end
    assert.same({ "filter", "output", "accept" }, { chains.output.type, chains.output.hook, chains.output.policy })
    assert.same({ "filter", "input", "accept" }, { chains.input.type, chains.input.hook, chains.input.policy })
    local listed = nft_counters(assert(nft_json(running.pid, "counters")))
    local mine = by_name(running:firewall_counters())
    for name, c in pairs(listed) do
      assert.equal(c.packets, mine[name].packets, name)
      assert.equal(c.bytes, mine[name].bytes, name)
    end
    -- one SYN each: the rest of the allowed connection is established traffic; the refused one is one SYN
    assert.equal(1, mine.web.packets)
    assert.equal(1, mine.refused.packets)
    assert.same({ "out", "reject" }, { mine.refused.direction, mine.refused.action })
    -- and the table is not in the test's own namespace
    for _, t in ipairs(lunas_tables()) do assert.not_equal("lunas_fw", t) end
  end)

  it("stops the attack it is there for: without it the payload reaches the forbidden port, with it not", function()
    if not have_python() then pending("needs " .. PYTHON) end
    local cleanup = util.cleanups(finally)
    internet(cleanup)
    local open_out = capture{ net = "nat", argv = client_argv("8080", "9090") }
    assert.equal("ok", outcome(open_out, 9090), open_out)
    assert.equal("ok", outcome(open_out, 8080), open_out)
    local out, result = capture{ net = "nat", argv = client_argv("8080", "9090"), firewall = { output = "drop",
      rules = { { direction = "out", proto = "tcp", to = FAR, port = 8080, action = "allow", name = "web" } } } }
    assert.equal("ok", outcome(out, 8080), out)
    assert.equal("timeout", outcome(out, 9090), out)
    local c = by_name(result.firewall)
    assert.equal(1, c.web.packets)
    assert.is_true(c.policy_output.packets >= 1)
    assert.same({ "out", "drop" }, { c.policy_output.direction, c.policy_output.action })
  end)
end)

describe("net = 'nat' #root", function()
  it("reaches the far side through a veth and a masquerade, and leaves nothing behind", function()
    if not have_python() then pending("needs " .. PYTHON) end
    local cleanup = util.cleanups(finally)
    local inet = internet(cleanup)
    local key = "/proc/sys/net/ipv4/conf/" .. inet.up .. "/forwarding"
    assert.equal("0", util.read(key):match("%d"))
    local r, w = core.pipe()
    cleanup(function() r:close() end)
    local running = lunas.sandbox{ net = "nat", stdout = w, stderr = w,
      argv = { "/bin/sh", "-c", "ip -j addr show eth0; ip -j route; echo done; exec sleep 60" } }:spawn()
    cleanup(function() running:close() end)
    w:close()
    local out = ""
    assert(util.wait_for(function()
      if #core.poll({ r }, 0.2) > 0 then out = out .. (r:read(4096) or "") end
      return out:find("done", 1, true)
    end, 10), out)
    -- from outside: our end of the pair, the masquerade table, forwarding on both interfaces
    local link = "lnat" .. running.pid
    assert.same({ link }, nat_links())
    assert.same({ "lunas_nat_" .. running.pid }, lunas_tables())
    assert.equal("1", util.read("/proc/sys/net/ipv4/conf/" .. link .. "/forwarding"):match("%d"))
    assert.equal("1", util.read(key):match("%d"))
    assert.equal("0", util.read("/proc/sys/net/ipv4/ip_forward"):match("%d"))
    local addr = out:match('"local":"(10%.213%.%d+%.%d+)"')
    assert.truthy(addr, out)
    assert.truthy(out:find('"dst":"default","gateway":"10.213.', 1, true), out)
    running:close()
    assert.same({}, nat_links())
    assert.same({}, lunas_tables())
    assert.equal("0", util.read(key):match("%d"), "forwarding on the uplink was not put back")

    local traffic = capture{ net = "nat", argv = client_argv("8080") }
    assert.equal("ok", outcome(traffic, 8080), traffic)
    assert.same({}, nat_links())
    assert.same({}, lunas_tables())
  end)

  it("puts the uplink's forwarding back when the last of several nat sandboxes ends, not before", function()
    local cleanup = util.cleanups(finally)
    local inet = internet(cleanup)
    local key = "/proc/sys/net/ipv4/conf/" .. inet.up .. "/forwarding"
    local first = lunas.sandbox{ net = "nat", argv = { "sleep", "60" } }:spawn()
    cleanup(function() first:close() end)
    local second = lunas.sandbox{ net = "nat", argv = { "sleep", "60" } }:spawn()
    cleanup(function() second:close() end)
    assert.equal(2, #nat_links())
    assert.equal("1", util.read(key):match("%d"))
    -- the one that turned it on ends first: the other still needs it
    first:close()
    assert.equal("1", util.read(key):match("%d"))
    second:close()
    assert.equal("0", util.read(key):match("%d"))
    assert.same({}, nat_links())
    assert.same({}, core.listdir("/run/lunas/nat") or {})
  end)

  it("lunas gc removes what a killed lunas left: the masquerade table, the forwarding it turned on", function()
    local cleanup = util.cleanups(finally)
    local inet = internet(cleanup)
    local key = "/proc/sys/net/ipv4/conf/" .. inet.up .. "/forwarding"
    local dir, remove = util.tmpdir()
    cleanup(remove)
    util.write(dir .. "/nat.lua", 'local r = require("lunas").sandbox{ net = "nat", argv = { "sleep", "60" } }:spawn()\n'
      .. 'print("up") io.stdout:flush() local wait_r, wait_w = require("lunas.core").pipe() wait_r:read()\n')
    local out = dir .. "/out"
    local proc = util.start_lunas({ dir .. "/nat.lua" }, out)
    cleanup(function() proc:kill("KILL") proc:wait(5) proc:close() end)
    assert(util.wait_for(function() return (util.read(out) or ""):find("up", 1, true) end, 10), "the recipe did not start")
    assert.equal(1, #lunas_tables())
    proc:kill("KILL")
    proc:wait(5)
    -- the sandbox died with lunas (die_with_parent), its namespace and veth with it; the table stays
    assert(util.wait_for(function() return #nat_links() == 0 end, 10), "the veth outlived its sandbox")
    assert.equal(1, #lunas_tables())
    assert.equal("1", util.read(key):match("%d"))
    local text, code = util.lunas{ "gc" }
    assert.equal(0, code, text)
    assert.truthy(text:find("removed nftables table inet lunas_nat_", 1, true), text)
    assert.same({}, lunas_tables())
    assert.equal("0", util.read(key):match("%d"))
    assert.same({}, core.listdir("/run/lunas/nat") or {})
  end)

  it("reports the lack of a default route clearly", function()
    without_default_route()
    local ok, err = pcall(function() return lunas.sandbox{ net = "nat", argv = { "true" } }:run() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no IPv4 default route", 1, true), tostring(err))
    assert.same({}, nat_links())
    assert.same({}, lunas_tables())
  end)
end)

describe("egress when the set-up fails #root", function()
  it("leaves no veth, table, forwarding or pasta behind when a later step fails", function()
    local cleanup = util.cleanups(finally)
    local inet = internet(cleanup)
    local sandbox = require "lunas.sandbox"
    cleanup(function() sandbox._inject() end)
    local modes = { "nat" }
    if core.file_type("/usr/bin/pasta") ~= nil then modes[#modes + 1] = "pasta" end
    for _, mode in ipairs(modes) do
      for _, at in ipairs{ { "firewall", "init" }, { "capabilities", "payload" }, { "firewall", "parent" } } do
        sandbox._inject(at[1], at[2])
        local ok, err = pcall(function()
          return lunas.sandbox{ net = mode, argv = { "true" }, firewall = { output = "drop" } }:run()
        end)
        sandbox._inject()
        assert.is_false(ok, mode .. " " .. at[1])
        assert.truthy(tostring(err):find("injected failure", 1, true), tostring(err))
        assert.same({}, nat_links(), mode .. " " .. at[1])
        assert.same({}, lunas_tables(), mode .. " " .. at[1])
        assert.equal("0", util.read("/proc/sys/net/ipv4/conf/" .. inet.up .. "/forwarding"):match("%d"))
        assert(util.wait_for(function() return pasta_processes() == 0 end, 5), "pasta left after " .. at[1])
      end
    end
  end)
end)

local function tun_usable()
  local f = io.open("/dev/net/tun", "r+")
  if f then f:close() return true end
  return false
end

local function pasta_tests(tag)
  it("reaches the far side through pasta, the firewall stops it, and pasta ends with the sandbox " .. tag, function()
    if core.file_type("/usr/bin/pasta") == nil then pending("needs pasta (package passt)") end
    if not have_python() then pending("needs " .. PYTHON) end
    if not tun_usable() then pending("needs /dev/net/tun usable by this uid (pasta opens it)") end
    local cleanup = util.cleanups(finally)
    local ok_internet = pcall(internet, cleanup)
    if not ok_internet then pending("needs root to build the fake internet") end
    local out = capture{ net = "pasta", argv = client_argv("8080", "9090") }
    assert.equal("ok", outcome(out, 8080), out)
    assert.equal("ok", outcome(out, 9090), out)
    out = capture{ net = "pasta", argv = client_argv("8080", "9090"),
      firewall = { rules = { { direction = "out", proto = "tcp", port = 9090, action = "reject" } } } }
    assert.equal("ok", outcome(out, 8080), out)
    assert.equal("refused", outcome(out, 9090), out)
    assert(util.wait_for(function() return pasta_processes() == 0 end, 5), "a pasta process was left behind: "
      .. util.run{ "sh", "-c", "ps -eo pid,ppid,stat,args | grep [p]asta" })
  end)
end

describe("net = 'pasta' #root", function()
  pasta_tests("(root)")

  it("reports pasta's own start error", function()
    if core.file_type("/usr/bin/pasta") == nil then pending("needs pasta (package passt)") end
    -- no default route here, no template interface: pasta says so and ends
    without_default_route()
    local ok, err = pcall(function() return lunas.sandbox{ net = "pasta", argv = { "true" } }:run() end)
    assert.is_false(ok)
    local msg = tostring(err)
    assert.truthy(msg:find("sandbox: egress: pasta: ", 1, true), msg)
    assert.truthy(msg:find("exit status", 1, true), msg)
    assert.equal(0, pasta_processes())
  end)
end)

describe("net = 'pasta' rootless #rootless", function()
  pasta_tests("#rootless")
end)

-- ---- labs -------------------------------------------------------------------------------------------------

describe("host:firewall #root", function()
  it("filters what a router forwards, counts it, and states the rules anew when replaced", function()
    local cleanup = util.cleanups(finally)
    local lab = net.lab{ name = ("fw%d"):format(core.getpid() % 100000) }
    cleanup(function() lab:close() end)
    local a, r, b = lab:host("a"), lab:router("r"), lab:host("b")
    lab:link(a, r)
    lab:link(r, b)
    a:addr("eth0", "10.1.0.2/24"):route("default", "10.1.0.1")
    r:addr("eth0", "10.1.0.1/24"):addr("eth1", "10.2.0.1/24")
    b:addr("eth0", "10.2.0.2/24"):route("default", "10.2.0.1")
    local function ping()
      return a:run{ "ping", "-c", "1", "-W", "1", "10.2.0.2", capture = true }.status
    end
    assert.equal(0, ping())
    local fw = r:firewall{ forward = "drop", rules = {
      { direction = "forward", proto = "icmp", from = "10.1.0.0/24", to = "10.9.0.0/24", action = "allow", name = "elsewhere" },
    } }
    assert.equal(fw, r:firewall())
    assert.not_equal(0, ping())
    local c = fw:counters_by_name()
    assert.equal(0, c.elsewhere.packets)
    assert.equal(1, c.policy_forward.packets)
    -- from outside: the table in the router's namespace, and only there
    local path = ("/proc/%d/fd/%d"):format(core.getpid(), r:netns():fileno())
    local listed = util.run({ "nsenter", "--net=" .. path, "nft", "-j", "list", "counters", "table", "inet", "lunas_fw" },
      { stderr = false })
    local doc = assert(json.decode(listed), listed)
    assert.same({ packets = c.policy_forward.packets, bytes = c.policy_forward.bytes }, nft_counters(doc).policy_forward)
    fw = r:firewall{ forward = "drop", rules = {
      { direction = "forward", proto = "icmp", from = "10.1.0.0/24", action = "allow", name = "pings" },
    } }
    assert.equal(0, ping())
    c = fw:counters_by_name()
    assert.equal(1, c.pings.packets) -- the request; the reply is established traffic
    assert.equal(0, c.policy_forward.packets) -- a fresh table: the earlier drop is not carried over
    assert.is_nil(c.elsewhere)
    fw:remove()
    assert.is_nil(r:firewall())
    assert.equal(0, ping())
  end)
end)

-- ---- the command line -------------------------------------------------------------------------------------

describe("lunas run firewall counters #rootless", function()
  it("--json-status's last line carries the firewall's counters", function()
    local dir, remove = util.tmpdir()
    finally(remove)
    local out, code = util.lunas{ "run", "--json-status", dir .. "/status", "--deny-out", "tcp:*:80", "--", "true" }
    assert.equal(0, code, out)
    local lines = util.lines(util.read(dir .. "/status"))
    local final = json.decode(lines[#lines])
    assert.equal(0, final["exit-code"])
    local c = by_name(final.firewall)
    assert.same({ "out", "reject", 0 }, { c.cli_1.direction, c.cli_1.action, c.cli_1.packets })
    assert.same({ "out", "allow" }, { c.policy_output.direction, c.policy_output.action })
  end)
end)

describe("lunas run firewall options #root", function()
  it("--net nat with --allow-out lets only that out, --deny-out refuses, --usage prints the counters", function()
    if not have_python() then pending("needs " .. PYTHON) end
    local cleanup = util.cleanups(finally)
    internet(cleanup)
    local out, err, code = util.sh(util.quote(util.bin) .. " run --net nat --usage --allow-out tcp:" .. FAR .. ":8080 -- "
      .. PYTHON .. " -c " .. util.quote(CLIENT) .. " " .. FAR .. " 8080 9090")
    assert.equal(0, code, err)
    assert.equal("ok", outcome(out, 8080), out)
    assert.equal("timeout", outcome(out, 9090), out)
    assert.truthy(err:find("firewall cli_1 (out allow): 1 packets", 1, true), err)
    out, err, code = util.sh(util.quote(util.bin) .. " run --net nat --deny-out tcp:[" .. "::" .. "]/0:* --deny-out tcp:"
      .. FAR .. "/32:9000-9999 -- " .. PYTHON .. " -c " .. util.quote(CLIENT) .. " " .. FAR .. " 8080 9090")
    assert.equal(0, code, err)
    assert.equal("ok", outcome(out, 8080), out)
    assert.equal("refused", outcome(out, 9090), out)
  end)

  it("--firewall reads a rules file as data, and bad values are usage errors naming the option", function()
    local dir, remove = util.tmpdir()
    local cleanup = util.cleanups(finally)
    cleanup(remove)
    util.write(dir .. "/ok.lua", 'return { output = "drop", rules = { { direction = "out", proto = "udp", port = 53, action = "allow" } } }')
    util.write(dir .. "/code.lua", 'os.execute("true") return {}')
    local out, code = util.lunas{ "run", "--firewall", dir .. "/ok.lua", "--", "true" }
    assert.equal(0, code, out)
    out, code = util.lunas{ "run", "--firewall", dir .. "/code.lua", "--", "true" }
    assert.equal(2, code, out)
    assert.truthy(out:find("--firewall", 1, true), out)
    out, code = util.lunas{ "run", "--deny-out", "tcp:example.com:80", "--", "true" }
    assert.equal(2, code, out)
    assert.truthy(out:find("host name", 1, true), out)
    out, code = util.lunas{ "run", "--deny-out", "tcp:fd00::1:80", "--", "true" }
    assert.equal(2, code, out)
    assert.truthy(out:find("PROTO:HOST", 1, true), out)
    out, code = util.lunas{ "run", "--net", "bridge", "--", "true" }
    assert.equal(2, code, out)
    out, code = util.lunas{ "run", "--share-net", "--allow-out", "tcp:*:80", "--", "true" }
    assert.equal(2, code, out)
    assert.truthy(out:find("network namespace", 1, true), out)
  end)
end)
