-- lunas.core capabilities (libcap) and seccomp (libseccomp): sets read and written by name, IAB text,
-- securebits and keepcaps; filters with every action, argument comparisons, architectures, export, and the
-- user-notification API. What a child does is checked from outside: /proc/PID/status (Cap*, Seccomp,
-- NoNewPrivs), wait statuses, and the system calls' own results.
--
-- Capability changes and filters are irreversible, so each happens in a child (core.spawn, fork semantics). In
-- a child made with a user namespace the child holds every capability over it, as root or not.

local core = require "lunas.core"
local kernel = require "support.kernel"
local util = require "support.util"
local child = require "support.child"

local start, stop, finish = child.start, child.stop, child.finish
local assert_failure, assert_raises, map_self = child.assert_failure, child.assert_raises, child.map_self
local scope = util.cleanups

local NAMES = core.capability_names()
local BIT = {}
for i, name in ipairs(NAMES) do BIT[name] = i - 1 end

--- A Cap* line of /proc/PID/status as a set of names.
local function status_caps(pid, field)
  local hex = util.status_field(pid, field)
  local mask = tonumber(hex, 16)
  local set = {}
  for name, bit in pairs(BIT) do
    if mask & (1 << bit) ~= 0 then set[name] = true end
  end
  return set
end

local function set_of(list)
  local set = {}
  for _, name in ipairs(list) do set[name] = true end
  return set
end

local function mask_of(names)
  local m = 0
  for _, n in ipairs(names) do m = m | (1 << BIT[n]) end
  return ("%016x"):format(m)
end

-- A child in a user namespace of its own, holding every capability over it.
local function start_privileged(body)
  return start({ flags = "user" }, function(c)
    map_self()
    return body(c)
  end)
end

-- ---- capabilities ---------------------------------------------------------------------------------------------

describe("core capabilities #rootless", function()
  it("names every capability of this kernel, in kernel order", function()
    local last = tonumber(util.read("/proc/sys/kernel/cap_last_cap"))
    assert.equal(last + 1, #NAMES)
    assert.equal("chown", NAMES[1])
    assert.equal("sys_admin", NAMES[BIT.sys_admin + 1])
    assert.equal(21, BIT.sys_admin)
  end)

  it("reads the five sets of this process and of another pid as /proc/PID/status shows them", function()
    local c = core.caps_get()
    assert.same(status_caps("self", "CapEff"), set_of(c.effective))
    assert.same(status_caps("self", "CapPrm"), set_of(c.permitted))
    assert.same(status_caps("self", "CapInh"), set_of(c.inheritable))
    assert.same(status_caps("self", "CapBnd"), set_of(c.bounding))
    assert.same(status_caps("self", "CapAmb"), set_of(c.ambient))
    local other = core.caps_get(1)
    assert.same(status_caps(1, "CapBnd"), set_of(other.bounding))
    assert.same(status_caps(1, "CapEff"), set_of(other.effective))
    assert_failure("caps get", "ESRCH", core.caps_get(0x3ffffff0))
  end)

  it("sets effective, permitted and inheritable by name", function()
    if not kernel.requires("userns") then return end
    local defer = scope(finally)
    local p, ch = start_privileged(function(c)
      assert(core.caps_set{ effective = { "net_admin" }, permitted = { "CAP_NET_ADMIN", "cap_net_raw" }, inheritable = "net_raw" })
      c.send("set")
      c.recv()
      local ok, msg, code = core.caps_set{ permitted = { "net_admin", "sys_admin" } }
      c.send("raise", tostring(ok), code)
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    assert.equal(mask_of{ "net_admin" }, util.status_field(p.pid, "CapEff"))
    assert.equal(mask_of{ "net_admin", "net_raw" }, util.status_field(p.pid, "CapPrm"))
    assert.equal(mask_of{ "net_raw" }, util.status_field(p.pid, "CapInh"))
    ch.post("go")
    -- Permitted never grows back.
    assert.same({ "raise", "nil", "EPERM" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)

  it("drops from the bounding set and raises and clears the ambient set", function()
    if not kernel.requires("userns") then return end
    local defer = scope(finally)
    local p, ch = start_privileged(function(c)
      assert(core.caps_bounding_drop{ "sys_admin", "mknod" })
      local ok, _, code = core.caps_ambient{ raise = { "net_admin" } }
      c.send("without inheritable", tostring(ok), code)
      assert(core.caps_set{ inheritable = { "net_admin", "net_raw" } })
      assert(core.caps_ambient{ raise = { "net_admin", "net_raw" } })
      c.send("raised")
      c.recv()
      assert(core.caps_ambient{ lower = "net_raw" })
      c.send("lowered")
      c.recv()
      assert(core.caps_ambient{ clear = true })
      assert(core.caps_bounding_drop("all"))
      c.send("cleared")
      c.recv()
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "without inheritable", "nil", "EPERM" }, { ch.expect() })
    ch.expect()
    local bounding = status_caps(p.pid, "CapBnd")
    assert.is_nil(bounding.sys_admin)
    assert.is_nil(bounding.mknod)
    assert.is_true(bounding.net_admin)
    assert.equal(mask_of{ "net_admin", "net_raw" }, util.status_field(p.pid, "CapAmb"))
    ch.post("go")
    ch.expect()
    assert.equal(mask_of{ "net_admin" }, util.status_field(p.pid, "CapAmb"))
    ch.post("go")
    ch.expect()
    assert.equal(("%016x"):format(0), util.status_field(p.pid, "CapAmb"))
    assert.equal(("%016x"):format(0), util.status_field(p.pid, "CapBnd"))
    ch.post("go")
    assert.equal(0, finish(p).status)
  end)

  it("reads and writes the IAB text", function()
    if not kernel.requires("userns") then return end
    local defer = scope(finally)
    local p, ch = start_privileged(function(c)
      assert(core.caps_iab_set("!cap_sys_admin,^cap_net_raw,cap_chown"))
      c.send("iab", core.caps_iab())
      c.recv()
      local ok, _, code = core.caps_iab_set("^cap_no_such_thing")
      c.send("bad", tostring(ok), code)
      return 0
    end)
    defer(function() stop(p, ch) end)
    local _, text = ch.expect()
    assert.matches("!cap_sys_admin", text, 1, true)
    assert.matches("^cap_net_raw", text, 1, true)
    assert.is_nil(status_caps(p.pid, "CapBnd").sys_admin)
    assert.equal(mask_of{ "net_raw" }, util.status_field(p.pid, "CapAmb"))
    assert.equal(mask_of{ "chown", "net_raw" }, util.status_field(p.pid, "CapInh"))
    assert.equal(core.caps_iab(p.pid), text)
    ch.post("go")
    assert.same({ "bad", "nil", "EINVAL" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)

  it("locks securebits: root gains nothing on exec, and the bits cannot be cleared", function()
    if not kernel.requires("userns") then return end
    local defer = scope(finally)
    local r, w = assert(core.pipe())
    defer(function() r:close() w:close() end)
    local p, ch = start_privileged(function(c)
      assert(core.securebits_set{ "noroot", "noroot_locked", "keep_caps_locked" })
      local bits = core.securebits()
      c.send("bits", tostring(bits.noroot), tostring(bits.noroot_locked), tostring(bits.keep_caps_locked), tostring(bits.keep_caps))
      local ok, _, code = core.securebits_set{}
      c.send("clear", tostring(ok), code)
      ok, _, code = core.keepcaps(true)
      c.send("keepcaps", tostring(ok), code)
      c.recv()
      -- uid 0 in its namespace, full bounding set: without noroot grep would start with every capability.
      assert(core.dup2(w, 1))
      core.exec({ "/bin/grep", "^CapEff", "/proc/self/status" })
      return 127
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "bits", "true", "true", "true", "nil" }, { ch.expect() })
    assert.same({ "clear", "nil", "EPERM" }, { ch.expect() })
    assert.same({ "keepcaps", "nil", "EPERM" }, { ch.expect() })
    ch.post("go")
    w:close()
    assert.equal(0, finish(p).status)
    assert.equal("CapEff:\t0000000000000000\n", util.drain(r))
  end)

  it("raises naming the field on misuse", function()
    assert_raises("field 'effective': unknown capability 'cap_bogus'", core.caps_set, { effective = { "cap_bogus" } })
    assert_raises("field 'permitted'", core.caps_set, { permitted = 3.5 })
    assert_raises("unknown option", core.caps_set, { effectve = {} })
    assert_raises("field 'raise'", core.caps_ambient, { raise = { 1 } })
    assert_raises("field 'capabilities'", core.caps_bounding_drop, "nope")
    assert_raises("field 'securebits'", core.securebits_set, { "noroots" })
    assert_raises("pid must be positive", core.caps_get, -1)
  end)
end)

describe("core capabilities across a change of uid #root", function()
  it("keepcaps keeps permitted (not effective) when uid 0 becomes another uid", function()
    local defer = scope(finally)
    local function probe(keep)
      local p, ch = start({}, function(c)
        if keep then assert(core.keepcaps(true)) end
        assert(core.setresuid(1000, 1000, 1000))
        c.send("changed")
        c.recv()
        return 0
      end)
      defer(function() stop(p, ch) end)
      ch.expect()
      local result = { util.status_field(p.pid, "CapPrm"), util.status_field(p.pid, "CapEff") }
      ch.post("go")
      assert.equal(0, finish(p).status)
      return result
    end
    local kept = probe(true)
    assert.are_not.equal(("%016x"):format(0), kept[1])
    assert.equal(("%016x"):format(0), kept[2])
    assert.same({ ("%016x"):format(0), ("%016x"):format(0) }, probe(false))
  end)
end)

-- ---- seccomp --------------------------------------------------------------------------------------------------

local SIGSYS = core.signals.SYS

-- Runs body() in a child after loading the filter made by make(); returns the child's wait status and what it
-- sent. The filter is loaded in the child: irreversible.
local function filtered(make, body)
  local p, ch = start({}, function(c)
    local f = make()
    assert(f:load())
    c.send("loaded")
    c.recv()
    return body(c)
  end)
  return p, ch
end

describe("core seccomp filters #rootless", function()
  it("refuses a call with an errno by name or number, seen as Seccomp: 2 in /proc", function()
    local defer = scope(finally)
    local p, ch = filtered(function()
      local f = core.seccomp_filter{}
      assert(f:add("ENOTDIR", "chdir"))
      assert(f:add({ errno = 33 }, "getppid"))
      return f
    end, function(c)
      local ok, _, code = core.chdir("/")
      c.send("chdir", tostring(ok), code)
      c.send("getcwd", core.getcwd() ~= nil)
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    assert.equal("2", util.status_field(p.pid, "Seccomp"))
    assert.equal("1", util.status_field(p.pid, "NoNewPrivs")) -- libseccomp's default, before load
    ch.post("go")
    assert.same({ "chdir", "nil", "ENOTDIR" }, { ch.expect() })
    assert.same({ "getcwd", "true" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)

  it("kills the process (SIGSYS) with kill_process, kill_thread and trap; lets log through", function()
    for _, action in ipairs{ "kill_process", "kill_thread", "trap", "log" } do
      local defer = scope(finally)
      local p, ch = filtered(function()
        local f = core.seccomp_filter{}
        assert(f:add(action, "getppid"))
        return f
      end, function(c)
        core.getppid()
        c.send("survived")
        return 0
      end)
      defer(function() stop(p, ch) end)
      ch.expect()
      ch.post("go")
      if action == "log" then
        assert.same({ "survived" }, { ch.expect() })
        assert.equal(0, finish(p).status)
      else
        assert.equal(SIGSYS, finish(p).signal, action)
      end
    end
  end)

  it("compares arguments: eq on 64 bits, masked_eq, and int arguments on their low 32 bits", function()
    local defer = scope(finally)
    local dir, rm = util.tmpdir()
    defer(rm)
    local p, ch = filtered(function()
      local f = core.seccomp_filter{}
      -- open for writing (O_WRONLY or O_RDWR in the low two bits of openat's flags) refused
      assert(f:add("EDOM", "openat", { { arg = 2, op = "masked_eq", mask = 3, value = 1 } }))
      assert(f:add("EDOM", "openat", { { arg = 2, op = "masked_eq", mask = 3, value = 2 } }))
      -- kill(..., 0) refused on the int argument's low half
      assert(f:add("ERANGE", "kill", { { arg = 1, op = "eq", value = 0, bits = 32 } }))
      return f
    end, function(c)
      local r, _, rcode = core.open("/etc/hostname", "r")
      local w, _, wcode = core.open(dir .. "/x", "w")
      c.send("open", tostring(r ~= nil), tostring(rcode), tostring(w ~= nil), tostring(wcode))
      local k, _, kcode = core.kill(core.getpid(), 0)
      local cont = core.kill(core.getpid(), "CONT")
      c.send("kill", tostring(k), tostring(kcode), tostring(cont))
      return 0
    end)
    defer(function() stop(p, ch) end)
    ch.expect()
    ch.post("go")
    assert.same({ "open", "true", "nil", "false", "EDOM" }, { ch.expect() })
    assert.same({ "kill", "nil", "ERANGE", "true" }, { ch.expect() })
    assert.equal(0, finish(p).status)
    assert.is_nil(util.read(dir .. "/x"))
  end)

  it("exports readable PFC text and BPF bytes that load the same filter", function()
    local f <close> = core.seccomp_filter{ arches = { "native", "x86", "x32" } }
    assert(f:add("ENOLINK", "mount"))
    assert(f:add("EPERM", "ioctl", { { arg = 1, op = "eq", value = 0x5412, bits = 32 } }))
    local pfc = assert(f:pfc())
    assert.matches('filter for syscall "mount"', pfc, 1, true)
    assert.matches("action ERRNO(67);", pfc, 1, true)
    assert.matches("filter for arch x86 ", pfc, 1, true)
    -- the ioctl request compared on its low half only, whatever the high half holds
    assert.matches("$a1.hi32 & 0x00000000 == 0", pfc, 1, true)
    assert.matches("$a1.lo32 & 0xffffffff == 21522", pfc, 1, true)
    -- anything that is not one of the three architectures is killed (the process, not a thread)
    assert.matches("action KILL_PROCESS;", pfc, 1, true)
    local bpf = assert(f:bpf())
    assert.equal(0, #bpf % 8)
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      assert(core.prctl{ no_new_privs = true })
      assert(core.seccomp_load_bpf(bpf))
      local ok, _, code = core.mount("none", "/", "tmpfs")
      c.send("mount", tostring(ok), tostring(code))
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "mount", "nil", "ENOLINK" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)

  it("traces a call (no tracer: ENOSYS), with the message in the PFC; takes the kernel's load flags", function()
    local f <close> = core.seccomp_filter{}
    assert(f:add({ trace = 7 }, "getppid"))
    assert(f:add("trace", "chdir"))
    assert.matches("action TRACE(7);", assert(f:pfc()), 1, true)
    local bpf = assert(f:bpf())
    local notify <close> = core.seccomp_filter{}
    assert(notify:add("notify", "getppid"))
    local notify_bpf = assert(notify:bpf())
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      assert(core.prctl{ no_new_privs = true })
      -- WAIT_KILLABLE_RECV belongs to a listener: the kernel refuses it alone, so it did reach the kernel
      local ok, _, code = core.seccomp_load_bpf(notify_bpf, { wait_killable_recv = true })
      c.send("alone", tostring(ok), tostring(code))
      local listener = core.seccomp_load_bpf(notify_bpf, { listener = true, wait_killable_recv = true, spec_allow = true })
      c.send("listener", tostring(listener ~= nil and listener ~= true))
      assert(core.seccomp_load_bpf(bpf, { spec_allow = true }))
      ok, _, code = core.chdir("/")
      c.send("chdir", tostring(ok), tostring(code))
      return 0
    end)
    defer(function() stop(p, ch) end)
    assert.same({ "alone", "nil", "EINVAL" }, { ch.expect() })
    assert.same({ "listener", "true" }, { ch.expect() })
    assert.same({ "chdir", "nil", "ENOSYS" }, { ch.expect() })
    assert.equal(0, finish(p).status)
    assert.has_error(function() core.seccomp_filter{}:add({ trace = 65536 }, "chdir") end)
    assert.has_error(function() core.seccomp_load_bpf(bpf, { spec = true }) end)
  end)

  it("refuses to load raw BPF without no_new_privs (unprivileged)", function()
    if core.ids().euid == 0 then pending("root may load without no_new_privs") return end
    local f <close> = core.seccomp_filter{}
    assert(f:add("EPERM", "mount"))
    local bpf = f:bpf()
    local defer = scope(finally)
    local p, ch = start({}, function(c)
      local ok, msg, code = core.seccomp_load_bpf(bpf)
      c.send("load", tostring(ok), code, msg)
      return 0
    end)
    defer(function() stop(p, ch) end)
    local _, ok, code, msg = ch.expect()
    assert.same({ "nil", "EACCES" }, { ok, code })
    assert.matches("no_new_privs", msg)
    assert.equal(0, finish(p).status)
  end)

  it("reports rule errors as nil, message, code and misuse as errors naming the field", function()
    local f <close> = core.seccomp_filter{ default = "allow" }
    assert_failure("seccomp add nosuchcall", "ENOENT", f:add("EPERM", "nosuchcall"))
    assert_failure("the action is the filter's default", "EACCES", f:add("allow", "read"))
    assert_raises("field 'action': unknown action 'bogus'", f.add, f, "bogus", "read")
    assert_raises("unknown comparison 'like'", f.add, f, "EPERM", "read", { { arg = 0, op = "like", value = 1 } })
    assert_raises("field 'arg'", f.add, f, "EPERM", "read", { { arg = 6, op = "eq", value = 1 } })
    assert_raises("'mask' goes with op 'masked_eq' only", f.add, f, "EPERM", "read", { { arg = 0, op = "eq", value = 1, mask = 1 } })
    assert_raises("op 'ne' with bits = 32", f.add, f, "EPERM", "read", { { arg = 0, op = "ne", value = 1, bits = 32 } })
    assert_raises("field 'arches': unknown architecture 'vax'", core.seccomp_filter, { arches = { "vax" } })
    assert_raises("field 'default'", core.seccomp_filter, { default = "maybe" })
    assert_raises("unknown option", core.seccomp_filter, { defualt = "allow" })
    f:close()
    assert_raises("attempt to use a closed seccomp filter", f.add, f, "EPERM", "read")
    assert.equal("seccomp filter (closed)", tostring(f))
  end)

  it("resolves system call names and numbers per architecture", function()
    local nr, name = core.seccomp_syscall("openat")
    assert.equal(257, nr)
    assert.equal("openat", name)
    assert.same({ 257, "openat" }, { core.seccomp_syscall(257) })
    assert.same({ 5, "open" }, { core.seccomp_syscall("open", "x86") })
    assert_failure("seccomp syscall nosuchcall", "ENOENT", core.seccomp_syscall("nosuchcall"))
  end)
end)

describe("core seccomp user notification #rootless", function()
  -- A child loads a filter holding `syscall` for a supervisor, hands the listener over a socket, then runs body.
  local function supervised(syscall, body)
    local a, b = assert(core.socketpair())
    local p, ch = start({}, function(c)
      a:close()
      local f = core.seccomp_filter{}
      assert(f:add("notify", syscall))
      assert(f:load())
      local listener = assert(f:notify_fd())
      assert(core.send_fd(b, listener))
      listener:close()
      b:close()
      return body(c)
    end)
    b:close()
    local listener = assert(core.recv_fd(a))
    a:close()
    return p, ch, listener
  end

  it("holds a call until the supervisor answers with a value or lets it continue", function()
    local defer = scope(finally)
    local p, ch, listener = supervised("getppid", function(c)
      c.send("first", core.getppid())
      c.send("second", core.getppid() == core.getppid())
      return 0
    end)
    defer(function() listener:close() stop(p, ch) end)
    local req = assert(core.seccomp_notify_receive(listener))
    assert.equal("getppid", req.syscall)
    assert.equal(p.pid, req.pid)
    assert.equal("x86_64", req.arch)
    assert.equal(6, #req.args)
    assert.is_true(core.seccomp_notify_id_valid(listener, req.id))
    -- Held: the child is asleep in the call.
    assert.equal("S", util.read("/proc/" .. p.pid .. "/stat"):match("^%d+ %b() (%a)"))
    assert(core.seccomp_notify_respond(listener, req.id, { value = 4242 }))
    assert.is_false(core.seccomp_notify_id_valid(listener, req.id))
    assert.same({ "first", "4242" }, { ch.expect() })
    -- continue: the real call runs (the real parent pid, the same twice)
    for _ = 1, 2 do
      req = assert(core.seccomp_notify_receive(listener))
      assert(core.seccomp_notify_respond(listener, req.id, { continue = true }))
    end
    assert.same({ "second", "true" }, { ch.expect() })
    assert.equal(0, finish(p).status)
    assert_raises("field 'continue'", core.seccomp_notify_respond, listener, 1, { continue = true, error = 1 })
  end)

  it("lets the supervisor read pointer arguments and fail the call with an errno", function()
    local defer = scope(finally)
    local p, ch, listener = supervised("chdir", function(c)
      local ok, _, code = core.chdir("/lunas/seen-by-the-supervisor")
      c.send("chdir", tostring(ok), code)
      return 0
    end)
    defer(function() listener:close() stop(p, ch) end)
    local req = assert(core.seccomp_notify_receive(listener))
    local bytes = assert(core.process_read(req.pid, req.args[1], 64))
    assert.equal("/lunas/seen-by-the-supervisor", bytes:match("^[^%z]*"))
    assert.is_true(core.seccomp_notify_id_valid(listener, req.id))
    assert(core.seccomp_notify_respond(listener, req.id, { error = "EACCES" }))
    assert.same({ "chdir", "nil", "EACCES" }, { ch.expect() })
    assert.equal(0, finish(p).status)
  end)

  it("answers ENOENT for a call whose caller was killed while held", function()
    local defer = scope(finally)
    local p, ch, listener = supervised("getppid", function()
      core.getppid()
      return 0
    end)
    defer(function() listener:close() stop(p, ch) end)
    local req = assert(core.seccomp_notify_receive(listener))
    p:kill("KILL")
    finish(p)
    assert.is_false(core.seccomp_notify_id_valid(listener, req.id))
    assert_failure("seccomp notify_respond", "ENOENT", core.seccomp_notify_respond(listener, req.id, { continue = true }))
  end)

  it("passes descriptors with send_fd / recv_fd", function()
    local a, b = assert(core.socketpair())
    local r, w = assert(core.pipe())
    assert(core.send_fd(a, r))
    local got = assert(core.recv_fd(b))
    assert(w:write("through"))
    assert.equal("through", got:read(7))
    b:close()
    assert_failure("recv_fd", "ENOMSG", core.recv_fd(a))
    for _, f in ipairs{ a, r, w, got } do f:close() end
  end)
end)
