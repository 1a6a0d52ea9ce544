--- Linux security modules: which are enabled, AppArmor's loaded profiles, and the labels a process gets at its
-- next exec (AppArmor's exec profile, SELinux's exec context), written through /proc as libapparmor's
-- aa_change_onexec and libselinux's setexeccon write them.
-- @module lunas.lsm
local core = require "lunas.core"
local errors = require "lunas.errors"
local files = require "lunas.files"

errors.register_module()

local M = {}

local read = files.read_text

local function fail(field, msg, code)
  errors.raise{ op = "lsm", field = field, code = code or "EINVAL", msg = ("sandbox: field '%s': %s"):format(field, msg) }
end

--- The security modules the kernel runs: {apparmor = true, selinux = true, ...}. From securityfs's lsm list; where
-- securityfs is not mounted, from what /proc and the modules' own file systems show.
-- @treturn table
function M.enabled()
  local set = {}
  local list = read("/sys/kernel/security/lsm")
  if list then
    for name in list:gmatch("[^,%s]+") do set[name] = true end
    return set
  end
  -- (AppArmor's attribute directory exists only when it is enabled; SELinux's file system only when it runs)
  if core.file_type("/proc/self/attr/apparmor") == "dir" and read("/proc/self/attr/apparmor/current") then
    set.apparmor = true
  end
  if core.file_type("/sys/fs/selinux/enforce") == "file" then set.selinux = true end
  return set
end

--- AppArmor's loaded profiles: {[name] = mode} ("enforce", "complain", ...), or nil where securityfs does not
-- show them.
-- @treturn table|nil
function M.apparmor_profiles()
  local text = read("/sys/kernel/security/apparmor/profiles")
  if not text then return nil end
  local profiles = {}
  for line in text:gmatch("[^\n]+") do
    local name, mode = line:match("^(.-) %((%w+)%)$")
    if name then profiles[name] = mode end
  end
  return profiles
end

-- The LSM label fields of a sandbox spec: which module each needs, its attribute file and what is written there.
local FIELDS = {
  apparmor = { lsm = "apparmor", name = "AppArmor", attr = "attr/apparmor/exec", fallback = "attr/exec",
    value = function(v) return "exec " .. v end },
  selinux_label = { lsm = "selinux", name = "SELinux", attr = "attr/exec", value = function(v) return v end },
}

--- Checks the spec's LSM fields against this kernel: the module enabled, an AppArmor profile loaded. Raises a
-- lunas error naming the field.
-- @tparam table spec {apparmor =, selinux_label =, selinux_mount_label =}
function M.check(spec)
  local enabled
  for _, field in ipairs{ "apparmor", "selinux_label", "selinux_mount_label" } do
    if spec[field] then
      enabled = enabled or M.enabled()
      local lsm = field == "apparmor" and "apparmor" or "selinux"
      if not enabled[lsm] then
        fail(field, ("%s is not enabled on this kernel (its label cannot be applied)"):format(
          lsm == "apparmor" and "AppArmor" or "SELinux"), "EOPNOTSUPP")
      end
    end
  end
  if spec.apparmor and spec.apparmor ~= "unconfined" then
    local profiles = M.apparmor_profiles()
    if profiles and not profiles[spec.apparmor] then
      fail("apparmor", ("no AppArmor profile '%s' is loaded (apparmor_parser -r loads one)"):format(spec.apparmor), "ENOENT")
    end
  end
end

--- The exec labels of a spec, in the order they are written: {{field =, path =, relative =, value =}, ...}; path
-- under /proc/thread-self (or `proc`), relative the same path from the procfs's root ("thread-self/attr/exec").
-- @tparam table spec
-- @tparam[opt="/proc"] string proc
-- @treturn table
function M.exec_labels(spec, proc)
  proc = proc or "/proc"
  local out = {}
  for _, field in ipairs{ "apparmor", "selinux_label" } do
    local v = spec[field]
    if v then
      local f = FIELDS[field]
      local attr = f.attr
      if f.fallback and not core.file_type(("%s/thread-self/%s"):format(proc, attr)) then attr = f.fallback end
      out[#out + 1] = { field = field, path = ("%s/thread-self/%s"):format(proc, attr), relative = "thread-self/" .. attr,
        value = f.value(v), name = f.name, label = v }
    end
  end
  return out
end

--- Opens the attribute files of `labels` (exec_labels) for writing, in this thread: an open file keeps
-- naming this thread's attribute wherever /proc goes (a sandbox's root may have none).
-- @tparam table labels
-- @return true, or nil, message, ENAME
function M.open(labels)
  for _, l in ipairs(labels) do
    local fd, msg, code = core.open(l.path, "w")
    if not fd then return nil, ("%s: open %s: %s"):format(l.field, l.path, msg), code end
    l.fd = fd
  end
  return true
end

--- Writes the labels (opened by `open`, or opened here), which the kernel applies at this thread's next exec.
-- @tparam table labels
-- @return true, or nil, message, ENAME (the kernel's answer: ENOENT for an unknown profile, EINVAL for a
--   context SELinux does not know)
function M.apply(labels)
  for _, l in ipairs(labels) do
    local fd, msg, code = l.fd, nil, nil
    if not fd then
      fd, msg, code = core.open(l.path, "w")
      if not fd then return nil, ("%s: open %s: %s"):format(l.field, l.path, msg), code end
    end
    local ok
    ok, msg, code = fd:write(l.value)
    fd:close()
    l.fd = nil
    if not ok then
      return nil, ("%s: %s label '%s': %s"):format(l.field, l.name, l.label, msg), code
    end
  end
  return true
end

--- The labels as lunas's reaper program takes them (`lunas.core.reaper_exec`'s `labels`): its payload writes
-- them itself, relative to a procfs directory, and names a failing one by `what`.
-- @tparam table labels from exec_labels
-- @treturn table {{what =, path =, value =}, ...}
function M.reaper_labels(labels)
  local out = {}
  for i, l in ipairs(labels) do
    out[i] = { what = ("%s: %s label '%s'"):format(l.field, l.name, l.label), path = l.relative, value = l.value }
  end
  return out
end

--- Closes what `open` opened (a sandbox that failed before its payload).
-- @tparam table labels
function M.close(labels)
  for _, l in ipairs(labels or {}) do
    if l.fd then l.fd:close() l.fd = nil end
  end
end

--- A process's current label: AppArmor's profile (with its mode) or SELinux's context, as /proc shows it.
-- @tparam integer|string pid a pid, or "self"
-- @tparam string lsm "apparmor" or "selinux"
-- @treturn string|nil
function M.current(pid, lsm)
  local text = lsm == "apparmor" and read(("/proc/%s/attr/apparmor/current"):format(pid))
    or read(("/proc/%s/attr/current"):format(pid))
  return text and (text:gsub("%z", ""):gsub("%s+$", "")) or nil
end

return M
