-- lunas.core namespaces: unshare, setns (handle, path, pidfd), namespace handles, ns_ids, persistence,
-- uid/gid maps, time namespace offsets, UTS names, mount/umount, loopback_up.
--
-- Children run a copy of this Lua state (fork semantics). They talk to the test through a channel (two pipes:
-- lines of tab-separated fields up, lines down) and block on it while the test looks at them from outside
-- (/proc/PID/ns/*, /proc/PID/uid_map, findmnt -N, nsenter, ip). Every child is reaped by `stop` in the test's
-- cleanup, also when the test fails.

local core = require "lunas.core"
local lfs = require "lfs"
local kernel = require "support.kernel"
local util = require "support.util"

local IDS = core.ids()
local SELF = core.getpid()

-- ---- helpers ------------------------------------------------------------------------------------------------

local child = require "support.child"
local channel, start, stop, finish = child.channel, child.start, child.stop, child.finish
local fd_flags, has_flag, fd_link, readlink = child.fd_flags, child.has_flag, child.fd_link, child.readlink
local assert_failure, assert_raises, map_self = child.assert_failure, child.assert_raises, child.map_self
local O_CLOEXEC, O_NONBLOCK = child.O_CLOEXEC, child.O_NONBLOCK


local scope = util.cleanups

local ROOT = IDS.euid == 0

--- The inode number of /proc/PID/ns/KIND, read from outside.
local function ns_inode(pid, kind)
  local link = util.ns_link(pid, kind)
  return link and tonumber(link:match("%[(%d+)%]"))
end

--- Runs a command inside the namespaces of pid with nsenter; through the user namespace when it has its own.
local function nsenter(pid, userns, nsflags, argv)
  local cmd = { "nsenter", "-t", tostring(pid) }
  if userns then
    cmd[#cmd + 1] = "-U"
    cmd[#cmd + 1] = "--preserve-credentials"
  end
  for _, f in ipairs(nsflags) do cmd[#cmd + 1] = f end
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  return util.run(cmd)
end

--- The lines of a uid_map / gid_map as { {inside, outside, count}, ... }.
local function read_map(path)
  local ranges = {}
  for line in (util.read(path) or ""):gmatch("[^\n]+") do
    local a, b, c = line:match("^%s*(%d+)%s+(%d+)%s+(%d+)%s*$")
    ranges[#ranges + 1] = { tonumber(a), tonumber(b), tonumber(c) }
  end
  return ranges
end

local NS_TYPES = { user = "user", pid = "pid", mount = "mnt", uts = "uts", ipc = "ipc", net = "net",
                   cgroup = "cgroup", time = "time" }

-- ---- unshare ------------------------------------------------------------------------------------------------

describe("core.unshare", function()
  it("moves a child into new namespaces, seen in /proc/PID/ns #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local ns = core.namespaces
    local cases = {
      { spawn = nil, flags = "user,net,uts", kinds = { "user", "net", "uts" } },
      { spawn = "user", flags = { "net", "ipc" }, kinds = { "net", "ipc" } },
      { spawn = "user", flags = ns.uts | ns.ipc | ns.net, kinds = { "uts", "ipc", "net" } },
    }
    for _, case in ipairs(cases) do
      local p, ch = start({ flags = case.spawn }, function(c)
        if case.spawn then map_self() end
        c.send("before")
        c.recv()
        c.send("unshare", core.unshare(case.flags))
        c.recv()
        return 0
      end)
      defer(function() stop(p, ch) end)
      ch.expect()
      local before = {}
      for _, kind in ipairs(case.kinds) do
        before[kind] = ns_inode(p.pid, kind)
        if kind ~= "user" or not case.spawn then
          assert.equal(ns_inode(SELF, kind), before[kind], kind .. " before unshare")
        end
      end
      ch.post("go")
      assert.same({ "unshare", "true" }, { ch.expect() })
      for _, kind in ipairs(case.kinds) do
        local after = ns_inode(p.pid, kind)
        assert.are_not.equal(before[kind], after, kind .. " with flags " .. tostring(case.flags))
        assert.are_not.equal(ns_inode(SELF, kind), after)
      end
      assert.equal(ns_inode(SELF, "pid"), ns_inode(p.pid, "pid")) -- not asked for
      ch.post("go")
      assert.equal(0, finish(p).status)
      stop(p, ch)
    end
  end)

  it("fails with nil, 'unshare NAMES: message', errno name for an unprivileged caller #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      if ROOT then assert(core.setresuid(12345, 12345, 12345)) end -- no capabilities left
      c.send("string", core.unshare("net"))
      c.send("table", core.unshare({ "net", "uts" }))
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "string", "nil", "unshare net: Operation not permitted", "EPERM" }, { ch.expect() })
    local _, ok, msg, code = ch.expect()
    assert.equal("nil", ok)
    assert.equal("EPERM", code)
    -- the message names the namespaces, whatever form the flags had
    assert.is_nil(msg:find("table: ", 1, true), "message shows a Lua table address: " .. msg)
    assert.matches("^unshare [%a,]+: Operation not permitted$", msg)
    assert.matches("%f[%a]net%f[^%a]", msg)
    assert.matches("%f[%a]uts%f[^%a]", msg)
    assert.equal(0, finish(p).status)
  end)

  it("raises naming 'flags' for unknown names and for no namespace at all #rootless", function()
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.unshare, "net,bogus")
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.unshare, { "bogus" })
    assert_raises({ "field 'flags'", "at least one namespace expected" }, core.unshare, 0)
    assert_raises({ "field 'flags'", "at least one namespace expected" }, core.unshare, {})
    assert_raises("field 'flags'", core.unshare, -1)
  end)
end)

-- ---- setns ----------------------------------------------------------------------------------------------------

describe("core.setns", function()
  --- A child in new user, net and uts namespaces (and pid, with extra), blocked on its channel.
  local function target(extra)
    return start({ flags = "user,net,uts" .. (extra or "") }, function(c)
      map_self()
      c.send("ready")
      c.recv()
      return 0
    end)
  end

  it("joins the namespaces of handles #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local a, ach = target()
    defer(function() stop(a, ach) end)
    ach.expect()
    local hu = assert(core.ns_open("user", a.pid))
    local hn = assert(core.ns_open("net", a.pid))
    local hh = assert(core.ns_open("uts", a.pid))
    defer(function() hu:close(); hn:close(); hh:close() end)
    local b, bch = start({}, function(c)
      local ok, err = pcall(core.setns, hn, "uts")
      c.send("mismatch", tostring(ok), err)
      c.send("user", core.setns(hu, "user"))
      c.send("net", core.setns(hn, "net"))
      c.send("uts", core.setns(hh, { "uts" }))
      c.recv()
      return 0
    end)
    defer(function() stop(b, bch) end)
    local _, ok, err = bch.expect()
    assert.equal("false", ok)
    assert.matches("field 'flags'", err)
    assert.same({ "user", "true" }, { bch.expect() })
    assert.same({ "net", "true" }, { bch.expect() })
    assert.same({ "uts", "true" }, { bch.expect() })
    for _, kind in ipairs({ "user", "net", "uts" }) do
      assert.equal(ns_inode(a.pid, kind), ns_inode(b.pid, kind), kind)
      assert.are_not.equal(ns_inode(SELF, kind), ns_inode(b.pid, kind), kind)
    end
    assert.equal(ns_inode(SELF, "ipc"), ns_inode(b.pid, "ipc"))
    bch.post("go")
    assert.equal(0, finish(b).status)
  end)

  it("joins by path; a path of another type fails with EINVAL, a missing one with ENOENT #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local a, ach = target()
    defer(function() stop(a, ach) end)
    ach.expect()
    local dir = "/proc/" .. a.pid .. "/ns/"
    local b, bch = start({}, function(c)
      c.send("user", core.setns(dir .. "user", "user"))
      c.send("wrong type", core.setns(dir .. "uts", "net"))
      c.send("missing", core.setns("/nonexistent/ns", "net"))
      c.send("uts", core.setns(dir .. "uts", "uts"))
      c.recv()
      return 0
    end)
    defer(function() stop(b, bch) end)
    assert.same({ "user", "true" }, { bch.expect() })
    assert.same({ "wrong type", "nil", "setns " .. dir .. "uts: Invalid argument", "EINVAL" }, { bch.expect() })
    assert.same({ "missing", "nil", "setns /nonexistent/ns: No such file or directory", "ENOENT" }, { bch.expect() })
    assert.same({ "uts", "true" }, { bch.expect() })
    assert.equal(ns_inode(a.pid, "uts"), ns_inode(b.pid, "uts"))
    assert.equal(ns_inode(a.pid, "user"), ns_inode(b.pid, "user"))
    assert.equal(ns_inode(SELF, "net"), ns_inode(b.pid, "net")) -- the failed join changed nothing
    bch.post("go")
    assert.equal(0, finish(b).status)
  end)

  it("joins several namespaces of a process at once through its pidfd; later children start in them #rootless",
    function()
    local defer = scope(finally)
    kernel.requires("userns")
    local a, ach = target(",pid")
    defer(function() stop(a, ach) end)
    ach.expect()
    local grand = channel()
    defer(function() grand.close() end)
    local b, bch = start({}, function(c)
      grand.child()
      local ok, err = pcall(core.setns, a)
      c.send("no flags", tostring(ok), err)
      c.send("setns", core.setns(a, "user,pid,net,uts"))
      local g = assert(core.spawn{ fn = function()
        grand.send("grandchild", core.getpid())
        grand.recv()
        return 0
      end })
      c.send("spawned", g.pid)
      c.recv()
      local st = g:wait()
      return st.status
    end)
    defer(function() stop(b, bch) end)
    grand.parent()
    local _, ok, err = bch.expect()
    assert.equal("false", ok)
    assert.matches("field 'flags'", err)
    assert.same({ "setns", "true" }, { bch.expect() })
    local _, gpid = bch.expect()
    gpid = tonumber(gpid)
    local _, inner_pid = grand.expect()
    for _, kind in ipairs({ "user", "net", "uts" }) do
      assert.equal(ns_inode(a.pid, kind), ns_inode(b.pid, kind), kind .. " of the joining process")
      assert.equal(ns_inode(a.pid, kind), ns_inode(gpid, kind), kind .. " of its child")
    end
    -- a pid namespace applies to children: the joining process stays where it was
    assert.equal(ns_inode(SELF, "pid"), ns_inode(b.pid, "pid"))
    assert.equal(ns_inode(a.pid, "pid"), ns_inode(b.pid, "pid_for_children"))
    assert.equal(ns_inode(a.pid, "pid"), ns_inode(gpid, "pid"))
    assert.matches("^" .. gpid .. "%s+" .. inner_pid .. "$", util.status_field(gpid, "NSpid"))
    assert.are_not.equal("1", inner_pid) -- the target is PID 1 there
    grand.post("exit")
    bch.post("go")
    assert.equal(0, finish(b).status)
  end)

  it("accepts a handle or a path without flags, and mount/umount without flags #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local p, ch = start({ flags = "user,uts,mount" }, function(c)
      map_self()
      local function try(f, ...)
        local ok, a, b, d = pcall(f, ...)
        if ok then return tostring(a), b, d end
        return "raised", a
      end
      local h = assert(core.ns_open("uts"))
      local results = {}
      results[1] = { "setns handle", try(core.setns, h) }
      results[2] = { "setns path", try(core.setns, "/proc/self/ns/uts") }
      results[3] = { "mount", try(core.mount, "tmpfs", dir, "tmpfs") }
      results[4] = { "umount", try(core.umount, dir) }
      for _, r in ipairs(results) do c.send(table.unpack(r)) end
      c.send("end")
      return 0
    end)
    defer(function() stop(p, ch) end)
    local got = {}
    while true do
      local msg = { ch.expect() }
      if msg[1] == "end" then break end
      got[#got + 1] = msg
    end
    -- every one of these is documented with optional flags ("setns(target [, flags])", "umount(target [, flags])")
    assert.same({ { "setns handle", "true" }, { "setns path", "true" }, { "mount", "true" }, { "umount", "true" } }, got)
    assert.equal(0, finish(p).status)
  end)

  it("raises for a target that is not a namespace, a path, a process or a descriptor #rootless", function()
    assert_raises("field 'target'", core.setns, {}, "net")
    assert_raises("field 'target'", core.setns, true, "net")
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.setns, "/proc/self/ns/net", "bogus")
  end)
end)

-- ---- handles ------------------------------------------------------------------------------------------------

describe("going into a namespace and back", function()
  -- After unsharing a user namespace, the process's network namespace belongs to a user namespace above its own:
  -- it can still leave it (for one its new user namespace owns) but never come back. ns_create and everything
  -- that works in another network namespace (netlink, sysctl, nft) must refuse up front; they used to go, fail
  -- to come back and abort the whole process (found by the API fuzzer).
  it("refuses with EPERM, instead of aborting, where there would be no way back #rootless", function()
    kernel.requires("userns")
    local p = assert(core.spawn{ fn = function()
      assert(core.unshare("user"))
      local ok, msg, code = core.ns_create("net")
      if ok or code ~= "EPERM" or not msg:find("could not be joined back", 1, true) then core.exit(10) end
      -- a network namespace this process may enter: its child made it inside the new user namespace
      local holder = assert(core.spawn{ flags = "net", fn = function() core.poll({ (core.pipe()) }, 10) core.exit(0) end })
      local ns = assert(core.ns_open("net", holder.pid))
      ok, msg, code = core.netlink(ns)
      if ok or code ~= "EPERM" then core.exit(11) end
      ok, msg, code = core.sysctl(ns, "net.ipv4.ip_forward")
      if ok or code ~= "EPERM" then core.exit(12) end
      -- and where there is a way back, it goes and comes back
      assert(core.unshare("net"))
      -- (read from /proc, not through lunas)
      local function current_netns() return lfs.symlinkattributes("/proc/thread-self/ns/net", "target") end
      local here = current_netns()
      local fresh = assert(core.ns_create("net"))
      local nl = assert(core.netlink(fresh))
      assert(nl:link_get("lo"))
      if current_netns() ~= here or here == nil then core.exit(13) end
      holder:kill("KILL")
      holder:wait()
      core.exit(0)
    end })
    local result = assert(p:wait(20))
    p:close()
    assert.are.same({ pid = result.pid, status = 0 }, result)
  end)
end)

describe("core.ns_open", function()
  it("gives type(), id() and tostring() that match the /proc/self/ns links #rootless", function()
    local defer = scope(finally)
    for kind, file in pairs(NS_TYPES) do
      if kind ~= "time" or kernel.has("timens") then
        local h = assert(core.ns_open(kind))
        defer(function() h:close() end)
        local link = readlink("/proc/self/ns/" .. file)
        assert.equal(kind, h:type())
        assert.equal(tonumber(link:match("%[(%d+)%]")), h:id())
        assert.equal(link, tostring(h))
        assert.equal(link, fd_link(SELF, h:fileno()))
        assert.is_true(has_flag(fd_flags(SELF, h:fileno()), O_CLOEXEC))
      end
    end
    local m = assert(core.ns_open("mnt"))
    defer(function() m:close() end)
    assert.equal("mount", m:type())
    assert.matches("^mnt:%[%d+%]$", tostring(m))
  end)

  it("opens another process's namespace by pid or path; handles compare with == #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p, ch = start({ flags = "user,net" }, function(c)
      c.send("ready")
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    local mine = assert(core.ns_open("net"))
    local mine2 = assert(core.ns_open("net", SELF))
    local mine3 = assert(core.ns_open("/proc/self/ns/net"))
    local theirs = assert(core.ns_open("net", p.pid))
    local theirs2 = assert(core.ns_open("/proc/" .. p.pid .. "/ns/net"))
    local their_uts = assert(core.ns_open("uts", p.pid))
    defer(function() for _, h in ipairs({ mine, mine2, mine3, theirs, theirs2, their_uts }) do h:close() end end)
    assert.equal(ns_inode(p.pid, "net"), theirs:id())
    assert.equal(util.ns_link(p.pid, "net"), tostring(theirs2))
    assert.is_true(mine == mine2)
    assert.is_true(mine == mine3)
    assert.is_true(theirs == theirs2)
    assert.is_false(mine == theirs)
    assert.is_true(mine ~= theirs)
    -- the child shares our uts namespace
    local my_uts = assert(core.ns_open("uts"))
    defer(function() my_uts:close() end)
    assert.is_true(my_uts == their_uts)
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("fails with nil, message, errno name for files that are not namespaces #rootless", function()
    assert_failure("^open namespace /etc/passwd %(not a namespace file%): Invalid argument$", "EINVAL",
      core.ns_open("/etc/passwd"))
    assert_failure("^open namespace /nonexistent/ns: No such file or directory$", "ENOENT",
      core.ns_open("/nonexistent/ns"))
    local p = assert(core.spawn{ fn = function() return 0 end })
    local pid = p.pid
    finish(p)
    p:close()
    assert_failure("^open namespace /proc/" .. pid .. "/ns/net: No such file or directory$", "ENOENT",
      core.ns_open("net", pid))
  end)

  it("raises on an unknown type, a pid with a path, a bad pid #rootless", function()
    assert_raises({ "field 'type'", "unknown name 'bogus'" }, core.ns_open, "bogus")
    assert_raises("field 'pid'", core.ns_open, "/proc/self/ns/net", SELF)
    assert_raises("field 'pid'", core.ns_open, "net", 0)
    assert_raises("field 'pid'", core.ns_open, "net", "self")
  end)

  it("close is idempotent and a closed handle raises #rootless", function()
    local h = assert(core.ns_open("net"))
    local other = assert(core.ns_open("net"))
    local fd = h:fileno()
    h:close()
    h:close()
    assert.is_nil(fd_link(SELF, fd))
    assert.equal("namespace (closed)", tostring(h))
    for _, method in ipairs({ "type", "id", "fileno" }) do
      assert_raises("attempt to use a closed namespace", h[method], h)
    end
    assert_raises("attempt to use a closed namespace", function() return h == other end)
    assert_raises("attempt to use a closed namespace", core.setns, h, "net")
    other:close()
    local n
    do
      local c <close> = assert(core.ns_open("uts"))
      n = c:fileno()
    end
    assert.is_nil(fd_link(SELF, n))
  end)
end)

describe("core.ns_ids", function()
  it("gives the inode of every namespace of a process, keyed by type #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local ids = assert(core.ns_ids())
    for kind, file in pairs(NS_TYPES) do
      if kind ~= "time" or kernel.has("timens") then
        assert.equal(ns_inode(SELF, file), ids[kind], kind)
      end
    end
    local count_keys = 0
    for _ in pairs(ids) do count_keys = count_keys + 1 end
    assert.equal(kernel.has("timens") and 8 or 7, count_keys)
    local p, ch = start({ flags = "user,net" }, function(c)
      c.send("ready")
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    local theirs = assert(core.ns_ids(p.pid))
    assert.equal(ns_inode(p.pid, "net"), theirs.net)
    assert.equal(ns_inode(p.pid, "user"), theirs.user)
    assert.are_not.equal(ids.net, theirs.net)
    assert.are_not.equal(ids.user, theirs.user)
    assert.equal(ids.uts, theirs.uts)
    assert.equal(ids.mount, theirs.mount)
    ch.post("go")
    local pid = p.pid
    finish(p)
    p:close()
    assert_failure("^stat /proc/" .. pid .. "/ns/user: No such file or directory$", "ENOENT", core.ns_ids(pid))
    assert_raises("field 'pid'", core.ns_ids, 0)
  end)
end)

-- ---- persistence --------------------------------------------------------------------------------------------

local function netns_names()
  local out = util.run({ "ip", "netns", "list" })
  local names = {}
  for line in out:gmatch("[^\n]+") do
    local name = line:match("^(%S+)")
    if name then names[name] = true end
  end
  return names
end

local function mounted_at(path, pid)
  for line in (util.read("/proc/" .. (pid and tostring(pid) or "self") .. "/mountinfo") or ""):gmatch("[^\n]+") do
    local mountpoint, fstype = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+)")
    if mountpoint == path then return fstype, line end
  end
end

--- A child in its own network namespace, blocked on its channel.
local function netns_child()
  return start({ flags = "net" }, function(c)
    c.send("ready")
    c.recv()
    return 0
  end)
end

describe("core.persist / core.unpersist #root", function()
  it("persists a network namespace in /run/netns for ip netns, past its last process", function()
    local defer = scope(finally)
    local name = "lunas-core-spec-" .. SELF
    local path = "/run/netns/" .. name
    defer(function() if lfs.attributes(path) then core.unpersist(path) end end)
    -- a mount namespace made before the persist: /run/netns is shared, so it sees the new mount too
    local m, mch = start({ flags = "mount" }, function(c)
      c.send("ready")
      c.recv()
      return 0
    end)
    defer(function() stop(m, mch) end)
    mch.expect()
    local p, ch = netns_child()
    defer(function() stop(p, ch) end)
    ch.expect()
    local h = assert(core.ns_open("net", p.pid))
    defer(function() h:close() end)
    assert.is_true(core.persist(h, path, { shared_dir = true }))
    assert.is_true(netns_names()[name])
    assert.equal("nsfs", mounted_at(path))
    assert.equal(h:id(), lfs.attributes(path, "ino"))
    assert.is_truthy(util.wait_for(function() return mounted_at(path, m.pid) == "nsfs" end, 5),
      "the persisted namespace did not propagate to another mount namespace")
    -- the namespace outlives its last process
    ch.post("exit")
    assert.equal(0, finish(p).status)
    h:close()
    local out, code = util.run({ "ip", "-n", name, "-j", "link", "show" })
    assert.equal(0, code, out)
    assert.matches('"ifname":"lo"', out)
    assert.is_nil(out:find('"ifname":"eth', 1, true)) -- not the test's namespace
    -- twice at the same place: EEXIST
    local again = assert(core.ns_open(path))
    defer(function() again:close() end)
    assert_failure("^persist: create " .. path:gsub("%p", "%%%0") .. ": File exists$", "EEXIST",
      core.persist(again, path, { shared_dir = true }))
    again:close()
    assert.is_true(core.unpersist(path))
    assert.is_nil(lfs.attributes(path))
    assert.is_nil(netns_names()[name])
    assert.is_nil(mounted_at(path))
    assert.is_truthy(util.wait_for(function() return mounted_at(path, m.pid) == nil end, 5))
    assert_failure("^unpersist: umount " .. path:gsub("%p", "%%%0") .. ": No such file or directory$", "ENOENT",
      core.unpersist(path))
  end)

  it("with shared_dir makes a new directory a shared mount point", function()
    local defer = scope(finally)
    local dir = "/run/lunas-core-spec-" .. SELF
    local path = dir .. "/net"
    defer(function()
      if lfs.attributes(path) then core.unpersist(path) end
      if mounted_at(dir) then core.umount(dir, "detach") end
      os.remove(dir)
    end)
    local p, ch = netns_child()
    defer(function() stop(p, ch) end)
    ch.expect()
    local h = assert(core.ns_open("net", p.pid))
    defer(function() h:close() end)
    assert.is_nil(lfs.attributes(dir))
    assert.is_true(core.persist(h, path, { shared_dir = true }))
    local _, line = mounted_at(dir)
    assert.is_string(line, dir .. " is not a mount point")
    assert.matches(" shared:%d+", line)
    assert.equal("nsfs", mounted_at(path))
    assert.equal(h:id(), lfs.attributes(path, "ino"))
    assert.is_true(core.unpersist(path))
    assert.is_nil(lfs.attributes(path))
  end)

  it("persists without shared_dir anywhere, and raises on bad arguments", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local path = dir .. "/uts"
    defer(function() if lfs.attributes(path) then core.unpersist(path) end end)
    local h = assert(core.ns_open("uts"))
    defer(function() h:close() end)
    assert.is_true(core.persist(h, path))
    assert.equal("nsfs", mounted_at(path))
    assert.equal(h:id(), lfs.attributes(path, "ino"))
    local again = assert(core.ns_open(path))
    assert.is_true(again == h)
    again:close()
    assert.is_true(core.unpersist(path))
    assert.is_nil(mounted_at(path))
    assert_raises("field 'path'", core.persist, h, "relative/path")
    assert_raises("field 'path'", core.persist, h, "/")
    assert_raises("unknown option 'shared'", core.persist, h, path, { shared = true })
    assert_raises("field 'ns'", core.persist, "net", path)
    assert.is_nil(lfs.attributes(path))
  end)
end)

describe("lunas.ns.persist / unpersist #root", function()
  it("persists a network namespace by bare name in /run/netns", function()
    local defer = scope(finally)
    local lunas_ns = require "lunas.ns"
    local lunas = require "lunas"
    local name = "lunas-ns-spec-" .. SELF
    defer(function() if lfs.attributes("/run/netns/" .. name) then core.unpersist("/run/netns/" .. name) end end)
    local p, ch = netns_child()
    defer(function() stop(p, ch) end)
    ch.expect()
    local h = lunas_ns.open("net", p.pid)
    defer(function() h:close() end)
    assert.equal("/run/netns/" .. name, lunas_ns.persist(h, name))
    assert.is_true(netns_names()[name])
    local out, code = util.run({ "ip", "-n", name, "-j", "link", "show" })
    assert.equal(0, code, out)
    assert.equal(h:id(), lfs.attributes("/run/netns/" .. name, "ino"))
    assert.is_true(lunas_ns.unpersist(name))
    assert.is_nil(netns_names()[name])
    assert.is_nil(lfs.attributes("/run/netns/" .. name))
    -- failures raise lunas error objects; lunas.try turns them into nil, err, code
    local v, err, code2 = lunas.try(lunas_ns.unpersist, name)
    assert.is_nil(v)
    assert.equal("ENOENT", code2)
    assert.matches("No such file or directory", tostring(err))
    local uts = lunas_ns.open("uts")
    defer(function() uts:close() end)
    assert_raises("a bare name is only for network namespaces", lunas_ns.persist, uts, "x")
    assert_raises("bad network namespace name", lunas_ns.persist, h, "..")
    assert_raises("bad network namespace name", lunas_ns.unpersist, "")
  end)
end)

-- ---- uid/gid maps -------------------------------------------------------------------------------------------

describe("core.id_maps", function()
  --- A child in a new user namespace waiting for its maps; it reports its ids once released.
  local function unmapped_child()
    return start({ flags = "user" }, function(c)
      c.send("ready")
      c.recv()
      local i = core.ids()
      c.send("ids", i.uid, i.gid)
      c.recv()
      return 0
    end)
  end

  it("writes uid_map, setgroups and gid_map of a child in a new user namespace #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p, ch = unmapped_child()
    defer(function() stop(p, ch) end)
    ch.expect()
    local dir = "/proc/" .. p.pid .. "/"
    assert.same({}, read_map(dir .. "uid_map"))
    assert.is_true(core.id_maps(p.pid, { uid = { { 0, IDS.euid, 1 } }, gid = { { 0, IDS.egid, 1 } },
                                         setgroups = "deny" }))
    assert.same({ { 0, IDS.euid, 1 } }, read_map(dir .. "uid_map"))
    assert.same({ { 0, IDS.egid, 1 } }, read_map(dir .. "gid_map"))
    assert.equal("deny\n", util.read(dir .. "setgroups"))
    ch.post("go")
    assert.same({ "ids", "0", "0" }, { ch.expect() })
    -- each map is written once
    assert_failure("^write /proc/" .. p.pid .. "/uid_map: Operation not permitted$", "EPERM",
      core.id_maps(p.pid, { uid = { { 0, IDS.euid, 1 } } }))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("fails with EINVAL for overlapping ranges #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p, ch = unmapped_child()
    defer(function() stop(p, ch) end)
    ch.expect()
    assert_failure("^write /proc/" .. p.pid .. "/uid_map: Invalid argument$", "EINVAL",
      core.id_maps(p.pid, { uid = { { 0, 1000, 10 }, { 5, 2000, 10 } } }))
    assert.same({}, read_map("/proc/" .. p.pid .. "/uid_map"))
  end)

  it("writes several ranges, up to 340 lines, and setgroups allow #root", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p, ch = unmapped_child()
    defer(function() stop(p, ch) end)
    ch.expect()
    -- inside 0 is us (root outside), so the child reports 0/0 once mapped
    local uid = { { 0, 0, 1 } }
    for i = 1, 339 do uid[#uid + 1] = { i, 1000 + i, 1 } end
    local gid = { { 0, 0, 1 }, { 1, 100000, 999 }, { 1000, 300000, 10 } }
    assert.is_true(core.id_maps(p.pid, { uid = uid, gid = gid, setgroups = "allow" }))
    assert.same(uid, read_map("/proc/" .. p.pid .. "/uid_map"))
    assert.same(gid, read_map("/proc/" .. p.pid .. "/gid_map"))
    assert.equal("allow\n", util.read("/proc/" .. p.pid .. "/setgroups"))
    ch.post("go")
    assert.same({ "ids", "0", "0" }, { ch.expect() })
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("raises naming the field for bad ranges and more than 340 lines #rootless", function()
    local many = {}
    for i = 0, 340 do many[#many + 1] = { i, 1000 + i, 1 } end
    local pid = SELF -- nothing is written: the checks come first
    assert_raises({ "field 'uid'", "1 to 340 ranges expected" }, core.id_maps, pid, { uid = many })
    assert_raises({ "field 'gid'", "1 to 340 ranges expected" }, core.id_maps, pid, { gid = many })
    assert_raises({ "field 'uid'", "1 to 340 ranges expected" }, core.id_maps, pid, { uid = {} })
    assert_raises({ "field 'uid'", "range 1" }, core.id_maps, pid, { uid = { { 0, 1 } } })
    assert_raises({ "field 'uid'", "range 2" }, core.id_maps, pid, { uid = { { 0, 1, 1 }, { -1, 5, 1 } } })
    assert_raises({ "field 'gid'", "range 1: count out of range" }, core.id_maps, pid, { gid = { { 0, 1, 0 } } })
    assert_raises({ "field 'gid'", "range 1: count out of range" }, core.id_maps, pid,
      { gid = { { 0, 4294967294, 2 } } })
    assert_raises({ "field 'uid'", "range 1: table expected" }, core.id_maps, pid, { uid = { "0 0 1" } })
    assert_raises("field 'uid'", core.id_maps, pid, { uid = "0 0 1" })
    assert_raises("unknown option 'uids'", core.id_maps, pid, { uids = { { 0, 0, 1 } } })
    assert_raises("field 'pid'", core.id_maps, -1, { uid = { { 0, 0, 1 } } })
  end)

  it("raises naming 'setgroups' for a value other than deny or allow #rootless", function()
    assert_raises("field 'setgroups'", core.id_maps, SELF, { setgroups = "maybe" })
    assert_raises("field 'setgroups'", core.id_maps, SELF, { setgroups = true })
  end)
end)

-- ---- time namespace -------------------------------------------------------------------------------------------

local function uptime()
  return tonumber(util.read("/proc/uptime"):match("^(%S+)"))
end

describe("core.timens_offsets", function()
  it("sets the clocks of a new time namespace, seen by a process started in it #rootless", function()
    local defer = scope(finally)
    kernel.requires("timens")
    if not ROOT then kernel.requires("userns") end
    local grand = channel()
    defer(function() grand.close() end)
    local boot0, mono0 = uptime(), core.now()
    local p, ch = start({ flags = not ROOT and "user" or nil }, function(c)
      grand.child()
      if not ROOT then map_self() end
      c.send("unshare", core.unshare("time"))
      c.send("offsets", core.timens_offsets(0, { monotonic = 1000, boottime = 2000 }))
      local g = assert(core.spawn{ fn = function()
        local up = tonumber(util.read("/proc/uptime"):match("^(%S+)"))
        grand.send("clocks", string.format("%.2f", up), string.format("%.9f", core.now()))
        grand.recv()
        return 0
      end })
      c.send("spawned", g.pid)
      -- once a process is in the namespace, its offsets are frozen
      c.send("frozen", core.timens_offsets(0, { monotonic = 5 }))
      c.recv()
      return g:wait().status
    end)
    defer(function() stop(p, ch) end)
    grand.parent()
    assert.same({ "unshare", "true" }, { ch.expect() })
    assert.same({ "offsets", "true" }, { ch.expect() })
    local _, gpid = ch.expect()
    local _, boot_in, mono_in = grand.expect()
    local boot1, mono1 = uptime(), core.now()
    -- inside = outside + offset, bracketed by what we read before and after
    assert.is_true(tonumber(boot_in) >= boot0 + 2000 - 0.01 and tonumber(boot_in) <= boot1 + 2000 + 0.01,
      "boottime inside " .. boot_in .. ", outside from " .. boot0 .. " to " .. boot1)
    assert.is_true(tonumber(mono_in) >= mono0 + 1000 and tonumber(mono_in) <= mono1 + 1000,
      "monotonic inside " .. mono_in .. ", outside from " .. mono0 .. " to " .. mono1)
    local text = util.read("/proc/" .. gpid .. "/timens_offsets")
    assert.matches("monotonic%s+1000%s+0\n", text)
    assert.matches("boottime%s+2000%s+0\n", text)
    assert.are_not.equal(ns_inode(SELF, "time"), ns_inode(gpid, "time"))
    assert.equal(ns_inode(SELF, "time"), ns_inode(p.pid, "time")) -- the unsharing process stays
    assert.equal(ns_inode(gpid, "time"), ns_inode(p.pid, "time_for_children"))
    assert.same({ "frozen", "nil", "write /proc/self/timens_offsets: Permission denied", "EACCES" }, { ch.expect() })
    grand.post("exit")
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("writes fractional and negative offsets as seconds and nanoseconds #rootless", function()
    local defer = scope(finally)
    kernel.requires("timens")
    if not ROOT then kernel.requires("userns") end
    local p, ch = start({ flags = not ROOT and "user" or nil }, function(c)
      if not ROOT then map_self() end
      assert(core.unshare("time"))
      c.send("offsets", core.timens_offsets(0, { monotonic = -1.25, boottime = 1.5 }))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "offsets", "true" }, { ch.expect() })
    local text = util.read("/proc/" .. p.pid .. "/timens_offsets")
    assert.matches("monotonic%s+%-2%s+750000000\n", text)
    assert.matches("boottime%s+1%s+500000000\n", text)
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("raises naming the clock for bad offsets #rootless", function()
    assert_raises("unknown option 'realtime'", core.timens_offsets, 0, { realtime = 1 })
    assert_raises("field 'monotonic'", core.timens_offsets, 0, { monotonic = "1000" })
    assert_raises("field 'boottime'", core.timens_offsets, 0, { boottime = 1e13 })
    assert_raises("field 'boottime'", core.timens_offsets, 0, { boottime = 0 / 0 })
  end)
end)

-- ---- UTS ------------------------------------------------------------------------------------------------------

describe("core.sethostname / setdomainname / uname", function()
  it("set the names of a child's uts namespace, seen with nsenter #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local my_host = util.read("/proc/sys/kernel/hostname")
    local my_domain = util.read("/proc/sys/kernel/domainname")
    local p, ch = start({ flags = "user,uts" }, function(c)
      map_self()
      c.send("hostname", core.sethostname("lunas-uts-test"))
      c.send("domainname", core.setdomainname("lunas.test"))
      local u = core.uname()
      c.send("uname", u.hostname, u.domainname)
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "hostname", "true" }, { ch.expect() })
    assert.same({ "domainname", "true" }, { ch.expect() })
    assert.same({ "uname", "lunas-uts-test", "lunas.test" }, { ch.expect() })
    local out, code = nsenter(p.pid, true, { "-u" }, { "cat", "/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname" })
    assert.equal(0, code, out)
    assert.equal("lunas-uts-test\nlunas.test\n", out)
    assert.equal(my_host, util.read("/proc/sys/kernel/hostname"))
    assert.equal(my_domain, util.read("/proc/sys/kernel/domainname"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("fail with EPERM without privilege, and raise on bad names #rootless", function()
    local defer = scope(finally)
    -- as root: in a uts namespace of its own, in case the privilege drop did not happen
    local p, ch = start({ flags = ROOT and "uts" or nil }, function(c)
      if ROOT then assert(core.setresuid(12345, 12345, 12345)) end
      c.send("hostname", core.sethostname("lunas-x"))
      c.send("domainname", core.setdomainname("lunas-x"))
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "hostname", "nil", "sethostname lunas-x: Operation not permitted", "EPERM" }, { ch.expect() })
    assert.same({ "domainname", "nil", "setdomainname lunas-x: Operation not permitted", "EPERM" }, { ch.expect() })
    assert.equal(0, finish(p).status)
    assert_raises({ "field 'hostname'", "1 to 64 bytes expected" }, core.sethostname, string.rep("a", 65))
    assert_raises({ "field 'hostname'", "1 to 64 bytes expected" }, core.sethostname, "")
    assert_raises({ "field 'hostname'", "1 to 64 bytes expected" }, core.sethostname, "a\0b")
    assert_raises({ "field 'domainname'", "1 to 64 bytes expected" }, core.setdomainname, string.rep("a", 65))
  end)

  it("uname reports what uname(1) does #rootless", function()
    local u = core.uname()
    local function cmd(flag) return (util.run({ "uname", flag }):gsub("\n$", "")) end
    assert.equal(cmd("-s"), u.sysname)
    assert.equal(cmd("-n"), u.hostname)
    assert.equal(cmd("-r"), u.release)
    assert.equal(cmd("-v"), u.version)
    assert.equal(cmd("-m"), u.machine)
    assert.equal((util.read("/proc/sys/kernel/domainname"):gsub("\n$", "")), u.domainname)
  end)
end)

-- ---- mounts ---------------------------------------------------------------------------------------------------

local json = require "dkjson"

--- The findmnt entry of a mount point in the mount namespace of pid, or nil.
local function findmnt(pid, dir)
  local out, code = util.run({ "findmnt", "-J", "-N", tostring(pid), "-M", dir }, { stderr = false })
  if code ~= 0 then return nil end
  local doc = assert(json.decode(out))
  return doc.filesystems[1]
end

local function options(entry)
  local set = {}
  for o in entry.options:gmatch("[^,]+") do set[o] = true end
  return set
end

describe("core.mount / core.umount", function()
  it("mount a tmpfs with flag names in a child's mount namespace, remount, detach #rootless", function()
    local defer = scope(finally)
    if not ROOT then kernel.requires("userns") end
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local p, ch = start({ flags = ROOT and "mount" or "user,mount" }, function(c)
      if not ROOT then map_self() end
      c.send("mount", core.mount("tmpfs", dir, "tmpfs", "nosuid,noexec", "size=1m,mode=0700"))
      c.recv()
      c.send("remount", core.mount(nil, dir, nil, { "remount", "rdonly", "nosuid", "noexec" }, nil))
      c.recv()
      c.send("umount", core.umount(dir, "detach"))
      c.send("again", core.umount(dir, { "nofollow" }))
      c.send("missing", core.mount("tmpfs", "/nonexistent/lunas", "tmpfs", 0))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "mount", "true" }, { ch.expect() })
    local entry = findmnt(p.pid, dir)
    assert.is_table(entry, "no mount at " .. dir .. " in the child's mount namespace")
    assert.equal("tmpfs", entry.fstype)
    local o = options(entry)
    assert.is_true(o.nosuid)
    assert.is_true(o.noexec)
    assert.is_true(o.rw)
    assert.is_true(o["size=1024k"])
    assert.is_true(o["mode=700"])
    assert.is_nil(findmnt(SELF, dir)) -- only in the child's namespace
    assert.is_nil(mounted_at(dir))
    ch.post("go")
    assert.same({ "remount", "true" }, { ch.expect() })
    o = options(findmnt(p.pid, dir))
    assert.is_true(o.ro)
    assert.is_true(o.nosuid)
    ch.post("go")
    assert.same({ "umount", "true" }, { ch.expect() })
    assert.same({ "again", "nil", "umount " .. dir .. ": Invalid argument", "EINVAL" }, { ch.expect() })
    assert.same({ "missing", "nil", "mount /nonexistent/lunas: No such file or directory", "ENOENT" }, { ch.expect() })
    assert.is_nil(findmnt(p.pid, dir))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("raise naming the field for unknown flag names and a missing target #rootless", function()
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.mount, "tmpfs", "/nonexistent", "tmpfs", "ro,bogus")
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.mount, nil, "/nonexistent", nil, { "bogus" })
    assert_raises("field 'target'", core.mount, "tmpfs", nil, "tmpfs", 0)
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.umount, "/nonexistent", "bogus")
    assert_raises({ "field 'flags'", "unknown name 'rdonly'" }, core.umount, "/nonexistent", "rdonly")
    assert_raises("field 'target'", core.umount, nil, 0)
  end)
end)

-- ---- network --------------------------------------------------------------------------------------------------

local function lo_flags(pid, userns)
  local out, code = nsenter(pid, userns, { "-n" }, { "ip", "-j", "link", "show", "lo" })
  assert.equal(0, code, out)
  local doc = assert(json.decode(out))
  local set = {}
  for _, f in ipairs(doc[1].flags) do set[f] = true end
  return set
end

describe("core.loopback_up", function()
  it("brings lo up in a child's new network namespace #rootless", function()
    local defer = scope(finally)
    if not ROOT then kernel.requires("userns") end
    local userns = not ROOT
    local p, ch = start({ flags = userns and "user,net" or "net" }, function(c)
      if userns then map_self() end
      c.send("ready")
      c.recv()
      c.send("up", core.loopback_up())
      c.send("again", core.loopback_up())
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    assert.are_not.equal(ns_inode(SELF, "net"), ns_inode(p.pid, "net"))
    assert.is_nil(lo_flags(p.pid, userns).UP)
    ch.post("go")
    assert.same({ "up", "true" }, { ch.expect() })
    assert.same({ "again", "true" }, { ch.expect() })
    assert.is_true(lo_flags(p.pid, userns).UP)
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("fails with EPERM without privilege over the namespace #root", function()
    local defer = scope(finally)
    local p, ch = start({ flags = "net" }, function(c)
      assert(core.setresuid(12345, 12345, 12345))
      c.send("up", core.loopback_up())
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "up", "nil", "link up lo: Operation not permitted", "EPERM" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)
end)
