--- Confinement policy: system call groups and profiles (seccomp), capability sets, Landlock rule sets, and the
-- order in which a sandbox applies them.
--
-- The core (lunas.core) has the mechanisms: libseccomp filters, libcap sets, Landlock rulesets. This module holds
-- what to do with them: which calls the default profile refuses, how a spec relaxes or tightens it, which
-- capabilities a payload keeps, which Landlock rights "read-only" means. Sandboxes apply it in the child in the
-- order KERNEL-NOTES gives: ids, capabilities, no_new_privs, Landlock, seccomp last.
-- @module lunas.security
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local CLONE_NEWUSER = 0x10000000
local TIOCSTI = 0x5412
local TIOCLINUX = 0x541C
local TIOCSETD = 0x5423
local AF_VSOCK = 40
local F_SETLEASE = 1024
local O_CREAT = 0x40
local O_TMPFILE = 0x400000 -- __O_TMPFILE: O_TMPFILE is this bit with O_DIRECTORY
local S_ISUID, S_ISGID = 0x800, 0x400

local function misuse(field, fmt, ...)
  errors.raise{ op = "sandbox", msg = ("sandbox: field '%s': " .. fmt):format(field, ...), code = "EINVAL", field = field }
end

-- ---- system call groups ------------------------------------------------------------------------------------

-- An entry is a system call name, or {name, comparisons..., action = ..., nr = N} for a call refused only with
-- those arguments (or with its own action); nr is the number to use where this libseccomp does not know the name
-- yet (a call newer than it: the numbers of calls from 424 on are the same on every architecture lunas runs on).
-- Names unknown to this libseccomp or architecture, without nr, are skipped: a group covers every architecture's
-- spelling.
local function with_flag(name, arg, flag)
  return { name, { arg = arg, op = "masked_eq", mask = flag, value = flag } }
end

local function bit_set(arg, bit) return { arg = arg, op = "masked_eq", mask = bit, value = bit } end

-- Calls that set the setuid or setgid bit: chmod and friends with the bit in the mode, and every call that
-- creates a file with it (as systemd's RestrictSUIDSGID). A payload must never leave a setuid program where the
-- host could run it (through a writable bind). openat2 keeps its mode in memory a filter cannot read: it answers
-- ENOSYS, which makes callers fall back to openat, whose mode it can.
local function suid_rules()
  local rules = {}
  local function add(name, ...) rules[#rules + 1] = { name, ... } end
  for _, bit in ipairs{ S_ISUID, S_ISGID } do
    add("chmod", bit_set(1, bit))
    add("fchmod", bit_set(1, bit))
    add("fchmodat", bit_set(2, bit))
    rules[#rules + 1] = { "fchmodat2", bit_set(2, bit), nr = 452 }
    add("creat", bit_set(1, bit))
    add("mkdir", bit_set(1, bit))
    add("mkdirat", bit_set(2, bit))
    add("mknod", bit_set(1, bit))
    add("mknodat", bit_set(2, bit))
    for _, flag in ipairs{ O_CREAT, O_TMPFILE } do
      add("open", bit_set(1, flag), bit_set(2, bit))
      add("openat", bit_set(2, flag), bit_set(3, bit))
    end
  end
  rules[#rules + 1] = { "openat2", action = "ENOSYS" }
  return rules
end

-- personality(2) with Docker's values only: PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), both, and the
-- query 0xffffffff; every other flag (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO...) is refused.
-- libseccomp takes one comparison per argument in a rule, so "not one of five values" is spelt with single
-- bits, on the low 32 bits the call reads: any bit but 3 and 17 set while bit 31 is clear, or bit 31 set while
-- any other bit is clear (everything with bit 31 but the query).
local function personality_rules()
  local rules = {}
  local HIGH = 0x80000000
  for bit = 0, 30 do
    local b = 1 << bit
    if bit ~= 3 and bit ~= 17 then
      rules[#rules + 1] = { "personality", { arg = 0, op = "masked_eq", mask = b | HIGH, value = b } }
    end
    rules[#rules + 1] = { "personality", { arg = 0, op = "masked_eq", mask = b | HIGH, value = HIGH } }
  end
  return rules
end

--- The system call groups, as data: spec.seccomp.deny, allow and notify take their names. An entry is a call
-- name, or `{name, comparisons..., action = ..., nr = N}` for a call refused only with those arguments (or with
-- its own action; nr where libseccomp does not know the name). Groups: mount, module, raw-io, reboot, swap,
-- clock, debug, perf, bpf, keyring, userfaultfd, obsolete, privileged, namespaces, userns, tty, io_uring, vsock,
-- suid, ldt, personality, lease.
M.groups = {
  mount = { "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr", { "open_tree_attr", nr = 467 } },
  module = { "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms" },
  ["raw-io"] = { "iopl", "ioperm", "pciconfig_iobase", "pciconfig_read", "pciconfig_write" },
  reboot = { "reboot", "kexec_load", "kexec_file_load" },
  swap = { "swapon", "swapoff" },
  clock = { "settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64",
    "adjtimex" },
  debug = { "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "lookup_dcookie" },
  perf = { "perf_event_open" },
  bpf = { "bpf" },
  keyring = { "add_key", "request_key", "keyctl" },
  userfaultfd = { "userfaultfd" },
  obsolete = { "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "afs_syscall", "bdflush", "break", "ftime",
    "getpmsg", "putpmsg", "gtty", "stty", "idle", "lock", "mpx", "prof", "profil", "security", "sgetmask",
    "ssetmask", "tuxcall", "ulimit", "vserver", "vm86", "vm86old", "create_module", "query_module",
    "get_kernel_syms" },
  -- Administration of the whole machine; open_by_handle_at is how "shocker" read host files from Docker.
  privileged = { "acct", "quotactl", "quotactl_fd", "vhangup", "open_by_handle_at", "syslog", "fanotify_init",
    "nfsservctl", "lookup_dcookie", "settimeofday" },
  namespaces = { "setns", "unshare", with_flag("clone", 0, 0x7e020000), "clone3" },
  -- New user namespaces give back every capability over what they create. clone3's flags live in memory a filter
  -- cannot read: it fails with ENOSYS, which makes glibc fall back to clone, whose flags it can.
  userns = { with_flag("unshare", 0, CLONE_NEWUSER), with_flag("clone", 0, CLONE_NEWUSER),
    { "clone3", action = "ENOSYS" } },
  -- Keystrokes pushed into a terminal (CVE-2017-5226), and its line discipline changed (which can load a module).
  -- The request is an int: only the low 32 bits count for the kernel, so the rules ignore the high half a caller
  -- can fill (CVE-2019-10063).
  tty = { { "ioctl", { arg = 1, op = "eq", value = TIOCSTI, bits = 32 } },
    { "ioctl", { arg = 1, op = "eq", value = TIOCLINUX, bits = 32 } },
    { "ioctl", { arg = 1, op = "eq", value = TIOCSETD, bits = 32 } } },
  -- io_uring does socket, connect, openat, read... in the kernel's own threads: no filter ever sees those calls.
  io_uring = { "io_uring_setup", "io_uring_enter", "io_uring_register" },
  -- vsock ignores network namespaces: it reaches the hypervisor and other guests from a sandbox with no network.
  vsock = { { "socket", { arg = 0, op = "eq", value = AF_VSOCK, bits = 32 } } },
  suid = suid_rules(),
  -- The local descriptor table: 16-bit segments, the ground of several kernel bugs; Docker refuses it.
  ldt = { "modify_ldt" },
  personality = personality_rules(),
  -- A lease stalls every other opener of a file for lease-break-time (45 s), through a read-only descriptor.
  lease = { { "fcntl", { arg = 1, op = "eq", value = F_SETLEASE, bits = 32 } },
    { "fcntl64", { arg = 1, op = "eq", value = F_SETLEASE, bits = 32 } } },
}

--- What the default profile refuses (with EPERM; obsolete calls with ENOSYS, as if they did not exist): group
-- names.
M.DEFAULT_DENY = { "mount", "module", "raw-io", "reboot", "swap", "clock", "perf", "bpf", "keyring", "userfaultfd",
  "obsolete", "privileged", "userns", "tty", "io_uring", "vsock", "suid", "ldt", "personality", "lease" }
local GROUP_ACTION = { obsolete = "ENOSYS" }

-- ---- profiles ------------------------------------------------------------------------------------------------

local PROFILE_FIELDS = { base = true, default = true, action = true, arches = true, deny = true, allow = true,
  rules = true, notify = true, log = true, on_notify = true, spec_allow = true, wait_killable_recv = true }

local function check_names(field, value)
  if type(value) == "string" then value = { value } end
  if type(value) ~= "table" then misuse(field, "list of group or system call names expected, got %s", type(value)) end
  for i, name in ipairs(value) do
    if type(name) ~= "string" then misuse(("%s[%d]"):format(field, i), "name expected, got %s", type(name)) end
    if not M.groups[name] and not core.seccomp_syscall(name) then
      misuse(("%s[%d]"):format(field, i), "unknown group or system call '%s'", name)
    end
  end
  return value
end

local function check_action(field, action)
  -- A throwaway filter validates the action the way the core reads it.
  local ok, err = pcall(function() core.seccomp_filter{ default = action }:close() end)
  if not ok then misuse(field, "bad action %s (%s)", tostring(action), tostring(err):match("%((.*)%)") or err) end
  return action
end

--- Validates a profile table (spec.seccomp, or what a profile file of `lunas run` returns) and returns a normalized copy.
-- A profile: `{base = "default" | "none", default = ACTION ("allow"), action = ACTION for deny ("EPERM"),
-- arches = {"native"}, deny = names, allow = names, notify = names, rules = {{action =, syscall =, args =
-- {comparisons}}, ...}, log = false, on_notify = function(request, running) return reply end, spec_allow = false,
-- wait_killable_recv = false}`: the last two are the kernel's load flags (speculative store bypass left as it is;
-- a held call waits killable once the listener received it). Names are
-- groups (`groups`) or system calls; actions as `lunas.core.seccomp_filter` takes them.
-- @tparam string field the spec field, for messages ("seccomp")
-- @param value false or "none" (no filter), nil, true or "default" (the default profile), or a profile table
-- @return false, or the normalized profile
function M.check_profile(field, value)
  if value == false or value == "none" then return false end
  if value == nil or value == true or value == "default" then value = {} end
  if type(value) ~= "table" then misuse(field, "false, 'default' or a profile table expected, got %s", type(value)) end
  for k in pairs(value) do
    if not PROFILE_FIELDS[k] then misuse(field, "unknown field '%s'", tostring(k)) end
  end
  local p = { base = value.base or "default", log = value.log == true, on_notify = value.on_notify }
  if p.base ~= "default" and p.base ~= "none" then misuse(field .. ".base", "'default' or 'none' expected") end
  p.default = check_action(field .. ".default", value.default or "allow")
  p.action = check_action(field .. ".action", value.action or "EPERM")
  p.arches = value.arches or { "native" }
  if type(p.arches) ~= "table" then misuse(field .. ".arches", "list of architecture names expected") end
  p.deny = check_names(field .. ".deny", value.deny or {})
  p.allow = check_names(field .. ".allow", value.allow or {})
  p.notify = check_names(field .. ".notify", value.notify or {})
  p.rules = value.rules or {}
  if type(p.rules) ~= "table" then misuse(field .. ".rules", "list of rules expected") end
  for i, rule in ipairs(p.rules) do
    local f = ("%s.rules[%d]"):format(field, i)
    if type(rule) ~= "table" or type(rule.syscall) ~= "string" and math.type(rule.syscall) ~= "integer" then
      misuse(f, "{action =, syscall =, args = {...}} expected")
    end
    check_action(f .. ".action", rule.action or "allow")
    if rule.optional ~= nil and type(rule.optional) ~= "boolean" then misuse(f .. ".optional", "boolean expected") end
  end
  if p.on_notify ~= nil and type(p.on_notify) ~= "function" then misuse(field .. ".on_notify", "function expected") end
  for _, flag in ipairs{ "log", "spec_allow", "wait_killable_recv" } do
    if value[flag] ~= nil and type(value[flag]) ~= "boolean" then misuse(field .. "." .. flag, "boolean expected") end
  end
  p.spec_allow, p.wait_killable_recv = value.spec_allow == true, value.wait_killable_recv == true
  return p
end

-- Expands group and call names into entries {name, comparisons..., action = }.
local function expand(names, except)
  local out = {}
  for _, name in ipairs(names) do
    local group = M.groups[name]
    for _, entry in ipairs(group or { name }) do
      local call = type(entry) == "table" and entry[1] or entry
      if not (except and except[call]) then
        local e = type(entry) == "table" and entry or { entry }
        out[#out + 1] = { e[1], action = e.action or (group and GROUP_ACTION[name]), args = { table.unpack(e, 2) },
          nr = e.nr }
      end
    end
  end
  return out
end

local function name_set(names)
  local set = {}
  for _, name in ipairs(names) do
    for _, entry in ipairs(M.groups[name] or { name }) do set[type(entry) == "table" and entry[1] or entry] = true end
  end
  return set
end

-- The rules of a profile in the order they are added: notify first (a held call outranks a refusal of the same
-- call only if libseccomp is told so; it refuses a conflicting duplicate instead, so notify wins by going first
-- and the refusal is dropped), then refusals, then explicit rules.
local function profile_rules(p)
  local rules, seen = {}, {}
  local function add(action, entry, field)
    local key = entry[1] .. "\0" .. #(entry.args or {})
    if #(entry.args or {}) == 0 and seen[key] then return end
    seen[key] = true
    rules[#rules + 1] = { action = action, syscall = entry[1], args = entry.args, field = field, nr = entry.nr }
  end
  for _, e in ipairs(expand(p.notify)) do add("notify", e, "notify") end
  local allowed = name_set(p.allow)
  local base = p.base == "default" and M.DEFAULT_DENY or {}
  local denied = {}
  for _, name in ipairs(base) do denied[#denied + 1] = name end
  for _, name in ipairs(p.deny) do denied[#denied + 1] = name end
  for _, e in ipairs(expand(denied, allowed)) do add(e.action or p.action, e, "deny") end
  if p.default ~= "allow" then
    for _, e in ipairs(expand(p.allow)) do add("allow", e, "allow") end
  end
  for _, r in ipairs(p.rules) do
    -- (optional: a call this libseccomp does not know is left out, as OCI runtimes do)
    rules[#rules + 1] = { action = r.action or "allow", syscall = r.syscall, args = r.args,
      field = r.optional and "optional" or "rules" }
  end
  return rules
end

--- Builds a libseccomp filter from a normalized profile. Returns the filter (caller closes it).
-- @tparam table p a profile from check_profile
-- @return a `lunas.core` seccomp filter, not loaded
function M.filter(p)
  local filter = core.seccomp_filter{ default = p.default, arches = p.arches, log = p.log }
  for _, rule in ipairs(profile_rules(p)) do
    local ok, msg, code = filter:add(rule.action, rule.syscall, rule.args)
    -- A call newer than this libseccomp: by its number (the same on every architecture for calls from 424 on).
    if not ok and code == "ENOENT" and rule.nr then ok, msg, code = filter:add(rule.action, rule.nr, rule.args) end
    -- A refusal equal to the default action (EACCES) adds nothing; a call this libseccomp does not know (ENOENT)
    -- only matters when asked for by name in rules.
    if not ok and code ~= "EACCES" and not (code == "ENOENT" and rule.field ~= "rules") then
      filter:close()
      errors.raise{ op = "seccomp", msg = msg, code = code }
    end
  end
  return filter
end

-- A canonical text of a value (keys sorted), to recognise a profile compiled before.
local function serialize(v, out)
  if type(v) ~= "table" then
    out[#out + 1] = type(v) == "string" and ("%q"):format(v) or tostring(v)
    return out
  end
  local keys = {}
  for k in pairs(v) do
    if k ~= "on_notify" and k ~= "compiled" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  out[#out + 1] = "{"
  for _, k in ipairs(keys) do
    out[#out + 1] = tostring(k) .. "="
    serialize(v[k], out)
    out[#out + 1] = ","
  end
  out[#out + 1] = "}"
  return out
end

-- Compiled programs by profile text: every sandbox of a process with the same profile (the default one, most
-- often) shares one compilation (libseccomp takes about 0.5 ms for the default profile).
local compiled_cache, compiled_count = {}, 0

-- Programs compiled when the host binary was built (src/precompile.lua): the default profile's. Absent when
-- lunas is loaded from a stock lua5.4.
local precompiled
do
  local ok, programs = pcall(require, "lunas.seccomp_programs")
  precompiled = ok and type(programs) == "table" and programs or {}
end

--- The text a profile's compiled program is cached under (the same profile, the same text).
-- @tparam table p a profile from check_profile
-- @treturn string
function M.cache_key(p)
  return table.concat(serialize(p, {}))
end

--- Compiles a profile to the BPF program a child loads: {program = bytes, listener = bool, log = bool,
-- spec_allow = bool, wait_killable_recv = bool}.
-- Programs are cached by profile: every sandbox of a process with the same profile shares one compilation, and
-- the host binary carries the default profile's program compiled at build time.
-- @tparam table p a profile from check_profile
-- @treturn table
function M.compile(p)
  local key = M.cache_key(p)
  local hit = compiled_cache[key] or precompiled[key]
  if hit then return hit end
  local filter <close> = M.filter(p)
  -- (a notify rule among the explicit ones needs the listener as much as the notify names do)
  local listener = #p.notify > 0
  for _, r in ipairs(p.rules) do listener = listener or r.action == "notify" end
  local compiled = { program = errors.check(filter:bpf()), listener = listener, log = p.log,
    spec_allow = p.spec_allow, wait_killable_recv = p.wait_killable_recv }
  if compiled_count >= 64 then compiled_cache, compiled_count = {}, 0 end
  compiled_cache[key], compiled_count = compiled, compiled_count + 1
  return compiled
end

--- The readable form (libseccomp's PFC) of a profile: what `lunas run --seccomp-show` prints.
-- @tparam table p a profile from check_profile
-- @treturn string
function M.describe(p)
  local filter <close> = M.filter(p)
  return errors.check(filter:pfc())
end

-- ---- capabilities ----------------------------------------------------------------------------------------------

local function capability_set(field, value)
  local names = {}
  if type(value) == "string" then
    for name in value:gmatch("[^,%s]+") do names[#names + 1] = name end
  elseif type(value) == "table" then
    names = value
  else
    misuse(field, "capability names expected, got %s", type(value))
  end
  local known = {}
  for _, cap in ipairs(core.capability_names()) do known[cap] = true end
  local set = {}
  for i, name in ipairs(names) do
    if type(name) ~= "string" then misuse(("%s[%d]"):format(field, i), "name expected") end
    local bare = name:lower():gsub("^cap_", "")
    if bare == "all" then
      for cap in pairs(known) do set[cap] = true end
    elseif known[bare] then
      set[bare] = true
    else
      misuse(("%s[%d]"):format(field, i), "unknown capability '%s'", name)
    end
  end
  return set
end

local CAP_SETS = { "bounding", "effective", "permitted", "inheritable", "ambient" }

-- {sets = {bounding =, effective =, permitted =, inheritable =, ambient =}}: each set as given (an OCI config's
-- process.capabilities); a set left out is empty.
local function check_cap_sets(field, value)
  for k in pairs(value) do
    if k ~= "sets" then misuse(field, "unknown field '%s' (sets goes alone)", tostring(k)) end
  end
  if type(value.sets) ~= "table" then misuse(field .. ".sets", "table of capability sets expected") end
  local sets = {}
  for k in pairs(value.sets) do
    local known = false
    for _, name in ipairs(CAP_SETS) do known = known or name == k end
    if not known then misuse(field .. ".sets", "unknown set '%s'", tostring(k)) end
  end
  for _, name in ipairs(CAP_SETS) do sets[name] = capability_set(field .. ".sets." .. name, value.sets[name] or {}) end
  return { sets = sets }
end

--- Validates spec.caps: "none" (the default), "keep" (leave the process's capabilities as they are), a list of
-- names to keep ({"net_admin"}), or {add = names, drop = names} (add "ALL" then drop some, as bubblewrap's
-- --cap-add ALL --cap-drop X), or {sets = {bounding =, effective =, permitted =, inheritable =, ambient =}} (each
-- set exactly as given: an OCI config's). Returns "keep", a set {name = true} of what the payload holds, or
-- {sets = {name = set}}.
-- @tparam string field the spec field, for messages ("caps")
-- @param value
-- @return "keep" or a set of names
function M.check_caps(field, value)
  if value == "keep" then return "keep" end
  if value == nil or value == "none" then return {} end
  if type(value) == "string" then return capability_set(field, value) end
  if type(value) ~= "table" then misuse(field, "'none', 'keep', a list of names or {add =, drop =} expected") end
  if value.sets ~= nil then return check_cap_sets(field, value) end
  if value.add == nil and value.drop == nil then return capability_set(field, value) end
  for k in pairs(value) do
    if k ~= "add" and k ~= "drop" then misuse(field, "unknown field '%s'", tostring(k)) end
  end
  local set = capability_set(field .. ".add", value.add or {})
  for cap in pairs(capability_set(field .. ".drop", value.drop or {})) do set[cap] = nil end
  return set
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end
--- The keys of a set, sorted: `sorted{b = true, a = true}` is `{"a", "b"}`.
-- @function sorted
-- @tparam table set
-- @treturn table
M.sorted = sorted

-- Securebits of a confined payload: root is not special on exec (noroot), uid changes clear capabilities as
-- usual (fixup on, and locked so), keepcaps off and locked; nothing can change them later. With nothing kept,
-- the ambient set is locked empty too.
local function securebits_for(keep_any)
  local bits = { "noroot", "noroot_locked", "no_setuid_fixup_locked", "keep_caps_locked" }
  if not keep_any then
    bits[#bits + 1] = "no_cap_ambient_raise"
    bits[#bits + 1] = "no_cap_ambient_raise_locked"
  end
  return bits
end

--- Child, before the change of ids (needs CAP_SETPCAP): empties the bounding and ambient sets but for keep, and
-- asks the kernel to keep permitted capabilities across a change of uid when there is something to keep.
-- @tparam table keep a set of capability names, as check_caps returns it
-- @return true, or nil, message, ENAME
function M.apply_bounding(keep)
  -- With five sets (an OCI config's), the bounding set is the one asked for; the others follow once the ids
  -- changed, permitted kept across that change.
  local bounding = keep.sets and keep.sets.bounding or keep
  if not keep.sets and next(keep) == nil then return core.drop_capabilities{ sets = false } end
  local drop = {}
  for _, cap in ipairs(core.capability_names()) do
    if not bounding[cap] then drop[#drop + 1] = cap end
  end
  local ok, msg, code = core.caps_bounding_drop(drop)
  if ok then ok, msg, code = core.caps_ambient{ clear = true } end
  if ok then ok, msg, code = core.keepcaps(true) end
  return ok, msg, code
end

--- Child, after the change of ids: securebits locked, then exactly keep in permitted, effective and inheritable,
-- and raised into ambient so a payload of any uid holds them after exec. A process that holds no capability at
-- all (unprivileged, no user namespace) cannot set securebits and has nothing to lose: no_new_privs covers it.
-- @tparam table keep a set of capability names
-- @return true, or nil, message, ENAME
function M.apply_capabilities(keep)
  if keep.sets then
    -- No securebits: a set-uid root program of the image works as under runc.
    local sets = keep.sets
    local ok, msg, code = core.keepcaps(false)
    if ok then
      ok, msg, code = core.caps_set{ effective = sorted(sets.effective), permitted = sorted(sets.permitted),
        inheritable = sorted(sets.inheritable) }
    end
    if ok then ok, msg, code = core.caps_ambient{ clear = true } end
    if not ok then return nil, msg, code end
    -- One at a time, as runc raises them: one the kernel refuses (not in permitted and inheritable) is left out.
    for _, cap in ipairs(sorted(sets.ambient)) do core.caps_ambient{ raise = { cap } } end
    return true
  end
  local list = sorted(keep)
  local current = core.caps_get()
  if #current.permitted == 0 and #list == 0 then return true end
  local ok, msg, code = core.caps_set{ effective = current.permitted }
  if not ok then return nil, msg, code end
  ok, msg, code = core.securebits_set(securebits_for(#list > 0))
  if not ok then return nil, msg, code end
  ok, msg, code = core.caps_set{ effective = list, permitted = list, inheritable = list }
  if not ok then return nil, msg, code end
  return core.caps_ambient{ clear = true, raise = list }
end

-- ---- Landlock --------------------------------------------------------------------------------------------------

local FILE_RIGHTS = { execute = true, write_file = true, read_file = true, truncate = true, ioctl_dev = true }
--- What the access words of spec.landlock mean: `ro` and `rw`, each a list of Landlock file system rights.
M.ACCESS = {
  ro = { "execute", "read_file", "read_dir" },
  rw = { "execute", "read_file", "read_dir", "write_file", "remove_dir", "remove_file", "make_char", "make_dir",
    "make_reg", "make_sock", "make_fifo", "make_block", "make_sym", "refer", "truncate", "ioctl_dev" },
}

local LANDLOCK_FIELDS = { ro = true, rw = true, paths = true, connect = true, bind = true, scoped = true,
  strict = true }

local function check_ports(field, value)
  if type(value) ~= "table" then misuse(field, "list of ports expected") end
  for i, port in ipairs(value) do
    if math.type(port) ~= "integer" or port < 0 or port > 65535 then misuse(("%s[%d]"):format(field, i), "port 0-65535 expected") end
  end
  return value
end

--- Validates spec.landlock: {ro = {paths}, rw = {paths}, paths = {{path, "read_file,read_dir"}, ...},
-- connect = {ports}, bind = {ports}, scoped = {"signal", "abstract_unix_socket"}, strict = false}. Paths are
-- inside the sandbox. File-system access is restricted as soon as any path is listed; TCP as soon as a port is.
-- @tparam string field the spec field, for messages ("landlock")
-- @tparam table value
-- @treturn table the normalized spec, for plan_landlock
function M.check_landlock(field, value)
  if type(value) ~= "table" then misuse(field, "table expected, got %s", type(value)) end
  for k in pairs(value) do
    if not LANDLOCK_FIELDS[k] then misuse(field, "unknown field '%s'", tostring(k)) end
  end
  local rights = core.landlock_rights()
  local out = { paths = {}, connect = check_ports(field .. ".connect", value.connect or {}),
    bind = check_ports(field .. ".bind", value.bind or {}), scoped = value.scoped or {}, strict = value.strict == true }
  for _, kind in ipairs{ "ro", "rw" } do
    local list = value[kind] or {}
    if type(list) ~= "table" then misuse(field .. "." .. kind, "list of paths expected") end
    for i, path in ipairs(list) do
      if type(path) ~= "string" or path:sub(1, 1) ~= "/" then misuse(("%s.%s[%d]"):format(field, kind, i), "absolute path expected") end
      -- "ro" and "rw" mean what this kernel can grant: rights it lacks are left out without a warning.
      out.paths[#out.paths + 1] = { path = path, access = M.ACCESS[kind], implicit = true }
    end
  end
  for i, entry in ipairs(value.paths or {}) do
    local f = ("%s.paths[%d]"):format(field, i)
    if type(entry) ~= "table" or type(entry[1]) ~= "string" or entry[1]:sub(1, 1) ~= "/" then misuse(f, "{'/path', 'right,right'} expected") end
    local access = {}
    for name in tostring(entry[2] or ""):gmatch("[^,%s]+") do
      if not rights.fs[name] then misuse(f, "unknown right '%s'", name) end
      access[#access + 1] = name
    end
    if #access == 0 then misuse(f, "no rights given") end
    out.paths[#out.paths + 1] = { path = entry[1], access = access }
  end
  if type(out.scoped) ~= "table" then misuse(field .. ".scoped", "list of names expected") end
  for i, name in ipairs(out.scoped) do
    if not rights.scoped[name] then misuse(("%s.scoped[%d]"):format(field, i), "unknown scope '%s'", tostring(name)) end
  end
  return out
end

--- Parent, before the clone: what this kernel can enforce of a landlock spec. Returns a plan for the child, and
-- warnings for what best effort leaves out; in strict mode what cannot be enforced raises instead.
-- @tparam table spec from check_landlock
-- @return the plan, or nil when nothing can be enforced
-- @treturn table warnings (strings)
function M.plan_landlock(spec)
  local abi = core.landlock_abi()
  local rights = core.landlock_rights()
  local warnings = {}
  local function supported(kind, name, what)
    if rights[kind][name] <= abi then return true end
    local msg = ("landlock: %s needs ABI %d, the kernel has %d"):format(what, rights[kind][name], abi)
    if spec.strict then errors.raise{ op = "sandbox", step = "landlock", msg = "sandbox: " .. msg, code = "EOPNOTSUPP" } end
    warnings[#warnings + 1] = msg
    return false
  end
  if abi < 1 then
    local msg = "landlock: not available on this kernel"
    if spec.strict then errors.raise{ op = "sandbox", step = "landlock", msg = "sandbox: " .. msg, code = "EOPNOTSUPP" } end
    return nil, { msg }
  end
  local plan = { handled = { fs = {}, net = {}, scoped = {} }, paths = {}, ports = {} }
  if #spec.paths > 0 then
    local names = {}
    for name in pairs(rights.fs) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      -- A right the kernel cannot handle stays allowed everywhere (truncate before ABI 3: files under read-only
      -- paths can still be truncated): strict mode refuses that, best effort says it.
      if supported("fs", name, ("restricting '%s' everywhere"):format(name)) then
        plan.handled.fs[#plan.handled.fs + 1] = name
      end
    end
  end
  for _, entry in ipairs(spec.paths) do
    local access = {}
    for _, name in ipairs(entry.access) do
      if entry.implicit and rights.fs[name] <= abi
        or not entry.implicit and supported("fs", name, ("right '%s' on %s"):format(name, entry.path)) then
        access[#access + 1] = name
      end
    end
    plan.paths[#plan.paths + 1] = { path = entry.path, access = access }
  end
  if #spec.connect + #spec.bind > 0 and supported("net", "connect_tcp", "a TCP port rule") then
    plan.handled.net = { "bind_tcp", "connect_tcp" }
    for _, port in ipairs(spec.connect) do plan.ports[#plan.ports + 1] = { port = port, access = { "connect_tcp" } } end
    for _, port in ipairs(spec.bind) do plan.ports[#plan.ports + 1] = { port = port, access = { "bind_tcp" } } end
  end
  for _, name in ipairs(spec.scoped) do
    if supported("scoped", name, ("scope '%s'"):format(name)) then plan.handled.scoped[#plan.handled.scoped + 1] = name end
  end
  if #plan.handled.fs + #plan.handled.net + #plan.handled.scoped == 0 then return nil, warnings end
  return plan, warnings
end

-- Rights a rule on a file (not a directory) may carry.
local function file_rights(access)
  local out = {}
  for _, name in ipairs(access) do if FILE_RIGHTS[name] then out[#out + 1] = name end end
  return out
end

--- Child, after every mount and with no_new_privs set: restricts the process by a plan from plan_landlock.
-- @tparam table plan
-- @return true, or nil, message, ENAME
function M.apply_landlock(plan)
  local ruleset, msg, code = M.landlock_ruleset(plan)
  if not ruleset then return nil, msg, code end
  local ok
  ok, msg, code = ruleset:restrict()
  ruleset:close()
  if not ok then return nil, msg, code end
  return true
end

--- The ruleset of a plan (`plan_landlock`), its rules added, not applied: for a process that applies it later
-- (lunas's reaper program hands it to the payload it forks).
-- @tparam table plan
-- @return a ruleset (`lunas.core.landlock_ruleset`), or nil, message, ENAME
function M.landlock_ruleset(plan)
  local ruleset, msg, code = core.landlock_ruleset(plan.handled)
  if not ruleset then return nil, msg, code end
  for _, entry in ipairs(plan.paths) do
    local access = entry.access
    if core.file_type(entry.path) ~= "dir" then access = file_rights(access) end
    if #access > 0 then
      local ok
      ok, msg, code = ruleset:allow_path(entry.path, access)
      if not ok then
        ruleset:close()
        return nil, msg, code
      end
    end
  end
  for _, entry in ipairs(plan.ports) do
    local ok
    ok, msg, code = ruleset:allow_port(entry.port, entry.access)
    if not ok then
      ruleset:close()
      return nil, msg, code
    end
  end
  return ruleset
end

-- ---- user notification -------------------------------------------------------------------------------------

--- Held system calls.
-- What `Listener:receive` returns: the fields of `lunas.core.seccomp_notify_receive` (`id`, `pid`, `syscall`,
-- `nr`, `arch`, `args`, `ip`) and methods to look at the caller's memory. What the memory says is only about
-- this call while `valid()` is true.
-- @type Request
local Request = {}
Request.__index = Request

--- Bytes of the caller's memory (pointer arguments); check valid() afterwards before trusting them.
-- @tparam integer address
-- @tparam integer length
-- @treturn string
function Request:read(address, length)
  return errors.check(core.process_read(self.pid, address, length))
end

--- A NUL-terminated string at a pointer argument (1-based index into args), up to max bytes.
-- @tparam integer index
-- @tparam[opt=4096] integer max
-- @treturn string
function Request:string(index, max)
  local bytes = self:read(self.args[index], max or 4096)
  return bytes:match("^[^%z]*")
end

--- A socket address at args[index] of length args[len_index], as "10.0.0.1:80", "[fd00::1]:80" or "unix:/path".
-- @tparam integer index
-- @tparam integer len_index
-- @treturn string the address ("unix:@name" for an abstract socket, "family N" for others)
-- @treturn string "inet", "inet6", "unix" or "other"
function Request:sockaddr(index, len_index)
  local length = math.min(self.args[len_index] or 128, 128)
  local raw = self:read(self.args[index], length)
  local family = #raw >= 2 and string.unpack("<I2", raw) or -1
  if family == 2 and #raw >= 8 then
    local port, a, b, c, d = string.unpack(">I2BBBB", raw, 3)
    return ("%d.%d.%d.%d:%d"):format(a, b, c, d, port), "inet"
  elseif family == 10 and #raw >= 24 then
    local port = string.unpack(">I2", raw, 3)
    local groups = {}
    for i = 0, 7 do groups[#groups + 1] = ("%x"):format(string.unpack(">I2", raw, 9 + 2 * i)) end
    return ("[%s]:%d"):format(table.concat(groups, ":"), port), "inet6"
  elseif family == 1 then
    local path = raw:sub(3)
    if path:sub(1, 1) == "\0" then return "unix:@" .. path:sub(2):match("^[^%z]*"), "unix" end
    return "unix:" .. path:match("^[^%z]*"), "unix"
  end
  return ("family %d"):format(family), "other"
end

--- True while the call is still held (the pid and memory read belong to it).
-- @treturn boolean
function Request:valid()
  return core.seccomp_notify_id_valid(self.listener, self.id)
end

local Listener = {}
Listener.__index = Listener

--- @section end

--- Wraps a seccomp listener fd.
-- @param fd the listener (an fd object)
-- @treturn Listener
function M.listener(fd)
  return setmetatable({ fd = fd }, Listener)
end

--- Seccomp listeners.
-- A supervisor's end of a filter's notify rules (`listener`, or a sandbox's `Running:listener`).
-- @type Listener

--- The next held call; nil, "timeout" on timeout (seconds; nil waits), nil, "closed" once no process is left under
-- the filter. A call whose process died meanwhile is skipped.
-- @tparam[opt] number timeout
-- @treturn Request
function Listener:receive(timeout)
  while true do
    local ready, hung_up = core.poll({ self.fd }, timeout)
    if #ready == 0 then return nil, "timeout" end
    if hung_up[1] then return nil, "closed" end
    local req, msg, code = core.seccomp_notify_receive(self.fd)
    if req then
      req.listener = self.fd
      return setmetatable(req, Request)
    end
    if code ~= "ENOENT" then errors.raise{ op = "seccomp", msg = msg, code = code } end
  end
end

--- Answers a held call: nil or "continue" runs it; an errno name or number, or {error = }, fails it with that;
-- {value = n} returns n without running it.
-- @tparam Request req
-- @param[opt] reply
-- @treturn boolean false when the caller had died meanwhile
function Listener:respond(req, reply)
  local answer
  if reply == nil or reply == "continue" or reply == true then
    answer = { continue = true }
  elseif type(reply) == "string" or math.type(reply) == "integer" then
    answer = { error = reply }
  elseif type(reply) == "table" then
    answer = reply
  else
    errors.raise{ op = "seccomp", msg = "seccomp: bad reply " .. tostring(reply), code = "EINVAL" }
  end
  local ok, msg, code = core.seccomp_notify_respond(self.fd, req.id, answer)
  -- The caller may have died since: nothing left to answer.
  if not ok and code ~= "ENOENT" then errors.raise{ op = "seccomp", msg = msg, code = code } end
  return ok ~= nil
end

--- The listener's descriptor number.
-- @treturn integer
function Listener:fileno()
  return self.fd:fileno()
end

--- Closes the listener.
function Listener:close()
  self.fd:close()
end
Listener.__close = Listener.close

return M
