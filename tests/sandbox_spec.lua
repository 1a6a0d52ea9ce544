-- lunas.sandbox: the spec executor, observed from outside (/proc of the sandbox's processes) and with plain tools
-- inside. Everything here also runs rootless unless tagged #root.
local lunas = require "lunas"
local core = require "lunas.core"
local kernel = require "support.kernel"
local util = require "support.util"

local ids = core.ids()

-- Runs argv in a sandbox and returns its stdout, the result table.
local function capture(spec)
  local r, w = core.pipe()
  spec.stdout = w
  local result = lunas.sandbox(spec):run()
  w:close()
  local out = util.drain(r)
  r:close()
  return out, result
end

-- Host pids of the children of pid (scanning /proc: no dependency on CONFIG_PROC_CHILDREN).
local function children(pid)
  local found = {}
  local p = io.popen("ls /proc")
  for entry in p:lines() do
    if entry:match("^%d+$") then
      local ppid = util.status_field(entry, "PPid")
      if ppid and tonumber(ppid) == pid then found[#found + 1] = tonumber(entry) end
    end
  end
  p:close()
  return found
end

-- Starts a long-running payload and returns the running handle and the payload's host pid.
local function start(spec)
  spec.argv = spec.argv or { "sleep", "30" }
  local running = lunas.sandbox(spec):spawn()
  return running, running:payload_pid()
end

describe("sandbox namespaces #rootless", function()
  it("gives the payload new namespaces of every default type", function()
    if not kernel.requires("userns") then return end
    local running, payload = start{}
    finally(function() running:close() end)
    for _, kind in ipairs{ "user", "pid", "mnt", "uts", "ipc", "net", "cgroup" } do
      assert.are_not.equal(util.ns_link("self", kind), util.ns_link(payload, kind), kind)
    end
    assert.equal(util.ns_link("self", "time"), util.ns_link(payload, "time"))
  end)

  it("creates exactly the namespaces asked for", function()
    if not kernel.requires("userns") then return end
    local running, payload = start{ namespaces = "user,uts" }
    finally(function() running:close() end)
    assert.are_not.equal(util.ns_link("self", "user"), util.ns_link(payload, "user"))
    assert.are_not.equal(util.ns_link("self", "uts"), util.ns_link(payload, "uts"))
    for _, kind in ipairs{ "pid", "mnt", "ipc", "net", "cgroup" } do
      assert.equal(util.ns_link("self", kind), util.ns_link(payload, kind), kind)
    end
  end)

  it("maps the uid and gid inside to ours outside, with setgroups denied (root: to a range of host ids)", function()
    if not kernel.requires("userns") then return end
    local running, payload = start{ uid = 1000, gid = 2000 }
    finally(function() running:close() end)
    local function map(kind) return util.read("/proc/" .. payload .. "/" .. kind):gsub("%s+", " "):match("^%s*(.-)%s*$") end
    if ids.euid ~= 0 then
      assert.equal(("1000 %d 1"):format(ids.euid), map("uid_map"))
      assert.equal(("2000 %d 1"):format(ids.egid), map("gid_map"))
      assert.equal("deny", util.read("/proc/" .. payload .. "/setgroups"):match("%a+"))
      -- Outside, the payload runs with our own ids.
      assert.matches("^" .. ids.euid .. "%s", util.status_field(payload, "Uid"))
    else
      -- Root's sandbox: 65536 host ids of its own, uid 1000 inside one of them; never root's.
      local base = tonumber(map("uid_map"):match("^0 (%d+) 65536$"))
      assert.is_truthy(base and base >= 0x80000, map("uid_map"))
      assert.equal(("0 %d 65536"):format(base), map("gid_map"))
      assert.matches("^" .. (base + 1000) .. "%s", util.status_field(payload, "Uid"))
      assert.matches("^" .. (base + 2000) .. "%s", util.status_field(payload, "Gid"))
      -- and none of root's supplementary groups
      assert.equal("", util.status_field(payload, "Groups"):gsub("%s", ""))
    end
  end)

  it("shows the payload as PID 2 under a reaper, and the reaper as PID 1", function()
    if not kernel.requires("userns") then return end
    local running, payload = start{}
    finally(function() running:close() end)
    assert.same({ payload }, children(running.pid))
    assert.equal(payload .. "\t2", util.status_field(payload, "NSpid"))
    assert.equal(running.pid .. "\t1", util.status_field(running.pid, "NSpid"))
    assert.equal("lunas-reaper", util.read("/proc/" .. running.pid .. "/cmdline"):match("^[^%z]+"))
  end)

  it("makes the payload PID 1 with as_pid_1", function()
    if not kernel.requires("userns") then return end
    local running, payload = start{ as_pid_1 = true }
    finally(function() running:close() end)
    assert.equal(payload .. "\t1", util.status_field(payload, "NSpid"))
    assert.same({}, children(running.pid))
    assert.equal("sleep", util.read("/proc/" .. payload .. "/cmdline"):match("^[^%z]+"))
  end)

  it("sets the host name inside only", function()
    if not kernel.requires("userns") then return end
    local before = util.read("/proc/sys/kernel/hostname")
    local out = capture{ argv = { "/bin/sh", "-c", "hostname; cat /proc/sys/kernel/domainname" },
      hostname = "inner", domainname = "inner.dom" }
    assert.equal("inner\ninner.dom\n", out)
    assert.equal(before, util.read("/proc/sys/kernel/hostname"))
  end)

  it("mounts a fresh /proc that shows only the sandbox's processes", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "/bin/sh", "-c", "ls /proc | grep -c '^[0-9]'; echo $$" } }
    -- PID 1 (reaper), the shell, ls, grep: never the host's processes.
    local count, pid = out:match("^(%d+)\n(%d+)\n$")
    assert.is_true(tonumber(count) <= 4, out)
    assert.equal("2", pid)
  end)

  it("brings lo up in a new network namespace and shows no other interface", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate 2>/dev/null; ip -o link show lo" } }
    assert.matches("^lo\n", out)
    assert.matches("LOOPBACK,UP", out)
  end)

  it("applies time namespace offsets", function()
    if not kernel.requires("userns", "timens") then return end
    local out = capture{ argv = { "cat", "/proc/uptime" }, time = { boottime = 86400 * 365 } }
    local inside = tonumber(out:match("^(%S+)"))
    local outside = tonumber(util.read("/proc/uptime"):match("^(%S+)"))
    assert.is_true(inside - outside > 86400 * 364, out)
  end)
end)

describe("sandbox process #rootless", function()
  it("propagates the exit status and the killing signal", function()
    if not kernel.requires("userns") then return end
    assert.equal(7, lunas.sandbox{ argv = { "/bin/sh", "-c", "exit 7" } }:run().status)
    local r = lunas.sandbox{ argv = { "/bin/sh", "-c", "kill -KILL $$" } }:run()
    assert.is_nil(r.status)
    assert.equal(9, r.signal)
    assert.equal("KILL", r.signame)
    r = lunas.sandbox{ argv = { "/bin/sh", "-c", "kill -TERM $$" }, as_pid_1 = true }:run()
    -- As PID 1 the shell ignores TERM from inside its own namespace: it exits on its own.
    assert.equal(0, r.status)
  end)

  it("raises the failed step with the errno for a missing program", function()
    if not kernel.requires("userns") then return end
    local ok, err = pcall(function() return lunas.sandbox{ argv = { "/nonexistent/program" } }:run() end)
    assert.is_false(ok)
    assert.is_true(lunas.is_error(err))
    assert.equal("exec", err.step)
    assert.equal("ENOENT", err.code)
    assert.matches("sandbox: exec: /nonexistent/program: No such file or directory", tostring(err))
    -- The position is the caller's line in this spec, not a line of lunas itself.
    assert.matches("sandbox_spec.lua:%d+: ", tostring(err))
  end)

  it("reports a failing init step by name", function()
    if not kernel.requires("userns") then return end
    local _, err = lunas.try(function() return lunas.sandbox{ argv = { "true" }, cwd = "/nonexistent" }:run() end)
    assert.equal("cwd", err.step)
    assert.equal("ENOENT", err.code)
    assert.matches("sandbox: cwd: chdir /nonexistent: No such file or directory", tostring(err))
  end)

  it("lets recipes build their own error objects, and refuses one without a message #rootless", function()
    local e = lunas.error{ msg = "judge: wrong answer", code = "EPROTO", test = 3 }
    assert.is_true(lunas.is_error(e))
    assert.are.equal(3, e.test)
    assert.matches("sandbox_spec.lua:%d+: judge: wrong answer$", tostring(e))
    local _, got = lunas.try(function() error(e, 0) end)
    assert.are.equal(e, got)
    -- tostring of an error object never fails, whatever a caller put in it
    assert.are.equal("x: 1", tostring(lunas.error{ msg = "1", where = "x" }))
    for _, bad in ipairs{ {}, { msg = 7 }, { msg = {} } } do
      local ok, err = pcall(lunas.error, bad)
      assert.is_false(ok)
      assert.matches("lunas.error: field 'msg': string expected", err)
    end
    local ok, err = pcall(lunas.error, "text")
    assert.is_false(ok)
    assert.matches("lunas.error: table expected, got string", err)
  end)

  it("searches PATH, sets argv0 and the working directory", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "sh", "-c", "echo $0; pwd" }, argv0 = "renamed", cwd = "/tmp" }
    assert.equal("renamed\n/tmp\n", out)
  end)

  it("keeps only TERM, PATH, HOME and LANG by default", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "env" } }
    for line in out:gmatch("[^\n]+") do
      local name = line:match("^([^=]+)=")
      assert.is_truthy(({ TERM = 1, PATH = 1, HOME = 1, LANG = 1 })[name], line)
    end
    assert.matches("PATH=", out)
  end)

  it("sets, unsets and clears the environment", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "/usr/bin/env" }, clearenv = true, env = { A = "1", B = "two words" } }
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)
    assert.same({ "A=1", "B=two words" }, lines)
    out = capture{ argv = { "env" }, unsetenv = { "HOME" }, env = { X = "y" } }
    assert.not_matches("\nHOME=", "\n" .. out)
    assert.matches("\nX=y\n", "\n" .. out)
  end)

  it("closes every descriptor beyond 0-2, even ones without close-on-exec", function()
    if not kernel.requires("userns") then return end
    local leaky = assert(io.open("/proc/self/status")) -- stdio opens without O_CLOEXEC
    finally(function() leaky:close() end)
    local out = capture{ argv = { "ls", "/proc/self/fd" } }
    -- 0, 1, 2 and the directory ls itself is reading.
    assert.equal("0\n1\n2\n3\n", out)
    out = capture{ argv = { "ls", "/proc/self/fd" }, close_fds = false }
    assert.is_true(select(2, out:gsub("\n", "")) > 4, "the unclosed descriptor must show: " .. out)
  end)

  it("keeps the descriptors listed in keep_fds", function()
    if not kernel.requires("userns") then return end
    local r, w = core.pipe()
    finally(function() r:close() w:close() end)
    local out = capture{ argv = { "/bin/sh", "-c", "echo through >&" .. w:fileno() .. "; ls /proc/self/fd" },
      keep_fds = { w } }
    assert.matches("\n" .. w:fileno() .. "\n", "\n" .. out)
    w:close()
    assert.equal("through\n", util.drain(r))
  end)

  it("gives the payload default signal dispositions and an empty mask, whatever lunas inherited", function()
    if not kernel.requires("userns") then return end
    -- lunas started with INT, HUP and TERM ignored (as nohup or a careless shell would leave them).
    local out = util.run({ "/bin/sh", "-c", "trap '' INT HUP TERM; exec " .. util.quote(util.bin) ..
      " run -- /bin/sh -c 'grep -E \"^Sig(Ign|Blk)\" /proc/self/status'" })
    -- sh itself ignores nothing unless told; a reset payload shows empty sets.
    assert.matches("SigBlk:%s+0+\n", out)
    assert.matches("SigIgn:%s+0+\n", out)
  end)

  it("starts a new session by default", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "/bin/sh", "-c", "cut -d' ' -f6 /proc/self/stat; echo $$" } }
    local sid, pid = out:match("^(%d+)\n(%d+)\n$")
    assert.equal(pid, sid)
    out = capture{ argv = { "/bin/sh", "-c", "cut -d' ' -f6 /proc/self/stat; echo $$" }, new_session = false }
    sid, pid = out:match("^(%d+)\n(%d+)\n$")
    assert.are_not.equal(pid, sid)
  end)

  it("applies rlimits by name", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "cat", "/proc/self/limits" }, rlimits = { nofile = 42, core = { 0, 0 } } }
    assert.matches("Max open files%s+42%s+42", out)
    assert.matches("Max core file size%s+0%s+0", out)
  end)

  it("runs a Lua function as the payload", function()
    if not kernel.requires("userns") then return end
    local out, result = capture{ fn = function()
      io.write("pid ", core.getpid(), " uid ", core.ids().uid, "\n")
      return 3
    end }
    assert.equal("pid 2 uid 0\n", out)
    assert.equal(3, result.status)
  end)

  it("forwards signals from the reaper to the payload", function()
    if not kernel.requires("userns") then return end
    local r, w = core.pipe()
    local running = lunas.sandbox{
      argv = { "/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done" }, stdout = w }:spawn()
    w:close()
    finally(function() running:close() r:close() end)
    assert.equal("ready\n", r:read())
    running:kill("TERM")
    local result = running:wait()
    assert.equal(42, result.status)
  end)

  it("reaps orphaned grandchildren", function()
    if not kernel.requires("userns") then return end
    -- The orphan lives long enough to be seen on a slow (emulated) machine, where scanning /proc takes a while.
    local running = lunas.sandbox{ argv = { "/bin/sh", "-c", "sh -c 'sleep 1.5 &'; sleep 30" } }:spawn()
    finally(function() running:close() end)
    -- The orphan is re-parented to the reaper, then exits; the reaper must collect it.
    local orphan = util.wait_for(function()
      for _, pid in ipairs(children(running.pid)) do
        if (util.read("/proc/" .. pid .. "/cmdline") or ""):match("^sleep%z1.5") then return pid end
      end
    end, 10)
    assert.is_truthy(orphan, "the orphan should be re-parented to the reaper")
    assert.is_truthy(util.wait_for(function() return not util.read("/proc/" .. orphan .. "/stat") end, 15),
      "the exited orphan must not stay a zombie")
    assert.equal(1, #children(running.pid))
  end)

  it("keeps the reaper out of the payload's reach", function()
    if not kernel.requires("userns") then return end
    local out = capture{ argv = { "/bin/sh", "-c", "cat /proc/1/environ >/dev/null 2>&1 && echo readable; readlink /proc/1/exe || echo denied; grep CapBnd /proc/self/status" } }
    assert.not_matches("readable", out)
    assert.matches("denied", out)
    local bounding = tonumber(out:match("CapBnd:%s+(%x+)"), 16)
    assert.equal(0, bounding & (1 << 19), "CAP_SYS_PTRACE must be out of the bounding set")
    -- The reaper is the sealed memfd program, never lunas's own binary.
    local running = start{}
    finally(function() running:close() end)
  end)

  it("kills a payload that outlives its timeout", function()
    if not kernel.requires("userns") then return end
    local result = lunas.sandbox{ argv = { "sleep", "30" }, timeout = 0.2 }:run()
    assert.is_true(result.timed_out)
    assert.equal(9, result.signal)
  end)

  it("kills and reaps a running sandbox on close", function()
    if not kernel.requires("userns") then return end
    local running, payload = start{}
    running:close()
    assert.is_falsy(util.alive(running.pid))
    assert.is_truthy(util.wait_for(function() return not util.alive(payload) end))
    running:close() -- idempotent
  end)

  it("dies with its parent", function()
    if not kernel.requires("userns") then return end
    local dir, cleanup = util.tmpdir()
    finally(cleanup)
    util.write(dir .. "/recipe.lua", [[
      local sb = lunas.sandbox{ argv = { "sleep", "30" } }:spawn()
      print(sb.pid)
      io.stdout:flush()
      while true do lunas.core.now() end
    ]])
    local p = io.popen("exec " .. util.quote(util.bin) .. " " .. dir .. "/recipe.lua & echo $!; wait", "r")
    local lunas_pid = tonumber(p:read("l"))
    local reaper = tonumber(p:read("l"))
    local payload = util.wait_for(function() return children(reaper)[1] end)
    assert.is_truthy(payload)
    assert.is_true(os.execute("kill -KILL " .. lunas_pid))
    p:close()
    assert.is_truthy(util.wait_for(function() return not util.alive(reaper) and not util.alive(payload) end),
      "the sandbox must die with lunas")
    -- what a killed lunas leaves (root's id range record), as lunas gc removes it
    require("lunas.idrange").gc()
  end)

  it("survives its parent with die_with_parent = false", function()
    if not kernel.requires("userns") then return end
    local defer = util.cleanups(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    util.write(dir .. "/recipe.lua", [[
      local sb = lunas.sandbox{ argv = { "sleep", "30" }, die_with_parent = false, stdout = "null", stderr = "null" }:spawn()
      print(sb.pid)
      io.stdout:flush()
      lunas.core.exit(0)
    ]])
    local out = util.lunas({ dir .. "/recipe.lua" })
    local reaper = tonumber(out:match("^(%d+)"))
    assert.is_truthy(reaper, out)
    defer(function() os.execute("kill -KILL " .. reaper .. " 2>/dev/null") end)
    assert.is_true(util.alive(reaper))
    assert.is_true(os.execute("kill -KILL " .. reaper))
    assert.is_truthy(util.wait_for(function() return not util.alive(reaper) end))
    require("lunas.idrange").gc()
  end)
end)

describe("sandbox identities", function()
  it("maps uid and gid ranges as root, with setgroups allowed #root", function()
    if not kernel.requires("root") then return end
    local running, payload = start{ uid_map = { { 0, 0, 1 }, { 1, 100000, 1000 } },
      gid_map = { { 0, 0, 1 }, { 1, 100000, 1000 } }, uid = 5, gid = 6, groups = { 7, 8 } }
    finally(function() running:close() end)
    local map = util.read("/proc/" .. payload .. "/uid_map")
    assert.matches("^%s*0%s+0%s+1\n%s*1%s+100000%s+1000\n$", map)
    assert.equal("allow", util.read("/proc/" .. payload .. "/setgroups"):match("%a+"))
    -- uid 5 inside is 100004 outside.
    assert.matches("^100004%s", util.status_field(payload, "Uid"))
    assert.matches("^100005%s", util.status_field(payload, "Gid"))
    assert.equal("100006 100007", util.status_field(payload, "Groups"):match("^%s*(.-)%s*$"))
  end)

  it("maps ranges through newuidmap when unprivileged #rootless", function()
    if util.pass ~= "rootless" then return pending("runs in the rootless pass") end
    if not kernel.requires("userns", "newuidmap") then return end
    local running, payload = start{ uid_map = { { 0, ids.euid, 1 }, { 1, 200000, 100 } },
      gid_map = { { 0, ids.egid, 1 }, { 1, 200000, 100 } }, uid = 1 }
    finally(function() running:close() end)
    assert.matches("%s*1%s+200000%s+100\n", util.read("/proc/" .. payload .. "/uid_map"))
    assert.matches("^200000%s", util.status_field(payload, "Uid"))
  end)

  it("explains a failing newuidmap #rootless", function()
    if util.pass ~= "rootless" then return pending("runs in the rootless pass") end
    if not kernel.requires("userns", "newuidmap") then return end
    local _, err = lunas.try(function()
      return lunas.sandbox{ argv = { "true" }, uid_map = { { 0, ids.euid, 1 }, { 1, 900000, 10 } } }:run()
    end)
    assert.equal("maps", err.step)
    assert.matches("newuidmap", tostring(err))
  end)

  it("changes uid without a user namespace when root #root", function()
    if not kernel.requires("root") then return end
    local out = capture{ argv = { "/bin/sh", "-c", "id -u; id -g; id -G" }, namespaces = "pid,mount",
      uid = 4321, gid = 4322, groups = { 4323 } }
    assert.equal("4321\n4322\n4322 4323\n", out)
  end)
end)

describe("sandbox spec validation #rootless", function()
  local function rejects(spec, pattern)
    local ok, err = pcall(lunas.sandbox, spec)
    assert.is_false(ok)
    assert.matches(pattern, tostring(err))
  end

  it("names the bad field", function()
    rejects({ argv = { "true" }, bogus = 1 }, "unknown field 'bogus'")
    rejects({ argv = {} }, "field 'argv'")
    rejects({ argv = { "true", 3 } }, "field 'argv': entry 2: string expected")
    rejects({ argv = { "true" }, fn = print }, "exactly one of 'argv' and 'fn'")
    rejects({ argv = { "true" }, uid = -1 }, "field 'uid'")
    rejects({ argv = { "true" }, namespaces = "user,bogus" }, "unknown namespace 'bogus'")
    rejects({ argv = { "true" }, rlimits = { files = 1 } }, "field 'rlimits': unknown resource 'files'")
    rejects({ argv = { "true" }, env = { ["A=B"] = "x" } }, "field 'env': bad variable name")
    rejects({ argv = { "true" }, timeout = 0 }, "field 'timeout'")
    rejects({ argv = { "true" }, uid_map = { { 0, 0 } } }, "field 'uid_map'")
    rejects({ argv = { "true" }, stdout = "somewhere" }, "field 'stdout'")
    rejects({ argv = { "true" }, time = { realtime = 1 } }, "unknown clock 'realtime'")
  end)

  it("rejects fields that need a namespace the spec lacks", function()
    local ok, err = pcall(function() return lunas.sandbox{ argv = { "true" }, namespaces = "user", hostname = "x" }:run() end)
    assert.is_false(ok)
    assert.matches("field 'hostname': needs a uts namespace", tostring(err))
  end)
end)

describe("lunas.spawn #rootless", function()
  it("runs a function in new namespaces and returns a process handle", function()
    if not kernel.requires("userns") then return end
    local r, w = core.pipe()
    local p = lunas.spawn{ flags = "user,uts", fn = function()
      r:close()
      assert(core.id_maps(0, { uid = { { 0, ids.euid, 1 } }, gid = { { 0, ids.egid, 1 } }, setgroups = "deny" }))
      assert(core.sethostname("spawned"))
      w:write(core.uname().hostname)
      return 5
    end }
    w:close()
    assert.equal("spawned", util.drain(r))
    r:close()
    assert.same({ pid = p.pid, status = 5 }, p:wait())
    p:close()
  end)

  it("rejects unknown fields", function()
    assert.has_error(function() lunas.spawn{ flags = "user", fn = print, bogus = true } end,
      "lunas.spawn: unknown field 'bogus'")
  end)
end)
