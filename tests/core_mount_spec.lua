-- lunas.core mounts and paths inside a root: fs_mount with the kernel's own error text, open_tree + mount_setattr +
-- move_mount, resolution inside a root that refuses a symlinked target, files, symlinks and modes made inside a
-- root, file_type and realpath. The sandbox's use of them is in fs_spec.lua.
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
