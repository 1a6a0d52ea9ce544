-- lunas as an OCI runtime (`lunas-oci`), seen from outside: the state directory, /proc of the container's
-- process, cgroup files, and the same bundles run by Debian's runc side by side. Real clients (podman,
-- containerd) run in `make test-oci`.
local core = require "lunas.core"
local json = require "lunas.json"
local util = require "support.util"
local kernel = require "support.kernel"

local OCI = util.build .. "/bin/lunas-oci"
local q = util.quote

-- Our own cgroup's path, the deepest of our hierarchies' (the containers' cgroups go below it: nothing of the
-- tests lands outside the cgroup the suite runs in); "" for the root (the VM lane's guest runs the suite there),
-- so that own_cgroup() .. "/" .. id is an absolute path without "//".
local function own_cgroup()
  local best = "/"
  for line in util.read("/proc/self/cgroup"):gmatch("[^\n]+") do
    local path = line:match("^%d+:[^:]*:(.*)$")
    if path and #path > #best then best = path end
  end
  return best == "/" and "" or best
end

local counter = 0

-- runc's template asks for a device cgroup policy: v1's devices controller where there is one, else a BPF
-- program on the container's cgroup v2 directory, which bpf(2) must accept here.
local function device_cgroup()
  if require("lunas.cgroup").layout().controllers.devices == 1 then return true end
  return require("support.kernel").requires("cgroup_device_bpf")
end

-- A bundle: a busybox root file system and runc's template config, changed by edit(config). Returns the
-- bundle's directory, its runtime root and a unique container id; all of it goes at the end of the test.
local function bundle(defer, edit)
  local dir, remove = util.tmpdir()
  defer(remove)
  counter = counter + 1
  local id = ("lunas-oci-test-%d-%d"):format(core.getpid(), counter)
  local root = q(dir .. "/rootfs")
  assert(os.execute(("mkdir -p %s/bin %s/proc %s/sys %s/dev %s/etc %s/tmp && cp /bin/busybox %s/bin/ && "
    .. "for applet in $(/bin/busybox --list); do ln -s busybox %s/bin/$applet 2>/dev/null; done; true")
    :format(root, root, root, root, root, root, root, root)))
  util.write(dir .. "/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
  util.write(dir .. "/rootfs/etc/group", "root:x:0:\ntty:x:5:\nnobody:x:65534:\n")
  local out, code = util.run({ OCI, "spec", "--bundle", dir })
  assert.equal(0, code, out)
  local config = json.decode(util.read(dir .. "/config.json"), { uint64 = true })
  config.process.terminal = false
  config.root.readonly = false
  config.linux.cgroupsPath = own_cgroup() .. "/" .. id
  if edit then edit(config, dir) end
  util.write(dir .. "/config.json", json.encode(config))
  return dir, id
end

-- Runs lunas-oci (or runtime) with output to a file, not a pipe: a container it leaves running holds the
-- descriptors it was given, and a pipe would not end before it does. Returns stdout+stderr and the status.
local function oci(dir, args, opts)
  local words = { q(opts and opts.runtime or OCI), "--root", q(dir .. "/root") }
  if opts and opts.env then
    for i, e in ipairs(opts.env) do table.insert(words, i, q(e)) end
    table.insert(words, 1, "env")
  end
  for _, a in ipairs(args) do words[#words + 1] = q(a) end
  local out = dir .. "/runtime.out"
  local ok, how, code = os.execute(table.concat(words, " ") .. " >" .. q(out) .. (opts and opts.stderr == false
    and " 2>/dev/null" or " 2>&1") .. " </dev/null")
  if how == "signal" then code = 128 + code end
  return util.read(out) or "", ok and 0 or code
end

local function state_of(dir, id, runtime)
  local out, code = oci(dir, { "state", id }, { stderr = false, runtime = runtime })
  if code ~= 0 then return nil, out end
  return json.decode(out)
end

-- The cgroup directory of the container in the v1 hierarchy or v2 tree that has `controller`.
local function cgroup_file(id, controller, file)
  local cgroup = require "lunas.cgroup"
  local layout = cgroup.layout()
  local version = layout.controllers[controller]
  local h = version == 2 and layout.v2 or layout.v1[controller]
  local mount = h.mount
  return mount .. own_cgroup() .. "/" .. id .. "/" .. file
end

describe("lunas as an OCI runtime #root", function()
  it("is lunas-oci, a link to lunas, with runc's version lines, spec and features", function()
    local defer = util.cleanups(finally)
    local _, ino_oci = core.file_type(OCI)
    local _, ino_lunas = core.file_type(util.bin)
    assert.equal(ino_lunas, ino_oci)
    local out, code = util.run({ OCI, "--version" })
    assert.equal(0, code)
    assert.matches("^lunas%-oci version %S+\ncommit: %S+\nspec: 1%.2%.0\n$", out)
    local dir, remove = util.tmpdir()
    defer(remove)
    out, code = util.run({ OCI, "spec", "--bundle", dir })
    assert.equal(0, code, out)
    local config = json.decode(util.read(dir .. "/config.json"))
    assert.equal("rootfs", config.root.path)
    assert.same({ "sh" }, config.process.args)
    out, code = util.run({ OCI, "spec", "--bundle", dir })
    assert.equal(1, code)
    assert.matches("exists", out)
    out, code = util.run({ OCI, "features" })
    assert.equal(0, code)
    local features = json.decode(out)
    assert.equal("1.0.0", features.ociVersionMin)
    assert.truthy(features.linux.seccomp.enabled)
  end)

  it("creates a container set up and waiting, starts it, reports its state, deletes it without a trace", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config, d)
      config.process.args = { "sh", "-c", "echo started > /out/marker; exec sleep 1000" }
      config.mounts[#config.mounts + 1] = { destination = "/out", type = "bind", source = d .. "/out", options = { "rbind" } }
    end)
    os.execute("mkdir " .. q(dir .. "/out"))
    defer(function() oci(dir, { "delete", "--force", id }) end)
    local out, code = oci(dir, { "create", "--bundle", dir, "--pid-file", dir .. "/pid", id })
    assert.equal(0, code, out)
    local s = assert(state_of(dir, id))
    assert.equal("created", s.status)
    assert.equal(id, s.id)
    assert.equal(dir, s.bundle)
    -- the pid file: the container's process, no newline
    assert.equal(tostring(s.pid), util.read(dir .. "/pid"))
    assert.truthy(util.alive(s.pid))
    -- set up (its own namespaces, in its cgroup) but its program not run yet
    assert.not_equal(util.ns_link(s.pid, "mnt"), util.ns_link(core.getpid(), "mnt"))
    assert.not_equal(util.ns_link(s.pid, "pid"), util.ns_link(core.getpid(), "pid"))
    assert.is_nil(util.read(dir .. "/out/marker"))
    assert.truthy(util.read("/proc/" .. s.pid .. "/cgroup"):find("/" .. id .. "\n", 1, true))
    assert.equal("fifo", core.file_type(dir .. "/root/" .. id .. "/exec.fifo"))
    out, code = oci(dir, { "start", id })
    assert.equal(0, code, out)
    assert.truthy(util.wait_for(function() return util.read(dir .. "/out/marker") end))
    s = assert(state_of(dir, id))
    assert.equal("running", s.status)
    -- the container's PID 1 is its program itself, a session leader
    assert.equal("sleep", (util.read("/proc/" .. s.pid .. "/comm"):gsub("\n", "")))
    local stat = util.read("/proc/" .. s.pid .. "/stat"):match("^%d+ %b() (.*)$")
    local fields = util.words(stat)
    assert.equal(tostring(s.pid), fields[4])
    out, code = oci(dir, { "ps", "--format", "json", id })
    assert.equal(0, code)
    assert.same({ s.pid }, json.decode(out))
    out, code = oci(dir, { "list", "--format", "json" })
    assert.equal(0, code)
    assert.equal(id, json.decode(out)[1].id)
    out, code = oci(dir, { "kill", id, "KILL" })
    assert.equal(0, code, out)
    assert.truthy(util.wait_for(function() return not util.alive(s.pid) end))
    assert.equal("stopped", assert(state_of(dir, id)).status)
    assert.equal(0, assert(state_of(dir, id)).pid)
    local cgroup_dir = cgroup_file(id, "pids", "")
    assert.equal("dir", core.file_type(cgroup_dir))
    out, code = oci(dir, { "delete", id })
    assert.equal(0, code, out)
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    assert.is_nil(core.file_type(cgroup_dir))
  end)

  it("fails as runc does: second start, kill when stopped, delete when running, unknown ids", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config) config.process.args = { "sleep", "1000" } end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    local out, code = oci(dir, { "state", "nonexistent-lunas" })
    assert.equal(1, code)
    assert.matches("does not exist", out)
    out, code = oci(dir, { "delete", "--force", "nonexistent-lunas" })
    assert.equal(0, code, out)
    out, code = oci(dir, { "create", "--bundle", dir, "../escape" })
    assert.equal(1, code)
    assert.matches("invalid container id", out)
    out, code = oci(dir, { "create", "--bundle", dir, id })
    assert.equal(0, code, out)
    out, code = oci(dir, { "create", "--bundle", dir, id })
    assert.equal(1, code)
    assert.matches("exists", out)
    assert.equal(0, select(2, oci(dir, { "start", id })))
    out, code = oci(dir, { "start", id })
    assert.equal(1, code)
    assert.matches("cannot start an already running container", out)
    out, code = oci(dir, { "delete", id })
    assert.equal(1, code)
    assert.matches("cannot delete container " .. id:gsub("%-", "%%-") .. " that is not stopped: running", out)
    local pid = assert(state_of(dir, id)).pid
    assert.equal(0, select(2, oci(dir, { "kill", id, "9" })))
    assert.truthy(util.wait_for(function() return not util.alive(pid) end))
    out, code = oci(dir, { "kill", id, "TERM" })
    assert.equal(1, code)
    assert.matches("container not running", out)
    assert.equal(0, select(2, oci(dir, { "delete", "--force", id })))
    assert.equal(0, select(2, oci(dir, { "delete", "--force", id })))
    out, code = oci(dir, { "delete", id })
    assert.equal(1, code)
    assert.matches("does not exist", out)
  end)

  it("leaves nothing of a create that fails, and says what failed in the words clients match", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config) config.process.args = { "no-such-program-lunas" } end)
    local log = dir .. "/log.json"
    local out, code = oci(dir, { "--log", log, "--log-format", "json", "create", "--bundle", dir, id })
    assert.equal(1, code)
    assert.matches("executable file not found in %$PATH", out)
    local last = json.decode(util.lines(util.read(log))[#util.lines(util.read(log))])
    assert.equal("error", last.level)
    assert.matches("executable file not found", last.msg)
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
    assert.is_nil(state_of(dir, id))
  end)

  it("leaves what a killed create made to delete --force: its process, its cgroup, its state", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config, d)
      -- a createRuntime hook that tells who runs it and waits: create is killed there, its container half made
      config.hooks = { createRuntime = { { path = "/bin/sh",
        args = { "sh", "-c", ("echo $PPID $$ > %s/create.pids; exec sleep 100"):format(d) } } } }
    end)
    local words = { q(OCI), "--root", q(dir .. "/root"), "create", "--bundle", q(dir), q(id) }
    assert(os.execute(table.concat(words, " ") .. " >" .. q(dir .. "/create.out") .. " 2>&1 </dev/null &"))
    assert.truthy(util.wait_for(function() return (util.read(dir .. "/create.pids") or ""):match("^%d+ %d+\n") end, 30))
    local create_pid, hook_pid = util.read(dir .. "/create.pids"):match("^(%d+) (%d+)")
    create_pid, hook_pid = tonumber(create_pid), tonumber(hook_pid)
    -- the container's first process: in the cgroup the state names
    local cg = cgroup_file(id, "pids", "cgroup.procs")
    assert.truthy(util.wait_for(function() return (util.read(cg) or ""):match("%d") end, 10))
    local container = tonumber(util.read(cg):match("(%d+)"))
    assert(core.kill(create_pid, "KILL"))
    assert(core.kill(hook_pid, "KILL"))
    assert.truthy(util.wait_for(function() return not util.alive(create_pid) end, 10))
    assert.truthy(core.file_type(dir .. "/root/" .. id .. "/state.json"))
    local out, code = oci(dir, { "delete", "--force", id })
    assert.equal(0, code, out)
    assert.truthy(util.wait_for(function() return not util.alive(container) end, 10))
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
  end)

  it("runs a container to its end with run: its output, its exit status, nothing left", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config) config.process.args = { "sh", "-c", "echo hello from $(hostname); exit 7" } end)
    local out, code = oci(dir, { "run", "--bundle", dir, id })
    assert.equal(7, code)
    assert.equal("hello from lunas\n", out)
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
  end)

  it("applies the config's resources to the container's cgroup, pauses and resumes it", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config)
      config.process.args = { "sleep", "1000" }
      config.linux.resources.pids = { limit = 42 }
      config.linux.resources.memory = { limit = 64 * 1024 * 1024 }
      config.linux.resources.cpu = { quota = 50000, period = 100000, shares = 512 }
    end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    assert.equal(0, select(2, oci(dir, { "run", "--detach", "--bundle", dir, id })))
    assert.equal("42", util.read(cgroup_file(id, "pids", "pids.max")):gsub("%s+$", ""))
    local layout = require("lunas.cgroup").layout()
    if layout.controllers.memory == 1 then
      assert.equal(tostring(64 * 1024 * 1024), util.read(cgroup_file(id, "memory", "memory.limit_in_bytes")):gsub("%s+$", ""))
      assert.equal("50000", util.read(cgroup_file(id, "cpu", "cpu.cfs_quota_us")):gsub("%s+$", ""))
      assert.equal("512", util.read(cgroup_file(id, "cpu", "cpu.shares")):gsub("%s+$", ""))
    else
      assert.equal(tostring(64 * 1024 * 1024), util.read(cgroup_file(id, "memory", "memory.max")):gsub("%s+$", ""))
      assert.equal("50000 100000", util.read(cgroup_file(id, "cpu", "cpu.max")):gsub("%s+$", ""))
    end
    assert.equal(0, select(2, oci(dir, { "pause", id })))
    assert.equal("paused", assert(state_of(dir, id)).status)
    -- (the v1 freezer where the host has one, as runc and podman read it, else the v2 tree's)
    local function frozen()
      if layout.v1.freezer then return util.read(cgroup_file(id, "freezer", "freezer.state")):match("FROZEN") ~= nil end
      return util.read(layout.v2.mount .. own_cgroup() .. "/" .. id .. "/cgroup.events"):match("frozen 1") ~= nil
    end
    assert.truthy(frozen())
    assert.equal(0, select(2, oci(dir, { "resume", id })))
    assert.equal("running", assert(state_of(dir, id)).status)
    assert.falsy(frozen())
  end)
end)

describe("lunas-oci exec's window #root", function()
  -- runc's CVE-2016-9962: the process exec puts into a container holds the runtime's privileges and descriptors
  -- until its own exec; one the container could trace (or read through /proc) would hand them over. The sandbox
  -- lunas-oci exec uses, held before its exec (block_fd), next to the container's own process of the same ids.
  it("keeps a process on its way in undumpable until its exec: the container cannot read it, as it reads its own", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config) config.process.args = { "sleep", "1000" } end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    assert.equal(0, select(2, oci(dir, { "run", "--detach", "--bundle", dir, id })))
    local record = assert(state_of(dir, id))
    local hold_r, hold_w = assert(core.pipe())
    local report_r, report_w = assert(core.pipe())
    defer(function() hold_w:close(); report_r:close() end)
    -- (in a child: joining the container's pid namespace is for good; spawn returns at the payload's exec, so
    -- the pid goes out as soon as the process exists)
    local helper = assert(core.spawn{ fn = function()
      report_r:close()
      hold_w:close()
      local proc = assert(core.pidfd_open(record.pid))
      assert(core.setns(proc, "pid"))
      local running = require("lunas.sandbox").new{ argv = { "true" }, as_pid_1 = true, die_with_parent = true,
        namespaces = {}, host_root = true, seccomp = false, new_session = false, abstract_sockets = "host",
        enter = { process = proc, kinds = "mount" }, block_fd = hold_r:fileno(), keep_fds = { hold_r:fileno() },
        before_release = function(pid)
          report_w:write(tostring(pid) .. "\n")
          report_w:close()
        end }:spawn()
      running:wait()
      return 0
    end })
    defer(function() helper:kill("KILL"); helper:wait(); helper:close() end)
    report_w:close()
    hold_r:close()
    local child = assert(tonumber(report_r:read(64)))
    -- on its way: in the container's mount namespace, waiting before its exec
    assert.truthy(util.wait_for(function() return util.ns_link(child, "mnt") == util.ns_link(record.pid, "mnt") end, 10))
    local inside = util.read(("/proc/%d/status"):format(child)):match("NSpid:[^\n]*%s(%d+)\n")
    assert.truthy(inside)
    -- the container's root reads its own process's environment, and not the one on its way in
    local own = oci(dir, { "exec", id, "sh", "-c", "cat /proc/1/environ >/dev/null && echo readable" })
    assert.equal("readable\n", own)
    local theirs = oci(dir, { "exec", id, "sh", "-c", ("cat /proc/%s/environ >/dev/null"):format(inside) })
    assert.matches("Permission denied", theirs)
    hold_w:close()
    assert.equal(0, helper:wait(10).status)
  end)
end)

describe("lunas-oci idmapped binds #root", function()
  local function idmap_supported(dir)
    local tree = core.open_tree(dir, { clone = true, recursive = false })
    if not tree then return false end
    local userns = require("lunas.fs").userns_with_maps({ { 0, 1234, 1 } }, { { 0, 1234, 1 } })
    local ok = userns and core.mount_setattr(tree, { idmap = userns, recursive = false })
    tree:close()
    if userns then userns:close() end
    return ok
  end

  it("shows a bind's files through the mount's own maps; what the container writes lands with the disk's ids", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config, d)
      assert(os.execute(("mkdir -p %s/data/sub && echo hi > %s/data/f && chown 0:0 %s/data/f && chmod 0777 %s/data")
        :format(q(d), q(d), q(d), q(d))))
      config.mounts[#config.mounts + 1] = { destination = "/data", type = "bind", source = d .. "/data",
        options = { "rbind", "rw" }, uidMappings = { { containerID = 0, hostID = 1234, size = 1 } },
        gidMappings = { { containerID = 0, hostID = 4321, size = 1 } } }
      config.process.user = { uid = 1234, gid = 4321 }
      config.process.args = { "sh", "-c", "ls -ln /data/f | cut -d' ' -f1,5-11; touch /data/new && echo wrote;"
        .. " grep ' /data ' /proc/self/mountinfo | cut -d' ' -f5,6" }
    end)
    if not idmap_supported(dir) then return pending("idmapped mounts: not on this file system or kernel") end
    local out, code = oci(dir, { "run", "--bundle", dir, id })
    assert.equal(0, code, out)
    assert.matches("^%-rw%-r%-%-r%-%- +1 1234 +4321\n", out)
    assert.matches("\nwrote\n/data rw,relatime,idmapped\n$", out)
    -- seen from outside: the container's 1234:4321 is the disk's 0:0
    assert.equal("0:0\n", (util.sh("stat -c %u:%g " .. q(dir .. "/data/new"))))
  end)

  it("takes the container's user namespace maps when the mount has none, and refuses idmap without any", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config, d)
      -- (the mount point is there already: the namespace's root, host uid 100000, may not make it in the image)
      assert(os.execute(("chmod 0755 %s && mkdir -p %s/data %s/rootfs/data && echo hi > %s/data/f")
        :format(q(d), q(d), q(d), q(d))))
      config.linux.namespaces[#config.linux.namespaces + 1] = { type = "user" }
      config.linux.uidMappings = { { containerID = 0, hostID = 100000, size = 65536 } }
      config.linux.gidMappings = { { containerID = 0, hostID = 100000, size = 65536 } }
      config.mounts[#config.mounts + 1] = { destination = "/data", type = "bind", source = d .. "/data",
        options = { "rbind", "ro", "idmap" } }
      config.process.args = { "stat", "-c", "%n %u %g", "/data/f", "/bin/busybox" }
    end)
    if not idmap_supported(dir) then return pending("idmapped mounts: not on this file system or kernel") end
    local out, code = oci(dir, { "run", "--bundle", dir, id })
    assert.equal(0, code, out)
    -- the bind's files are the namespace's root's; the rest of the root file system (not idmapped) nobody's
    assert.equal("/data/f 0 0\n/bin/busybox 65534 65534\n", out)
    local f = assert(io.open(dir .. "/config.json")):read("a")
    local config = json.decode(f, { uint64 = true })
    config.linux.uidMappings, config.linux.gidMappings = nil, nil
    for i, ns in ipairs(config.linux.namespaces) do
      if ns.type == "user" then table.remove(config.linux.namespaces, i) break end
    end
    util.write(dir .. "/config.json", json.encode(config))
    out, code = oci(dir, { "create", "--bundle", dir, id .. "-2" })
    assert.equal(1, code)
    assert.matches("mounts%[%d+%]%.uidMappings: an idmapped bind needs mappings", out)
  end)
end)

describe("lunas-oci device rules #root", function()
  it("keep runc's default devices usable, refuse the others, and change with update", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config)
      config.process.args = { "sleep", "1000" }
      -- a node of linux.devices: allowed as runc allows it
      config.linux.devices = { { path = "/dev/net/tun", type = "c", major = 10, minor = 200, fileMode = 438 } }
      -- (mknod needs the capability too: then runc's default rules allow it for every device)
      for _, set in ipairs{ "bounding", "effective", "permitted" } do
        table.insert(config.process.capabilities[set], "CAP_MKNOD")
      end
    end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    local out, code = oci(dir, { "run", "--detach", "--bundle", dir, id })
    assert.equal(0, code, out)
    -- /tmp/kmsg: a node any rule lets the container make, and none lets it open (runc's template denies all);
    -- (opened for writing, which the kernel allows anyone: only the device rules stand in the way)
    local probe = "mknod /tmp/kmsg c 1 11 && echo mknod ok; for d in /dev/null /dev/zero /dev/full /dev/random "
      .. "/dev/urandom /dev/net/tun /tmp/kmsg; do if (exec 3>$d) 2>/dev/null; then echo $d ok; else echo $d denied; fi; done"
    out, code = oci(dir, { "exec", id, "sh", "-c", probe })
    assert.equal(0, code, out)
    assert.equal("mknod ok\n/dev/null ok\n/dev/zero ok\n/dev/full ok\n/dev/random ok\n/dev/urandom ok\n"
      .. "/dev/net/tun ok\n/tmp/kmsg denied\n", out)
    local layout = require("lunas.cgroup").layout()
    local function programs()
      return assert(core.cgroup_device_programs(layout.v2.mount .. own_cgroup() .. "/" .. id))
    end
    if layout.controllers.devices ~= 1 then assert.equal(1, #programs()) end
    util.write(dir .. "/update.json", json.encode{ devices = { { allow = true, type = "c", major = 1, minor = 11,
      access = "w" } } })
    out, code = oci(dir, { "update", "--resources", dir .. "/update.json", id })
    assert.equal(0, code, out)
    out, code = oci(dir, { "exec", id, "sh", "-c", "exec 3>/tmp/kmsg && echo kmsg ok" })
    assert.equal(0, code, out)
    assert.equal("kmsg ok\n", out)
    if layout.controllers.devices == 1 then
      assert.matches("c 1:11 w", util.read(cgroup_file(id, "devices", "devices.list")), 1, true)
    else
      -- replaced, not added to
      assert.equal(1, #programs())
      assert.equal("lunas_devices", programs()[1].name)
    end
  end)
end)

describe("lunas-oci LSM labels #root #lsm", function()
  it("runs the container's process under process.apparmorProfile, seen from outside; refuses it without AppArmor", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local enabled = require("lunas.lsm").enabled().apparmor
    local dir, id = bundle(defer, function(config)
      config.process.args = { "sh", "-c", "cat /etc/hostname >/dev/null 2>&1 || echo denied; exec sleep 1000" }
      config.process.apparmorProfile = "lunas-test-oci"
    end)
    if not enabled then
      local out, code = oci(dir, { "create", "--bundle", dir, id })
      assert.equal(1, code)
      assert.matches("field 'apparmor': AppArmor is not enabled on this kernel", out, 1, true)
      assert.is_nil(state_of(dir, id))
      return
    end
    if not kernel.requires("apparmor") then return end
    local profile = dir .. "/profile"
    util.write(profile, "profile lunas-test-oci flags=(attach_disconnected,mediate_deleted) {\n  file,\n"
      .. "  capability,\n  signal,\n  unix,\n  network,\n  deny /etc/hostname r,\n}\n")
    local _, err, code = util.sh("apparmor_parser -r " .. q(profile))
    assert.equal(0, code, err)
    defer(function() util.sh("apparmor_parser -R " .. q(profile)) end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    local out
    out, code = oci(dir, { "run", "--detach", "--bundle", dir, id })
    assert.equal(0, code, out)
    local pid = assert(state_of(dir, id)).pid
    assert.truthy(util.wait_for(function()
      return (util.read(("/proc/%d/attr/apparmor/current"):format(pid)) or ""):match("^lunas%-test%-oci %(enforce%)")
    end, 10))
    -- exec: the config's profile, or runc's --apparmor instead
    out, code = oci(dir, { "exec", id, "cat", "/proc/self/attr/apparmor/current" })
    assert.equal(0, code, out)
    assert.equal("lunas-test-oci (enforce)\n", out)
    out, code = oci(dir, { "exec", "--apparmor", "unconfined", id, "cat", "/proc/self/attr/apparmor/current" })
    assert.equal(0, code, out)
    assert.equal("unconfined\n", out)
  end)
end)

describe("lunas-oci SELinux labels #root #lsm", function()
  it("runs the process in process.selinuxLabel, labels new mounts with linux.mountLabel; exec --process-label", function()
    if not device_cgroup() then return end
    if not kernel.requires("selinux") then return end
    local defer = util.cleanups(finally)
    local context, file = "system_u:system_r:initrc_t:s0", "system_u:object_r:tmp_t:s0"
    local dir, id = bundle(defer, function(config)
      config.process.args = { "sleep", "1000" }
      config.process.selinuxLabel = context
      config.linux.mountLabel = file
    end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    local out, code = oci(dir, { "run", "--detach", "--bundle", dir, id })
    assert.equal(0, code, out)
    local pid = assert(state_of(dir, id)).pid
    assert.equal(context, require("lunas.lsm").current(pid, "selinux"))
    -- the container's /dev, a new tmpfs, has the mount label; its /proc takes none
    local mountinfo = util.read(("/proc/%d/mountinfo"):format(pid))
    assert.matches(" /dev [^\n]* %- tmpfs [^\n]*context=\"?" .. file:gsub("%p", "%%%0"), mountinfo)
    assert.not_matches(" /proc [^\n]* %- proc [^\n]*context=", mountinfo)
    out, code = oci(dir, { "exec", id, "cat", "/proc/self/attr/current" })
    assert.equal(0, code, out)
    assert.equal(context, (out:gsub("%z", "")))
    out, code = oci(dir, { "exec", "--process-label", "system_u:system_r:kernel_t:s0", id, "cat", "/proc/self/attr/current" })
    assert.equal(0, code, out)
    assert.equal("system_u:system_r:kernel_t:s0", (out:gsub("%z", "")))
  end)
end)

describe("lunas-oci exec #root", function()
  it("runs a process in a running container: its namespaces, cgroup, the config's capabilities; status and pid file", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = bundle(defer, function(config)
      config.process.args = { "sleep", "1000" }
      config.hostname = "exec-target"
    end)
    defer(function() oci(dir, { "delete", "--force", id }) end)
    assert.equal(0, select(2, oci(dir, { "run", "--detach", "--bundle", dir, id })))
    local pid = assert(state_of(dir, id)).pid
    local out, code = oci(dir, { "exec", id, "sh", "-c", "hostname; echo $$; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status" })
    assert.equal(0, code, out)
    -- in the container's uts and pid namespaces (pid 2: the container's own is 1), with its process's settings
    local ours = util.read("/proc/" .. pid .. "/status"):match("CapEff:%s*(%x+)")
    assert.equal(("exec-target\n2\nCapEff:\t%s\nNoNewPrivs:\t1\n"):format(ours), out)
    util.write(dir .. "/process.json", json.encode{ args = { "sh", "-c", "id -u; pwd; exit 3" }, cwd = "/tmp",
      env = { "PATH=/bin" }, user = { uid = 1000, gid = 1000 } })
    out, code = oci(dir, { "exec", "--process", dir .. "/process.json", id })
    assert.equal(3, code)
    assert.equal("1000\n/tmp\n", out)
    out, code = oci(dir, { "exec", "--detach", "--pid-file", dir .. "/exec.pid", id, "sleep", "999" })
    assert.equal(0, code, out)
    local exec_pid = assert(tonumber(util.read(dir .. "/exec.pid")))
    assert.equal(util.ns_link(pid, "mnt"), util.ns_link(exec_pid, "mnt"))
    assert.equal(util.ns_link(pid, "net"), util.ns_link(exec_pid, "net"))
    assert.equal(util.read("/proc/" .. pid .. "/cgroup"), util.read("/proc/" .. exec_pid .. "/cgroup"))
    out = oci(dir, { "ps", "--format", "json", id })
    local pids = json.decode(out)
    table.sort(pids)
    assert.same({ pid, exec_pid }, pids)
    assert.equal(0, select(2, oci(dir, { "kill", "--all", id, "KILL" })))
    assert.truthy(util.wait_for(function() return not util.alive(pid) and not util.alive(exec_pid) end))
    out, code = oci(dir, { "exec", id, "true" })
    assert.equal(1, code)
    assert.matches("stopped", out)
  end)
end)

-- What the container shows from inside, as one text: ids, capabilities, no_new_privs, seccomp, hostname,
-- limits, the mount table (mount points, options, file system), masked and read-only paths at work.
local PROBE = table.concat({
  "id",
  "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status",
  "hostname",
  "ulimit -n",
  "cut -d' ' -f5,6,9- /proc/self/mountinfo | sed 's/ - / /' | sort",
  "cat /proc/kcore 2>&1 | head -c 40; echo",
  "(echo x > /proc/sysrq-trigger) 2>&1 | sed 's/.*: //'",
  "ls /dev | sort | tr '\\n' ' '; echo",
  "readlink /dev/ptmx; readlink /dev/fd",
}, "; ")

describe("lunas-oci and runc side by side #root", function()
  local function have_runc() return os.execute("command -v runc >/dev/null 2>&1") == true end

  -- Until lunas-oci supported cgroup v2's device policy these ran on the hybrid host only. On pure v2 (the VM
  -- lane, Debian's 6.1 kernel) runc 1.1.5 and lunas-oci then differ in two things no test here has settled yet:
  -- runc links /dev/core to /proc/kcore (that kernel has it; the development kernel has not), and its
  -- /sys/fs/cgroup shows type "cgroup" where lunas-oci's shows "cgroup2".
  local function comparable_here()
    if require("lunas.cgroup").layout().controllers.devices == 1 then return true end
    pending("on pure cgroup v2, runc adds /dev/core and shows /sys/fs/cgroup as type cgroup: not compared yet")
  end

  -- The probe's output for a bundle under runc and under lunas-oci.
  local function both(defer, edit)
    local outs = {}
    for _, runtime in ipairs{ "runc", OCI } do
      local dir, id = bundle(defer, function(config, d)
        config.process.args = { "sh", "-c", PROBE }
        if edit then edit(config, d) end
      end)
      local out, code = oci(dir, { "run", "--bundle", dir, id }, { runtime = runtime })
      outs[#outs + 1] = { out = out, code = code }
      oci(dir, { "delete", "--force", id }, { runtime = runtime })
    end
    return outs[1], outs[2]
  end

  it("runc's template bundle: the same ids, capabilities, mounts, masks, limits", function()
    if not device_cgroup() or not comparable_here() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local runc, lunas = both(defer)
    assert.equal(0, runc.code, runc.out)
    assert.equal(runc.out, lunas.out)
  end)

  -- create with a console socket: what the runtime sent (its data, the master's identity) and what the
  -- container wrote to its terminal once started.
  local function with_terminal(defer, runtime, edit)
    local dir, id = bundle(defer, function(config, d)
      config.process.terminal = true
      config.process.consoleSize = { height = 33, width = 101 }
      if edit then edit(config, d) end
    end)
    local path = dir .. "/console.sock"
    local listener = assert(core.unix_listen(path))
    defer(function() listener:close() end)
    local words = { q(runtime), "--root", q(dir .. "/root"), "create", "--bundle", q(dir), "--console-socket", q(path), q(id) }
    -- (in the background: the runtime connects while we wait in accept)
    assert(os.execute(table.concat(words, " ") .. " >" .. q(dir .. "/create.out") .. " 2>&1 </dev/null &"))
    local conn = assert(core.unix_accept(listener, 30))
    local master, data = assert(core.recv_fd(conn))
    conn:close()
    defer(function() master:close() end)
    -- create has returned once the state says created
    assert.truthy(util.wait_for(function() return state_of(dir, id) end, 30))
    local size = assert(core.tty_winsize(master))
    local kind = core.file_type(master)
    local _, code = oci(dir, { "start", id }, { runtime = runtime })
    assert.equal(0, code, util.read(dir .. "/create.out"))
    local chunks = {}
    while true do
      local chunk = master:read(4096)
      if not chunk or chunk == "" then break end -- (EIO once the last slave is closed)
      chunks[#chunks + 1] = chunk
    end
    oci(dir, { "delete", "--force", id }, { runtime = runtime })
    return { data = data, rows = size.rows, cols = size.cols, kind = kind,
      out = table.concat(chunks):gsub("\r\n", "\n") }
  end

  it("a terminal through --console-socket: the master runc sends, the slave as stdio, /dev/console, the session", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local probe = table.concat({
      "tty", "stat -c '%A %u %g %t:%T' /dev/console", "stty size", "test -t 0 && echo stdin-is-a-tty",
      "echo x > /dev/null && echo dev-null-writable", "cut -d' ' -f6,7 /proc/self/stat",
      "grep ' /dev/console ' /proc/self/mountinfo | cut -d' ' -f5,6,9-", "ls -l /proc/self/fd/ | grep -c pts/0",
    }, "; ")
    local results = {}
    for _, runtime in ipairs{ "runc", OCI } do
      results[#results + 1] = with_terminal(defer, runtime, function(config) config.process.args = { "sh", "-c", probe } end)
    end
    local runc, lunas = results[1], results[2]
    assert.matches("^/dev/pts/0\n", runc.out)
    assert.matches("33 101\nstdin%-is%-a%-tty\ndev%-null%-writable\n", runc.out)
    assert.equal(runc.out, lunas.out)
    assert.equal("/dev/ptmx", lunas.data)
    assert.equal(runc.data, lunas.data)
    assert.same({ 33, 101, "char" }, { lunas.rows, lunas.cols, lunas.kind })
  end)

  -- runc 1.1's copy is looser than lunas's: it skips a FIFO and then fails on its owner, makes directories through
  -- the umask, and leaves every time at the copy's; lunas copies owners, modes and times exactly (core.copy_tree).
  -- Side by side, the rest must agree.
  it("a tmpfs with tmpcopyup starts with what the image has there: files, links, owners, modes, times", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local runc, lunas = both(defer, function(config, d)
      local tmp = q(d .. "/rootfs/tmp")
      assert(os.execute(("mkdir -p %s/sub/deeper && echo data > %s/file && chmod 0640 %s/file && chown 1000:1000 %s/file"
        .. " && ln -s /etc/passwd %s/link && ln -s ../file %s/sub/rel && chmod 1777 %s/sub"
        .. " && touch -d @1000000000 %s/file %s/sub/deeper && touch -h -d @1000000000 %s/link")
        :format(tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp)))
      config.mounts[#config.mounts + 1] = { destination = "/tmp", type = "tmpfs", source = "tmpfs",
        options = { "nosuid", "nodev", "tmpcopyup" } }
      config.root.readonly = true
      config.process.args = { "sh", "-c", "cd /tmp && for f in file link sub sub/deeper sub/rel; do "
        .. "stat -c '%A %Y | %n %u:%g %s %N' $f; done; cat sub/rel 2>&1 | sed 's/.*: //'; grep ' /tmp ' "
        .. "/proc/self/mountinfo | cut -d' ' -f5,6,9-; echo new > /tmp/new && echo tmp-writable; touch /x 2>&1 | "
        .. "sed 's/.*: //'" }
    end)
    assert.equal(0, runc.code, runc.out)
    local function without_modes_and_times(text) return (text:gsub("\n[^\n|]+ | ", "\n"):gsub("^[^\n|]+ | ", "")) end
    assert.equal(without_modes_and_times(runc.out), without_modes_and_times(lunas.out))
    assert.matches("^%-rw%-r%-%-%-%-%- 1000000000 | file 1000:1000 5 file\n"
      .. "lrwxrwxrwx 1000000000 | link 0:0 11 'link' %-> '/etc/passwd'\n"
      .. "drwxrwxrwt %d+ | sub 0:0 %d+ sub\n"
      .. "drwxr%-xr%-x 1000000000 | sub/deeper ", lunas.out)
    -- (6.1's tmpfs adds inode64 to its options)
    assert.matches("\n/tmp rw,nosuid,nodev,relatime tmpfs rw[%w,]*\ntmp%-writable\nRead%-only file system\n$", lunas.out)
  end)

  -- A container whose mkdir calls go to a seccomp agent (this test): the process state the runtime sends with
  -- the listener, and the answers, as the container sees them.
  local function with_agent(defer, runtime, flags)
    local dir, id = bundle(defer, function(config, d)
      config.process.args = { "sh", "-c", "mkdir /tmp/x; echo first=$?; mkdir /tmp/y; echo second=$?; cd /; echo cd=$?" }
      config.linux.seccomp = { defaultAction = "SCMP_ACT_ALLOW", listenerPath = d .. "/agent.sock",
        listenerMetadata = "lunas-test-metadata", flags = flags, syscalls = {
          { names = { "mkdir", "mkdirat" }, action = "SCMP_ACT_NOTIFY" },
          { names = { "chdir" }, action = "SCMP_ACT_TRACE", errnoRet = 7 } } }
    end)
    local listener = assert(core.unix_listen(dir .. "/agent.sock"))
    defer(function() listener:close() end)
    local words = { q(runtime), "--root", q(dir .. "/root"), "run", "--bundle", q(dir), q(id) }
    local out, err = dir .. "/run.out", dir .. "/run.err"
    assert(os.execute(table.concat(words, " ") .. " >" .. q(out) .. " 2>" .. q(err) .. " </dev/null &"))
    local conn = assert(core.unix_accept(listener, 30))
    local fd, data = assert(core.recv_fd(conn))
    conn:close()
    local agent <close> = require("lunas.security").listener(fd)
    local calls = {}
    for i = 1, 2 do
      local req = assert(agent:receive(30))
      calls[i] = req.syscall
      agent:respond(req, i == 1 and "EROFS" or "continue")
    end
    local done = util.wait_for(function()
      return (util.read(out) or ""):match("cd=%d+\n") and (util.read(err) or ""):match("not implemented\n")
    end, 30)
    assert(done, runtime .. " did not finish: " .. tostring(util.read(out)) .. tostring(util.read(err)))
    -- (stdout, then stderr: kept apart, their writes do not interleave)
    return json.decode(data), calls, util.read(out) .. util.read(err), core.file_type(dir .. "/rootfs/tmp/y")
  end

  it("a seccomp agent gets the listener with the container's state; TRACE without a tracer is ENOSYS", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local runc_state, runc_calls, runc_out, runc_made = with_agent(defer, "runc")
    local state, calls, out, made = with_agent(defer, OCI)
    assert.equal("first=1\nsecond=0\ncd=2\n", (runc_out:gsub("[^\n]*: [^\n]*\n", "")), runc_out)
    assert.equal(runc_out, out)
    assert.same(runc_calls, calls)
    assert.equal(runc_made, made)
    assert.equal("dir", made)
    assert.matches("Read%-only file system", out)
    assert.matches("Function not implemented", out)
    for _, doc in ipairs{ runc_state, state } do
      assert.same({ "seccompFd" }, doc.fds)
      assert.equal("lunas-test-metadata", doc.metadata)
      assert.equal("creating", doc.state.status)
      assert.equal(doc.pid, doc.state.pid)
      assert.matches("^lunas%-oci%-test%-", doc.state.id)
    end
  end)

  it("seccomp's SPEC_ALLOW and WAIT_KILLABLE_RECV flags load with the agent's filter (runc 1.1 refuses them)", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local state, calls, out = with_agent(defer, OCI, { "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" })
    assert.same({ "mkdir", "mkdir" }, calls)
    assert.matches("^first=1\nsecond=0\ncd=2\n", out)
    assert.equal("creating", state.state.status)
  end)

  it("joins a pod's user namespace by path: ids, maps and the namespace as runc gives them; run deletes", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    -- the pod: a process in a user namespace mapping 0-65535 onto 100000-165535
    local pod = assert(core.spawn{ fn = function() core.exec({ "unshare", "--user", "sleep", "1000" }) return 127 end })
    defer(function() pod:kill("KILL"); pod:wait(); pod:close() end)
    local ours = core.readlink("/proc/self/ns/user")
    assert.truthy(util.wait_for(function() return core.readlink(("/proc/%d/ns/user"):format(pod.pid)) ~= ours end, 10))
    util.write(("/proc/%d/uid_map"):format(pod.pid), "0 100000 65536\n")
    util.write(("/proc/%d/gid_map"):format(pod.pid), "0 100000 65536\n")
    local userns = ("/proc/%d/ns/user"):format(pod.pid)
    local runc, lunas = both(defer, function(config, d)
      -- (the namespace's root is host uid 100000: the bundle must be open to it)
      assert(os.execute("chmod 0755 " .. q(d)))
      local kept = {}
      for _, ns in ipairs(config.linux.namespaces) do
        if ns.type ~= "user" then kept[#kept + 1] = ns end
      end
      kept[#kept + 1] = { type = "user", path = userns }
      config.linux.namespaces = kept
      -- (podman repeats the namespace's maps; runc wants them)
      config.linux.uidMappings = { { containerID = 0, hostID = 100000, size = 65536 } }
      config.linux.gidMappings = { { containerID = 0, hostID = 100000, size = 65536 } }
      config.process.args = { "sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user;"
        .. " ls -ln /bin/busybox | cut -d' ' -f1,5-6; grep -E '^Cap(Eff|Bnd)' /proc/self/status; ls -n /dev/null |"
        .. " cut -c1-10; echo x > /dev/null && echo null-ok; touch /tmp/f 2>&1 | sed 's/.*: //'" }
    end)
    assert.equal(0, runc.code, runc.out)
    assert.matches("^uid=0%(root%) gid=0%(root%)\n +0 +100000 +65536\n +0 +100000 +65536\n", runc.out)
    assert.matches(core.readlink(userns):gsub("%p", "%%%0"), runc.out)
    assert.equal(runc.out, lunas.out)
    assert.equal(runc.code, lunas.code)
  end)

  it("a non-root user with extra groups, a seccomp profile, no no_new_privs, a read-only root, sysctls", function()
    if not device_cgroup() or not comparable_here() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local runc, lunas = both(defer, function(config)
      config.process.user = { uid = 1000, gid = 1000, additionalGids = { 5, 65534 }, umask = 18 }
      config.process.noNewPrivileges = false
      config.process.capabilities.bounding = { "CAP_NET_RAW", "CAP_KILL", "CAP_CHOWN" }
      config.process.capabilities.effective = { "CAP_KILL" }
      config.process.capabilities.permitted = { "CAP_KILL", "CAP_NET_RAW" }
      config.process.capabilities.inheritable = { "CAP_KILL" }
      config.process.capabilities.ambient = { "CAP_KILL" }
      config.process.rlimits = { { type = "RLIMIT_NOFILE", soft = 512, hard = 1024 } }
      config.root.readonly = true
      config.hostname = "oci-side-by-side"
      config.linux.sysctl = { ["net.ipv4.ip_forward"] = "1", ["kernel.shmmni"] = "1000" }
      config.linux.seccomp = { defaultAction = "SCMP_ACT_ALLOW", architectures = { "SCMP_ARCH_X86_64", "SCMP_ARCH_X86" },
        syscalls = { { names = { "mkdir", "mkdirat", "no_such_call_lunas" }, action = "SCMP_ACT_ERRNO", errnoRet = 1 },
          { names = { "personality" }, action = "SCMP_ACT_ERRNO", args = {
            { index = 0, value = 8, op = "SCMP_CMP_EQ" } } } } }
      config.process.args[3] = config.process.args[3] .. "; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni;"
        .. " umask; mkdir /tmp/x 2>&1 | sed 's/.*: //'; touch /f 2>&1 | sed 's/.*: //'"
    end)
    assert.equal(0, runc.code, runc.out)
    assert.equal(runc.out, lunas.out)
  end)
end)

-- ---- hooks ----------------------------------------------------------------------------------------------------

-- Each hook is the bundle's busybox run as "sh" (its argv[0] says which applet: a hook that did not get the
-- config's args as its whole argv would not even start) with this script: one line per hook in LOG, tab-separated:
-- kind, the status and pid of the state on its stdin, its mount namespace, its working directory, and three
-- variables of its environment (the hook's own, the runtime's, the container's). The createRuntime hook leaves a
-- mark in the container's /out through /proc/PID/root and the bundle's rootfs path (what NVIDIA's hook does), the
-- createContainer hook through its working directory; MODE "fail" fails with a message on each output, "sleep"
-- writes its pid to LOG.sleeper and sleeps.
local HOOK_SCRIPT = [=[
kind=$1 log=$2 mode=$3
state=$(cat)
pid=$(echo "$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
status=$(echo "$state" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
bundle=$(echo "$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
case $kind in
  createRuntime) touch "/proc/$pid/root$bundle/rootfs/out/seen-by-createRuntime" ;;
  createContainer) touch ./out/seen-by-createContainer ./written-by-createContainer ;;
esac
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$status" "$pid" "$(readlink /proc/self/ns/mnt)" "$(pwd)" \
  "${HOOK_VAR-unset}" "${RUNTIME_VAR-unset}" "${CONTAINER_VAR-unset}" >> "$log"
case $mode in
  fail) echo "out of $kind"; echo "$kind failed on purpose" >&2; exit 3 ;;
  sleep) echo $$ > "$log.sleeper"; exec sleep 30 ;;
esac
exit 0
]=]

-- A hook of that kind; opts {mode =, env =, timeout =}. Hooks of the container (startContainer) name the
-- container's busybox and log.
local function hook(dir, kind, opts)
  opts = opts or {}
  local inside = kind == "startContainer"
  return { path = inside and "/bin/busybox" or dir .. "/rootfs/bin/busybox",
    args = { "sh", "-c", HOOK_SCRIPT, "hook", kind, inside and "/out/log" or dir .. "/out/log", opts.mode or "" },
    env = opts.env, timeout = opts.timeout }
end

-- The bundle of the hook tests: /out bound from DIR/out, the program logs "payload" there; edit(config, dir)
-- sets the hooks.
local function hook_bundle(defer, runtime, edit)
  local dir, id = bundle(defer, function(config, d)
    config.process.args = { "sh", "-c", "echo payload >> /out/log" }
    config.process.env[#config.process.env + 1] = "CONTAINER_VAR=container"
    config.mounts[#config.mounts + 1] = { destination = "/out", type = "bind", source = d .. "/out", options = { "rbind" } }
    config.hooks = {}
    edit(config, d)
  end)
  os.execute("mkdir " .. q(dir .. "/out"))
  defer(function() oci(dir, { "delete", "--force", id }, { runtime = runtime }) end)
  return dir, id
end

-- The hooks' lines in DIR/out/log (and "payload"), as {kind, status, pid, mnt, cwd, hook_var, runtime_var,
-- container_var}.
local function hook_log(dir)
  local list = {}
  for _, line in ipairs(util.lines(util.read(dir .. "/out/log") or "")) do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    list[#list + 1] = { kind = f[1], status = f[2], pid = tonumber(f[3]), mnt = f[4], cwd = f[5], hook_var = f[6],
      runtime_var = f[7], container_var = f[8] }
  end
  return list
end

local function kinds(list)
  local out = {}
  for _, h in ipairs(list) do out[#out + 1] = h.kind end
  return out
end

-- Every kind once, three of them with an environment of their own (poststart's empty), the others without.
local function all_hooks(config, d)
  config.hooks = {
    prestart = { hook(d, "prestart") },
    createRuntime = { hook(d, "createRuntime", { env = { "HOOK_VAR=createRuntime", "PATH=/usr/bin:/bin" } }) },
    createContainer = { hook(d, "createContainer") },
    startContainer = { hook(d, "startContainer", { env = { "HOOK_VAR=startContainer" } }) },
    poststart = { hook(d, "poststart", { env = {} }) },
    poststop = { hook(d, "poststop") },
  }
end

-- create, start, wait for the program, delete, under runtime; returns the log and the container's pid and mount
-- namespace (seen from outside once created).
local function full_cycle(defer, runtime, edit)
  local dir, id = hook_bundle(defer, runtime, edit or all_hooks)
  local env = { env = { "RUNTIME_VAR=runtime" }, runtime = runtime }
  local out, code = oci(dir, { "create", "--bundle", dir, id }, env)
  assert.equal(0, code, out)
  local s = assert(state_of(dir, id, runtime))
  local mnt = util.ns_link(s.pid, "mnt")
  out, code = oci(dir, { "start", id }, env)
  assert.equal(0, code, out)
  assert.truthy(util.wait_for(function() return not util.alive(s.pid) end))
  out, code = oci(dir, { "delete", id }, env)
  assert.equal(0, code, out)
  return hook_log(dir), s.pid, mnt, dir, id
end

describe("lunas-oci hooks #root", function()
  it("runs each kind where and when the runtime spec says, the state on its stdin", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local log, pid, mnt, dir = full_cycle(defer, OCI)
    local host = util.ns_link(core.getpid(), "mnt")
    -- the order: create's hooks, start's (startContainer before the program, poststart after it starts: it may
    -- run beside the program), delete's
    local order = kinds(log)
    assert.same({ "prestart", "createRuntime", "createContainer", "startContainer" }, { table.unpack(order, 1, 4) })
    local rest = { order[5], order[6] }
    table.sort(rest)
    assert.same({ "payload", "poststart" }, rest)
    assert.equal("poststop", order[7])
    assert.equal(7, #order)
    local by = {}
    for _, h in ipairs(log) do by[h.kind] = h end
    -- the status each one reads, and the container's pid as the host sees it (0 once stopped)
    for kind, status in pairs{ prestart = "creating", createRuntime = "creating", createContainer = "creating",
        startContainer = "created", poststart = "running", poststop = "stopped" } do
      assert.equal(status, by[kind].status, kind)
      assert.equal(kind == "poststop" and 0 or pid, by[kind].pid, kind)
    end
    -- the runtime's namespace, or the container's (its own /proc/PID/ns/mnt, seen from outside)
    for _, kind in ipairs{ "prestart", "createRuntime", "poststart", "poststop" } do assert.equal(host, by[kind].mnt, kind) end
    assert.equal(mnt, by.createContainer.mnt)
    assert.equal(mnt, by.startContainer.mnt)
    assert.not_equal(host, mnt)
    -- createContainer starts in the container's tree at the bundle's rootfs path, startContainer in process.cwd
    assert.equal(dir .. "/rootfs", by.createContainer.cwd)
    assert.equal("/", by.startContainer.cwd)
    -- the tree the create hooks see: the container's /out (a bind of DIR/out) at the rootfs path
    assert.equal("file", core.file_type(dir .. "/out/seen-by-createRuntime"))
    assert.equal("file", core.file_type(dir .. "/out/seen-by-createContainer"))
    -- env: a hook's own when it has one (poststart's is empty), else that of what runs it: the runtime's, or
    -- in the container the container's
    assert.same({ "unset", "runtime", "unset" }, { by.prestart.hook_var, by.prestart.runtime_var, by.prestart.container_var })
    assert.same({ "createRuntime", "unset", "unset" }, { by.createRuntime.hook_var, by.createRuntime.runtime_var, by.createRuntime.container_var })
    assert.same({ "unset", "unset", "container" }, { by.createContainer.hook_var, by.createContainer.runtime_var, by.createContainer.container_var })
    assert.same({ "startContainer", "unset", "unset" }, { by.startContainer.hook_var, by.startContainer.runtime_var, by.startContainer.container_var })
    assert.same({ "unset", "unset", "unset" }, { by.poststart.hook_var, by.poststart.runtime_var, by.poststart.container_var })
    -- and `features` says so
    local out = util.run({ OCI, "features" })
    assert.same({ "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop" },
      json.decode(out).hooks)
  end)

  it("fails create on a failing hook, in the hook's words, and leaves nothing; poststop runs", function()
    if not device_cgroup() then return end
    -- (one finally per test: busted keeps the last one given)
    local defer = util.cleanups(finally)
    for _, kind in ipairs{ "prestart", "createRuntime", "createContainer" } do
      local dir, id = hook_bundle(defer, OCI, function(config, d)
        -- (the runtime hooks' record has the container's pid: it has to be gone afterwards)
        config.hooks.createRuntime = { hook(d, "createRuntime") }
        config.hooks[kind] = config.hooks[kind] or {}
        table.insert(config.hooks[kind], 1, hook(d, kind))
        config.hooks[kind][#config.hooks[kind] + 1] = hook(d, kind, { mode = "fail" })
        config.hooks.poststop = { hook(d, "poststop") }
      end)
      local out, code = oci(dir, { "create", "--bundle", dir, id })
      assert.equal(1, code, out)
      local expected_msg = ("error running %s hook #%d (%s/rootfs/bin/busybox): exit status 3, stdout: out of %s, "
        .. "stderr: %s failed on purpose"):format(kind, kind == "createRuntime" and 2 or 1, dir, kind, kind)
      assert.truthy(out:find(expected_msg, 1, true), out)
      local log = hook_log(dir)
      local pid
      for _, h in ipairs(log) do
        if h.kind == "createRuntime" then pid = h.pid end
      end
      local expected = { "prestart", "createRuntime", "createContainer" }
      if kind == "prestart" then expected = { "prestart", "prestart" }
      elseif kind == "createRuntime" then expected = { "createRuntime", "createRuntime", "createRuntime" }
      else expected = { "createRuntime", "createContainer", "createContainer" } end
      expected[#expected + 1] = "poststop"
      assert.same(expected, kinds(log), kind)
      assert.is_nil(core.file_type(dir .. "/root/" .. id))
      assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
      if pid then assert.falsy(util.alive(pid)) end
    end
  end)

  it("kills a hook that runs past its timeout, and fails", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    local dir, id = hook_bundle(defer, OCI, function(config, d)
      config.hooks.createRuntime = { hook(d, "createRuntime", { mode = "sleep", timeout = 1 }) }
    end)
    local started = core.now()
    local out, code = oci(dir, { "create", "--bundle", dir, id })
    assert.equal(1, code, out)
    assert.truthy(core.now() - started < 10)
    assert.matches("error running createRuntime hook #0 .*ran past its timeout of 1s and was killed", out)
    local sleeper = assert(tonumber(util.read(dir .. "/out/log.sleeper")))
    assert.falsy(util.alive(sleeper))
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
  end)

  it("fails start on a failing startContainer hook; a failing poststart hook stops the container; poststop warns", function()
    if not device_cgroup() then return end
    local defer = util.cleanups(finally)
    -- startContainer: start says why, the program never runs, the container stops
    local dir, id = hook_bundle(defer, OCI, function(config, d)
      config.hooks.startContainer = { hook(d, "startContainer", { mode = "fail" }) }
    end)
    assert.equal(0, select(2, oci(dir, { "create", "--bundle", dir, id })))
    local out, code = oci(dir, { "start", id })
    assert.equal(1, code, out)
    assert.matches("error running startContainer hook #0 %(/bin/busybox%): exit status 3, stdout: out of startContainer, "
      .. "stderr: startContainer failed on purpose", out)
    assert.truthy(util.wait_for(function() return (state_of(dir, id) or {}).status == "stopped" end))
    assert.same({ "startContainer" }, kinds(hook_log(dir)))
    assert.equal(0, select(2, oci(dir, { "delete", id })))
    -- poststart: start fails, the container is killed (runc's way); poststop: delete warns and goes on
    dir, id = hook_bundle(defer, OCI, function(config, d)
      config.process.args = { "sh", "-c", "echo payload >> /out/log; exec sleep 1000" }
      config.hooks.poststart = { hook(d, "poststart", { mode = "fail" }) }
      config.hooks.poststop = { hook(d, "poststop", { mode = "fail" }), hook(d, "poststop") }
    end)
    assert.equal(0, select(2, oci(dir, { "create", "--bundle", dir, id })))
    local pid = assert(state_of(dir, id)).pid
    out, code = oci(dir, { "start", id })
    assert.equal(1, code, out)
    assert.matches("error running poststart hook #0 .*exit status 3", out)
    assert.falsy(util.alive(pid))
    assert.equal("stopped", assert(state_of(dir, id)).status)
    out, code = oci(dir, { "delete", id })
    assert.equal(0, code, out)
    assert.matches("warning: error running poststop hook #0 .*poststop failed on purpose", out)
    assert.same({ "payload", "poststart", "poststop", "poststop" }, kinds(hook_log(dir)))
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    -- run: a container that does not start is deleted (its poststop hooks run), as runc's run does
    dir, id = hook_bundle(defer, OCI, function(config, d)
      config.hooks.startContainer = { hook(d, "startContainer", { mode = "fail" }) }
      config.hooks.poststop = { hook(d, "poststop") }
    end)
    out, code = oci(dir, { "run", "--bundle", dir, id })
    assert.equal(1, code, out)
    assert.matches("error running startContainer hook #0", out)
    assert.same({ "startContainer", "poststop" }, kinds(hook_log(dir)))
    assert.is_nil(core.file_type(dir .. "/root/" .. id))
    assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
  end)
end)

describe("lunas-oci and runc side by side: hooks #root", function()
  local function have_runc() return os.execute("command -v runc >/dev/null 2>&1") == true end

  -- A hook's line as both runtimes must agree on: its namespace and working directory named by what they are.
  local function normalized(h, host, mnt, dir)
    local where = h.mnt == host and "runtime" or h.mnt == mnt and "container" or h.mnt
    local cwd = h.cwd == dir .. "/rootfs" and "ROOTFS" or h.cwd
    return table.concat({ h.kind, h.status, where, cwd, h.hook_var, h.runtime_var, h.container_var }, " ")
  end

  it("the same hooks in the same namespaces, with the same states, environments and directories", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local host = util.ns_link(core.getpid(), "mnt")
    local seen = {}
    for _, runtime in ipairs{ "runc", OCI } do
      local log, _, mnt, dir = full_cycle(defer, runtime)
      local lines = {}
      for _, h in ipairs(log) do
        if h.kind ~= "payload" then
          -- runc 1.1 runs poststart in create, before the program (so "created"); lunas-oci in start, once the
          -- program runs, as the runtime spec (and runc since 2026) says
          if h.kind == "poststart" then h.status = "-" end
          -- (the host's working directory is each runtime's own)
          if h.kind ~= "createContainer" and h.kind ~= "startContainer" then h.cwd = "-" end
          lines[#lines + 1] = normalized(h, host, mnt, dir)
        end
      end
      table.sort(lines)
      seen[#seen + 1] = table.concat(lines, "\n")
      -- the create phase, in order
      assert.same({ "prestart", "createRuntime", "createContainer" }, { table.unpack(kinds(log), 1, 3) })
      assert.equal("poststop", kinds(log)[#log])
    end
    assert.equal(seen[1], seen[2])
  end)

  it("a failing createContainer hook: create fails with its stderr, nothing is left, poststop runs", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local runs = {}
    for _, runtime in ipairs{ "runc", OCI } do
      local dir, id = hook_bundle(defer, runtime, function(config, d)
        all_hooks(config, d)
        config.hooks.createContainer[2] = hook(d, "createContainer", { mode = "fail" })
      end)
      local out, code = oci(dir, { "create", "--bundle", dir, id }, { runtime = runtime })
      assert.equal(1, code, out)
      assert.matches("hook #1.*exit status 3.*createContainer failed on purpose", out)
      assert.is_nil(core.file_type(dir .. "/root/" .. id))
      assert.is_nil(core.file_type(cgroup_file(id, "pids", "")))
      runs[#runs + 1] = table.concat(kinds(hook_log(dir)), " ")
    end
    assert.equal("prestart createRuntime createContainer createContainer poststop", runs[1])
    assert.equal(runs[1], runs[2])
  end)

  it("a read-only root: the createContainer hook writes into it and sees its mounts, then it turns read-only", function()
    if not device_cgroup() then return end
    if not have_runc() then return pending("needs runc (Debian's package)") end
    local defer = util.cleanups(finally)
    local outs = {}
    for _, runtime in ipairs{ "runc", OCI } do
      local dir, id = hook_bundle(defer, runtime, function(config)
        config.root.readonly = true
        config.process.args = { "sh", "-c", "cat /hooked; touch /x 2>&1 | sed 's/.*: //'; cat /out/seen" }
        config.hooks.createContainer = { { path = "/bin/sh",
          args = { "sh", "-c", "echo written by the hook > ./hooked && echo seen > ./out/seen" } } }
      end)
      local out, code = oci(dir, { "run", "--bundle", dir, id }, { runtime = runtime })
      outs[#outs + 1] = ("%d\n%s"):format(code, out)
    end
    assert.equal("0\nwritten by the hook\nRead-only file system\nseen\n", outs[1])
    assert.equal(outs[1], outs[2])
  end)
end)
