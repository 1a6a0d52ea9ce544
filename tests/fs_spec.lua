-- lunas.fs: the file systems of sandboxes (spec fields rootfs, mounts, harden), observed from outside
-- (/proc/PID/mountinfo of a running payload, the host's directories after a run) and with plain tools inside.
-- Every test also checks that the caller's own mount table is the same after it as before it. Everything the
-- kernel allows an unprivileged user is tagged #rootless (run again as uid 65534); root-only tests are in the
-- "#root" blocks.
local lunas = require "lunas"
local core = require "lunas.core"
local lfs = require "lfs"
local kernel = require "support.kernel"
local util = require "support.util"

local EUID = core.ids().euid

-- Docker's default masks and read-only paths of /proc (written out here, not taken from lunas.fs, so that the
-- test says on its own what is expected).
local PROC_MASKS = { "acpi", "asound", "interrupts", "kcore", "keys", "latency_stats", "timer_list", "timer_stats",
  "sched_debug", "scsi" }
local PROC_READONLY = { "bus", "fs", "irq", "sys", "sysrq-trigger" }
-- What a "dev" entry makes, as `ls -A` lists it.
local DEV_LISTING = "core\nfd\nfull\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n"
local DEV_NODES = { "null", "zero", "full", "random", "urandom", "tty" }

-- ---- helpers ------------------------------------------------------------------------------------------------

local function mount_table()
  local lines = {}
  for line in assert(util.read("/proc/self/mountinfo")):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

--- it() for this file: needs = kernel features (pending when one is missing); fn(defer) runs the test, defer(f)
-- registers a cleanup (run in reverse order, also when the test fails); afterwards the caller's mount table must
-- be what it was before the test.
local function check(name, needs, fn)
  it(name, function()
    if #needs > 0 and not kernel.requires(table.unpack(needs)) then return end
    local before = mount_table()
    local cleanups = {}
    finally(function()
      for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
      assert.are.same(before, mount_table(), "the caller's mount table changed")
    end)
    fn(function(f) cleanups[#cleanups + 1] = f end)
  end)
end

local function remove_tree(dir)
  -- overlayfs leaves a mode-000 directory in its work dir: make everything removable first (chmod -R does not
  -- follow the symlinks it meets on the way).
  os.execute("chmod -R u+rwx " .. util.quote(dir) .. " 2>/dev/null; rm -rf " .. util.quote(dir))
end

--- A scratch directory under /tmp, removed at the end of the test.
-- Searchable by anyone: a sandbox that root runs has ids of its own, a range of the host's, which mktemp's
-- 0700 directory of root's would keep out (see security_spec for that).
local function tmpdir(defer)
  local dir = util.tmpdir()
  defer(function() remove_tree(dir) end)
  os.execute("chmod 755 " .. util.quote(dir))
  return dir
end

--- A scratch directory for a rootfs. It lives outside /tmp: lunas mounts its staging tmpfs over /tmp before it
-- opens a rootfs directory, which hides one below /tmp (see "accepts a rootfs directory below /tmp").
local function rootfs_dir(defer)
  local p = io.popen("mktemp -d /var/tmp/lunas-test.XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d /var/tmp/... failed")
  defer(function() remove_tree(dir) end)
  os.execute("chmod 755 " .. util.quote(dir)) -- (as tmpdir: root's sandboxes have ids of their own)
  return dir
end

local function mkdir_p(path)
  assert(os.execute("mkdir -p " .. util.quote(path)))
end

local function symlink(target, path)
  assert(os.execute("ln -s " .. util.quote(target) .. " " .. util.quote(path)))
end

local function mode_of(path)
  return lfs.symlinkattributes(path, "permissions")
end

local function exists(path)
  return lfs.symlinkattributes(path, "mode") ~= nil
end

local serial = 0
local function unique(prefix)
  serial = serial + 1
  return ("%s-%d-%d"):format(prefix, core.getpid(), serial)
end

--- Runs spec (argv or a shell script) in a sandbox with stdout and stderr on one pipe; returns the output and
-- the result table.
local function capture(spec)
  if type(spec.argv) == "string" then spec.argv = { "/bin/sh", "-c", spec.argv } end
  local r, w = core.pipe()
  spec.stdout, spec.stderr = w, w
  local ok, result = pcall(function() return lunas.sandbox(spec):run() end)
  w:close()
  local out = util.drain(r)
  r:close()
  if not ok then error(result, 0) end
  return out, result
end

--- Runs spec and expects it to fail at run time: returns the error object after checking its step and code.
local function failure(spec, step, code)
  spec.argv = spec.argv or { "true" }
  spec.stdout, spec.stderr = "null", "null"
  local ok, err = pcall(function() return lunas.sandbox(spec):run() end)
  assert.is_false(ok, "the sandbox was expected to fail")
  assert.is_true(lunas.is_error(err), tostring(err))
  assert.are.equal(step, err.step, tostring(err))
  assert.are.equal(code, err.code, tostring(err))
  return err
end

local function contains(text, ...)
  for i = 1, select("#", ...) do
    local part = select(i, ...)
    assert.is_truthy(text:find(part, 1, true), "'" .. text .. "' does not contain '" .. part .. "'")
  end
end

--- The entries that make the host's programs usable in a tree built from an empty root: /usr read-only, and
-- /bin, /lib, ... as the host has them (symlinks into /usr on a merged-/usr system, read-only binds otherwise).
local function host_programs()
  local list = { { "ro-bind", "/usr", "/usr" } }
  for _, name in ipairs{ "bin", "sbin", "lib", "lib32", "lib64", "libx32" } do
    local path = "/" .. name
    local mode = lfs.symlinkattributes(path, "mode")
    if mode == "link" then
      list[#list + 1] = { "symlink", lfs.symlinkattributes(path, "target"), path }
    elseif mode == "directory" then
      list[#list + 1] = { "ro-bind", path, path }
    end
  end
  return list
end

--- host_programs() followed by the given entries.
local function with_programs(entries)
  local list = host_programs()
  for _, e in ipairs(entries) do list[#list + 1] = e end
  return list
end

local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

local function option_set(text)
  local set = {}
  for opt in text:gmatch("[^,]+") do
    local k, v = opt:match("^([^=]+)=(.*)$")
    if k then set[k] = v else set[opt] = true end
  end
  return set
end

--- Mounts of a mountinfo file, in order: {target, fstype, source, options = {..}, super = {..}}.
local function parse_mountinfo(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    local target, options, rest = line:match("^%d+ %d+ %d+:%d+ %S+ (%S+) (%S+) (.*)$")
    local fstype, source, super = rest:match("%- (%S+) (%S+) (%S+)$")
    list[#list + 1] = { target = unescape(target), fstype = fstype, source = unescape(source),
      options = option_set(options), super = option_set(super) }
  end
  return list
end

local function mounts_of(pid)
  return parse_mountinfo(assert(util.read("/proc/" .. pid .. "/mountinfo")))
end

local function under(path, dir)
  return path == dir or dir == "/" or path:sub(1, #dir + 1) == dir .. "/"
end

--- What a recursive bind of the host's src at dest shows: the mount src is on, then every host mount below src.
local function expected_bind(src, dest)
  local host = parse_mountinfo(assert(util.read("/proc/self/mountinfo")))
  local best
  for _, m in ipairs(host) do
    if under(src, m.target) and (not best or #m.target >= #best.target) then best = m end
  end
  local list = { dest .. " " .. best.fstype }
  for _, m in ipairs(host) do
    if m.target ~= src and under(m.target, src) then
      list[#list + 1] = dest .. m.target:sub(#src + 1) .. " " .. m.fstype
    end
  end
  return list
end

--- "target fstype" of each mount of pid, in order.
local function targets(mounts)
  local list = {}
  for _, m in ipairs(mounts) do list[#list + 1] = m.target .. " " .. m.fstype end
  return list
end

--- The last (topmost) mount at target.
local function mount_at(mounts, target)
  local found
  for _, m in ipairs(mounts) do
    if m.target == target then found = m end
  end
  return found
end

--- Starts a long-running payload; returns the running handle (closed by defer) and the payload's host pid.
local function start(spec, defer)
  spec.argv = spec.argv or { "sleep", "30" }
  local running = lunas.sandbox(spec):spawn()
  defer(function() running:close() end)
  return running, running:payload_pid()
end

--- As root, hides path behind a bind-mounted copy in the caller's (private) mount namespace until the end of the
-- test: a test that probes an escape towards a real host file cannot damage it even if lunas is broken. Returns
-- the content to compare with afterwards.
local function shield(path, defer)
  local content = assert(util.read(path))
  if EUID ~= 0 then return content end
  local copy = tmpdir(defer) .. "/copy"
  util.write(copy, content)
  local _, code = util.run{ "mount", "--bind", copy, path }
  assert.are.equal(0, code, "cannot shield " .. path)
  -- Registered after the tmpdir's cleanup: runs before it (cleanups run in reverse order).
  defer(function() util.run{ "umount", path } end)
  return content
end

-- ---- trees built from entries -------------------------------------------------------------------------------

describe("trees built from mount entries #rootless", function()
  check("show exactly the mounts asked for, in the order written", { "userns" }, function(defer)
    local running, pid = start({ rootfs = "tmpfs", harden = false, mounts = with_programs{
      { "tmpfs", "/tmp", size = "1M", mode = "1777" },
      { "proc", "/proc" },
      { "mqueue", "/dev/mqueue" },
      { "dir", "/empty" },
    } }, defer)
    assert.is_number(pid, "payload pid of " .. running.pid)
    local mounts = mounts_of(pid)
    local expected = { "/ tmpfs" }
    for _, e in ipairs(host_programs()) do
      if e[1] == "ro-bind" then
        for _, t in ipairs(expected_bind(e[2], e[3])) do expected[#expected + 1] = t end
      end
    end
    for _, t in ipairs{ "/tmp tmpfs", "/proc proc", "/dev/mqueue mqueue" } do expected[#expected + 1] = t end
    -- By target, and at one target in stacking order: mountinfo lists mounts as they were made, and a sandbox that
    -- root runs gets its host sources from the parent, made before its root.
    local function by_target(list)
      local keyed = {}
      for i, t in ipairs(list) do keyed[i] = { t = t, i = i } end
      table.sort(keyed, function(a, b)
        local ta, tb = a.t:match("^(%S+)"), b.t:match("^(%S+)")
        if ta ~= tb then return ta < tb end
        return a.i < b.i
      end)
      local out = {}
      for i, k in ipairs(keyed) do out[i] = k.t end
      return out
    end
    assert.are.same(by_target(expected), by_target(targets(mounts)))
    -- Options: the root and /tmp are writable tmpfs (nosuid, nodev), /usr read-only, /tmp's size is the one asked.
    local root, usr, tmp, proc = mount_at(mounts, "/"), mount_at(mounts, "/usr"), mount_at(mounts, "/tmp"),
      mount_at(mounts, "/proc")
    assert.is_true(root.options.rw and root.options.nosuid and root.options.nodev)
    assert.is_true(usr.options.ro and usr.options.nodev)
    assert.is_true(tmp.options.rw and tmp.options.nosuid and tmp.options.nodev)
    assert.are.equal("1024k", tmp.super.size)
    assert.is_true(proc.options.nosuid and proc.options.nodev and proc.options.noexec)
  end)

  check("add Docker's masks and read-only paths to every /proc, and nothing else", { "userns" }, function(defer)
    local _, pid = start({ rootfs = "tmpfs", mounts = with_programs{ { "proc", "/proc" }, { "tmpfs", "/tmp" },
      { "proc", "/tmp/second-proc" } } }, defer)
    local mounts = mounts_of(pid)
    local hardening = {}
    for _, m in ipairs(mounts) do
      if m.target:match("^/[%w/-]*proc/[^/]+$") then
        hardening[#hardening + 1] = m.target .. (m.options.ro and " ro" or " rw")
      end
    end
    table.sort(hardening)
    local expected = {}
    for _, proc in ipairs{ "/proc", "/tmp/second-proc" } do
      -- the ones this kernel has (the sandbox's /proc shows the same top-level entries as ours)
      for _, name in ipairs(PROC_MASKS) do
        if exists("/proc/" .. name) then expected[#expected + 1] = proc .. "/" .. name .. " ro" end
      end
      for _, name in ipairs(PROC_READONLY) do
        if exists("/proc/" .. name) then expected[#expected + 1] = proc .. "/" .. name .. " ro" end
      end
    end
    table.sort(expected)
    assert.are.same(expected, hardening)
  end)

  check("make a ro-bind read-only recursively: writes fail with EROFS, in submounts too", { "userns" }, function(defer)
    -- Every writable mount of the host below / (devtmpfs, /dev/shm, /run, ...), apart from /proc and /sys (the
    -- sandbox's own sysfs replaces /sys with a network namespace).
    local dirs = { "/usr" }
    local seen = { ["/usr"] = true }
    for _, m in ipairs(parse_mountinfo(util.read("/proc/self/mountinfo"))) do
      if m.options.rw and m.target ~= "/" and not under(m.target, "/proc") and not under(m.target, "/sys")
        and lfs.attributes(m.target, "mode") == "directory" and not seen[m.target] then
        dirs[#dirs + 1] = m.target
        seen[m.target] = true
      end
    end
    local name = unique(".lunas-fs-probe")
    local script = {}
    for _, dir in ipairs(dirs) do
      local probe = dir .. "/" .. name
      defer(function() os.remove(probe) end)
      script[#script + 1] = ("touch %s 2>&1 | sed 's/.*: //'"):format(util.quote(probe))
    end
    local out = capture{ argv = table.concat(script, "\n"), mounts = { { "ro-bind", "/", "/" } } }
    assert.are.equal(("Read-only file system\n"):rep(#dirs), out, "probed: " .. table.concat(dirs, " "))
    for _, dir in ipairs(dirs) do assert.is_false(exists(dir .. "/" .. name), dir) end
  end)

  check("enforce a tmpfs size", { "userns" }, function()
    local out = capture{
      argv = "head -c 2M /dev/zero > /tmp/fill 2>/dev/null || echo refused; stat -c %s /tmp/fill; " ..
      "head -c 1 /dev/zero 2>&1 > /tmp/more | sed 's/.*: //'",
      rootfs = "tmpfs", mounts = with_programs{ { "tmpfs", "/tmp", size = "1M" }, { "dev", "/dev" } } }
    assert.are.equal("refused\n1048576\nNo space left on device\n", out)
  end)

  check("give a /proc that lists only the sandbox's own processes", { "userns" }, function()
    -- The glob is expanded by the shell itself: no other process runs. PID 1 is lunas's reaper, 2 the shell.
    local out = capture{ argv = "echo /proc/[0-9]*; echo $$", rootfs = "tmpfs",
      mounts = with_programs{ { "proc", "/proc" } } }
    assert.are.equal("/proc/1 /proc/2\n2\n", out)
  end)

  check("make a /dev with only the listed nodes, a private devpts and shm", { "userns" }, function(defer)
    local stat = "stat -c '%n %F %t:%T'"
    local paths = {}
    for _, node in ipairs(DEV_NODES) do paths[#paths + 1] = "/dev/" .. node end
    local nodes = table.concat(paths, " ")
    local out = capture{ argv = "ls -A /dev; echo ==; ls -A /dev/pts; echo ==; " .. stat .. " " .. nodes ..
      "; echo ==; for l in ptmx fd stdin stdout stderr core; do echo $l $(readlink /dev/$l); done; echo ==; " ..
      "touch /dev/shm/x && echo shm writable; echo ok > /dev/null && echo null works",
      rootfs = "tmpfs", mounts = with_programs{ { "dev", "/dev" } } }
    local host_nodes = util.run{ "/bin/sh", "-c", stat .. " " .. nodes }
    assert.are.equal(DEV_LISTING .. "==\nptmx\n==\n" .. host_nodes .. "==\nptmx pts/ptmx\nfd /proc/self/fd\n" ..
      "stdin /proc/self/fd/0\nstdout /proc/self/fd/1\nstderr /proc/self/fd/2\ncore /proc/kcore\n==\nshm writable\nnull works\n", out)
    -- From outside: devpts is a new instance, shm a tmpfs of its own.
    local _, pid = start({ rootfs = "tmpfs", mounts = with_programs{ { "dev", "/dev" } } }, defer)
    local mounts = mounts_of(pid)
    assert.are.equal("tmpfs", mount_at(mounts, "/dev").fstype)
    assert.are.equal("devpts", mount_at(mounts, "/dev/pts").fstype)
    assert.are.equal("666", mount_at(mounts, "/dev/pts").super.ptmxmode)
    assert.are.equal("tmpfs", mount_at(mounts, "/dev/shm").fstype)
  end)

  check("write through an overlay into the upper dir, never into the lower", { "userns", "idmap" }, function(defer)
    local dir = tmpdir(defer)
    for _, d in ipairs{ "lower", "upper", "work" } do mkdir_p(dir .. "/" .. d) end
    util.write(dir .. "/lower/a", "low\n")
    util.write(dir .. "/lower/b", "keep\n")
    local out = capture{ argv = "cd /tmp/o && cat a && echo changed > a && echo new > c && rm b && ls -A",
      mounts = { { "ro-bind", "/", "/" }, { "tmpfs", "/tmp" },
        { "overlay", "/tmp/o", lower = { dir .. "/lower" }, upper = dir .. "/upper", work = dir .. "/work" } } }
    assert.are.equal("low\na\nc\n", out)
    -- The lower layer is untouched; the upper one holds the changes and a whiteout for b.
    assert.are.equal("low\n", util.read(dir .. "/lower/a"))
    assert.are.equal("keep\n", util.read(dir .. "/lower/b"))
    assert.is_false(exists(dir .. "/lower/c"))
    assert.are.equal("changed\n", util.read(dir .. "/upper/a"))
    assert.are.equal("new\n", util.read(dir .. "/upper/c"))
    assert.are.equal("char device", lfs.symlinkattributes(dir .. "/upper/b", "mode"))
  end)

  check("throw away what is written to a tmp-overlay", { "userns", "idmap" }, function(defer)
    local dir = tmpdir(defer)
    mkdir_p(dir .. "/lower")
    util.write(dir .. "/lower/a", "low\n")
    local spec = function(script)
      return { argv = script, mounts = { { "ro-bind", "/", "/" }, { "tmpfs", "/tmp" },
        { "tmp-overlay", "/tmp/o", lower = { dir .. "/lower" } } } }
    end
    local out = capture(spec("cd /tmp/o && echo changed > a && echo new > c && cat a c && ls -A"))
    assert.are.equal("changed\nnew\na\nc\n", out)
    assert.are.equal("low\n", util.read(dir .. "/lower/a"))
    assert.is_false(exists(dir .. "/lower/c"))
    -- A second sandbox sees the lower layer as it was.
    assert.are.equal("low\na\n", capture(spec("cat /tmp/o/a; ls -A /tmp/o")))
  end)

  check("make a ro-overlay read-only, the last lower layer on top", { "userns" }, function(defer)
    local dir = tmpdir(defer)
    mkdir_p(dir .. "/one")
    mkdir_p(dir .. "/two")
    util.write(dir .. "/one/a", "one\n")
    util.write(dir .. "/one/b", "only in one\n")
    util.write(dir .. "/two/a", "two\n")
    local out = capture{ argv = "cd /tmp/o && cat a b && touch new 2>&1 | sed 's/.*: //'; ls -A",
      mounts = { { "ro-bind", "/", "/" }, { "tmpfs", "/tmp" },
        { "ro-overlay", "/tmp/o", lower = { dir .. "/one", dir .. "/two" } } } }
    assert.are.equal("two\nonly in one\nRead-only file system\na\nb\n", out)
    assert.is_false(exists(dir .. "/one/new"))
    assert.is_false(exists(dir .. "/two/new"))
  end)

  check("mask a file (reads as empty) and a directory (an empty read-only tmpfs)", { "userns" }, function(defer)
    local dir = tmpdir(defer)
    util.write(dir .. "/secret", "top secret\n")
    util.write(dir .. "/other", "visible\n")
    mkdir_p(dir .. "/sub")
    util.write(dir .. "/sub/inner", "hidden\n")
    local out = capture{
      argv = "wc -c < /data/secret; cat /data/other; ls -A /data/sub; touch /data/sub/x 2>&1 | sed 's/.*: //'",
      rootfs = "tmpfs", mounts = with_programs{ { "ro-bind", dir, "/data" }, { "mask", "/data/secret" },
        { "mask", "/data/sub" }, { "mask", "/data/not-there" } } }
    assert.are.equal("0\nvisible\nRead-only file system\n", out)
    assert.are.equal("top secret\n", util.read(dir .. "/secret"))
    assert.are.equal("hidden\n", util.read(dir .. "/sub/inner"))
  end)

  check("create what dir, symlink, file and chmod entries say", { "userns" }, function()
    local out = capture{ argv = "stat -c '%n %a %F' /d /made/by/file /made /f /made/by/file/x; " ..
      "readlink /l; cat /l /made/by/file/x; stat -c '%n %a' /c",
      rootfs = "tmpfs", mounts = with_programs{
        { "dir", "/d", mode = "0710" },
        { "file", "/f", "hello\n", mode = "0600" },
        { "symlink", "/f", "/l" },
        { "file", "/made/by/file/x", "nested\n" },
        { "dir", "/c" },
        { "chmod", "/c", "0751" },
      } }
    assert.are.equal("/d 710 directory\n/made/by/file 755 directory\n/made 755 directory\n/f 600 regular file\n" ..
      "/made/by/file/x 666 regular file\n/f\nhello\nnested\n/c 751\n", out)
  end)

  check("leave a directory that exists as it is: a dir entry through a bind never changes the host's", { "userns" },
    function(defer)
      local dir = tmpdir(defer)
      os.execute("mkdir -m 0700 " .. util.quote(dir .. "/host-dir"))
      -- a ro-bind of the host's directory, then a dir entry on it with another mode; and a new one beside it
      local out = capture{ argv = ("stat -c '%%a' %s/host-dir /fresh"):format(dir), rootfs = "tmpfs",
        mounts = with_programs{
          { "ro-bind", dir, dir },
          { "dir", dir .. "/host-dir", mode = "0755" },
          { "dir", "/fresh", mode = "0750" },
        } }
      assert.are.equal("700\n750\n", out)
      assert.are.equal("700", (util.run{ "stat", "-c", "%a", dir .. "/host-dir" }):gsub("%s+$", ""))
    end)

  check("skip a missing source with the -try forms, and bind an existing one", { "userns" }, function(defer)
    local dir = tmpdir(defer)
    util.write(dir .. "/there", "present\n")
    local out = capture{ argv = "for p in /a /b /c; do test -e $p && echo $p exists; done; cat /d",
      rootfs = "tmpfs", mounts = with_programs{ { "bind-try", "/nonexistent-lunas", "/a" },
        { "ro-bind-try", "/nonexistent-lunas", "/b" }, { "dev-bind-try", "/nonexistent-lunas", "/c" },
        { "ro-bind-try", dir .. "/there", "/d" } } }
    assert.are.equal("present\n", out)
  end)

  check("fail on a missing source without -try, naming the entry and the host path", { "userns" }, function()
    local n = #host_programs() + 1
    local err = failure({ rootfs = "tmpfs", mounts = with_programs{ { "ro-bind", "/nonexistent-lunas/x", "/x" } } },
      "mounts", "ENOENT")
    contains(tostring(err), ("sandbox: mounts: mounts[%d] ro-bind /x: "):format(n), "/nonexistent-lunas/x",
      "No such file or directory")
    -- The message speaks of the path the recipe wrote, not of where lunas keeps the host while it builds.
    assert.is_falsy(tostring(err):find("/oldroot", 1, true), tostring(err))
  end)

  check("make a writable bind read-only with remount-ro", { "userns", "idmap" }, function(defer)
    local dir = tmpdir(defer)
    local out = capture{ argv = "echo data > /w/written && echo written", rootfs = "tmpfs",
      mounts = with_programs{ { "bind", dir, "/w" } } }
    assert.are.equal("written\n", out)
    assert.are.equal("data\n", util.read(dir .. "/written"))
    out = capture{
      argv = "(echo data > /w/refused) 2>&1 | sed 's/.*: //'; (echo data > /w/written) 2>&1 | sed 's/.*: //'",
      rootfs = "tmpfs", mounts = with_programs{ { "bind", dir, "/w" }, { "remount-ro", "/w" } } }
    assert.are.equal("Read-only file system\nRead-only file system\n", out)
    assert.is_false(exists(dir .. "/refused"))
    assert.are.equal("data\n", util.read(dir .. "/written"))
  end)

  check("keep device nodes usable with dev-bind only", { "userns" }, function()
    local out = capture{ argv = "(echo x > /nodev) 2>&1 | sed 's/.*: //'; echo x > /dev-ok && echo dev-bind works",
      rootfs = "tmpfs", mounts = with_programs{ { "bind", "/dev/null", "/nodev" },
        { "dev-bind", "/dev/null", "/dev-ok" } } }
    assert.are.equal("Permission denied\ndev-bind works\n", out)
  end)

  check("start from a rootfs directory of the host", { "userns", "idmap" }, function(defer)
    local root = rootfs_dir(defer)
    util.write(root .. "/hello", "from the rootfs\n")
    local out = capture{ argv = "cat /hello; echo inside > /written", rootfs = root, mounts = host_programs() }
    assert.are.equal("from the rootfs\n", out)
    -- The directory is the sandbox's / itself: a write lands in it.
    assert.are.equal("inside\n", util.read(root .. "/written"))
  end)

  check("accept a rootfs directory below /tmp", { "userns", "idmap" }, function(defer)
    local root = tmpdir(defer)
    util.write(root .. "/hello", "from the rootfs\n")
    local out = capture{ argv = "cat /hello", rootfs = root, mounts = host_programs() }
    assert.are.equal("from the rootfs\n", out)
  end)

  check("take bind and overlay sources through absolute symlinks on the host as the host resolves them", { "userns" },
    function(defer)
      local dir = tmpdir(defer)
      mkdir_p(dir .. "/real/sub")
      util.write(dir .. "/real/file", "through a link\n")
      util.write(dir .. "/real/sub/inner", "inner\n")
      symlink(dir .. "/real/file", dir .. "/file-link")  -- absolute, as /etc/resolv.conf often is
      symlink(dir .. "/real", dir .. "/dir-link")
      local cases = {
        { { "ro-bind", dir .. "/file-link", "/x" }, "cat /x" },
        { { "ro-bind", dir .. "/dir-link/sub", "/x" }, "cat /x/inner" },
        { { "ro-bind-try", dir .. "/dir-link/sub", "/x" }, "cat /x/inner" },
        { { "ro-bind-try", dir .. "/dir-link", "/x" }, "cat /x/file" },
        { { "ro-overlay", "/x", lower = { dir .. "/dir-link" } }, "cat /x/file" },
      }
      -- Each case on its own, so that the report shows all of them.
      local expected, got = {}, {}
      for i, case in ipairs(cases) do
        expected[i] = "ok"
        local ok, out = pcall(capture, { argv = case[2] .. " >/dev/null 2>&1 && echo ok", rootfs = "tmpfs",
          mounts = with_programs{ { "dev", "/dev" }, case[1] } })
        got[i] = ok and out:gsub("\n$", "") or tostring(out)
      end
      assert.are.same(expected, got)
    end)

  -- spec.hooks (what an OCI runtime's hooks run from): the caller's before_pivot while the child waits with its
  -- tree built up to {"hooks"}, the child's before_pivot_inside with the host's tree as its root and the tree at
  -- its rootfs path, the payload's before_exec; the entries after {"hooks"} come after them.
  check("runs the caller's hooks where {\"hooks\"} stands, the tree at its rootfs path in the host's tree", { "userns" }, function(defer)
    local root = rootfs_dir(defer)
    local ours, theirs, seen_tmpfs = util.ns_link(core.getpid(), "mnt"), nil, nil
    -- (host_root when root: a range of host ids would need the rootfs idmapped, which the VM lane's /var/tmp, an
    -- overlay on 9p, cannot be)
    local out = capture{ rootfs = root, harden = false, host_root = core.ids().euid == 0 or nil,
      argv = "cat /tmp/inside /tmp/exec; touch /new 2>&1 | sed 's/.*: //'",
      mounts = with_programs{ { "tmpfs", "/tmp" }, { "hooks" }, { "remount-ro", "/", recursive = false } },
      hooks = {
        before_pivot = function(pid)
          theirs = util.ns_link(pid, "mnt")
          -- (the child's root is the host's tree, where the sandbox's tmpfs is at ROOT/tmp)
          local tmp = mount_at(mounts_of(pid), root .. "/tmp")
          seen_tmpfs = tmp and tmp.fstype
          return "handed to before_pivot_inside\n"
        end,
        before_pivot_inside = function(data, env)
          local f = assert(io.open(root .. "/tmp/inside", "w"))
          f:write(data, env.PATH and "" or "no PATH")
          f:close()
          return true
        end,
        before_exec = function()
          local f = assert(io.open("/tmp/exec", "w"))
          f:write("written by before_exec\n")
          f:close()
        end,
      } }
    assert.are.equal("handed to before_pivot_inside\nwritten by before_exec\nRead-only file system\n", out)
    assert.are.equal("tmpfs", seen_tmpfs)
    assert.is_truthy(theirs)
    assert.are_not.equal(ours, theirs)
  end)

  check("fails at before_pivot or before_exec with what the hook said; needs a rootfs directory", { "userns" }, function(defer)
    local root = rootfs_dir(defer)
    local as_root = core.ids().euid == 0 or nil
    local err = failure({ rootfs = root, harden = false, host_root = as_root, mounts = with_programs{},
      hooks = { before_pivot = function() error(lunas.error{ msg = "the parent says no", code = "EPERM" }) end } },
      "before_pivot", "EPERM")
    contains(err.msg, "sandbox: before_pivot: the parent says no")
    err = failure({ rootfs = root, harden = false, host_root = as_root, mounts = with_programs{},
      hooks = { before_pivot_inside = function() return nil, "the child says no", "EACCES" end } }, "before_pivot", "EACCES")
    contains(err.msg, "the child says no")
    err = failure({ rootfs = root, harden = false, host_root = as_root, mounts = with_programs{ { "dev", "/dev" } },
      hooks = { before_exec = function() return nil, "the payload says no", "EIO" end } }, "before_exec", "EIO")
    contains(err.msg, "the payload says no")
    local ok, misuse = pcall(function()
      return lunas.sandbox({ argv = { "true" }, rootfs = "tmpfs", hooks = { before_pivot = function() end } }):run()
    end)
    assert.is_false(ok)
    contains(tostring(misuse), "field 'hooks'", "rootfs a directory")
  end)
end)

-- ---- symlinked targets ----------------------------------------------------------------------------------------

describe("mount targets through symlinks #rootless", function()
  -- A rootfs directory planted with symlinks that point out of it, the way an untrusted image would.
  local function planted(defer)
    local root = rootfs_dir(defer)
    local victim = tmpdir(defer)
    util.write(victim .. "/file", "victim\n")
    assert(os.execute("chmod 0640 " .. util.quote(victim .. "/file")))
    symlink("/etc", root .. "/etc")
    symlink("/etc/passwd", root .. "/evil")
    symlink(victim .. "/file", root .. "/evil-victim")
    symlink(victim, root .. "/victim-dir")
    symlink("/dev", root .. "/dev")
    symlink("../../../../../../../../..", root .. "/up")
    symlink("/oldroot", root .. "/old")
    return root, victim
  end

  check("never reach the host's /etc/passwd through a target that links to it, for every kind of entry", { "userns", "idmap" },
    function(defer)
      local passwd = shield("/etc/passwd", defer)
      local passwd_mode = mode_of("/etc/passwd")
      local root = planted(defer)
      local cases = {
        { { "bind", "/dev/null", "/evil" }, "bind /evil" },
        { { "ro-bind", "/etc/hostname", "/evil" }, "ro-bind /evil" },
        { { "tmpfs", "/evil" }, "tmpfs /evil" },
        { { "proc", "/evil" }, "proc /evil" },
        { { "dir", "/evil" }, "dir /evil" },
        { { "mask", "/evil" }, "mask /evil" },
        { { "remount-ro", "/evil" }, "remount-ro /evil" },
        { { "file", "/evil", "owned\n" }, "file /evil" },
        { { "chmod", "/evil", "0666" }, "chmod /evil" },
      }
      for _, case in ipairs(cases) do
        local err = failure({ rootfs = root, mounts = { case[1] } }, "mounts", "ELOOP")
        -- (followed inside the root, the link loops there: etc -> /etc)
        contains(tostring(err), "sandbox: mounts: mounts[1] " .. case[2] .. ": ", "Too many levels of symbolic links")
      end
      assert.are.equal(passwd, util.read("/etc/passwd"))
      assert.are.equal(passwd_mode, mode_of("/etc/passwd"))
      -- the planted link itself is left as it was
      assert.are.equal("/etc/passwd", lfs.symlinkattributes(root .. "/evil", "target"))
    end)

  check("refuse writing or chmodding a host file through a planted link", { "userns", "idmap" }, function(defer)
    local root, victim = planted(defer)
    for _, entry in ipairs{ { "file", "/evil-victim", "owned\n" }, { "chmod", "/evil-victim", "0666" } } do
      failure({ rootfs = root, mounts = { entry } }, "mounts", "ELOOP")
    end
    assert.are.equal("victim\n", util.read(victim .. "/file"))
    assert.are.equal("rw-r-----", mode_of(victim .. "/file"))
  end)

  check("resolve etc -> /etc inside the root, where it loops: never the host's /etc", { "userns", "idmap" }, function(defer)
    local root = planted(defer)
    local name = unique("lunas-fs-probe")
    defer(function() os.remove("/etc/" .. name) end)
    for _, entry in ipairs{ { "file", "/etc/" .. name, "data" }, { "dir", "/etc/" .. name },
      { "tmpfs", "/etc/" .. name }, { "symlink", "x", "/etc/" .. name } } do
      local err = failure({ rootfs = root, mounts = { entry } }, "mounts", "ELOOP")
      contains(tostring(err), ("mounts[1] %s /etc/%s: "):format(entry[1], name))
    end
    assert.is_false(exists("/etc/" .. name))
  end)

  check("never mount a /dev that links to the host's /dev over the host's", { "userns", "idmap" }, function(defer)
    local root = planted(defer)
    local err = failure({ rootfs = root, mounts = { { "dev", "/dev" } } }, "mounts", "ELOOP")
    contains(tostring(err), "mounts[1] dev /dev: ", "Too many levels of symbolic links")
  end)

  check("keep a relative link that climbs with .. inside the root", { "userns", "idmap" }, function(defer)
    local root, victim = planted(defer)
    local out = capture{ argv = "cat /up" .. victim .. "/x", rootfs = root,
      mounts = with_programs{ { "file", "/up" .. victim .. "/x", "inside\n" } } }
    assert.are.equal("inside\n", out)
    assert.is_false(exists(victim .. "/x"))
    assert.are.equal("inside\n", util.read(root .. victim .. "/x"))
  end)

  check("resolve an absolute link to a host directory inside the root", { "userns", "idmap" }, function(defer)
    local root, victim = planted(defer)
    mkdir_p(root .. victim)  -- where victim-dir points inside the root
    capture{ argv = { "true" }, rootfs = root, mounts = with_programs{ { "file", "/victim-dir/x", "inside\n" },
      { "symlink", "t", "/victim-dir/l" } } }
    assert.is_false(exists(victim .. "/x"))
    assert.is_false(exists(victim .. "/l"))
    assert.are.equal("inside\n", util.read(root .. victim .. "/x"))
    assert.are.equal("t", lfs.symlinkattributes(root .. victim .. "/l", "target"))
  end)

  check("never reach the host through /oldroot", { "userns", "idmap" }, function(defer)
    local root, victim = planted(defer)
    mkdir_p(root .. "/oldroot" .. victim)
    capture{ argv = { "true" }, rootfs = root, mounts = with_programs{ { "file", "/old" .. victim .. "/x", "inside\n" },
      { "file", "/oldroot" .. victim .. "/y", "inside\n" } } }
    assert.is_false(exists(victim .. "/x"))
    assert.is_false(exists(victim .. "/y"))
    assert.are.equal("inside\n", util.read(root .. "/oldroot" .. victim .. "/x"))
    assert.are.equal("inside\n", util.read(root .. "/oldroot" .. victim .. "/y"))
  end)

  check("resolve a symlink entry used as a later target's path inside the root", { "userns" }, function(defer)
    local victim = tmpdir(defer)
    local out = capture{ argv = "cat " .. victim .. "/x", rootfs = "tmpfs", mounts = with_programs{
      { "dir", victim }, { "symlink", victim, "/s" }, { "file", "/s/x", "inside\n" } } }
    assert.are.equal("inside\n", out)
    assert.is_false(exists(victim .. "/x"))
  end)
end)

-- ---- the default tree -----------------------------------------------------------------------------------------

describe("the default tree #rootless", function()
  check("shows the host's programs read-only, a fresh /proc, a minimal /dev, private /tmp, /run and /var", { "userns" },
    function(defer)
      local _, pid = start({}, defer)
      local mounts = mounts_of(pid)
      assert.is_not_nil(mount_at(mounts, "/"), "no root")
      -- /tmp, /run and /var are directories of the sandbox's own root, a tmpfs
      local own = { ["/"] = "tmpfs", ["/proc"] = "proc", ["/dev"] = "tmpfs", ["/sys"] = "sysfs" }
      for target, fstype in pairs(own) do
        assert.are.equal(fstype, mount_at(mounts, target).fstype, target)
      end
      assert.is_true(mount_at(mounts, "/").options.rw)
      -- Everything that came from the host is read-only: the program directories, and nothing else of it but
      -- the working directory's view.
      local home = os.getenv("HOME")
      for _, m in ipairs(mounts) do
        local fresh = under(m.target, "/proc") or under(m.target, "/dev") or under(m.target, "/sys")
          or m.target == "/" or m.target == home
        if not fresh then assert.is_true(m.options.ro, m.target .. " is writable") end
        if m.target ~= "/" and not fresh then
          local shown = under(m.target, "/usr") or under(m.target, "/etc") or m.fstype == "overlay"
            or m.target:match("^/lib") or m.target:match("^/s?bin")
          assert.is_truthy(shown, m.target .. " " .. m.fstype .. " comes from the host")
        end
      end
      local host_dir = tmpdir(defer)
      local name = unique("lunas-fs-private")
      defer(function() os.remove("/tmp/" .. name) end)
      -- (the host's /run has the runner's netns directory; the sandbox's holds at most the way to HOME or to the
      -- working directory, when those are below /run)
      local out = capture{ argv = ("touch /usr/%s 2>&1 | sed 's/.*: //'; echo /proc/[0-9]*; ls -A /dev; " ..
        "test -e %s || echo host tmp hidden; echo data > /tmp/%s && cat /tmp/%s; stat -c %%a /tmp /var/tmp; " ..
        "test -e /run/netns || echo host run hidden; readlink /var/run")
        :format(name, host_dir, name, name) }
      assert.are.equal("Read-only file system\n/proc/1 /proc/2\n" .. DEV_LISTING ..
        "host tmp hidden\ndata\n1777\n1777\nhost run hidden\n/run\n", out)
      assert.is_false(exists("/tmp/" .. name))
      assert.is_false(exists("/usr/" .. name))
    end)

  check("shows the working directory read-only where it is, and nothing else of the host's file systems", { "userns" },
    function(defer)
      local dir = tmpdir(defer)
      util.write(dir .. "/here", "cwd\n")
      local sibling = tmpdir(defer)
      util.write(sibling .. "/there", "sibling\n")
      local out = util.sh(("cd %s && %s run -- /bin/sh -c 'pwd; cat here; touch new 2>&1 | sed \"s/.*: //\"; " ..
        "cat %s/there 2>&1 | sed \"s/.*: //\"; findmnt -n -o FSTYPE .'"):format(util.quote(dir), util.quote(util.bin),
        sibling))
      assert.are.equal(dir .. "\ncwd\nRead-only file system\nNo such file or directory\noverlay\n", out)
    end)

  check("is hardened: /proc/sys read-only, Docker's masks, the sandbox's own sysfs", { "userns" }, function()
    local script = { "(echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1 | sed 's/.*: //'" }
    local expected = { "Read-only file system" }
    for _, name in ipairs(PROC_MASKS) do
      local mode = lfs.symlinkattributes("/proc/" .. name, "mode")
      if mode == "directory" then
        script[#script + 1] = ("echo %s $(ls -A /proc/%s | wc -l)"):format(name, name)
        expected[#expected + 1] = name .. " 0"
      elseif mode then
        script[#script + 1] = ("echo %s $(wc -c < /proc/%s)"):format(name, name)
        expected[#expected + 1] = name .. " 0"
      end
    end
    script[#script + 1] = "ls -A /sys/class/net; ls -A /sys/firmware | wc -l; touch /sys/x 2>&1 | sed 's/.*: //'"
    for _, line in ipairs{ "lo", "0", "Read-only file system" } do expected[#expected + 1] = line end
    local out = capture{ argv = table.concat(script, "\n") }
    assert.are.equal(table.concat(expected, "\n") .. "\n", out)
  end)

  check("cannot be undone by the payload: the host's directories stay read-only, the masks stay", { "userns" },
    function(defer)
      -- Nothing is written: the payload only tries to lift the protections, and reports what it then sees.
      local out = capture{ argv = "mount -o remount,bind,rw /usr >/dev/null 2>&1 && echo remounted; " ..
        "umount /usr >/dev/null 2>&1 && echo usr unmounted; " ..
        "umount /proc/sys >/dev/null 2>&1 && echo proc/sys unmounted; " ..
        "umount /proc/keys >/dev/null 2>&1 && echo keys unmasked; " ..
        "grep -c ' /usr ro,' /proc/self/mountinfo" }
      assert.are.equal("1\n", out)
    end)

  check("is not hardened with harden = false", { "userns" }, function(defer)
    -- The sandbox's root owns its pid namespace: without the read-only /proc/sys, and with its capabilities kept,
    -- it may set ns_last_pid.
    local out = capture{ argv = "echo 100 > /proc/sys/kernel/ns_last_pid && echo written", harden = false,
      caps = "keep" }
    assert.are.equal("written\n", out)
    local _, pid = start({ harden = false }, defer)
    for _, m in ipairs(mounts_of(pid)) do
      assert.is_falsy(m.target:match("^/proc/."), "hardening mount at " .. m.target)
    end
  end)

  -- A file Docker masks that this kernel has, readable to the sandbox's root unless masked (never kcore: huge).
  local function masked_proc_file()
    for _, name in ipairs{ "timer_list", "sched_debug", "keys" } do
      if lfs.attributes("/proc/" .. name, "mode") == "file" then return "/proc/" .. name end
    end
  end

  check("masks the /proc it shows even without a pid namespace", { "userns" }, function()
    local file = masked_proc_file()
    if not file then return require("busted").pending("no /proc/timer_list, sched_debug or keys on this kernel") end
    -- No pid namespace: no fresh /proc, the host's one comes with /. It must still be hardened.
    local out = capture{ argv = ("(wc -c < %s) 2>&1; (echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1 | sed 's/.*: //'")
      :format(file), namespaces = "user,mount,net" }
    assert.are.equal("0\nRead-only file system\n", out)
  end)

  check("masks a /proc that comes into a tree with a bind", { "userns" }, function()
    local file = masked_proc_file()
    if not file then return require("busted").pending("no /proc/timer_list, sched_debug or keys on this kernel") end
    local out = capture{ argv = ("(wc -c < %s) 2>&1"):format(file), mounts = { { "ro-bind", "/", "/" } } }
    assert.are.equal("0\n", out)
  end)
end)

-- ---- misuse ---------------------------------------------------------------------------------------------------

describe("misuse of the file system fields #rootless", function()
  check("raises at lunas.sandbox{} for a bad entry, naming its index", {}, function()
    local cases = {
      { 1, "entry 2: {kind, ...} expected" },
      { "tmpfs", "entry 2: {kind, ...} expected" },
      { { "nope", "/x" }, "entry 2: unknown kind 'nope'" },
      { { "bind" }, "entry 2: source: path expected, got nil" },
      { { "ro-bind", 3 }, "entry 2: source: path expected, got number" },
      { { "bind-try" }, "entry 2: source: path expected, got nil" },
      { { "tmpfs", "/t", size = "big" }, "entry 2: size: bytes or a string like '64M' expected, got big" },
      { { "tmpfs", "/t", sise = "1M" }, "entry 2: unknown option 'sise'" },
      { { "dir", "/d", mode = "999" }, "entry 2: mode: octal string or integer expected, got 999" },
      { { "file", "/f" }, "entry 2: contents: string expected, got nil" },
      { { "overlay", "/o" }, "entry 2: lower: non-empty list of directories expected" },
      { { "overlay", "/o", lower = { "/a" } }, "entry 2: upper: path expected, got nil" },
      { { "tmp-overlay", "/o", lower = { "/a" }, upper = "/u" }, "entry 2: upper and work are only for 'overlay'" },
      { { "chmod", "/x" }, "entry 2: mode expected" },
      { { "symlink", "x" }, "entry 2: target: path expected, got nil" },
      { { "proc", "/p", extra = 1 }, "entry 2: unknown option 'extra'" },
      { { "mask", "" }, "entry 2: target: path expected, got ''" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(lunas.sandbox, { argv = { "true" }, mounts = { { "tmpfs", "/tmp" }, case[1] } })
      assert.is_false(ok, case[2])
      assert.is_true(lunas.is_error(err), tostring(err))
      assert.are.equal("EINVAL", err.code)
      assert.are.equal("mounts", err.field)
      contains(tostring(err), "sandbox: field 'mounts': " .. case[2])
      -- the position is this spec's line
      assert.matches("fs_spec.lua:%d+: ", tostring(err))
    end
    local ok, err = pcall(lunas.sandbox, { argv = { "true" }, mounts = "/" })
    assert.is_false(ok)
    contains(tostring(err), "sandbox: field 'mounts': list of entries expected, got string")
    ok, err = pcall(lunas.sandbox, { argv = { "true" }, rootfs = 3 })
    assert.is_false(ok)
    contains(tostring(err), "sandbox: field 'rootfs': string expected, got number")
    ok, err = pcall(lunas.sandbox, { argv = { "true" }, harden = "yes" })
    assert.is_false(ok)
    contains(tostring(err), "sandbox: field 'harden': boolean expected, got string")
  end)

  check("refuses rootfs and mounts without a mount namespace", { "userns" }, function()
    for _, spec in ipairs{ { rootfs = "tmpfs", field = "rootfs" }, { mounts = {}, field = "mounts" } } do
      local field = spec.field
      spec.field = nil
      spec.argv, spec.namespaces = { "true" }, "user,pid"
      local ok, err = pcall(function() return lunas.sandbox(spec):run() end)
      assert.is_false(ok)
      contains(tostring(err), ("sandbox: field '%s': needs a mount namespace"):format(field))
    end
  end)

  check("reports a failing entry at run time with its index, kind, target, step and errno", { "userns" }, function()
    local n = #host_programs()
    local err = failure({ rootfs = "tmpfs", mounts = with_programs{ { "file", "/f", "x" }, { "dir", "/f/sub" } } },
      "mounts", "ENOTDIR")
    contains(tostring(err), ("sandbox: mounts: mounts[%d] dir /f/sub: "):format(n + 2), "Not a directory")
    err = failure({ rootfs = "/nonexistent-lunas" }, "mounts", "ENOENT")
    contains(tostring(err), "sandbox: mounts: ", "/nonexistent-lunas", "No such file or directory")
    err = failure({ mounts = { { "ro-bind", "/", "/" }, { "tmpfs", "/tmp" },
      { "overlay", "/tmp/o", lower = { "/usr" }, upper = "/nonexistent-lunas/u", work = "/nonexistent-lunas/w" } } },
      "mounts", "ENOENT")
    contains(tostring(err), "sandbox: mounts: mounts[3] overlay /tmp/o: ")
  end)
end)

-- ---- root only ------------------------------------------------------------------------------------------------

describe("file systems as root #root", function()
  check("keep root without a user namespace inside: / read-only, symlinked targets refused", { "root" },
    function(defer)
      local name = unique("lunas-fs-probe")
      defer(function() os.remove("/usr/" .. name) end)
      local out = capture{ argv = ("touch /usr/%s 2>&1 | sed 's/.*: //'; id -u"):format(name),
        namespaces = "pid,mount,net", host_root = true }
      assert.are.equal("Read-only file system\n0\n", out)
      assert.is_false(exists("/usr/" .. name))
      local passwd = shield("/etc/passwd", defer)
      local root = rootfs_dir(defer)
      symlink("/etc/passwd", root .. "/evil")
      symlink("/etc", root .. "/etc")
      for _, entry in ipairs{ { "file", "/evil", "owned\n" }, { "chmod", "/evil", "0666" },
        { "bind", "/dev/null", "/evil" }, { "file", "/etc/" .. name, "owned\n" } } do
        failure({ rootfs = root, mounts = { entry }, namespaces = "pid,mount,net", host_root = true }, "mounts", "ELOOP")
      end
      assert.are.equal(passwd, util.read("/etc/passwd"))
      assert.is_false(exists("/etc/" .. name))
    end)

  check("mount an overlay without a user namespace", { "root" }, function(defer)
    local dir = tmpdir(defer)
    for _, d in ipairs{ "lower", "upper", "work" } do mkdir_p(dir .. "/" .. d) end
    util.write(dir .. "/lower/a", "low\n")
    local out = capture{ argv = "cd /tmp/o && echo changed > a && cat a", namespaces = "pid,mount", host_root = true,
      mounts = { { "ro-bind", "/", "/" }, { "tmpfs", "/tmp" },
        { "overlay", "/tmp/o", lower = { dir .. "/lower" }, upper = dir .. "/upper", work = dir .. "/work" } } }
    assert.are.equal("changed\n", out)
    assert.are.equal("low\n", util.read(dir .. "/lower/a"))
    assert.are.equal("changed\n", util.read(dir .. "/upper/a"))
  end)

  check("make a submount of a ro-bind read-only too", { "root", "userns", "idmap" }, function(defer)
    local dir = tmpdir(defer)
    mkdir_p(dir .. "/sub")
    local _, code = util.run{ "mount", "-t", "tmpfs", "-o", "size=1M", "lunas-fs-test", dir .. "/sub" }
    assert.are.equal(0, code)
    defer(function() util.run{ "umount", dir .. "/sub" } end)
    local out = capture{ argv = "touch /data/x 2>&1 | sed 's/.*: //'; touch /data/sub/x 2>&1 | sed 's/.*: //'",
      rootfs = "tmpfs", mounts = with_programs{ { "ro-bind", dir, "/data" } } }
    assert.are.equal("Read-only file system\nRead-only file system\n", out)
    assert.is_false(exists(dir .. "/sub/x"))
    assert.is_false(exists(dir .. "/x"))
    out = capture{ argv = "touch /data/sub/x && echo writable", rootfs = "tmpfs",
      mounts = with_programs{ { "bind", dir, "/data" } } }
    assert.are.equal("writable\n", out)
    assert.is_true(exists(dir .. "/sub/x"))
  end)
end)

describe("rootfs = host #rootless", function()
  check("keeps the host's files under a fresh /proc and the hardening", { "userns" }, function(defer)
    local dir = tmpdir(defer)
    os.execute("chmod 1777 " .. util.quote(dir))
    util.write(dir .. "/from-host", "host data\n")
    local out = capture{ rootfs = "host", argv = "cat " .. dir .. "/from-host; echo $$; " ..
      "ls /proc | grep -c '^[0-9]'; wc -c < /proc/timer_list; ls /sys/class/net; echo written > " .. dir .. "/from-sandbox" }
    local data, pid, procs, timer, net = out:match("^(host data)\n(%d+)\n(%d+)\n(%d+)\n([^\n]*)\n$")
    assert.is_truthy(data, out)
    assert.equal("2", pid)
    assert.is_true(tonumber(procs) <= 4, out)
    assert.equal("0", timer)
    assert.equal("lo", net)
    -- The host's own files: what the payload writes where it may lands on the host (as with unshare --mount), as
    -- the sandbox's ids: root's range of host ids when root runs it, the caller's own otherwise.
    assert.equal("written\n", util.read(dir .. "/from-sandbox"))
    local owner = tonumber((util.run{ "stat", "-c", "%u", dir .. "/from-sandbox" }))
    if EUID == 0 then assert.is_true(owner >= 0x80000, "owner " .. owner) else assert.equal(EUID, owner) end
  end)

  check("applies entries on top of the host's tree", { "userns" }, function(defer)
    local dir = tmpdir(defer)
    local out = capture{ rootfs = "host", mounts = { { "tmpfs", dir, size = "1M" }, { "mask", "/etc/passwd" } },
      argv = "findmnt -n -o FSTYPE " .. dir .. "; wc -c < /etc/passwd; touch " .. dir .. "/inside && echo ok" }
    assert.equal("tmpfs\n0\nok\n", out)
    assert.is_nil(util.read(dir .. "/inside"), "the tmpfs is the sandbox's, not the host's directory")
  end)

  check("refuses a tmp-overlay, which would need scratch space on the host", { "userns" }, function(defer)
    local dir = tmpdir(defer)
    local _, err = lunas.try(function()
      return lunas.sandbox{ rootfs = "host", argv = { "true" }, mounts = { { "tmp-overlay", "/usr", lower = { dir } } } }:run()
    end)
    assert.equal("mounts", err.step)
    assert.equal("EINVAL", err.code)
    assert.matches("mounts%[1%] tmp%-overlay /usr: tmp%-overlay needs a new root", tostring(err))
  end)
end)
