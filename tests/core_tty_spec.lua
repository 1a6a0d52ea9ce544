-- lunas.core pseudo-terminals: openpt and pty_peer (a pair that relays bytes both ways, from a particular devpts
-- instance), window sizes, the controlling terminal, raw mode and its restoration. What the terminal is like is
-- read from outside: `stty` run on the slave, /proc/PID/stat's tty_nr, `stat` of /proc/PID/fd/N.

local core = require "lunas.core"
local util = require "support.util"
local child = require "support.child"

local start, stop = child.start, child.stop
local assert_failure, assert_raises, map_self = child.assert_failure, child.assert_raises, child.map_self
local scope = util.cleanups

-- ---- helpers ------------------------------------------------------------------------------------------------

--- A new pty pair from /dev/ptmx, closed by the test's clean-up.
local function pty(defer)
  local master, number = assert(core.openpt("/dev/ptmx"))
  local slave = assert(core.pty_peer(master))
  defer(function() slave:close(); master:close() end)
  return master, slave, number
end

--- Reads from fd until `want` bytes came (or, without want, until EOF), failing the test after 10 s of silence.
local function read_for(fd, want)
  local got = ""
  while not want or #got < want do
    local ready = core.poll({ fd }, 10)
    assert.is_true(ready and #ready == 1, "nothing to read after 10 s; got so far: " .. ("%q"):format(got))
    local chunk = fd:read()
    if not chunk or chunk == "" then break end
    got = got .. chunk
  end
  return got
end

--- Runs argv with the given descriptors as its stdin (and stdout); returns what it wrote to stdout when no
-- stdout was given, and its exit code.
local function run(argv, stdin, stdout)
  local r, w
  if not stdout then r, w = assert(core.pipe()) end
  local p = assert(core.spawn{ fn = function()
    assert(core.dup2(stdin, 0))
    assert(core.dup2(stdout or w, 1))
    core.exec(argv)
    return 127
  end })
  local out = ""
  if w then
    w:close()
    out = read_for(r)
    r:close()
  end
  local status = child.finish(p)
  p:close()
  return out, status.status
end

--- `stty ARGS` on a terminal (its stdin): the output, failing the test if stty fails.
local function stty(tty, ...)
  local out, code = run({ "stty", ... }, tty)
  assert.equal(0, code, "stty " .. table.concat({ ... }, " ") .. " failed")
  return out
end

--- major, minor of the file a descriptor of process pid is, read by stat(1) from outside.
local function rdev(pid, fd)
  local out = util.run({ "stat", "-L", "-c", "%t %T", ("/proc/%d/fd/%d"):format(pid, fd) })
  local major, minor = out:match("^(%x+) (%x+)\n$")
  return tonumber(major, 16), tonumber(minor, 16)
end

--- Field 7 of /proc/PID/stat: the controlling terminal's device number, as the kernel encodes it.
local function tty_nr(pid)
  local stat = util.read("/proc/" .. pid .. "/stat")
  return tonumber(stat:match("^%d+ %b() (.*)$"):match("^%S+ %S+ %S+ %S+ (%S+)"))
end

--- The words of `stty -a` output, as a set ("-icanon", "cs8", ...).
local function settings(out)
  local set = {}
  for word in out:gmatch("[^%s;]+") do set[word] = true end
  return set
end

local function encode_dev(major, minor)
  return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)
end

-- ---- openpt / pty_peer ----------------------------------------------------------------------------------------

describe("core.openpt and core.pty_peer #rootless", function()
  it("make a pair that relays bytes both ways, cooked and raw", function()
    local defer = scope(finally)
    local master, slave, number = pty(defer)
    assert.equal("integer", math.type(number))
    -- the slave is /dev/pts/N of the instance /dev/ptmx belongs to, a terminal of major 136 + N / 256
    assert.equal("/dev/pts/" .. number, child.fd_link(core.getpid(), slave:fileno()))
    local major, minor = rdev(core.getpid(), slave:fileno())
    assert.equal(136 + number // 256, major)
    assert.equal(number % 256, minor)
    -- cooked: the line discipline echoes, and turns the slave's "\n" into "\r\n"
    assert.equal(6, master:write("hello\n"))
    assert.equal("hello\n", read_for(slave, 6))
    assert.equal("hello\r\n", read_for(master, 7))
    assert(slave:write("back\n"))
    assert.equal("back\r\n", read_for(master, 6))
    -- programs on the slave: one reads what the master writes, one writes what the master reads
    assert(core.tty_raw(slave))
    assert(master:write("abc\0\255\r"))
    local out, code = run({ "head", "-c", "6" }, slave)
    assert.equal(0, code)
    assert.equal("abc\0\255\r", out)
    out, code = run({ "printf", "x\\ny" }, slave, slave)
    assert.equal(0, code)
    assert.equal("", out)
    assert.equal("x\ny", read_for(master, 3))
  end)

  it("opens the slave close-on-exec unless asked, never as a controlling terminal", function()
    local defer = scope(finally)
    local master = pty(defer)
    local inherited = assert(core.pty_peer(master, { cloexec = false }))
    defer(function() inherited:close() end)
    local me = core.getpid()
    assert.is_false(child.has_flag(child.fd_flags(me, inherited:fileno()), child.O_CLOEXEC))
    local slave = assert(core.pty_peer(master, { cloexec = true }))
    defer(function() slave:close() end)
    assert.is_true(child.has_flag(child.fd_flags(me, slave:fileno()), child.O_CLOEXEC))
    assert.is_true(child.has_flag(child.fd_flags(me, master:fileno()), child.O_CLOEXEC))
    -- a session leader without a terminal that opens the slave (O_NOCTTY) does not get it as its own
    local p, ch = start({}, function(c)
      assert(core.setsid())
      local s = assert(core.pty_peer(master))
      c.send("opened", s:fileno())
      c.recv()
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    assert.equal(0, tty_nr(p.pid))
  end)

  it("fail with ENOTTY on what is not a ptmx or a master, and raise on misuse", function()
    local defer = scope(finally)
    local master, slave = pty(defer)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    assert_failure("^openpt /dev/null: Inappropriate ioctl for device$", "ENOTTY", core.openpt("/dev/null"))
    assert_failure("^openpt /nonexistent/ptmx: No such file or directory$", "ENOENT", core.openpt("/nonexistent/ptmx"))
    assert_failure("^openpt fd %d+: ", "ENOTTY", core.openpt(r))
    assert_failure("^pty_peer fd %d+: ", "ENOTTY", core.pty_peer(slave))
    assert_failure("^pty_peer fd %d+: ", "ENOTTY", core.pty_peer(r))
    assert_raises("field 'ptmx'", core.openpt)
    assert_raises("field 'ptmx'", core.openpt, {})
    assert_raises("field 'ptmx': contains a NUL byte", core.openpt, "/dev/ptmx\0x")
    assert_raises("field 'ptmx': empty path", core.openpt, "")
    assert_raises("field 'master'", core.pty_peer, "x")
    assert_raises("unknown option 'clo_exec'", core.pty_peer, master, { clo_exec = true })
    assert_raises("field 'cloexec': boolean expected", core.pty_peer, master, { cloexec = 1 })
  end)

  it("take the terminals of a new devpts instance, whatever /dev/pts shows", function()
    local defer = scope(finally)
    local dir, remove = util.tmpdir()
    defer(remove)
    assert(core.mkdir(dir .. "/pts"))
    local p, ch = start({ flags = "user,mount" }, function(c)
      map_self()
      assert(core.mount(nil, "/", nil, "rec,private"))
      assert(core.mount("devpts", dir .. "/pts", "devpts", 0, "newinstance,ptmxmode=0666,mode=0620"))
      local by_path, n1 = assert(core.openpt(dir .. "/pts/ptmx"))
      local pts = assert(core.open(dir .. "/pts", "r"))
      local by_dir, n2 = assert(core.openpt(pts))
      local ptmx_path = assert(core.open_in_root(pts, "ptmx"))
      local by_fd, n3 = assert(core.openpt(ptmx_path))
      local slave = assert(core.pty_peer(by_fd))
      -- the slave is that instance's terminal N, not /dev/pts/N of the caller's view
      local _, id = core.file_type(slave)
      local _, instance_id = core.file_type(dir .. "/pts/" .. n3)
      c.send("numbers", n1, n2, n3, slave:fileno(), tostring(id == instance_id))
      c.recv()
      by_path:close(); by_dir:close()
    end)
    defer(function() stop(p, ch) end)
    local _, n1, n2, n3, slave_fd, same = ch.expect()
    -- a new instance counts from 0
    assert.same({ "0", "1", "2", "true" }, { n1, n2, n3, same })
    -- from outside: the child's slave is the file its devpts holds, reached through its mount namespace
    local id = util.run({ "stat", "-L", "-c", "%d:%i", ("/proc/%d/fd/%s"):format(p.pid, slave_fd) })
    local in_instance = util.run({ "stat", "-c", "%d:%i", ("/proc/%d/root%s/pts/2"):format(p.pid, dir) })
    assert.matches("^%d+:%d+\n$", id)
    assert.equal(in_instance, id)
    assert.are_not.equal(util.run({ "stat", "-c", "%d", "/dev/pts" }):match("%d+"), id:match("^%d+"))
    assert.equal(136, (rdev(p.pid, tonumber(slave_fd))))
  end)
end)

-- ---- window sizes ---------------------------------------------------------------------------------------------

describe("core.tty_winsize #rootless", function()
  it("sets the pair's size, seen by stty size on the slave, and reads it back", function()
    local defer = scope(finally)
    local master, slave = pty(defer)
    assert.is_true(core.tty_winsize(master, { rows = 33, cols = 101 }))
    assert.equal("33 101\n", stty(slave, "size"))
    assert.same({ rows = 33, cols = 101 }, core.tty_winsize(slave))
    assert.same({ rows = 33, cols = 101 }, core.tty_winsize(master))
    assert.is_true(core.tty_winsize(slave, { rows = 65535, cols = 0 }))
    assert.same({ rows = 65535, cols = 0 }, core.tty_winsize(master))
    assert.equal("65535 0\n", stty(slave, "size"))
  end)

  it("fails with ENOTTY on what is not a terminal and raises naming the bad field", function()
    local defer = scope(finally)
    local master = pty(defer)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    assert_failure("^tty_winsize fd %d+: Inappropriate ioctl for device$", "ENOTTY", core.tty_winsize(r))
    assert_failure("^tty_winsize fd %d+: ", "ENOTTY", core.tty_winsize(r, { rows = 1, cols = 1 }))
    assert_raises("field 'rows': 65536 out of range [0, 65535]", core.tty_winsize, master, { rows = 65536, cols = 1 })
    assert_raises("field 'cols': -1 out of range", core.tty_winsize, master, { rows = 1, cols = -1 })
    assert_raises("field 'cols': integer expected, got nil", core.tty_winsize, master, { rows = 1 })
    assert_raises("field 'rows': integer expected, got string", core.tty_winsize, master, { rows = "1", cols = 1 })
    assert_raises("unknown option 'width'", core.tty_winsize, master, { rows = 1, cols = 1, width = 2 })
    assert_raises("table expected", core.tty_winsize, master, 24)
    assert_raises("field 'fd'", core.tty_winsize, "master")
  end)
end)

-- ---- the controlling terminal -----------------------------------------------------------------------------------

describe("core.set_controlling_tty", function()
  it("makes the slave the controlling terminal of a new session, seen in /proc/PID/stat #rootless", function()
    local defer = scope(finally)
    local _, slave = pty(defer)
    local major, minor = rdev(core.getpid(), slave:fileno())
    local p, ch = start({}, function(c)
      -- not a session leader yet
      c.send("before", core.set_controlling_tty(slave))
      assert(core.setsid())
      c.send("after", core.set_controlling_tty(slave, false))
      c.recv()
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "before", "nil", "set_controlling_tty fd " .. slave:fileno() .. ": Operation not permitted", "EPERM" },
      { ch.expect() })
    assert.same({ "after", "true" }, { ch.expect() })
    assert.equal(encode_dev(major, minor), tty_nr(p.pid))
    assert.are_not.equal(0, tty_nr(p.pid))
  end)

  it("takes a terminal from another session only when asked to steal it #root", function()
    local defer = scope(finally)
    local _, slave = pty(defer)
    local major, minor = rdev(core.getpid(), slave:fileno())
    local holder, hch = start({}, function(c)
      assert(core.setsid())
      assert(core.set_controlling_tty(slave))
      c.send("holding")
      c.recv()
    end)
    defer(function() stop(holder, hch) end)
    hch.expect()
    local thief, tch = start({}, function(c)
      assert(core.setsid())
      c.send("plain", core.set_controlling_tty(slave))
      c.send("steal", core.set_controlling_tty(slave, true))
      c.recv()
    end)
    defer(function() stop(thief, tch) end)
    local _, ok, _, code = tch.expect()
    assert.same({ "nil", "EPERM" }, { ok, code })
    assert.same({ "steal", "true" }, { tch.expect() })
    assert.equal(encode_dev(major, minor), tty_nr(thief.pid))
    assert.equal(0, tty_nr(holder.pid))
  end)

  it("fails with ENOTTY on what is not a terminal and raises on a bad steal #rootless", function()
    local defer = scope(finally)
    local _, slave = pty(defer)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    assert_failure("^set_controlling_tty fd %d+: Inappropriate ioctl for device$", "ENOTTY", core.set_controlling_tty(r))
    assert_raises("field 'steal': boolean expected, got string", core.set_controlling_tty, slave, "yes")
    assert_raises("field 'steal': 2 out of range [0, 1]", core.set_controlling_tty, slave, 2)
    assert_raises("field 'fd'", core.set_controlling_tty, nil)
  end)
end)

-- ---- raw mode ---------------------------------------------------------------------------------------------------

describe("core.tty_raw and core.tty_restore #rootless", function()
  it("put the terminal in raw mode as stty sees it, and bring back exactly the settings before", function()
    local defer = scope(finally)
    local _, slave = pty(defer)
    local before, before_g = stty(slave, "-a"), stty(slave, "-g")
    local words = settings(before)
    for _, flag in ipairs({ "icanon", "echo", "isig", "iexten", "opost", "icrnl" }) do
      assert.is_true(words[flag], flag .. " missing in: " .. before)
    end
    local saved = assert(core.tty_raw(slave))
    assert.equal("string", type(saved))
    local raw = stty(slave, "-a")
    words = settings(raw)
    -- cfmakeraw, as ssh and docker leave the user's terminal while they relay
    for _, flag in ipairs({ "-icanon", "-echo", "-isig", "-iexten", "-opost", "-icrnl", "-ixon", "-brkint",
      "-parenb", "cs8" }) do
      assert.is_true(words[flag], flag .. " missing in: " .. raw)
    end
    assert.matches("min = 1;", raw, 1, true)
    assert.matches("time = 0;", raw, 1, true)
    assert.is_true(core.tty_restore(slave, saved))
    assert.equal(before_g, stty(slave, "-g"))
    assert.equal(before, stty(slave, "-a"))
    -- the same settings again: nothing changes
    assert.is_true(core.tty_restore(slave, saved))
    assert.equal(before_g, stty(slave, "-g"))
  end)

  it("fail with ENOTTY on what is not a terminal and refuse anything but saved settings", function()
    local defer = scope(finally)
    local _, slave = pty(defer)
    local r, w = assert(core.pipe())
    defer(function() r:close(); w:close() end)
    local saved = assert(core.tty_raw(slave))
    assert.is_true(core.tty_restore(slave, saved))
    assert_failure("^tty_raw fd %d+: Inappropriate ioctl for device$", "ENOTTY", core.tty_raw(r))
    assert_failure("^tty_restore fd %d+: Inappropriate ioctl for device$", "ENOTTY", core.tty_restore(r, saved))
    assert_raises("field 'saved': length 3, not the " .. #saved .. " bytes", core.tty_restore, slave, "abc")
    assert_raises("field 'saved': length " .. (#saved + 1), core.tty_restore, slave, saved .. "x")
    assert_raises("field 'saved': string from tty_raw expected, got number", core.tty_restore, slave, 12345)
    assert_raises("field 'saved': string from tty_raw expected, got no value", core.tty_restore, slave)
    assert_raises("field 'fd'", core.tty_raw, {})
  end)
end)
