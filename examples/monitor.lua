-- monitor.lua: named sandboxes as lunas ps, top, stats and events see them: their records, their usage from the
-- kernel's own accounts, a collector and a metric of our own in the Prometheus exposition, and the events of
-- their lives as they happen. Run: lunas examples/monitor.lua   (then try lunas top in another terminal while
-- it runs: the two sandboxes are there)
local lunas = require "lunas"
local monitor = require "lunas.monitor"

-- Watching starts before the sandboxes do, so their starts are seen too.
local watcher <close> = monitor.watch()

local busy <close> = lunas.sandbox{ name = "demo-busy",
  argv = { "timeout", "2", "sh", "-c", "while :; do :; done" } }:spawn()
local idle <close> = lunas.sandbox{ name = "demo-idle", argv = { "sleep", "30" } }:spawn()

-- A collector of our own (any area can add one): the descriptors the sandbox's first process holds, and the
-- metric that exposes it.
monitor.add_collector{ name = "open_files", collect = function(entry)
  if entry.kind == "sandbox" and entry.alive then
    entry.open_files = #(lunas.core.listdir("/proc/" .. entry.pid .. "/fd") or {})
  end
end }
monitor.add_metric{ kind = "sandbox", name = "demo_sandbox_open_files", type = "gauge",
  help = "Descriptors open in the sandbox's first process.", value = function(e) return e.open_files end }

-- Two samples half a second apart: the cpu share between them, as lunas stats shows it.
local names = { "demo-busy", "demo-idle" }
local first = monitor.snapshot{ names = names }
monitor.sleep(0.5)
local sample = monitor.rates(first, monitor.snapshot{ names = names })
for _, e in ipairs(sample.entries) do
  print(("%-9s pid %d, %d processes, namespaces %s, cpu %.0f%%, memory %d KiB, %d open files"):format(e.name, e.pid,
    e.pids, table.concat(require("lunas.cli.ps").own_list(e), ","), e.cpu_percent or 0, e.memory_bytes // 1024,
    e.open_files))
end
for line in monitor.prometheus(sample):gmatch("[^\n]+") do
  if line:find("demo_sandbox_open_files", 1, true) then print(line) end
end

-- The busy one ends by itself (timeout's status 124), the idle one by a signal; their exits come with it.
busy:wait()
idle:kill("TERM")
idle:wait()
local exits = 0
while exits < 2 do
  local events = watcher:next(5)
  if #events == 0 then error("no event within 5 s") end
  for _, e in ipairs(events) do
    if e.name == "demo-busy" or e.name == "demo-idle" then
      local how = e.signame and ("signal " .. e.signame) or e.status and ("status " .. e.status) or ""
      print((("event: %s %s %s"):format(e.event, e.name, how):gsub("%s+$", "")))
      if e.event == "exit" then exits = exits + 1 end
    end
  end
end
