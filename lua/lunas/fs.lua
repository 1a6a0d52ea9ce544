--- File systems of sandboxes: a root built from an ordered list of mount entries, the way bubblewrap builds it,
-- and the hardening every tree gets.
--
-- Entries (spec.mounts, applied in the order written; paths are host paths for sources, root paths for targets):
--   {"bind", SRC [, DEST]}  {"ro-bind", SRC [, DEST]}  {"dev-bind", SRC [, DEST]}  and "-try" forms of each
--   {"tmpfs", DEST, size = "64M", mode = "1777"}  {"proc", DEST}  {"dev", DEST}  {"mqueue", DEST}
--   {"overlay", DEST, lower = {SRC...}, upper = SRC, work = SRC}  {"tmp-overlay", DEST, lower = {...}}
--   {"ro-overlay", DEST, lower = {...}}  {"dir", DEST, mode = "0755"}  {"symlink", TARGET, DEST}
--   {"file", DEST, CONTENTS, mode = "0644"}  {"remount-ro", DEST}  {"chmod", DEST, MODE}  {"mask", DEST}
-- Targets are resolved inside the new root: symlinks on the way stay inside it, and a target that is itself a
-- symlink is refused. Binds are nodev unless dev-bind, as in bubblewrap.
-- @module lunas.fs
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

-- Where the new root is assembled before the final pivot (a tmpfs over it, in the sandbox's own mount namespace).
local BASE = "/tmp"
local OLD = "/oldroot"

--- Docker's default masks of /proc: what the hardening of every tree hides under each /proc it mounts.
M.PROC_MASKS = { "acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug",
  "scsi" }
--- Docker's read-only paths of /proc: remounted read-only by the hardening.
M.PROC_READONLY = { "bus", "fs", "irq", "sys", "sysrq-trigger" }
--- Docker's mask of /sys (a sandbox with its own network namespace gets a fresh /sys).
M.SYS_MASKS = { "firmware" }
local DEV_NODES = { "null", "zero", "full", "random", "urandom", "tty" }
local DEV_LINKS = { { "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
  { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" } }

-- ---- entry validation --------------------------------------------------------------------------------------

local function bad(index, fmt, ...)
  errors.raise{ op = "sandbox", code = "EINVAL", field = "mounts",
    msg = ("sandbox: field 'mounts': entry %d: " .. fmt):format(index, ...) }
end

local function path_arg(index, value, what)
  if type(value) ~= "string" or value == "" or value:find("\0", 1, true) then
    bad(index, "%s: path expected, got %s", what, type(value) == "string" and ("'" .. value .. "'") or type(value))
  end
  return value
end

local function mode_arg(index, value, default)
  if value == nil then return default end
  local n = type(value) == "string" and value:match("^0?[0-7]+$") and tonumber(value, 8) or math.type(value) == "integer" and value
  if not n or n < 0 or n > 4095 then bad(index, "mode: octal string or integer expected, got %s", tostring(value)) end
  return n
end

local function lower_list(index, value)
  if type(value) ~= "table" or #value == 0 then bad(index, "lower: non-empty list of directories expected") end
  for i, dir in ipairs(value) do path_arg(index, dir, "lower[" .. i .. "]") end
  return value
end

local function check_keys(index, entry, allowed)
  for k in pairs(entry) do
    if type(k) ~= "number" and not allowed[k] then bad(index, "unknown option '%s'", tostring(k)) end
  end
end

local BIND_KINDS = { bind = "nodev", ["ro-bind"] = "rdonly,nodev", ["dev-bind"] = "" }

--- Validates spec.mounts; returns a list of normalized entries {kind, src, dest, ...}.
-- @tparam table list the entries of the module's description, in order
-- @treturn table
-- @raise a lunas error naming the entry (field "mounts")
function M.check_mounts(list)
  if type(list) ~= "table" then
    errors.raise{ msg = "sandbox: field 'mounts': list of entries expected, got " .. type(list), code = "EINVAL",
      field = "mounts" }
  end
  local out = {}
  for i, e in ipairs(list) do
    if type(e) ~= "table" or type(e[1]) ~= "string" then bad(i, "{kind, ...} expected") end
    local kind, try = e[1], false
    if kind:match("%-try$") and BIND_KINDS[kind:sub(1, -5)] then kind, try = kind:sub(1, -5), true end
    local n = { kind = kind, try = try, index = i }
    if BIND_KINDS[kind] then
      check_keys(i, e, {})
      n.src = path_arg(i, e[2], "source")
      n.dest = path_arg(i, e[3] or e[2], "target")
    elseif kind == "tmpfs" then
      check_keys(i, e, { size = true, mode = true })
      n.dest = path_arg(i, e[2], "target")
      if e.size ~= nil and not (math.type(e.size) == "integer" or (type(e.size) == "string" and e.size:match("^%d+[kKmMgG%%]?$"))) then
        bad(i, "size: bytes or a string like '64M' expected, got %s", tostring(e.size))
      end
      n.size, n.mode = e.size, mode_arg(i, e.mode, 493)
    elseif kind == "proc" or kind == "dev" or kind == "mqueue" or kind == "remount-ro" or kind == "mask" then
      check_keys(i, e, {})
      n.dest = path_arg(i, e[2], "target")
    elseif kind == "overlay" or kind == "tmp-overlay" or kind == "ro-overlay" then
      check_keys(i, e, { lower = true, upper = true, work = true })
      n.dest = path_arg(i, e[2], "target")
      n.lower = lower_list(i, e.lower)
      if kind == "overlay" then
        n.upper, n.work = path_arg(i, e.upper, "upper"), path_arg(i, e.work, "work")
      elseif e.upper or e.work then
        bad(i, "upper and work are only for 'overlay'")
      end
    elseif kind == "dir" then
      check_keys(i, e, { mode = true })
      n.dest, n.mode = path_arg(i, e[2], "target"), mode_arg(i, e.mode, 493)
    elseif kind == "symlink" then
      check_keys(i, e, {})
      n.target, n.dest = path_arg(i, e[2], "link target"), path_arg(i, e[3], "target")
    elseif kind == "file" then
      check_keys(i, e, { mode = true })
      n.dest = path_arg(i, e[2], "target")
      if type(e[3]) ~= "string" then bad(i, "contents: string expected, got %s", type(e[3])) end
      n.contents, n.mode = e[3], mode_arg(i, e.mode, 420)
    elseif kind == "chmod" then
      check_keys(i, e, {})
      n.dest, n.mode = path_arg(i, e[2], "target"), mode_arg(i, e[3], nil)
      if not n.mode then bad(i, "mode expected") end
    else
      bad(i, "unknown kind '%s'", kind)
    end
    out[#out + 1] = n
  end
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then
      errors.raise{ msg = "sandbox: field 'mounts': a list expected", code = "EINVAL", field = "mounts" }
    end
  end
  return out
end

--- The entries of rootfs = "host" without mounts: a fresh /proc over the host's (with a pid namespace).
-- @tparam table ns the set of namespaces the sandbox gets (`{pid = true, ...}`)
-- @treturn table normalized entries
function M.host_mounts(ns)
  if ns.pid then return { { kind = "proc", dest = "/proc", index = 0 } } end
  return {}
end

--- The tree of a spec without rootfs or mounts: the host's / read-only, a fresh /proc (with a pid namespace), a
-- minimal /dev, a private /tmp.
-- @tparam table ns the set of namespaces the sandbox gets
-- @treturn table normalized entries
function M.default_mounts(ns)
  local list = { { kind = "bind", src = "/", dest = "/", attrs = "rdonly,nodev", index = 0 } }
  if ns.pid then list[#list + 1] = { kind = "proc", dest = "/proc", index = 0 } end
  list[#list + 1] = { kind = "dev", dest = "/dev", index = 0 }
  list[#list + 1] = { kind = "tmpfs", dest = "/tmp", mode = 1023, index = 0 }
  return list
end

-- ---- building ----------------------------------------------------------------------------------------------

-- Each function returns nothing on success or nil, message, ENAME (the lunas.core convention).
local function try(value, msg, code)
  if value == nil and msg ~= nil then error({ msg = msg, code = code }, 0) end
  return value
end

-- Host paths are resolved to canonical paths before the build changes what "/" and "/tmp" mean; once the staging
-- root is in place they are reached under OLD (b.old: "" when the tree is the host's own).
local function host(b, path)
  return b.old .. path
end

local function target(b, dest, create, mode)
  return try(core.open_in_root(b.root, dest, { create = create, mode = mode }))
end

local ROOT_PATH = "/newroot"

local function attach(tree, dest_fd)
  try(core.move_mount(tree, dest_fd))
  tree:close()
  dest_fd:close()
end

-- A mount over the root itself stacks on top of the descriptor we resolve from: open the new top instead.
local function reopen_root_if(b, dest)
  if dest:match("^/*$") then
    b.root:close()
    b.root = try(core.open(b.root_path, "r"))
  end
end

local function bind(b, src, dest, attrs, recursive)
  local kind = try(core.file_type(src))
  local dest_fd = target(b, dest, kind == "dir" and "dir" or "file")
  local tree = try(core.open_tree(src, { clone = true, recursive = recursive ~= false }))
  if attrs and attrs ~= "" then try(core.mount_setattr(tree, { set = attrs, recursive = true })) end
  attach(tree, dest_fd)
  reopen_root_if(b, dest)
end

local function new_fs(b, fstype, dest, options, attrs, mode)
  local dest_fd = target(b, dest, "dir", mode)
  local tree = try(core.fs_mount(fstype, options, { attrs = attrs }))
  attach(tree, dest_fd)
  reopen_root_if(b, dest)
end

-- The path inside the root, or nil when the tree does not have it (hardening covers what exists).
local function existing(b, dest)
  local fd, msg, code = core.open_in_root(b.root, dest)
  if not fd and code ~= "ENOENT" then try(fd, msg, code) end
  return fd
end

local function mask(b, dest)
  local fd = existing(b, dest)
  if not fd then return end
  local kind = try(core.file_type(fd))
  fd:close()
  if kind == "dir" then
    new_fs(b, "tmpfs", dest, { size = "0", mode = "0555" }, "rdonly,nosuid,nodev,noexec")
  else
    bind(b, host(b, "/dev/null"), dest, "rdonly,nosuid,noexec", false)
  end
end

local function make_readonly(b, dest)
  local fd = existing(b, dest)
  if not fd then return end
  local tree = try(core.open_tree(fd, { clone = true, recursive = true }))
  try(core.mount_setattr(tree, { set = "rdonly", recursive = true }))
  attach(tree, fd)
end

local function dev(b, dest)
  new_fs(b, "tmpfs", dest, { mode = "0755" }, "nosuid,noexec")
  local dir = dest:gsub("/+$", "")
  for _, node in ipairs(DEV_NODES) do
    local src = host(b, "/dev/" .. node)
    if core.file_type(src) then bind(b, src, dir .. "/" .. node, "", false) end
  end
  new_fs(b, "devpts", dir .. "/pts", { newinstance = true, ptmxmode = "0666", mode = "0620" }, "nosuid,noexec")
  new_fs(b, "tmpfs", dir .. "/shm", { mode = "1777" }, "nosuid,nodev")
  for _, link in ipairs(DEV_LINKS) do try(core.symlink_in_root(b.root, link[1], dir .. "/" .. link[2])) end
end

local function overlay(b, e)
  local r = b.resolved[e]
  -- overlayfs wants two layers without an upper one; a read-only view of one directory is a read-only bind.
  if e.kind == "ro-overlay" and #r.lower == 1 then return bind(b, host(b, r.lower[1]), e.dest, "rdonly,nodev") end
  local lower = {}
  -- overlayfs lists the top layer first; entries list them bottom up, as bubblewrap's --overlay-src does.
  for i = #r.lower, 1, -1 do lower[#lower + 1] = host(b, r.lower[i]) end
  local options = { lowerdir = table.concat(lower, ":") }
  if e.kind == "overlay" then
    options.upperdir, options.workdir = host(b, r.upper), host(b, r.work)
  elseif e.kind == "tmp-overlay" then
    -- Its throwaway upper layer lives on the staging tmpfs: on the host's own tree it would land in the host's /tmp.
    if b.old == "" then error({ msg = "tmp-overlay needs a new root (rootfs other than 'host')", code = "EINVAL" }, 0) end
    b.scratch = (b.scratch or 0) + 1
    local scratch = ("/overlay-%d"):format(b.scratch)
    local base = try(core.open("/", "r"))
    for _, d in ipairs{ scratch, scratch .. "/upper", scratch .. "/work" } do
      try(core.open_in_root(base, d, { create = "dir" })):close()
    end
    base:close()
    options.upperdir, options.workdir = scratch .. "/upper", scratch .. "/work"
  end
  -- An unprivileged overlay keeps its metadata in user.* xattrs.
  if b.userns and e.kind ~= "ro-overlay" then options.userxattr = true end
  new_fs(b, "overlay", e.dest, options, e.kind == "ro-overlay" and "rdonly" or nil)
end

local apply = {
  bind = function(b, e)
    local src = b.resolved[e].src
    if not src then return end -- a -try entry whose source is missing
    bind(b, host(b, src), e.dest, e.attrs or BIND_KINDS[e.kind])
  end,
  tmpfs = function(b, e)
    new_fs(b, "tmpfs", e.dest, { size = e.size and tostring(e.size) or nil, mode = ("%o"):format(e.mode) },
      "nosuid,nodev", e.mode)
  end,
  proc = function(b, e)
    new_fs(b, "proc", e.dest, {}, "nosuid,nodev,noexec")
    b.procs[#b.procs + 1] = e.dest
  end,
  dev = function(b, e) dev(b, e.dest) end,
  mqueue = function(b, e) new_fs(b, "mqueue", e.dest, {}, "nosuid,nodev,noexec") end,
  overlay = overlay,
  dir = function(b, e) target(b, e.dest, "dir", e.mode):close() try(core.chmod_in_root(b.root, e.dest, e.mode)) end,
  symlink = function(b, e) try(core.symlink_in_root(b.root, e.target, e.dest)) end,
  file = function(b, e) try(core.write_in_root(b.root, e.dest, e.contents, e.mode)) end,
  ["remount-ro"] = function(b, e) make_readonly(b, e.dest) end,
  chmod = function(b, e) try(core.chmod_in_root(b.root, e.dest, e.mode)) end,
  mask = function(b, e) mask(b, e.dest) end,
}
apply["ro-bind"], apply["dev-bind"] = apply.bind, apply.bind
apply["tmp-overlay"], apply["ro-overlay"] = overlay, overlay

-- Docker's masks on every /proc of the tree, /proc/sys and friends read-only, and, with a network namespace of
-- its own, the sandbox's own sysfs (read-only) instead of whatever /sys the tree shows.
local function harden(b)
  -- Every /proc of the tree: the ones proc entries made, and one that came with a bind (the host's, under a
  -- recursive bind of /).
  local procs = { table.unpack(b.procs) }
  local seen = {}
  for _, p in ipairs(procs) do seen[p] = true end
  local sys = not seen["/proc"] and existing(b, "/proc/sys/kernel")
  if sys then
    sys:close()
    procs[#procs + 1] = "/proc"
  end
  for _, proc in ipairs(procs) do
    for _, name in ipairs(M.PROC_MASKS) do mask(b, proc .. "/" .. name) end
    for _, name in ipairs(M.PROC_READONLY) do make_readonly(b, proc .. "/" .. name) end
  end
  if b.netns then
    local sys = existing(b, "/sys")
    if sys then
      sys:close()
      new_fs(b, "sysfs", "/sys", {}, "rdonly,nosuid,nodev,noexec")
      for _, name in ipairs(M.SYS_MASKS) do mask(b, "/sys/" .. name) end
    end
  end
end

local function step(what, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return end
  if type(err) ~= "table" then error(err, 0) end
  -- Name host paths as the host knows them, not under the staging root's OLD.
  error({ msg = what .. ": " .. err.msg:gsub(OLD .. "/", "/"), code = err.code }, 0)
end

local function entry_name(e)
  if e.index > 0 then return ("mounts[%d] %s %s"):format(e.index, e.kind, e.dest) end
  return ("default %s %s"):format(e.kind, e.dest)
end

local function canonical(path, missing_ok)
  local resolved, msg, code = core.realpath(path)
  if resolved then return resolved end
  if missing_ok and code == "ENOENT" then return nil end
  try(resolved, msg, code)
end

-- Every host path of the plan, canonical, before anything is mounted: a source under /tmp stays reachable, and
-- an absolute symlink on the way resolves as on the host. Results live apart from the (shared) entries.
local function resolve_host_paths(plan)
  local resolved = {}
  for _, e in ipairs(plan.mounts) do
    local r = {}
    step(entry_name(e), function()
      if e.src then r.src = canonical(e.src, e.try) end
      if e.lower then
        r.lower = {}
        for i, dir in ipairs(e.lower) do r.lower[i] = canonical(dir) end
      end
      if e.upper then r.upper, r.work = canonical(e.upper), canonical(e.work) end
    end)
    resolved[e] = r
  end
  local rootfs
  if plan.rootfs and plan.rootfs ~= "tmpfs" and plan.rootfs ~= "host" then
    step("rootfs " .. plan.rootfs, function() rootfs = canonical(plan.rootfs) end)
  end
  return resolved, rootfs
end

-- rootfs = "host": the sandbox keeps its private copy of the host's mount table (as `unshare --mount` does); the
-- entries and the hardening apply on top of it. No new root, no pivot: the cheapest tree.
local function build_on_host(plan, resolved)
  local b = { procs = {}, netns = plan.netns, userns = plan.userns, resolved = resolved, old = "", root_path = "/" }
  b.root = try(core.open("/", "r"))
  for _, e in ipairs(plan.mounts) do
    if e.index == 0 and e.kind == "proc" then
      -- The mode's own /proc, on the host's path: one mount(2), as `unshare --mount-proc` does.
      step(entry_name(e), function() try(core.mount("proc", "/proc", "proc", "nosuid,nodev,noexec")) end)
      b.procs[#b.procs + 1] = "/proc"
    else
      step(entry_name(e), apply[e.kind], b, e)
    end
  end
  if plan.harden ~= false then step("hardening", harden, b) end
  b.root:close()
end

--- Builds the tree and pivots into it. plan: {rootfs = "tmpfs" | "host" | host dir, mounts = entries,
-- harden = bool, netns = bool, userns = bool}. Runs in the sandbox's first child, in its own mount namespace.
-- Returns nothing or nil, message, ENAME; the message names the entry (index and target) that failed.
-- @tparam table plan
-- @treturn[1] boolean true
-- @return[2] nil, message, ENAME
function M.build(plan)
  local ok, err = pcall(function()
    try(core.mount(nil, "/", nil, "rec,private"))
    local resolved, rootfs = resolve_host_paths(plan)
    if plan.rootfs == "host" then return build_on_host(plan, resolved) end
    -- The root tree is taken before the staging tmpfs covers BASE (the rootfs may live under it).
    local root_tree
    if rootfs then
      step("rootfs " .. plan.rootfs, function() root_tree = try(core.open_tree(rootfs, { clone = true, recursive = true })) end)
    else
      root_tree = try(core.fs_mount("tmpfs", { mode = "0755" }, { attrs = "nosuid,nodev" }))
    end
    try(core.mount("tmpfs", BASE, "tmpfs", "nosuid,nodev", "mode=0755"))
    local base = try(core.open(BASE, "r"))
    try(core.open_in_root(base, "oldroot", { create = "dir" })):close()
    local newroot = try(core.open_in_root(base, "newroot", { create = "dir" }))
    base:close()
    attach(root_tree, newroot)
    try(core.pivot_root(BASE, BASE .. OLD))
    try(core.chdir("/"))
    local b = { procs = {}, netns = plan.netns, userns = plan.userns, resolved = resolved, old = OLD,
      root_path = ROOT_PATH }
    b.root = try(core.open(ROOT_PATH, "r"))
    for _, e in ipairs(plan.mounts) do step(entry_name(e), apply[e.kind], b, e) end
    if plan.harden ~= false then step("hardening", harden, b) end
    b.root:close()
    try(core.umount(OLD, "detach"))
    try(core.chdir("/newroot"))
    try(core.pivot_root(".", "."))
    try(core.umount(".", "detach"))
    -- The caller's directory when the tree has it (as bubblewrap does), else the root.
    if not (plan.cwd and core.chdir(plan.cwd)) then try(core.chdir("/")) end
  end)
  if ok then return true end
  if type(err) == "table" then return nil, err.msg, err.code end
  return nil, tostring(err), "ELUA"
end

return M
