--- `lunas run [OPTIONS] -- CMD [ARGS...]`: a ready sandbox from the command line, with bubblewrap's option
-- names wherever bubblewrap has the same feature.
local sandbox = require "lunas.sandbox"
local security = require "lunas.security"
local core = require "lunas.core"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"
local cli = require "lunas.cli"
local options = require "lunas.cli.options"

errors.register_module()

local M = {}
-- The collector stays stopped until the sandbox runs (cli.main leaves it to us): setting one up allocates a
-- bounded amount, and collecting it only delays the payload.
M.starts_collector = true

local HELP = [[
usage: lunas run [OPTIONS] [--] CMD [ARGS...]

Runs CMD in a sandbox. With no --unshare-* option every namespace is new (user, pid, mount, uts, ipc, net,
cgroup); with any, exactly those, plus a mount namespace and a user namespace (always, but with --host-root).
Defaults: a new session, killed with lunas (die-with-parent), descriptors beyond 0-2 closed, environment
cleared except TERM, PATH, HOME and LANG, lo up in a new network namespace, a session keyring of its own.

Identity: inside, CMD is root (or --uid) of its user namespace. Run by a user, that is the user's own id
outside. Run by root, the sandbox's ids are a range of 65536 unprivileged host ids of its own (no running
sandbox shares it), never root's: it reads and writes on the host only what anyone may, and the binds it is
asked to make writable are idmapped so that it writes there as root would. --host-root makes the sandbox's
root the host's root instead.

File system: with no file system option (or with --default-tree, and then the options after it on top), the
host's programs read-only (/usr, /etc, and /bin, /sbin, /lib* as the host has them), a fresh /proc, a minimal
/dev, private /tmp, /run, /var (with /var/tmp) and HOME, and the working directory read-only where it is. No
unix socket or FIFO of the host is in it: the working directory is shown through an overlay (--ro-view), on
which a socket or FIFO of the host answers nothing. With any other file system option, the tree is built from
an empty root by the options in the order given, exactly as bubblewrap builds it: --ro-bind / / is needed to
see the host (and then its sockets: D-Bus, systemd, docker.sock...). Either way /proc gets Docker's masks and a
read-only /proc/sys, /sys Docker's masks, and a new network namespace its own read-only /sys (--no-harden turns
that off). Targets are resolved inside the new root; a target that is a symlink is followed there too, never out of it.
Directories made on the way have mode 0755 less the group or other bits --perms leaves out.
To hand in one socket on purpose: --default-tree --bind /run/x.sock /run/x.sock

Namespaces:
  --unshare-user --unshare-pid --unshare-net --unshare-ipc --unshare-uts --unshare-cgroup
  --unshare-user-try --unshare-cgroup-try   the same where the host has them
  --unshare-all          all of the above
  --share-net            keep the host's network (drops --unshare-net / the default)
  --net MODE             none (the default: lo only), host (= --share-net), nat (root: a veth pair into the
                         caller's network and a masquerade) or pasta (user-mode egress through pasta, package
                         passt; rootless too): a network of its own that reaches out
  --userns FD  --pidns FD   make the sandbox in these namespaces (descriptors of /proc/PID/ns/...): no new user
                         namespace; with --unshare-pid, a new pid namespace below the given one
  --userns2 FD           enter this user namespace (nested in the sandbox's) once the tree is built
  --disable-userns       the payload cannot make user namespaces (a nested one, under a limit of 1)
  --assert-userns-disabled   fail unless making a user namespace is already refused
Firewall (one nftables table in the sandbox's own network namespace; counters with --usage):
  --allow-out PROTO:HOST[:PORT]   let this out (PROTO tcp, udp, icmp, icmpv6 or *; HOST an address, a CIDR,
                         an IPv6 one in brackets ([fd00::1]:53) or *; PORT a number, LOW-HIGH or *); with any
                         --allow-out everything else going out is dropped
  --deny-out PROTO:HOST[:PORT]    refuse this (TCP with a reset, the rest with an ICMP unreachable)
  --firewall FILE.lua    rules from a Lua file returning a table (lunas.firewall: input, output, forward,
                         rules = {{direction =, proto =, port =, to =, from =, action =, log =, name =}}),
                         read as data; --allow-out/--deny-out rules come after its rules
Identity:
  --uid UID  --gid GID   ids inside the sandbox (mapped to yours outside; root's: to its range)
  --host-root            run by root: the sandbox's root is the host's root (no range of host ids; without
                         --unshare-user and with --unshare-*, no user namespace at all)
  --hostname NAME        host name inside (needs a uts namespace)
  --name NAME            the sandbox's name in lunas ps, top, stats and events (default run-PID), unique
                         among running sandboxes
File system (in order):
  --default-tree         the default tree here (the options after it go on top of it)
  --bind SRC DEST  --ro-bind SRC DEST  --dev-bind SRC DEST   and -try forms (skip a missing SRC)
  --ro-view SRC DEST     SRC read-only, where no socket or FIFO of the host answers (an overlay)
  --tmpfs DEST           a fresh tmpfs (--size BYTES and --perms OCTAL before it apply to it)
  --proc DEST  --dev DEST  --mqueue DEST
  --dir DEST  --symlink SRC DEST  --file FD DEST (contents read from FD)  --chmod OCTAL PATH
  --bind-data FD DEST  --ro-bind-data FD DEST   a file of the sandbox's own (mode 0600 or --perms) holding what
                         FD gives, bound on DEST
  --bind-fd FD DEST  --ro-bind-fd FD DEST   bind what the descriptor FD names (checked to be that file once bound)
  --remount-ro DEST  --mask PATH (hide a file or directory)
  --overlay-src SRC (a lower layer, repeatable)  then  --overlay RWSRC WORKDIR DEST  --tmp-overlay DEST
                         --ro-overlay DEST
  --rootfs DIR           start from this directory (default: an empty tmpfs); --rootfs host keeps the host's
                         mount table (a private copy, as unshare --mount does: the host's files, writable as
                         their permissions allow, and its sockets and FIFOs reachable) under the options and
                         the hardening, with a fresh /proc when no option is given
  --no-harden            no /proc masks, writable /proc/sys, the /sys the tree shows
Process:
  --chdir DIR            working directory
  --setenv VAR VALUE  --unsetenv VAR  --clearenv  --keep-env (inherit the whole environment)
  --argv0 VALUE          argv[0] for CMD
  --as-pid-1             CMD is PID 1 itself (no reaper)
  --die-with-parent      (default) kill the sandbox when lunas dies; --no-die-with-parent to keep it
  --new-session          (default) setsid: CMD has no controlling terminal, so it gets no signal from it and
                         cannot make it its own; it still writes to a terminal it inherits as stdout or
                         stderr (the seccomp profile refuses TIOCSTI, TIOCLINUX and TIOCSETD on it);
                         --share-session to keep the caller's session
  --share-keyring        the caller's session keyring instead of a new one
  --timeout SECONDS      kill the sandbox after SECONDS (exit status 124)
  --stop-timeout SECONDS when lunas gets SIGINT, SIGTERM or SIGHUP, it passes it on to CMD and kills the
                         sandbox if CMD has not ended after SECONDS (default 10); SIGQUIT, or a second
                         signal, kills it at once. lunas then removes what it set up and ends by that signal
  --json-status FILE|FD  write JSON lines: {"child-pid", "payload-pid", "namespaces"} once CMD runs, then
                         {"exit-code" or "signal", "elapsed", "usage", "timed-out", "firewall"} when it ends
  --info-fd FD  --json-status-fd FD   bubblewrap's reports: the sandbox's first process and namespace ids, and
                         (on --json-status-fd) the exit code when CMD ends
  --lock-file PATH       the sandbox holds a shared lock on PATH (inside it) while it lives
  --sync-fd FD           the sandbox keeps FD open while it lives (CMD never gets it)
  --block-fd FD          CMD starts once FD has data to read (or its end)
  --args FD              more options, NUL-separated, read from FD
  --userns-block-fd FD   lunas writes no uid/gid maps: another program does (newuidmap), once --info-fd told
                         it the pid; the sandbox goes on when FD has data
Resources (a cgroup of its own, removed afterwards; cgroup v2, or v1 on a hybrid host):
  --memory SIZE          memory limit (256M, 1.5G, bytes); swap counts against it unless --swap says otherwise
  --memory-high SIZE     throttle above SIZE (v2 only)     --swap SIZE   swap allowed beyond --memory
  --pids N               at most N processes and threads (a fork bomb stops there)
  --cpu CORES            a share of cores (0.5, 2, or 50%)  --cpu-weight 1-10000  relative weight (default 100)
  --cpuset LIST          the cpus it may run on (0-3,6)
  --limits-best-effort   a limit this host cannot enforce is a warning, not an error
  --usage                print what the sandbox used (memory peak, cpu time, processes; the firewall's
                         counters) on stderr at the end
Confinement (defaults: every capability dropped, securebits locked, no_new_privs, the default seccomp profile):
  --cap-add CAP  --cap-drop CAP   keep or drop a capability (CAP_NET_ADMIN, net_admin or ALL), in order from
                         none; kept ones stay in every set of CMD whatever its uid
  --seccomp FILE.lua     a seccomp profile: a Lua file returning {base =, deny =, allow =, notify =, rules =, ...}
  --seccomp FD  --add-seccomp-fd FD   a compiled BPF program (as seccomp_export_bpf writes it), loaded after
                         the profile; --add-seccomp-fd is repeatable (the last one runs first)
  --seccomp-deny NAME  --seccomp-allow NAME   refuse, or let through, a group or a system call (repeatable;
                         groups: mount module raw-io reboot swap clock debug perf bpf keyring userfaultfd
                         obsolete privileged namespaces userns tty io_uring vsock suid ldt personality lease)
  --no-seccomp           no system call filter at all
  --seccomp-show         print the filter as readable PFC and exit
  --landlock-ro PATH  --landlock-rw PATH   with either, CMD reaches only the listed paths (read-only, or fully)
  --landlock-connect PORT  --landlock-bind PORT   with either, TCP connect/bind only to the listed ports
  --landlock-strict      fail when the kernel cannot enforce a Landlock rule (default: a warning)
  --apparmor PROFILE     CMD execs under that AppArmor profile (loaded already: apparmor_parser -r)
  --selinux-label CTX  --selinux-mount-label CTX   CMD's SELinux exec context, and the context of the
                         sandbox's new mounts (bubblewrap's --exec-label and --file-label); each needs the
                         kernel running that module; exec labels are CMD's alone (PID 1 keeps lunas's)
  --share-abstract-sockets   with --share-net, reach the host's abstract unix sockets too (by default
                         Landlock keeps them out of reach where the kernel has ABI 6; a warning where not)
  --help

Exit status: CMD's status; 128+N when killed by signal N; 124 on --timeout; 125 when the sandbox could not be
set up; 2 for bad usage. A payload killed by the OOM killer is reported on stderr (and exits 137).]]

local ALL = { "user", "pid", "net", "ipc", "uts", "cgroup" }

-- The environment options, in order, as the spec's env, unsetenv and clearenv (disjoint sets, so the order the
-- sandbox applies them in keeps the order they were given in).
local function environment(st, spec)
  local env, unset = {}, {}
  for _, op in ipairs(st.env_ops) do
    if op[1] == "clear" then
      spec.clearenv, env, unset = true, {}, {}
    elseif op[1] == "set" then
      env[op[2]], unset[op[2]] = op[3], nil
    else
      env[op[2]], unset[op[2]] = nil, true
    end
  end
  if next(env) then spec.env = env end
  if next(unset) then spec.unsetenv = security.sorted(unset) end
end

-- The namespaces: every one without an --unshare-* option, exactly those (and a mount namespace) with any; root
-- gets a user namespace too (the sandbox's ids a range of the host's) unless it asks to stay the host's root or
-- joins one (--userns).
local function namespaces(st, spec)
  local names = {}
  for _, n in ipairs(ALL) do
    local wanted = not st.chose or st.unshare[n]
      or (st.unshare_try[n] and (n ~= "cgroup" or core.file_type("/proc/self/ns/cgroup") ~= nil))
    -- (--net nat and pasta are a network namespace of the sandbox's own, whatever --unshare-* said)
    if n == "net" and (st.net == "nat" or st.net == "pasta") then wanted = true end
    if wanted and not (n == "net" and st.share_net) and not (n == "user" and st.userns_fd) then names[#names + 1] = n end
  end
  names[#names + 1] = "mount"
  if st.chose and not st.unshare.user and not st.unshare_try.user and not spec.host_root and not st.userns_fd
    and core.ids().euid == 0 then
    names[#names + 1] = "user"
  end
  return names
end

-- The seccomp options as the spec's profile (the default one, a profile file, lists of groups to deny or allow)
-- and raw programs (--seccomp FD, --add-seccomp-fd), loaded after the profile.
local function seccomp(st, spec)
  local lists = st.seccomp_lists
  if spec.seccomp == false then
    if st.seccomp_file or #lists.deny + #lists.allow > 0 then error({ usage = "--no-seccomp with a seccomp profile option" }, 0) end
  else
    local profile = {}
    if st.seccomp_file then
      local chunk, err = loadfile(st.seccomp_file, "t", {})
      if not chunk then error({ usage = "--seccomp: " .. err }, 0) end
      local ok, value = pcall(chunk)
      if not ok or type(value) ~= "table" then
        error({ usage = "--seccomp " .. st.seccomp_file .. ": " .. (ok and "must return a profile table" or tostring(value)) }, 0)
      end
      profile = value
    end
    for _, kind in ipairs{ "deny", "allow" } do
      if #lists[kind] > 0 then
        local list = type(profile[kind]) == "table" and { table.unpack(profile[kind]) } or {}
        for _, name in ipairs(lists[kind]) do list[#list + 1] = name end
        profile[kind] = list
      end
    end
    if next(profile) then spec.seccomp = profile end
  end
  spec.seccomp_programs = st.seccomp_programs
end

-- --firewall FILE.lua (a Lua file returning the rules table, run as data: an empty environment), then the
-- --allow-out / --deny-out rules in the order given; any --allow-out makes the outgoing default drop.
local function firewall_rules(st, spec)
  local rules
  if st.firewall_file then
    local chunk, err = loadfile(st.firewall_file, "t", {})
    if not chunk then error({ usage = "--firewall: " .. err }, 0) end
    local ok, value = pcall(chunk)
    if not ok or type(value) ~= "table" then
      error({ usage = "--firewall " .. st.firewall_file .. ": " .. (ok and "must return a rules table" or tostring(value)) }, 0)
    end
    rules = value
  end
  if #st.egress > 0 then
    rules = rules or {}
    if rules.rules ~= nil and type(rules.rules) ~= "table" then error({ usage = "--firewall: 'rules' must be a list" }, 0) end
    local list = { table.unpack(rules.rules or {}) }
    for _, r in ipairs(st.egress) do list[#list + 1] = r end
    rules.rules = list
    if st.egress_allow then rules.output = "drop" end
  end
  if rules then
    spec.firewall = rules
    st.origins.firewall = st.firewall_file and "--firewall" or "--allow-out/--deny-out"
  end
end

--- Parses the options (lunas.cli.options, in run's words) into a sandbox spec with run's defaults; returns the
-- spec and the parsed options, or "help". Raises {usage = message}.
function M.parse(args)
  local st = options.parse(args, "run")
  if st == "help" then return "help" end
  if #st.argv == 0 then error({ usage = "no command given" }, 0) end
  local spec = st.spec
  -- (bubblewrap's names for the SELinux labels, and lunas's)
  spec.selinux_label, spec.selinux_mount_label = st.exec_label, st.file_label
  spec.argv = st.argv
  if #st.mounts > 0 then spec.mounts = st.mounts end
  if #st.lock_files > 0 then spec.lock_files = st.lock_files end
  environment(st, spec)
  spec.namespaces = namespaces(st, spec)
  local caps = options.capabilities(st, {})
  if caps then spec.caps = security.sorted(caps) end
  seccomp(st, spec)
  if st.net == "nat" or st.net == "pasta" then spec.net = st.net end
  firewall_rules(st, spec)
  spec.nested_userns = st.disable_userns and "disable" or st.assert_userns_disabled and "assert" or nil
  spec.enter_userns = st.userns2_fd
  spec.pid_namespace_joined = st.pidns_fd ~= nil or nil
  spec.private_fds = options.private_fds(st)
  if st.userns_block_fd and not st.info_fd then
    error({ usage = "--userns-block-fd needs --info-fd (where the sandbox's pid is told)" }, 0)
  end
  options.report_fields(st, spec)
  local origins = st.origins
  origins.caps, origins.timeout = "--cap-add/--cap-drop", "--timeout"
  origins.seccomp = st.seccomp_file and "--seccomp" or "--seccomp-deny/--seccomp-allow"
  if not st.seccomp_file then origins["seccomp.deny"], origins["seccomp.allow"] = "--seccomp-deny", "--seccomp-allow" end
  if spec.landlock then origins.landlock = "--landlock-ro/-rw/-connect/-bind/-strict" end
  origins.seccomp_programs = "--seccomp/--add-seccomp-fd"
  return spec, st
end

-- The option behind a spec field the sandbox rejected ("limits.memory" -> "--memory", "seccomp.deny[1]" ->
-- "--seccomp-deny/--seccomp-allow"), or nil.
local function option_of(origins, field)
  while field and field ~= "" do
    if origins[field] then return origins[field] end
    field = field:match("^(.*)[%.%[]") -- drop the last ".name" or "[i]"
  end
  return nil
end

local function human_bytes(n)
  if type(n) ~= "number" then return tostring(n) end
  local units = { "B", "K", "M", "G", "T" }
  local i = 1
  while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
  return i == 1 and ("%d%s"):format(n, units[i]) or ("%.1f%s"):format(n, units[i])
end

local function usage_line(usage)
  local parts = {}
  if usage.memory then parts[#parts + 1] = "memory peak " .. human_bytes(usage.memory.peak) end
  if usage.cpu and usage.cpu.usage_usec then
    parts[#parts + 1] = ("cpu %.3fs (user %.3fs, system %.3fs)"):format(usage.cpu.usage_usec / 1e6,
      (usage.cpu.user_usec or 0) / 1e6, (usage.cpu.system_usec or 0) / 1e6)
  end
  if usage.pids then
    parts[#parts + 1] = ("processes peak %s%s"):format(tostring(usage.pids.peak or "?"),
      usage.pids.limit_hits > 0 and (", %d forks refused at the limit"):format(usage.pids.limit_hits) or "")
  end
  return table.concat(parts, ", ")
end

-- The --json-status target: a descriptor number we inherited (reopened for appending, so a file is not
-- truncated), or a file (created or truncated).
local function open_status(target)
  local path = target:match("^%d+$") and "/proc/self/fd/" .. target or target
  local f, msg = io.open(path, target:match("^%d+$") and "a" or "w")
  if not f then return nil, target:match("^%d+$") and ("descriptor " .. target .. " is not open") or msg end
  f:setvbuf("line")
  return f
end

-- Waits for the payload. An interruption of lunas (SIGINT, SIGTERM, SIGHUP) is passed on to the sandbox, whose
-- PID 1 forwards it to the payload, which gets stop_timeout seconds to finish before the sandbox is killed;
-- SIGQUIT kills it at once. Returns the payload's result; lunas then ends by the signal (see lunas.interrupt).
local function wait_forwarding(running, stop_timeout, same_session)
  local ok, result = pcall(running.wait, running)
  if ok then return result end
  if not interrupt.is(result) then error(result, 0) end
  local interruption = result
  if interruption.signal ~= "QUIT" then
    -- (in the caller's session, a terminal's signal reached the payload's process group itself)
    if not (same_session and interruption.from_terminal) then pcall(running.kill, running, interruption.signal) end
    ok, result = pcall(running.wait, running, stop_timeout)
    if ok then
      -- killed at the end of the grace period: not --timeout's doing
      result.timed_out = nil
      return result
    end
  end
  error(errors.cleanup(interruption, running.close, running), 0)
end

function M.main(args)
  local ok, spec, st = pcall(M.parse, args)
  if not ok then
    if type(spec) == "table" and spec.usage then return cli.usage_error("run", spec.usage) end
    error(spec, 0)
  end
  if spec == "help" then print(HELP) return 0 end
  local show_usage, status_target, origins, stop_timeout = st.show_usage, st.json_status, st.origins, st.stop_timeout or 10
  if st.show_seccomp then
    local text, err = errors.try(function()
      local profile = security.check_profile("seccomp", spec.seccomp)
      return profile and security.describe(profile) or "# no seccomp filter\n"
    end)
    if not text then
      io.stderr:write("lunas: ", tostring(err), "\n")
      return 2
    end
    io.stdout:write(text)
    return 0
  end
  local status_out
  if status_target then
    local msg
    status_out, msg = open_status(status_target)
    if not status_out then return cli.usage_error("run", "--json-status: " .. msg) end
  end
  local json = status_out and require "lunas.json"
  local joined, join_msg = options.join_namespaces(st)
  if not joined then
    io.stderr:write("lunas run: ", join_msg, "\n")
    return 125
  end
  -- Every sandbox lunas run starts has a record (lunas ps): run-PID unless --name names it.
  -- (where records can be kept: root, or a user with XDG_RUNTIME_DIR)
  if spec.name == nil and require("lunas.sandbox_record").base() then spec.name = { prefix = "run" } end
  local result, err = errors.try(function()
    local running <close> = sandbox.new(spec):spawn()
    collectgarbage("restart")
    if status_out then
      status_out:write(json.encode{ ["child-pid"] = running.pid, ["payload-pid"] = running:payload_pid(),
        namespaces = core.ns_ids(running.pid) or json.null } .. "\n")
    end
    return wait_forwarding(running, stop_timeout, spec.new_session == false)
  end)
  if status_out then
    local final = result and { elapsed = result.elapsed, usage = result.usage, ["timed-out"] = result.timed_out == true,
      firewall = result.firewall } or { error = tostring(err) }
    if result and result.signal then final.signal = result.signal else final["exit-code"] = result and result.status end
    status_out:write(json.encode(final) .. "\n")
    status_out:close()
  end
  -- Interrupted before the payload ran: what was set up is gone; lunas ends by the signal, quietly.
  if not result and interrupt.is(err) then return 1 end
  if not result then
    -- A spec the sandbox rejects is bad usage, reported under the option that gave the value; a step that
    -- failed is a set-up failure.
    local option = err.field and option_of(origins, err.field)
    if option then return cli.usage_error("run", option .. ": " .. tostring(err.msg)) end
    io.stderr:write("lunas: ", tostring(err), "\n")
    if err.field then return 2 end
    return err.step and 125 or 1
  end
  options.report_exit(st, result.signal and 128 + result.signal or result.status)
  if result.oom_killed then
    io.stderr:write(("lunas run: out of memory: the OOM killer killed %s (memory limit %s)\n"):format(
      result.signal and "the command" or "a process of the sandbox", human_bytes(result.usage.memory.limit)))
  end
  if show_usage and result.usage then io.stderr:write("lunas run: used ", usage_line(result.usage), "\n") end
  if show_usage and result.firewall then
    for _, c in ipairs(result.firewall) do
      io.stderr:write(("lunas run: firewall %s (%s %s): %d packets, %d bytes\n"):format(c.name, c.direction or "?",
        c.action or "?", c.packets, c.bytes))
    end
  end
  if result.timed_out then
    io.stderr:write(("lunas run: timed out after %g s\n"):format(spec.timeout))
    return 124
  end
  if result.signal then return 128 + result.signal end
  return result.status
end

return M
