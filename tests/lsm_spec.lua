-- Linux security module labels (lunas.lsm): a payload that execs under an AppArmor profile, seen in /proc from
-- outside and in what the profile denies, as PID 1 and behind lunas's reaper; an SELinux exec context and mount
-- label; labels the kernel cannot apply are refused naming the field. The VM lane (Debian's kernel, AppArmor
-- enabled) runs the AppArmor specs, its SELinux pass (make test-vm-selinux: SELinux on, permissive, Debian's
-- reference policy) the SELinux ones (tag #lsm); a kernel without the module marks them pending.
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

-- A context of Debian's reference policy (MCS) the specs' processes do not run in: the exec changes to it.
local SELINUX_TARGET = "system_u:system_r:initrc_t:s0"
local SELINUX_FILE = "system_u:object_r:tmp_t:s0"

-- Reads `r` until it has `n` lines (a payload that stays on keeps the pipe open).
local function read_lines(r, n)
  local out = ""
  while select(2, out:gsub("\n", "")) < n do
    local chunk = r:read(4096)
    if not chunk or chunk == "" then break end
    out = out .. chunk
  end
  return out
end

-- A sandbox behind lunas's reaper (a pid namespace, not as_pid_1) with `extra` fields: its payload prints
-- `script`'s lines (`lines` of them) and stays on; returns what it printed, the running handle, the payload's host
-- pid and PID 1's. The caller's defer waits for it.
local function spawn_behind_reaper(defer, extra, script, lines)
  local r, w = assert(core.pipe())
  local spec = { argv = { "sh", "-c", script .. "; exec sleep 600" }, stdout = w, namespaces = "user,pid,mount,ipc,uts,net" }
  for k, v in pairs(extra) do spec[k] = v end
  if spec.fn then
    -- a Lua function as the payload (behind a reaper of Lua, lunas's PID 1 itself) that execs the script
    local argv = spec.argv
    spec.argv, spec.fn = nil, function() return core.exec(argv) end
  end
  local running = sandbox.new(spec):spawn()
  w:close()
  defer(function()
    r:close()
    pcall(running.kill, running, "KILL")
    running:wait()
  end)
  local out = read_lines(r, lines)
  local payload = running:payload_pid()
  assert.is_number(payload, "no payload behind the reaper")
  assert.not_equal(running.pid, payload)
  return out, running, payload, running.pid
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
  it("refuses a label of a module the kernel does not run, naming the field #rootless #lsm", function()
    local enabled = lsm.enabled()
    local tried = 0
    for field, module in pairs{ apparmor = "apparmor", selinux_label = "selinux", selinux_mount_label = "selinux" } do
      if not enabled[module] then
        tried = tried + 1
        -- (as PID 1 and behind the reaper alike)
        for _, as_pid_1 in ipairs{ true, false } do
          local ok, err = pcall(function() sandbox.new{ argv = { "true" }, as_pid_1 = as_pid_1, [field] = "x" }:run() end)
          assert.is_false(ok)
          assert.matches("field '" .. field .. "'", tostring(err.msg or err), 1, true)
          assert.matches("is not enabled on this kernel", tostring(err.msg or err), 1, true)
          assert.equal("EOPNOTSUPP", err.code)
        end
      end
    end
    if tried == 0 then pending("this kernel runs both AppArmor and SELinux") end
  end)

  it("refuses a malformed label #rootless #lsm", function()
    for _, bad in ipairs{ "", "a\nb", 7 } do
      local ok, err = pcall(sandbox.new, { argv = { "true" }, apparmor = bad })
      assert.is_false(ok)
      assert.matches("field 'apparmor': a label", tostring(err.msg or err), 1, true)
    end
  end)

  it("runs the payload under an AppArmor profile: its label in /proc, a file the profile denies #root #lsm", function()
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

  it("behind lunas's reaper, the payload gets the profile and PID 1 keeps the caller's label #root #lsm", function()
    if not kernel.requires("root", "apparmor") then return end
    local defer = util.cleanups(finally)
    load_profile(defer)
    local ours = lsm.current("self", "apparmor")
    local out, _, payload, reaper = spawn_behind_reaper(defer, { apparmor = PROFILE },
      "cat /proc/self/attr/apparmor/current; cat /etc/hostname >/dev/null 2>&1 && echo hostname-read"
      .. " || echo hostname-denied", 2)
    assert.equal(PROFILE .. " (enforce)\nhostname-denied\n", out)
    -- from outside: the payload (the reaper's child), and PID 1, which never took it
    assert.equal(PROFILE .. " (enforce)", lsm.current(payload, "apparmor"))
    assert.equal(ours, lsm.current(reaper, "apparmor"))
    assert.matches("^/memfd:lunas%-reaper", core.readlink("/proc/" .. reaper .. "/exe"))
    -- with a Landlock domain (no write anywhere), which the payload takes only after its label
    out = spawn_behind_reaper(defer, { apparmor = PROFILE, landlock = { ro = { "/" } } },
      "cat /proc/self/attr/apparmor/current; echo x 2>&- > /tmp/probe && echo write-allowed || echo write-denied", 2)
    assert.equal(PROFILE .. " (enforce)\nwrite-denied\n", out)
    -- a Lua function behind a reaper of Lua (PID 1 wrote its own exec attribute, which its fork inherits and
    -- which it never uses itself): the same
    out, _, payload, reaper = spawn_behind_reaper(defer, { apparmor = PROFILE, fn = true },
      "cat /proc/self/attr/apparmor/current", 1)
    assert.equal(PROFILE .. " (enforce)\n", out)
    assert.equal(PROFILE .. " (enforce)", lsm.current(payload, "apparmor"))
    assert.equal(ours, lsm.current(reaper, "apparmor"))
    assert.not_matches("memfd", core.readlink("/proc/" .. reaper .. "/exe"))
    -- the same sandbox without the field: the payload reads the file (the profile is what stops it)
    out, _, payload = spawn_behind_reaper(defer, {}, "cat /etc/hostname >/dev/null 2>&1 && echo hostname-read"
      .. " || echo hostname-denied", 1)
    assert.equal("hostname-read\n", out)
    assert.equal(ours, lsm.current(payload, "apparmor"))
  end)

  it("lunas run --apparmor confines the payload the same way, with and without --as-pid-1 #root #lsm", function()
    if not kernel.requires("root", "apparmor") then return end
    local defer = util.cleanups(finally)
    load_profile(defer)
    for _, option in ipairs{ " --as-pid-1", "" } do
      local out, err, code = util.sh(util.quote(util.bin) .. " run" .. option .. " --apparmor " .. PROFILE
        .. " -- sh -c 'cat /proc/self/attr/apparmor/current; cat /etc/hostname >/dev/null 2>&1 || echo denied'")
      assert.equal(0, code, err)
      assert.equal(PROFILE .. " (enforce)\ndenied\n", out)
    end
  end)

  it("runs the payload in an SELinux exec context, as PID 1 and behind the reaper #root #lsm", function()
    if not kernel.requires("root", "selinux") then return end
    local defer = util.cleanups(finally)
    local ours = lsm.current("self", "selinux")
    assert.not_equal(SELINUX_TARGET, ours)
    local out, _, payload, reaper = spawn_behind_reaper(defer, { selinux_label = SELINUX_TARGET },
      "cat /proc/self/attr/current; echo", 1)
    assert.equal(SELINUX_TARGET .. "\n", out:gsub("%z", ""))
    assert.equal(SELINUX_TARGET, lsm.current(payload, "selinux"))
    assert.equal(ours, lsm.current(reaper, "selinux"))
    out, _, payload, reaper = spawn_behind_reaper(defer, { selinux_label = SELINUX_TARGET, fn = true },
      "cat /proc/self/attr/current; echo", 1)
    assert.equal(SELINUX_TARGET .. "\n", out:gsub("%z", ""))
    assert.equal(SELINUX_TARGET, lsm.current(payload, "selinux"))
    assert.equal(ours, lsm.current(reaper, "selinux"))
    -- as PID 1 (lunas run --as-pid-1), and behind the reaper from the command line
    for _, option in ipairs{ " --as-pid-1", "" } do
      local text, err, code = util.sh(util.quote(util.bin) .. " run" .. option .. " --selinux-label " .. SELINUX_TARGET
        .. " -- sh -c 'cat /proc/self/attr/current'")
      assert.equal(0, code, err)
      assert.equal(SELINUX_TARGET, (text:gsub("%z", "")))
    end
  end)

  it("refuses an SELinux context the policy does not know, naming the field #root #lsm", function()
    if not kernel.requires("root", "selinux") then return end
    for _, as_pid_1 in ipairs{ true, false } do
      local ok, err = pcall(function()
        sandbox.new{ argv = { "true" }, as_pid_1 = as_pid_1, selinux_label = "lunas_u:lunas_r:no_such_t:s0" }:run()
      end)
      assert.is_false(ok)
      assert.equal("lsm", err.step)
      assert.matches("selinux_label: SELinux label 'lunas_u:lunas_r:no_such_t:s0': ", tostring(err.msg), 1, true)
      assert.equal("EINVAL", err.code)
    end
  end)

  it("labels the sandbox's new mounts with selinux_mount_label: their options and file contexts #root #lsm", function()
    if not kernel.requires("root", "selinux") then return end
    local defer = util.cleanups(finally)
    local out, _, payload = spawn_behind_reaper(defer, { selinux_mount_label = SELINUX_FILE },
      "stat -c %C /tmp; touch /tmp/f; stat -c %C /tmp/f", 2)
    assert.equal(SELINUX_FILE .. "\n" .. SELINUX_FILE .. "\n", out)
    -- from outside: the payload's root and /dev (new tmpfs mounts) have the context= option; /proc does not
    -- take one, and the host's binds keep their own
    local mounts = util.sh("findmnt -J -l -o TARGET,FSTYPE,OPTIONS -N " .. payload)
    -- (JSON escapes the quotes of context="...")
    local pattern = 'context=\\?"?' .. SELINUX_FILE:gsub("%p", "%%%0")
    for _, target in ipairs{ "/", "/dev" } do
      local entry = mounts:match('"target": ?"' .. target .. '",[^}]*')
      assert.is_truthy(entry, mounts)
      assert.matches('"fstype": ?"tmpfs"', entry)
      assert.matches(pattern, entry)
    end
    for _, target in ipairs{ "/proc", "/usr" } do
      local entry = mounts:match('"target": ?"' .. target .. '",[^}]*')
      assert.is_truthy(entry, mounts)
      assert.not_matches(pattern, entry)
    end
    local _, _, code = util.sh("stat -c %C /proc/" .. payload .. "/root/tmp | grep -qx " .. util.quote(SELINUX_FILE))
    assert.equal(0, code)
    -- without the field, the same mount has none
    out = spawn_behind_reaper(defer, {}, "stat -c %C /tmp", 1)
    assert.not_equal(SELINUX_FILE .. "\n", out)
  end)
end)
