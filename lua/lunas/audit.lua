--- The escape battery as a product: attempts to get out of a sandbox, run one at a time by the escape probe
-- (lunas-probe, src/probe.c) inside the sandbox under audit, and judged from outside: held or escaped, and which
-- protection held it.
--
-- The battery is data (`M.ATTEMPTS`). An attempt names the probe's arguments (a function of the fixtures), what an
-- escape looks like ("ok": the operation went through; "reached": the call got past every permission check, any
-- outcome but EPERM), its severity, and what holds it: the seccomp group of lunas's default profile that refuses
-- it, and what the other outcomes mean. The fixtures (a scratch directory made like mkdtemp, a process, a loopback
-- listener and an abstract socket of the caller, a session keyring, a leaked descriptor) are set up and removed by
-- the audit itself.
-- @module lunas.audit
local core = require "lunas.core"
local security = require "lunas.security"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

-- ---- the battery ------------------------------------------------------------------------------------------

local NO_CAP = "no capability"
local NOT_INITIAL = "capabilities count only in the initial user namespace"
local HIDDEN = "not in the sandbox's tree (mount namespace)"
local PID_NS = "not visible (pid namespace)"
-- (the attempt needs its target to be a mount point of its own; where it is not, it says nothing)
local NOT_MOUNTED = { na = "the target is no mount point of this tree" }

-- The battery: see the documentation of ATTEMPTS after the table.
M.ATTEMPTS = {
  -- other processes
  { id = "kill", title = "signal a host process", args = { "kill", "$sleeper_pid" },
    severity = "high", escape = "ok", meaning = { ESRCH = PID_NS, EPERM = "not the process's owner" } },
  { id = "proc-pid", title = "see a host process in /proc", args = { "proc-pid", "$sleeper_pid" },
    severity = "medium", escape = "ok", meaning = { ENOENT = "a /proc of its own (pid namespace)" } },
  { id = "ptrace", title = "ptrace a host process", args = { "ptrace", "$sleeper_pid" },
    severity = "high", escape = "ok", meaning = { ESRCH = PID_NS, EPERM = "not allowed to trace it" } },
  -- mounts
  { id = "mount", title = "mount a file system", args = { "mount", "/tmp" }, severity = "medium", escape = "ok",
    seccomp = "mount", eperm = NO_CAP },
  { id = "umount", title = "unmount /dev/shm", args = { "umount", "/dev/shm" }, severity = "medium", escape = "ok",
    seccomp = "mount", eperm = NO_CAP, meaning = { EINVAL = NOT_MOUNTED } },
  { id = "umount-proc", title = "detach /proc and its masks", args = { "umount-detach", "/proc" }, severity = "high",
    escape = "ok", seccomp = "mount", eperm = NO_CAP },
  { id = "remount-rw", title = "remount /proc/sys read-write", args = { "remount-rw", "/proc/sys" },
    severity = "high", escape = "ok", seccomp = "mount", eperm = NO_CAP, meaning = { EINVAL = NOT_MOUNTED } },
  { id = "setattr-rw", title = "clear read-only on /proc/sys (mount_setattr)", args = { "setattr-rw", "/proc/sys" },
    severity = "high", escape = "ok", seccomp = "mount", eperm = NO_CAP, meaning = { EINVAL = NOT_MOUNTED } },
  { id = "fsopen", title = "open a file system context", args = { "fsopen" }, severity = "medium", escape = "ok",
    seccomp = "mount", eperm = NO_CAP },
  { id = "open-tree", title = "clone a mount tree (open_tree)", args = { "open-tree", "/tmp" }, severity = "medium",
    escape = "ok", seccomp = "mount", eperm = NO_CAP },
  { id = "open-tree-attr", title = "clone a mount with attributes", args = { "open-tree-attr" }, severity = "medium",
    escape = "reached", seccomp = "mount", eperm = NO_CAP },
  { id = "pivot-root", title = "pivot_root", args = { "pivot-root", "/dev/shm" }, severity = "medium",
    escape = "ok", seccomp = "mount", eperm = NO_CAP, meaning = { EINVAL = NOT_MOUNTED } },
  { id = "chroot", title = "chroot", args = { "chroot", "/tmp" }, severity = "low", escape = "ok", eperm = NO_CAP },
  { id = "chroot-escape", title = "break out of a chroot to the host's files",
    args = { "chroot-escape", "$marker" }, severity = "high", escape = "ok", eperm = NO_CAP,
    meaning = { ENOENT = "the root is pivoted: the host's files are not below it (mount namespace)" } },
  { id = "symlink", title = "follow a symlink to the host's /tmp", args = { "symlink", "$link" },
    severity = "medium", escape = "ok", needs = "files", meaning = { ENOENT = HIDDEN } },
  { id = "write-host", title = "write into a host directory anyone may write",
    args = { "write", "$writable/written-by-probe" }, severity = "high", escape = "ok",
    needs = "files", meaning = { EROFS = "read-only mount", ENOENT = HIDDEN, EACCES = "file permissions" } },
  -- what the host's descriptors, /proc and /sys give away
  { id = "fds", title = "use a descriptor inherited from the caller", args = { "fds" }, severity = "high",
    escape = "ok", meaning = { EBADF = "descriptors beyond 0-2 closed" } },
  { id = "kcore", title = "read /proc/kcore", args = { "read", "/proc/kcore" }, severity = "high", escape = "ok",
    needs = "file:/proc/kcore", meaning = { EOF = "masked", EACCES = "file permissions", EPERM = NO_CAP,
      ENOENT = "no such file in its /proc" } },
  { id = "sys-firmware", title = "list /sys/firmware", args = { "list", "/sys/firmware" }, severity = "low",
    escape = "ok", meaning = { EMPTY = "masked", ENOENT = HIDDEN, EACCES = "file permissions" } },
  { id = "shadow", title = "read /etc/shadow", args = { "read", "/etc/shadow" }, severity = "high", escape = "ok",
    meaning = { EACCES = "file permissions (the sandbox's ids own nothing of the host's)", ENOENT = HIDDEN } },
  { id = "root-home", title = "list /root", args = { "list", "/root" }, severity = "medium", escape = "ok",
    meaning = { EACCES = "file permissions (the sandbox's ids own nothing of the host's)", ENOENT = HIDDEN,
      EMPTY = "an empty directory of its own" } },
  { id = "sysctl", title = "rewrite a global sysctl", args = { "sysctl-rewrite", "/proc/sys/vm/swappiness" },
    severity = "high", escape = "ok", meaning = { EACCES = "only the host's root may (the sandbox's ids are not)",
      EROFS = "read-only /proc/sys", ENOENT = HIDDEN } },
  -- kernel and machine
  { id = "init-module", title = "load a module (init_module)", args = { "init-module" }, severity = "high",
    escape = "reached", seccomp = "module", eperm = NOT_INITIAL },
  { id = "finit-module", title = "load a module (finit_module)", args = { "finit-module" }, severity = "high",
    escape = "reached", seccomp = "module", eperm = NOT_INITIAL },
  { id = "delete-module", title = "remove a module", args = { "delete-module" }, severity = "high",
    escape = "reached", seccomp = "module", eperm = NOT_INITIAL },
  { id = "reboot", title = "reboot", args = { "reboot" }, severity = "high", escape = "reached", seccomp = "reboot",
    eperm = NO_CAP },
  { id = "kexec", title = "load a new kernel (kexec_load)", args = { "kexec" }, severity = "high",
    escape = "reached", seccomp = "reboot", eperm = NOT_INITIAL },
  { id = "kexec-file", title = "load a new kernel (kexec_file_load)", args = { "kexec-file" }, severity = "high",
    escape = "reached", seccomp = "reboot", eperm = NOT_INITIAL },
  { id = "swapon", title = "enable swap", args = { "swapon" }, severity = "high", escape = "reached",
    seccomp = "swap", eperm = NOT_INITIAL },
  { id = "settime", title = "set the clock", args = { "settime" }, severity = "high", escape = "ok",
    seccomp = "clock", eperm = NOT_INITIAL },
  { id = "iopl", title = "raw port I/O", args = { "iopl" }, severity = "high", escape = "reached",
    seccomp = "raw-io", eperm = NOT_INITIAL },
  { id = "bpf", title = "load a BPF program or map", args = { "bpf" }, severity = "medium", escape = "ok",
    seccomp = "bpf", eperm = NOT_INITIAL },
  { id = "perf", title = "open a perf event", args = { "perf" }, severity = "medium", escape = "ok",
    seccomp = "perf", eperm = "perf_event_paranoid or no capability", meaning = { EACCES = "perf_event_paranoid" } },
  { id = "keyctl", title = "join a session keyring", args = { "keyctl" }, severity = "low", escape = "ok",
    seccomp = "keyring" },
  { id = "add-key", title = "add a key", args = { "add-key" }, severity = "low", escape = "ok", seccomp = "keyring" },
  { id = "userfaultfd", title = "create a userfaultfd", args = { "userfaultfd" }, severity = "medium",
    escape = "ok", seccomp = "userfaultfd", eperm = "vm.unprivileged_userfaultfd" },
  { id = "modify-ldt", title = "read the local descriptor table", args = { "modify-ldt" }, severity = "low",
    escape = "ok", seccomp = "ldt" },
  { id = "personality", title = "turn ASLR off (personality)", args = { "personality", "0x0040000" },
    severity = "low", escape = "ok", seccomp = "personality" },
  -- network
  { id = "raw-socket", title = "open a raw IP socket", args = { "raw-socket" }, severity = "medium", escape = "ok",
    eperm = NO_CAP },
  { id = "packet-socket", title = "open a packet socket", args = { "packet-socket" }, severity = "medium",
    escape = "ok", eperm = NO_CAP },
  { id = "connect-host", title = "reach a listener on the caller's 127.0.0.1",
    args = { "connect", "127.0.0.1", "$port" }, severity = "high", escape = "ok",
    meaning = { ECONNREFUSED = "a network of its own (network namespace)", ENETUNREACH = "no network at all",
      EACCES = "Landlock (TCP connect)" } },
  { id = "abstract-socket", title = "connect to the caller's abstract unix socket",
    args = { "abstract-connect", "$abstract" }, severity = "high", escape = "ok",
    meaning = { ECONNREFUSED = "a network of its own (network namespace)",
      EPERM = "Landlock scope (abstract unix sockets)" } },
  { id = "vsock", title = "open an AF_VSOCK socket (never connected)", args = { "vsock" }, severity = "medium",
    escape = "reached", seccomp = "vsock", meaning = { EAFNOSUPPORT = false } },
  { id = "io-uring", title = "set up io_uring", args = { "io-uring-setup" }, severity = "medium", escape = "ok",
    seccomp = "io_uring", eperm = "kernel.io_uring_disabled" },
  -- identity and capabilities
  { id = "caps", title = "hold a capability", args = { "caps" }, severity = "medium", escape = "ok",
    meaning = { EPERM = "every capability dropped" } },
  { id = "cap-raise", title = "raise a capability", args = { "cap-raise" }, severity = "medium", escape = "ok",
    meaning = { EPERM = "nothing permitted to raise" } },
  { id = "ambient-raise", title = "raise an ambient capability", args = { "ambient-raise" }, severity = "medium",
    escape = "ok", meaning = { EPERM = "nothing permitted to raise" } },
  { id = "securebits", title = "clear the securebits", args = { "securebits" }, severity = "medium", escape = "ok",
    meaning = { EPERM = "securebits locked, or no capability" } },
  { id = "nnp", title = "be able to gain privileges on exec", args = { "nnp" }, severity = "medium", escape = "ok",
    meaning = { EPERM = "no_new_privs set" } },
  { id = "unshare-user", title = "new user namespace (unshare)", args = { "unshare-user" }, severity = "medium",
    escape = "ok", seccomp = "userns", eperm = "refused by the kernel (user.max_user_namespaces or nesting)",
    meaning = { ENOSPC = "user namespaces limited (max_user_namespaces)", EUSERS = "nesting limit" } },
  { id = "clone-user", title = "new user namespace (clone)", args = { "clone-user" }, severity = "medium",
    escape = "ok", seccomp = "userns", eperm = "refused by the kernel",
    meaning = { ENOSPC = "user namespaces limited (max_user_namespaces)", EUSERS = "nesting limit" } },
  { id = "clone3-user", title = "new user namespace (clone3)", args = { "clone3" }, severity = "medium",
    escape = "ok", seccomp = "userns", eperm = "refused by the kernel",
    meaning = { ENOSPC = "user namespaces limited (max_user_namespaces)", EUSERS = "nesting limit" } },
  { id = "hostname", title = "change the host name", args = { "hostname", "lunas-audit" }, severity = "low",
    escape = "ok", eperm = NO_CAP },
  { id = "session", title = "share the caller's session (and terminal)", args = { "setsid-check" },
    severity = "high", escape = "ok", meaning = { EPERM = "a session of its own" } },
  { id = "keyring", title = "reach the caller's session keyring",
    args = { "keyring", "$keyring" }, severity = "medium", escape = "ok",
    seccomp = "keyring", meaning = { FRESH = "a session keyring of its own" } },
  -- a setuid or setgid program made inside, for the host to run (through a writable bind)
  { id = "chmod-suid", title = "set the setuid bit (chmod)", args = { "chmod-suid", "chmod", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "fchmod-suid", title = "set the setuid bit (fchmod)", args = { "chmod-suid", "fchmod", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "fchmodat-suid", title = "set the setuid bit (fchmodat)", args = { "chmod-suid", "fchmodat", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "sgid", title = "set the setgid bit (chmod)", args = { "chmod-suid", "sgid-chmod", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "open-suid", title = "create a setuid file (open)", args = { "create-suid", "open", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "mknod-suid", title = "create a setuid file (mknod)", args = { "create-suid", "mknod", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "tmpfile-suid", title = "create a setuid file (O_TMPFILE)", args = { "create-suid", "tmpfile", "/tmp" },
    severity = "high", escape = "ok", seccomp = "suid" },
  { id = "lease", title = "take a lease on a file (F_SETLEASE)", args = { "setlease", "/tmp" }, severity = "low",
    escape = "ok", seccomp = "lease", eperm = "not the file's owner" },
  -- other architectures' system call tables
  { id = "i386", title = "make a 32-bit (i386) system call", args = { "i386" }, severity = "low",
    escape = "reached" },
  { id = "x32", title = "make an x32 system call", args = { "x32" }, severity = "low", escape = "reached",
    meaning = { ENOSYS = false } },
}

--- The battery: a list of attempts, in the order they run. Fields: id, title, args (the probe's arguments;
-- `$name` stands for the fixture `name`: `$port`, `$writable`...), severity ("high", "medium", "low"), escape
-- ("ok": the operation went through; "reached": it got past every permission check, any outcome but EPERM), seccomp (the group of lunas's default
-- profile that refuses it), eperm (what EPERM means when no filter refuses it), meaning (an outcome word -> the
-- reason it was held; false or `{na = why}`: the attempt cannot be made there, n/a), needs ("files": the audit's
-- scratch directory shown in the sandbox; "file:PATH": a file the kernel must have).
-- @table ATTEMPTS

-- ---- judging an outcome -----------------------------------------------------------------------------------------

-- What the outcome words mean when an attempt says nothing more.
local GENERIC = {
  EROFS = "read-only mount",
  EACCES = "file permissions",
}

-- The default profile's groups, the names a profile adds and the names it lets through: does the filter refuse
-- this group? nil when the sandbox's filter is unknown (another tool's).
local function filter_refuses(config, group)
  if not config or config.seccomp == nil then return nil end
  local p = config.seccomp
  if not p then return false end
  local allowed = {}
  for _, name in ipairs(p.allow or {}) do allowed[name] = true end
  if allowed[group] then return false end
  -- (a group allowed call by call: one of its calls allowed by name makes the filter's refusal uncertain)
  for _, entry in ipairs(security.groups[group] or {}) do
    if allowed[type(entry) == "table" and entry[1] or entry] then return nil end
  end
  for _, name in ipairs(p.base == "default" and security.DEFAULT_DENY or {}) do
    if name == group then return true end
  end
  for _, name in ipairs(p.deny or {}) do
    if name == group then return true end
  end
  if p.default ~= "allow" then return true end
  return false
end

local OUTCOME_WORDS = { ok = true, EOF = true, EMPTY = true, FRESH = true }

--- Judges one run of an attempt: `{outcome = "held"|"escaped"|"n/a"|"inconclusive", how = text}`.
-- @tparam table attempt an entry of `ATTEMPTS`
-- @tparam string line the probe's first line of output ("" when it printed nothing)
-- @tparam[opt] string signame the signal that ended the probe ("SYS"), if one did
-- @tparam[opt] table config what is known of the sandbox: `{seccomp = false or a profile}` (nil: another tool's)
-- @treturn table
function M.judge(attempt, line, signame, config)
  local word = line:match("^(%S+)") or ""
  if signame then
    if signame == "SYS" then return { outcome = "held", how = "seccomp: killed (SIGSYS)" } end
    return { outcome = "inconclusive", how = "killed by SIG" .. signame }
  end
  if not (OUTCOME_WORDS[word] or word:match("^E[A-Z0-9]+$")) then
    return { outcome = "inconclusive", how = word == "" and "no output" or ("said: " .. line:sub(1, 120)) }
  end
  if word == "ok" then
    local detail = line:match("^ok%s+(.*)")
    return { outcome = "escaped", how = "it worked" .. (detail and (": " .. detail) or "") }
  end
  local meaning = attempt.meaning and attempt.meaning[word]
  if meaning == false then return { outcome = "n/a", how = "the kernel cannot do it here (" .. word .. ")" } end
  if type(meaning) == "table" then return { outcome = "n/a", how = meaning.na .. " (" .. word .. ")" } end
  if word == "ENOSYS" and not meaning then
    -- The kernel has no such call, or a filter says so as if it had none: only a known filter tells them apart.
    local refuses = attempt.seccomp and filter_refuses(config, attempt.seccomp)
    if refuses then return { outcome = "held", how = ("seccomp filter (%s, ENOSYS)"):format(attempt.seccomp) } end
    if config then return { outcome = "n/a", how = "the kernel has no such call (ENOSYS)" } end
    return { outcome = "n/a", how = "ENOSYS: the kernel has no such call, or a filter refuses it (not told apart)" }
  end
  if attempt.escape == "reached" and word ~= "EPERM" and not meaning then
    return { outcome = "escaped", how = "got past the permission checks (" .. word .. ")" }
  end
  if word == "EPERM" then
    local refuses = attempt.seccomp and filter_refuses(config, attempt.seccomp)
    if refuses then return { outcome = "held", how = ("seccomp filter (%s, EPERM)"):format(attempt.seccomp) } end
    if meaning then return { outcome = "held", how = meaning } end
    if refuses == nil and attempt.seccomp then
      return { outcome = "held", how = ("EPERM: a seccomp filter (%s) or %s, not told apart"):format(attempt.seccomp,
        attempt.eperm or NO_CAP) }
    end
    return { outcome = "held", how = attempt.eperm or NO_CAP }
  end
  meaning = meaning or GENERIC[word]
  if meaning then return { outcome = "held", how = meaning .. (word:match("^E") and (" (" .. word .. ")") or "") } end
  return { outcome = "inconclusive", how = "refused with " .. word .. ": not a refusal this attempt explains" }
end

-- ---- fixtures ---------------------------------------------------------------------------------------------------

local function hex(bytes) return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

-- A directory of our own under base, made like mkdtemp: a random name, created exclusively (CVE-2019-12439).
local function make_scratch(base, mode)
  for _ = 1, 16 do
    local path = ("%s/lunas-audit.%s"):format(base, hex(core.random(6)))
    local ok, msg, code = core.mkdir(path, mode)
    if ok then return path end
    if code ~= "EEXIST" then errors.raise{ op = "audit", msg = "audit: " .. msg, code = code } end
  end
  errors.raise{ op = "audit", msg = "audit: no free scratch directory name in " .. base, code = "EEXIST" }
end

-- Removes a tree we made, never following a link out of it.
local function remove_tree(path)
  if core.file_type(path) == "dir" then
    for _, name in ipairs(core.listdir(path) or {}) do remove_tree(path .. "/" .. name) end
    core.rmdir(path)
  else
    os.remove(path)
  end
end

-- Starts the probe as a fixture outside the sandbox, its first line read back; returns the process and the line.
local function start_fixture(probe, args, no_line)
  local r, w = assert(core.pipe())
  local argv = { probe, table.unpack(args) }
  local proc, msg = core.spawn{ fn = function()
    core.dup2(w, 1)
    core.exec(argv, { path = false })
    return 127
  end }
  w:close()
  if not proc then
    r:close()
    errors.raise{ op = "audit", msg = "audit: fixture " .. args[1] .. ": " .. tostring(msg) }
  end
  local line = ""
  while not no_line and not line:find("\n") do
    local chunk = r:read()
    if not chunk or chunk == "" then break end
    line = line .. chunk
  end
  r:close()
  return proc, line:match("^[^\n]*")
end

--- Sets up the fixtures: `{dir, probe_dir, probe, marker, link, writable, sleeper_pid, port, abstract, keyring,
-- close = function}`. `probe` is the host's probe, copied into the scratch directory (which a sandbox is shown
-- read-only, at the same path). The caller's process joins a session keyring of its own (the one a sandbox must
-- not inherit) and keeps a descriptor without close-on-exec open (the one a sandbox must not get).
-- @tparam string probe the probe on the host
-- @treturn table
function M.fixtures(probe)
  local fx = { procs = {} }
  function fx.close()
    for _, proc in ipairs(fx.procs) do
      pcall(proc.kill, proc, "KILL")
      pcall(proc.wait, proc, 5)
      pcall(proc.close, proc)
    end
    fx.procs = {}
    if fx.leaked then fx.leaked:close() fx.leaked = nil end
    if fx.dir then remove_tree(fx.dir) fx.dir = nil end
  end
  local ok, err = pcall(function()
    local base = os.getenv("TMPDIR")
    if not base or base:sub(1, 1) ~= "/" then base = "/tmp" end
    local old = core.umask(tonumber("022", 8))
    fx.dir = make_scratch(base, tonumber("755", 8))
    fx.probe_dir = fx.dir .. "/probe"
    assert(core.mkdir(fx.probe_dir, tonumber("755", 8)))
    fx.writable = fx.dir .. "/writable"
    assert(core.mkdir(fx.writable, tonumber("755", 8)))
    core.umask(old)
    local src = assert(io.open(probe, "rb"))
    local data = src:read("a")
    src:close()
    fx.probe = fx.probe_dir .. "/lunas-probe"
    local out = assert(io.open(fx.probe, "wb"))
    out:write(data)
    out:close()
    fx.marker = fx.dir .. "/marker"
    assert(io.open(fx.marker, "w")):close()
    fx.link = fx.probe_dir .. "/link-to-host-tmp"
    local dirfd <close> = assert(core.open(fx.dir, "r"))
    assert(core.chmod_in_root(dirfd, "probe/lunas-probe", tonumber("755", 8)))
    -- written by anyone (sticky: nobody removes another's file), so that only the sandbox's own confinement
    -- stands between it and the host's files
    assert(core.chmod_in_root(dirfd, "writable", tonumber("1777", 8)))
    assert(core.symlink_in_root(dirfd, fx.marker, "probe/link-to-host-tmp"))
    local sleeper = start_fixture(fx.probe, { "sleep", "3600" }, true)
    fx.procs[#fx.procs + 1] = sleeper
    fx.sleeper_pid = sleeper.pid
    local tcp, line = start_fixture(fx.probe, { "serve-tcp" })
    fx.procs[#fx.procs + 1] = tcp
    fx.port = line:match("^ok port=(%d+)")
    if not fx.port then error("audit: fixture serve-tcp: " .. line, 0) end
    fx.abstract = "lunas-audit-" .. hex(core.random(8))
    local unix
    unix, line = start_fixture(fx.probe, { "serve-abstract", fx.abstract })
    fx.procs[#fx.procs + 1] = unix
    if line ~= "ok" then error("audit: fixture serve-abstract: " .. line, 0) end
    fx.keyring = tostring(assert(core.join_session_keyring("lunas-audit")))
    -- (io.open: no close-on-exec, like a careless caller's file)
    fx.leaked = assert(io.open(fx.marker, "r"))
  end)
  if not ok then
    fx.close()
    error(err, 0)
  end
  return fx
end

-- ---- running ----------------------------------------------------------------------------------------------

-- A copy of a spec that a sandbox may change: plain tables copied, anything else (descriptors) shared.
local function copy(v)
  if type(v) ~= "table" or getmetatable(v) then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

-- Everything until EOF, or what came within `seconds` (a process the sandbox left behind may hold the pipe).
local function drain(fd, seconds)
  local parts = {}
  local deadline = seconds and core.now() + seconds
  while true do
    if deadline then
      local left = deadline - core.now()
      if left <= 0 or #core.poll({ fd }, left) == 0 then break end
    end
    local chunk = fd:read()
    if not chunk or chunk == "" then break end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts)
end

--- Adds the scratch directory's probe to a spec: a read-only bind at the same path (on top of the default tree
-- when the spec has no file system of its own; none with `rootfs = "host"`, whose tree shows it). Returns the spec.
-- @tparam table spec
-- @tparam table fx from `fixtures`
function M.show_probe(spec, fx)
  -- The host's own mount table shows the scratch directory already; a bind, being a file system option, would
  -- also cost that tree its fresh /proc.
  if spec.rootfs == "host" then return spec end
  if spec.mounts then
    spec.mounts[#spec.mounts + 1] = { "ro-bind", fx.probe_dir, fx.probe_dir }
  elseif spec.rootfs == nil then
    spec.mounts = { { "default" }, { "ro-bind", fx.probe_dir, fx.probe_dir } }
  else
    spec.mounts = { { "ro-bind", fx.probe_dir, fx.probe_dir } }
  end
  return spec
end

-- One attempt in a lunas sandbox (spec: already showing the probe); returns the line and the signal name.
local function run_in_sandbox(spec, probe, args)
  local sandbox = require "lunas.sandbox"
  local s = copy(spec)
  local r, w = assert(core.pipe())
  s.fn, s.argv = nil, { probe }
  for _, a in ipairs(args) do s.argv[#s.argv + 1] = tostring(a) end
  s.stdout, s.stderr, s.stdin = w, w, "null"
  s.timeout = s.timeout or 30
  local ok, result = pcall(function() return sandbox.new(s):run() end)
  w:close()
  local out = drain(r)
  r:close()
  if not ok then error(result, 0) end
  local line = out:match("^[^\n]*") or ""
  if result.timed_out then return "", nil, "timed out" end
  return line, result.signame
end

-- How long a wrapped command may take for one attempt (a container runtime starts in a second or two).
local WRAP_TIMEOUT = 60

-- One attempt as the payload of another tool's command (argv prefix); the line and the signal name (from a
-- status of 128+N when the tool reports its payload's signal that way, with nothing printed).
local function run_wrapped(prefix, probe, args)
  local argv = {}
  for _, a in ipairs(prefix) do argv[#argv + 1] = a end
  argv[#argv + 1] = probe
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  local r, w = assert(core.pipe())
  local null = assert(core.open("/dev/null", "r"))
  local proc, msg = core.spawn{ fn = function()
    core.dup2(null, 0)
    core.dup2(w, 1)
    core.dup2(w, 2)
    core.exec(argv)
    return 127
  end }
  w:close()
  null:close()
  if not proc then
    r:close()
    errors.raise{ op = "audit", msg = "audit: --wrap: " .. tostring(msg) }
  end
  local ok, st = pcall(proc.wait, proc, WRAP_TIMEOUT)
  if not ok then
    proc:kill("KILL")
    st = proc:wait()
  end
  proc:close()
  local out = drain(r, 5)
  r:close()
  local line = out:match("^[^\n]*") or ""
  local signame = st.signame
  if not signame and line == "" and st.status and st.status > 128 then
    signame = (st.status - 128 == 31) and "SYS" or tostring(st.status - 128)
  end
  return line, signame, nil, out
end

--- Runs the battery. `opts`: `{spec = a sandbox spec (lunas's own) | wrap = argv prefix (another tool's),
-- uids = {0, 1000} (lunas only: the payload's uid for each round), probe_path = the probe inside (default: the
-- scratch copy, bound in), fixtures = from M.fixtures, config = {seccomp = normalized profile or false},
-- on_result = function(row)}`. Returns the rows: `{id, title, severity, uid, outcome, how, line}`.
-- @tparam table opts
-- @treturn table
function M.run(opts)
  local fx = opts.fixtures
  local rows = {}
  local probe = opts.probe_path or fx.probe
  local rounds = opts.wrap and { false } or opts.uids
  for _, uid in ipairs(rounds) do
    for _, a in ipairs(M.ATTEMPTS) do
      local row = { id = a.id, title = a.title, severity = a.severity, uid = uid or nil }
      local file = a.needs and a.needs:match("^file:(.*)")
      if a.needs == "files" and opts.probe_path then
        row.outcome, row.how = "n/a", "needs the audit's scratch directory, not shown with --probe-path"
      elseif file and not core.file_type(file) then
        row.outcome, row.how = "n/a", "this kernel has no " .. file
      else
        local args = {}
        for k, arg in ipairs(a.args) do
          args[k] = arg:gsub("%$([%w_]+)", function(name) return tostring(assert(fx[name], name)) end)
        end
        local line, signame, failure
        if opts.wrap then
          line, signame = run_wrapped(opts.wrap, probe, args)
        else
          local spec = opts.spec
          if uid and uid ~= 0 then
            spec = copy(spec)
            spec.uid = uid
            spec.gid = spec.gid or uid
          end
          line, signame, failure = run_in_sandbox(spec, probe, args)
        end
        if failure then
          row.outcome, row.how = "inconclusive", failure
        else
          local j = M.judge(a, line, signame, opts.config)
          row.outcome, row.how, row.line = j.outcome, j.how, line
        end
      end
      rows[#rows + 1] = row
      if opts.on_result then opts.on_result(row) end
    end
  end
  return rows
end

--- Counts the rows by outcome: `{held =, escaped =, ["n/a"] =, inconclusive =, total =}`.
-- @tparam table rows
-- @treturn table
function M.summary(rows)
  local s = { held = 0, escaped = 0, ["n/a"] = 0, inconclusive = 0, total = #rows }
  for _, row in ipairs(rows) do s[row.outcome] = s[row.outcome] + 1 end
  return s
end

return M
