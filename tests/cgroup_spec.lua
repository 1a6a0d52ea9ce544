-- lunas.cgroup and sandbox limits, observed from outside: the cgroup directories and files themselves,
-- /proc/PID/cgroup of the processes, /proc for processes that must be gone, and the host binary's exit codes.
-- The same specs run on the hybrid development host (limits through v1) and on the stock-kernel lane (pure v2).
local lunas = require "lunas"
local core = require "lunas.core"
local cgroup = require "lunas.cgroup"
local kernel = require "support.kernel"
local util = require "support.util"

local function exists(path)
  return core.file_type(path) ~= nil
end

local function number(dir, file)
  local text = util.read(dir .. "/" .. file)
  return text and tonumber(text:match("^%s*(%d+)"))
end

local function keyed(dir, file)
  local t = {}
  for k, v in (util.read(dir .. "/" .. file) or ""):gmatch("(%S+)%s+(%d+)") do t[k] = tonumber(v) end
  return t
end

-- CPU time used so far, in seconds, read straight from the cgroup files.
local function cpu_seconds(cg)
  local layout = cgroup.layout()
  if layout.v1.cpuacct then return number(cg.dirs.v1[layout.v1.cpuacct.key], "cpuacct.usage") / 1e9 end
  return keyed(cg.dirs.v2, "cpu.stat").usage_usec / 1e6
end

local function dir_of(cg, controller)
  local dir = cg:controller_dir(controller)
  assert(dir, "no directory for " .. controller)
  return dir
end

local function all_dirs(cg)
  local list = {}
  if cg.dirs.v2 then list[#list + 1] = cg.dirs.v2 end
  for _, d in pairs(cg.dirs.v1) do list[#list + 1] = d end
  return list
end

local function pids_in(dir)
  local pids = {}
  for p in (util.read(dir .. "/cgroup.procs") or ""):gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
  return pids
end

-- Runs fn in a child inside cg and returns its exit status.
local function status_of_child_in(cg, fn)
  local child = cg:spawn{ fn = fn }
  local result = child:wait()
  child:close()
  return result.status
end

local function sleep(seconds)
  os.execute("sleep " .. seconds)
end

describe("cgroup layout #rootless", function()
  it("reads the layout /proc/self/cgroup and the mounts describe", function()
    local layout = cgroup.layout()
    local fstype = util.run({ "stat", "-f", "-c", "%T", "/sys/fs/cgroup" }):gsub("%s+$", "")
    if fstype == "cgroup2fs" then
      assert.equal("v2", layout.mode)
    else
      assert.equal("tmpfs", fstype)
      assert.is_true(layout.mode == "hybrid" or layout.mode == "v1")
    end
    -- (a process in a lunas.leaf owns the cgroup above it)
    local own = util.read("/proc/self/cgroup"):gsub("/" .. cgroup.LEAF:gsub("%.", "%%.") .. "\n", "\n")
    for c, h in pairs(layout.v1) do
      assert.truthy(own:find(":" .. h.key .. ":" .. h.path .. "\n", 1, true), c)
      assert.equal("directory", require("lfs").attributes(h.dir, "mode"))
    end
    if layout.v2 then
      local v2path = own:match("0::([^\n]*)")
      assert.equal(v2path == "" and "/" or v2path, layout.v2.path)
      assert.truthy(exists(layout.v2.dir .. "/cgroup.procs"))
    end
  end)
end)

describe("cgroup layout under covering mounts #root", function()
  -- (a tmpfs first: on a pure cgroup2 host the same mount again on the same point is refused)
  it("sees the cgroup2 tree mounted over /sys/fs/cgroup, not the hierarchies it covers (as stat -f sees it)", function()
    local script = [[
      mount -t tmpfs none /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && stat -f -c %T /sys/fs/cgroup &&
      exec lua5.4 -e 'package.path = os.getenv("R") .. "/lua/?.lua;" .. package.path
        package.cpath = os.getenv("B") .. "/lib/?.so;" .. package.cpath
        local l = require("lunas.cgroup").layout(); local n = 0; for _ in pairs(l.v1) do n = n + 1 end
        print(l.mode, l.v2 and l.v2.mount, n)'
    ]]
    local out, err, code = util.sh(("R=%s B=%s unshare --mount --propagation private -- sh -c %s"):format(
      util.quote(util.root), util.quote(util.build), util.quote(script)))
    assert.equal(0, code, err)
    assert.equal("cgroup2fs\nv2\t/sys/fs/cgroup\t0\n", out)
  end)
end)

describe("cgroup objects #rootless", function()
  it("creates a directory in every hierarchy below our own, and close removes them all", function()
    if not kernel.requires("cgroup_write") then return end
    local cg = cgroup.new{ name = "lunas-test-dirs", limits = { pids = 7 } }
    local dirs = all_dirs(cg)
    local ok, err = pcall(function()
      assert.is_true(#dirs >= 1)
      local layout = cgroup.layout()
      for _, d in ipairs(dirs) do
        assert.equal("dir", core.file_type(d), d)
        assert.truthy(d:match("/lunas%-test%-dirs$"), d)
        local under = (layout.v2 and d:sub(1, #layout.v2.dir + 1) == layout.v2.dir .. "/")
        for _, h in pairs(layout.v1) do under = under or d:sub(1, #h.dir + 1) == h.dir .. "/" end
        assert.is_true(under, d .. " is not below our own cgroup")
      end
      assert.equal(7, number(dir_of(cg, "pids"), "pids.max"))
    end)
    cg:close()
    for _, d in ipairs(dirs) do assert.is_false(exists(d), d .. " left behind") end
    cg:close() -- idempotent
    assert(ok, err)
  end)

  it("writes every limit to the files of the hierarchy that enforces it", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{ limits = { memory = "48M", pids = 33, cpu = 0.5, cpu_weight = 200 } }
    local layout = cgroup.layout()
    local mem, version = cg:controller_dir("memory")
    if version == 2 then
      assert.equal(48 * 1024 * 1024, number(mem, "memory.max"))
      assert.equal(0, number(mem, "memory.swap.max"))
    else
      assert.equal(48 * 1024 * 1024, number(mem, "memory.limit_in_bytes"))
    end
    assert.equal(33, number(dir_of(cg, "pids"), "pids.max"))
    local cpu, cpu_version = cg:controller_dir("cpu")
    if cpu_version == 2 then
      assert.equal("50000 100000", (util.read(cpu .. "/cpu.max"):gsub("%s+$", "")))
      assert.equal(200, number(cpu, "cpu.weight"))
    else
      assert.equal(50000, number(cpu, "cpu.cfs_quota_us"))
      assert.equal(100000, number(cpu, "cpu.cfs_period_us"))
      assert.equal(2048, number(cpu, "cpu.shares"))
    end
    -- and limits can change on a live cgroup
    cg:limit{ pids = 40, cpu = "max" }
    assert.equal(40, number(dir_of(cg, "pids"), "pids.max"))
    if cpu_version == 2 then
      assert.truthy(util.read(cpu .. "/cpu.max"):match("^max "))
    else
      assert.equal("-1", (util.read(cpu .. "/cpu.cfs_quota_us"):gsub("%s+$", "")))
    end
    assert.is_truthy(layout.mode)
  end)

  it("starts a process inside every part of the cgroup before it runs anything", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{}
    local proc = cg:spawn{ argv = { "sleep", "30" } }
    finally(function() proc:kill("KILL") proc:wait() proc:close() end)
    local text = util.read("/proc/" .. proc.pid .. "/cgroup")
    local layout = cgroup.layout()
    for key, dir in pairs(cg.dirs.v1) do
      local rel = dir:sub(#layout.v1[key:match("^[^,]+")].dir + 1)
      assert.truthy(text:find(":" .. key .. ":" .. layout.v1[key:match("^[^,]+")].path:gsub("/$", "") .. rel .. "\n", 1, true), key)
    end
    if cg.dirs.v2 then assert.truthy(text:find("0::" .. layout.v2.path:gsub("/$", "") .. "/" .. cg.path .. "\n", 1, true)) end
    assert.same({ proc.pid }, cg:pids())
  end)

  it("writes io limits per disk, and cpusets", function()
    if not kernel.requires("cgroup_write") then return end
    local disk
    for _, name in ipairs(core.listdir("/sys/block") or {}) do
      local dev = util.read("/sys/block/" .. name .. "/dev")
      if dev and (not disk or name < disk.name) then disk = { name = name, dev = dev:gsub("%s+$", "") } end
    end
    if not disk then pending("no block device on this machine (/sys/block is empty)") end
    local layout = cgroup.layout()
    if not (layout.controllers.io or layout.controllers.blkio) then pending("no io (blkio) controller here") end
    -- A partition, where the disk has one, stands for its disk.
    local partition
    for _, name in ipairs(core.listdir("/sys/block/" .. disk.name) or {}) do
      local dev = util.read("/sys/block/" .. disk.name .. "/" .. name .. "/partition") and
        util.read("/sys/block/" .. disk.name .. "/" .. name .. "/dev")
      if dev then partition = dev:gsub("%s+$", "") end
    end
    local cg <close> = cgroup.new{ limits = { io = { [partition or disk.dev] = { rbps = "1M", wiops = 100 } },
      cpuset = "0" } }
    local dir, version = cg:controller_dir("io")
    if version == 2 then
      local line = util.read(dir .. "/io.max"):match("[^\n]*")
      assert.equal(disk.dev .. " rbps=1048576 wbps=max riops=max wiops=100", line)
    else
      assert.equal(disk.dev .. " 1048576", (util.read(dir .. "/blkio.throttle.read_bps_device"):gsub("%s+$", "")))
      assert.equal(disk.dev .. " 100", (util.read(dir .. "/blkio.throttle.write_iops_device"):gsub("%s+$", "")))
    end
    assert.equal("0", (util.read(dir_of(cg, "cpuset") .. "/cpuset.cpus"):gsub("%s+$", "")))
    -- a cpuset cgroup takes processes (v1 starts with no cpus and no memory nodes)
    local p = cg:spawn{ argv = { "true" } }
    assert.equal(0, p:wait().status)
    p:close()
  end)

  it("rejects bad limits naming the field", function()
    local cases = {
      { { memory = "12Q" }, "limits.memory" },
      { { pids = 0 }, "limits.pids" },
      { { cpu = -1 }, "limits.cpu" },
      { { cpu_weight = 20000 }, "limits.cpu_weight" },
      { { memry = 1 }, "unknown limit 'memry'" },
      { { io = { ["/nonexistent-disk"] = { rbps = "1M" } } }, "/nonexistent-disk" },
      { { io = { ["8:0"] = { rbsp = "1M" } } }, "unknown field 'rbsp'" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(cgroup.new, { limits = case[1] })
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
    end
    assert.equal(256 * 1024 * 1024, cgroup.bytes("x", "256M"))
    assert.equal(1536 * 1024 * 1024, cgroup.bytes("x", "1.5GiB"))
    assert.equal(0.5, cgroup.cores("x", "50%"))
  end)

  it("makes a limit the host cannot enforce an error, or a warning when asked", function()
    if not kernel.requires("cgroup_write") then return end
    if cgroup.layout().mode == "v2" then
      pending("pure cgroup v2 enforces every limit (memory_high is missing only on v1)")
    end
    local ok, err = pcall(cgroup.new, { limits = { memory_high = "10M" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot enforce memory_high", 1, true), tostring(err))
    assert.equal("EOPNOTSUPP", err.code)
    local warned = {}
    local cg <close> = cgroup.new{ limits = { memory_high = "10M", pids = 9 }, best_effort = true,
      warn = function(msg) warned[#warned + 1] = msg end }
    assert.truthy(warned[1]:find("memory_high", 1, true))
    assert.equal(9, number(dir_of(cg, "pids"), "pids.max"))
  end)
end)

describe("cgroup enforcement #rootless", function()
  it("stops a fork bomb at the pids limit, and the host can still fork", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{ limits = { pids = 16 } }
    local bomb = cg:spawn{ argv = { "sh", "-c", "bomb() { bomb & bomb & wait; }; bomb 2>/dev/null" } }
    finally(function() bomb:close() end)
    local dir = dir_of(cg, "pids")
    assert.truthy(util.wait_for(function() return (keyed(dir, "pids.events").max or 0) > 0 end, 30),
      "the pids limit was never hit")
    assert.is_true(number(dir, "pids.current") <= 16)
    assert.equal("ok\n", (util.run({ "sh", "-c", "echo ok" })))
    local stats = cg:stats()
    assert.is_true(stats.pids.limit_hits > 0)
    cg:kill()
    assert.is_true(cg:wait_empty(30))
    assert.same({}, pids_in(cg.dirs.v2 or dir))
  end)

  it("OOM-kills a memory hog inside its sandbox and says so in the result", function()
    if not kernel.requires("cgroup_write", "userns") then return end
    local result = lunas.sandbox{ argv = { "lua5.4", "-e", "local s = ('x'):rep(256 * 1024 * 1024) print(#s)" },
      limits = { memory = "32M" } }:run()
    assert.equal(9, result.signal)
    assert.is_true(result.oom_killed)
    assert.is_true(result.usage.memory.oom_kills >= 1)
    assert.is_true(result.usage.memory.peak <= 32 * 1024 * 1024 + 4096)
    -- and a payload within its limit is left alone
    local fine = lunas.sandbox{ argv = { "lua5.4", "-e", "local s = ('x'):rep(4 * 1024 * 1024)" },
      limits = { memory = "64M" } }:run()
    assert.equal(0, fine.status)
    assert.is_false(fine.oom_killed)
  end)

  it("holds a busy loop to about its cpu share", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{ limits = { cpu = 0.25 } }
    local started = core.now()
    local before = cpu_seconds(cg)
    local loop = cg:spawn{ argv = { "sh", "-c", "while :; do :; done" } }
    finally(function() loop:close() end)
    sleep(2)
    local used = cpu_seconds(cg) - before
    local wall = core.now() - started
    loop:kill("KILL")
    loop:wait()
    -- CFS grants the quota per 100 ms period: allow one period of slack, and a loaded machine below it.
    assert.is_true(used <= 0.25 * wall + 0.1, ("used %.3f s of cpu in %.3f s"):format(used, wall))
    assert.is_true(used >= 0.25 * wall * 0.3, ("used %.3f s of cpu in %.3f s"):format(used, wall))
    local stats = cg:stats()
    assert.is_true(stats.cpu.nr_throttled > 0)
  end)

  it("freezes: no progress while frozen, progress again after thaw", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{}
    local loop = cg:spawn{ argv = { "sh", "-c", "while :; do :; done" } }
    finally(function() loop:close() end)
    sleep(0.2)
    cg:freeze()
    assert.is_true(cg:frozen())
    if cg.dirs.v2 and exists(cg.dirs.v2 .. "/cgroup.freeze") then
      assert.equal(1, keyed(cg.dirs.v2, "cgroup.events").frozen)
    else
      assert.truthy(util.read(dir_of(cg, "freezer") .. "/freezer.state"):match("^FROZEN"))
    end
    local a = cpu_seconds(cg)
    sleep(0.3)
    local b = cpu_seconds(cg)
    assert.is_true(b - a < 0.01, ("%.3f s of cpu while frozen"):format(b - a))
    cg:thaw()
    assert.is_false(cg:frozen())
    assert.truthy(util.wait_for(function() return cpu_seconds(cg) - b > 0.05 end, 10), "no progress after thaw")
    loop:kill("KILL")
    loop:wait()
  end)

  it("kills every process of a cgroup holding many, and removal leaves nothing", function()
    if not kernel.requires("cgroup_write") then return end
    local cg = cgroup.new{}
    local dirs = all_dirs(cg)
    local parent = cg:spawn{ argv = { "sh", "-c", "for i in $(seq 60); do sleep 300 & done; wait" } }
    local members = cg.dirs.v2 or dirs[1]
    assert.truthy(util.wait_for(function() return #pids_in(members) >= 61 end, 30))
    local inside = pids_in(members)
    cg:kill()
    assert.is_true(cg:wait_empty(30))
    for _, pid in ipairs(inside) do assert.is_false(util.alive(pid), "pid " .. pid .. " survived") end
    parent:wait()
    parent:close()
    cg:close()
    for _, d in ipairs(dirs) do assert.is_false(exists(d), d .. " left behind") end
  end)

  it("removes child cgroups too, leaves first, killing what they hold", function()
    if not kernel.requires("cgroup_write") then return end
    local cg = cgroup.new{}
    local child = cgroup.new{ parent = cg, name = "inner" }
    local p = child:spawn{ argv = { "sleep", "300" } }
    local dirs = all_dirs(child)
    cg:close()
    for _, d in ipairs(dirs) do assert.is_false(exists(d), d .. " left behind") end
    assert.is_false(util.alive(p.pid))
    p:wait()
    p:close()
    child:close()
  end)
end)

describe("cgroup open #rootless", function()
  it("opens an existing cgroup by path or pid to read and limit it; closing it removes nothing", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{ name = "lunas-test-open" }
    local p = cg:spawn{ argv = { "sleep", "30" } }
    finally(function() p:kill("KILL") p:wait() p:close() end)
    local by_name = cgroup.open("lunas-test-open")
    local by_pid = cgroup.open{ pid = p.pid }
    for _, opened in ipairs{ by_name, by_pid } do
      assert.equal("lunas-test-open", opened.path)
      assert.same({ p.pid }, opened:pids())
      assert.is_true(opened:stats().pids.current >= 1)
    end
    by_pid:limit{ pids = 12 }
    assert.equal(12, number(dir_of(cg, "pids"), "pids.max"))
    by_name:close()
    by_pid:close()
    for _, d in ipairs(all_dirs(cg)) do assert.equal("dir", core.file_type(d)) end
    assert.is_true(util.alive(p.pid))
    local ok, err = pcall(cgroup.open, "lunas-test-missing")
    assert.is_false(ok)
    assert.equal("ENOENT", err.code)
    ok, err = pcall(cgroup.open, "../escape")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("without '..'", 1, true))
  end)

  it("refuses to open a cgroup outside the process's own subtree", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{}
    local outside_dir = cg.dirs.v2 or cg.dirs.v1[next(cg.dirs.v1)]
    -- A process inside cg: the cgroup above it (where we are) is outside its subtree.
    assert.equal(0, status_of_child_in(cg, function()
      local errors = require "lunas.errors"
      local checks = {
        function() return cgroup.open{ pid = core.getppid() } end,
        function() return cgroup.open(outside_dir:match("^(.*)/[^/]+$")) end,
      }
      for i, f in ipairs(checks) do
        local ok, err = errors.try(f)
        if ok or err.code ~= "EPERM" then
          io.stderr:write("check ", i, ": ", tostring(ok and "opened" or err), "\n")
          core.exit(10 + i)
        end
      end
      -- its own cgroup, though, it may open
      local own = errors.try(cgroup.open, { pid = core.getpid() })
      core.exit(own and own.path == "" and 0 or 20)
    end))
  end)
end)

describe("cgroup delegation #root", function()
  it("lets an unprivileged uid make and limit cgroups inside a delegated one", function()
    if not kernel.requires("cgroup_write") then return end
    local cg <close> = cgroup.new{ controllers = { "memory", "pids" } }
    cg:delegate(65534, 65534)
    for _, d in ipairs(all_dirs(cg)) do
      assert.equal(65534, require("lfs").attributes(d, "uid"))
      assert.equal(65534, require("lfs").attributes(d .. "/cgroup.procs", "uid"))
    end
    -- The unprivileged child leaves its cgroup in place: we look at it from outside, and cg's close removes it.
    assert.equal(0, status_of_child_in(cg, function()
      assert(core.setresgid(65534, 65534, 65534))
      assert(core.setresuid(65534, 65534, 65534))
      cgroup.new{ name = "by-nobody", limits = { pids = 5 } }
      core.exit(0)
    end))
    local sub = dir_of(cg, "pids") .. "/by-nobody"
    assert.equal(65534, require("lfs").attributes(sub, "uid"))
    assert.equal(5, number(sub, "pids.max"))
    cg:close()
    assert.is_false(exists(sub))
  end)
end)

describe("sandbox limits #rootless", function()
  it("runs the payload in a cgroup of its own with the limits, and removes it afterwards", function()
    if not kernel.requires("cgroup_write", "userns") then return end
    local running = lunas.sandbox{ argv = { "sleep", "30" }, limits = { pids = 21, memory = "100M" } }:spawn()
    finally(function() running:close() end)
    local cg = running:cgroup()
    local pid = running:payload_pid()
    local pids_dir = dir_of(cg, "pids")
    assert.equal(21, number(pids_dir, "pids.max"))
    local members = pids_in(cg.dirs.v2 or pids_dir)
    assert.truthy(util.wait_for(function()
      members = pids_in(cg.dirs.v2 or pids_dir)
      for _, p in ipairs(members) do if p == pid then return true end end
    end, 5))
    local dirs = all_dirs(cg)
    local result = running:wait(0.2)
    assert.is_true(result.timed_out)
    assert.is_table(result.usage.memory)
    assert.is_table(result.usage.pids)
    for _, d in ipairs(dirs) do assert.is_false(exists(d), d .. " left behind") end
  end)

  it("kills what escaped the payload when the sandbox ends", function()
    if not kernel.requires("cgroup_write") then return end
    if core.ids().euid ~= 0 then kernel.requires("userns") end
    local r, w = core.pipe()
    -- no pid namespace: a daemon started by the payload would outlive it without the cgroup
    local result = lunas.sandbox{ argv = { "sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!" },
      namespaces = "user,mount", net = "host", limits = { pids = 10 }, stdout = w }:run()
    w:close()
    local escaped = tonumber(util.drain(r):match("%d+"))
    r:close()
    assert.equal(0, result.status)
    assert.truthy(escaped)
    assert.truthy(util.wait_for(function() return not util.alive(escaped) end, 10), "the escaped daemon survived")
  end)

  it("freezes and thaws a running sandbox", function()
    if not kernel.requires("cgroup_write", "userns") then return end
    local running = lunas.sandbox{ argv = { "sh", "-c", "while :; do :; done" }, limits = { pids = 8 } }:spawn()
    finally(function() running:close() end)
    running:freeze()
    assert.is_true(running:cgroup():frozen())
    running:thaw()
    assert.is_false(running:cgroup():frozen())
    assert.is_table(running:usage().cpu)
  end)

  it("rejects bad limits in the spec naming the field", function()
    local ok, err = pcall(lunas.sandbox, { argv = { "true" }, limits = { pids = "many" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("limits.pids", 1, true), tostring(err))
    ok, err = pcall(lunas.sandbox, { argv = { "true" }, limits = { best_effort = "yes" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("limits.best_effort", 1, true), tostring(err))
  end)
end)

describe("lunas run resource options #rootless", function()
  it("--memory: an OOM kill is reported and exits 137", function()
    if not kernel.requires("cgroup_write", "userns") then return end
    local _, err, code = util.sh(util.quote(util.bin) .. " run --memory 32M -- lua5.4 -e \"local s = ('x'):rep(256 * 1024 * 1024)\"")
    assert.equal(137, code)
    assert.truthy(err:find("out of memory", 1, true), err)
  end)

  it("--pids stops a fork bomb; --usage reports it", function()
    if not kernel.requires("cgroup_write", "userns") then return end
    local _, err, code = util.sh(util.quote(util.bin)
      .. " run --pids 8 --cpu 0.5 --usage -- sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait' ")
    -- the shell gives up (status 2) at its first refused fork
    assert.equal(2, code)
    assert.truthy(err:find("Cannot fork", 1, true), err)
    assert.truthy(err:find("forks refused at the limit", 1, true), err)
    assert.truthy(err:find("memory peak", 1, true), err)
  end)

  it("refuses a bad size with a usage error", function()
    local _, err, code = util.sh(util.quote(util.bin) .. " run --memory 12Q -- true")
    assert.equal(2, code)
    assert.truthy(err:find("limits.memory", 1, true), err)
  end)
end)

describe("cgroup names #root", function()
  it("never collide: two lunas that are both pid 1 of their pid namespaces, at once, beside a planted leftover",
    function()
      if not kernel.requires("cgroup_write", "userns") then return end
      local dir, remove_dir = util.tmpdir()
      finally(remove_dir)
      os.execute("chmod 755 " .. util.quote(dir)) -- the sandboxes' ids (a range of the host's) look into it
      -- What the pid-and-counter names gave a lunas that is pid 1, left by a dead one (no owner holds it).
      local layout = cgroup.layout()
      for _, h in pairs(layout.v1) do core.cgroup_mkdir(h.dir .. "/lunas-1-1") end
      if layout.v2 then core.cgroup_mkdir(layout.v2.dir .. "/lunas-1-1") end
      local earlier = {}
      for _, path in ipairs(util.lunas_cgroups(1)) do earlier[path:match("[^/]+$")] = true end
      local started = {}
      for i = 1, 2 do
        -- each lunas is pid 1 of a pid namespace of its own (with its /proc, as lunas needs, like ps); its payload
        -- says it runs, then waits for "go"
        -- (it reports on stdout, a file opened outside; it sees "go" through a read-only bind: a writable one
        -- of this tmpfs would need an idmapped mount, which kernels before 6.3 lack)
        started[i] = assert(core.spawn{ argv = { "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
          'exec "$0" run --memory 64M --pids 32 --default-tree --ro-bind "$1" "$1" -- sh -c '
            .. '\'echo ready; while [ ! -e "$0/go" ]; do sleep 0.05; done\' "$1" >"$1/ready-$2" 2>"$1/err-$2"',
          util.bin, dir, tostring(i) } })
      end
      local both = util.wait_for(function()
        return (util.read(dir .. "/ready-1") or ""):find("ready") and (util.read(dir .. "/ready-2") or ""):find("ready")
      end, 30)
      -- seen from outside while both run: two cgroups of their own, beside the leftover
      local names = {}
      for _, path in ipairs(util.lunas_cgroups(1)) do
        local name = path:match("[^/]+$")
        if not earlier[name] then names[name] = true end
      end
      util.write(dir .. "/go", "")
      for i = 1, 2 do
        local status = started[i]:wait(60)
        if not status then
          started[i]:kill("KILL")
          status = started[i]:wait()
        end
        started[i]:close()
        assert.are.same({ pid = status.pid, status = 0 }, status, util.read(dir .. "/err-" .. i))
      end
      assert.is_truthy(both, "the sandboxes did not both start")
      local count = 0
      for _ in pairs(names) do count = count + 1 end
      assert.are.equal(2, count, "cgroups seen: " .. table.concat(util.lunas_cgroups(1), " "))
      -- the leftover is gc's: nobody holds it
      local out, code = util.lunas{ "gc" }
      assert.are.equal(0, code, out)
      assert.matches("removed cgroup lunas%-1%-1\n", out)
      assert.are.same({}, util.lunas_cgroups(1))
      for name in pairs(names) do assert.is_nil(out:find(name, 1, true), "gc took a cgroup of a live lunas") end
    end)
end)
