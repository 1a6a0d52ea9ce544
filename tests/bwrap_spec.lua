-- lunas as bubblewrap (`lunas-bwrap`, `lunas bwrap`), and the options it shares with `lunas run`, seen from
-- outside: what the payload's /proc says, what the host's files and descriptors look like before and after,
-- what plain tools print inside. bubblewrap's own suite runs in `make test-bwrap`; these cover what it does not.
local core = require "lunas.core"
local util = require "support.util"
local kernel = require "support.kernel"

local BWRAP = util.build .. "/bin/lunas-bwrap"
local q = util.quote

-- Runs a shell script (the words of `bwrap` in it stand for lunas-bwrap): stdout, stderr, exit code.
local function sh(script, opts)
  return util.sh((script:gsub("%f[%w]bwrap%f[^%w%-]", q(BWRAP))), opts)
end

local function lines(s) return util.lines(s) end

describe("lunas as bubblewrap #rootless", function()
  it("is lunas-bwrap, a link to lunas (so /proc/self/exe inside is bwrap too), and lunas bwrap", function()
    local defer = util.cleanups(finally)
    local _, ino_bwrap = core.file_type(BWRAP)
    local _, ino_lunas = core.file_type(util.bin)
    assert.equal(ino_lunas, ino_bwrap)
    local out, _, code = util.sh(q(BWRAP) .. " --version; " .. q(util.bin) .. " bwrap --version")
    assert.equal(0, code)
    assert.equal("bubblewrap 0.11.0\nbubblewrap 0.11.0\n", out)
    -- bwrap nested in bwrap through /proc/self/exe, as bubblewrap's users run it
    if not kernel.requires("userns") then return end
    out = sh("bwrap --dev-bind / / -- /proc/self/exe --dev-bind / / echo nested")
    assert.equal("nested\n", out)
  end)

  it("speaks bubblewrap's words: usage, unknown options, missing values, its own errors exit 1", function()
    local defer = util.cleanups(finally)
    local out, err, code = sh("bwrap")
    assert.equal(1, code)
    assert.matches("^usage: " .. BWRAP:gsub("%p", "%%%0") .. " %[OPTIONS%.%.%.%] %[%-%-%] COMMAND", err)
    out, err, code = sh("bwrap --help")
    assert.equal(0, code)
    assert.matches("^usage: ", out)
    for _, option in ipairs{ "--bind-fd", "--overlay-src", "--tmp-overlay", "--level-prefix", "--userns2",
      "--disable-userns", "--assert-userns-disabled", "--chmod", "--size", "--perms", "--json-status-fd" } do
      assert.matches(option:gsub("%-", "%%-"), out)
    end
    for _, case in ipairs{
      { "bwrap --frobnicate true", "bwrap: Unknown option --frobnicate\n" },
      { "bwrap --bind /", "bwrap: --bind takes two arguments\n" },
      { "bwrap --uid x true", "bwrap: Invalid uid: x\n" },
      { "bwrap --seccomp 0a true", "bwrap: Invalid fd: 0a\n" },
      { "bwrap --perms 0640 --perms 0640 --tmpfs /a true", "bwrap: --perms given twice for the same action\n" },
      { "bwrap --size 0 --tmpfs /a true", "bwrap: --size takes a non-zero number of bytes\n" },
      { "bwrap --perms 0640 --proc /proc true", "bwrap: --perms must be followed by an option that creates a file\n" },
      { "bwrap --hostname x true", "bwrap: Specifying --hostname requires --unshare-uts\n" },
      { "bwrap --as-pid-1 true", "bwrap: Specifying --as-pid-1 requires --unshare-pid\n" },
      { "bwrap --level-prefix --frobnicate true", "bwrap: Unknown option --frobnicate\n" },
    } do
      out, err, code = sh(case[1])
      assert.equal(1, code, case[1])
      assert.equal(case[2], err, case[1])
      assert.equal("", out)
    end
    -- A failure of the sandbox itself: bubblewrap's wording, and --level-prefix puts the syslog level first.
    if not kernel.requires("userns") then return end
    _, err, code = sh("bwrap --level-prefix --ro-bind /nonexistent-lunas /x true")
    assert.equal(1, code)
    assert.equal("<3>bwrap: Can't find source path /nonexistent-lunas: No such file or directory\n", err)
  end)

  it("has bubblewrap's defaults: the caller's namespaces but mount (and user), environment, descriptors, session",
    function()
      local defer = util.cleanups(finally)
      if not kernel.requires("userns") then return end
      local out, err, code = sh("exec 7</dev/null; LUNAS_PROBE=seen bwrap --ro-bind / / sh -c '" ..
        "for n in ipc net pid uts cgroup; do readlink /proc/self/ns/$n; done; echo $LUNAS_PROBE; " ..
        "test -e /proc/self/fd/7 && echo fd7; cut -d\" \" -f6 /proc/$$/stat; grep -E \"^(NoNewPrivs|Seccomp):\" /proc/self/status'")
      assert.equal(0, code, err)
      local want = {}
      for _, n in ipairs{ "ipc", "net", "pid", "uts", "cgroup" } do want[#want + 1] = util.ns_link("self", n) end
      local got = lines(out)
      for i = 1, 5 do assert.equal(want[i], got[i]) end
      assert.equal("seen", got[6])
      assert.equal("fd7", got[7])
      -- the caller's session (no setsid without --new-session)
      -- (the session id is the 6th field of /proc/PID/stat; ps under a sanitizer run's LD_PRELOAD, which bwrap
      -- passes on, can hang)
      local sid = util.read("/proc/self/stat"):match("^%d+ %b() %a %d+ %d+ (%d+)")
      assert.equal(sid, got[8]:match("%d+"))
      assert.equal("NoNewPrivs:\t1", got[9])
      assert.equal("Seccomp:\t0", got[10])
    end)

  it("keeps root's capabilities as they are, and drops exactly what --cap-drop names", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("root") then return end
    local caps = util.status_field("self", "CapEff")
    local out = sh("bwrap --ro-bind / / --unshare-pid sh -c 'grep CapEff /proc/self/status'")
    assert.equal("CapEff:\t" .. caps .. "\n", out)
    out = sh("bwrap --ro-bind / / --cap-drop ALL sh -c 'grep -E \"^Cap(Eff|Prm)\" /proc/self/status'")
    assert.equal("CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n", out)
  end)

  it("writes --info-fd and --json-status-fd in bubblewrap's format, with the ids the sandbox has", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    local dir = util.tmpdir()
    defer(function() os.execute("rm -rf " .. q(dir)) end)
    local out, err, code = sh(("bwrap --ro-bind / / --unshare-net --unshare-pid --info-fd 8 --json-status-fd 9 " ..
      "sh -c 'readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; ls /proc/self/fd; exit 3' 8>%s/info 9>%s/status")
      :format(q(dir), q(dir)))
    assert.equal(3, code, err)
    local got = lines(out)
    local net, mnt = got[1]:match("%[(%d+)%]"), got[2]:match("%[(%d+)%]")
    local info = util.read(dir .. "/info")
    local pid = info:match('"child%-pid": (%d+)')
    assert.equal(('{\n    "child-pid": %s,\n    "mnt-namespace": %s,\n    "net-namespace": %s,\n' ..
      '    "pid-namespace": %s\n}\n'):format(pid, mnt, net, info:match('"pid%-namespace": (%d+)')), info)
    local status = util.read(dir .. "/status")
    assert.equal(('{ "child-pid": %s, "mnt-namespace": %s, "net-namespace": %s, "pid-namespace": %s }\n' ..
      '{ "exit-code": 3 }\n'):format(pid, mnt, net, info:match('"pid%-namespace": (%d+)')), status)
    -- neither descriptor reaches the payload
    for i = 3, #got do assert.is_not.equal("8", got[i]) assert.is_not.equal("9", got[i]) end
  end)

  it("writes no exit-code when the sandbox fails before its payload runs", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    local dir = util.tmpdir()
    defer(function() os.execute("rm -rf " .. q(dir)) end)
    local _, err, code = sh(("bwrap --ro-bind / / --chdir /nonexistent-lunas --json-status-fd 9 true 9>%s/status")
      :format(q(dir)))
    assert.equal(1, code)
    assert.matches("^bwrap: .*nonexistent%-lunas", err)
    assert.is_nil((util.read(dir .. "/status") or ""):find("exit-code", 1, true))
  end)

  -- Starts lunas-bwrap with args, the descriptors of `fds` ({[target] = fd}) in place; returns the process.
  local function start(args, fds)
    local argv = { BWRAP, table.unpack(args) }
    return assert(core.spawn{ fn = function()
      for target, fd in pairs(fds) do assert(core.dup2(fd, target)) end
      core.exec(argv)
      core.exit(127)
    end })
  end

  it("holds --lock-file for as long as the sandbox lives, and --sync-fd open until then, out of the payload's reach",
    function()
      local defer = util.cleanups(finally)
      if not kernel.requires("userns") then return end
      local dir = util.tmpdir()
      defer(function() os.execute("rm -rf " .. q(dir)) end)
      util.write(dir .. "/lock", "")
      os.execute("chmod 0755 " .. q(dir) .. "; chmod 0666 " .. q(dir .. "/lock"))
      local sync_r, sync_w = assert(core.pipe())
      local out_r, out_w = assert(core.pipe())
      -- (with --die-with-parent: killing lunas-bwrap ends the sandbox; without it, as in bubblewrap, it lives on)
      local proc = start({ "--die-with-parent", "--bind", "/", "/", "--lock-file", dir .. "/lock", "--sync-fd", "7", "sh", "-c",
        "echo; ls /proc/self/fd; for f in /proc/self/fd/*; do readlink $f; done; exec sleep 600" },
        { [7] = sync_w, [1] = out_w })
      defer(function() proc:kill("KILL") proc:wait() proc:close() end)
      sync_w:close()
      out_w:close()
      local f = assert(core.open(dir .. "/lock", "rw"))
      defer(function() f:close() end)
      -- held: a write lock of another process is refused at once
      assert(util.wait_for(function()
        local ok, _, code = f:lock("exclusive", { record = true, wait = false })
        if ok then f:lock("unlock", { record = true }) end
        return not ok and (code == "EWOULDBLOCK" or code == "EAGAIN")
      end, 10))
      -- the payload has neither the sync descriptor nor the lock's (every other one of ours it has: bubblewrap
      -- passes them on)
      assert.equal(1, #core.poll({ out_r }, 10))
      local listing = out_r:read(8192)
      assert.is_nil(listing:find("\n7\n", 1, true))
      assert.is_nil(listing:find(dir .. "/lock", 1, true))
      -- the sync descriptor: open (no end of file) while the sandbox runs
      assert.equal(0, #core.poll({ sync_r }, 0.2))
      proc:kill("KILL")
      proc:wait()
      assert(util.wait_for(function() return f:lock("exclusive", { record = true, wait = false }) end, 10))
      assert.equal(1, #core.poll({ sync_r }, 5))
      sync_r:close()
      out_r:close()
    end)

  it("waits for --block-fd before the payload runs", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    local r, w = assert(core.pipe())
    local out_r, out_w = assert(core.pipe())
    local proc = start({ "--ro-bind", "/", "/", "--block-fd", "5", "echo", "released" }, { [5] = r, [1] = out_w })
    defer(function() proc:kill("KILL") proc:wait() proc:close() end)
    out_w:close()
    r:close()
    assert.equal(0, #core.poll({ out_r }, 0.5))
    w:write("x")
    w:close()
    assert.equal(1, #core.poll({ out_r }, 10))
    assert.equal("released\n", out_r:read(100))
    out_r:close()
  end)

  it("loads --seccomp and --add-seccomp-fd programs, the last one first", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    local dir = util.tmpdir()
    defer(function() os.execute("rm -rf " .. q(dir)) end)
    -- programs built with lunas's own compiler: one refuses chmod with EPERM, one with EACCES
    for name, errno in pairs{ eperm = "EPERM", eacces = "EACCES" } do
      local filter = assert(core.seccomp_filter{ default = "allow" })
      for _, call in ipairs{ "chmod", "fchmodat", "fchmodat2" } do filter:add(errno, call) end
      util.write(dir .. "/" .. name, filter:bpf())
      filter:close()
    end
    local out = sh(("bwrap --bind / / --tmpfs /tmp --add-seccomp-fd 8 --add-seccomp-fd 9 sh -c " ..
      "'touch /tmp/x; chmod 600 /tmp/x 2>&1 | sed \"s/.*: //\"' 8<%s/eperm 9<%s/eacces"):format(q(dir), q(dir)))
    assert.equal("Permission denied\n", out)
    out = sh(("bwrap --bind / / --tmpfs /tmp --seccomp 8 sh -c " ..
      "'touch /tmp/x; chmod 600 /tmp/x 2>&1 | sed \"s/.*: //\"' 8<%s/eperm"):format(q(dir)))
    assert.equal("Operation not permitted\n", out)
  end)

  it("returns when the command ends and leaves what it started running under its PID 1, as bubblewrap does",
    function()
      local defer = util.cleanups(finally)
      if not kernel.requires("userns") then return end
      local dir = util.tmpdir()
      defer(function() os.execute("rm -rf " .. q(dir)) end)
      local _, err, code = sh(("bwrap --unshare-pid --dev-bind / / --proc /proc --info-fd 3 sh -c " ..
        "'sleep 300 >/dev/null 2>&1 & exit 7' 3>%s/info"):format(q(dir)))
      assert.equal(7, code, err)
      local reaper = tonumber(util.read(dir .. "/info"):match('"child%-pid": (%d+)'))
      local function children()
        local found = {}
        for _, entry in ipairs(core.listdir("/proc") or {}) do
          if entry:match("^%d+$") and tonumber(util.status_field(entry, "PPid")) == reaper then found[#found + 1] = tonumber(entry) end
        end
        return found
      end
      local left = children()
      for _, pid in ipairs(left) do defer(function() core.kill(pid, "KILL") end) end
      assert.equal(1, #left)
      assert.is_true(util.alive(reaper))
      -- the last process gone, PID 1 goes too
      core.kill(left[1], "KILL")
      assert(util.wait_for(function() return not util.alive(reaper) end, 10))
    end)

  it("ends by SIGTERM as bubblewrap does, its sandbox living on unless --die-with-parent", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    for _, die in ipairs{ false, true } do
      local r, w = assert(core.pipe())
      local args = { "--dev-bind", "/", "/", "sh", "-c", "echo $$; exec sleep 300" }
      if die then table.insert(args, 1, "--die-with-parent") end
      local proc = start(args, { [1] = w })
      defer(function() proc:kill("KILL") proc:wait() proc:close() end)
      w:close()
      assert.equal(1, #core.poll({ r }, 10))
      local payload = tonumber(r:read(64):match("%d+"))
      r:close()
      defer(function() core.kill(payload, "KILL") end)
      assert(util.wait_for(function() return (util.read("/proc/" .. payload .. "/cmdline") or ""):find("sleep", 1, true) end, 10))
      proc:kill("TERM")
      local status = proc:wait()
      assert.equal(15, status.signal)
      if die then
        assert(util.wait_for(function() return not util.alive(payload) end, 10))
      else
        assert.is_true(util.alive(payload))
        core.kill(payload, "KILL")
      end
    end
  end)

  it("mounts a /proc of the pid namespace --pidns joins", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    local dir = util.tmpdir()
    defer(function() os.execute("rm -rf " .. q(dir)) end)
    -- a first sandbox holds its namespaces open until the fifo says; the second joins them with a /proc
    local out, err, code = sh(([[
      d=%s; mkfifo $d/go
      bwrap --dev-bind / / --unshare-user --unshare-pid --info-fd 8 sh -c "readlink /proc/self/ns/pid > $d/ns; cat $d/go" 8>$d/info >/dev/null &
      n=0; while ! test -s $d/ns && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
      p=$(sed -n 's/.*"child-pid": \([0-9]*\).*/\1/p' $d/info)
      bwrap --dev-bind / / --userns 6 --pidns 7 --proc /proc sh -c 'readlink /proc/self/ns/pid; tr "\0" " " < /proc/1/cmdline; echo' 6</proc/$p/ns/user 7</proc/$p/ns/pid
      cat $d/ns; echo done > $d/go; wait]]):format(q(dir)))
    assert.equal(0, code, err)
    local got = lines(out)
    assert.equal(got[3], got[1], out .. err)
    -- PID 1 there is the first sandbox's
    assert.matches("^lunas%-reaper .* readlink /proc/self/ns/pid", got[2])
  end)

  it("gives /dev the terminal it writes to as /dev/console, as bubblewrap does", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    -- (script(1) gives the command a terminal of its own)
    local inner = q(BWRAP) .. " --ro-bind / / --dev /dev sh -c " ..
      q('[ "$(stat -c %t:%T /dev/console)" = "$(stat -L -c %t:%T /proc/self/fd/2)" ] && echo same terminal')
    local out, err, code = util.sh("script -qec " .. q(inner) .. " /dev/null")
    assert.equal(0, code, out .. err)
    assert.matches("same terminal", out)
    -- without a terminal, no console
    out = sh("bwrap --ro-bind / / --dev /dev sh -c 'test -e /dev/console || echo none'")
    assert.equal("none\n", out)
  end)

  it("binds the host's /proc without a pid namespace, its kernel knobs read-only", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("root") then return end
    local out = sh("bwrap --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 " ..
      "/lib64 --proc /proc sh -c 'test -d /proc/$$ && echo host pids; (echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1 | " ..
      "sed \"s/.*: //\"; findmnt -n -o OPTIONS /proc/sys | cut -d, -f1'")
    assert.equal("host pids\nRead-only file system\nro\n", out)
  end)
end)

describe("bubblewrap's rules in both front ends #rootless", function()
  -- lunas run and lunas-bwrap with the same file system options.
  local FRONT_ENDS = {
    bwrap = function(args) return q(BWRAP) .. " " .. args end,
    run = function(args) return q(util.bin) .. " run --no-seccomp " .. args end,
  }

  it("refuse --size 0 and repeated --perms or --size", function()
    local defer = util.cleanups(finally)
    for name, cmd in pairs(FRONT_ENDS) do
      for _, args in ipairs{ "--size 0 --tmpfs /a true", "--perms 0700 --perms 0700 --dir /a true",
        "--size 4096 --size 4096 --tmpfs /a true", "--size 12bogus --tmpfs /a true" } do
        local _, _, code = util.sh(cmd(args))
        assert.equal(name == "run" and 2 or 1, code, name .. " " .. args)
      end
    end
  end)

  -- What each front end needs besides user namespaces: lunas run, run by root, idmaps what it makes writable.
  local NEEDS = { bwrap = { "userns" }, run = { "userns", "idmap" } }

  for _, name in ipairs{ "bwrap", "run" } do
    it(name .. ": gives parents the mode --perms implies, a file mount point 0444 and --file 0666, and leaves an " ..
      "existing directory alone", function()
      local defer = util.cleanups(finally)
      if not kernel.requires(table.unpack(NEEDS[name])) then return end
      local cmd = FRONT_ENDS[name]
      local dir = util.tmpdir()
      defer(function() os.execute("chmod -R u+rwx " .. q(dir) .. "; rm -rf " .. q(dir)) end)
      os.execute("chmod 0755 " .. q(dir) .. "; mkdir -m 0710 " .. q(dir .. "/existing"))
      util.write(dir .. "/src", "x")
      local _, err, code = util.sh(cmd(("--ro-bind / / --bind %s %s --perms 0700 --dir %s/p700/d --perms 0750 --dir %s/p750/d " ..
        "--bind %s/src %s/mountpoint --perms 0755 --dir %s/existing true 3</dev/null"):format(q(dir), q(dir), q(dir),
        q(dir), q(dir), q(dir), q(dir))))
      assert.equal(0, code, name .. ": " .. err)
      local function mode(path) return select(3, core.file_type(dir .. "/" .. path)) end
      assert.equal(448, mode("p700"), name)       -- 0700
      assert.equal(488, mode("p750"), name)       -- 0750
      assert.equal(292, mode("mountpoint"), name) -- 0444
      assert.equal(456, mode("existing"), name)   -- 0710, as it was
      local out
      out, err = util.sh(cmd("--ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink " ..
        "usr/lib64 /lib64 --file 0 /f stat -c %a /f"), { stdin = "data" })
      assert.equal("666\n", out, name .. ": " .. err)
    end)
  end
end)

describe("overlays of paths with overlayfs's separators #rootless", function()
  local FRONT_ENDS = { bwrap = q(BWRAP) .. " --ro-bind / /", run = q(util.bin) .. " run --no-seccomp --default-tree" }
  -- lunas run, run by root, idmaps the upper layer it makes writable
  local NEEDS = { bwrap = { "userns" }, run = { "userns", "idmap" } }

  -- An overlay of layers under dir: nil, or the error when it fails.
  local function overlay_in(cmd, dir)
    os.execute(("mkdir -p %s/lower %s/upper %s/work && echo layer > %s/lower/f && chmod -R a+rwX %s"):format(
      q(dir), q(dir), q(dir), q(dir), q(dir)))
    local out, err, code = util.sh(("%s --overlay-src %s/lower --overlay %s/upper %s/work /mnt -- sh -c " ..
      "'cat /mnt/f; echo written > /mnt/g'"):format(cmd, q(dir), q(dir), q(dir)))
    if code ~= 0 then return err end
    assert.equal("layer\n", out)
    assert.equal("written\n", util.read(dir .. "/upper/g"))
  end

  for _, name in ipairs{ "bwrap", "run" } do
    it(name .. ": takes ':' and '\\' in every layer's path, and ',' where the kernel takes it", function()
      local defer = util.cleanups(finally)
      if not kernel.requires(table.unpack(NEEDS[name])) then return end
      local base = util.tmpdir()
      defer(function() os.execute("chmod -R u+rwx " .. q(base) .. "; rm -rf " .. q(base)) end)
      os.execute("chmod 0755 " .. q(base))
      assert.is_nil(overlay_in(FRONT_ENDS[name], base .. "/a:b\\c"))
      -- A kernel that takes overlayfs's options as one string (before 6.5) refuses a comma in any of them, escaped
      -- or not ("VFS: Legacy: Option 'upperdir' contained comma", EINVAL): then the sandbox fails saying so.
      local err = overlay_in(FRONT_ENDS[name], base .. "/d,e")
      if err then assert.is_truthy(err:find("comma", 1, true) or err:find("Invalid argument", 1, true), err) end
    end)
  end
end)

describe("lunas run with bubblewrap's descriptor options #rootless", function()
  it("takes --args, --bind-data, --info-fd and --json-status-fd", function()
    local defer = util.cleanups(finally)
    if not kernel.requires("userns") then return end
    local dir = util.tmpdir()
    defer(function() os.execute("rm -rf " .. q(dir)) end)
    util.write(dir .. "/args", "--setenv\0PROBE\0from-args\0")
    local out, err, code = util.sh(("%s run --default-tree --args 8 --bind-data 0 /tmp/probe --info-fd 9 -- sh -c " ..
      "'echo $PROBE; cat /tmp/probe; stat -c %%a /tmp/probe' 8<%s 9>%s/info"):format(q(util.bin), q(dir .. "/args"),
      q(dir)), { stdin = "bound data\n" })
    assert.equal(0, code, err)
    assert.equal("from-args\nbound data\n600\n", out)
    assert.matches('^{\n    "child%-pid": %d+,\n    "cgroup%-namespace": %d+', util.read(dir .. "/info"))
  end)
end)

describe("lunas-bwrap's SELinux labels #root #lsm", function()
  it("--exec-label and --file-label behind its PID 1 where SELinux runs; ignored, as bubblewrap does, where not", function()
    local script = "bwrap --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp --unshare-pid"
      .. " --exec-label system_u:system_r:initrc_t:s0 --file-label system_u:object_r:tmp_t:s0"
      .. " sh -c 'cat /proc/self/attr/current 2>/dev/null | tr -d \"\\000\"; echo; stat -c %C /tmp; echo $$'"
    local out, err, code = sh(script)
    assert.equal(0, code, err)
    -- (without SELinux the same command line runs, the labels left out)
    if not require("lunas.lsm").enabled().selinux then assert.matches("\n2\n$", out) end
    if not kernel.requires("selinux") then return end
    -- the payload is pid 2: bubblewrap's PID 1 keeps the caller's context, the payload execs in the label
    assert.equal("system_u:system_r:initrc_t:s0\nsystem_u:object_r:tmp_t:s0\n2\n", out)
  end)
end)
