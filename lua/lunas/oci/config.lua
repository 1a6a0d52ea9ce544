--- An OCI runtime bundle's config.json as a lunas sandbox spec: lunas as an OCI runtime (`lunas-oci`).
-- One function per section of the config. Nothing comes from lunas's own defaults: the container gets what the
-- config says, and a field lunas cannot honour is refused with a message naming it. Unknown fields and
-- annotations are ignored, as the runtime spec asks.
-- @module lunas.oci.config
local json = require "lunas.json"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

--- The newest version of the runtime spec this runtime takes (config.json's ociVersion), and what `state` says.
M.OCI_VERSION = "1.2.0"
--- The oldest version it takes.
M.OCI_VERSION_MIN = "1.0.0"

local function refuse(field, fmt, ...)
  errors.raise{ op = "config", field = field, code = "EINVAL",
    msg = ("config.json: %s: " .. fmt):format(field, ...) }
end

local function expect(field, value, kind)
  if value ~= nil and value ~= json.null and type(value) ~= kind then
    refuse(field, "%s expected, got %s", kind == "table" and "object or array" or kind, type(value))
  end
  if value == json.null then return nil end
  return value
end

local function expect_integer(field, value, min, max)
  if value == nil or value == json.null then return nil end
  if math.type(value) ~= "integer" or (min and value < min) or (max and value > max) then
    refuse(field, "integer%s expected, got %s", min and (" %d to %d"):format(min, max) or "", tostring(value))
  end
  return value
end

-- A JSON array of strings.
local function strings(field, value)
  value = expect(field, value, "table")
  if value == nil then return {} end
  for i, s in ipairs(value) do
    if type(s) ~= "string" then refuse(("%s[%d]"):format(field, i - 1), "string expected, got %s", type(s)) end
    if s:find("%z") then refuse(("%s[%d]"):format(field, i - 1), "contains a NUL byte") end
  end
  return value
end

local function absolute(field, path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then refuse(field, "an absolute path expected, got %s", tostring(path)) end
  return path
end

-- ---- process ------------------------------------------------------------------------------------------------

local RLIMITS = { RLIMIT_AS = "as", RLIMIT_CORE = "core", RLIMIT_CPU = "cpu", RLIMIT_DATA = "data",
  RLIMIT_FSIZE = "fsize", RLIMIT_LOCKS = "locks", RLIMIT_MEMLOCK = "memlock", RLIMIT_MSGQUEUE = "msgqueue",
  RLIMIT_NICE = "nice", RLIMIT_NOFILE = "nofile", RLIMIT_NPROC = "nproc", RLIMIT_RSS = "rss", RLIMIT_RTPRIO = "rtprio",
  RLIMIT_RTTIME = "rttime", RLIMIT_SIGPENDING = "sigpending", RLIMIT_STACK = "stack" }

-- An rlimit value: 2^64-1 (RLIM_INFINITY, decoded as -1) and anything past 2^63 mean no limit.
local function rlimit_value(field, v)
  if math.type(v) ~= "integer" then refuse(field, "integer expected, got %s", tostring(v)) end
  if v < 0 then return "unlimited" end
  return v
end

local function rlimits(spec, list)
  list = expect("process.rlimits", list, "table")
  if not list then return end
  spec.rlimits = {}
  for i, r in ipairs(list) do
    local field = ("process.rlimits[%d]"):format(i - 1)
    if type(r) ~= "table" then refuse(field, "object expected") end
    local name = RLIMITS[r.type]
    if not name then refuse(field .. ".type", "unknown resource %s", tostring(r.type)) end
    if spec.rlimits[name] then refuse(field .. ".type", "%s given twice", r.type) end
    spec.rlimits[name] = { rlimit_value(field .. ".soft", r.soft), rlimit_value(field .. ".hard", r.hard) }
  end
end

-- The five capability sets, names as the kernel's headers spell them ("CAP_NET_RAW"); a name this kernel does
-- not know is left out with a warning, as runc does.
local function capabilities(spec, caps, warn, known)
  caps = expect("process.capabilities", caps, "table") or {}
  local sets = {}
  for _, set in ipairs{ "bounding", "effective", "permitted", "inheritable", "ambient" } do
    local list = {}
    for _, name in ipairs(strings("process.capabilities." .. set, caps[set])) do
      local bare = name:lower():gsub("^cap_", "")
      if known[bare] then list[#list + 1] = bare
      else warn(("process.capabilities.%s: %s is unknown to this kernel: left out"):format(set, name)) end
    end
    sets[set] = list
  end
  spec.caps = { sets = sets }
end

local function environment(spec, env)
  spec.clearenv = true
  spec.env = {}
  for i, entry in ipairs(strings("process.env", env)) do
    local k, v = entry:match("^([^=]+)=(.*)$")
    if not k then k, v = entry, "" end
    if k == "" then refuse(("process.env[%d]"):format(i - 1), "no variable name in '%s'", entry) end
    -- (a later entry wins, as execve's first match would not: runc keeps the last)
    spec.env[k] = v
  end
end

local function user(spec, u)
  u = expect("process.user", u, "table") or {}
  spec.uid = expect_integer("process.user.uid", u.uid, 0, 0xfffffffe) or 0
  spec.gid = expect_integer("process.user.gid", u.gid, 0, 0xfffffffe) or 0
  local groups = expect("process.user.additionalGids", u.additionalGids, "table")
  if groups and #groups > 0 then
    spec.groups = {}
    for i, g in ipairs(groups) do spec.groups[i] = expect_integer(("process.user.additionalGids[%d]"):format(i - 1), g, 0, 0xfffffffe) end
  end
  if u.umask ~= nil and u.umask ~= json.null then spec.umask = expect_integer("process.user.umask", u.umask, 0, 511) end
  if u.username ~= nil then refuse("process.user.username", "is for Windows containers") end
end

local UNSUPPORTED_PROCESS = {
  ioPriority = "I/O priorities are not supported yet",
  scheduler = "scheduling policies are not supported yet",
  execCPUAffinity = "CPU affinity at exec is not supported yet",
}

--- The process section (also what exec's process.json holds): argv, environment, working directory, user,
-- capabilities, rlimits, no_new_privs, oomScoreAdj, terminal. Returns the terminal settings {terminal =, rows =, cols =}.
-- @tparam table spec the sandbox spec being built
-- @tparam table process config.json's process
-- @tparam table ctx {warn = function(msg), capabilities = {name = true} (this kernel's)}
-- @treturn table
function M.process(spec, process, ctx)
  if type(process) ~= "table" then refuse("process", "object expected") end
  for field, why in pairs(UNSUPPORTED_PROCESS) do
    local v = process[field]
    if v ~= nil and v ~= json.null and v ~= "" then refuse("process." .. field, "%s", why) end
  end
  local args = strings("process.args", process.args)
  if #args == 0 then refuse("process.args", "at least the program expected") end
  spec.argv = args
  environment(spec, process.env)
  spec.cwd = absolute("process.cwd", process.cwd or "/")
  user(spec, process.user)
  capabilities(spec, process.capabilities, ctx.warn, ctx.capabilities)
  rlimits(spec, process.rlimits)
  spec.no_new_privs = expect("process.noNewPrivileges", process.noNewPrivileges, "boolean") == true
  -- (an empty label is none, as runc takes it)
  local profile = expect("process.apparmorProfile", process.apparmorProfile, "string")
  if profile and profile ~= "" then spec.apparmor = profile end
  local label = expect("process.selinuxLabel", process.selinuxLabel, "string")
  if label and label ~= "" then spec.selinux_label = label end
  spec.oom_score_adj = expect_integer("process.oomScoreAdj", process.oomScoreAdj, -1000, 1000)
  local terminal = { terminal = expect("process.terminal", process.terminal, "boolean") == true }
  local size = expect("process.consoleSize", process.consoleSize, "table")
  if size then
    terminal.rows = expect_integer("process.consoleSize.height", size.height, 0, 65535)
    terminal.cols = expect_integer("process.consoleSize.width", size.width, 0, 65535)
  end
  return terminal
end

-- ---- namespaces and ids -------------------------------------------------------------------------------------

local NAMESPACE_TYPES = { pid = "pid", network = "net", mount = "mount", ipc = "ipc", uts = "uts", user = "user",
  cgroup = "cgroup", time = "time" }

--- linux.namespaces: the new ones into spec.namespaces; those joined by path returned as {[name] = path}.
-- @tparam table spec
-- @tparam table list
-- @treturn table
function M.namespaces(spec, list)
  list = expect("linux.namespaces", list, "table") or {}
  local new, joined = {}, {}
  for i, ns in ipairs(list) do
    local field = ("linux.namespaces[%d]"):format(i - 1)
    if type(ns) ~= "table" then refuse(field, "object expected") end
    local name = NAMESPACE_TYPES[ns.type]
    if not name then refuse(field .. ".type", "unknown namespace type %s", tostring(ns.type)) end
    if new[name] or joined[name] then refuse(field .. ".type", "%s given twice", ns.type) end
    local path = expect(field .. ".path", ns.path, "string")
    if path and path ~= "" then
      joined[name] = absolute(field .. ".path", path)
    else
      new[name] = true
    end
  end
  local names = {}
  for name in pairs(new) do names[#names + 1] = name end
  spec.namespaces = names
  if not new.net then spec.net = "host" end
  if joined.pid then spec.pid_namespace_joined = true end
  return joined, new
end

local function id_map(field, list)
  list = expect(field, list, "table")
  if not list or #list == 0 then return nil end
  local out = {}
  for i, m in ipairs(list) do
    local f = ("%s[%d]"):format(field, i - 1)
    if type(m) ~= "table" then refuse(f, "object expected") end
    out[i] = { expect_integer(f .. ".containerID", m.containerID, 0, 0xfffffffe),
      expect_integer(f .. ".hostID", m.hostID, 0, 0xfffffffe), expect_integer(f .. ".size", m.size, 1, 0xffffffff) }
    if not out[i][1] or not out[i][2] or not out[i][3] then refuse(f, "containerID, hostID and size expected") end
  end
  return out
end

--- uid and gid mappings of a new user namespace (both needed with one).
-- @tparam table spec
-- @tparam table linux
-- @tparam table new_ns the set of new namespaces
-- @tparam[opt] table joined the namespaces joined by path
function M.id_mappings(spec, linux, new_ns, joined)
  local uid_map, gid_map = id_map("linux.uidMappings", linux.uidMappings), id_map("linux.gidMappings", linux.gidMappings)
  if joined and joined.user then
    -- (a joined user namespace has its maps already; podman repeats them in the config)
    spec.host_root, spec.joined_userns = true, true
  elseif new_ns.user then
    if not uid_map or not gid_map then refuse("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings") end
    spec.uid_map, spec.gid_map, spec.setgroups = uid_map, gid_map, true
  elseif uid_map or gid_map then
    refuse("linux.uidMappings", "mappings need a new user namespace in linux.namespaces")
  else
    -- No user namespace: the container's ids are the host's, root included (what the config asks for).
    spec.host_root = true
  end
end

-- ---- file system ----------------------------------------------------------------------------------------------

-- The nodes runc gives every container (and /dev/ptmx, fd, stdio links), made after the config's mounts.
local DEFAULT_DEVICES = {
  { path = "/dev/null", major = 1, minor = 3 }, { path = "/dev/zero", major = 1, minor = 5 },
  { path = "/dev/full", major = 1, minor = 7 }, { path = "/dev/random", major = 1, minor = 8 },
  { path = "/dev/urandom", major = 1, minor = 9 }, { path = "/dev/tty", major = 5, minor = 0 },
}
local DEV_LINKS = { { "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
  { "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" } }
local DEVICE_TYPES = { c = "char", u = "char", b = "block", p = "fifo" }
local PROPAGATIONS = { private = true, shared = true, slave = true, unbindable = true }

local function resolve_source(bundle, source)
  if source:sub(1, 1) == "/" then return source end
  return bundle .. "/" .. source
end

local function mount_entry(bundle, m, i)
  local field = ("mounts[%d]"):format(i - 1)
  if type(m) ~= "table" then refuse(field, "object expected") end
  local dest = expect(field .. ".destination", m.destination, "string")
  if not dest or dest == "" then refuse(field .. ".destination", "a path expected") end
  -- (a relative destination is taken from the root, as runc does)
  if dest:sub(1, 1) ~= "/" then dest = "/" .. dest end
  local options = strings(field .. ".options", m.options)
  local fstype = expect(field .. ".type", m.type, "string") or ""
  local source = expect(field .. ".source", m.source, "string")
  local bind = fstype == "bind"
  for _, o in ipairs(options) do bind = bind or o == "bind" or o == "rbind" end
  if bind then
    if not source then refuse(field .. ".source", "a bind needs a source") end
    source = resolve_source(bundle, source)
  elseif fstype == "" then
    refuse(field .. ".type", "a file system type expected (or a bind option)")
  end
  local entry = { "mount", dest, type = bind and "bind" or fstype, source = source, options = options }
  -- An idmapped bind: the mount's own maps (given, they imply idmap), else the container's (filled in by M.tree).
  local uid_map, gid_map = id_map(field .. ".uidMappings", m.uidMappings), id_map(field .. ".gidMappings", m.gidMappings)
  local idmap = false
  for _, o in ipairs(options) do idmap = idmap or o == "idmap" or o == "ridmap" end
  if uid_map or gid_map then
    if not (uid_map and gid_map) then refuse(field .. ".uidMappings", "uidMappings and gidMappings go together") end
    if not idmap then
      local copy = { table.unpack(options) }
      copy[#copy + 1] = "idmap"
      entry.options, idmap = copy, true
    end
  end
  if idmap then
    if not bind then refuse(field .. ".options", "idmap and ridmap are for binds") end
    entry.uid_map, entry.gid_map = uid_map, gid_map
  end
  return entry, dest, bind
end

local function is_idmapped(entry)
  for _, o in ipairs(entry.options) do
    if o == "idmap" or o == "ridmap" then return true end
  end
  return false
end

--- root, mounts, devices, maskedPaths, readonlyPaths, rootfsPropagation: the tree, in runc's order.
-- @tparam table spec
-- @tparam table config
-- @tparam string bundle absolute
-- @tparam table new_ns
-- @tparam table terminal process.terminal's settings (M.process)
function M.tree(spec, config, bundle, new_ns, terminal)
  local root = expect("root", config.root, "table")
  if not root then refuse("root", "the container's root file system is required") end
  local path = expect("root.path", root.path, "string")
  if not path or path == "" then refuse("root.path", "a path expected") end
  spec.rootfs = resolve_source(bundle, path)
  local mounts = {}
  local dev_bound = false
  for i, m in ipairs(expect("mounts", config.mounts, "table") or {}) do
    local entry, dest, bind = mount_entry(bundle, m, i)
    if (entry.uid_map or entry.gid_map) == nil and is_idmapped(entry) then
      if not spec.uid_map then refuse(("mounts[%d].uidMappings"):format(i - 1), "an idmapped bind needs mappings, its own or the container's user namespace's") end
      entry.uid_map, entry.gid_map = spec.uid_map, spec.gid_map
    end
    mounts[#mounts + 1] = entry
    if dest:gsub("/+$", "") == "/dev" and bind then dev_bound = true end
  end
  local linux = config.linux or {}
  if not new_ns.mount then refuse("linux.namespaces", "a container needs a mount namespace of its own") end
  local devices = {}
  if not dev_bound then
    for _, d in ipairs(DEFAULT_DEVICES) do
      devices[#devices + 1] = { path = d.path, type = "char", major = d.major, minor = d.minor, mode = 438, uid = 0,
        gid = 0, default = true }
    end
  end
  for i, d in ipairs(expect("linux.devices", linux.devices, "table") or {}) do
    local field = ("linux.devices[%d]"):format(i - 1)
    if type(d) ~= "table" then refuse(field, "object expected") end
    local kind = DEVICE_TYPES[d.type]
    if not kind then refuse(field .. ".type", "c, b, u or p expected, got %s", tostring(d.type)) end
    local dev = { path = absolute(field .. ".path", d.path), type = kind,
      major = expect_integer(field .. ".major", d.major, 0, 0xfff) or 0,
      minor = expect_integer(field .. ".minor", d.minor, 0, 0xfffff) or 0,
      mode = expect_integer(field .. ".fileMode", d.fileMode, 0, 0xffff),
      uid = expect_integer(field .. ".uid", d.uid, 0, 0xffffffff), gid = expect_integer(field .. ".gid", d.gid, 0, 0xffffffff) }
    if kind ~= "fifo" and (d.major == nil or d.minor == nil) then refuse(field, "major and minor expected") end
    dev.mode = (dev.mode or 438) & 4095
    -- (a config's device replaces the default one of the same path)
    for j = #devices, 1, -1 do
      if devices[j].path == dev.path then table.remove(devices, j) end
    end
    devices[#devices + 1] = dev
  end
  for _, d in ipairs(devices) do
    mounts[#mounts + 1] = { "node", d.path, type = d.type, major = d.major, minor = d.minor, mode = d.mode,
      uid = d.uid, gid = d.gid }
  end
  local configured = {}
  for _, d in ipairs(devices) do
    if d.path and not d.default then configured[#configured + 1] = d end
  end
  if not dev_bound then
    for _, link in ipairs(DEV_LINKS) do mounts[#mounts + 1] = { "symlink", link[1], link[2] } end
    mounts[#mounts + 1] = { "symlink", "pts/ptmx", "/dev/ptmx" }
  end
  -- Where the createRuntime and createContainer hooks see the tree (when there are any): its mounts and devices
  -- made, its console, masks and read-only parts not yet, as in runc.
  mounts[#mounts + 1] = { "hooks" }
  -- The container's terminal, from its own devpts, on /dev/console (runc binds it there before the read-only
  -- paths, the masks and the read-only root).
  if terminal and terminal.terminal then mounts[#mounts + 1] = { "console", "/dev/console" } end
  for i, p in ipairs(strings("linux.readonlyPaths", linux.readonlyPaths)) do
    mounts[#mounts + 1] = { "remount-ro", absolute(("linux.readonlyPaths[%d]"):format(i - 1), p) }
  end
  for i, p in ipairs(strings("linux.maskedPaths", linux.maskedPaths)) do
    mounts[#mounts + 1] = { "mask", absolute(("linux.maskedPaths[%d]"):format(i - 1), p), plain = true }
  end
  if expect("root.readonly", root.readonly, "boolean") then
    mounts[#mounts + 1] = { "remount-ro", "/", recursive = false }
  end
  spec.mounts = mounts
  local propagation = expect("linux.rootfsPropagation", linux.rootfsPropagation, "string")
  if propagation and propagation ~= "" then
    local base = propagation:gsub("^r", "")
    if not PROPAGATIONS[base] then refuse("linux.rootfsPropagation", "unknown propagation %s", propagation) end
    spec.root_propagation = propagation
  end
  spec.harden = false
  return configured
end

-- The device cgroup's rules: the config's, then an allow rule per linux.devices node, as runc adds them (runc's
-- default rules, which podman's and containerd's deny-all configs rely on, follow: lunas.oci.resources).
local RULE_TYPES = { char = "c", block = "b" }

--- linux.resources with the device rules the container gets: the config's, then an allow rule per linux.devices
-- entry (fifos need none). Nil stays nil when the config has no device rules at all.
-- @tparam table|nil resources linux.resources
-- @tparam table devices linux.devices, as M.tree returns them
-- @treturn table|nil
function M.device_rules(resources, devices)
  if type(resources) ~= "table" or type(resources.devices) ~= "table" or #resources.devices == 0 then return resources end
  local out = {}
  for k, v in pairs(resources) do out[k] = v end
  local rules = {}
  for _, r in ipairs(resources.devices) do rules[#rules + 1] = r end
  for _, d in ipairs(devices) do
    if RULE_TYPES[d.type] then
      rules[#rules + 1] = { allow = true, type = RULE_TYPES[d.type], major = d.major, minor = d.minor, access = "rwm" }
    end
  end
  out.devices = rules
  return out
end

-- ---- seccomp --------------------------------------------------------------------------------------------------

local ARCHES = { SCMP_ARCH_X86 = "x86", SCMP_ARCH_X86_64 = "x86_64", SCMP_ARCH_X32 = "x32", SCMP_ARCH_ARM = "arm",
  SCMP_ARCH_AARCH64 = "aarch64", SCMP_ARCH_MIPS = "mips", SCMP_ARCH_MIPS64 = "mips64", SCMP_ARCH_MIPS64N32 = "mips64n32",
  SCMP_ARCH_MIPSEL = "mipsel", SCMP_ARCH_MIPSEL64 = "mipsel64", SCMP_ARCH_MIPSEL64N32 = "mipsel64n32",
  SCMP_ARCH_PPC = "ppc", SCMP_ARCH_PPC64 = "ppc64", SCMP_ARCH_PPC64LE = "ppc64le", SCMP_ARCH_S390 = "s390",
  SCMP_ARCH_S390X = "s390x", SCMP_ARCH_RISCV64 = "riscv64" }
local OPS = { SCMP_CMP_NE = "ne", SCMP_CMP_LT = "lt", SCMP_CMP_LE = "le", SCMP_CMP_EQ = "eq", SCMP_CMP_GE = "ge",
  SCMP_CMP_GT = "gt", SCMP_CMP_MASKED_EQ = "masked_eq" }
local SIMPLE_ACTIONS = { SCMP_ACT_KILL = "kill_thread", SCMP_ACT_KILL_THREAD = "kill_thread",
  SCMP_ACT_KILL_PROCESS = "kill_process", SCMP_ACT_TRAP = "trap", SCMP_ACT_ALLOW = "allow", SCMP_ACT_LOG = "log",
  SCMP_ACT_NOTIFY = "notify" }
local FLAGS = { SECCOMP_FILTER_FLAG_LOG = "log", SECCOMP_FILTER_FLAG_TSYNC = "tsync",
  SECCOMP_FILTER_FLAG_SPEC_ALLOW = "spec_allow", SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = "wait_killable_recv" }
-- EPERM: what SCMP_ACT_ERRNO returns without errnoRet (runc's default).
local EPERM = 1

local function action(field, name, errno_ret, default_errno)
  if SIMPLE_ACTIONS[name] then return SIMPLE_ACTIONS[name] end
  if name == "SCMP_ACT_ERRNO" then
    return { errno = expect_integer(field .. " errnoRet", errno_ret, 0, 4095) or default_errno or EPERM }
  end
  -- (runc's message to the tracer: errnoRet, else EPERM; with no tracer attached the call fails with ENOSYS)
  if name == "SCMP_ACT_TRACE" then
    return { trace = expect_integer(field .. " errnoRet", errno_ret, 0, 65535) or default_errno or EPERM }
  end
  refuse(field, "unknown action %s", tostring(name))
end

local function comparisons(field, args)
  local list, seen, repeated = {}, {}, false
  for i, a in ipairs(args) do
    local f = ("%s.args[%d]"):format(field, i - 1)
    if type(a) ~= "table" then refuse(f, "object expected") end
    local op = OPS[a.op]
    if not op then refuse(f .. ".op", "unknown comparison %s", tostring(a.op)) end
    local index = expect_integer(f .. ".index", a.index, 0, 5)
    if index == nil then refuse(f .. ".index", "0 to 5 expected") end
    local value, two = a.value or 0, a.valueTwo or 0
    if math.type(value) ~= "integer" or math.type(two) ~= "integer" then refuse(f, "integer value and valueTwo expected") end
    local cmp = { arg = index, op = op, value = value }
    if op == "masked_eq" then cmp.mask, cmp.value = value, two end
    list[#list + 1] = cmp
    repeated = repeated or seen[index]
    seen[index] = true
  end
  return list, repeated
end

--- linux.seccomp as a lunas.security profile (no lunas groups: only the config's rules). Names this libseccomp
-- does not know are left out, as runc leaves them out.
-- @tparam table s
-- @treturn table|false the profile (false: no filter)
-- @treturn table|nil the seccomp agent, when notify rules need one: {path = listenerPath, metadata =}
function M.seccomp(s)
  if s == nil or s == json.null then return false end
  if type(s) ~= "table" then refuse("linux.seccomp", "object expected") end
  local default_errno = expect_integer("linux.seccomp.defaultErrnoRet", s.defaultErrnoRet, 0, 4095)
  local profile = { base = "none", rules = {}, arches = {} }
  profile.default = action("linux.seccomp.defaultAction", s.defaultAction, s.defaultErrnoRet, default_errno)
  if profile.default == "notify" then refuse("linux.seccomp.defaultAction", "SCMP_ACT_NOTIFY cannot be the default") end
  for i, arch in ipairs(strings("linux.seccomp.architectures", s.architectures)) do
    local name = ARCHES[arch]
    if not name then refuse(("linux.seccomp.architectures[%d]"):format(i - 1), "unknown architecture %s", arch) end
    profile.arches[#profile.arches + 1] = name
  end
  if #profile.arches == 0 then profile.arches = { "native" } end
  local flags = {}
  for i, flag in ipairs(strings("linux.seccomp.flags", s.flags)) do
    if not FLAGS[flag] then refuse(("linux.seccomp.flags[%d]"):format(i - 1), "unknown flag %s", flag) end
    flags[FLAGS[flag]] = true
  end
  profile.log, profile.spec_allow, profile.wait_killable_recv = flags.log, flags.spec_allow, flags.wait_killable_recv
  local notify = false
  for i, call in ipairs(expect("linux.seccomp.syscalls", s.syscalls, "table") or {}) do
    local field = ("linux.seccomp.syscalls[%d]"):format(i - 1)
    if type(call) ~= "table" then refuse(field, "object expected") end
    local act = action(field .. ".action", call.action, call.errnoRet, nil)
    notify = notify or act == "notify"
    local cmps, repeated = comparisons(field, expect(field .. ".args", call.args, "table") or {})
    for _, name in ipairs(strings(field .. ".names", call.names)) do
      if repeated then
        -- libseccomp takes one comparison per argument in a rule: each becomes a rule of its own (runc's way).
        for _, cmp in ipairs(cmps) do
          profile.rules[#profile.rules + 1] = { action = act, syscall = name, args = { cmp }, optional = true }
        end
      else
        profile.rules[#profile.rules + 1] = { action = act, syscall = name, args = #cmps > 0 and cmps or nil, optional = true }
      end
    end
  end
  local listener = expect("linux.seccomp.listenerPath", s.listenerPath, "string")
  if notify and (not listener or listener == "") then
    refuse("linux.seccomp.listenerPath", "SCMP_ACT_NOTIFY rules need a listener")
  end
  local agent
  if notify then
    if listener:sub(1, 1) ~= "/" then refuse("linux.seccomp.listenerPath", "an absolute path expected") end
    agent = { path = listener, metadata = expect("linux.seccomp.listenerMetadata", s.listenerMetadata, "string") }
  end
  return profile, agent
end

-- ---- the rest of linux ----------------------------------------------------------------------------------------

local UNSUPPORTED_LINUX = {
  intelRdt = "Intel RDT is not supported (no /sys/fs/resctrl)",
  netDevices = "moving network devices in is not supported yet",
  memoryPolicy = "memory policies are not supported yet",
}

local function misc(spec, config, new_ns)
  local linux = config.linux or {}
  for field, why in pairs(UNSUPPORTED_LINUX) do
    local v = linux[field]
    if v ~= nil and v ~= json.null and v ~= "" and not (type(v) == "table" and next(v) == nil) then
      refuse("linux." .. field, "%s", why)
    end
  end
  local mount_label = expect("linux.mountLabel", linux.mountLabel, "string")
  if mount_label and mount_label ~= "" then spec.selinux_mount_label = mount_label end
  spec.hostname = expect("hostname", config.hostname, "string")
  if spec.hostname == "" then spec.hostname = nil end
  spec.domainname = expect("domainname", config.domainname, "string")
  if spec.domainname == "" then spec.domainname = nil end
  local sysctl = expect("linux.sysctl", linux.sysctl, "table")
  if sysctl and next(sysctl) then
    spec.sysctl = {}
    for k, v in pairs(sysctl) do
      if type(v) ~= "string" then refuse("linux.sysctl." .. tostring(k), "string expected") end
      spec.sysctl[k] = v
    end
  end
  local personality = expect("linux.personality", linux.personality, "table")
  if personality then
    local domains = { LINUX = "linux", LINUX32 = "linux32" }
    if not domains[personality.domain] then refuse("linux.personality.domain", "LINUX or LINUX32 expected") end
    if #strings("linux.personality.flags", personality.flags) > 0 then refuse("linux.personality.flags", "no flags are supported") end
    spec.personality = domains[personality.domain]
  end
  local offsets = expect("linux.timeOffsets", linux.timeOffsets, "table")
  if offsets and next(offsets) then
    if not new_ns.time then refuse("linux.timeOffsets", "needs a new time namespace") end
    spec.time = {}
    for clock, o in pairs(offsets) do
      if clock ~= "monotonic" and clock ~= "boottime" then refuse("linux.timeOffsets", "unknown clock %s", tostring(clock)) end
      spec.time[clock] = (expect_integer("linux.timeOffsets." .. clock .. ".secs", o.secs) or 0)
        + (expect_integer("linux.timeOffsets." .. clock .. ".nanosecs", o.nanosecs, 0, 999999999) or 0) / 1e9
    end
  end
end

-- ---- hooks ----------------------------------------------------------------------------------------------------

local HOOK_KINDS = { "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop" }

--- hooks: {kind = {{path =, args =, env =, timeout =}...}}, validated; env stays nil when the config gives none
-- (the hook then gets the environment of whatever runs it, as in runc), an empty list is an empty environment.
-- @tparam table hooks
-- @treturn table
function M.hooks(hooks)
  hooks = expect("hooks", hooks, "table") or {}
  local out = {}
  for _, kind in ipairs(HOOK_KINDS) do
    out[kind] = {}
    for i, h in ipairs(expect("hooks." .. kind, hooks[kind], "table") or {}) do
      local field = ("hooks.%s[%d]"):format(kind, i - 1)
      if type(h) ~= "table" then refuse(field, "object expected") end
      local env = nil
      if h.env ~= nil and h.env ~= json.null then env = strings(field .. ".env", h.env) end
      out[kind][i] = { path = absolute(field .. ".path", h.path), args = strings(field .. ".args", h.args),
        env = env, timeout = expect_integer(field .. ".timeout", h.timeout, 1, 86400) }
    end
  end
  return out
end

-- ---- the whole config -----------------------------------------------------------------------------------------

local function check_version(v)
  if type(v) ~= "string" or not v:match("^1%.[0-2]%.%d+") then
    refuse("ociVersion", "1.0.x to 1.2.x expected, got %s", tostring(v))
  end
end

--- Reads and decodes BUNDLE/config.json (integers exactly, unsigned 64-bit ones included).
-- @tparam string bundle
-- @treturn table
function M.read(bundle)
  local f, msg = io.open(bundle .. "/config.json", "rb")
  if not f then errors.raise{ op = "config", code = "ENOENT", msg = "open config.json: " .. tostring(msg) } end
  local text = f:read("a")
  f:close()
  local ok, config = pcall(json.decode, text, { uint64 = true })
  if not ok then errors.raise{ op = "config", code = "EINVAL", msg = "config.json: " .. tostring(config) } end
  if type(config) ~= "table" then errors.raise{ op = "config", code = "EINVAL", msg = "config.json: an object expected" } end
  return config
end

--- The sandbox spec of a container, and what the runtime itself needs: {joined = {[ns] = path}, terminal =
-- {terminal, rows, cols}, hooks = {...}, resources = linux.resources, cgroups_path = string}.
-- @tparam table config decoded config.json
-- @tparam table opts {bundle = absolute path, warn = function(msg), capabilities = {name = true}}
-- @treturn table spec
-- @treturn table the rest
function M.translate(config, opts)
  check_version(config.ociVersion)
  local spec = {
    -- What lunas adds to a sandbox by default, none of it in an OCI container: it gets what config.json says.
    as_pid_1 = true, die_with_parent = false, new_session = true, abstract_sockets = "host", keyring = "private",
    close_fds = true,
  }
  local linux = expect("linux", config.linux, "table") or {}
  local joined, new_ns = M.namespaces(spec, linux.namespaces)
  M.id_mappings(spec, linux, new_ns, joined)
  local terminal = M.process(spec, expect("process", config.process, "table") or refuse("process", "required"), opts)
  local devices = M.tree(spec, config, opts.bundle, new_ns, terminal)
  misc(spec, config, new_ns)
  local agent
  spec.seccomp, agent = M.seccomp(linux.seccomp)
  local cgroups_path = expect("linux.cgroupsPath", linux.cgroupsPath, "string")
  return spec, { joined = joined, new_namespaces = new_ns, terminal = terminal, hooks = M.hooks(config.hooks),
    resources = M.device_rules(expect("linux.resources", linux.resources, "table"), devices), cgroups_path = cgroups_path,
    annotations = expect("annotations", config.annotations, "table"), seccomp_agent = agent }
end

return M
