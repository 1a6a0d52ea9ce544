-- support.kernel: what this machine (and this uid) can do, for specs.
--
--   local kernel = require "support.kernel"
--   it("delays packets", function()
--     if not kernel.requires("netem", "root") then return end
--     ...
--   end)
--
-- kernel.requires(...) checks every named feature; for the first one missing it
-- calls busted's pending("needs <feature>: <why>") and returns false, else it
-- returns true. Inside an `it` busted's pending() ends the test right there
-- (it throws), so the `return` is only reached when requires() is called from
-- a describe body, where pending() registers a pending test instead.
-- kernel.has(feature) answers true/false without marking anything pending, and
-- kernel.why(feature) gives the reason a feature is missing (nil if present).
-- Unknown feature names raise. Results are cached for the whole run (the
-- helper preloads this module, so busted's per-file insulation keeps it).
--
-- Probes are read-only looks at /proc and /sys, except "userns", which really
-- creates (and drops) a user namespace with `unshare --user true`, because
-- nothing else tells whether this uid may do it (sysctls, LSMs, seccomp), and
-- the landlock ones, which ask the kernel its Landlock ABI (a query that
-- creates nothing).

local lfs = require "lfs"

local kernel = {}

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function exists(path)
  return lfs.symlinkattributes(path, "mode") ~= nil
end

local function run_quietly(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true
end

local function have_program(name)
  return run_quietly("command -v " .. name)
end

local function ids()
  local status = read_file("/proc/self/status") or ""
  local ruid, euid = status:match("\nUid:%s+(%d+)%s+(%d+)")
  local rgid, egid = status:match("\nGid:%s+(%d+)%s+(%d+)")
  return tonumber(ruid), tonumber(euid), tonumber(rgid), tonumber(egid)
end

local function user_name(uid)
  for line in (read_file("/etc/passwd") or ""):gmatch("[^\n]+") do
    local name, id = line:match("^([^:]*):[^:]*:(%d+):")
    if name and tonumber(id) == uid then return name end
  end
end

-- /etc/subuid or /etc/subgid has a non-empty range for this id (by number or name)
local function has_subid_range(file, id, name)
  for line in (read_file(file) or ""):gmatch("[^\n]+") do
    local owner, _, count = line:match("^%s*([^:#%s]+):(%d+):(%d+)")
    if owner and tonumber(count) > 0 and (owner == tostring(id) or owner == name) then
      return true
    end
  end
  return false
end

local kernel_config_cache
local function kernel_config()
  if kernel_config_cache == nil then
    local release = (read_file("/proc/sys/kernel/osrelease") or ""):gsub("%s+$", "")
    local text, source
    if exists("/proc/config.gz") then
      local p = io.popen("gzip -dc /proc/config.gz 2>/dev/null")
      if p then
        text = p:read("a")
        p:close()
        if text == "" then text = nil else source = "/proc/config.gz" end
      end
    end
    if not text and release ~= "" then
      source = "/boot/config-" .. release
      text = read_file(source)
    end
    kernel_config_cache = { text = text, source = text and source, release = release }
  end
  return kernel_config_cache
end

-- "y", "m", "n" (known not set) or nil (no config to look at)
local function config_option(option)
  local config = kernel_config()
  if not config.text then return nil end
  local value = config.text:match("\n" .. option .. "=(%w+)") or config.text:match("^" .. option .. "=(%w+)")
  if value then return value end
  return "n"
end

local function module_available(name, release)
  if exists("/sys/module/" .. name) then return true end
  local dir = "/lib/modules/" .. release
  for _, list in ipairs({ "modules.builtin", "modules.dep" }) do
    local text = read_file(dir .. "/" .. list)
    if text and text:find("/" .. name .. "%.ko") then return true end
  end
  return false
end

-- Each probe returns true, or false plus the reason.
local probes = {}

probes.root = function()
  local _, euid = ids()
  if euid == 0 then return true end
  return false, "runs as euid " .. tostring(euid)
end

probes.userns = function()
  if not exists("/proc/self/ns/user") then
    return false, "kernel built without CONFIG_USER_NS"
  end
  local max = tonumber(read_file("/proc/sys/user/max_user_namespaces") or "")
  if max == 0 then return false, "user.max_user_namespaces is 0" end
  if not have_program("unshare") then return false, "unshare(1) is not installed" end
  if run_quietly("unshare --user true") then return true end
  local _, euid = ids()
  return false, "unshare --user fails for uid " .. tostring(euid)
end

-- Can this process create cgroups below its own (root, or a delegated subtree)? Tried for real, with lunas's
-- own cgroup module: a directory in every hierarchy, then removed.
probes.cgroup_write = function()
  local ok, cgroup = pcall(require, "lunas.cgroup")
  if not ok then return false, "lunas.cgroup does not load: " .. tostring(cgroup) end
  local errors = require "lunas.errors"
  local cg, err = errors.try(cgroup.new, { name = "lunas-probe-" .. tostring(require("lunas.core").getpid()) })
  if not cg then return false, tostring(err.msg or err) end
  cg:close()
  return true
end

-- Can this process attach a device program (cgroup v2's device policy, BPF) to a cgroup of its own? Tried for
-- real on a new cgroup's v2 directory (the unified tree of a hybrid host too), then removed with it.
probes.cgroup_device_bpf = function()
  local ok, cgroup = pcall(require, "lunas.cgroup")
  if not ok then return false, "lunas.cgroup does not load: " .. tostring(cgroup) end
  local core, errors = require "lunas.core", require "lunas.errors"
  local cg, err = errors.try(cgroup.new, { name = "lunas-probe-devices-" .. tostring(core.getpid()) })
  if not cg then return false, "no cgroup of our own: " .. tostring(err.msg or err) end
  if not cg.dirs.v2 then
    cg:close()
    return false, "no cgroup2 tree to attach a device program to"
  end
  local attached, msg = core.cgroup_device_filter(cg.dirs.v2, { { allow = true } })
  cg:close()
  if not attached then return false, "bpf(2) does not attach a device program here: " .. msg end
  return true
end

-- Can this machine confine a process with an AppArmor profile of a test's own? The module enabled, securityfs
-- showing its interface, and apparmor_parser to load a profile.
probes.apparmor = function()
  local ok, lsm = pcall(require, "lunas.lsm")
  if not ok then return false, "lunas.lsm does not load: " .. tostring(lsm) end
  if not lsm.enabled().apparmor then return false, "AppArmor is not enabled on this kernel" end
  if not exists("/sys/kernel/security/apparmor/.replace") then
    return false, "no /sys/kernel/security/apparmor (securityfs not mounted)"
  end
  if not os.execute("command -v apparmor_parser >/dev/null 2>&1") then
    return false, "no apparmor_parser (apt-get install apparmor)"
  end
  return true
end

-- SELinux enabled with a policy loaded (before one is, every process's context reads "kernel"); permissive is
-- enough for the specs, which look at labels, not at what the policy denies.
probes.selinux = function()
  local ok, lsm = pcall(require, "lunas.lsm")
  if not ok then return false, "lunas.lsm does not load: " .. tostring(lsm) end
  if not lsm.enabled().selinux then return false, "SELinux is not enabled on this kernel" end
  if not exists("/sys/fs/selinux/enforce") then return false, "no /sys/fs/selinux (selinuxfs not mounted)" end
  if not (lsm.current("self", "selinux") or ""):find(":", 1, true) then return false, "no SELinux policy loaded" end
  return true
end

probes.timens = function()
  if exists("/proc/self/ns/time") then return true end
  return false, "no /proc/self/ns/time (kernel without CONFIG_TIME_NS or older than 5.6)"
end

probes.cgroup2 = function()
  if exists("/sys/fs/cgroup/cgroup.controllers") then return true end
  return false, "/sys/fs/cgroup is not a pure cgroup v2 mount (v1 or hybrid layout)"
end

probes.cgroup_v1_memory = function()
  local joined = false
  for line in (read_file("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
    local id, controllers = line:match("^(%d+):([^:]*):")
    if id and id ~= "0" then
      for c in controllers:gmatch("[^,]+") do
        if c == "memory" then joined = true end
      end
    end
  end
  if not joined then return false, "no cgroup v1 memory hierarchy in /proc/self/cgroup" end
  for line in (read_file("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local fstype, superopts = line:match(" %- (%S+) %S+ (%S+)$")
    if fstype == "cgroup" then
      for opt in superopts:gmatch("[^,]+") do
        if opt == "memory" then return true end
      end
    end
  end
  return false, "the cgroup v1 memory controller is not mounted"
end

probes.netem = function()
  local config = kernel_config()
  local value = config_option("CONFIG_NET_SCH_NETEM")
  if value == "y" then return true end
  if value == "m" then
    if module_available("sch_netem", config.release) then return true end
    return false, "sch_netem is built as a module but the module is not installed"
  end
  if value == "n" then
    return false, "CONFIG_NET_SCH_NETEM is not set (" .. config.source .. ")"
  end
  if module_available("sch_netem", config.release) then return true end
  return false, "sch_netem not loaded, not installed, and no kernel config to tell"
end

probes.newuidmap = function()
  for _, program in ipairs({ "newuidmap", "newgidmap" }) do
    if not have_program(program) then return false, program .. " is not installed" end
  end
  local _, euid = ids()
  local name = user_name(euid)
  if not has_subid_range("/etc/subuid", euid, name) then
    return false, "no range for uid " .. tostring(euid) .. " in /etc/subuid"
  end
  -- /etc/subgid is keyed by the user too (name or uid), not by the group
  if not has_subid_range("/etc/subgid", euid, name) then
    return false, "no range for uid " .. tostring(euid) .. " in /etc/subgid"
  end
  return true
end

-- Landlock, by asking the kernel for its ABI version through lunas.core (a kernel built without it, or booted
-- without "landlock" in lsm=, answers 0 and the reason)
local function landlock_abi()
  local ok, core = pcall(require, "lunas.core")
  if not ok then return nil, "lunas.core does not load: " .. tostring(core) end
  local abi, msg = core.landlock_abi()
  if not abi then return nil, msg end
  return abi, msg
end

local function landlock_at_least(wanted, what)
  local abi, msg = landlock_abi()
  if abi and abi >= wanted then return true end
  if not abi or abi == 0 then return false, msg or "no Landlock" end
  return false, what .. " needs Landlock ABI " .. wanted .. ", the kernel has " .. abi
end

probes.landlock = function() return landlock_at_least(1, "Landlock") end
probes.landlock_net = function() return landlock_at_least(4, "TCP bind/connect rules") end
probes.landlock_scoped = function() return landlock_at_least(6, "scopes (abstract unix sockets, signals)") end

-- A sandbox that root runs gets a range of host ids, and the binds it makes writable are idmapped: the scratch
-- directories specs bind must be on file systems that take idmapped mounts (tmpfs from Linux 6.3). Asked of lunas
-- itself: a writable bind of a fresh directory in each place.
probes.idmap = function()
  local _, euid = ids()
  if euid ~= 0 then return true end -- others' sandboxes map their own ids: nothing is idmapped
  local ok_lunas, lunas = pcall(require, "lunas")
  if not ok_lunas then return false, "lunas does not load: " .. tostring(lunas) end
  local util = require "support.util"
  for _, parent in ipairs{ "/tmp", "/var/tmp", util.build .. "/scratch" } do
    local p = io.popen("mktemp -d " .. util.quote(parent .. "/lunas-idmap.XXXXXX") .. " 2>/dev/null")
    local dir = p:read("l")
    p:close()
    if dir then
      local ok, err = pcall(function()
        return lunas.sandbox{ argv = { "/nonexistent" }, rootfs = "tmpfs", mounts = { { "bind", dir, "/x" } } }:run()
      end)
      os.execute("rm -rf " .. util.quote(dir))
      if not ok and tostring(err):find("cannot be made writable", 1, true) then
        return false, ("the file system of %s takes no idmapped mounts on this kernel (tmpfs before Linux 6.3)"):format(parent)
      end
    end
  end
  return true
end

probes.bwrap = function()
  if have_program("bwrap") then return true end
  return false, "bwrap (bubblewrap) is not installed"
end

local features = {}
for name in pairs(probes) do features[#features + 1] = name end
table.sort(features)
kernel.features = features

local cache = {}

local function probe(feature)
  if type(feature) ~= "string" then
    error("support.kernel: feature name must be a string, got " .. type(feature), 3)
  end
  local fn = probes[feature]
  if not fn then
    error("support.kernel: unknown feature '" .. feature .. "' (known: " .. table.concat(features, ", ") .. ")", 3)
  end
  local entry = cache[feature]
  if not entry then
    local ok, why = fn()
    entry = { ok = ok and true or false, why = (not ok) and (why or "not available") or nil }
    cache[feature] = entry
  end
  return entry
end

function kernel.has(feature)
  return probe(feature).ok
end

function kernel.why(feature)
  return probe(feature).why
end

-- busted's `pending` is not a global: it lives in the environment busted gives
-- spec code (inside an `it` it is the one that ends the running test). Find it
-- through the _ENV of the nearest calling function that has one.
local function find_pending()
  for level = 3, 40 do
    local info = debug.getinfo(level, "f")
    if not info then break end
    local i = 1
    while true do
      local name, value = debug.getupvalue(info.func, i)
      if not name then break end
      if name == "_ENV" then
        if value ~= _G and type(value) == "table" then
          local p = value.pending
          if type(p) == "function" then return p end
        end
        break
      end
      i = i + 1
    end
  end
  error("support.kernel.requires: call it from a busted spec (no `pending` in scope)", 3)
end

function kernel.requires(...)
  local n = select("#", ...)
  if n == 0 then error("support.kernel.requires: no feature given", 2) end
  local entries = {}
  for i = 1, n do
    local feature = select(i, ...)
    entries[i] = { name = feature, entry = probe(feature) }
  end
  local reason
  for i = 1, n do
    local e = entries[i]
    if not e.entry.ok then
      reason = "needs " .. e.name .. ": " .. e.entry.why
      break
    end
  end
  if not reason then return true end
  local pending = find_pending()
  if pending ~= require("busted").pending then
    -- inside a test: busted's pending() throws and never returns. A tail call
    -- (outside any generic for: Lua 5.4 does not tail-call out of one), so
    -- busted reports the spec's line rather than this one.
    return pending(reason)
  end
  -- in a describe body: registers a pending test named by the reason
  pending(reason)
  return false
end

return kernel
