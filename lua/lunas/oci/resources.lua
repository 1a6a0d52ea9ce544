--- An OCI config's linux.resources as writes to a container's cgroup files, for cgroup v1 and v2 hierarchies
-- alike (runc's conversions: shares to weight, OCI's memory+swap to v2's swap alone). Used by `lunas-oci create`
-- and `update`.
-- @module lunas.oci.resources
local json = require "lunas.json"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local function refuse(field, fmt, ...)
  errors.raise{ op = "config", field = field, code = "EINVAL",
    msg = ("config.json: linux.resources.%s: " .. fmt):format(field, ...) }
end

local function int(field, v)
  if v == nil or v == json.null then return nil end
  if math.type(v) ~= "integer" then refuse(field, "integer expected, got %s", tostring(v)) end
  return v
end

-- -1 (or anything negative: 2^64-1 decoded) is "no limit".
local function limit_text(v, version)
  if v < 0 then return version == 2 and "max" or "-1" end
  return tostring(v)
end

local function add(writes, controller, file, value, field)
  writes[#writes + 1] = { controller = controller, file = file, value = value, field = field }
end

local function memory(w, m, version, current_memsw)
  local limit, swap = int("memory.limit", m.limit), int("memory.swap", m.swap)
  local reservation = int("memory.reservation", m.reservation)
  if version == 2 then
    if swap and swap >= 0 and not (limit and limit >= 0) then refuse("memory.swap", "needs memory.limit on cgroup v2") end
    if limit then add(w, "memory", "memory.max", limit_text(limit, 2), "memory.limit") end
    if swap then
      -- OCI's swap is memory and swap together; v2 limits swap alone.
      local text = swap < 0 and "max" or tostring(swap - limit)
      if swap >= 0 and swap < limit then refuse("memory.swap", "%d is below memory.limit %d", swap, limit) end
      add(w, "memory", "memory.swap.max", text, "memory.swap")
    end
    if reservation then add(w, "memory", "memory.low", limit_text(reservation, 2), "memory.reservation") end
    if m.swappiness ~= nil and m.swappiness ~= json.null then
      refuse("memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
    end
    if m.disableOOMKiller == true then refuse("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer") end
  else
    local writes = {}
    if limit then writes[#writes + 1] = { "memory.limit_in_bytes", limit_text(limit, 1), "memory.limit" } end
    if swap then writes[#writes + 1] = { "memory.memsw.limit_in_bytes", limit_text(swap, 1), "memory.swap" } end
    -- The kernel refuses a limit above memsw, and memsw below the limit: raise memsw first when it grows.
    if #writes == 2 and (swap < 0 or (current_memsw and swap > current_memsw)) then
      writes[1], writes[2] = writes[2], writes[1]
    end
    for _, x in ipairs(writes) do add(w, "memory", x[1], x[2], x[3]) end
    if reservation then add(w, "memory", "memory.soft_limit_in_bytes", limit_text(reservation, 1), "memory.reservation") end
    local swappiness = int("memory.swappiness", m.swappiness)
    -- (-1, or 2^64-1 decoded: keep the default, as runc does)
    if swappiness and swappiness >= 0 then
      if swappiness > 100 then refuse("memory.swappiness", "0 to 100 expected, got %d", swappiness) end
      add(w, "memory", "memory.swappiness", tostring(swappiness), "memory.swappiness")
    end
    if m.disableOOMKiller == true then add(w, "memory", "memory.oom_control", "1", "memory.disableOOMKiller") end
  end
  -- kernel and kernelTCP: gone from the kernels lunas runs on (runc ignores them too).
end

local function cpu(w, c, version)
  local shares, quota, period = int("cpu.shares", c.shares), int("cpu.quota", c.quota), int("cpu.period", c.period)
  if version == 2 then
    if shares and shares > 0 then
      -- runc's conversion of v1 shares (2..262144) to a v2 weight (1..10000).
      local clamped = math.max(2, math.min(262144, shares))
      add(w, "cpu", "cpu.weight", tostring(1 + ((clamped - 2) * 9999) // 262142), "cpu.shares")
    end
    if quota or period then
      local q = (quota == nil or quota < 0) and "max" or tostring(quota)
      add(w, "cpu", "cpu.max", ("%s %d"):format(q, (period and period > 0) and period or 100000), "cpu.quota")
    end
    if int("cpu.realtimeRuntime", c.realtimeRuntime) or int("cpu.realtimePeriod", c.realtimePeriod) then
      refuse("cpu.realtimeRuntime", "cgroup v2 has no real-time budget")
    end
    if int("cpu.idle", c.idle) then add(w, "cpu", "cpu.idle", tostring(c.idle), "cpu.idle") end
    if int("cpu.burst", c.burst) then add(w, "cpu", "cpu.max.burst", tostring(c.burst), "cpu.burst") end
  else
    if shares and shares > 0 then add(w, "cpu", "cpu.shares", tostring(shares), "cpu.shares") end
    -- The period first: a quota is checked against the period in force.
    if period and period > 0 then add(w, "cpu", "cpu.cfs_period_us", tostring(period), "cpu.period") end
    if quota then add(w, "cpu", "cpu.cfs_quota_us", quota < 0 and "-1" or tostring(quota), "cpu.quota") end
    if int("cpu.realtimePeriod", c.realtimePeriod) then add(w, "cpu", "cpu.rt_period_us", tostring(c.realtimePeriod), "cpu.realtimePeriod") end
    if int("cpu.realtimeRuntime", c.realtimeRuntime) then add(w, "cpu", "cpu.rt_runtime_us", tostring(c.realtimeRuntime), "cpu.realtimeRuntime") end
    if int("cpu.idle", c.idle) then refuse("cpu.idle", "needs cgroup v2") end
    if int("cpu.burst", c.burst) then add(w, "cpu", "cpu.cfs_burst_us", tostring(c.burst), "cpu.burst") end
  end
  if type(c.cpus) == "string" and c.cpus ~= "" then add(w, "cpuset", "cpuset.cpus", c.cpus, "cpu.cpus") end
  if type(c.mems) == "string" and c.mems ~= "" then add(w, "cpuset", "cpuset.mems", c.mems, "cpu.mems") end
end

local function device_number(field, d)
  local major, minor = int(field .. ".major", d.major), int(field .. ".minor", d.minor)
  return ("%d:%d"):format(major, minor)
end

local THROTTLES = {
  { "throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps" },
  { "throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps" },
  { "throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops" },
  { "throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops" },
}

local function block_io(w, b, version)
  local weight, leaf = int("blockIO.weight", b.weight), int("blockIO.leafWeight", b.leafWeight)
  if version == 2 then
    -- v1's 10..1000 is v2's 1..10000 (runc's conversion).
    if weight and weight > 0 then add(w, "io", "io.weight", tostring(1 + (weight - 10) * 9999 // 990), "blockIO.weight") end
    if leaf then refuse("blockIO.leafWeight", "cgroup v2 has no leaf weight") end
  else
    if weight and weight > 0 then add(w, "io", "blkio.weight", tostring(weight), "blockIO.weight") end
    if leaf and leaf > 0 then add(w, "io", "blkio.leaf_weight", tostring(leaf), "blockIO.leafWeight") end
  end
  for i, d in ipairs(b.weightDevice or {}) do
    local field = ("blockIO.weightDevice[%d]"):format(i - 1)
    local dev = device_number(field, d)
    if version == 2 then
      if int(field .. ".weight", d.weight) then add(w, "io", "io.weight", ("%s %d"):format(dev, 1 + (d.weight - 10) * 9999 // 990), field) end
    else
      if int(field .. ".weight", d.weight) then add(w, "io", "blkio.weight_device", ("%s %d"):format(dev, d.weight), field) end
      if int(field .. ".leafWeight", d.leafWeight) then add(w, "io", "blkio.leaf_weight_device", ("%s %d"):format(dev, d.leafWeight), field) end
    end
  end
  for _, t in ipairs(THROTTLES) do
    for i, d in ipairs(b[t[1]] or {}) do
      local field = ("blockIO.%s[%d]"):format(t[1], i - 1)
      local rate = int(field .. ".rate", d.rate) or 0
      if version == 2 then
        add(w, "io", "io.max", ("%s %s=%s"):format(device_number(field, d), t[3], rate == 0 and "max" or tostring(rate)), field)
      else
        add(w, "io", t[2], ("%s %d"):format(device_number(field, d), rate), field)
      end
    end
  end
end

-- The device rules runc adds after a config's own (its AllowedDevices; crun has the same list): podman's and
-- containerd's configs deny every device first and count on these for the container's /dev to work. A later rule
-- wins, so a config cannot take them away, on runc as here.
local DEFAULT_DEVICE_RULES = {
  { allow = true, type = "c", access = "m" }, { allow = true, type = "b", access = "m" },
  { allow = true, type = "c", major = 1, minor = 3, access = "rwm" },   -- /dev/null
  { allow = true, type = "c", major = 1, minor = 8, access = "rwm" },   -- /dev/random
  { allow = true, type = "c", major = 1, minor = 7, access = "rwm" },   -- /dev/full
  { allow = true, type = "c", major = 5, minor = 0, access = "rwm" },   -- /dev/tty
  { allow = true, type = "c", major = 1, minor = 5, access = "rwm" },   -- /dev/zero
  { allow = true, type = "c", major = 1, minor = 9, access = "rwm" },   -- /dev/urandom
  { allow = true, type = "c", major = 136, access = "rwm" },            -- /dev/pts/*
  { allow = true, type = "c", major = 5, minor = 2, access = "rwm" },   -- /dev/ptmx
  { allow = true, type = "c", major = 10, minor = 200, access = "rwm" }, -- /dev/net/tun (runc 1.1's list has it)
}

-- A config's device rule as {allow, type, major, minor, access} (major and minor nil: any). An "a" rule is every
-- device and every access whatever else it says, as v1's kernel reads it (runc too).
local function device_rule(field, d)
  if type(d) ~= "table" then refuse(field, "object expected") end
  if type(d.allow) ~= "boolean" then refuse(field .. ".allow", "true or false expected") end
  local kind = d.type
  if kind == nil or kind == json.null then kind = "a" end
  if kind ~= "a" and kind ~= "c" and kind ~= "b" then refuse(field .. ".type", "a, c or b expected, got %s", tostring(kind)) end
  if kind == "a" then return { allow = d.allow, type = "a", access = "rwm" } end
  local access = d.access
  if access == nil or access == json.null then access = "rwm" end
  if type(access) ~= "string" or not access:match("^[rwm]+$") then refuse(field .. ".access", "r, w and m expected") end
  local function number(name, max)
    local v = int(field .. "." .. name, d[name])
    if v == nil or v < 0 then return nil end
    if v > max then refuse(field .. "." .. name, "0 to %d expected, got %d", max, v) end
    return v
  end
  return { allow = d.allow, type = kind, major = number("major", 4095), minor = number("minor", 1048575),
    access = access }
end

-- The v1 device controller's rule text: "c 1:3 rwm", "a *:* rwm".
local function device_rule_text(r)
  local function number(v) return v and tostring(v) or "*" end
  return ("%s %s:%s %s"):format(r.type, number(r.major), number(r.minor), r.access)
end

-- v1: devices.deny and devices.allow lines in order; v2: one entry {controller = "devices", rules = {...}} for a
-- BPF program (lunas.cgroup's Cgroup:devices), which has no file to write.
local function devices(w, list, version)
  local rules = {}
  for i, d in ipairs(list) do rules[#rules + 1] = device_rule(("devices[%d]"):format(i - 1), d) end
  for _, r in ipairs(DEFAULT_DEVICE_RULES) do rules[#rules + 1] = r end
  if version == 2 then
    w[#w + 1] = { controller = "devices", rules = rules, field = "devices" }
    return
  end
  for i, r in ipairs(rules) do
    local field = i <= #list and ("devices[%d]"):format(i - 1) or "devices (runc's default rules)"
    add(w, "devices", r.allow and "devices.allow" or "devices.deny", device_rule_text(r), field)
  end
end

local function hugepages(w, list, version)
  for i, h in ipairs(list) do
    local field = ("hugepageLimits[%d]"):format(i - 1)
    if type(h.pageSize) ~= "string" or not h.pageSize:match("^%d+[KMG]B$") then refuse(field .. ".pageSize", "a size such as 2MB expected") end
    local limit = int(field .. ".limit", h.limit) or 0
    add(w, "hugetlb", ("hugetlb.%s.%s"):format(h.pageSize, version == 2 and "max" or "limit_in_bytes"),
      limit_text(limit, version), field)
  end
end

--- The writes for a resources object: a list of {controller, file, value, field}, in order; the device rules on
-- cgroup v2 are one {controller = "devices", rules, field} (for Cgroup:devices, not a file). version(controller)
-- gives the hierarchy version of a controller here (1 or 2; nil: not here); current_memsw the v1 memory+swap
-- limit in force (to order the memory writes).
-- @tparam table r linux.resources
-- @tparam function version
-- @tparam[opt] integer current_memsw
-- @treturn table
function M.writes(r, version, current_memsw)
  local w = {}
  if r == nil or r == json.null then return w end
  if type(r) ~= "table" then refuse("", "object expected") end
  local function need(controller, field)
    local v = version(controller)
    if not v then refuse(field, "this host has no %s controller", controller) end
    return v
  end
  if type(r.memory) == "table" and next(r.memory) then memory(w, r.memory, need("memory", "memory"), current_memsw) end
  if type(r.cpu) == "table" and next(r.cpu) then
    local v = need("cpu", "cpu")
    cpu(w, r.cpu, v)
  end
  if type(r.pids) == "table" and r.pids.limit ~= nil then
    local limit = int("pids.limit", r.pids.limit)
    add(w, "pids", "pids.max", limit <= 0 and "max" or tostring(limit), "pids.limit")
    need("pids", "pids")
  end
  if type(r.blockIO) == "table" and next(r.blockIO) then block_io(w, r.blockIO, need("io", "blockIO")) end
  if type(r.devices) == "table" and #r.devices > 0 then
    -- v1's devices controller where there is one; else cgroup v2's BPF program (pure v2 has no such controller)
    devices(w, r.devices, version("devices") == 1 and 1 or 2)
  end
  if type(r.hugepageLimits) == "table" and #r.hugepageLimits > 0 then
    hugepages(w, r.hugepageLimits, need("hugetlb", "hugepageLimits"))
  end
  if type(r.network) == "table" and next(r.network) then
    if r.network.classID then add(w, "net_cls", "net_cls.classid", tostring(int("network.classID", r.network.classID)), "network.classID") end
    for i, p in ipairs(r.network.priorities or {}) do
      add(w, "net_prio", "net_prio.ifpriomap", ("%s %d"):format(p.name, int(("network.priorities[%d].priority"):format(i - 1), p.priority)), "network.priorities")
    end
    need("net_cls", "network")
  end
  if type(r.rdma) == "table" and next(r.rdma) then refuse("rdma", "RDMA limits are not supported yet") end
  if type(r.unified) == "table" and next(r.unified) then
    for file, value in pairs(r.unified) do
      if type(value) ~= "string" or file:find("/") then refuse("unified." .. tostring(file), "a file name and a string value expected") end
      local controller = file:match("^([%w_]+)%.")
      if version(controller) ~= 2 then refuse("unified." .. file, "needs the %s controller on cgroup v2", tostring(controller)) end
      add(w, controller, file, value, "unified." .. file)
    end
  end
  return w
end

--- The controllers the writes touch (what the cgroup must span).
-- @tparam table writes
-- @treturn table
function M.controllers(writes)
  local set, list = {}, {}
  for _, x in ipairs(writes) do
    if not set[x.controller] then set[x.controller], list[#list + 1] = true, x.controller end
  end
  return list
end

return M
