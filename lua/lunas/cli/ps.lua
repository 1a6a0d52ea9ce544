--- `lunas ps [--json] [--sandboxes | --labs] [NAME...]`: the running sandboxes and labs (their records) with
-- what they use. Also the formatting `lunas top` and `lunas stats` share.
local monitor = require "lunas.monitor"
local json = require "lunas.json"
local cli = require "lunas.cli"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local HELP = [==[
usage: lunas ps [--json] [--sandboxes | --labs] [NAME...]

Lists the sandboxes and labs that run (their records under /run/lunas, or $XDG_RUNTIME_DIR/lunas for a user
other than root): every sandbox `lunas run` started (named run-PID unless --name named it), every sandbox a
recipe named (name = "..."), every lab whose namespaces persist.
Columns: KIND, NAME, PID (the sandbox's first process; the lab's maker), STATUS (running; stale: its lunas
died, lunas gc removes the record; lab: up, building, in use, stale), UPTIME, CPU (seconds used), MEM (the
cgroup's charge, else the resident memory of its processes), PIDS (processes), RX and TX (bytes through its
own interfaces, lo aside), NS (the namespaces it made), COMMAND (a lab: its hosts).
Usage comes from the sandbox's cgroup when it has one (--memory, --pids, --cpu...), else from /proc (the
processes of its pid namespace); traffic from netlink inside its network namespace.
  --json        an array of {kind, name, pid, owner, status, uptime, cpu_seconds, memory_bytes,
                memory_peak_bytes, pids, net = {rx_bytes, tx_bytes, rx_packets, tx_packets, interfaces},
                namespaces = {kind = inode}, own = [kinds], argv, cgroup, frozen, source}
  --sandboxes   sandboxes only        --labs   labs only
Exit status: 0; 2 for bad usage.]==]

--- 1.5K, 12.0M...
function M.bytes(n)
  if type(n) ~= "number" then return "-" end
  local units = { "B", "K", "M", "G", "T", "P" }
  local i = 1
  while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
  return i == 1 and ("%d%s"):format(n, units[i]) or ("%.1f%s"):format(n, units[i])
end

--- 45s, 3m05s, 2h07m, 3d04h.
function M.duration(s)
  if type(s) ~= "number" then return "-" end
  s = math.floor(s)
  if s < 60 then return s .. "s" end
  if s < 3600 then return ("%dm%02ds"):format(s // 60, s % 60) end
  if s < 86400 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  return ("%dd%02dh"):format(s // 86400, s % 86400 // 3600)
end

local NS_ORDER = { "user", "pid", "mount", "net", "uts", "ipc", "cgroup", "time" }
local NS_SHORT = { mount = "mnt" }

--- The namespaces an entry made, in a fixed order: {"user", "pid", ...}.
function M.own_list(entry)
  local out = {}
  for _, k in ipairs(NS_ORDER) do
    if entry.own and entry.own[k] then out[#out + 1] = k end
  end
  return out
end

local function ns_text(entry)
  local out = {}
  for _, k in ipairs(M.own_list(entry)) do out[#out + 1] = NS_SHORT[k] or k end
  return #out > 0 and table.concat(out, ",") or "-"
end

--- What an entry runs: its command line (a sandbox) or its hosts (a lab).
function M.command(entry)
  if entry.kind == "lab" then
    return ("%d host%s, %d process%s"):format(entry.hosts or 0, entry.hosts == 1 and "" or "s",
      entry.processes or 0, entry.processes == 1 and "" or "es")
  end
  if type(entry.argv) ~= "table" then return "-" end
  local parts = {}
  for i, a in ipairs(entry.argv) do
    parts[i] = a:find("[%s'\"\\]") and ("'" .. a:gsub("'", "'\\''") .. "'") or a
  end
  return (table.concat(parts, " "):gsub("[%c]", "?"))
end

--- An entry as plain data for --json (the fields of lunas.monitor.snapshot, own as a list).
function M.as_data(e)
  local own = M.own_list(e)
  return { kind = e.kind, name = e.name, pid = e.pid or json.null, owner = e.owner or json.null, status = e.status,
    uptime = e.uptime or json.null, cpu_seconds = e.cpu_seconds or json.null, cpu_percent = e.cpu_percent,
    memory_bytes = e.memory_bytes or json.null, memory_peak_bytes = e.memory_peak_bytes or json.null,
    memory_limit_bytes = e.memory_limit_bytes, pids = e.pids or json.null, net = e.net or json.null,
    namespaces = e.namespaces, own = own, argv = e.argv, cgroup = e.cgroup
    and e.cgroup.path, frozen = e.frozen, oom_kills = e.oom_kills, hosts = e.hosts, processes = e.processes,
    source = e.source, firewall = e.firewall, errors = e.errors }
end

--- Parses the options ps and stats share; returns opts {json, kind, names} or nil, message.
function M.parse(args, extra)
  local opts = { names = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--json" then opts.json = true
    elseif a == "--sandboxes" then opts.kind = "sandbox"
    elseif a == "--labs" then opts.kind = "lab"
    elseif extra and extra[a] then
      local n = extra[a](opts, args[i + 1])
      if n == nil then return nil, a .. " needs a value" end
      i = i + n
    elseif a:sub(1, 1) == "-" then return nil, "unknown option '" .. a .. "'"
    else opts.names[#opts.names + 1] = a
    end
    i = i + 1
  end
  return opts
end

function M.main(args)
  if cli.asks_help(args) then
    print(HELP)
    return 0
  end
  local opts, msg = M.parse(args)
  if not opts then return cli.usage_error("ps", msg) end
  local sample = monitor.snapshot{ kind = opts.kind, names = opts.names }
  if opts.json then
    local out = {}
    for i, e in ipairs(sample.entries) do out[i] = M.as_data(e) end
    io.stdout:write(json.encode(out, { indent = "  " }), "\n")
    return 0
  end
  local rows = { { "KIND", "NAME", "PID", "STATUS", "UPTIME", "CPU", "MEM", "PIDS", "RX", "TX", "NS", "COMMAND" } }
  for _, e in ipairs(sample.entries) do
    rows[#rows + 1] = { e.kind, e.name, tostring(e.pid or "-"), e.status or "-", M.duration(e.uptime),
      e.cpu_seconds and ("%.2f"):format(e.cpu_seconds) or "-", M.bytes(e.memory_bytes), tostring(e.pids or "-"),
      M.bytes(e.net and e.net.rx_bytes), M.bytes(e.net and e.net.tx_bytes), ns_text(e), M.command(e) }
  end
  io.stdout:write(cli.format_table(rows, { [3] = true, [5] = true, [6] = true, [7] = true, [8] = true, [9] = true,
    [10] = true }))
  return 0
end

return M
