--- What `lunas-oci spec` writes (runc's template: a busybox-style bundle with rootfs/) and what `lunas-oci
-- features` reports (the runtime spec's features document: what this runtime honours, nothing more).
-- @module lunas.oci.spec
local core = require "lunas.core"
local json = require "lunas.json"
local config = require "lunas.oci.config"

local M = {}

local DEFAULT_CAPS = { "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" }

local function copy(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

--- A config.json for a bundle whose root file system is ./rootfs (runc spec's; opts.rootless: a user namespace
-- mapping the caller's ids to root, /sys bound from the host).
-- @tparam table opts {rootless = bool}
-- @treturn table
function M.default(opts)
  local mounts = {
    { destination = "/proc", type = "proc", source = "proc" },
    { destination = "/dev", type = "tmpfs", source = "tmpfs", options = { "nosuid", "strictatime", "mode=755", "size=65536k" } },
    { destination = "/dev/pts", type = "devpts", source = "devpts",
      options = { "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" } },
    { destination = "/dev/shm", type = "tmpfs", source = "shm", options = { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" } },
    { destination = "/dev/mqueue", type = "mqueue", source = "mqueue", options = { "nosuid", "noexec", "nodev" } },
    { destination = "/sys", type = "sysfs", source = "sysfs", options = { "nosuid", "noexec", "nodev", "ro" } },
    { destination = "/sys/fs/cgroup", type = "cgroup", source = "cgroup", options = { "nosuid", "noexec", "nodev", "relatime", "ro" } },
  }
  local namespaces = { { type = "pid" }, { type = "network" }, { type = "ipc" }, { type = "uts" }, { type = "mount" },
    { type = "cgroup" } }
  local linux = {
    resources = { devices = { { allow = false, access = "rwm" } } },
    namespaces = namespaces,
    maskedPaths = { "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
      "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi" },
    readonlyPaths = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" },
  }
  if opts and opts.rootless then
    local ids = core.ids()
    namespaces[#namespaces + 1] = { type = "user" }
    linux.uidMappings = { { containerID = 0, hostID = ids.euid, size = 1 } }
    linux.gidMappings = { { containerID = 0, hostID = ids.egid, size = 1 } }
    linux.resources = nil
    table.remove(mounts[3].options, 6)
    mounts[6] = { destination = "/sys", type = "none", source = "/sys", options = { "rbind", "nosuid", "noexec", "nodev", "ro" } }
    table.remove(mounts, 7)
  end
  return {
    ociVersion = config.OCI_VERSION,
    process = {
      terminal = true, user = { uid = 0, gid = 0 }, args = { "sh" },
      env = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm" },
      cwd = "/",
      capabilities = { bounding = copy(DEFAULT_CAPS), effective = copy(DEFAULT_CAPS), permitted = copy(DEFAULT_CAPS),
        ambient = copy(DEFAULT_CAPS) },
      rlimits = { { type = "RLIMIT_NOFILE", hard = 1024, soft = 1024 } },
      noNewPrivileges = true,
    },
    root = { path = "rootfs", readonly = true },
    hostname = "lunas",
    mounts = mounts,
    linux = linux,
  }
end

--- The features document (runtime spec features.md): versions, mount options, namespaces, capabilities,
-- cgroup and seccomp support of this build on this kernel.
-- @treturn table
function M.features()
  local caps = {}
  for _, name in ipairs(core.capability_names()) do caps[#caps + 1] = "CAP_" .. name:upper() end
  return {
    ociVersionMin = config.OCI_VERSION_MIN,
    ociVersionMax = config.OCI_VERSION,
    hooks = { "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop" },
    mountOptions = { "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
      "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
      "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime",
      "relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime",
      "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
      "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave",
      "strictatime", "suid", "symfollow", "sync", "unbindable" },
    linux = {
      namespaces = { "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts" },
      capabilities = caps,
      cgroup = { v1 = true, v2 = true, systemd = false, systemdUser = false, rdma = false },
      seccomp = {
        enabled = true,
        actions = { "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
          "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP" },
        operators = { "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
          "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE" },
        archs = { "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64" },
        knownFlags = { "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
          "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" },
        supportedFlags = { "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
          "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" },
      },
      -- (applied when the kernel runs the module: lunas.lsm)
      apparmor = { enabled = true },
      selinux = { enabled = true },
      intelRdt = { enabled = false },
    },
    annotations = json.object{ ["org.lunas.version"] = core.version },
  }
end

return M
