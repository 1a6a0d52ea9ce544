--- File systems of sandboxes: a root built from an ordered list of mount entries, the way bubblewrap builds it,
-- and the hardening every tree gets.
--
-- Entries (spec.mounts, applied in the order written; paths are host paths for sources, root paths for targets):
--   {"bind", SRC [, DEST]}  {"ro-bind", SRC [, DEST]}  {"dev-bind", SRC [, DEST]}  and "-try" forms of each
--   {"tmpfs", DEST, size = "64M", mode = "1777"}  {"proc", DEST}  {"dev", DEST}  {"mqueue", DEST}
--   ({"dev", DEST, console = "/dev/pts/3"}: that terminal of the host's bound on DEST/console as well, as bubblewrap
--   does when its output is a terminal, so that ttyname() works inside)
--   {"overlay", DEST, lower = {SRC...}, upper = SRC, work = SRC}  {"tmp-overlay", DEST, lower = {...}}
--   {"ro-overlay", DEST, lower = {...}}  {"dir", DEST, mode = "0755"}  {"symlink", TARGET, DEST}
--   {"file", DEST, CONTENTS, mode = "0666"}  {"remount-ro", DEST}  {"chmod", DEST, MODE}  {"mask", DEST}
--   {"bind-data", DEST, CONTENTS, mode = "0600"}  {"ro-bind-data", DEST, CONTENTS, mode = "0600"}  a file of its
--   own, with those contents, bound on DEST (writable or not), as bubblewrap's --bind-data
--   {"ro-view", SRC [, DEST]}  a read-only view of a host directory in which no socket or FIFO of the host answers
--   {"console", DEST, devpts = "/dev/pts"}  the sandbox's terminal (spec.terminal): a new pty of the devpts the
--   tree has at `devpts`, its slave bound on DEST (an OCI container's /dev/console)
--   {"hooks"}  where the sandbox's before_pivot hooks run (default: after every entry and the hardening); the
--   entries after it see the host's tree as the root and the sandbox's at its rootfs path, so none of them may
--   need the staging root (overlays, ro-view)
-- Bind kinds take `fd = N` (bubblewrap's --bind-fd): SRC is where that descriptor points, and the mount must be
-- that very file once made (a rename meanwhile fails it).
-- Targets are resolved inside the new root: symlinks on the way stay inside it, and a target that is itself a
-- symlink is followed inside the root too (an absolute link's "/" is the new root; ".." stops there), as
-- bubblewrap follows it. Directories made on the way have mode 0755, less the group or other bits the entry's own
-- mode leaves out (bubblewrap's rule). Binds are nodev unless dev-bind, as in bubblewrap.
--
-- A bind of a host directory, even read-only, lets the payload connect(2) to every unix socket in it and open
-- every FIFO (host services: D-Bus, systemd, docker.sock...). An "ro-view" is an overlay with the directory as
-- its only real layer: the same files, but a socket or FIFO there is an inode of the overlay, which no listener
-- or reader on the host is attached to (connect: ECONNREFUSED, open: ENXIO). The default tree is built of them.
-- @module lunas.fs
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

-- Where the new root is assembled before the final pivot (a tmpfs over it, in the sandbox's own mount namespace).
local BASE = "/tmp"
local OLD = "/oldroot"

--- Docker's default masks of /proc: what the hardening of every tree hides under each /proc it mounts.
M.PROC_MASKS = { "acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "timer_list", "timer_stats",
  "sched_debug", "scsi" }
--- Docker's read-only paths of /proc: remounted read-only by the hardening.
M.PROC_READONLY = { "bus", "fs", "irq", "sys", "sysrq-trigger" }
--- Docker's masks of /sys, on whatever /sys the tree has (a sandbox with its own network namespace gets a fresh
-- one): firmware tables, and RAPL energy counters (the PLATYPUS side channel, CVE-2020-8694). Each CPU's
-- thermal_throttle directory is masked too where the machine has them.
M.SYS_MASKS = { "firmware", "devices/virtual/powercap" }
local DEV_NODES = { "null", "zero", "full", "random", "urandom", "tty" }
local DEV_LINKS = { { "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
  { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" }, { "/proc/kcore", "core" } }

-- ---- mount options ------------------------------------------------------------------------------------------

-- mount(8)'s words, as an OCI config lists them: a mount attribute set or cleared (on the mount itself; the
-- "r" forms on every mount below it too), a superblock flag, a propagation, or bind/rbind. Anything else is the
-- file system's own option ("mode=755", "newinstance").
local ATTR_WORDS = { ro = { set = "rdonly" }, rw = { clear = "rdonly" }, nosuid = { set = "nosuid" },
  suid = { clear = "nosuid" }, nodev = { set = "nodev" }, dev = { clear = "nodev" }, noexec = { set = "noexec" },
  exec = { clear = "noexec" }, noatime = { atime = "noatime" }, relatime = { atime = "relatime" },
  strictatime = { atime = "strictatime" }, atime = { atime = "relatime" }, norelatime = { atime = "strictatime" },
  nostrictatime = { atime = "relatime" }, nodiratime = { set = "nodiratime" }, diratime = { clear = "nodiratime" },
  nosymfollow = { set = "nosymfollow" }, symfollow = { clear = "nosymfollow" } }
-- Superblock flags (fsconfig's flag names), for a new file system.
local SB_FLAGS = { sync = "sync", dirsync = "dirsync", mand = "mand", lazytime = "lazytime", acl = "posixacl",
  silent = "silent", iversion = "iversion" }
-- Words that say nothing a new mount needs (the defaults, their negations, the old API's remount).
local NO_OPS = { defaults = true, async = true, nomand = true, nolazytime = true, noacl = true, loud = true,
  noiversion = true, remount = true }
local PROPAGATION = { private = "private", shared = "shared", slave = "slave", unbindable = "unbindable" }

--- Parses mount options as mount(8) and an OCI config write them: `{"nosuid", "ro", "mode=755", "rbind"}` ->
-- `{bind = bool, recursive = bool (rbind), set = {attr...}, clear = {...}, atime = word, rset = {...},
-- rclear = {...}, ratime = word, propagation = {"private", recursive}, sb_flags = {...}, data = {key = value |
-- true}, idmap = "idmap" | "ridmap", tmpcopyup = bool}`. Raises on an option that is not a string.
-- @tparam table options
-- @treturn table
function M.parse_mount_options(options)
  local out = { set = {}, clear = {}, rset = {}, rclear = {}, sb_flags = {}, data = {}, data_order = {} }
  for i, word in ipairs(options or {}) do
    if type(word) ~= "string" or word:find("%z") then
      errors.raise{ msg = ("mount options[%d]: string expected, got %s"):format(i, type(word)), code = "EINVAL" }
    end
    local attr = ATTR_WORDS[word]
    local rattr = word:sub(1, 1) == "r" and ATTR_WORDS[word:sub(2)]
    local prop = PROPAGATION[word] or (word:sub(1, 1) == "r" and PROPAGATION[word:sub(2)])
    if word == "bind" or word == "rbind" then
      out.bind, out.recursive = true, out.recursive or word == "rbind"
    elseif attr then
      if attr.set then out.set[#out.set + 1] = attr.set end
      if attr.clear then out.clear[#out.clear + 1] = attr.clear end
      if attr.atime then out.atime = attr.atime end
      if word == "ro" then out.sb_flags[#out.sb_flags + 1] = "ro" end
    elseif prop then
      out.propagation = { prop, PROPAGATION[word] == nil }
    elseif rattr then
      if rattr.set then out.rset[#out.rset + 1] = rattr.set end
      if rattr.clear then out.rclear[#out.rclear + 1] = rattr.clear end
      if rattr.atime then out.ratime = rattr.atime end
    elseif SB_FLAGS[word] then
      out.sb_flags[#out.sb_flags + 1] = SB_FLAGS[word]
    elseif word == "idmap" or word == "ridmap" then
      out.idmap = word
    elseif word == "tmpcopyup" then
      out.tmpcopyup = true
    elseif not NO_OPS[word] then
      local key, value = word:match("^([^=]+)=(.*)$")
      if key then out.data[key] = value else out.data[word] = true end
      out.data_order[#out.data_order + 1] = key or word
    end
  end
  return out
end

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
-- Kinds whose source is a host path, with the target defaulting to it.
local SOURCED_KINDS = { bind = true, ["ro-bind"] = true, ["dev-bind"] = true, ["ro-view"] = true }

-- An idmapped bind's mapping: {{inside, outside, count}, ...}, as a user namespace's uid_map is written.
local function id_map_arg(i, v, name)
  if type(v) ~= "table" or #v == 0 or #v > 340 then bad(i, "%s: 1 to 340 ranges {inside, outside, count} expected", name) end
  for j, r in ipairs(v) do
    if type(r) ~= "table" then bad(i, "%s[%d]: {inside, outside, count} expected", name, j) end
    for k = 1, 3 do
      local x = r[k]
      if math.type(x) ~= "integer" or x < (k == 3 and 1 or 0) or x > 0xffffffff then
        bad(i, "%s[%d]: {inside, outside, count} of 32-bit ids expected", name, j)
      end
    end
  end
  return v
end

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
    if kind:match("%-try$") and SOURCED_KINDS[kind:sub(1, -5)] then kind, try = kind:sub(1, -5), true end
    local n = { kind = kind, try = try, index = i }
    if SOURCED_KINDS[kind] then
      check_keys(i, e, { fd = BIND_KINDS[kind] ~= nil or nil })
      n.src = path_arg(i, e[2], "source")
      n.dest = path_arg(i, e[3] or e[2], "target")
      if e.fd ~= nil and not (math.type(e.fd) == "integer" and e.fd >= 0) then
        bad(i, "fd: a descriptor number expected, got %s", tostring(e.fd))
      end
      n.fd = e.fd
    elseif kind == "tmpfs" then
      check_keys(i, e, { size = true, mode = true })
      n.dest = path_arg(i, e[2], "target")
      if e.size ~= nil and not (math.type(e.size) == "integer" or (type(e.size) == "string" and e.size:match("^%d+[kKmMgG%%]?$"))) then
        bad(i, "size: bytes or a string like '64M' expected, got %s", tostring(e.size))
      end
      n.size, n.mode = e.size, mode_arg(i, e.mode, 493)
    elseif kind == "mount" then
      check_keys(i, e, { type = true, source = true, options = true, uid_map = true, gid_map = true })
      n.dest = path_arg(i, e[2], "target")
      if type(e.type) ~= "string" or e.type == "" or e.type:find("[%z,]") then bad(i, "type: a file system type expected") end
      if e.source ~= nil and (type(e.source) ~= "string" or e.source:find("%z")) then bad(i, "source: string expected") end
      if e.options ~= nil and type(e.options) ~= "table" then bad(i, "options: list of strings expected") end
      local ok, parsed = pcall(M.parse_mount_options, e.options)
      if not ok then bad(i, "%s", errors.is(parsed) and parsed.msg or tostring(parsed)) end
      n.fstype, n.options, n.source = e.type, parsed, e.source
      if e.type == "bind" then parsed.bind = true end
      if parsed.bind then n.src = path_arg(i, e.source, "source") end
      if parsed.tmpcopyup and e.type ~= "tmpfs" then bad(i, "option tmpcopyup is for tmpfs mounts only") end
      if parsed.idmap then
        if not parsed.bind then bad(i, "option %s: only binds are idmapped", parsed.idmap) end
        n.uid_map, n.gid_map = id_map_arg(i, e.uid_map, "uid_map"), id_map_arg(i, e.gid_map, "gid_map")
      elseif e.uid_map ~= nil or e.gid_map ~= nil then
        bad(i, "uid_map and gid_map go with the idmap or ridmap option")
      end
    elseif kind == "node" then
      check_keys(i, e, { type = true, major = true, minor = true, mode = true, uid = true, gid = true })
      n.dest = path_arg(i, e[2], "target")
      if e.type ~= "char" and e.type ~= "block" and e.type ~= "fifo" then bad(i, "type: 'char', 'block' or 'fifo' expected") end
      for _, k in ipairs{ "major", "minor", "uid", "gid" } do
        if e[k] ~= nil and (math.type(e[k]) ~= "integer" or e[k] < 0 or e[k] > 0xffffffff) then bad(i, "%s: integer expected", k) end
      end
      n.type, n.major, n.minor, n.uid, n.gid = e.type, e.major or 0, e.minor or 0, e.uid, e.gid
      n.mode = mode_arg(i, e.mode, 438)
    elseif kind == "remount-ro" then
      check_keys(i, e, { recursive = true })
      n.dest = path_arg(i, e[2], "target")
      if e.recursive ~= nil and type(e.recursive) ~= "boolean" then bad(i, "recursive: boolean expected") end
      n.recursive = e.recursive ~= false
    elseif kind == "proc" or kind == "dev" or kind == "mqueue" or kind == "mask" then
      check_keys(i, e, { console = kind == "dev" or nil, plain = kind == "mask" or nil })
      if e.plain ~= nil and type(e.plain) ~= "boolean" then bad(i, "plain: boolean expected") end
      n.plain = e.plain
      n.dest = path_arg(i, e[2], "target")
      if e.console ~= nil then
        if type(e.console) ~= "string" or not e.console:match("^/dev/[%w/]+$") or e.console:find("..", 1, true) then
          bad(i, "console: a terminal device under /dev expected, got %s", tostring(e.console))
        end
        n.console = e.console
      end
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
    elseif kind == "file" or kind == "bind-data" or kind == "ro-bind-data" then
      check_keys(i, e, { mode = true })
      n.dest = path_arg(i, e[2], "target")
      if type(e[3]) ~= "string" then bad(i, "contents: string expected, got %s", type(e[3])) end
      n.contents, n.mode = e[3], mode_arg(i, e.mode, kind == "file" and 438 or 384)
    elseif kind == "default" or kind == "hooks" then
      check_keys(i, e, {})
      if e[2] ~= nil then bad(i, "'%s' takes no arguments", kind) end
    elseif kind == "console" then
      check_keys(i, e, { devpts = true })
      n.dest = path_arg(i, e[2], "target")
      n.devpts = path_arg(i, e.devpts or "/dev/pts", "devpts")
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

--- The host's programs, libraries and configuration: what the default tree shows of the host, read-only. No
-- service keeps a socket or FIFO there (FHS): plain binds, where lookups cost what they cost on the host. Each
-- as the host has it: a directory is bound, a symlink (/bin, /lib on a merged-/usr system) made again.
M.PROGRAM_DIRS = { "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32" }
--- Where services keep their sockets and FIFOs: private and empty in the default tree.
M.PRIVATE_DIRS = { "/tmp", "/run", "/var/tmp", "/var/run", "/dev/shm" }
-- The sandbox's own /proc, /dev and /sys.
local SPECIAL_DIRS = { "/proc", "/sys", "/dev" }

local function under(path, dir)
  return path == dir or path:sub(1, #dir + 1) == dir .. "/"
end

local function under_any(path, dirs)
  for _, dir in ipairs(dirs) do
    if under(path, dir) then return true end
  end
  return false
end

local function private_itself(path)
  for _, dir in ipairs(M.PRIVATE_DIRS) do
    if path == dir or path == core.realpath(dir) then return true end
  end
  return false
end

-- Which of the program directories a path lies in (after symlinks: /bin/x is /usr/bin/x on merged /usr).
local function shown(path)
  return under_any(path, M.PROGRAM_DIRS)
end

--- The tree of a spec without rootfs or mounts (and the `{"default"}` entry of mounts): the sandbox's own tmpfs
-- as its root, holding the host's program directories read-only (`PROGRAM_DIRS`), a fresh /proc (with a pid
-- namespace; the host's, read-only and masked, without), a minimal /dev, the host's /sys read-only without a
-- network namespace of its own (a fresh one with it, made by the hardening), private /tmp, /run and /var (with
-- /var/tmp, and /var/run a link to /run), a private HOME, and the working directory as a read-only view
-- (`ro-view`: no socket or FIFO of the host answers there). No unix socket or FIFO of the host is in it. With
-- the host's network, its resolv.conf where /etc/resolv.conf points.
-- @tparam table ns the set of namespaces the sandbox gets
-- @tparam[opt] table opts `{cwd = path, home = path, harden = boolean, uid = id, gid = id}` (ids inside, for the
--   private HOME)
-- @treturn table normalized entries
function M.default_mounts(ns, opts)
  opts = opts or {}
  local list = {}
  local function add(e)
    e.index = 0
    list[#list + 1] = e
  end
  for _, dir in ipairs(M.PROGRAM_DIRS) do
    local kind = core.file_type(dir)
    if kind == "dir" then
      add{ kind = "bind", src = dir, dest = dir, attrs = "rdonly,nodev" }
    elseif kind == "link" then
      add{ kind = "symlink", target = core.readlink(dir), dest = dir }
    end
  end
  -- Without a pid namespace of its own a sandbox cannot mount a /proc: the host's, which the hardening masks.
  if ns.pid then
    add{ kind = "proc", dest = "/proc" }
  else
    add{ kind = "bind", src = "/proc", dest = "/proc", attrs = "rdonly,nosuid,nodev,noexec" }
  end
  add{ kind = "dev", dest = "/dev" }
  if not (ns.net and opts.harden ~= false) and core.file_type("/sys") == "dir" then
    add{ kind = "bind", src = "/sys", dest = "/sys", attrs = "rdonly,nosuid,nodev,noexec" }
  else
    add{ kind = "dir", dest = "/sys", mode = 365 } -- where the hardening mounts the sandbox's own
  end
  -- Directories of the sandbox's own root (a tmpfs): private, empty and writable, and no mount each.
  add{ kind = "dir", dest = "/tmp", mode = 1023 }
  add{ kind = "dir", dest = "/run", mode = 493 }
  add{ kind = "dir", dest = "/var/tmp", mode = 1023 }
  add{ kind = "symlink", target = "/run", dest = "/var/run" }
  -- The host's network: its resolver configuration, where a link into the (private) /run points.
  if not ns.net then
    local conf = core.realpath("/etc/resolv.conf")
    if conf and not shown(conf) and not under_any(conf, SPECIAL_DIRS) and core.file_type(conf) == "file" then
      add{ kind = "bind", src = conf, dest = conf, attrs = "rdonly,nosuid,nodev,noexec" }
    end
  end
  local home = opts.home
  if type(home) == "string" and home:match("^/.") and not shown(home) and not under_any(home, SPECIAL_DIRS) then
    add{ kind = "tmpfs", dest = home, mode = 448, uid = opts.uid, gid = opts.gid }
  end
  -- (Not where it is one of the private directories themselves: the payload gets its own.)
  local cwd = opts.cwd
  if cwd and cwd ~= "/" and not shown(cwd) and not under_any(cwd, SPECIAL_DIRS) and not private_itself(cwd) then
    add{ kind = "ro-view", src = cwd, dest = cwd, optional = true }
  end
  return list
end

local receive_sources

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

-- The mode of the directories made on the way to an entry's target: 0755, without the group or other bits the
-- entry's own mode leaves out (a private file gets private parents).
local function parents_mode(mode)
  local parents = 493
  if mode and mode & 56 == 0 then parents = parents & ~40 end
  if mode and mode & 7 == 0 then parents = parents & ~5 end
  return parents
end

-- The target inside the new root (made when missing: create "dir" or "file"; a symlink there is followed inside
-- the root).
local function target(b, dest, create, mode, parents)
  return try(core.open_in_root(b.root, dest, { create = create, mode = mode, parents = parents or 493, follow = true }))
end

-- Makes the directory that will hold dest, with the parents' mode an entry of that mode gets.
local function make_parents(b, dest, mode)
  local dir = dest:match("^(.*)/[^/]+/*$")
  if not dir or dir:match("^/*$") then return end
  local parents = parents_mode(mode)
  try(core.open_in_root(b.root, dir, { create = "dir", mode = parents, parents = parents, follow = true })):close()
end

local ROOT_PATH = "/newroot"
local general_mount, device_node, console

-- keep: the tree is the parent's (a source it opened): never closed here, where a child that shares the parent's
-- memory would close the parent's object (it goes at exec, close-on-exec).
local function attach(tree, dest_fd, keep)
  try(core.move_mount(tree, dest_fd))
  if not keep then tree:close() end
  dest_fd:close()
end

-- A mount over the root itself stacks on top of the descriptor we resolve from: open the new top instead.
local function reopen_root_if(b, dest)
  if dest:match("^/*$") then
    b.root:close()
    b.root = try(core.open(b.root_path, "r"))
  end
end

-- overlayfs splits lowerdir at ':' and takes '\\' as its escape; it unescapes every path it takes (lower,
-- upper, work), and a kernel that parses the options as one string (6.1) splits them at ','.
local function layer(path)
  return (path:gsub("[\\:,]", "\\%0"))
end

-- A new directory (or file) on the staging tmpfs, the root while the tree is built; returns its path.
local function staging(b, name, kind)
  if b.old == "" then error({ msg = name .. " needs a new root (rootfs other than 'host')", code = "EINVAL" }, 0) end
  b.scratch = (b.scratch or 0) + 1
  local path = ("/%s-%d"):format(name, b.scratch)
  local base = try(core.open("/", "r"))
  local fd, msg, code = core.open_in_root(base, path, { create = kind or "dir", mode = 493 })
  base:close()
  return path, try(fd, msg, code)
end

-- An empty directory on the staging tmpfs: the second layer a read-only overlay of one directory needs.
local function empty_dir(b)
  if not b.empty then
    local path, fd = staging(b, "empty")
    fd:close()
    b.empty = path
  end
  return b.empty
end

-- Where the build reaches an entry's host source by path (role "src", "lower" (index i) or "upper"): under OLD,
-- or, when the parent opened it (the sandbox's ids, a range of the host's, may not be able to walk there), on
-- the staging tmpfs where its tree was attached.
local function source_path(b, e, role, i)
  local src = b.sources and b.sources[e] and b.sources[e][role .. (i or "")]
  if not src then
    local r = b.resolved[e]
    return host(b, role == "lower" and r.lower[i] or r[role])
  end
  if not src.staged then
    local path, fd = staging(b, "source", core.file_type(src.tree) == "dir" and "dir" or "file")
    attach(src.tree, fd, src.parents)
    src.staged = path
  end
  return src.staged
end

-- given: a source the parent opened ({tree =, parents =}: a detached mount, its attributes set, idmapped where
-- asked), used instead of a copy of src.
local function bind(b, src, dest, attrs, recursive, given)
  local tree = given and given.tree
  local kind = try(core.file_type(tree or src))
  -- (a file's mount point is read-only for all, as bubblewrap makes it)
  local dest_fd = target(b, dest, kind == "dir" and "dir" or "file", kind ~= "dir" and 292 or nil)
  if not tree then
    tree = try(core.open_tree(src, { clone = true, recursive = recursive ~= false }))
    if attrs and attrs ~= "" then try(core.mount_setattr(tree, { set = attrs, recursive = true })) end
  end
  attach(tree, dest_fd, given and given.parents)
  reopen_root_if(b, dest)
end

-- File systems that take no SELinux context= option (runc labels the others with the container's mount label).
local UNLABELED = { proc = true, sysfs = true, mqueue = true, cgroup = true, cgroup2 = true }

-- The options of a new file system, with the sandbox's SELinux mount label where one is given.
local function labeled(b, fstype, options)
  if not b.mount_label or UNLABELED[fstype] then return options end
  local out = {}
  for k, v in pairs(options) do out[k] = v end
  out.context = b.mount_label
  return out
end

local function new_fs(b, fstype, dest, options, attrs, mode)
  local dest_fd = target(b, dest, "dir", mode, parents_mode(mode))
  local tree = try(core.fs_mount(fstype, labeled(b, fstype, options), { attrs = attrs }))
  attach(tree, dest_fd)
  reopen_root_if(b, dest)
end

-- The path inside the root, or nil when the tree does not have it (hardening covers what exists).
local function existing(b, dest)
  local fd, msg, code = core.open_in_root(b.root, dest)
  if not fd and code ~= "ENOENT" then try(fd, msg, code) end
  return fd
end

-- plain: as runc masks (an OCI config's maskedPaths): a read-only tmpfs with no other option, the tree's own
-- /dev/null as it is.
local function mask(b, dest, plain)
  local fd = existing(b, dest)
  if not fd then return end
  local kind = try(core.file_type(fd))
  fd:close()
  if kind == "dir" then
    if plain then
      attach(try(core.fs_mount("tmpfs", labeled(b, "tmpfs", { ro = true }), { attrs = "rdonly", source = "tmpfs" })), target(b, dest, "dir"))
      return
    end
    new_fs(b, "tmpfs", dest, { size = "0", mode = "0555" }, "rdonly,nosuid,nodev,noexec")
  elseif plain then
    bind(b, b.root_path .. "/dev/null", dest, "", false)
  else
    bind(b, host(b, "/dev/null"), dest, "rdonly,nosuid,noexec", false)
  end
end

local function make_readonly(b, dest, only_top)
  local fd = existing(b, dest)
  if not fd then return end
  if only_top then
    -- The mount itself, in place (an OCI root.readonly: what is mounted below keeps its own flags).
    local ok, msg, code = core.mount_setattr(fd, { set = "rdonly", recursive = false })
    fd:close()
    return try(ok, msg, code)
  end
  local tree = try(core.open_tree(fd, { clone = true, recursive = true }))
  try(core.mount_setattr(tree, { set = "rdonly", recursive = true }))
  attach(tree, fd)
end

local function dev(b, dest, console)
  new_fs(b, "tmpfs", dest, { mode = "0755" }, "nosuid,noexec")
  local dir = dest:gsub("/+$", "")
  for _, node in ipairs(DEV_NODES) do
    local src = host(b, "/dev/" .. node)
    if core.file_type(src) then bind(b, src, dir .. "/" .. node, "", false) end
  end
  if console then
    if core.file_type(host(b, console)) ~= "char" then
      error({ msg = console .. " is not a terminal device", code = "EINVAL" }, 0)
    end
    bind(b, host(b, console), dir .. "/console", "", false)
  end
  new_fs(b, "devpts", dir .. "/pts", { newinstance = true, ptmxmode = "0666", mode = "0620" }, "nosuid,noexec")
  new_fs(b, "tmpfs", dir .. "/shm", { mode = "1777" }, "nosuid,nodev")
  for _, link in ipairs(DEV_LINKS) do try(core.symlink_in_root(b.root, link[1], dir .. "/" .. link[2])) end
end

--- A new pseudo-terminal of the devpts instance mounted at `devpts` in the root being built (or, without one,
-- the root the caller is in): master and slave, both close-on-exec. The slave is opened through the master
-- (TIOCGPTPEER), so no path in the sandbox's tree decides which terminal it is.
-- @tparam fd root the root to resolve `devpts` in
-- @tparam string devpts
-- @treturn table `{master =, slave =, number =}`
-- @return[2] nil, message, ENAME
function M.open_terminal(root, devpts)
  local dir, msg, code = core.open_in_root(root, devpts, { follow = true })
  if not dir then return nil, ("terminal: %s: %s"):format(devpts, msg), code end
  local master, number
  master, number, code = core.openpt(dir)
  dir:close()
  if not master then return nil, ("terminal: no devpts at %s (%s)"):format(devpts, number), code end
  local slave
  slave, msg, code = core.pty_peer(master)
  if not slave then
    master:close()
    return nil, "terminal: " .. msg, code
  end
  return { master = master, slave = slave, number = number }
end

-- The sandbox's terminal, opened here (its devpts is in the tree by now) and its slave bound on the entry's
-- target, as runc binds /dev/console; the sandbox's payload takes it from b.terminal.
console = function(b, e)
  if not b.terminal then error({ msg = "a console entry needs the sandbox's terminal (spec.terminal)", code = "EINVAL" }, 0) end
  if b.terminal.master then error({ msg = "one console entry per tree", code = "EINVAL" }, 0) end
  local pty = try(M.open_terminal(b.root, e.devpts))
  for k, v in pairs(pty) do b.terminal[k] = v end
  local dest_fd = target(b, e.dest, "file", 292)
  attach(try(core.open_tree(pty.slave, { clone = true })), dest_fd)
end

local function overlay(b, e)
  local r = b.resolved[e]
  -- Its throwaway upper layer lives on the staging tmpfs: on the host's own tree it would land in the host's /tmp.
  if e.kind == "tmp-overlay" and b.old == "" then
    error({ msg = "tmp-overlay needs a new root (rootfs other than 'host')", code = "EINVAL" }, 0)
  end
  -- overlayfs wants two layers without an upper one; a read-only view of one directory is a read-only bind.
  if e.kind == "ro-overlay" and #r.lower == 1 then
    local given = b.sources and b.sources[e] and b.sources[e].lower1
    if given then return bind(b, nil, e.dest, nil, true, given) end
    return bind(b, host(b, r.lower[1]), e.dest, "rdonly,nodev")
  end
  local lower = {}
  -- overlayfs lists the top layer first; entries list them bottom up, as bubblewrap's --overlay-src does.
  for i = #r.lower, 1, -1 do lower[#lower + 1] = layer(source_path(b, e, "lower", i)) end
  local options = { lowerdir = table.concat(lower, ":") }
  if e.kind == "overlay" then
    local given = b.sources and b.sources[e] and b.sources[e].upper
    if given then
      -- Upper and work through the parent's (idmapped) copy of the directory that holds both.
      local dir = source_path(b, e, "upper")
      options.upperdir = layer(dir .. r.upper:sub(#given.path + 1))
      options.workdir = layer(dir .. r.work:sub(#given.path + 1))
    else
      options.upperdir, options.workdir = layer(host(b, r.upper)), layer(host(b, r.work))
    end
  elseif e.kind == "tmp-overlay" then
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

local function ro_view(b, e)
  local src = b.resolved[e].src
  if not src then return end -- a -try entry whose source is missing
  if b.old == "" then error({ msg = "ro-view needs a new root (rootfs other than 'host')", code = "EINVAL" }, 0) end
  local given = b.sources and b.sources[e] and b.sources[e].src
  local kind = try(core.file_type(given and given.tree or host(b, src)))
  if kind == "file" then return bind(b, host(b, src), e.dest, "rdonly,nodev", true, given) end
  if kind ~= "dir" then
    error({ msg = ("%s is a %s: a read-only view shows none"):format(src, kind == "fifo" and "FIFO" or kind), code = "EINVAL" }, 0)
  end
  local ok, err = pcall(new_fs, b, "overlay", e.dest,
    { lowerdir = layer(source_path(b, e, "src")) .. ":" .. empty_dir(b) }, "rdonly,nodev")
  if ok then return end
  -- In a user namespace overlayfs cannot take a directory with the host's (locked) mounts below it as a layer.
  -- The default tree's working directory then is not shown (bound, it would show its sockets).
  if not (e.optional and type(err) == "table" and err.code == "EINVAL") then error(err, 0) end
  io.stderr:write(("lunas: warning: sandbox: the working directory %s is not shown: file systems are mounted "
    .. "below it (bind it, or what you need of it, explicitly)\n"):format(src))
end

-- The mount on dest is the file the descriptor names (bubblewrap's --bind-fd): a path resolved from a
-- descriptor can be swapped between the resolution and the mount.
local function check_same(b, e)
  local _, want = try(core.file_type(e.fd))
  local fd = target(b, e.dest)
  local _, got = try(core.file_type(fd))
  fd:close()
  -- (its work done, the descriptor is not the payload's to keep, as in bubblewrap)
  core.close_range(e.fd, e.fd)
  if want ~= got then error({ msg = ("descriptor %d: the mount is not the file it names (renamed meanwhile?)"):format(e.fd), code = "ESTALE" }, 0) end
end

-- Bubblewrap's /proc without a pid namespace of its own: the host's (one can't mount a procfs of a pid namespace
-- one is not in), its kernel knobs read-only where they are writable.
local PROC_KNOBS = { "sys", "sysrq-trigger", "irq", "bus" }
local function host_proc(b, dest)
  bind(b, host(b, "/proc"), dest, "", true)
  b.procs[#b.procs + 1] = dest
  for _, name in ipairs(PROC_KNOBS) do
    if core.file_type(host(b, "/proc/" .. name)) then make_readonly(b, dest .. "/" .. name) end
  end
end

-- A file of the sandbox's own (on the staging tmpfs, out of the payload's reach), bound on dest.
local function bind_data(b, e)
  if b.old == "" then error({ msg = e.kind .. " needs a new root (rootfs other than 'host')", code = "EINVAL" }, 0) end
  local path, fd = staging(b, "data", "file")
  fd:close()
  local base = try(core.open("/", "r"))
  local ok, msg, code = core.write_in_root(base, path, e.contents, e.mode)
  base:close()
  try(ok, msg, code)
  make_parents(b, e.dest, e.mode)
  bind(b, path, e.dest, e.kind == "ro-bind-data" and "rdonly,nodev" or "nodev", false)
end

-- ---- general mounts (an OCI config's) -----------------------------------------------------------------------

-- The attributes of parsed options on a mount descriptor: the plain words on the mount itself, the "r" forms on
-- the whole tree, then the propagation.
local function set_attrs(tree, o)
  local function apply_attrs(set, clear, atime, recursive)
    if #set == 0 and #clear == 0 and not atime then return end
    local s, c = { table.unpack(set) }, { table.unpack(clear) }
    if atime then s[#s + 1] = atime end
    try(core.mount_setattr(tree, { set = s, clear = c, recursive = recursive }))
  end
  apply_attrs(o.set, o.clear, o.atime, false)
  apply_attrs(o.rset, o.rclear, o.ratime, true)
end

local function set_propagation(b, dest, o)
  if not o.propagation then return end
  local fd = target(b, dest)
  local ok, msg, code = core.mount_setattr(fd, { propagation = o.propagation[1], recursive = o.propagation[2] })
  fd:close()
  try(ok, msg, code)
end

-- Superblock options for fsconfig: the data words and flags, as given.
local function fs_options(o)
  local options = {}
  for k, v in pairs(o.data) do options[k] = v end
  for _, flag in ipairs(o.sb_flags) do options[flag] = true end
  return options
end

local function bind_mount(b, e)
  local o = e.options
  local src = b.resolved[e].src
  -- An idmapped one the parent opened, idmapped and set (in a user namespace of its own the sandbox may not)
  local given = b.resolved[e].tree
  local tree = given or try(core.open_tree(host(b, src), { clone = true, recursive = o.recursive == true }))
  local kind = try(core.file_type(tree))
  if not given then set_attrs(tree, o) end
  local dest_fd = target(b, e.dest, kind == "dir" and "dir" or "file", kind ~= "dir" and 420 or nil)
  attach(tree, dest_fd, given ~= nil)
  reopen_root_if(b, e.dest)
end

-- runc's emulation of a "cgroup" mount: the sandbox's cgroup in every hierarchy, under a tmpfs (v1, hybrid) or
-- on the target itself (v2). In a cgroup namespace of its own the hierarchies are mounted anew (their root is
-- the namespace's); otherwise the sandbox's own directories of the host's hierarchies are bound.
local function cgroup_mount(b, e)
  local o = e.options
  -- (read here, in the sandbox's first process: its own cgroups)
  local hierarchies = require("lunas.cgroup").hierarchies(host(b, "/proc"))
  local fresh = b.cgroupns
  local function one(fstype, options, dir, dest)
    local tree
    if fresh then
      tree = try(core.fs_mount(fstype, options, { attrs = "nosuid,nodev,noexec", source = options.name or fstype }))
    else
      -- (a hierarchy the sandbox's cgroup does not span, whose directory of ours is not there: left out)
      if not dir or core.file_type(host(b, dir)) ~= "dir" then return end
      tree = try(core.open_tree(host(b, dir), { clone = true, recursive = false }))
      try(core.mount_setattr(tree, { set = "nosuid,nodev,noexec", recursive = false }))
    end
    set_attrs(tree, o)
    attach(tree, target(b, dest, "dir"))
  end
  local v1 = {}
  for _, h in ipairs(hierarchies) do
    if h.version == 1 then v1[#v1 + 1] = h end
  end
  if #v1 == 0 then
    if hierarchies[1] then one("cgroup2", {}, hierarchies[1].dir, e.dest) end
    return
  end
  -- v1 (and hybrid, whose cgroup2 runc leaves out too): a tmpfs of mount points, one per hierarchy, and a link
  -- for each controller of a co-mounted one ("cpu" -> "cpu,cpuacct").
  attach(try(core.fs_mount("tmpfs", { mode = "0755" }, { attrs = "nosuid,nodev,noexec", source = "tmpfs" })),
    target(b, e.dest, "dir"))
  local dir = e.dest:gsub("/+$", "")
  for _, h in ipairs(v1) do
    local options, name = {}, h.key
    for word in h.key:gmatch("[^,]+") do
      local named = word:match("^name=(.+)$")
      if named then options.name, options.none, name = named, true, named else options[word] = true end
    end
    one("cgroup", options, h.dir, dir .. "/" .. name)
    if #h.controllers > 1 then
      for _, c in ipairs(h.controllers) do
        if c ~= name then try(core.symlink_in_root(b.root, name, dir .. "/" .. c)) end
      end
    end
  end
end

-- A file system whose kernel refuses a fresh instance here (sysfs without a network namespace of its own, mqueue
-- without an ipc one) is the caller's, bound recursively: what runc does.
local SHARED_FALLBACK = { sysfs = "/sys", mqueue = "/dev/mqueue" }

general_mount = function(b, e)
  local o = e.options
  if o.bind then return bind_mount(b, e) end
  if e.fstype == "cgroup" or e.fstype == "cgroup2" then return cgroup_mount(b, e) end
  local attrs, readonly = {}, false
  for _, a in ipairs(o.set) do
    -- (a tmpcopyup tmpfs is filled first, then made read-only)
    if a == "rdonly" and o.tmpcopyup then readonly = true else attrs[#attrs + 1] = a end
  end
  if o.atime then attrs[#attrs + 1] = o.atime end
  local tree, msg, code = core.fs_mount(e.fstype, labeled(b, e.fstype, fs_options(o)), { attrs = attrs, source = e.source })
  if not tree and (code == "EPERM" or code == "EINVAL") and SHARED_FALLBACK[e.fstype] then
    tree = try(core.open_tree(host(b, SHARED_FALLBACK[e.fstype]), { clone = true, recursive = true }))
    set_attrs(tree, o)
  else
    -- (the plain words went to the new mount itself; the r- forms still reach a tree)
    set_attrs(try(tree, msg, code), { set = {}, clear = {}, rset = o.rset, rclear = o.rclear, ratime = o.ratime })
  end
  local dest_fd = target(b, e.dest, "dir", nil)
  -- tmpcopyup: the new tmpfs starts with what the image has there (podman's --read-only /tmp, /run, /var/tmp).
  if o.tmpcopyup then
    try(core.copy_tree(dest_fd, tree))
    if readonly then try(core.mount_setattr(tree, { set = "rdonly", recursive = false })) end
  end
  attach(tree, dest_fd)
  reopen_root_if(b, e.dest)
  if e.fstype == "proc" then b.procs[#b.procs + 1] = e.dest end
  set_propagation(b, e.dest, o)
end

-- A device node: made where the sandbox may (mknod needs CAP_MKNOD in the initial user namespace), else the
-- host's node of the same path bound on a file, as runc does in a user namespace.
device_node = function(b, e)
  if e.type == "fifo" or not b.userns then
    make_parents(b, e.dest, 493)
    local ok, msg, code = core.mknod_in_root(b.root, e.dest, { type = e.type, major = e.major, minor = e.minor,
      mode = e.mode, uid = e.uid, gid = e.gid })
    -- (what the image or an earlier mount put there stays, as runc leaves it)
    if not ok and code ~= "EEXIST" then try(ok, msg, code) end
    return
  end
  local src = host(b, e.dest)
  if core.file_type(src) ~= e.type then
    error({ msg = ("%s: a user namespace cannot make device nodes, and the host has no %s device there"):format(e.dest, e.type), code = "EPERM" }, 0)
  end
  bind(b, src, e.dest, "", false)
end

local apply = {
  bind = function(b, e)
    local src = b.resolved[e].src
    if not src then return end -- a -try entry whose source is missing
    local given = b.sources and b.sources[e] and b.sources[e].src
    bind(b, host(b, src), e.dest, e.attrs or BIND_KINDS[e.kind], true, given)
    if e.fd then check_same(b, e) end
  end,
  tmpfs = function(b, e)
    new_fs(b, "tmpfs", e.dest, { size = e.size and tostring(e.size) or nil, mode = ("%o"):format(e.mode),
      uid = e.uid and tostring(e.uid), gid = e.gid and tostring(e.gid) }, "nosuid,nodev", e.mode)
  end,
  proc = function(b, e)
    if not b.pidns then return host_proc(b, e.dest) end
    new_fs(b, "proc", e.dest, {}, "nosuid,nodev,noexec")
    b.procs[#b.procs + 1] = e.dest
  end,
  dev = function(b, e) dev(b, e.dest, e.console) end,
  mqueue = function(b, e) new_fs(b, "mqueue", e.dest, {}, "nosuid,nodev,noexec") end,
  overlay = overlay,
  -- A directory that exists is left as it is: through a bind of the host's tree it is the host's (bubblewrap too
  -- leaves it alone); a new one gets exactly its mode, whatever the umask.
  dir = function(b, e)
    local existing = core.open_in_root(b.root, e.dest, { follow = true })
    if existing then return existing:close() end
    target(b, e.dest, "dir", e.mode, parents_mode(e.mode)):close()
    try(core.chmod_in_root(b.root, e.dest, e.mode))
  end,
  symlink = function(b, e) try(core.symlink_in_root(b.root, e.target, e.dest)) end,
  file = function(b, e)
    make_parents(b, e.dest, e.mode)
    try(core.write_in_root(b.root, e.dest, e.contents, e.mode))
  end,
  ["bind-data"] = bind_data,
  ["ro-bind-data"] = bind_data,
  ["remount-ro"] = function(b, e) make_readonly(b, e.dest, e.recursive == false) end,
  mount = function(b, e) general_mount(b, e) end,
  node = function(b, e) device_node(b, e) end,
  chmod = function(b, e) try(core.chmod_in_root(b.root, e.dest, e.mode)) end,
  mask = function(b, e) mask(b, e.dest, e.plain) end,
  ["ro-view"] = ro_view,
  console = function(b, e) console(b, e) end,
  -- (the point of the caller's hooks: see hook_point)
  hooks = function() end,
}
apply["ro-bind"], apply["dev-bind"] = apply.bind, apply.bind
apply["tmp-overlay"], apply["ro-overlay"] = overlay, overlay

-- Docker's masks of /sys, on whichever /sys the tree has (with or without a network namespace of its own).
local function mask_sys(b)
  local devices = existing(b, "/sys/devices")
  if not devices then return end
  devices:close()
  for _, name in ipairs(M.SYS_MASKS) do mask(b, "/sys/" .. name) end
  local throttle = existing(b, "/sys/devices/system/cpu/cpu0/thermal_throttle")
  if not throttle then return end
  throttle:close()
  for _, cpu in ipairs(try(core.listdir(b.root_path .. "/sys/devices/system/cpu"))) do
    if cpu:match("^cpu%d+$") then mask(b, "/sys/devices/system/cpu/" .. cpu .. "/thermal_throttle") end
  end
end

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
    end
  end
  mask_sys(b)
end

local function step(what, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return end
  if type(err) ~= "table" then error(err, 0) end
  -- Name host paths as the host knows them, not under the staging root's OLD.
  error({ msg = what .. ": " .. err.msg:gsub(OLD .. "/", "/"), code = err.code, source = err.source }, 0)
end

local function entry_name(e)
  if e.index > 0 then return ("mounts[%d] %s %s"):format(e.index, e.kind, e.dest) end
  return ("default %s %s"):format(e.kind, e.dest)
end

-- A host path made canonical; a failure keeps the path as `source` (a front end may word it its own way).
local function canonical(path, missing_ok)
  local resolved, msg, code = core.realpath(path)
  if resolved then return resolved end
  if missing_ok and code == "ENOENT" then return nil end
  error({ msg = msg, code = code, source = path }, 0)
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
local function build_on_host(plan, resolved, sources)
  local b = { procs = {}, netns = plan.netns, userns = plan.userns, pidns = plan.pidns, resolved = resolved, old = "",
    root_path = "/", sources = sources, terminal = plan.terminal, mount_label = plan.mount_label }
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

-- ---- sources opened by the parent --------------------------------------------------------------------------

-- The directory holding both a and b (canonical paths).
local function common_dir(a, b)
  local dir = a
  while not under(b, dir) do dir = dir:match("^(.*)/[^/]*$") or "/" end
  return dir == "" and "/" or dir
end

-- The key of an idmapped entry's maps: entries with the same maps share one user namespace.
local function serialize_maps(e)
  local parts = {}
  for _, list in ipairs{ e.uid_map, e.gid_map } do
    for _, r in ipairs(list) do parts[#parts + 1] = table.concat(r, " ", 1, 3) end
    parts[#parts + 1] = "|"
  end
  return table.concat(parts, ",")
end

--- Parent, before the clone: resolves the plan's host paths as the caller sees them (canonical, symlinks followed
-- as on the host), into plan.resolved and plan.rootfs_path, for a child that cannot (a sandbox whose ids are a
-- range of the host's). Raises a lunas error naming the entry.
-- @tparam table plan
function M.resolve(plan)
  local ok, resolved, rootfs = pcall(resolve_host_paths, plan)
  if not ok then
    local err = resolved
    errors.raise{ op = "sandbox", step = "mounts", code = type(err) == "table" and err.code or "ELUA",
      msg = "sandbox: mounts: " .. (type(err) == "table" and err.msg or tostring(err)),
      source = type(err) == "table" and err.source or nil }
  end
  plan.resolved, plan.rootfs_path = resolved, rootfs
  local made = {}
  for _, e in ipairs(plan.mounts) do
    if e.kind == "mount" and e.options.idmap then
      local key = serialize_maps(e)
      if not made[key] then
        local userns, msg, code = M.userns_with_maps(e.uid_map, e.gid_map)
        if not userns then
          M.close_idmaps(plan)
          errors.raise{ op = "sandbox", step = "mounts", code = code, msg = ("sandbox: mounts: %s: %s"):format(entry_name(e), msg) }
        end
        made[key] = userns
        plan.idmap_namespaces = plan.idmap_namespaces or {}
        plan.idmap_namespaces[#plan.idmap_namespaces + 1] = userns
      end
      -- The tree is made here, idmapped (ridmap: every mount below too) and its attributes set: the child may be
      -- in a user namespace of its own, where the host's mounts cannot be idmapped.
      local ok, tree = pcall(function()
        local t = try(core.open_tree(resolved[e].src, { clone = true, recursive = e.options.recursive == true }))
        plan.idmap_namespaces[#plan.idmap_namespaces + 1] = t
        try(core.mount_setattr(t, { idmap = made[key], recursive = e.options.idmap == "ridmap" }))
        set_attrs(t, e.options)
        return t
      end)
      if not ok then
        M.close_idmaps(plan)
        errors.raise{ op = "sandbox", step = "mounts", code = type(tree) == "table" and tree.code or "ELUA",
          msg = ("sandbox: mounts: %s: %s"):format(entry_name(e), type(tree) == "table" and tree.msg or tostring(tree)) }
      end
      resolved[e].tree = tree
    end
  end
end

--- Closes the user namespaces and trees `resolve` made for idmapped binds (the parent's copies, once the child
-- has them).
-- @tparam table plan
function M.close_idmaps(plan)
  for _, userns in ipairs(plan.idmap_namespaces or {}) do userns:close() end
  plan.idmap_namespaces = nil
end

--- A user namespace with these maps, for idmapped mounts (mount_setattr's userns): a child is made in a new one,
-- the maps written, the namespace opened, and the child goes. Needs the privilege to write such maps (root).
-- @tparam table uid_map `{{inside, outside, count}, ...}`
-- @tparam table gid_map likewise
-- @treturn ns the namespace
-- @return[2] nil, message, ENAME
function M.userns_with_maps(uid_map, gid_map)
  local r, w, code = core.pipe()
  if not r then return nil, w, code end
  local child, msg
  child, msg, code = core.spawn{ flags = "user", maps = { uid = uid_map, gid = gid_map, setgroups = "deny" },
    fn = function()
      w:close()
      core.poll({ r })
      return 0
    end }
  r:close()
  if not child then
    w:close()
    return nil, "a user namespace for the idmap: " .. msg, code
  end
  local userns
  userns, msg, code = core.ns_open(("/proc/%d/ns/user"):format(child.pid))
  w:close()
  child:wait()
  child:close()
  if not userns then return nil, "a user namespace for the idmap: " .. msg, code end
  return userns
end

--- Parent, in a sandbox whose ids are a range of the host's (root runs it): every host source of the plan
-- (resolved by `resolve`), which the parent opens and hands to the child, since the sandbox's ids may not be
-- able to walk there. What the plan makes writable is idmapped through the sandbox's maps: writable binds
-- (not of device nodes, which go by their own permissions; sockets and FIFOs where they can be), the directory
-- of an overlay's upper and work
-- layers, and the rootfs directory. Returns the jobs `{entry =, role = "src" | "lower" | "upper", index =,
-- path =, recursive =, attrs =, idmap =, optional =, rootfs = true}`, in order. The lower layers of a
-- writable overlay are idmapped too: their files change when copied up.
-- @tparam table plan
-- @treturn table
function M.source_jobs(plan)
  local jobs = {}
  local function add(job) jobs[#jobs + 1] = job end
  if plan.rootfs_path then add{ rootfs = true, path = plan.rootfs_path, recursive = true, idmap = true } end
  -- Views and overlays are attached on the staging root, which the host's own tree has not: the child says so.
  local staged = plan.rootfs ~= "host"
  for _, e in ipairs(plan.mounts) do
    local r = plan.resolved[e] or {}
    if BIND_KINDS[e.kind] and r.src then
      local attrs = e.attrs or BIND_KINDS[e.kind]
      local kind = core.file_type(r.src)
      -- A socket or FIFO handed in is idmapped where it can be (so that root's may be connected to), else taken
      -- as it is: nothing is written through it.
      add{ entry = e, role = "src", path = r.src, recursive = true, attrs = attrs,
        idmap = e.kind == "bind" and not attrs:find("rdonly", 1, true) and kind ~= "char" and kind ~= "block",
        optional = kind == "socket" or kind == "fifo" }
    elseif staged and e.kind == "ro-view" and r.src then
      -- Its own mount alone: below it, the host's mounts would stop overlayfs in a user namespace. The working
      -- directory of the default tree where only its owner may enter it (root's, say): seen as the sandbox's
      -- root sees it, idmapped, where the file system allows.
      local _, _, mode = core.file_type(r.src)
      add{ entry = e, role = "src", path = r.src, recursive = false, attrs = "rdonly,nodev",
        idmap = e.optional and mode ~= nil and mode & 5 ~= 5 or nil, optional = true }
    elseif staged and r.lower then
      -- A writable overlay changes its lower files too (copied up): seen as the sandbox's where they are root's.
      local writable = e.kind ~= "ro-overlay"
      for i, dir in ipairs(r.lower) do
        add{ entry = e, role = "lower", index = i, path = dir, recursive = #r.lower == 1, attrs = "rdonly,nodev",
          idmap = writable }
      end
      if r.upper then add{ entry = e, role = "upper", path = common_dir(r.upper, r.work), recursive = false, idmap = true } end
    end
  end
  return jobs
end

-- A job's tree, as the parent opens it: a detached copy, its attributes set, idmapped through userns where the
-- job says (its top mount: what is mounted below it keeps its own ids). Returns the tree, or nil, message, ENAME
-- naming the entry; an optional job that cannot be idmapped comes as it is, with a warning.
local function open_job(job, userns, warn)
  local what = job.rootfs and ("rootfs " .. job.path) or entry_name(job.entry)
  local tree, msg, code = core.open_tree(job.path, { clone = true, recursive = job.recursive })
  if not tree then return nil, what .. ": " .. msg, code end
  local ok = true
  if job.attrs and job.attrs ~= "" then ok, msg, code = core.mount_setattr(tree, { set = job.attrs, recursive = true }) end
  if ok and job.idmap then
    ok, msg, code = core.mount_setattr(tree, { idmap = userns, recursive = false })
    if not ok and job.optional then
      if warn then warn(("%s: the sandbox's ids (a range of the host's) own nothing there: %s"):format(what, msg)) end
      ok = true
    elseif not ok then
      msg = ("cannot be made writable for the sandbox's ids, a range of the host's (%s): idmapped mounts need a "
        .. "file system that supports them; make it read-only, give uid_map, or set host_root"):format(msg)
    end
  end
  if not ok then
    tree:close()
    return nil, what .. ": " .. msg, code
  end
  return tree
end

--- Parent, before the clone: opens the trees of the jobs that need no idmap (job.tree); the child inherits
-- them. Raises a lunas error naming the entry. Returns whether some jobs are left for `send_sources` (idmapped:
-- they need the sandbox's user namespace, made by the clone).
-- @tparam table jobs from source_jobs
-- @treturn boolean
function M.open_sources(jobs)
  local later = false
  for _, job in ipairs(jobs) do
    if job.idmap then
      later = true
    else
      local tree, msg, code = open_job(job)
      if not tree then
        M.close_sources(jobs)
        errors.raise{ op = "sandbox", step = "mounts", code = code, msg = "sandbox: mounts: " .. msg }
      end
      job.tree = tree
    end
  end
  return later
end

--- Parent: closes the trees open_sources opened (the child has its own copies, or has exec'd).
-- @tparam table jobs
function M.close_sources(jobs)
  for _, job in ipairs(jobs) do
    if job.tree then job.tree:close() end
  end
end

--- Parent, once the sandbox's user namespace has its maps: opens the idmapped jobs' trees through that
-- namespace and sends them to the child over sock, in order. An optional source (a socket handed in, the
-- working directory's view) that cannot be idmapped is sent as it is, with a warning; any other fails, naming
-- its entry.
-- @tparam table jobs from source_jobs
-- @param userns the sandbox's user namespace (a handle)
-- @param sock the parent's end of a socket pair
-- @param[opt] warn function(message) for warnings
-- @return true, or nil, message, ENAME
function M.send_sources(jobs, userns, sock, warn)
  for _, job in ipairs(jobs) do
    if job.idmap then
      local tree, msg, code = open_job(job, userns, warn)
      if not tree then return nil, msg, code end
      local ok
      ok, msg, code = core.send_fd(sock, tree)
      tree:close()
      if not ok then return nil, msg, code end
    end
  end
  return true
end

-- Child: the sources the parent opened, in the order of plan.source_jobs: {[entry] = {src =, lower1 =, upper =}}
-- (each {tree =, path =, parents = true when the tree is the parent's object}), and the rootfs's. Tables of the
-- child's own: a child that shares the parent's memory must not change the parent's.
function receive_sources(plan)
  if not plan.source_jobs then return nil end
  local by_entry, root = {}, nil
  for _, job in ipairs(plan.source_jobs) do
    local src = { path = job.path, tree = job.tree, parents = job.tree ~= nil }
    if not src.tree then src.tree = try(core.recv_fd(plan.source_sock)) end
    if job.rootfs then
      root = src
    else
      by_entry[job.entry] = by_entry[job.entry] or {}
      by_entry[job.entry][job.role .. (job.index or "")] = src
    end
  end
  return by_entry, root
end

-- The caller's hooks (plan.before_pivot), once: the tree built so far goes to the rootfs directory's path in the
-- host's tree, and the host's tree becomes the root again, as runc's is before its pivot_root: a hook's host
-- paths resolve, and the container's tree is where its bundle says. The rest of the build works there (b.old "").
local function hook_point(b, plan)
  if b.hooked or not plan.before_pivot then return end
  b.hooked = true
  local path = plan.rootfs_path
  b.root:close()
  try(core.mount(ROOT_PATH, OLD .. path, nil, "move"))
  try(core.chdir(OLD))
  try(core.pivot_root(".", "."))
  try(core.umount(".", "detach"))
  try(core.chdir("/"))
  b.old, b.root_path = "", path
  b.root = try(core.open(path, "r"))
  try(plan.before_pivot())
end

--- Builds the tree and pivots into it. plan: {rootfs = "tmpfs" | "host" | host dir, mounts = entries,
-- harden = bool, netns = bool, userns = bool}. Runs in the sandbox's first child, in its own mount namespace.
-- Returns nothing or nil, message, ENAME; the message names the entry (index and target) that failed.
-- @tparam table plan
-- @treturn[1] boolean true
-- @return[2] nil, message, ENAME
function M.build(plan)
  -- Every mode given is the mode a file gets, whatever the caller's umask (which the payload gets back).
  local umask = core.umask(0)
  local ok, err = pcall(function()
    try(core.mount(nil, "/", nil, "rec,private"))
    local resolved, rootfs = plan.resolved, plan.rootfs_path
    if not resolved then resolved, rootfs = resolve_host_paths(plan) end
    local sources, root_source = receive_sources(plan)
    if plan.rootfs == "host" then return build_on_host(plan, resolved, sources) end
    -- The root tree is taken before the staging tmpfs covers BASE (the rootfs may live under it).
    local root_tree
    if root_source then
      root_tree = root_source.tree
    elseif rootfs then
      step("rootfs " .. plan.rootfs, function() root_tree = try(core.open_tree(rootfs, { clone = true, recursive = true })) end)
    else
      -- (a new file system of the sandbox's like any other: bubblewrap labels its root tmpfs too)
      root_tree = try(core.fs_mount("tmpfs", labeled(plan, "tmpfs", { mode = "0755" }), { attrs = "nosuid,nodev" }))
    end
    try(core.mount("tmpfs", BASE, "tmpfs", "nosuid,nodev", "mode=0755"))
    local base = try(core.open(BASE, "r"))
    try(core.open_in_root(base, "oldroot", { create = "dir" })):close()
    local newroot = try(core.open_in_root(base, "newroot", { create = "dir" }))
    base:close()
    attach(root_tree, newroot, root_source and root_source.parents)
    try(core.pivot_root(BASE, BASE .. OLD))
    try(core.chdir("/"))
    local b = { procs = {}, netns = plan.netns, userns = plan.userns, pidns = plan.pidns, resolved = resolved,
      old = OLD, root_path = ROOT_PATH, sources = sources, cgroupns = plan.cgroupns, terminal = plan.terminal,
      mount_label = plan.mount_label }
    b.root = try(core.open(ROOT_PATH, "r"))
    for _, e in ipairs(plan.mounts) do
      if e.kind == "hooks" then step("hooks", hook_point, b, plan) else step(entry_name(e), apply[e.kind], b, e) end
    end
    if plan.harden ~= false then step("hardening", harden, b) end
    step("hooks", hook_point, b, plan)
    b.root:close()
    if b.hooked then
      -- (the host's tree is the root, the new one at its path: runc's pivot_root(".", "."))
      try(core.chdir(plan.rootfs_path))
    else
      try(core.umount(OLD, "detach"))
      try(core.chdir("/newroot"))
    end
    try(core.pivot_root(".", "."))
    try(core.umount(".", "detach"))
    -- The root's propagation as asked (an OCI config's rootfsPropagation); private otherwise.
    if plan.propagation then try(core.mount(nil, "/", nil, plan.propagation)) end
    -- The caller's directory when the tree has it (as bubblewrap does), else the root.
    if not (plan.cwd and core.chdir(plan.cwd)) then try(core.chdir("/")) end
  end)
  core.umask(umask)
  if ok then return true end
  if type(err) == "table" then return nil, err.msg, err.code end
  return nil, tostring(err), "ELUA"
end

return M
