-- lunas.core nftables: core.nft(netns, commands [, opts]) through libnftables (dlopen'ed on first use).
--
-- The rule sets are looked at from outside with the nft program (`nft -j list ruleset`, run in the namespace with
-- nsenter), and NAT is checked with real traffic: ping across three named namespaces a - r - b built with `ip` as
-- fixtures. Everything a test creates (namespaces, handles, child processes) is removed by its cleanups.

local core = require "lunas.core"
local json = require "dkjson"
local lfs = require "lfs"
local kernel = require "support.kernel"
local util = require "support.util"
local child = require "support.child"

local start, stop, finish = child.start, child.stop, child.finish
local assert_failure, assert_raises, map_self = child.assert_failure, child.assert_raises, child.map_self
local scope = util.cleanups

local SELF = core.getpid()
local PREFIX = "nfttest-" .. SELF

local MASQUERADE = [[
table ip nfttest_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "veth-rb" masquerade
  }
}
]]

-- ---- helpers --------------------------------------------------------------------------------------------------

--- Escapes magic characters for a Lua pattern.
local function plain(s)
  return (s:gsub("%p", "%%%0"))
end

--- `nft -j list ruleset` decoded, in the network namespace at path (nil: the test's own).
local function ruleset(path)
  local argv = { "nft", "-j", "list", "ruleset" }
  if path then argv = { "nsenter", "--net=" .. path, "nft", "-j", "list", "ruleset" } end
  local out, code = util.run(argv, { stderr = false })
  assert.equal(0, code, table.concat(argv, " ") .. ": " .. out)
  -- JSON null (a statement without arguments, such as {"masquerade": null}) decodes to json.null, not to nil
  return assert(json.decode(out, 1, json.null), "not JSON: " .. out)
end

--- The objects of one kind ("table", "chain", "rule") in a decoded rule set.
local function objects(doc, kind)
  local list = {}
  for _, entry in ipairs(doc.nftables or {}) do
    if entry[kind] then list[#list + 1] = entry[kind] end
  end
  return list
end

--- Set of "family name" of the tables in a decoded rule set.
local function table_names(doc)
  local set = {}
  for _, t in ipairs(objects(doc, "table")) do set[t.family .. " " .. t.name] = true end
  return set
end

--- The path of a descriptor of this process, for nsenter (our handles are close-on-exec).
local function fd_path(h)
  return "/proc/" .. SELF .. "/fd/" .. h:fileno()
end

--- A shell script run as a fixture: fails the test with its output when it fails.
local function sh(script)
  local out, err, code = util.sh("set -e\n" .. script)
  assert.equal(0, code, "fixture failed:\n" .. script .. "\n" .. out .. err)
  return out
end

--- ping from the namespace `from` to addr; true when a reply came back within `seconds`.
local function ping(from, addr, seconds)
  local _, code = util.run({ "ip", "netns", "exec", from, "ping", "-n", "-q", "-c", "1", "-w", tostring(seconds),
                             addr })
  return code == 0
end

--- Three named namespaces a - r - b: a 10.1.0.1/24 (default via r), r 10.1.0.2/24 and 10.2.0.1/24 with
-- forwarding on, b 10.2.0.2/24 with NO route back to 10.1.0.0/24. Returns the names; defer removes them.
local function three_hosts(defer)
  local a, r, b = PREFIX .. "-a", PREFIX .. "-r", PREFIX .. "-b"
  defer(function()
    for _, name in ipairs({ a, r, b }) do
      if lfs.attributes("/run/netns/" .. name) then os.execute("ip netns del " .. util.quote(name)) end
    end
  end)
  local script = [[
ip netns add $a; ip netns add $r; ip netns add $b
ip link add veth-ar netns $a type veth peer name veth-ra netns $r
ip link add veth-rb netns $r type veth peer name veth-br netns $b
ip -n $a link set lo up; ip -n $r link set lo up; ip -n $b link set lo up
ip -n $a addr add 10.1.0.1/24 dev veth-ar; ip -n $a link set veth-ar up
ip -n $a route add default via 10.1.0.2
ip -n $r addr add 10.1.0.2/24 dev veth-ra; ip -n $r link set veth-ra up
ip -n $r addr add 10.2.0.1/24 dev veth-rb; ip -n $r link set veth-rb up
ip -n $b addr add 10.2.0.2/24 dev veth-br; ip -n $b link set veth-br up
ip netns exec $r sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
]]
  sh((script:gsub("%$(%a)", { a = util.quote(a), r = util.quote(r), b = util.quote(b) })))
  return a, r, b
end

-- ---- rule sets in a namespace -----------------------------------------------------------------------------------

describe("core.nft #root", function()
  it("adds a table, chain and masquerade rule in a namespace from ns_create, and only there", function()
    local defer = scope(finally)
    local h = assert(core.ns_create("net"))
    defer(function() h:close() end)
    local my_net = util.ns_link(SELF, "net")
    assert.equal("", core.nft(h, MASQUERADE))
    assert.equal(my_net, util.ns_link(SELF, "net")) -- back in our own namespace

    local doc = ruleset(fd_path(h))
    assert.is_true(table_names(doc)["ip nfttest_nat"])
    local chains = objects(doc, "chain")
    assert.equal(1, #chains)
    assert.same({ "postrouting", "nat", "postrouting", 100, "accept" },
      { chains[1].name, chains[1].type, chains[1].hook, chains[1].prio, chains[1].policy })
    local rules = objects(doc, "rule")
    assert.equal(1, #rules)
    assert.equal("nfttest_nat", rules[1].table)
    assert.equal("postrouting", rules[1].chain)
    local expr = rules[1].expr
    assert.equal(2, #expr)
    assert.same({ op = "==", left = { meta = { key = "oifname" } }, right = "veth-rb" }, expr[1].match)
    assert.equal(json.null, expr[2].masquerade)

    assert.is_nil(table_names(ruleset())["ip nfttest_nat"], "the table leaked into the test's own namespace")
  end)

  it("resolves the namespace by bare /run/netns name and by path, and runs in the current one with nil", function()
    local defer = scope(finally)
    local name = PREFIX .. "-named"
    defer(function() os.execute("ip netns del " .. util.quote(name) .. " 2>/dev/null") end)
    sh("ip netns add " .. util.quote(name))
    assert.equal("", core.nft(name, "add table inet nfttest_by_name"))
    assert.equal("", core.nft("/run/netns/" .. name, "add table inet nfttest_by_path"))
    local names = table_names(ruleset("/run/netns/" .. name))
    assert.is_true(names["inet nfttest_by_name"])
    assert.is_true(names["inet nfttest_by_path"])

    -- nil: the test's own namespace (private to the test run)
    defer(function() core.nft(nil, "delete table inet nfttest_current") end)
    assert.equal("", core.nft(nil, "add table inet nfttest_current"))
    assert.is_true(table_names(ruleset())["inet nfttest_current"])
    assert.equal("", core.nft(nil, "delete table inet nfttest_current"))
    assert.is_nil(table_names(ruleset())["inet nfttest_current"])
  end)

  it("returns the listing as text, JSON with json = true, with handles with handles = true", function()
    local defer = scope(finally)
    local h = assert(core.ns_create("net"))
    defer(function() h:close() end)
    assert.equal("", core.nft(h, MASQUERADE))
    local text = assert(core.nft(h, "list ruleset"))
    assert.matches("^table ip nfttest_nat {\n", text)
    assert.matches('oifname "veth%-rb" masquerade', text)
    assert.is_nil(text:find("# handle", 1, true))

    local with_handles = assert(core.nft(h, "list ruleset", { handles = true }))
    assert.matches("table ip nfttest_nat { # handle %d+", with_handles)
    assert.matches("masquerade # handle %d+", with_handles)

    local out = assert(core.nft(h, "list ruleset", { json = true }))
    assert.equal('{"nftables"', out:sub(1, 11))
    local doc = assert(json.decode(out))
    assert.is_true(table_names(doc)["ip nfttest_nat"])
    -- what nft itself says, from outside
    assert.same(table_names(ruleset(fd_path(h))), table_names(doc))

    -- a handle from the listing deletes the rule
    local handle = assert(with_handles:match("masquerade # handle (%d+)"))
    assert.equal("", core.nft(h, "delete rule ip nfttest_nat postrouting handle " .. handle))
    assert.equal(0, #objects(ruleset(fd_path(h)), "rule"))
  end)

  it("with check = true validates (also in the kernel) but changes nothing", function()
    local defer = scope(finally)
    local h = assert(core.ns_create("net"))
    defer(function() h:close() end)
    local before = ruleset(fd_path(h))
    assert.equal("", core.nft(h, MASQUERADE, { check = true }))
    assert.same(before, ruleset(fd_path(h)))
    assert.is_nil(table_names(ruleset(fd_path(h)))["ip nfttest_nat"])
    -- the kernel still answers: deleting what does not exist fails in a dry run too
    local v, msg, code = core.nft(h, "delete table ip nfttest_nothing", { check = true })
    assert_failure("No such file or directory", "ENOENT", v, msg, code)
    -- syntax is checked
    assert_failure("syntax error", "EINVAL", core.nft(h, "add tabel ip x", { check = true }))
  end)

  it("keeps nothing from one call to the next (a fresh context each time)", function()
    local defer = scope(finally)
    local h = assert(core.ns_create("net"))
    defer(function() h:close() end)
    assert.equal("", core.nft(h, "add table ip nfttest_t\nadd chain ip nfttest_t c"))
    -- a variable defined in one call is unknown in the next
    assert.equal("", core.nft(h, "define port = 8080"))
    local v, msg, code = core.nft(h, "add rule ip nfttest_t c tcp dport $port accept")
    assert_failure("port", "EINVAL", v, msg, code)
    assert.equal(0, #objects(ruleset(fd_path(h)), "rule"))
    -- a change made behind our back (by nft itself) is seen by the next call
    sh("nsenter --net=" .. fd_path(h) .. " nft add table ip nfttest_outside")
    assert.matches("table ip nfttest_outside", core.nft(h, "list tables"))
  end)
end)

-- ---- NAT with real traffic --------------------------------------------------------------------------------------

describe("core.nft NAT between namespaces #root", function()
  it("masquerade in r lets a reach b, which has no route back", function()
    local defer = scope(finally)
    local a, r, b = three_hosts(defer)
    assert.is_true(ping(r, "10.2.0.2", 2), "fixture: r cannot reach b")
    assert.is_true(ping(a, "10.1.0.2", 2), "fixture: a cannot reach r")
    assert.is_false(ping(a, "10.2.0.2", 1), "a reaches b without NAT: b must have no route back")
    assert.equal("", core.nft(r, MASQUERADE))
    assert.is_true(ping(a, "10.2.0.2", 3), "no reply through the masquerade")
    -- only r has the rule
    assert.is_true(table_names(ruleset("/run/netns/" .. r))["ip nfttest_nat"])
    for _, other in ipairs({ a, b }) do
      assert.is_nil(table_names(ruleset("/run/netns/" .. other))["ip nfttest_nat"], other)
    end
  end)

  it("dnat in r forwards an address only r knows to b", function()
    local defer = scope(finally)
    local a, r = three_hosts(defer)
    -- 192.0.2.10 (TEST-NET-1) exists nowhere: r has no route to it until the dnat sends it to b
    assert.is_false(ping(a, "192.0.2.10", 1))
    local v, msg, code = core.nft(r, MASQUERADE .. [[
table ip nfttest_nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 192.0.2.10 dnat to 10.2.0.2
  }
}
]])
    assert.equal("", v, tostring(msg) .. " " .. tostring(code))
    assert.is_true(ping(a, "192.0.2.10", 3), "no reply through the dnat")
  end)
end)

-- ---- failures -------------------------------------------------------------------------------------------------

describe("core.nft failures #root", function()
  it("returns nil, 'nft NETNS: <nft's error>', errno name", function()
    local defer = scope(finally)
    local h = assert(core.ns_create("net"))
    defer(function() h:close() end)
    local where = plain(tostring(h))
    -- syntax error: nft's own text, the offending line and the carets
    assert_failure("^nft " .. where .. ": Error: syntax error, unexpected ip, expecting string\nadd tabel ip x\n +%^+$",
      "EINVAL", core.nft(h, "add tabel ip x"))
    -- kernel refusal: the errno named in the text
    assert_failure("^nft " .. where .. ": Error: Could not process rule: No such file or directory\n", "ENOENT",
      core.nft(h, "delete table ip nfttest_nothing"))
    assert.equal("", core.nft(h, "add table ip nfttest_t"))
    assert_failure("^nft " .. where .. ": Error: Could not process rule: File exists\n", "EEXIST",
      core.nft(h, "create table ip nfttest_t"))
    -- evaluation error
    assert_failure("^nft " .. where .. ": Error: .*", "EINVAL",
      core.nft(h, "add chain ip nfttest_t c { type nat hook postrouting priority srcnat; }\n" ..
                  "add rule ip nfttest_t c dnat to 10.0.0.1:80"))
    -- many errors: only the first record (three lines) is kept
    local _, msg = core.nft(h, "bogus one\nbogus two\nbogus three\n")
    assert.is_true(select(2, msg:gsub("\n", "")) <= 2, msg)
    -- a batch is all or nothing
    assert_failure("syntax error", "EINVAL", core.nft(h, "add table ip nfttest_u\nbogus"))
    assert.is_nil(table_names(ruleset(fd_path(h)))["ip nfttest_u"])
  end)

  it("names the namespace: ENOENT for an unknown name, EINVAL for a file that is not a network namespace", function()
    local missing = PREFIX .. "-missing"
    assert_failure("^nft " .. plain(missing) .. ": No such file or directory$", "ENOENT",
      core.nft(missing, "list ruleset"))
    assert_failure("^nft /nonexistent/netns: No such file or directory$", "ENOENT",
      core.nft("/nonexistent/netns", "list ruleset"))
    assert_failure("^nft /proc/self/ns/uts: setns: Invalid argument$", "EINVAL",
      core.nft("/proc/self/ns/uts", "list ruleset"))
  end)

  it("returns ENOPKG, not a crash, when libnftables cannot be loaded", function()
    -- the library this process loaded, hidden behind /dev/null in a private mount namespace of a new interpreter
    assert.is_string(core.nft(nil, "list tables"))
    local path
    for line in io.lines("/proc/self/maps") do
      path = path or line:match("%s(/%S*/libnftables%.so[%.%d]*)$")
    end
    assert.is_string(path, "libnftables is not mapped after a call")
    local code = [[
      package.cpath = os.getenv("LUNAS_BUILD") .. "/lib/?.so;" .. package.cpath
      local core = require "lunas.core"
      for i = 1, 2 do print(core.nft(nil, "list ruleset")) end
      print(pcall(core.nft, {}, "list ruleset")) -- misuse still raises
    ]]
    local out, err, status = util.sh("unshare --mount --propagation private sh -c " ..
      util.quote("mount --bind /dev/null " .. util.quote(path) .. " && exec lua5.4 -e " .. util.quote(code)))
    assert.equal(0, status, out .. err)
    local lines = util.lines(out)
    assert.equal(3, #lines, out)
    for i = 1, 2 do
      assert.matches("^nil\tnft: libnftables%.so%.1: .+\tENOPKG$", lines[i])
      assert.is_nil(lines[i]:find("libnftables.so.1: libnftables.so.1", 1, true), lines[i])
    end
    assert.matches("^false\t.*field 'netns'", lines[3])
  end)

  it("returns EMFILE, not an exit, when no descriptor is left for libnftables' socket", function()
    -- libnftables exits the process when it cannot open its netlink socket: lunas must catch it first
    local code = [[
      package.cpath = os.getenv("LUNAS_BUILD") .. "/lib/?.so;" .. package.cpath
      local core = require "lunas.core"
      assert(core.nft(nil, "list tables"))
      local files = {}
      while true do
        local f = io.open("/dev/null")
        if not f then break end
        files[#files + 1] = f
      end
      print(core.nft(nil, "list tables"))
      files[#files]:close()
      files[#files - 1]:close()
      print(core.nft(nil, "list tables") ~= nil)
    ]]
    local out, err, status = util.sh("ulimit -n 64 && exec lua5.4 -e " .. util.quote(code))
    assert.equal(0, status, out .. err)
    assert.same({ "nil\tnft current: netlink socket: Too many open files\tEMFILE", "true" }, util.lines(out))
  end)
end)

describe("core.nft misuse", function()
  it("raises naming the bad argument or field #rootless", function()
    assert_raises({ "#2", "field 'commands'", "string expected, got number" }, core.nft, nil, 42)
    assert_raises({ "#2", "field 'commands'", "string expected, got no value" }, core.nft, nil)
    assert_raises({ "#2", "field 'commands'", "NUL" }, core.nft, nil, "list\0ruleset")
    assert_raises({ "#2", "field 'commands'", "at most 1048576" }, core.nft, nil, ("#"):rep(1024 * 1024 + 1))
    assert_raises({ "#3", "unknown option 'jsno'" }, core.nft, nil, "list ruleset", { jsno = true })
    assert_raises({ "#3", "field 'json'", "boolean expected, got string" }, core.nft, nil, "list ruleset",
      { json = "yes" })
    assert_raises({ "#3", "field 'check'" }, core.nft, nil, "list ruleset", { check = 1 })
    assert_raises({ "#3", "table expected" }, core.nft, nil, "list ruleset", "json")
    assert_raises({ "#1", "field 'netns'" }, core.nft, {}, "list ruleset")
    assert_raises({ "#1", "field 'netns'", "bad network namespace name" }, core.nft, "..", "list ruleset")
  end)

  it("fails with EPERM without privilege over the namespace #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      if core.ids().euid == 0 then assert(core.setresuid(12345, 12345, 12345)) end -- no capabilities left
      -- libnftables 1.0.6 also prints "Operation not permitted (you must be root)" on stderr by itself
      assert(core.dup2(assert(core.open("/dev/null", "w")), 2))
      c.send("list", core.nft(nil, "list ruleset"))
      c.send("add", core.nft(nil, "add table ip nfttest_t"))
      return 0
    end)
    defer(function() stop(p, ch) end)
    local _, v, msg, code = ch.expect()
    assert.equal("nil", v)
    assert.equal("EPERM", code)
    assert.matches("^nft current: .*Operation not permitted", msg)
    _, v, msg, code = ch.expect()
    assert.equal("nil", v)
    assert.equal("EPERM", code)
    assert.matches("^nft current: Error: Could not process rule: Operation not permitted", msg)
    assert.equal(0, finish(p).status)
  end)

  it("works in a network namespace owned by the caller's own user namespace #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p, ch = start({ flags = "user,net" }, function(c)
      map_self()
      c.send("add", core.nft(nil, MASQUERADE))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "add", "" }, { ch.expect() })
    local out, code = util.run({ "nsenter", "-t", tostring(p.pid), "-U", "--preserve-credentials", "-n",
                                 "nft", "list", "tables" })
    assert.equal(0, code, out)
    assert.matches("table ip nfttest_nat", out)
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)
end)
