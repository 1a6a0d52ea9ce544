--- `lunas top [--interval S] [--sort cpu|memory|pids|network] [--sandboxes | --labs]`: a live view of the
-- sandboxes and labs, refreshed in place on the terminal's alternate screen.
local monitor = require "lunas.monitor"
local core = require "lunas.core"
local cli = require "lunas.cli"
local ps = require "lunas.cli.ps"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"

errors.register_module()

local M = {}

local HELP = [==[
usage: lunas top [--interval SECONDS] [--sort cpu|memory|pids|network] [--sandboxes | --labs] [NAME...]

A live view of the running sandboxes and labs (those lunas ps lists), as systemd-cgtop and docker stats show
them, refreshed in place every --interval seconds (default 1) on the terminal's alternate screen: CPU share
(100% = one core), memory, processes, traffic per second through their own interfaces, uptime, command.
Keys: q quits (also Ctrl-C); c, m, p, n sort by cpu, memory, processes, network; space refreshes now.
The terminal is restored when it quits, also on SIGINT, SIGTERM and SIGHUP. Needs a terminal on stdin and
stdout (lunas stats gives one snapshot without one).
  --interval S     seconds between refreshes (0.2 to 3600)
  --sort KEY       the first sort order: cpu (default), memory, pids or network
  --sandboxes      sandboxes only        --labs   labs only
Exit status: 0; 1 without a terminal; 2 for bad usage.]==]

local SORTS = {
  cpu = function(e) return e.cpu_percent or -1 end,
  memory = function(e) return e.memory_bytes or -1 end,
  pids = function(e) return e.pids or -1 end,
  network = function(e) return (e.rx_rate or 0) + (e.tx_rate or 0) + (e.net and 0 or -1) end,
}
local KEYS = { c = "cpu", m = "memory", p = "pids", n = "network" }

local function fit(text, width)
  if #text > width then return text:sub(1, math.max(0, width)) end
  return text
end

--- The screen for one sample: a list of lines (no escape sequences), at most rows lines of at most cols columns.
function M.render(sample, sort, rows, cols)
  local key = SORTS[sort]
  local entries = {}
  for _, e in ipairs(sample.entries) do entries[#entries + 1] = e end
  table.sort(entries, function(a, b)
    local ka, kb = key(a), key(b)
    if ka ~= kb then return ka > kb end
    return a.name < b.name
  end)
  local counts = { sandbox = 0, lab = 0 }
  local cpu, mem = 0, 0
  for _, e in ipairs(entries) do
    counts[e.kind] = counts[e.kind] + 1
    cpu, mem = cpu + (e.cpu_percent or 0), mem + (e.memory_bytes or 0)
  end
  local lines = {}
  lines[1] = fit(("lunas top - %s - %d sandbox%s, %d lab%s - cpu %.1f%% - memory %s - sorted by %s"):format(
    os.date("%H:%M:%S"), counts.sandbox, counts.sandbox == 1 and "" or "es", counts.lab, counts.lab == 1 and "" or "s",
    cpu, ps.bytes(mem), sort), cols)
  lines[2] = fit("keys: q quit  c cpu  m memory  p pids  n network", cols)
  local table_rows = { { "KIND", "NAME", "PID", "CPU%", "MEM", "PIDS", "RX/s", "TX/s", "UPTIME", "COMMAND" } }
  for _, e in ipairs(entries) do
    table_rows[#table_rows + 1] = { e.kind, e.name, tostring(e.pid or "-"),
      e.cpu_percent and ("%.1f"):format(e.cpu_percent) or "-", ps.bytes(e.memory_bytes), tostring(e.pids or "-"),
      e.rx_rate and ps.bytes(e.rx_rate) or "-", e.tx_rate and ps.bytes(e.tx_rate) or "-", ps.duration(e.uptime),
      ps.command(e) .. (e.frozen and " (frozen)" or "") .. (e.status == "stale" and " (stale)" or "") }
  end
  lines[3] = ""
  local text = cli.format_table(table_rows, { [3] = true, [4] = true, [5] = true, [6] = true, [7] = true, [8] = true,
    [9] = true })
  for line in text:gmatch("([^\n]*)\n") do
    if #lines >= rows then break end
    lines[#lines + 1] = fit(line, cols)
  end
  return lines
end

-- The terminal in raw mode on the alternate screen, the cursor hidden; closing puts everything back.
local function open_screen(input)
  local saved = errors.check(core.tty_raw(input))
  io.stdout:write("\27[?1049h\27[?25l\27[H\27[2J")
  io.stdout:flush()
  return setmetatable({}, { __close = function()
    io.stdout:write("\27[?25h\27[?1049l")
    io.stdout:flush()
    core.tty_restore(input, saved)
  end })
end

function M.main(args)
  if cli.asks_help(args) then
    print(HELP)
    return 0
  end
  local bad
  local opts, msg = ps.parse(args, {
    ["--interval"] = function(o, v)
      if not v then return nil end
      o.interval = tonumber(v)
      if not o.interval or o.interval < 0.2 or o.interval > 3600 then bad = "--interval: seconds (0.2 to 3600) expected, got '" .. v .. "'" end
      return 1
    end,
    ["--sort"] = function(o, v)
      if not v then return nil end
      if not SORTS[v] then bad = "--sort: cpu, memory, pids or network expected, got '" .. v .. "'" end
      o.sort = v
      return 1
    end,
  })
  if not opts then return cli.usage_error("top", msg) end
  if bad then return cli.usage_error("top", bad) end
  if opts.json then return cli.usage_error("top", "--json: lunas stats --json gives a snapshot") end
  if not core.isatty(0) or not core.isatty(1) then
    io.stderr:write("lunas top: needs a terminal (lunas stats gives one snapshot)\n")
    return 1
  end
  local input = errors.check(core.open("/proc/self/fd/0", "r"))
  local sort, interval = opts.sort or "cpu", opts.interval or 1
  local filter = { kind = opts.kind, names = opts.names }
  local ok, err = pcall(function()
    local screen <close> = open_screen(input)
    local previous = monitor.snapshot(filter)
    local last = previous
    local function draw(sample)
      local size = core.tty_winsize(1) or { rows = 24, cols = 80 }
      local rows, cols = size.rows > 0 and size.rows or 24, size.cols > 0 and size.cols or 80
      local lines = M.render(sample, sort, rows, cols)
      -- Home, each line cleared to its end, the rest of the screen cleared: no flicker, no scrolling.
      local out = { "\27[H" }
      for i, line in ipairs(lines) do out[#out + 1] = line .. "\27[K" .. (i < #lines and "\r\n" or "") end
      out[#out + 1] = "\27[J"
      io.stdout:write(table.concat(out))
      io.stdout:flush()
    end
    draw(monitor.rates(previous, previous))
    local next_at = core.now() + interval
    while true do
      local ready = core.poll({ input }, math.max(0, next_at - core.now()))
      local redraw = #ready == 0
      if #ready > 0 then
        local keys = input:read(64)
        if keys == nil or keys == "" then return end
        -- (the keys of escape sequences, arrows and the like, are not commands: ESC [ C is no "c")
        keys = keys:gsub("\27%[[%d;]*[%a~]", ""):gsub("\27O%a", "")
        for k in keys:gmatch(".") do
          if k == "q" or k == "Q" or k == "\3" or k == "\4" then return end
          if KEYS[k:lower()] then
            sort = KEYS[k:lower()]
            draw(last)
          elseif k == " " then
            redraw = true
          end
        end
      end
      if redraw then
        local current = monitor.rates(previous, monitor.snapshot(filter))
        draw(current)
        previous, last = current, current
        next_at = core.now() + interval
      end
    end
  end)
  input:close()
  if not ok then
    if interrupt.is(err) then error(err, 0) end
    io.stderr:write("lunas top: ", tostring(errors.is(err) and err.msg or err), "\n")
    return 1
  end
  return 0
end

return M
