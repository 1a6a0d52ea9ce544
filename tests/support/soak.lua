-- The soak recipe (tests/soak_spec.lua runs it with the host binary): SANDBOXES sandboxes, then LAB_CYCLES lab
-- build-and-teardown cycles, all in this one lunas process. Every WINDOW items it prints a JSON line with what
-- it has done and what it holds: open descriptors, resident memory, the Lua heap, live child processes, and the
-- wall time of the window. The spec asserts on the trend.
--
--   lunas tests/support/soak.lua SANDBOXES LAB_CYCLES [WINDOW]
local core = require "lunas.core"
local json = require "lunas.json"
local net = require "lunas.net"

local sandboxes = math.tointeger(tonumber(arg[1])) or 10000
local lab_cycles = math.tointeger(tonumber(arg[2])) or 1000
local window = math.tointeger(tonumber(arg[3])) or 100

local function status_kib(field)
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match("\n" .. field .. ":%s*(%d+)"))
end

local function children()
  local pid = core.getpid()
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  local text = f and f:read("a") or ""
  if f then f:close() end
  local n = 0
  for _ in text:gmatch("%d+") do n = n + 1 end
  return n
end

local function sample(phase, done, seconds)
  collectgarbage()
  io.stdout:write(json.encode{ phase = phase, done = done, seconds = seconds, fds = #core.listdir("/proc/self/fd"),
    rss_kib = status_kib("VmRSS"), lua_kib = math.floor(collectgarbage("count")), children = children() }, "\n")
  io.stdout:flush()
end

-- The same mix, item after item: a default sandbox (host / read-only, fresh /proc, /dev and /tmp, every
-- namespace, the default seccomp profile), and every fifth one with cgroup limits.
local plain = { argv = { "/bin/true" } }
local limited = { argv = { "/bin/true" }, limits = { memory = "64M", pids = 16 } }

local function run_sandbox(i)
  local result = lunas.sandbox(i % 5 == 0 and limited or plain):run()
  if result.status ~= 0 then error(("sandbox %d: exit status %s"):format(i, tostring(result.status))) end
end

-- A small lab: two hosts on a switch, a router with a rate-limited link to a third host, addresses, a process
-- started in a host; torn down when its scope ends.
local function lab_cycle()
  local lab <close> = net.lab{ name = "soak" }
  local s = lab:switch("s")
  local a, b, r, c = lab:host("sa"), lab:host("sb"), lab:router("sr"), lab:host("sc")
  lab:link(a, s)
  lab:link(b, s)
  lab:link(r, s)
  lab:link(r, c, { rate = "10mbit" })
  a:addr("eth0", "10.70.0.1/24")
  b:addr("eth0", "10.70.0.2/24")
  r:addr("eth0", "10.70.0.254/24"):addr("eth1", "10.71.0.254/24")
  c:addr("eth0", "10.71.0.1/24"):route("default", "10.71.0.254")
  c:spawn{ "sleep", "30" }
end

local function phase(name, count, item)
  sample(name, 0, 0)
  local started = core.now()
  for i = 1, count do
    item(i)
    if i % window == 0 then
      sample(name, i, core.now() - started)
      started = core.now() -- (the sample's own work is not the items')
    end
  end
end

phase("sandbox", sandboxes, run_sandbox)
phase("lab", lab_cycles, lab_cycle)
