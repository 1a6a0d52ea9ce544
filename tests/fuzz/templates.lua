-- tests/fuzz/templates.lua: valid calls of the functions whose checks random arguments almost never pass, so
-- that the fuzzer reaches the code behind the checks: the spawn paths, mounts, netlink requests, qdiscs,
-- seccomp and Landlock rules, sandboxes and labs. fuzz.lua mutates what these give (one argument or one field
-- replaced by a random value, removed, or an unknown field added) most of the time, and uses it as it is the rest.
--
-- Each entry maps a target ("core.NAME", "METHOD" for a method of any lunas object, "MODULE.NAME") to a list of
-- functions that return the argument list (without self for methods). They get the fuzzer's helpers:
-- random, random_value, random_string, pool_object.
local core = require "lunas.core"

return function(h)
  local random = h.random
  -- Mostly the first (valid) choice, so that a call with several fields often gets past every check.
  local function v(...)
    local n = select("#", ...)
    if random(10) <= 7 then return (...) end
    return (select(random(n), ...))
  end

  local function name() return v( "fz0", "fz1", "br-fz", "veth-fz", "t" .. random(0, 9), h.random_string() ) end
  local function link() return v( "lo", 1, "fz0", "fz1", random(0, 5), h.random_string() ) end
  local function address()
    return v( "10.0.0.1/24", "10.9.0." .. random(0, 255) .. "/" .. random(0, 33), "fd00::1/64", "fe80::" ..
      random(0, 65535) .. "/64", "127.0.0.2", "::1/128", "0.0.0.0/0", h.random_string() )
  end
  local function mac() return v( "aa:bb:cc:dd:ee:ff", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", h.random_string() ) end
  local function rate() return v( "1mbit", "100kbit", "10gbit", 1000000, "1bit", 0, -1, "1tbit", h.random_string() ) end
  local function time_value() return v( "10ms", "1s", "0", 5, 0.5, "100us", -1, "1h", h.random_string() ) end
  local function share() return v( "1%", "50%", "100%", 0.5, 1, 200, -1, h.random_string() ) end
  local function path() return v( "/tmp", "/tmp/fuzz", "/tmp/fuzz/a", "/", "/proc", "/dev/null", "/nonexistent",
    "/tmp/fuzz/" .. random(0, 9), "relative", h.random_string() ) end
  -- copy_tree's arguments: a small tree (a file, a directory, a symlink out of it, a FIFO) and a new empty one
  local copies = 0
  local function copy_source()
    local src = "/tmp/fuzz-copy-src"
    if not core.file_type(src) then
      os.execute("mkdir -p " .. src .. "/d && echo x > " .. src .. "/f && ln -s / " .. src .. "/up && mkfifo "
        .. src .. "/p")
    end
    return core.open(src, "r")
  end
  local function copy_dest()
    copies = copies + 1
    local dest = ("/tmp/fuzz-copy-%d-%d"):format(core.getpid(), copies)
    os.execute("mkdir -p " .. dest)
    return core.open(dest, "r")
  end
  h.copy_source, h.copy_dest = copy_source, copy_dest
  local function directory_fd() return core.open(v( "/tmp", "/tmp/fuzz", "/", "/proc/self" ), "r") end
  local function signal() return v( "TERM", "USR1", "HUP", "KILL", "STOP", "CONT", 0, 15, "RTMIN+1", h.random_string() ) end
  local function child()
    return core.spawn{ fn = function() core.poll({ (core.pipe()) }, 0.5) core.exit(0) end }
  end
  local function ns_handle() return core.ns_create(v( "net", "uts", "ipc", "cgroup" )) or h.pool_object() end
  local function fs_rights() return v( "read_file", "read_file,read_dir", { "write_file", "make_dir" }, "execute",
    "refer", "truncate", "ioctl_dev", "all", h.random_string() ) end
  local function nothing() end
  -- a pseudo-terminal of the worker's own (nil, nil when /dev/ptmx cannot be opened)
  local function pty_pair()
    local master = core.openpt("/dev/ptmx")
    return master, master and core.pty_peer(master)
  end
  local function payload() return v( nothing, function() core.exit(3) end, function() error("payload") end ) end

  local netlink_methods = {
    link_add = {
      function() return { name = name(), kind = "bridge", up = random(2) == 1, mtu = v( 1500, 68, 65535, 9000 ) } end,
      function() return { name = name(), kind = "veth", peer = { name = name(), mtu = 1400 }, group = random(0, 9) } end,
      function() return { name = name(), kind = v( "tap", "tun" ), persist = random(2) == 1, owner = 0 } end,
      function() return { name = name(), kind = v( "macvlan", "macvtap" ), link = link(), mode = v( "bridge",
        "private", "vepa", "passthru", "source" ) } end,
      function() return { name = name(), kind = "vxlan", id = random(0, 20000000), remote = address(), link = link(),
        port = random(0, 70000) } end,
      function() return { name = name(), kind = "vlan", link = link(), id = random(0, 5000) } end,
      function() return { name = name(), kind = v( "dummy", "ipvlan", "wireguard", "gre", "vrf", "bond" ) } end,
      function() return { name = name(), kind = "bridge", netns = ns_handle(), mac = mac(), txqlen = random(0, 5000) } end,
    },
    link_set = {
      function() return link(), { up = random(2) == 1, mtu = random(0, 70000) } end,
      function() return link(), { name = name() } end,
      function() return link(), { master = link() } end,
      function() return link(), { nomaster = true, group = random(0, 9) } end,
      function() return link(), { netns = ns_handle() } end,
      function() return link(), { mac = mac(), txqlen = random(-1, 5000) } end,
    },
    link_get = { function() return link() end },
    link_del = { function() return link() end },
    link_del_group = { function() return random(-1, 10) end },
    link_list = { function() end },
    addr_add = {
      function() return link(), address() end,
      function() return link(), address(), { peer = address(), label = v( "lo:1", "x", ("l"):rep(16) ),
        nodad = true, noprefixroute = random(2) == 1, replace = random(2) == 1, broadcast = "10.0.0.255" } end,
    },
    addr_del = { function() return link(), address() end },
    addr_list = { function() return link() end, function() end },
    route_add = {
      function() return { dst = address(), dev = link() } end,
      function() return { dst = v( "default", address() ), via = address(), onlink = random(2) == 1 } end,
      function() return { dst = address(), type = v( "blackhole", "unreachable", "prohibit", "throw", "local" ),
        table = random(0, 300), metric = random(0, 100), scope = v( "host", "link", "global", "site" ),
        protocol = random(0, 300), family = v( "inet", "inet6" ), src = address(), replace = true } end,
    },
    route_del = { function() return { dst = address(), dev = link() } end },
    route_list = { function() return { family = v( "inet", "inet6" ), table = random(0, 300) } end },
    neigh_add = { function() return { dev = link(), dst = address():gsub("/.*", ""), lladdr = mac(), state = v(
      "permanent", "reachable", "stale", "noarp", "delay", "probe", "failed", "incomplete" ) } end },
    neigh_del = { function() return { dev = link(), dst = address():gsub("/.*", "") } end },
    neigh_list = { function() end },
    qdisc_replace = {
      function() return link(), { kind = "tbf", rate = rate(), burst = v( "32kb", 1, 1e9 ), latency = time_value(),
        limit = v( nil, 1000, "64kb" ) } end,
      function() return link(), { kind = "htb", rate = rate(), ceil = rate(), handle = v( "1:", "ffff:", "x" ) } end,
      function() return link(), { kind = "netem", delay = time_value(), jitter = time_value(), loss = share(),
        duplicate = share(), corrupt = share(), reorder = share(), rate = rate(), limit = random(0, 100000),
        gap = random(0, 10) } end,
      function() return link(), { kind = v( "pfifo", "bfifo", "pfifo_fast", "ingress", "fq_codel", "sfq", "x" ),
        parent = v( "root", "ingress", "1:10", "ffff:fff1", "bad" ) } end,
    },
    qdisc_del = { function() return link() end, function() return link(), { parent = "ingress" } end },
    qdisc_list = { function() return link() end },
  }

  local templates = {
    ["core.spawn"] = {
      function() return { fn = payload() } end,
      function() return { argv = { v( "/bin/true", "true", "/nonexistent", "" ) }, env = { A = "1" },
        path = random(2) == 1, argv0 = "x" } end,
      function() return { flags = v( "user", "user,pid", "net,uts", "pid,mount", "ipc", "time", "cgroup", "all" ),
        fn = payload() } end,
      function() return { fn = payload(), vfork = true } end,
      function() return { argv = { "/bin/true" }, cgroup = directory_fd() } end,
      function() return { flags = "user", fn = payload(), vfork = random(2) == 1,
        maps = { uid = { { 0, core.ids().euid, 1 } }, gid = { { 0, core.ids().egid, 1 } }, setgroups = "deny" } } end,
    },
    ["core.exec"] = { function() return { "/nonexistent/fuzz", "a" }, { env = { "A=1" }, path = false } end },
    ["core.reaper"] = { function() return { fn = payload(), subreaper = random(2) == 1, close = { 50, 51 } } end },
    ["core.reaper_exec"] = {
      function() return core.reaper_image(), { argv = { v( "/nonexistent/fuzz", "true", "" ) },
        errors = select(2, core.pipe()), status = v( nil, 1, 50 ), setsid = random(2) == 1, log = random(2) == 1 } end,
    },
    ["core.join_session_keyring"] = { function() return v( nil, "fuzz", "_ses", "" ) end },
    ["core.mount_id"] = { function() return v( "/", "/proc", "/nonexistent", directory_fd() ) end },
    ["core.readlink"] = { function() return v( "/proc/self/exe", "/", "/nonexistent", "/proc/self/fd/0" ) end },
    lock = { function() return v( "exclusive", "shared", "unlock", "bogus" ), v( nil, { wait = false }, { wait = 1 } ) end },
    ["core.landlock_ruleset"] = {
      function() return { fs = fs_rights() } end,
      function() return { net = v( "bind_tcp", "connect_tcp", "bind_tcp,connect_tcp" ) } end,
      function() return { scoped = v( "abstract_unix_socket", "signal", "all" ), fs = "read_file" } end,
    },
    allow_path = { function() return path(), fs_rights() end, function() return directory_fd(), "read_dir" end },
    allow_port = { function() return random(-1, 70000), v( "bind_tcp", "connect_tcp" ) end },
    ["core.seccomp_filter"] = {
      -- (not a default of notify: the worker's next call would wait for a supervisor for ever)
      function() return { default = v( "allow", "log", "errno:EPERM", { errno = 1 } ) } end,
      function() return { default = "allow", arches = v( { "native" }, { "x86", "x32" }, { "x86_64", "native" },
        { "aarch64" } ), badarch = v( "kill_process", "allow", "errno" ), log = true, no_new_privs = false } end,
    },
    add = {
      function() return v( "errno", "errno:ENOSYS", "kill_process", "trap", "log", "notify", "allow",
        { errno = "EACCES" } ), v( "mkdir", "ptrace", "getpid", 39, 1000, "socketcall", "nonexistent" ) end,
      function() return "errno", "ioctl", { { arg = random(-1, 6), op = v( "eq", "ne", "lt", "le", "gt", "ge",
        "masked_eq" ), value = h.random_value(), mask = 0xffffffff, bits = v( 32, 64, 16 ) } } end,
    },
    ["core.seccomp_load_bpf"] = {
      -- one instruction: return ALLOW (the worker goes on), or a random program the kernel has to judge
      function() return string.pack("<I2BBI4", 0x06, 0, 0, 0x7fff0000) end,
      function() return h.random_bytes(8 * random(1, 8)), { log = true } end,
    },
    ["core.seccomp_notify_respond"] = { function() return h.pool_object() or random(0, 100), random(0, 1000),
      v( { error = "EPERM" }, { value = 7 }, { continue = true }, { error = 100000 } ) end },
    ["core.seccomp_notify_addfd"] = { function() return h.pool_object() or 3, random(0, 10), 0, { target = 40,
      cloexec = true, send = true } end },
    ["core.persist"] = { function() return ns_handle(), "/tmp/fuzz/ns" .. random(0, 3), { shared_dir = random(2) == 1 } end },
    ["core.unpersist"] = { function() return "/tmp/fuzz/ns" .. random(0, 3) end },
    ["core.sysctl"] = {
      function() return nil, v( "net.ipv4.ip_forward", "net/ipv4/conf/lo/forwarding", "net.ipv6.conf.all.forwarding",
        "net.core.somaxconn", "kernel.hostname", "net.ipv4.conf.fz0.rp_filter" ), v( nil, "1", 0, "x" ) end,
      function() return ns_handle(), "net.ipv4.ip_forward", "1" end,
    },
    ["core.getrlimit"] = { function() return v( "nofile", "as", "core", "cpu", "nproc", "stack", "rtprio", "x" ) end },
    ["core.setrlimit"] = { function() return v( "nofile", "core", "cpu", "msgqueue", "x" ), v( 1024, 0,
      "unlimited", math.huge, -1 ), v( nil, 4096, "infinity" ) end },
    ["core.prctl"] = { function() return v( { name = "fz" }, { pdeathsig = "TERM" }, { no_new_privs = true },
      { dumpable = random(2) == 1 }, { child_subreaper = true }, { capbset_drop = { "net_raw" } }, { name = ("n"):rep(16) } ) end },
    ["core.prctl_get"] = { function() return v( "no_new_privs", "pdeathsig", "child_subreaper", "dumpable", "name" ) end },
    ["core.process_read"] = { function() return core.getpid(), v( 0, 4096, random(0, 1 << 47), -1 ), random(0, 4096) end },
    ["core.cgroup_write"] = { function() return v( "/sys/fs/cgroup", "/tmp/fuzz" ), v( "cgroup.procs", "x",
      "../x" ), v( "0", 1, "max" ) end },
    ["core.cgroup_wait"] = { function() return "/tmp/fuzz", "cgroup.events", "populated 0", 0.01 end },
    ["core.cgroup_device_filter"] = { function()
      local rules = {}
      for i = 1, random(0, 4) do
        rules[i] = { allow = v( true, false, 1 ), type = v( nil, "a", "c", "b", "u" ), major = v( nil, -1, 1, 4095,
          4096, -2, 1.5 ), minor = v( nil, -1, 3, 1048575, 1048576 ), access = v( nil, "r", "rwm", "m", "", "x" ) }
      end
      return v( "/sys/fs/cgroup", "/tmp/fuzz", directory_fd(), "x" ), rules
    end },
    ["core.cgroup_device_programs"] = { function() return v( "/sys/fs/cgroup", "/tmp/fuzz", directory_fd() ) end },
    ["core.chown"] = { function() return path(), random(-1, 70000), random(-1, 70000) end },
    ["core.id_maps"] = { function()
      local p = child()
      return p and p.pid or 0, { uid = { { 0, 0, 1 } }, gid = { { 0, 0, random(0, 2) } }, setgroups = "deny" }
    end },
    ["core.timens_offsets"] = { function() return 0, { monotonic = random(-5, 5), boottime = 1.5 } end },
    ["core.mount"] = {
      function() return "tmpfs", path(), "tmpfs", v( "nosuid,nodev", 0, { "ro" } ), v( "size=1M", "mode=0700",
        "size=x", nil ) end,
      function() return path(), path(), nil, v( "bind", "bind,rec", "remount,bind,ro", "private", "rec,slave" ) end,
    },
    ["core.umount"] = { function() return path(), v( "detach", "force", "expire", "nofollow", 0 ) end },
    ["core.fs_mount"] = { function() return v( "tmpfs", "proc", "mqueue", "sysfs", "x" ), { size = v( "1M",
      "x" ), mode = "0755", ro = random(2) == 1 }, { attrs = v( "nosuid,nodev", "ro", "bad" ), source = "none" } end },
    ["core.open_tree"] = { function() return path(), { clone = random(2) == 1, recursive = random(2) == 1 } end },
    ["core.move_mount"] = { function() return core.open_tree(v( "/tmp", "/proc" )) or path(), path() end },
    ["core.mount_setattr"] = { function() return path(), { set = v( "ro", "nosuid,nodev", "noatime", "nosymfollow" ),
      clear = v( nil, "ro", "relatime" ), propagation = v( nil, "private", "shared", "slave", "unbindable" ),
      recursive = random(2) == 1 } end },
    ["core.open_in_root"] = { function() return directory_fd(), path(), { create = v( "dir", "file", "none" ),
      mode = v( 0755, 0600, 07777, -1 ) } end },
    ["core.write_in_root"] = { function() return directory_fd(), path(), h.random_string(), v( 0644, 0, -1 ) end },
    ["core.symlink_in_root"] = { function() return directory_fd(), path(), path() end },
    ["core.chmod_in_root"] = { function() return directory_fd(), path(), v( 0755, 04755, -1, 1 << 20 ) end },
    ["core.mknod_in_root"] = { function() return directory_fd(), path(), { type = v( "fifo", "file", "char", "block",
      "sock" ), major = v( nil, 1, 4095, 4096, -1 ), minor = v( nil, 3, 1048575, 1048576 ), mode = v( 0666, 0, 07777,
      010000 ), uid = v( nil, 0, 65534, -1 ), gid = v( nil, 0, 1 << 32 ) } end },
    ["core.mkfifo"] = { function() return path(), v( 0600, 0, 07777, -1, 010000 ) end },
    ["core.openpt"] = { function() return v( "/dev/ptmx", "/dev/pts/ptmx", "/dev/null", "/dev/pts", directory_fd(),
      h.random_string() ) end },
    ["core.pty_peer"] = { function() return core.openpt("/dev/ptmx") or 0, v( nil, { cloexec = false },
      { cloexec = 1 } ) end },
    ["core.tty_winsize"] = { function()
      local master, slave = pty_pair()
      return v( slave, master ), v( nil, { rows = random(0, 65535), cols = random(0, 65535) },
        { rows = random(-1, 70000) }, { rows = 1, cols = 1, x = 1 } )
    end },
    ["core.set_controlling_tty"] = { function() return select(2, pty_pair()), v( nil, false, true, 0, 1, 2 ) end },
    ["core.tty_raw"] = { function() return select(2, pty_pair()) end },
    ["core.inotify_add"] = { function() return core.inotify() or 0, v( "/tmp/fuzz", "/tmp", "", "/nonexistent" ),
      v( "create,delete", "modify", { "moved_to", "onlydir" }, "ignored", "bogus", 0 ) end },
    ["core.inotify_read"] = { function()
      local fd = core.inotify()
      if fd then core.inotify_add(fd, "/tmp/fuzz", "create,delete,attrib") end
      return fd or 0
    end },
    ["core.inotify_remove"] = { function() return core.inotify() or 0, v( 1, 0, -1, 1 << 40 ) end },
    ["core.tty_restore"] = { function()
      local _, slave = pty_pair()
      local saved = slave and core.tty_raw(slave)
      return slave, v( saved, h.random_bytes(60), "", 60 )
    end },
    ["core.unix_connect"] = { function() return v( "/tmp/fuzz/sock", ("s"):rep(100), ("s"):rep(103), "a\0b" ),
      v( nil, "stream", "seqpacket", "dgram", "raw" ) end },
    ["core.unix_listen"] = { function() return v( "/tmp/fuzz/listen.sock", ("s"):rep(100), ("s"):rep(103), "a\0b" ),
      v( nil, "stream", "seqpacket", "dgram", "raw" ) end },
    ["core.unix_accept"] = { function()
      -- a listener with a connection waiting, so the call does not block
      local path = "/tmp/fuzz-accept-" .. random(0, 1 << 30)
      local listener = core.unix_listen(path)
      local peer = listener and core.unix_connect(path)
      if peer then peer:close() end -- (its connection stays queued)
      os.remove(path)
      return listener or 0, v( nil, 0, 0.01, -1, 0 / 0 )
    end },
    ["core.copy_tree"] = { function() return copy_source(), copy_dest() end },
    ["core.personality"] = { function() return v( "linux", "linux32", 0, 8, 0x0040008, 0xfffffffe, 0xffffffff,
      "x" ) end },
    ["core.netlink"] = { function() return v( nil, ns_handle(), "/proc/self/ns/net", "fz", "/nonexistent" ) end },
    ["core.nft"] = { function() return nil, v( "add table inet fz", "list ruleset", "flush ruleset",
      "add table ip fz; add chain ip fz c { type nat hook postrouting priority 100; }", "bad command" ),
      { json = random(2) == 1, check = random(2) == 1, handles = random(2) == 1 } end },
    ["core.setns"] = { function() return ns_handle(), v( nil, "net", "uts", 0 ) end },
    ["core.unshare"] = { function() return v( "uts", "ipc", "net", "mount", "cgroup", "time", "user" ) end },
    ["core.kill"] = { function()
      local p = child()
      return p and p.pid or 0, signal()
    end },
    ["core.pidfd_open"] = { function() return v( core.getpid(), 1, 0, -1, 99999 ) end },
    ["core.send_fd"] = { function()
      local a = core.socketpair(v( "stream", "dgram", "seqpacket" ))
      return a or 0, directory_fd() or 0, v( nil, "/dev/ptmx", "", ("d"):rep(65536), ("d"):rep(65537) )
    end },
    ["core.recv_fd"] = { function()
      -- something to receive, so the call does not block
      local a, b = core.socketpair("stream")
      if a then core.send_fd(a, 0) end
      return b or a or 0
    end },
    ["core.poll"] = { function() return { (core.pipe()), directory_fd() }, v( 0, 0.001, 0 / 0, -0.5 ) end },
    ["core.caps_set"] = { function() return { effective = v( { "net_admin" }, "all", 0, "" ),
      permitted = v( nil, "all" ), inheritable = v( nil, { "net_raw" } ) } end },
    ["core.caps_ambient"] = { function() return { raise = v( "net_raw", { "sys_admin" } ), lower = v( nil, "all" ),
      clear = random(2) == 1 } end },
    ["core.caps_iab_set"] = { function() return v( "!sys_time", "^net_raw", "%chown,!kill", "garbage", "" ) end },
    ["core.securebits_set"] = { function() return v( "noroot", { "keep_caps" }, "no_setuid_fixup_locked", "x" ) end },
    ["core.drop_capabilities"] = { function() return { bounding = random(2) == 1, sets = random(2) == 1 } end },
    ["core.close_range"] = { function() return random(50, 100), v( nil, 200, 49 ), { cloexec = random(2) == 1 } end },
    ["core.dup2"] = { function() return directory_fd() or 0, random(40, 60) end },

    ["lunas.sandbox"] = {
      function() return { argv = { "/bin/true" } } end,
      function() return { fn = payload(), namespaces = v( "user,pid", "user,net", { "user", "mount" } ),
        hostname = "fz", timeout = v( 0.5, 0.1 ) } end,
      function() return { argv = { "/bin/true" }, mounts = { { "tmpfs", "/" }, { "ro-bind", "/usr", "/usr" },
        { "symlink", "usr/bin", "/bin" }, { "proc", "/proc" }, { "dev", "/dev" } }, cwd = "/" } end,
      function() return { argv = { "/bin/true" }, seccomp = v( false, { deny = { "mount" } }, { allow = { "debug" } } ),
        caps = v( "none", { "net_raw" }, "keep", { add = { "chown" } } ), landlock = { ro = { "/" } },
        rlimits = { nofile = 64 }, env = { A = "b" }, net = v( "none", "host" ) } end,
      function() return { argv = { "/bin/true" }, limits = { memory = "64M", pids = 16 } } end,
      function() return { argv = { "/bin/true" }, firewall = { output = v( "drop", "reject" ), loopback = v( true, false ),
        rules = { { direction = "out", proto = "tcp", port = 80, action = "allow", name = "fz" } } } } end,
    },
    ["lunas.spawn"] = { function() return { fn = payload(), flags = v( nil, "user", "pid,user" ) } end },
    ["lunas.net.lab"] = { function() return { name = v( "fz", "l" .. random(0, 9) ), netns_dir = v( false,
      "/tmp/fuzz" ) } end },
    host = { function() return v( "h1", "h2", "r", name() ) end },
    router = { function() return v( "r1", name() ) end },
    switch = { function() return v( "s1", name() ) end },
    link = { function() return v( "h1", "h2", "r1" ), v( "s1", "h2", "r1" ), { rate = v( nil, rate() ),
      delay = v( nil, time_value() ), mtu = v( nil, 1400 ) } end },
    set = { function() return { loss = v(nil, share()), rate = v(rate(), false), mtu = v(nil, 1400) } end },
    -- lab nodes (the seeded lab has hosts h1, h2, router r1, switch s1; h1's eth0 is on s1, h2's eth0 on r1)
    addr = { function() return v("eth0", "lo", "eth9", 1), address() end },
    route = { function() return v("default", "10.7.0.0/16", "fd00:7::/64", "bad"), v("10.0.0.254", "fe80::1", nil),
      { dev = v(nil, "eth0"), metric = v(nil, 5) } end },
    run = { function() return { v("/bin/true", "true", "/nonexistent"), capture = random(2) == 1, timeout = v(0.5, 0.01) } end },
    spawn = { function() return { v("/bin/true", "true", "/nonexistent"), env = v(nil, { A = "1" }) } end },
    sysctl = { function() return v("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "kernel.x", "net/../x"),
      v("1", nil, 0) end },
    sandbox = { function() return { argv = { "/bin/true" }, timeout = 0.5 } end },
    attach = { function() return v("s1", "h1"), v(ns_handle(), "/proc/self/ns/net", 0), { name = v("eth5", nil) } end },
    nat = { function() return v("r1", "h1", "s1"), { out = v(nil, "eth0"), forward = v(nil, { { proto = "tcp", port = 8080,
      to = "10.0.0.2", to_port = 80 } }) } end },
    ["lunas.cgroup.new"] = { function() return { limits = { memory = "64M", pids = 8, cpu = 0.5 } } end },
    ["lunas.json.decode"] = { function() return v( '{"a":[1,2,{"b":null}]}', '[1e308,-0,"\\u00e9"]', '"\\ud800"',
      ("["):rep(10000), '{"a":1,}', "" ) end },
  }
  local security = require "lunas.security"
  local function profile()
    return security.check_profile("seccomp", v( { deny = { "mount" } }, { allow = { "debug" } }, {},
      { default = "errno:EPERM", allow = { "read", "write", "exit_group" } }, { rules = { { syscall = "mkdir",
      action = "errno:EACCES" } } } ))
  end
  local function landlock_spec()
    return security.check_landlock("landlock", v( { ro = { "/" } }, { rw = { "/tmp" }, connect = { 80 } },
      { ro = { "/usr" }, scoped = { "signal" }, strict = true } ))
  end
  local more = {
    ["core.ns_create"] = { function() return v( "net", "uts", "ipc", "cgroup", "user", "pid", "mnt", "time" ) end },
    ["core.ns_open"] = { function() return v( "net", "uts", "user", "mnt", "/proc/self/ns/net", "/tmp" ),
      v( nil, core.getpid(), 1, 0, -1 ) end },
    ["core.cgroup_read"] = { function() return v( "/tmp/fuzz", "/sys/fs/cgroup", "/proc/self" ), v( "x",
      "cgroup.procs", "status", "../x" ) end },
    ["lunas.ns.open"] = { function() return v( "net", "/proc/self/ns/uts" ) end },
    ["lunas.ns.enter"] = { function() return ns_handle(), v( nil, "net" ) end },
    ["lunas.ns.persist"] = { function() return ns_handle(), v( "fz", "/tmp/fuzz/p" .. random(0, 3) ) end },
    ["lunas.ns.unpersist"] = { function() return v( "fz", "/tmp/fuzz/p" .. random(0, 3) ) end },
    ["lunas.security.filter"] = { function() return profile() end },
    ["lunas.security.compile"] = { function() return profile() end },
    ["lunas.security.describe"] = { function() return profile() end },
    ["lunas.security.plan_landlock"] = { function() return landlock_spec() end },
    ["lunas.security.apply_landlock"] = { function() return (security.plan_landlock(landlock_spec())) end },
    ["lunas.security.apply_capabilities"] = { function() return security.check_caps("caps", v( "none", { "net_raw" } )) end },
    ["lunas.errors.new"] = { function() return { msg = "fuzz", code = "EIO", where = v( nil, "x:1" ) } end },
    ["lunas.errors.raise"] = { function() return { msg = "fuzz", op = "x" } end },
    ["lunas.error"] = { function() return { msg = "fuzz" } end },
    ["lunas.wait"] = { function() return core.spawn{ fn = payload() }, v( 0, 0.01, 0.5 ) end },
    ["lunas.net.down"] = { function() return v( "fz", "l1", "" ) end },
    ["lunas.net.show"] = { function() return v( "fz", "l1" ) end },
    ["lunas.monitor.sleep"] = { function() return v( 0, 0.001, -1, 0 / 0, "1" ) end },
    ["lunas.monitor.write_file"] = { function() return v( "/tmp/fuzz/m.prom", "/tmp/fuzz/no/m.prom", "", "a\0b" ),
      v( "x 1\n", "", 1 ) end },
    ["lunas.monitor.prometheus"] = { function() return { time = 0, wall = 0, entries = { { kind = v( "sandbox", "lab",
      "x" ), name = h.random_string(), pid = v( 1, nil ), status = "running", cpu_seconds = v( 1.5, 0 / 0, math.huge, "x" ),
      net = v( nil, { rx_bytes = 1, tx_bytes = 2 }, {} ) } } } end },
    ["lunas.monitor.rates"] = { function()
      local e = { kind = "sandbox", name = "a", pid = 1, cpu_seconds = 1, net = { rx_bytes = 1, tx_bytes = 1 } }
      return { time = 0, entries = { e } }, { time = v( 1, 0, -1 ), entries = { e } }
    end },
    ["lunas.monitor.add_collector"] = { function() return { name = "fz", collect = function() end } end },
    ["lunas.monitor.add_metric"] = { function() return { name = "fz_metric", type = v( "gauge", "counter", "x" ),
      help = "fz", kind = v( "sandbox", "lab" ), value = function() return 1 end } end },
    ["lunas.sandbox_record.event"] = { function() return { event = "fz", name = "fz" } end },
    ["lunas.cgroup.open"] = { function() return v( "/sys/fs/cgroup", "/tmp/fuzz", "x" ) end },
    ["lunas.cgroup.adopt"] = { function() return { path = "/tmp/fuzz", v1 = {}, pid = 1 } end },
    ["lunas.firewall.apply"] = { function() return nil, { output = v( "drop", "allow", "reject" ), rules = { {
      direction = v( "out", "in", "forward" ), proto = v( "tcp", "udp" ), port = v( 80, "1-2", { 53, 443 } ),
      to = v( nil, "10.0.0.0/8", "[fd00::1]", { "127.0.0.1", "::1" } ), action = v( "allow", "drop", "reject" ),
      log = v( nil, true, "fz: " ) } } } end },
  }
  more["lunas.sandbox.new"] = templates["lunas.sandbox"]
  for key, list in pairs(more) do templates[key] = list end
  for method, list in pairs(netlink_methods) do templates[method] = list end
  return templates
end
