-- lunas.core process primitives: spawn, exec, process handles, pidfd_open, the reaper, prctl, rlimits, personality,
-- ids, descriptors (unix sockets by path, descriptors passed with data), session, exit, errno names, now.
--
-- Children run a copy of this Lua state (fork semantics). They talk to the test through a channel (two pipes:
-- lines of tab-separated fields up, lines down) and block on it while the test looks at them from outside
-- (/proc/PID/*). Every child is reaped by `stop` in a finally block, also when the test fails.

local core = require "lunas.core"
local lfs = require "lfs"
local kernel = require "support.kernel"
local util = require "support.util"

local IDS = core.ids()
local SELF = core.getpid()

-- ---- helpers ------------------------------------------------------------------------------------------------

local child = require "support.child"
local channel, start, stop, finish = child.channel, child.start, child.stop, child.finish
local fd_flags, has_flag, fd_link, readlink = child.fd_flags, child.has_flag, child.fd_link, child.readlink
local assert_failure, assert_raises, map_self = child.assert_failure, child.assert_raises, child.map_self
local O_CLOEXEC, O_NONBLOCK = child.O_CLOEXEC, child.O_NONBLOCK

--- Fields of /proc/PID/stat after the command name: [1] state, [2] ppid, [3] pgrp, [4] session, ...
local function stat_fields(pid)
  local stat = util.read("/proc/" .. tostring(pid) .. "/stat")
  if not stat then return nil end
  local rest = stat:match("^%d+ %(.*%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return f
end

--- Processes whose parent is pid: a list of {pid =, state =}.
local function children_of(pid)
  local list = {}
  for name in lfs.dir("/proc") do
    if name:match("^%d+$") then
      local f = stat_fields(name)
      if f and tonumber(f[2]) == pid then list[#list + 1] = { pid = tonumber(name), state = f[1] } end
    end
  end
  table.sort(list, function(a, b) return a.pid < b.pid end)
  return list
end

local function zombies_of(pid)
  local z = {}
  for _, c in ipairs(children_of(pid)) do
    if c.state == "Z" then z[#z + 1] = c.pid end
  end
  return z
end

--- Open descriptor numbers of a process, as a set.
local function fds_of(pid)
  local set = {}
  for name in lfs.dir("/proc/" .. tostring(pid) .. "/fd") do
    if name:match("^%d+$") then set[tonumber(name)] = true end
  end
  return set
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end


local scope = util.cleanups

--- A free descriptor number in this process at or above `from`.
local function free_fd(from)
  local used = fds_of(SELF)
  local n = from
  while used[n] do n = n + 1 end
  return n
end

local function test_env(extra)
  local env = extra or {}
  -- keeps the leak check able to recognise a process of this run
  env.LUNAS_TEST_RUN = os.getenv("LUNAS_TEST_RUN") or "none"
  return env
end

--- Reads fd to its end, failing the test after `seconds` (default 10) of silence.
local function read_all(fd, seconds)
  local parts = {}
  while true do
    local ready = core.poll({ fd }, seconds or 10)
    assert.is_true(ready and #ready == 1, "nothing to read; got so far: " .. ("%q"):format(table.concat(parts)))
    local chunk = fd:read()
    if not chunk or chunk == "" then break end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts)
end

-- /proc/net/unix: the type code of each socket type, and an entry (by inode) read from outside.
local UNIX_TYPES = { stream = "0001", dgram = "0002", seqpacket = "0005" }
local ACCEPTING = "00010000" -- __SO_ACCEPTCON: listening

local function unix_entries()
  local entries = {}
  for line in (util.read("/proc/self/net/unix") or ""):gmatch("[^\n]+") do
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if f[7] and f[7]:match("^%d+$") then
      entries[#entries + 1] = { flags = f[4], type = f[5], state = f[6], inode = f[7], path = f[8] }
    end
  end
  return entries
end

local function unix_entry(inode)
  for _, e in ipairs(unix_entries()) do
    if e.inode == inode then return e end
  end
  return {}
end

local function socket_inode(fd)
  return fd_link(SELF, fd:fileno()):match("^socket:%[(%d+)%]$")
end

-- A listener at a path (perl, as core_landlock_spec.lua's): a stream or seqpacket one accepts one connection and
-- execs the rest of its arguments with that connection as stdin; a dgram one prints the first message it gets.
local UNIX_LISTENER = [[
use Socket;
my ($path, $type) = (shift, shift);
my %types = (stream => SOCK_STREAM, seqpacket => SOCK_SEQPACKET, dgram => SOCK_DGRAM);
socket(my $s, PF_UNIX, $types{$type}, 0) or die "socket: $!";
bind($s, pack_sockaddr_un($path)) or die "bind: $!";
if ($type eq "dgram") {
  defined(recv($s, my $msg, 4096, 0)) or die "recv: $!";
  print $msg;
  exit 0;
}
listen($s, 4) or die "listen: $!";
accept(my $c, $s) or die "accept: $!";
open(STDIN, "<&", $c) or die "dup: $!";
exec @ARGV or die "exec: $!";
]]

-- The other end of an OCI console socket: receives a descriptor on stdin, prints its identity and the data.
local RECEIVER = ([[
package.cpath = %q .. "/lib/?.so;" .. package.cpath
local core = require "lunas.core"
local fd, data = core.recv_fd(0)
if not fd then io.write("failed: ", data) os.exit(1) end
local _, id = core.file_type(fd)
io.write(id, "\n", data)
]]):format(util.build)

--- Starts a listener at path (killed by the test's clean-up) and waits until it listens; returns its process
-- handle and the read end of its stdout.
local function unix_listener(defer, path, kind, argv)
  local r, w = assert(core.pipe())
  local p = assert(core.spawn{ fn = function()
    assert(core.dup2(w, 1))
    local full = { "perl", "-e", UNIX_LISTENER, path, kind }
    for _, word in ipairs(argv or {}) do full[#full + 1] = word end
    core.exec(full)
    return 127
  end })
  w:close()
  defer(function() stop(p); r:close() end)
  local ready = util.wait_for(function()
    for _, e in ipairs(unix_entries()) do
      if e.path == path and (kind == "dgram" or e.flags == ACCEPTING) then return true end
    end
  end, 10)
  assert.is_true(ready, "the listener at " .. path .. " did not start")
  return p, r
end

-- ---- spawn --------------------------------------------------------------------------------------------------

describe("core.spawn", function()
  it("runs a function in a child process and relays its result as the exit status #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      c.send("ready", core.getpid(), core.getppid())
      return tonumber(c.recv())
    end)
    defer(function() stop(p, ch) end)
    local _, pid, ppid = ch.expect()
    assert.equal(p.pid, tonumber(pid))
    assert.equal(SELF, tonumber(ppid))
    assert.are_not.equal(SELF, p.pid)
    -- from outside: a live child of ours
    assert.equal(SELF, tonumber(stat_fields(p.pid)[2]))
    assert.is_true(util.alive(p.pid))
    ch.post(7)
    local st = finish(p)
    assert.same({ pid = p.pid, status = 7 }, st)
  end)

  it("maps the function's return value: true/nil -> 0, false -> 1, an error -> 125 #rootless", function()
    local function run(fn)
      local p = assert(core.spawn{ fn = fn })
      local st = finish(p)
      p:close()
      return st.status
    end
    assert.equal(0, run(function() return true end))
    assert.equal(0, run(function() end))
    assert.equal(1, run(function() return false end))
    assert.equal(3, run(function() return 259 end)) -- an exit status is 8 bits
    assert.equal(125, run(function()
      local null = assert(core.open("/dev/null", "w"))
      core.dup2(null, 2) -- the child prints the error on stderr; keep the test output clean
      error("boom")
    end))
  end)

  it("accepts flags as an integer, a comma string and a table #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local ns = core.namespaces
    for _, flags in ipairs({ ns.user | ns.uts, "user,uts", { "user", "uts" }, "user, uts" }) do
      local p, ch = start({ flags = flags }, function(c)
        c.send("ready")
        c.recv()
      end)
      defer(function() stop(p, ch) end)
      ch.expect()
      for _, kind in ipairs({ "user", "uts" }) do
        assert.are_not.equal(util.ns_link(SELF, kind), util.ns_link(p.pid, kind),
          kind .. " namespace with flags " .. tostring(flags))
      end
      -- a namespace not asked for is shared
      assert.equal(util.ns_link(SELF, "net"), util.ns_link(p.pid, "net"))
      ch.post("done")
      assert.equal(0, finish(p).status)
      stop(p, ch)
    end
  end)

  it("raises naming 'flags' for unknown flag names and bad flag values, creating no child #rootless", function()
    local before = #children_of(SELF)
    local fn = function() return 0 end
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.spawn, { flags = "user,bogus", fn = fn })
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.spawn, { flags = { "net", "bogus" }, fn = fn })
    assert_raises({ "field 'flags'", "unknown name 'bogus'" }, core.spawn, { flags = "bogus", argv = { "true" } })
    assert_raises("field 'flags'", core.spawn, { flags = -1, fn = fn })
    assert_raises("field 'flags'", core.spawn, { flags = 1.5, fn = fn })
    assert_raises("field 'flags'", core.spawn, { flags = true, fn = fn })
    assert_raises("field 'flags'", core.spawn, { flags = { 1 }, fn = fn })
    assert.equal(before, #children_of(SELF))
  end)

  it("reports a bad field of its option table as argument #1 #rootless", function()
    -- spawn takes one argument; the error must not point at a stack slot
    assert_raises("bad argument #1 to", core.spawn, { flags = "bogus", fn = function() end })
    assert_raises("bad argument #1 to", core.spawn, { fn = function() end, env = {} })
  end)

  it("requires exactly one of fn and argv #rootless", function()
    assert_raises("exactly one of 'fn' and 'argv' expected", core.spawn, {})
    assert_raises("exactly one of 'fn' and 'argv' expected", core.spawn, { fn = function() end, argv = { "true" } })
    assert_raises("field 'fn'", core.spawn, { fn = "not a function" })
    assert_raises("field 'argv'", core.spawn, { argv = "true" })
    assert_raises("field 'argv'", core.spawn, { argv = {} })
    assert_raises("field 'argv'", core.spawn, { argv = { "true", 1 } })
  end)

  it("raises on unknown option names and on exec options without argv #rootless", function()
    local fn = function() return 0 end
    assert_raises("unknown option 'bogus'", core.spawn, { fn = fn, bogus = 1 })
    assert_raises("unknown option 'flag'", core.spawn, { fn = fn, flag = "net" })
    assert_raises("field 'env': only valid with 'argv'", core.spawn, { fn = fn, env = {} })
    assert_raises("field 'path': only valid with 'argv'", core.spawn, { fn = fn, path = false })
    assert_raises("field 'argv0': only valid with 'argv'", core.spawn, { fn = fn, argv0 = "x" })
    assert_raises("table expected", core.spawn, "true")
  end)
end)

describe("core.spawn with vfork", function()
  it("runs a function vfork-style: spawn returns once the child has exec'd or exited #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ vfork = true, fn = function() return 9 end })
    defer(function() stop(p) end)
    assert.same({ pid = p.pid, status = 9 }, finish(p))
    -- spawn returns once the child exec'd (the kernel releases a vfork parent while the new program sets up
    -- its arguments, so the cmdline may show a moment later)
    local q = assert(core.spawn{ vfork = true, fn = function()
      core.exec({ "sleep", "30" }, { argv0 = "lunas-vfork" })
      return 127
    end })
    defer(function() stop(q) end)
    if os.getenv("LUNAS_SANITIZE") == "1" then
      return pending("sanitizer builds start vfork-style children as copies: spawn returns before the exec")
    end
    assert.matches("/sleep$", readlink("/proc/" .. q.pid .. "/exe"))
    assert.equal("lunas-vfork\0" .. "30\0", util.wait_for(function()
      local c = util.read("/proc/" .. q.pid .. "/cmdline")
      return c ~= "" and c
    end, 10))
    assert.equal(SELF, tonumber(stat_fields(q.pid)[2]))
    q:kill("KILL")
    assert.equal(9, finish(q).signal)
    -- an exec failure is the function's to report
    local r = assert(core.spawn{ vfork = true, fn = function()
      local _, _, code = core.exec({ "/nonexistent/prog" })
      return code == "ENOENT" and 3 or 4
    end })
    defer(function() stop(r) end)
    assert.equal(3, finish(r).status)
  end)

  it("creates the namespaces it is asked for #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p = assert(core.spawn{ vfork = true, flags = "user,uts", fn = function()
      core.exec({ "sleep", "30" })
      return 127
    end })
    defer(function() stop(p) end)
    assert.are_not.equal(util.ns_link(SELF, "user"), util.ns_link(p.pid, "user"))
    assert.are_not.equal(util.ns_link(SELF, "uts"), util.ns_link(p.pid, "uts"))
    assert.equal(util.ns_link(SELF, "net"), util.ns_link(p.pid, "net"))
    p:kill("KILL")
    finish(p)
  end)

  it("raises naming 'vfork' with argv #rootless", function()
    assert_raises({ "field 'vfork'", "only with 'fn'" }, core.spawn, { vfork = true, argv = { "true" } })
    assert_raises("field 'vfork'", core.spawn, { vfork = "yes", fn = function() end })
  end)
end)

describe("core.spawn with argv", function()
  it("returns nil, 'exec FILE: message', errno name when exec fails, leaving no zombie #rootless", function()
    local defer = scope(finally)
    assert_failure("^exec /x: No such file or directory$", "ENOENT", core.spawn{ argv = { "/x" } })
    assert_failure("^exec /nonexistent/dir/prog: No such file or directory$", "ENOENT",
      core.spawn{ argv = { "/nonexistent/dir/prog", "arg" } })
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local file = dir .. "/not-executable"
    util.write(file, "#!/bin/sh\nexit 0\n")
    assert_failure("^exec " .. file:gsub("%p", "%%%0") .. ": Permission denied$", "EACCES",
      core.spawn{ argv = { file } })
    assert.same({}, zombies_of(SELF))
  end)

  it("does not leak a descriptor when exec fails #rootless", function()
    local defer = scope(finally)
    collectgarbage("stop")
    defer(function() collectgarbage("restart") end)
    local before = count(fds_of(SELF))
    for _ = 1, 3 do assert.is_nil(core.spawn{ argv = { "/nonexistent/x" } }) end
    -- the failed child's pidfd must be closed by spawn itself, not left to the garbage collector
    assert.equal(before, count(fds_of(SELF)))
  end)

  it("searches PATH from the given environment, not from ours #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local prog = "lunas-path-probe"
    util.write(dir .. "/" .. prog, "#!/bin/sh\nexit 42\n")
    util.run({ "chmod", "0755", dir .. "/" .. prog })
    -- our PATH does not have dir (EACCES when a directory of our PATH is not searchable by this uid)
    local none, msg, code = core.spawn{ argv = { prog } }
    assert.is_nil(none)
    assert.matches("^exec lunas%-path%-probe: ", msg)
    assert.is_truthy(code == "ENOENT" or code == "EACCES", code)
    -- the environment's PATH has it
    local p = assert(core.spawn{ argv = { prog }, env = test_env{ PATH = "/nonexistent:" .. dir } })
    defer(function() stop(p) end)
    assert.same({ pid = p.pid, status = 42 }, finish(p))
    -- and our PATH (which has sleep) is not used when the environment has its own
    assert_failure("^exec sleep: No such file or directory$", "ENOENT",
      core.spawn{ argv = { "sleep", "0" }, env = test_env{ PATH = dir } })
    -- path = false: no search at all
    assert_failure("^exec lunas%-path%-probe: No such file or directory$", "ENOENT",
      core.spawn{ argv = { prog }, env = test_env{ PATH = dir }, path = false })
    -- a non-executable match with nothing better gives EACCES
    util.write(dir .. "/lunas-noexec", "#!/bin/sh\nexit 0\n")
    assert_failure("^exec lunas%-noexec: Permission denied$", "EACCES",
      core.spawn{ argv = { "lunas-noexec" }, env = test_env{ PATH = dir } })
  end)

  it("passes argv0 as the program's argv[0] and runs argv[1] #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ argv = { "sleep", "30" }, argv0 = "lunas-argv0" })
    defer(function() stop(p) end)
    assert.equal("lunas-argv0\0" .. "30\0", util.read("/proc/" .. p.pid .. "/cmdline"))
    assert.matches("/sleep$", readlink("/proc/" .. p.pid .. "/exe"))
    assert.is_true(p:kill())
    assert.equal("TERM", finish(p).signame)
  end)

  it("gives the program exactly the environment it is given, as a map or an array #rootless", function()
    local defer = scope(finally)
    local function environ(pid)
      local set = {}
      for entry in util.read("/proc/" .. pid .. "/environ"):gmatch("([^%z]*)%z") do set[entry] = true end
      return set
    end
    local run = os.getenv("LUNAS_TEST_RUN") or "none"
    local p = assert(core.spawn{ argv = { "sleep", "30" },
                                 env = { LUNAS_A = "1", LUNAS_B = "two words", LUNAS_TEST_RUN = run } })
    defer(function() stop(p) end)
    -- no PATH given: sleep is still found (the default PATH)
    assert.same({ ["LUNAS_A=1"] = true, ["LUNAS_B=two words"] = true, ["LUNAS_TEST_RUN=" .. run] = true },
      environ(p.pid))
    p:kill("KILL")
    finish(p)
    p:close()

    local q = assert(core.spawn{ argv = { "sleep", "30" },
                                 env = { "LUNAS_C=x=y", "PATH=/usr/bin:/bin", "LUNAS_TEST_RUN=" .. run } })
    defer(function() stop(q) end)
    assert.same({ ["LUNAS_C=x=y"] = true, ["PATH=/usr/bin:/bin"] = true, ["LUNAS_TEST_RUN=" .. run] = true },
      environ(q.pid))
    q:kill("KILL")
    finish(q)
  end)

  it("raises naming 'env' for a malformed environment #rootless", function()
    assert_raises("field 'env'", core.spawn, { argv = { "true" }, env = { ["A=B"] = "x" } })
    assert_raises("field 'env'", core.spawn, { argv = { "true" }, env = { A = 1 } })
    assert_raises("field 'env'", core.spawn, { argv = { "true" }, env = { "A=1", 2 } })
    assert_raises("field 'env'", core.spawn, { argv = { "true" }, env = "A=1" })
  end)
end)

describe("core.exec", function()
  it("replaces the child with the program, with argv0 and env #rootless", function()
    local defer = scope(finally)
    local run = os.getenv("LUNAS_TEST_RUN") or "none"
    local p, ch = start({}, function(c)
      local ok, msg, code = core.exec({ "/nonexistent/prog" })
      c.send("failed", tostring(ok), msg, code)
      c.recv()
      local _, msg2, code2 = core.exec({ "sleep", "30" }, { argv0 = "lunas-exec0", env = { LUNAS_TEST_RUN = run } })
      c.send("error", "exec returned: " .. tostring(msg2) .. " " .. tostring(code2))
      return 1
    end)
    defer(function() stop(p, ch) end)
    local _, ok, msg, code = ch.expect()
    assert.equal("nil", ok)
    assert.equal("exec /nonexistent/prog: No such file or directory", msg)
    assert.equal("ENOENT", code)
    ch.post("go")
    local cmdline = util.wait_for(function()
      local c = util.read("/proc/" .. p.pid .. "/cmdline")
      return c and c:find("^lunas%-exec0") and c
    end, 10)
    assert.equal("lunas-exec0\0" .. "30\0", cmdline)
    assert.equal("LUNAS_TEST_RUN=" .. run .. "\0", util.read("/proc/" .. p.pid .. "/environ"))
    p:kill("KILL")
    assert.same({ pid = p.pid, signal = 9, signame = "KILL", core = false }, finish(p))
  end)
end)

-- ---- process handles ------------------------------------------------------------------------------------------

describe("process handle", function()
  it("has the pid, a pidfd and a tostring #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ argv = { "sleep", "30" } })
    defer(function() stop(p) end)
    assert.is_number(p.pid)
    assert.equal(SELF, tonumber(stat_fields(p.pid)[2]))
    assert.equal("process " .. p.pid, tostring(p))
    local fd = p:fileno()
    assert.equal("anon_inode:[pidfd]", fd_link(SELF, fd))
    assert.matches("\nPid:%s*" .. p.pid .. "\n", util.read("/proc/self/fdinfo/" .. fd))
    assert.is_true(has_flag(fd_flags(SELF, fd), O_CLOEXEC))
  end)

  it("wait returns {pid, status} for an exit and caches it #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ argv = { "sh", "-c", "exit 3" } })
    defer(function() stop(p) end)
    local st = finish(p)
    assert.same({ pid = p.pid, status = 3 }, st)
    assert.same({ pid = p.pid, status = 3 }, p:wait())
    assert.is_nil(util.read("/proc/" .. p.pid .. "/stat")) -- reaped, not a zombie
  end)

  it("wait(timeout) returns nil, message, 'ETIMEDOUT' while the child runs #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ argv = { "sleep", "30" } })
    defer(function() stop(p) end)
    assert_failure("^wait pid " .. p.pid .. ": Connection timed out$", "ETIMEDOUT", p:wait(0.05))
    assert_failure("^wait pid " .. p.pid .. ": Connection timed out$", "ETIMEDOUT", p:wait(0))
    assert.is_true(util.alive(p.pid))
    assert_raises("field 'timeout'", p.wait, p, -1)
    assert_raises("number expected", p.wait, p, "soon")
  end)

  it("kill sends a signal by name or number through the pidfd #rootless", function()
    local defer = scope(finally)
    local cases = {
      { nil, 15, "TERM" }, { "TERM", 15, "TERM" }, { "SIGUSR1", 10, "USR1" }, { 9, 9, "KILL" }, { "INT", 2, "INT" },
    }
    for _, case in ipairs(cases) do
      local p = assert(core.spawn{ argv = { "sleep", "30" } })
      defer(function() stop(p) end)
      assert.is_true(p:kill(case[1]))
      assert.same({ pid = p.pid, signal = case[2], signame = case[3], core = false }, finish(p))
      p:close()
    end
  end)

  it("kill raises on an unknown signal and fails with ESRCH once the child is reaped #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ argv = { "sleep", "30" } })
    defer(function() stop(p) end)
    assert_raises({ "field 'signal'", "unknown signal 'BOGUS'" }, p.kill, p, "BOGUS")
    assert_raises("field 'signal'", p.kill, p, -1)
    assert.is_true(util.alive(p.pid)) -- nothing was sent
    assert.is_true(p:kill("KILL"))
    finish(p)
    assert_failure("^kill pid " .. p.pid .. ": No such process$", "ESRCH", p:kill("TERM"))
  end)

  it("alive() is false once the child exited, before it is reaped #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.is_true(p:alive())
    ch.post("go")
    assert.is_truthy(util.wait_for(function() return not p:alive() end, 10))
    assert.equal("Z", stat_fields(p.pid)[1]) -- exited, not yet reaped
    assert.equal(0, finish(p).status)
    assert.is_false(p:alive())
  end)

  it("close is idempotent, reaps an exited child, and later use raises #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ fn = function() return 5 end })
    defer(function() stop(p) end)
    local pid = p.pid
    assert.is_truthy(util.wait_for(function() return not p:alive() end, 10))
    assert.equal("Z", stat_fields(pid)[1])
    p:close()
    p:close()
    assert.is_nil(util.read("/proc/" .. pid .. "/stat")) -- no zombie left behind
    assert.equal(pid, p.pid)
    assert.equal("process " .. pid .. " (closed)", tostring(p))
    for _, method in ipairs({ "wait", "kill", "alive", "fileno" }) do
      assert_raises("attempt to use a closed process", p[method], p)
    end
  end)

  it("closes with <close> #rootless", function()
    local pid
    do
      local p <close> = assert(core.spawn{ fn = function() return 0 end })
      pid = p.pid
      assert.is_truthy(util.wait_for(function() return not p:alive() end, 10))
    end
    assert.is_nil(util.read("/proc/" .. pid .. "/stat"))
  end)
end)

describe("core.pidfd_open", function()
  it("opens a handle on a process that is not our child: alive, kill, wait without a status #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      local g = assert(core.spawn{ argv = { "sleep", "30" } })
      c.send("grandchild", g.pid)
      local st = g:wait()
      return st.signal or 100
    end)
    defer(function() stop(p, ch) end)
    local _, gpid = ch.expect()
    gpid = tonumber(gpid)
    assert.equal(p.pid, tonumber(stat_fields(gpid)[2])) -- not ours
    local h = assert(core.pidfd_open(gpid))
    defer(function() h:close() end)
    assert.equal(gpid, h.pid)
    assert.is_true(h:alive())
    assert.is_true(h:kill("TERM"))
    -- the child reaps its own child and exits with the signal number it saw
    assert.equal(15, finish(p).status)
    local st = finish(h)
    -- we are not the parent: the status belongs to the child, so the handle reports none
    assert.equal(gpid, st.pid)
    assert.is_nil(st.status)
    assert.is_nil(st.signal, "a process we could not reap must not be reported as killed by signal "
      .. tostring(st.signal))
    assert.is_false(h:alive())
  end)

  it("fails with ESRCH for a pid that does not exist and raises for a bad pid #rootless", function()
    local p = assert(core.spawn{ fn = function() return 0 end })
    local pid = p.pid
    finish(p)
    p:close()
    assert_failure("^pidfd_open pid " .. pid .. ": No such process$", "ESRCH", core.pidfd_open(pid))
    assert_raises("field 'pid'", core.pidfd_open, 0)
    assert_raises("field 'pid'", core.pidfd_open, "x")
  end)
end)

-- ---- the reaper -----------------------------------------------------------------------------------------------

describe("core.reaper", function()
  it("as PID 1 of a new pid namespace relays the payload's exit code and raw status #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local status_r, status_w = assert(core.pipe())
    defer(function() status_r:close(); status_w:close() end)
    local p, ch = start({ flags = "user,pid" }, function(c)
      local _, msg, code = core.reaper{ status = status_w, fn = function()
        c.send("payload", core.getpid(), core.getppid())
        return tonumber(c.recv())
      end }
      c.send("error", "reaper returned: " .. tostring(msg) .. " " .. tostring(code))
      return 99
    end)
    defer(function() stop(p, ch) end)
    status_w:close()
    local _, pid, ppid = ch.expect()
    assert.equal("2", pid)
    assert.equal("1", ppid)
    assert.matches("^" .. p.pid .. "%s+1$", util.status_field(p.pid, "NSpid"))
    ch.post(7)
    assert.same({ pid = p.pid, status = 7 }, finish(p))
    -- on status: the payload's pid as the reaper sees it, then its raw wait status (two native ints)
    local raw = util.drain(status_r)
    assert.equal(8, #raw)
    local payload_pid, wait_status = string.unpack("=i4i4", raw)
    assert.equal(2, payload_pid)
    assert.equal(7 << 8, wait_status) -- exited with 7
  end)

  it("forwards signals it receives to the payload #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local status_r, status_w = assert(core.pipe())
    defer(function() status_r:close(); status_w:close() end)
    local p, ch = start({ flags = "user,pid" }, function(c)
      core.reaper{ status = status_w, fn = function()
        c.send("ready")
        c.recv()
        return 0
      end }
      return 99
    end)
    defer(function() stop(p, ch) end)
    status_w:close()
    ch.expect()
    assert.is_true(p:kill("TERM"))
    -- the reaper itself exits normally, with 128 + the payload's signal
    assert.same({ pid = p.pid, status = 128 + 15 }, finish(p))
    local payload_pid, wait_status = string.unpack("=i4i4", util.drain(status_r))
    assert.equal(2, payload_pid)
    assert.equal(15, wait_status) -- the payload was killed by SIGTERM
  end)

  it("reaper_exec becomes the reaper program, which confines itself before the payload execs #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local probe, msg, code = core.reaper_image()
    if not probe then pending("no reaper image: " .. tostring(msg) .. " (" .. tostring(code) .. ")") end
    probe:close()
    local status_r, status_w = assert(core.pipe())
    local err_r, err_w = assert(core.pipe())
    defer(function() status_r:close(); status_w:close(); err_r:close(); err_w:close() end)
    local ids = core.ids()
    local p, ch = start({ flags = "user,pid" }, function(c)
      -- Mapped, as in a sandbox: /proc of an undumpable process belongs to its namespace's root, which must be
      -- us for the checks below to read its descriptors.
      assert(core.id_maps(0, { uid = { { 0, ids.euid, 1 } }, gid = { { 0, ids.egid, 1 } }, setgroups = "deny" }))
      local image = assert(core.reaper_image())
      local _, m, e = core.reaper_exec(image, { argv = { "sleep", "30" }, errors = err_w, status = status_w })
      c.send("error", "reaper_exec returned: " .. tostring(m) .. " " .. tostring(e))
      return 99
    end)
    defer(function() stop(p, ch) end)
    status_w:close()
    err_w:close()
    -- EOF on the error pipe: the payload has exec'd
    assert.equal("", util.drain(err_r))
    local payload = util.wait_for(function()
      local kids = children_of(p.pid)
      local cmd = kids[1] and util.read("/proc/" .. kids[1].pid .. "/cmdline")
      return cmd == "sleep\0" .. "30\0" and kids[1].pid
    end, 10)
    assert.is_number(payload, "the payload did not exec sleep")
    assert.matches("^/memfd:lunas%-reaper", readlink("/proc/" .. p.pid .. "/exe"))
    assert.matches("^lunas%-reaper%z", util.read("/proc/" .. p.pid .. "/cmdline"))
    -- the reaper: not dumpable, no capability in any set, no_new_privs and a filter of its own on top of none
    for _, set in ipairs{ "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" } do
      assert.equal("0000000000000000", util.status_field(p.pid, set), set)
    end
    assert.equal("1", util.status_field(p.pid, "NoNewPrivs"))
    assert.equal("2", util.status_field(p.pid, "Seccomp"))
    assert.equal("1", util.status_field(p.pid, "Seccomp_filters"))
    -- the payload got none of that: its filter count is 0 and it was never made undumpable
    assert.equal("0", util.status_field(payload, "Seccomp"))
    -- it holds only its status pipe and signalfd: no stdio, no error pipe
    local held = 0
    for fd in pairs(fds_of(p.pid)) do
      held = held + 1
      assert.is_true(fd > 2, "the reaper holds fd " .. fd)
    end
    assert.equal(2, held)
    assert.is_true(p:kill("TERM"))
    assert.same({ pid = p.pid, status = 128 + 15 }, finish(p))
    local payload_pid, wait_status = string.unpack("=i4i4", util.drain(status_r))
    assert.equal(2, payload_pid)
    assert.equal(15, wait_status)
  end)

  it("reaper_exec reports the payload's exec failure as an error record #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local probe = core.reaper_image()
    if not probe then pending("no reaper image") end
    probe:close()
    local err_r, err_w = assert(core.pipe())
    defer(function() err_r:close(); err_w:close() end)
    local p, ch = start({ flags = "user,pid" }, function(c)
      local image = assert(core.reaper_image())
      local _, m, e = core.reaper_exec(image, { argv = { "/nonexistent/program" }, errors = err_w })
      c.send("error", "reaper_exec returned: " .. tostring(m) .. " " .. tostring(e))
      return 99
    end)
    defer(function() stop(p, ch) end)
    err_w:close()
    assert.equal("exec\0#2\0/nonexistent/program", util.drain(err_r))
    assert.same({ pid = p.pid, status = 125 }, finish(p))
  end)

  it("reaper_exec's payload writes its labels itself, relative to the procfs given, before its exec #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local probe = core.reaper_image()
    if not probe then pending("no reaper image") end
    probe:close()
    -- A directory stands in for a procfs (this kernel may run no security module): what the payload wrote there,
    -- and the error record of a label it could not write.
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    util.write(dir .. "/attr-a", "")
    util.write(dir .. "/attr-b", "")
    local function run(labels, argv)
      local err_r, err_w = assert(core.pipe())
      local p, ch = start({ flags = "user,pid" }, function(c)
        local image = assert(core.reaper_image())
        local proc = assert(core.open(dir, "r"))
        local _, m, e = core.reaper_exec(image, { argv = argv, errors = err_w, labels = labels, proc = proc })
        c.send("error", "reaper_exec returned: " .. tostring(m) .. " " .. tostring(e))
        return 99
      end)
      err_w:close()
      local record = util.drain(err_r)
      err_r:close()
      local result = finish(p)
      stop(p, ch)
      return record, result.status
    end
    local record, status = run({ { what = "a: label 'x'", path = "attr-a", value = "exec x" },
      { what = "b", path = "attr-b", value = "ctx:y" } }, { "sh", "-c", "exit 7" })
    assert.equal("", record)
    assert.equal(7, status)
    assert.equal("exec x", util.read(dir .. "/attr-a"))
    assert.equal("ctx:y", util.read(dir .. "/attr-b"))
    -- the second label has no file: named by its text, the payload never runs
    record, status = run({ { what = "a", path = "attr-a", value = "v" }, { what = "b: label 'y'", path = "missing",
      value = "v" } }, { "sh", "-c", "echo ran > " .. dir .. "/attr-b" })
    assert.equal("lsm\0#2\0b: label 'y'", record)
    assert.equal(125, status)
    assert.equal("ctx:y", util.read(dir .. "/attr-b"))
  end)

  it("reaper_exec hands a Landlock ruleset to the payload, which applies it after writing its labels #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    if core.landlock_abi() < 1 then pending("no Landlock") end
    local probe = core.reaper_image()
    if not probe then pending("no reaper image") end
    probe:close()
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    util.write(dir .. "/attr", "")
    util.write(dir .. "/after", "")
    local err_r, err_w = assert(core.pipe())
    local p, ch = start({ flags = "user,pid" }, function(c)
      local image = assert(core.reaper_image())
      local proc = assert(core.open(dir, "r"))
      -- writes nowhere: the labels must go before it, the payload's own write after its exec must fail
      local ruleset = assert(core.landlock_ruleset{ fs = "write_file" })
      assert(core.prctl{ no_new_privs = true })
      local _, m, e = core.reaper_exec(image, { argv = { "sh", "-c", "echo after 2>&- > " .. dir .. "/after || exit 9" },
        errors = err_w, labels = { { what = "w", path = "attr", value = "label" } }, proc = proc, landlock = ruleset })
      c.send("error", "reaper_exec returned: " .. tostring(m) .. " " .. tostring(e))
      return 99
    end)
    defer(function() stop(p, ch) end)
    err_w:close()
    assert.equal("", util.drain(err_r))
    err_r:close()
    assert.same({ pid = p.pid, status = 9 }, finish(p))
    assert.equal("label", util.read(dir .. "/attr"))
    assert.equal("", util.read(dir .. "/after"))
  end)

  it("reaper_exec refuses malformed labels, naming the field #rootless", function()
    local image = core.reaper_image()
    if not image then pending("no reaper image") end
    local dir = assert(core.open("/", "r"))
    local cases = {
      { { labels = { { what = "w", path = "/abs", value = "v" } }, proc = dir }, "labels.*relative" },
      { { labels = { { what = "w", path = "a/../b", value = "v" } }, proc = dir }, "labels.*'%.%.'" },
      { { labels = { { what = "w", path = "p", value = "" } }, proc = dir }, "labels.*value" },
      { { labels = { { what = "w", path = "p", value = "a\0b" } }, proc = dir }, "labels.*value" },
      { { labels = { { what = "w", path = "p" } }, proc = dir }, "labels.*value: string expected" },
      { { labels = { "x" }, proc = dir }, "labels.*table expected" },
      { { labels = { { what = "w", path = "p", value = "v" } } }, "'proc'" },
      { { proc = dir }, "'proc'.*goes with 'labels'" },
      { { labels = { {}, {}, {}, {}, {} }, proc = dir }, "labels" },
    }
    for _, case in ipairs(cases) do
      local opts = case[1]
      opts.argv, opts.errors = { "true" }, 2
      local ok, err = pcall(core.reaper_exec, image, opts)
      assert.is_false(ok)
      assert.matches(case[2], tostring(err))
    end
    image:close()
    dir:close()
  end)

  it("reaps orphans re-parented to it: no zombie remains #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local orphan = channel()
    defer(function() orphan.close() end)
    local p, ch = start({ flags = "user,pid" }, function(c)
      orphan.child()
      core.reaper{ fn = function()
        c.send("payload")
        c.recv()
        local x = assert(core.spawn{ fn = function()
          assert(core.spawn{ fn = function()
            orphan.send("orphan", core.getpid())
            orphan.recv()
            return 0
          end })
          return 0 -- exits without waiting: its child is orphaned
        end })
        x:wait()
        x:close()
        c.send("orphaned")
        return tonumber(c.recv())
      end }
      return 99
    end)
    defer(function() stop(p, ch) end)
    orphan.parent()
    ch.expect()
    local kids = children_of(p.pid)
    assert.equal(1, #kids)
    local payload = kids[1].pid
    ch.post("go")
    assert.equal("orphaned", (ch.expect()))
    local _, nspid = orphan.expect()
    -- the orphan now is a child of the reaper
    local orphan_pid
    for _, k in ipairs(children_of(p.pid)) do
      if k.pid ~= payload then orphan_pid = k.pid end
    end
    assert.is_number(orphan_pid)
    assert.matches("%s" .. nspid .. "$", util.status_field(orphan_pid, "NSpid"))
    assert.equal(p.pid, tonumber(stat_fields(orphan_pid)[2]))
    orphan.post("exit")
    -- reaped by the reaper: gone, not a zombie
    assert.is_truthy(util.wait_for(function() return util.read("/proc/" .. orphan_pid .. "/stat") == nil end, 10),
      "the orphan stays a zombie: " .. tostring(util.read("/proc/" .. orphan_pid .. "/stat")))
    assert.same({}, zombies_of(p.pid))
    ch.post(0)
    assert.same({ pid = p.pid, status = 0 }, finish(p))
  end)

  it("closes the descriptors listed in close in the reaper only #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local extra_r, extra_w = assert(core.pipe())
    defer(function() extra_r:close(); extra_w:close() end)
    local numbered = free_fd(300)
    local p, ch = start({ flags = "user,pid" }, function(c)
      assert(core.dup2(extra_r, numbered))
      core.reaper{ close = { extra_w, numbered }, fn = function()
        c.send("payload")
        c.recv()
        return 0
      end }
      return 99
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    local payload = children_of(p.pid)[1].pid
    local reaper_fds, payload_fds = fds_of(p.pid), fds_of(payload)
    assert.is_nil(reaper_fds[extra_w:fileno()])
    assert.is_nil(reaper_fds[numbered])
    assert.is_true(payload_fds[extra_w:fileno()])
    assert.is_true(payload_fds[numbered])
    -- the reaper never prints: it lets go of stdio, the payload keeps it
    for fd = 0, 2 do
      assert.is_nil(reaper_fds[fd], "the reaper holds fd " .. fd)
      assert.equal(fd_link(SELF, fd), fd_link(payload, fd))
    end
    ch.post("exit")
    assert.equal(0, finish(p).status)
  end)

  it("raises on a missing fn and unknown options #rootless", function()
    local defer = scope(finally)
    -- in a child: if the checks were missing, the caller would become a reaper
    local p, ch = start({}, function(c)
      local ok1, e1 = pcall(core.reaper, {})
      local ok2, e2 = pcall(core.reaper, { fn = function() return 0 end, bogus = true })
      local ok3, e3 = pcall(core.reaper, { fn = function() return 0 end, status = "x" })
      c.send("errors", tostring(ok1), e1, tostring(ok2), e2, tostring(ok3), e3)
      return 0
    end)
    defer(function() stop(p, ch) end)
    local _, ok1, e1, ok2, e2, ok3, e3 = ch.expect()
    assert.equal("false", ok1)
    assert.matches("field 'fn'", e1)
    assert.equal("false", ok2)
    assert.matches("unknown option 'bogus'", e2)
    assert.equal("false", ok3)
    assert.matches("field 'status'", e3)
    assert.equal(0, finish(p).status)
  end)
end)

-- ---- prctl ----------------------------------------------------------------------------------------------------

describe("core.prctl", function()
  it("sets no_new_privs, seen in /proc/PID/status #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      c.send("before", tostring(core.prctl_get("no_new_privs")))
      c.recv()
      assert(core.prctl{ no_new_privs = true })
      c.send("after", tostring(core.prctl_get("no_new_privs")))
      c.recv()
      local ok, err = pcall(core.prctl, { no_new_privs = false })
      c.send("false", tostring(ok), err)
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "before", "false" }, { ch.expect() })
    assert.equal("0", util.status_field(p.pid, "NoNewPrivs"))
    ch.post("go")
    assert.same({ "after", "true" }, { ch.expect() })
    assert.equal("1", util.status_field(p.pid, "NoNewPrivs"))
    assert.equal("0", util.status_field(SELF, "NoNewPrivs")) -- only the child
    ch.post("go")
    local _, ok, err = ch.expect()
    assert.equal("false", ok)
    assert.matches("field 'no_new_privs'", err)
    assert.equal(0, finish(p).status)
  end)

  it("sets the name, seen in /proc/PID/comm #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      assert(core.prctl{ name = "lunas-probe" })
      c.send("named", core.prctl_get("name"))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "named", "lunas-probe" }, { ch.expect() })
    assert.equal("lunas-probe\n", util.read("/proc/" .. p.pid .. "/comm"))
    ch.post("go")
    assert.equal(0, finish(p).status)
    assert_raises("field 'name'", core.prctl, { name = "0123456789abcdef" }) -- 16 bytes
    assert_raises("field 'name'", core.prctl, { name = "a\0b" })
  end)

  it("sets dumpable, seen in the owner of /proc/PID files #rootless", function()
    local defer = scope(finally)
    local root = IDS.euid == 0
    local p, ch = start({}, function(c)
      -- as root, become an ordinary uid first so the owner of /proc/PID/* tells dumpable apart
      if root then assert(core.setresuid(12345, 12345, 12345)) end
      assert(core.prctl{ dumpable = true })
      c.send("dumpable", tostring(core.prctl_get("dumpable")))
      c.recv()
      assert(core.prctl{ dumpable = false })
      c.send("not dumpable", tostring(core.prctl_get("dumpable")))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    local uid = root and 12345 or IDS.euid
    assert.same({ "dumpable", "true" }, { ch.expect() })
    assert.equal(uid, lfs.attributes("/proc/" .. p.pid .. "/status", "uid"))
    ch.post("go")
    assert.same({ "not dumpable", "false" }, { ch.expect() })
    assert.equal(0, lfs.attributes("/proc/" .. p.pid .. "/status", "uid"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("sets child_subreaper: orphans of its descendants are re-parented to it #rootless", function()
    local defer = scope(finally)
    local grand, mid_ch = channel(), channel()
    defer(function() grand.close(); mid_ch.close() end)
    local p, ch = start({}, function(c)
      grand.child()
      mid_ch.child()
      assert(core.prctl{ child_subreaper = true })
      c.send("subreaper", tostring(core.prctl_get("child_subreaper")))
      local mid = assert(core.spawn{ fn = function()
        local g = assert(core.spawn{ fn = function()
          grand.send("grandchild")
          grand.recv()
          return 0
        end })
        c.send("grandchild", g.pid)
        mid_ch.recv()
        return 0 -- exits without waiting for g
      end })
      local gpid = tonumber(c.recv())
      local g = assert(core.pidfd_open(gpid))
      c.send("opened")
      mid:wait()
      mid:close()
      c.send("orphaned")
      local st = g:wait()
      return st.status == 0 and 0 or 100
    end)
    defer(function() stop(p, ch) end)
    grand.parent()
    mid_ch.parent()
    assert.same({ "subreaper", "true" }, { ch.expect() })
    local _, gpid = ch.expect()
    gpid = tonumber(gpid)
    grand.expect()
    local mid_pid = tonumber(stat_fields(gpid)[2])
    assert.equal(p.pid, tonumber(stat_fields(mid_pid)[2]))
    ch.post(gpid)
    assert.equal("opened", (ch.expect()))
    mid_ch.post("exit") -- the grandchild's parent exits
    assert.equal("orphaned", (ch.expect()))
    -- re-parented to the subreaper, not to init
    assert.equal(p.pid, tonumber(stat_fields(gpid)[2]))
    grand.post("exit")
    assert.equal(0, finish(p).status)
  end)

  it("sets pdeathsig: the child gets the signal when its parent exits #rootless", function()
    local defer = scope(finally)
    local grand, mid_ch = channel(), channel()
    defer(function() grand.close(); mid_ch.close() end)
    local p, ch = start({}, function(c)
      grand.child()
      mid_ch.child()
      assert(core.prctl{ child_subreaper = true })
      local mid = assert(core.spawn{ fn = function()
        local g = assert(core.spawn{ fn = function()
          assert(core.prctl{ pdeathsig = "TERM" })
          grand.send("armed", core.prctl_get("pdeathsig"))
          grand.recv()
          return 0
        end })
        c.send("grandchild", g.pid)
        mid_ch.recv()
        return 0
      end })
      local _, gpid = c.recv()
      local g = assert(core.pidfd_open(tonumber(gpid)))
      c.send("opened")
      mid:wait()
      mid:close()
      local st = g:wait() -- re-parented to us (subreaper): we can reap it
      return st.signal or 100
    end)
    defer(function() stop(p, ch) end)
    grand.parent()
    mid_ch.parent()
    local _, gpid = ch.expect()
    assert.same({ "armed", "15" }, { grand.expect() })
    ch.post("pid", gpid)
    assert.equal("opened", (ch.expect()))
    mid_ch.post("exit") -- the grandchild's parent exits
    assert.equal(15, finish(p).status)
  end)

  it("drops capabilities from the bounding set, seen in /proc/PID/status CapBnd #rootless", function()
    local defer = scope(finally)
    local userns = IDS.euid ~= 0
    if userns then kernel.requires("userns") end
    local CAP_NET_RAW, CAP_SYS_PTRACE = 13, 19
    local function bounding(pid)
      return tonumber(util.status_field(pid, "CapBnd"), 16)
    end
    local p, ch = start({ flags = userns and "user" or nil }, function(c)
      c.send("before")
      c.recv()
      c.send("drop", core.prctl{ capbset_drop = { "sys_ptrace", "net_raw" } })
      local ok, err = pcall(core.prctl, { capbset_drop = { "bogus" } })
      c.send("bogus", tostring(ok), err)
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    local before = bounding(p.pid)
    assert.equal(1, (before >> CAP_SYS_PTRACE) & 1)
    assert.equal(1, (before >> CAP_NET_RAW) & 1)
    ch.post("go")
    assert.same({ "drop", "true" }, { ch.expect() })
    local _, ok, err = ch.expect()
    assert.equal("false", ok)
    assert.matches("field 'capbset_drop'", err)
    local after = bounding(p.pid)
    assert.equal(0, (after >> CAP_SYS_PTRACE) & 1)
    assert.equal(0, (after >> CAP_NET_RAW) & 1)
    assert.equal(before & ~((1 << CAP_SYS_PTRACE) | (1 << CAP_NET_RAW)), after) -- nothing else
    assert.equal(1, (bounding(SELF) >> CAP_SYS_PTRACE) & 1) -- ours untouched
    ch.post("go")
    assert.equal(0, finish(p).status)
    assert_raises("field 'capbset_drop'", core.prctl, { capbset_drop = "sys_ptrace" })
  end)

  it("raises on unknown names #rootless", function()
    assert_raises("unknown option 'bogus'", core.prctl, { bogus = true })
    assert_raises("field 'dumpable'", core.prctl, { dumpable = "yes" })
    assert_raises("field 'pdeathsig'", core.prctl, { pdeathsig = "BOGUS" })
    assert_raises("bogus", core.prctl_get, "bogus")
    assert.is_false(core.prctl_get("no_new_privs"))
    assert.equal(0, core.prctl_get("pdeathsig"))
  end)
end)

-- ---- rlimits --------------------------------------------------------------------------------------------------

local LIMIT_NAMES = { nofile = "Max open files", cpu = "Max cpu time", core = "Max core file size",
                      fsize = "Max file size", nproc = "Max processes" }

--- soft, hard of a limit from /proc/PID/limits ("unlimited" as math.huge).
local function proc_limit(pid, name)
  local text = util.read("/proc/" .. tostring(pid) .. "/limits")
  local soft, hard = text:match("\n" .. LIMIT_NAMES[name] .. "%s+(%S+)%s+(%S+)")
  local function num(s) return s == "unlimited" and math.huge or tonumber(s) end
  return num(soft), num(hard)
end

describe("core.setrlimit / core.getrlimit", function()
  it("set limits in a child, seen in /proc/PID/limits #rootless", function()
    local defer = scope(finally)
    local _, cpu_hard = core.getrlimit("cpu")
    if cpu_hard ~= math.huge then pending("needs an unlimited hard cpu limit (it is " .. cpu_hard .. ")") end
    local p, ch = start({}, function(c)
      assert(core.setrlimit("nofile", 100, 200))
      assert(core.setrlimit("cpu", 1000, "unlimited"))
      assert(core.setrlimit("fsize", 4096)) -- hard = soft
      local ns, nh = core.getrlimit("nofile")
      local cs, chd = core.getrlimit("cpu")
      c.send("set", ns, nh, cs, chd)
      c.recv()
      assert(core.setrlimit("cpu", math.huge, math.huge))
      c.send("unlimited", core.getrlimit("cpu"))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "set", "100", "200", "1000", tostring(math.huge) }, { ch.expect() })
    assert.same({ 100, 200 }, { proc_limit(p.pid, "nofile") })
    assert.same({ 1000, math.huge }, { proc_limit(p.pid, "cpu") })
    assert.same({ 4096, 4096 }, { proc_limit(p.pid, "fsize") })
    ch.post("go")
    assert.same({ "unlimited", "inf", "inf" }, { ch.expect() })
    assert.same({ math.huge, math.huge }, { proc_limit(p.pid, "cpu") })
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("set and get the limits of another process by pid #rootless", function()
    local defer = scope(finally)
    local p = assert(core.spawn{ argv = { "sleep", "30" } })
    defer(function() stop(p) end)
    assert.is_true(core.setrlimit("nofile", 50, 60, p.pid))
    assert.same({ 50, 60 }, { proc_limit(p.pid, "nofile") })
    assert.same({ 50, 60 }, { core.getrlimit("nofile", p.pid) })
    local soft, hard = proc_limit(SELF, "nofile")
    assert.same({ soft, hard }, { core.getrlimit("nofile") }) -- ours untouched
  end)

  it("fail with EPERM when an unprivileged process raises its hard limit #rootless", function()
    local defer = scope(finally)
    local root = IDS.euid == 0
    local p, ch = start({}, function(c)
      if root then assert(core.setresuid(12345, 12345, 12345)) end -- drops CAP_SYS_RESOURCE
      assert(core.setrlimit("nofile", 10, 20))
      c.send("raise", core.setrlimit("nofile", 10, 30))
      return 0
    end)
    defer(function() stop(p, ch) end)
    local _, ok, msg, code = ch.expect()
    assert.equal("nil", ok)
    assert.equal("setrlimit nofile: Operation not permitted", msg)
    assert.equal("EPERM", code)
    assert.equal(0, finish(p).status)
  end)

  it("raise on unknown names and bad values #rootless", function()
    assert_raises({ "field 'resource'", "unknown name 'bogus'" }, core.setrlimit, "bogus", 1)
    assert_raises({ "field 'resource'", "unknown name 'bogus'" }, core.getrlimit, "bogus")
    assert_raises("field 'soft'", core.setrlimit, "nofile", "lots")
    assert_raises("field 'soft'", core.setrlimit, "nofile", -1)
    assert_raises("field 'soft'", core.setrlimit, "nofile", 1.5)
    assert_raises("field 'hard'", core.setrlimit, "nofile", 1, "x")
    assert_raises({ "field 'soft'", "greater than the hard limit" }, core.setrlimit, "nofile", 20, 10)
    assert_raises("field 'pid'", core.getrlimit, "nofile", 0)
  end)
end)

-- ---- ids ------------------------------------------------------------------------------------------------------

--- The numbers of a /proc/PID/status field (util.status_field reads past an empty field such as "Groups:").
local function status_ids(pid, field)
  local status = util.read("/proc/" .. tostring(pid) .. "/status") or ""
  local t = {}
  for n in (status:match("\n" .. field .. ":[ \t]*([^\n]*)") or ""):gmatch("%d+") do t[#t + 1] = tonumber(n) end
  return t
end

describe("core.personality #rootless", function()
  local PER_LINUX32, ADDR_NO_RANDOMIZE = 0x0008, 0x0040000

  it("sets the execution domain of a child and the programs it runs: uname -m says i686 under linux32", function()
    local defer = scope(finally)
    local machine = util.run({ "uname", "-m" })
    if machine ~= "x86_64\n" then pending("an x86_64 machine (this one is " .. machine:gsub("\n", "") .. ")") end
    -- never in this process: only in children, which take it to their programs
    local mine = util.read("/proc/self/personality")
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local p, ch = start({}, function(c)
      c.send("linux32", core.personality("linux32"))
      c.recv()
      assert(core.dup2(w, 1))
      core.exec({ "uname", "-m" })
      return 127
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "linux32", "true", "0" }, { ch.expect() })
    assert.equal("00000008\n", util.read("/proc/" .. p.pid .. "/personality"))
    ch.post("go")
    w:close()
    assert.equal("i686\n", read_all(r))
    assert.equal(0, finish(p).status)
    assert.equal(mine, util.read("/proc/self/personality"))
  end)

  it("takes a persona as an integer and returns the previous one", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      c.send("flags", core.personality(PER_LINUX32 | ADDR_NO_RANDOMIZE))
      c.recv()
      c.send("linux", core.personality("linux"))
      c.recv()
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "flags", "true", "0" }, { ch.expect() })
    assert.equal("00040008\n", util.read("/proc/" .. p.pid .. "/personality"))
    ch.post("go")
    assert.same({ "linux", "true", tostring(PER_LINUX32 | ADDR_NO_RANDOMIZE) }, { ch.expect() })
    assert.equal("00000000\n", util.read("/proc/" .. p.pid .. "/personality"))
  end)

  it("reports a refusal with the errno name, and raises naming the domain", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      local f = assert(core.seccomp_filter{})
      assert(f:add("errno:EPERM", "personality"))
      assert(f:load())
      c.send("refused", core.personality("linux32"))
      c.recv()
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "refused", "nil", "personality 0x8: Operation not permitted", "EPERM" }, { ch.expect() })
    assert_raises("field 'domain': unknown name 'linux64'", core.personality, "linux64")
    assert_raises("field 'domain': -1 out of range [0, 4294967294]", core.personality, -1)
    assert_raises("field 'domain': 4294967295 out of range", core.personality, 0xffffffff)
    assert_raises("field 'domain': integer expected, got number", core.personality, 1.5)
    assert_raises("field 'domain': integer expected, got table", core.personality, {})
    assert_raises("field 'domain': integer expected, got no value", core.personality)
  end)
end)

describe("core.setresuid / setresgid / setgroups / ids", function()
  it("change the ids of a child in the initial user namespace #root", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      assert(core.setgroups({ 10, 20, 30 }))
      assert(core.setresgid(100, 200, 300))
      assert(core.setresuid(1000, 2000, 3000))
      local i = core.ids()
      c.send("ids", i.uid, i.euid, i.suid, i.gid, i.egid, i.sgid, table.concat(i.groups, ","))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "ids", "1000", "2000", "3000", "100", "200", "300", "10,20,30" }, { ch.expect() })
    assert.same({ 1000, 2000, 3000, 2000 }, status_ids(p.pid, "Uid")) -- fsuid follows euid
    assert.same({ 100, 200, 300, 200 }, status_ids(p.pid, "Gid"))
    assert.same({ 10, 20, 30 }, status_ids(p.pid, "Groups"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("keep an id given as nil #root", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      assert(core.setresuid(nil, 500, nil))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.is_truthy(util.wait_for(function() return status_ids(p.pid, "Uid")[2] == 500 end, 10))
    assert.same({ 0, 500, 0, 500 }, status_ids(p.pid, "Uid"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("change the ids of a child in a user namespace with several ranges #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local root = kernel.has("root")
    if not root then kernel.requires("newuidmap") end
    -- inside 0 -> ourselves, inside 1..65536 -> BASE..; as root through id_maps, else newuidmap/newgidmap
    local base = root and 100000 or 200000
    local function outside(id, own) return id == 0 and own or base + id - 1 end
    local p, ch = start({ flags = "user" }, function(c)
      c.send("wait for maps")
      c.recv()
      assert(core.setgroups({ 10, 20 }))
      assert(core.setresgid(100, 200, 300))
      assert(core.setresuid(1000, 2000, 3000))
      local i = core.ids()
      c.send("ids", i.uid, i.euid, i.suid, i.gid, i.egid, i.sgid, table.concat(i.groups, ","))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    if root then
      assert(core.id_maps(p.pid, { uid = { { 0, IDS.euid, 1 }, { 1, base, 65536 } },
                                   gid = { { 0, IDS.egid, 1 }, { 1, base, 65536 } } }))
    else
      local out, code = util.run({ "newuidmap", tostring(p.pid), "0", tostring(IDS.euid), "1", "1", tostring(base), "65536" })
      assert.equal(0, code, out)
      out, code = util.run({ "newgidmap", tostring(p.pid), "0", tostring(IDS.egid), "1", "1", tostring(base), "65536" })
      assert.equal(0, code, out)
    end
    ch.post("go")
    assert.same({ "ids", "1000", "2000", "3000", "100", "200", "300", "10,20" }, { ch.expect() })
    local u = function(id) return outside(id, IDS.euid) end
    local g = function(id) return outside(id, IDS.egid) end
    assert.same({ u(1000), u(2000), u(3000), u(2000) }, status_ids(p.pid, "Uid"))
    assert.same({ g(100), g(200), g(300), g(200) }, status_ids(p.pid, "Gid"))
    assert.same({ g(10), g(20) }, status_ids(p.pid, "Groups"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("fail with the errno name: unmapped ids, setgroups denied #rootless", function()
    local defer = scope(finally)
    kernel.requires("userns")
    local p, ch = start({ flags = "user" }, function(c)
      map_self()
      c.send("setgroups", core.setgroups({}))
      c.send("setresuid", core.setresuid(5, 5, 5))
      c.send("setresgid", core.setresgid(5, 5, 5))
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "setgroups", "nil", "setgroups: Operation not permitted", "EPERM" }, { ch.expect() })
    assert.same({ "setresuid", "nil", "setresuid: Invalid argument", "EINVAL" }, { ch.expect() })
    assert.same({ "setresgid", "nil", "setresgid: Invalid argument", "EINVAL" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)

  it("ids() matches /proc/self/status #rootless", function()
    local i = core.ids()
    assert.same({ i.uid, i.euid, i.suid }, { table.unpack(status_ids(SELF, "Uid"), 1, 3) })
    assert.same({ i.gid, i.egid, i.sgid }, { table.unpack(status_ids(SELF, "Gid"), 1, 3) })
    local groups = status_ids(SELF, "Groups")
    table.sort(groups)
    local mine = { table.unpack(i.groups) }
    table.sort(mine)
    assert.same(groups, mine)
  end)

  it("raise on bad ids naming the argument #rootless", function()
    assert_raises("field 'ruid'", core.setresuid, -1)
    assert_raises("field 'euid'", core.setresuid, nil, "x")
    assert_raises("field 'sgid'", core.setresgid, nil, nil, 2 ^ 40)
    assert_raises({ "bad argument #1", "field 'groups'" }, core.setgroups, { "x" })
  end)
end)

-- ---- descriptors ----------------------------------------------------------------------------------------------

describe("descriptors", function()
  it("pipe and socketpair are close-on-exec: an exec'd child does not have them #rootless", function()
    local defer = scope(finally)
    local r, w = assert(core.pipe())
    local a, b = assert(core.socketpair())
    defer(function() for _, f in ipairs({ r, w, a, b }) do f:close() end end)
    for _, f in ipairs({ r, w, a, b }) do
      assert.is_true(has_flag(fd_flags(SELF, f:fileno()), O_CLOEXEC))
    end
    assert.matches("^pipe:%[%d+%]$", fd_link(SELF, r:fileno()))
    assert.matches("^socket:%[%d+%]$", fd_link(SELF, a:fileno()))
    local p = assert(core.spawn{ argv = { "sleep", "30" } })
    defer(function() stop(p) end)
    -- Until its exec the child is a copy of us, close-on-exec descriptors included: wait for sleep to run.
    assert.is_true(util.wait_for(function() return util.read("/proc/" .. p.pid .. "/comm") == "sleep\n" end, 10))
    local fds = fds_of(p.pid)
    for _, f in ipairs({ r, w, a, b }) do
      -- The same number may be reused by the child (an ASan runtime reading /proc/self/maps at start-up, say):
      -- what must not be there is our pipe or socket.
      local n = f:fileno()
      assert.is_true(fds[n] == nil or fd_link(p.pid, n) ~= fd_link(SELF, n), "the exec'd child has our fd " .. n)
    end
    -- dup2 makes a copy without close-on-exec: that one is inherited (so the check above can see fds)
    local target = free_fd(400)
    assert.is_true(core.dup2(w, target))
    defer(function() core.close_range(target, target) end)
    local q = assert(core.spawn{ argv = { "sleep", "30" } })
    defer(function() stop(q) end)
    assert.equal(fd_link(SELF, w:fileno()), fd_link(q.pid, target))
  end)

  it("pipe{nonblock = true} gives non-blocking ends: EAGAIN on an empty pipe #rootless", function()
    local defer = scope(finally)
    local r, w = assert(core.pipe{ nonblock = true })
    defer(function() r:close(); w:close() end)
    assert.is_true(has_flag(fd_flags(SELF, r:fileno()), O_NONBLOCK))
    assert_failure("^read fd " .. r:fileno() .. ": Resource temporarily unavailable$", "EAGAIN", r:read())
    local r2, w2 = assert(core.pipe())
    defer(function() r2:close(); w2:close() end)
    assert.is_false(has_flag(fd_flags(SELF, r2:fileno()), O_NONBLOCK))
    assert_raises("unknown option 'bogus'", core.pipe, { bogus = true })
  end)

  it("socketpair makes connected unix sockets of the asked type #rootless", function()
    local defer = scope(finally)
    local types = { stream = "0001", dgram = "0002", seqpacket = "0005" }
    for name, code in pairs(types) do
      local a, b = assert(core.socketpair(name))
      defer(function() a:close(); b:close() end)
      local inode = fd_link(SELF, a:fileno()):match("socket:%[(%d+)%]")
      local unix = util.read("/proc/self/net/unix")
      local found
      for line in unix:gmatch("[^\n]+") do
        local f = {}
        for w in line:gmatch("%S+") do f[#f + 1] = w end
        if f[7] == inode then found = f[5] end
      end
      assert.equal(code, found, name)
      assert.equal(5, a:write("hello"))
      assert.equal("hello", b:read())
      a:close(); b:close()
    end
    local a, b = assert(core.socketpair())
    defer(function() a:close(); b:close() end)
    assert.equal(3, b:write("abc"))
    assert.equal("abc", a:read())
    assert_raises("bogus", core.socketpair, "bogus")
  end)

  it("send_fd sends data with the descriptor, and recv_fd returns both, one message per call #rootless", function()
    local defer = scope(finally)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local _, pipe_id = core.file_type(r)
    for _, kind in ipairs({ "stream", "seqpacket", "dgram" }) do
      local a, b = assert(core.socketpair(kind))
      defer(function() a:close(); b:close() end)
      assert.is_true(core.send_fd(a, r, "/dev/ptmx"))
      assert.is_true(core.send_fd(a, w)) -- one byte by default
      -- (a stream socket delivers the most a message's first buffer holds with the descriptor, then the rest)
      local big = kind == "stream" and 4095 or 65536
      assert.is_true(core.send_fd(a, r, ("n"):rep(big)))
      local got, data = assert(core.recv_fd(b))
      assert.equal("/dev/ptmx", data, kind)
      assert.equal(pipe_id, select(2, core.file_type(got)))
      got:close()
      got, data = assert(core.recv_fd(b))
      assert.equal("f", data, kind)
      assert.equal(select(2, core.file_type(w)), select(2, core.file_type(got)))
      got:close()
      got, data = assert(core.recv_fd(b))
      assert.equal(big, #data, kind)
      assert.equal(("n"):rep(big), data, kind)
      got:close()
    end
    local a, b = assert(core.socketpair())
    defer(function() a:close(); b:close() end)
    assert_raises("field 'data': length 0, not 1 to 65536", core.send_fd, a, r, "")
    assert_raises("field 'data': length 65537, not 1 to 65536", core.send_fd, a, r, ("x"):rep(65537))
    assert_raises("field 'data': string expected, got number", core.send_fd, a, r, 7)
  end)

  it("send_fd's message is what go-runc's console socket takes: one SCM_RIGHTS of one descriptor #root", function()
    local defer = scope(finally)
    local _, python = util.run({ "python3", "-c", "import socket" })
    if python ~= 0 then pending("needs python3 (the receiver that checks the framing)") end
    local a, b = assert(core.socketpair())
    defer(function() a:close(); b:close() end)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local out_r, out_w = assert(core.pipe())
    defer(function() out_r:close(); out_w:close() end)
    -- go-runc's ReceiveMaster: a 4096-byte buffer, control room for exactly one descriptor, n < 4096
    local p = assert(core.spawn{ fn = function()
      assert(core.dup2(b, 5))
      assert(core.dup2(out_w, 1))
      core.exec({ "python3", "-c", [[
import socket
s = socket.socket(fileno=5)
data, anc, flags, _ = s.recvmsg(4096, socket.CMSG_SPACE(4))
print(data.decode(), len(anc), *[(l, t, len(d)) for l, t, d in anc], flags & socket.MSG_CTRUNC)
]] })
      return 127
    end })
    defer(function() child.stop(p) end)
    out_w:close()
    assert(core.send_fd(a, r, "/dev/ptmx"))
    local out = read_all(out_r)
    assert.equal(0, finish(p).status)
    assert.equal("/dev/ptmx 1 (1, 1, 4) 0\n", out)
  end)

  it("unix_connect connects to a listener at a path, with the asked type, seen in /proc/net/unix #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local _, pipe_id = core.file_type(r)
    for _, kind in ipairs({ "stream", "seqpacket" }) do
      local path = dir .. "/" .. kind .. ".sock"
      local p, out = unix_listener(defer, path, kind, { "lua5.4", "-e", RECEIVER })
      local sock = assert(core.unix_connect(path, kind ~= "stream" and kind or nil))
      defer(function() sock:close() end)
      assert.is_true(has_flag(fd_flags(SELF, sock:fileno()), O_CLOEXEC))
      local entry = unix_entry(socket_inode(sock))
      assert.equal(UNIX_TYPES[kind], entry.type)
      assert.equal("03", entry.state) -- connected
      -- what the peer received, as the OCI console socket's reader does: the descriptor and the name
      assert(core.send_fd(sock, r, "/dev/ptmx"))
      assert.equal(pipe_id .. "\n/dev/ptmx", read_all(out))
      assert.equal(0, finish(p).status)
    end
    local path = dir .. "/dgram.sock"
    local p, out = unix_listener(defer, path, "dgram")
    local sock = assert(core.unix_connect(path, "dgram"))
    defer(function() sock:close() end)
    assert.equal(UNIX_TYPES.dgram, unix_entry(socket_inode(sock)).type)
    assert.equal(5, sock:write("hello"))
    assert.equal("hello", read_all(out))
    assert.equal(0, finish(p).status)
  end)

  it("unix_connect fails with the errno name and raises naming the path #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local path = dir .. "/s"
    local p = unix_listener(defer, path, "stream", { "true" })
    assert_failure("^connect " .. path:gsub("%p", "%%%0") .. ": Protocol wrong type for socket$", "EPROTOTYPE",
      core.unix_connect(path, "seqpacket"))
    assert_failure("^connect ", "EPROTOTYPE", core.unix_connect(path, "dgram"))
    local sock = assert(core.unix_connect(path))
    sock:close()
    finish(p)
    -- the listener is gone, its socket file stays
    assert.equal("socket", core.file_type(path))
    assert_failure("^connect .*: Connection refused$", "ECONNREFUSED", core.unix_connect(path))
    assert_failure("^connect /nonexistent/s: No such file or directory$", "ENOENT", core.unix_connect("/nonexistent/s"))
    -- 107 bytes is the longest path that fits: tried, not refused
    local longest = dir .. "/" .. ("a"):rep(107 - #dir - 1)
    assert.equal(107, #longest)
    assert_failure("^connect .*: No such file or directory$", "ENOENT", core.unix_connect(longest))
    assert_raises("field 'path': 108 bytes: a unix socket path holds at most 107", core.unix_connect, ("a"):rep(108))
    assert_raises("field 'path': contains a NUL byte", core.unix_connect, "\0abstract")
    assert_raises("field 'path': empty path", core.unix_connect, "")
    assert_raises("invalid option 'raw'", core.unix_connect, path, "raw")
    assert_raises("bad argument #1", core.unix_connect, {})
  end)

  it("unix_listen listens at a path (seen in /proc/net/unix) and unix_accept takes its connections #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    for _, kind in ipairs({ "stream", "seqpacket" }) do
      local path = dir .. "/" .. kind .. ".sock"
      local listener = assert(core.unix_listen(path, kind ~= "stream" and kind or nil))
      defer(function() listener:close() end)
      assert.is_true(has_flag(fd_flags(SELF, listener:fileno()), O_CLOEXEC))
      local entry = unix_entry(socket_inode(listener))
      assert.same({ UNIX_TYPES[kind], ACCEPTING, path }, { entry.type, entry.flags, entry.path })
      assert.equal("socket", core.file_type(path))
      local client = assert(core.unix_connect(path, kind))
      defer(function() client:close() end)
      local conn = assert(core.unix_accept(listener, 5))
      defer(function() conn:close() end)
      assert.is_true(has_flag(fd_flags(SELF, conn:fileno()), O_CLOEXEC))
      assert.equal("03", unix_entry(socket_inode(conn)).state) -- connected
      -- the console socket's exchange, both ends lunas's
      local r, w = assert(core.pipe())
      defer(function() r:close(); w:close() end)
      assert(core.send_fd(client, w, "/dev/ptmx"))
      local got, data = assert(core.recv_fd(conn))
      defer(function() got:close() end)
      assert.equal("/dev/ptmx", data)
      assert.equal(select(2, core.file_type(w)), select(2, core.file_type(got)))
    end
  end)

  it("unix_accept times out, unix_listen fails on a taken path, and both raise on misuse #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local path = dir .. "/s"
    local listener = assert(core.unix_listen(path))
    defer(function() listener:close() end)
    local t0 = core.now()
    assert_failure("^accept fd %d+: Connection timed out$", "ETIMEDOUT", core.unix_accept(listener, 0.05))
    assert.is_true(core.now() - t0 >= 0.04)
    assert_failure("^bind " .. path:gsub("%p", "%%%0") .. ": Address already in use$", "EADDRINUSE", core.unix_listen(path))
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    w:write("x")
    assert_failure("^accept fd %d+: Socket operation on non%-socket$", "ENOTSOCK", core.unix_accept(r, 1))
    assert_raises("field 'type': a datagram socket has no listener", core.unix_listen, dir .. "/d", "dgram")
    assert_raises("field 'path': 108 bytes: a unix socket path holds at most 107", core.unix_listen, ("a"):rep(108))
    assert_raises("field 'path': empty path", core.unix_listen, "")
    assert_raises("field 'timeout': seconds (>= 0) expected", core.unix_accept, listener, -0.5)
    assert_raises("field 'socket'", core.unix_accept, "x")
  end)

  it("close_range closes a range, or only marks it close-on-exec #rootless", function()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      local r, w = assert(core.pipe())
      for _, n in ipairs({ 60, 61, 62, 63, 70, 80, 90 }) do assert(core.dup2(r, n)) end
      c.send("dup2")
      c.recv()
      assert(core.close_range(60, 62))
      c.send("closed")
      c.recv()
      assert(core.close_range(70, 70, { cloexec = true }))
      c.send("cloexec")
      c.recv()
      assert(core.close_range(80)) -- to the last descriptor
      c.send("to the end")
      c.recv()
      w:close()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    local fds = fds_of(p.pid)
    for _, n in ipairs({ 60, 61, 62, 63, 70, 80, 90 }) do assert.is_true(fds[n], "fd " .. n) end
    assert.is_false(has_flag(fd_flags(p.pid, 70), O_CLOEXEC))
    ch.post("go")
    ch.expect()
    fds = fds_of(p.pid)
    assert.is_nil(fds[60]); assert.is_nil(fds[61]); assert.is_nil(fds[62])
    assert.is_true(fds[63])
    ch.post("go")
    ch.expect()
    assert.is_true(fds_of(p.pid)[70]) -- still open
    assert.is_true(has_flag(fd_flags(p.pid, 70), O_CLOEXEC))
    ch.post("go")
    ch.expect()
    fds = fds_of(p.pid)
    assert.is_nil(fds[80]); assert.is_nil(fds[90])
    assert.is_true(fds[70])
    ch.post("go")
    assert.equal(0, finish(p).status)
    assert_raises({ "field 'last'", "smaller than first" }, core.close_range, 10, 5)
    assert_raises("field 'first'", core.close_range, -1)
    assert_raises("unknown option 'bogus'", core.close_range, 1000, 1001, { bogus = true })
  end)

  it("dup2 copies a descriptor without close-on-exec, also onto itself #rootless", function()
    local defer = scope(finally)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local target = free_fd(400)
    assert.is_true(core.dup2(r, target))
    defer(function() core.close_range(target, target) end)
    assert.equal(fd_link(SELF, r:fileno()), fd_link(SELF, target))
    assert.is_false(has_flag(fd_flags(SELF, target), O_CLOEXEC))
    -- fd == target: clears close-on-exec in place
    assert.is_true(has_flag(fd_flags(SELF, w:fileno()), O_CLOEXEC))
    assert.is_true(core.dup2(w, w:fileno()))
    assert.is_false(has_flag(fd_flags(SELF, w:fileno()), O_CLOEXEC))
    -- an integer works as the source
    local target2 = free_fd(target + 1)
    assert.is_true(core.dup2(target, target2))
    defer(function() core.close_range(target2, target2) end)
    assert.equal(fd_link(SELF, r:fileno()), fd_link(SELF, target2))
    local bad = free_fd(450)
    assert_failure("^dup2 fd " .. bad .. " to " .. (bad + 1) .. ": Bad file descriptor$", "EBADF",
      core.dup2(bad, bad + 1))
    assert_raises("field 'fd'", core.dup2, "x", 5)
    assert_raises("field 'target'", core.dup2, r, -1)
  end)

  it("open opens a file close-on-exec in the given mode #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local path = dir .. "/file"
    local f = assert(core.open(path, "w"))
    assert.equal("file", lfs.attributes(path, "mode"))
    assert.is_true(has_flag(fd_flags(SELF, f:fileno()), O_CLOEXEC))
    assert.equal(path, fd_link(SELF, f:fileno()))
    assert.equal(5, f:write("hello"))
    f:close()
    local a = assert(core.open(path, "a"))
    a:write(" world")
    a:close()
    assert.equal("hello world", util.read(path))
    local r = assert(core.open(path)) -- "r" by default
    assert.equal("hello world", r:read())
    assert.equal("", r:read()) -- EOF
    assert_failure("^write fd %d+: Bad file descriptor$", "EBADF", r:write("x"))
    r:close()
    local rw = assert(core.open(path, "rw"))
    rw:write("HELLO")
    rw:close()
    assert.equal("HELLO world", util.read(path))
    local w = assert(core.open(path, "w")) -- truncates
    w:close()
    assert.equal("", util.read(path))
    assert_failure("^open /nonexistent/x: No such file or directory$", "ENOENT", core.open("/nonexistent/x"))
    assert_failure("^open " .. dir:gsub("%p", "%%%0") .. ": Is a directory$", "EISDIR", core.open(dir, "w"))
    assert_raises("invalid option 'x'", core.open, path, "x")
  end)

  it("chdir changes the working directory of a child #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local p, ch = start({}, function(c)
      c.send("chdir", core.chdir(dir))
      c.send("missing", core.chdir("/nonexistent/dir"))
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "chdir", "true" }, { ch.expect() })
    assert.same({ "missing", "nil", "chdir /nonexistent/dir: No such file or directory", "ENOENT" }, { ch.expect() })
    assert.equal(dir, readlink("/proc/" .. p.pid .. "/cwd"))
    assert.are_not.equal(dir, readlink("/proc/self/cwd"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)
end)

-- ---- session, exit --------------------------------------------------------------------------------------------

describe("core.setsid", function()
  it("makes a child the leader of a new session, seen in /proc/PID/stat #rootless", function()
    local defer = scope(finally)
    local my_session = stat_fields(SELF)[4]
    local p, ch = start({}, function(c)
      c.send("before")
      c.recv()
      c.send("setsid", core.setsid())
      c.send("again", core.setsid())
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    assert.equal(my_session, stat_fields(p.pid)[4])
    ch.post("go")
    assert.same({ "setsid", tostring(p.pid) }, { ch.expect() })
    local f = stat_fields(p.pid)
    assert.equal(tostring(p.pid), f[4]) -- session
    assert.equal(tostring(p.pid), f[3]) -- process group
    assert.same({ "again", "nil", "setsid: Operation not permitted", "EPERM" }, { ch.expect() })
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)
end)

describe("core.exit", function()
  it("ends the child with the code (8 bits), flushes stdio, runs no __close handler #rootless", function()
    local defer = scope(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    local path = dir .. "/out"
    local p = assert(core.spawn{ fn = function()
      local f = assert(io.open(path, "w"))
      f:write("buffered") -- not flushed yet
      local guard <close> = setmetatable({}, { __close = function()
        f:write("+closed")
        f:flush()
      end })
      core.exit(300)
      return guard and 1
    end })
    defer(function() stop(p) end)
    assert.same({ pid = p.pid, status = 300 & 0xff }, finish(p))
    assert.equal("buffered", util.read(path))
    local q = assert(core.spawn{ fn = function() core.exit() end })
    defer(function() stop(q) end)
    assert.equal(0, finish(q).status)
  end)
end)

-- ---- errno, now, fd objects ------------------------------------------------------------------------------------

describe("errno names", function()
  it("core.errno, errno_name and strerror agree with the C library #rootless", function()
    local _, msg, code = io.open("/nonexistent/lunas")
    assert.equal(core.errno.ENOENT, code)
    assert.equal("ENOENT", core.errno_name(code))
    assert.equal(msg:match(": (.*)$"), core.strerror(code))
    assert.equal(core.strerror(code), core.strerror("ENOENT"))
    local _, msg2, code2 = io.open("/etc/passwd/x")
    assert.equal("ENOTDIR", core.errno_name(code2))
    assert.equal(msg2:match(": (.*)$"), core.strerror("ENOTDIR"))
    assert.equal(1, core.errno.EPERM)
    assert.equal(110, core.errno.ETIMEDOUT)
    for name, value in pairs(core.errno) do
      assert.equal(name, core.errno_name(value))
      assert.matches("^E[A-Z0-9]+$", name)
      assert.is_string(core.strerror(name))
    end
    assert.equal("E9999", core.errno_name(9999))
    assert_raises("unknown errno name 'EBOGUS'", core.strerror, "EBOGUS")
  end)
end)

describe("core.now", function()
  it("is a monotonic clock in seconds #rootless", function()
    local defer = scope(finally)
    local t0 = core.now()
    assert.is_number(t0)
    local last = t0
    for _ = 1, 1000 do
      local t = core.now()
      assert.is_true(t >= last)
      last = t
    end
    os.execute("sleep 0.05")
    assert.is_true(core.now() - t0 >= 0.05)
    -- CLOCK_MONOTONIC: a child sees the same clock
    local t1 = core.now()
    local p, ch = start({}, function(c) c.send("now", string.format("%.9f", core.now())) end)
    defer(function() stop(p, ch) end)
    local _, child_now = ch.expect()
    assert.is_true(tonumber(child_now) >= t1 - 1e-6 and tonumber(child_now) <= core.now() + 1e-6)
    assert.equal(0, finish(p).status)
  end)
end)

describe("fd objects", function()
  it("read, write, fileno, tostring, close; closed use raises #rootless", function()
    local defer = scope(finally)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local n = r:fileno()
    assert.equal("integer", math.type(n))
    assert.equal("fd " .. n, tostring(r))
    assert.equal(fd_link(SELF, n), fd_link(SELF, w:fileno()))
    assert.equal(6, w:write("abcdef"))
    assert.equal("abc", r:read(3))
    assert.equal("def", r:read())
    assert_failure("^read fd " .. w:fileno() .. ": Bad file descriptor$", "EBADF", w:read())
    assert_raises("field 'size'", r.read, r, 0)
    assert_raises("field 'size'", r.read, r, (1 << 24) + 1)
    local wn = w:fileno()
    w:close()
    assert.is_nil(fd_link(SELF, wn))
    assert.equal("", r:read()) -- EOF
    w:close() -- idempotent
    assert.equal("fd (closed)", tostring(w))
    assert_raises("attempt to use a closed fd", w.write, w, "x")
    assert_raises("attempt to use a closed fd", w.read, w)
    assert_raises("attempt to use a closed fd", w.fileno, w)
    r:close()
    assert.is_nil(fd_link(SELF, n))
  end)

  it("closes with <close> #rootless", function()
    local n
    do
      local pr, pw = assert(core.pipe())
      local r <close> = pr
      local w <close> = pw
      n = r:fileno()
      assert.matches("^pipe:", fd_link(SELF, n))
      assert.equal(1, w:write("x"))
    end
    assert.is_nil(fd_link(SELF, n))
  end)
end)

describe("core.spawn into a cgroup #root", function()
  it("starts the child directly in the cgroup given by a cgroup2 directory fd (CLONE_INTO_CGROUP)", function()
    if not kernel.requires("root") then return end
    -- The cgroup2 tree: /sys/fs/cgroup itself on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
    local own = util.read("/proc/self/cgroup"):match("\n?0::([^\n]*)")
    local base = lfs.attributes("/sys/fs/cgroup/cgroup.procs") and "/sys/fs/cgroup" or "/sys/fs/cgroup/unified"
    if not own or not lfs.attributes(base .. "/cgroup.procs") then return pending("needs a cgroup2 hierarchy") end
    local name = ("lunas-test-%d"):format(core.getpid())
    local dir = base .. own:gsub("/$", "") .. "/" .. name
    assert(lfs.mkdir(dir))
    finally(function() lfs.rmdir(dir) end)
    local cg = assert(core.open(dir, "r"))
    local p = assert(core.spawn{ argv = { "sleep", "30" }, cgroup = cg })
    -- From its first instruction the child is in the cgroup: the cgroup lists it, and it names the cgroup.
    assert.equal(tostring(p.pid), util.read(dir .. "/cgroup.procs"):match("%d+"))
    assert.matches("\n?0::" .. (own:gsub("/$", "") .. "/" .. name):gsub("%p", "%%%0") .. "\n",
      util.read("/proc/" .. p.pid .. "/cgroup"))
    p:kill("KILL")
    p:wait()
    p:close()
    cg:close()
    assert.is_truthy(util.wait_for(function() return util.read(dir .. "/cgroup.procs") == "" end))
  end)
end)

describe("core.spawn into a cgroup2 with controllers #root", function()
  it("bounds the child and all it forks from its first instruction, and cgroup.kill empties the cgroup", function()
    if not kernel.requires("root", "cgroup2") then return end
    local defer = scope(finally)
    local own = util.read("/proc/self/cgroup"):match("0::([^\n]*)"):gsub("/$", "")
    local parent = "/sys/fs/cgroup" .. own
    if not util.read(parent .. "/cgroup.subtree_control"):find("pids") then
      return pending("the pids controller is not enabled for children of " .. parent)
    end
    local dir = ("%s/lunas-test-%d"):format(parent, core.getpid())
    assert(lfs.mkdir(dir))
    defer(function() lfs.rmdir(dir) end)
    util.write(dir .. "/pids.max", "4")
    local cg = assert(core.open(dir, "r"))
    defer(function() cg:close() end)
    -- Eight spawns against a limit of four tasks: the child itself and three more fit; the rest fail with EAGAIN.
    local r, w = core.pipe()
    defer(function() r:close() w:close() end)
    local p = assert(core.spawn{ cgroup = cg, fn = function()
      local started, refused = 0, 0
      for _ = 1, 8 do
        local sleeper, _, code = core.spawn{ argv = { "sleep", "30" } }
        if sleeper then started = started + 1 elseif code == "EAGAIN" then refused = refused + 1 end
      end
      w:write(started .. " " .. refused)
      w:close()
      core.exec({ "sleep", "30" })
      return 1
    end })
    defer(function() stop(p) end)
    w:close()
    assert.equal("3 5", r:read())
    assert.equal("4\n", util.read(dir .. "/pids.current"))
    assert.matches("^max 5", util.read(dir .. "/pids.events"))
    -- cgroup.kill (v2 only) takes down everything inside, the shell and its children alike.
    util.write(dir .. "/cgroup.kill", "1")
    assert.equal(9, finish(p).signal)
    assert.is_truthy(util.wait_for(function() return util.read(dir .. "/cgroup.procs") == "" end))
    assert.equal("0\n", util.read(dir .. "/pids.current"))
  end)
end)
