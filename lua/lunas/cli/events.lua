--- `lunas events [--json] [--sandboxes | --labs] [NAME...]`: what happens to sandboxes and labs, as it happens.
local monitor = require "lunas.monitor"
local json = require "lunas.json"
local cli = require "lunas.cli"
local ps = require "lunas.cli.ps"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local HELP = [==[
usage: lunas events [--json] [--count N] [--timeout SECONDS] [--sandboxes | --labs] [NAME...]

Prints what happens to sandboxes and labs from now on, one line each, until interrupted (or --count, --timeout):
  start      a recorded sandbox started (lunas run, or a recipe's named sandbox): its pid and command
  exit       it ended: status=N or signal=NAME, after how long; oom (the OOM killer killed its command),
             timed-out, killed (its lunas killed it unwaited), lost (its lunas died with it: no status)
  oom_kill   the OOM killer killed a process of the sandbox (its cgroup's memory limit: --memory)
  freeze     it was frozen (Running:freeze()), thaw: it runs again
  lab_up     a lab's record appeared (lunas lab up, or a recipe's lab with persisted namespaces)
  lab_down   it was removed
Nothing is polled: lunas waits in poll(2) for the kernel: inotify on the records and on the journal of starts
and exits their lunas append to (/run/lunas/events), on memory.events (cgroup v2) or an eventfd registered in
memory.oom_control (v1), and pidfds of the sandboxes.
  --json            one JSON object per line: {"event", "kind", "name", "pid", "time", "status", "signal",
                    "signame", "elapsed", "oom_killed", "count", "total", "argv", ...}
  --count N         stop after N events          --timeout SECONDS   stop after SECONDS
  --sandboxes       sandboxes only               --labs              labs only
Exit status: 0 after --count or --timeout; 1 when the records cannot be watched; 2 for bad usage; SIGINT or
SIGTERM ends it by that signal (128+N).]==]

local function line_of(e)
  local parts = { os.date("!%Y-%m-%dT%H:%M:%SZ", e.time or os.time()), e.event, e.kind or "-", e.name or "-" }
  if e.pid then parts[#parts + 1] = "pid=" .. e.pid end
  if e.event == "start" and type(e.argv) == "table" then parts[#parts + 1] = "command=" .. ps.command(e) end
  if e.event == "exit" then
    if e.signal then parts[#parts + 1] = "signal=" .. (e.signame or e.signal)
    elseif e.status then parts[#parts + 1] = "status=" .. e.status end
    if type(e.elapsed) == "number" then parts[#parts + 1] = ("elapsed=%.3fs"):format(e.elapsed) end
    if e.oom_killed then parts[#parts + 1] = "oom" end
    if e.timed_out then parts[#parts + 1] = "timed-out" end
    if e.killed then parts[#parts + 1] = "killed" end
    if e.lost then parts[#parts + 1] = "lost" end
  end
  if e.event == "oom_kill" then parts[#parts + 1] = ("count=%s total=%s"):format(tostring(e.count), tostring(e.total)) end
  return table.concat(parts, " ")
end

function M.main(args)
  if cli.asks_help(args) then
    print(HELP)
    return 0
  end
  local bad
  local opts, msg = ps.parse(args, {
    ["--count"] = function(o, v)
      if not v then return nil end
      o.count = math.tointeger(tonumber(v))
      if not o.count or o.count < 1 then bad = "--count: a positive integer expected, got '" .. v .. "'" end
      return 1
    end,
    ["--timeout"] = function(o, v)
      if not v then return nil end
      o.timeout = tonumber(v)
      if not o.timeout or o.timeout < 0 then bad = "--timeout: seconds expected, got '" .. v .. "'" end
      return 1
    end,
  })
  if not opts then return cli.usage_error("events", msg) end
  if bad then return cli.usage_error("events", bad) end
  local wanted
  if #opts.names > 0 then
    wanted = {}
    for _, n in ipairs(opts.names) do wanted[n] = true end
  end
  local watcher, err = errors.try(monitor.watch)
  if not watcher then
    io.stderr:write("lunas events: ", tostring(err), "\n")
    return 1
  end
  local seen = 0
  local deadline = opts.timeout and (require("lunas.core").now() + opts.timeout)
  io.stdout:setvbuf("line")
  local ok, werr = pcall(function()
    while true do
      local left = deadline and math.max(0, deadline - require("lunas.core").now())
      if left == 0 then return end
      for _, e in ipairs(watcher:next(left)) do
        if (not opts.kind or e.kind == opts.kind) and (not wanted or wanted[e.name]) then
          io.stdout:write(opts.json and json.encode(e) or line_of(e), "\n")
          seen = seen + 1
          if opts.count and seen >= opts.count then return end
        end
      end
    end
  end)
  watcher:close()
  if not ok then
    -- (lunas then ends by that signal, as every command does)
    if require("lunas.interrupt").is(werr) then error(werr, 0) end
    io.stderr:write("lunas events: ", tostring(werr), "\n")
    return 1
  end
  return 0
end

return M
