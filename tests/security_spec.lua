-- The escape battery: attempts to break out of the default sandbox, each asserting the specific failure (errno
-- or signal) from the escape probe (tests/support/escape_probe.c, one attempt per run), and each run again with
-- its protection turned off in the spec, to prove the attempt can see an escape when there is one.
--
-- The probe prints "ok ..." when the attempt worked, or the errno name; a seccomp kill leaves no output and a
-- SIGSYS wait status. The test is root (the unprotected runs sometimes need real root without a user namespace);
-- the probe only uses arguments that fail after the permission check (bad magic numbers, missing files), so
-- even a run with every protection off changes nothing on the machine. The suite's own namespaces (net, mount,
-- uts, ipc: tests/run.sh) are a second fence.
--
-- Also here: the sandbox's security defaults seen from outside, the spec fields and CLI options that relax or
-- tighten them, Landlock through the sandbox, and the CVEs of KERNEL-NOTES re-enacted.

local lunas = require "lunas"
local core = require "lunas.core"
local kernel = require "support.kernel"
local util = require "support.util"

local BUILD = os.getenv("LUNAS_BUILD") or ((os.getenv("LUNAS_ROOT") or ".") .. "/build")
local LUNAS = BUILD .. "/bin/lunas"
local PORT = 47311

-- ---- fixtures ------------------------------------------------------------------------------------------------

-- Shared by every attempt: a directory the default sandbox shows (build/scratch, below the working directory,
-- the checkout, which it shows read-only; /tmp, /var/tmp and /run are its own) holding the probe and a setuid-root copy, a
-- marker file only the host's /tmp has, a host process to reach, a TCP listener in the test's network
-- namespace, and an abstract unix socket listening there.
local fx = {}
local ABSTRACT = "lunas-escape-abstract-" .. core.getpid()

local function sh_ok(cmd)
  local ok = os.execute(cmd)
  assert(ok, cmd)
end

local function setup_fixtures()
  -- (tests/run.sh makes build/scratch, writable by both passes)
  local p = io.popen("mktemp -d " .. util.quote(BUILD .. "/scratch/escape.XXXXXX"))
  fx.dir = p:read("l")
  p:close()
  fx.probe = fx.dir .. "/escape-probe"
  fx.suid = fx.dir .. "/escape-probe-suid"
  local q = util.quote
  sh_ok(("chmod 755 %s && cp %s %s && cp %s %s && chmod 4755 %s"):format(q(fx.dir), q(BUILD .. "/tests/escape-probe"),
    q(fx.probe), q(fx.probe), q(fx.suid), q(fx.suid)))
  fx.writable = fx.dir .. "/writable"
  sh_ok("mkdir -m 777 " .. q(fx.writable))
  p = io.popen("mktemp /tmp/lunas-test.marker.XXXXXX")
  fx.marker = p:read("l")
  p:close()
  fx.link = fx.dir .. "/link-to-host-tmp"
  sh_ok(("ln -s %s %s"):format(util.quote(fx.marker), util.quote(fx.link)))
  fx.sleeper = assert(core.spawn{ argv = { "/bin/sleep", "600" } })
  fx.listener = assert(core.spawn{ argv = { "/usr/bin/perl", "-MIO::Socket::INET", "-e",
    ("$s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:%d', Listen => 8, ReuseAddr => 1) or die; while ($c = $s->accept) { close $c }"):format(PORT) } })
  util.wait_for(function() return (util.read("/proc/net/tcp") or ""):find((":%04X 00000000:0000 0A"):format(PORT)) end, 10)
  fx.abstract = assert(core.spawn{ argv = { "/usr/bin/perl", "-MIO::Socket::UNIX", "-e",
    ("$s = IO::Socket::UNIX->new(Local => \"\\0%s\", Listen => 8) or die; while ($c = $s->accept) { close $c }"):format(ABSTRACT) } })
  util.wait_for(function() return (util.read("/proc/net/unix") or ""):find("@" .. ABSTRACT, 1, true) end, 10)
  fx.hostname = util.read("/proc/sys/kernel/hostname")
  -- A session keyring of the caller's own (a login's, with pam_keyinit): what a sandbox must not inherit.
  fx.keyring = tostring(assert(core.join_session_keyring("lunas-escape-test")))
  -- io.open: no close-on-exec, like a careless recipe's file; the sandbox must not pass it on.
  fx.leaked = assert(io.open(fx.marker, "r"))
end

local function teardown_fixtures()
  for _, proc in ipairs{ fx.sleeper, fx.listener, fx.abstract } do
    if proc then
      proc:kill("KILL")
      proc:wait(10)
      proc:close()
    end
  end
  if fx.leaked then fx.leaked:close() end
  if fx.dir then os.execute("rm -rf " .. util.quote(fx.dir)) end
  if fx.marker then os.remove(fx.marker) end
end

-- Runs the probe in a sandbox: the default one plus `delta` (a spec table or a function of the fixtures).
-- Returns the probe's first output line ("" when killed before printing) and the sandbox's result.
local function probe(delta, args)
  local r, w = assert(core.pipe())
  local spec = { argv = { fx.probe }, stdout = w, stderr = w, timeout = 30 }
  for _, a in ipairs(args) do spec.argv[#spec.argv + 1] = tostring(a) end
  if type(delta) == "function" then delta = delta(fx) end
  for k, v in pairs(delta or {}) do spec[k] = v end
  local ok, result = pcall(function() return lunas.sandbox(spec):run() end)
  w:close()
  local out = util.drain(r)
  r:close()
  if not ok then error(result, 0) end
  return (out:match("^[^\n]*")), result, out
end

-- ---- expectations ----------------------------------------------------------------------------------------------

-- An expectation: "ok" (the attempt worked), an errno name (the first word), {signal = "SYS"}, or
-- {reached = "EPERM"}: the call got past the sandbox to the kernel (any outcome but that errno and no kill).
local function check(expect, line, result, what)
  local word = line:match("^(%S*)")
  local shown = ("%s: printed %q, status %s, signal %s"):format(what, line, tostring(result.status), tostring(result.signame))
  if type(expect) == "string" then
    assert.equal(expect, word, shown)
  elseif expect.signal then
    assert.equal(expect.signal, result.signame, shown)
  elseif expect.reached then
    assert.is_nil(result.signal, shown)
    assert.are_not.equal(expect.reached, word, shown)
    assert.are_not.equal("", word, shown)
  end
end

-- Protections turned off.
local OFF = { caps = "keep", seccomp = false }
-- Real root, no user namespace, every capability, no filter (still in its own pid, mount, uts, ipc and net
-- namespaces): what the kernel's own checks say to a fully privileged caller.
local ROOT = { namespaces = { "pid", "mount", "uts", "ipc", "net" }, caps = "keep", seccomp = false, host_root = true }

-- uid 1000 inside, with root mapped too (so a setuid-root file means something inside).
local AS_USER = { uid = 1000, gid = 1000, uid_map = { { 0, 0, 1 }, { 1000, 1000, 1 } }, gid_map = { { 0, 0, 1 }, { 1000, 1000, 1 } } }

-- What a sandbox (spec: the default one plus these fields) prints on stdout; it must exit 0.
local function output_of(spec)
  local r, w = assert(core.pipe())
  spec.stdout = w
  local ok, result = pcall(function() return lunas.sandbox(spec):run() end)
  w:close()
  local out = util.drain(r)
  r:close()
  if not ok then error(result, 0) end
  assert.equal(0, result.status, out)
  return out
end

-- /proc/PID/status lines of a process that holds no capability in any set, with no_new_privs and a seccomp filter.
local function assert_confined(status)
  for _, field in ipairs{ "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" } do
    assert.matches(field .. ":%s+0000000000000000\n", status)
  end
  assert.matches("NoNewPrivs:%s+1\n", status)
  assert.matches("Seccomp:%s+2\n", status)
end

local function merge(a, b)
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  for k, v in pairs(b) do out[k] = v end
  return out
end

-- name, probe arguments (a function of the fixtures), protected expectation, unprotected spec, its expectation,
-- options: base = spec fields of both runs, file = a path the kernel must have for the attempt to mean anything.
local ATTEMPTS = {
  -- other processes
  { "signal a host process", function() return { "kill", fx.sleeper.pid } end, "ESRCH",
    { namespaces = { "user", "mount", "net" }, host_root = true }, "ok" },
  { "see a host process in /proc", function() return { "proc-pid", fx.sleeper.pid } end, "ENOENT",
    { namespaces = { "user", "mount", "net" } }, "ok" },
  { "ptrace a host process", function() return { "ptrace", fx.sleeper.pid } end, "ESRCH",
    merge(ROOT, { namespaces = { "mount", "net" } }), "ok" },
  -- mounts
  { "mount a file system", { "mount", "/tmp" }, "EPERM", OFF, "ok" },
  -- (/dev/shm: nothing is mounted below it, whereas /tmp holds the view of a working directory under /tmp)
  { "unmount the private /dev/shm", { "umount", "/dev/shm" }, "EPERM", OFF, "ok" },
  { "detach /proc and its masks", { "umount-detach", "/proc" }, "EPERM", OFF, "ok" },
  { "remount the read-only /proc/sys read-write", { "remount-rw", "/proc/sys" }, "EPERM", OFF, "ok" },
  { "clear read-only on /proc/sys with mount_setattr", { "setattr-rw", "/proc/sys" }, "EPERM", OFF, "ok" },
  { "open a file system context (fsopen)", { "fsopen" }, "EPERM", OFF, "ok" },
  { "clone a mount tree (open_tree)", { "open-tree", "/tmp" }, "EPERM", OFF, "ok" },
  { "pivot_root", { "pivot-root", "/dev/shm" }, "EPERM", OFF, "ok" },
  { "chroot", { "chroot", "/tmp" }, "EPERM", OFF, "ok" },
  -- Without a mount namespace of its own (no pivoted root), a chroot break-out reaches the host's /tmp.
  { "break out of a chroot to the host's files", function() return { "chroot-escape", fx.marker } end, "EPERM",
    { namespaces = { "user" }, caps = "keep", seccomp = false, host_root = true }, "ok" },
  { "follow a symlink out of the root", function() return { "symlink", fx.link } end, "ENOENT",
    { mounts = { { "ro-bind", "/", "/" }, { "proc", "/proc" }, { "dev", "/dev" } }, host_root = true }, "ok" },
  { "write to the read-only host tree", function() return { "write", fx.writable .. "/probe" } end, "EROFS",
    { mounts = { { "bind", "/", "/" }, { "proc", "/proc" }, { "dev", "/dev" } } }, "ok", { needs = "idmap" } },
  -- what the host's descriptors and /proc, /sys would give away
  { "use a descriptor inherited from the host", { "fds" }, "EBADF", { close_fds = false }, "ok" },
  { "read /proc/kcore", { "read", "/proc/kcore" }, "EOF", merge(ROOT, { harden = false }), "ok",
    { file = "/proc/kcore" } },
  { "list /sys/firmware", { "list", "/sys/firmware" }, "EMPTY", { harden = false, net = "host" }, "ok" },
  { "list /sys/firmware without a network namespace of its own", { "list", "/sys/firmware" }, "EMPTY",
    { harden = false }, "ok", { base = { net = "host" } } },
  -- kernel and machine
  { "load a module (init_module)", { "init-module" }, "EPERM", ROOT, { reached = "EPERM" } },
  { "load a module (finit_module)", { "finit-module" }, "EPERM", ROOT, { reached = "EPERM" } },
  { "remove a module", { "delete-module" }, "EPERM", ROOT, { reached = "EPERM" } },
  { "reboot", { "reboot" }, "EPERM", OFF, "EINVAL" },
  { "load a new kernel (kexec_load)", { "kexec" }, "EPERM", ROOT, { reached = "EPERM" } },
  { "load a new kernel (kexec_file_load)", { "kexec-file" }, "EPERM", ROOT, { reached = "EPERM" } },
  { "enable swap", { "swapon" }, "EPERM", ROOT, "ENOENT" },
  { "set the clock", { "settime" }, "EPERM", ROOT, "ok" },
  { "raw port I/O", { "iopl" }, "EPERM", ROOT, { reached = "EPERM" } },
  { "load a BPF program or map", { "bpf" }, "EPERM", ROOT, "ok" },
  { "open a perf event", { "perf" }, "EPERM", ROOT, "ok" },
  { "join a session keyring", { "keyctl" }, "EPERM", OFF, "ok" },
  { "add a key", { "add-key" }, "EPERM", OFF, "ok" },
  { "create a userfaultfd", { "userfaultfd" }, "EPERM", OFF, "ok" },
  -- network
  { "open a raw IP socket", { "raw-socket" }, "EPERM", OFF, "ok" },
  { "open a packet socket", { "packet-socket" }, "EPERM", OFF, "ok" },
  { "reach the host's network", { "connect", "127.0.0.1", PORT }, "ECONNREFUSED", { net = "host" }, "ok" },
  -- identity and capabilities
  { "hold a capability", { "caps" }, "EPERM", OFF, "ok" },
  { "raise a capability", { "cap-raise" }, "EPERM", OFF, "ok" },
  { "raise an ambient capability", { "ambient-raise" }, "EPERM", OFF, "ok" },
  { "clear the securebits", { "securebits" }, "EPERM", OFF, "ok" },
  { "be able to gain privileges (no_new_privs)", { "nnp" }, "EPERM", { no_new_privs = false, seccomp = false }, "ok" },
  { "gain root through a setuid binary", function() return { "exec", fx.suid, "euid" } end, "EPERM",
    { no_new_privs = false, seccomp = false }, "ok", { base = AS_USER, root_only = true } },
  { "regain capabilities in a new user namespace (unshare)", { "unshare-user" }, "EPERM",
    { seccomp = { allow = { "userns" } } }, "ok" },
  { "regain capabilities in a new user namespace (clone)", { "clone-user" }, "EPERM",
    { seccomp = { allow = { "userns" } } }, "ok" },
  { "regain capabilities in a new user namespace (clone3)", { "clone3" }, "ENOSYS",
    { seccomp = { allow = { "userns" } } }, "ok" },
  { "change the host name", { "hostname", "lunas-escaped" }, "EPERM", OFF, "ok" },
  { "share the caller's session (and terminal)", { "setsid-check" }, "EPERM", { new_session = false }, "ok" },
  -- host services (the default tree shows no socket or FIFO of the host: see host_ipc_spec), and the host's
  -- abstract sockets when the sandbox shares the host's network: Landlock scopes them (ABI 6)
  { "connect to an abstract unix socket of the host (shared network)", { "abstract-connect", ABSTRACT }, "EPERM",
    { abstract_sockets = "host" }, "ok", { base = { net = "host" }, landlock_abi = 6 } },
  { "connect to an abstract unix socket of the host (own network)", { "abstract-connect", ABSTRACT },
    "ECONNREFUSED", { net = "host", abstract_sockets = "host" }, "ok" },
  -- root-run identity: the sandbox's ids are a range of the host's that owns nothing
  { "read /etc/shadow", { "read", "/etc/shadow" }, "EACCES", { host_root = true }, "ok" },
  { "list /root", { "list", "/root" }, "EACCES", { host_root = true }, "ok",
    { base = { mounts = { { "ro-bind", "/", "/" }, { "proc", "/proc" }, { "dev", "/dev" } } } } },
  { "rewrite a global sysctl", { "sysctl-rewrite", "/proc/sys/vm/swappiness" }, "EACCES", { host_root = true }, "ok",
    { base = { harden = false } } },
  -- system calls the filter cannot see through, or that reach too far
  { "set up io_uring", { "io-uring-setup" }, "EPERM", { seccomp = { allow = { "io_uring" } } }, "ok" },
  { "connect through io_uring where connect is refused", function() return { "io-uring-connect", "127.0.0.1", PORT } end,
    "EPERM", { seccomp = { deny = { "connect" }, allow = { "io_uring" } } }, "ok",
    { base = { net = "host", seccomp = { deny = { "connect" } } } } },
  { "open an AF_VSOCK socket (never connected)", { "vsock" }, "EPERM", { seccomp = { allow = { "vsock" } } },
    { reached = "EPERM" } },
  { "reach the caller's session keyring", function() return { "keyring", fx.keyring } end, "FRESH",
    { keyring = "inherit" }, "ok", { base = { seccomp = { allow = { "keyring" } } } } },
  { "read the local descriptor table (modify_ldt)", { "modify-ldt" }, "EPERM", { seccomp = { allow = { "ldt" } } }, "ok" },
  { "turn ASLR off (personality ADDR_NO_RANDOMIZE)", { "personality", "0x0040000" }, "EPERM",
    { seccomp = { allow = { "personality" } } }, "ok" },
  { "clone a mount with attributes (open_tree_attr)", { "open-tree-attr" }, "EPERM", OFF, { reached = "EPERM" } },
  { "take a lease on a file (F_SETLEASE)", { "setlease", "/tmp" }, "EPERM", { seccomp = { allow = { "lease" } } }, "ok" },
  -- a setuid or setgid program made inside, for the host to run (through a writable bind)
  { "set the setuid bit (chmod)", { "chmod-suid", "chmod", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } }, "ok" },
  { "set the setuid bit (fchmod)", { "chmod-suid", "fchmod", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } }, "ok" },
  { "set the setuid bit (fchmodat)", { "chmod-suid", "fchmodat", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } },
    "ok" },
  { "set the setuid bit (fchmodat2)", { "chmod-suid", "fchmodat2", "/tmp" }, "EPERM",
    { seccomp = { allow = { "suid" } } }, { reached = "EPERM" } },
  { "set the setgid bit (chmod)", { "chmod-suid", "sgid-chmod", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } },
    "ok" },
  { "create a setuid file (open)", { "create-suid", "open", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } }, "ok" },
  { "create a setuid file (openat)", { "create-suid", "openat", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } },
    "ok" },
  { "create a setuid file (creat)", { "create-suid", "creat", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } }, "ok" },
  { "create a setuid file (mknod)", { "create-suid", "mknod", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } }, "ok" },
  { "create a setuid file (O_TMPFILE)", { "create-suid", "tmpfile", "/tmp" }, "EPERM", { seccomp = { allow = { "suid" } } },
    "ok" },
  -- other architectures' system call tables
  { "make a 32-bit (i386) system call", { "i386" }, { signal = "SYS" }, { seccomp = false }, { reached = "" } },
  { "make an x32 system call", { "x32" }, { signal = "SYS" }, { seccomp = false }, { reached = "" } },
}

describe("escape battery #root", function()
  setup(setup_fixtures)
  teardown(teardown_fixtures)

  it("has at least 40 attempts", function()
    assert.is_true(#ATTEMPTS >= 40, #ATTEMPTS .. " attempts")
  end)

  for _, a in ipairs(ATTEMPTS) do
    local name, args, expect, off, expect_off, opts = table.unpack(a)
    opts = opts or {}
    it(name .. ": refused, and seen when unprotected", function()
      if not kernel.requires("userns") then return end
      if opts.file and not os.execute("test -e " .. opts.file) then
        pending(("this kernel has no %s"):format(opts.file))
        return
      end
      if opts.landlock_abi and core.landlock_abi() < opts.landlock_abi then
        pending(("needs Landlock ABI %d, this kernel has %d"):format(opts.landlock_abi, core.landlock_abi()))
        return
      end
      if opts.needs and not kernel.requires(opts.needs) then return end
      local argv = type(args) == "function" and args() or args
      local line, result = probe(opts.base, argv)
      check(expect, line, result, "protected")
      line, result = probe(merge(opts.base or {}, off), argv)
      check(expect_off, line, result, "unprotected")
    end)
  end

  it("leaves the host as it was: host name, marker, written files", function()
    assert.equal(fx.hostname, util.read("/proc/sys/kernel/hostname"))
    assert.is_nil(util.read(fx.writable .. "/probe"))
    assert.equal("", util.read(fx.marker))
  end)
end)

-- The protected runs again: run by an unprivileged user (the root pass has checked these already, paired with
-- their unprotected runs, which need root: registered in the rootless pass only), and run by root with uid 1000
-- inside (one of root's range of host ids). The setuid attempt maps ids of its own, which needs root (root_only).
local function protected_only(title, as)
  describe(title, function()
    setup(setup_fixtures)
    teardown(teardown_fixtures)

    for _, a in ipairs(ATTEMPTS) do
      local name, args, expect, _, _, opts = table.unpack(a)
      opts = opts or {}
      if not opts.root_only then
        it(name .. ": refused", function()
          if not kernel.requires("userns") then return end
          if opts.file and not os.execute("test -e " .. opts.file) then
            pending(("this kernel has no %s"):format(opts.file))
            return
          end
          if opts.landlock_abi and core.landlock_abi() < opts.landlock_abi then
            pending(("needs Landlock ABI %d, this kernel has %d"):format(opts.landlock_abi, core.landlock_abi()))
            return
          end
          local line, result = probe(merge(opts.base or {}, as), type(args) == "function" and args() or args)
          check(expect, line, result, "protected")
        end)
      end
    end
  end)
end

if os.getenv("LUNAS_TEST_PASS") ~= "root" then
  protected_only("escape battery as an unprivileged user #rootless", {})
else
  protected_only("escape battery as uid 1000 in a sandbox that root runs #root", { uid = 1000, gid = 1000 })
end

-- ---- the terminal (CVE-2017-5226, CVE-2019-10063) -------------------------------------------------------------

-- Runs `lunas run [options] -- probe ATTEMPT 0` with a pseudo-terminal as lunas's controlling terminal and stdin
-- (script(1)); returns what appeared on the terminal.
local function on_terminal(options, attempt)
  local cmd = ("%s run %s -- %s %s 0"):format(util.quote(LUNAS), options, util.quote(fx.probe), attempt)
  local out = util.run{ "script", "-qec", cmd, "/dev/null" }
  return (out:gsub("\r", ""))
end

describe("terminal injection #root", function()
  setup(setup_fixtures)
  teardown(teardown_fixtures)

  -- Unprotected, TIOCSTI's 'x' lands in the terminal's input (echoed) and the call succeeds; TIOCSETD sets the
  -- discipline the terminal already has (nothing changes).
  local CASES = {
    { "tiocsti", "refused by the default profile, pushes a keystroke without it", "^xok" },
    { "tiocsti-high", "refused by the default profile, pushes a keystroke without it", "^xok" },
    { "tiocsetd", "changing the line discipline is refused by the default profile, reaches the tty without it", "^ok" },
    { "tiocsetd-high", "changing the line discipline is refused by the default profile, reaches the tty without it",
      "^ok" },
  }
  for _, case in ipairs(CASES) do
    local attempt, title, unprotected = table.unpack(case)
    it(attempt .. ": " .. title, function()
      assert.matches("^EPERM", on_terminal("", attempt))
      -- The filter alone stops it, also on the caller's own session and terminal.
      assert.matches("^EPERM", on_terminal("--share-session", attempt))
      assert.matches(unprotected, on_terminal("--share-session --no-seccomp", attempt))
    end)
  end

  for _, attempt in ipairs{ "tioclinux", "tioclinux-high" } do
    it(attempt .. ": refused by the default profile, reaches the tty driver without it", function()
      assert.matches("^EPERM", on_terminal("--share-session", attempt))
      assert.matches("^ENOTTY", on_terminal("--share-session --no-seccomp", attempt)) -- a pty is no console
    end)
  end
end)

-- ---- the defaults, from outside -----------------------------------------------------------------------------

describe("sandbox confinement defaults #rootless", function()
  it("drops every capability, locks securebits, sets no_new_privs and a seccomp filter", function()
    if not kernel.requires("userns") then return end
    local r, w = assert(core.pipe())
    local result = lunas.sandbox{ argv = { "/bin/grep", "-E", "^(Cap|NoNewPrivs|Seccomp)", "/proc/self/status" },
      stdout = w }:run()
    w:close()
    local out = util.drain(r)
    r:close()
    assert.equal(0, result.status)
    assert_confined(out)
  end)

  it("keeps exactly the capabilities a spec names, for a payload of any uid", function()
    if not kernel.requires("userns") then return end
    for _, uid in ipairs{ 0, 1000 } do
      if uid ~= 0 and core.ids().euid ~= 0 then break end
      local r, w = assert(core.pipe())
      local spec = { argv = { "/bin/grep", "^Cap", "/proc/self/status" }, stdout = w, caps = { "CAP_NET_ADMIN", "net_raw" } }
      if uid ~= 0 then spec.uid, spec.uid_map, spec.gid_map = uid, { { 0, 0, 1 }, { uid, uid, 1 } }, { { 0, 0, 1 } } end
      local result = lunas.sandbox(spec):run()
      w:close()
      local out = util.drain(r)
      r:close()
      assert.equal(0, result.status)
      for _, field in ipairs{ "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" } do
        assert.matches(field .. ":%s+0000000000003000\n", out)
      end
    end
  end)

  it("refuses a spec that would let the payload trace its PID 1, and unknown names", function()
    local function raises(spec, text)
      spec.argv = { "/bin/true" }
      local ok, err = pcall(function() return lunas.sandbox(spec):run() end)
      assert.is_false(ok)
      assert.matches(text, tostring(err), 1, true)
    end
    raises({ caps = { "sys_ptrace" } }, "field 'caps': sys_ptrace needs as_pid_1")
    raises({ caps = { "sys_bogus" } }, "field 'caps[1]': unknown capability 'sys_bogus'")
    raises({ seccomp = { deny = { "mounts" } } }, "field 'seccomp.deny[1]': unknown group or system call 'mounts'")
    raises({ seccomp = { defualt = "allow" } }, "field 'seccomp': unknown field 'defualt'")
    raises({ seccomp = { action = "EWHAT" } }, "field 'seccomp.action'")
    raises({ landlock = { ro = { "relative" } } }, "field 'landlock.ro[1]': absolute path expected")
    raises({ landlock = { connect = { 70000 } } }, "field 'landlock.connect[1]'")
    raises({ no_new_privs = false }, "field 'no_new_privs'")
  end)

  it("tightens the profile with deny and relaxes it with allow", function()
    if not kernel.requires("userns") then return end
    local function run(seccomp, script)
      local r, w = assert(core.pipe())
      local result = lunas.sandbox{ argv = { "/bin/sh", "-c", script }, stdout = w, stderr = w, seccomp = seccomp }:run()
      w:close()
      local out = util.drain(r)
      r:close()
      return out, result
    end
    -- deny a single call with an errno of the profile's choosing
    local out = run({ deny = { "mkdir", "mkdirat" }, action = "EROFS" }, "mkdir /tmp/x 2>&1; echo rc=$?")
    assert.matches("Read%-only file system", out)
    -- a kill action on a call
    local _, result = run({ rules = { { action = "kill_process", syscall = "uname" } } }, "exec uname")
    assert.equal("SYS", result.signame)
    -- an allowlist: everything refused with ENOSYS but what the shell needs
    out = run({ base = "none", default = "kill_process", allow = { "execve", "brk", "mmap", "munmap", "mprotect",
      "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "access", "openat", "newfstatat",
      "fstat", "read", "pread64", "close", "write", "exit_group", "getrandom", "futex", "getuid", "getgid",
      "geteuid", "getegid", "getpid", "getppid", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "fcntl",
      "ioctl", "getcwd", "stat", "lseek", "dup2", "uname", "sysinfo", "wait4", "exit" } }, "echo allowed")
    assert.equal("allowed\n", out)
  end)

  it("prints the profile as PFC from lunas run --seccomp-show, and reads a profile file", function()
    local out, code = util.run{ LUNAS, "run", "--seccomp-show", "--", "true" }
    assert.equal(0, code, out)
    assert.matches('filter for syscall "mount"', out, 1, true)
    assert.matches('filter for syscall "clone3"', out, 1, true)
    assert.matches("$a1.lo32 & 0xffffffff == 21522", out, 1, true) -- TIOCSTI, low 32 bits whatever the high half
    local dir, rm = util.tmpdir()
    finally(rm)
    util.write(dir .. "/p.lua", 'return { deny = { "uname" }, action = "ENOLINK" }')
    out, code = util.run{ LUNAS, "run", "--seccomp", dir .. "/p.lua", "--", "uname" }
    assert.equal(1, code, out)
    assert.matches("Link has been severed", out)
    out, code = util.run{ LUNAS, "run", "--seccomp-deny", "uname", "--", "uname" }
    assert.equal(1, code, out)
    assert.matches("Operation not permitted", out)
    util.write(dir .. "/bad.lua", "return { deny = { 'nope' } }")
    out, code = util.run{ LUNAS, "run", "--seccomp", dir .. "/bad.lua", "--", "true" }
    assert.equal(2, code, out)
    assert.matches("unknown group or system call 'nope'", out, 1, true)
    out, code = util.run{ LUNAS, "run", "--cap-add", "CAP_NET_RAW", "--cap-add", "net_admin", "--cap-drop",
      "CAP_NET_RAW", "--", "grep", "^CapEff", "/proc/self/status" }
    assert.equal(0, code, out)
    assert.equal("CapEff:\t0000000000001000\n", out)
    out, code = util.run{ LUNAS, "run", "--cap-add", "CAP_NOPE", "--", "true" }
    assert.equal(2, code, out)
  end)
end)

-- ---- Landlock through the sandbox -------------------------------------------------------------------------------

describe("the default seccomp program #rootless", function()
  -- The host binary carries it compiled at build time (src/precompile.lua): it must be exactly what libseccomp
  -- compiles for the default profile now, here (this spec's lunas is the source tree's, which compiles it).
  it("is carried by the host binary byte for byte as libseccomp compiles it, and used without compiling", function()
    local security = require "lunas.security"
    local p = security.check_profile("seccomp", nil)
    local fresh = security.compile(p).program
    local hex = function(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
    local out, code = util.run({ LUNAS, "-e", [[
      local security = require "lunas.security"
      local p = security.check_profile("seccomp", nil)
      local carried = require("lunas.seccomp_programs")[security.cache_key(p)]
      assert(carried, "no program for the default profile in the binary")
      -- compile() hands out the carried program itself: nothing is compiled
      assert(security.compile(p) == carried, "compile() did not use the carried program")
      io.write((carried.program:gsub(".", function(c) return ("%02x"):format(c:byte()) end)))
    ]] })
    assert.are.equal(0, code, out)
    assert.are.equal(hex(fresh), out)
    assert.is_true(#fresh > 100)
  end)
end)

describe("sandbox landlock #rootless", function()
  it("confines the payload to the listed paths (read-only and read-write)", function()
    if not kernel.requires("userns", "landlock") then return end
    local script = "cat /etc/hostname >/dev/null && echo read-etc; echo x 2>/dev/null > /tmp/rw/f && echo write-rw; "
      .. "echo x 2>/dev/null >/tmp/f && echo write-tmp || echo no-write-tmp; ls /var >/dev/null 2>&1 || echo no-var"
    -- (stderr dropped: an older kernel warns about the rights it cannot restrict)
    local out, code = util.run({ LUNAS, "run", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
      "--dir", "/tmp/rw", "--landlock-ro", "/usr", "--landlock-ro", "/etc", "--landlock-ro", "/proc",
      "--landlock-ro", "/tmp", "--landlock-rw", "/tmp/rw", "--landlock-rw", "/dev/null", "--", "/bin/sh", "-c", script },
      { stderr = false })
    assert.equal(0, code, out)
    assert.equal("read-etc\nwrite-rw\nno-write-tmp\nno-var\n", out)
    -- the same without Landlock: /tmp and /var are there to write and read
    out, code = util.run{ LUNAS, "run", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
      "--dir", "/tmp/rw", "--", "/bin/sh", "-c", script }
    assert.equal(0, code, out)
    assert.equal("read-etc\nwrite-rw\nwrite-tmp\n", out)
  end)

  it("limits TCP connect to the listed ports", function()
    if not kernel.requires("userns", "landlock_net") then return end
    local script = "(echo > /dev/tcp/127.0.0.1/1) 2>&1 | grep -om1 'Connection refused\\|Permission denied'; "
      .. "(echo > /dev/tcp/127.0.0.1/2) 2>&1 | grep -om1 'Connection refused\\|Permission denied'"
    local out, code = util.run{ LUNAS, "run", "--landlock-connect", "1", "--", "/bin/bash", "-c", script }
    assert.equal(0, code, out)
    assert.equal("Connection refused\nPermission denied\n", out)
  end)

  it("says where the host's abstract sockets stay reachable (a shared network, no Landlock scopes)", function()
    if not kernel.requires("userns") then return end
    local abi = core.landlock_abi()
    local result = lunas.sandbox{ argv = { "/bin/true" }, net = "host", stderr = "null" }:run()
    assert.equal(0, result.status)
    local said = table.concat(result.warnings or {}, "\n")
    if abi >= 6 then
      -- scoped: nothing to say, and none said for a sandbox of its own network either
      assert.equal("", said)
    else
      assert.matches("abstract unix sockets of the host's network namespace stay reachable: scoping them needs "
        .. "Landlock ABI 6, this kernel has " .. abi, said, 1, true)
    end
    assert.is_nil(lunas.sandbox{ argv = { "/bin/true" } }:run().warnings)
  end)

  it("warns in best-effort mode and fails in strict mode for what the kernel cannot enforce", function()
    if not kernel.requires("userns") then return end
    local abi = core.landlock_abi()
    if abi >= 6 then pending("every right is enforceable here (ABI " .. abi .. ")") return end
    local spec = { argv = { "/bin/true" }, landlock = { ro = { "/" }, scoped = { "signal" } } }
    local result = lunas.sandbox(spec):run()
    assert.equal(0, result.status)
    assert.matches("scope 'signal' needs ABI 6", table.concat(result.warnings, "\n"))
    spec.landlock.strict = true
    local ok, err = pcall(function() return lunas.sandbox(spec):run() end)
    assert.is_false(ok)
    assert.matches("sandbox: landlock: .* needs ABI %d, the kernel has " .. abi, tostring(err))
  end)
end)

-- ---- CVEs of our peers, re-enacted ----------------------------------------------------------------------------

describe("CVEs of our peers #root", function()
  setup(setup_fixtures)
  teardown(teardown_fixtures)

  it("runc CVE-2024-21626: a working directory reached through an inherited descriptor is refused", function()
    local dirfile = assert(io.open(fx.dir, "r")) -- io.open: no close-on-exec, like a careless recipe's
    finally(function() dirfile:close() end)
    local fd
    for n = 3, 1023 do
      if require("support.child").readlink("/proc/self/fd/" .. n) == fx.dir then fd = n break end
    end
    assert.is_not_nil(fd, "the directory's descriptor")
    local ok, err = pcall(function()
      return lunas.sandbox{ argv = { fx.probe, "getpid" }, cwd = "/proc/self/fd/" .. fd }:run()
    end)
    assert.is_false(ok)
    assert.matches("sandbox: cwd: the working directory is outside the sandbox's root", tostring(err), 1, true)
  end)

  it("runc CVE-2019-5736: the payload cannot open its PID 1's executable for writing", function()
    local line = probe(nil, { "write", "/proc/1/exe" })
    assert.is_true(line == "EACCES" or line == "EPERM" or line == "ETXTBSY", line)
  end)

  it("crun CVE-2022-27650: nothing inheritable or ambient after exec, even with capabilities kept", function()
    local r, w = assert(core.pipe())
    local result = lunas.sandbox{ argv = { "/bin/grep", "-E", "^Cap(Inh|Amb)", "/proc/self/status" }, stdout = w,
      caps = "keep", as_pid_1 = true }:run()
    w:close()
    assert.equal(0, result.status)
    assert.equal("CapInh:\t0000000000000000\nCapAmb:\t0000000000000000\n", util.drain(r))
    r:close()
  end)

  it("firejail CVE-2017-5207 / CVE-2020-17367: lunas never runs a shell or a helper on the user's behalf", function()
    -- No command strings handed to a shell (system, popen, sh -c): programs run from argv only. (The shell that
    -- `lunas enter` starts when given no command is the user's interactive program, not an interpreter of ours.)
    local root = os.getenv("LUNAS_ROOT") or "."
    local out = util.run{ "grep", "-rnF", "-e", "os.execute", "-e", "io.popen", "-e", "system(", "-e", "popen(",
      "-e", '"-c"', root .. "/lua", root .. "/src" }
    assert.equal("", out)
  end)

  it("LXC CVE-2015-1335 / crun CVE-2019-18837: a mount target through a symlink stays inside the root", function()
    -- (its rootfs directory, root's, must take an idmapped mount for root's sandbox to make mount points in it)
    if not kernel.requires("idmap") then return end
    local rootfs = fx.dir .. "/rootfs"
    local outside = fx.dir .. "/outside"
    local q = util.quote
    sh_ok(("mkdir -p %s/bin %s && ln -s %s %s/etc && cp %s %s/bin/probe"):format(q(rootfs), q(outside), q(outside),
      q(rootfs), q(fx.probe), q(rootfs)))
    local ok, err = pcall(function()
      return lunas.sandbox{ argv = { "/bin/probe", "getpid" }, rootfs = rootfs, mounts = { { "tmpfs", "/etc/x" } } }:run()
    end)
    -- The link is followed inside the root, where its target does not exist: the entry is refused, naming it.
    assert.is_false(ok)
    assert.matches("sandbox: mounts: mounts[1] tmpfs /etc/x: resolve in root /etc/x: No such file or directory",
      tostring(err), 1, true)
    -- and the host's directory the link names got nothing: no directory made, nothing mounted
    local entries = {}
    for name in require("lfs").dir(outside) do
      if name ~= "." and name ~= ".." then entries[#entries + 1] = name end
    end
    assert.same({}, entries)
  end)
end)

-- ---- PID 1: confined and untraceable before the payload exists --------------------------------------------------

describe("the sandbox's PID 1 #rootless", function()
  setup(setup_fixtures)
  teardown(teardown_fixtures)

  -- The payload as another uid than 0 where the maps allow it (root's range), as the review's race used.
  local function as_user()
    if core.ids().euid == 0 then return { uid = 1000, gid = 1000 } end
    return {}
  end

  it("is at least as confined as the payload: no_new_privs, its own seccomp filter, no capability at all", function()
    if not kernel.requires("userns") then return end
    local delta = as_user()
    delta.argv = { "/bin/grep", "-E", "^(NoNewPrivs|Seccomp|Cap(Inh|Prm|Eff|Bnd|Amb)):", "/proc/1/status" }
    assert_confined(output_of(delta))
  end)

  it("can never be traced by the payload: 500 races of ptrace(PTRACE_SEIZE, 1) at the payload's first instruction", function()
    if not kernel.requires("userns") then return end
    local won, lines = 0, {}
    local spec = as_user()
    spec.argv = { fx.probe, "ptrace-seize", "1" }
    local sb = lunas.sandbox(spec)
    for _ = 1, 500 do
      local r, w = assert(core.pipe())
      sb.spec.stdout, sb.spec.stderr = w, w
      sb:run()
      w:close()
      local line = util.drain(r):match("^[^\n]*")
      r:close()
      lines[line] = (lines[line] or 0) + 1
      if line:match("^ok") then won = won + 1 end
    end
    local seen = {}
    for line, n in pairs(lines) do seen[#seen + 1] = ("%s x%d"):format(line, n) end
    assert.equal(0, won, table.concat(seen, ", "))
    -- And the probe can seize a process of its own uid that is traceable (its child): the attempt is real.
    local line = probe({ argv = { "/bin/sh", "-c", ("sleep 5 & exec %s ptrace-seize $!"):format(util.quote(fx.probe)) } },
    {})
    assert.matches("^ok", line)
  end)

  it("is a sealed memfd that nothing inside can read, trace or write", function()
    if not kernel.requires("userns") then return end
    for _, attempt in ipairs{ { "read", "/proc/1/environ" }, { "write", "/proc/1/exe" }, { "read", "/proc/1/mem" } } do
      local line = probe(nil, attempt)
      assert.is_true(line == "EACCES" or line == "EPERM" or line == "ETXTBSY", table.concat(attempt, " ") .. ": " .. line)
    end
  end)
end)

-- ---- the identity of a sandbox that root runs -------------------------------------------------------------------

describe("a sandbox that root runs #root", function()
  setup(setup_fixtures)
  teardown(teardown_fixtures)

  local function uid_map_of(spec)
    spec.argv = { "/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map" }
    return output_of(spec)
  end

  it("maps its ids to a range of 65536 host ids that no other running sandbox has, never onto host root", function()
    if not kernel.requires("userns") then return end
    local idrange = require "lunas.idrange"
    local map = uid_map_of{}
    local inside, outside, count = map:match("^%s*(%d+)%s+(%d+)%s+(%d+)")
    assert.equal("0", inside)
    assert.equal(tostring(idrange.SIZE), count)
    outside = tonumber(outside)
    assert.is_true(outside >= idrange.FIRST and outside <= idrange.LAST and outside % idrange.SIZE == 0, map)
    -- Two at once get two ranges, each held by its lock while it runs; neither maps host root.
    local a = lunas.sandbox{ argv = { "sleep", "30" } }:spawn()
    local b = lunas.sandbox{ argv = { "sleep", "30" } }:spawn()
    finally(function() a:close() b:close() end)
    local ma, mb = util.read("/proc/" .. a.pid .. "/uid_map"), util.read("/proc/" .. b.pid .. "/uid_map")
    local base_a, base_b = ma:match("^%s*0%s+(%d+)"), mb:match("^%s*0%s+(%d+)")
    assert.is_not_nil(base_a, ma)
    assert.are_not.equal(base_a, base_b)
    assert.is_nil(ma:match("^%s*%d+%s+0%s"), ma)
    -- ... and the range is free again once the sandbox is gone
    assert.is_not_nil(util.read(idrange.DIR .. "/" .. base_a))
    a:close()
    assert.is_nil(util.read(idrange.DIR .. "/" .. base_a))
  end)

  it("leaves a range's record to lunas gc when lunas dies, which frees it unless its sandbox still runs", function()
    if not kernel.requires("userns") then return end
    local idrange = require "lunas.idrange"
    -- a lunas killed after it took a range: its record names a sandbox that is gone (pid 1 never started at 1)
    local held = idrange.acquire()
    finally(function() idrange.release(held) end)
    local stale = held.base + idrange.SIZE * 7 <= idrange.LAST and held.base + idrange.SIZE * 7 or idrange.FIRST
    util.write(idrange.DIR .. "/" .. stale, "1 1\n")
    local out, code = util.run{ LUNAS, "gc", "--json" }
    assert.equal(0, code, out)
    local freed = require("lunas.json").decode(out).id_ranges
    assert.is_true(#freed >= 1, out)
    local seen = {}
    for _, base in ipairs(freed) do seen[base] = true end
    assert.is_true(seen[stale], out)
    assert.is_nil(seen[held.base], "gc freed a range a running lunas holds")
    assert.is_nil(util.read(idrange.DIR .. "/" .. stale))
    assert.is_not_nil(util.read(idrange.DIR .. "/" .. held.base))
  end)

  it("takes over a range whose record names a dead sandbox, with a record of its own alone in the file", function()
    if not kernel.requires("userns") then return end
    local idrange = require "lunas.idrange"
    -- Every range recorded by a sandbox that is gone: the next sandbox must take one of them over.
    local bases = {}
    for base = idrange.FIRST, idrange.LAST, idrange.SIZE do
      bases[#bases + 1] = base
      util.write(idrange.DIR .. "/" .. base, "1 1\n")
    end
    local sb
    finally(function() -- (busted keeps one finally per test)
      if sb then sb:close() end
      for _, base in ipairs(bases) do os.remove(idrange.DIR .. "/" .. base) end
    end)
    sb = lunas.sandbox{ argv = { "sleep", "30" } }:spawn()
    local base = util.read("/proc/" .. sb.pid .. "/uid_map"):match("^%s*0%s+(%d+)")
    assert.is_not_nil(base)
    local record = util.read(idrange.DIR .. "/" .. base)
    assert.equal(("%d %s\n"):format(sb.pid, require("lunas.process").start_time(sb.pid)), record)
    sb:close()
    assert.is_nil(util.read(idrange.DIR .. "/" .. base))
  end)

  it("maps onto host root only when asked by name (host_root, --host-root)", function()
    if not kernel.requires("userns") then return end
    assert.matches("^%s*0%s+0%s+1%s", uid_map_of{ host_root = true })
    local out, code = util.run{ LUNAS, "run", "--host-root", "--", "cat", "/proc/self/uid_map" }
    assert.equal(0, code, out)
    assert.matches("^%s*0%s+0%s+1%s", out)
    -- Without a user namespace, root must say so too (or name a uid).
    local ok, err = pcall(function() return lunas.sandbox{ argv = { "true" }, namespaces = "pid,mount" }:run() end)
    assert.is_false(ok)
    assert.matches("field 'namespaces': without a user namespace the sandbox runs as the host's root", tostring(err), 1, true)
    out, code = util.run{ LUNAS, "run", "--unshare-pid", "--", "cat", "/proc/self/uid_map" }
    assert.equal(0, code, out)
    assert.is_nil(out:match("^%s*0%s+0%s"), "--unshare-pid alone mapped root onto root: " .. out)
  end)

  it("writes through a bind it was asked to make writable as the host's ids (idmapped), and nowhere else", function()
    if not kernel.requires("userns", "idmap") then return end
    local dir, rm = util.tmpdir()
    finally(rm)
    os.execute("chmod 755 " .. util.quote(dir))
    local out, code = util.run{ LUNAS, "run", "--default-tree", "--bind", dir, "/mnt/w", "--", "/bin/sh", "-c",
      "touch /mnt/w/made-inside && ls -ln /mnt/w/made-inside | cut -d' ' -f3; touch /etc/x 2>&1 | sed 's/.*: //'" }
    assert.equal(0, code, out)
    -- inside it is the sandbox's root's; outside, the host id the idmap gives (root's dir, root's file)
    assert.equal("0\nRead-only file system\n", out)
    local owner = util.run{ "stat", "-c", "%u", dir .. "/made-inside" }
    assert.equal("0\n", owner)
  end)

  it("keeps a working directory only root may enter working, read-only and without its sockets", function()
    if not kernel.requires("userns", "idmap") then return end
    local dir, rm = util.tmpdir() -- mktemp's 0700, root's
    finally(rm)
    util.write(dir .. "/secret-of-root", "mine\n")
    local out, code = util.run{ "sh", "-c", ("cd %s && exec %s run -- /bin/sh -c 'pwd; cat secret-of-root; " ..
      "touch new 2>&1 | sed \"s/.*: //\"'"):format(util.quote(dir), util.quote(LUNAS)) }
    assert.equal(0, code, out)
    assert.equal(dir .. "\nmine\nRead-only file system\n", out)
  end)

  it("refuses a writable bind of a file system that cannot be idmapped, saying why and what to do", function()
    if not kernel.requires("userns") then return end
    local out, code = util.run{ LUNAS, "run", "--default-tree", "--bind", "/proc/sys", "/mnt/sys", "--", "true" }
    assert.equal(125, code, out)
    assert.matches("cannot be made writable for the sandbox's ids, a range of the host's", out, 1, true)
    assert.matches("give uid_map, or set host_root", out, 1, true)
  end)

  it("cannot plant a setuid-root program through a redirected stdout: refused twice over", function()
    if not kernel.requires("userns") then return end
    local dir, rm = util.tmpdir()
    finally(rm)
    local target = dir .. "/victim"
    util.write(target, "")
    local function attempt(delta)
      local f = assert(core.open(target, "a"))
      local spec = { argv = { fx.probe, "fchmod-fd", "1", "4755" }, stdout = f, stderr = "null" }
      for k, v in pairs(delta) do spec[k] = v end
      lunas.sandbox(spec):run()
      f:close()
      local line = util.read(target):match("([^\n]*)\n$") or ""
      util.write(target, "")
      return line, util.run{ "stat", "-c", "%a", target }
    end
    -- the default: the filter refuses the bit
    local line, mode = attempt{}
    assert.equal("EPERM", line)
    assert.equal("644\n", mode)
    -- the bit allowed: the sandbox's ids still do not own the host's file
    line = attempt{ seccomp = { allow = { "suid" } } }
    assert.equal("EPERM", line)
    -- both off: root's file gets the setuid bit (the probe puts the mode back at once)
    line = attempt{ seccomp = { allow = { "suid" } }, host_root = true }
    assert.equal("ok mode=4755", line)
  end)
end)

describe("personality(2) in the default profile #rootless", function()
  setup(setup_fixtures)
  teardown(teardown_fixtures)

  it("takes Docker's values (and the query) and refuses every other flag, whatever the high half", function()
    if not kernel.requires("userns") then return end
    local cases = { ["0"] = "ok", ["0x8"] = "ok", ["0x20000"] = "ok", ["0x20008"] = "ok", ["0xffffffff"] = "ok",
      ["0x0040000"] = "EPERM", ["0x0400000"] = "EPERM", ["0x0100000"] = "EPERM", ["0x1"] = "EPERM",
      ["0x80000000"] = "EPERM", ["0x80040000"] = "EPERM", ["0xfffffff7"] = "EPERM", ["0x7fffffff"] = "EPERM" }
    for value, expect in pairs(cases) do
      local line = probe(nil, { "personality", value })
      assert.equal(expect, line:match("^%S+"), value .. ": " .. line)
    end
  end)
end)
