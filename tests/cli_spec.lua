-- The host binary `lunas`: recipes (SCRIPT, -, -e, -i), the environment it ignores, and `lunas run`.
-- Everything is observed from outside lunas: exit codes, what lunas prints, what plain tools (readlink, id,
-- env, ls, sh) print inside the sandbox, and /proc of the processes lunas started.

local core = require "lunas.core"
local lfs = require "lfs"
local util = require "support.util"
local kernel = require "support.kernel"

-- ---- helpers ------------------------------------------------------------------------------------------------

local function shell_words(argv)
  local words = {}
  for i, w in ipairs(argv) do words[i] = util.quote(w) end
  return table.concat(words, " ")
end

local sh = util.sh

-- The shell command line that runs argv, with env (a table) added to its environment.
local function command(argv, env)
  local prefix = ""
  if env then
    local names = {}
    for k in pairs(env) do names[#names + 1] = k end
    table.sort(names)
    local assignments = {}
    for _, k in ipairs(names) do assignments[#assignments + 1] = k .. "=" .. util.quote(env[k]) end
    prefix = "env " .. table.concat(assignments, " ") .. " "
  end
  return prefix .. shell_words(argv)
end

-- The shell command line that runs lunas with args.
local function lunas_command(args, env)
  return command({ util.bin, table.unpack(args) }, env)
end

-- Runs lunas: stdout, stderr, exit code. opts.env (added variables), opts.stdin.
local function lunas(args, opts)
  opts = opts or {}
  return sh(lunas_command(args, opts.env), opts)
end

-- The arguments of `lunas run OPTIONS -- CMD...`.
local function run_args(options, cmd)
  local args = { "run" }
  for _, o in ipairs(options) do args[#args + 1] = o end
  args[#args + 1] = "--"
  for _, c in ipairs(cmd) do args[#args + 1] = c end
  return args
end

local function run(options, cmd, opts)
  return lunas(run_args(options, cmd), opts)
end

local lines = util.lines

local function first_line(s)
  return s:match("^([^\n]*)")
end

local function readlink(path)
  return lfs.symlinkattributes(path, "target")
end

local function own_ids()
  local status = util.read("/proc/self/status")
  local euid = status:match("\nUid:%s+%d+%s+(%d+)")
  local egid = status:match("\nGid:%s+%d+%s+(%d+)")
  return tonumber(euid), tonumber(egid)
end

local function is_root()
  return (own_ids()) == 0
end

local function hostname()
  return (util.read("/proc/sys/kernel/hostname"):gsub("\n$", ""))
end

local words = util.words

local function tmpfile(dir, name, content)
  local path = dir .. "/" .. name
  util.write(path, content)
  return path
end

-- Processes, from /proc: parent pid, cmdline, NSpid.
local function ppid_of(pid)
  local stat = util.read("/proc/" .. pid .. "/stat")
  return stat and tonumber(stat:match("^.*%) %a (%d+)"))
end

local function children(ppid)
  local out = {}
  for name in lfs.dir("/proc") do
    local pid = tonumber(name)
    if pid and ppid_of(pid) == ppid then out[#out + 1] = pid end
  end
  table.sort(out)
  return out
end

local function descendants(pid)
  local out, queue = {}, { pid }
  while #queue > 0 do
    local p = table.remove(queue, 1)
    for _, c in ipairs(children(p)) do
      out[#out + 1] = c
      queue[#queue + 1] = c
    end
  end
  return out
end

local function cmdline(pid)
  return util.read("/proc/" .. pid .. "/cmdline")
end

local function last_nspid(pid)
  local nspid = util.status_field(pid, "NSpid")
  return nspid and nspid:match("(%d+)%s*$")
end

local function kill(pid, sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig or "KILL", pid))
end

local NAMESPACES = { "user", "pid", "net", "ipc", "uts", "cgroup", "mnt" }
local NS_PROBE = 'for n in user pid net ipc uts cgroup mnt; do echo "$n $(readlink /proc/self/ns/$n)"; done'

-- ---- recipes -------------------------------------------------------------------------------------------------

describe("lunas SCRIPT #rootless", function()
  local dir, remove_dir
  before_each(function() dir, remove_dir = util.tmpdir() end)
  after_each(function() remove_dir() end)

  it("passes the arguments in ... and in arg, sets the global lunas, and propagates os.exit", function()
    local script = tmpfile(dir, "args.lua", [[
local n = select("#", ...)
print("n=" .. n)
for i = 1, n do print("dots[" .. i .. "]=" .. select(i, ...)) end
print("arg0=" .. arg[0])
print("#arg=" .. #arg)
for i = 1, #arg do print("arg[" .. i .. "]=" .. arg[i]) end
print("global=" .. tostring(lunas == require "lunas"))
print("sandbox=" .. type(lunas.sandbox) .. (lunas.sandbox == require("lunas.sandbox") and "" or " (not the module)"))
os.exit(42)
]])
    local out, err, code = lunas({ script, "one", "", "two words" })
    assert.are.equal("", err)
    assert.are.equal(42, code)
    assert.are.equal(table.concat({
      "n=3", "dots[1]=one", "dots[2]=", "dots[3]=two words",
      "arg0=" .. script, "#arg=3", "arg[1]=one", "arg[2]=", "arg[3]=two words",
      "global=true", "sandbox=table", "",
    }, "\n"), out)
  end)

  it("exits 0 when the script ends normally and with os.exit's code otherwise", function()
    local ok = tmpfile(dir, "ok.lua", "print('done')\n")
    local out, err, code = lunas({ ok })
    assert.are.same({ "done\n", "", 0 }, { out, err, code })
    local three = tmpfile(dir, "three.lua", "os.exit(3)\n")
    _, _, code = lunas({ three })
    assert.are.equal(3, code)
    local fails = tmpfile(dir, "false.lua", "os.exit(false)\n")
    _, _, code = lunas({ fails })
    assert.are.equal(1, code)
  end)

  it("reports a script error as 'lunas: FILE:LINE: message' on stderr and exits 1", function()
    local script = tmpfile(dir, "fail.lua", "-- a recipe\nlocal x = 1\nerror('recipe failed here')\nprint('unreached')\n")
    local out, err, code = lunas({ script })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("lunas: " .. script .. ":3: recipe failed here", first_line(err))
  end)

  it("refuses a recipe with a syntax error or a missing script as bad input (exit 2), running nothing of it", function()
    -- the first line would create a file: it must not run when a later line does not parse
    local marker = dir .. "/ran"
    local script = tmpfile(dir, "syntax.lua", ("io.open(%q, 'w'):close()\nlocal x = 1\nlocal = 2\n"):format(marker))
    local out, err, code = lunas({ script })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("lunas: " .. script .. ":3: <name> expected near '='\n", err)
    assert.is_nil(util.read(marker), "the recipe ran")
    _, err, code = lunas({ dir .. "/missing.lua" })
    assert.are.equal(2, code)
    assert.matches("^lunas: cannot open " .. (dir .. "/missing.lua"):gsub("%p", "%%%0"), err)
    _, err, code = lunas({ "-e", "x = = 1" })
    assert.are.equal(2, code)
    assert.matches("^lunas: %(command line%):1: ", err)
  end)

  it("reports a lunas error raised inside the library at the recipe's line, not a lunas/*.lua one", function()
    kernel.requires("userns")
    local script = tmpfile(dir, "exec.lua", "-- line 1\nlocal unused = 2\nlunas.sandbox{argv={\"/nonexistent\"}}:run()\nprint('unreached')\n")
    local out, err, code = lunas({ script })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("lunas: " .. script .. ":3: sandbox: exec: /nonexistent: No such file or directory\n", err)
  end)

  it("reports library errors at the line of -e code and of a script read from stdin", function()
    kernel.requires("userns")
    local _, err, code = lunas({ "-e", "local x = 1\nlunas.sandbox{argv={'/nonexistent'}}:run()" })
    assert.are.equal(1, code)
    assert.are.equal("lunas: (command line):2: sandbox: exec: /nonexistent: No such file or directory\n", err)
    _, err, code = lunas({ "-" }, { stdin = "\n\nlunas.sandbox{argv={'/nonexistent'}}:run()\n" })
    assert.are.equal(1, code)
    assert.are.equal("lunas: stdin:3: sandbox: exec: /nonexistent: No such file or directory\n", err)
  end)

  it("runs several sandboxes one after another in one recipe", function()
    kernel.requires("userns")
    local script = tmpfile(dir, "several.lua", [[
for _, spec in ipairs({
  { argv = { "/bin/true" } },
  { argv = { "/bin/false" } },
  { argv = { "/bin/sh", "-c", "exit 3" } },
  { argv = { "/bin/sh", "-c", "exit 4" }, as_pid_1 = true },
  { argv = { "/bin/sh", "-c", "exit 5" } },
}) do
  print(lunas.sandbox(spec):run().status)
end
]])
    local out, err, code = lunas({ script })
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("0\n1\n3\n4\n5\n", out)
  end)

  it("leaves the recipe's own process as it was: its /proc files still belong to the caller", function()
    kernel.requires("userns")
    -- $PPID of the shell os.execute starts is the lunas process running the recipe
    local script = tmpfile(dir, "dumpable.lua", [[
os.execute("stat -c %u /proc/$PPID/uid_map")
lunas.sandbox{ argv = { "/bin/true" } }:run()
os.execute("stat -c %u /proc/$PPID/uid_map")
]])
    local out, err, code = lunas({ script })
    assert.are.equal(0, code, err)
    local euid = own_ids()
    assert.are.equal(euid .. "\n" .. euid .. "\n", out)
  end)

  it("'-' reads the script from stdin, with arguments", function()
    local out, err, code = lunas({ "-", "a", "b c" }, {
      stdin = "print(select('#', ...), ...)\nprint(arg[0], arg[1], arg[2], type(lunas))\nos.exit(6)\n",
    })
    assert.are.equal("", err)
    assert.are.equal(6, code)
    assert.are.equal("2\ta\tb c\n-\ta\tb c\ttable\n", out)
  end)

  it("-e CODE runs a chunk with the following arguments", function()
    local out, err, code = lunas({ "-e", "print(select('#', ...), ...) print(arg[1], arg[2], type(lunas)) os.exit(4)",
      "x", "y z" })
    assert.are.equal("", err)
    assert.are.equal(4, code)
    assert.are.equal("2\tx\ty z\nx\ty z\ttable\n", out)
  end)

  it("-e without code is a usage error (exit 2)", function()
    local out, err, code = lunas({ "-e" })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("needs an argument", err)
  end)

  it("-i reads lines from stdin and prints the values of expressions", function()
    local version = require("lunas.core").version
    local out, err, code = lunas({ "-i" }, {
      stdin = "1+1\nx = 20\nx + 1\nlocal t = {\n1, 2}\nerror('oops')\nlunas.version\nreturn 'a', 'b'\n",
    })
    assert.are.equal(0, code)
    assert.matches("oops", err)
    local values = out:gsub("lunas> ", ""):gsub(">> ", "")
    assert.are.equal("2\n21\n" .. version .. "\na\tb\n\n", values)
  end)

  it("--version prints 'lunas X.Y.Z' with the core's version", function()
    local out, err, code = lunas({ "--version" })
    assert.are.equal(0, code)
    assert.are.equal("", err)
    local version = out:match("^lunas (%d+%.%d+%.%d+)[ \n]")
    assert.is_string(version, out)
    assert.are.equal(require("lunas.core").version, version)
  end)

  it("--help prints the usage and exits 0", function()
    local out, _, code = lunas({ "--help" })
    assert.are.equal(0, code)
    assert.matches("usage: lunas", out)
    for _, word in ipairs({ "%-e CODE", "%-i", "run %[OPTIONS%]", "%-%-version", "%-%-lua%-env" }) do
      assert.matches(word, out)
    end
  end)

  it("no argument and an unknown option are usage errors (exit 2)", function()
    local out, err, code = lunas({})
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("usage: lunas", err)
    out, err, code = lunas({ "--no-such-option" })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("unknown option '%-%-no%-such%-option'", err)
  end)
end)

describe("lunas and LUA_PATH / LUA_CPATH / LUA_INIT #rootless", function()
  local dir, remove_dir
  local PROBE = [[
print("path=" .. package.path)
print("cpath=" .. package.cpath)
print("lua_module=" .. tostring((pcall(require, "lunas_probe_mod"))))
local lfs_module = require "lfs"
print("lfs_fake=" .. tostring(lfs_module.fake))
local _, c_err = pcall(require, "cprobe")
print("c_err=" .. tostring(c_err):gsub("\n", " "))
]]

  before_each(function()
    dir, remove_dir = util.tmpdir()
    util.write(dir .. "/lunas_probe_mod.lua", 'print("PROBE MODULE LOADED")\nreturn {}\n')
    -- would shadow the real C module lfs (the Lua searcher comes before the C one)
    util.write(dir .. "/lfs.lua", 'print("FAKE LFS LOADED")\nreturn { fake = true }\n')
    -- a C library without luaopen_cprobe: loading it names the file it found
    -- (libm, from our own maps: not lunas's core, which the host binary already contains)
    local libm = util.read("/proc/self/maps"):match("(/%S+/libm%.so[.%d]*)\n")
    assert(libm, "libm not mapped in the test process")
    assert(lfs.link(libm, dir .. "/cprobe.so", true))
  end)
  after_each(function() remove_dir() end)

  local function env()
    return { LUA_PATH = dir .. "/?.lua", LUA_CPATH = dir .. "/?.so", LUA_INIT = 'error("init ran")' }
  end

  it("ignores them by default", function()
    local out, err, code = lunas({ "-e", PROBE }, { env = env() })
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
    assert.not_matches("init ran", out)
    assert.is_nil(out:match("path=([^\n]*)"):find(dir, 1, true))
    assert.is_nil(out:match("cpath=([^\n]*)"):find(dir, 1, true))
    assert.matches("\nlua_module=false\n", out)
    assert.is_nil(out:find("PROBE MODULE LOADED", 1, true))
    assert.is_nil(out:find("FAKE LFS LOADED", 1, true))
    assert.matches("\nlfs_fake=nil\n", out)
    assert.matches("module 'cprobe' not found", out)
    assert.is_nil(out:match("c_err=([^\n]*)"):find(dir, 1, true))
  end)

  it("ignores them for a script file and stdin too", function()
    local script = tmpfile(dir, "probe.lua", PROBE)
    for _, args in ipairs({ { script }, { "-" } }) do
      local out, err, code = lunas(args, { env = env(), stdin = PROBE })
      assert.are.equal(0, code, err)
      assert.not_matches("init ran", err)
      assert.matches("\nlua_module=false\n", out)
      assert.matches("\nlfs_fake=nil\n", out)
    end
  end)

  it("honours LUA_PATH and LUA_CPATH with --lua-env first", function()
    local e = env()
    e.LUA_INIT = nil
    local out, err, code = lunas({ "--lua-env", "-e", PROBE }, { env = e })
    assert.are.equal(0, code, err)
    assert.are.equal("path=" .. dir .. "/?.lua", first_line(out))
    assert.matches("\ncpath=" .. (dir .. "/?.so"):gsub("%p", "%%%0") .. "\n", out)
    assert.is_truthy(out:find("PROBE MODULE LOADED", 1, true))
    assert.matches("\nlua_module=true\n", out)
    assert.matches("\nlfs_fake=true\n", out)
    assert.is_truthy(out:match("c_err=([^\n]*)"):find(dir .. "/cprobe.so", 1, true))
  end)

  it("runs LUA_INIT with --lua-env first (LUA_INIT_5_4 before LUA_INIT)", function()
    local out, err, code = lunas({ "--lua-env", "-e", "print('body')" }, { env = env() })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("init ran", err)
    local e = env()
    e.LUA_INIT_5_4 = 'print("init 5.4 ran")'
    out, err, code = lunas({ "--lua-env", "-e", "print('body')" }, { env = e })
    assert.are.equal(0, code, err)
    assert.are.equal("init 5.4 ran\nbody\n", out)
    out, err, code = lunas({ "-e", "print('body')" }, { env = e })
    assert.are.equal(0, code, err)
    assert.are.equal("body\n", out)
    -- @FILE runs a file
    util.write(dir .. "/init.lua", 'print("init file ran")\n')
    e = { LUA_INIT = "@" .. dir .. "/init.lua" }
    out, err, code = lunas({ "--lua-env", "-e", "print('body')" }, { env = e })
    assert.are.equal(0, code, err)
    assert.are.equal("init file ran\nbody\n", out)
    out, err, code = lunas({ "-e", "print('body')" }, { env = e })
    assert.are.equal(0, code, err)
    assert.are.equal("body\n", out)
  end)
end)

-- ---- lunas run ----------------------------------------------------------------------------------------------

describe("lunas run #rootless", function()
  -- every test here makes sandboxes, and without root a sandbox always has a user namespace
  local busted_it = it
  local function it(name, fn)
    busted_it(name, function()
      assert(pending) -- (a global: gives this function the spec's _ENV, where kernel.requires finds pending)
      kernel.requires("userns")
      return fn()
    end)
  end

  it("propagates the payload's exit status", function()
    for _, options in ipairs({ {}, { "--as-pid-1" }, { "--unshare-net" } }) do
      local _, err, code = run(options, { "/bin/sh", "-c", "exit 7" })
      assert.are.equal(7, code, table.concat(options, " ") .. ": " .. err)
    end
    local _, _, code = run({}, { "true" })
    assert.are.equal(0, code)
    _, _, code = run({}, { "false" })
    assert.are.equal(1, code)
  end)

  it("gives 128+N when the payload is killed by signal N", function()
    for _, options in ipairs({ {}, { "--unshare-net" } }) do
      local what = table.concat(options, " ")
      local _, err, code = run(options, { "/bin/sh", "-c", "kill -TERM $$" })
      assert.are.equal(143, code, what .. ": " .. err)
      _, err, code = run(options, { "/bin/sh", "-c", "kill -KILL $$" })
      assert.are.equal(137, code, what .. ": " .. err)
    end
  end)

  it("exits 125 with the failed step when the command does not exist", function()
    local out, err, code = run({}, { "/nonexistent/command" })
    assert.are.equal(125, code)
    assert.are.equal("", out)
    assert.matches("sandbox: exec:", err)
    assert.matches("No such file or directory", err)
  end)

  it("exits 125 when --chdir names a missing directory", function()
    local _, err, code = run({ "--chdir", "/nonexistent-dir" }, { "pwd" })
    assert.are.equal(125, code)
    assert.matches("sandbox: cwd:", err)
    assert.matches("No such file or directory", err)
  end)

  it("rejects bad usage with exit 2", function()
    local cases = {
      { { "run", "--no-such-option", "--", "true" }, "unknown option '%-%-no%-such%-option'" },
      { { "run" }, "no command given" },
      { { "run", "--" }, "no command given" },
      { { "run", "--unshare-net" }, "no command given" },
      { { "run", "--hostname" }, "needs a value" },
      { { "run", "--uid", "abc", "--", "true" }, "bad id" },
      { { "run", "--gid", "-1", "--", "true" }, "bad id" },
      { { "run", "--timeout", "0", "--", "true" }, "positive number" },
      { { "run", "--timeout", "soon", "--", "true" }, "positive number" },
    }
    for _, case in ipairs(cases) do
      local out, err, code = lunas(case[1])
      local what = table.concat(case[1], " ")
      assert.are.equal(2, code, what)
      assert.are.equal("", out, what)
      assert.matches(case[2], err)
    end
  end)

  it("treats option values the sandbox rejects as bad usage (exit 2), like the ones lunas run checks itself", function()
    local cases = {
      { { "--unshare-pid", "--hostname", "x" }, "needs a uts namespace" },
      { { "--uid", "4294967295" }, "uid" },
      { { "--setenv", "A=B", "c" }, "bad variable name" },
    }
    for _, case in ipairs(cases) do
      local out, err, code = run(case[1], { "true" })
      local what = table.concat(case[1], " ")
      assert.are.equal("", out, what)
      assert.matches(case[2], err)
      assert.are.equal(2, code, what .. ": " .. err)
    end
  end)

  it("--help exits 0 and lists every option", function()
    local out, _, code = lunas({ "run", "--help" })
    assert.are.equal(0, code)
    assert.matches("usage: lunas run", out)
    for _, option in ipairs({ "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
      "--unshare-cgroup", "--unshare-all", "--share-net", "--uid", "--gid", "--hostname", "--chdir", "--setenv",
      "--unsetenv", "--clearenv", "--keep-env", "--argv0", "--as-pid-1", "--die-with-parent",
      "--no-die-with-parent", "--new-session", "--share-session", "--timeout", "--help" }) do
      assert.is_truthy(out:find(option:gsub("%-", "%%-") .. "%f[^%w%-]"), option .. " missing from lunas run --help")
    end
  end)

  it("takes everything from the first non-option on as the command, with or without --", function()
    local out, err, code = lunas({ "run", "echo", "--unshare-net", "-x" })
    assert.are.equal(0, code, err)
    assert.are.equal("--unshare-net -x\n", out)
    out, err, code = lunas({ "run", "--share-net", "--", "echo", "--", "--uid" })
    assert.are.equal(0, code, err)
    assert.are.equal("-- --uid\n", out)
  end)

  describe("namespaces", function()
    local function inside(options)
      local out, err, code = run(options, { "/bin/sh", "-c", NS_PROBE })
      assert.are.equal(0, code, err)
      local seen = {}
      for _, line in ipairs(lines(out)) do
        local kind, link = line:match("^(%S+) (%S+)$")
        if kind then seen[kind] = link end
      end
      return seen
    end

    local cases = {
      { {}, { "user", "pid", "net", "ipc", "uts", "cgroup" } },
      { { "--unshare-user" }, { "user" } },
      { { "--unshare-pid" }, { "pid" } },
      { { "--unshare-net" }, { "net" } },
      { { "--unshare-ipc" }, { "ipc" } },
      { { "--unshare-uts" }, { "uts" } },
      { { "--unshare-cgroup" }, { "cgroup" } },
      { { "--unshare-ipc", "--unshare-uts" }, { "ipc", "uts" } },
      { { "--unshare-all" }, { "user", "pid", "net", "ipc", "uts", "cgroup" } },
      { { "--share-net" }, { "user", "pid", "ipc", "uts", "cgroup" } },
      { { "--unshare-all", "--share-net" }, { "user", "pid", "ipc", "uts", "cgroup" } },
      { { "--unshare-net", "--share-net" }, {} },
    }
    for _, case in ipairs(cases) do
      local options, unshared = case[1], case[2]
      local label = #options > 0 and table.concat(options, " ") or "no option"
      it(label .. ": new namespaces exactly for " .. (#unshared > 0 and table.concat(unshared, ",") or "none")
        .. " (plus mnt, and user: the caller's ids, or root's range of host ids)", function()
        local expected = { mnt = true, user = true }
        for _, kind in ipairs(unshared) do expected[kind] = true end
        local seen = inside(options)
        for _, kind in ipairs(NAMESPACES) do
          local mine = readlink("/proc/self/ns/" .. kind)
          assert.matches("^" .. kind .. ":%[%d+%]$", seen[kind])
          if expected[kind] then
            assert.are_not.equal(mine, seen[kind], kind .. " should be new")
          else
            assert.are.equal(mine, seen[kind], kind .. " should be shared")
          end
        end
      end)
    end
  end)

  it("--uid and --gid set the ids inside, mapped to the caller's (root's: a range of host ids)", function()
    local euid, egid = own_ids()
    local probe = "id -u; id -g; head -n 1 /proc/self/uid_map; head -n 1 /proc/self/gid_map"
    local out, err, code = run({ "--uid", "1000", "--gid", "1001" }, { "/bin/sh", "-c", probe })
    assert.are.equal(0, code, err)
    local l = lines(out)
    assert.are.equal("1000", l[1])
    assert.are.equal("1001", l[2])
    -- The caller's own id alone; root's sandbox gets 65536 ids of the host's, never root's own.
    local function mapped_to_caller(line, inside, own)
      local w = words(line)
      if euid == 0 then
        assert.are.equal("0", w[1], line)
        assert.are.equal("65536", w[3], line)
        assert.is_true(tonumber(w[2]) >= 0x80000, line)
      else
        assert.are.same({ inside, tostring(own), "1" }, w)
      end
    end
    mapped_to_caller(l[3], "1000", euid)
    mapped_to_caller(l[4], "1001", egid)
    -- without --uid: root inside, mapped to us
    out, err, code = run({}, { "/bin/sh", "-c", probe })
    assert.are.equal(0, code, err)
    l = lines(out)
    assert.are.same({ "0", "0" }, { l[1], l[2] })
    mapped_to_caller(l[3], "0", euid)
  end)

  it("--hostname sets the host name inside and leaves the host's alone", function()
    local before = hostname()
    assert.are_not.equal("lunas-cli-test", before)
    local out, err, code = run({ "--hostname", "lunas-cli-test" }, { "hostname" })
    assert.are.equal(0, code, err)
    assert.are.equal("lunas-cli-test\n", out)
    assert.are.equal(before, hostname())
    out, err, code = run({ "--unshare-uts", "--hostname", "lunas-cli-uts" }, { "hostname" })
    assert.are.equal(0, code, err)
    assert.are.equal("lunas-cli-uts\n", out)
    assert.are.equal(before, hostname())
  end)

  it("passes stdin, stdout and stderr through to the command", function()
    local out, err, code = run({}, { "/bin/sh", "-c", "read -r line; echo \"out:$line\"; echo \"err:$line\" >&2" },
      { stdin = "hello\n" })
    assert.are.equal(0, code, err)
    assert.are.equal("out:hello\n", out)
    assert.are.equal("err:hello\n", err)
  end)

  it("--chdir sets the working directory", function()
    local out, err, code = run({ "--chdir", "/usr/share" }, { "pwd" })
    assert.are.equal(0, code, err)
    assert.are.equal("/usr/share\n", out)
  end)

  describe("environment", function()
    local ENV = { FOO = "bar", TERM = "lunas-term", HOME = "/lunas/home", LANG = "C.UTF-8",
      PATH = "/usr/sbin:/usr/bin:/sbin:/bin" }

    -- The environment a command sees, as a table, read with env -0.
    local function environment(options, env)
      local out, err, code
      if options then
        out, err, code = run(options, { "/usr/bin/env", "-0" }, { env = env })
      else
        out, err, code = sh(command({ "/usr/bin/env", "-0" }, env))
      end
      assert.are.equal(0, code, err)
      local t = {}
      for entry in out:gmatch("([^%z]+)%z") do
        local k, v = entry:match("^([^=]*)=(.*)$")
        t[k] = v
      end
      return t
    end

    it("keeps only TERM, PATH, HOME and LANG by default", function()
      local inside = environment({}, ENV)
      assert.are.same({ TERM = ENV.TERM, PATH = ENV.PATH, HOME = ENV.HOME, LANG = ENV.LANG }, inside)
    end)

    it("--keep-env passes the whole environment", function()
      local outside = environment(nil, ENV)
      assert.are.equal("bar", outside.FOO)
      local inside = environment({ "--keep-env" }, ENV)
      assert.are.same(outside, inside)
    end)

    it("--unsetenv removes a variable", function()
      local inside = environment({ "--unsetenv", "HOME" }, ENV)
      assert.are.same({ TERM = ENV.TERM, PATH = ENV.PATH, LANG = ENV.LANG }, inside)
      inside = environment({ "--keep-env", "--unsetenv", "FOO" }, ENV)
      assert.is_nil(inside.FOO)
      assert.are.equal(ENV.TERM, inside.TERM)
    end)

    it("--unsetenv PATH leaves PATH unset", function()
      local inside = environment({ "--unsetenv", "PATH" }, ENV)
      assert.are.same({ TERM = ENV.TERM, HOME = ENV.HOME, LANG = ENV.LANG }, inside)
    end)

    it("--setenv adds and overrides variables", function()
      local inside = environment({ "--setenv", "A", "b c", "--setenv", "HOME", "/elsewhere" }, ENV)
      assert.are.same({ TERM = ENV.TERM, PATH = ENV.PATH, HOME = "/elsewhere", LANG = ENV.LANG, A = "b c" }, inside)
    end)

    it("--clearenv leaves nothing but what --setenv gives", function()
      local inside = environment({ "--clearenv", "--setenv", "A", "b", "--setenv", "EMPTY", "" }, ENV)
      assert.are.same({ A = "b", EMPTY = "" }, inside)
      inside = environment({ "--clearenv" }, ENV)
      assert.are.same({}, inside)
    end)
  end)

  it("--argv0 sets argv[0] of the command", function()
    local out, err, code = run({ "--argv0", "foo" }, { "/bin/sh", "-c", "echo $0" })
    assert.are.equal(0, code, err)
    assert.are.equal("foo\n", out)
    out, err, code = run({}, { "/bin/sh", "-c", "echo $0" })
    assert.are.equal(0, code, err)
    assert.are.equal("/bin/sh\n", out)
  end)

  it("runs the command as PID 2 under lunas's reaper, or as PID 1 with --as-pid-1", function()
    local probe = { "/bin/sh", "-c", "echo $$; tr '\\000' '\\n' </proc/1/cmdline | head -n 1" }
    local out, err, code = run({}, probe)
    assert.are.equal(0, code, err)
    local l = lines(out)
    assert.are.equal("2", l[1])
    -- PID 1 is lunas's reaper (lunas itself, or its reaper program), not the payload
    assert.are_not.equal("/bin/sh", l[2])
    assert.matches("lunas[^/]*$", l[2])
    out, err, code = run({ "--as-pid-1" }, probe)
    assert.are.equal(0, code, err)
    l = lines(out)
    assert.are.equal("1", l[1])
    assert.are.equal("/bin/sh", l[2])
  end)

  it("starts a new session by default and with --new-session, not with --share-session", function()
    -- the shell opens /proc/self/stat itself (builtin read): fields 1 and 6 are its pid and session id
    local probe = { "/bin/sh", "-c", 'read -r stat </proc/self/stat; set -- $stat; echo "$1 $6"' }
    for _, options in ipairs({ {}, { "--new-session" }, { "--unshare-net" } }) do
      local out, err, code = run(options, probe)
      assert.are.equal(0, code, err)
      local pid, sid = out:match("^(%d+) (%d+)\n$")
      assert.is_string(pid, out)
      assert.are.equal(pid, sid, table.concat(options, " "))
    end
    for _, options in ipairs({ { "--share-session" }, { "--share-session", "--unshare-net" } }) do
      local out, err, code = run(options, probe)
      assert.are.equal(0, code, err)
      local pid, sid = out:match("^(%d+) (%d+)\n$")
      assert.is_string(pid, out)
      assert.are_not.equal(pid, sid, table.concat(options, " "))
    end
  end)

  it("--timeout kills the sandbox and exits 124", function()
    local out, err, code = run({ "--timeout", "0.5" }, { "sleep", "10" })
    assert.are.equal(124, code)
    assert.are.equal("", out)
    assert.matches("timed out", err)
    -- a payload that finishes in time is not affected
    out, err, code = run({ "--timeout", "30" }, { "/bin/sh", "-c", "exit 3" })
    assert.are.equal(3, code, err)
  end)

  it("closes every descriptor beyond 0-2", function()
    for _, options in ipairs({ {}, { "--unshare-net" }, { "--as-pid-1" } }) do
      local out, err, code = sh("exec 7</etc/hostname 9>/dev/null\nls /proc/self/fd | tr '\\n' ' '; echo\n"
        .. lunas_command({ "run", table.unpack(options) }) .. " -- ls /proc/self/fd | tr '\\n' ' '; echo")
      assert.are.equal(0, code, err)
      local l = lines(out)
      -- the shell that ran lunas had them open
      local outside = {}
      for _, fd in ipairs(words(l[1])) do outside[fd] = true end
      assert.is_true(outside["7"] and outside["9"], l[1])
      -- inside: stdin, stdout, stderr and the directory ls reads
      assert.are.same({ "0", "1", "2", "3" }, words(l[2]), table.concat(options, " "))
    end
  end)

  describe("die-with-parent", function()
    -- Starts `lunas run OPTIONS -- sleep 100` in the background from a shell; finds the sleep's host pid.
    local function start(options)
      local cmd = lunas_command({ "run", table.unpack(options) }) .. " -- sleep 100 </dev/null >/dev/null 2>&1 &\n"
        .. "echo $!\nwait"
      local bg = { shell = assert(io.popen(cmd, "r")) }
      bg.lunas = tonumber(bg.shell:read("l"))
      assert.is_number(bg.lunas)
      bg.payload = util.wait_for(function()
        for _, pid in ipairs(descendants(bg.lunas)) do
          if cmdline(pid) == "sleep\0" .. "100\0" then return pid end
        end
      end, 10)
      assert.is_number(bg.payload, "no sleep 100 below lunas")
      bg.reaper = ppid_of(bg.payload)
      return bg
    end

    local function stop(bg)
      if not bg then return end
      for _, pid in ipairs({ bg.lunas, bg.reaper, bg.payload }) do
        if pid and util.alive(pid) then kill(pid) end
      end
      if bg.shell then bg.shell:close() end -- the shell reaps lunas
      util.wait_for(function()
        return not (bg.payload and util.alive(bg.payload)) and not (bg.reaper and util.alive(bg.reaper))
      end, 10)
      -- what a killed lunas leaves (root's id range record), as lunas gc removes it
      require("lunas.idrange").gc()
    end

    local bg
    after_each(function()
      stop(bg)
      bg = nil
    end)

    for _, options in ipairs({ {}, { "--die-with-parent" }, { "--unshare-user", "--unshare-net" } }) do
      it("kills the sandbox when lunas is killed (" .. (#options > 0 and table.concat(options, " ") or "default") .. ")",
        function()
        bg = start(options)
        if #options == 2 then
          -- no pid namespace: the payload is lunas's own child
          assert.are.equal(bg.lunas, bg.reaper)
        else
          assert.are.equal("2", last_nspid(bg.payload))
          assert.are.equal("1", last_nspid(bg.reaper))
          assert.are.equal(bg.lunas, ppid_of(bg.reaper))
        end
        kill(bg.lunas)
        assert.is_truthy(util.wait_for(function() return not util.alive(bg.payload) end, 10),
          "the sandbox outlived lunas")
        assert.is_truthy(util.wait_for(function() return not util.alive(bg.reaper) end, 10))
      end)
    end

    it("keeps the sandbox alive with --no-die-with-parent", function()
      bg = start({ "--no-die-with-parent" })
      assert.are.equal("2", last_nspid(bg.payload))
      kill(bg.lunas)
      bg.shell:close() -- returns once lunas is dead and reaped
      bg.shell = nil
      assert.is_false(util.alive(bg.lunas))
      assert.is_true(util.alive(bg.reaper))
      assert.is_true(util.alive(bg.payload))
      assert.are.equal("sleep\0" .. "100\0", cmdline(bg.payload))
      assert.are_not.equal(bg.lunas, ppid_of(bg.reaper))
      -- our own clean-up: SIGKILL to the namespace's PID 1 takes the whole namespace down
      kill(bg.reaper)
      assert.is_truthy(util.wait_for(function()
        return not util.alive(bg.payload) and not util.alive(bg.reaper)
      end, 10))
    end)
  end)
end)

describe("lunas run as root #root", function()
  it("--uid and --gid without a user namespace (--host-root) switch the ids (setresuid)", function()
    if not kernel.requires("root") then return end
    local probe = "id -u; id -g; head -n 1 /proc/self/uid_map"
    local out, err, code = run({ "--host-root", "--unshare-pid", "--uid", "1000", "--gid", "1001" },
      { "/bin/sh", "-c", probe })
    assert.are.equal(0, code, err)
    local l = lines(out)
    assert.are.equal("1000", l[1])
    assert.are.equal("1001", l[2])
    -- still our user namespace: its map, not a one-id map made for the sandbox
    assert.are.same(words(first_line(util.read("/proc/self/uid_map"))), words(l[3]))
  end)
end)

-- The file system options: bubblewrap's names and meanings, checked with plain tools inside.
describe("lunas run file system options #rootless", function()
  local BASE = { "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
    "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev" }
  local function with_base(extra)
    local options = { table.unpack(BASE) }
    for _, o in ipairs(extra) do options[#options + 1] = o end
    return options
  end

  -- `lunas run` with descriptor 3 open on a file holding fd3 (for --file 3 DEST).
  local function run_fd3(fd3, options, cmd)
    local path = os.tmpname()
    util.write(path, fd3)
    local out, err, code = sh(lunas_command(run_args(options, cmd)) .. " 3< " .. util.quote(path))
    os.remove(path)
    return out, err, code
  end

  it("builds the tree from an empty root once any option is given", function()
    if not kernel.requires("userns") then return end
    local out, err, code = run(BASE, { "/bin/sh", "-c", "ls /; test -e /etc/passwd && echo host-etc; exit 0" })
    assert.equal(0, code, err)
    assert.same({ "bin", "dev", "lib", "lib64", "proc", "usr" }, lines(out))
  end)

  it("binds read-write, read-only and with -try, creates dirs, links and files with --perms", function()
    if not kernel.requires("userns", "idmap") then return end
    local dir, cleanup = util.tmpdir()
    finally(cleanup)
    assert(os.execute(("mkdir %s/rw %s/ro && echo data > %s/ro/file"):format(dir, dir, dir)))
    local out, err, code = run_fd3("from fd\n", with_base{ "--tmpfs", "/tmp", "--bind", dir .. "/rw", "/rw", "--ro-bind", dir .. "/ro", "/ro",
      "--bind-try", dir .. "/missing", "/missing", "--perms", "0700", "--dir", "/tmp/private", "--symlink", "/ro/file",
      "/tmp/link", "--file", "3", "/tmp/from-fd", "--chmod", "0600", "/tmp/from-fd" },
      { "/bin/sh", "-c", "echo w > /rw/out && echo rw-ok; echo x > /ro/new 2>/dev/null || echo ro-refused; " ..
        "test -e /missing || echo missing-skipped; stat -c %a /tmp/private /tmp/from-fd; cat /tmp/link /tmp/from-fd" })
    assert.equal(0, code, err)
    assert.same({ "rw-ok", "ro-refused", "missing-skipped", "700", "600", "data", "from fd" }, lines(out))
    assert.equal("w\n", util.read(dir .. "/rw/out"))
    assert.is_nil(util.read(dir .. "/ro/new"))
  end)

  it("enforces --size on a --tmpfs and masks with --mask", function()
    if not kernel.requires("userns") then return end
    local out, err, code = run_fd3("secret\n", with_base{ "--size", "1048576", "--tmpfs", "/small", "--tmpfs", "/tmp",
      "--file", "3", "/tmp/secret", "--mask", "/tmp/secret" },
      { "/bin/sh", "-c", "head -c 2000000 /dev/zero > /small/big 2>/dev/null || echo full; wc -c < /small/big; " ..
        "wc -c < /tmp/secret" })
    assert.equal(0, code, err)
    assert.same({ "full", "1048576", "0" }, lines(out))
  end)

  it("layers overlays: writes land in the upper dir, a tmp-overlay forgets them", function()
    if not kernel.requires("userns", "idmap") then return end
    local dir, cleanup = util.tmpdir()
    finally(function() os.execute("chmod -R u+rwx " .. util.quote(dir) .. "; rm -rf " .. util.quote(dir)) cleanup() end)
    assert(os.execute(("mkdir %s/lower %s/upper %s/work && echo base > %s/lower/f"):format(dir, dir, dir, dir)))
    local out, err, code = run(with_base{ "--overlay-src", dir .. "/lower", "--overlay", dir .. "/upper", dir .. "/work",
      "/o", "--overlay-src", dir .. "/lower", "--tmp-overlay", "/t" },
      { "/bin/sh", "-c", "cat /o/f; echo new > /o/g; echo temp > /t/h; cat /t/h" })
    assert.equal(0, code, err)
    assert.same({ "base", "temp" }, lines(out))
    assert.equal("new\n", util.read(dir .. "/upper/g"))
    assert.is_nil(util.read(dir .. "/lower/g"))
    assert.is_nil(util.read(dir .. "/lower/h"))
  end)

  it("follows a symlinked target inside the new root, never out of it", function()
    if not kernel.requires("userns") then return end
    local passwd = util.read("/etc/passwd")
    local cover = os.tmpname()
    finally(function() os.remove(cover) end)
    util.write(cover, "covered\n")
    assert(os.execute("chmod 0644 " .. cover))
    -- An absolute link, and one that climbs with "..": both land on the sandbox's own /etc/passwd (the host's
    -- bound read-only), which the bind covers there alone.
    for _, link in ipairs{ "/etc/passwd", "../../../../../../etc/passwd" } do
      local out, err, code = run(with_base{ "--ro-bind", "/etc", "/etc", "--tmpfs", "/tmp", "--symlink", link, "/tmp/evil",
        "--ro-bind", cover, "/tmp/evil" }, { "/bin/sh", "-c", "cat /etc/passwd; readlink /tmp/evil" })
      assert.equal(0, code, err)
      assert.equal("covered\n" .. link .. "\n", out)
      assert.equal(passwd, util.read("/etc/passwd"))
    end
    -- A link to a directory: the bind lands where it points.
    local out, err, code = run(with_base{ "--tmpfs", "/tmp", "--dir", "/tmp/real", "--symlink", "real", "/tmp/link",
      "--ro-bind", "/etc", "/tmp/link" }, { "/bin/sh", "-c", "test -f /tmp/real/passwd && echo landed" })
    assert.equal(0, code, err)
    assert.equal("landed\n", out)
  end)

  it("says what is wrong with an option", function()
    local _, err, code = run({ "--overlay-src", "/usr" }, { "true" })
    assert.equal(2, code)
    assert.matches("%-%-overlay%-src without a following", err)
    _, err, code = run({ "--size", "big", "--tmpfs", "/t" }, { "true" })
    assert.equal(2, code)
    assert.matches("%-%-size: bytes expected", err)
    _, err, code = run({ "--file", "99", "/x" }, { "true" })
    assert.equal(2, code)
    assert.matches("%-%-file: cannot read descriptor '99'", err)
  end)

  it("keeps the host's tree with --rootfs host, under a fresh /proc", function()
    if not kernel.requires("userns") then return end
    local out, err, code = run({ "--rootfs", "host" }, { "/bin/sh", "-c", "test -e /etc/passwd && echo host; echo $$" })
    assert.equal(0, code, err)
    assert.same({ "host", "2" }, lines(out))
  end)
end)

-- ---- malformed input ------------------------------------------------------------------------------------------

describe("malformed input #root", function()
  -- What any command could leave: names in /run/netns and /run/lunas/labs, cgroups below our own, links of this
  -- network namespace, our mount table.
  local function footprint()
    local cgroup = require "lunas.cgroup"
    local layout = cgroup.layout()
    local dirs = {}
    if layout.v2 then dirs[#dirs + 1] = layout.v2.dir end
    for _, h in pairs(layout.v1) do dirs[#dirs + 1] = h.dir end
    local seen = {}
    for _, d in ipairs(dirs) do
      for _, name in ipairs(core.listdir(d) or {}) do
        if core.file_type(d .. "/" .. name) == "dir" then seen[#seen + 1] = d .. "/" .. name end
      end
    end
    table.sort(seen)
    local function names(dir)
      local t = core.listdir(dir) or {}
      table.sort(t)
      return table.concat(t, " ")
    end
    local links = select(1, util.sh("ip -o link show | wc -l"))
    local mounts = select(2, (util.read("/proc/self/mountinfo") or ""):gsub("\n", "\n"))
    return { netns = names("/run/netns"), labs = names("/run/lunas/labs"), cgroups = table.concat(seen, " "),
      links = links, mounts = mounts }
  end

  it("gets a message naming the option or the recipe's file and line, exit status 2, and leaves nothing", function()
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local syntax = tmpfile(dir, "broken.lua", "local net = require 'lunas.net'\nlocal lab = net.lab{ name = 'm' }\nlab:host('a'\n")
    local cases = {
      { { "--bogus" }, "^lunas: unknown option '%-%-bogus'" },
      { { syntax }, "^lunas: " .. syntax:gsub("%p", "%%%0") .. ":4: " },
      { { "-e", "lunas.sandbox{" }, "^lunas: %(command line%):1: " },
      { { "run", "--memory", "lots", "--", "true" }, "^lunas run: %-%-memory: .*got lots" },
      { { "run", "--pids", "-3", "--", "true" }, "^lunas run: %-%-pids: " },
      { { "run", "--cpu", "x", "--", "true" }, "^lunas run: %-%-cpu: " },
      { { "run", "--cpuset", "abc", "--", "true" }, "^lunas run: %-%-cpuset: " },
      { { "run", "--memory", "64M", "--hostname", "x", "--unshare-pid", "--", "true" }, "^lunas run: %-%-hostname: " },
      { { "run", "--cap-add", "bogus", "--", "true" }, "^lunas run: %-%-cap%-add: unknown capability 'bogus'" },
      { { "run", "--seccomp-deny", "nogroup", "--", "true" }, "^lunas run: %-%-seccomp%-deny: .*'nogroup'" },
      { { "run", "--landlock-connect", "70000", "--", "true" }, "^lunas run: %-%-landlock%-connect: " },
      { { "run", "--uid", "4294967295", "--", "true" }, "^lunas run: %-%-uid: " },
      { { "run", "--setenv", "A=B", "c", "--", "true" }, "^lunas run: %-%-setenv: " },
      { { "run", "--size", "1x", "--tmpfs", "/tmp", "--", "true" }, "^lunas run: %-%-size: " },
      { { "run", "--tmpfs" }, "^lunas run: %-%-tmpfs needs a value" },
      { { "run", "--seccomp", dir .. "/none.lua", "--", "true" }, "^lunas run: %-%-seccomp: cannot open" },
      { { "run", "--json-status", dir .. "/no/such/file", "--", "true" }, "^lunas run: %-%-json%-status: " },
      { { "enter", "0", "--", "true" }, "^lunas enter: bad pid '0'" },
      { { "enter", "--bogus", "1" }, "^lunas enter: " },
      { { "ns", "list", "--type", "bogus" }, "^lunas ns: %-%-type: " },
      { { "lab", "up", syntax }, "^lunas lab up: " .. syntax:gsub("%p", "%%%0") .. ":4: " },
      { { "lab", "up", dir .. "/none.lua" }, "^lunas lab up: cannot open " },
      { { "lab", "down" }, "^lunas lab down: a lab NAME or %-%-all expected" },
      { { "lab", "show", "a", "b" }, "^lunas lab show: one lab NAME expected" },
      { { "lab", "list", "--dot" }, "^lunas lab list: unknown option '%-%-dot'" },
      { { "gc", "--now" }, "^lunas gc: unknown option '%-%-now'" },
    }
    local before = footprint()
    for _, case in ipairs(cases) do
      local what = table.concat(case[1], " ")
      local out, err, code = lunas(case[1])
      assert.are.equal(2, code, what .. ": " .. err)
      assert.are.equal("", out, what)
      assert.matches(case[2], err, 1, false, what)
      assert.are.same(before, footprint(), what .. " left something")
    end
  end)
end)
