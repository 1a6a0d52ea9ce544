-- Linux security module labels (lunas.lsm): a payload that execs under an AppArmor profile, seen in /proc from
-- outside and in what the profile denies; labels the kernel cannot apply are refused naming the field. The VM lane
-- (Debian's kernel, AppArmor enabled) runs the AppArmor specs; a kernel without the module marks them pending.
local core = require "lunas.core"
local util = require "support.util"
local kernel = require "support.kernel"
local sandbox = require "lunas.sandbox"
local lsm = require "lunas.lsm"

local PROFILE = "lunas-test-profile"
-- Everything but reading /etc/hostname: the payload runs as it would unconfined, and one file shows the profile.
local PROFILE_TEXT = ([[
profile %s flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  signal,
  ptrace,
  unix,
  network,
  mount,
  umount,
  pivot_root,
  deny /etc/hostname r,
}
]]):format(PROFILE)

-- Loads the test's profile (apparmor_parser -r); unloads it at the end of the test.
local function load_profile(defer)
  local dir, cleanup = util.tmpdir()
  defer(cleanup)
  util.write(dir .. "/profile", PROFILE_TEXT)
  local out, err, code = util.sh("apparmor_parser -r " .. util.quote(dir .. "/profile"))
  assert.equal(0, code, out .. err)
  defer(function() util.sh("apparmor_parser -R " .. util.quote(dir .. "/profile")) end)
end

-- What a payload prints of its own label and of /etc/hostname, run with `extra` spec fields.
local function probe(extra)
  local r, w = assert(core.pipe())
  local spec = { argv = { "sh", "-c", "cat /proc/self/attr/apparmor/current; cat /etc/hostname >/dev/null 2>&1"
    .. " && echo hostname-read || echo hostname-denied" }, as_pid_1 = true, stdout = w, rootfs = "host" }
  for k, v in pairs(extra or {}) do spec[k] = v end
  local ok, result = pcall(function() return sandbox.new(spec):run() end)
  w:close()
  local out = r:read(4096) or ""
  r:close()
  if not ok then error(result, 0) end
  return out, result
end

describe("lsm labels", function()
  it("refuses a label of a module the kernel does not run, naming the field #rootless", function()
    local enabled = lsm.enabled()
    local tried = 0
    for field, module in pairs{ apparmor = "apparmor", selinux_label = "selinux", selinux_mount_label = "selinux" } do
      if not enabled[module] then
        tried = tried + 1
        local ok, err = pcall(function() sandbox.new{ argv = { "true" }, as_pid_1 = true, [field] = "x" }:run() end)
        assert.is_false(ok)
        assert.matches("field '" .. field .. "'", tostring(err.msg or err), 1, true)
        assert.matches("is not enabled on this kernel", tostring(err.msg or err), 1, true)
        assert.equal("EOPNOTSUPP", err.code)
      end
    end
    if tried == 0 then pending("this kernel runs both AppArmor and SELinux") end
  end)

  it("refuses an exec label where lunas's PID 1 would take it, and a malformed label #rootless", function()
    for _, field in ipairs{ "apparmor", "selinux_label" } do
      local ok, err = pcall(sandbox.new, { argv = { "true" }, namespaces = "user,pid,mount", [field] = "x" })
      if ok then ok, err = pcall(err.run, err) end
      assert.is_false(ok)
      assert.matches("field '" .. field .. "': needs as_pid_1 = true or no pid namespace", tostring(err.msg or err), 1, true)
    end
    for _, bad in ipairs{ "", "a\nb", 7 } do
      local ok, err = pcall(sandbox.new, { argv = { "true" }, apparmor = bad })
      assert.is_false(ok)
      assert.matches("field 'apparmor': a label", tostring(err.msg or err), 1, true)
    end
  end)

  it("runs the payload under an AppArmor profile: its label in /proc, a file the profile denies #root", function()
    if not kernel.requires("root", "apparmor") then return end
    local defer = util.cleanups(finally)
    load_profile(defer)
    -- without the field, the same payload reads the file (the profile is what stops it)
    local out = probe()
    assert.matches("^unconfined\n", out)
    assert.matches("hostname%-read\n$", out)
    out = probe{ apparmor = PROFILE }
    assert.equal(PROFILE .. " (enforce)\nhostname-denied\n", out)
    -- a profile the kernel has not loaded: refused before anything runs, naming the field
    local ok, err = pcall(probe, { apparmor = "lunas-no-such-profile" })
    assert.is_false(ok)
    assert.matches("field 'apparmor': no AppArmor profile 'lunas%-no%-such%-profile' is loaded", tostring(err.msg or err))
  end)

  it("lunas run --apparmor confines the payload the same way, and asks for --as-pid-1 with a pid namespace #root", function()
    if not kernel.requires("root", "apparmor") then return end
    local defer = util.cleanups(finally)
    load_profile(defer)
    local out, err, code = util.sh(util.quote(util.bin) .. " run --as-pid-1 --apparmor " .. PROFILE
      .. " -- sh -c 'cat /proc/self/attr/apparmor/current; cat /etc/hostname >/dev/null 2>&1 || echo denied'")
    assert.equal(0, code, err)
    assert.equal(PROFILE .. " (enforce)\ndenied\n", out)
    out, err, code = util.sh(util.quote(util.bin) .. " run --apparmor " .. PROFILE .. " -- true")
    assert.equal(2, code, out)
    assert.matches("needs as_pid_1 = true or no pid namespace", err, 1, true)
  end)
end)
