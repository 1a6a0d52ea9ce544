--- The sandbox options of the command line, one table for both front ends that take them: `lunas run` (lunas's
-- safe defaults) and lunas as bubblewrap (`lunas-bwrap`, bubblewrap's defaults and messages). An option means the
-- same in both; only the defaults, applied afterwards by each front end, differ. Options only one front end has say
-- so in `modes`.
--
-- Parsing fills a state table: what each option asked for, in order where order matters (mounts, capability
-- changes, environment changes). Misuse raises `{usage = message}` in the front end's own words.
local core = require "lunas.core"

local M = {}

-- ---- messages ----------------------------------------------------------------------------------------------

local function usage(msg) error({ usage = msg }, 0) end

-- A message in each front end's words: run's, or bubblewrap's exact text (clients and its tests match them).
local function misuse(st, run_msg, bwrap_msg)
  usage(st.mode == "bwrap" and (bwrap_msg or run_msg) or run_msg)
end

local COUNT_WORDS = { "an argument", "two arguments", "three arguments" }

-- ---- values ------------------------------------------------------------------------------------------------

-- A descriptor number as bubblewrap reads it (strtol, all digits, not negative).
local function fd_number(st, opt, v)
  local n = v:match("^%d+$") and math.tointeger(tonumber(v))
  if not n or n > 0x7fffffff then misuse(st, opt .. ": a descriptor number expected, got '" .. v .. "'", "Invalid fd: " .. v) end
  return n
end

-- The whole contents behind an inherited descriptor (bubblewrap reads, then closes it); nil, message.
local function read_descriptor(fd)
  local f, msg = io.open("/proc/self/fd/" .. fd, "rb")
  if not f then return nil, (msg:gsub("^/proc/self/fd/%d+: ", "")) end
  local data = f:read("a")
  f:close()
  core.close_range(fd, fd)
  if not data then return nil, "read failed" end
  return data
end

local function octal(st, opt, v)
  local n = v:match("^[0-7]+$") and tonumber(v, 8)
  if not n or n > 4095 then misuse(st, opt .. ": octal mode expected, got '" .. v .. "'", opt .. " takes an octal argument <= 07777") end
  return n
end

local function id(st, opt, v)
  local n = v:match("^%d+$") and math.tointeger(tonumber(v))
  if not n or n > 0x7fffffff then
    misuse(st, opt .. ": bad id '" .. v .. "'", ("Invalid %s: %s"):format(opt:sub(3), v))
  end
  return n
end

-- ---- the state ---------------------------------------------------------------------------------------------

local function add_mount(st, entry) st.mounts[#st.mounts + 1] = entry end

-- --perms applies to the entry right after it (and --size to a --tmpfs): the entry takes them.
local function take_perms(st, entry)
  if st.perms then
    entry.mode = st.perms
    st.perms = nil
  end
  return entry
end

local function overlay(st, kind, dest, extra)
  if #st.lower == 0 then
    misuse(st, "--" .. kind .. " needs --overlay-src first", "--" .. kind .. " requires at least one --overlay-src")
  end
  if kind == "ro-overlay" and #st.lower < 2 and st.mode == "bwrap" then
    usage("--ro-overlay requires at least two --overlay-src")
  end
  local entry = { kind, dest, lower = st.lower }
  for k, v in pairs(extra or {}) do entry[k] = v end
  add_mount(st, entry)
  st.lower = {}
end

local function capability(st, opt, name, keep)
  local ok = pcall(require("lunas.security").check_caps, opt, { name })
  if not ok then misuse(st, opt .. ": unknown capability '" .. name .. "'", "unknown cap: " .. name) end
  st.caps_ops[#st.caps_ops + 1] = { keep = keep, name = name }
end

local function seccomp_program(st, opt, fd)
  local data, msg = read_descriptor(fd)
  if not data then misuse(st, opt .. ": cannot read descriptor " .. fd .. ": " .. msg, "Can't read seccomp data: " .. msg) end
  if #data % 8 ~= 0 then misuse(st, opt .. ": a BPF program is a multiple of 8 bytes", "Invalid seccomp data, must be multiple of 8") end
  return data
end

local function landlock_list(st, kind, v)
  st.spec.landlock = st.spec.landlock or {}
  st.spec.landlock[kind] = st.spec.landlock[kind] or {}
  table.insert(st.spec.landlock[kind], v)
end

local function port(st, opt, v)
  local n = v:match("^%d+$") and math.tointeger(tonumber(v))
  if not n or n > 65535 then misuse(st, opt .. ": port 0-65535 expected, got '" .. v .. "'") end
  return n
end

local function limit(st, name, v)
  st.spec.limits = st.spec.limits or {}
  st.spec.limits[name] = v
  st.origins["limits." .. name] = st.current
end

local function count(st, opt, v)
  if v == "max" then return v end
  if not v:match("^%d+$") then misuse(st, opt .. ": a number expected, got '" .. v .. "'") end
  return math.tointeger(tonumber(v))
end

local function seconds(st, opt, v, min_exclusive)
  local t = tonumber(v)
  if not t or (min_exclusive and t <= 0) or t < 0 then
    misuse(st, opt .. (min_exclusive and ": positive number of seconds expected" or ": 0 or more seconds expected"))
  end
  return t
end

-- --allow-out / --deny-out PROTO:HOST[:PORT] as a firewall rule: HOST an IPv4 address or network, an IPv6 one
-- in brackets ([fd00::1], [fd00::/64]) or *; PORT a number, a range LOW-HIGH or *. The values are checked
-- again, fully, by lunas.firewall.
local OUT_PROTOS = { tcp = "tcp", udp = "udp", icmp = "icmp", icmpv6 = "icmpv6", any = "any", ["*"] = "any" }
local function egress_rule(action)
  return function(st, opt, v)
    local proto, rest = v:match("^([^:]+):(.+)$")
    local host, port_text
    if rest and rest:sub(1, 1) == "[" then
      host, port_text = rest:match("^(%b[]/?%d*)(.*)$")
      if port_text and port_text ~= "" then port_text = port_text:match("^:(.+)$") or false end
    elseif rest then
      host, port_text = rest:match("^([^:]+)(.*)$")
      if port_text and port_text ~= "" then port_text = port_text:match("^:([^:]+)$") or false end
    end
    if not OUT_PROTOS[proto] or not host or port_text == false then
      misuse(st, opt .. ": PROTO:HOST[:PORT] expected (tcp:10.0.0.0/8:443, udp:[fd00::53]:53, tcp:*:80-90, icmp:*), got '" .. v .. "'")
    end
    local rule = { direction = "out", proto = OUT_PROTOS[proto], action = action, name = ("cli_%d"):format(#st.egress + 1) }
    if host ~= "*" then rule.to = host end
    if port_text and port_text ~= "" and port_text ~= "*" then
      rule.port = port_text:match("^%d+$") and math.tointeger(tonumber(port_text)) or port_text
    end
    st.egress[#st.egress + 1] = rule
    if action == "allow" then st.egress_allow = true end
  end
end

local function unshare(name) return function(st) st.unshare[name], st.chose = true, true end end
local function unshare_try(name) return function(st) st.unshare_try[name], st.chose = true, true end end
local function flag(field, value) return function(st) st.spec[field] = value end end
local function bind_kind(kind) return function(st, _, src, dest) add_mount(st, { kind, src, dest }) end end

-- --bind-fd and --ro-bind-fd: the path the descriptor names, checked to be that file once bound (lunas.fs).
local function bind_fd(kind)
  return function(st, o, fd, dest)
    local n = fd_number(st, o, fd)
    local path = core.readlink("/proc/self/fd/" .. n)
    if not path then misuse(st, o .. ": descriptor " .. n .. " is not open", "Can't open fd " .. n) end
    add_mount(st, { kind, path, dest, fd = n })
  end
end

-- --file, --bind-data and --ro-bind-data: the descriptor's contents, read now (as bubblewrap reads them).
local function data_kind(kind)
  return function(st, o, fd, dest)
    local data = read_descriptor(fd_number(st, o, fd))
    if not data then misuse(st, o .. ": cannot read descriptor '" .. fd .. "'", "Can't read fd " .. fd) end
    add_mount(st, take_perms(st, { kind, dest, data }))
  end
end

local BOTH, RUN, BWRAP = nil, { run = true }, { bwrap = true }

--- The options: name = {n = number of values, fn = function(state, option, values...), modes = nil (both) or
-- a set of front ends, field = the spec field it sets (for messages naming the option)}.
M.OPTIONS = {
  -- namespaces
  ["--unshare-user"] = { n = 0, fn = unshare("user") },
  ["--unshare-user-try"] = { n = 0, fn = unshare_try("user") },
  ["--unshare-ipc"] = { n = 0, fn = unshare("ipc") },
  ["--unshare-pid"] = { n = 0, fn = unshare("pid") },
  ["--unshare-net"] = { n = 0, fn = unshare("net") },
  ["--unshare-uts"] = { n = 0, fn = unshare("uts") },
  ["--unshare-cgroup"] = { n = 0, fn = unshare("cgroup") },
  ["--unshare-cgroup-try"] = { n = 0, fn = unshare_try("cgroup") },
  ["--unshare-all"] = { n = 0, fn = function(st)
    st.chose = true
    for _, name in ipairs{ "ipc", "pid", "net", "uts" } do st.unshare[name] = true end
    -- bubblewrap's --unshare-all takes user and cgroup where the host can; lunas run takes them all.
    if st.mode == "bwrap" then
      st.unshare_try.user, st.unshare_try.cgroup = true, true
    else
      st.unshare.user, st.unshare.cgroup = true, true
    end
  end },
  ["--share-net"] = { n = 0, fn = function(st) st.unshare.net, st.share_net = nil, true end },
  ["--net"] = { n = 1, modes = RUN, field = "net", fn = function(st, o, v)
    if v ~= "none" and v ~= "host" and v ~= "nat" and v ~= "pasta" then
      misuse(st, o .. ": none, host, nat or pasta expected, got '" .. v .. "'")
    end
    st.net = v
    if v == "host" then st.unshare.net, st.share_net = nil, true else st.share_net = nil end
  end },
  ["--allow-out"] = { n = 1, modes = RUN, fn = egress_rule("allow") },
  ["--deny-out"] = { n = 1, modes = RUN, fn = egress_rule("reject") },
  ["--firewall"] = { n = 1, modes = RUN, fn = function(st, _, v) st.firewall_file = v end },
  ["--userns"] = { n = 1, fn = function(st, o, v) st.userns_fd = fd_number(st, o, v) end },
  ["--userns2"] = { n = 1, fn = function(st, o, v) st.userns2_fd = fd_number(st, o, v) end },
  ["--pidns"] = { n = 1, fn = function(st, o, v) st.pidns_fd = fd_number(st, o, v) end },
  ["--disable-userns"] = { n = 0, fn = function(st) st.disable_userns = true end },
  ["--assert-userns-disabled"] = { n = 0, fn = function(st) st.assert_userns_disabled = true end },
  -- identity
  ["--uid"] = { n = 1, field = "uid", fn = function(st, o, v) st.spec.uid = id(st, o, v) end },
  ["--gid"] = { n = 1, field = "gid", fn = function(st, o, v) st.spec.gid = id(st, o, v) end },
  ["--hostname"] = { n = 1, field = "hostname", fn = function(st, _, v) st.spec.hostname = v end },
  ["--name"] = { n = 1, modes = RUN, field = "name", fn = function(st, _, v) st.spec.name = v end },
  ["--host-root"] = { n = 0, modes = RUN, fn = flag("host_root", true) },
  -- environment and process
  ["--chdir"] = { n = 1, field = "cwd", fn = function(st, _, v) st.spec.cwd = v end },
  ["--setenv"] = { n = 2, field = "env", fn = function(st, _, k, v) st.env_ops[#st.env_ops + 1] = { "set", k, v } end },
  ["--unsetenv"] = { n = 1, field = "unsetenv", fn = function(st, _, k) st.env_ops[#st.env_ops + 1] = { "unset", k } end },
  ["--clearenv"] = { n = 0, fn = function(st) st.env_ops[#st.env_ops + 1] = { "clear" } end },
  ["--keep-env"] = { n = 0, modes = RUN, fn = flag("keep_env", true) },
  ["--argv0"] = { n = 1, field = "argv0", fn = function(st, _, v) st.spec.argv0 = v end },
  ["--as-pid-1"] = { n = 0, fn = flag("as_pid_1", true) },
  ["--die-with-parent"] = { n = 0, fn = flag("die_with_parent", true) },
  ["--no-die-with-parent"] = { n = 0, modes = RUN, fn = flag("die_with_parent", false) },
  ["--new-session"] = { n = 0, fn = flag("new_session", true) },
  ["--share-session"] = { n = 0, modes = RUN, fn = flag("new_session", false) },
  ["--share-keyring"] = { n = 0, modes = RUN, fn = flag("keyring", "inherit") },
  ["--share-abstract-sockets"] = { n = 0, modes = RUN, fn = flag("abstract_sockets", "host") },
  ["--lock-file"] = { n = 1, fn = function(st, _, v) st.lock_files[#st.lock_files + 1] = v end },
  ["--sync-fd"] = { n = 1, fn = function(st, o, v) st.spec.sync_fd = fd_number(st, o, v) end },
  ["--block-fd"] = { n = 1, fn = function(st, o, v) st.spec.block_fd = fd_number(st, o, v) end },
  ["--userns-block-fd"] = { n = 1, fn = function(st, o, v) st.userns_block_fd = fd_number(st, o, v) end },
  ["--info-fd"] = { n = 1, fn = function(st, o, v) st.info_fd = fd_number(st, o, v) end },
  ["--json-status-fd"] = { n = 1, fn = function(st, o, v) st.json_status_fd = fd_number(st, o, v) end },
  ["--json-status"] = { n = 1, modes = RUN, fn = function(st, _, v) st.json_status = v end },
  ["--exec-label"] = { n = 1, fn = function(st, _, v) st.exec_label = v end },
  ["--file-label"] = { n = 1, fn = function(st, _, v) st.file_label = v end },
  ["--apparmor"] = { n = 1, modes = RUN, field = "apparmor", fn = function(st, _, v) st.spec.apparmor = v end },
  ["--selinux-label"] = { n = 1, modes = RUN, field = "selinux_label", fn = function(st, _, v) st.exec_label = v end },
  ["--selinux-mount-label"] = { n = 1, modes = RUN, field = "selinux_mount_label",
    fn = function(st, _, v) st.file_label = v end },
  ["--level-prefix"] = { n = 0, modes = BWRAP, fn = function(st) st.level_prefix = true end },
  -- file system, in order
  ["--bind"] = { n = 2, fn = bind_kind("bind") },
  ["--bind-try"] = { n = 2, fn = bind_kind("bind-try") },
  ["--ro-bind"] = { n = 2, fn = bind_kind("ro-bind") },
  ["--ro-bind-try"] = { n = 2, fn = bind_kind("ro-bind-try") },
  ["--dev-bind"] = { n = 2, fn = bind_kind("dev-bind") },
  ["--dev-bind-try"] = { n = 2, fn = bind_kind("dev-bind-try") },
  ["--ro-view"] = { n = 2, modes = RUN, fn = bind_kind("ro-view") },
  ["--ro-view-try"] = { n = 2, modes = RUN, fn = bind_kind("ro-view-try") },
  ["--bind-fd"] = { n = 2, fn = bind_fd("bind") },
  ["--ro-bind-fd"] = { n = 2, fn = bind_fd("ro-bind") },
  ["--remount-ro"] = { n = 1, fn = function(st, _, v) add_mount(st, { "remount-ro", v }) end },
  ["--overlay-src"] = { n = 1, fn = function(st, _, v) st.lower[#st.lower + 1] = v end },
  ["--overlay"] = { n = 3, fn = function(st, _, upper, work, dest) overlay(st, "overlay", dest, { upper = upper, work = work }) end },
  ["--tmp-overlay"] = { n = 1, fn = function(st, _, dest) overlay(st, "tmp-overlay", dest) end },
  ["--ro-overlay"] = { n = 1, fn = function(st, _, dest) overlay(st, "ro-overlay", dest) end },
  ["--proc"] = { n = 1, fn = function(st, _, v) add_mount(st, { "proc", v }) end },
  ["--dev"] = { n = 1, fn = function(st, _, v) add_mount(st, { "dev", v }) end },
  ["--tmpfs"] = { n = 1, fn = function(st, _, v)
    local entry = take_perms(st, { "tmpfs", v, size = st.size })
    st.size = nil
    add_mount(st, entry)
  end },
  ["--mqueue"] = { n = 1, fn = function(st, _, v) add_mount(st, { "mqueue", v }) end },
  ["--dir"] = { n = 1, fn = function(st, _, v) add_mount(st, take_perms(st, { "dir", v })) end },
  ["--symlink"] = { n = 2, fn = function(st, _, target, dest) add_mount(st, { "symlink", target, dest }) end },
  ["--chmod"] = { n = 2, fn = function(st, o, mode, dest) add_mount(st, { "chmod", dest, octal(st, o, mode) }) end },
  ["--mask"] = { n = 1, modes = RUN, fn = function(st, _, v) add_mount(st, { "mask", v }) end },
  ["--default-tree"] = { n = 0, modes = RUN, fn = function(st) add_mount(st, { "default" }) end },
  ["--rootfs"] = { n = 1, modes = RUN, field = "rootfs", fn = function(st, _, v) st.spec.rootfs = v end },
  ["--no-harden"] = { n = 0, modes = RUN, fn = flag("harden", false) },
  ["--perms"] = { n = 1, modifier = true, fn = function(st, o, v)
    if st.perms then misuse(st, "--perms given twice for the same entry", "--perms given twice for the same action") end
    st.perms = octal(st, o, v)
  end },
  ["--size"] = { n = 1, modifier = true, fn = function(st, o, v)
    if st.size then misuse(st, "--size given twice for the same entry", "--size given twice for the same action") end
    -- (bubblewrap's limit: SIZE_MAX / 2)
    local n = v:match("^%d+$") and math.tointeger(tonumber(v))
      or v:match("^0[xX]%x+$") and math.tointeger(tonumber(v))
    if not n or n == 0 then misuse(st, o .. ": bytes expected, got '" .. v .. "' (a number above 0)", "--size takes a non-zero number of bytes") end
    st.size = n
  end },
  -- data from descriptors
  ["--file"] = { n = 2, fn = data_kind("file") },
  ["--bind-data"] = { n = 2, fn = data_kind("bind-data") },
  ["--ro-bind-data"] = { n = 2, fn = data_kind("ro-bind-data") },
  -- confinement
  ["--cap-add"] = { n = 1, fn = function(st, o, v) capability(st, o, v, true) end },
  ["--cap-drop"] = { n = 1, fn = function(st, o, v) capability(st, o, v, false) end },
  ["--seccomp"] = { n = 1, fn = function(st, o, v)
    if st.seccomp_add then usage("--seccomp cannot be combined with --add-seccomp-fd") end
    -- lunas run: a profile in Lua, or (a number) a compiled program, as bubblewrap takes it.
    if st.mode == "run" and not v:match("^%d+$") then
      st.seccomp_file = v
      return
    end
    st.seccomp_programs = { seccomp_program(st, o, fd_number(st, o, v)) }
    st.seccomp_fd = true
  end },
  ["--add-seccomp-fd"] = { n = 1, fn = function(st, o, v)
    if st.seccomp_fd then usage("--add-seccomp-fd cannot be combined with --seccomp") end
    st.seccomp_add = true
    st.seccomp_programs = st.seccomp_programs or {}
    table.insert(st.seccomp_programs, seccomp_program(st, o, fd_number(st, o, v)))
  end },
  ["--seccomp-deny"] = { n = 1, modes = RUN, fn = function(st, _, v) table.insert(st.seccomp_lists.deny, v) end },
  ["--seccomp-allow"] = { n = 1, modes = RUN, fn = function(st, _, v) table.insert(st.seccomp_lists.allow, v) end },
  ["--no-seccomp"] = { n = 0, modes = RUN, fn = flag("seccomp", false) },
  ["--seccomp-show"] = { n = 0, modes = RUN, fn = function(st) st.show_seccomp = true end },
  ["--landlock-ro"] = { n = 1, modes = RUN, fn = function(st, _, v) landlock_list(st, "ro", v) end },
  ["--landlock-rw"] = { n = 1, modes = RUN, fn = function(st, _, v) landlock_list(st, "rw", v) end },
  ["--landlock-connect"] = { n = 1, modes = RUN, fn = function(st, o, v) landlock_list(st, "connect", port(st, o, v)) end },
  ["--landlock-bind"] = { n = 1, modes = RUN, fn = function(st, o, v) landlock_list(st, "bind", port(st, o, v)) end },
  ["--landlock-strict"] = { n = 0, modes = RUN, fn = function(st)
    st.spec.landlock = st.spec.landlock or {}
    st.spec.landlock.strict = true
  end },
  -- resources
  ["--memory"] = { n = 1, modes = RUN, fn = function(st, _, v) limit(st, "memory", v) end },
  ["--memory-high"] = { n = 1, modes = RUN, fn = function(st, _, v) limit(st, "memory_high", v) end },
  ["--swap"] = { n = 1, modes = RUN, fn = function(st, _, v) limit(st, "swap", v) end },
  ["--pids"] = { n = 1, modes = RUN, fn = function(st, o, v) limit(st, "pids", count(st, o, v)) end },
  ["--cpu"] = { n = 1, modes = RUN, fn = function(st, _, v) limit(st, "cpu", v) end },
  ["--cpu-weight"] = { n = 1, modes = RUN, fn = function(st, o, v) limit(st, "cpu_weight", count(st, o, v)) end },
  ["--cpuset"] = { n = 1, modes = RUN, fn = function(st, _, v) limit(st, "cpuset", v) end },
  ["--limits-best-effort"] = { n = 0, modes = RUN, fn = function(st) limit(st, "best_effort", true) end },
  ["--usage"] = { n = 0, modes = RUN, fn = function(st) st.show_usage = true end },
  ["--timeout"] = { n = 1, modes = RUN, field = "timeout", fn = function(st, o, v) st.spec.timeout = seconds(st, o, v, true) end },
  ["--stop-timeout"] = { n = 1, modes = RUN, fn = function(st, o, v) st.stop_timeout = seconds(st, o, v) end },
}

-- bubblewrap allows one --args level: files cannot name more.
local function expand_args(st, opt, v, depth)
  if depth > 0 then usage("--args not supported in arguments file") end
  local fd = fd_number(st, opt, v)
  local data, msg = read_descriptor(fd)
  if not data then misuse(st, "--args: cannot read descriptor " .. fd .. ": " .. msg, "Can't read --args data: " .. msg) end
  local list = {}
  for word in data:gmatch("([^%z]*)%z") do list[#list + 1] = word end
  local tail = data:match("([^%z]+)$")
  if tail then list[#list + 1] = tail end
  return list
end

-- The most arguments bubblewrap takes, --args data included.
local MAX_ARGS = 9000

local function new_state(mode)
  return { mode = mode, spec = {}, mounts = {}, lower = {}, unshare = {}, unshare_try = {}, caps_ops = {},
    env_ops = {}, lock_files = {}, seccomp_lists = { deny = {}, allow = {} }, origins = {}, egress = {},
    total = 0 }
end

-- Parses one list of words into st; returns the index of the first word of the command, or "help" /
-- "version".
local function parse_list(st, args, depth)
  local i = 1
  st.total = st.total + #args
  if st.total > MAX_ARGS then usage(("Exceeded maximum number of arguments %d"):format(MAX_ARGS)) end
  while args[i] ~= nil do
    local a = args[i]
    if a == "--" then return i + 1 end
    if a == "--help" or (a == "-h" and st.mode == "run") then return "help" end
    if a == "--version" and st.mode == "bwrap" then return "version" end
    if a:sub(1, 1) ~= "-" then return i end
    st.current = a
    if a == "--args" then
      local v = args[i + 1]
      if v == nil then misuse(st, "--args needs a value", "--args takes an argument") end
      -- (as in bubblewrap, a word that is no option ends that data's options; the rest of it is ignored)
      parse_list(st, expand_args(st, a, v, depth), depth + 1)
      i = i + 2
    else
      local option = M.OPTIONS[a]
      if not option or (option.modes and not option.modes[st.mode]) then
        misuse(st, "unknown option '" .. a .. "'", "Unknown option " .. a)
      end
      local values = {}
      for k = 1, option.n do
        values[k] = args[i + k]
        if values[k] == nil then misuse(st, a .. " needs a value", ("%s takes %s"):format(a, COUNT_WORDS[option.n])) end
      end
      option.fn(st, a, table.unpack(values, 1, option.n))
      if option.field then st.origins[option.field] = a end
      -- Whatever --perms or --size was for had to come right after it.
      if not option.modifier then
        if st.perms then
          misuse(st, "--perms must be followed by an entry that creates a file (--dir, --file, --tmpfs, ...)",
            "--perms must be followed by an option that creates a file")
        end
        if st.size then misuse(st, "--size must be followed by --tmpfs") end
      end
      i = i + 1 + option.n
    end
  end
  return i
end

--- Parses the options of `mode` ("run" or "bwrap") from args; returns the state and the command (a list, maybe
-- empty), or "help" / "version". Raises `{usage = message}` on misuse, in the front end's own words.
-- @tparam table args
-- @tparam string mode
function M.parse(args, mode)
  local st = new_state(mode)
  local first = parse_list(st, args, 0)
  if first == "help" or first == "version" then return first end
  if st.perms then misuse(st, "--size or --perms without a following entry", "--perms must be followed by an option that creates a file") end
  if st.size then misuse(st, "--size or --perms without a following entry", "--size must be followed by --tmpfs") end
  if #st.lower > 0 then
    misuse(st, "--overlay-src without a following --overlay, --tmp-overlay or --ro-overlay",
      "--overlay-src must be followed by another --overlay-src option or one of --overlay, --tmp-overlay or --ro-overlay")
  end
  local argv = {}
  for k = first, #args do argv[#argv + 1] = args[k] end
  st.argv = argv
  return st
end

--- The environment the options describe, from `base` (a table of the caller's variables), in option order.
-- @tparam table st
-- @tparam table base
-- @treturn table
function M.environment(st, base)
  local env = {}
  for k, v in pairs(base) do env[k] = v end
  for _, op in ipairs(st.env_ops) do
    if op[1] == "clear" then env = {}
    elseif op[1] == "set" then env[op[2]] = op[3]
    else env[op[2]] = nil end
  end
  return env
end

--- The capability set the options leave, from `start` (a set of names): each --cap-add / --cap-drop in turn,
-- "ALL" meaning every capability. Returns the set, or nil when no option changed capabilities.
-- @tparam table st
-- @tparam table start
function M.capabilities(st, start)
  if #st.caps_ops == 0 then return nil end
  local caps = {}
  for k in pairs(start) do caps[k] = true end
  for _, op in ipairs(st.caps_ops) do
    if op.name:upper() == "ALL" and not op.keep then
      caps = {}
    else
      for cap in pairs(require("lunas.security").check_caps("caps", { op.name })) do caps[cap] = op.keep or nil end
    end
  end
  return caps
end

-- ---- what bubblewrap reports on --info-fd and --json-status-fd ----------------------------------------------

-- Writes to a descriptor we were given; false when it is not open for writing.
local function write_fd(fd, text)
  local f = io.open("/proc/self/fd/" .. fd, "a")
  if not f then return false end
  local ok = f:write(text)
  f:close()
  return ok ~= nil
end

-- The namespace ids bubblewrap reports: those of the namespaces made, the mount namespace always.
local REPORTED = { { "cgroup", "cgroup" }, { "ipc", "ipc" }, { "mnt", "mount" }, { "net", "net" }, { "pid", "pid" },
  { "uts", "uts" } }

local function namespace_ids(inodes, made, sep)
  local parts = {}
  for _, ns in ipairs(REPORTED) do
    if (ns[2] == "mount" or made[ns[2]]) and inodes[ns[2]] then
      parts[#parts + 1] = (",%s\"%s-namespace\": %d"):format(sep, ns[1], inodes[ns[2]])
    end
  end
  return table.concat(parts)
end

--- Before the sandbox's first process goes on (spec.before_release), as bubblewrap does: the --info-fd document
-- (then that descriptor is closed) and the first line of --json-status-fd, with the first process and the ids
-- of the namespaces made (read from /proc/PID/ns: the process is alive and waiting). A watcher that reads them can
-- count on the payload not having run yet. Then, with --userns-block-fd, a wait until that descriptor has data
-- (the program that writes the sandbox's maps is done). Raises on failure.
-- @tparam table st the parsed options
-- @tparam integer pid the sandbox's first process
-- @tparam table namespaces the spec's namespace names
function M.report_before_release(st, pid, namespaces)
  local made = {}
  for _, name in ipairs(namespaces) do made[name] = true end
  local inodes = core.ns_ids(pid) or {}
  if st.info_fd then
    local ok = write_fd(st.info_fd, ("{\n    \"child-pid\": %d%s\n}\n"):format(pid, namespace_ids(inodes, made, "\n    ")))
    core.close_range(st.info_fd, st.info_fd)
    if not ok then error("Write to info_fd: descriptor " .. st.info_fd .. " is not open for writing", 0) end
  end
  if st.json_status_fd then
    write_fd(st.json_status_fd, ("{ \"child-pid\": %d%s }\n"):format(pid, namespace_ids(inodes, made, " ")))
  end
  if st.userns_block_fd then
    local ready, msg = core.poll({ st.userns_block_fd })
    if not ready then error("userns-block-fd: " .. msg, 0) end
    core.close_range(st.userns_block_fd, st.userns_block_fd)
  end
end

--- The spec fields for bubblewrap's reports and --userns-block-fd (both front ends): the sandbox waits until
-- they are written. Sets them in spec.
function M.report_fields(st, spec)
  if not (st.info_fd or st.json_status_fd or st.userns_block_fd) then return end
  spec.before_release = function(pid) M.report_before_release(st, pid, spec.namespaces) end
  -- Another program writes the maps once it has read --info-fd; the sandbox waits for its word.
  if st.userns_block_fd then spec.external_maps = true end
end

--- When the payload has ended: the last line of --json-status-fd (its exit code, 128+N for signal N), and that
-- descriptor closed.
function M.report_exit(st, code)
  if not st.json_status_fd then return end
  write_fd(st.json_status_fd, ("{ \"exit-code\": %d }\n"):format(code))
  core.close_range(st.json_status_fd, st.json_status_fd)
end

--- The descriptors a front end uses itself, which the payload must not get. (--bind-fd's go once their mount
-- is checked: lunas.fs closes them.)
function M.private_fds(st)
  local private = {}
  for _, fd in ipairs{ st.info_fd or false, st.json_status_fd or false, st.userns_block_fd or false } do
    if fd then private[#private + 1] = fd end
  end
  return #private > 0 and private or nil
end

--- Joins the namespaces --userns and --pidns name, in this process (a front end that spawns one sandbox):
-- the sandbox is then made in them. Returns true, or nil and bubblewrap's message.
function M.join_namespaces(st)
  if st.userns_fd then
    local joined, msg, code = core.setns(st.userns_fd, "user")
    if not joined then
      if code == "EINVAL" then
        return nil, "Joining the specified user namespace failed, it might not be a descendant of the current user namespace."
      end
      return nil, "Joining specified user namespace failed: " .. msg
    end
  end
  if st.pidns_fd then
    local joined, msg = core.setns(st.pidns_fd, "pid")
    if not joined then return nil, "Setting pidns failed: " .. msg end
  end
  return true
end

return M
