--- Resource control: cgroups v2, v1 and the hybrid of both, as one object.
--
--   local cgroup = require "lunas.cgroup"
--   local cg <close> = cgroup.new{ limits = { memory = "256M", pids = 64, cpu = 0.5 } }
--   local p = cg:spawn{ argv = { "make", "-j8" } }     -- born inside it (CLONE_INTO_CGROUP on v2)
--   p:wait(); print(cg:stats().memory.peak)            -- closing the scope kills what is left and removes it
--
-- A cgroup object spans every hierarchy it needs: on pure v2 one directory; on a hybrid machine the v2 directory
-- (for CLONE_INTO_CGROUP, cgroup.kill, cgroup.freeze and cgroup.events) plus one directory per v1 hierarchy that
-- carries a controller it limits or reads (memory, pids, cpu, cpuacct, ...); on pure v1 the v1 hierarchies alone.
-- cgroups are only ever created, opened or removed below the calling process's own cgroup in each hierarchy.
-- @module lunas.cgroup
local core = require "lunas.core"
local files = require "lunas.files"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"

errors.register_module()

local M = {}

local function misuse(field, fmt, ...)
  errors.raise{ op = "cgroup", msg = ("cgroup: %s: " .. fmt):format(field, ...), code = "EINVAL", field = field }
end

local function fail(msg, code, fields)
  local e = { op = "cgroup", msg = "cgroup: " .. msg, code = code }
  for k, v in pairs(fields or {}) do e[k] = v end
  errors.raise(e)
end

local function check(value, msg, code)
  if value == nil and msg ~= nil then fail(msg, code) end
  return value
end

-- ---- reading the layout -------------------------------------------------------------------------------------

local read_text = files.read_text

local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

local function split(text, sep)
  local out = {}
  for item in text:gmatch("[^" .. sep .. "]+") do out[#out + 1] = item end
  return out
end

local V1_CONTROLLERS = { cpu = true, cpuacct = true, cpuset = true, memory = true, devices = true, freezer = true,
  blkio = true, pids = true, net_cls = true, net_prio = true, perf_event = true, hugetlb = true, rdma = true,
  misc = true }

-- Which mounts of mountinfo can be seen: one is hidden when a mount covers it or one of the mounts it hangs
-- from, i.e. a mount stacked on that mount's root (its parent is that mount, its mount point the same) or a
-- later mount on the same parent and mount point. (A cgroup2 tree mounted over a hybrid host's /sys/fs/cgroup
-- hides the v1 hierarchies below it, which mountinfo still lists.)
local function visible_mounts(entries)
  local by_id, on = {}, {}
  for i, e in ipairs(entries) do
    by_id[e.id] = e
    e.index = i
    local key = e.parent .. " " .. e.path
    on[key] = math.max(on[key] or 0, i)
  end
  -- the last mount made on its parent at its mount point; one mounted on its own root
  local function latest(e) return on[e.parent .. " " .. e.path] == e.index end
  local function stacked_on(e) return on[e.id .. " " .. e.path] ~= nil end
  local visible = {}
  for i, e in ipairs(entries) do
    local ok = latest(e) and not stacked_on(e)
    local child, m, hops = e, by_id[e.parent], 0
    while ok and m and m ~= child and hops < #entries do
      -- (a mount stacked on m's root is what covers m: seen from there, m is not hidden by it)
      if not latest(m) or (child.path ~= m.path and stacked_on(m)) then ok = false end
      child, m, hops = m, by_id[m.parent], hops + 1
    end
    visible[i] = ok
  end
  return visible
end

-- Every cgroup mount of this mount namespace that can be seen: v2 mounts, and v1 mounts keyed by their
-- controller set.
local function cgroup_mounts(proc)
  local v2, v1 = nil, {}
  local entries = {}
  for line in (read_text((proc or "/proc") .. "/self/mountinfo") or ""):gmatch("[^\n]+") do
    local pre, post = line:match("^(.-) %- (.*)$")
    if pre then
      local f, g = split(pre, " "), split(post, " ")
      entries[#entries + 1] = { id = f[1], parent = f[2], root = unescape(f[4]), path = unescape(f[5]), fstype = g[1],
        options = g[3] }
    end
  end
  local visible = visible_mounts(entries)
  for i, e in ipairs(entries) do
    if (e.fstype == "cgroup" or e.fstype == "cgroup2") and visible[i] then
      local mount, g = { root = e.root, path = e.path }, { e.fstype, nil, e.options }
      if g[1] == "cgroup2" and not v2 then
        v2 = mount
      elseif g[1] == "cgroup" then
        mount.controllers = {}
        for _, opt in ipairs(split(g[3] or "", ",")) do
          if V1_CONTROLLERS[opt] or opt:match("^name=") then mount.controllers[#mount.controllers + 1] = opt end
        end
        table.sort(mount.controllers)
        local key = table.concat(mount.controllers, ",")
        if not v1[key] then v1[key] = mount end
      end
    end
  end
  return v2, v1
end

-- The directory of cgroup `path` (as /proc/PID/cgroup names it) in a mount whose root may itself be a cgroup.
local function directory_in(mount, path)
  if mount.root == "/" then return mount.path .. (path == "/" and "" or path) end
  if path == mount.root then return mount.path end
  if path:sub(1, #mount.root + 1) == mount.root .. "/" then return mount.path .. path:sub(#mount.root + 1) end
  return nil
end

-- {[hierarchy key] = path}: "" for v2, the sorted controller list for v1 ("cpu,cpuacct", "memory", ...).
local function proc_cgroups(pid, proc)
  local text = read_text(("%s/%s/cgroup"):format(proc or "/proc", pid))
  if not text then return nil end
  local paths = {}
  for line in text:gmatch("[^\n]+") do
    local id, controllers, path = line:match("^(%d+):([^:]*):(.*)$")
    if id == "0" and controllers == "" then
      paths[""] = path
    elseif id then
      local list = split(controllers, ",")
      table.sort(list)
      paths[table.concat(list, ",")] = path
    end
  end
  return paths
end

--- The version of the hierarchy that has controller c here (1 or 2; nil: none), "io" and "blkio" being one.
-- @tparam string c
-- @treturn integer|nil
function M.version(c)
  local controllers = M.layout().controllers
  return controllers[c] or controllers[c == "io" and "blkio" or c == "blkio" and "io" or c]
end

--- Every cgroup hierarchy mounted here, named hierarchies (name=systemd) included, with this process's cgroup
-- directory in it: a list of {version = 1 | 2, key = "cpu,cpuacct" | "name=systemd" | "", controllers = {...},
-- mount = "/sys/fs/cgroup/cpu,cpuacct", dir = that directory (nil when the mount does not show it)}, v1 sorted
-- by key, the v2 one last. proc: where procfs is mounted (default /proc).
-- @tparam[opt] string proc
-- @treturn table
function M.hierarchies(proc)
  local v2_mount, v1_mounts = cgroup_mounts(proc)
  local own = proc_cgroups("self", proc) or {}
  local list = {}
  for key, mount in pairs(v1_mounts) do
    list[#list + 1] = { version = 1, key = key, controllers = mount.controllers, mount = mount.path,
      dir = own[key] and directory_in(mount, own[key]) or nil }
  end
  table.sort(list, function(a, b) return a.key < b.key end)
  if v2_mount then
    list[#list + 1] = { version = 2, key = "", controllers = {}, mount = v2_mount.path,
      dir = own[""] and directory_in(v2_mount, own[""]) or nil }
  end
  return list
end

local layout_cache, layout_pid
-- The leaf a process moves into when its own v2 cgroup must give controllers to children (no internal processes).
local LEAF = "lunas.leaf"
--- The name of that leaf cgroup.
M.LEAF = LEAF

--- The cgroup layout as this process sees it (cached per process):
-- {mode = "v2" | "hybrid" | "v1", v2 = {mount, path, dir, controllers = {name = true}} or nil,
--  v1 = {[controller] = {mount, path, dir, key}}, controllers = {[name] = 1 | 2}}.
-- path is this process's own cgroup in that hierarchy, dir its directory.
function M.layout()
  local pid = core.getpid()
  if layout_cache and layout_pid == pid then return layout_cache end
  local v2_mount, v1_mounts = cgroup_mounts()
  local own = proc_cgroups("self") or {}
  -- A process parked in a LEAF by lunas (see enable_v2) still owns the cgroup above it: that is where its
  -- cgroups go, with the controllers already enabled there.
  local leaf_suffix = "/" .. LEAF:gsub("%.", "%%.") .. "$"
  for key, path in pairs(own) do
    local above = path:gsub(leaf_suffix, "")
    own[key] = above == "" and "/" or above
  end
  local layout = { v1 = {}, controllers = {} }
  if v2_mount and own[""] then
    local dir = directory_in(v2_mount, own[""])
    if dir then
      local available = {}
      for _, c in ipairs(split(read_text(dir .. "/cgroup.controllers") or "", "%s")) do available[c] = true end
      layout.v2 = { mount = v2_mount.path, root = v2_mount.root, path = own[""], dir = dir, controllers = available }
      for c in pairs(available) do layout.controllers[c] = 2 end
    end
  end
  for key, mount in pairs(v1_mounts) do
    local path = own[key]
    local dir = path and directory_in(mount, path)
    if dir then
      for _, c in ipairs(mount.controllers) do
        if V1_CONTROLLERS[c] then
          layout.v1[c] = { mount = mount.path, root = mount.root, path = path, dir = dir, key = key }
          layout.controllers[c] = layout.controllers[c] or 1
        end
      end
    end
  end
  if next(layout.v1) == nil then
    layout.mode = layout.v2 and "v2" or "none"
  else
    layout.mode = layout.v2 and "hybrid" or "v1"
  end
  layout_cache, layout_pid = layout, pid
  return layout
end

-- ---- units ----------------------------------------------------------------------------------------------

local BYTE_UNITS = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4 }

--- "256M", "1.5G", "512KiB", 1048576 or "max" -> bytes (integer) or "max".
function M.bytes(field, v)
  if v == "max" or v == math.huge then return "max" end
  if math.type(v) == "integer" then
    if v < 0 then misuse(field, "0 or more bytes expected, got %d", v) end
    return v
  end
  if type(v) == "string" then
    local number, unit, suffix = v:lower():match("^%s*(%d+%.?%d*)%s*([kmgt]?)(i?b?)%s*$")
    if number and (suffix == "" or suffix == "b" or (suffix == "ib" and unit ~= "")) then
      return math.floor(tonumber(number) * BYTE_UNITS[unit])
    end
  end
  misuse(field, "a size expected (bytes, or a string like '256M', '1.5G', 'max'), got %s", tostring(v))
end

local function positive_integer(field, v, max)
  if v == "max" or v == math.huge then return "max" end
  if math.type(v) ~= "integer" or v < 1 or (max and v > max) then
    misuse(field, "an integer from 1%s expected, got %s", max and (" to " .. max) or "", tostring(v))
  end
  return v
end

--- 0.5, "0.5" (cores) or "50%" (of one core) -> cores (number), or "max".
function M.cores(field, v)
  if v == "max" or v == math.huge then return "max" end
  local cores = v
  if type(v) == "string" then
    local percent = v:match("^%s*(%d+%.?%d*)%s*%%%s*$")
    cores = percent and tonumber(percent) / 100 or tonumber(v)
  end
  if type(cores) ~= "number" or cores ~= cores or cores <= 0 or cores > 65536 then
    misuse(field, "a share of cores expected (0.5, '50%%', 2), got %s", tostring(v))
  end
  return cores
end

local function cpu_list(field, v)
  if type(v) == "table" then
    local parts = {}
    for i, c in ipairs(v) do
      if math.type(c) ~= "integer" or c < 0 then misuse(("%s[%d]"):format(field, i), "a cpu number expected") end
      parts[#parts + 1] = tostring(c)
    end
    if #parts == 0 then misuse(field, "at least one cpu expected") end
    return table.concat(parts, ",")
  end
  if math.type(v) == "integer" and v >= 0 then return tostring(v) end
  if type(v) ~= "string" or not v:match("^%d+%-?%d*[,%d%-]*$") then
    misuse(field, "a cpu list expected ('0-3,6' or {0, 1}), got %s", tostring(v))
  end
  return v
end

local IO_KEYS = { rbps = "bytes", wbps = "bytes", riops = "count", wiops = "count" }

-- "8:0" or "/dev/vda" (a partition stands for its disk: the throttle works per disk).
local function device_of(field, device)
  if type(device) ~= "string" then misuse(field, "a device ('/dev/vda' or '8:0') expected, got %s", type(device)) end
  local major, minor = device:match("^(%d+):(%d+)$")
  if not major then
    local maj, min, code = core.device_number(device)
    if not maj then fail(("%s: %s"):format(field, min), code, { field = field }) end
    major, minor = maj, min
  end
  local sys = ("/sys/dev/block/%s:%s"):format(major, minor)
  if read_text(sys .. "/partition") then
    local disk = read_text(sys .. "/../dev")
    if disk then return (disk:gsub("%s+$", "")) end
  end
  return ("%s:%s"):format(major, minor)
end

local function io_limits(field, v)
  if type(v) ~= "table" then misuse(field, "a table of devices expected, got %s", type(v)) end
  local out = {}
  local function add(name, device, entry)
    if type(entry) ~= "table" then misuse(name, "a table {rbps, wbps, riops, wiops} expected") end
    local limit = { device = device_of(name .. ".device", device) }
    for k, value in pairs(entry) do
      if k ~= "device" then
        local kind = IO_KEYS[k]
        if not kind then misuse(name, "unknown field '%s' (rbps, wbps, riops, wiops)", tostring(k)) end
        limit[k] = kind == "bytes" and M.bytes(name .. "." .. k, value) or positive_integer(name .. "." .. k, value)
      end
    end
    out[#out + 1] = limit
  end
  for k, entry in pairs(v) do
    if math.type(k) == "integer" then
      add(("%s[%d]"):format(field, k), type(entry) == "table" and entry.device, entry)
    else
      add(("%s[%s]"):format(field, tostring(k)), k, entry)
    end
  end
  table.sort(out, function(a, b) return a.device < b.device end)
  return out
end

local LIMIT_FIELDS = {
  memory = M.bytes,
  memory_high = M.bytes,
  swap = M.bytes,
  pids = function(f, v) return positive_integer(f, v) end,
  cpu = M.cores,
  cpu_weight = function(f, v) return positive_integer(f, v, 10000) end,
  cpuset = cpu_list,
  cpuset_mems = cpu_list,
  io = io_limits,
  oom_group = function(f, v)
    if type(v) ~= "boolean" then misuse(f, "boolean expected, got %s", type(v)) end
    return v
  end,
}

--- Validates a limits table ({memory, memory_high, swap, pids, cpu, cpu_weight, cpuset, cpuset_mems, io,
-- oom_group}) and returns it normalized (bytes and counts as integers or "max", cpu as cores). prefix names the
-- table in messages ("limits").
function M.check_limits(limits, prefix)
  prefix = prefix or "limits"
  if type(limits) ~= "table" then misuse(prefix, "table expected, got %s", type(limits)) end
  local out = {}
  for k, v in pairs(limits) do
    local checker = type(k) == "string" and LIMIT_FIELDS[k]
    if not checker then misuse(prefix, "unknown limit '%s'", tostring(k)) end
    out[k] = checker(prefix .. "." .. k, v)
  end
  -- A memory limit alone means memory in all: without it a hog would swap where the host has swap.
  if out.memory and out.memory ~= "max" and out.swap == nil then out.swap = 0 end
  return out
end

-- ---- the controllers a limit needs --------------------------------------------------------------------------

local LIMIT_CONTROLLER = { memory = "memory", memory_high = "memory", swap = "memory", oom_group = "memory",
  pids = "pids", cpu = "cpu", cpu_weight = "cpu", cpuset = "cpuset", cpuset_mems = "cpuset", io = "io" }
-- v1 names the io controller blkio.
local V1_NAME = { io = "blkio" }
-- What statistics read, where it exists: created along with any cgroup.
local STAT_CONTROLLERS = { "memory", "pids", "cpu" }

local Cgroup = {}
Cgroup.__index = Cgroup
M.Cgroup = Cgroup

local function is_cgroup(v)
  return getmetatable(v) == Cgroup
end
--- True when v is a cgroup object.
-- @function is_cgroup
-- @param v
M.is_cgroup = is_cgroup

local NAME_ATTEMPTS = 8

-- "lunas-PID-RANDOM": the pid tells a reader which lunas made it; 64 random bits make it unique across pid
-- namespaces (two lunas that are both pid 1) and pid reuse. gc recognises the form and asks the owner's mark,
-- not the pid, whether it is alive.
local function default_name()
  return ("lunas-%d-%s"):format(core.getpid(), (core.random(8):gsub(".", function(c)
    return ("%02x"):format(c:byte())
  end)))
end


local function valid_relative(path)
  if path == "" then return true end
  for _, part in ipairs(split(path, "/")) do
    if part == "." or part == ".." or #part > 255 then return false end
  end
  return not path:find("%z") and not path:find("//") and path:sub(1, 1) ~= "/" and path:sub(-1) ~= "/"
end

-- v2 controllers in `dir`'s cgroup.subtree_control, enabling the missing ones. A cgroup that holds processes
-- cannot give controllers to its children (EBUSY): when that cgroup is our own and we are alone in it, we move
-- into a leaf of it first, as container runtimes do in a delegated scope.
local function enable_v2(layout, dir, wanted)
  local missing = {}
  local enabled = {}
  for _, c in ipairs(split(core.cgroup_read(dir, "cgroup.subtree_control") or "", "%s")) do enabled[c] = true end
  for _, c in ipairs(wanted) do
    if not enabled[c] then missing[#missing + 1] = "+" .. c end
  end
  if #missing == 0 then return true end
  local text = table.concat(missing, " ")
  local ok, msg, code = core.cgroup_write(dir, "cgroup.subtree_control", text)
  if ok or code ~= "EBUSY" or dir ~= layout.v2.dir then return ok, msg, code end
  local procs = split(core.cgroup_read(dir, "cgroup.procs") or "", "%s")
  if #procs ~= 1 or tonumber(procs[1]) ~= core.getpid() then
    return nil, msg .. " (the cgroup holds other processes: run lunas in a cgroup of its own, e.g. `systemd-run "
      .. "--scope -p Delegate=yes`)", code
  end
  local leaf = dir .. "/" .. LEAF
  local made, mmsg, mcode = core.cgroup_mkdir(leaf)
  if not made and mcode ~= "EEXIST" then return nil, mmsg, mcode end
  ok, msg, code = core.cgroup_write(leaf, "cgroup.procs", tostring(core.getpid()))
  if not ok then return nil, msg, code end
  return core.cgroup_write(dir, "cgroup.subtree_control", text)
end

local function controllers_for(limits, extra)
  local set, list = {}, {}
  local function add(c)
    if c and not set[c] then set[c], list[#list + 1] = true, c end
  end
  for _, c in ipairs(STAT_CONTROLLERS) do add(c) end
  for k in pairs(limits or {}) do add(LIMIT_CONTROLLER[k]) end
  for _, c in ipairs(extra or {}) do add(c) end
  table.sort(list)
  return list
end

-- The directories of a cgroup at relative path `rel` below our own, for the given controllers.
local function plan_dirs(layout, rel, controllers)
  local dirs = { v1 = {} }
  local suffix = rel == "" and "" or "/" .. rel
  if layout.v2 then dirs.v2 = layout.v2.dir .. suffix end
  for _, c in ipairs(controllers) do
    local h = layout.v1[V1_NAME[c] or c]
    if h and not dirs.v1[h.key] then dirs.v1[h.key] = h.dir .. suffix end
  end
  -- cpu usage lives in cpuacct on v1, whether or not it shares a hierarchy with cpu.
  if layout.v1.cpu and layout.v1.cpuacct then dirs.v1[layout.v1.cpuacct.key] = layout.v1.cpuacct.dir .. suffix end
  -- With no v2 tree, freezing and killing go through the v1 freezer.
  if not layout.v2 and layout.v1.freezer then dirs.v1[layout.v1.freezer.key] = layout.v1.freezer.dir .. suffix end
  return dirs
end

-- The directories of the cgroup at absolute path `path` (from each hierarchy's root as this process's cgroup
-- namespace shows it: what an OCI config's cgroupsPath names), for the given controllers; nil when a hierarchy
-- mounted here does not show that path.
local function plan_absolute(layout, path, controllers)
  local dirs, mounts = { v1 = {} }, {}
  local function dir_of(h)
    local dir = directory_in({ root = h.root, path = h.mount }, path)
    if not dir then fail(("create %s: not below the root of the hierarchy mounted at %s"):format(path, h.mount), "EPERM") end
    mounts[dir] = h.mount
    return dir
  end
  if layout.v2 then dirs.v2 = dir_of(layout.v2) end
  for _, c in ipairs(controllers) do
    local h = layout.v1[V1_NAME[c] or c]
    if h and not dirs.v1[h.key] then dirs.v1[h.key] = dir_of(h) end
  end
  for _, c in ipairs({ "cpuacct", "freezer", "devices" }) do
    local h = layout.v1[c]
    if h and not dirs.v1[h.key] then dirs.v1[h.key] = dir_of(h) end
  end
  return dirs, mounts
end

local function new_object(layout, rel, dirs, owned)
  local self = setmetatable({ path = rel, layout = layout, dirs = dirs, owner = owned and core.getpid() or nil,
    created = {}, warnings = {} }, Cgroup)
  return self
end

--- Cgroup objects: one cgroup in every hierarchy it spans. Only its creator removes it (close).
-- @type Cgroup

--- The directory holding controller c for this cgroup, and the version of that hierarchy.
function Cgroup:controller_dir(c)
  local layout = self.layout
  if layout.controllers[c] == 2 then return self.dirs.v2, 2 end
  local h = layout.v1[V1_NAME[c] or c]
  if h then return self.dirs.v1[h.key], 1 end
  return nil
end

local function each_dir(self)
  local list = {}
  if self.dirs.v2 then list[#list + 1] = self.dirs.v2 end
  local keys = {}
  for key in pairs(self.dirs.v1) do keys[#keys + 1] = key end
  table.sort(keys)
  for _, key in ipairs(keys) do list[#list + 1] = self.dirs.v1[key] end
  return list
end

local function assert_open(self)
  if self.closed then error("attempt to use a closed cgroup", 3) end
end

function Cgroup:__tostring()
  return ("cgroup %s (%s)"):format(self.path == "" and "/" or self.path, self.layout.mode)
end

-- ---- limits ---------------------------------------------------------------------------------------------

local function v1_bytes(v)
  return v == "max" and "-1" or tostring(v)
end

-- Writes for one limit on one layout: {{controller, file, value}...}, or nil, why not.
local WRITERS = {}

function WRITERS.memory(v, version)
  if version == 2 then return { { "memory", "memory.max", tostring(v) } } end
  return { { "memory", "memory.limit_in_bytes", v1_bytes(v) } }
end

function WRITERS.memory_high(v, version)
  if version == 2 then return { { "memory", "memory.high", tostring(v) } } end
  return nil, "memory_high needs cgroup v2 (v1 has no throttling limit)"
end

function WRITERS.swap(v, version, limits, self)
  if version == 2 then return { { "memory", "memory.swap.max", tostring(v) } } end
  local dir = self:controller_dir("memory")
  if not core.cgroup_read(dir, "memory.memsw.limit_in_bytes") then
    if v == 0 then return {} end -- no swap accounting: no swap to limit either
    return nil, "swap needs swap accounting (memory.memsw.*, boot with swapaccount=1)"
  end
  if limits.memory == nil or limits.memory == "max" or v == "max" then
    return v == "max" and { { "memory", "memory.memsw.limit_in_bytes", "-1" } } or nil,
      "swap on cgroup v1 needs a memory limit too (v1 limits memory and swap together)"
  end
  return { { "memory", "memory.memsw.limit_in_bytes", tostring(limits.memory + v) } }
end

function WRITERS.oom_group(v, version)
  if version == 2 then return { { "memory", "memory.oom.group", v and "1" or "0" } } end
  return nil, "oom_group needs cgroup v2"
end

function WRITERS.pids(v)
  return { { "pids", "pids.max", tostring(v) } }
end

local CPU_PERIOD = 100000

function WRITERS.cpu(v, version)
  local quota = v == "max" and "max" or math.max(1000, math.floor(v * CPU_PERIOD + 0.5))
  if version == 2 then return { { "cpu", "cpu.max", ("%s %d"):format(quota, CPU_PERIOD) } } end
  return { { "cpu", "cpu.cfs_period_us", tostring(CPU_PERIOD) },
    { "cpu", "cpu.cfs_quota_us", quota == "max" and "-1" or tostring(quota) } }
end

function WRITERS.cpu_weight(v, version)
  if version == 2 then return { { "cpu", "cpu.weight", v == "max" and "10000" or tostring(v) } } end
  -- v2's default weight 100 is v1's default 1024 shares.
  local shares = v == "max" and 262144 or math.max(2, math.floor(v * 1024 / 100))
  return { { "cpu", "cpu.shares", tostring(shares) } }
end

function WRITERS.cpuset(v)
  return { { "cpuset", "cpuset.cpus", v } }
end

function WRITERS.cpuset_mems(v)
  return { { "cpuset", "cpuset.mems", v } }
end

local V1_IO_FILES = { rbps = "blkio.throttle.read_bps_device", wbps = "blkio.throttle.write_bps_device",
  riops = "blkio.throttle.read_iops_device", wiops = "blkio.throttle.write_iops_device" }

function WRITERS.io(list, version)
  local writes = {}
  for _, limit in ipairs(list) do
    if version == 2 then
      local parts = { limit.device }
      for _, k in ipairs({ "rbps", "wbps", "riops", "wiops" }) do
        if limit[k] ~= nil then parts[#parts + 1] = ("%s=%s"):format(k, limit[k]) end
      end
      writes[#writes + 1] = { "io", "io.max", table.concat(parts, " ") }
    else
      for _, k in ipairs({ "rbps", "wbps", "riops", "wiops" }) do
        if limit[k] ~= nil then
          writes[#writes + 1] = { "io", V1_IO_FILES[k], ("%s %s"):format(limit.device, limit[k] == "max" and 0 or limit[k]) }
        end
      end
    end
  end
  return writes
end

-- v1 refuses a memory limit above memsw, and memsw below the limit: raise memsw first when the new limit is
-- above the current memsw, else lower the limit first.
local function order_v1_memory(writes)
  local limit_at, memsw_at
  for i, w in ipairs(writes) do
    if w.version == 1 and w.file == "memory.limit_in_bytes" then limit_at = i end
    if w.version == 1 and w.file == "memory.memsw.limit_in_bytes" then memsw_at = i end
  end
  if not (limit_at and memsw_at) then return end
  local memsw = tonumber(core.cgroup_read(writes[memsw_at].dir, "memory.memsw.limit_in_bytes") or "")
  local raise_memsw_first = memsw and tonumber(writes[limit_at].value) > memsw
  if raise_memsw_first == (memsw_at < limit_at) then return end
  writes[limit_at], writes[memsw_at] = writes[memsw_at], writes[limit_at]
end

local LIMIT_ORDER = { "memory", "swap", "memory_high", "oom_group", "pids", "cpu", "cpu_weight", "cpuset_mems",
  "cpuset", "io" }

--- Records a warning in self.warnings and passes it to the warn function given to new.
function Cgroup:warn(msg)
  self.warnings[#self.warnings + 1] = msg
  if self.on_warning then self.on_warning(msg) end
end

--- Writes one controller file of this cgroup as it is (what a limit table has no word for: an OCI config's
-- resources): `cg:set("memory", "memory.swappiness", "10")`. Returns true, or nil, "cgroup write FILE: message",
-- ENAME (ENOENT when this host has no such controller for it).
-- @tparam string controller
-- @tparam string file
-- @tparam string value
function Cgroup:set(controller, file, value)
  assert_open(self)
  if type(controller) ~= "string" then misuse("controller", "name expected, got %s", type(controller)) end
  if type(file) ~= "string" or file == "" or file:find("/") or file:sub(1, 1) == "." then
    misuse("file", "a controller file name expected, got %s", tostring(file))
  end
  if type(value) ~= "string" then misuse("value", "string expected, got %s", type(value)) end
  local dir = self:controller_dir(controller)
  if not dir then return nil, ("cgroup write %s: no %s controller for %s"):format(file, controller, tostring(self)), "ENOENT" end
  return core.cgroup_write(dir, file, value)
end

--- Applies limits (the table cgroup.check_limits takes). A limit this host cannot enforce raises, or becomes a
-- warning (self.warnings, and opts.warn(msg)) when opts.best_effort is true.
function Cgroup:limit(limits, opts)
  assert_open(self)
  limits = M.check_limits(limits)
  local best_effort = opts and opts.best_effort
  local writes = {}
  for _, name in ipairs(LIMIT_ORDER) do
    local v = limits[name]
    if v ~= nil then
      local controller = LIMIT_CONTROLLER[name]
      local dir, version = self:controller_dir(controller)
      local list, why
      if not dir then
        local known = self.layout.controllers[controller] or self.layout.controllers[V1_NAME[controller] or controller]
        why = known and ("its %s cgroup could not be created"):format(controller)
          or ("no %s controller on this host"):format(controller)
      else
        list, why = WRITERS[name](v, version, limits, self)
      end
      if not list then
        local msg = ("cannot enforce %s: %s"):format(name, why)
        if not best_effort then fail(msg .. " (" .. tostring(self) .. ")", "EOPNOTSUPP", { field = "limits." .. name }) end
        self:warn(msg)
      else
        for _, w in ipairs(list) do writes[#writes + 1] = { dir = dir, file = w[2], value = w[3], name = name, version = version } end
      end
    end
  end
  order_v1_memory(writes)
  for _, w in ipairs(writes) do
    local ok, msg, code = core.cgroup_write(w.dir, w.file, w.value)
    if not ok then
      local text = ("limit %s: %s"):format(w.name, msg)
      if not best_effort then fail(text, code, { field = "limits." .. w.name }) end
      self:warn(text)
    end
  end
  return self
end

-- ---- creating, opening ----------------------------------------------------------------------------------

local function remove_dirs(dirs)
  for i = #dirs, 1, -1 do core.cgroup_rmdir(dirs[i]) end
end

-- Drops what a cgroup object holds once its directories are gone (or never were): the owner's mark.
local function release_mark(self)
  if self.owner_mark then
    self.owner_mark:close()
    self.owner_mark = nil
  end
end

-- Undoes a creation that failed part-way: the directories made so far, the mark; the object is closed.
local function discard(self)
  remove_dirs(self.created)
  release_mark(self)
  self.closed = true
  interrupt.untrack(self)
end

-- v1 cpuset: a new cgroup starts with no cpus and no memory nodes, and refuses tasks until it has some.
local function inherit_cpuset(dir)
  local parent = dir:match("^(.*)/[^/]+$")
  for _, file in ipairs({ "cpuset.cpus", "cpuset.mems" }) do
    local current = core.cgroup_read(dir, file)
    if current and current:match("^%s*$") then
      local value = core.cgroup_read(parent, file)
      if value then
        local ok, msg, code = core.cgroup_write(dir, file, (value:gsub("%s+$", "")))
        if not ok then return nil, msg, code end
      end
    end
  end
  return true
end

-- The first directory a cgroup object creates carries its owner's mark: a shared flock held on a descriptor for
-- the object's life. `gc` takes a cgroup for a dead lunas's leftover only when it can lock every one of its
-- directories exclusively, whichever pid namespace the owner runs in. A directory gc removed between our mkdir
-- and our lock shows no cgroup.procs once we hold it: "ESTALE", and the caller picks another name.
local function mark_owner(self, dir)
  local fd, msg, code = core.cgroup_open(dir)
  if not fd then return nil, msg, code end
  local locked = fd:lock("shared", { wait = false })
  if not locked or core.file_type(dir .. "/cgroup.procs") ~= "file" then
    fd:close()
    return nil, ("mkdir %s: taken back by lunas gc as it was made"):format(dir), "ESTALE"
  end
  self.owner_mark = fd
  return true
end

local function make_dir(self, dir, best_effort)
  local ok, msg, code = core.cgroup_mkdir(dir)
  if not ok then
    if code == "EACCES" or code == "EPERM" or code == "EROFS" then
      msg = ("%s (not delegated to uid %d: run lunas in a cgroup delegated to you, e.g. under `systemd-run "
        .. "--user --scope -p Delegate=yes`)"):format(msg, core.ids().euid)
    end
    if best_effort then
      self.skipped = self.skipped or {}
      self.skipped[#self.skipped + 1] = msg
      return false
    end
    return nil, msg, code
  end
  self.created[#self.created + 1] = dir
  if not self.owner_mark then
    ok, msg, code = mark_owner(self, dir)
    if not ok then return nil, msg, code end
  end
  return true
end

--- @section end

-- A cgroup at a path someone else chose (an OCI config's): every missing directory on the way is made (and
-- owned: removed with it), one that exists is joined. The v1 cpuset of each new directory inherits its parent's.
local function create_path_dirs(self, mounts)
  local cpuset = self.layout.v1.cpuset
  for _, dir in ipairs(each_dir(self)) do
    local mount = mounts[dir]
    local path = mount
    for part in dir:sub(#mount + 2):gmatch("[^/]+") do
      path = path .. "/" .. part
      local ok, msg, code = core.cgroup_mkdir(path)
      if ok then
        self.created[#self.created + 1] = path
        if not self.owner_mark then
          ok, msg, code = mark_owner(self, path)
          if not ok then return nil, msg, code end
        end
        if cpuset and dir == self.dirs.v1[cpuset.key] then
          ok, msg, code = inherit_cpuset(path)
          if not ok then return nil, msg, code end
        end
      elseif code ~= "EEXIST" then
        return nil, msg, code
      end
    end
  end
  return true
end

local function create_dirs(self, best_effort)
  local cpuset = self.layout.v1.cpuset
  for _, dir in ipairs(each_dir(self)) do
    local made, msg, code = make_dir(self, dir, best_effort)
    if made == nil then return nil, msg, code end
    if made and cpuset and dir == self.dirs.v1[cpuset.key] then
      local ok
      ok, msg, code = inherit_cpuset(dir)
      if not ok then return nil, msg, code end
    end
  end
  return true
end

-- The last of a creation: the limits (a failure removes what was made), then the object is tracked.
local function finish_new(self, limits, best_effort)
  if limits then
    local ok, err = pcall(self.limit, self, limits, { best_effort = best_effort })
    if not ok then
      discard(self)
      error(err, 0)
    end
  end
  return interrupt.track(self)
end

local NEW_OPTIONS = { name = true, parent = true, limits = true, best_effort = true, warn = true, controllers = true,
  path = true }

-- The controllers of the list that the v2 tree has.
local function v2_controllers(layout, controllers)
  local wanted = {}
  for _, c in ipairs(controllers) do
    if layout.v2.controllers[c] then wanted[#wanted + 1] = c end
  end
  return wanted
end

-- A cgroup at an absolute path that another program chose (new's opts.path).
local function new_at_path(opts, limits, controllers)
  local path = opts.path
  local layout = M.layout()
  if layout.mode == "none" then fail("no cgroup hierarchy is mounted (/proc/self/mountinfo)", "ENOENT") end
  local dirs, mounts = plan_absolute(layout, path, controllers)
  local self = new_object(layout, path:sub(2), dirs, true)
  self.on_warning = opts.warn
  if layout.v2 then
    local wanted = v2_controllers(layout, controllers)
    if #wanted > 0 then
      local dir = mounts[dirs.v2]
      for part in path:gmatch("[^/]+") do
        local ok, msg, code = enable_v2(layout, dir, wanted)
        if not ok then
          if not opts.best_effort then fail("enable " .. table.concat(wanted, ",") .. ": " .. msg, code) end
          self:warn("enable " .. table.concat(wanted, ",") .. ": " .. msg)
          break
        end
        dir = dir .. "/" .. part
        -- (the next level's subtree_control exists once that directory does)
        local made, mmsg, mcode = core.cgroup_mkdir(dir)
        if made then
          self.created[#self.created + 1] = dir
          if not self.owner_mark then made, mmsg, mcode = mark_owner(self, dir) end
        end
        if not made and mcode ~= "EEXIST" then
          discard(self)
          fail("create " .. mmsg, mcode)
        end
      end
    end
  end
  local ok, msg, code = create_path_dirs(self, mounts)
  if not ok then
    discard(self)
    fail("create " .. msg, code)
  end
  return finish_new(self, limits, opts.best_effort)
end

--- Creates a cgroup below our own (or below opts.parent, a cgroup object):
-- opts = {name = "job" (default "lunas-PID-RANDOM", unique), parent = cg, limits = {...}, best_effort = false,
--         warn = function(msg) end, controllers = {"cpuset", ...}}.
-- Or at opts.path, an absolute path from the root of each hierarchy as this process's cgroup namespace shows it
-- (an OCI config's cgroupsPath: "/libpod_parent/libpod-ID"): the directories missing on the way are made, and
-- a cgroup that exists is joined; close removes only what was made.
-- Only the creator removes it: cg:close() (or <close>) kills what is left inside, waits, and removes it.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("options", "table expected, got %s", type(opts)) end
  for k in pairs(opts) do
    if not NEW_OPTIONS[k] then misuse("options", "unknown field '%s'", tostring(k)) end
  end
  if opts.path ~= nil then
    if type(opts.path) ~= "string" or opts.path:sub(1, 1) ~= "/" or opts.path == "/" or not valid_relative(opts.path:sub(2)) then
      misuse("path", "an absolute cgroup path such as /machine/job expected, got %s", tostring(opts.path))
    end
    if opts.name ~= nil or opts.parent ~= nil then misuse("path", "goes without name and parent") end
    if opts.warn ~= nil and type(opts.warn) ~= "function" then misuse("warn", "function expected") end
    local limits = opts.limits and M.check_limits(opts.limits) or nil
    return new_at_path(opts, limits, controllers_for(limits, opts.controllers))
  end
  local limits = opts.limits and M.check_limits(opts.limits) or nil
  if opts.parent ~= nil and not is_cgroup(opts.parent) then misuse("parent", "a cgroup object expected") end
  if opts.warn ~= nil and type(opts.warn) ~= "function" then misuse("warn", "function expected") end
  local name = opts.name
  if name ~= nil and (type(name) ~= "string" or name == "" or name:find("/") or name == "." or name == ".."
      or #name > 255 or name:find("%z")) then
    misuse("name", "a plain directory name expected, got %s", tostring(name))
  end
  local layout = M.layout()
  if layout.mode == "none" then fail("no cgroup hierarchy is mounted (/proc/self/mountinfo)", "ENOENT") end
  local parent_rel = opts.parent and opts.parent.path or ""
  local controllers = controllers_for(limits, opts.controllers)
  local best_effort = opts.best_effort
  local ok, msg, code = true, nil, nil
  local enable_warning
  if layout.v2 then
    -- Controllers reach a cgroup only through every ancestor's subtree_control, from our own cgroup down.
    local wanted = v2_controllers(layout, controllers)
    if #wanted > 0 then
      local dir = layout.v2.dir
      local parts = split(parent_rel, "/")
      for i = 0, #parts do
        if i > 0 then dir = dir .. "/" .. parts[i] end
        ok, msg, code = enable_v2(layout, dir, wanted)
        if not ok then
          if not best_effort then fail("enable " .. table.concat(wanted, ",") .. ": " .. msg, code) end
          enable_warning = "enable " .. table.concat(wanted, ",") .. ": " .. msg
          break
        end
      end
    end
  end
  -- A name of our own choosing that exists already (planted, or taken back by gc as we made it) is never a
  -- failure: another one is drawn. A name the caller gave is theirs to fix.
  local self
  for attempt = 1, NAME_ATTEMPTS do
    local rel = name or default_name()
    if parent_rel ~= "" then rel = parent_rel .. "/" .. rel end
    self = new_object(layout, rel, plan_dirs(layout, rel, controllers), true)
    self.on_warning = opts.warn
    ok, msg, code = create_dirs(self, best_effort)
    if ok then break end
    discard(self)
    if name or (code ~= "EEXIST" and code ~= "ESTALE") or attempt == NAME_ATTEMPTS then fail("create " .. msg, code) end
  end
  -- The caller's warn function runs once the directories exist: if it raises, they go.
  local warned, warn_err = pcall(function()
    if enable_warning then self:warn(enable_warning) end
    if self.skipped then
      self:warn(("create %s%s"):format(self.skipped[1],
        #self.skipped > 1 and (" (and %d more hierarchies)"):format(#self.skipped - 1) or ""))
    end
  end)
  if not warned then
    discard(self)
    error(warn_err, 0)
  end
  -- Directories that could not be made (best effort) are not part of this cgroup.
  local made = {}
  for _, dir in ipairs(self.created) do made[dir] = true end
  if self.dirs.v2 and not made[self.dirs.v2] then self.dirs.v2 = nil end
  for key, dir in pairs(self.dirs.v1) do
    if not made[dir] then self.dirs.v1[key] = nil end
  end
  return finish_new(self, limits, best_effort)
end

-- Is `path` at or below `base` (both cgroup paths as /proc/PID/cgroup writes them)?
local function within(base, path)
  if base == "/" then return path:sub(1, 1) == "/" end
  return path == base or path:sub(1, #base + 1) == base .. "/"
end

local function relative_to(base, path)
  if path == base then return "" end
  return base == "/" and path:sub(2) or path:sub(#base + 2)
end

local function exists(dir)
  return core.file_type(dir) == "dir"
end

-- A cgroup named by the path below our own in every hierarchy: opened where it exists.
local function open_relative(layout, rel)
  local dirs = plan_dirs(layout, rel, { "memory", "pids", "cpu", "cpuset", "io", "freezer" })
  local found = false
  if dirs.v2 and not exists(dirs.v2) then dirs.v2 = nil end
  found = dirs.v2 ~= nil
  for key, dir in pairs(dirs.v1) do
    if exists(dir) then found = true else dirs.v1[key] = nil end
  end
  if not found then fail(("open %s: no such cgroup below our own"):format(rel), "ENOENT") end
  return new_object(layout, rel, dirs, false)
end

local function outside(what, path, base)
  fail(("open %s: %s is outside this process's own cgroup %s"):format(what, path, base), "EPERM")
end

-- A cgroup of a running process: each hierarchy's path must lie within our own.
local function open_pid(layout, pid)
  local paths = proc_cgroups(pid)
  if not paths then fail(("open pid %d: no such process"):format(pid), "ESRCH") end
  local dirs = { v1 = {} }
  local rel
  if layout.v2 and paths[""] then
    if not within(layout.v2.path, paths[""]) then outside("pid " .. pid, paths[""], layout.v2.path) end
    rel = relative_to(layout.v2.path, paths[""])
    dirs.v2 = layout.v2.dir .. (rel == "" and "" or "/" .. rel)
  end
  for c, h in pairs(layout.v1) do
    local path = paths[h.key]
    if path and (c == "memory" or c == "pids" or c == "cpu" or c == "cpuacct" or c == "cpuset" or c == "blkio"
        or c == "freezer") then
      if not within(h.path, path) then outside("pid " .. pid, path .. " (" .. h.key .. ")", h.path) end
      local r = relative_to(h.path, path)
      rel = rel or r
      dirs.v1[h.key] = h.dir .. (r == "" and "" or "/" .. r)
    end
  end
  return new_object(layout, rel or "", dirs, false)
end

--- Opens an existing cgroup, to inspect or limit it (closing it never removes it):
-- cgroup.open("job/part") (a path below our own cgroup), cgroup.open("/sys/fs/cgroup/...") (a directory),
-- or cgroup.open{pid = 1234} (that process's cgroups). Anything outside our own subtree is refused (EPERM).
function M.open(target)
  local layout = M.layout()
  if type(target) == "table" then
    for k in pairs(target) do
      if k ~= "pid" then misuse("target", "unknown field '%s'", tostring(k)) end
    end
    if math.type(target.pid) ~= "integer" or target.pid < 1 then misuse("target.pid", "a pid expected") end
    return open_pid(layout, target.pid)
  end
  if type(target) ~= "string" then misuse("target", "a path or {pid = N} expected, got %s", type(target)) end
  if target:sub(1, 1) ~= "/" then
    if not valid_relative(target) then misuse("target", "a relative path without '..' expected, got '%s'", target) end
    return open_relative(layout, target)
  end
  local real = core.realpath(target)
  if not real then fail(("open %s: no such cgroup"):format(target), "ENOENT") end
  local roots = {}
  if layout.v2 then roots[#roots + 1] = layout.v2.dir end
  for _, h in pairs(layout.v1) do roots[#roots + 1] = h.dir end
  for _, root in ipairs(roots) do
    if real == root or real:sub(1, #root + 1) == root .. "/" then
      return open_relative(layout, real == root and "" or real:sub(#root + 2))
    end
  end
  outside(target, real, layout.v2 and layout.v2.path or "(see /proc/self/cgroup)")
end

--- What a later process needs to find this cgroup again (a lab's record): {path = "rel/path", dirs = {v2 =
-- "/sys/fs/cgroup/...", v1 = {[hierarchy] = dir}}}, plain data that survives a JSON round trip.
function Cgroup:record()
  assert_open(self)
  local v1 = {}
  for key, dir in pairs(self.dirs.v1) do v1[key] = dir end
  return { path = self.path, dirs = { v2 = self.dirs.v2, v1 = v1 } }
end

-- Is dir strictly below one of the cgroup hierarchies mounted here?
local function below_a_mount(dir)
  local mounts = {}
  local v2_mount, v1_mounts = cgroup_mounts()
  if v2_mount then mounts[#mounts + 1] = v2_mount.path end
  for _, m in pairs(v1_mounts) do mounts[#mounts + 1] = m.path end
  for _, m in ipairs(mounts) do
    if dir:sub(1, #m + 1) == m .. "/" and not dir:find("/%.%.?/") and not dir:find("/%.%.?$") then return true end
  end
  return false
end

--- Takes back a cgroup that a lunas process created and wrote down with cg:record(), so that another process
-- (lunas lab down, lunas gc) can remove it, even from another cgroup of its own. Each recorded directory must
-- lie below a cgroup mount and end with the recorded path; directories already gone are left out. Closing the
-- result never removes anything: remove() does.
function M.adopt(record)
  if type(record) ~= "table" or type(record.dirs) ~= "table" or type(record.path) ~= "string"
      or not valid_relative(record.path) or record.path == "" then
    misuse("record", "a table from cg:record() expected")
  end
  local layout = M.layout()
  local dirs = { v1 = {} }
  local function take(dir, field)
    if type(dir) ~= "string" or not below_a_mount(dir) or dir:sub(-#record.path - 1) ~= "/" .. record.path then
      misuse(field, "a cgroup directory ending in '%s' expected, got %s", record.path, tostring(dir))
    end
    return exists(dir) and dir or nil
  end
  if record.dirs.v2 ~= nil then dirs.v2 = take(record.dirs.v2, "record.dirs.v2") end
  for key, dir in pairs(record.dirs.v1 or {}) do
    if type(key) ~= "string" then misuse("record.dirs.v1", "hierarchy names expected") end
    dirs.v1[key] = take(dir, "record.dirs.v1." .. key)
  end
  return new_object(layout, record.path, dirs, false)
end

-- ---- processes ------------------------------------------------------------------------------------------

local function read_pids(dir)
  local pids = {}
  for p in (core.cgroup_read(dir, "cgroup.procs") or ""):gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
  return pids
end

-- The directory that tells which processes are inside: v2 where it exists, else a v1 one.
local function membership_dir(self)
  if self.dirs.v2 then return self.dirs.v2 end
  return each_dir(self)[1]
end

--- @type Cgroup

--- The pids inside (this cgroup only, not its children).
function Cgroup:pids()
  assert_open(self)
  return read_pids(membership_dir(self))
end

--- Moves a process (pid) into this cgroup in every hierarchy (opts.v1_only: the v2 part was done by
-- CLONE_INTO_CGROUP). The process's threads follow.
function Cgroup:attach(pid, opts)
  assert_open(self)
  if math.type(pid) ~= "integer" or pid < 1 then misuse("pid", "a pid expected, got %s", tostring(pid)) end
  local dirs = each_dir(self)
  for _, dir in ipairs(dirs) do
    if not (opts and opts.v1_only and dir == self.dirs.v2) then
      check(core.cgroup_write(dir, "cgroup.procs", tostring(pid)))
    end
  end
  return self
end

--- A directory fd of the v2 cgroup, for core.spawn{cgroup = fd} (CLONE_INTO_CGROUP), or nil without v2.
function Cgroup:fd()
  assert_open(self)
  if not self.dirs.v2 then return nil end
  return check(core.cgroup_open(self.dirs.v2))
end

local DEVICE_RULE_FIELDS = { allow = true, type = true, major = true, minor = true, access = true }
local DEVICE_NUMBER_MAX = { major = 4095, minor = 1048575 }

local function check_device_rule(i, r)
  local field = ("devices[%d]"):format(i)
  if type(r) ~= "table" then misuse(field, "a rule table expected, got %s", type(r)) end
  for k in pairs(r) do
    if not DEVICE_RULE_FIELDS[k] then misuse(field, "unknown field '%s'", tostring(k)) end
  end
  if type(r.allow) ~= "boolean" then misuse(field .. ".allow", "boolean expected, got %s", type(r.allow)) end
  if r.type ~= nil and r.type ~= "a" and r.type ~= "c" and r.type ~= "b" then
    misuse(field .. ".type", "\"a\", \"c\" or \"b\" expected, got %s", tostring(r.type))
  end
  for name, max in pairs(DEVICE_NUMBER_MAX) do
    local v = r[name]
    if v ~= nil and (math.type(v) ~= "integer" or v < -1 or v > max) then
      misuse(field .. "." .. name, "an integer from 0 to %d expected (-1 or nil: any), got %s", max, tostring(v))
    end
  end
  if r.access ~= nil and (type(r.access) ~= "string" or not r.access:match("^[rwm]+$")) then
    misuse(field .. ".access", "a string of r, w and m expected, got %s", tostring(r.access))
  end
end

--- Sets the device policy of this cgroup: which char and block devices its processes may open (r, w) and create
-- (m). rules is an array of {allow = boolean, type = "a" | "c" | "b" (default "a": both), major = n, minor = n
-- (-1 or nil: any), access = "rwm" (default)}, read as cgroup v1's devices.allow and devices.deny lines written
-- in order: nothing is allowed unless a rule says so, and for each access the last rule that matches decides.
-- `{}` denies every device. It goes to the cgroup's v2 directory as a BPF program (core.cgroup_device_filter),
-- on pure v2 and on a hybrid host's unified tree alike; a second call replaces the first. (On a hybrid host, the
-- v1 devices controller's rules, where the cgroup has a directory there, apply too: an access must pass both.) A
-- cgroup without a v2 directory (pure v1) raises EOPNOTSUPP: there, write devices.deny and devices.allow with
-- `set`.
-- @tparam table rules
-- @return self
function Cgroup:devices(rules)
  assert_open(self)
  if type(rules) ~= "table" then misuse("devices", "an array of rules expected, got %s", type(rules)) end
  for k in pairs(rules) do
    if math.type(k) ~= "integer" or k < 1 or k > #rules then misuse("devices", "an array of rules expected") end
  end
  for i, r in ipairs(rules) do check_device_rule(i, r) end
  if not self.dirs.v2 then
    fail(("devices: %s has no cgroup v2 directory for a device program (on cgroup v1, write devices.deny and "
      .. "devices.allow with set)"):format(tostring(self)), "EOPNOTSUPP", { field = "devices" })
  end
  check(core.cgroup_device_filter(self.dirs.v2, rules))
  return self
end

--- True when the cgroup has v1 parts that a new process must join after it is born.
function Cgroup:has_v1()
  return next(self.dirs.v1) ~= nil
end

--- Starts a process inside this cgroup (the options of lunas.core.spawn) and returns its handle once it is in
-- every part: born in the v2 part with CLONE_INTO_CGROUP; on v1 it waits until we have moved it, before it runs
-- anything of its own (so it cannot fork outside the limits first).
function Cgroup:spawn(opts)
  assert_open(self)
  if type(opts) ~= "table" then misuse("spawn", "options table expected, got %s", type(opts)) end
  local spawn = {}
  for k, v in pairs(opts) do spawn[k] = v end
  if spawn.cgroup ~= nil then misuse("spawn.cgroup", "set by the cgroup object") end
  local fd <close> = self:fd()
  spawn.cgroup = fd
  if not self:has_v1() then return check(core.spawn(spawn)) end
  local go_r, go_w, pipe_code = core.pipe()
  if not go_r then fail(go_w, pipe_code) end
  local payload_fn, argv = spawn.fn, spawn.argv
  local exec_opts = { env = spawn.env, path = spawn.path, argv0 = spawn.argv0 }
  spawn.argv, spawn.env, spawn.path, spawn.argv0 = nil, nil, nil, nil
  spawn.fn = function()
    go_w:close()
    local go = go_r:read(1)
    go_r:close()
    if go ~= "1" then core.exit(127) end
    if payload_fn then return payload_fn() end
    local _, msg = core.exec(argv, exec_opts)
    io.stderr:write("lunas: ", msg, "\n")
    core.exit(127)
  end
  local proc, msg, code = core.spawn(spawn)
  go_r:close()
  if not proc then
    go_w:close()
    fail(msg, code)
  end
  local ok, err = pcall(self.attach, self, proc.pid, { v1_only = true })
  if not ok then
    go_w:close()
    proc:kill("KILL")
    proc:wait()
    proc:close()
    error(err, 0)
  end
  go_w:write("1")
  go_w:close()
  return proc
end

-- ---- statistics -----------------------------------------------------------------------------------------

local function keyed(text)
  local t = {}
  for k, v in (text or ""):gmatch("(%S+)%s+(%d+)") do t[k] = tonumber(v) end
  return t
end

local function number_in(dir, file)
  if not dir then return nil end
  local text = core.cgroup_read(dir, file)
  if not text then return nil end
  if text:match("^max") then return "max" end
  return tonumber(text:match("^%s*(%d+)"))
end

local function memory_stats(self)
  local dir, version = self:controller_dir("memory")
  if not dir then return nil end
  if version == 2 then
    local events = keyed(core.cgroup_read(dir, "memory.events"))
    return { current = number_in(dir, "memory.current"), peak = number_in(dir, "memory.peak"),
      limit = number_in(dir, "memory.max"), swap_current = number_in(dir, "memory.swap.current"),
      oom_kills = events.oom_kill or 0, oom_events = events.oom or 0, limit_hits = events.max or 0 }
  end
  local oom = keyed(core.cgroup_read(dir, "memory.oom_control"))
  local limit = number_in(dir, "memory.limit_in_bytes")
  return { current = number_in(dir, "memory.usage_in_bytes"), peak = number_in(dir, "memory.max_usage_in_bytes"),
    limit = limit and limit >= 0x7ffffffffffff000 and "max" or limit, oom_kills = oom.oom_kill or 0,
    oom_events = oom.oom_kill or 0, limit_hits = number_in(dir, "memory.failcnt") or 0 }
end

local USER_HZ = 100

local function cpu_stats(self)
  local dir, version = self:controller_dir("cpu")
  if version == 2 then
    local stat = keyed(core.cgroup_read(dir, "cpu.stat"))
    return { usage_usec = stat.usage_usec, user_usec = stat.user_usec, system_usec = stat.system_usec,
      throttled_usec = stat.throttled_usec, nr_throttled = stat.nr_throttled, nr_periods = stat.nr_periods }
  end
  -- v1 (and v2 without the cpu controller, as on a hybrid host's unified tree): cpu.stat has usage there too.
  local out = {}
  local acct = self.layout.v1.cpuacct and self.dirs.v1[self.layout.v1.cpuacct.key]
  if acct then
    local usage = number_in(acct, "cpuacct.usage")
    local ticks = keyed(core.cgroup_read(acct, "cpuacct.stat"))
    out.usage_usec = usage and usage // 1000
    out.user_usec = ticks.user and ticks.user * (1000000 // USER_HZ)
    out.system_usec = ticks.system and ticks.system * (1000000 // USER_HZ)
  elseif self.dirs.v2 then
    local stat = keyed(core.cgroup_read(self.dirs.v2, "cpu.stat"))
    out.usage_usec, out.user_usec, out.system_usec = stat.usage_usec, stat.user_usec, stat.system_usec
  end
  if dir then
    local stat = keyed(core.cgroup_read(dir, "cpu.stat"))
    out.nr_periods, out.nr_throttled = stat.nr_periods, stat.nr_throttled
    out.throttled_usec = stat.throttled_time and stat.throttled_time // 1000
  end
  if next(out) == nil then return nil end
  return out
end

local function pids_stats(self)
  local dir = self:controller_dir("pids")
  if not dir then return nil end
  local events = keyed(core.cgroup_read(dir, "pids.events"))
  return { current = number_in(dir, "pids.current"), limit = number_in(dir, "pids.max"),
    peak = number_in(dir, "pids.peak"), limit_hits = events.max or 0 }
end

--- Usage so far: {memory = {current, peak, limit, oom_kills, oom_events, limit_hits, swap_current},
-- cpu = {usage_usec, user_usec, system_usec, throttled_usec, nr_throttled, nr_periods},
-- pids = {current, peak, limit, limit_hits}}; a part is absent where its controller is.
function Cgroup:stats()
  assert_open(self)
  return { memory = memory_stats(self), cpu = cpu_stats(self), pids = pids_stats(self) }
end

-- ---- freeze, kill, remove -------------------------------------------------------------------------------

local FREEZE_TIMEOUT = 10

-- How this cgroup freezes: through the v1 freezer when it has a directory there (a v1 or hybrid host, where
-- that is the freezer runc, systemd and podman read), else v2's cgroup.freeze (its state in cgroup.events).
local function freezer(self, op)
  local h = self.layout.v1.freezer
  local dir = h and self.dirs.v1[h.key]
  if dir then
    return { dir = dir, file = "freezer.state", freeze = "FROZEN", thaw = "THAWED", state = "freezer.state",
      frozen = "FROZEN" }
  end
  local v2 = self.dirs.v2
  if v2 and core.cgroup_read(v2, "cgroup.freeze") then
    return { dir = v2, file = "cgroup.freeze", freeze = "1", thaw = "0", state = "cgroup.events", frozen = "frozen 1" }
  end
  fail(op .. ": no freezer on this host (neither cgroup.freeze nor the v1 freezer)", "EOPNOTSUPP")
end

--- Stops every process inside (and in child cgroups) until thaw(); returns once they are all frozen.
function Cgroup:freeze()
  assert_open(self)
  local f = freezer(self, "freeze")
  check(core.cgroup_write(f.dir, f.file, f.freeze))
  if not check(core.cgroup_wait(f.dir, f.state, f.frozen, FREEZE_TIMEOUT)) then
    fail(("freeze %s: not frozen after %ds"):format(f.dir, FREEZE_TIMEOUT), "ETIMEDOUT")
  end
  return self
end

--- Lets frozen processes run again.
function Cgroup:thaw()
  assert_open(self)
  local f = freezer(self, "thaw")
  check(core.cgroup_write(f.dir, f.file, f.thaw))
  return self
end

--- true when frozen (false where nothing can freeze).
function Cgroup:frozen()
  assert_open(self)
  local ok, f = pcall(freezer, self, "frozen")
  if not ok then return false end
  local state = core.cgroup_read(f.dir, f.state) or ""
  return ("\n" .. state):find("\n" .. f.frozen .. "\n", 1, true) ~= nil
end

-- Every directory below dir, deepest first.
local function subdirs_deepest_first(dir, out)
  out = out or {}
  for _, name in ipairs(core.cgroup_children(dir) or {}) do
    local sub = dir .. "/" .. name
    subdirs_deepest_first(sub, out)
    out[#out + 1] = sub
  end
  return out
end

-- Without cgroup.kill: freeze so nothing can fork or exit (and no pid can be reused) while each one is
-- signalled, then thaw so the signals land.
local function kill_by_pid(self)
  local dir = membership_dir(self)
  -- Frozen, nothing inside can fork a process we would miss. A freeze that failed half-way is undone too.
  pcall(self.freeze, self)
  local dirs = subdirs_deepest_first(dir)
  dirs[#dirs + 1] = dir
  for _, d in ipairs(dirs) do
    for _, pid in ipairs(read_pids(d)) do core.kill(pid, "KILL") end
  end
  self:thaw()
end

--- Kills every process inside, and inside its child cgroups (SIGKILL; cgroup.kill where the kernel has it).
function Cgroup:kill()
  assert_open(self)
  local v2 = self.dirs.v2
  if v2 and core.cgroup_read(v2, "cgroup.kill") then
    check(core.cgroup_write(v2, "cgroup.kill", "1"))
  else
    kill_by_pid(self)
  end
  return self
end

--- Waits until no process is left inside (timeout in seconds; nil waits for ever). true, or false on timeout.
function Cgroup:wait_empty(timeout)
  assert_open(self)
  local v2 = self.dirs.v2
  if v2 and core.cgroup_read(v2, "cgroup.events") then
    return check(core.cgroup_wait(v2, "cgroup.events", "populated 0", timeout))
  end
  -- v1: this cgroup and each child in turn.
  local deadline = timeout and core.now() + timeout
  local dir = membership_dir(self)
  local dirs = subdirs_deepest_first(dir)
  dirs[#dirs + 1] = dir
  for _, d in ipairs(dirs) do
    local left = deadline and math.max(0, deadline - core.now())
    if not check(core.cgroup_wait(d, "cgroup.procs", "", left)) then return false end
  end
  return true
end

local REMOVE_TIMEOUT = 10
local remove_cgroup

local function rmdir_retrying(dir)
  -- A killed task can keep a v1 cgroup busy for a moment after it left cgroup.procs.
  local deadline = core.now() + REMOVE_TIMEOUT
  local pause = 0.001
  while true do
    local ok, msg, code = core.cgroup_rmdir(dir)
    if ok or code == "ENOENT" then return true end
    if code ~= "EBUSY" or core.now() > deadline then return nil, msg, code end
    core.cgroup_wait(dir, "cgroup.procs", "", pause)
    pause = math.min(pause * 2, 0.05)
  end
end

--- Kills what is inside, waits until it is empty, and removes it with every child cgroup (leaves first), in
-- every hierarchy. The same as close() for the creator; allowed on an opened cgroup below our own, never on
-- our own cgroup itself.
function Cgroup:remove()
  assert_open(self)
  -- A signal that arrives meanwhile waits until the cgroup is gone (lunas.interrupt).
  return core.interrupt_defer(remove_cgroup, self)
end

remove_cgroup = function(self)
  if self.path == "" then fail("remove: refusing to remove this process's own cgroup", "EPERM") end
  -- Already gone with a parent that was removed first.
  local present = false
  for _, dir in ipairs(each_dir(self)) do present = present or core.file_type(dir) == "dir" end
  if not present then
    release_mark(self)
    self.closed = true
    interrupt.untrack(self)
    return true
  end
  -- Every part is tried even when one fails (a kill refused, a process slow to go): the first failure raises
  -- at the end, and the object stays open so that a later remove (or close_all) tries again.
  local killed, kill_err = pcall(self.kill, self)
  local emptied, wait_err = pcall(self.wait_empty, self, REMOVE_TIMEOUT)
  local first_err
  if not killed then first_err = kill_err
  elseif not emptied then first_err = wait_err
  elseif not wait_err then
    first_err = errors.new{ op = "cgroup", code = "EBUSY",
      msg = ("cgroup: remove %s: processes still inside after %ds"):format(tostring(self), REMOVE_TIMEOUT) }
  end
  local removed = true
  for _, dir in ipairs(each_dir(self)) do
    local dirs = subdirs_deepest_first(dir)
    dirs[#dirs + 1] = dir
    for _, d in ipairs(dirs) do
      local ok, msg, code = rmdir_retrying(d)
      if not ok then
        removed = false
        first_err = first_err or errors.new{ op = "cgroup", msg = "cgroup: remove " .. msg, code = code }
      end
    end
  end
  if removed then
    -- Gone from every hierarchy: whatever the kill or the wait said, nothing is left of it.
    release_mark(self)
    self.closed = true
    interrupt.untrack(self)
    return true
  end
  error(first_err, 0)
end

--- Removes a cgroup this process created (see remove); does nothing for an opened one, or in another process
-- (a forked child holding a copy). Idempotent.
function Cgroup:close()
  if self.closed then return end
  if not self.owner or self.owner ~= core.getpid() then
    self.closed = true
    return
  end
  self:remove()
end
Cgroup.__close = errors.closer(Cgroup.close)

--- @section end

-- ---- garbage ------------------------------------------------------------------------------------------

-- Processes in dir and every cgroup below it.
local function populated(dir)
  local dirs = subdirs_deepest_first(dir)
  dirs[#dirs + 1] = dir
  for _, d in ipairs(dirs) do
    if #read_pids(d) > 0 then return true end
  end
  return false
end

-- A leftover named `name` in whichever hierarchies hold it (gc looks in all of them, controllers or not).
local function leftover(layout, name)
  local dirs = { v1 = {} }
  if layout.v2 and exists(layout.v2.dir .. "/" .. name) then dirs.v2 = layout.v2.dir .. "/" .. name end
  for _, h in pairs(layout.v1) do
    if exists(h.dir .. "/" .. name) then dirs.v1[h.key] = h.dir .. "/" .. name end
  end
  return new_object(layout, name, dirs, false)
end

-- Locks every directory of cg exclusively, or none: a directory whose owner's mark is held means its lunas is
-- alive (in whatever pid namespace). Returns the held descriptors, or nil when the owner is alive.
local function claim_leftover(cg)
  local held = {}
  for _, dir in ipairs(each_dir(cg)) do
    local fd = core.cgroup_open(dir)
    if fd then
      if not fd:lock("exclusive", { wait = false }) then
        fd:close()
        for _, h in ipairs(held) do h:close() end
        return nil
      end
      held[#held + 1] = fd
    end
  end
  return held
end

--- Finds the cgroups a dead lunas left below our own: those named lunas-PID-RANDOM (the names M.new gives) whose
-- owner's mark nobody holds any more (a shared lock on one of its directories, held by the lunas that made it
-- for as long as it runs, whichever pid namespace that is). An empty one is removed (unless opts.dry_run); one
-- that still holds processes is kept and reported, since only a sandbox started without die-with-parent
-- outlives its lunas, on purpose. opts.keep lists paths to leave alone (the cgroups of labs that are up:
-- net.gc() reports them). Returns {removed = {paths}, busy = {paths}}.
function M.gc(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("options", "table expected, got %s", type(opts)) end
  for k in pairs(opts) do
    if k ~= "dry_run" and k ~= "keep" then misuse("options", "unknown field '%s'", tostring(k)) end
  end
  if opts.keep ~= nil and type(opts.keep) ~= "table" then misuse("keep", "a list of cgroup paths expected") end
  local layout = M.layout()
  local report, seen = { removed = {}, busy = {} }, {}
  for _, path in ipairs(opts.keep or {}) do seen[path] = true end
  local roots = {}
  if layout.v2 then roots[#roots + 1] = layout.v2.dir end
  for _, h in pairs(layout.v1) do roots[#roots + 1] = h.dir end
  table.sort(roots)
  for _, root in ipairs(roots) do
    for _, name in ipairs(core.cgroup_children(root) or {}) do
      if name:match("^lunas%-%d+%-%x+$") and not seen[name] then
        seen[name] = true
        local cg = leftover(layout, name)
        local held = claim_leftover(cg)
        if held then
          local busy = false
          for _, dir in ipairs(each_dir(cg)) do busy = busy or populated(dir) end
          local ok, err = true, nil
          if busy then
            report.busy[#report.busy + 1] = name
          else
            if not opts.dry_run then ok, err = pcall(cg.remove, cg) end
            report.removed[#report.removed + 1] = name
          end
          for _, fd in ipairs(held) do fd:close() end
          if not ok then error(err, 0) end
        end
      end
    end
  end
  table.sort(report.removed)
  table.sort(report.busy)
  return report
end

--- @type Cgroup

-- ---- delegation -----------------------------------------------------------------------------------------

--- Hands the cgroup to an unprivileged user: it may then create child cgroups, set their limits, and move its
-- own processes between them. The files listed in /sys/kernel/cgroup/delegate (v2), cgroup.procs and tasks
-- (v1) change owner with the directory; limits on the cgroup itself stay with the delegator.
function Cgroup:delegate(uid, gid)
  assert_open(self)
  if math.type(uid) ~= "integer" or uid < 0 then misuse("uid", "a uid expected, got %s", tostring(uid)) end
  gid = gid or uid
  if math.type(gid) ~= "integer" or gid < 0 then misuse("gid", "a gid expected, got %s", tostring(gid)) end
  local v2_files = split(read_text("/sys/kernel/cgroup/delegate") or "cgroup.procs\ncgroup.threads\ncgroup.subtree_control\n", "%s")
  for _, dir in ipairs(each_dir(self)) do
    check(core.chown(dir, uid, gid))
    local files = dir == self.dirs.v2 and v2_files or { "cgroup.procs", "tasks" }
    for _, file in ipairs(files) do
      local path = dir .. "/" .. file
      if core.file_type(path) == "file" then check(core.chown(path, uid, gid)) end
    end
  end
  return self
end

return M
