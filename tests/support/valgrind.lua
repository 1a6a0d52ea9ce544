-- The core specs under valgrind memcheck (tests/valgrind.sh sets LUNAS_VALGRIND=1; tests/support/helper.lua
-- calls install()). Debian 12's valgrind is 3.19: it answers ENOSYS for the system calls it has no wrapper for,
-- and a few it emulates differently. The tests that depend on those are turned into pending tests that say
-- why, so the summary lists them; everything else runs as in `make test`.
--
-- Entries: { spec file name, start of the test's full name (describe names and the test's, joined by spaces),
-- reason }. A start that is a describe's name takes all its tests.

local M = {}

local NO = "valgrind 3.19 does not implement "
local LANDLOCK = NO .. "landlock_create_ruleset/landlock_add_rule/landlock_restrict_self (ENOSYS)"
local SECCOMP = NO .. "seccomp(2) (ENOSYS: libseccomp refuses filter attributes), and a filter would apply to "
  .. "valgrind's own system calls too"
local OPENAT2 = NO .. "openat2 (ENOSYS), which resolving inside a root needs"
local MOUNT_API = NO .. "open_tree, move_mount, fsopen, fsconfig, fsmount or mount_setattr (ENOSYS)"
local PIDFD_OPEN = NO .. "pidfd_open (ENOSYS)"
local PIDFD_SIGNAL = NO .. "pidfd_send_signal (ENOSYS)"
local NOFILE = "valgrind keeps descriptors for itself above RLIMIT_NOFILE: it refuses to change that limit "
  .. "(EPERM) and reports a lower one than /proc/PID/limits"

M.excluded = {
  { "core_landlock_spec", "core.landlock_abi #rootless answers the kernel's ABI version", LANDLOCK },
  { "core_landlock_spec", "core.landlock_abi #rootless answers 0, the reason and the code", SECCOMP },
  { "core_landlock_spec", "core.landlock_rights #rootless accepts every right the kernel's ABI knows", LANDLOCK },
  { "core_landlock_spec", "core.landlock_ruleset #rootless creates a ruleset", LANDLOCK },
  { "core_landlock_spec", "core.landlock_ruleset #rootless takes rights as a table", LANDLOCK },
  { "core_landlock_spec", "core.landlock_ruleset #rootless refuses a right newer than the kernel", LANDLOCK },
  { "core_landlock_spec", "ruleset:close and collection", LANDLOCK },
  { "core_landlock_spec", "ruleset:allow_path", LANDLOCK },
  { "core_landlock_spec", "restricted file system access", LANDLOCK },
  { "core_landlock_spec", "restricted TCP", LANDLOCK },
  { "core_landlock_spec", "restricted scopes", LANDLOCK },
  { "core_landlock_spec", "ruleset:restrict", LANDLOCK },

  { "core_mount_spec", "paths inside a root #rootless resolves symlinks on the way inside the root", OPENAT2 },
  { "core_mount_spec", "paths inside a root #rootless creates missing directories", OPENAT2 },
  { "core_mount_spec", "the new mount API", MOUNT_API },

  { "core_ns_spec", "core.sethostname / setdomainname / uname set the names", NO .. "setdomainname (ENOSYS)" },
  { "core_ns_spec", "core.sethostname / setdomainname / uname fail with EPERM", NO .. "setdomainname (ENOSYS)" },

  { "core_proc_spec", "core.spawn with vfork runs a function vfork-style",
    "valgrind runs a CLONE_VM|CLONE_VFORK child as a plain fork: spawn returns before the child execs" },
  { "core_proc_spec", "process handle kill sends a signal", PIDFD_SIGNAL },
  { "core_proc_spec", "process handle kill raises on an unknown signal", PIDFD_SIGNAL },
  { "core_proc_spec", "core.pidfd_open", PIDFD_OPEN },
  { "core_proc_spec", "core.reaper reaper_exec becomes the reaper program",
    "valgrind 3.19's execveat fails with ENOENT on a memfd (AT_EMPTY_PATH): the reaper program is never exec'd" },
  { "core_proc_spec", "core.reaper reaper_exec reports the payload's exec failure",
    "valgrind 3.19's execveat fails with ENOENT on a memfd (AT_EMPTY_PATH): the reaper program is never exec'd" },
  { "core_proc_spec", "core.prctl sets child_subreaper", PIDFD_OPEN },
  { "core_proc_spec", "core.prctl sets pdeathsig", PIDFD_OPEN },
  { "core_proc_spec", "core.setrlimit / core.getrlimit set limits in a child", NOFILE },
  { "core_proc_spec", "core.setrlimit / core.getrlimit set and get the limits of another process", NOFILE },
  { "core_proc_spec", "core.setrlimit / core.getrlimit fail with EPERM when an unprivileged", NOFILE },
  { "core_proc_spec", "core.spawn into a cgroup #root starts the child directly in the cgroup",
    NO .. "clone3 (ENOSYS), and CLONE_INTO_CGROUP has no clone(2) form" },

  { "core_security_spec", "core seccomp filters #rootless refuses a call with an errno", SECCOMP },
  { "core_security_spec", "core seccomp filters #rootless kills the process", SECCOMP },
  { "core_security_spec", "core seccomp filters #rootless compares arguments", SECCOMP },
  { "core_security_spec", "core seccomp filters #rootless exports readable PFC text", SECCOMP },
  { "core_security_spec", "core seccomp filters #rootless reports rule errors", SECCOMP },
  { "core_security_spec", "core seccomp user notification #rootless holds a call", SECCOMP },
  { "core_security_spec", "core seccomp user notification #rootless lets the supervisor", SECCOMP },
  { "core_security_spec", "core seccomp user notification #rootless answers ENOENT", SECCOMP },
}

local function reason_for(file, full_name)
  local spec = tostring(file or ""):match("([^/]+)%.lua$")
  for _, e in ipairs(M.excluded) do
    if e[1] == spec and full_name:sub(1, #e[2]) == e[2] then return e[3] end
  end
  return nil
end

-- process:kill signals through the pidfd (pidfd_send_signal), which valgrind 3.19 does not implement. The
-- specs kill their children to stop them (support.child.stop), so a test that is not about kill would hang
-- until its timeouts and leave its child behind. Here, and only under valgrind, kill falls back to kill(2) by
-- pid for a process that is still running; the tests of kill itself are excluded above.
local function kill_by_pid_fallback(core)
  local mt = debug.getregistry()["lunas.process"]
  local _, methods = debug.getupvalue(mt.__index, 1)
  local kill = methods.kill
  methods.kill = function(p, sig)
    local ok, msg, code = kill(p, sig)
    if ok == nil and code == "ENOSYS" and p:alive() then return core.kill(p.pid, sig or "TERM") end
    return ok, msg, code
  end
end

function M.install(busted)
  kill_by_pid_fallback(require("lunas.core"))

  local file, stack, replacing = nil, {}, false
  busted.subscribe({ "file", "start" }, function(element)
    file, stack = element.name, {}
    return nil, true
  end)
  busted.subscribe({ "describe", "start" }, function(element)
    stack[#stack + 1] = element.name or ""
    return nil, true
  end)
  busted.subscribe({ "describe", "end" }, function()
    stack[#stack] = nil
    return nil, true
  end)
  -- the pending() of the running test (require("busted").pending registers a pending test instead)
  local pending
  busted.subscribe({ "test", "start" }, function(element)
    pending = element.env and element.env.pending
    return nil, true
  end, { priority = 1 })
  -- an excluded test is registered again with a body that only says why it is pending
  busted.subscribe({ "register", "it" }, function(name, _, trace, attributes)
    if replacing then return nil, true end
    local names = { table.unpack(stack) }
    names[#names + 1] = name or ""
    local reason = reason_for(file, table.concat(names, " "))
    if not reason then return nil, true end
    replacing = true
    busted.publish({ "register", "it" }, name, function() pending(reason) end, trace, attributes)
    replacing = false
    return nil, false
  end, { priority = 1 })
end

return M
