--- `lunas stats [--json | --prometheus [--output FILE]] [--interval S] [--sandboxes | --labs] [NAME...]`: one
-- snapshot of what the recorded sandboxes and labs use.
local monitor = require "lunas.monitor"
local json = require "lunas.json"
local cli = require "lunas.cli"
local ps = require "lunas.cli.ps"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local HELP = [==[
usage: lunas stats [--json | --prometheus [--output FILE]] [--interval SECONDS] [--sandboxes | --labs] [NAME...]

One snapshot of what the running sandboxes and labs use (those lunas ps lists): CPU share (100% = one core
busy, over --interval), CPU seconds, memory now and at its peak, memory limit, processes, bytes and packets
received and sent through their own interfaces (lo aside), and OOM kills.
  --json           an array of lunas ps --json's objects, with cpu_percent, rx_rate and tx_rate (bytes/s)
  --prometheus     the Prometheus text exposition format (0.0.4): lunas_sandbox_cpu_seconds_total{name="..."},
                   lunas_sandbox_memory_bytes, ..._network_receive_bytes_total, lunas_lab_* and the like,
                   with HELP and TYPE lines (counters and gauges, no rates: Prometheus computes those)
  --output FILE    write there instead of stdout, atomically (a temporary file renamed over FILE): point it at
                   the directory node_exporter's textfile collector reads, as FILE.prom, from a timer
  --interval S     seconds between the two samples the CPU share and rates come from (default 1; 0: none)
  --sandboxes      sandboxes only        --labs   labs only
Exit status: 0; 1 when FILE cannot be written; 2 for bad usage.]==]

function M.main(args)
  if cli.asks_help(args) then
    print(HELP)
    return 0
  end
  local opts, msg = ps.parse(args, {
    ["--prometheus"] = function(o) o.prometheus = true return 0 end,
    ["--output"] = function(o, v) if not v then return nil end o.output = v return 1 end,
    ["--interval"] = function(o, v)
      if not v then return nil end
      o.interval = tonumber(v)
      if not o.interval or o.interval < 0 or o.interval > 3600 then o.bad_interval = v end
      return 1
    end,
  })
  if not opts then return cli.usage_error("stats", msg) end
  if opts.bad_interval then return cli.usage_error("stats", "--interval: seconds (0 to 3600) expected, got '" .. opts.bad_interval .. "'") end
  if opts.json and opts.prometheus then return cli.usage_error("stats", "--json and --prometheus go apart") end
  if opts.output and not opts.prometheus and not opts.json then
    return cli.usage_error("stats", "--output goes with --prometheus or --json")
  end
  if opts.output == "" then return cli.usage_error("stats", "--output: a file name expected") end
  local filter = { kind = opts.kind, names = opts.names }
  local sample
  local interval = opts.interval or 1
  if opts.prometheus or interval == 0 then
    sample = monitor.snapshot(filter)
  else
    local first = monitor.snapshot(filter)
    monitor.sleep(interval)
    sample = monitor.rates(first, monitor.snapshot(filter))
  end
  local text
  if opts.prometheus then
    text = monitor.prometheus(sample)
  elseif opts.json then
    local out = {}
    for i, e in ipairs(sample.entries) do
      out[i] = ps.as_data(e)
      out[i].rx_rate, out[i].tx_rate = e.rx_rate, e.tx_rate
    end
    text = json.encode(out, { indent = "  " }) .. "\n"
  else
    local rows = { { "KIND", "NAME", "CPU%", "CPU", "MEM", "PEAK", "LIMIT", "PIDS", "RX", "TX", "RX/s", "TX/s", "OOM" } }
    for _, e in ipairs(sample.entries) do
      rows[#rows + 1] = { e.kind, e.name, e.cpu_percent and ("%.1f"):format(e.cpu_percent) or "-",
        e.cpu_seconds and ("%.2f"):format(e.cpu_seconds) or "-", ps.bytes(e.memory_bytes), ps.bytes(e.memory_peak_bytes),
        ps.bytes(e.memory_limit_bytes), tostring(e.pids or "-"), ps.bytes(e.net and e.net.rx_bytes),
        ps.bytes(e.net and e.net.tx_bytes), e.rx_rate and ps.bytes(e.rx_rate) or "-",
        e.tx_rate and ps.bytes(e.tx_rate) or "-", tostring(e.oom_kills or "-") }
    end
    local right = {}
    for i = 3, 13 do right[i] = true end
    text = cli.format_table(rows, right)
  end
  if opts.output then
    local ok, err = monitor.write_file(opts.output, text)
    if not ok then
      io.stderr:write("lunas stats: ", tostring(err), "\n")
      return 1
    end
    return 0
  end
  io.stdout:write(text)
  return 0
end

return M
