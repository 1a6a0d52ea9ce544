-- lunas.core mounts and paths inside a root: fs_mount with the kernel's own error text, open_tree + mount_setattr +
-- move_mount, resolution inside a root that refuses a symlinked target, files, symlinks, modes and nodes (devices,
-- FIFOs) made inside a root, mkfifo, file_type and realpath. The sandbox's use of them is in fs_spec.lua.
local core = require "lunas.core"
local kernel = require "support.kernel"
local util = require "support.util"
local child = require "support.child"

local IDS = core.ids()

-- A scratch root on the host with a planted symlink to the host's /etc and one to its passwd file.
local function planted_root(defer)
  local dir, cleanup = util.tmpdir()
  defer(cleanup)
  assert(os.execute(("mkdir %s/real && ln -s /etc %s/etc && ln -s /etc/passwd %s/evil && ln -s /real %s/abs")
    :format(dir, dir, dir, dir)))
  local root = assert(core.open(dir, "r"))
  defer(function() root:close() end)
  return dir, root
end

describe("paths inside a root #rootless", function()
  it("refuses a target whose last component is a symlink, and leaves the host alone", function()
    local defer = util.cleanups(finally)
    local _, root = planted_root(defer)
    local passwd = util.read("/etc/passwd")
    local fd, msg, code = core.open_in_root(root, "/evil")
    assert.is_nil(fd)
    assert.equal("ELOOP", code)
    assert.matches("resolve in root /evil %(a symlink: refused as a target%)", msg)
    fd, msg, code = core.write_in_root(root, "/evil", "owned\n")
    assert.is_nil(fd)
    assert.equal("ELOOP", code)
    assert.matches("create file /evil", msg)
    assert.equal(passwd, util.read("/etc/passwd"))
  end)

  it("resolves symlinks on the way inside the root, never on the host", function()
    local defer = util.cleanups(finally)
    local dir, root = planted_root(defer)
    -- "etc" points at /etc: inside the root that is the link itself, a loop, never the host's /etc.
    local fd, _, code = core.open_in_root(root, "/etc/hostname")
    assert.is_nil(fd)
    assert.equal("ELOOP", code)
    -- "abs" points at /real: inside the root that is ROOT/real.
    assert(core.write_in_root(root, "/abs/inner", "data", tonumber("600", 8)))
    assert.equal("data", util.read(dir .. "/real/inner"))
    assert.matches("^%-rw%-%-%-%-%-%-%-", util.run({ "ls", "-l", dir .. "/real/inner" }))
  end)

  it("creates missing directories, files, symlinks and modes", function()
    local defer = util.cleanups(finally)
    local dir, root = planted_root(defer)
    local fd = assert(core.open_in_root(root, "/a/b/c", { create = "dir", mode = tonumber("700", 8) }))
    assert.equal("dir", core.file_type(fd))
    fd:close()
    assert.equal("dir", core.file_type(dir .. "/a/b/c"))
    fd = assert(core.open_in_root(root, "/a/f", { create = "file" }))
    assert.equal("file", core.file_type(fd))
    fd:close()
    assert(core.symlink_in_root(root, "../real", "/a/link"))
    assert(core.symlink_in_root(root, "../real", "/a/link")) -- the same link again is fine
    local ok, _, code = core.symlink_in_root(root, "elsewhere", "/a/link")
    assert.is_nil(ok)
    assert.equal("EEXIST", code)
    assert.equal("../real", util.run({ "readlink", dir .. "/a/link" }):gsub("\n$", ""))
    assert(core.chmod_in_root(root, "/a/f", tonumber("640", 8)))
    assert.matches("^%-rw%-r%-%-%-%-%-", util.run({ "ls", "-l", dir .. "/a/f" }))
    ok, _, code = core.chmod_in_root(root, "/evil", tonumber("777", 8))
    assert.is_nil(ok)
    assert.equal("ELOOP", code)
  end)

  it("tells file types without following links, and canonical paths", function()
    local defer = util.cleanups(finally)
    local dir = planted_root(defer)
    assert.equal("link", core.file_type(dir .. "/evil"))
    assert.equal("char", core.file_type("/dev/null"))
    local _, _, code = core.file_type(dir .. "/missing")
    assert.equal("ENOENT", code)
    assert.equal(core.realpath(dir) .. "/real", core.realpath(dir .. "/real/../real/."))
    local _, _, missing = core.realpath(dir .. "/abs")
    assert.equal("ENOENT", missing) -- on the host, abs points at a /real that does not exist
  end)

  it("names the bad argument", function()
    local defer = util.cleanups(finally)
    local _, root = planted_root(defer)
    child.assert_raises({ "field 'create'" }, core.open_in_root, root, "/x", { create = "fifo" })
    child.assert_raises({ "unknown option 'bogus'" }, core.open_in_root, root, "/x", { bogus = 1 })
    child.assert_raises({ "field 'set'", "unknown name 'bogus'" }, core.mount_setattr, "/", { set = "bogus" })
    child.assert_raises({ "field 'propagation'" }, core.mount_setattr, "/", { propagation = "weird" })
  end)
end)

-- ---- nodes inside a root ------------------------------------------------------------------------------------

--- stat(1) of path with a format, read from outside.
local function stat(format, path)
  return (util.run({ "stat", "-c", format, path }):gsub("\n$", ""))
end

local function octal(s) return tonumber(s, 8) end

describe("nodes inside a root", function()
  it("makes device nodes with their number, exactly the mode asked for, and the owner", function()
    local defer = util.cleanups(finally)
    local dir, root = planted_root(defer)
    assert.is_true(core.mknod_in_root(root, "/dev/null", { type = "char", major = 1, minor = 3, mode = octal("620"),
      uid = 1000, gid = 5 }))
    assert.equal("character special file 1 3 620 1000 5", stat("%F %t %T %a %u %g", dir .. "/dev/null"))
    -- the directory on the way was made (0755 less the umask); the node's mode ignores the umask
    assert.equal("directory", stat("%F", dir .. "/dev"))
    assert(core.mknod_in_root(root, "dev/loop-fz", { type = "block", major = 7, minor = 0, mode = octal("600") }))
    assert.equal("block special file 7 0 600 0 0", stat("%F %t %T %a %u %g", dir .. "/dev/loop-fz"))
    -- the largest numbers the kernel's dev_t holds: 12 bits of major, 20 of minor
    assert(core.mknod_in_root(root, "/dev/largest", { type = "char", major = 4095, minor = 1048575, mode = 0 }))
    assert.equal("fff fffff 0", stat("%t %T %a", dir .. "/dev/largest"))
    assert(core.mknod_in_root(root, "/dev/open", { type = "char", major = 1, minor = 5 }))
    assert.equal("666", stat("%a", dir .. "/dev/open"))
  end)

  it("makes FIFOs and empty files; device nodes need CAP_MKNOD #rootless", function()
    local defer = util.cleanups(finally)
    local dir, root = planted_root(defer)
    assert(core.mknod_in_root(root, "/run/fifo", { type = "fifo", mode = octal("640") }))
    assert.equal("fifo 640", stat("%F %a", dir .. "/run/fifo"))
    assert(core.mknod_in_root(root, "/run/file", { type = "file", major = 0, minor = 0, uid = IDS.euid, gid = IDS.egid }))
    assert.equal(("regular empty file 666 %d %d"):format(IDS.euid, IDS.egid), stat("%F %a %u %g", dir .. "/run/file"))
    if IDS.euid ~= 0 then
      child.assert_failure("^mknod /run/null: Operation not permitted$", "EPERM",
        core.mknod_in_root(root, "/run/null", { type = "char", major = 1, minor = 3 }))
    end
    -- an owner that cannot be given (uid 1 is not mapped in the child's user namespace): no node is left
    local p, ch = child.start({ flags = "user" }, function(c)
      child.map_self()
      c.send("owned", core.mknod_in_root(root, "/run/owned", { type = "fifo", uid = 1 }))
    end)
    defer(function() child.stop(p, ch) end)
    assert.same({ "owned", "nil", "chown /run/owned: Invalid argument", "EINVAL" }, { ch.expect() })
    assert.is_nil(core.file_type(dir .. "/run/owned"))
  end)

  it("never leaves the root and never replaces what is there #rootless", function()
    local defer = util.cleanups(finally)
    local dir, root = planted_root(defer)
    local outside, remove_outside = util.tmpdir()
    defer(remove_outside)
    assert(os.execute(("ln -s %s %s/out && ln -s ../../../../../../..%s %s/up"):format(outside, dir, outside, dir)))
    local passwd = util.read("/etc/passwd")
    -- a parent that is a symlink resolves inside the root: "abs" -> /real is ROOT/real
    assert(core.mknod_in_root(root, "/abs/node", { type = "fifo" }))
    assert.equal("fifo", stat("%F", dir .. "/real/node"))
    -- "out" and "up" lead outside: inside the root they lead nowhere; "etc" -> /etc is itself
    child.assert_failure("^resolve in root /out/x: No such file or directory$", "ENOENT",
      core.mknod_in_root(root, "/out/x", { type = "file" }))
    child.assert_failure("^resolve in root /up/x: ", "ENOENT", core.mknod_in_root(root, "/up/x", { type = "file" }))
    child.assert_failure("^resolve in root /etc/x: ", "ELOOP", core.mknod_in_root(root, "/etc/x", { type = "file" }))
    assert.same({}, core.listdir(outside))
    -- the last component is never followed, nor replaced
    child.assert_failure("^mknod /evil: File exists$", "EEXIST", core.mknod_in_root(root, "/evil", { type = "file" }))
    child.assert_failure("^mknod /out: File exists$", "EEXIST", core.mknod_in_root(root, "/out", { type = "fifo" }))
    child.assert_failure("^mknod /real/node: File exists$", "EEXIST",
      core.mknod_in_root(root, "/real/node", { type = "file" }))
    assert.equal("link", core.file_type(dir .. "/evil"))
    assert.equal("fifo", stat("%F", dir .. "/real/node"))
    assert.equal(passwd, util.read("/etc/passwd"))
    child.assert_failure("^resolve in root /: Invalid argument$", "EINVAL", core.mknod_in_root(root, "/", { type = "file" }))
  end)

  it("raises naming the bad field #rootless", function()
    local defer = util.cleanups(finally)
    local _, root = planted_root(defer)
    local raises = child.assert_raises
    raises("field 'type': 'char', 'block', 'fifo' or 'file' expected", core.mknod_in_root, root, "/x", {})
    raises("field 'type': 'char', 'block', 'fifo' or 'file' expected", core.mknod_in_root, root, "/x", { type = "sock" })
    raises("field 'type': string expected, got number", core.mknod_in_root, root, "/x", { type = 2 })
    raises("field 'major': integer expected for a device, got nil", core.mknod_in_root, root, "/x",
      { type = "char", minor = 1 })
    raises("field 'minor': integer expected for a device, got nil", core.mknod_in_root, root, "/x",
      { type = "block", major = 1 })
    raises("field 'major': 4096 out of range [0, 4095]", core.mknod_in_root, root, "/x",
      { type = "char", major = 4096, minor = 0 })
    raises("field 'minor': 1048576 out of range [0, 1048575]", core.mknod_in_root, root, "/x",
      { type = "char", major = 1, minor = 1048576 })
    raises("field 'major': -1 out of range", core.mknod_in_root, root, "/x", { type = "char", major = -1, minor = 0 })
    raises("field 'major': only char and block devices have one", core.mknod_in_root, root, "/x",
      { type = "fifo", major = 1 })
    raises("field 'minor': only char and block devices have one", core.mknod_in_root, root, "/x",
      { type = "file", minor = 3 })
    raises("field 'mode': 4096 out of range [0, 4095]", core.mknod_in_root, root, "/x", { type = "file", mode = 4096 })
    raises("field 'uid': -1 out of range", core.mknod_in_root, root, "/x", { type = "file", uid = -1 })
    raises("field 'gid': integer expected, got string", core.mknod_in_root, root, "/x", { type = "file", gid = "0" })
    raises("unknown option 'rdev'", core.mknod_in_root, root, "/x", { type = "file", rdev = 0 })
    raises("table expected", core.mknod_in_root, root, "/x", "fifo")
    raises("field 'root'", core.mknod_in_root, "/", "/x", { type = "file" })
    raises("field 'path': contains a NUL byte", core.mknod_in_root, root, "/x\0y", { type = "file" })
    raises("field 'path': path expected", core.mknod_in_root, root, nil, { type = "file" })
  end)
end)

describe("core.mkfifo #rootless", function()
  it("makes a FIFO with the mode less the umask, EEXIST when something is there", function()
    local defer = util.cleanups(finally)
    local dir, remove = util.tmpdir()
    defer(remove)
    assert.is_true(core.mkfifo(dir .. "/exec.fifo", octal("600")))
    assert.equal("fifo 600", stat("%F %a", dir .. "/exec.fifo"))
    child.assert_failure("^mkfifo .*/exec%.fifo: File exists$", "EEXIST", core.mkfifo(dir .. "/exec.fifo", octal("600")))
    child.assert_failure("^mkfifo /nonexistent/f: No such file or directory$", "ENOENT",
      core.mkfifo("/nonexistent/f", octal("600")))
    local p, ch = child.start({}, function(c)
      core.umask(octal("027"))
      c.send("made", core.mkfifo(dir .. "/masked", octal("666")))
    end)
    defer(function() child.stop(p, ch) end)
    assert.same({ "made", "true" }, { ch.expect() })
    assert.equal("fifo 640", stat("%F %a", dir .. "/masked"))
    child.assert_raises("field 'mode': integer expected, got no value", core.mkfifo, dir .. "/f")
    child.assert_raises("field 'mode': 4096 out of range [0, 4095]", core.mkfifo, dir .. "/f", 4096)
    child.assert_raises("field 'path': contains a NUL byte", core.mkfifo, dir .. "/f\0x", octal("600"))
    child.assert_raises("bad argument #1", core.mkfifo, nil, octal("600"))
  end)
end)

describe("the new mount API #rootless", function()
  it("reports the kernel's own text for a bad file system option", function()
    if not kernel.requires("userns") then return end
    local defer = util.cleanups(finally)
    local p, ch = child.start({ flags = "user,mount" }, function(c)
      child.map_self()
      local fd, msg, code = core.fs_mount("tmpfs", { size = "bogus" })
      c.send(tostring(fd), msg, code)
      fd, msg, code = core.fs_mount("no-such-fs")
      c.send(tostring(fd), msg, code)
      -- no options at all (the fuzzer found this walking a userdata instead of the absent options)
      fd, msg, code = core.fs_mount("tmpfs")
      c.send(fd and "mount fd" or tostring(msg), tostring(code))
      return 0
    end)
    defer(function() child.stop(p, ch) end)
    assert.same({ "nil", "fsconfig size tmpfs (tmpfs: Bad value for 'size'): Invalid argument", "EINVAL" },
      { ch.expect() })
    local _, msg, code = ch.expect()
    assert.equal("ENODEV", code)
    assert.matches("^fsopen no%-such%-fs: ", msg)
    assert.same({ "mount fd", "nil" }, { ch.expect() })
    assert.equal(0, child.finish(p).status)
  end)

  it("clones, makes read-only and attaches a tree, seen from outside in the child's mountinfo", function()
    if not kernel.requires("userns") then return end
    local defer = util.cleanups(finally)
    local dir, cleanup = util.tmpdir()
    defer(cleanup)
    assert(os.execute(("mkdir %s/src %s/dst && echo inside > %s/src/file"):format(dir, dir, dir)))
    local p, ch = child.start({ flags = "user,mount" }, function(c)
      child.map_self()
      assert(core.mount(nil, "/", nil, "rec,private"))
      local tree = assert(core.open_tree(dir .. "/src", { clone = true, recursive = true }))
      assert(core.mount_setattr(tree, { set = "rdonly,nosuid", propagation = "private" }))
      assert(core.move_mount(tree, dir .. "/dst"))
      local f = io.open(dir .. "/dst/new", "w")
      c.send(f and "writable" or "read-only", util.read(dir .. "/dst/file"))
      c.recv()
      return 0
    end)
    defer(function() child.stop(p, ch) end)
    assert.same({ "read-only", "inside " }, { ch.expect() })
    local line = util.read("/proc/" .. p.pid .. "/mountinfo"):match("[^\n]* " .. (dir .. "/dst"):gsub("%p", "%%%0") .. " [^\n]*")
    assert.is_truthy(line, "the attached tree must show in the child's mountinfo")
    assert.matches(" ro,nosuid", line)
    -- The host sees nothing at the target.
    assert.is_nil(util.read("/proc/self/mountinfo"):find(dir .. "/dst", 1, true))
    ch.post("done")
    assert.equal(0, child.finish(p).status)
  end)
end)

describe("core.copy_tree", function()
  -- stat of every name below dir, one line each, as find sees it: type, mode, owner, size, mtime, link target
  local function listing(dir)
    local out = util.sh(("cd %s && find . -mindepth 1 -printf '%%p %%y %%m %%U:%%G %%s %%T@ %%l\\n' | sort")
      :format(util.quote(dir)))
    return out
  end

  it("copies directories, files, symlinks (never followed) and FIFOs with owners, modes and times #root", function()
    local defer = util.cleanups(finally)
    local src, clean_src = util.tmpdir()
    defer(clean_src)
    local dest, clean_dest = util.tmpdir()
    defer(clean_dest)
    local s = util.quote(src)
    assert(os.execute(("mkdir -p %s/a/b/c && printf 'hello' > %s/a/file && chown 1000:2000 %s/a/file && "
      .. "chmod 4750 %s/a/file && ln -s /etc/passwd %s/escape && ln -s ../.. %s/a/b/up && mkfifo -m 0620 %s/a/p && "
      .. "chown 3:4 %s/a/p && chmod 1703 %s/a/b && dd if=/dev/urandom of=%s/big bs=1k count=300 status=none && "
      .. "touch -d @1000000000.25 %s/a/file %s/a/b/c && touch -h -d @1234567890 %s/escape")
      :format(s, s, s, s, s, s, s, s, s, s, s, s, s)))
    local from = assert(core.open(src, "r"))
    defer(function() from:close() end)
    local to = assert(core.open(dest, "r"))
    defer(function() to:close() end)
    local passwd = util.read("/etc/passwd")
    assert.is_true(core.copy_tree(from, to))
    assert.equal(listing(src), listing(dest))
    assert.matches("%./a/file f 4750 1000:2000 5 1000000000%.25", listing(dest))
    assert.equal("link", core.file_type(dest .. "/escape"))
    assert.equal("fifo", core.file_type(dest .. "/a/p"))
    assert.equal(util.read(src .. "/big"), util.read(dest .. "/big"))
    assert.equal(passwd, util.read("/etc/passwd"))
    -- a second copy meets every name: EEXIST, naming the first
    local ok, msg, code = core.copy_tree(from, to)
    assert.is_nil(ok)
    assert.equal("EEXIST", code)
    assert.matches("^copy_tree [%w/]+: File exists$", msg)
  end)

  it("takes a detached tmpfs as the destination (an OCI tmpcopyup) and raises on misuse #root", function()
    local defer = util.cleanups(finally)
    local src, clean_src = util.tmpdir()
    defer(clean_src)
    util.write(src .. "/f", "x")
    local from = assert(core.open(src, "r"))
    defer(function() from:close() end)
    local tree = assert(core.fs_mount("tmpfs", { mode = "0755" }))
    defer(function() tree:close() end)
    assert.is_true(core.copy_tree(from, tree))
    local f = assert(core.open_in_root(tree, "f", { follow = false }))
    assert.equal("file", core.file_type(f))
    f:close()
    assert.has_error(function() core.copy_tree("/tmp", tree) end)
    assert.has_error(function() core.copy_tree(from, nil) end)
    local ok, _, code = core.copy_tree(tree, assert(core.open("/dev/null", "r")))
    assert.is_nil(ok)
    assert.equal("ENOTDIR", code)
  end)
end)
