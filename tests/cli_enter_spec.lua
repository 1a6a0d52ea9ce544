-- `lunas enter`: joins the namespaces of a running sandbox (by pid) or a persisted network namespace (by name),
-- checked from outside: the namespace links of the entered command against the target's /proc/PID/ns, the host
-- name, files only the target's tree has, exit statuses.

local lunas = require "lunas"
local core = require "lunas.core"
local kernel = require "support.kernel"
local util = require "support.util"
local lfs = require "lfs"

local BUILD = os.getenv("LUNAS_BUILD") or ((os.getenv("LUNAS_ROOT") or ".") .. "/build")
local LUNAS = BUILD .. "/bin/lunas"
local KINDS = { "user", "pid", "mnt", "uts", "ipc", "net", "cgroup" }

-- A sandbox that leaves a marker in its private /tmp and sleeps; returned once the marker is there.
local function target(extra)
  local spec = { argv = { "/bin/sh", "-c", "echo inside > /tmp/marker; exec sleep 60" }, hostname = "entered" }
  for k, v in pairs(extra or {}) do spec[k] = v end
  local running = lunas.sandbox(spec):spawn()
  util.wait_for(function()
    local pid = running:payload_pid()
    return pid and (util.read("/proc/" .. pid .. "/comm") or "") == "sleep\n"
  end, 10)
  return running
end

-- What the entered command reports: its namespace links, one per line as "kind link", then extra lines.
local NS_SCRIPT = "for n in " .. table.concat(KINDS, " ") .. "; do echo \"$n $(readlink /proc/self/ns/$n)\"; done"

local function links_of(pid)
  local t = {}
  for _, n in ipairs(KINDS) do t[n] = lfs.symlinkattributes("/proc/" .. pid .. "/ns/" .. n, "target") end
  return t
end

local function parse_links(out)
  local t = {}
  for n, link in out:gmatch("(%a+) (%a+:%[%d+%])") do t[n] = link end
  return t
end

describe("lunas enter #rootless", function()
  it("runs a command in every namespace of a running sandbox", function()
    if not kernel.requires("userns") then return end
    local running <close> = target()
    local out, code = util.run{ LUNAS, "enter", tostring(running.pid), "--", "/bin/sh", "-c",
      NS_SCRIPT .. "; hostname; cat /tmp/marker" }
    assert.equal(0, code, out)
    assert.same(links_of(running.pid), parse_links(out))
    assert.matches("\nentered\ninside\n$", out)
  end)

  it("joins only the namespaces asked for", function()
    if not kernel.requires("userns") then return end
    local running <close> = target()
    local out, code = util.run{ LUNAS, "enter", tostring(running.pid), "--user", "--uts", "--", "/bin/sh", "-c",
      NS_SCRIPT .. "; hostname; test -e /tmp/marker || echo no-marker" }
    assert.equal(0, code, out)
    local theirs, ours, got = links_of(running.pid), links_of("self"), parse_links(out)
    assert.equal(theirs.uts, got.uts)
    assert.equal(theirs.user, got.user)
    for _, n in ipairs{ "mnt", "net", "ipc", "pid" } do assert.equal(ours[n], got[n], n) end
    assert.matches("\nentered\nno%-marker\n$", out)
  end)

  it("takes the target's working directory with --wd", function()
    if not kernel.requires("userns") then return end
    local running <close> = target{ cwd = "/tmp", as_pid_1 = true }
    local out, code = util.run{ LUNAS, "enter", tostring(running.pid), "--wd", "--", "/bin/pwd" }
    assert.equal(0, code, out)
    assert.equal("/tmp\n", out)
    out = util.run{ LUNAS, "enter", tostring(running.pid), "--", "/bin/pwd" }
    assert.equal("/\n", out) -- joining a mount namespace starts at its root
  end)

  it("passes on the command's exit status and signal, and says why it could not enter", function()
    if not kernel.requires("userns") then return end
    local running <close> = target()
    local pid = tostring(running.pid)
    assert.equal(7, select(2, util.run{ LUNAS, "enter", pid, "--", "/bin/sh", "-c", "exit 7" }))
    assert.equal(128 + 15, select(2, util.run{ LUNAS, "enter", pid, "--", "/bin/sh", "-c", "kill -TERM $$" }))
    local out, code = util.run{ LUNAS, "enter", "4194304", "--", "true" }
    assert.equal(125, code, out)
    assert.equal("lunas enter: no process 4194304\n", out)
    out, code = util.run{ LUNAS, "enter", "lunas-no-such-netns", "--", "true" }
    assert.equal(125, code, out)
    assert.matches("/run/netns/lunas%-no%-such%-netns", out)
    for _, argv in ipairs{ { "enter" }, { "enter", pid, "--bogus" }, { "enter", "somename", "--net", "--", "true" } } do
      out, code = util.run{ LUNAS, table.unpack(argv) }
      assert.equal(2, code, out)
      assert.matches("^lunas enter: ", out)
    end
  end)
end)

describe("lunas enter with a root of its own #root", function()
  it("takes the target's root with --root (a chroot inside its mount namespace)", function()
    local defer = util.cleanups(finally)
    local dir, rm = util.tmpdir()
    defer(rm)
    os.execute("chmod 755 " .. util.quote(dir)) -- the root of a sandbox whose ids, root's range, own nothing here
    local probe = BUILD .. "/tests/escape-probe"
    -- a jail holding a copy of the probe and the libraries it needs, and a marker only the jail has
    local q = util.quote
    assert.is_true(os.execute(("mkdir -p %s/jail %s/proc && cp %s %s/jail/probe && echo jailed > %s/jail/marker && "
      .. "for l in $(ldd %s | grep -o '/[^ ]*'); do cp --parents \"$l\" %s/jail; done"):format(q(dir), q(dir), q(probe),
      q(dir), q(dir), q(probe), q(dir))))
    local r, w = assert(core.pipe())         -- the test holds w: the target waits on r until the test ends
    local ready_r, ready_w = assert(core.pipe()) -- the target says it is chrooted
    local running <close> = lunas.sandbox{ caps = "keep", seccomp = false, as_pid_1 = true, mounts = {
      { "ro-bind", dir, "/" }, { "proc", "/proc" } }, fn = function()
        assert(core.chroot("/jail"))
        assert(core.chdir("/"))
        ready_w:write("1")
        r:read(1)
      end }:spawn()
    defer(function() for _, f in ipairs{ r, w, ready_r, ready_w } do f:close() end end)
    ready_w:close()
    assert.equal("1", ready_r:read(1))
    local out, code = util.run{ LUNAS, "enter", tostring(running.pid), "--root", "--", "/probe", "read", "/marker" }
    assert.equal(0, code, out)
    assert.equal("ok 7 bytes\n", out)
    out, code = util.run{ LUNAS, "enter", tostring(running.pid), "--", "/probe", "read", "/marker" }
    assert.are_not.equal(0, code, out) -- without --root: the namespace's root, where /probe is not
  end)
end)

describe("lunas enter a network namespace by name #root", function()
  it("runs a command in a namespace ip netns made, as ip netns exec does", function()
    local name = "lunas-enter-" .. core.getpid()
    assert.equal(0, select(2, util.run{ "ip", "netns", "add", name }))
    finally(function() util.run{ "ip", "netns", "delete", name } end)
    local out, code = util.run{ LUNAS, "enter", name, "--", "/bin/sh", "-c", "readlink /proc/self/ns/net; ip -o link" }
    assert.equal(0, code, out)
    local inode = util.run{ "stat", "-L", "-c", "%i", "/run/netns/" .. name }
    assert.matches("^net:%[" .. inode:gsub("%s", "") .. "%]\n1: lo: ", out)
    assert.equal(2, #util.lines(out))
  end)
end)

describe("lunas run --json-status #rootless", function()
  local json = require "lunas.json"

  it("writes the child's pid and namespaces once it runs, then how it ended, to a file or a descriptor", function()
    if not kernel.requires("userns") then return end
    local dir, rm = util.tmpdir()
    finally(rm)
    -- the command prints what it sees of itself, to compare with what the status line said from outside
    local out, code = util.run({ LUNAS, "run", "--json-status", dir .. "/status", "--", "/bin/sh", "-c",
      "readlink /proc/self/ns/net /proc/self/ns/pid; sleep 0.2; exit 3" }, { stderr = false })
    assert.equal(3, code, out)
    local lines = util.lines(util.read(dir .. "/status"))
    assert.equal(2, #lines)
    local started, ended = json.decode(lines[1]), json.decode(lines[2])
    assert.is_true(math.type(started["child-pid"]) == "integer")
    assert.equal(("net:[%d]\npid:[%d]\n"):format(started.namespaces.net, started.namespaces.pid), out)
    assert.equal(3, ended["exit-code"])
    assert.is_false(ended["timed-out"])
    assert.is_true(ended.elapsed >= 0.2)
    -- a descriptor given by number; a timeout reported as such
    out, code = util.run({ "/bin/sh", "-c", util.quote(LUNAS) .. " run --json-status 7 --timeout 0.2 -- sleep 5 7>"
      .. util.quote(dir .. "/fd") },
      { stderr = false })
    assert.equal(124, code, out)
    lines = util.lines(util.read(dir .. "/fd"))
    ended = json.decode(lines[2])
    assert.is_true(ended["timed-out"])
    assert.equal(9, ended.signal)
    out, code = util.run{ LUNAS, "run", "--json-status", "9", "--", "true" }
    assert.equal(2, code, out)
    assert.matches("descriptor 9 is not open", out)
  end)
end)
