--- Sandboxes: a validated spec executed as an ordered list of steps.
--
-- lunas.sandbox(spec):run() / :spawn(). Each step may act in four places:
--   prepare(ctx)        parent, before the clone (decide, open what the child inherits)
--   parent(ctx, proc)   parent, after the clone, while the child waits to be released
--   init(ctx)           the first child (PID 1 with a pid namespace): namespace-wide set-up
--   payload(ctx)        the process that becomes the payload, last thing before exec
--   finish(ctx, result) parent, once the sandbox is over (result nil when it was killed unwaited): collect, release
--   abort(ctx)          parent, when the spawn fails after prepare: undo what prepare made
-- A step function returns nothing (or true) on success and nil, message, ENAME on failure; the failure is
-- reported through the error pipe and the parent raises "sandbox: <step>: <message>". Later areas (mounts,
-- network, cgroups, capabilities, seccomp, landlock) plug in with M.add_step.
-- Once released, the child goes back to its parent at most once: with spec.hooks, its tree's build stops before
-- the root switch, says "ready" on a socket pair and waits until the parent's before_pivot has run (an OCI
-- runtime's createRuntime hooks).
-- @module lunas.sandbox
local core = require "lunas.core"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"
local fs = require "lunas.fs"
-- Loaded on first use: a sandbox with no capability kept, no filter of its own and no range of host ids (what
-- bubblewrap's callers ask for) starts faster without them.
local function lazy(name)
  return setmetatable({}, { __index = function(proxy, key)
    local module = require(name)
    setmetatable(proxy, { __index = module })
    return module[key]
  end })
end
local idrange = lazy "lunas.idrange"
local security = lazy "lunas.security"
local firewall = lazy "lunas.firewall"
local egress = lazy "lunas.egress"

errors.register_module()

local M = {}

local DEFAULT_NAMESPACES = { "user", "pid", "mount", "uts", "ipc", "net", "cgroup" }
local NAMESPACE_NAMES = { user = "user", pid = "pid", mount = "mount", mnt = "mount", uts = "uts", ipc = "ipc",
  net = "net", cgroup = "cgroup", time = "time" }
local DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
local KEPT_ENV = { "TERM", "PATH", "HOME", "LANG" }
-- Exit code of a sandbox child whose set-up failed (the payload never ran).
local SETUP_FAILED = 125

-- ---- spec validation ---------------------------------------------------------------------------------------

local function misuse(field, fmt, ...)
  errors.raise{ op = "sandbox", msg = ("sandbox: field '%s': " .. fmt):format(field, ...), code = "EINVAL", field = field }
end

local function expect_type(field, value, kind)
  if type(value) ~= kind then misuse(field, "%s expected, got %s", kind, type(value)) end
  return value
end

local function expect_id(field, value)
  if math.type(value) ~= "integer" or value < 0 or value > 0xfffffffe then
    misuse(field, "id in [0, 4294967294] expected, got %s", tostring(value))
  end
  return value
end

local function expect_strings(field, value, min)
  expect_type(field, value, "table")
  if #value < (min or 0) then misuse(field, "at least %d entries expected", min) end
  for i, s in ipairs(value) do
    if type(s) ~= "string" then misuse(field, "entry %d: string expected, got %s", i, type(s)) end
    if s:find("\0", 1, true) then misuse(field, "entry %d contains a NUL byte", i) end
  end
  for k in pairs(value) do
    if math.type(k) ~= "integer" or k < 1 or k > #value then misuse(field, "array of strings expected") end
  end
  return value
end

local function parse_namespaces(field, value)
  local set = {}
  local names = {}
  if type(value) == "string" then
    for name in value:gmatch("[^,%s]+") do names[#names + 1] = name end
  elseif type(value) == "table" then
    names = value
  else
    misuse(field, "string or table of names expected, got %s", type(value))
  end
  for _, name in ipairs(names) do
    local canonical = NAMESPACE_NAMES[name]
    if not canonical then misuse(field, "unknown namespace '%s'", tostring(name)) end
    set[canonical] = true
  end
  return set
end

local function expect_map(field, value)
  expect_type(field, value, "table")
  if #value < 1 or #value > 340 then misuse(field, "1 to 340 ranges expected") end
  for i, range in ipairs(value) do
    if type(range) ~= "table" or #range ~= 3 then misuse(field, "range %d: {inside, outside, count} expected", i) end
    for k = 1, 3 do expect_id(("%s[%d][%d]"):format(field, i, k), range[k]) end
    if range[3] < 1 then misuse(field, "range %d: count must be at least 1", i) end
  end
  return value
end

local function expect_fd(field, value)
  if value == "null" or value == "inherit" then return value end
  if math.type(value) == "integer" and value >= 0 then return value end
  if type(value) == "userdata" and pcall(function() return value:fileno() end) then return value end
  misuse(field, "file descriptor, 'null' or 'inherit' expected, got %s", tostring(value))
end

local RLIMIT_NAMES = { as = true, core = true, cpu = true, data = true, fsize = true, locks = true, memlock = true,
  msgqueue = true, nice = true, nofile = true, nproc = true, rss = true, rtprio = true, rttime = true,
  sigpending = true, stack = true }

local function expect_limit(field, v)
  if v == "unlimited" or v == math.huge then return v end
  if math.type(v) ~= "integer" or v < 0 then misuse(field, "non-negative integer or 'unlimited' expected") end
  return v
end

local function expect_rlimits(field, value)
  expect_type(field, value, "table")
  local out = {}
  for name, v in pairs(value) do
    if not RLIMIT_NAMES[name] then misuse(field, "unknown resource '%s'", tostring(name)) end
    local sub = field .. "." .. name
    if type(v) == "table" then
      out[name] = { expect_limit(sub, v[1] or v.soft), expect_limit(sub, v[2] or v.hard or v[1] or v.soft) }
    else
      out[name] = { expect_limit(sub, v), expect_limit(sub, v) }
    end
  end
  return out
end

local function expect_env(field, value)
  expect_type(field, value, "table")
  for k, v in pairs(value) do
    if type(k) ~= "string" or k == "" or k:find("[=%z]") then misuse(field, "bad variable name '%s'", tostring(k)) end
    if type(v) ~= "string" then misuse(field, "value of %s: string expected, got %s", k, type(v)) end
  end
  return value
end

local function expect_time(field, value)
  expect_type(field, value, "table")
  for k, v in pairs(value) do
    if k ~= "monotonic" and k ~= "boottime" then misuse(field, "unknown clock '%s'", tostring(k)) end
    if type(v) ~= "number" then misuse(field, "%s: number of seconds expected", k) end
  end
  return value
end

local function expect_positive(field, value)
  if type(value) ~= "number" or not (value > 0) then misuse(field, "positive number of seconds expected") end
  return value
end

-- A descriptor object (lunas.core fd), not a number: the sandbox reads, polls or passes it on itself.
local function expect_fd_object(field, value)
  if not (type(value) == "userdata" and pcall(function() return value:fileno() end)) then
    misuse(field, "a descriptor (lunas.core fd) expected, got %s", tostring(value))
  end
  return value
end

local function expect_fds(field, value)
  expect_type(field, value, "table")
  for i, fd in ipairs(value) do expect_fd(("%s[%d]"):format(field, i), fd) end
  return value
end

local function boolean(field, value) return expect_type(field, value, "boolean") end

-- An LSM label: a profile name or a security context, one line of text.
local function label_field(field, value)
  if type(value) ~= "string" or value == "" or value:find("[%z\n]") or #value > 4095 then
    misuse(field, "a label (one line, 1 to 4095 bytes) expected, got %s", tostring(value))
  end
  return value
end

-- A validator of a field that takes one of two words.
local function one_of(a, b)
  return function(field, value)
    if value ~= a and value ~= b then misuse(field, "'%s' or '%s' expected, got %s", a, b, tostring(value)) end
    return value
  end
end
local function string_field(field, value)
  expect_type(field, value, "string")
  if value:find("\0", 1, true) then misuse(field, "contains a NUL byte") end
  return value
end

-- "10.0.0.9/24", "fd00::9/64" (with_prefix) or a bare address: the shape only; the kernel has the last word.
local function valid_address(text, with_prefix)
  local host, prefix = text:match("^([^/]+)/(%d+)$")
  if not host then
    if with_prefix then return false end
    host = text
  end
  local max = host:find(":", 1, true) and 128 or 32
  if prefix and tonumber(prefix) > max then return false end
  if max == 128 then return host:match("^[%x:.]+$") ~= nil end
  local parts = { host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then return false end
  for _, p in ipairs(parts) do if tonumber(p) > 255 then return false end end
  return true
end

-- The spec schema: every field a sandbox accepts, with its validator. Areas extend it with M.add_field.
local fields = {
  argv = function(f, v) return expect_strings(f, v, 1) end,
  fn = function(f, v) return expect_type(f, v, "function") end,
  argv0 = string_field,
  -- The sandbox's name: it gets a record (lunas.sandbox_record) that lunas ps, top, stats and events show,
  -- unique among running sandboxes. {prefix = "judge"}: a free name made from it (judge-PID, or judge-PID-RANDOM
  -- when that one is taken), never a refusal.
  name = function(f, v)
    if type(v) == "table" then
      for k in pairs(v) do if k ~= "prefix" then misuse(f, "unknown field '%s'", tostring(k)) end end
      if type(v.prefix) ~= "string" or #v.prefix > 40 or not require("lunas.sandbox_record").valid_name(v.prefix) then
        misuse(f .. ".prefix", "1 to 40 letters, digits, '.', '_' or '-' expected (not starting with '.' or '-'), got %s",
          tostring(v.prefix))
      end
      return { prefix = v.prefix }
    end
    if not require("lunas.sandbox_record").valid_name(v) then
      misuse(f, "1 to 64 letters, digits, '.', '_' or '-' expected (not starting with '.' or '-'), got %s", tostring(v))
    end
    return v
  end,
  namespaces = parse_namespaces,
  uid = expect_id,
  gid = expect_id,
  uid_map = expect_map,
  -- Root runs the sandbox with its own ids: the sandbox's root is the host's root (no range of host ids).
  host_root = boolean,
  gid_map = expect_map,
  setgroups = boolean,
  groups = function(f, v)
    expect_type(f, v, "table")
    for i, g in ipairs(v) do expect_id(("%s[%d]"):format(f, i), g) end
    return v
  end,
  hostname = string_field,
  domainname = string_field,
  env = expect_env,
  clearenv = boolean,
  keep_env = function(f, v) if v == true then return v end return expect_strings(f, v) end,
  unsetenv = function(f, v) return expect_strings(f, v) end,
  cwd = string_field,
  rlimits = expect_rlimits,
  die_with_parent = boolean,
  new_session = boolean,
  as_pid_1 = boolean,
  timeout = expect_positive,
  time = expect_time,
  rootfs = string_field,
  mounts = function(_, v) return fs.check_mounts(v) end,
  harden = boolean,
  -- "none" (the default: drop every capability), "keep", names to keep, or {add = names, drop = names}.
  caps = function(f, v) return security.check_caps(f, v) end,
  -- The default profile (nil), false for no filter, or a profile table (lunas.security).
  seccomp = function(f, v) return security.check_profile(f, v) end,
  landlock = function(f, v) return security.check_landlock(f, v) end,
  no_new_privs = boolean,
  -- "own" (the default): without a network namespace of its own, the sandbox reaches only the abstract unix
  -- sockets it made (Landlock); "host": those of the namespace it shares too.
  abstract_sockets = one_of("own", "host"),
  -- "private" (the default): a new, empty session keyring; "inherit": the caller's (its keys reachable where
  -- the seccomp profile allows keyctl).
  keyring = one_of("private", "inherit"),
  loopback = boolean,
  -- "none": a network namespace of its own with lo up (the default); "host": the caller's network; or a lab
  -- node (lunas.net): the sandbox joins that host's namespace.
  -- A lab switch (or {switch = s, address = "10.0.0.9/24", gateway = "10.0.0.1", name = "eth0"}): a network
  -- namespace of its own, plugged into that switch.
  -- "nat" (root): egress through a veth pair and a masquerade in the caller's network; "pasta": egress through
  -- Debian's pasta (passt), rootless too (lunas.egress).
  net = function(f, v)
    if v == "none" or v == "host" or v == "nat" or v == "pasta" then return v end
    if type(v) == "table" and type(v.netns) == "function" then
      if v.kind == "switch" then return { switch = v } end
      return v
    end
    if type(v) == "table" and type(v.switch) == "table" and v.switch.kind == "switch" then
      for k, value in pairs(v) do
        if k ~= "switch" and k ~= "address" and k ~= "gateway" and k ~= "name" then misuse(f, "unknown field '%s'", tostring(k)) end
        if k ~= "switch" and type(value) ~= "string" then misuse(f .. "." .. k, "string expected, got %s", type(value)) end
      end
      if v.address and not valid_address(v.address, true) then misuse(f .. ".address", "bad address '%s'", v.address) end
      if v.gateway and not valid_address(v.gateway, false) then misuse(f .. ".gateway", "bad address '%s'", v.gateway) end
      if v.name and (#v.name < 1 or #v.name > 15 or v.name:find("[%s/:]")) then misuse(f .. ".name", "bad interface name '%s'", v.name) end
      return { switch = v.switch, address = v.address, gateway = v.gateway, name = v.name or "eth0" }
    end
    misuse(f, "'none', 'host', 'nat', 'pasta', a lab host or a lab switch expected, got %s", tostring(v))
  end,
  -- Rules for the sandbox's own network namespace (lunas.firewall), applied before the payload runs.
  firewall = function(f, v)
    local ok, fw = pcall(firewall.check, v)
    if not ok then
      if not errors.is(fw) then error(fw, 0) end
      local field = (fw.field and fw.field ~= "firewall") and (f .. "." .. fw.field) or f
      misuse(field, "%s", fw.msg:match("^firewall[^:]*: (.*)$") or fw.msg)
    end
    return fw
  end,
  stdin = expect_fd,
  stdout = expect_fd,
  stderr = expect_fd,
  close_fds = boolean,
  keep_fds = expect_fds,
  -- Descriptors of the caller the payload never gets, even with close_fds = false (a front end's own).
  private_fds = function(f, v)
    expect_type(f, v, "table")
    for i, fd in ipairs(v) do
      if math.type(fd) ~= "integer" or fd < 0 then misuse(("%s[%d]"):format(f, i), "a descriptor number expected") end
    end
    return v
  end,
  -- Raw seccomp programs (BPF bytes, as seccomp_export_bpf writes them), loaded in order after the profile's:
  -- bubblewrap's --seccomp and --add-seccomp-fd.
  seccomp_programs = function(f, v)
    expect_type(f, v, "table")
    for i, program in ipairs(v) do
      local name = ("%s[%d]"):format(f, i)
      if type(program) ~= "string" then misuse(name, "BPF bytes expected, got %s", type(program)) end
      if #program == 0 or #program % 8 ~= 0 or #program > 8 * 4096 then
        misuse(name, "1 to 4096 instructions of 8 bytes expected, got %d bytes", #program)
      end
    end
    return v
  end,
  -- Files inside the sandbox on which its PID 1 holds a shared record lock (fcntl) while the sandbox lives, and a
  -- descriptor it keeps open until then (bubblewrap's --lock-file and --sync-fd): the payload gets neither.
  lock_files = function(f, v) return expect_strings(f, v) end,
  sync_fd = function(f, v)
    if math.type(v) ~= "integer" or v < 0 then misuse(f, "a descriptor number expected, got %s", tostring(v)) end
    return v
  end,
  -- The payload waits until a byte (or end of file) can be read from this descriptor, once the sandbox is set up
  -- (bubblewrap's --block-fd).
  block_fd = function(f, v)
    if math.type(v) ~= "integer" or v < 0 then misuse(f, "a descriptor number expected, got %s", tostring(v)) end
    return v
  end,
  -- PWD names the working directory, which is HOME when the caller's is not in the tree (bubblewrap's way).
  set_pwd = boolean,
  -- With a pid namespace: PID 1 stays until every process of the sandbox has ended, and wait returns when the
  -- payload does, leaving the rest running (bubblewrap's way); without it the sandbox ends with its payload.
  linger = boolean,
  -- The sandbox is made in a pid namespace its maker joined (bubblewrap's --pidns): a "proc" entry mounts a procfs
  -- of it, as of a pid namespace the sandbox made.
  pid_namespace_joined = boolean,
  -- "disable": the payload cannot make user namespaces (bubblewrap's --disable-userns: a limit of 1 set in the
  -- sandbox's user namespace, then a nested one it cannot change that limit from); "assert": fail unless making
  -- one is already refused (--assert-userns-disabled).
  nested_userns = one_of("disable", "assert"),
  -- Another program writes the maps of the sandbox's user namespace (newuidmap, say; bubblewrap's
  -- --userns-block-fd): lunas writes none, and the sandbox waits until before_release returns.
  external_maps = boolean,
  -- function(pid): called in the parent once the sandbox's first process exists, before it goes on (its maps
  -- not written yet when external_maps): a front end reports it, or waits for the program that writes its maps.
  before_release = function(f, v) return expect_type(f, v, "function") end,
  -- A user namespace (a descriptor) the sandbox's first process enters once its tree is built (bubblewrap's
  -- --userns2): one nested in the one the sandbox was made in.
  enter_userns = expect_fd,
  -- The sandbox is made in a user namespace its caller joined (setns, as an OCI runtime joins a pod's): its first
  -- process becomes that namespace's root (uid and gid 0, which the namespace must map) before anything else.
  joined_userns = boolean,
  -- {process = handle (lunas.core pidfd), kinds = "user,mount"}: the first process joins those namespaces of that
  -- process before anything else (an OCI runtime's exec; the others its caller joined before the clone).
  enter = function(f, v)
    expect_type(f, v, "table")
    for k in pairs(v) do
      if k ~= "process" and k ~= "kinds" then misuse(f, "unknown field '%s'", tostring(k)) end
    end
    if type(v.process) ~= "userdata" then misuse(f .. ".process", "a process handle expected") end
    if type(v.kinds) ~= "string" then misuse(f .. ".kinds", "namespace names expected") end
    return v
  end,
  -- A cgroup (lunas.cgroup object) the sandbox runs in, made and removed by its caller (an OCI runtime's
  -- cgroupsPath): the sandbox neither limits nor removes it.
  cgroup = function(f, v)
    if not require("lunas.cgroup").is_cgroup(v) then misuse(f, "a lunas.cgroup object expected, got %s", type(v)) end
    return v
  end,
  -- A descriptor the payload waits on, its set-up done, until a byte can be read (an OCI runtime's start). The
  -- sandbox counts as started once it waits there: its executable was found, and later failures go to its
  -- stderr.
  start_gate = expect_fd_object,
  -- The payload's terminal: a new pseudo-terminal of the sandbox's own devpts (the one its tree has at `devpts`,
  -- "/dev/pts" by default), whose slave becomes the payload's stdin, stdout, stderr and controlling terminal in
  -- its new session. {socket = fd, message = "/dev/ptmx", rows =, cols =, devpts =}: the master goes to `socket`
  -- in one SCM_RIGHTS message carrying `message` (an OCI console socket), before the payload is released. A
  -- {"console", DEST} mount entry binds the slave on DEST as well.
  terminal = function(f, v)
    expect_type(f, v, "table")
    local known = { socket = true, message = true, rows = true, cols = true, devpts = true }
    for k in pairs(v) do
      if not known[k] then misuse(f, "unknown field '%s'", tostring(k)) end
    end
    expect_fd_object(f .. ".socket", v.socket)
    -- (what send_fd carries)
    if v.message ~= nil and (type(v.message) ~= "string" or #v.message < 1 or #v.message > 65536) then
      misuse(f .. ".message", "1 to 65536 bytes expected")
    end
    for _, k in ipairs{ "rows", "cols" } do
      if v[k] ~= nil and (math.type(v[k]) ~= "integer" or v[k] < 0 or v[k] > 65535) then
        misuse(f .. "." .. k, "an integer 0 to 65535 expected, got %s", tostring(v[k]))
      end
    end
    if (v.rows == nil) ~= (v.cols == nil) then misuse(f .. ".rows", "rows and cols go together") end
    if v.devpts ~= nil and (type(v.devpts) ~= "string" or v.devpts:sub(1, 1) ~= "/" or v.devpts:find("%z")) then
      misuse(f .. ".devpts", "an absolute path expected")
    end
    return v
  end,
  -- Descriptor the payload writes one record to once its start gate opened (an OCI runtime's `start` reads it):
  -- "0" when the rest of its set-up (before_exec) is done and it goes on to exec, else the failed step
  -- (`start_report_result` reads it). Needs start_gate.
  start_report = expect_fd_object,
  -- Functions called at points of the sandbox's making (an OCI runtime's hooks):
  --   before_pivot(pid): in the caller, once the child's namespaces exist and its tree is built up to a
  --     {"hooks"} entry of mounts (else up to its end), before its root switch; the child waits meanwhile.
  --     It raises to fail the sandbox; a string it returns goes to before_pivot_inside.
  --   before_pivot_inside(data, env): in the child, right after, in the sandbox's namespaces with the host's tree
  --     as its root and the sandbox's tree mounted at rootfs (a directory); env is the payload's environment.
  --   before_exec(env): in the payload, once its start gate opened (or last before seccomp and exec).
  -- The last two return true or nil, message, ENAME (or raise): the sandbox fails at step before_pivot or
  -- before_exec with that message.
  hooks = function(f, v)
    expect_type(f, v, "table")
    for k, fn in pairs(v) do
      if k ~= "before_pivot" and k ~= "before_pivot_inside" and k ~= "before_exec" then
        misuse(f, "unknown hook '%s'", tostring(k))
      end
      expect_type(f .. "." .. k, fn, "function")
    end
    return v
  end,
  -- Linux security module labels (lunas.lsm): the AppArmor profile and the SELinux context the payload execs under,
  -- and the SELinux context of the sandbox's new mounts (their context= option). The kernel must run that module
  -- (and have the profile loaded): else the spawn fails naming the field.
  apparmor = label_field,
  selinux_label = label_field,
  selinux_mount_label = label_field,
  -- The payload's umask (0 to 0777).
  umask = function(f, v)
    if math.type(v) ~= "integer" or v < 0 or v > 511 then misuse(f, "a mode 0 to 0777 expected, got %s", tostring(v)) end
    return v
  end,
  -- The payload's execution domain: "linux" or "linux32" (uname -m says i686).
  personality = one_of("linux", "linux32"),
  -- Kernel settings of the sandbox's own namespaces: {["net.ipv4.ip_forward"] = "1"}. Only settings that belong
  -- to a namespace the sandbox has of its own (net.*; kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* with ipc;
  -- kernel.hostname and kernel.domainname with uts): any other would change the host's.
  sysctl = function(f, v)
    expect_type(f, v, "table")
    for k, value in pairs(v) do
      if type(k) ~= "string" or not k:match("^[%w_%-]+[%w_%-%.]*$") or k:find("..", 1, true) then
        misuse(f, "bad setting name '%s'", tostring(k))
      end
      if type(value) ~= "string" or value:find("%z") then misuse(f .. "." .. k, "string expected") end
    end
    return v
  end,
  -- The OOM killer's preference for the sandbox (-1000 to 1000).
  oom_score_adj = function(f, v)
    if math.type(v) ~= "integer" or v < -1000 or v > 1000 then misuse(f, "an integer -1000 to 1000 expected") end
    return v
  end,
  -- The propagation of the sandbox's root once built: "private" (the default), "rprivate", "shared", "rshared",
  -- "slave", "rslave", "unbindable" or "runbindable".
  root_propagation = function(f, v)
    local kinds = { private = true, shared = true, slave = true, unbindable = true }
    if type(v) ~= "string" or not (kinds[v] or (v:sub(1, 1) == "r" and kinds[v:sub(2)])) then
      misuse(f, "private, shared, slave or unbindable (or an r- form) expected, got %s", tostring(v))
    end
    return v
  end,
  -- {memory = "256M", pids = 64, cpu = 0.5, io = {...}, ... (lunas.cgroup limits), best_effort = true}:
  -- the sandbox runs in a cgroup of its own; best_effort turns a limit the host cannot enforce into a warning.
  limits = function(f, v)
    expect_type(f, v, "table")
    local values = {}
    for k, value in pairs(v) do
      if k ~= "best_effort" then values[k] = value end
    end
    if v.best_effort ~= nil then boolean(f .. ".best_effort", v.best_effort) end
    return { values = require("lunas.cgroup").check_limits(values, f), best_effort = v.best_effort == true }
  end,
}

--- Adds a spec field (for areas that plug in): validator(field, value) returns the normalized value or raises.
-- @tparam string name
-- @tparam function validator
function M.add_field(name, validator)
  assert(not fields[name], "sandbox field already defined: " .. name)
  fields[name] = validator
end

local function validate(spec)
  if type(spec) ~= "table" then errors.raise{ msg = "sandbox: spec table expected, got " .. type(spec), code = "EINVAL" } end
  local out = {}
  for k, v in pairs(spec) do
    local check = type(k) == "string" and fields[k]
    if not check then
      errors.raise{ msg = ("sandbox: unknown field '%s'"):format(tostring(k)), code = "EINVAL", field = tostring(k) }
    end
    out[k] = check(k, v)
  end
  if (out.argv == nil) == (out.fn == nil) then misuse("argv", "exactly one of 'argv' and 'fn' expected") end
  if out.seccomp == nil then out.seccomp = security.check_profile("seccomp", nil) end
  if out.caps == nil then out.caps = {} end
  if out.cgroup and out.limits then misuse("cgroup", "goes without limits (its caller limits it)") end
  out.namespaces = out.namespaces or parse_namespaces("namespaces", DEFAULT_NAMESPACES)
  if out.linger and out.limits then misuse("linger", "goes without limits (the sandbox's cgroup goes with its payload)") end
  if out.net == "none" and not out.namespaces.net then misuse("net", "'none' needs the net namespace") end
  if out.joined_userns and out.namespaces.user then misuse("joined_userns", "goes without a user namespace of its own") end
  if out.terminal then
    if out.new_session == false then misuse("terminal", "needs a new session (new_session = false given)") end
    for _, k in ipairs{ "stdin", "stdout", "stderr" } do
      if out[k] ~= nil and out[k] ~= "inherit" then misuse(k, "goes without terminal (the terminal is the payload's %s)", k) end
    end
  end
  for _, e in ipairs(out.mounts or {}) do
    if e.kind == "console" and not out.terminal then misuse("mounts", "entry %d: a console entry needs terminal", e.index) end
  end
  if type(out.net) == "table" and out.net.switch then
    if not out.namespaces.net then misuse("net", "a switch needs the net namespace") end
  elseif (out.net == "nat" or out.net == "pasta") then
    if not out.namespaces.net then misuse("net", "'%s' needs the net namespace", out.net) end
  elseif out.net ~= nil and out.net ~= "none" then
    out.namespaces.net = nil
  end
  if out.firewall and not out.namespaces.net then
    misuse("firewall", "needs a network namespace of the sandbox's own (net = 'host' or a lab host's shares one: use host:firewall there)")
  end
  return out
end

-- ---- the environment -------------------------------------------------------------------------------------

--- This process's whole environment as a table {NAME = value} (no portable way to list it from Lua: our own
-- /proc entry).
-- @treturn table
function M.caller_environment()
  local env = {}
  local f = io.open("/proc/self/environ", "rb")
  if not f then return env end
  for entry in f:read("a"):gmatch("([^%z]+)") do
    local k, v = entry:match("^([^=]+)=(.*)$")
    if k then env[k] = v end
  end
  f:close()
  return env
end

local function build_environment(spec)
  local env = {}
  if not spec.clearenv then
    local keep = spec.keep_env or KEPT_ENV
    if keep == true then
      env = M.caller_environment()
    else
      for _, k in ipairs(keep) do env[k] = os.getenv(k) end
    end
  end
  for _, k in ipairs(spec.unsetenv or {}) do env[k] = nil end
  for k, v in pairs(spec.env or {}) do env[k] = v end
  -- A PATH for the search, unless the spec removed it on purpose.
  if env.PATH == nil and not spec.clearenv and not (spec.unsetenv and table.concat(spec.unsetenv, "\0"):find("%f[^%z]PATH%f[%z]")) then
    env.PATH = DEFAULT_PATH
  end
  return env
end

-- ---- steps -----------------------------------------------------------------------------------------------

local steps = {}
--- The steps every sandbox runs, in order: tables `{name = "mounts", prepare =, parent =, init =, payload =,
-- finish =, abort =}` (see the module's description). Extend it with add_step.
M.steps = steps

-- The freestanding reaper program in a sealed memfd: one per process that spawns sandboxes.
local reaper_image, reaper_image_pid
local function get_reaper_image()
  if reaper_image_pid ~= core.getpid() then
    reaper_image, reaper_image_pid = core.reaper_image(), core.getpid()
  end
  return reaper_image
end

--- Inserts a step; where = {before = "name"} or {after = "name"}; appended before "exec" by default.
-- @tparam table step `{name = ..., prepare = fn, ...}`
-- @tparam[opt] table where
function M.add_step(step, where)
  assert(type(step.name) == "string", "step needs a name")
  local anchor, offset = "exec", 0
  if where and where.before then anchor = where.before elseif where and where.after then anchor, offset = where.after, 1 end
  for i, s in ipairs(steps) do
    if s.name == anchor then
      table.insert(steps, i + offset, step)
      return
    end
  end
  error("sandbox: no step named '" .. anchor .. "'", 2)
end

-- A failure to inject at one step's phase (fault tests: M._inject): {step = name, phase = "prepare" | "parent" |
-- "init" | "payload"} or nil.
local injected

-- For fault tests only: from now on the step named `step` fails at `phase` ("prepare", "parent", "init" or
-- "payload") with "injected failure" (EIO), as a real failure there would; M._inject() stops it. Internal.
function M._inject(step, phase)
  if step == nil then
    injected = nil
    return
  end
  if phase ~= "prepare" and phase ~= "parent" and phase ~= "init" and phase ~= "payload" then
    error("sandbox._inject: phase must be prepare, parent, init or payload", 2)
  end
  injected = { step = step, phase = phase }
end

local function injected_at(name, phase)
  return injected ~= nil and injected.step == name and injected.phase == phase
end

-- Runs one step's function for a phase, or fails it as injected.
local function call_step(step, phase, ...)
  if injected_at(step.name, phase) then
    if phase == "prepare" then
      errors.raise{ op = "sandbox", step = step.name, msg = ("sandbox: %s: injected failure"):format(step.name),
        code = "EIO" }
    end
    return nil, "injected failure", "EIO"
  end
  return step[phase](...)
end

local function close_all(...)
  for i = 1, select("#", ...) do
    local fd = select(i, ...)
    if fd then fd:close() end
  end
end

local function warn(ctx, msg)
  ctx.warnings[#ctx.warnings + 1] = msg
  io.stderr:write("lunas: warning: sandbox ", msg, "\n")
end

local function check_core(value, msg, code)
  if value == nil and msg then return nil, msg, code end
  return true
end

-- Another process's namespaces, joined first: the user namespace (whose capabilities the rest needs), then the
-- mount namespace (which makes its root ours).
steps[#steps + 1] = {
  name = "enter",
  prepare = function(ctx)
    if not ctx.spec.enter then return end
    if ctx.spec.rootfs or ctx.spec.mounts or next(ctx.ns) then
      misuse("enter", "goes without new namespaces, rootfs or mounts")
    end
    if ctx.spec.joined_userns then misuse("joined_userns", "goes without enter") end
    -- A copy of lunas, never one that shares its memory: it turns itself undumpable below.
    ctx.sync = true
  end,
  init = function(ctx)
    local enter = ctx.spec.enter
    if not enter then return end
    -- Inside the other process's namespaces, and until its exec, this process holds all of lunas's privileges
    -- and descriptors: nothing there may trace it (runc's CVE-2016-9962). Its exec makes it dumpable again.
    local ok, msg, code = core.prctl{ dumpable = false }
    if not ok then return nil, msg, code end
    if enter.kinds ~= "" then return check_core(core.setns(enter.process, enter.kinds)) end
  end,
}

-- The sandbox's cgroup: born in it on v2 (CLONE_INTO_CGROUP), moved into the v1 hierarchies before it is
-- released; its usage is read once it is over, and the cgroup (with anything left inside) removed.
steps[#steps + 1] = {
  name = "limits",
  prepare = function(ctx)
    local limits = ctx.spec.limits
    if ctx.spec.cgroup then
      ctx.cgroup, ctx.cgroup_borrowed = ctx.spec.cgroup, true
    elseif limits then
      -- (loaded here: a sandbox without limits never needs lunas.cgroup)
      ctx.cgroup = require("lunas.cgroup").new{ limits = limits.values, best_effort = limits.best_effort,
        warn = function(msg) io.stderr:write("lunas: warning: sandbox limits: ", msg, "\n") end }
    else
      return
    end
    ctx.cgroup_fd = ctx.cgroup:fd()
    if ctx.cgroup:has_v1() then
      ctx.sync = true
      -- A cgroup namespace made at clone time would be rooted at the v1 cgroups the child leaves a moment later:
      -- the child makes it once it has been moved.
      if ctx.ns.cgroup then ctx.late_cgroup_ns = true end
    end
  end,
  init = function(ctx)
    if ctx.late_cgroup_ns then return check_core(core.unshare("cgroup")) end
  end,
  parent = function(ctx, proc)
    if ctx.cgroup_fd then ctx.cgroup_fd:close() end
    if ctx.cgroup and ctx.cgroup:has_v1() then
      local ok, err = pcall(ctx.cgroup.attach, ctx.cgroup, proc.pid, { v1_only = true })
      if not ok then return nil, tostring(errors.is(err) and err.msg or err), errors.is(err) and err.code or nil end
    end
  end,
  finish = function(ctx, result)
    -- (still open when an earlier step's parent phase failed)
    if ctx.cgroup_fd then ctx.cgroup_fd:close() end
    local cg = ctx.cgroup
    if not cg or cg.closed or ctx.cgroup_borrowed then return end
    local read, usage = true, nil
    if result then
      read, usage = pcall(cg.stats, cg)
      if read then
        result.usage = usage
        result.oom_killed = usage.memory ~= nil and usage.memory.oom_kills > 0
      end
      if #cg.warnings > 0 then result.warnings = cg.warnings end
    end
    cg:close()
    if not read then error(usage, 0) end
  end,
  abort = function(ctx)
    if ctx.cgroup_fd then ctx.cgroup_fd:close() end
    if ctx.cgroup and not ctx.cgroup_borrowed then ctx.cgroup:close() end
  end,
}

-- The record of a named sandbox: its name taken before the clone (a running one of that name refuses the
-- spec), completed once the first process exists (pid, cgroup, namespaces), removed when it is over.
steps[#steps + 1] = {
  name = "record",
  prepare = function(ctx)
    local name = ctx.spec.name
    if not name then return end
    local sandbox_record = require "lunas.sandbox_record"
    if type(name) == "table" then
      ctx.record = sandbox_record.create_unique(name.prefix)
      name = ("%s-%d"):format(name.prefix, core.getpid())
    else
      ctx.record = sandbox_record.create(name)
    end
    if not ctx.record then
      warn(ctx, ("name: %s has no record (no place for one: /run/lunas for root, $XDG_RUNTIME_DIR/lunas for "
        .. "others): lunas ps does not show it"):format(name))
    end
  end,
  parent = function(ctx, proc)
    local record = ctx.record
    if not record then return end
    local own = {}
    for k in pairs(ctx.ns) do own[k] = true end
    local argv = ctx.spec.argv
    record:started{ pid = proc.pid, start = require("lunas.process").start_time(proc.pid), argv = argv,
      cgroup = ctx.cgroup and not ctx.cgroup.closed and ctx.cgroup:record() or nil,
      namespaces = core.ns_ids(proc.pid) or nil, own = own, firewall = ctx.spec.firewall ~= nil or nil }
  end,
  finish = function(ctx, result) if ctx.record then ctx.record:finish(result) end end,
  abort = function(ctx) if ctx.record then ctx.record:finish(nil) end end,
}

-- What the OOM killer thinks of the sandbox, set by the parent on its first process (which its children inherit).
steps[#steps + 1] = {
  name = "oom_score_adj",
  parent = function(ctx, proc)
    local value = ctx.spec.oom_score_adj
    if value == nil then return end
    local f, msg, code = core.open(("/proc/%d/oom_score_adj"):format(proc.pid), "w")
    if not f then return nil, msg, code end
    local ok
    ok, msg, code = f:write(tostring(value))
    f:close()
    if not ok then return nil, "oom_score_adj " .. value .. ": " .. msg, code end
  end,
}

steps[#steps + 1] = {
  name = "die_with_parent",
  prepare = function(ctx)
    if ctx.spec.die_with_parent ~= false then
      ctx.parent = errors.check(core.pidfd_open(core.getpid()))
    end
  end,
  init = function(ctx)
    if not ctx.parent then return end
    local ok, msg, code = core.prctl{ pdeathsig = "KILL" }
    if not ok then return nil, msg, code end
    -- The parent may have died before pdeathsig was armed.
    if not ctx.parent:alive() then return nil, "parent exited during set-up", "ESRCH" end
  end,
  payload = function(ctx)
    -- The payload is the reaper's child: without a pid namespace nothing else would take it down with us.
    if ctx.parent and ctx.fork then return check_core(core.prctl{ pdeathsig = "KILL" }) end
  end,
  -- Closed once the child has its copy; these two cover a set-up that failed before that.
  finish = function(ctx) if ctx.parent then ctx.parent:close() end end,
  abort = function(ctx) if ctx.parent then ctx.parent:close() end end,
}

-- Whether a map (ranges {inside, outside, count}) gives id a name inside (outside = true: id is a host id).
local function mapped(ranges, id, outside)
  for _, r in ipairs(ranges) do
    local first = outside and r[2] or r[1]
    if id >= first and id < first + r[3] then return true end
  end
  return false
end

-- The first child runs with lunas's own ids until it changes them, and maps written by the parent may not name
-- those (a range of host ids for root): files it creates while building the tree need an owner the namespace can
-- name. It becomes root inside when the maps have one, else the payload's ids; its capabilities stay (its old ids
-- were not the namespace's root). The parent's supplementary groups (host root's group 0 among them) go too.
local function become_mapped(ctx)
  local maps = ctx.parent_maps
  local uid = mapped(maps.uid, 0) and 0 or ctx.inside_uid
  local gid = mapped(maps.gid, 0) and 0 or ctx.inside_gid
  core.setgroups({})
  local ok, msg, code = core.setresgid(gid, gid, gid)
  if ok then ok, msg, code = core.setresuid(uid, uid, uid) end
  -- A change of ids makes a process undumpable, and /proc/self then belongs to the host's root: the steps ahead
  -- write there (timens_offsets). (A copy of lunas, never one that shares its memory: the maps needed a sync.)
  if ok then ok, msg, code = core.prctl{ dumpable = true } end
  return check_core(ok, msg, code)
end

-- In a user namespace its caller joined (an OCI pod's), the first child still has the caller's ids, which that
-- namespace may not map: what it makes in its tree would have no owner there (EOVERFLOW). It becomes that
-- namespace's root first, as runc's first process does; its capabilities there stay.
local function become_joined_root()
  -- (a namespace whose setgroups is "deny" refuses even an empty list: nothing to drop then)
  local ok, msg, code = core.setgroups({})
  if not ok and code ~= "EPERM" then return nil, msg, code end
  ok, msg, code = core.setresgid(0, 0, 0)
  if ok then ok, msg, code = core.setresuid(0, 0, 0) end
  if ok then ok, msg, code = core.prctl{ dumpable = true } end
  if not ok then return nil, "the joined user namespace's root: " .. msg, code end
  return true
end

local function release_range(ctx)
  if ctx.id_range then idrange.release(ctx.id_range) end
end

-- A user namespace needs maps. Root (in the initial user namespace) gives a sandbox a range of host ids of its
-- own unless the spec gives maps or asks for host_root; anyone else maps the payload's ids onto their own, the
-- child writing the maps itself when they are one id each.
steps[#steps + 1] = {
  name = "maps",
  prepare = function(ctx)
    local spec, ns = ctx.spec, ctx.ns
    if spec.external_maps then
      if not ns.user then misuse("external_maps", "needs a user namespace") end
      if not spec.before_release then misuse("external_maps", "needs before_release (where the maps get written)") end
      if spec.uid_map or spec.gid_map then misuse("external_maps", "goes without uid_map and gid_map") end
      return
    end
    local explicit = spec.uid_map or spec.gid_map
    if explicit and spec.host_root then misuse("host_root", "goes without uid_map and gid_map (the maps say where ids go)") end
    if not ns.user then
      if explicit then misuse("uid_map", "needs a user namespace") end
      if spec.uid == nil and not spec.host_root and idrange.initial_root() then
        misuse("namespaces", "without a user namespace the sandbox runs as the host's root: add 'user', set a uid, or "
          .. "say host_root = true")
      end
      return
    end
    local ids = core.ids()
    ctx.inside_uid, ctx.inside_gid = spec.uid or 0, spec.gid or 0
    if explicit then
      ctx.parent_maps = { uid = spec.uid_map or { { ctx.inside_uid, ids.euid, 1 } },
        gid = spec.gid_map or { { ctx.inside_gid, ids.egid, 1 } } }
    elseif not spec.host_root and idrange.initial_root() then
      for _, field in ipairs{ "uid", "gid" } do
        if ctx["inside_" .. field] >= idrange.SIZE then
          misuse(field, "a sandbox that root runs maps ids 0-%d onto a range of the host's: give uid_map and gid_map "
            .. "for more", idrange.SIZE - 1)
        end
      end
      ctx.id_range = idrange.acquire()
      local range = { { 0, ctx.id_range.base, idrange.SIZE } }
      ctx.parent_maps = { uid = range, gid = range }
    elseif spec.setgroups or spec.groups then
      -- setgroups inside: the parent writes the maps (privileged) or newuidmap does.
      ctx.parent_maps = { uid = { { ctx.inside_uid, ids.euid, 1 } }, gid = { { ctx.inside_gid, ids.egid, 1 } } }
    else
      -- One id each, our own: the child can write them itself, no round trip with the parent.
      ctx.self_maps = { uid = { { ctx.inside_uid, ids.euid, 1 } }, gid = { { ctx.inside_gid, ids.egid, 1 } },
        setgroups = "deny" }
      return
    end
    ctx.set_ids = true
    -- A privileged parent writes the maps as the clone returns, while the child waits (core.spawn's maps): no
    -- round trip after it, and the child may still borrow our memory. newuidmap needs the round trip.
    if ids.euid ~= 0 then ctx.sync = true end
    ctx.become_mapped = not mapped(ctx.parent_maps.uid, ids.euid, true) or not mapped(ctx.parent_maps.gid, ids.egid, true)
  end,
  parent = function(ctx, proc)
    if not ctx.parent_maps then return end
    if ctx.id_range then idrange.record(ctx.id_range, proc.pid) end
    if ctx.maps_written then return end
    if core.ids().euid == 0 then return check_core(core.id_maps(proc.pid, ctx.parent_maps)) end
    return M.helper_maps(proc.pid, ctx.parent_maps)
  end,
  init = function(ctx)
    if ctx.self_maps then return check_core(core.id_maps(0, ctx.self_maps)) end
    if ctx.become_mapped then return become_mapped(ctx) end
    if ctx.spec.joined_userns then return become_joined_root() end
  end,
  finish = release_range,
  abort = release_range,
}

local function find_program(name)
  -- Our PATH first, then the usual directories (a recipe may run with a bare environment).
  for dir in ((os.getenv("PATH") or "") .. ":" .. DEFAULT_PATH):gmatch("[^:]+") do
    local path = dir .. "/" .. name
    local f = io.open(path, "rb")
    if f then f:close() return path end
  end
end

--- Writes maps for an unprivileged parent through the setuid helpers newuidmap/newgidmap (package uidmap),
-- which check the ranges against /etc/subuid and /etc/subgid.
-- @tparam integer pid the child
-- @tparam table maps `{uid = ranges, gid = ranges}`, ranges as `lunas.core.id_maps` takes them
-- @return true, or nil, message, ENAME
function M.helper_maps(pid, maps)
  for _, kind in ipairs{ "uid", "gid" } do
    local program = find_program("new" .. kind .. "map")
    if not program then
      return nil, ("new%smap not found: ranges in %s_map need it (package uidmap)"):format(kind, kind), "ENOENT"
    end
    local argv = { program, tostring(pid) }
    for _, r in ipairs(maps[kind]) do
      argv[#argv + 1], argv[#argv + 2], argv[#argv + 3] = tostring(r[1]), tostring(r[2]), tostring(r[3])
    end
    local helper, msg, code = core.spawn{ argv = argv }
    if not helper then return nil, msg, code end
    local result = helper:wait()
    helper:close()
    if result.status ~= 0 then
      return nil, ("%s %d exited with %s (is the range in /etc/sub%s?)"):format(program, pid,
        result.status and ("status " .. result.status) or ("signal " .. tostring(result.signal)), kind), "EPERM"
    end
  end
  return true
end

steps[#steps + 1] = {
  name = "time",
  prepare = function(ctx)
    if ctx.spec.time then
      -- Offsets can only be written before a process enters the namespace: the first child unshares it,
      -- writes them, and the payload (its child) is the first to enter.
      ctx.time_offsets = ctx.spec.time
      ctx.fork = true
      if not ctx.ns.user and core.ids().euid ~= 0 then misuse("time", "needs a user namespace or root") end
    end
  end,
  init = function(ctx)
    if not ctx.time_offsets then return end
    local ok, msg, code = core.unshare("time")
    if not ok then return nil, msg, code end
    return check_core(core.timens_offsets(0, ctx.time_offsets))
  end,
}

-- What the nested user namespace needs from the host's /proc, opened before the tree replaces it.
steps[#steps + 1] = {
  name = "nested_userns_prepare",
  prepare = function(ctx)
    local v = ctx.spec.nested_userns
    if v == "disable" and not ctx.ns.user then misuse("nested_userns", "'disable' needs a user namespace") end
  end,
  init = function(ctx)
    if ctx.spec.nested_userns ~= "disable" then return end
    local msg, code
    ctx.proc_self, msg, code = core.open("/proc/self", "r")
    if not ctx.proc_self then return nil, msg, code end
    ctx.max_userns, msg, code = core.open("/proc/sys/user/max_user_namespaces", "w")
    if not ctx.max_userns then return nil, "open /proc/sys/user/max_user_namespaces: " .. msg, code end
  end,
}

-- The front end's look at the first process before it goes on (spec.before_release).
steps[#steps + 1] = {
  name = "before_release",
  prepare = function(ctx)
    if ctx.spec.before_release then ctx.sync = true end
  end,
  parent = function(ctx, proc)
    local hook = ctx.spec.before_release
    if not hook then return end
    local ok, err = pcall(hook, proc.pid)
    if not ok then return nil, errors.is(err) and err.msg or tostring(err), errors.is(err) and err.code or nil end
  end,
}

local function close_sources(ctx)
  close_all(ctx.sources_parent, ctx.fs_plan and ctx.fs_plan.source_sock)
  ctx.sources_parent = nil
  if ctx.fs_plan then
    ctx.fs_plan.source_sock = nil
    if ctx.fs_plan.source_jobs then fs.close_sources(ctx.fs_plan.source_jobs) end
    fs.close_idmaps(ctx.fs_plan)
  end
end

-- Which namespace a kernel setting belongs to (nil: the host's alone).
local function sysctl_namespace(key)
  if key:match("^net%.") then return "net" end
  if key:match("^fs%.mqueue%.") or key:match("^kernel%.shm") or key:match("^kernel%.msg") or key == "kernel.sem"
      or key == "kernel.shm_rmid_forced" then
    return "ipc"
  end
  if key == "kernel.hostname" or key == "kernel.domainname" then return "uts" end
end

-- Written through the host's /proc, before the tree replaces it: a process's writes to /proc/sys go to its own
-- namespaces, which the first child is in already.
steps[#steps + 1] = {
  name = "sysctl",
  prepare = function(ctx)
    for key in pairs(ctx.spec.sysctl or {}) do
      local ns = sysctl_namespace(key)
      if not ns then misuse("sysctl", "%s is not in a namespace of the sandbox's own: it would change the host's", key) end
      if not ctx.ns[ns] then misuse("sysctl", "%s needs the sandbox's own %s namespace", key, ns) end
    end
  end,
  init = function(ctx)
    for key, value in pairs(ctx.spec.sysctl or {}) do
      local path = "/proc/sys/" .. key:gsub("%.", "/")
      local f, msg, code = core.open(path, "w")
      if not f then return nil, ("sysctl %s: %s"):format(key, msg), code end
      local ok
      ok, msg, code = f:write(value)
      f:close()
      if not ok then return nil, ("sysctl %s = %s: %s"):format(key, value, msg), code end
    end
  end,
}

-- mount(2)'s flags for a propagation word: "rslave" is "rec,slave".
local function propagation_flags(word)
  if not word then return nil end
  if word:sub(1, 1) == "r" then return "rec," .. word:sub(2) end
  return word
end

-- The payload's LSM labels are written last before its exec, to its own thread's attribute files (the kernel
-- lets a process write only its own): a sandbox whose first process is the payload opens them now, through the
-- caller's /proc (its tree may have none). Behind a reaper, the payload is a process that does not exist yet:
-- the reaper program's child writes them itself just before its exec, relative to a descriptor of the caller's
-- /proc opened now. PID 1 keeps the caller's label: it never execs again, and under the payload's profile its
-- own work (the pipes lunas reads, forwarding signals) would depend on a policy written for the payload, while
-- everything the payload could do to it is already mediated by the payload's own label (ptrace and signals
-- are checked against the sender's profile), besides PID 1 being non-dumpable and under a filter of its own.
steps[#steps + 1] = {
  name = "lsm_open",
  prepare = function(ctx)
    local spec = ctx.spec
    if not (spec.apparmor or spec.selinux_label or spec.selinux_mount_label) then return end
    local lsm = require "lunas.lsm"
    lsm.check(spec)
    ctx.lsm_labels = lsm.exec_labels(spec)
  end,
  init = function(ctx)
    if not ctx.lsm_labels or #ctx.lsm_labels == 0 then return end
    -- (PID 1's own attribute files too, behind a reaper: a Lua reaper writes them in PID 1, whose fork inherits
    -- them and which itself never execs again)
    local ok, msg, code = require("lunas.lsm").open(ctx.lsm_labels)
    if not ok then return nil, msg, code end
    if ctx.fork and ctx.reaper_image then
      ctx.lsm_proc, msg, code = core.open("/proc", "r")
      if not ctx.lsm_proc then return nil, "open /proc: " .. msg, code end
    end
  end,
}

steps[#steps + 1] = {
  name = "mounts",
  prepare = function(ctx)
    local spec = ctx.spec
    if not ctx.ns.mount then
      if spec.rootfs or spec.mounts then misuse(spec.rootfs and "rootfs" or "mounts", "needs a mount namespace") end
      return
    end
    -- No file system option at all: the safe default tree. Any option: a tree built from an empty root by the
    -- entries in order, as bubblewrap builds it.
    local cwd = core.getcwd()
    local function default_tree()
      return fs.default_mounts(ctx.ns, { cwd = cwd, home = ctx.env.HOME, harden = spec.harden,
        uid = ctx.inside_uid or spec.uid, gid = ctx.inside_gid or spec.gid })
    end
    local mounts = spec.mounts
    if not mounts then
      if spec.rootfs == "host" then mounts = fs.host_mounts(ctx.ns)
      elseif spec.rootfs then mounts = {}
      else mounts = default_tree() end
    else
      -- {"default"} entries: the default tree there, with the entries after it on top.
      local expanded = {}
      for _, e in ipairs(mounts) do
        if e.kind == "default" then
          for _, d in ipairs(default_tree()) do expanded[#expanded + 1] = d end
        else
          expanded[#expanded + 1] = e
        end
      end
      mounts = expanded
    end
    ctx.fs_plan = { rootfs = spec.rootfs, mounts = mounts, harden = spec.harden, netns = ctx.ns.net,
      cgroupns = ctx.ns.cgroup, propagation = propagation_flags(spec.root_propagation),
      userns = ctx.ns.user or spec.joined_userns, pidns = ctx.ns.pid or spec.pid_namespace_joined, cwd = cwd,
      terminal = spec.terminal and {} or nil, mount_label = spec.selinux_mount_label }
    -- Host paths are resolved here, as the caller sees them: a source that is not there fails before any clone.
    fs.resolve(ctx.fs_plan)
    -- A range of host ids may not even walk to the sources the spec names, and writes only where the host lets
    -- anyone: the parent (root) opens every source, idmapping through the sandbox's own maps what the spec makes
    -- writable, once those exist, and hands the trees to the child.
    if ctx.id_range then
      local jobs = fs.source_jobs(ctx.fs_plan)
      if #jobs > 0 then
        ctx.fs_plan.source_jobs = jobs
        -- What needs no idmap is opened now and inherited; the rest needs the clone's user namespace.
        if fs.open_sources(jobs) then
          ctx.sync = true
          ctx.sources_parent, ctx.fs_plan.source_sock = errors.check(core.socketpair("seqpacket"))
        end
      end
    end
  end,
  parent = function(ctx, proc)
    local jobs = ctx.fs_plan and ctx.fs_plan.source_jobs
    if jobs then fs.close_sources(jobs) end
    if not ctx.sources_parent then return end
    local userns, msg, code = core.ns_open("user", proc.pid)
    local ok = userns ~= nil
    if ok then
      ok, msg, code = fs.send_sources(jobs, userns, ctx.sources_parent, function(m) warn(ctx, m) end)
      userns:close()
    end
    close_sources(ctx)
    if not ok then return nil, msg, code end
  end,
  init = function(ctx)
    if ctx.fs_plan then return fs.build(ctx.fs_plan) end
  end,
  finish = close_sources,
  abort = close_sources,
}

local report

-- Reads a stream until its end, or until `want` bytes when given; nil, message, ENAME on a failure.
local function read_stream(fd, want)
  local parts, n = {}, 0
  while not want or n < want do
    local chunk, msg, code = fd:read(want and want - n or 65536)
    if chunk == nil then
      if code ~= "EINTR" then return nil, msg, code end
    elseif chunk == "" then
      break
    else
      parts[#parts + 1], n = chunk, n + #chunk
    end
  end
  return table.concat(parts)
end

-- In the child, from the tree's build (its before_pivot point): tells the parent, waits for its answer (up to the
-- end of the stream), then runs before_pivot_inside. A failure of the parent's hook ends this child quietly (the
-- parent reports it).
local function before_pivot_child(ctx)
  local chan = ctx.hooks_child
  ctx.hooks_child = nil
  local ok, msg, code = chan:write("ready")
  local reply
  if ok then reply, msg, code = read_stream(chan) end
  chan:close()
  if not reply then return nil, msg, code end
  if reply:sub(1, 1) ~= "1" then core.exit(SETUP_FAILED) end
  local inside = ctx.spec.hooks.before_pivot_inside
  if inside then
    local done, value, imsg, icode = pcall(inside, reply:sub(2), ctx.env)
    if not done then
      report(ctx, "before_pivot", errors.is(value) and value.msg or tostring(value), errors.is(value) and value.code or "ELUA")
    end
    if value == nil and imsg ~= nil then report(ctx, "before_pivot", imsg, icode) end
  end
  return true
end

-- The caller's hooks at the point where the tree is built and the root not yet switched (spec.hooks): a
-- channel the child says "ready" on and the parent answers once its before_pivot has run.
steps[#steps + 1] = {
  name = "before_pivot",
  prepare = function(ctx)
    local hooks = ctx.spec.hooks
    if not (hooks and (hooks.before_pivot or hooks.before_pivot_inside)) then return end
    if not (ctx.fs_plan and ctx.fs_plan.rootfs_path) then
      misuse("hooks", "before_pivot needs a mount namespace and rootfs a directory (where the tree is shown)")
    end
    ctx.sync = true
    ctx.hooks_parent, ctx.hooks_child = errors.check(core.socketpair("stream"))
    ctx.fs_plan.before_pivot = function() return before_pivot_child(ctx) end
  end,
  finish = function(ctx) close_all(ctx.hooks_parent, ctx.hooks_child) end,
  abort = function(ctx) close_all(ctx.hooks_parent, ctx.hooks_child) end,
}

-- A session keyring of its own (as runc gives every container): the caller's holds its login's keys, Kerberos
-- tickets and file system keys, and a process of the sandbox would inherit it.
steps[#steps + 1] = {
  name = "keyring",
  init = function(ctx)
    if ctx.spec.keyring == "inherit" then return end
    local ok, msg, code = core.join_session_keyring()
    -- A kernel without keys (ENOSYS) has nothing to inherit.
    if not ok and code ~= "ENOSYS" then return nil, msg, code end
  end,
}

steps[#steps + 1] = {
  name = "hostname",
  prepare = function(ctx)
    if (ctx.spec.hostname or ctx.spec.domainname) and not ctx.ns.uts then misuse("hostname", "needs a uts namespace") end
  end,
  init = function(ctx)
    if ctx.spec.hostname then
      local ok, msg, code = core.sethostname(ctx.spec.hostname)
      if not ok then return nil, msg, code end
    end
    if ctx.spec.domainname then return check_core(core.setdomainname(ctx.spec.domainname)) end
  end,
}

steps[#steps + 1] = {
  name = "loopback",
  init = function(ctx)
    if ctx.ns.net and ctx.spec.loopback ~= false then return check_core(core.loopback_up()) end
  end,
}

-- Plugged into a lab switch: the parent makes the veth pair into the child's namespace while the child waits,
-- then the child configures its end (it holds CAP_NET_ADMIN over its own network namespace until the
-- capabilities step).
steps[#steps + 1] = {
  name = "network",
  prepare = function(ctx)
    local attach = type(ctx.spec.net) == "table" and ctx.spec.net.switch and ctx.spec.net
    if attach then
      ctx.net_attach = attach
      ctx.sync = true
    end
  end,
  parent = function(ctx, proc)
    local attach = ctx.net_attach
    if not attach then return end
    local ok, err = pcall(attach.switch.lab.attach, attach.switch.lab, attach.switch, proc.pid, { name = attach.name })
    if not ok then return nil, tostring(err), type(err) == "table" and err.code or nil end
  end,
  init = function(ctx)
    local attach = ctx.net_attach
    if not attach then return end
    local nl, msg, code = core.netlink()
    if not nl then return nil, msg, code end
    local ok
    ok, msg, code = nl:link_set(attach.name, { up = true })
    if ok and attach.address then
      ok, msg, code = nl:addr_add(attach.name, attach.address, { nodad = attach.address:find(":", 1, true) ~= nil })
    end
    if ok and attach.gateway then ok, msg, code = nl:route_add{ dst = "default", via = attach.gateway } end
    nl:close()
    if not ok then return nil, msg, code end
  end,
}

-- Egress (net = "nat" or "pasta"): made from the parent while the child waits, into the child's namespace;
-- undone when the sandbox ends (lunas.egress).
steps[#steps + 1] = {
  name = "egress",
  prepare = function(ctx)
    local net = ctx.spec.net
    if net ~= "nat" and net ~= "pasta" then return end
    if net == "nat" and core.ids().euid ~= 0 then
      errors.raise{ op = "sandbox", step = "egress", code = "EPERM",
        msg = "sandbox: egress: net = 'nat' needs root (a veth and a masquerade in the caller's network): use 'pasta'" }
    end
    ctx.egress = net
    ctx.sync = true
  end,
  parent = function(ctx, proc)
    if not ctx.egress then return end
    local ok, state = pcall(ctx.egress == "nat" and egress.nat_start or egress.pasta_start, proc.pid)
    if not ok then return nil, errors.is(state) and state.msg or tostring(state), errors.is(state) and state.code or nil end
    ctx.egress_state = state
  end,
  finish = function(ctx)
    local state = ctx.egress_state
    ctx.egress_state = nil
    if state then (ctx.egress == "nat" and egress.nat_stop or egress.pasta_stop)(state) end
  end,
  abort = function(ctx)
    local state = ctx.egress_state
    ctx.egress_state = nil
    if state then pcall(ctx.egress == "nat" and egress.nat_stop or egress.pasta_stop, state) end
  end,
}

-- The firewall: compiled and checked by lunas (which loads libnftables before the clone, so the child needs no
-- library in its tree), applied by the child in its own network namespace while it still has CAP_NET_ADMIN
-- there. lunas keeps the namespace open to read the counters, also after the end.
steps[#steps + 1] = {
  name = "firewall",
  prepare = function(ctx)
    local fw = ctx.spec.firewall
    if not fw then return end
    ctx.firewall_script = firewall.compile(fw)
    -- Loaded here, by an empty buffer that asks the kernel nothing: a dry run of the script would ask our own
    -- network's rule set (a cache), which a user may not read (libnftables then prints a hint on stderr), and
    -- costs a netlink round trip; the child reports a script the kernel refuses as this step's failure.
    local ok, msg, code = core.nft(nil, "", { check = true })
    if not ok then
      errors.raise{ op = "sandbox", step = "firewall", msg = "sandbox: firewall: " .. tostring(msg), code = code }
    end
    -- a copy, not a child borrowing our memory: it runs libnftables
    ctx.sync = true
  end,
  parent = function(ctx, proc)
    if not ctx.firewall_script then return end
    local ns, msg, code = core.ns_open("net", proc.pid)
    if not ns then return nil, msg, code end
    ctx.firewall_ns = ns
    -- Without root, lunas cannot enter the sandbox's network namespace: a helper child joins the sandbox's user
    -- namespace (ours to enter: we made it) first.
    if core.ids().euid ~= 0 and ctx.ns.user then
      local userns
      userns, msg, code = core.ns_open("user", proc.pid)
      if not userns then return nil, msg, code end
      ctx.firewall_userns = userns
    end
  end,
  init = function(ctx)
    if not ctx.firewall_script then return end
    local ok, msg, code = core.nft(nil, ctx.firewall_script)
    if not ok then return nil, firewall.explain(msg, code), code end
  end,
  finish = function(ctx, result)
    local ns = ctx.firewall_ns
    if not ns then return end
    ctx.firewall_ns = nil
    local ok, counters = true, nil
    if result then ok, counters = pcall(firewall.counters, ns, { userns = ctx.firewall_userns }) end
    ns:close()
    if ctx.firewall_userns then ctx.firewall_userns:close() end
    ctx.firewall_userns = nil
    if result and ok then result.firewall = counters end
    -- (the payload's result stands: counters that cannot be read are a warning, not its failure)
    if not ok then
      warn(ctx, "firewall: the counters could not be read: " .. (errors.is(counters) and counters.msg or tostring(counters)))
    end
  end,
  abort = function(ctx)
    if ctx.firewall_ns then ctx.firewall_ns:close() end
    if ctx.firewall_userns then ctx.firewall_userns:close() end
    ctx.firewall_ns, ctx.firewall_userns = nil, nil
  end,
}

steps[#steps + 1] = {
  name = "reaper",
  init = function(ctx)
    -- The reaper stays behind while the payload runs: it must not be ptrace-able or readable from inside. The
    -- exec'd reaper program does this itself; and dumpable belongs to the memory, which a vfork-style child
    -- shares with lunas: setting it there would change lunas.
    if ctx.fork and not ctx.vfork then return check_core(core.prctl{ dumpable = false }) end
  end,
}

-- Last of the set-up with the sandbox's own privileges: --userns2's namespace, then the nested user namespace
-- that keeps the payload from making more, and the check that it cannot.
steps[#steps + 1] = {
  name = "nested_userns",
  init = function(ctx)
    local spec = ctx.spec
    if spec.enter_userns then
      local ok, msg, code = core.setns(spec.enter_userns, "user")
      if not ok then return nil, msg, code end
    end
    if spec.nested_userns == "disable" then
      local ok, msg, code = ctx.max_userns:write("1")
      ctx.max_userns:close()
      if not ok then return nil, "sysctl user.max_user_namespaces = 1: " .. msg, code end
      -- (our ids here, read before the new namespace leaves them unmapped)
      local ids = core.ids()
      local uid, gid = ids.uid, ids.gid
      ok, msg, code = core.unshare("user")
      if ok then
        ok, msg, code = core.id_maps(ctx.proc_self, { uid = { { uid, uid, 1 } }, gid = { { gid, gid, 1 } }, setgroups = "deny" })
      end
      ctx.proc_self:close()
      if not ok then return nil, msg, code end
    end
    if spec.nested_userns then
      if core.unshare("user") then return nil, "creation of new user namespaces was not disabled as requested", "EEXIST" end
    end
  end,
}

steps[#steps + 1] = {
  name = "session",
  payload = function(ctx)
    if ctx.spec.new_session ~= false then return check_core(core.setsid()) end
  end,
}

-- The payload's terminal, opened by the tree's console entry or here (an exec into a container: its devpts is
-- the one at spec.terminal.devpts now), in the new session: the slave becomes the controlling terminal and the
-- standard descriptors, and the master leaves for the socket before anything of the payload runs.
local function open_payload_terminal(ctx)
  local pty = ctx.fs_plan and ctx.fs_plan.terminal
  if pty and pty.master then return pty end
  local root, msg, code = core.open("/", "r")
  if not root then return nil, msg, code end
  pty, msg, code = fs.open_terminal(root, ctx.spec.terminal.devpts or "/dev/pts")
  root:close()
  return pty, msg, code
end

local function hand_over_terminal(t, pty)
  local ok, msg, code = true, nil, nil
  if t.rows then ok, msg, code = core.tty_winsize(pty.master, { rows = t.rows, cols = t.cols }) end
  if ok then ok, msg, code = core.set_controlling_tty(pty.slave) end
  for fd = 0, 2 do
    if ok then ok, msg, code = core.dup2(pty.slave, fd) end
  end
  if ok then ok, msg, code = core.send_fd(t.socket, pty.master, t.message or "/dev/ptmx") end
  pty.master:close()
  pty.slave:close()
  t.socket:close()
  if not ok then return nil, "terminal: " .. msg, code end
  return true
end

steps[#steps + 1] = {
  name = "terminal",
  payload = function(ctx)
    local t = ctx.spec.terminal
    if not t then return end
    local pty, msg, code = open_payload_terminal(ctx)
    if not pty then return nil, msg, code end
    return hand_over_terminal(t, pty)
  end,
}

steps[#steps + 1] = {
  name = "rlimits",
  payload = function(ctx)
    for name, limit in pairs(ctx.spec.rlimits or {}) do
      local ok, msg, code = core.setrlimit(name, limit[1], limit[2])
      if not ok then return nil, msg, code end
    end
  end,
}

local load_filters

-- Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: the profile goes on before the capabilities go
-- (runc's order), and every later step runs under it.
steps[#steps + 1] = {
  name = "seccomp_privileged",
  payload = function(ctx)
    if ctx.seccomp_privileged then return load_filters(ctx) end
  end,
}

steps[#steps + 1] = {
  name = "capability_bounding",
  prepare = function(ctx)
    local caps = ctx.spec.caps
    if caps == "keep" or not caps.sys_ptrace or not (ctx.fork and ctx.ns.user) then return end
    -- Next to a reaper whose memory belongs to the sandbox's user namespace once exec'd, CAP_SYS_PTRACE would let
    -- the payload take over its PID 1 (non-dumpable alone would not stop it).
    misuse("caps", "sys_ptrace needs as_pid_1 = true (or no pid namespace): the payload could trace its PID 1")
  end,
  payload = function(ctx)
    -- While still privileged (dropping from the bounding set needs CAP_SETPCAP, which a change of uid takes).
    if ctx.spec.caps ~= "keep" then return security.apply_bounding(ctx.spec.caps) end
    if ctx.fork and ctx.ns.user then return check_core(core.prctl{ capbset_drop = { "sys_ptrace" } }) end
  end,
}

steps[#steps + 1] = {
  name = "ids",
  prepare = function(ctx)
    local spec = ctx.spec
    if not ctx.ns.user and (spec.uid or spec.gid or spec.groups) then ctx.set_ids = true end
    if spec.groups and ctx.ns.user and not ctx.parent_maps then misuse("groups", "needs setgroups = true") end
  end,
  payload = function(ctx)
    if not ctx.set_ids then return end
    local spec = ctx.spec
    local ok, msg, code = core.setgroups(spec.groups or {})
    if not ok and (spec.groups or code ~= "EPERM") then return nil, msg, code end
    local uid, gid = spec.uid or ctx.inside_uid or 0, spec.gid or ctx.inside_gid or 0
    ok, msg, code = core.setresgid(gid, gid, gid)
    if not ok then return nil, msg, code end
    ok, msg, code = core.setresuid(uid, uid, uid)
    if not ok then return nil, msg, code end
    -- A change of ids clears the parent-death signal: arm it again.
    if ctx.parent then return check_core(core.prctl{ pdeathsig = "KILL" }) end
  end,
}

local function read_all(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

-- The mount id of the working directory (from its descriptor's fdinfo) is in our own mount table. Without a
-- /proc to ask there is nothing to compare: a tree without /proc cannot have been given such a descriptor path.
local function cwd_on_own_mount()
  local dir = core.open(".", "r")
  if not dir then return false end
  local info = read_all("/proc/self/fdinfo/" .. dir:fileno())
  dir:close()
  local mountinfo = read_all("/proc/self/mountinfo")
  local id = info and info:match("mnt_id:%s*(%d+)")
  if not id or not mountinfo then return true end
  return ("\n" .. mountinfo):find("\n" .. id .. " ", 1, true) ~= nil
end

steps[#steps + 1] = {
  name = "cwd",
  payload = function(ctx)
    if ctx.spec.cwd then
      local ok, msg, code = core.chdir(ctx.spec.cwd)
      if not ok then return nil, msg, code end
    end
    -- A directory reached through an inherited descriptor (cwd = /proc/self/fd/N: runc's CVE-2024-21626) sits on
    -- a mount of the host's tree, writable as the host's is. Never exec there: the working directory's mount
    -- must be one of the sandbox's own. (Without a cwd, the file system step went to a path inside the root.)
    if ctx.spec.cwd and ctx.fs_plan and not cwd_on_own_mount() then
      return nil, "the working directory is outside the sandbox's root", "EPERM"
    end
    if ctx.spec.set_pwd then
      local here = core.getcwd()
      -- The tree has no caller's directory (the build went to "/"): HOME, where the tree has it.
      if not ctx.spec.cwd and here ~= (ctx.fs_plan and ctx.fs_plan.cwd) and ctx.env.HOME and core.chdir(ctx.env.HOME) then
        here = ctx.env.HOME
      end
      ctx.env.PWD = ctx.spec.cwd or here
    end
  end,
}

steps[#steps + 1] = {
  name = "umask",
  payload = function(ctx)
    if ctx.spec.umask then core.umask(ctx.spec.umask) end
  end,
}

steps[#steps + 1] = {
  name = "personality",
  payload = function(ctx)
    if ctx.spec.personality then return check_core(core.personality(ctx.spec.personality)) end
  end,
}

-- Locks and the sync descriptor belong to PID 1 (the reaper), which lives as long as the sandbox; a sandbox
-- without a pid namespace gets a reaper for them. Lock files are opened in the sandbox's tree, after the cwd.
steps[#steps + 1] = {
  name = "hold",
  prepare = function(ctx)
    local spec = ctx.spec
    if spec.lock_files and #spec.lock_files > 0 then
      if spec.as_pid_1 then misuse("lock_files", "needs a PID 1 to hold them (not as_pid_1)") end
      ctx.fork = true
    end
    if spec.sync_fd and not spec.as_pid_1 then ctx.fork = true end
  end,
  payload = function(ctx)
    if not ctx.fork then return end
    local held = {}
    for _, path in ipairs(ctx.spec.lock_files or {}) do
      local f, msg, code = core.open(path, "r")
      if not f then return nil, ("open lock file %s: %s"):format(path, msg), code end
      local ok
      ok, msg, code = f:lock("shared", { record = true, wait = false })
      if not ok then return nil, ("lock %s: %s"):format(path, msg), code end
      held[#held + 1] = f
    end
    if ctx.spec.sync_fd then held[#held + 1] = ctx.spec.sync_fd end
    if #held > 0 then ctx.held = held end
  end,
}

local function open_null(ctx)
  if not ctx.null then
    -- Owned by the payload: a vfork-style child leaves it in the parent's heap, where __gc skips it.
    local f, msg, code = core.open("/dev/null", "rw")
    if not f then return nil, msg, code end
    ctx.null = f
  end
  return ctx.null
end

steps[#steps + 1] = {
  name = "stdio",
  payload = function(ctx)
    for target, field in pairs{ [0] = "stdin", [1] = "stdout", [2] = "stderr" } do
      local fd = ctx.spec[field]
      if fd == "null" then
        local msg, code
        fd, msg, code = open_null(ctx)
        if not fd then return nil, msg, code end
      end
      if fd ~= nil and fd ~= "inherit" then
        local ok, msg, code = core.dup2(fd, target)
        if not ok then return nil, msg, code end
      end
    end
  end,
}

steps[#steps + 1] = {
  name = "capabilities",
  payload = function(ctx)
    -- Root in its user namespace, a payload could otherwise remount its read-only tree or unmount its masks.
    if ctx.spec.caps ~= "keep" then return security.apply_capabilities(ctx.spec.caps) end
  end,
}

steps[#steps + 1] = {
  name = "no_new_privs",
  payload = function(ctx)
    -- No setuid or file-capability program can give the payload more than it has now.
    if ctx.spec.no_new_privs ~= false then return check_core(core.prctl{ no_new_privs = true }) end
  end,
}


-- After every mount (a restricted process cannot mount) and after no_new_privs (which restricting needs).
steps[#steps + 1] = {
  name = "landlock",
  prepare = function(ctx)
    local spec = ctx.spec.landlock
    -- Abstract unix sockets belong to a network namespace: sharing the host's (or a lab node's) would reach its
    -- services' (containerd-shim's, CVE-2020-15257). Landlock scopes them to the sandbox where the kernel can.
    if not ctx.ns.net and ctx.spec.abstract_sockets ~= "host" then
      if core.landlock_abi() < 6 or ctx.spec.no_new_privs == false then
        warn(ctx, ("abstract unix sockets of the host's network namespace stay reachable: %s (give the sandbox its "
          .. "own network namespace)"):format(ctx.spec.no_new_privs == false and "scoping them needs no_new_privs"
          or ("scoping them needs Landlock ABI 6, this kernel has %d"):format(core.landlock_abi())))
      else
        local scoped = { "abstract_unix_socket" }
        if spec then
          for _, name in ipairs(spec.scoped) do
            if name ~= "abstract_unix_socket" then scoped[#scoped + 1] = name end
          end
        end
        local merged = {}
        for k, v in pairs(spec or { paths = {}, connect = {}, bind = {}, strict = false }) do merged[k] = v end
        merged.scoped = scoped
        spec = merged
      end
    end
    if not spec then return end
    local plan, warnings = security.plan_landlock(spec)
    for _, msg in ipairs(warnings) do warn(ctx, msg) end
    ctx.landlock = plan
  end,
  payload = function(ctx)
    if not ctx.landlock then return end
    -- A domain would refuse the payload behind the reaper program its own attribute files, which it opens to
    -- take its LSM labels: the payload applies the ruleset itself after them, the reaper to itself (src/reaper.c).
    if ctx.lsm_proc then
      local ruleset, msg, code = security.landlock_ruleset(ctx.landlock)
      if not ruleset then return nil, msg, code end
      ctx.landlock_ruleset = ruleset
      return
    end
    return security.apply_landlock(ctx.landlock)
  end,
}

steps[#steps + 1] = {
  name = "fds",
  payload = function(ctx)
    for _, fd in ipairs(ctx.spec.private_fds or {}) do
      local ok, msg, code = core.close_range(fd, fd, { cloexec = true })
      if not ok then return nil, msg, code end
    end
    if ctx.spec.close_fds == false then return end
    -- Mark rather than close: the error pipe must live until exec succeeds.
    local ok, msg, code = core.close_range(3, nil, { cloexec = true })
    if not ok then return nil, msg, code end
    for _, fd in ipairs(ctx.spec.keep_fds or {}) do
      local n = math.type(fd) == "integer" and fd or fd:fileno()
      ok, msg, code = core.dup2(n, n)
      if not ok then return nil, msg, code end
    end
  end,
}

steps[#steps + 1] = {
  name = "block",
  payload = function(ctx)
    local fd = ctx.spec.block_fd
    if not fd then return end
    -- A byte to read, or end of file: either releases the sandbox, as in bubblewrap; the descriptor goes.
    local ready, msg, code = core.poll({ fd })
    if not ready then return nil, msg, code end
    return check_core(core.close_range(fd, fd))
  end,
}

-- The program the payload will exec, found as execve will find it (PATH of the payload's environment): a
-- sandbox that waits for its start has to fail now for a missing one, not after.
local function find_executable(ctx)
  local name = ctx.spec.argv[1]
  local candidates = {}
  if name:find("/", 1, true) then
    candidates[1] = name
  else
    for dir in (ctx.env.PATH or DEFAULT_PATH):gmatch("[^:]+") do candidates[#candidates + 1] = dir .. "/" .. name end
  end
  for _, path in ipairs(candidates) do
    local kind, _, mode = core.file_type(path)
    if kind == "link" then kind, _, mode = core.file_type(core.realpath(path) or path) end
    if kind == "file" and mode & 73 ~= 0 then return true end
    if name:find("/", 1, true) then
      if not kind then return nil, ("exec: %q: stat %s: no such file or directory"):format(name, name), "ENOENT" end
      return nil, ("exec: %q: permission denied"):format(name), "EACCES"
    end
  end
  return nil, ("exec: %q: executable file not found in $PATH"):format(name), "ENOENT"
end

steps[#steps + 1] = {
  name = "start_gate",
  prepare = function(ctx)
    if ctx.spec.start_gate and ctx.fork then misuse("start_gate", "needs as_pid_1 = true or no pid namespace") end
    if ctx.spec.start_gate and not ctx.spec.argv then misuse("start_gate", "needs argv") end
  end,
  payload = function(ctx)
    local gate = ctx.spec.start_gate
    if not gate then return end
    local ok, msg, code = find_executable(ctx)
    if not ok then return nil, msg, code end
    -- A listener must reach the caller before it returns (an OCI runtime hands it to the seccomp agent during
    -- create, as runc does): the filter goes on now, and what the gate does next is filtered already.
    if ctx.seccomp and ctx.seccomp.listener and not ctx.seccomp_privileged then
      ok, msg, code = load_filters(ctx)
      if not ok then return nil, msg, code end
      ctx.filter_loaded = true
    end
    -- The set-up is over: the error pipe's end tells the caller so; what fails from here on goes to stderr.
    ctx.err_w:close()
    ctx.gated = true
    while true do
      local ready
      ready, msg, code = core.poll({ gate })
      if not ready and code ~= "EINTR" then return nil, msg, code end
      if ready and #ready > 0 then break end
    end
    local byte
    byte, msg, code = gate:read(1)
    if not byte then return nil, msg, code end
    if byte == "" then return nil, "the start gate closed without a start", "ECANCELED" end
    gate:close()
  end,
}

-- Once started (its start gate open): the caller's before_exec, then "0" on the start report. Before seccomp, which
-- could refuse what they need.
steps[#steps + 1] = {
  name = "before_exec",
  prepare = function(ctx)
    if ctx.spec.start_report and not ctx.spec.start_gate then misuse("start_report", "needs start_gate") end
  end,
  payload = function(ctx)
    local hook = ctx.spec.hooks and ctx.spec.hooks.before_exec
    if hook then
      local done, value, msg, code = pcall(hook, ctx.env)
      if not done then return nil, errors.is(value) and value.msg or tostring(value), errors.is(value) and value.code or "ELUA" end
      if value == nil and msg ~= nil then return nil, msg, code end
    end
    local out = ctx.spec.start_report
    if out then
      ctx.report_done = true
      local ok, msg, code = out:write("0")
      out:close()
      if not ok then return nil, msg, code end
    end
  end,
}

steps[#steps + 1] = {
  name = "lsm",
  payload = function(ctx)
    -- (behind a reaper, they are the payload's alone: child_main)
    if ctx.fork then return end
    if ctx.lsm_labels and #ctx.lsm_labels > 0 then return require("lunas.lsm").apply(ctx.lsm_labels) end
  end,
}

-- Loads the compiled profile in this process; the listener of notify rules goes to the parent over a socket.
local function load_filter(ctx)
  local compiled = ctx.seccomp
  local listener, msg, code = core.seccomp_load_bpf(compiled.program, { listener = compiled.listener, log = compiled.log,
    spec_allow = compiled.spec_allow, wait_killable_recv = compiled.wait_killable_recv })
  if not listener then return nil, msg, code end
  if compiled.listener then
    local ok
    ok, msg, code = core.send_fd(ctx.notify_child, listener)
    listener:close()
    ctx.notify_child:close()
    if not ok then return nil, msg, code end
  end
  return true
end

-- The profile's program, then the raw ones, in this process.
load_filters = function(ctx)
  if ctx.seccomp then
    local ok, msg, code = load_filter(ctx)
    if not ok then return nil, msg, code end
  end
  for _, program in ipairs(ctx.raw_programs or {}) do
    local ok, msg, code = core.seccomp_load_bpf(program)
    if not ok then return nil, msg, code end
  end
  return true
end

-- Last before exec: from here on the payload's own system calls are filtered. A profile is compiled once per
-- sandbox object; the child only loads the bytes. The listener of notify rules goes to the parent over a socket.
steps[#steps + 1] = {
  name = "seccomp",
  prepare = function(ctx)
    local programs = ctx.spec.seccomp_programs
    if programs and #programs > 0 then ctx.raw_programs = programs end
    local profile = ctx.spec.seccomp
    if not profile then return end
    if not profile.compiled then profile.compiled = security.compile(profile) end
    ctx.seccomp = profile.compiled
    if ctx.spec.no_new_privs == false then
      -- (PID 1's program loads a filter only with no_new_privs)
      if ctx.fork then misuse("no_new_privs", "false with a seccomp filter needs as_pid_1 = true or no pid namespace") end
      if ctx.seccomp.listener then misuse("no_new_privs", "false goes without notify rules") end
      ctx.seccomp_privileged = true
    end
    if ctx.seccomp.listener and ctx.raw_programs then
      misuse("seccomp_programs", "goes without notify rules in the profile")
    end
    -- (the reaper program loads the payload's filter with the log and listener flags only)
    if ctx.fork and (ctx.seccomp.spec_allow or ctx.seccomp.wait_killable_recv) then
      misuse("seccomp", "spec_allow and wait_killable_recv need as_pid_1 = true or no pid namespace")
    end
    if ctx.seccomp.listener then ctx.notify_parent, ctx.notify_child = errors.check(core.socketpair("seqpacket")) end
  end,
  payload = function(ctx)
    local compiled, raw = ctx.seccomp, ctx.raw_programs
    if ctx.seccomp_privileged or ctx.filter_loaded or not compiled and not raw then return end
    if ctx.reaper_image then
      -- The payload loads it itself, forked by the reaper program just before its exec (src/reaper.c): PID 1
      -- has a filter of its own, and a profile that allows only what the payload needs must not stop PID 1.
      local bytes = compiled and compiled.program or ""
      if raw then
        -- Several programs: each after a header with its length in instructions, the profile's first.
        local frames = {}
        for _, program in ipairs(compiled and { compiled.program, table.unpack(raw) } or raw) do
          frames[#frames + 1] = string.pack("=I4I4", #program // 8, 0) .. program
        end
        bytes, ctx.filter_framed = table.concat(frames), true
      end
      local r, w, msg, code = core.pipe()
      if not r then return nil, w, msg end
      local ok
      ok, msg, code = w:write(bytes)
      w:close()
      if not ok then
        r:close()
        return nil, msg, code
      end
      ctx.filter_r = r
      return
    end
    return load_filters(ctx)
  end,
  parent = function(ctx)
    if ctx.notify_child then ctx.notify_child:close() end
  end,
  abort = function(ctx)
    close_all(ctx.notify_parent, ctx.notify_child)
  end,
  finish = function(ctx, result)
    if ctx.listener then ctx.listener:close() end
    close_all(ctx.notify_parent)
    if result and #ctx.warnings > 0 then
      result.warnings = result.warnings or {}
      for _, msg in ipairs(ctx.warnings) do table.insert(result.warnings, msg) end
    end
  end,
}

steps[#steps + 1] = {
  name = "exec",
  payload = function(ctx)
    local spec = ctx.spec
    if spec.fn then
      -- A Lua payload never execs: release the parent now, then run.
      ctx.err_w:close()
      local ok, result = pcall(spec.fn)
      if not ok then
        io.stderr:write("lunas: sandbox function: ", tostring(result), "\n")
        core.exit(SETUP_FAILED)
      end
      core.exit(math.type(result) == "integer" and result or (result == false and 1 or 0))
    end
    return core.exec(spec.argv, { env = ctx.env, argv0 = spec.argv0 })
  end,
}

-- ---- the executor ------------------------------------------------------------------------------------------

-- Exit codes of a started sandbox (start_gate) whose exec failed, as a shell's.
local GATED_EXIT = { ENOENT = 127, EACCES = 126 }

-- An error record: "step\0ENAME\0message", at most 4000 bytes (one atomic write to a pipe).
local function error_record(step, msg, code)
  return ("%s\0%s\0%s"):format(step, code or "", tostring(msg)):sub(1, 4000)
end

report = function(ctx, step, msg, code)
  if ctx.gated then
    -- Started already: nobody reads the error pipe any more. The payload's stderr is where its failure goes, and
    -- the start report (the caller of the start waits there) when it has not said "0" yet.
    io.stderr:write(("lunas: sandbox: %s: %s\n"):format(step, tostring(msg)))
    if ctx.spec.start_report and not ctx.report_done then
      pcall(ctx.spec.start_report.write, ctx.spec.start_report, "1" .. error_record(step, msg, code))
    end
    core.exit(GATED_EXIT[code] or SETUP_FAILED)
  end
  local record = error_record(step, msg, code)
  ctx.err_w:write(record)
  core.exit(SETUP_FAILED)
end

-- Runs a phase's steps in order, up to (not including) the step named `stop`.
local function run_phase(ctx, phase, stop)
  for _, step in ipairs(steps) do
    if step.name == stop then return end
    if step[phase] then
      local ok, value, msg, code = pcall(call_step, step, phase, ctx)
      if not ok then report(ctx, step.name, value, "ELUA") end
      if value == nil and msg ~= nil then report(ctx, step.name, msg, code) end
    end
  end
end

local function payload_main(ctx)
  run_phase(ctx, "payload")
  report(ctx, "exec", "payload returned without exec", "EINVAL")
end

-- The payload as a child of a Lua reaper (a Lua function, or a build without the reaper program): everything
-- but the exec was done in PID 1 already.
local function forked_payload(ctx)
  -- A fork loses the parent-death signal and is no session leader: without a pid namespace (a time namespace
  -- alone) nothing else would take it down with us.
  if ctx.parent then core.prctl{ pdeathsig = "KILL" } end
  if ctx.spec.new_session ~= false then core.setsid() end
  run_phase(ctx, "exec")
  local ok, value, msg, code = pcall(call_step, steps[#steps], "payload", ctx)
  if not ok then report(ctx, "exec", value, "ELUA") end
  report(ctx, "exec", msg or "payload returned without exec", code or "EINVAL")
end

-- A Lua reaper's payload is its fork: the labels written to PID 1's attribute files go with the fork (AppArmor's
-- and SELinux's exec labels are copied to a new process and consumed by its exec), and PID 1 never execs.
-- (Written through descriptors opened before any Landlock domain; a ruleset left for the reaper program goes to
-- PID 1 here, after them.)
local function apply_reaper_labels(ctx)
  if ctx.lsm_proc then ctx.lsm_proc:close() ctx.lsm_proc = nil end
  if not ctx.lsm_labels or #ctx.lsm_labels == 0 then return end
  local ok, msg, code = require("lunas.lsm").apply(ctx.lsm_labels)
  if not ok then report(ctx, "lsm", msg, code) end
  if ctx.landlock_ruleset then
    ok, msg, code = ctx.landlock_ruleset:restrict()
    ctx.landlock_ruleset:close()
    ctx.landlock_ruleset = nil
    if not ok then report(ctx, "landlock", msg, code) end
  end
end

local function child_main(ctx)
  -- Drop the parent's pipe ends first: holding sync_w would hide the parent's death from the read below. A
  -- vfork-style child shares the parent's objects and must not touch them (it has no sync pipe anyway).
  if not ctx.vfork then
    close_all(ctx.err_r, ctx.sync_w, ctx.status_r, ctx.id_range and ctx.id_range.lock, ctx.sources_parent,
      ctx.hooks_parent)
  end
  -- Descriptors the front end keeps to itself (a report a reader waits on to end, say) go before anything waits.
  for _, fd in ipairs(ctx.spec.private_fds or {}) do core.close_range(fd, fd) end
  if ctx.sync_r then
    local byte = ctx.sync_r:read(1)
    if byte ~= "1" then core.exit(SETUP_FAILED) end
    ctx.sync_r:close()
  end
  run_phase(ctx, "init")
  if ctx.fork then
    -- PID 1 confines itself exactly as the payload will be (the payload is its child and inherits all of it)
    -- before the payload exists: nothing in the sandbox ever runs beside a PID 1 it could trace or that holds
    -- more than it does. The reaper program then makes itself untraceable and tighter still before it lets the
    -- payload exec.
    run_phase(ctx, "payload", "exec")
    local spec = ctx.spec
    local msg, code
    if ctx.reaper_image then
      if injected_at("exec", "payload") then report(ctx, "exec", "injected failure", "EIO") end
      local listener = ctx.seccomp ~= nil and ctx.seccomp.listener
      local labels = ctx.lsm_proc and require("lunas.lsm").reaper_labels(ctx.lsm_labels) or nil
      _, msg, code = core.reaper_exec(ctx.reaper_image, { argv = spec.argv, env = ctx.env, argv0 = spec.argv0,
        errors = ctx.err_w, status = ctx.status_w, setsid = spec.new_session ~= false, filter = ctx.filter_r,
        listener = listener, notify = listener and ctx.notify_child or nil, log = ctx.seccomp ~= nil and ctx.seccomp.log,
        framed = ctx.filter_framed, hold = ctx.held, linger = spec.linger, labels = labels, proc = ctx.lsm_proc,
        landlock = ctx.landlock_ruleset })
      -- The kernel would not exec the memfd (an LSM, say). A child that shares lunas's memory cannot stay on as
      -- PID 1 (lunas waits until it execs): it fails. A copy stays a Lua reaper, under the payload's own filter,
      -- loaded here, which the payload inherits.
      if ctx.vfork then report(ctx, "reaper", msg, code) end
      apply_reaper_labels(ctx)
      if ctx.filter_r then
        ctx.filter_r:close()
        local ok
        ok, msg, code = load_filters(ctx)
        if not ok then report(ctx, "seccomp", msg, code) end
      end
      _, msg, code = core.reaper{ fn = function() return forked_payload(ctx) end, status = ctx.status_w,
        close = { ctx.err_w }, exec = ctx.shared_vm_ok and spec.argv ~= nil }
    else
      apply_reaper_labels(ctx)
      _, msg, code = core.reaper{ fn = function() return forked_payload(ctx) end, status = ctx.status_w,
        close = { ctx.err_w }, exec = ctx.shared_vm_ok and spec.argv ~= nil }
    end
    report(ctx, "reaper", msg, code)
  end
  return payload_main(ctx)
end

local function clone_flags(ctx)
  local names = {}
  for name in pairs(ctx.ns) do
    if not (name == "time" and ctx.time_offsets) and not (name == "cgroup" and ctx.late_cgroup_ns) then
      names[#names + 1] = name
    end
  end
  return table.concat(names, ",")
end

local function parse_record(record)
  local step, code, msg = record:match("^([^%z]*)%z([^%z]*)%z(.*)$")
  if not step then return "setup", nil, record end
  -- The reaper program knows errno numbers only: "#2" with "FILE" is ENOENT, "FILE: No such file or directory".
  local errno = code:match("^#(%d+)$")
  if errno then
    errno = tonumber(errno)
    return step, core.errno_name(errno), ("%s: %s"):format(msg, core.strerror(errno))
  end
  -- "exec /x: No such file" reported by step "exec" reads better as "exec: /x: No such file".
  if msg:sub(1, #step + 1) == step .. " " then msg = msg:sub(#step + 2) end
  return step, code ~= "" and code or nil, msg
end

--- What a sandbox's start report (spec.start_report) said: true once the payload went on to exec, or nil and
-- an error object (not raised) of the step that failed after its start ("sandbox: STEP: message", with step,
-- code and reason); nil, nil when it said nothing (text "").
-- @tparam string text what was read from the report
-- @return true, or nil and an error
function M.start_report_result(text)
  if text == "0" then return true end
  if text == nil or text == "" then return nil, nil end
  local step, code, msg = parse_record(text:sub(2))
  return nil, errors.new{ op = "sandbox", step = step, code = code, reason = msg,
    msg = ("sandbox: %s: %s"):format(step, msg) }
end

local function decode_wait_status(st, result)
  if st & 0x7f == 0 then
    result.status = (st >> 8) & 0xff
  else
    result.signal = st & 0x7f
    result.core = st & 0x80 ~= 0
    for name, n in pairs(core.signals) do
      if n == result.signal then result.signame = name end
    end
  end
end

local Running = {}
Running.__index = Running

local function new_context(spec)
  local ns = {}
  for k in pairs(spec.namespaces) do ns[k] = true end
  -- Without privileges every other namespace needs a user namespace first (privileges: root, or CAP_SYS_ADMIN,
  -- which a process that joined a user namespace of its own has there).
  if next(ns) and not ns.user and core.ids().euid ~= 0 then
    local caps = core.caps_get()
    local admin = false
    for _, name in ipairs(caps and caps.effective or {}) do admin = admin or name == "sys_admin" end
    if not admin then ns.user = true end
  end
  return { spec = spec, ns = ns, env = build_environment(spec), warnings = {} }
end

-- (reason: the step's own message, without "sandbox: STEP: ")
local function fail(step, msg, code)
  errors.raise{ op = "sandbox", step = step, msg = ("sandbox: %s: %s"):format(step, msg), code = code, reason = msg }
end

local function open_pipes(ctx)
  ctx.err_r, ctx.err_w = errors.check(core.pipe())
  if ctx.sync then ctx.sync_r, ctx.sync_w = errors.check(core.pipe()) end
  if ctx.fork then ctx.status_r, ctx.status_w = errors.check(core.pipe{ nonblock = true }) end
end

local function close_child_ends(ctx)
  close_all(ctx.err_w, ctx.sync_r, ctx.status_w, ctx.hooks_child)
  ctx.hooks_child = nil
end

local function read_until_eof(fd)
  local parts = {}
  while true do
    local chunk, msg, code = fd:read(4096)
    if chunk == nil then
      if code ~= "EINTR" then break end
    elseif chunk == "" then
      break
    else
      parts[#parts + 1] = chunk
    end
  end
  return table.concat(parts)
end

--- Sandboxes.
-- A validated spec (`new`), ready to run any number of times.
-- @type Sandbox
local Sandbox = {}
Sandbox.__index = Sandbox

-- Runs every step's abort (failed spawn) or finish (sandbox over), each at most once, the first error last.
local function abort_steps(ctx)
  if ctx.finished then return end
  ctx.finished = true
  for _, step in ipairs(steps) do
    if step.abort then pcall(step.abort, ctx) end
  end
end

local function finish_steps(ctx, result)
  if ctx.finished then return end
  ctx.finished = true
  local first_err
  for _, step in ipairs(steps) do
    if step.finish then
      local ok, err = pcall(step.finish, ctx, result)
      if not ok and not first_err then first_err = err end
    end
  end
  if first_err then error(first_err, 0) end
end

-- A sandbox on a lab host is cloned from inside that host's network namespace (it inherits it): joining later
-- would need privileges over the namespace that the sandbox's own user namespace does not have.
local function spawn_in_netns(net, opts)
  if type(net) ~= "table" or net.switch then return core.spawn(opts) end
  local home, msg, code = core.ns_open("net")
  if not home then return nil, msg, code end
  local ok
  ok, msg, code = core.setns(net:netns())
  if not ok then
    home:close()
    return nil, "join the network of " .. tostring(net) .. ": " .. msg, code
  end
  local started, proc
  started, proc, msg, code = pcall(core.spawn, opts)
  local back, bmsg = core.setns(home)
  home:close()
  if not back then
    if started and proc then
      proc:kill("KILL")
      proc:wait()
      proc:close()
    end
    errors.raise{ op = "sandbox", step = "clone", msg = "sandbox: cannot return to lunas's own network namespace: "
      .. bmsg, cause = started and msg or proc }
  end
  if not started then error(proc, 0) end
  return proc, msg, code
end

local read_report

-- The parent's part once the child exists: each step's parent phase, the release, the child's report (a failed
-- step, or EOF once the payload exec'd), the seccomp listener and the payload's pid. Raises on failure.
local function release_child(running, ctx, proc)
  for _, step in ipairs(steps) do
    if step.parent then
      local value, pmsg, pcode = call_step(step, "parent", ctx, proc)
      if value == nil and pmsg ~= nil then fail(step.name, pmsg, pcode) end
    end
  end
  if ctx.sync_w then
    ctx.sync_w:write("1")
    ctx.sync_w:close()
  end
  if ctx.hooks_parent then
    -- "ready" once the child's tree is built (nothing: it failed before, and the error pipe says why).
    local chan = ctx.hooks_parent
    local said = read_stream(chan, 5)
    if said == "ready" then
      local hook = ctx.spec.hooks.before_pivot
      local done, data = true, nil
      if hook then done, data = pcall(hook, proc.pid) end
      if not done then
        chan:close()
        ctx.hooks_parent = nil
        -- (an interruption stays one: the caller ends by its signal)
        if errors.is(data) and data.interrupted then error(data, 0) end
        fail("before_pivot", errors.is(data) and data.msg or tostring(data), errors.is(data) and data.code or "ELUA")
      end
      if data ~= nil and type(data) ~= "string" then
        misuse("hooks.before_pivot", "a string (or nothing) expected as its result, got %s", type(data))
      end
      local sent, msg, code = chan:write("1" .. (data or ""))
      if not sent then
        chan:close()
        ctx.hooks_parent = nil
        fail("before_pivot", "answer the child: " .. msg, code)
      end
    end
    chan:close()
    ctx.hooks_parent = nil
  end
  -- From here the payload may already run (and print) while lunas reads its report: a signal meanwhile waits
  -- until the handle exists, so that it is passed on to the payload like one that comes a moment later, rather
  -- than ending a sandbox whose payload never saw it.
  core.interrupt_defer(read_report, running, ctx)
end

read_report = function(running, ctx)
  local record = read_until_eof(ctx.err_r)
  ctx.err_r:close()
  if ctx.parent then ctx.parent:close() end
  if record ~= "" then
    local step, rcode, rmsg = parse_record(record)
    fail(step, rmsg, rcode)
  end
  if ctx.notify_parent then
    local fd, msg, code = core.recv_fd(ctx.notify_parent)
    ctx.notify_parent:close()
    if not fd then fail("seccomp", "receive the listener: " .. msg, code) end
    ctx.listener = security.listener(fd)
  end
  if ctx.status_r then
    local data = ctx.status_r:read(4)
    running.payload_ns_pid = type(data) == "string" and #data == 4 and string.unpack("i4", data) or nil
  end
end

--- Starts the sandbox and returns a running handle once the payload has exec'd (or raises the failed step).
-- @treturn Running
-- @raise a lunas error "sandbox: STEP: message" with `step` and `code`
function Sandbox:spawn()
  local ctx = new_context(self.spec)
  ctx.fork = ctx.ns.pid and not self.spec.as_pid_1
  local ok, err = pcall(function()
    for _, step in ipairs(steps) do
      if step.prepare then call_step(step, "prepare", ctx) end
    end
  end)
  if ok then ok, err = pcall(open_pipes, ctx) end
  if not ok then
    close_child_ends(ctx)
    close_all(ctx.err_r, ctx.sync_w, ctx.status_r)
    abort_steps(ctx)
    error(err, 0)
  end
  -- With nothing for the parent to do before the payload execs, the child borrows our memory until then (no
  -- page tables copied, no page duplicated). A reaper then execs the freestanding reaper program, which gives
  -- the memory back; without that program it has to be a copy.
  -- Kernels before 6.x refuse a child that shares memory across a time namespace change (EINVAL on 6.1): with
  -- a time namespace every child is a copy.
  ctx.shared_vm_ok = not ctx.ns.time and not ctx.time_offsets
  if ctx.fork and self.spec.argv then ctx.reaper_image = get_reaper_image() end
  -- (a child that waits for its start before exec cannot borrow the memory of a caller that waits for its exec)
  ctx.vfork = ctx.shared_vm_ok and not ctx.sync and not ctx.cgroup_fd and self.spec.argv ~= nil
    and not self.spec.start_gate
    and (not ctx.fork or ctx.reaper_image ~= nil)
  local started = core.now()
  ctx.maps_written = ctx.parent_maps ~= nil and not ctx.sync
  local cloned, proc, msg, code = pcall(spawn_in_netns, self.spec.net, { flags = clone_flags(ctx),
    fn = function() return child_main(ctx) end, vfork = ctx.vfork, cgroup = ctx.cgroup_fd,
    maps = ctx.maps_written and ctx.parent_maps or nil })
  close_child_ends(ctx)
  if not cloned or not proc then
    close_all(ctx.err_r, ctx.sync_w, ctx.status_r)
    abort_steps(ctx)
    if not cloned then error(proc, 0) end
    fail("clone", msg, code)
  end
  local name = ctx.record and ctx.record.name or (type(self.spec.name) == "string" and self.spec.name or nil)
  local running = interrupt.track(setmetatable({ pid = proc.pid, name = name, process = proc, ctx = ctx, started = started,
    timeout = self.spec.timeout }, Running))
  -- From here a failure (a step, the child's report, an interruption while we wait for it) kills the child and
  -- undoes the steps; a failure of that clean-up is kept with the error, never in its place.
  local ok, err = pcall(release_child, running, ctx, proc)
  if not ok then
    close_all(ctx.err_r, ctx.sync_w, ctx.parent, ctx.notify_parent, ctx.hooks_parent)
    error(errors.cleanup(err, running.close, running), 0)
  end
  return running
end

--- Runs the sandbox to completion: {status | signal, signame, core, pid, elapsed, timed_out}.
-- With limits, the result also has `usage` (the cgroup's statistics) and `oom_killed`; `warnings` lists what
-- this host could not enforce (limits with best_effort, Landlock rules).
-- @treturn table
function Sandbox:run()
  local running <close> = self:spawn()
  return running:wait()
end

-- Answers held system calls with the profile's on_notify (without one, they run) until the payload's sandbox exits
-- or the timeout passes; returns false on timeout.
local function supervise(self, timeout)
  local listener, handler = self.ctx.listener, self.ctx.spec.seccomp.on_notify
  local deadline = timeout and core.now() + timeout
  while true do
    local left = deadline and math.max(0, deadline - core.now())
    local ready = core.poll({ self.process, listener.fd }, left)
    if #ready == 0 then return false end
    if ready[1] == 1 then return true end
    local req, why = listener:receive(0)
    -- Nothing left under the filter: only the sandbox's exit is left to wait for.
    if why == "closed" then return #core.poll({ self.process }, left) > 0 end
    if req then
      local ok, reply = true, nil
      if handler then ok, reply = pcall(handler, req, self) end
      -- A handler that fails refuses the call: a supervisor bug must not let it through.
      listener:respond(req, ok and reply or "EPERM")
      if not ok then io.stderr:write("lunas: seccomp on_notify: ", tostring(reply), "\n") end
    end
  end
end

--- Running sandboxes.
-- What `Sandbox:spawn` returns: `r.pid` is the sandbox's first process (its PID 1 with a pid namespace).
-- Closing it (or leaving a `<close>` scope) kills what still runs.
-- @type Running

--- The seccomp listener of a sandbox whose profile has notify rules (lunas.security listener: receive,
-- respond), for a supervisor that serves it itself instead of on_notify; nil without notify rules.
function Running:listener()
  return self.ctx.listener
end

-- A lingering sandbox's payload status (4 bytes on the status pipe, written by PID 1 when the payload ends), or
-- nil when PID 1 ended first, or false on timeout.
local function lingering_status(self, timeout)
  local ready, msg, code = core.poll({ self.ctx.status_r }, timeout)
  if not ready then errors.raise{ op = "wait", msg = msg, code = code } end
  if #ready == 0 then return false end
  local data = self.ctx.status_r:read(4)
  if type(data) == "string" and #data == 4 then return string.unpack("i4", data) end
  return nil
end

--- Waits for the payload (timeout in seconds, default the spec's); on timeout the sandbox is killed and the
-- result has timed_out = true. With notify rules, held system calls are answered meanwhile by the profile's
-- on_notify (without one, they run). With `linger`, it returns when the payload ends and leaves the rest of the
-- sandbox running under its PID 1. Waiting again returns the same result.
-- @tparam[opt] number timeout
-- @treturn table the result, as `Sandbox:run` gives it
function Running:wait(timeout)
  if self.result then return self.result end
  timeout = timeout or self.timeout
  local proc = self.process
  if self.ctx.spec.linger and self.ctx.fork and self.ctx.status_r and not self.ctx.listener then
    -- PID 1 stays for the rest of the sandbox: the payload's end is the end of this wait.
    local st = lingering_status(self, timeout)
    if st then
      local result = { pid = self.pid, elapsed = core.now() - self.started }
      decode_wait_status(st, result)
      self.result = result
      self:release()
      interrupt.untrack(self)
      core.interrupt_defer(finish_steps, self.ctx, result)
      return result
    end
    if st == false then timeout = 0 end
  end
  local status, msg, code
  if not self.ctx.listener then
    status, msg, code = proc:wait(timeout)
  elseif supervise(self, timeout) then
    status, msg, code = proc:wait()
  else
    status, msg, code = nil, "timed out", "ETIMEDOUT"
  end
  local timed_out = false
  if not status and code == "ETIMEDOUT" then
    timed_out = true
    -- With a cgroup, everything the sandbox started goes, not only its first process.
    if not (self.ctx.cgroup and pcall(self.ctx.cgroup.kill, self.ctx.cgroup)) then proc:kill("KILL") end
    status, msg, code = proc:wait()
  end
  if not status then errors.raise{ op = "wait", msg = msg, code = code } end
  local result = { pid = self.pid, elapsed = core.now() - self.started, timed_out = timed_out or nil }
  local payload_status = self.ctx.status_r and self.ctx.status_r:read(4)
  if type(payload_status) == "string" and #payload_status == 4 then
    decode_wait_status(string.unpack("i4", payload_status), result)
  else
    result.status, result.signal, result.signame, result.core = status.status, status.signal, status.signame,
      status.core
  end
  self.result = result
  self:release()
  interrupt.untrack(self)
  core.interrupt_defer(finish_steps, self.ctx, result)
  return result
end

local function read_status_field(pid, name)
  local status = read_all("/proc/" .. pid .. "/status")
  return status and status:match("\n" .. name .. ":%s*([^\n]*)")
end

--- The payload's pid as the host sees it: the sandbox's own pid without a reaper, else the reaper's child whose
-- innermost pid is the one the reaper reported. nil once it has exited.
function Running:payload_pid()
  if not self.payload_ns_pid then return self.pid end
  for _, entry in ipairs(core.listdir("/proc") or {}) do
    if entry:match("^%d+$") and tonumber(read_status_field(entry, "PPid")) == self.pid then
      local nspid = read_status_field(entry, "NSpid")
      if nspid and tonumber(nspid:match("(%d+)%s*$")) == self.payload_ns_pid then return tonumber(entry) end
    end
  end
end

--- Sends a signal to the sandbox (to its PID 1, which forwards it to the payload).
function Running:kill(sig)
  return errors.check(self.process:kill(sig or "TERM"))
end

--- Frees the sandbox's process handle and status pipe (wait does it; the result stays). Once released, the
-- sandbox can no longer be killed through this handle.
function Running:release()
  if self.ctx.status_r then self.ctx.status_r:close() end
  self.process:close()
  self.released = true
end

--- Kills the sandbox if it still runs, reaps it, and frees its descriptors; then removes what its steps made
-- (the cgroup, the host id range...), every one of them even when another fails (the first failure raises).
-- Idempotent. As a `<close>` scope's variable, a failure while an error unwinds is kept with that error.
function Running:close()
  if self.closed then return end
  self.closed = true
  interrupt.untrack(self)
  if self.result then return end
  -- A signal that arrives meanwhile waits until the sandbox is gone (lunas.interrupt).
  core.interrupt_defer(function()
    if not self.released then
      self.process:kill("KILL")
      self.process:wait()
      self:release()
    end
    finish_steps(self.ctx, nil)
  end)
end
Running.__close = errors.closer(Running.close)

--- The sandbox's cgroup (a lunas.cgroup object: stats, freeze, thaw, kill), or nil without limits.
function Running:cgroup()
  return self.ctx.cgroup
end

--- Usage so far (cgroup statistics), or nil without limits.
function Running:usage()
  return self.ctx.cgroup and not self.ctx.cgroup.closed and self.ctx.cgroup:stats() or nil
end

--- The counters of the sandbox's firewall now (`lunas.firewall.counters`: {name, packets, bytes, direction,
-- action} per rule, then per policy). Needs a `firewall` in the spec.
function Running:firewall_counters()
  if not self.ctx.spec.firewall then
    errors.raise{ op = "sandbox", msg = "sandbox: firewall_counters: the spec has no firewall", code = "EINVAL" }
  end
  if not self.ctx.firewall_ns then
    errors.raise{ op = "sandbox", msg = "sandbox: firewall_counters: the sandbox has ended", code = "ESRCH" }
  end
  return firewall.counters(self.ctx.firewall_ns, { userns = self.ctx.firewall_userns })
end

--- Stops every process of the sandbox until thaw() (needs limits, hence a cgroup).
function Running:freeze()
  if not self.ctx.cgroup then errors.raise{ op = "sandbox", msg = "sandbox: freeze: needs a cgroup (set 'limits')", code = "EINVAL" } end
  self.ctx.cgroup:freeze()
  if self.ctx.record then self.ctx.record:event("freeze") end
  return self
end

--- Lets a frozen sandbox run again.
function Running:thaw()
  if not self.ctx.cgroup then errors.raise{ op = "sandbox", msg = "sandbox: thaw: needs a cgroup (set 'limits')", code = "EINVAL" } end
  self.ctx.cgroup:thaw()
  if self.ctx.record then self.ctx.record:event("thaw") end
  return self
end

--- @section end

--- Validates a spec and returns a sandbox: lunas.sandbox{argv = {...}, ...}:run().
-- Every field is optional but one of argv and fn; the defaults are the safe ones. A misspelt field raises.
-- @tparam table spec
-- @tparam[opt] table spec.argv the program and its arguments
-- @tparam[opt] function spec.fn a Lua function as the payload instead: its result is the exit status
-- @tparam[opt] string spec.argv0 what the program sees as argv[0]
-- @tparam[opt] string|table spec.name a record under /run/lunas that lunas ps, top, stats and events show,
--   unique among running sandboxes (a second one of that name is refused); `{prefix = "judge"}` takes a free
--   name made from it (judge-PID, judge-PID-RANDOM when that one runs), as `lunas run` does with "run"
-- @tparam[opt] string|table spec.namespaces default "user,pid,mount,uts,ipc,net,cgroup" (time on request);
--   without privileges a user namespace is always added
-- @tparam[opt] integer spec.uid the uid inside (default 0 in a user namespace, the caller's own id mapped)
-- @tparam[opt] integer spec.gid
-- @tparam[opt] table spec.uid_map ranges `{{inside, outside, count}, ...}` (written by the parent, or by
--   newuidmap when unprivileged)
-- @tparam[opt] table spec.gid_map
-- @tparam[opt] boolean spec.setgroups allow setgroups inside (the maps are then written by the parent)
-- @tparam[opt] table spec.groups supplementary gids (needs setgroups in a user namespace)
-- @tparam[opt] string spec.hostname needs the uts namespace
-- @tparam[opt] string spec.domainname
-- @tparam[opt] table spec.env variables to set `{K = V}`
-- @tparam[opt=false] boolean spec.clearenv start from an empty environment
-- @tparam[opt] table|boolean spec.keep_env names kept from ours (default TERM, PATH, HOME, LANG); true keeps all
-- @tparam[opt] table spec.unsetenv names removed
-- @tparam[opt] string spec.cwd the working directory (default: the caller's when the tree has it, else /)
-- @tparam[opt] table spec.rlimits `{nofile = 1024, cpu = {soft, hard}, ...}` (names of `lunas.core.setrlimit`)
-- @tparam[opt=true] boolean spec.die_with_parent the sandbox dies with lunas
-- @tparam[opt=true] boolean spec.new_session setsid: no controlling terminal
-- @tparam[opt=false] boolean spec.as_pid_1 with a pid namespace, the payload is PID 1 itself (no reaper)
-- @tparam[opt] string spec.apparmor the AppArmor profile the payload execs under (loaded already); behind a reaper
--   the payload alone takes it, PID 1 keeps the caller's
-- @tparam[opt] string spec.selinux_label the payload's SELinux exec context (the same way)
-- @tparam[opt] string spec.selinux_mount_label the SELinux context of the sandbox's new file systems (context=)
-- @tparam[opt] number spec.timeout seconds before run and wait kill it (result.timed_out)
-- @tparam[opt] table spec.time `{monotonic = seconds, boottime = seconds}`: clock offsets in a new time namespace
-- @tparam[opt] string spec.rootfs "tmpfs" (an empty root), "host" (a private copy of the host's mount table), or
--   a host directory
-- @tparam[opt] table spec.mounts entries applied in order (see `lunas.fs`); with any file system field the tree is
--   built from an empty root, without any it is the default tree (`lunas.fs.default_mounts`: the host's programs
--   read-only, private /tmp, /run, /var and HOME, the working directory read-only, no socket or FIFO of the
--   host), which a `{"default"}` entry puts where it stands
-- @tparam[opt=false] boolean spec.host_root run by root, the sandbox's root is the host's root (its ids mapped onto
--   root's, or no user namespace at all); by default root's sandboxes get a range of host ids of their own
--   (`lunas.idrange`), writable binds idmapped
-- @tparam[opt="own"] string spec.abstract_sockets "host": without a network namespace of its own, the sandbox
--   reaches the host's abstract unix sockets too (by default Landlock scopes them, ABI 6)
-- @tparam[opt="private"] string spec.keyring "inherit": the caller's session keyring instead of a new one
-- @tparam[opt=true] boolean spec.harden the masks and read-only parts of /proc and /sys
-- @param[opt] spec.caps "none" (the default: every capability dropped), "keep", names to keep, or
--   `{add = names, drop = names}` (`lunas.security.check_caps`)
-- @param[opt] spec.seccomp nil (the default profile), false (no filter) or a profile
--   (`lunas.security.check_profile`)
-- @tparam[opt] table spec.landlock `{ro =, rw =, paths =, connect =, bind =, scoped =, strict =}`
--   (`lunas.security.check_landlock`)
-- @tparam[opt=true] boolean spec.no_new_privs false needs seccomp = false
-- @tparam[opt=true] boolean spec.loopback lo up in the sandbox's network namespace
-- @param[opt] spec.net "none" (the default: a namespace of its own, lo only), "host", a lab host (its namespace),
--   a lab switch or `{switch =, address = "10.0.0.9/24", gateway =, name = "eth0"}` (lunas.net)
--   , "nat" (root: a veth pair into the caller's network and a masquerade) or "pasta" (user-mode egress
--   through Debian's pasta, rootless too): `lunas.egress`
-- @tparam[opt] table spec.firewall rules for the sandbox's own network namespace (`lunas.firewall.check`),
--   applied before the payload runs; counters from `Running:firewall_counters` and in the result's `firewall`
-- @param[opt] spec.stdin an fd, an integer, "null" or "inherit" (the default)
-- @param[opt] spec.stdout
-- @param[opt] spec.stderr
-- @tparam[opt=true] boolean spec.close_fds descriptors beyond 0-2 are closed at exec, but keep_fds
-- @tparam[opt] table spec.keep_fds
-- @tparam[opt] table spec.limits cgroup limits (`lunas.cgroup.check_limits`) and `best_effort = true` to turn a
--   limit this host cannot enforce into a warning: the sandbox gets a cgroup of its own
-- @treturn Sandbox
function M.new(spec)
  return setmetatable({ spec = validate(spec) }, Sandbox)
end

M.Sandbox = Sandbox
-- `lunas.sandbox{...}` builds one, as `lunas.sandbox.new{...}` does; the module's other functions stay reachable.
return setmetatable(M, { __call = function(_, spec) return M.new(spec) end })
