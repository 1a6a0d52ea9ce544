--- Monitoring: what runs (recorded sandboxes and labs) and what it uses, read from the kernel's own accounts:
-- the sandbox's cgroup when it has one, else /proc (its processes: those of its pid namespace, or its first
-- process and its descendants), netlink in its network namespace for the traffic of its interfaces.
--
-- `snapshot()` gives one sample; `rates(previous, current)` the cpu share between two; `prometheus(sample)` the
-- text exposition format (0.0.4). What a sample holds comes from a table of collectors, functions that fill in
-- an entry's fields (`add_collector`), and what the exposition shows from a table of metrics (`add_metric`), so
-- another area (firewall counters, say) plugs in without touching this file.
-- @module lunas.monitor
local core = require "lunas.core"
local files = require "lunas.files"
local errors = require "lunas.errors"
local sandbox_record = require "lunas.sandbox_record"
local lab_record = require "lunas.lab_record"

errors.register_module()

local M = {}

-- Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on every Linux ABI lunas runs on).
local USER_HZ = 100

local read_text = files.read_text

-- ---- /proc ---------------------------------------------------------------------------------------------

-- Fields of /proc/PID/stat after the command: ppid (4), utime (14), stime (15), cutime (16), cstime (17),
-- starttime (22).
local function proc_stat(pid)
  local text = read_text("/proc/" .. pid .. "/stat")
  local rest = text and text:match("^%d+ %b() (.*)$")
  if not rest then return nil end
  local f, n = {}, 2
  for field in rest:gmatch("%S+") do
    n = n + 1
    f[n] = field
    if n == 22 then break end
  end
  return { state = f[3], ppid = tonumber(f[4]), cpu_ticks = (tonumber(f[14]) or 0) + (tonumber(f[15]) or 0),
    child_ticks = (tonumber(f[16]) or 0) + (tonumber(f[17]) or 0), start = f[22] }
end

--- Waits `seconds` (in poll: a signal interrupts it, as lunas.interrupt says).
function M.sleep(seconds)
  if type(seconds) ~= "number" or not (seconds >= 0) then
    errors.raise{ op = "monitor", field = "seconds", code = "EINVAL", msg = "monitor.sleep: seconds (>= 0) expected" }
  end
  local r, w = errors.check(core.pipe())
  local ok, err = pcall(core.poll, { r }, seconds)
  r:close()
  w:close()
  if not ok then error(err, 0) end
end

--- Seconds since boot (/proc/uptime).
function M.uptime()
  local text = read_text("/proc/uptime")
  return text and tonumber(text:match("^(%S+)")) or 0
end

-- The processes of the host, read once per sample and only as far as a collector needs them.
local function process_table(sample)
  if sample.processes then return sample.processes end
  local list = {}
  for _, entry in ipairs(core.listdir("/proc") or {}) do
    local pid = tonumber(entry:match("^%d+$"))
    if pid then
      local st = proc_stat(pid)
      if st then
        st.pid = pid
        list[#list + 1] = st
      end
    end
  end
  sample.processes = list
  return list
end

local function pidns_of(pid)
  local link = core.readlink("/proc/" .. pid .. "/ns/pid")
  return link and tonumber(link:match("%[(%d+)%]"))
end

-- The processes of one sandbox: those in its own pid namespace, else its first process and its descendants.
local function members(sample, entry)
  local list = process_table(sample)
  local out = {}
  if entry.own and entry.own.pid and entry.namespaces and entry.namespaces.pid then
    -- (each process's pid namespace read once per sample, whatever the number of sandboxes)
    if not sample.by_pidns then
      sample.by_pidns = {}
      for _, p in ipairs(list) do
        local ns = pidns_of(p.pid)
        if ns then
          sample.by_pidns[ns] = sample.by_pidns[ns] or {}
          table.insert(sample.by_pidns[ns], p)
        end
      end
    end
    for _, p in ipairs(sample.by_pidns[entry.namespaces.pid] or {}) do out[#out + 1] = p end
    return out
  end
  local roots = {}
  for _, r in ipairs(entry.roots or { { pid = entry.pid, start = entry.start } }) do roots[r.pid] = r.start end
  local children = {}
  for _, p in ipairs(list) do
    children[p.ppid] = children[p.ppid] or {}
    table.insert(children[p.ppid], p)
  end
  local function add(p)
    out[#out + 1] = p
    for _, c in ipairs(children[p.pid] or {}) do add(c) end
  end
  for _, p in ipairs(list) do
    if roots[p.pid] ~= nil and roots[p.pid] == p.start then add(p) end
  end
  return out
end

local function status_kib(pid, key)
  local text = read_text("/proc/" .. pid .. "/status")
  local v = text and text:match("\n" .. key .. ":%s*(%d+) kB")
  return v and tonumber(v) * 1024 or 0
end

-- ---- collectors ----------------------------------------------------------------------------------------

--- The collectors, in order: `{name = "...", collect = function(entry, sample)}`; each fills in fields of an
-- entry (a recorded sandbox or lab, see `entries`); `sample` is shared by one snapshot's collectors (caches).
-- A collector that raises leaves its fields out and its message in entry.errors.
M.collectors = {}

--- Adds a collector (appended, or before the one named `before`).
function M.add_collector(collector, before)
  if type(collector) ~= "table" or type(collector.name) ~= "string" or type(collector.collect) ~= "function" then
    errors.raise{ op = "monitor", field = "collector", code = "EINVAL",
      msg = "monitor: add_collector: {name = string, collect = function} expected" }
  end
  for i, c in ipairs(M.collectors) do
    if before and c.name == before then
      table.insert(M.collectors, i, collector)
      return
    end
  end
  M.collectors[#M.collectors + 1] = collector
end

-- cpu, memory and processes from the cgroup: the kernel's accounts of everything inside, the departed too.
M.add_collector{ name = "cgroup", collect = function(entry)
  if entry.kind ~= "sandbox" or not entry.cgroup then return end
  local cgroup = require "lunas.cgroup"
  local cg = cgroup.adopt(entry.cgroup)
  local stats = cg:stats()
  if stats.cpu and stats.cpu.usage_usec then entry.cpu_seconds = stats.cpu.usage_usec / 1e6 end
  if stats.memory then
    entry.memory_bytes, entry.memory_peak_bytes = stats.memory.current, stats.memory.peak
    entry.memory_limit_bytes = math.type(stats.memory.limit) == "integer" and stats.memory.limit or nil
    entry.oom_kills = stats.memory.oom_kills
  end
  if stats.pids then entry.pids = stats.pids.current end
  local ok, frozen = pcall(cg.frozen, cg)
  entry.frozen = ok and frozen or false
  entry.source = "cgroup"
end }

-- What the cgroup did not give, from /proc: cpu time of the live processes plus what their reaped children used
-- (cutime, cstime), resident memory, the number of processes.
M.add_collector{ name = "proc", collect = function(entry, sample)
  if entry.cpu_seconds and entry.memory_bytes and entry.pids then return end
  local list = members(sample, entry)
  local ticks, rss = 0, 0
  for _, p in ipairs(list) do
    ticks = ticks + p.cpu_ticks + p.child_ticks
    if entry.memory_bytes == nil then rss = rss + status_kib(p.pid, "VmRSS") end
  end
  if entry.cpu_seconds == nil then entry.cpu_seconds = ticks / USER_HZ end
  if entry.memory_bytes == nil then entry.memory_bytes = rss end
  if entry.pids == nil then entry.pids = #list end
  entry.source = entry.source or "proc"
end }

-- Traffic of the interfaces of the namespaces the entry owns (lo left out: it never leaves the namespace), by
-- netlink inside each.
local function link_totals(netns, into)
  local nl, msg = core.netlink(netns)
  if not nl then error(msg, 0) end
  local links, lmsg = nl:link_list()
  nl:close()
  if not links then error(lmsg, 0) end
  for _, l in ipairs(links) do
    if l.name ~= "lo" and l.stats then
      into.rx_bytes = into.rx_bytes + (l.stats.rx_bytes or 0)
      into.tx_bytes = into.tx_bytes + (l.stats.tx_bytes or 0)
      into.rx_packets = into.rx_packets + (l.stats.rx_packets or 0)
      into.tx_packets = into.tx_packets + (l.stats.tx_packets or 0)
      into.interfaces = into.interfaces + 1
    end
  end
end

-- The same from /proc/PID/net/dev, which shows the namespace of that process: for a user, who may not enter a
-- namespace its sandbox's user namespace owns (setns needs CAP_SYS_ADMIN in the caller's own too).
local function dev_totals(pid, into)
  local text = read_text("/proc/" .. pid .. "/net/dev")
  if not text then error("read /proc/" .. pid .. "/net/dev", 0) end
  for name, rest in text:gmatch("\n%s*([^%s:]+):([^\n]*)") do
    if name ~= "lo" then
      local f = {}
      for n in rest:gmatch("%d+") do f[#f + 1] = tonumber(n) end
      into.rx_bytes, into.rx_packets = into.rx_bytes + (f[1] or 0), into.rx_packets + (f[2] or 0)
      into.tx_bytes, into.tx_packets = into.tx_bytes + (f[9] or 0), into.tx_packets + (f[10] or 0)
      into.interfaces = into.interfaces + 1
    end
  end
end

M.add_collector{ name = "network", collect = function(entry)
  local paths = {}
  if entry.kind == "sandbox" then
    if entry.own and entry.own.net and entry.alive then paths[1] = "/proc/" .. entry.pid .. "/ns/net" end
  else
    paths = entry.netns or {}
  end
  if #paths == 0 then return end
  local net = { rx_bytes = 0, tx_bytes = 0, rx_packets = 0, tx_packets = 0, interfaces = 0 }
  if entry.kind == "sandbox" and core.ids().euid ~= 0 then
    dev_totals(entry.pid, net)
  else
    for _, path in ipairs(paths) do link_totals(path, net) end
  end
  entry.net = net
end }

-- The counters of a sandbox's firewall (lunas.firewall): one per rule and per default policy. Only for a
-- sandbox whose record says it has one: reading them loads libnftables and asks the kernel for the rule set.
-- A caller without privileges reads them as the owner of the sandbox's user namespace.
M.add_collector{ name = "firewall", collect = function(entry)
  if entry.kind == "lab" then
    -- (the hosts its record names: a lab's namespaces are root's)
    if #entry.firewalls == 0 or core.ids().euid ~= 0 then return end
    local list = {}
    for _, fw in ipairs(entry.firewalls) do
      for _, c in ipairs(require("lunas.firewall").counters(fw.netns)) do
        c.host = fw.host
        list[#list + 1] = c
      end
    end
    entry.firewall = list
    return
  end
  if entry.kind ~= "sandbox" or not entry.has_firewall or not entry.alive then return end
  local netns = "/proc/" .. entry.pid .. "/ns/net"
  local opts
  if core.ids().euid ~= 0 then
    local userns, msg = core.ns_open("/proc/" .. entry.pid .. "/ns/user")
    if not userns then error(msg, 0) end
    opts = { userns = userns }
  end
  local ok, list = pcall(require("lunas.firewall").counters, netns, opts)
  if opts then opts.userns:close() end
  if not ok then error(list, 0) end
  entry.firewall = list
end }

-- ---- entries -------------------------------------------------------------------------------------------

local function sandbox_entry(rec, now)
  local st = rec.pid and proc_stat(rec.pid)
  local uptime = st and st.start == rec.start and (now - tonumber(st.start) / USER_HZ) or nil
  return { kind = "sandbox", name = rec.name, pid = rec.pid, start = rec.start, owner = rec.owner.pid,
    status = rec.status, alive = rec.alive, argv = rec.argv, cgroup = rec.cgroup, namespaces = rec.namespaces,
    own = rec.own or {}, uptime = uptime, created = rec.created, has_firewall = rec.firewall }
end

local function lab_entry(rec, now)
  local roots, alive = {}, 0
  for _, p in ipairs(rec.processes or {}) do
    if require("lunas.process").alive(p.pid, p.start) then
      roots[#roots + 1] = p
      alive = alive + 1
    end
  end
  local st = rec.pid and proc_stat(rec.pid)
  local created = rec.state and rec.state.created or rec.created
  local uptime = created and (os.time() - created) or nil
  if st and st.start == rec.start then uptime = now - tonumber(st.start) / USER_HZ end
  -- The hosts' namespaces: the fabric one (the lab's switches, the other ends of its links) would count each
  -- packet twice.
  local netns = {}
  for _, path in ipairs(rec.netns or {}) do
    if path ~= rec.fabric and core.file_type(path) then netns[#netns + 1] = path end
  end
  local firewalls = {}
  for _, fw in ipairs(rec.firewalls or {}) do
    if type(fw.netns) == "string" and core.file_type(fw.netns) then firewalls[#firewalls + 1] = fw end
  end
  return { kind = "lab", name = rec.name, pid = rec.pid, owner = rec.pid, status = rec.status, netns = netns,
    hosts = #netns, roots = roots, processes = alive, uptime = uptime, created = created, own = {},
    firewalls = firewalls }
end

--- The recorded sandboxes and labs, as entries without usage: {kind = "sandbox" | "lab", name, pid, status,
-- uptime (seconds), ...}. opts.kind limits them to one kind, opts.names to some names.
function M.entries(opts)
  opts = opts or {}
  if type(opts) ~= "table" or (opts.names ~= nil and type(opts.names) ~= "table")
      or (opts.kind ~= nil and opts.kind ~= "sandbox" and opts.kind ~= "lab") then
    errors.raise{ op = "monitor", field = "opts", code = "EINVAL",
      msg = "monitor: {kind = 'sandbox' | 'lab', names = {...}} expected" }
  end
  local now = M.uptime()
  local out = {}
  local wanted
  if opts.names and #opts.names > 0 then
    wanted = {}
    for _, n in ipairs(opts.names) do wanted[n] = true end
  end
  if opts.kind ~= "lab" then
    for _, rec in ipairs(sandbox_record.list()) do
      if not wanted or wanted[rec.name] then out[#out + 1] = sandbox_entry(rec, now) end
    end
  end
  if opts.kind ~= "sandbox" then
    for _, name in ipairs(lab_record.names()) do
      local rec = (not wanted or wanted[name]) and lab_record.read(name)
      if rec then out[#out + 1] = lab_entry(rec, now) end
    end
  end
  return out
end

--- One sample: {time = monotonic seconds, wall = seconds since the epoch, entries = {entry with usage}}.
-- Usage fields: cpu_seconds, memory_bytes, memory_peak_bytes (with a cgroup), memory_limit_bytes, pids,
-- net = {rx_bytes, tx_bytes, rx_packets, tx_packets, interfaces}, frozen, oom_kills, source ("cgroup" | "proc").
function M.snapshot(opts)
  local sample = {}
  local entries = M.entries(opts)
  for _, entry in ipairs(entries) do
    if entry.alive ~= false then
      for _, c in ipairs(M.collectors) do
        local ok, err = pcall(c.collect, entry, sample)
        if not ok then
          entry.errors = entry.errors or {}
          entry.errors[c.name] = tostring(errors.is(err) and err.msg or err)
        end
      end
    end
  end
  return { time = core.now(), wall = os.time(), entries = entries }
end

--- Adds rates to `current` from `previous` (two snapshots): cpu_percent (100 = one core busy), rx_rate and
-- tx_rate (bytes per second), for the entries found in both.
function M.rates(previous, current)
  local dt = current.time - previous.time
  if dt <= 0 then return current end
  local before = {}
  for _, e in ipairs(previous.entries) do before[e.kind .. "\0" .. e.name .. "\0" .. tostring(e.pid)] = e end
  for _, e in ipairs(current.entries) do
    local p = before[e.kind .. "\0" .. e.name .. "\0" .. tostring(e.pid)]
    if p then
      if e.cpu_seconds and p.cpu_seconds then
        e.cpu_percent = math.max(0, (e.cpu_seconds - p.cpu_seconds) / dt * 100)
      end
      if e.net and p.net then
        e.rx_rate = math.max(0, (e.net.rx_bytes - p.net.rx_bytes) / dt)
        e.tx_rate = math.max(0, (e.net.tx_bytes - p.net.tx_bytes) / dt)
      end
    end
  end
  return current
end

-- ---- Prometheus text exposition ------------------------------------------------------------------------

--- The metrics of the exposition, in order: `{name = "lunas_sandbox_...", type = "counter" | "gauge", help =,
-- kind = "sandbox" | "lab", value = function(entry) -> number, a list of {labels = {k = v}, value = number}
-- (several samples, told apart by their labels) or nil}`. add_metric appends one.
M.metrics = {}

--- Adds a metric to the exposition: {name = "lunas_sandbox_..." (a metric name), type = "counter" | "gauge",
-- help = text, kind = "sandbox" | "lab", value = function(entry) -> number, a list of {labels = {name = value},
-- value = number} (one sample each, with those labels besides the entry's name), or nil (no sample)}.
function M.add_metric(metric)
  if type(metric) ~= "table" or type(metric.name) ~= "string" or not metric.name:match("^[%a_:][%w_:]*$")
      or (metric.type ~= "counter" and metric.type ~= "gauge") or type(metric.value) ~= "function"
      or type(metric.help) ~= "string" or (metric.kind ~= "sandbox" and metric.kind ~= "lab") then
    errors.raise{ op = "monitor", field = "metric", code = "EINVAL", msg = "monitor: add_metric: {name = a metric "
      .. "name, type = 'counter' | 'gauge', help = string, kind = 'sandbox' | 'lab', value = function} expected" }
  end
  M.metrics[#M.metrics + 1] = metric
end

local function field(name) return function(e) return e[name] end end
local function net_field(name) return function(e) return e.net and e.net[name] end end

for _, kind in ipairs{ "sandbox", "lab" } do
  local prefix = "lunas_" .. kind .. "_"
  local what = kind == "sandbox" and "the sandbox" or "the lab's hosts"
  M.add_metric{ kind = kind, name = prefix .. "cpu_seconds_total", type = "counter", value = field("cpu_seconds"),
    help = "CPU time used by " .. what .. " (user and system), in seconds." }
  M.add_metric{ kind = kind, name = prefix .. "memory_bytes", type = "gauge", value = field("memory_bytes"),
    help = "Memory used by " .. what .. " now (the cgroup's charge, else resident set), in bytes." }
  if kind == "sandbox" then
    M.add_metric{ kind = kind, name = prefix .. "memory_peak_bytes", type = "gauge", value = field("memory_peak_bytes"),
      help = "Highest memory charge of the sandbox's cgroup, in bytes." }
    M.add_metric{ kind = kind, name = prefix .. "memory_limit_bytes", type = "gauge", value = field("memory_limit_bytes"),
      help = "Memory limit of the sandbox's cgroup, in bytes." }
    M.add_metric{ kind = kind, name = prefix .. "oom_kills_total", type = "counter", value = field("oom_kills"),
      help = "Processes of the sandbox killed by the OOM killer." }
    M.add_metric{ kind = kind, name = prefix .. "frozen", type = "gauge",
      value = function(e) if e.frozen == nil then return nil end return e.frozen and 1 or 0 end,
      help = "1 while the sandbox is frozen." }
  else
    M.add_metric{ kind = kind, name = prefix .. "hosts", type = "gauge", value = field("hosts"),
      help = "Hosts (and routers) of the lab: its network namespaces but the one of its switches." }
  end
  M.add_metric{ kind = kind, name = prefix .. "processes", type = "gauge", value = field("pids"),
    help = "Processes (and threads, from a cgroup's pids controller) of " .. what .. "." }
  M.add_metric{ kind = kind, name = prefix .. "network_receive_bytes_total", type = "counter",
    value = net_field("rx_bytes"), help = "Bytes received by the interfaces of " .. what .. " (lo aside)." }
  M.add_metric{ kind = kind, name = prefix .. "network_transmit_bytes_total", type = "counter",
    value = net_field("tx_bytes"), help = "Bytes sent by the interfaces of " .. what .. " (lo aside)." }
  M.add_metric{ kind = kind, name = prefix .. "network_receive_packets_total", type = "counter",
    value = net_field("rx_packets"), help = "Packets received by the interfaces of " .. what .. " (lo aside)." }
  M.add_metric{ kind = kind, name = prefix .. "network_transmit_packets_total", type = "counter",
    value = net_field("tx_packets"), help = "Packets sent by the interfaces of " .. what .. " (lo aside)." }
  M.add_metric{ kind = kind, name = prefix .. "uptime_seconds", type = "gauge", value = field("uptime"),
    help = "Seconds since " .. (kind == "sandbox" and "the sandbox started." or "the lab was made.") }
end

-- One sample per firewall counter, labelled with the rule's name, direction and action.
-- (a lab's carry the host too)
local function firewall_samples(key)
  return function(e)
    if not e.firewall then return nil end
    local list = {}
    for _, c in ipairs(e.firewall) do
      list[#list + 1] = { labels = { rule = c.name, direction = c.direction, action = c.action, host = c.host },
        value = c[key] }
    end
    return list
  end
end
for _, kind in ipairs{ "sandbox", "lab" } do
  local whose = kind == "sandbox" and "the sandbox's firewall" or "a lab host's firewall (label host)"
  M.add_metric{ kind = kind, name = "lunas_" .. kind .. "_firewall_packets_total", type = "counter",
    value = firewall_samples("packets"), help = "Packets that met a rule (or a default policy) of " .. whose .. "." }
  M.add_metric{ kind = kind, name = "lunas_" .. kind .. "_firewall_bytes_total", type = "counter",
    value = firewall_samples("bytes"), help = "Bytes of the packets that met a rule (or a default policy) of " .. whose .. "." }
end

--- A label value as the exposition format writes it: backslash, double quote and line feed escaped.
function M.escape_label(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function escape_help(v)
  return (v:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

local function number(v)
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v ~= v then return "NaN" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
  return ("%.10g"):format(v)
end

-- The labels of a sample: the entry's name first, then the others by name (label names as the format allows).
local function labels_text(name, labels)
  local keys = {}
  for k in pairs(labels or {}) do
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and k ~= "name" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local parts = { ('name="%s"'):format(M.escape_label(name)) }
  for _, k in ipairs(keys) do parts[#parts + 1] = ('%s="%s"'):format(k, M.escape_label(labels[k])) end
  return table.concat(parts, ",")
end

--- A sample in the Prometheus text exposition format 0.0.4: HELP and TYPE lines, one sample per entry with
-- labels name and kind, plus lunas_sandbox_info / lunas_lab_info (value 1, labels pid and status) and the counts
-- lunas_sandboxes and lunas_labs.
function M.prometheus(sample)
  local out = {}
  local function emit(s) out[#out + 1] = s end
  local counts = { sandbox = 0, lab = 0 }
  for _, e in ipairs(sample.entries) do counts[e.kind] = counts[e.kind] + 1 end
  for _, kind in ipairs{ "sandbox", "lab" } do
    local plural = kind == "sandbox" and "sandboxes" or "labs"
    emit(("# HELP lunas_%s Recorded %s.\n# TYPE lunas_%s gauge\nlunas_%s %d\n"):format(plural, plural, plural, plural,
      counts[kind]))
    emit(("# HELP lunas_%s_info A recorded %s: its first process and status.\n# TYPE lunas_%s_info gauge\n")
      :format(kind, kind, kind))
    for _, e in ipairs(sample.entries) do
      if e.kind == kind then
        emit(('lunas_%s_info{name="%s",pid="%s",status="%s"} 1\n'):format(kind, M.escape_label(e.name),
          M.escape_label(e.pid or ""), M.escape_label(e.status or "")))
      end
    end
  end
  for _, m in ipairs(M.metrics) do
    local lines = {}
    for _, e in ipairs(sample.entries) do
      if e.kind == m.kind then
        local ok, v = pcall(m.value, e)
        if ok and type(v) == "number" then
          lines[#lines + 1] = ('%s{name="%s"} %s\n'):format(m.name, M.escape_label(e.name), number(v))
        elseif ok and type(v) == "table" then
          for _, s in ipairs(v) do
            if type(s.value) == "number" then
              lines[#lines + 1] = ('%s{%s} %s\n'):format(m.name, labels_text(e.name, s.labels), number(s.value))
            end
          end
        end
      end
    end
    if #lines > 0 then
      emit(("# HELP %s %s\n# TYPE %s %s\n"):format(m.name, escape_help(m.help), m.name, m.type))
      emit(table.concat(lines))
    end
  end
  return table.concat(out)
end

--- Writes text to path atomically (a temporary file in the same directory, renamed over): node_exporter's
-- textfile collector never reads half a file.
function M.write_file(path, text)
  if type(path) ~= "string" or path == "" or path:find("%z") or type(text) ~= "string" then
    errors.raise{ op = "monitor", field = "path", code = "EINVAL", msg = "monitor.write_file: a path and a string expected" }
  end
  return files.write_atomic(path, text)
end

-- ---- events ------------------------------------------------------------------------------------------

local Watcher = {}
Watcher.__index = Watcher

local function mkdir(path)
  local ok, msg, code = core.mkdir(path)
  if ok or code == "EEXIST" then return true end
  return nil, msg, code
end

local function read_counter(dir, file, key)
  local text = core.cgroup_read(dir, file)
  if not text then return nil end
  return tonumber(text:match("%f[%w]" .. key .. "%s+(%d+)"))
end

-- Watches the OOM kills of one sandbox's memory cgroup: memory.events (v2) through inotify, memory.oom_control
-- (v1) through an eventfd registered in cgroup.event_control.
local function watch_oom(self, name, rec)
  if not rec.cgroup or self.oom[name] then return end
  local ok, cg = pcall(require("lunas.cgroup").adopt, rec.cgroup)
  if not ok then return end
  local dir, version = cg:controller_dir("memory")
  if not dir then return end
  local w = { name = name, pid = rec.pid, dir = dir, version = version }
  if version == 2 then
    w.file, w.key = "memory.events", "oom_kill"
    w.wd = core.inotify_add(self.inotify, dir .. "/memory.events", "modify")
    if not w.wd then return end
    self.by_wd[w.wd] = { oom = w }
  else
    w.file, w.key = "memory.oom_control", "oom_kill"
    local efd = core.eventfd()
    local control = efd and core.open(dir .. "/memory.oom_control", "r")
    if not control then
      if efd then efd:close() end
      return
    end
    local registered = core.cgroup_write(dir, "cgroup.event_control", ("%d %d"):format(efd:fileno(), control:fileno()))
    if not registered then
      efd:close()
      control:close()
      return
    end
    w.eventfd, w.control = efd, control
  end
  w.count = read_counter(dir, w.file, w.key) or 0
  self.oom[name] = w
end

local function unwatch_oom(self, name)
  local w = self.oom[name]
  if not w then return end
  self.oom[name] = nil
  if w.wd then
    self.by_wd[w.wd] = nil
    core.inotify_remove(self.inotify, w.wd)
  end
  if w.eventfd then w.eventfd:close() end
  if w.control then w.control:close() end
end

local function check_oom(self, w, out)
  local count = read_counter(w.dir, w.file, w.key)
  if not count then
    unwatch_oom(self, w.name)
    return
  end
  if count > w.count then
    out[#out + 1] = { event = "oom_kill", kind = "sandbox", name = w.name, pid = w.pid, count = count - w.count,
      total = count, time = os.time() }
  end
  w.count = count
end

-- Watches the freezing of a sandbox whose cgroup freezes through cgroup v2 (cgroup.freeze): cgroup.events says
-- "frozen 1" once every process inside is stopped, whoever froze it (lunas, an OCI runtime's pause, a write to
-- the file), and the kernel marks the file modified. (A v1 freezer has no such file: the journal's freeze and
-- thaw lines, written by the lunas that froze it, stand for it.)
-- Both that file and the journal's lines say when it froze and thawed: each change is reported once, by
-- whichever of the two tells first (`reported`: the state last reported).
local function watch_frozen(self, name, rec, fresh)
  local dirs = rec.cgroup and rec.cgroup.dirs
  if self.frozen[name] or type(dirs) ~= "table" or type(dirs.v2) ~= "string" then return end
  if type(dirs.v1) == "table" and dirs.v1.freezer then return end
  local ok, cg = pcall(require("lunas.cgroup").adopt, rec.cgroup)
  local dir = ok and cg.dirs.v2
  if not dir or not core.cgroup_read(dir, "cgroup.freeze") then return end
  local wd = core.inotify_add(self.inotify, dir .. "/cgroup.events", "modify")
  if not wd then return end
  -- (a sandbox seen starting was not frozen then: a freeze since is still to report)
  local w = { name = name, pid = rec.pid, dir = dir, wd = wd,
    reported = fresh and 0 or read_counter(dir, "cgroup.events", "frozen") or 0 }
  self.by_wd[wd] = { frozen = w }
  self.frozen[name] = w
end

local function unwatch_frozen(self, name)
  local w = self.frozen[name]
  if not w then return end
  self.frozen[name] = nil
  self.by_wd[w.wd] = nil
  core.inotify_remove(self.inotify, w.wd)
end

local function check_frozen(self, w, out)
  local state = read_counter(w.dir, "cgroup.events", "frozen")
  if not state then
    unwatch_frozen(self, w.name)
    return
  end
  if state ~= w.reported then
    out[#out + 1] = { event = state == 1 and "freeze" or "thaw", kind = "sandbox", name = w.name, pid = w.pid,
      time = os.time() }
    w.reported = state
  end
end

-- The exit of a sandbox whose lunas died with it (killed): no exit line comes in the journal, its pidfd says.
local function watch_exit(self, name, rec)
  if self.exits[name] or not rec.pid then return end
  local proc = require("lunas.process").open(rec.pid, rec.start)
  if proc then self.exits[name] = { proc = proc, pid = rec.pid, owner = rec.owner } end
end

local function unwatch_exit(self, name)
  local x = self.exits[name]
  if x then
    x.proc:close()
    self.exits[name] = nil
  end
end

local function open_journal(self, from_start)
  if self.journal then self.journal:close() end
  self.journal = io.open(self.base .. "/events", "r")
  self.partial = ""
  if self.journal and not from_start then self.journal:seek("end") end
end

local function drain_journal(self, out)
  if not self.journal then return end
  local data = self.journal:read("a")
  if not data or data == "" then return end
  data = self.partial .. data
  local last = 1
  for line, stop in data:gmatch("([^\n]*)\n()") do
    last = stop
    local ok, e = pcall(require("lunas.json").decode, line)
    -- (a freeze the kernel reported already is not reported twice)
    local w = ok and type(e) == "table" and (e.event == "freeze" or e.event == "thaw") and self.frozen[e.name]
    local seen = false
    if w then
      local state = e.event == "freeze" and 1 or 0
      seen = w.reported == state
      w.reported = state
    end
    if ok and type(e) == "table" and type(e.event) == "string" and not seen then
      if e.event == "exit" and e.name then
        -- OOM kills not reported yet go before the exit: the kernel's count if the cgroup is still there, else the
        -- one its lunas read last (a sandbox killed by the OOM killer ends, and its cgroup goes, at once).
        local w = self.oom[e.name]
        if w then check_oom(self, w, out) end
        local reported = w and w.count or 0
        if math.type(e.oom_kills) == "integer" and e.oom_kills > reported then
          out[#out + 1] = { event = "oom_kill", kind = "sandbox", name = e.name, pid = e.pid,
            count = e.oom_kills - reported, total = e.oom_kills, time = e.time }
        end
        unwatch_oom(self, e.name)
        unwatch_frozen(self, e.name)
        unwatch_exit(self, e.name)
      end
      out[#out + 1] = e
      if e.event == "start" and e.name then
        local rec = sandbox_record.read(e.name)
        if rec and rec.pid == e.pid then
          watch_oom(self, e.name, rec)
          watch_frozen(self, e.name, rec, true)
          watch_exit(self, e.name, rec)
        end
      end
    end
  end
  self.partial = data:sub(last)
end

local function lab_up(name)
  local rec = lab_record.read(name)
  return { event = "lab_up", kind = "lab", name = name, pid = rec and rec.pid, time = os.time() }
end

-- Watches the labs' directory; `out`: it was just made, and the records already in it are new (reported).
local function watch_labs(self, out)
  if self.labs_wd then return end
  local wd = core.inotify_add(self.inotify, lab_record.DIR, "moved_to,moved_from,delete,create,onlydir")
  if wd then
    self.labs_wd = wd
    self.by_wd[wd] = { labs = true }
    for _, name in ipairs(out and lab_record.names() or {}) do out[#out + 1] = lab_up(name) end
  end
end

--- Starts watching: events that happen from now on. Raises when there is no place for records (an
-- unprivileged user without XDG_RUNTIME_DIR) or inotify fails.
function M.watch()
  local base = sandbox_record.base()
  if not base then
    errors.raise{ op = "events", code = "ENOENT", msg = "events: no records directory (XDG_RUNTIME_DIR is not set)" }
  end
  errors.check(mkdir(base))
  local self = setmetatable({ base = base, by_wd = {}, oom = {}, frozen = {}, exits = {} }, Watcher)
  -- The journal exists from the first sandbox on; created empty here (before the watch: its creation is no
  -- event) and read from its end.
  local f = io.open(base .. "/events", "a")
  if f then f:close() end
  open_journal(self, false)
  self.inotify = errors.check(core.inotify())
  self.base_wd = errors.check(core.inotify_add(self.inotify, base, "modify,create,moved_to,moved_from,delete,onlydir"))
  if core.ids().euid == 0 then watch_labs(self) end
  for _, rec in ipairs(sandbox_record.list()) do
    if rec.pid and rec.alive then
      watch_oom(self, rec.name, rec)
      watch_frozen(self, rec.name, rec)
      watch_exit(self, rec.name, rec)
    end
  end
  return self
end

--- Watchers of what happens (what `watch` returns).
-- @type Watcher

-- poll takes 256 descriptors at most.
local MAX_FDS = 256

--- The descriptors to poll: the inotify instance, the OOM eventfds, the pidfds (256 at most: beyond, a v1 OOM
-- kill is reported with the exit line, and the exit of a sandbox whose lunas died with it is not seen).
function Watcher:fds()
  local fds, what = { self.inotify }, { false }
  for _, w in pairs(self.oom) do
    if w.eventfd and #fds < MAX_FDS then
      fds[#fds + 1], what[#what + 1] = w.eventfd, { oom = w }
    end
  end
  for name, x in pairs(self.exits) do
    if #fds < MAX_FDS then fds[#fds + 1], what[#what + 1] = x.proc, { exit = name } end
  end
  return fds, what
end

--- Waits (up to timeout seconds; for ever without) until something happens, and returns the events: an array
-- (empty on timeout) of {event = "start" | "exit" | "oom_kill" | "freeze" | "thaw" | "lab_up" | "lab_down",
-- kind = "sandbox" | "lab", name, pid, time (seconds since the epoch), and per event: argv (start); status or
-- signal and signame, elapsed, oom_killed, timed_out, killed (exit; lost = true when its lunas died with it and
-- no status is known); count and total (oom_kill)}.
function Watcher:next(timeout)
  local out = {}
  local fds, what = self:fds()
  local ready = errors.check(core.poll(fds, timeout))
  -- The OOM eventfds first: the journal's exit line, read through the inotify instance, ends their watch.
  table.sort(ready, function(a, b) return (a == 1 and 1 or 0) < (b == 1 and 1 or 0) end)
  for _, i in ipairs(ready) do
    local w = what[i]
    if not w then
      for _, ev in ipairs(core.inotify_read(self.inotify) or {}) do
        local set = {}
        for _, name in ipairs(ev.events) do set[name] = true end
        local target = self.by_wd[ev.wd]
        if ev.wd == self.base_wd then
          if ev.name == "events" then
            if set.modify then drain_journal(self, out)
            elseif set.moved_from or set.delete then
              drain_journal(self, out)
              if self.journal then self.journal:close() end
              self.journal = nil
            elseif (set.create or set.moved_to) and not self.journal then
              -- a new journal (the old one was moved away when it grew): read from its start
              open_journal(self, true)
              drain_journal(self, out)
            end
          elseif ev.name == "labs" and (set.create or set.moved_to) then
            watch_labs(self, out)
          end
        elseif target and target.labs and ev.name and ev.name:sub(1, 1) ~= "." then
          if set.moved_to or set.create then
            out[#out + 1] = lab_up(ev.name)
          elseif set.delete or set.moved_from then
            out[#out + 1] = { event = "lab_down", kind = "lab", name = ev.name, time = os.time() }
          end
        elseif target and target.oom then
          check_oom(self, target.oom, out)
        elseif target and target.frozen then
          check_frozen(self, target.frozen, out)
        end
        if set.ignored and target then self.by_wd[ev.wd] = nil end
        if set.ignored and ev.wd == self.labs_wd then self.labs_wd = nil end
      end
    elseif w.oom then
      w.oom.eventfd:read(8)
      check_oom(self, w.oom, out)
    elseif w.exit then
      local x = self.exits[w.exit]
      -- Its lunas writes the exit line (with the status) unless it died too.
      if x and not require("lunas.process").alive(x.owner.pid, x.owner.start) then
        drain_journal(self, out)
        if self.exits[w.exit] then
          out[#out + 1] = { event = "exit", kind = "sandbox", name = w.exit, pid = x.pid, lost = true, time = os.time() }
          unwatch_oom(self, w.exit)
          unwatch_frozen(self, w.exit)
          unwatch_exit(self, w.exit)
        end
      elseif x then
        -- (the journal line follows: stop polling a pidfd that stays readable)
        x.proc:close()
        self.exits[w.exit] = nil
      end
    end
  end
  return out
end

--- Stops watching. Idempotent.
function Watcher:close()
  if self.closed then return end
  self.closed = true
  for name in pairs(self.oom) do unwatch_oom(self, name) end
  for name in pairs(self.frozen) do unwatch_frozen(self, name) end
  for name in pairs(self.exits) do unwatch_exit(self, name) end
  if self.journal then self.journal:close() end
  self.inotify:close()
end
Watcher.__close = Watcher.close

--- @section end

return M
