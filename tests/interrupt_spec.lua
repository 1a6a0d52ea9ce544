-- SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to lunas: to `lunas run` (with limits, so there is a cgroup to leave),
-- to a lab recipe, to `lunas lab up`, to `lunas enter`, at several moments (set-up, payload running, teardown).
-- lunas must end what it started and then end by that signal (the shell sees 128+N). What is left is read from
-- outside: /proc (the payload's marker command), the cgroup directories below ours, `ip -j netns` and `ip -j link`,
-- /run/lunas/labs and /run/lunas/userns, /proc/self/mountinfo.

local core = require "lunas.core"
local json = require "lunas.json"
local kernel = require "support.kernel"
local util = require "support.util"

local SIGNALS = { INT = 2, TERM = 15, HUP = 1, QUIT = 3 }

local function ls(dir)
  local names = core.listdir(dir) or {}
  table.sort(names)
  return names
end

-- The names `ip -j ARGS...` lists (field: "name" for netns, "ifname" for links), sorted.
local function ip_names(field, ...)
  local out, code = util.run({ "ip", "-j", ... }, { stderr = false })
  assert.are.equal(0, code, out)
  local names = {}
  for _, e in ipairs(out:match("%S") and json.decode(out) or {}) do names[#names + 1] = e[field] end
  table.sort(names)
  return names
end

local function netns_names() return ip_names("name", "netns", "list") end

local function mounts()
  local n = 0
  for _ in (util.read("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do n = n + 1 end
  return n
end

-- What lunas could leave on this machine, as seen from outside.
local function footprint()
  return { netns = netns_names(), links = ip_names("ifname", "link", "show"), labs = ls("/run/lunas/labs"), ranges = ls("/run/lunas/userns"),
    sandboxes = ls("/run/lunas/sandboxes"), mounts = mounts() }
end

-- Waits until the file holds a line (the recipe's or payload's "ready"), for at most 20 s.
local function wait_ready(path)
  return util.wait_for(function() return (util.read(path) or ""):find("ready", 1, true) end, 20)
end

-- The status of a lunas process, within 30 s: {signal = N} or {status = N}.
local function ended(proc)
  local status = proc:wait(30)
  if not status then
    proc:kill("KILL")
    proc:wait()
    error("lunas did not end within 30 s of the signal")
  end
  return status
end

local function assert_clean(before, proc, marker, what)
  assert.is_true(util.none_running(marker, 10), what .. ": " .. marker .. " survived")
  assert.are.same({}, util.lunas_cgroups(proc.pid), what .. ": cgroup left")
  assert.are.same(before, footprint(), what .. ": something was left")
end

describe("lunas run interrupted #root", function()
  local dir, remove_dir
  before_each(function()
    kernel.requires("userns")
    kernel.requires("cgroup_write")
    dir, remove_dir = util.tmpdir()
  end)
  after_each(function() remove_dir() end)

  for name, number in pairs(SIGNALS) do
    it(("by SIG%s while the payload runs: passes it on, removes the sandbox and its cgroup, ends by it"):format(name),
      function()
        local before = footprint()
        local marker = "sleep " .. (3100 + number)
        -- The payload says, on lunas's stdout (a file the test opened), that it runs and what it got: SIGQUIT is
        -- not passed on (it kills at once), the others are.
        local out = dir .. "/out"
        local proc = util.start_lunas({ "run", "--memory", "64M", "--pids", "32", "--", "sh", "-c",
          ("trap 'echo got-$1; exit 0' %s; echo ready; %s & wait"):format(name, marker), "sh", name }, out,
          dir .. "/err")
        assert.is_truthy(wait_ready(out), util.read(dir .. "/err"))
        proc:kill(name)
        local status = ended(proc)
        proc:close()
        assert.are.equal(number, status.signal, util.read(dir .. "/err"))
        assert.are.equal(name == "QUIT" and "ready\n" or ("ready\ngot-" .. name .. "\n"), util.read(out))
        assert_clean(before, proc, marker, "SIG" .. name)
      end)
  end

  it("kills a payload that ignores the signal once --stop-timeout has passed, and ends by the signal", function()
    local before = footprint()
    local ready = dir .. "/out"
    local proc = util.start_lunas({ "run", "--stop-timeout", "0.5", "--memory", "64M", "--", "sh", "-c",
      "trap '' TERM INT HUP; echo ready; sleep 3201 & wait; wait" }, ready, dir .. "/err")
    assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
    local sent = core.now()
    proc:kill("TERM")
    local status = ended(proc)
    proc:close()
    assert.are.equal(15, status.signal, util.read(dir .. "/err"))
    assert.is_true(core.now() - sent >= 0.5, "killed before the grace period ended")
    assert_clean(before, proc, "sleep 3201", "grace period")
  end)

  it("a second signal during the clean-up ends lunas at once; the sandbox dies with it and gc takes the rest",
    function()
      local before = footprint()
      local ready = dir .. "/out"
      local proc = util.start_lunas({ "run", "--stop-timeout", "60", "--memory", "64M", "--", "sh", "-c",
        "trap '' TERM INT; echo ready; sleep 3202 & wait; wait" }, ready, dir .. "/err")
      assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
      proc:kill("TERM")
      core.poll({ (core.pipe()) }, 0.3)
      local sent = core.now()
      proc:kill("INT")
      local status = ended(proc)
      proc:close()
      assert.are.equal(2, status.signal)
      assert.is_true(core.now() - sent < 5, "the second signal did not end lunas at once")
      -- die-with-parent: the payload goes with lunas; its cgroup is a leftover for gc
      assert.is_true(util.none_running("sleep 3202", 10), "the payload outlived lunas")
      local out, code = util.lunas{ "gc" }
      assert.are.equal(0, code, out)
      assert_clean(before, proc, "sleep 3202", "after gc")
    end)

  it("at any moment of set-up, run and teardown, leaves nothing and ends by the signal", function()
    local before = footprint()
    -- How long a whole run takes here, so the moments land in set-up, run and teardown on any machine.
    local started = core.now()
    local probe = util.start_lunas{ "run", "--memory", "64M", "--", "sh", "-c", "exec sleep 0.2" }
    assert.are.equal(0, ended(probe).status)
    probe:close()
    local whole = core.now() - started
    local by_signal, completed = 0, 0
    for trial = 1, 40 do
      local proc = util.start_lunas{ "run", "--memory", "64M", "--pids", "16", "--", "sh", "-c", "exec sleep 0.2" }
      core.poll({ (core.pipe()) }, whole * (trial - 1) / 35)
      proc:kill("TERM")
      local status = ended(proc)
      proc:close()
      if status.signal then
        assert.are.equal(15, status.signal, "trial " .. trial)
        by_signal = by_signal + 1
      else
        assert.are.equal(0, status.status, "trial " .. trial) -- it had ended before the signal
        completed = completed + 1
      end
      assert.are.same({}, util.lunas_cgroups(proc.pid), ("trial %d: cgroup left"):format(trial))
    end
    assert.is_true(by_signal >= 10, ("only %d of 40 trials were interrupted"):format(by_signal))
    assert.is_true(util.none_running("sleep 0.2", 10))
    assert.are.same(before, footprint())
  end)
end)

describe("lunas run interrupted, by an unprivileged user #rootless", function()
  it("passes SIGTERM on to the payload, leaves no process, and ends by it", function()
    kernel.requires("userns")
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local out = dir .. "/out"
    local proc = util.start_lunas({ "run", "--", "sh", "-c",
      "trap 'echo got-TERM; exit 0' TERM; echo ready; sleep 3150 & wait" }, out, dir .. "/err")
    assert.is_truthy(wait_ready(out), util.read(dir .. "/err"))
    proc:kill("TERM")
    local status = ended(proc)
    proc:close()
    assert.are.equal(15, status.signal, util.read(dir .. "/err"))
    assert.are.equal("ready\ngot-TERM\n", util.read(out))
    assert.is_true(util.none_running("sleep 3150", 10))
    assert.are.same({}, util.lunas_cgroups(proc.pid))
  end)
end)

describe("a lab recipe interrupted #root", function()
  local dir, remove_dir
  before_each(function()
    kernel.requires("cgroup_write")
    dir, remove_dir = util.tmpdir()
  end)
  after_each(function() remove_dir() end)

  local function lab_recipe(extra)
    local path = dir .. "/lab.lua"
    util.write(path, ([[
local net = require "lunas.net"
local core = require "lunas.core"
local lab <close> = net.lab{ name = "stopped", netns_dir = "/run/netns" }
local h1, h2, s1 = lab:host("h1"), lab:host("h2"), lab:switch("s1")
lab:link(h1, s1)
lab:link(h2, s1)
h1:spawn{ "sleep", "3301" }
local cg = lunas.cgroup.new{ limits = { pids = 8 } }
%s
local f = io.open(arg[1], "w") f:write("ready") f:close()
]]):format(extra))
    return path
  end

  for _, case in ipairs{
    { signal = "TERM", how = "blocked in a wait", code = [[lab:host("h3"):run{ "sleep", "3302" }]] },
    { signal = "INT", how = "blocked in a read", code = [[local r = core.pipe() r:read()]] },
    { signal = "HUP", how = "in a loop of its own", code = [[while true do end]] },
  } do
    it(("by SIG%s %s: closes the lab, its processes and the recipe's cgroup, and ends by the signal"):format(
      case.signal, case.how), function()
      local before = footprint()
      local ready = dir .. "/ready"
      local recipe = lab_recipe("local f = io.open(arg[1], 'w') f:write('ready') f:close()\n" .. case.code)
      local proc = util.start_lunas({ recipe, ready }, nil, dir .. "/err")
      assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
      proc:kill(case.signal)
      local status = ended(proc)
      proc:close()
      assert.are.equal(SIGNALS[case.signal], status.signal, util.read(dir .. "/err"))
      assert.matches("interrupted by SIG" .. case.signal, util.read(dir .. "/err"))
      assert.is_true(util.none_running("sleep 3302", 10))
      assert_clean(before, proc, "sleep 3301", case.how)
    end)
  end

  it("lets a recipe catch the interruption and clean up its own things; lunas still ends by the signal", function()
    local before = footprint()
    local ready, note = dir .. "/ready", dir .. "/note"
    local recipe = lab_recipe(([[
local ok, err = lunas.try(function()
  local f = io.open(arg[1], "w") f:write("ready") f:close()
  lab:host("h3"):run{ "sleep", "3303" }
end)
local f = io.open(%q, "w") f:write(tostring(err.msg), " ", tostring(err.signal)) f:close()
]]):format(note))
    local proc = util.start_lunas({ recipe, ready }, nil, dir .. "/err")
    assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
    proc:kill("TERM")
    local status = ended(proc)
    proc:close()
    assert.are.equal(15, status.signal, util.read(dir .. "/err"))
    assert.are.equal("interrupted by SIGTERM TERM", util.read(note))
    assert_clean(before, proc, "sleep 3303", "caught")
  end)

  it("unpersists the namespaces the recipe persisted, but not one it keeps", function()
    local before = footprint()
    local ready = dir .. "/ready"
    local recipe = dir .. "/persist.lua"
    util.write(recipe, [[
local ns = require "lunas.ns"
local core = require "lunas.core"
local p = lunas.spawn{ flags = "net", fn = function()
  core.prctl{ pdeathsig = "KILL" }
  core.poll({ (core.pipe()) })
end }
local h = ns.open("net", p.pid)
ns.persist(h, "lunas-int-dropped")
ns.persist(h, "lunas-int-kept", { keep = true })
local f = io.open(arg[1], "w") f:write("ready") f:close()
lunas.wait(p)
]])
    local proc = util.start_lunas({ recipe, ready }, nil, dir .. "/err")
    finally(function() core.unpersist("/run/netns/lunas-int-kept") end)
    assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
    proc:kill("TERM")
    local status = ended(proc)
    proc:close()
    assert.are.equal(15, status.signal, util.read(dir .. "/err"))
    local names = netns_names()
    assert.are.same({ "lunas-int-kept" }, names)
    assert.is_true(core.unpersist("/run/netns/lunas-int-kept"))
    assert.are.same(before, footprint())
  end)
end)

describe("a lab build interrupted at any moment #root", function()
  it("by a recipe or lab up: leaves no namespace, link, record, process or cgroup, and ends by the signal", function()
    kernel.requires("cgroup_write")
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local before = footprint()
    local recipe = dir .. "/build.lua"
    util.write(recipe, [[
local net = require "lunas.net"
local lab <close> = net.lab{ name = "sweep", netns_dir = "/run/netns" }
local s1 = lab:switch("s1")
for i = 1, 12 do
  local h = lab:host("h" .. i)
  lab:link(h, s1)
  h:addr("eth0", "10.9.0." .. i .. "/24")
end
lab.nodes.h1:spawn{ "sleep", "3451" }
]])
    local started = core.now()
    local probe = util.start_lunas({ recipe }, nil, dir .. "/err")
    assert.are.equal(0, ended(probe).status, util.read(dir .. "/err"))
    probe:close()
    local whole = core.now() - started
    local by_signal = 0
    for trial = 1, 40 do
      -- odd trials run the recipe, even ones `lunas lab up` it (a lab up that completes keeps the lab)
      local up = trial % 2 == 0
      local proc = util.start_lunas(up and { "lab", "up", recipe } or { recipe }, dir .. "/out", dir .. "/err")
      -- each signal, for each of the two, at moments spread from before the build to after it
      local name = ({ "INT", "TERM", "HUP", "QUIT" })[(trial - 1) // 2 % 4 + 1]
      core.poll({ (core.pipe()) }, whole * ((trial - 1) // 2) / 16)
      proc:kill(name)
      local status = ended(proc)
      proc:close()
      if status.signal then
        by_signal = by_signal + 1
        assert.are.equal(SIGNALS[name], status.signal, "trial " .. trial)
        -- lab up reports the labs it keeps: only those are up (the signal came after), and nothing else is
        if up and (util.read(dir .. "/out") or ""):find("lab sweep:", 1, true) then
          local out, code = util.lunas{ "lab", "down", "sweep" }
          assert.are.equal(0, code, ("trial %d: %s"):format(trial, out))
        end
      else
        assert.are.equal(0, status.status, ("trial %d: %s"):format(trial, util.read(dir .. "/err")))
        if up then
          local out, code = util.lunas{ "lab", "down", "sweep" }
          assert.are.equal(0, code, ("trial %d: %s"):format(trial, out))
        end
      end
      assert.is_true(util.none_running("sleep 3451", 10), "trial " .. trial)
      assert.are.same(before, footprint(), "trial " .. trial .. " left something")
    end
    assert.is_true(by_signal >= 16, ("only %d of 40 builds were interrupted"):format(by_signal))
  end)
end)

describe("lunas lab up interrupted #root", function()
  it("during the build: removes what the recipe built and ends by the signal", function()
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local before = footprint()
    local ready = dir .. "/ready"
    local recipe = dir .. "/up.lua"
    util.write(recipe, ([[
local net = require "lunas.net"
local lab <close> = net.lab{ name = "halfway", netns_dir = "/run/netns" }
local h1, s1 = lab:host("h1"), lab:switch("s1")
lab:link(h1, s1)
h1:spawn{ "sleep", "3401" }
local f = io.open(%q, "w") f:write("ready") f:close()
lab:host("h2"):run{ "sleep", "3402" }
]]):format(ready))
    local proc = util.start_lunas({ "lab", "up", recipe }, nil, dir .. "/err")
    assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
    proc:kill("TERM")
    local status = ended(proc)
    proc:close()
    assert.are.equal(15, status.signal, util.read(dir .. "/err"))
    assert.matches("removed what the recipe built", util.read(dir .. "/err"))
    assert.is_true(util.none_running("sleep 3402", 10))
    assert_clean(before, proc, "sleep 3401", "lab up")
  end)
end)

describe("lunas enter interrupted #root", function()
  it("passes SIGTERM on to the command it started and ends by it", function()
    local cleanup = util.cleanups(finally)
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    local target = assert(core.spawn{ flags = "uts", fn = function() core.poll({ (core.pipe()) }) end })
    cleanup(function()
      target:kill("KILL")
      target:wait()
      target:close()
    end)
    local ready = dir .. "/ready"
    local proc = util.start_lunas({ "enter", tostring(target.pid), "--uts", "--", "sh", "-c",
      ("trap 'kill $!; echo got-TERM > %s; exit 0' TERM; echo ready > %s; sleep 3501 & wait"):format(dir .. "/got",
        ready) },
      nil, dir .. "/err")
    assert.is_truthy(wait_ready(ready), util.read(dir .. "/err"))
    proc:kill("TERM")
    local status = ended(proc)
    proc:close()
    assert.are.equal(15, status.signal, util.read(dir .. "/err"))
    assert.are.equal("got-TERM\n", util.read(dir .. "/got"))
    assert.is_true(util.none_running("sleep 3501", 10))
  end)
end)

describe("the core's blocking calls #root", function()
  it("wake up for an interruption: poll, fd:read, process:wait, fd:lock raise it where the recipe waits", function()
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    for _, case in ipairs{
      { what = "poll", code = "core.poll({ (core.pipe()) })" },
      { what = "read", code = "local r = core.pipe() r:read()" },
      { what = "wait", code = "local p = lunas.spawn{ argv = { 'sleep', '3601' } } p:wait()" },
      { what = "lock", code = "local f = core.open(%q, 'w') f:lock() local g = core.open(%q, 'w') g:lock()" },
    } do
      local ready = dir .. "/ready-" .. case.what
      local recipe = dir .. "/" .. case.what .. ".lua"
      local code = case.code:format(dir .. "/lockfile", dir .. "/lockfile")
      util.write(recipe, ("local core = lunas.core\nlocal f = io.open(arg[1], 'w') f:write('ready') f:close()\n%s\n")
        :format(code))
      local proc = util.start_lunas({ recipe, ready }, nil, dir .. "/err")
      assert.is_truthy(wait_ready(ready), case.what)
      core.poll({ (core.pipe()) }, 0.2) -- let it block
      proc:kill("INT")
      local status = ended(proc)
      proc:close()
      assert.are.equal(2, status.signal, case.what .. ": " .. (util.read(dir .. "/err") or ""))
      assert.matches(case.what .. "%.lua:3: interrupted by SIGINT", util.read(dir .. "/err"))
      for _, pid in ipairs(util.processes_running("sleep 3601")) do core.kill(pid, "KILL") end
    end
  end)
end)
