-- Faults: set-up failing at each step in turn, payloads that fork, ignore SIGTERM or leave daemons, and lunas
-- killed (SIGKILL) at random moments of a sandbox's set-up and of a lab's build. Afterwards nothing of the
-- sandbox or lab may be left, read from outside: /proc (processes, our descriptors, our mount table), the cgroup
-- directories below our own, /run/netns and /run/lunas/labs.
--
-- LUNAS_FAULT_TRIALS sets the number of SIGKILL trials of each kind (default 200).

local core = require "lunas.core"
local lunas = require "lunas"
local sandbox = require "lunas.sandbox"
local cgroup = require "lunas.cgroup"
local json = require "lunas.json"
local kernel = require "support.kernel"
local util = require "support.util"

local TRIALS = tonumber(os.getenv("LUNAS_FAULT_TRIALS") or "") or 200

local function count_lines(text)
  local n = 0
  for _ in (text or ""):gmatch("[^\n]+") do n = n + 1 end
  return n
end

local function open_fds()
  return #core.listdir("/proc/self/fd")
end

-- Our direct children, as the kernel lists them.
local function children()
  local pid = core.getpid()
  return util.read(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
end

local own_cgroups, processes_running, none_running = util.lunas_cgroups, util.processes_running, util.none_running

-- Starts the host binary with argv, output to /dev/null; returns the process handle.
local function start_lunas(argv)
  return util.start_lunas(argv)
end

-- The median time (seconds) from starting lunas with argv to its exit, over `runs` runs; after(i) runs after each.
-- The kill trials draw their moments from this, so that they land before, during and after the work on a
-- machine of any speed (a fixed window missed the set-up on a slow CI machine, and the whole build under TCG).
local function whole_run_time(argv, runs, after)
  local times = {}
  for i = 1, runs do
    local started = core.now()
    local proc = start_lunas(argv)
    local result = assert(proc:wait())
    times[#times + 1] = core.now() - started
    proc:close()
    assert.are.equal(0, result.status, "calibration run of lunas " .. table.concat(argv, " "))
    if after then after(i) end
  end
  table.sort(times)
  return times[(#times + 1) // 2]
end

local function ls(dir)
  local names = core.listdir(dir) or {}
  table.sort(names)
  return table.concat(names, " ")
end

-- Everything a sandbox could leave in or around this process.
local function footprint()
  -- Descriptors held only by garbage (an earlier spec's objects) close when it is collected: not this test's leaks.
  collectgarbage()
  collectgarbage()
  return { fds = open_fds(), mounts = count_lines(util.read("/proc/self/mountinfo")), cgroups = own_cgroups(core.getpid()),
    netns = ls("/run/netns"), children = children() }
end

describe("faults: set-up failing at each step #root", function()
  after_each(function() sandbox._inject() end)

  it("fails at every phase of every step with that step named, and leaves nothing behind", function()
    kernel.requires("userns")
    kernel.requires("cgroup_write")
    local spec = { argv = { "/bin/true" }, hostname = "faulty", limits = { memory = "64M", pids = 64 },
      rlimits = { nofile = 128 }, landlock = { ro = { "/" } }, cwd = "/", timeout = 10 }
    -- once first, so that lazily opened things (the reaper image, the seccomp program) are not counted as leaks
    assert.are.equal(0, lunas.sandbox(spec):run().status)
    local before = footprint()
    local tried = 0
    for _, step in ipairs(sandbox.steps) do
      for _, phase in ipairs{ "prepare", "parent", "init", "payload" } do
        if step[phase] then
          sandbox._inject(step.name, phase)
          local ok, err = pcall(function() return lunas.sandbox(spec):run() end)
          sandbox._inject()
          local where = step.name .. " at " .. phase
          assert.is_false(ok, where .. ": the sandbox ran")
          assert.is_true(lunas.is_error(err), where .. ": " .. tostring(err))
          assert.are.equal(step.name, err.step, where .. ": " .. tostring(err))
          assert.matches("^sandbox: " .. step.name:gsub("%p", "%%%0") .. ": injected failure", err.msg)
          assert.are.equal("EIO", err.code)
          assert.are.same(before, footprint(), where .. " left something")
          tried = tried + 1
        end
      end
    end
    -- every step, at least once (the count grows with the steps; here it proves the loop ran)
    assert.is_true(tried >= #sandbox.steps, ("only %d injections for %d steps"):format(tried, #sandbox.steps))
  end)
end)

describe("faults: payloads that outstay their welcome #root", function()
  it("leaves no forked child, TERM-ignoring process or daemon once the sandbox ends", function()
    kernel.requires("userns")
    local script = [[
trap '' TERM
(setsid sh -c 'trap "" TERM HUP; exec sleep 3001' >/dev/null 2>&1 &)
(trap '' TERM; exec sleep 3002) &
sleep 3003 &
exit 0]]
    local result = lunas.sandbox{ argv = { "/bin/sh", "-c", script } }:run()
    assert.are.equal(0, result.status)
    for _, marker in ipairs{ "sleep 3001", "sleep 3002", "sleep 3003" } do
      assert.is_truthy(none_running(marker), marker .. " survived its sandbox")
    end
    -- through the binary, a payload that ignores TERM is killed at its timeout, with its daemon
    local out, code = util.lunas{ "run", "--timeout", "0.3", "--", "/bin/sh", "-c",
      "trap '' TERM; (setsid sh -c 'trap \"\" TERM; exec sleep 3004' >/dev/null 2>&1 &); exec sleep 3005" }
    assert.are.equal(124, code, out)
    assert.is_truthy(none_running("sleep 3004"), "the daemon survived the timeout")
    assert.is_truthy(none_running("sleep 3005"), "the payload survived the timeout")
  end)
end)

describe("faults: lunas killed during set-up #root", function()
  it(("leaves no payload and, once lunas gc has run, no cgroup (%d trials)"):format(TRIALS), function()
    kernel.requires("userns")
    math.randomseed(os.time())
    local cleanup = util.cleanups(finally)
    cleanup(function() util.lunas{ "gc" } end)
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    -- --json-status writes its first line once the payload runs: from outside, the mark of a kill after set-up
    local function run_argv(status_file, payload)
      local argv = { "run", "--memory", "64M", "--pids", "32", "--json-status", status_file, "--" }
      for _, a in ipairs(payload) do argv[#argv + 1] = a end
      return argv
    end
    -- a whole sandbox, from exec to its end, with a payload that does nothing: the set-up is nearly all of it
    local whole = whole_run_time(run_argv(dir .. "/calibration", { "true" }), 5)
    local killed_early, killed_after = 0, 0
    for trial = 1, TRIALS do
      local marker = "sleep " .. (4000 + trial)
      local status_file = ("%s/status.%d"):format(dir, trial)
      local proc = start_lunas(run_argv(status_file, { "sleep", tostring(4000 + trial) }))
      -- kill anywhere from before set-up starts to a while after the payload runs
      core.poll({ (core.pipe()) }, math.random() * whole * 1.5)
      proc:kill("KILL")
      proc:wait()
      proc:close()
      if (util.read(status_file) or ""):find("payload-pid", 1, true) then
        killed_after = killed_after + 1
      else
        killed_early = killed_early + 1
      end
      assert.is_truthy(none_running(marker, 10), ("trial %d: the payload outlived lunas"):format(trial))
      -- Everything the sandbox started dies with lunas (die-with-parent): its cgroup empties, then gc may take it.
      assert.is_truthy(util.wait_for(function()
        for _, cg in ipairs(own_cgroups(proc.pid)) do
          if (util.read(cg .. "/cgroup.procs") or "") ~= "" then return false end
        end
        return true
      end, 10), ("trial %d: processes of the sandbox outlived lunas"):format(trial))
      local out, code = util.lunas{ "gc" }
      assert.are.equal(0, code, out)
      assert.are.same({}, own_cgroups(proc.pid), ("trial %d: cgroup left after gc"):format(trial))
      -- (the sandbox's record too, finished or half made: lunas run records every sandbox)
      assert.are.equal("", ls("/run/lunas/sandboxes"), ("trial %d: record left after gc"):format(trial))
      assert.are.equal("", children())
    end
    -- Both kinds of moment must be hit for the trials to prove anything.
    assert.is_true(killed_early > 0 and killed_after > 0,
      ("%d kills before the payload ran, %d after (a sandbox takes %.1f ms here)"):format(killed_early,
        killed_after, whole * 1000))
    print(("\n  %d kills before the payload ran, %d after (a whole sandbox: %.1f ms)"):format(killed_early,
      killed_after, whole * 1000))
  end)
end)

describe("faults: lunas killed during a lab build #root", function()
  it(("leaves nothing once lunas gc has run (%d trials)"):format(TRIALS), function()
    local dir, remove_dir = util.tmpdir()
    local cleanup = util.cleanups(finally)
    cleanup(remove_dir)
    cleanup(function() util.lunas{ "lab", "down", "--all" } end)
    local recipe = dir .. "/fault_lab.lua"
    util.write(recipe, [[
local net = require "lunas.net"
local lab <close> = net.lab{ name = "fault" }
local s = lab:switch("s")
for i = 1, 10 do lab:link(lab:host("fh" .. i), s, { rate = "100mbit" }) end
lab:node("fh1"):spawn{ "sleep", "4999" }
]])
    math.randomseed(os.time() + 1)
    -- a whole `lab up` (start-up, build, record): the kills are spread over it and a little beyond
    local whole = whole_run_time({ "lab", "up", recipe }, 3, function()
      local out, code = util.lunas{ "lab", "down", "fault" }
      assert.are.equal(0, code, out)
    end)
    local halfway = 0
    for trial = 1, TRIALS do
      local proc = start_lunas{ "lab", "up", recipe }
      core.poll({ (core.pipe()) }, math.random() * whole * 1.2)
      proc:kill("KILL")
      proc:wait()
      proc:close()
      local out = util.lunas{ "lab", "list", "--json" }
      local labs = json.decode(out).labs
      local code
      if labs[1] and labs[1].status == "up" then
        out, code = util.lunas{ "lab", "down", "fault" }
      else
        if labs[1] then halfway = halfway + 1 end
        out, code = util.lunas{ "gc" }
      end
      assert.are.equal(0, code, out)
      assert.are.equal("", ls("/run/netns"), ("trial %d: namespaces left"):format(trial))
      assert.are.equal("", ls("/run/lunas/labs"), ("trial %d: records left"):format(trial))
      assert.is_truthy(none_running("sleep 4999", 5), ("trial %d: a host's process survived"):format(trial))
      assert.are.same({}, own_cgroups(proc.pid), ("trial %d: cgroup left"):format(trial))
    end
    assert.is_true(halfway > 0, ("no trial killed lunas halfway through the build (a lab up takes %.1f ms here)")
      :format(whole * 1000))
    print(("\n  %d of %d kills landed during the build (a whole lab up: %.1f ms)"):format(halfway, TRIALS,
      whole * 1000))
  end)
end)

describe("faults: a clean-up that fails keeps the error that caused it #root", function()
  after_each(function() sandbox._inject() end)

  -- Makes every cgroup removal fail (rmdir EACCES) while fn runs; returns what fn raised.
  local function with_rmdir_failing(fn)
    local real = core.cgroup_rmdir
    core.cgroup_rmdir = function(dir) return nil, "rmdir " .. dir .. ": Permission denied", "EACCES" end
    local ok, err = pcall(fn)
    core.cgroup_rmdir = real
    return ok, err
  end

  it("a sandbox whose set-up fails and whose cgroup cannot be removed raises the set-up's error", function()
    kernel.requires("userns")
    kernel.requires("cgroup_write")
    local spec = { argv = { "/bin/true" }, limits = { pids = 16 } }
    for _, case in ipairs{ { "mounts", "parent" }, { "mounts", "init" } } do
      sandbox._inject(case[1], case[2])
      local ok, err = with_rmdir_failing(function() lunas.sandbox(spec):spawn() end)
      sandbox._inject()
      assert.is_false(ok)
      assert.is_true(lunas.is_error(err), tostring(err))
      assert.are.equal("sandbox: mounts: injected failure", err.msg)
      assert.are.equal("EIO", err.code)
      assert.is_truthy(err.cleanup and err.cleanup[1]:find("Permission denied", 1, true), tostring(err))
      assert.matches("then clean%-up failed: .*Permission denied", tostring(err))
      -- the cgroup left open is what an interruption's close_all (or gc) takes
      assert.are.same({}, require("lunas.interrupt").close_all())
      assert.are.same({}, own_cgroups(core.getpid()))
    end
  end)

  it("a failure inside a sandbox's <close> scope survives a cgroup that cannot be removed", function()
    kernel.requires("userns")
    kernel.requires("cgroup_write")
    local ok, err = with_rmdir_failing(function()
      local running <close> = lunas.sandbox{ argv = { "sleep", "3701" }, limits = { pids = 16 } }:spawn()
      error(lunas.error{ msg = "the recipe's own failure" }, 0)
    end)
    assert.is_false(ok)
    assert.are.equal("the recipe's own failure", err.msg)
    assert.is_truthy(err.cleanup and err.cleanup[1]:find("Permission denied", 1, true), tostring(err))
    assert.is_truthy(none_running("sleep 3701"))
    assert.are.same({}, require("lunas.interrupt").close_all())
    assert.are.same({}, own_cgroups(core.getpid()))
  end)

  it("closing a sandbox whose handle was released kills it through its cgroup, without raising", function()
    kernel.requires("userns")
    kernel.requires("cgroup_write")
    local running = lunas.sandbox{ argv = { "sleep", "3702" }, limits = { pids = 16 } }:spawn()
    running:release()
    running:close()
    assert.is_truthy(none_running("sleep 3702"))
    assert.are.same({}, own_cgroups(core.getpid()))
  end)

  it("a cgroup's <close> during an error keeps the error and still removes what it can later", function()
    kernel.requires("cgroup_write")
    local ok, err = with_rmdir_failing(function()
      local cg <close> = cgroup.new{ limits = { pids = 8 } }
      error("a plain string error", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("a plain string error", err)
    assert.are.same({}, require("lunas.interrupt").close_all())
    assert.are.same({}, own_cgroups(core.getpid()))
  end)
end)
