--- lunas as bubblewrap: `lunas-bwrap` (or `lunas bwrap`) takes bwrap's command line and behaves as bwrap 0.11
-- does (its defaults, its messages, its exit status), through lunas's own sandbox: users of bwrap change nothing.
--
-- bubblewrap's defaults, unlike `lunas run`'s: a mount namespace only (and a user namespace for a caller that is
-- not root), an empty root built by the options, the environment and every descriptor passed through, no
-- seccomp filter but the ones given, capabilities as bwrap keeps them (root keeps its own, others none), no new
-- session, no death with the parent unless asked. no_new_privs is always set, as bwrap sets it.
local core = require "lunas.core"
local sandbox = require "lunas.sandbox"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"
local options = require "lunas.cli.options"

errors.register_module()

local M = {}
M.starts_collector = true

--- The bubblewrap version whose behaviour this front end follows (what --version prints).
M.VERSION = "0.11.0"

local HELP = [[
    --help                       Print this help
    --version                    Print version
    --args FD                    Parse NUL-separated args from FD
    --argv0 VALUE                Set argv[0] to the value VALUE before running the program
    --level-prefix               Prepend e.g. <3> to diagnostic messages
    --unshare-all                Unshare every namespace we support by default
    --share-net                  Retain the network namespace (can only combine with --unshare-all)
    --unshare-user               Create new user namespace (may be automatically implied if not setuid)
    --unshare-user-try           Create new user namespace if possible else continue by skipping it
    --unshare-ipc                Create new ipc namespace
    --unshare-pid                Create new pid namespace
    --unshare-net                Create new network namespace
    --unshare-uts                Create new uts namespace
    --unshare-cgroup             Create new cgroup namespace
    --unshare-cgroup-try         Create new cgroup namespace if possible else continue by skipping it
    --userns FD                  Use this user namespace (cannot combine with --unshare-user)
    --userns2 FD                 After setup switch to this user namespace, only useful with --userns
    --disable-userns             Disable further use of user namespaces inside sandbox
    --assert-userns-disabled     Fail unless further use of user namespace inside sandbox is disabled
    --pidns FD                   Use this pid namespace (as parent namespace if using --unshare-pid)
    --uid UID                    Custom uid in the sandbox (requires --unshare-user or --userns)
    --gid GID                    Custom gid in the sandbox (requires --unshare-user or --userns)
    --hostname NAME              Custom hostname in the sandbox (requires --unshare-uts)
    --chdir DIR                  Change directory to DIR
    --clearenv                   Unset all environment variables
    --setenv VAR VALUE           Set an environment variable
    --unsetenv VAR               Unset an environment variable
    --lock-file DEST             Take a lock on DEST while sandbox is running
    --sync-fd FD                 Keep this fd open while sandbox is running
    --bind SRC DEST              Bind mount the host path SRC on DEST
    --bind-try SRC DEST          Equal to --bind but ignores non-existent SRC
    --dev-bind SRC DEST          Bind mount the host path SRC on DEST, allowing device access
    --dev-bind-try SRC DEST      Equal to --dev-bind but ignores non-existent SRC
    --ro-bind SRC DEST           Bind mount the host path SRC readonly on DEST
    --ro-bind-try SRC DEST       Equal to --ro-bind but ignores non-existent SRC
    --bind-fd FD DEST            Bind open directory or path fd on DEST
    --ro-bind-fd FD DEST         Bind open directory or path fd read-only on DEST
    --remount-ro DEST            Remount DEST as readonly; does not recursively remount
    --overlay-src SRC            Read files from SRC in the following overlay
    --overlay RWSRC WORKDIR DEST Mount overlayfs on DEST, with RWSRC as the host path for writes and
                                 WORKDIR an empty directory on the same filesystem as RWSRC
    --tmp-overlay DEST           Mount overlayfs on DEST, with writes going to an invisible tmpfs
    --ro-overlay DEST            Mount overlayfs read-only on DEST
    --exec-label LABEL           Exec label for the sandbox
    --file-label LABEL           File label for temporary sandbox content
    --proc DEST                  Mount new procfs on DEST
    --dev DEST                   Mount new dev on DEST
    --tmpfs DEST                 Mount new tmpfs on DEST
    --mqueue DEST                Mount new mqueue on DEST
    --dir DEST                   Create dir at DEST
    --file FD DEST               Copy from FD to destination DEST
    --bind-data FD DEST          Copy from FD to file which is bind-mounted on DEST
    --ro-bind-data FD DEST       Copy from FD to file which is readonly bind-mounted on DEST
    --symlink SRC DEST           Create symlink at DEST with target SRC
    --seccomp FD                 Load and use seccomp rules from FD (not repeatable)
    --add-seccomp-fd FD          Load and use seccomp rules from FD (repeatable)
    --block-fd FD                Block on FD until some data to read is available
    --userns-block-fd FD         Block on FD until the user namespace is ready
    --info-fd FD                 Write information about the running container to FD
    --json-status-fd FD          Write container status to FD as multiple JSON documents
    --new-session                Create a new terminal session
    --die-with-parent            Kills with SIGKILL child process (COMMAND) when bwrap or bwrap's parent dies.
    --as-pid-1                   Do not install a reaper process with PID=1
    --cap-add CAP                Add cap CAP when running as privileged user
    --cap-drop CAP               Drop cap CAP when running as privileged user
    --perms OCTAL                Set permissions of next argument (--bind-data, --file, etc.)
    --size BYTES                 Set size of next argument (only for --tmpfs)
    --chmod OCTAL PATH           Change permissions of PATH (must already exist)
]]

-- bubblewrap's messages: "bwrap: " and the text; with --level-prefix, the syslog level first ("<3>" an error).
local function say(st, level, msg)
  io.stderr:write(st and st.level_prefix and ("<%d>"):format(level) or "", "bwrap: ", msg, "\n")
end

local function die(st, msg)
  say(st, 3, msg)
  return 1
end

local function print_usage(program, out)
  out:write(("usage: %s [OPTIONS...] [--] COMMAND [ARGS...]\n\n"):format(program), HELP)
end

local function exists(path) return core.file_type(path) ~= nil end

-- Whether user namespaces are turned off on this host (bubblewrap's --unshare-user-try test).
local function userns_disabled()
  local f = io.open("/proc/sys/user/max_user_namespaces")
  if not f then return not exists("/proc/self/ns/user") end
  local max = f:read("l")
  f:close()
  return max == "0"
end

-- The capabilities root starts from: the effective set it has now.
local function current_caps()
  local caps = core.caps_get()
  local set = {}
  for _, name in ipairs(caps and caps.effective or {}) do set[name] = true end
  return set
end

-- Whether SELinux is on (its file system mounted, as libselinux's is_selinux_enabled checks).
local function selinux_enabled()
  local mounts = io.open("/proc/self/mountinfo")
  local text = mounts and mounts:read("a") or ""
  if mounts then mounts:close() end
  return text:find(" - selinuxfs ", 1, true) ~= nil
end

-- The options as a sandbox spec with bubblewrap's defaults; raises {usage = msg} for what bwrap refuses.
local function to_spec(st)
  local fail = function(msg) error({ usage = msg }, 0) end
  local ids = core.ids()
  local root = ids.uid == 0
  local user = st.unshare.user
  if st.unshare_try.user and not userns_disabled() then user = true end
  -- Without privileges a mount namespace needs a user namespace: bubblewrap makes one (DWIM).
  if not root and not st.userns_fd then user = true end
  if st.userns_fd and (st.unshare.user or st.unshare_try.user) then
    fail(st.unshare.user and "--userns not compatible --unshare-user" or "--userns not compatible --unshare-user-try")
  end
  if st.userns_block_fd and not user then fail("--userns-block-fd requires --unshare-user") end
  if st.userns_block_fd and not st.info_fd then fail("--userns-block-fd requires --info-fd") end
  if st.disable_userns and not user then fail("--disable-userns requires --unshare-user") end
  if st.disable_userns and st.userns_block_fd then fail("--disable-userns is not compatible with  --userns-block-fd") end
  local spec = st.spec
  local uid, gid = spec.uid or ids.uid, spec.gid or ids.gid
  if not user and not st.userns_fd then
    if uid ~= ids.uid then fail("Specifying --uid requires --unshare-user or --userns") end
    if gid ~= ids.gid then fail("Specifying --gid requires --unshare-user or --userns") end
    spec.uid, spec.gid = nil, nil
  else
    spec.uid, spec.gid = uid, gid
  end
  if spec.hostname and not st.unshare.uts then fail("Specifying --hostname requires --unshare-uts") end
  if spec.as_pid_1 and not st.unshare.pid then fail("Specifying --as-pid-1 requires --unshare-pid") end
  if spec.as_pid_1 and #st.lock_files > 0 then fail("Specifying --as-pid-1 and --lock-file is not permitted") end
  if selinux_enabled() then
    -- (without SELinux, bubblewrap ignores both, and so does this front end)
    spec.selinux_label, spec.selinux_mount_label = st.exec_label, st.file_label
  end
  local names = { "mount" }
  if user then names[#names + 1] = "user" end
  for _, name in ipairs{ "ipc", "pid", "net", "uts", "cgroup" } do
    if st.unshare[name] then names[#names + 1] = name end
  end
  if st.unshare_try.cgroup and not st.unshare.cgroup and exists("/proc/self/ns/cgroup") then names[#names + 1] = "cgroup" end
  if st.unshare.cgroup and not exists("/proc/self/ns/cgroup") then
    fail("Cannot create new cgroup namespace because the kernel does not support it")
  end
  spec.namespaces = names
  -- The host's root stays the host's root: bubblewrap maps no range of ids.
  spec.host_root = true
  spec.mounts = st.mounts
  -- With a terminal as standard output, each /dev gets it as /dev/console too (bubblewrap's way: ttyname()
  -- works inside, and the sandbox reaches no more than it already has).
  local tty = core.isatty(1) and core.readlink("/proc/self/fd/1")
  if tty and tty:match("^/dev/") then
    for _, entry in ipairs(spec.mounts) do
      if entry[1] == "dev" then entry.console = tty end
    end
  end
  spec.harden = false
  spec.keyring = "inherit"
  spec.abstract_sockets = "host"
  spec.close_fds = false
  spec.new_session = spec.new_session or false
  spec.die_with_parent = spec.die_with_parent or false
  spec.set_pwd = true
  -- PID 1 stays while anything in the sandbox runs; bwrap returns when the command ends.
  spec.linger = st.unshare.pid and not spec.as_pid_1 or nil
  spec.clearenv = true
  spec.env = options.environment(st, sandbox.caller_environment())
  spec.seccomp = false
  spec.seccomp_programs = st.seccomp_programs
  if #st.lock_files > 0 then spec.lock_files = st.lock_files end
  -- Root keeps its capabilities (no change at all without --cap-add or --cap-drop); anyone else gets none but
  -- the ones added.
  local caps = #st.caps_ops > 0 and options.capabilities(st, (root and (user and uid == 0 or not user)) and current_caps() or {})
  if caps then spec.caps = require("lunas.security").sorted(caps)
  elseif root and not (user and uid ~= 0) then spec.caps = "keep" end
  -- Descriptors bubblewrap uses itself never reach the payload.
  spec.private_fds = options.private_fds(st)
  options.report_fields(st, spec)
  spec.nested_userns = st.disable_userns and "disable" or st.assert_userns_disabled and "assert" or nil
  spec.pid_namespace_joined = st.pidns_fd ~= nil or nil
  spec.enter_userns = st.userns2_fd
  spec.argv = st.argv
  return spec
end

-- A failure of the sandbox in bubblewrap's words where its clients or tests match them.
local function describe(err)
  if type(err) ~= "table" then return tostring(err) end
  local msg = tostring(err.msg or err)
  if err.source then return ("Can't find source path %s: %s"):format(err.source, msg:match(".*: (.-)$") or msg) end
  if err.step == "exec" then return (msg:gsub("^sandbox: exec: ", "execvp ")) end
  return (msg:gsub("^sandbox: ", ""))
end

--- The entry point: args as `lunas.cli` gives them (args[0] the program as called).
function M.main(args, program)
  -- bubblewrap ends by a signal's default action, and its sandbox lives on unless --die-with-parent.
  interrupt.release()
  if type(program) ~= "string" then program = "lunas bwrap" end
  if #args == 0 then
    print_usage(program, io.stderr)
    return 1
  end
  local ok, st = pcall(options.parse, args, "bwrap")
  if not ok then
    if type(st) == "table" and st.usage then return die(nil, st.usage) end
    error(st, 0)
  end
  if st == "help" then
    print_usage(program, io.stdout)
    return 0
  end
  if st == "version" then
    print("bubblewrap " .. M.VERSION)
    return 0
  end
  if #st.argv == 0 then
    print_usage(program, io.stderr)
    return 1
  end
  local spec
  ok, spec = pcall(to_spec, st)
  if not ok then
    if type(spec) == "table" and spec.usage then return die(st, spec.usage) end
    error(spec, 0)
  end
  -- bubblewrap's --die-with-parent binds bwrap itself to its caller as well.
  if spec.die_with_parent then core.prctl{ pdeathsig = "KILL" } end
  -- Joined namespaces hold the sandbox made from here: only this process ever runs in them.
  local joined, join_msg = options.join_namespaces(st)
  if not joined then return die(st, join_msg) end
  local result, err = errors.try(function()
    local box = sandbox.new(spec)
    -- (the collector stays stopped: this process lives as long as one sandbox and allocates little after this)
    local running <close> = box:spawn()
    return running:wait()
  end)
  if not result then
    if interrupt.is(err) then return 1 end
    return die(st, describe(err))
  end
  local code = result.signal and 128 + result.signal or result.status
  options.report_exit(st, code)
  return code
end

return M
