-- lunas.core netlink: core.netlink handles bound to a network namespace; links (veth, bridge, macvlan/macvtap,
-- vlan, vxlan, tun/tap, any kind by name), addresses, routes, neighbours, qdiscs; core.sysctl.
--
-- Everything is checked from outside the code under test: `ip -j -d link`, `ip -j addr/route/neigh`, `tc -j`,
-- /proc/sys and /proc/net/netlink read inside the namespace with nsenter, and real traffic with ping. Most
-- tests work in namespaces of their own (core.ns_create("net"), or `ip netns add` for named ones), so what
-- they make goes away with the namespace; the few links made in the test's own namespace are deleted by the
-- test's cleanups, as are named namespaces and child processes.

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
local ROOT = core.ids().euid == 0
local PREFIX = "nettest-" .. SELF

-- ---- helpers --------------------------------------------------------------------------------------------------

--- Escapes magic characters for a Lua pattern.
local function plain(s)
  return (s:gsub("%p", "%%%0"))
end

--- A shell script run as a fixture: fails the test with its output when it fails.
local function sh(script)
  local out, err, code = util.sh("set -e\n" .. script)
  assert.equal(0, code, "fixture failed:\n" .. script .. "\n" .. out .. err)
  return out
end

--- The namespace file of `where`: nil (the test's own namespace), a name under /run/netns, or a handle.
local function ns_path(where)
  if where == nil then return nil end
  if type(where) == "string" then return "/run/netns/" .. where end
  return "/proc/" .. SELF .. "/fd/" .. where:fileno()
end

--- argv run inside the network namespace `where` (nsenter; nothing for the test's own namespace).
local function in_ns(where, argv)
  local cmd = {}
  if where ~= nil then cmd = { "nsenter", "--net=" .. ns_path(where) } end
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  return cmd
end

--- Runs argv in `where`; returns stdout (stderr dropped) and the exit code.
local function run_in(where, argv)
  return util.run(in_ns(where, argv), { stderr = false })
end

--- `ip -j ARGS...` in `where`, decoded.
local function ipj(where, ...)
  local argv = { "ip", "-j", ... }
  local out, code = run_in(where, argv)
  assert.equal(0, code, table.concat(argv, " ") .. ": " .. out)
  if out:match("^%s*$") then return {} end
  return assert(json.decode(out), "not JSON: " .. out)
end

--- The link `name` as `ip -j -d -s link show` sees it in `where`, or nil when there is none.
local function link_show(where, name)
  local out, code = run_in(where, { "ip", "-j", "-d", "-s", "link", "show", "dev", name })
  if code ~= 0 then return nil end
  return assert(json.decode(out), "not JSON: " .. out)[1]
end

--- Set of the link names in `where`.
local function link_names(where)
  local set = {}
  for _, l in ipairs(ipj(where, "link", "show")) do set[l.ifname] = true end
  return set
end

--- Number of links in `where`.
local function link_count(where)
  return #ipj(where, "link", "show")
end

--- Set of the flags of a link as ip shows them.
local function flag_set(link)
  local set = {}
  for _, f in ipairs(link.flags or {}) do set[f] = true end
  return set
end

--- Set of "address/prefixlen" on a link (or on every link) in `where`.
local function addresses(where, dev)
  local set = {}
  local doc = dev and ipj(where, "addr", "show", "dev", dev) or ipj(where, "addr", "show")
  for _, l in ipairs(doc) do
    for _, a in ipairs(l.addr_info or {}) do set[a["local"] .. "/" .. a.prefixlen] = a end
  end
  return set
end

--- The content of a file read inside `where` (cat through nsenter), without the trailing newline.
local function cat_in(where, path)
  local out, code = run_in(where, { "cat", path })
  assert.equal(0, code, "cat " .. path .. ": " .. out)
  return (out:gsub("\n$", ""))
end

--- A fresh network namespace from core.ns_create, closed by defer.
local function fresh_ns(defer)
  local h = assert(core.ns_create("net"))
  defer(function() h:close() end)
  return h
end

--- A named namespace (`ip netns add PREFIX-suffix`), deleted by defer.
local function named_ns(defer, suffix)
  local name = PREFIX .. "-" .. suffix
  defer(function()
    if lfs.attributes("/run/netns/" .. name) then os.execute("ip netns del " .. util.quote(name)) end
  end)
  sh("ip netns add " .. util.quote(name))
  return name
end

--- A netlink handle on `where`, closed by defer.
local function handle(defer, where)
  local nl, msg, code = core.netlink(where)
  assert(nl, "core.netlink: " .. tostring(msg) .. " " .. tostring(code))
  defer(function() nl:close() end)
  return nl
end

--- Deletes a link of the test's own namespace in defer, if it still exists.
local function own_link(defer, name)
  defer(function()
    if link_show(nil, name) then os.execute("ip link del " .. util.quote(name)) end
  end)
  return name
end

--- ping from `where` to addr; true when replies came back.
local function ping(where, addr, count)
  local _, code = util.run(in_ns(where, { "ping", "-n", "-q", "-c", tostring(count or 1), "-i", "0.2", "-W", "2",
                                          addr }))
  return code == 0
end

--- Two fresh namespaces a and b joined by a veth "ea" (in a, 10.77.0.1/24, fd77::1/64) - "eb" (in b,
-- 10.77.0.2/24, fd77::2/64), both ends and both lo up, made through lunas. Returns a, b and their handles.
local function wired_pair(defer)
  local a, b = fresh_ns(defer), fresh_ns(defer)
  local na, nb = handle(defer, a), handle(defer, b)
  assert(na:link_add{ name = "ea", kind = "veth", peer = { name = "eb", netns = b }, up = true })
  assert(nb:link_set("eb", { up = true }))
  assert(na:link_set("lo", { up = true }))
  assert(nb:link_set("lo", { up = true }))
  assert(na:addr_add("ea", "10.77.0.1/24"))
  assert(nb:addr_add("eb", "10.77.0.2/24"))
  assert(na:addr_add("ea", "fd77::1/64", { nodad = true }))
  assert(nb:addr_add("eb", "fd77::2/64", { nodad = true }))
  return a, b, na, nb
end

-- What the kernel can make, probed once in a throwaway namespace with ip/tc (the VM lane has more than the
-- development kernel: vlan, dummy, netem, fq_codel).
local probes = {}
local function kernel_can(what, script)
  if probes[what] == nil then
    local _, _, code = util.sh("unshare --net sh -c " .. util.quote(script) .. " >/dev/null 2>&1")
    probes[what] = code == 0
  end
  return probes[what]
end

local PROBE_VETH = "ip link add probe0 type veth peer name probe1"
local function has_vlan() return kernel_can("vlan", PROBE_VETH .. " && ip link add link probe0 name probe0.5 type vlan id 5") end
local function has_ifb() return kernel_can("ifb", "ip link add probe0 type ifb") end
local function has_macvtap()
  return kernel_can("macvtap", PROBE_VETH .. " && ip link add link probe0 name probe2 type macvtap")
end
local function has_qdisc(kind)
  return kernel_can("qdisc " .. kind, PROBE_VETH .. " && tc qdisc add dev probe0 root " .. kind)
end

--- The qdiscs of a link as `tc -j qdisc show dev` sees them, keyed by kind.
local function qdiscs(where, dev)
  local out, code = run_in(where, { "tc", "-j", "qdisc", "show", "dev", dev })
  assert.equal(0, code, "tc qdisc show: " .. out)
  local by_kind = {}
  for _, q in ipairs(assert(json.decode(out), "not JSON: " .. out)) do by_kind[q.kind] = q end
  return by_kind
end

--- `tc qdisc show` / `tc class show` as text (tc 6.1 prints classes as text even with -j).
local function tc_text(where, what, dev)
  local out, code = run_in(where, { "tc", what, "show", "dev", dev })
  assert.equal(0, code, "tc " .. what .. " show: " .. out)
  return out
end

--- Asserts that x is within `fraction` of expected.
local function near(expected, x, fraction, what)
  assert(type(x) == "number", (what or "value") .. ": number expected, got " .. tostring(x))
  assert(math.abs(x - expected) <= math.abs(expected) * fraction,
    (what or "value") .. ": " .. tostring(x) .. " is not within " .. (fraction * 100) .. "% of " .. tostring(expected))
end

--- The entry of a list whose field `key` equals value.
local function find(list, key, value)
  for _, e in ipairs(list) do
    if e[key] == value then return e end
  end
end

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

--- Number of open descriptors of this process.
local function fd_count()
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n
end

--- Inodes of the netlink sockets /proc/net/netlink lists in `where` (the sockets of that namespace).
local function netlink_inodes(where)
  local set = {}
  for line in cat_in(where, "/proc/net/netlink"):gmatch("[^\n]+") do
    local inode = line:match("(%d+)%s*$")
    if inode and not line:match("^sk") then set[tonumber(inode)] = true end
  end
  return set
end

--- The socket inode of a netlink handle (/proc/self/fd/N -> "socket:[INODE]").
local function socket_inode(nl)
  local target = child.fd_link(SELF, nl:fileno())
  return tonumber(assert(target, "no fd"):match("^socket:%[(%d+)%]$"))
end

local METHODS = { "fileno", "link_list", "link_get", "link_add", "link_set", "link_del", "link_del_group", "addr_add",
                  "addr_del", "addr_list", "route_add", "route_del", "route_list", "neigh_add", "neigh_del",
                  "neigh_list", "qdisc_replace", "qdisc_del", "qdisc_list" }

-- ---- handles --------------------------------------------------------------------------------------------------

describe("core.netlink #root", function()
  it("binds the socket to the namespace given by nil, a handle, a path or a name: links appear there only", function()
    local defer = scope(finally)
    local name = named_ns(defer, "bind")
    local h = fresh_ns(defer)
    local cur, by_handle = handle(defer), handle(defer, h)
    local by_path, by_name = handle(defer, "/run/netns/" .. name), handle(defer, name)
    assert.equal("netlink (current namespace)", tostring(cur))
    assert.equal("netlink (" .. name .. ")", tostring(by_name))
    assert.equal("netlink (/run/netns/" .. name .. ")", tostring(by_path))
    assert.equal("netlink (" .. tostring(h) .. ")", tostring(by_handle))

    -- the socket itself lives in that namespace: /proc/net/netlink read there lists its inode
    assert.is_true(netlink_inodes(nil)[socket_inode(cur)])
    assert.is_nil(netlink_inodes(nil)[socket_inode(by_handle)])
    assert.is_true(netlink_inodes(h)[socket_inode(by_handle)])
    assert.is_true(netlink_inodes(name)[socket_inode(by_path)])
    assert.is_true(netlink_inodes(name)[socket_inode(by_name)])

    own_link(defer, "ntb-cur")
    assert.is_true(cur:link_add{ name = "ntb-cur", kind = "bridge" })
    assert.is_true(by_handle:link_add{ name = "ntb-h", kind = "bridge" })
    assert.is_true(by_path:link_add{ name = "ntb-path", kind = "bridge" })
    assert.is_true(by_name:link_add{ name = "ntb-name", kind = "bridge" })
    local own, in_h, in_name = link_names(nil), link_names(h), link_names(name)
    assert.same({ true, true, true }, { own["ntb-cur"], in_h["ntb-h"], in_name["ntb-path"] })
    assert.is_true(in_name["ntb-name"])
    for _, other in ipairs({ "ntb-h", "ntb-path", "ntb-name" }) do assert.is_nil(own[other]) end
    for _, other in ipairs({ "ntb-cur", "ntb-path", "ntb-name" }) do assert.is_nil(in_h[other]) end
    assert.is_nil(in_name["ntb-cur"])
    assert.is_nil(in_name["ntb-h"])
    -- the name and the path reach the same namespace
    assert.equal("ntb-path", assert(by_name:link_get("ntb-path")).name)
  end)

  it("stays bound to its namespace after lunas moves to another one", function()
    local defer = scope(finally)
    local own = assert(core.ns_open("net"))
    defer(function() own:close() end)
    local my_net = util.ns_link(SELF, "net")
    local a, b = fresh_ns(defer), fresh_ns(defer)
    local nl_cur, nl_a = handle(defer), handle(defer, a)
    own_link(defer, "ntm-cur")
    defer(function() assert(core.setns(own)) end)

    assert(core.setns(b))
    assert.are_not.equal(my_net, util.ns_link(SELF, "net"))
    -- made before the move: still the test's own namespace and a; made after it: b
    local nl_b = handle(defer)
    assert.is_true(nl_cur:link_add{ name = "ntm-cur", kind = "bridge" })
    assert.is_true(nl_a:link_add{ name = "ntm-a", kind = "bridge" })
    assert.is_true(nl_b:link_add{ name = "ntm-b", kind = "bridge" })
    assert(core.setns(own))
    assert.equal(my_net, util.ns_link(SELF, "net"))

    local in_own, in_a, in_b = link_names(nil), link_names(a), link_names(b)
    assert.is_true(in_own["ntm-cur"])
    assert.is_true(in_a["ntm-a"])
    assert.is_true(in_b["ntm-b"])
    assert.is_nil(in_own["ntm-a"])
    assert.is_nil(in_own["ntm-b"])
    assert.is_nil(in_b["ntm-cur"])
    assert.is_nil(in_b["ntm-a"])
    assert.is_nil(in_a["ntm-b"])
    -- and a handle on b made from our own namespace sees the link too
    assert.equal("ntm-b", assert(handle(defer, b):link_get("ntm-b")).name)
  end)

  it("fails with nil, message, ENOENT for an unknown name or path and EINVAL for a file that is not one", function()
    assert_failure("^netlink: open namespace " .. plain(PREFIX) .. "%-none: No such file or directory$", "ENOENT",
      core.netlink(PREFIX .. "-none"))
    assert_failure("^netlink: open namespace /run/netns/" .. plain(PREFIX) .. "%-none: No such file or directory$",
      "ENOENT", core.netlink("/run/netns/" .. PREFIX .. "-none"))
    assert_failure("^netlink: setns /proc/self/status: Invalid argument$", "EINVAL", core.netlink("/proc/self/status"))
  end)

  it("raises naming 'netns' for values that are no namespace", function()
    assert_raises({ "bad argument #1", "'netns'" }, core.netlink, {})
    assert_raises({ "bad argument #1", "'netns'" }, core.netlink, true)
    assert_raises({ "bad argument #1", "'netns'" }, core.netlink, -1)
    assert_raises({ "bad argument #1", "'netns'" }, core.netlink, 1.5)
  end)

  it("closes with close() (idempotent) and <close>; a closed handle raises in every method", function()
    local nl = assert(core.netlink())
    local fd = nl:fileno()
    local link = child.fd_link(SELF, fd)
    assert.matches("^socket:%[%d+%]$", link)
    nl:close()
    nl:close()
    assert.equal("netlink (closed)", tostring(nl))
    assert.are_not.equal(link, child.fd_link(SELF, fd))
    for _, m in ipairs(METHODS) do
      assert_raises("attempt to use a closed netlink handle", nl[m], nl, "lo", {})
    end

    local kept, kept_fd, kept_link
    do
      local scoped <close> = assert(core.netlink())
      kept, kept_fd = scoped, scoped:fileno()
      kept_link = child.fd_link(SELF, kept_fd)
      assert.is_table(scoped:link_list())
    end
    assert.equal("netlink (closed)", tostring(kept))
    assert.are_not.equal(kept_link, child.fd_link(SELF, kept_fd))
    assert_raises("attempt to use a closed netlink handle", kept.link_list, kept)
  end)
end)

-- ---- links: creating -----------------------------------------------------------------------------------------------

describe("link_add #root", function()
  it("makes a veth whose peer is in another namespace given by name or handle, with the peer's options", function()
    local defer = scope(finally)
    local h, h2 = fresh_ns(defer), fresh_ns(defer)
    local name = named_ns(defer, "veth")
    local nl = handle(defer, h)
    assert.is_true(nl:link_add{ name = "va", kind = "veth", mtu = 1400,
                                peer = { name = "vb", netns = name, mtu = 1300, mac = "02:00:00:00:0b:01", group = 5,
                                         txqlen = 77 } })
    local va, vb = link_show(h, "va"), link_show(name, "vb")
    assert.equal("veth", va.linkinfo.info_kind)
    assert.equal("veth", vb.linkinfo.info_kind)
    assert.equal(1400, va.mtu)
    assert.same({ 1300, "02:00:00:00:0b:01", "5", 77 }, { vb.mtu, vb.address, vb.group, vb.txqlen })
    assert.is_not_nil(va.link_netnsid, "the peer of va is in another namespace")
    assert.is_nil(link_show(h, "vb"))
    assert.is_nil(link_show(name, "va"))

    assert.is_true(nl:link_add{ name = "vc", kind = "veth", peer = { name = "vd", netns = h2 } })
    assert.is_not_nil(link_show(h, "vc"))
    assert.is_not_nil(link_show(h2, "vd"))
    assert.is_nil(link_show(h, "vd"))

    -- and both ends in the handle's namespace without peer.netns
    assert.is_true(nl:link_add{ name = "ve", kind = "veth", peer = { name = "vf" } })
    assert.equal("ve", link_show(h, "vf").link)
  end)

  it("makes a bridge with mtu, mac, up, group and txqlen", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert.is_true(nl:link_add{ name = "br0", kind = "bridge", mtu = 1400, mac = "02:00:00:00:00:b0", up = true,
                                group = 42, txqlen = 123 })
    local br = link_show(h, "br0")
    assert.equal("bridge", br.linkinfo.info_kind)
    assert.same({ 1400, "02:00:00:00:00:b0", "42", 123 }, { br.mtu, br.address, br.group, br.txqlen })
    assert.is_true(flag_set(br).UP)
    assert.is_true(nl:link_add{ name = "br1", kind = "bridge", up = false })
    assert.is_nil(flag_set(link_show(h, "br1")).UP)
  end)

  it("makes a link a bridge port with master = name or index", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "br0", kind = "bridge" })
    local index = link_show(h, "br0").ifindex
    assert.is_true(nl:link_add{ name = "p0", kind = "veth", peer = { name = "p1" }, master = "br0" })
    assert.is_true(nl:link_add{ name = "p2", kind = "veth", peer = { name = "p3" }, master = index })
    for _, port in ipairs({ "p0", "p2" }) do
      local l = link_show(h, port)
      assert.equal("br0", l.master)
      assert.equal("bridge", l.linkinfo.info_slave_kind)
    end
    assert.is_nil(link_show(h, "p1").master)
    assert_failure("^link master nope in .*: No such device$", "ENODEV",
      nl:link_add{ name = "p4", kind = "veth", peer = { name = "p5" }, master = "nope" })
    assert.is_nil(link_show(h, "p4"))
  end)

  it("makes macvlan links on a parent in every mode", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "lower", kind = "veth", peer = { name = "lower1" } })
    assert(nl:link_add{ name = "lower2", kind = "veth", peer = { name = "lower3" } })
    local lower_index = link_show(h, "lower").ifindex
    for _, mode in ipairs({ "private", "vepa", "bridge", "source" }) do
      local name = "mv-" .. mode
      assert.is_true(nl:link_add{ name = name, kind = "macvlan", link = mode == "vepa" and lower_index or "lower",
                                  mode = mode, mtu = 1400 })
      local l = link_show(h, name)
      assert.same({ "macvlan", mode, "lower", 1400 }, { l.linkinfo.info_kind, l.linkinfo.info_data.mode, l.link, l.mtu })
    end
    -- passthru takes a parent of its own; without mode the kernel's default (vepa)
    assert.is_true(nl:link_add{ name = "mv-pass", kind = "macvlan", link = "lower2", mode = "passthru" })
    assert.equal("passthru", link_show(h, "mv-pass").linkinfo.info_data.mode)
    assert.is_true(nl:link_add{ name = "mv-def", kind = "macvlan", link = "lower3" })
    assert.equal("vepa", link_show(h, "mv-def").linkinfo.info_data.mode)
    assert_raises({ "'mode'", "unknown macvlan mode 'bogus'" }, nl.link_add, nl,
      { name = "mv-x", kind = "macvlan", link = "lower", mode = "bogus" })
    assert_raises({ "'link'", "needs a parent link" }, nl.link_add, nl, { name = "mv-x", kind = "macvlan" })
    assert_failure("^link add: parent nope in .*: No such device$", "ENODEV",
      nl:link_add{ name = "mv-x", kind = "macvlan", link = "nope" })
    assert.is_nil(link_show(h, "mv-x"))
  end)

  it("makes macvtap links on a parent in every mode", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    if not has_macvtap() then pending("needs macvtap: `ip link add ... type macvtap` fails on this kernel") end
    assert(nl:link_add{ name = "lower", kind = "veth", peer = { name = "lower1" } })
    assert(nl:link_add{ name = "lower2", kind = "veth", peer = { name = "lower3" } })
    for _, mode in ipairs({ "private", "vepa", "bridge", "source" }) do
      local name = "mt-" .. mode
      assert.is_true(nl:link_add{ name = name, kind = "macvtap", link = "lower", mode = mode })
      local l = link_show(h, name)
      assert.same({ "macvtap", mode, "lower" }, { l.linkinfo.info_kind, l.linkinfo.info_data.mode, l.link })
    end
    assert.is_true(nl:link_add{ name = "mt-pass", kind = "macvtap", link = "lower2", mode = "passthru" })
    assert.equal("passthru", link_show(h, "mt-pass").linkinfo.info_data.mode)
    assert.is_true(nl:link_add{ name = "mt-def", kind = "macvtap", link = "lower3" })
    assert.equal("vepa", link_show(h, "mt-def").linkinfo.info_data.mode)
    assert_raises({ "'mode'", "unknown macvtap mode 'bogus'" }, nl.link_add, nl,
      { name = "mt-x", kind = "macvtap", link = "lower", mode = "bogus" })
    assert.is_nil(link_show(h, "mt-x"))
  end)

  it("makes vxlan links with id, remote, src, port, learning and a parent link, IPv4 and IPv6", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "lower", kind = "veth", peer = { name = "lower1" }, mtu = 1400 })
    assert.is_true(nl:link_add{ name = "vx4", kind = "vxlan", id = 42, remote = "10.1.1.1", src = "10.1.1.2",
                                port = 4790 })
    local d = link_show(h, "vx4").linkinfo.info_data
    assert.same({ 42, "10.1.1.1", "10.1.1.2", 4790, true }, { d.id, d.remote, d["local"], d.port, d.learning })

    assert.is_true(nl:link_add{ name = "vx6", kind = "vxlan", id = 0xffffff, remote = "fd00::1", src = "fd00::2",
                                port = 4791, learning = false, link = "lower" })
    local vx6 = link_show(h, "vx6")
    d = vx6.linkinfo.info_data
    assert.same({ 0xffffff, "fd00::1", "fd00::2", 4791, false, "lower" },
      { d.id, d.remote6, d.local6, d.port, d.learning, d.link })
    -- the parent's MTU minus the IPv6 encapsulation: the kernel did take the parent link
    assert.equal(1400 - 70, vx6.mtu)

    assert.is_true(nl:link_add{ name = "vx0", kind = "vxlan", id = 7 })
    assert.equal(4789, link_show(h, "vx0").linkinfo.info_data.port)
    assert_raises({ "'id'", "needs an id" }, nl.link_add, nl, { name = "vx1", kind = "vxlan" })
    assert_raises({ "'id'", "out of range" }, nl.link_add, nl, { name = "vx1", kind = "vxlan", id = 0x1000000 })
    assert_raises({ "'src'", "is not an IPv6 address" }, nl.link_add, nl,
      { name = "vx1", kind = "vxlan", id = 1, remote = "fd00::1", src = "10.0.0.1" })
    assert_raises({ "'port'", "out of range" }, nl.link_add, nl, { name = "vx1", kind = "vxlan", id = 1, port = 0 })
    assert.is_nil(link_show(h, "vx1"))
  end)

  it("makes a vlan on a parent, or reports the kernel's refusal when it has no 802.1Q", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "lower", kind = "veth", peer = { name = "lower1" } })
    assert_raises({ "'id'", "out of range" }, nl.link_add, nl, { name = "lower.0", kind = "vlan", link = "lower", id = 0 })
    assert_raises({ "'link'", "needs a parent link" }, nl.link_add, nl, { name = "v5", kind = "vlan", id = 5 })
    local ok, msg, code = nl:link_add{ name = "lower.5", kind = "vlan", link = "lower", id = 5 }
    if not has_vlan() then
      assert_failure("^link add lower%.5 in .* %(Unknown device type%): Operation not supported$", "EOPNOTSUPP",
        ok, msg, code)
      pending("needs vlan (8021q): `ip link add ... type vlan` fails on this kernel")
    end
    assert.is_true(ok, msg)
    local l = link_show(h, "lower.5")
    assert.same({ "vlan", 5, "802.1Q", "lower" },
      { l.linkinfo.info_kind, l.linkinfo.info_data.id, l.linkinfo.info_data.protocol, l.link })
  end)

  it("makes persistent tun and tap devices with owner, group, packet_info, multi_queue and common options", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert.is_true(nl:link_add{ name = "tn0", kind = "tun", owner = 65534, owner_group = 65534, mtu = 1400, up = true,
                                txqlen = 321 })
    local tn = link_show(h, "tn0")
    local d = tn.linkinfo.info_data
    assert.same({ "tun", "tun", true, false, false }, { tn.linkinfo.info_kind, d.type, d.persist, d.pi, d.multi_queue })
    assert.is_true(d.user == "nobody" or d.user == 65534 or d.user == "65534", "owner: " .. tostring(d.user))
    assert.is_not_nil(d.group, "owner_group")
    assert.same({ 1400, 321 }, { tn.mtu, tn.txqlen })
    assert.is_true(flag_set(tn).UP)

    assert.is_true(nl:link_add{ name = "tp0", kind = "tap", packet_info = true, multi_queue = true,
                                mac = "02:00:00:00:0a:01" })
    local tp = link_show(h, "tp0")
    d = tp.linkinfo.info_data
    assert.same({ "tap", true, true, true, "02:00:00:00:0a:01" }, { d.type, d.persist, d.pi, d.multi_queue, tp.address })
    assert.is_nil(d.user)
    -- made in the handle's namespace, not where lunas runs
    assert.is_nil(link_show(nil, "tn0"))
    assert.is_nil(link_show(nil, "tp0"))
    -- a name in use is EEXIST, as for other kinds (TUNSETIFF alone would attach to the existing device)
    for _, kind in ipairs({ "tun", "tap" }) do
      assert_failure("^link add tn0 in .*: File exists$", "EEXIST", nl:link_add{ name = "tn0", kind = kind })
      assert_failure("^link add lo in .*: File exists$", "EEXIST", nl:link_add{ name = "lo", kind = kind })
    end
    assert_failure("^link add tn0 in .*: File exists$", "EEXIST", nl:link_add{ name = "tn0", kind = "tun", persist = false })
    assert.is_true(link_show(h, "tn0").linkinfo.info_data.persist)
  end)

  it("with persist = false returns a descriptor object; the device lives as long as it is open", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    local t = nl:link_add{ name = "tp1", kind = "tap", persist = false, up = true }
    defer(function() if t then t:close() end end)
    assert.is_userdata(t)
    local fd = t:fileno()
    assert.equal("/dev/net/tun", child.fd_link(SELF, fd))
    local l = link_show(h, "tp1")
    assert.same({ "tap", false }, { l.linkinfo.info_data.type, l.linkinfo.info_data.persist })
    t:close()
    assert.is_nil(link_show(h, "tp1"))
  end)

  it("makes any other kind by name (ifb) through the generic path", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    if not has_ifb() then pending("needs ifb: `ip link add type ifb` fails on this kernel") end
    assert.is_true(nl:link_add{ name = "if0", kind = "ifb", mtu = 1400, group = 3 })
    local l = link_show(h, "if0")
    assert.same({ "ifb", 1400, "3" }, { l.linkinfo.info_kind, l.mtu, l.group })
  end)

  it("fails for an unknown kind with the kernel's 'Unknown device type' and EOPNOTSUPP", function()
    local defer = scope(finally)
    local name = named_ns(defer, "kind")
    local nl = handle(defer, name)
    assert_failure("^link add x0 in " .. plain(name) .. " %(Unknown device type%): Operation not supported$",
      "EOPNOTSUPP", nl:link_add{ name = "x0", kind = "nosuchkind" })
    assert.is_nil(link_show(name, "x0"))
  end)

  it("fails with EEXIST for a name in use, leaving the existing link alone", function()
    local defer = scope(finally)
    local name = named_ns(defer, "exists")
    local nl = handle(defer, name)
    assert(nl:link_add{ name = "br0", kind = "bridge", mtu = 1400 })
    assert_failure("^link add br0 in " .. plain(name) .. ": File exists$", "EEXIST",
      nl:link_add{ name = "br0", kind = "bridge", mtu = 1300 })
    assert_failure("^link add br0 in " .. plain(name) .. ": File exists$", "EEXIST",
      nl:link_add{ name = "br0", kind = "veth", peer = { name = "br1" } })
    assert.equal(1400, link_show(name, "br0").mtu)
    assert.is_nil(link_show(name, "br1"))
  end)
end)

-- ---- links: reading ---------------------------------------------------------------------------------------------

describe("link_get and link_list #root", function()
  it("report name, index, kind, up, flags, mtu, mac, group, txqlen, master and peer as ip does", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "br0", kind = "bridge", mtu = 1400, mac = "02:00:00:00:00:b0", group = 3, txqlen = 99,
                        up = true })
    assert(nl:link_add{ name = "p0", kind = "veth", peer = { name = "p1" }, master = "br0" })
    local ip_br, ip_p0, ip_p1 = link_show(h, "br0"), link_show(h, "p0"), link_show(h, "p1")

    local br = assert(nl:link_get("br0"))
    -- (a bridge's MTU follows its ports unless set after creation: compare with ip's)
    assert.same({ "br0", ip_br.ifindex, "bridge", true, ip_br.mtu, "02:00:00:00:00:b0", 3, 99 },
      { br.name, br.index, br.kind, br.up, br.mtu, br.mac, br.group, br.txqlen })
    assert.is_true(contains(br.flags, "up"))
    assert.is_true(contains(br.flags, "broadcast"))
    assert.is_true(contains(br.flags, "multicast"))
    -- (the kernel settles a new bridge's operstate asynchronously, by linkwatch: compare once both agree, which
    -- they must within a few seconds)
    local settled = util.wait_for(function()
      return link_show(h, "br0").operstate:lower() == assert(nl:link_get("br0")).operstate
    end, 5)
    assert.is_truthy(settled, ("operstate: ip %s, lunas %s"):format(link_show(h, "br0").operstate,
      nl:link_get("br0").operstate))
    br.operstate = nil
    assert.is_table(br.stats)
    -- by index, the same link (its counters move: the bridge sends its own IPv6 reports)
    local again = assert(nl:link_get(ip_br.ifindex))
    again.operstate, again.stats, br.stats = nil, nil, nil
    assert.same(br, again)

    local p0 = assert(nl:link_get("p0"))
    assert.same({ "veth", false, ip_br.ifindex, ip_p1.ifindex, ip_p0.address },
      { p0.kind, p0.up, p0.master, p0.link, p0.mac })
    assert.is_false(contains(p0.flags, "up"))

    local list = assert(nl:link_list())
    assert.equal(link_count(h), #list)
    for _, ip_link in ipairs(ipj(h, "link", "show")) do
      local l = find(list, "name", ip_link.ifname)
      assert.is_table(l, ip_link.ifname)
      assert.same({ ip_link.ifindex, ip_link.mtu }, { l.index, l.mtu })
    end
    local lo = find(list, "name", "lo")
    assert.is_nil(lo.kind)
    assert.is_true(contains(lo.flags, "loopback"))
    local listed_p0 = find(list, "name", "p0")
    assert.same({ ip_br.ifindex, "br0" }, { listed_p0.master, listed_p0.master_name })
    assert.is_nil(find(list, "name", "br0").master)
  end)

  it("fail with ENODEV naming the link for a missing name or index", function()
    local defer = scope(finally)
    local name = named_ns(defer, "get")
    local nl = handle(defer, name)
    assert_failure("^link get nope in " .. plain(name) .. ": No such device$", "ENODEV", nl:link_get("nope"))
    assert_failure("^link get #4242 in " .. plain(name) .. ": No such device$", "ENODEV", nl:link_get(4242))
  end)

  it("report rx/tx bytes and packets that grow with traffic, as ip -s does", function()
    local defer = scope(finally)
    local a, b, na, nb = wired_pair(defer)
    local before_a, before_b = assert(na:link_get("ea")).stats, assert(nb:link_get("eb")).stats
    assert.is_true(ping(a, "10.77.0.2", 3), "ping 10.77.0.2 from a")
    local after_a, after_b = assert(na:link_get("ea")).stats, assert(nb:link_get("eb")).stats
    -- three echo requests and replies of 98 bytes on the wire (ARP adds more)
    assert.is_true(after_a.tx_bytes >= before_a.tx_bytes + 3 * 98)
    assert.is_true(after_a.rx_bytes >= before_a.rx_bytes + 3 * 98)
    assert.is_true(after_a.tx_packets >= before_a.tx_packets + 3)
    assert.is_true(after_b.rx_packets >= before_b.rx_packets + 3)
    assert.is_true(after_b.tx_bytes >= before_b.tx_bytes + 3 * 98)
    assert.equal(0, after_a.rx_errors)
    -- no later than ip's own numbers read right after (IPv6 housekeeping may add packets in between)
    local ip_a = link_show(a, "ea").stats64
    assert.is_true(after_a.tx_bytes <= ip_a.tx.bytes and ip_a.tx.bytes - after_a.tx_bytes < 4096)
    assert.is_true(after_a.rx_bytes <= ip_a.rx.bytes and ip_a.rx.bytes - after_a.rx_bytes < 4096)
    local listed = find(assert(na:link_list()), "name", "ea")
    assert.is_true(listed.stats.tx_packets >= after_a.tx_packets)
    assert.is_not_nil(link_show(b, "eb"))
  end)
end)

-- ---- links: changing and deleting ---------------------------------------------------------------------------------

describe("link_set #root", function()
  it("sets up/down, mtu, mac, txqlen and group, by name and by index", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "s0", kind = "veth", peer = { name = "s1" } })
    local index = link_show(h, "s0").ifindex
    assert.is_true(nl:link_set("s0", { up = true, mtu = 1280, mac = "02:00:00:00:05:00", txqlen = 42, group = 9 }))
    local l = link_show(h, "s0")
    assert.same({ 1280, "02:00:00:00:05:00", 42, "9" }, { l.mtu, l.address, l.txqlen, l.group })
    assert.is_true(flag_set(l).UP)
    assert.is_true(nl:link_set(index, { up = false, mtu = 9000, group = 0 }))
    l = link_show(h, "s0")
    assert.same({ 9000, "default" }, { l.mtu, l.group })
    assert.is_nil(flag_set(l).UP)
    assert.is_true(nl:link_set("s0", {}))
  end)

  it("renames a link; a name in use fails with EEXIST", function()
    local defer = scope(finally)
    local name = named_ns(defer, "rename")
    local nl = handle(defer, name)
    assert(nl:link_add{ name = "r0", kind = "veth", peer = { name = "r1" } })
    local index = link_show(name, "r0").ifindex
    assert.is_true(nl:link_set("r0", { name = "renamed0" }))
    assert.is_nil(link_show(name, "r0"))
    assert.equal(index, link_show(name, "renamed0").ifindex)
    assert_failure("^link set renamed0 in " .. plain(name) .. ": File exists$", "EEXIST",
      nl:link_set("renamed0", { name = "r1" }))
    assert_raises({ "'name'", "longer than 15 bytes" }, nl.link_set, nl, "renamed0", { name = ("n"):rep(16) })
  end)

  it("makes a link a bridge port with master, and takes it out with nomaster", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "br0", kind = "bridge" })
    assert(nl:link_add{ name = "br1", kind = "bridge" })
    assert(nl:link_add{ name = "m0", kind = "veth", peer = { name = "m1" } })
    assert.is_true(nl:link_set("m0", { master = "br0" }))
    assert.equal("br0", link_show(h, "m0").master)
    assert.is_true(nl:link_set("m0", { master = link_show(h, "br1").ifindex }))
    assert.equal("br1", link_show(h, "m0").master)
    assert.is_true(nl:link_set("m0", { nomaster = true }))
    assert.is_nil(link_show(h, "m0").master)
    assert_raises({ "'nomaster'", "conflicts with master" }, nl.link_set, nl, "m0", { master = "br0", nomaster = true })
    assert_failure("^link master nope in .*: No such device$", "ENODEV", nl:link_set("m0", { master = "nope" }))
  end)

  it("moves a link to another namespace by name, path or handle, renamed in the same request", function()
    local defer = scope(finally)
    local h, dest = fresh_ns(defer), fresh_ns(defer)
    local name = named_ns(defer, "move")
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "mv0", kind = "veth", peer = { name = "mv1" } })
    assert(nl:link_add{ name = "mv2", kind = "veth", peer = { name = "mv3" } })
    assert.is_true(nl:link_set("mv0", { netns = name }))
    assert.is_true(nl:link_set("mv1", { netns = dest, name = "eth0", mtu = 1300 }))
    assert.is_true(nl:link_set("mv2", { netns = "/run/netns/" .. name, name = "eth1" }))
    assert.is_true(nl:link_set(link_show(h, "mv3").ifindex, { netns = dest }))
    assert.same({}, (function()
      local left = {}
      for n in pairs(link_names(h)) do if n ~= "lo" then left[#left + 1] = n end end
      return left
    end)())
    assert.is_not_nil(link_show(name, "mv0"))
    assert.is_not_nil(link_show(name, "eth1"))
    assert.is_not_nil(link_show(dest, "mv3"))
    local moved = link_show(dest, "eth0")
    assert.same({ "veth", 1300 }, { moved.linkinfo.info_kind, moved.mtu })
    assert_failure("^link set: namespace " .. plain(PREFIX) .. "%-none: No such file or directory$", "ENOENT",
      handle(defer, name):link_set("mv0", { netns = PREFIX .. "-none" }))
    assert.is_not_nil(link_show(name, "mv0"))
  end)

  it("fails with ENODEV naming a missing link", function()
    local defer = scope(finally)
    local name = named_ns(defer, "setmissing")
    local nl = handle(defer, name)
    assert_failure("^link set nope in " .. plain(name) .. ": No such device$", "ENODEV", nl:link_set("nope", { up = true }))
    assert_failure("^link set #4242 in " .. plain(name) .. ": No such device$", "ENODEV", nl:link_set(4242, { up = true }))
  end)
end)

describe("link_del and link_del_group #root", function()
  it("deletes a link by name or index; a veth takes its peer along, in another namespace too", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local name = named_ns(defer, "del")
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "d0", kind = "veth", peer = { name = "d1", netns = name } })
    assert(nl:link_add{ name = "d2", kind = "bridge" })
    assert.is_true(nl:link_del("d0"))
    assert.is_nil(link_show(h, "d0"))
    assert.is_nil(link_show(name, "d1"))
    assert.is_true(nl:link_del(link_show(h, "d2").ifindex))
    assert.is_nil(link_show(h, "d2"))
    assert_failure("^link delete d0 in .*: No such device$", "ENODEV", nl:link_del("d0"))
    local named = handle(defer, name)
    assert_failure("^link delete nope in " .. plain(name) .. ": No such device$", "ENODEV", named:link_del("nope"))
  end)

  it("deletes every link of a group in one request, veth peers in other namespaces too, and nothing else", function()
    local defer = scope(finally)
    local h, other = fresh_ns(defer), fresh_ns(defer)
    local name = named_ns(defer, "group")
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "g0", kind = "veth", group = 7, peer = { name = "g1", netns = name } })
    assert(nl:link_add{ name = "g2", kind = "veth", group = 7, peer = { name = "g3", netns = other } })
    assert(nl:link_add{ name = "g4", kind = "bridge", group = 7 })
    assert(nl:link_add{ name = "g5", kind = "veth", peer = { name = "g6" } })
    assert(nl:link_set("g6", { group = 7 })) -- one end of a local pair in the group
    assert(nl:link_add{ name = "k0", kind = "bridge", group = 8 })
    assert(nl:link_add{ name = "k1", kind = "veth", peer = { name = "k2", netns = name } })
    assert.is_true(nl:link_del_group(7))
    local left = link_names(h)
    for _, gone in ipairs({ "g0", "g2", "g4", "g5", "g6" }) do assert.is_nil(left[gone], gone) end
    assert.is_nil(link_show(name, "g1"))
    assert.is_nil(link_show(other, "g3"))
    assert.is_true(left.k0)
    assert.is_true(left.k1)
    assert.is_not_nil(link_show(name, "k2"))
    -- nothing left in the group
    assert_failure("^link delete group 7 in .*: No such device$", "ENODEV", nl:link_del_group(7))
  end)

  it("refuses group 0 (every link's default group) and non-groups as misuse", function()
    local defer = scope(finally)
    local nl = handle(defer, fresh_ns(defer))
    assert_raises({ "'group'", "out of range" }, nl.link_del_group, nl, 0)
    assert_raises({ "'group'", "out of range" }, nl.link_del_group, nl, -1)
    assert_raises({ "'group'", "out of range" }, nl.link_del_group, nl, 2 ^ 32)
    assert_raises("'group'", nl.link_del_group, nl, "7")
    assert_raises("'group'", nl.link_del_group, nl)
    assert.equal(1, #assert(nl:link_list()))
  end)
end)

-- ---- addresses ----------------------------------------------------------------------------------------------------

describe("addresses #root", function()
  it("adds, lists and deletes IPv4 and IPv6 (nodad) addresses, as ip sees them", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "a0", kind = "veth", peer = { name = "a1" }, up = true })
    assert.is_true(nl:addr_add("a0", "10.0.0.1/24"))
    assert.is_true(nl:addr_add("a0", "10.0.1.1"))
    assert.is_true(nl:addr_add("a0", "fd00::1/64", { nodad = true }))
    assert.is_true(nl:addr_add(link_show(h, "a0").ifindex, "fd00:1::1/48", { nodad = true, noprefixroute = true }))
    local seen = addresses(h, "a0")
    assert.is_table(seen["10.0.0.1/24"])
    assert.is_table(seen["10.0.1.1/32"])
    assert.is_true(seen["fd00::1/64"].nodad)
    assert.is_true(seen["fd00:1::1/48"].noprefixroute)
    assert.equal("a0", seen["10.0.0.1/24"].label)

    local list = assert(nl:addr_list("a0"))
    local by_address = {}
    for _, a in ipairs(list) do by_address[a.address] = a end
    assert.same({ "a0", link_show(h, "a0").ifindex, "inet", "global", "a0" },
      { by_address["10.0.0.1/24"].link, by_address["10.0.0.1/24"].index, by_address["10.0.0.1/24"].family,
        by_address["10.0.0.1/24"].scope, by_address["10.0.0.1/24"].label })
    assert.equal("inet6", by_address["fd00::1/64"].family)
    assert.is_table(by_address["fd00:1::1/48"])
    -- every address of the namespace without a link: lo's too
    local all = {}
    for _, a in ipairs(assert(nl:addr_list())) do all[a.address] = a.link end
    assert.equal("a0", all["10.0.0.1/24"])

    assert.is_true(nl:addr_del("a0", "10.0.0.1/24"))
    assert.is_true(nl:addr_del("a0", "fd00::1/64"))
    seen = addresses(h, "a0")
    assert.is_nil(seen["10.0.0.1/24"])
    assert.is_nil(seen["fd00::1/64"])
    assert.is_table(seen["10.0.1.1/32"])
  end)

  it("fails with EEXIST for a duplicate; with replace = true it does not", function()
    local defer = scope(finally)
    local name = named_ns(defer, "addr")
    local nl = handle(defer, name)
    assert(nl:link_add{ name = "a0", kind = "veth", peer = { name = "a1" } })
    assert(nl:addr_add("a0", "10.0.0.1/24"))
    assert(nl:addr_add("a0", "fd00::1/64", { nodad = true }))
    assert_failure("^address add 10%.0%.0%.1/24 on a0 in " .. plain(name) .. ".*: File exists$", "EEXIST",
      nl:addr_add("a0", "10.0.0.1/24"))
    assert_failure("^address add fd00::1/64 on a0 in " .. plain(name) .. ".*: File exists$", "EEXIST",
      nl:addr_add("a0", "fd00::1/64", { nodad = true }))
    -- replace: no EEXIST, still one address
    assert.is_true(nl:addr_add("a0", "10.0.0.1/24", { replace = true }))
    assert.is_true(nl:addr_add("a0", "fd00::1/64", { nodad = true, replace = true }))
    local count = 0
    for _, l in ipairs(ipj(name, "addr", "show", "dev", "a0")) do
      for _, a in ipairs(l.addr_info) do
        if a["local"] == "10.0.0.1" or a["local"] == "fd00::1" then count = count + 1 end
      end
    end
    assert.equal(2, count)
  end)

  it("sets peer, broadcast and label", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "a0", kind = "veth", peer = { name = "a1" } })
    assert.is_true(nl:addr_add("a0", "10.0.0.1/24", { broadcast = "10.0.0.255", label = "a0:web" }))
    assert.is_true(nl:addr_add("a0", "10.0.2.1", { peer = "10.0.2.2/32" }))
    local seen = addresses(h, "a0")
    assert.same({ "10.0.0.255", "a0:web" }, { seen["10.0.0.1/24"].broadcast, seen["10.0.0.1/24"].label })
    assert.equal("10.0.2.2", seen["10.0.2.1/32"].address)
    local labels = {}
    for _, a in ipairs(assert(nl:addr_list("a0"))) do labels[a.address] = a.label end
    assert.equal("a0:web", labels["10.0.0.1/24"])
    assert_raises({ "'peer'", "is not an IPv4 address" }, nl.addr_add, nl, "a0", "10.0.3.1", { peer = "fd00::2" })
    assert_raises({ "'broadcast'", "no prefix length expected" }, nl.addr_add, nl, "a0", "10.0.3.1/24",
      { broadcast = "10.0.3.255/24" })
    assert_raises({ "'label'", "1-15 bytes" }, nl.addr_add, nl, "a0", "10.0.3.1/24", { label = ("l"):rep(16) })
    assert.is_nil(addresses(h, "a0")["10.0.3.1/24"])
  end)

  it("fails with EADDRNOTAVAIL deleting an absent address and ENODEV for a missing link", function()
    local defer = scope(finally)
    local name = named_ns(defer, "addrdel")
    local nl = handle(defer, name)
    assert(nl:link_add{ name = "a0", kind = "veth", peer = { name = "a1" } })
    assert_failure("^address delete 10%.9%.0%.1/24 on a0 in " .. plain(name) .. ".*: Cannot assign requested address$",
      "EADDRNOTAVAIL", nl:addr_del("a0", "10.9.0.1/24"))
    assert_failure("^address add nope in " .. plain(name) .. ": No such device$", "ENODEV",
      nl:addr_add("nope", "10.9.0.1/24"))
    assert_failure("^address list nope in " .. plain(name) .. ": No such device$", "ENODEV", nl:addr_list("nope"))
  end)
end)

-- ---- routes -------------------------------------------------------------------------------------------------------

describe("routes #root", function()
  --- A namespace with a0 up, 10.0.1.1/24 and fd00::1/64 on it. Returns the handle and the namespace.
  local function routed(defer)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "a0", kind = "veth", peer = { name = "a1" }, up = true })
    assert(nl:link_set("a1", { up = true }))
    assert(nl:addr_add("a0", "10.0.1.1/24"))
    assert(nl:addr_add("a0", "fd00::1/64", { nodad = true }))
    return nl, h
  end

  local function route_by_dst(list, dst)
    for _, r in ipairs(list) do
      if r.dst == dst then return r end
    end
  end

  it("adds default, prefix, dev-only, metric, src, table, blackhole, unreachable and IPv6 routes", function()
    local defer = scope(finally)
    local nl, h = routed(defer)
    assert.is_true(nl:route_add{ dst = "default", via = "10.0.1.254" })
    assert.is_true(nl:route_add{ dst = "10.8.0.0/16", via = "10.0.1.253", metric = 50 })
    assert.is_true(nl:route_add{ dst = "10.7.0.0/16", dev = "a0", src = "10.0.1.1" })
    assert.is_true(nl:route_add{ dst = "10.6.0.0/16", dev = "a0", table = 100 })
    assert.is_true(nl:route_add{ dst = "10.5.0.0/16", type = "blackhole" })
    assert.is_true(nl:route_add{ dst = "10.4.0.0/16", type = "unreachable" })
    assert.is_true(nl:route_add{ dst = "default", via = "fd00::fe" })
    assert.is_true(nl:route_add{ dst = "fd01::/64", dev = "a0", metric = 7 })

    local v4 = ipj(h, "-4", "route", "show")
    local r = route_by_dst(v4, "default")
    assert.same({ "10.0.1.254", "a0", "static" }, { r.gateway, r.dev, r.protocol })
    r = route_by_dst(v4, "10.8.0.0/16")
    assert.same({ "10.0.1.253", 50 }, { r.gateway, r.metric })
    r = route_by_dst(v4, "10.7.0.0/16")
    assert.same({ "a0", "10.0.1.1", "link" }, { r.dev, r.prefsrc, r.scope })
    assert.equal("blackhole", route_by_dst(v4, "10.5.0.0/16").type)
    assert.equal("unreachable", route_by_dst(v4, "10.4.0.0/16").type)
    assert.is_nil(route_by_dst(v4, "10.6.0.0/16"))
    assert.equal("a0", route_by_dst(ipj(h, "route", "show", "table", "100"), "10.6.0.0/16").dev)
    local v6 = ipj(h, "-6", "route", "show")
    assert.equal("fd00::fe", route_by_dst(v6, "default").gateway)
    assert.equal(7, route_by_dst(v6, "fd01::/64").metric)

    -- route_list: the main table by default, a family, another table
    local list = assert(nl:route_list())
    r = find(list, "via", "10.0.1.254")
    assert.same({ "inet", "default", "a0", 254, "unicast", 4 }, { r.family, r.dst, r.dev, r.table, r.type, r.protocol })
    assert.same({ 50, "10.0.1.253" }, { route_by_dst(list, "10.8.0.0/16").metric, route_by_dst(list, "10.8.0.0/16").via })
    assert.equal("10.0.1.1", route_by_dst(list, "10.7.0.0/16").src)
    assert.equal("blackhole", route_by_dst(list, "10.5.0.0/16").type)
    assert.is_nil(route_by_dst(list, "10.6.0.0/16"))
    local six = assert(nl:route_list{ family = "inet6" })
    for _, x in ipairs(six) do assert.equal("inet6", x.family) end
    assert.equal("fd00::fe", find(six, "dst", "default").via)
    local t100 = assert(nl:route_list{ table = 100 })
    assert.same({ "10.6.0.0/16", 100 }, { t100[1].dst, t100[1].table })
    assert.equal(1, #t100)
    local every = assert(nl:route_list{ table = 0 })
    assert.is_table(route_by_dst(every, "10.6.0.0/16"))
    assert.is_true(#every > #list)
  end)

  it("deletes routes selected by the same fields; a missing one fails with ESRCH", function()
    local defer = scope(finally)
    local nl, h = routed(defer)
    assert(nl:route_add{ dst = "10.8.0.0/16", via = "10.0.1.253" })
    assert(nl:route_add{ dst = "10.5.0.0/16", type = "blackhole" })
    assert(nl:route_add{ dst = "10.6.0.0/16", dev = "a0", table = 100 })
    assert(nl:route_add{ dst = "default", via = "fd00::fe" })
    assert.is_true(nl:route_del{ dst = "10.8.0.0/16" })
    assert.is_true(nl:route_del{ dst = "10.5.0.0/16", type = "blackhole" })
    assert.is_true(nl:route_del{ dst = "10.6.0.0/16", table = 100 })
    assert.is_true(nl:route_del{ dst = "default", family = "inet6" })
    assert.is_nil(route_by_dst(ipj(h, "-4", "route", "show"), "10.8.0.0/16"))
    assert.is_nil(route_by_dst(ipj(h, "-4", "route", "show"), "10.5.0.0/16"))
    assert.same({}, ipj(h, "route", "show", "table", "100"))
    assert.is_nil(route_by_dst(ipj(h, "-6", "route", "show"), "default"))
    assert_failure("^route delete 10%.8%.0%.0/16 in .*: No such process$", "ESRCH", nl:route_del{ dst = "10.8.0.0/16" })
  end)

  it("fails with EEXIST for a duplicate and replaces with replace = true", function()
    local defer = scope(finally)
    local nl, h = routed(defer)
    assert(nl:route_add{ dst = "10.8.0.0/16", via = "10.0.1.253", metric = 5 })
    assert_failure("^route add 10%.8%.0%.0/16 in .*: File exists$", "EEXIST",
      nl:route_add{ dst = "10.8.0.0/16", via = "10.0.1.252", metric = 5 })
    assert.is_true(nl:route_add{ dst = "10.8.0.0/16", via = "10.0.1.252", metric = 5, replace = true })
    local routes = ipj(h, "-4", "route", "show", "10.8.0.0/16")
    assert.equal(1, #routes)
    assert.equal("10.0.1.252", routes[1].gateway)
  end)

  it("fails with ENETUNREACH and the kernel's 'Nexthop has invalid gateway' for an unreachable gateway", function()
    local defer = scope(finally)
    local name = named_ns(defer, "route")
    local nl = handle(defer, name)
    assert_failure("^route add 10%.9%.0%.0/16 in " .. plain(name) ..
      " %(Nexthop has invalid gateway%): Network is unreachable$", "ENETUNREACH",
      nl:route_add{ dst = "10.9.0.0/16", via = "10.5.0.1" })
    assert_failure("^route: dev nope in " .. plain(name) .. ": No such device$", "ENODEV",
      nl:route_add{ dst = "10.9.0.0/16", dev = "nope" })
    assert.same({}, ipj(name, "-4", "route", "show"))
  end)

  it("raises naming the field when dst, via and src are of different families, and for other misuse", function()
    local defer = scope(finally)
    local nl = routed(defer)
    assert_raises({ "'via'", "'fd00::1' is not an IPv4 address" }, nl.route_add, nl, { dst = "10.0.0.0/8", via = "fd00::1" })
    assert_raises({ "'via'", "'10.0.1.2' is not an IPv6 address" }, nl.route_add, nl, { dst = "fd02::/64", via = "10.0.1.2" })
    assert_raises({ "'src'", "is not an IPv4 address" }, nl.route_add, nl, { dst = "10.0.0.0/8", dev = "a0", src = "fd00::1" })
    assert_raises({ "'dst'", "is not an IPv6 address" }, nl.route_add, nl, { dst = "10.0.0.0/8", family = "inet6", dev = "a0" })
    assert_raises({ "'dst'", "destination expected" }, nl.route_add, nl, { via = "10.0.1.254" })
    assert_raises({ "'via'", "needs via or dev" }, nl.route_add, nl, { dst = "10.0.0.0/8" })
    assert_raises({ "'via'", "no prefix length expected" }, nl.route_add, nl, { dst = "10.0.0.0/8", via = "10.0.1.254/24" })
    assert_raises({ "'type'", "unknown name 'nat'" }, nl.route_add, nl, { dst = "10.0.0.0/8", type = "nat" })
    assert_raises({ "'scope'", "unknown name" }, nl.route_add, nl, { dst = "10.0.0.0/8", dev = "a0", scope = "galaxy" })
    assert_raises({ "'family'", "unknown name 'ipx'" }, nl.route_add, nl, { dst = "10.0.0.0/8", dev = "a0", family = "ipx" })
    assert_raises({ "'table'", "out of range" }, nl.route_add, nl, { dst = "10.0.0.0/8", dev = "a0", table = 0 })
    assert_raises({ "'metric'", "out of range" }, nl.route_add, nl, { dst = "10.0.0.0/8", dev = "a0", metric = -1 })
    assert_raises("unknown option 'gateway'", nl.route_add, nl, { dst = "10.0.0.0/8", gateway = "10.0.1.254" })
    assert_raises("unknown option 'tabel'", nl.route_list, nl, { tabel = 5 })
    assert_raises("table expected", nl.route_add, nl, "10.0.0.0/8")
  end)
end)

-- ---- neighbours ---------------------------------------------------------------------------------------------------

describe("neighbours #root", function()
  it("adds permanent IPv4 and IPv6 entries seen by ip -j neigh, lists and deletes them", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "n0", kind = "veth", peer = { name = "n1" }, up = true })
    assert.is_true(nl:neigh_add{ dev = "n0", dst = "10.0.1.7", lladdr = "02:00:00:00:00:07" })
    assert.is_true(nl:neigh_add{ dev = link_show(h, "n0").ifindex, dst = "fd00::7", lladdr = "02:00:00:00:00:08" })
    local seen = {}
    for _, n in ipairs(ipj(h, "neigh", "show", "dev", "n0")) do seen[n.dst] = n end
    assert.same({ "02:00:00:00:00:07", { "PERMANENT" } }, { seen["10.0.1.7"].lladdr, seen["10.0.1.7"].state })
    assert.same({ "02:00:00:00:00:08", { "PERMANENT" } }, { seen["fd00::7"].lladdr, seen["fd00::7"].state })

    -- neigh_add replaces an existing entry
    assert.is_true(nl:neigh_add{ dev = "n0", dst = "10.0.1.7", lladdr = "02:00:00:00:00:77" })
    assert.equal("02:00:00:00:00:77", ipj(h, "neigh", "show", "dev", "n0", "to", "10.0.1.7")[1].lladdr)

    local list = assert(nl:neigh_list())
    local v4, v6 = find(list, "dst", "10.0.1.7"), find(list, "dst", "fd00::7")
    assert.same({ "n0", "02:00:00:00:00:77", "permanent", "inet" }, { v4.dev, v4.lladdr, v4.state, v4.family })
    assert.same({ "n0", "inet6" }, { v6.dev, v6.family })

    assert.is_true(nl:neigh_del{ dev = "n0", dst = "10.0.1.7" })
    assert.same({}, ipj(h, "neigh", "show", "dev", "n0", "to", "10.0.1.7"))
    assert_failure("^neighbour delete 10%.0%.1%.7 on n0 in .*: No such file or directory$", "ENOENT",
      nl:neigh_del{ dev = "n0", dst = "10.0.1.7" })
    assert_failure("^neighbour add nope in .*: No such device$", "ENODEV",
      nl:neigh_add{ dev = "nope", dst = "10.0.1.8", lladdr = "02:00:00:00:00:09" })
  end)

  it("raises naming dev, dst, lladdr and state for misuse", function()
    local defer = scope(finally)
    local nl = handle(defer, fresh_ns(defer))
    assert_raises({ "'dev'", "link expected" }, nl.neigh_add, nl, { dst = "10.0.0.1", lladdr = "02:00:00:00:00:01" })
    assert_raises({ "'dst'", "neighbour address expected" }, nl.neigh_add, nl, { dev = "lo", lladdr = "02:00:00:00:00:01" })
    assert_raises({ "'dst'", "no prefix length expected" }, nl.neigh_add, nl,
      { dev = "lo", dst = "10.0.0.1/24", lladdr = "02:00:00:00:00:01" })
    assert_raises({ "'lladdr'", "hardware address expected" }, nl.neigh_add, nl, { dev = "lo", dst = "10.0.0.1" })
    assert_raises({ "'lladdr'", "bad MAC address" }, nl.neigh_add, nl, { dev = "lo", dst = "10.0.0.1", lladdr = "02:00" })
    assert_raises({ "'state'", "unknown name 'solid'" }, nl.neigh_add, nl,
      { dev = "lo", dst = "10.0.0.1", lladdr = "02:00:00:00:00:01", state = "solid" })
    assert_raises("unknown option 'mac'", nl.neigh_add, nl, { dev = "lo", dst = "10.0.0.1", mac = "02:00:00:00:00:01" })
  end)
end)

-- ---- sysctl -------------------------------------------------------------------------------------------------------

describe("core.sysctl #root", function()
  it("reads and writes net.ipv4.ip_forward inside a namespace (name, path, handle), not in the test's own", function()
    local defer = scope(finally)
    local name = named_ns(defer, "sysctl")
    local h = fresh_ns(defer)
    local own_before = util.read("/proc/sys/net/ipv4/ip_forward")
    assert.equal("0", core.sysctl(name, "net.ipv4.ip_forward"))
    assert.is_true(core.sysctl(name, "net.ipv4.ip_forward", "1"))
    assert.equal("1", cat_in(name, "/proc/sys/net/ipv4/ip_forward"))
    assert.equal("1", core.sysctl("/run/netns/" .. name, "net.ipv4.ip_forward"))
    assert.is_true(core.sysctl(h, "net/ipv4/ip_forward", 1)) -- a number is written as its decimal text
    assert.equal("1", cat_in(h, "/proc/sys/net/ipv4/ip_forward"))
    assert.is_true(core.sysctl(h, "net.ipv6.conf.all.forwarding", "1"))
    assert.equal("1", cat_in(h, "/proc/sys/net/ipv6/conf/all/forwarding"))
    assert.is_true(core.sysctl(h, "net.ipv4.ip_local_port_range", "20000 30000"))
    assert.equal("20000\t30000", core.sysctl(h, "net.ipv4.ip_local_port_range"))
    assert.equal(own_before, util.read("/proc/sys/net/ipv4/ip_forward"))
    assert.equal((own_before:gsub("%s+$", "")), core.sysctl(nil, "net.ipv4.ip_forward"))
  end)

  it("takes interface names with dots in the slash form", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "a.b", kind = "veth", peer = { name = "a1" } })
    assert.equal("0", core.sysctl(h, "net/ipv4/conf/a.b/forwarding"))
    assert.is_true(core.sysctl(h, "net/ipv4/conf/a.b/forwarding", "1"))
    assert.equal("1", cat_in(h, "/proc/sys/net/ipv4/conf/a.b/forwarding"))
    assert.equal("0", cat_in(h, "/proc/sys/net/ipv4/conf/a1/forwarding"))
    -- the dotted form splits the name: there is no net/ipv4/conf/a/b
    assert_failure("^sysctl net%.ipv4%.conf%.a%.b%.forwarding in .*: No such file or directory$", "ENOENT",
      core.sysctl(h, "net.ipv4.conf.a.b.forwarding"))
  end)

  it("refuses keys outside net and with empty or dot-dot components as misuse", function()
    for _, key in ipairs({ "kernel.hostname", "kernel/hostname", "net/../kernel/hostname", "net.ipv4..ip_forward",
                           "net/ipv4/../../kernel/hostname", "net/./ipv4/ip_forward", "/net/ipv4/ip_forward",
                           "net", "", "net.ipv4.ip forward", "net.ipv4.ip_forward\0x", "vm.overcommit_memory" }) do
      assert_raises({ "bad argument #2", "'key'" }, core.sysctl, nil, key)
    end
    assert_raises({ "'key'", "bad sysctl key" }, core.sysctl, nil, "net/" .. ("a"):rep(300))
    assert_raises({ "'value'", "bad sysctl value" }, core.sysctl, nil, "net.ipv4.ip_forward", "1\0")
    assert_raises("bad argument #3", core.sysctl, nil, "net.ipv4.ip_forward", true)
    assert_raises("bad argument #2", core.sysctl, nil, nil)
    assert_raises({ "bad argument #1", "'netns'" }, core.sysctl, {}, "net.ipv4.ip_forward")
  end)

  it("fails with ENOENT for an unknown key or namespace and EINVAL for a value the kernel refuses", function()
    local defer = scope(finally)
    local name = named_ns(defer, "sysctlerr")
    assert_failure("^sysctl net%.ipv4%.nonexistent in " .. plain(name) .. ": No such file or directory$", "ENOENT",
      core.sysctl(name, "net.ipv4.nonexistent"))
    assert_failure("^sysctl: open namespace " .. plain(PREFIX) .. "%-none: No such file or directory$", "ENOENT",
      core.sysctl(PREFIX .. "-none", "net.ipv4.ip_forward"))
    assert_failure("^sysctl net%.ipv4%.ip_forward=abc in " .. plain(name) .. ": Invalid argument$", "EINVAL",
      core.sysctl(name, "net.ipv4.ip_forward", "abc"))
    assert.equal("0", cat_in(name, "/proc/sys/net/ipv4/ip_forward"))
  end)
end)

-- ---- qdiscs -------------------------------------------------------------------------------------------------------

describe("qdiscs #root", function()
  --- A fresh namespace with a veth q0 - q1; returns the handle and the namespace.
  local function shaped(defer)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "q0", kind = "veth", peer = { name = "q1" }, up = true })
    assert(nl:link_set("q1", { up = true }))
    return nl, h
  end

  it("sets tbf with rate, burst and latency or limit, as tc shows them", function()
    local defer = scope(finally)
    local nl, h = shaped(defer)
    assert.is_true(nl:qdisc_replace("q0", { kind = "tbf", rate = "100mbit", burst = "32kb", latency = "10ms" }))
    local tbf = qdiscs(h, "q0").tbf
    assert.is_table(tbf, "no tbf on q0")
    assert.is_true(tbf.root)
    assert.equal(100e6 / 8, tbf.options.rate) -- tc -j gives bytes per second
    near(32768, tbf.options.burst, 0.01, "burst")
    near(10000, tbf.options.lat, 0.05, "latency (us)")
    assert.matches("rate 100Mbit", tc_text(h, "qdisc", "q0"))

    local listed = find(assert(nl:qdisc_list("q0")), "kind", "tbf")
    assert.same({ "q0", "root", 100e6 }, { listed.dev, listed.parent, listed.rate })
    near(32768, listed.burst, 0.01, "listed burst")
    assert.equal(tbf.handle, listed.handle)
    for _, stat in ipairs({ "bytes", "packets", "drops", "overlimits", "qlen", "backlog" }) do
      assert.is_number(listed[stat], stat)
    end

    -- replaced in place with a limit instead of a latency
    assert.is_true(nl:qdisc_replace("q0", { kind = "tbf", rate = "1mbit", limit = "64kb" }))
    tbf = qdiscs(h, "q0").tbf
    assert.equal(125000, tbf.options.rate)
    -- tc shows a limit as the latency it gives: (limit - burst) / rate, burst defaulting to 16 KiB
    near((65536 - 16384) / 125000 * 1e6, tbf.options.lat, 0.02, "latency (us)")
    assert.equal(65536, find(assert(nl:qdisc_list("q0")), "kind", "tbf").limit)
    assert_raises({ "'rate'", "tbf needs a rate" }, nl.qdisc_replace, nl, "q0", { kind = "tbf" })
    assert_raises({ "'limit'", "not both" }, nl.qdisc_replace, nl, "q0",
      { kind = "tbf", rate = "1mbit", limit = 1000, latency = "10ms" })
  end)

  it("shapes with htb: the qdisc (default class 1) and class 1:1 with rate and ceil", function()
    local defer = scope(finally)
    local nl, h = shaped(defer)
    assert.is_true(nl:qdisc_replace("q0", { kind = "htb", rate = "10mbit", ceil = "20mbit", burst = "20kb" }))
    local htb = qdiscs(h, "q0").htb
    assert.same({ "1:", true }, { htb.handle, htb.root })
    assert.equal(1, tonumber(htb.options.default))
    local class = tc_text(h, "class", "q0")
    assert.matches("class htb 1:1 root .*rate 10Mbit ceil 20Mbit burst 20Kb", class)
    local listed = find(assert(nl:qdisc_list("q0")), "kind", "htb")
    assert.same({ "1:", 1 }, { listed.handle, listed.default })

    assert.is_true(nl:qdisc_replace("q0", { kind = "htb", rate = "5mbit" }))
    assert.matches("rate 5Mbit ceil 5Mbit", tc_text(h, "class", "q0"))
    assert_raises({ "'ceil'", "lower than rate" }, nl.qdisc_replace, nl, "q0", { kind = "htb", rate = "5mbit", ceil = "1mbit" })
    assert_raises({ "'handle'", "no minor number" }, nl.qdisc_replace, nl, "q0", { kind = "htb", rate = "5mbit", handle = "1:1" })
    assert_raises({ "'rate'", "htb needs a rate" }, nl.qdisc_replace, nl, "q0", { kind = "htb" })
  end)

  it("sets plain kinds with the kernel's defaults: pfifo, bfifo, pfifo_fast, ingress", function()
    local defer = scope(finally)
    local nl, h = shaped(defer)
    assert.is_true(nl:qdisc_replace("q0", { kind = "pfifo" }))
    local q = qdiscs(h, "q0").pfifo
    assert.is_table(q, "no pfifo on q0")
    assert.equal(link_show(h, "q0").txqlen, q.options.limit)
    assert.is_true(nl:qdisc_replace("q0", { kind = "bfifo", handle = "5:" }))
    assert.equal("5:", qdiscs(h, "q0").bfifo.handle)
    assert.is_true(nl:qdisc_replace("q0", { kind = "pfifo_fast" }))
    assert.is_table(qdiscs(h, "q0").pfifo_fast)
    assert.is_true(nl:qdisc_replace("q0", { kind = "ingress", parent = "ingress" }))
    local all = qdiscs(h, "q0")
    assert.same({ "ffff:", "ffff:fff1" }, { all.ingress.handle, all.ingress.parent })
    local listed = find(assert(nl:qdisc_list("q0")), "kind", "ingress")
    assert.same({ "ingress", "ffff:" }, { listed.parent, listed.handle })
    assert.is_true(nl:qdisc_del("q0", { parent = "ingress" }))
    assert.is_nil(qdiscs(h, "q0").ingress)

    assert_failure("^qdisc replace nosuchqdisc on q0 in .* %(Specified qdisc kind is unknown%): No such file or directory$",
      "ENOENT", nl:qdisc_replace("q0", { kind = "nosuchqdisc" }))
    assert_raises({ "'kind'", "bad qdisc kind" }, nl.qdisc_replace, nl, "q0", { kind = "Fq Codel" })
    assert_raises("unknown option 'limit'", nl.qdisc_replace, nl, "q0", { kind = "pfifo", limit = 10 })
  end)

  it("sets fq_codel, a kind lunas has no options for, when the kernel has it", function()
    local defer = scope(finally)
    local nl, h = shaped(defer)
    local ok, msg, code = nl:qdisc_replace("q0", { kind = "fq_codel" })
    if not has_qdisc("fq_codel") then
      assert_failure("%(Specified qdisc kind is unknown%)", "ENOENT", ok, msg, code)
      pending("needs fq_codel: `tc qdisc add ... fq_codel` fails on this kernel")
    end
    assert.is_true(ok, msg)
    assert.is_table(qdiscs(h, "q0").fq_codel)
  end)

  it("sets netem with delay, jitter, loss, duplicate, corrupt, reorder, rate and limit", function()
    kernel.requires("netem")
    local defer = scope(finally)
    local nl, h = shaped(defer)
    assert.is_true(nl:qdisc_replace("q0", { kind = "netem", delay = "10ms", jitter = "1ms", loss = "1%", rate = "1mbit",
                                            limit = 500 }))
    local netem = qdiscs(h, "q0").netem
    assert.is_table(netem, "no netem on q0")
    assert.equal(500, netem.options.limit)
    local text = tc_text(h, "qdisc", "q0")
    assert.matches("delay 10ms%s+1ms", text)
    assert.matches("loss 1%%", text)
    assert.matches("rate 1Mbit", text)
    local listed = find(assert(nl:qdisc_list("q0")), "kind", "netem")
    near(10, listed.delay, 0.02, "delay (ms)")
    near(1, listed.loss, 0.02, "loss (%)")
    assert.equal(500, listed.limit)

    assert.is_true(nl:qdisc_replace("q0", { kind = "netem", delay = 50, duplicate = 2, corrupt = "0.5%",
                                            reorder = "25%" }))
    text = tc_text(h, "qdisc", "q0")
    assert.matches("delay 50ms", text)
    assert.matches("duplicate 2%%", text)
    assert.matches("corrupt 0%.5%%", text)
    assert.matches("reorder 25%%", text)
    assert.matches("gap 1", text)
    -- and back to the default qdisc
    assert.is_true(nl:qdisc_del("q0"))
    assert.is_nil(qdiscs(h, "q0").netem)
  end)

  it("deletes the root qdisc (the link falls back to its default); nothing to delete fails with ENOENT", function()
    local defer = scope(finally)
    local nl, h = shaped(defer)
    local default = next(qdiscs(h, "q0"))
    assert(nl:qdisc_replace("q0", { kind = "tbf", rate = "1mbit" }))
    assert.is_true(nl:qdisc_del("q0"))
    local now = qdiscs(h, "q0")
    assert.is_nil(now.tbf)
    assert.is_table(now[default])
    assert_failure("^qdisc delete on q0 in .* %(.+%): No such file or directory$", "ENOENT", nl:qdisc_del("q0"))
    assert_failure("^qdisc replace on nope in .*: No such device$", "ENODEV", nl:qdisc_replace("nope", { kind = "pfifo" }))
    assert_failure("^qdisc delete on nope in .*: No such device$", "ENODEV", nl:qdisc_del("nope"))
    assert_failure("^qdisc list on nope in .*: No such device$", "ENODEV", nl:qdisc_list("nope"))
    assert_raises({ "'handle'", "bad handle" }, nl.qdisc_replace, nl, "q0", { kind = "pfifo", handle = "x" })
    assert_raises({ "'parent'", "bad handle" }, nl.qdisc_replace, nl, "q0", { kind = "pfifo", parent = "1:x" })
    assert_raises({ "'parent'", "bad handle" }, nl.qdisc_del, nl, "q0", { parent = "10000:" })
    assert_raises("unknown option 'kind'", nl.qdisc_del, nl, "q0", { kind = "tbf" })
    -- every qdisc of the namespace without a link
    local devs = {}
    for _, q in ipairs(assert(nl:qdisc_list())) do devs[q.dev] = true end
    assert.is_true(devs.q0)
    assert.is_true(devs.q1)
  end)

  it("takes units as strings (10ms, 1%, 100mbit, 32kb) or numbers (ms, %, bit/s, bytes) alike", function()
    local defer = scope(finally)
    local nl, h = shaped(defer)
    local function tbf_of(opts)
      opts.kind = "tbf"
      assert.is_true(nl:qdisc_replace("q0", opts))
      return qdiscs(h, "q0").tbf.options
    end
    local reference = tbf_of{ rate = "100mbit", burst = "32kb", latency = "10ms" }
    for _, opts in ipairs({
      { rate = 100e6, burst = 32768, latency = 10 },
      { rate = "100Mbit", burst = "32k", latency = "10000us" },
      { rate = "12.5mbps", burst = "0.03125mb", latency = "0.01s" },
      { rate = "100000kbit", burst = "256kbit", latency = "10000000ns" },
    }) do
      assert.same(reference, tbf_of(opts))
    end
    assert.equal(1024 * 1024 * 1024 / 8, tbf_of{ rate = "1gibit", burst = "10mb" }.rate)
    assert.equal(1e9 / 8, tbf_of{ rate = "1gbit", burst = "10mb" }.rate)
  end)

  it("raises naming the field for bad units and values, netem's included (checked before the kernel)", function()
    local defer = scope(finally)
    local nl = shaped(defer)
    local cases = {
      { { kind = "tbf", rate = "10 mbit" }, "rate", "unknown unit" },
      { { kind = "tbf", rate = "10furlong" }, "rate", "unknown unit" },
      { { kind = "tbf", rate = "mbit" }, "rate", "bad value" },
      { { kind = "tbf", rate = "-1mbit" }, "rate", "bad value" },
      { { kind = "tbf", rate = -5 }, "rate", "non-negative" },
      { { kind = "tbf", rate = 0 / 0 }, "rate", "non-negative" },
      { { kind = "tbf", rate = math.huge }, "rate", "non-negative" },
      { { kind = "tbf", rate = {} }, "rate", "expected" },
      { { kind = "tbf", rate = "4bit" }, "rate", "at least 8bit" },
      { { kind = "tbf", rate = "18gbit" }, "rate", "17gbit" },
      { { kind = "tbf", rate = "10mbit", burst = "x" }, "burst", "bad value" },
      { { kind = "tbf", rate = "10mbit", burst = "32kib" }, "burst", "unknown unit" },
      { { kind = "tbf", rate = "10mbit", burst = "3gb" }, "burst", "2 GiB" },
      { { kind = "tbf", rate = "10mbit", latency = "10parsec" }, "latency", "unknown unit" },
      { { kind = "tbf", rate = "10mbit", latency = "2min" }, "latency", "unknown unit" },
      { { kind = "tbf", rate = "10mbit", latency = "61s" }, "latency", "more than a minute" },
      { { kind = "tbf", rate = "10mbit", limit = "3gb" }, "limit", "too large" },
      -- what the kernel cannot hold (a bucket longer than ~274 s, a limit over 2 GiB) is refused, not wrapped
      { { kind = "tbf", rate = "8bit" }, "rate", "too low" },
      { { kind = "tbf", rate = "1kbit", burst = "1mb" }, "burst", "more than" },
      { { kind = "tbf", rate = "10gbit", latency = "2s" }, "latency", "2 GiB" },
      { { kind = "htb", rate = "400bit" }, "rate", "too low" },
      { { kind = "htb", rate = "1mbit", ceil = "2mbit", cburst = "1gb" }, "cburst", "more than" },
      { { kind = "htb", rate = "1mbit", ceil = "1kb" }, "ceil", "unknown unit" },
      { { kind = "netem", delay = "-1ms" }, "delay", "bad value" },
      { { kind = "netem", delay = "1 ms" }, "delay", "unknown unit" },
      { { kind = "netem", loss = "101%" }, "loss", "more than 100%" },
      { { kind = "netem", loss = 150 }, "loss", "more than 100%" },
      { { kind = "netem", loss = "1" }, "loss", "unknown unit" },
      { { kind = "netem", duplicate = "1x" }, "duplicate", "unknown unit" },
      { { kind = "netem", corrupt = true }, "corrupt", "expected" },
      { { kind = "netem", jitter = "1ms" }, "jitter", "needs a delay" },
      { { kind = "netem", reorder = "10%" }, "reorder", "needs a delay" },
      { { kind = "netem", rate = "1furlong" }, "rate", "unknown unit" },
      { { kind = "netem", limit = 0 }, "limit", "out of range" },
      { { kind = "netem", delay = "10ms", latency = "1ms" }, nil, "unknown option 'latency'" },
      { { kind = "tbf", rate = "1mbit", delay = "1ms" }, nil, "unknown option 'delay'" },
      { { rate = "1mbit" }, "kind", "qdisc kind expected" },
    }
    for _, case in ipairs(cases) do
      local texts = { case[3] }
      if case[2] then texts[2] = "'" .. case[2] .. "'" end
      assert_raises(texts, nl.qdisc_replace, nl, "q0", case[1])
    end
    assert_raises("table expected", nl.qdisc_replace, nl, "q0", "tbf")
  end)
end)

-- ---- bad input ----------------------------------------------------------------------------------------------------

describe("bad input #root", function()
  it("raises naming the field for interface names over 15 bytes, with '/', ':', white space, or empty", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    for _, bad in ipairs({ ("n"):rep(16), "a/b", "a b", "a:b", "a\tb", "", ".", "..", "a\0b" }) do
      assert_raises("'name'", nl.link_add, nl, { name = bad, kind = "bridge" })
      assert_raises("'peer.name'", nl.link_add, nl, { name = "ok0", kind = "veth", peer = { name = bad } })
      assert_raises("'link'", nl.link_get, nl, bad)
      assert_raises("'link'", nl.link_set, nl, bad, { up = true })
      assert_raises("'link'", nl.link_del, nl, bad)
      assert_raises("'link'", nl.addr_add, nl, bad, "10.0.0.1/24")
      assert_raises("'dev'", nl.route_add, nl, { dst = "10.0.0.0/8", dev = bad })
      assert_raises("'dev'", nl.neigh_add, nl, { dev = bad, dst = "10.0.0.1", lladdr = "02:00:00:00:00:01" })
      assert_raises("'link'", nl.qdisc_replace, nl, bad, { kind = "pfifo" })
    end
    assert_raises("longer than 15 bytes", nl.link_add, nl, { name = ("n"):rep(16), kind = "bridge" })
    -- 15 bytes is the longest name, and it is kept whole (libnl would truncate a longer one silently)
    local longest = ("n"):rep(15)
    assert.is_true(nl:link_add{ name = longest, kind = "bridge" })
    assert.is_not_nil(link_show(h, longest))
    assert.equal(2, link_count(h))
  end)

  it("raises naming the field for bad prefixes and addresses", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert(nl:link_add{ name = "a0", kind = "veth", peer = { name = "a1" } })
    for _, bad in ipairs({ "10.0.0.1/33", "10.0.0.300/24", "fd00::zz/64", "fd00::1/129", "10.0.0.1/", "10.0.0.1/-1",
                           "10.0.0.1/24x", "10.0.0.1/ 24", "10.0.0/24", "/24", "", "default", "10.0.0.1//24",
                           "localhost", ("1"):rep(100) }) do
      assert_raises("'address'", nl.addr_add, nl, "a0", bad)
      assert_raises("'address'", nl.addr_del, nl, "a0", bad)
      assert_raises("'dst'", nl.neigh_add, nl, { dev = "a0", dst = bad, lladdr = "02:00:00:00:00:01" })
      assert_raises("'remote'", nl.link_add, nl, { name = "vx", kind = "vxlan", id = 1, remote = bad })
      if bad ~= "default" then
        assert_raises("'dst'", nl.route_add, nl, { dst = bad, dev = "a0" })
      end
      assert_raises("'via'", nl.route_add, nl, { dst = "10.9.0.0/16", via = bad })
    end
    assert_raises("'address'", nl.addr_add, nl, "a0", 10)
    assert_raises("'address'", nl.addr_add, nl, "a0")
    assert.same({}, addresses(h, "a0"))
  end)

  it("raises naming the field for bad MAC addresses", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    for _, bad in ipairs({ "zz", "02:00:00:00:00", "02:00:00:00:00:00:00", "02-00-00-00-00-01", "002:00:00:00:00:01",
                           "02:00:00:00:00:0g", "02:00:00:00:00:01 ", "", "0:0:0:0:0:1" }) do
      assert_raises("'mac'", nl.link_add, nl, { name = "br0", kind = "bridge", mac = bad })
      assert_raises("'peer.mac'", nl.link_add, nl, { name = "v0", kind = "veth", peer = { name = "v1", mac = bad } })
      assert_raises("'mac'", nl.link_set, nl, "lo", { mac = bad })
      assert_raises("'lladdr'", nl.neigh_add, nl, { dev = "lo", dst = "10.0.0.1", lladdr = bad })
    end
    assert_raises("'peer.mac'", nl.link_add, nl, { name = "v0", kind = "veth", peer = { name = "v1", mac = {} } })
    assert_raises("'mac'", nl.link_add, nl, { name = "br0", kind = "bridge", mac = 1 })
    assert.equal(1, link_count(h))
  end)

  it("refuses unknown options and options of another kind (strict tables) in every method", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert_raises("unknown option 'colour'", nl.link_add, nl, { name = "br0", kind = "bridge", colour = "red" })
    assert_raises("option names must be strings", nl.link_add, nl, { name = "br0", kind = "bridge", "positional" })
    assert_raises({ "'peer'", "not an option of a bridge link" }, nl.link_add, nl,
      { name = "br0", kind = "bridge", peer = { name = "x" } })
    assert_raises({ "'mode'", "not an option of a veth link" }, nl.link_add, nl,
      { name = "v0", kind = "veth", peer = { name = "v1" }, mode = "bridge" })
    assert_raises({ "'persist'", "not an option of a bridge link" }, nl.link_add, nl,
      { name = "br0", kind = "bridge", persist = true })
    assert_raises({ "'id'", "not an option of a tap link" }, nl.link_add, nl, { name = "t0", kind = "tap", id = 5 })
    assert_raises({ "'netns'", "handle's namespace" }, nl.link_add, nl, { name = "t0", kind = "tap", netns = h })
    assert_raises({ "'peer'", "unknown option 'up'", "through a handle in its namespace" }, nl.link_add, nl,
      { name = "v0", kind = "veth", peer = { name = "v1", up = true } })
    assert_raises({ "'peer'", "unknown option 'colour'" }, nl.link_add, nl,
      { name = "v0", kind = "veth", peer = { name = "v1", colour = "red" } })
    assert_raises("unknown option 'kind'", nl.link_set, nl, "lo", { kind = "bridge" })
    assert_raises("unknown option 'labels'", nl.addr_add, nl, "lo", "10.0.0.1/8", { labels = "x" })
    assert_raises("unknown option 'metric'", nl.addr_add, nl, "lo", "10.0.0.1/8", { metric = 1 })
    assert_raises("unknown option 'via'", nl.neigh_add, nl, { dev = "lo", dst = "10.0.0.1", via = "x" })
    assert_raises("unknown option 'dev'", nl.route_list, nl, { dev = "lo" })
    assert_raises("unknown option 'burst'", nl.qdisc_replace, nl, "lo", { kind = "netem", burst = 1 })
    assert.equal(1, link_count(h))
  end)

  it("raises for wrong types of arguments and options", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert_raises("lunas.netlink expected", nl.link_list, {})
    assert_raises("lunas.netlink expected", nl.link_list, "nl")
    assert_raises("lunas.netlink expected", nl.link_list)
    assert_raises("table expected", nl.link_add, nl, "br0")
    assert_raises("table expected", nl.link_add, nl)
    assert_raises("table expected", nl.link_set, nl, "lo")
    assert_raises("'link'", nl.link_get, nl, {})
    assert_raises("'link'", nl.link_get, nl, true)
    assert_raises({ "'link'", "out of range" }, nl.link_get, nl, 0)
    assert_raises({ "'link'", "out of range" }, nl.link_get, nl, -3)
    assert_raises("'link'", nl.link_get, nl, 1.5)
    assert_raises("'link'", nl.link_get, nl)
    assert_raises("'kind'", nl.link_add, nl, { name = "br0", kind = 5 })
    assert_raises({ "'kind'", "bad link kind" }, nl.link_add, nl, { name = "br0", kind = "Bridge" })
    assert_raises({ "'kind'", "bad link kind" }, nl.link_add, nl, { name = "br0", kind = "br idge" })
    assert_raises("'kind'", nl.link_add, nl, { name = "br0" })
    assert_raises("'name'", nl.link_add, nl, { kind = "bridge" })
    assert_raises("'name'", nl.link_add, nl, { name = 5, kind = "bridge" })
    assert_raises({ "'mtu'", "out of range" }, nl.link_add, nl, { name = "br0", kind = "bridge", mtu = 67 })
    assert_raises({ "'mtu'", "out of range" }, nl.link_add, nl, { name = "br0", kind = "bridge", mtu = 65536 })
    assert_raises("'mtu'", nl.link_add, nl, { name = "br0", kind = "bridge", mtu = "1500" })
    assert_raises("'mtu'", nl.link_add, nl, { name = "br0", kind = "bridge", mtu = 1500.5 })
    assert_raises("'up'", nl.link_add, nl, { name = "br0", kind = "bridge", up = "yes" })
    assert_raises("'group'", nl.link_add, nl, { name = "br0", kind = "bridge", group = -1 })
    assert_raises("'txqlen'", nl.link_add, nl, { name = "br0", kind = "bridge", txqlen = 2 ^ 32 })
    assert_raises("'master'", nl.link_add, nl, { name = "br0", kind = "bridge", master = {} })
    assert_raises("'netns'", nl.link_add, nl, { name = "br0", kind = "bridge", netns = true })
    assert_raises("'peer.netns'", nl.link_add, nl, { name = "v0", kind = "veth", peer = { name = "v1", netns = {} } })
    assert_raises("'peer.mtu'", nl.link_add, nl, { name = "v0", kind = "veth", peer = { name = "v1", mtu = "x" } })
    assert_raises("'peer.group'", nl.link_add, nl, { name = "v0", kind = "veth", peer = { name = "v1", group = -1 } })
    assert_raises("'owner'", nl.link_add, nl, { name = "t0", kind = "tap", owner = -1 })
    assert_raises("'persist'", nl.link_add, nl, { name = "t0", kind = "tap", persist = 0 })
    assert_raises("'nodad'", nl.addr_add, nl, "lo", "fd00::1/64", { nodad = 1 })
    assert_raises("table expected", nl.addr_add, nl, "lo", "fd00::1/64", "nodad")
    assert_raises("'replace'", nl.route_add, nl, { dst = "10.0.0.0/8", dev = "lo", replace = "yes" })
    assert_raises("'lladdr'", nl.neigh_add, nl, { dev = "lo", dst = "10.0.0.1", lladdr = 2 })
    assert.equal(1, link_count(h))
  end)

  it("raises when a veth has no peer or a peer without a name", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    assert_raises({ "'peer'", "needs a peer table" }, nl.link_add, nl, { name = "v0", kind = "veth" })
    assert_raises({ "'peer'", "table expected" }, nl.link_add, nl, { name = "v0", kind = "veth", peer = "v1" })
    assert_raises({ "'peer.name'", "interface name expected" }, nl.link_add, nl, { name = "v0", kind = "veth", peer = {} })
    assert_failure("^link add: peer namespace " .. plain(PREFIX) .. "%-none: No such file or directory$", "ENOENT",
      nl:link_add{ name = "v0", kind = "veth", peer = { name = "v1", netns = PREFIX .. "-none" } })
    assert.equal(1, link_count(h))
  end)

  it("fails with ENODEV naming the link in every method that takes one", function()
    local defer = scope(finally)
    local name = named_ns(defer, "nodev")
    local nl = handle(defer, name)
    local tail = " in " .. plain(name) .. ": No such device$"
    local calls = {
      { "^link get nope", nl.link_get, "nope" },
      { "^link set nope", nl.link_set, "nope", { up = true } },
      { "^link delete nope", nl.link_del, "nope" },
      { "^address add nope", nl.addr_add, "nope", "10.0.0.1/24" },
      { "^address delete nope", nl.addr_del, "nope", "10.0.0.1/24" },
      { "^address list nope", nl.addr_list, "nope" },
      { "^route: dev nope", nl.route_add, { dst = "10.0.0.0/8", dev = "nope" } },
      { "^route: dev nope", nl.route_del, { dst = "10.0.0.0/8", dev = "nope" } },
      { "^neighbour add nope", nl.neigh_add, { dev = "nope", dst = "10.0.0.1", lladdr = "02:00:00:00:00:01" } },
      { "^neighbour delete nope", nl.neigh_del, { dev = "nope", dst = "10.0.0.1" } },
      { "^qdisc replace on nope", nl.qdisc_replace, "nope", { kind = "pfifo" } },
      { "^qdisc delete on nope", nl.qdisc_del, "nope" },
      { "^qdisc list on nope", nl.qdisc_list, "nope" },
      { "^link master nope", nl.link_add, { name = "br0", kind = "bridge", master = "nope" } },
      { "^link add: parent nope", nl.link_add, { name = "mv0", kind = "macvlan", link = "nope" } },
      { "^link master nope", nl.link_set, "lo", { master = "nope" } },
    }
    for _, c in ipairs(calls) do
      local ok, msg, code = c[2](nl, table.unpack(c, 3))
      assert.is_nil(ok, c[1])
      assert.equal("ENODEV", code, msg)
      assert.matches(c[1] .. "[^\n]*No such device$", msg)
    end
    assert_failure("^link get nope" .. tail, "ENODEV", nl:link_get("nope"))
    assert.equal(1, link_count(name))
  end)

  it("leaks no namespace descriptors when an option raises after a namespace was opened", function()
    local defer = scope(finally)
    local name = named_ns(defer, "fds")
    local nl = handle(defer)
    own_link(defer, "ntf0")
    assert(nl:link_add{ name = "ntf0", kind = "veth", peer = { name = "ntf1" } })
    own_link(defer, "ntf1")
    collectgarbage()
    local before = fd_count()
    for _ = 1, 20 do
      assert_raises("'mtu'", nl.link_set, nl, "ntf0", { netns = name, mtu = 1 })
      assert_raises("'peer.mtu'", nl.link_add, nl,
        { name = "ntf2", kind = "veth", netns = name, peer = { name = "ntf3", netns = name, mtu = 5 } })
      assert_raises("'peer.name'", nl.link_add, nl,
        { name = "ntf2", kind = "veth", netns = name, peer = { name = "ntf3/", netns = name } })
      assert_raises("'mac'", nl.link_add, nl, { name = "ntf2", kind = "bridge", netns = name, mac = "zz" })
    end
    collectgarbage()
    collectgarbage()
    assert.equal(before, fd_count())
    assert.is_not_nil(link_show(nil, "ntf0"))
    assert.equal(1, link_count(name))
  end)

  it("leaves no tun/tap device behind when a common option is bad or its master is missing", function()
    local defer = scope(finally)
    local h = fresh_ns(defer)
    local nl = handle(defer, h)
    collectgarbage()
    local before = fd_count()
    assert_raises("'mtu'", nl.link_add, nl, { name = "t0", kind = "tap", mtu = 5 })
    assert_raises("'mac'", nl.link_add, nl, { name = "t1", kind = "tun", mac = "zz" })
    assert_raises("'group'", nl.link_add, nl, { name = "t2", kind = "tap", persist = false, group = -1 })
    assert_failure("^link master nope in .*: No such device$", "ENODEV", nl:link_add{ name = "t3", kind = "tap", master = "nope" })
    assert_failure("^link master nope in .*: No such device$", "ENODEV",
      nl:link_add{ name = "t4", kind = "tap", persist = false, master = "nope" })
    collectgarbage()
    collectgarbage()
    assert.equal(before, fd_count())
    assert.equal(1, link_count(h))
  end)

  it("survives random garbage given to every function and method: each call raises or returns nil, msg, code",
    function()
      local defer = scope(finally)
      -- LUNAS_FUZZ_SEED=N replays a run
      local seed = tonumber(os.getenv("LUNAS_FUZZ_SEED") or "") or os.time()
      local ITERATIONS = os.getenv("LUNAS_VM") and 2000 or 6000 -- (the VM lane emulates the CPU)
      local p, ch = start({ flags = "net" }, function(c)
        math.randomseed(seed)
        local nl = assert(core.netlink())
        local spare = assert(core.ns_create("net"))
        -- links for the calls to find: a veth pair and a bridge
        assert(nl:link_add{ name = "f0", kind = "veth", peer = { name = "f1" }, up = true })
        assert(nl:link_add{ name = "fb", kind = "bridge" })
        local fn0 = function() end
        local co = coroutine.create(fn0)
        local function pick(list) return list[math.random(#list)] end
        local scalars = {
          true, false, 0, 1, 2, -1, 7, 255, 65535, 2 ^ 31, 2 ^ 32, 2 ^ 53, -2 ^ 63, math.maxinteger, math.mininteger,
          1.5, -0.0, 0 / 0, math.huge, -math.huge, "", "x", "lo", "f0", "f1", "fb", ("a"):rep(15), ("a"):rep(16),
          ("a"):rep(5000), "a/b", "a b", "a:b", "..", "a\0b", "\255\254", "10.0.0.1/33", "10.0.0.300/24",
          "fd00::zz/64", "10.0.0.1/24", "10.0.0.1", "fd00::1/64", "fd00::1", "default", "0.0.0.0/0",
          "255.255.255.255", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "zz:zz", "100mbit", "8bit", "18gbit",
          "10ms", "61s", "1%", "101%", "32kb", "3gb", "-1", "1e309", "nan", "0x10", "net.ipv4.ip_forward",
          "net/ipv4/conf/lo/forwarding", "net/../kernel/hostname", "kernel.hostname", "veth", "bridge", "macvlan",
          "macvtap", "vxlan", "vlan", "tun", "tap", "ifb", "dummy", "nosuchkind", "pfifo", "bfifo", "pfifo_fast",
          "prio", "tbf", "htb", "netem", "ingress", "fq_codel", "root", "1:", "1:1", "ffff:", "10000:",
          "private", "passthru", "blackhole", "unreachable", "inet", "inet6", "permanent", "link", "host",
          PREFIX .. "-none", "/nonexistent/ns", "/proc/self/status", fn0, co, io.stdout, nl, spare,
        }
        local keys = {
          "name", "kind", "mtu", "mac", "up", "master", "group", "txqlen", "netns", "peer", "link", "mode", "id",
          "remote", "src", "port", "learning", "owner", "owner_group", "persist", "packet_info", "multi_queue",
          "nomaster", "dst", "via", "dev", "table", "metric", "type", "scope", "protocol", "onlink", "replace",
          "family", "lladdr", "state", "broadcast", "label", "nodad", "noprefixroute", "parent", "handle", "rate",
          "burst", "latency", "limit", "ceil", "cburst", "delay", "jitter", "loss", "duplicate", "corrupt",
          "reorder", "gap", "colour", 1, true,
        }
        local function garbage(depth)
          local r = math.random(10)
          if r == 1 then return nil end
          if r == 2 and depth < 2 then
            local t = {}
            for _ = 1, math.random(0, 6) do t[pick(keys)] = garbage(depth + 1) end
            return t
          end
          return pick(scalars)
        end
        -- mostly sensible values, so that calls get past the first checks and reach libnl and the kernel
        local good = {
          name = { "g0", "g1", "gb", "f0", "lo", ("g"):rep(15) },
          link = { "f0", "f1", "fb", "lo", 1 },
          kind = { "veth", "bridge", "macvlan", "macvtap", "vxlan", "vlan", "tun", "tap", "ifb", "nosuchkind" },
          qdisc = { "pfifo", "bfifo", "pfifo_fast", "prio", "pfifo_head_drop", "noqueue", "tbf", "htb", "netem",
                    "ingress", "fq_codel", "sfq", "nosuchqdisc" },
          mode = { "private", "vepa", "bridge", "passthru", "source" },
          address = { "10.0.0.1/24", "10.0.0.2", "fd00::1/64", "10.9.0.0/16", "default", "fd00::fe" },
          rate = { "1mbit", "100mbit", "8bit", "1gbit", 1e6, "10kbps" },
          size = { "32kb", 1500, "1mb", "10k" },
          time = { "10ms", 5, "1s", "100us" },
          percent = { "1%", 50, "0.5%" },
          handle = { "1:", "root", "ingress", "ffff:", "2:0" },
          netns = { spare, PREFIX .. "-none" },
          bool = { true, false },
        }
        local function maybe(t, key, values)
          if math.random(3) > 1 then
            t[key] = math.random(8) == 1 and garbage(1) or pick(values)
          end
        end
        local structured = {
          link_add = function()
            local t = { name = pick(good.name), kind = pick(good.kind) }
            maybe(t, "mtu", { 1400, 68, 9000 })
            maybe(t, "up", good.bool)
            maybe(t, "group", { 3, 7 })
            if t.kind == "veth" then
              t.peer = { name = pick(good.name) }
              maybe(t.peer, "netns", good.netns)
              maybe(t.peer, "group", { 3, 7 })
              maybe(t.peer, "mac", { "02:00:00:00:00:02" })
            elseif t.kind == "macvlan" or t.kind == "macvtap" or t.kind == "vlan" then
              maybe(t, "link", good.link)
              maybe(t, "mode", good.mode)
              maybe(t, "id", { 5, 4094 })
            elseif t.kind == "vxlan" then
              t.id = math.random(0, 100)
              maybe(t, "remote", good.address)
              maybe(t, "link", good.link)
            elseif t.kind == "tun" or t.kind == "tap" then
              maybe(t, "persist", good.bool)
              maybe(t, "master", { "fb", "nope" })
            end
            if math.random(6) == 1 then t[pick(keys)] = garbage(1) end
            return { t }
          end,
          link_set = function()
            local t = {}
            maybe(t, "up", good.bool)
            maybe(t, "mtu", { 1280, 1500 })
            maybe(t, "master", { "fb", "nope" })
            maybe(t, "group", { 0, 7 })
            if math.random(10) == 1 then t.netns = pick(good.netns) end
            return { pick(good.link), t }
          end,
          link_del = function() return { pick({ "g0", "g1", "gb", "nope" }) } end,
          link_del_group = function() return { pick({ 3, 7, 9 }) } end,
          addr_add = function()
            local t = {}
            maybe(t, "nodad", good.bool)
            maybe(t, "replace", good.bool)
            return { pick(good.link), pick(good.address), t }
          end,
          route_add = function()
            local t = { dst = pick(good.address) }
            maybe(t, "via", good.address)
            maybe(t, "dev", good.link)
            maybe(t, "type", { "blackhole", "unicast", "unreachable" })
            maybe(t, "table", { 100, 254 })
            return { t }
          end,
          neigh_add = function()
            return { { dev = pick(good.link), dst = pick(good.address), lladdr = "02:00:00:00:00:09" } }
          end,
          qdisc_replace = function()
            local t = { kind = pick(good.qdisc) }
            maybe(t, "parent", good.handle)
            maybe(t, "handle", good.handle)
            if t.kind == "tbf" or t.kind == "htb" then
              maybe(t, "rate", good.rate)
              maybe(t, "burst", good.size)
              if t.kind == "tbf" then maybe(t, "latency", good.time) else maybe(t, "ceil", good.rate) end
            elseif t.kind == "netem" then
              maybe(t, "delay", good.time)
              maybe(t, "loss", good.percent)
              maybe(t, "rate", good.rate)
            end
            if math.random(6) == 1 then t[pick(keys)] = garbage(1) end
            return { pick(good.link), t }
          end,
          qdisc_del = function() return { pick(good.link) } end,
          sysctl = function()
            local netns, value = pick({ "current", spare }), pick({ "read", "1", 0, "abc" })
            return { netns ~= "current" and netns or nil,
                     pick({ "net.ipv4.ip_forward", "net/ipv4/conf/f0/forwarding", "net.ipv4.nonexistent" }),
                     value ~= "read" and value or nil }
          end,
        }
        structured.route_del = structured.route_add
        structured.addr_del = structured.addr_add
        structured.neigh_del = structured.neigh_add
        local calls = {}
        for _, m in ipairs(METHODS) do calls[#calls + 1] = { m, nl[m], true } end
        calls[#calls + 1] = { "netlink", core.netlink, false }
        calls[#calls + 1] = { "sysctl", core.sysctl, false }
        local counts = { raised = 0, failed = 0, succeeded = 0 }
        for i = 1, ITERATIONS do
          local call = pick(calls)
          local args, n
          local make = structured[call[1]]
          if make and math.random(2) == 1 then
            args = make()
            n = 3
          else
            args, n = {}, math.random(0, 4)
            for j = 1, n do args[j] = garbage(0) end
          end
          if call[3] and math.random(20) > 1 then
            table.insert(args, 1, nl)
            n = n + 1
          end
          local r = table.pack(pcall(call[2], table.unpack(args, 1, n)))
          if not r[1] then
            if type(r[2]) ~= "string" then
              c.send("bad", i, call[1], "raised a " .. type(r[2]))
              return 1
            end
            counts.raised = counts.raised + 1
          elseif r[2] == nil then
            if type(r[3]) ~= "string" or type(r[4]) ~= "string" or not r[4]:match("^E[A-Z0-9]+$") then
              c.send("bad", i, call[1], "nil, " .. tostring(r[3]) .. ", " .. tostring(r[4]))
              return 1
            end
            counts.failed = counts.failed + 1
          else
            counts.succeeded = counts.succeeded + 1
          end
          -- tun/tap descriptors and such: do not run out of descriptors
          if i % 500 == 0 then collectgarbage() end
        end
        nl:close()
        spare:close()
        c.send("counts", counts.raised, counts.failed, counts.succeeded)
        return 0
      end)
      defer(function() stop(p, ch) end)
      local ok, what, a, b, x = pcall(ch.expect, 300)
      local st = finish(p, 30)
      assert.is_nil(st.signal, "the child died of signal " .. tostring(st.signal) .. " (LUNAS_FUZZ_SEED=" .. seed .. ")")
      assert.is_true(ok, tostring(what) .. " (LUNAS_FUZZ_SEED=" .. seed .. ")")
      assert.equal("counts", what, "LUNAS_FUZZ_SEED=" .. seed .. ": call " .. tostring(a) .. " to " .. tostring(b) ..
        ": " .. tostring(x))
      assert.equal(0, st.status)
      assert.is_true(tonumber(a) > 0 and tonumber(b) > 0 and tonumber(x) > 0,
        "raised " .. a .. ", failed " .. b .. ", succeeded " .. x)
    end)
end)

-- ---- error messages -------------------------------------------------------------------------------------------------

describe("error messages #root", function()
  it("read 'op target in NS (kernel text): strerror' with the errno name as the third value", function()
    local defer = scope(finally)
    local name = named_ns(defer, "errors")
    local nl = handle(defer, name)
    assert(nl:link_add{ name = "e0", kind = "veth", peer = { name = "e1" } })
    local cases = {
      { "link add e0 in " .. name .. ": File exists", "EEXIST", nl:link_add{ name = "e0", kind = "bridge" } },
      { "link add x0 in " .. name .. " (Unknown device type): Operation not supported", "EOPNOTSUPP",
        nl:link_add{ name = "x0", kind = "nosuchkind" } },
      { "link get nope in " .. name .. ": No such device", "ENODEV", nl:link_get("nope") },
      { "route add 10.9.0.0/16 in " .. name .. " (Nexthop has invalid gateway): Network is unreachable", "ENETUNREACH",
        nl:route_add{ dst = "10.9.0.0/16", via = "10.5.0.1" } },
      { "qdisc replace nosuchqdisc on e0 in " .. name .. " (Specified qdisc kind is unknown): No such file or directory",
        "ENOENT", nl:qdisc_replace("e0", { kind = "nosuchqdisc" }) },
      { "link delete group 99 in " .. name .. ": No such device", "ENODEV", nl:link_del_group(99) },
    }
    for _, c in ipairs(cases) do
      assert.same({ nil, c[1], c[2] }, { c[3], c[4], c[5] })
    end
    -- the errno name and the text agree with the kernel's errno
    local _, msg, code = nl:link_add{ name = "e0", kind = "bridge" }
    assert.equal(core.strerror(code), msg:match(": ([^:]+)$"))
    -- the current namespace has no "in" part
    local cur = handle(defer)
    assert.same({ nil, "link get " .. PREFIX:sub(1, 15) .. ": No such device", "ENODEV" },
      { cur:link_get(PREFIX:sub(1, 15)) })
  end)
end)

-- ---- rootless -----------------------------------------------------------------------------------------------------

describe("core.netlink in a user namespace", function()
  it("lets a child in new user and network namespaces make a veth pair, addresses and routes #rootless", function()
    local defer = scope(finally)
    if not ROOT then kernel.requires("userns") end
    local p, ch = start({ flags = "user,net" }, function(c)
      map_self()
      local nl = assert(core.netlink())
      assert(nl:link_set("lo", { up = true }))
      assert(nl:link_add{ name = "u0", kind = "veth", peer = { name = "u1" }, up = true, mtu = 1400 })
      assert(nl:link_set("u1", { up = true }))
      assert(nl:addr_add("u0", "10.88.0.1/24"))
      assert(nl:addr_add("u1", "10.88.0.2/24"))
      assert(nl:addr_add("u0", "fd88::1/64", { nodad = true }))
      assert(nl:route_add{ dst = "10.99.0.0/16", via = "10.88.0.2" })
      assert(core.sysctl(nil, "net.ipv4.ip_forward", "1"))
      assert(nl:qdisc_replace("u0", { kind = "tbf", rate = "100mbit" }))
      local found = 0
      for _, a in ipairs(assert(nl:addr_list())) do
        if a.address == "10.88.0.1/24" or a.address == "10.88.0.2/24" then found = found + 1 end
      end
      assert(found == 2, "addr_list lists " .. found .. " of 2 addresses")
      c.send("ready")
      c.recv()
      nl:close()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect(30)
    -- from outside, through the child's user namespace
    local function ip_in_child(...)
      local cmd = { "nsenter", "-t", tostring(p.pid), "-U", "--preserve-credentials", "-n", "ip", "-j", ... }
      local out, code = util.run(cmd, { stderr = false })
      assert.equal(0, code, out)
      return assert(json.decode(out), out)
    end
    local links = {}
    for _, l in ipairs(ip_in_child("link", "show")) do links[l.ifname] = l end
    assert.same({ 1400, "u1" }, { links.u0.mtu, links.u0.link })
    assert.is_not_nil(links.u1)
    local seen = {}
    for _, l in ipairs(ip_in_child("addr", "show")) do
      for _, a in ipairs(l.addr_info or {}) do seen[a["local"] .. "/" .. a.prefixlen] = l.ifname end
    end
    assert.same({ "u0", "u1", "u0" }, { seen["10.88.0.1/24"], seen["10.88.0.2/24"], seen["fd88::1/64"] })
    local routes = ip_in_child("route", "show", "10.99.0.0/16")
    assert.equal("10.88.0.2", routes[1].gateway)
    -- nothing of it in the test's own namespace
    assert.is_nil(link_names(nil).u0)
    ch.post("go")
    local st = finish(p)
    assert.is_nil(st.signal)
    assert.equal(0, st.status)
  end)

  -- (only in the rootless pass: root may change the test's namespace)
  if not ROOT then
  it("lets an unprivileged process read but not change its own namespace #rootless", function()
    local defer = scope(finally)
    local nl = handle(defer)
    assert.is_table(assert(nl:link_list()))
    assert.is_table(assert(nl:addr_list()))
    assert_failure("^link add nt%-rl0: Operation not permitted$", "EPERM", nl:link_add{ name = "nt-rl0", kind = "bridge" })
    assert_failure("^sysctl net%.ipv4%.ip_forward in current: Permission denied$", "EACCES",
      core.sysctl(nil, "net.ipv4.ip_forward", "1"))
    assert.is_nil(link_show(nil, "nt-rl0"))
  end)
  end
end)
