-- cgroup v2's device policy (core.cgroup_device_filter, Cgroup:devices): a BPF program on a cgroup's v2
-- directory, seen from outside: what a process inside may open and mknod (device numbers, not the nodes' files:
-- mknod needs no device behind it), the programs attached to the directory (bpftool where it is installed, and
-- core.cgroup_device_programs), and the device rules lunas-oci makes of a config's linux.resources.devices.
-- On a hybrid host the program goes to the unified tree (/sys/fs/cgroup/unified), where it works as on pure v2.
local core = require "lunas.core"
local cgroup = require "lunas.cgroup"
local json = require "lunas.json"
local kernel = require "support.kernel"
local util = require "support.util"

local function have_bpftool()
  return os.execute("command -v bpftool >/dev/null 2>&1") == true
end

-- A new cgroup below ours, removed (with its program) at the end of the test.
local function new_cgroup(defer)
  local cg = cgroup.new{}
  defer(function() cg:close() end)
  return cg
end

-- What a process inside cg gets for one attempt: "ok" or the errno name. attempt = {"open", path, mode} or
-- {"mknod", type, major, minor} (a node made in a scratch directory).
local function inside(cg, dir, attempt)
  local child = cg:spawn{ fn = function()
    local ok, _, code
    if attempt[1] == "open" then
      ok, _, code = core.open(attempt[2], attempt[3])
    else
      local root = assert(core.open(dir))
      local name = ("/%s-%d-%d-%d"):format(attempt[2], attempt[3], attempt[4], core.getpid())
      ok, _, code = core.mknod_in_root(root, name, { type = attempt[2] == "c" and "char" or "block",
        major = attempt[3], minor = attempt[4], mode = 384 })
    end
    core.exit(ok and 0 or (core.errno[code] or 125))
  end }
  local status = child:wait().status
  child:close()
  return status == 0 and "ok" or core.errno_name(status)
end

-- Each attempt's outcome under the rules, as a table {[attempt text] = "ok" | "EPERM"}, against expected.
local function check(cg, dir, rules, expected)
  cg:devices(rules)
  local got, want = {}, {}
  for text, outcome in pairs(expected) do
    local words = util.words(text)
    local attempt = words[1] == "open" and { "open", words[2], words[3] }
      or { "mknod", words[2], tonumber(words[3]), tonumber(words[4]) }
    got[text], want[text] = inside(cg, dir, attempt), outcome
  end
  assert.same(want, got, "rules " .. json.encode(rules))
end

-- The programs attached to a cgroup directory, as bpftool lists them: {{id, name}, ...}; nil without bpftool.
local function bpftool_programs(dir)
  if not have_bpftool() then return nil end
  local out, code = util.run({ "bpftool", "--json", "cgroup", "show", dir })
  assert.equal(0, code, out)
  local list = {}
  for _, p in ipairs(json.decode(out)) do
    if p.attach_type == "cgroup_device" or p.attach_type == "device" then
      list[#list + 1] = { id = p.id, name = p.name }
    end
  end
  return list
end

describe("cgroup v2 device programs #root", function()
  local function needs()
    return kernel.requires("cgroup_device_bpf")
  end

  it("let a process inside open and mknod only what the rules allow; outside nothing changes", function()
    if not needs() then return end
    local defer = util.cleanups(finally)
    local cg = new_cgroup(defer)
    local dir, remove = util.tmpdir()
    defer(remove)
    check(cg, dir, { { allow = true, type = "c", major = 1, minor = 3, access = "rwm" } }, {
      ["open /dev/null r"] = "ok", ["open /dev/null rw"] = "ok", ["open /dev/zero r"] = "EPERM",
      ["open /dev/full w"] = "EPERM", ["mknod c 1 3"] = "ok", ["mknod c 1 5"] = "EPERM", ["mknod b 1 3"] = "EPERM",
    })
    -- the m bit alone decides mknod, r and w alone decide opening
    check(cg, dir, { { allow = true, type = "c", major = 1, minor = 3, access = "rw" },
      { allow = true, type = "c", major = 1, minor = 5, access = "m" } }, {
      ["open /dev/null rw"] = "ok", ["mknod c 1 3"] = "EPERM", ["mknod c 1 5"] = "ok", ["open /dev/zero r"] = "EPERM",
    })
    -- no rule, no device
    check(cg, dir, {}, { ["open /dev/null r"] = "EPERM", ["mknod c 1 3"] = "EPERM", ["mknod b 8 0"] = "EPERM" })
    -- this process, outside the cgroup, is not concerned
    assert.truthy(core.open("/dev/zero")):close()
  end)

  it("decide each access by the last rule that matches, as v1's allow and deny lines in order", function()
    if not needs() then return end
    local defer = util.cleanups(finally)
    local cg = new_cgroup(defer)
    local dir, remove = util.tmpdir()
    defer(remove)
    -- a later deny overrides an earlier allow ...
    check(cg, dir, { { allow = true, type = "a" }, { allow = false, type = "c", major = 1, minor = 5 } }, {
      ["open /dev/zero r"] = "EPERM", ["open /dev/null rw"] = "ok", ["mknod b 8 0"] = "ok", ["mknod c 1 5"] = "EPERM",
    })
    -- ... and a later allow an earlier deny
    check(cg, dir, { { allow = false, type = "c", major = 1, minor = 5 }, { allow = true, type = "a" } }, {
      ["open /dev/zero r"] = "ok", ["mknod c 1 5"] = "ok",
    })
    -- a deny of one access takes only that access away; an open for read and write needs both
    check(cg, dir, { { allow = true, type = "c", major = 1, minor = 3, access = "rw" },
      { allow = false, type = "c", major = 1, minor = 3, access = "w" } }, {
      ["open /dev/null r"] = "ok", ["open /dev/null w"] = "EPERM", ["open /dev/null rw"] = "EPERM",
    })
    -- accesses allowed by different rules add up
    check(cg, dir, { { allow = true, type = "c", major = 1, minor = 3, access = "r" },
      { allow = true, type = "c", major = 1, minor = 3, access = "w" } }, {
      ["open /dev/null rw"] = "ok", ["mknod c 1 3"] = "EPERM",
    })
    -- a rule punched into a wildcard one wins over it when it comes later (v1 would ignore it silently)
    check(cg, dir, { { allow = true, type = "c", major = 1 },
      { allow = false, type = "c", major = 1, minor = 5, access = "r" } }, {
      ["open /dev/null r"] = "ok", ["open /dev/zero r"] = "EPERM", ["open /dev/zero w"] = "ok",
    })
  end)

  it("match any major or minor with -1 or nil, and both char and block devices with type a", function()
    if not needs() then return end
    local defer = util.cleanups(finally)
    local cg = new_cgroup(defer)
    local dir, remove = util.tmpdir()
    defer(remove)
    check(cg, dir, { { allow = true, type = "c", major = 1, minor = -1 } }, {
      ["open /dev/null r"] = "ok", ["open /dev/zero r"] = "ok", ["mknod c 1 200"] = "ok", ["mknod c 5 0"] = "EPERM",
      ["mknod b 1 3"] = "EPERM",
    })
    check(cg, dir, { { allow = true, type = "c", minor = 3, access = "m" } }, {
      ["mknod c 7 3"] = "ok", ["mknod c 4095 3"] = "ok", ["mknod c 7 4"] = "EPERM", ["mknod b 7 3"] = "EPERM",
    })
    check(cg, dir, { { allow = true, access = "m" } }, {
      ["mknod b 8 0"] = "ok", ["mknod c 1 5"] = "ok", ["open /dev/zero r"] = "EPERM",
    })
    check(cg, dir, { { allow = true, type = "a", major = 1, minor = 5 } }, {
      ["mknod b 1 5"] = "ok", ["mknod c 1 5"] = "ok", ["open /dev/zero r"] = "ok", ["mknod c 1 3"] = "EPERM",
    })
    check(cg, dir, { { allow = true, type = "b", major = -1, minor = -1, access = "m" } }, {
      ["mknod b 259 1"] = "ok", ["mknod c 1 3"] = "EPERM",
    })
  end)

  it("replace lunas's program on a second call, with one lunas program attached afterwards", function()
    if not needs() then return end
    local defer = util.cleanups(finally)
    local cg = new_cgroup(defer)
    local v2 = cg.dirs.v2
    assert.same({}, assert(core.cgroup_device_programs(v2)))
    cg:devices{ { allow = true, type = "c", major = 1, minor = 3 } }
    local first = assert(core.cgroup_device_programs(v2))
    assert.equal(1, #first)
    assert.equal("lunas_devices", first[1].name)
    assert.is_true(core.cgroup_device_filter(v2, { { allow = true, type = "c", major = 1, minor = 5 } }))
    -- through a descriptor as well as a path
    local fd = assert(core.cgroup_open(v2))
    defer(function() fd:close() end)
    assert.is_true(core.cgroup_device_filter(fd, { { allow = true, type = "c", major = 1, minor = 7 } }))
    local last = assert(core.cgroup_device_programs(fd))
    assert.equal(1, #last)
    assert.equal("lunas_devices", last[1].name)
    assert.is_true(last[1].id > first[1].id)
    local seen = bpftool_programs(v2)
    if seen then assert.same({ { id = last[1].id, name = "lunas_devices" } }, seen) end
    -- the last program is the one in force
    local dir, remove = util.tmpdir()
    defer(remove)
    assert.equal("ok", inside(cg, dir, { "open", "/dev/full", "w" }))
    assert.equal("EPERM", inside(cg, dir, { "open", "/dev/zero", "r" }))
    -- a child cgroup keeps its parent's program (it runs too) and has none of its own
    local child = cgroup.new{ parent = cg }
    defer(function() child:close() end)
    assert.same({}, assert(core.cgroup_device_programs(child.dirs.v2)))
    assert.equal("EPERM", inside(child, dir, { "open", "/dev/zero", "r" }))
    -- the program goes with the cgroup (the kernel frees it after the cgroup is released, asynchronously)
    child:close()
    cg:close()
    if have_bpftool() then
      assert.truthy(util.wait_for(function()
        return select(2, util.run({ "bpftool", "prog", "show", "id", tostring(last[1].id) })) ~= 0
      end, 10), "program " .. last[1].id .. " still loaded after its cgroup went")
    end
  end)

  it("refuse misuse naming the rule and field, and report failures as nil, message, code", function()
    local function raises(pattern, f, ...)
      local ok, err = pcall(f, ...)
      assert.is_false(ok)
      assert.matches(pattern, tostring(err), 1, true)
    end
    local filter = core.cgroup_device_filter
    raises("field 'dir': absolute path expected", filter, "relative", {})
    raises("field 'dir': file descriptor expected", filter, {}, {})
    raises("table expected", filter, "/tmp", "rules")
    raises("field 'rules': an array of rules expected", filter, "/tmp", { x = {} })
    raises("field 'rules[1]': table expected, got string", filter, "/tmp", { "c 1:3 rwm" })
    raises("field 'rules[1]': unknown field 'acess'", filter, "/tmp", { { allow = true, acess = "r" } })
    raises("field 'rules[1].allow': boolean expected, got nil", filter, "/tmp", { {} })
    raises("field 'rules[2].type': \"a\", \"c\" or \"b\" expected", filter, "/tmp",
      { { allow = true }, { allow = true, type = "u" } })
    raises("field 'rules[1].major': 4096 out of range [-1, 4095]", filter, "/tmp", { { allow = true, major = 4096 } })
    raises("field 'rules[1].minor': -2 out of range [-1, 1048575]", filter, "/tmp", { { allow = true, minor = -2 } })
    raises("field 'rules[1].minor': integer expected", filter, "/tmp", { { allow = true, minor = 1.5 } })
    local function access(a) return { { allow = true, access = a } } end
    raises("field 'rules[1].access': only r, w and m expected, got 'x'", filter, "/tmp", access("rwx"))
    raises("field 'rules[1].access': a non-empty string", filter, "/tmp", access(""))
    raises("field 'rules[1].access': only r, w and m expected, got '0'", filter, "/tmp", access("r\0"))
    local many = {}
    for i = 1, 2049 do many[i] = { allow = true } end
    raises("at most 2048 rules", filter, "/tmp", many)
    local ok, msg, code = filter("/nonexistent-lunas-cgroup", {})
    assert.same({ nil, "open /nonexistent-lunas-cgroup: No such file or directory", "ENOENT" }, { ok, msg, code })
    -- a directory that is no cgroup: the kernel's query refuses it
    ok, msg, code = core.cgroup_device_programs("/tmp")
    assert.is_nil(ok)
    assert.matches("^query device programs of /tmp: ", msg)
    assert.equal("EBADF", code)
  end)

  -- The rules' meaning, written plainly: each access asked is decided by the last rule naming it that matches.
  local function decide(rules, kind, major, minor, access)
    for bit in access:gmatch(".") do
      local allowed = false
      for i = #rules, 1, -1 do
        local r = rules[i]
        local type_ok = r.type == nil or r.type == "a" or r.type == kind
        local major_ok = r.major == nil or r.major == -1 or r.major == major
        local minor_ok = r.minor == nil or r.minor == -1 or r.minor == minor
        if (r.access or "rwm"):find(bit, 1, true) and type_ok and major_ok and minor_ok then
          allowed = r.allow
          break
        end
      end
      if not allowed then return "EPERM" end
    end
    return "ok"
  end

  local ATTEMPTS = { "open /dev/null r", "open /dev/null w", "open /dev/null rw", "open /dev/zero r",
    "open /dev/full rw", "mknod c 1 3", "mknod c 1 5", "mknod b 1 3", "mknod b 8 0", "mknod c 136 7" }

  local function expected(rules)
    local t = {}
    for _, text in ipairs(ATTEMPTS) do
      local w = util.words(text)
      if w[1] == "open" then
        local minor = ({ ["/dev/null"] = 3, ["/dev/zero"] = 5, ["/dev/full"] = 7 })[w[2]]
        t[text] = decide(rules, "c", 1, minor, w[3])
      else
        t[text] = decide(rules, w[2], tonumber(w[3]), tonumber(w[4]), "m")
      end
    end
    return t
  end

  local function random_rules(n, random)
    local rules = {}
    for i = 1, n do
      rules[i] = { allow = random(2) == 1, type = ({ nil, "a", "c", "b" })[random(4)],
        major = ({ nil, -1, 1, 1, 8, 136 })[random(6)], minor = ({ nil, -1, 3, 5, 7, 0 })[random(6)],
        access = ({ nil, "r", "w", "m", "rw", "rwm", "wm", "mr" })[random(8)] }
    end
    return rules
  end

  it("agree with the rules' plain meaning on random rule lists, up to 2048 rules (the most there can be)", function()
    if not needs() then return end
    local defer = util.cleanups(finally)
    local cg = new_cgroup(defer)
    local dir, remove = util.tmpdir()
    defer(remove)
    local seed = os.time()
    local rng = { state = seed }
    -- (a small generator of its own: math.random's sequence is shared with whatever else the run does)
    local function random(n)
      rng.state = (rng.state * 1103515245 + 12345) % 2147483648
      return rng.state % n + 1
    end
    for round = 1, 12 do
      local rules = random_rules(({ 1, 2, 3, 5, 8, 13 })[(round - 1) % 6 + 1], random)
      local ok, err = pcall(check, cg, dir, rules, expected(rules))
      if not ok then error(("seed %d, round %d: %s"):format(seed, round, tostring(err)), 0) end
    end
    local rules = random_rules(2048, random)
    -- (the verifier meets each rule once: loading takes milliseconds, not the seconds of a state explosion)
    local start = core.now()
    check(cg, dir, rules, expected(rules))
    assert.is_true(core.now() - start < 10, "2048 rules took " .. (core.now() - start) .. " s")
  end)

  it("are Cgroup:devices, which checks the rules and raises on a closed cgroup", function()
    if not kernel.requires("cgroup_write") then return end
    local defer = util.cleanups(finally)
    local cg = new_cgroup(defer)
    local function raises(pattern, f, ...)
      local ok, err = pcall(f, ...)
      assert.is_false(ok)
      assert.matches(pattern, tostring(err), 1, true)
    end
    raises("devices: an array of rules expected", cg.devices, cg, "a *:* rwm")
    raises("devices[1].allow: boolean expected", cg.devices, cg, { { type = "c" } })
    raises("devices[1]: unknown field 'mayor'", cg.devices, cg, { { allow = true, mayor = 1 } })
    raises("devices[2].access: a string of r, w and m expected", cg.devices, cg,
      { { allow = true }, { allow = false, access = "x" } })
    raises("devices[1].major: an integer from 0 to 4095", cg.devices, cg, { { allow = true, major = "1" } })
    cg:close()
    raises("attempt to use a closed cgroup", cg.devices, cg, {})
  end)
end)

describe("lunas-oci's device rules (lunas.oci.resources) #root", function()
  local resources = require "lunas.oci.resources"
  local function version_with(devices)
    return function(c) return c == "devices" and devices or nil end
  end

  it("are one BPF program's rules on cgroup v2, with runc's default rules after the config's", function()
    local writes = resources.writes({ devices = { { allow = false, access = "rwm" },
      { allow = true, type = "c", major = 10, minor = 200, access = "rw" } } }, version_with(nil))
    assert.equal(1, #writes)
    local w = writes[1]
    assert.equal("devices", w.controller)
    assert.is_nil(w.file)
    assert.same({ allow = false, type = "a", access = "rwm" }, w.rules[1])
    assert.same({ allow = true, type = "c", major = 10, minor = 200, access = "rw" }, w.rules[2])
    -- then runc's: mknod of anything, the standard char devices, the terminals, tun
    assert.same({ allow = true, type = "c", access = "m" }, w.rules[3])
    assert.same({ allow = true, type = "c", major = 1, minor = 3, access = "rwm" }, w.rules[5])
    assert.same({ allow = true, type = "c", major = 136, access = "rwm" }, w.rules[#w.rules - 2])
    assert.same({ allow = true, type = "c", major = 10, minor = 200, access = "rwm" }, w.rules[#w.rules])
    assert.equal(13, #w.rules)
    assert.same({ "devices" }, resources.controllers(writes))
  end)

  it("are devices.deny and devices.allow lines on v1, in the same order", function()
    local writes = resources.writes({ devices = { { allow = false, access = "rwm" },
      { allow = true, type = "b", major = 8, access = "r" } } }, version_with(1))
    local lines = {}
    for _, w in ipairs(writes) do lines[#lines + 1] = w.file .. " " .. w.value end
    assert.same({ "devices.deny a *:* rwm", "devices.allow b 8:* r", "devices.allow c *:* m", "devices.allow b *:* m",
      "devices.allow c 1:3 rwm", "devices.allow c 1:8 rwm", "devices.allow c 1:7 rwm", "devices.allow c 5:0 rwm",
      "devices.allow c 1:5 rwm", "devices.allow c 1:9 rwm", "devices.allow c 136:* rwm", "devices.allow c 5:2 rwm",
      "devices.allow c 10:200 rwm" }, lines)
  end)

  it("refuse a bad rule naming its field", function()
    local function refused(pattern, devices)
      local ok, err = pcall(resources.writes, { devices = devices }, version_with(nil))
      assert.is_false(ok)
      assert.matches(pattern, tostring(err), 1, true)
    end
    refused("linux.resources.devices[0].allow: true or false expected", { { access = "rwm" } })
    refused("linux.resources.devices[1].type: a, c or b expected", { { allow = true }, { allow = true, type = "p" } })
    refused("linux.resources.devices[0].access: r, w and m expected", { { allow = true, type = "c", access = "rx" } })
    refused("linux.resources.devices[0].major: 0 to 4095 expected", { { allow = true, type = "c", major = 5000 } })
    refused("linux.resources.devices[0].minor: integer expected", { { allow = true, type = "c", minor = "3" } })
  end)
end)
