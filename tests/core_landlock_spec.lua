-- lunas.core Landlock primitives: landlock_abi, landlock_rights, landlock_ruleset and the ruleset object
-- (allow_path, allow_port, restrict, handled, fileno, close).
--
-- A restriction is for life, so every restrict() runs in a child (fork semantics). The children report what
-- they could and could not do through a channel (support.child) or, once they exec a program, through its exit
-- status and output; the test also looks from outside (files a child created or not, the listeners it reached,
-- the process it could not signal). Attempts are plain programs where that makes the point (cat, perl sockets).

local core = require "lunas.core"
local lfs = require "lfs"
local kernel = require "support.kernel"
local util = require "support.util"
local child = require "support.child"

local start, stop, finish = child.start, child.stop, child.finish
local assert_failure, assert_raises = child.assert_failure, child.assert_raises
local scope = util.cleanups

local ALL_FS = { "execute", "write_file", "read_file", "read_dir", "remove_dir", "remove_file", "make_char",
  "make_dir", "make_reg", "make_sock", "make_fifo", "make_block", "make_sym", "refer", "truncate", "ioctl_dev" }

-- ---- helpers ------------------------------------------------------------------------------------------------

--- Descriptors of this process whose link matches pattern (e.g. Landlock rulesets), counted.
local function count_fds(pattern)
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    local target = name:match("^%d+$") and child.readlink("/proc/self/fd/" .. name)
    if target and target:match(pattern) then n = n + 1 end
  end
  return n
end

local function all_fds()
  return count_fds(".")
end

--- "ok" for a success, else the errno name of a lunas.core failure (v, msg, code) or of an io/os one
-- (nil, msg, errno number).
local function outcome(v, _, code)
  if v then return "ok" end
  if math.type(code) == "integer" then return core.errno_name(code) end
  return tostring(code)
end

--- Opens path for reading: true, or nil, msg, code.
local function try_read(path)
  local f, msg, code = core.open(path, "r")
  if not f then return nil, msg, code end
  f:close()
  return true
end

--- Opens path with mode ("w", "a") and writes data: true, or nil, msg, code.
local function try_write(path, mode, data)
  local f, msg, code = core.open(path, mode)
  if not f then return nil, msg, code end
  assert(f:write(data))
  f:close()
  return true
end

--- The rights among names that the running kernel knows.
local function known(names)
  local abi, rights, list = core.landlock_abi(), core.landlock_rights(), {}
  for _, name in ipairs(names) do
    if rights.fs[name] <= abi then list[#list + 1] = name end
  end
  return list
end

--- Runs body(report) in a child after setting no_new_privs; report(name, v, msg, code) records an outcome.
-- Returns the outcomes by name once the child exited 0.
local function in_child(defer, body)
  local p, ch = start({}, function(c)
    assert(core.prctl{ no_new_privs = true })
    body(function(name, ...) c.send(name, outcome(...)) end)
    c.send("done")
    return 0
  end)
  defer(function() stop(p, ch) end)
  local results = {}
  while true do
    local name, result = ch.expect()
    if name == "done" then break end
    results[name] = result
  end
  assert.same({ pid = p.pid, status = 0 }, finish(p))
  return results
end

--- Spawns fn in a child with its stdout and stderr on a pipe; returns the exit status and what it wrote.
local function run_captured(fn)
  local r, w = assert(core.pipe())
  local p = assert(core.spawn{ fn = function()
    r:close()
    assert(core.dup2(w, 1))
    assert(core.dup2(w, 2))
    return fn()
  end })
  w:close()
  local out = util.drain(r)
  r:close()
  local st = finish(p)
  p:close()
  return st.status, out
end

local function make_tree(defer)
  local dir, remove = util.tmpdir()
  defer(remove)
  assert(lfs.mkdir(dir .. "/allowed"))
  assert(lfs.mkdir(dir .. "/allowed/sub"))
  assert(lfs.mkdir(dir .. "/denied"))
  util.write(dir .. "/allowed/a.txt", "in allowed\n")
  util.write(dir .. "/allowed/sub/c.txt", "beneath allowed\n")
  util.write(dir .. "/denied/b.txt", "in denied\n")
  assert(lfs.link("allowed", dir .. "/link", true))
  return dir
end

-- A program that tries TCP operations on 127.0.0.1 ("connect:PORT", "bind:PORT") and prints "op:port errno".
local TCP_PROBE = [[
use Socket;
for my $try (@ARGV) {
  my ($op, $port) = split /:/, $try;
  socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
  my $addr = pack_sockaddr_in($port, inet_aton("127.0.0.1"));
  my $ok = $op eq "connect" ? connect($s, $addr) : bind($s, $addr);
  print "$try ", ($ok ? 0 : $! + 0), "\n";
  close $s;
}
]]

-- Listens on 127.0.0.1 ports given as arguments until killed.
local TCP_LISTENER = [[
use Socket;
my @socks;
for my $port (@ARGV) {
  socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
  bind($s, pack_sockaddr_in($port, inet_aton("127.0.0.1"))) or die "bind $port: $!";
  listen($s, 16) or die "listen: $!";
  push @socks, $s;
}
sleep 60;
]]

local UNIX_LISTENER = [[
use Socket;
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
bind($s, pack_sockaddr_un("\0" . $ARGV[0])) or die "bind: $!";
listen($s, 16) or die "listen: $!";
sleep 60;
]]

local UNIX_PROBE = [[
use Socket;
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
print connect($s, pack_sockaddr_un("\0" . $ARGV[0])) ? 0 : $! + 0, "\n";
]]

--- Listening TCP ports of this network namespace, read from /proc/net/tcp.
local function tcp_listening(port)
  local hex = string.format(":%04X ", port)
  for line in (util.read("/proc/net/tcp") or ""):gmatch("[^\n]+") do
    local st = line:match("^%s*%d+: 0100007F" .. hex .. "%x+:%x+ (%x%x)")
    if st == "0A" then return true end
  end
  return false
end

local function unix_listening(name)
  return (util.read("/proc/net/unix") or ""):find("@" .. name .. "\n", 1, true) ~= nil
end

--- Parses "op:port errno" lines into { ["op:port"] = "ok" | "EACCES" ... }.
local function parse_probe(out)
  local results = {}
  for try, err in out:gmatch("(%S+) (%d+)\n") do
    results[try] = err == "0" and "ok" or core.errno_name(tonumber(err))
  end
  return results
end

--- Becomes uid/gid 65534 with no capabilities (the root pass); the rootless pass is that already.
local function become_nobody()
  if core.ids().euid == 0 then
    assert(core.setgroups({}))
    assert(core.setresgid(65534, 65534, 65534))
    assert(core.setresuid(65534, 65534, 65534))
  end
end

-- ---- landlock_abi / landlock_rights -------------------------------------------------------------------------

describe("core.landlock_abi #rootless", function()
  it("answers the kernel's ABI version, the same each time", function()
    if not kernel.requires("landlock") then return end
    local abi = core.landlock_abi()
    assert.equal("integer", math.type(abi))
    assert.is_true(abi >= 1)
    assert.equal(abi, core.landlock_abi())
  end)

  it("answers 0, the reason and the code when the kernel has no Landlock", function()
    local defer = scope(finally)
    for _, ename in ipairs({ "ENOSYS", "EOPNOTSUPP" }) do
      -- a seccomp filter makes the kernel look like one built without Landlock (ENOSYS) or booted with it off
      local r = in_child(defer, function(report)
        local f = assert(core.seccomp_filter{})
        assert(f:add("errno:" .. ename, "landlock_create_ruleset"))
        assert(f:load())
        local abi, msg, code = core.landlock_abi()
        report("abi", true)
        assert.equal(0, abi)
        assert.equal("landlock: " .. core.strerror(ename), msg)
        assert.equal(ename, code)
        local rs, rmsg, rcode = core.landlock_ruleset{ fs = "read_file" }
        assert.is_nil(rs)
        assert.equal("landlock ruleset: " .. core.strerror(ename), rmsg)
        report("ruleset", rs, rmsg, rcode)
      end)
      assert.same({ abi = "ok", ruleset = ename }, r)
    end
  end)
end)

describe("core.landlock_rights #rootless", function()
  it("names every right with the ABI that introduced it", function()
    assert.same({
      fs = { execute = 1, write_file = 1, read_file = 1, read_dir = 1, remove_dir = 1, remove_file = 1,
        make_char = 1, make_dir = 1, make_reg = 1, make_sock = 1, make_fifo = 1, make_block = 1, make_sym = 1,
        refer = 2, truncate = 3, ioctl_dev = 5 },
      net = { bind_tcp = 4, connect_tcp = 4 },
      scoped = { abstract_unix_socket = 6, signal = 6 },
    }, core.landlock_rights())
  end)

  it("returns a fresh table each call", function()
    local t = core.landlock_rights()
    t.fs.execute = 99
    t.net = nil
    assert.equal(1, core.landlock_rights().fs.execute)
    assert.is_table(core.landlock_rights().net)
    assert.are_not.equal(core.landlock_rights(), core.landlock_rights())
  end)

  it("accepts every right the kernel's ABI knows in a ruleset", function()
    if not kernel.requires("landlock") then return end
    local abi = core.landlock_abi()
    for category, names in pairs(core.landlock_rights()) do
      for name, needs in pairs(names) do
        if needs <= abi then
          local rs <close> = assert(core.landlock_ruleset{ [category] = { name } })
          assert.same({ name }, rs:handled()[category])
        end
      end
    end
  end)
end)

-- ---- the ruleset object --------------------------------------------------------------------------------------

describe("core.landlock_ruleset #rootless", function()
  it("creates a ruleset that owns a Landlock descriptor and remembers what it handles", function()
    if not kernel.requires("landlock") then return end
    local rs <close> = assert(core.landlock_ruleset{ fs = { "write_file", "read_file", "read_dir" } })
    local fd = rs:fileno()
    assert.equal("anon_inode:[landlock-ruleset]", child.readlink("/proc/self/fd/" .. fd))
    assert.equal("landlock ruleset (fd " .. fd .. ")", tostring(rs))
    assert.same({ fs = { "read_dir", "read_file", "write_file" }, net = {}, scoped = {} }, rs:handled())
  end)

  it("takes rights as a table of names or a comma string, in any category", function()
    if not kernel.requires("landlock_scoped") then return end
    local rs <close> = assert(core.landlock_ruleset{
      fs = "read_file, execute,,read_dir",
      net = { "connect_tcp", "bind_tcp" },
      scoped = "signal,abstract_unix_socket",
    })
    assert.same({
      fs = { "execute", "read_dir", "read_file" },
      net = { "bind_tcp", "connect_tcp" },
      scoped = { "abstract_unix_socket", "signal" },
    }, rs:handled())
  end)

  it("raises on misuse, naming the field", function()
    assert_raises({ "field 'fs'", "unknown right 'reed_file'" }, core.landlock_ruleset, { fs = { "reed_file" } })
    assert_raises({ "field 'fs'", "unknown right 'reed_file'" }, core.landlock_ruleset, { fs = "read_file,reed_file" })
    assert_raises({ "field 'fs'", "right 'bind_tcp' is a net right, not fs" }, core.landlock_ruleset,
      { fs = "bind_tcp" })
    assert_raises({ "field 'net'", "right 'read_file' is a fs right, not net" }, core.landlock_ruleset,
      { net = { "read_file" } })
    assert_raises({ "field 'scoped'", "right 'connect_tcp' is a net right, not scoped" }, core.landlock_ruleset,
      { scoped = "connect_tcp" })
    assert_raises({ "field 'fs'", "entry 2: right name expected, got number" }, core.landlock_ruleset,
      { fs = { "read_file", 4 } })
    assert_raises({ "field 'fs'", "rights expected" }, core.landlock_ruleset, { fs = 4 })
    assert_raises({ "field 'fs'", "NUL byte" }, core.landlock_ruleset, { fs = "read_file\0" })
    assert_raises("unknown option 'filesystem'", core.landlock_ruleset, { filesystem = "read_file" })
    assert_raises("at least one right expected", core.landlock_ruleset, {})
    assert_raises("at least one right expected", core.landlock_ruleset, { fs = {}, net = "" })
    assert_raises("table expected", core.landlock_ruleset)
    assert_raises("table expected", core.landlock_ruleset, "read_file")
  end)

  it("refuses a right newer than the kernel before asking the kernel for a ruleset", function()
    -- The played kernel's truncate ruleset really goes to this kernel, which must know the right.
    if core.landlock_abi() < 3 then pending("needs Landlock ABI 3 (truncate) to play an ABI 3 kernel") return end
    local defer = scope(finally)
    -- The kernel under test knows every right; a seccomp supervisor plays a kernel of ABI 3 by answering the
    -- version query itself, and records every landlock_create_ruleset call it sees (its flags: 1 is the
    -- version query, 0 a real ruleset). Child A supervises; its child B makes the calls.
    local p, ch = start({}, function(c)
      local f = assert(core.seccomp_filter{})
      assert(f:add("notify", "landlock_create_ruleset"))
      assert(f:load())
      local listener = assert(f:notify_fd())
      local b = assert(core.spawn{ fn = function()
        listener:close() -- else a crashed supervisor would leave this process held forever
        c.send("abi", core.landlock_abi())
        c.send("ioctl_dev", core.landlock_ruleset{ fs = "read_file,ioctl_dev" })
        c.send("connect_tcp", core.landlock_ruleset{ net = "connect_tcp" })
        local rs = core.landlock_ruleset{ fs = "read_file,truncate" }
        c.send("truncate", tostring(rs and rs:fileno() >= 0))
        c.send("signal", core.landlock_ruleset{ scoped = "signal" })
        return 0
      end })
      local seen = {}
      for _ = 1, 6 do
        local n = assert(core.seccomp_notify_receive(listener))
        local flags = n.args[3]
        seen[#seen + 1] = tostring(flags)
        if flags == 1 then
          assert(core.seccomp_notify_respond(listener, n.id, { value = 3 }))
        else
          assert(core.seccomp_notify_respond(listener, n.id, { continue = true }))
        end
      end
      local st = assert(b:wait(10))
      c.send("seen", table.concat(seen, ","), st.status)
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "abi", "3" }, { ch.expect() })
    assert.same({ "ioctl_dev", "nil", "landlock ruleset: right 'ioctl_dev' needs ABI 5, the kernel has 3",
      "EOPNOTSUPP" }, { ch.expect() })
    assert.same({ "connect_tcp", "nil", "landlock ruleset: right 'connect_tcp' needs ABI 4, the kernel has 3",
      "EOPNOTSUPP" }, { ch.expect() })
    assert.same({ "truncate", "true" }, { ch.expect() })
    assert.same({ "signal", "nil", "landlock ruleset: right 'signal' needs ABI 6, the kernel has 3", "EOPNOTSUPP" },
      { ch.expect() })
    -- only the version query reached the kernel for the refused rulesets
    assert.same({ "seen", "1,1,1,1,0,1", "0" }, { ch.expect() })
    assert.same({ pid = p.pid, status = 0 }, finish(p))
  end)
end)

describe("ruleset:close and collection #rootless", function()
  it("closes its descriptor once; every method afterwards raises", function()
    if not kernel.requires("landlock") then return end
    local before = count_fds("landlock%-ruleset")
    local rs = assert(core.landlock_ruleset{ fs = "read_file", net = kernel.has("landlock_net") and "bind_tcp" or nil })
    assert.equal(before + 1, count_fds("landlock%-ruleset"))
    rs:close()
    assert.equal(before, count_fds("landlock%-ruleset"))
    rs:close() -- idempotent
    assert.equal("landlock ruleset (closed)", tostring(rs))
    local closed = "attempt to use a closed landlock ruleset"
    assert_raises(closed, rs.fileno, rs)
    assert_raises(closed, rs.handled, rs)
    assert_raises(closed, rs.restrict, rs)
    assert_raises(closed, rs.allow_path, rs, "/", "read_file")
    assert_raises(closed, rs.allow_port, rs, 80, "bind_tcp")
  end)

  it("closes its descriptor at the end of a <close> scope and when collected", function()
    if not kernel.requires("landlock") then return end
    local before = count_fds("landlock%-ruleset")
    do
      local rs <close> = assert(core.landlock_ruleset{ fs = "read_file" })
      assert.equal(before + 1, count_fds("landlock%-ruleset"))
    end
    assert.equal(before, count_fds("landlock%-ruleset"))
    local _ = assert(core.landlock_ruleset{ fs = "read_file" })
    _ = nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.equal(before, count_fds("landlock%-ruleset"))
  end)
end)

describe("ruleset:allow_path #rootless", function()
  it("raises on misuse, naming the field", function()
    if not kernel.requires("landlock") then return end
    local rs <close> = assert(core.landlock_ruleset{ fs = "read_file,read_dir" })
    assert_raises({ "field 'rights'", "unknown right 'reed_file'" }, rs.allow_path, rs, "/", "reed_file")
    assert_raises({ "field 'rights'", "right 'connect_tcp' is a net right, not fs" }, rs.allow_path, rs, "/",
      "connect_tcp")
    assert_raises({ "field 'rights'", "right 'write_file' is not handled by this ruleset" }, rs.allow_path, rs, "/",
      { "read_file", "write_file" })
    assert_raises({ "field 'rights'", "at least one right expected" }, rs.allow_path, rs, "/", {})
    assert_raises({ "field 'rights'", "at least one right expected" }, rs.allow_path, rs, "/")
    assert_raises({ "field 'path'", "file descriptor expected, got table" }, rs.allow_path, rs, {}, "read_file")
    assert_raises({ "field 'path'", "NUL byte" }, rs.allow_path, rs, "/tmp\0/x", "read_file")
    assert_raises({ "field 'path'", "out of range" }, rs.allow_path, rs, -1, "read_file")
    local f = assert(core.open("/", "r"))
    f:close()
    assert_raises("attempt to use a closed fd", rs.allow_path, rs, f, "read_file")
  end)

  it("fails with the path and the errno for a path it cannot open, and leaks no descriptor", function()
    if not kernel.requires("landlock") then return end
    local rs <close> = assert(core.landlock_ruleset{ fs = "read_file,read_dir" })
    local before = all_fds()
    assert_failure("^landlock allow_path /nonexistent/x: No such file or directory$", "ENOENT",
      rs:allow_path("/nonexistent/x", "read_file"))
    assert_failure("^landlock allow_path fd 999999: Bad file descriptor$", "EBADF", rs:allow_path(999999, "read_file"))
    assert.is_true(rs:allow_path("/etc", "read_file,read_dir"))
    assert.is_true(rs:allow_path("/etc/passwd", "read_file"))
    assert.equal(before, all_fds())
  end)

  it("refuses a directory right on a file with a message naming the right", function()
    if not kernel.requires("landlock") then return end
    local defer = scope(finally)
    local dir = make_tree(defer)
    local rs <close> = assert(core.landlock_ruleset{ fs = known(ALL_FS) })
    local before = all_fds()
    assert_failure("^landlock allow_path /etc/passwd: right 'read_dir' applies to directories only$", "EINVAL",
      rs:allow_path("/etc/passwd", "read_file,read_dir"))
    local file = dir .. "/allowed/a.txt"
    assert_failure("right 'make_reg' applies to directories only$", "EINVAL", rs:allow_path(file, "make_reg"))
    assert_failure("right 'refer' applies to directories only$", "EINVAL", rs:allow_path(file, "refer"))
    assert.equal(before, all_fds())
    -- the file rights are fine on a file, given by path or by descriptor
    assert.is_true(rs:allow_path(file, known({ "execute", "write_file", "read_file", "truncate", "ioctl_dev" })))
    local f = assert(core.open(file, "r"))
    assert.is_true(rs:allow_path(f, "read_file"))
    assert.is_true(rs:allow_path(f:fileno(), "read_file"))
    -- a caller's descriptor stays open
    assert.equal(file, child.readlink("/proc/self/fd/" .. f:fileno()))
    f:close()
  end)
end)

-- ---- restrictions, each in a child ---------------------------------------------------------------------------

describe("restricted file system access #rootless", function()
  it("allows what rules grant beneath a directory and denies the rest with EACCES", function()
    if not kernel.requires("landlock") then return end
    local defer = scope(finally)
    local dir = make_tree(defer)
    -- made here, restricted in the child: the parent's own copy stays free
    -- truncate where the kernel has it (ABI 3): opening for writing needs write_file either way
    local rs = assert(core.landlock_ruleset{
      fs = known{ "read_file", "write_file", "read_dir", "make_reg", "remove_file", "truncate" } })
    defer(function() rs:close() end)
    local r = in_child(defer, function(report)
      -- through the symlink: the rule holds for the directory it names
      assert(rs:allow_path(dir .. "/link", "read_file,read_dir"))
      local d = assert(core.open(dir .. "/allowed", "r"))
      assert(rs:allow_path(d, known{ "write_file", "make_reg", "remove_file", "truncate" }))
      d:close()
      assert(rs:restrict())
      report("read allowed", try_read(dir .. "/allowed/a.txt"))
      report("read beneath", try_read(dir .. "/allowed/sub/c.txt"))
      report("read denied", try_read(dir .. "/denied/b.txt"))
      report("list allowed", core.listdir(dir .. "/allowed"))
      report("list denied", core.listdir(dir .. "/denied"))
      report("list top", core.listdir(dir))
      report("create allowed", try_write(dir .. "/allowed/new.txt", "w", "made\n"))
      report("create denied", try_write(dir .. "/denied/new.txt", "w", "made\n"))
      report("remove allowed", os.remove(dir .. "/allowed/a.txt"))
      report("remove denied", os.remove(dir .. "/denied/b.txt"))
    end)
    assert.same({
      ["read allowed"] = "ok", ["read beneath"] = "ok", ["read denied"] = "EACCES",
      ["list allowed"] = "ok", ["list denied"] = "EACCES", ["list top"] = "EACCES",
      ["create allowed"] = "ok", ["create denied"] = "EACCES",
      ["remove allowed"] = "ok", ["remove denied"] = "EACCES",
    }, r)
    -- from outside: what the child did and did not do
    assert.equal("made\n", util.read(dir .. "/allowed/new.txt"))
    assert.is_nil(lfs.attributes(dir .. "/denied/new.txt"))
    assert.is_nil(lfs.attributes(dir .. "/allowed/a.txt"))
    assert.equal("in denied\n", util.read(dir .. "/denied/b.txt"))
  end)

  it("grants rights on single files: read-only stays read-only", function()
    if not kernel.requires("landlock") then return end
    local defer = scope(finally)
    local dir = make_tree(defer)
    local ro, rw, other = dir .. "/allowed/a.txt", dir .. "/allowed/sub/c.txt", dir .. "/denied/b.txt"
    local r = in_child(defer, function(report)
      local rs = assert(core.landlock_ruleset{ fs = known{ "read_file", "write_file", "truncate" } })
      assert(rs:allow_path(ro, "read_file"))
      assert(rs:allow_path(rw, known{ "read_file", "write_file", "truncate" }))
      assert(rs:restrict())
      rs:close()
      report("read ro", try_read(ro))
      report("append ro", try_write(ro, "a", "more\n"))
      report("truncate ro", try_write(ro, "w", "replaced\n"))
      report("read rw", try_read(rw))
      report("truncate rw", try_write(rw, "w", "replaced\n"))
      report("read other", try_read(other))
    end)
    assert.same({
      ["read ro"] = "ok", ["append ro"] = "EACCES", ["truncate ro"] = "EACCES",
      ["read rw"] = "ok", ["truncate rw"] = "ok", ["read other"] = "EACCES",
    }, r)
    assert.equal("in allowed\n", util.read(ro))
    assert.equal("replaced\n", util.read(rw))
  end)

  it("keeps a program the child execs confined", function()
    if not kernel.requires("landlock") then return end
    local defer = scope(finally)
    local dir = make_tree(defer)
    local function cat(path)
      return run_captured(function()
        local rs = assert(core.landlock_ruleset{ fs = "read_file" })
        -- what cat itself needs: its libraries and the loader's cache
        for _, system in ipairs({ "/usr", "/etc", "/lib", "/lib64" }) do
          if lfs.attributes(system) then assert(rs:allow_path(system, "read_file")) end
        end
        assert(rs:allow_path(dir .. "/allowed", "read_file"))
        assert(core.prctl{ no_new_privs = true })
        assert(rs:restrict())
        core.exec({ "cat", path })
        return 127
      end)
    end
    local status, out = cat(dir .. "/allowed/a.txt")
    assert.equal(0, status)
    assert.equal("in allowed\n", out)
    status, out = cat(dir .. "/denied/b.txt")
    assert.equal(1, status)
    assert.matches("Permission denied", out)
  end)
end)

describe("restricted TCP #rootless", function()
  it("allows binding and connecting only to the ports rules grant", function()
    if not kernel.requires("landlock_net") then return end
    local defer = scope(finally)
    -- ports of the suite's private network namespace; a listener on the first two
    local LISTEN_OK, LISTEN_DENIED, CLOSED_OK, BIND_OK, BIND_DENIED = 47101, 47102, 47103, 47104, 47105
    local listener = assert(core.spawn{ argv = { "perl", "-e", TCP_LISTENER, tostring(LISTEN_OK),
      tostring(LISTEN_DENIED) } })
    defer(function() stop(listener) end)
    assert.is_truthy(util.wait_for(function() return tcp_listening(LISTEN_OK) and tcp_listening(LISTEN_DENIED) end),
      "the listener did not come up")
    local tries = { "connect:" .. LISTEN_OK, "connect:" .. LISTEN_DENIED, "connect:" .. CLOSED_OK,
      "bind:" .. BIND_OK, "bind:" .. BIND_DENIED }
    local function probe(restrict)
      local status, out = run_captured(function()
        if restrict then
          local rs = assert(core.landlock_ruleset{ net = "bind_tcp,connect_tcp" })
          assert(rs:allow_port(LISTEN_OK, "connect_tcp"))
          assert(rs:allow_port(CLOSED_OK, { "connect_tcp" }))
          assert(rs:allow_port(BIND_OK, "bind_tcp"))
          assert(core.prctl{ no_new_privs = true })
          assert(rs:restrict())
        end
        core.exec({ "perl", "-e", TCP_PROBE, table.unpack(tries) })
        return 127
      end)
      assert.equal(0, status, out)
      return parse_probe(out)
    end
    -- unrestricted, everything works (ECONNREFUSED: nobody listens there)
    assert.same({
      ["connect:" .. LISTEN_OK] = "ok", ["connect:" .. LISTEN_DENIED] = "ok", ["connect:" .. CLOSED_OK] =
      "ECONNREFUSED", ["bind:" .. BIND_OK] = "ok", ["bind:" .. BIND_DENIED] = "ok",
    }, probe(false))
    assert.same({
      ["connect:" .. LISTEN_OK] = "ok", ["connect:" .. LISTEN_DENIED] = "EACCES",
      ["connect:" .. CLOSED_OK] = "ECONNREFUSED", -- allowed: it reached the stack
      ["bind:" .. BIND_OK] = "ok", ["bind:" .. BIND_DENIED] = "EACCES",
    }, probe(true))
  end)

  it("raises on misuse of allow_port, naming the field", function()
    if not kernel.requires("landlock_net") then return end
    local rs <close> = assert(core.landlock_ruleset{ net = "connect_tcp", fs = "read_file" })
    assert_raises({ "field 'port'", "70000 out of range [0, 65535]" }, rs.allow_port, rs, 70000, "connect_tcp")
    assert_raises({ "field 'port'", "-1 out of range" }, rs.allow_port, rs, -1, "connect_tcp")
    assert_raises({ "field 'port'", "integer expected, got string" }, rs.allow_port, rs, "80", "connect_tcp")
    assert_raises({ "field 'port'", "integer expected" }, rs.allow_port, rs, 80.5, "connect_tcp")
    assert_raises({ "field 'rights'", "right 'bind_tcp' is not handled by this ruleset" }, rs.allow_port, rs, 80,
      "bind_tcp")
    assert_raises({ "field 'rights'", "right 'read_file' is a fs right, not net" }, rs.allow_port, rs, 80,
      "read_file")
    assert_raises({ "field 'rights'", "at least one right expected" }, rs.allow_port, rs, 80, "")
    assert.is_true(rs:allow_port(0, "connect_tcp"))
    assert.is_true(rs:allow_port(65535, "connect_tcp"))
  end)
end)

describe("restricted scopes #rootless", function()
  it("keeps a restricted process from signalling a process outside its domain", function()
    if not kernel.requires("landlock_scoped") then return end
    local defer = scope(finally)
    -- the parent's other child: the target
    local target, tch = start({}, function(c)
      c.send("ready")
      c.recv()
      return 0
    end)
    defer(function() stop(target, tch) end)
    tch.expect()
    local r = in_child(defer, function(report)
      report("before", core.kill(target.pid, 0))
      local rs = assert(core.landlock_ruleset{ scoped = "signal" })
      assert(rs:restrict())
      report("probe", core.kill(target.pid, 0))
      report("term", core.kill(target.pid, "TERM"))
      -- its own children are inside the domain
      local own = assert(core.spawn{ fn = function() core.exit(0) end })
      report("own child", core.kill(own.pid, 0))
      assert(own:wait(10))
    end)
    assert.same({ before = "ok", probe = "EPERM", term = "EPERM", ["own child"] = "ok" }, r)
    assert.is_true(util.alive(target.pid))
  end)

  it("keeps a restricted process from connecting to an abstract unix socket outside its domain", function()
    if not kernel.requires("landlock_scoped") then return end
    local defer = scope(finally)
    local name = "lunas-landlock-test-" .. core.getpid()
    local listener = assert(core.spawn{ argv = { "perl", "-e", UNIX_LISTENER, name } })
    defer(function() stop(listener) end)
    assert.is_truthy(util.wait_for(function() return unix_listening(name) end), "the listener did not come up")
    local function connect(scoped)
      local status, out = run_captured(function()
        if scoped then
          local rs = assert(core.landlock_ruleset{ scoped = scoped })
          assert(core.prctl{ no_new_privs = true })
          assert(rs:restrict())
        end
        core.exec({ "perl", "-e", UNIX_PROBE, name })
        return 127
      end)
      assert.equal(0, status, out)
      local err = tonumber(out:match("^(%d+)\n"))
      return err == 0 and "ok" or core.errno_name(err)
    end
    assert.equal("ok", connect(nil))
    assert.equal("ok", connect("signal"))
    assert.equal("EPERM", connect("abstract_unix_socket"))
  end)
end)

describe("ruleset:restrict #rootless", function()
  it("fails with EPERM and a hint without no_new_privs, then works with it", function()
    if not kernel.requires("landlock") then return end
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      become_nobody()
      local rs = assert(core.landlock_ruleset{ fs = "make_dir" })
      c.send("nnp", tostring(core.prctl_get("no_new_privs")))
      c.send("restrict", rs:restrict())
      assert(core.prctl{ no_new_privs = true })
      c.send("again", tostring(rs:restrict()))
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "nnp", "false" }, { ch.expect() })
    assert.same({ "restrict", "nil", "landlock restrict: Operation not permitted (set no_new_privs first)", "EPERM" },
      { ch.expect() })
    assert.same({ "again", "true" }, { ch.expect() })
    assert.same({ pid = p.pid, status = 0 }, finish(p))
  end)

  it("stacks up to the kernel's 16 layers, then fails with E2BIG", function()
    if not kernel.requires("landlock") then return end
    local defer = scope(finally)
    local r = in_child(defer, function(report)
      local rs = assert(core.landlock_ruleset{ fs = "make_dir" })
      for layer = 1, 16 do assert(rs:restrict(), "layer " .. layer) end
      local ok, msg, code = rs:restrict()
      assert.equal("landlock restrict: Argument list too long", msg)
      report("17th", ok, msg, code)
    end)
    assert.same({ ["17th"] = "E2BIG" }, r)
  end)
end)
