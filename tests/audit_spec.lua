-- lunas audit: the escape battery (lua/lunas/audit.lua) run by the host binary inside the sandbox that run's
-- options, a recipe or another tool's command make. Checked from outside: the exit status, the JSON document
-- against the battery's own list, the attempts that must escape from a weakened sandbox (and hold in the default
-- one), and the fixtures gone afterwards (the scratch directory under TMPDIR, the processes that ran from it).

local util = require "support.util"
local kernel = require "support.kernel"
local json = require "lunas.json"
local audit = require "lunas.audit"

local PROBE = util.build .. "/libexec/lunas/lunas-probe"

-- Runs `lunas audit ARGS...` with TMPDIR a fresh directory; returns stdout (stderr apart), the exit status,
-- stderr, and checks that the audit left nothing there nor running from there.
local function lunas_audit(args)
  local dir, rm = util.tmpdir()
  local words = { "TMPDIR=" .. util.quote(dir), util.quote(util.bin), "audit" }
  for _, a in ipairs(args) do words[#words + 1] = util.quote(a) end
  local errfile = dir .. ".err"
  local p = assert(io.popen(table.concat(words, " ") .. " 2>" .. util.quote(errfile), "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = util.read(errfile) or ""
  os.remove(errfile)
  local left = util.run{ "ls", "-A", dir }
  for _, entry in ipairs(require("lunas.core").listdir("/proc")) do
    local cmdline = entry:match("^%d+$") and util.read("/proc/" .. entry .. "/cmdline") or ""
    assert.is_nil(cmdline:find(dir, 1, true), "a fixture still runs: " .. cmdline)
  end
  rm()
  assert.are.equal("", left, "the audit left files in TMPDIR")
  return out, code, err
end

local function by_key(doc)
  local t = {}
  for _, a in ipairs(doc.attempts) do t[a.id .. "/" .. tostring(a.uid)] = a end
  return t
end

-- The summary must be the tally of the attempts, and the attempts exactly the battery, once per uid.
local function check_document(doc, uids)
  assert.are.equal(#audit.ATTEMPTS * #uids, #doc.attempts)
  local tally = { held = 0, escaped = 0, ["n/a"] = 0, inconclusive = 0 }
  for _, a in ipairs(doc.attempts) do tally[a.outcome] = tally[a.outcome] + 1 end
  for k, n in pairs(tally) do assert.are.equal(n, doc.summary[k], k) end
  assert.are.equal(#doc.attempts, doc.summary.total)
  local keys = by_key(doc)
  for _, uid in ipairs(uids) do
    for _, a in ipairs(audit.ATTEMPTS) do
      assert.is_table(keys[a.id .. "/" .. tostring(uid)], a.id .. " as uid " .. tostring(uid))
    end
  end
  return keys
end

describe("lunas audit #root", function()
  it("holds every attempt in the default sandbox, as uid 0 and uid 1000, and says how", function()
    if not kernel.requires("userns") then return end
    local out, code, err = lunas_audit{ "--json" }
    assert.are.equal(0, code, err .. out)
    local doc = json.decode(out)
    local keys = check_document(doc, { 0, 1000 })
    assert.are.equal(0, doc.summary.escaped)
    assert.are.equal(0, doc.summary.inconclusive)
    for _, uid in ipairs{ 0, 1000 } do
      local function how(id) return keys[id .. "/" .. uid].how end
      assert.are.equal("seccomp filter (mount, EPERM)", how("mount"))
      assert.are.equal("seccomp: killed (SIGSYS)", how("i386"))
      assert.matches("network namespace", how("connect-host"))
      assert.matches("pid namespace", how("kill"))
      assert.are.equal("descriptors beyond 0-2 closed (EBADF)", how("fds"))
      assert.are.equal("EPERM", keys["caps/" .. uid].output:match("^%S+"))
    end
    -- the text report: one line per attempt, the summary last
    out, code = lunas_audit{}
    assert.are.equal(0, code, out)
    local lines = util.lines(out)
    assert.are.equal("lunas audit: lunas run (defaults)", lines[1])
    assert.matches("^ATTEMPT%s+SEVERITY%s+UID 0%s+UID 1000%s+HOW$", lines[2])
    assert.are.equal(#audit.ATTEMPTS + 3, #lines)
    assert.matches(("^%d runs %%(%d attempts x 2 uids%%): %%d+ held, 0 escaped, %%d+ n/a, 0 inconclusive$"):format(
      2 * #audit.ATTEMPTS, #audit.ATTEMPTS), lines[#lines])
  end)

  it("reports the escapes of a weakened sandbox, which the default one holds, and exits 1", function()
    if not kernel.requires("userns") then return end
    local out, code, err = lunas_audit{ "--json", "--share-net", "--cap-add", "ALL", "--as-pid-1", "--no-seccomp",
      "--share-keyring", "--share-session", "--uid", "1234" }
    assert.are.equal(1, code, err .. out)
    local keys = check_document(json.decode(out), { 0, 1234 })
    for _, uid in ipairs{ 0, 1234 } do
      for _, id in ipairs{ "connect-host", "caps", "mount", "keyring", "session", "io-uring", "unshare-user",
        "chmod-suid", "i386" } do
        assert.are.equal("escaped", keys[id .. "/" .. uid].outcome, id .. " as uid " .. uid)
      end
      -- what still holds: the pid namespace, the closed descriptors, the host's ids
      assert.are.equal("held", keys["kill/" .. uid].outcome)
      assert.are.equal("held", keys["fds/" .. uid].outcome)
      assert.are.equal("held", keys["shadow/" .. uid].outcome)
      -- without the filter, an EPERM is a capability's doing
      assert.are.equal("capabilities count only in the initial user namespace", keys["bpf/" .. uid].how)
    end
    -- each option alone opens its own hole
    out, code = lunas_audit{ "--json", "--share-net" }
    assert.are.equal(1, code, out)
    keys = by_key(json.decode(out))
    assert.are.equal("escaped", keys["connect-host/0"].outcome)
    assert.are.equal("held", keys["mount/0"].outcome)
  end)

  it("audits the sandbox a recipe returns, or a function returns", function()
    if not kernel.requires("userns") then return end
    local dir, rm = util.tmpdir()
    finally(rm)
    util.write(dir .. "/weak.lua", 'return { net = "host" }\n')
    util.write(dir .. "/fn.lua", 'return function() return { hostname = "audited" } end\n')
    util.write(dir .. "/bad.lua", 'return 42\n')
    local out, code = lunas_audit{ "--json", "--recipe", dir .. "/weak.lua" }
    assert.are.equal(1, code, out)
    local keys = check_document(json.decode(out), { 0, 1000 })
    assert.are.equal("escaped", keys["connect-host/0"].outcome)
    assert.are.equal("escaped", keys["connect-host/1000"].outcome)
    out, code = lunas_audit{ "--json", "--recipe", dir .. "/fn.lua" }
    assert.are.equal(0, code, out)
    local err
    out, code, err = lunas_audit{ "--recipe", dir .. "/bad.lua" }
    assert.are.equal(2, code, out)
    assert.matches("must return a sandbox spec", err, 1, true)
  end)

  for _, tool in ipairs{ "lunas-bwrap", "bwrap" } do
    it("audits another tool's sandbox by running the probe as its command: " .. tool, function()
      if not kernel.requires("userns") then return end
      local bin = tool == "bwrap" and "/usr/bin/bwrap" or util.build .. "/bin/lunas-bwrap"
      if not util.read(bin) and tool == "bwrap" then pending("bubblewrap is not installed") return end
      local prefix = util.quote(bin) .. " --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent"
      local out, code, err = lunas_audit{ "--json", "--wrap", prefix }
      local doc = json.decode(out)
      local keys = check_document(doc, { json.null })
      assert.are.equal(1, code, err) -- bubblewrap's defaults: descriptors and the session are passed on
      assert.are.equal("wrapped: " .. bin .. " --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent",
        doc.sandbox)
      local function row(id) return keys[id .. "/null"] end
      assert.are.equal("held", row("connect-host").outcome)
      assert.matches("network namespace", row("connect-host").how)
      assert.are.equal("held", row("kill").outcome)
      assert.are.equal("escaped", row("fds").outcome) -- bwrap closes no descriptor it inherits
      assert.matches("marker", row("fds").how)
      assert.are.equal("escaped", row("keyring").outcome)
      -- the host's /tmp is shown read-only: the scratch directory's file attempts mean something
      assert.are.equal("held", row("write-host").outcome)
      assert.are.equal("read-only mount (EROFS)", row("write-host").how)
      -- without a filter of known content, an EPERM is not attributed to one or the other
      for _, a in ipairs(doc.attempts) do
        if a.how:match("^seccomp filter") then error("attributed to a filter it cannot know: " .. a.id) end
      end
    end)
  end

  it("finds the probe where --probe-path says, and calls the attempts that need its scratch directory n/a", function()
    if not kernel.requires("userns") then return end
    local prefix = ("%s --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --ro-bind %s /tmp/probe --unshare-all")
      :format(util.quote(util.build .. "/bin/lunas-bwrap"), util.quote(PROBE))
    local out, code = lunas_audit{ "--json", "--wrap", prefix, "--probe-path", "/tmp/probe" }
    local keys = check_document(json.decode(out), { json.null })
    assert.are.equal(1, code, out)
    assert.are.equal("n/a", keys["symlink/null"].outcome)
    assert.are.equal("n/a", keys["write-host/null"].outcome)
    assert.are.equal("held", keys["kill/null"].outcome)
    -- and without it, a probe the wrapped tool cannot show is inconclusive everywhere, never held
    out, code = lunas_audit{ "--json", "--wrap", util.build .. "/bin/lunas-bwrap --ro-bind /usr /usr --unshare-all" }
    assert.are.equal(1, code, out)
    local doc = json.decode(out)
    assert.are.equal(#audit.ATTEMPTS, doc.summary.inconclusive + doc.summary["n/a"])
    assert.are.equal(0, doc.summary.held)
  end)

  it("runs its static probe in a tree that has nothing else (--rootfs, --probe-path)", function()
    if not kernel.requires("userns", "idmap") then return end
    local dir, rm = util.tmpdir()
    finally(rm)
    assert.is_true(os.execute(("chmod 755 %s && mkdir -p %s/proc %s/dev %s/tmp && cp %s %s/probe"):format(
      util.quote(dir), util.quote(dir), util.quote(dir), util.quote(dir), util.quote(PROBE), util.quote(dir))))
    local out, code, err = lunas_audit{ "--json", "--rootfs", dir, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
      "--probe-path", "/probe" }
    assert.are.equal(0, code, err .. out)
    local doc = json.decode(out)
    local keys = check_document(doc, { 0, 1000 })
    assert.are.equal(0, doc.summary.inconclusive)
    assert.are.equal("n/a", keys["symlink/0"].outcome)
    assert.are.equal("held", keys["mount/1000"].outcome)
  end)

  it("refuses misuse with status 2", function()
    for _, args in ipairs{ { "--", "true" }, { "--wrap", "" }, { "--wrap", "bwrap 'x" }, { "--wrap", "x", "--uid", "5" },
      { "--recipe", "/nonexistent.lua" }, { "--uid", "x" }, { "--bogus" }, { "--probe-path", "rel" } } do
      local out, code = lunas_audit(args)
      assert.are.equal(2, code, table.concat(args, " ") .. ": " .. out)
    end
    local out, code = lunas_audit{ "--print-probe" }
    assert.are.equal(0, code)
    assert.are.equal(util.run{ "realpath", PROBE }, out)
  end)
end)

describe("lunas audit by whoever runs it #rootless", function()
  it("holds every attempt of the default sandbox (as root, or as an unprivileged user)", function()
    if not kernel.requires("userns") then return end
    local out, code, err = lunas_audit{ "--json" }
    assert.are.equal(0, code, err .. out)
    local doc = json.decode(out)
    check_document(doc, { 0, 1000 })
    assert.are.equal(0, doc.summary.escaped)
    assert.are.equal(0, doc.summary.inconclusive)
  end)
end)

describe("lunas.audit.judge #rootless", function()
  local function attempt(id)
    for _, a in ipairs(audit.ATTEMPTS) do if a.id == id then return a end end
  end
  local DEFAULT = { seccomp = require("lunas.security").check_profile("seccomp", nil) }
  it("tells the filter from a capability only when it knows the filter", function()
    assert.are.equal("seccomp filter (mount, EPERM)", audit.judge(attempt("mount"), "EPERM", nil, DEFAULT).how)
    assert.are.equal("no capability", audit.judge(attempt("mount"), "EPERM", nil, { seccomp = false }).how)
    assert.matches("not told apart", audit.judge(attempt("mount"), "EPERM", nil, nil).how)
    local allowed = { seccomp = require("lunas.security").check_profile("seccomp", { allow = { "mount" } }) }
    assert.are.equal("no capability", audit.judge(attempt("mount"), "EPERM", nil, allowed).how)
  end)
  it("counts a call that got past the permission checks as an escape, ENOSYS as n/a", function()
    assert.are.equal("escaped", audit.judge(attempt("reboot"), "EINVAL", nil, DEFAULT).outcome)
    assert.are.equal("held", audit.judge(attempt("reboot"), "EPERM", nil, DEFAULT).outcome)
    assert.are.equal("n/a", audit.judge(attempt("kexec"), "ENOSYS", nil, { seccomp = false }).outcome)
    assert.are.equal("held", audit.judge(attempt("i386"), "", "SYS", nil).outcome)
    assert.are.equal("inconclusive", audit.judge(attempt("mount"), "", "SEGV", nil).outcome)
    assert.are.equal("inconclusive", audit.judge(attempt("mount"), "bwrap: execvp /x: No such file", nil, nil).outcome)
    assert.are.equal("escaped", audit.judge(attempt("caps"), "ok CapEff=1", nil, nil).outcome)
  end)
end)
