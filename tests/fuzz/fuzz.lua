-- tests/fuzz/fuzz.lua: the API fuzzer. Calls every function of lunas.core, every method of the objects they
-- return, and every public function of the Lua modules (and the CLI's commands) with random arguments: nil,
-- booleans, edge and random integers, NaN and infinities, strings (empty, huge, with NUL bytes, random bytes,
-- words and paths lunas knows), tables (option tables with the keys lunas reads, arrays, nested ones, tables
-- whose metamethods raise), functions, coroutines, and the objects earlier calls returned, open and closed.
--
-- What must hold: nothing crashes, aborts or trips a sanitizer, and every failure is a Lua error or, from the
-- core, nil, "message", "ENAME". Hangs (a read on an empty pipe, a wait without timeout) are legitimate and are
-- only counted.
--
-- Run it through tests/fuzz/run.sh, which confines it (an unprivileged user's namespaces: nothing it does can
-- reach the machine) and gives it the sanitizer build. Here: lua5.4 fuzz.lua --calls N [--seed S] [--batch K]
-- [--stall SECONDS] --out DIR [--only PATTERN] [--replay SEED]. The work is done in batches: each batch is a
-- worker process in its own pid, mount, net, uts and ipc namespaces, seeded with SEED + batch number, so a
-- failing batch replays alone with --replay. The summary goes to DIR/summary.json and stdout; each finding to
-- DIR/findings (one line each).
local core = require "lunas.core"
local util = require "support.util"

local unpack = table.unpack

-- ---- options ----------------------------------------------------------------------------------------------

local opts = { calls = 10000, seed = os.time(), batch = 250, stall = 1.2, out = nil, only = nil, replay = nil,
  verbose = 0 }
do
  local i = 1
  while arg[i] do
    local name = arg[i]:match("^%-%-(.+)$")
    if not name or opts[name] == nil and name ~= "out" and name ~= "only" and name ~= "replay" then
      io.stderr:write("fuzz.lua: unknown argument ", arg[i], "\n")
      os.exit(2)
    end
    local value = arg[i + 1]
    if value == nil then
      io.stderr:write("fuzz.lua: ", arg[i], " needs a value\n")
      os.exit(2)
    end
    opts[name] = (name == "out" or name == "only") and value or tonumber(value)
    if opts[name] == nil then
      io.stderr:write("fuzz.lua: ", arg[i], ": number expected\n")
      os.exit(2)
    end
    i = i + 2
  end
  if not opts.out then
    io.stderr:write("fuzz.lua: --out DIR expected\n")
    os.exit(2)
  end
end

-- Exit status reserved for the sanitizers (ASAN_OPTIONS/UBSAN_OPTIONS exitcode=86, set by run.sh).
local SANITIZER_EXIT = 86
-- Death by these signals is a crash (the sanitizers catch SEGV, BUS and FPE themselves and report them).
local CRASH_SIGNALS = { SEGV = true, BUS = true, ILL = true, FPE = true, ABRT = true, TRAP = true }

-- ---- the vocabulary: strings lunas itself knows ------------------------------------------------------------

local root = os.getenv("LUNAS_ROOT") or "."

local function list_dir(dir)
  local names = core.listdir(dir) or {}
  table.sort(names)
  return names
end

-- Every short string literal of the sources (option names, flag names, kinds, units, paths): the words that
-- get past the first check of a function and reach the deeper ones.
local function harvest_words()
  local seen, words = {}, {}
  local files = {}
  for _, name in ipairs(list_dir(root .. "/src")) do
    if name:match("%.c$") then files[#files + 1] = root .. "/src/" .. name end
  end
  for _, dir in ipairs{ "/lua/lunas", "/lua/lunas/cli" } do
    for _, name in ipairs(list_dir(root .. dir)) do
      if name:match("%.lua$") then files[#files + 1] = root .. dir .. "/" .. name end
    end
  end
  for _, path in ipairs(files) do
    for word in (util.read(path) or ""):gmatch('"([%w_%-%.%+/:,=%%]+)"') do
      if #word <= 40 and not seen[word] then
        seen[word] = true
        words[#words + 1] = word
      end
    end
  end
  table.sort(words)
  return words
end

local WORDS = harvest_words()
-- Keys of option tables: the identifier-like words.
local KEYS = {}
for _, w in ipairs(WORDS) do
  if w:match("^[%a_][%w_]*$") then KEYS[#KEYS + 1] = w end
end

local SPECIAL_STRINGS = {
  "", " ", "\0", "a\0b", "lo", "eth0", "net", "user,pid,mount,uts,ipc,net,cgroup,time", "all", "none", "host",
  "/", "/tmp", "/tmp/fuzz", "/tmp/fuzz/a", "/dev/null", "/dev/zero", "/proc/self/ns/net", "/proc/self/fd/0",
  "/proc/self", "/sys", "/nonexistent/x", "../../../../etc/passwd", "/tmp/../..", "//", "/.", ".", "..",
  "10.0.0.1/24", "10.0.0.1", "fe80::1/64", "::1", "::", "0.0.0.0/0", "256.1.1.1/24", "10.0.0.1/33", "default",
  "1.2.3.4.5", "aa:bb:cc:dd:ee:ff", "ff:ff:ff:ff:ff:ff:ff", "100mbit", "1gbit", "5%", "50ms", "1s", "64M", "1G",
  "max", "-1", "0", "4294967296", "18446744073709551616", "0x10", "1e3", "nan", "inf", "%s%s%s%n%n", "%d",
  "TERM", "SIGKILL", "RTMIN+3", "RTMAX", "CAP_SYS_ADMIN", "sys_admin", "!sys_admin", "^net_raw", "%chown",
  "errno:ENOSYS", "kill_process", "allow", "x86_64", "i386", "read", "write", "openat", "bpf",
  "\255\254\253", "é", ("a"):rep(15), ("a"):rep(16), ("x"):rep(255), ("y"):rep(4096), "a,b,,c", ",", "=", "a=b",
  "\n", "lunas-0-0", "cgroup.procs", "memory.max", "../cgroup.procs",
}

-- ---- random values ------------------------------------------------------------------------------------------

local random = math.random

local function pick(list) return list[random(#list)] end

local EDGE_INTEGERS = {
  0, 1, -1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1023, 1024, 4095, 4096, 65535, 65536,
  2147483647, 2147483648, -2147483648, -2147483649, 4294967295, 4294967296, 9007199254740993,
  math.maxinteger, math.mininteger, math.maxinteger - 1, math.mininteger + 1,
}
local FLOATS = { 0.5, -0.0, 0 / 0, math.huge, -math.huge, 1e308, -1e308, 5e-324, 3.7, -2.5, 2 ^ 63, -2 ^ 63, 2 ^ 64 }

local function random_integer()
  local r = random(10)
  if r <= 6 then return pick(EDGE_INTEGERS) end
  if r <= 8 then return random(-1000, 1000) end
  return random(math.mininteger, math.maxinteger)
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(random(0, 255)) end
  return table.concat(t)
end

local function random_string()
  local r = random(100)
  if r <= 45 then return pick(WORDS) end
  if r <= 70 then return pick(SPECIAL_STRINGS) end
  if r <= 78 then -- a list of words, as flags and names are given
    local t = {}
    for i = 1, random(4) do t[i] = pick(WORDS) end
    return table.concat(t, pick{ ",", " ", "/", ":" })
  end
  if r <= 85 then return "/tmp/fuzz/" .. pick(WORDS) end
  if r <= 90 then return random_bytes(random(0, 32)) end
  if r <= 95 then return pick(WORDS) .. "\0" .. pick(WORDS) end
  if r <= 98 then return ("A"):rep(random(1, 5000)) end
  return ("z"):rep(100000 + random(0, 1000))
end

local pool = {}       -- objects earlier calls returned (userdata, tables with a metatable), open or closed
local POOL_MAX = 48

local random_value, method_names

local function raising_table()
  -- every metamethod a function might trigger raises: lunas must let the error through, not crash
  return setmetatable({}, {
    __index = function(_, k) error("fuzz: __index " .. tostring(k)) end,
    __newindex = function() error("fuzz: __newindex") end,
    __len = function() error("fuzz: __len") end,
    __pairs = function() error("fuzz: __pairs") end,
    __tostring = function() error("fuzz: __tostring") end,
    __name = "fuzz.raising",
  })
end

local function random_table(depth)
  local r = random(100)
  local t = {}
  if r <= 10 then return t end
  if r <= 14 then return raising_table() end
  if r <= 40 then -- an array
    for i = 1, random(0, 6) do t[i] = random_value(depth + 1) end
    return t
  end
  if r <= 43 then -- a large array
    local v = random_value(depth + 1)
    for i = 1, random(200, 2000) do t[i] = v end
    return t
  end
  if r <= 46 then -- holes and odd keys
    t[0], t[-1], t[1.5], t[3] = random_value(depth + 1), random_value(depth + 1), random_value(depth + 1), 1
    t[true] = random_value(depth + 1)
    return t
  end
  -- an option table: keys lunas reads, sometimes one more
  for _ = 1, random(1, 5) do t[pick(KEYS)] = random_value(depth + 1) end
  if random(4) == 1 then t[pick(KEYS)] = random_table(depth + 1) end
  if random(10) == 1 then t[random(1, 3)] = random_value(depth + 1) end
  return t
end

local function random_function()
  local r = random(4)
  if r == 1 then return function() end end
  if r == 2 then return function() error("fuzz: callback raised") end end
  if r == 3 then return function(...) return ... end end
  return function() return random_value(2) end
end

local function pool_object()
  if #pool == 0 then return nil end
  local obj = pool[random(#pool)]
  if random(12) == 1 then -- closed: use after close must be refused, not crash
    local mt = getmetatable(obj)
    local close = type(mt) == "table" and (type(mt.__index) == "table" and mt.__index.close or mt.__close)
    if type(close) == "function" then pcall(close, obj) end
  end
  return obj
end

function random_value(depth)
  depth = depth or 0
  local r = random(100)
  if depth > 3 and r > 60 then r = random(60) end
  if r <= 7 then return nil end
  if r <= 11 then return random(2) == 1 end
  if r <= 27 then return random_integer() end
  if r <= 31 then return pick(FLOATS) end
  if r <= 58 then return random_string() end
  if r <= 75 then return random_table(depth) end
  if r <= 91 then return pool_object() or random_integer() end
  if r <= 95 then return random_function() end
  if r <= 97 then return coroutine.create(function() end) end
  return pick{ io.stdout, io.stderr, core, print, string }
end

local function random_args()
  local n = pick{ 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5 }
  local args = { n = n }
  for i = 1, n do args[i] = random_value() end
  return args
end

-- Valid calls of the functions whose checks random arguments seldom pass (tests/fuzz/templates.lua), mutated.
-- (the templates add helpers of theirs to this table: copy_source, copy_dest)
local helpers = { pick = pick, random = random, random_value = random_value, random_string = random_string,
  random_bytes = random_bytes, pool_object = pool_object }
local TEMPLATES = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/templates.lua")(helpers)

local function mutate(args)
  local r = random(10)
  if r <= 3 or args.n == 0 then -- one more argument
    args.n = args.n + 1
    args[args.n] = random_value()
    return args
  end
  local i = random(args.n)
  local v = args[i]
  if r <= 8 and type(v) == "table" and getmetatable(v) == nil and next(v) ~= nil then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local key = pick(keys)
    local m = random(3)
    if m == 1 then
      v[key] = random_value()
    elseif m == 2 then
      v[key] = nil
    else
      v[pick(KEYS)] = random_value()
    end
  else
    args[i] = random_value()
  end
  return args
end

local function template_args(key)
  local list = TEMPLATES[key]
  if not list or random(10) > 7 then return nil end
  local ok, args = pcall(function() return table.pack(pick(list)()) end)
  if not ok then return nil end
  if random(10) <= 6 then args = mutate(args) end
  return args
end

-- ---- what is called ------------------------------------------------------------------------------------------

-- Signal arguments that would make a call look like a crash when it only did what it was asked (a process
-- signalling itself SEGV): they become TERM. Everything else about the call stays random.
local CRASH_SIGNAL_VALUES = {}
for name in pairs(CRASH_SIGNALS) do
  CRASH_SIGNAL_VALUES[name] = true
  CRASH_SIGNAL_VALUES["SIG" .. name] = true
  CRASH_SIGNAL_VALUES[core.signals[name]] = true
end
CRASH_SIGNAL_VALUES.IOT, CRASH_SIGNAL_VALUES.SIGIOT = true, true
local function defuse_signals(args)
  for i = 1, args.n do
    local v = args[i]
    if CRASH_SIGNAL_VALUES[v] then args[i] = "TERM" end
    if type(v) == "table" and getmetatable(v) == nil then
      for k, x in pairs(v) do
        if CRASH_SIGNAL_VALUES[x] then v[k] = "TERM" end
      end
    end
  end
end

-- Per target, a change of the arguments a call needs so that its legitimate effect is not taken for a crash.
local SHAPERS = {
  ["core.kill"] = defuse_signals,
  ["core.prctl"] = defuse_signals,
  ["method.kill"] = defuse_signals,
  -- mostly non-blocking pipes: a read of an empty blocking one stalls the rest of the batch
  ["core.pipe"] = function(args)
    if random(5) > 1 and (args[1] == nil or type(args[1]) == "table" and getmetatable(args[1]) == nil) then
      args[1] = args[1] or {}
      args[1].nonblock = true
      args.n = math.max(args.n, 1)
    end
  end,
  ["core.exit"] = function(args)
    if args[1] == SANITIZER_EXIT then args[1] = 0 end
  end,
  -- a unix socket path reaches across namespaces (a world-writable /dev/log is the machine's syslog): only the
  -- worker's own /tmp, with the path's length and bytes kept for the checks
  ["core.unix_connect"] = function(args)
    if type(args[1]) == "string" then args[1] = "/tmp/" .. args[1]:gsub("/", "_") end
  end,
  ["core.unix_listen"] = function(args)
    if type(args[1]) == "string" then args[1] = "/tmp/listen-" .. args[1]:gsub("/", "_") end
  end,
  -- never for ever: a listener nobody connects to would stall the batch
  ["core.unix_accept"] = function(args)
    if args[2] == nil or (type(args[2]) == "number" and args[2] > 0.05) then
      args[2] = 0.01
      args.n = math.max(args.n, 2)
    end
  end,
  -- only the small tree the template makes, into a new directory: a copy of / would fill the worker's /tmp
  ["core.copy_tree"] = function(args)
    for i, make in ipairs{ "copy_source", "copy_dest" } do
      local a = args[i]
      if math.type(a) == "integer" or (type(a) == "userdata" and pcall(function() return a:fileno() end)) then
        args[i] = helpers[make]() or a
      end
    end
  end,
  -- FIFOs go where no other call looks: opening one waits for the other end and stalls the batch
  ["core.mkfifo"] = function(args)
    if type(args[1]) == "string" then args[1] = "/tmp/fifo-" .. args[1]:gsub("/", "_") end
  end,
  ["core.mknod_in_root"] = function(args)
    local node = args[3]
    if type(node) == "table" and getmetatable(node) == nil and rawget(node, "type") == "fifo"
      and type(args[2]) == "string" then
      args[2] = "fifo-" .. args[2]:gsub("/", "_")
    end
  end,
}
-- With --verbose, stderr stays the caller's, perhaps a terminal: the calls that change a terminal's settings get
-- /dev/null (the worker's stdin) there instead.
for _, name in ipairs{ "core.tty_raw", "core.tty_restore", "core.tty_winsize", "core.set_controlling_tty" } do
  SHAPERS[name] = function(args)
    if args[1] == 2 then args[1] = 0 end
  end
end

local targets = {}

local function add_target(name, fn, kind, weight)
  if opts.only and not name:find(opts.only, 1, true) then return end
  targets[#targets + 1] = { name = name, fn = fn, kind = kind, weight = weight or 1 }
end

-- Calls that end or replace the worker, or block by design: rarer, so that batches get far.
local RARE = { ["core.exit"] = 0.05, ["core.exec"] = 0.1, ["core.reaper"] = 0.03, ["core.reaper_exec"] = 0.03,
  ["core.pivot_root"] = 0.3,
  ["core.chroot"] = 0.3, ["core.seccomp_load_bpf"] = 0.3, ["core.close_range"] = 0.2, ["core.drop_capabilities"] = 0.3,
  ["core.setrlimit"] = 0.3 }

-- Core functions that return what a callback of theirs returned: only a Lua error is theirs to answer for (a
-- random callback may well return nil, a userdata, ...).
local PASSTHROUGH = { ["core.interrupt_defer"] = true }

for name, fn in pairs(core) do
  local target = "core." .. name
  if type(fn) == "function" then add_target(target, fn, PASSTHROUGH[target] and "lua" or "core", RARE[target]) end
end

-- The public Lua API: every module's functions (not the _internal ones), and the CLI's commands.
local MODULES = { "lunas", "lunas.net", "lunas.cgroup", "lunas.security", "lunas.json", "lunas.fs", "lunas.ns",
  "lunas.sandbox", "lunas.errors", "lunas.process", "lunas.lab_record", "lunas.interrupt", "lunas.firewall", "lunas.monitor", "lunas.sandbox_record" }
for _, modname in ipairs(MODULES) do
  local ok, mod = pcall(require, modname)
  if ok and type(mod) == "table" then
    for name, fn in pairs(mod) do
      if type(fn) == "function" and name:sub(1, 1) ~= "_" then add_target(modname .. "." .. name, fn, "lua") end
    end
  end
end
-- (not stats, top or events: they wait a second, for a terminal, or for ever, by design)
for _, command in ipairs{ "run", "enter", "ns", "lab", "gc", "ps" } do
  local ok, mod = pcall(require, "lunas.cli." .. command)
  if ok and type(mod.main) == "function" then
    add_target("cli." .. command, function(...)
      -- a command line: words lunas knows, options of the command, and random ones
      local argv = {}
      for i = 1, random(0, 8) do
        local r = random(3)
        argv[i] = r == 1 and ("--" .. pick(KEYS):gsub("_", "-")) or r == 2 and pick(WORDS) or random_string()
      end
      if random(2) == 1 then argv[#argv + 1] = "--" end
      argv[#argv + 1] = select(1, ...) ~= nil and tostring(select(1, ...)) or "true"
      return mod.main(argv)
    end, "lua", 0.5)
  end
end
table.sort(targets, function(a, b) return a.name < b.name end)

local total_weight = 0
for _, t in ipairs(targets) do total_weight = total_weight + t.weight end

local function pick_target()
  local x = random() * total_weight
  for _, t in ipairs(targets) do
    x = x - t.weight
    if x <= 0 then return t end
  end
  return targets[#targets]
end

-- Names of the Lua classes the modules export (net.Lab, ...), for the reports.
local class_names = {}
for _, modname in ipairs{ "lunas.net", "lunas.sandbox", "lunas.cgroup", "lunas.security", "lunas.lab_record" } do
  local ok, mod = pcall(require, modname)
  if ok and type(mod) == "table" then
    for k, v in pairs(mod) do
      if type(v) == "table" and rawget(v, "__index") ~= nil then class_names[v] = modname .. "." .. k end
    end
  end
end

-- The methods of an object's class. An __index that is a function (process handles compute `pid`) is asked for
-- every word lunas knows, once per class.
local methods_of = setmetatable({}, { __mode = "k" })
function method_names(obj, mt)
  if methods_of[mt] then return methods_of[mt] end
  local names = {}
  if type(mt.__index) == "table" then
    for k, v in pairs(mt.__index) do
      if type(v) == "function" then names[#names + 1] = k end
    end
  elseif type(mt.__index) == "function" then
    for _, word in ipairs(KEYS) do
      local ok, v = pcall(mt.__index, obj, word)
      if ok and type(v) == "function" then names[#names + 1] = word end
    end
  end
  for _, meta in ipairs{ "__close", "__gc", "__tostring", "__len", "__index", "__call" } do
    if type(rawget(mt, meta)) == "function" then names[#names + 1] = meta end
  end
  table.sort(names)
  methods_of[mt] = names
  return names
end

-- A method of a pooled object: one of its class's methods or metamethods.
local function pick_method()
  local obj = pool_object()
  if obj == nil then return nil end
  local mt = getmetatable(obj)
  if type(mt) ~= "table" then return nil end
  local names = method_names(obj, mt)
  if #names == 0 then return nil end
  local name = pick(names)
  local fn = rawget(mt, name)
  if name:sub(1, 2) ~= "__" or type(fn) ~= "function" then
    local ok, method = pcall(function() return obj[name] end)
    fn = ok and method or fn
  end
  if type(fn) ~= "function" then return nil end
  local class = rawget(mt, "__name") or class_names[mt] or "object"
  return { name = ("%s:%s"):format(class, name), fn = fn, kind = type(obj) == "userdata" and "core" or "lua",
    self = obj, method = name }
end

-- ---- checking results ---------------------------------------------------------------------------------------

local function describe(v)
  local t = type(v)
  if t == "string" then
    if #v > 40 then return ("string(%d)"):format(#v) end
    return ("%q"):format(v):gsub("\n", "n")
  end
  if t == "number" then return tostring(v) end
  if t == "table" then
    local mt = getmetatable(v)
    return mt and mt.__name and tostring(mt.__name) or "table"
  end
  return t
end

local function describe_args(args)
  local parts = {}
  for i = 1, args.n do parts[i] = describe(args[i]) end
  return table.concat(parts, ", ")
end

local function is_error_object(e)
  local mt = getmetatable(e)
  return type(e) == "table" and type(mt) == "table" and mt.__tostring ~= nil and e.msg ~= nil
end

-- nil, "message", "ENAME" from the core; a Lua error (a string, or a lunas error object) from anything.
local function contract_violation(target, results)
  if not results[1] then
    local e = results[2]
    if type(e) == "string" or is_error_object(e) then return nil end
    -- a callback we passed may raise anything it likes; our generated ones raise strings
    return ("raised a %s, not a message"):format(type(e))
  end
  if target.kind ~= "core" then return nil end
  if results.n >= 3 and results[2] == nil and (results[3] ~= nil or results.n >= 4) then
    local msg, code = results[3], results[4]
    if type(msg) ~= "string" or msg == "" then return "failed without a message" end
    if type(code) ~= "string" or not code:match("^E[%u%d]+$") then
      return ("failed with code %s (%s)"):format(describe(code), msg:sub(1, 80))
    end
  end
  return nil
end

-- lunas's objects: userdata of its C classes, tables of its Lua classes (not Lua's own files, not our tables).
local function lunas_object(v)
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return false end
  local name = rawget(mt, "__name")
  if type(v) == "userdata" then return type(name) == "string" and name:match("^lunas") ~= nil end
  return type(v) == "table" and name ~= "fuzz.raising" and not is_error_object(v)
end

local function harvest(results)
  for i = 2, results.n do
    local v = results[i]
    local keep = lunas_object(v)
    if keep then
      if #pool < POOL_MAX then pool[#pool + 1] = v else pool[random(POOL_MAX)] = v end
    end
  end
end

-- Calls after which the worker's own process may no longer be able to write a sanitizer's report (a seccomp
-- filter refusing open, a Landlock domain, a new root or user namespace, no descriptors left): a sanitizer's exit
-- without a report after one of them is the fuzzer hurting itself, not a finding. A report written is always one.
local CONFINING = {
  ["lunas.seccomp:load"] = true, ["core.seccomp_load_bpf"] = true, ["lunas.landlock:restrict"] = true,
  ["lunas.security.apply_landlock"] = true, ["core.setrlimit"] = true, ["core.chroot"] = true,
  ["core.pivot_root"] = true, ["core.mount"] = true, ["core.umount"] = true, ["core.move_mount"] = true,
  ["core.unshare"] = true, ["core.setns"] = true, ["lunas.ns.enter"] = true, ["core.setresuid"] = true,
  ["core.setresgid"] = true, ["core.chdir"] = true, ["core.mount_setattr"] = true,
}

-- One object of every class, so that every batch calls methods of all of them (a lab with nodes and a link, so
-- that lab:link and node methods find what they name).
local function seed_pool()
  local function add(v)
    if v ~= nil and #pool < POOL_MAX then pool[#pool + 1] = v end
  end
  local function try(f, ...)
    local ok, v = pcall(f, ...)
    return ok and v or nil
  end
  add(core.netlink())
  -- (non-blocking: a read of the empty pipe answers EAGAIN instead of stalling the batch)
  local r, w = core.pipe{ nonblock = true }
  add(r)
  add(w)
  add(core.socketpair("stream"))
  add(try(core.seccomp_filter, { default = "allow" }))
  add(try(core.landlock_ruleset, { fs = "read_file" }))
  add(core.ns_create("uts"))
  add(core.spawn{ fn = function() core.poll({ (core.pipe()) }, 0.5) core.exit(0) end })
  local lab = try(require("lunas.net").lab, { name = "fz", netns_dir = false })
  if lab then
    add(lab)
    for _, node in ipairs{ { "host", "h1" }, { "host", "h2" }, { "switch", "s1" }, { "router", "r1" } } do
      add(try(lab[node[1]], lab, node[2]))
    end
    add(try(lab.link, lab, "h1", "s1"))
    add(try(lab.link, lab, "h2", "r1", { rate = "10mbit" }))
  end
  add(try(require("lunas").sandbox, { argv = { "/bin/true" } }))
  add(try(require("lunas.security").listener, 0))
end

-- ---- the worker ---------------------------------------------------------------------------------------------

local function worker(seed, progress, findings, stats_fd)
  math.randomseed(seed)
  -- output of the calls (warnings, help texts, payloads) is noise here
  local null = core.open("/dev/null", "rw")
  if null then
    core.dup2(null, 0)
    core.dup2(null, 1)
    if opts.verbose == 0 then core.dup2(null, 2) end
  end
  -- a private /tmp, /var/tmp and /dev/shm: what the calls write there goes with the worker's mount namespace
  for _, dir in ipairs{ "/tmp", "/var/tmp", "/dev/shm" } do core.mount("tmpfs", dir, "tmpfs", "nosuid,nodev") end
  core.mkdir("/tmp/fuzz")
  -- the cgroup tree of the fuzzer's own cgroup namespace (read-only to it: run.sh hid the machine's), so that
  -- lunas.cgroup finds a hierarchy and goes past its layout checks
  core.mount("cgroup2", "/sys/fs/cgroup", "cgroup2", "nosuid,nodev,noexec")
  seed_pool()
  local reported = 0
  local function report(line)
    if not progress then return end
    local ok = pcall(progress.write, progress, line)
    if not ok then progress = nil end
  end
  local function find(text)
    if findings then pcall(findings.write, findings, text .. "\n") end
  end
  local violations = {}
  local raised, failed, succeeded = 0, 0, 0
  local per_target = {}
  for i = 1, opts.batch do
    local target = (#pool > 0 and random(10) <= 4) and pick_method() or pick_target()
    local args = template_args(target.method or target.name) or random_args()
    local shaper = SHAPERS[target.name] or (target.method and SHAPERS["method." .. target.method])
    if shaper then shaper(args) end
    if target.self ~= nil then
      table.insert(args, 1, random(20) == 1 and random_value() or target.self)
      args.n = args.n + 1
    end
    report(("%d\t%s(%s)\n"):format(i, target.name, describe_args(args)))
    if opts.verbose > 0 then io.stderr:write(("%d\t%s(%s)\n"):format(i, target.name, describe_args(args))) end
    reported = i
    local results = table.pack(pcall(target.fn, unpack(args, 1, args.n)))
    local counts = per_target[target.name]
    if not counts then
      counts = { 0, 0, 0 }
      per_target[target.name] = counts
    end
    local outcome
    if not results[1] then
      raised, outcome = raised + 1, 1
    elseif results[2] == nil and type(results[3]) == "string" then
      failed, outcome = failed + 1, 2
    else
      succeeded, outcome = succeeded + 1, 3
    end
    counts[outcome] = counts[outcome] + 1
    if results[1] and results[2] ~= nil and CONFINING[target.name] then report(("confined\t%s\n"):format(target.name)) end
    local violation = contract_violation(target, results)
    if violation and not violations[target.name] then
      violations[target.name] = true
      find(("contract\t%d\t%d\t%s(%s): %s"):format(seed, i, target.name, describe_args(args), violation))
    end
    harvest(results)
    if i % 50 == 0 then collectgarbage() end
  end
  if stats_fd then
    local lines = {}
    for name, c in pairs(per_target) do lines[#lines + 1] = ("%s\t%d\t%d\t%d\n"):format(name, c[1], c[2], c[3]) end
    pcall(stats_fd.write, stats_fd, table.concat(lines))
  end
  report(("done\t%d\t%d\t%d\t%d\n"):format(reported, raised, failed, succeeded))
  core.exit(0)
end

-- ---- the supervisor -----------------------------------------------------------------------------------------

local function ensure_dir(path)
  local ok, msg, code = core.mkdir(path)
  if not ok and code ~= "EEXIST" then error(msg) end
end

ensure_dir(opts.out)
local findings_path = opts.out .. "/findings"

local function append_finding(line)
  local f = assert(io.open(findings_path, "a"))
  f:write(line, "\n")
  f:close()
end

local summary = { calls = 0, batches = 0, seed = opts.seed, stalls = 0, crashes = 0, sanitizer = 0, raised = 0,
  failed = 0, succeeded = 0,
  ended_early = 0, contract = 0, targets = #targets, stalled_in = {}, ended_by = {}, ended_seeds = {}, stalled_seeds = {} }

-- Reads a worker's progress lines until it is done, dies or stalls; returns the number of calls it reported
-- and its last line.
local function follow(proc, r)
  local buffer, last, calls, confined = "", nil, 0, nil
  local deadline_total = core.now() + math.max(60, opts.stall * 20)
  while true do
    local ready = core.poll({ r }, opts.stall)
    if not ready or #ready == 0 then return calls, last, "stall", confined end
    local chunk = r:read(65536)
    if not chunk or chunk == "" then return calls, last, nil, confined end
    buffer = buffer .. chunk
    for line in buffer:gmatch("([^\n]*)\n") do
      local confining = line:match("^confined\t(.*)$")
      if confining then
        confined = confined or confining
      else
        last = line
        local n = tonumber(line:match("^(%d+)\t"))
        if n then calls = n end
      end
    end
    buffer = buffer:match("[^\n]*$")
    if core.now() > deadline_total then return calls, last, "stall", confined end
  end
end

local function run_batch(seed)
  local r, w = assert(core.pipe())
  local findings_fd = assert(core.open(findings_path, "a"))
  local stats_fd = assert(core.open(opts.out .. "/stats", "a"))
  local proc, msg = core.spawn{ flags = "pid,mount,net,uts,ipc", fn = function()
    r:close()
    worker(seed, w, findings_fd, stats_fd)
  end }
  w:close()
  findings_fd:close()
  stats_fd:close()
  if not proc then error("cannot start a worker: " .. tostring(msg)) end
  local calls, last, how, confined = follow(proc, r)
  r:close()
  if how == "stall" then
    proc:kill("KILL")
    summary.stalls = summary.stalls + 1
    local name = last and last:match("^%d+\t([^(]+)") or "?"
    summary.stalled_in[name] = (summary.stalled_in[name] or 0) + 1
    summary.stalled_seeds[name] = summary.stalled_seeds[name] or {}
    table.insert(summary.stalled_seeds[name], seed)
  end
  local status = proc:wait(30)
  if not status then
    proc:kill("KILL")
    status = proc:wait()
  end
  proc:close()
  summary.calls = summary.calls + calls
  summary.batches = summary.batches + 1
  -- the sanitizers name their logs by pid, and every worker is PID 1 of its own namespace: file them by batch
  local reports = 0
  for _, entry in ipairs(list_dir(opts.out)) do
    local pid = entry:match("^sanitizer%.(%d+)$")
    if pid then
      os.rename(opts.out .. "/" .. entry, ("%s/sanitizer-batch-%d.%s"):format(opts.out, seed, pid))
      reports = reports + 1
    end
  end
  if reports > 0 then
    summary.sanitizer = summary.sanitizer + 1
    append_finding(("sanitizer\t%d\t%d\t%d reports (sanitizer-batch-%d.*) after %s"):format(seed, calls, reports,
      seed, tostring(last)))
    return
  end
  local done = last and last:match("^done\t")
  if done then
    local r, f, o = last:match("^done\t%d+\t(%d+)\t(%d+)\t(%d+)")
    summary.raised = summary.raised + tonumber(r)
    summary.failed = summary.failed + tonumber(f)
    summary.succeeded = summary.succeeded + tonumber(o)
  end
  if how == "stall" then return end
  if status.signal and CRASH_SIGNALS[status.signame] then
    summary.crashes = summary.crashes + 1
    append_finding(("crash\t%d\t%d\tSIG%s after %s"):format(seed, calls, status.signame, tostring(last)))
  elseif status.status == SANITIZER_EXIT and confined then
    summary.ended_early = summary.ended_early + 1
    local name = "sanitizer exit after " .. confined
    summary.ended_by[name] = (summary.ended_by[name] or 0) + 1
  elseif status.status == SANITIZER_EXIT then
    summary.sanitizer = summary.sanitizer + 1
    append_finding(("sanitizer\t%d\t%d\texit %d (no report) after %s"):format(seed, calls, SANITIZER_EXIT,
      tostring(last)))
  elseif not done or status.status ~= 0 then
    summary.ended_early = summary.ended_early + 1
    local name = last and last:match("^%d+\t([^(]+)") or "?"
    summary.ended_by[name] = (summary.ended_by[name] or 0) + 1
    if #summary.ended_seeds < 20 then summary.ended_seeds[#summary.ended_seeds + 1] = seed end
  end
end

local started = core.now()
if opts.replay then
  run_batch(opts.replay)
else
  local b = 0
  while summary.calls < opts.calls do
    b = b + 1
    run_batch(opts.seed + b)
  end
end
summary.seconds = core.now() - started
-- per target: calls that raised, failed and succeeded (summary.json); the ones never past their checks are named
summary.per_target = {}
for line in (util.read(opts.out .. "/stats") or ""):gmatch("[^\n]+") do
  local name, r, f, o = line:match("^(.-)\t(%d+)\t(%d+)\t(%d+)$")
  if name then
    local c = summary.per_target[name] or { raised = 0, failed = 0, succeeded = 0 }
    c.raised, c.failed, c.succeeded = c.raised + tonumber(r), c.failed + tonumber(f), c.succeeded + tonumber(o)
    summary.per_target[name] = c
  end
end
os.remove(opts.out .. "/stats")
local never_past_checks = {}
for _, t in ipairs(targets) do
  local c = summary.per_target[t.name]
  if not c or c.failed + c.succeeded == 0 then never_past_checks[#never_past_checks + 1] = t.name end
end
summary.never_past_checks = never_past_checks
for line in (util.read(findings_path) or ""):gmatch("[^\n]+") do
  if line:match("^contract\t") then summary.contract = summary.contract + 1 end
end

local json = require "lunas.json"
local f = assert(io.open(opts.out .. "/summary.json", "w"))
f:write(json.encode(summary, { indent = "  " }), "\n")
f:close()
print(("fuzz: %d calls in %d batches (%d targets) in %.1f s, seed %d: %d crashes, %d sanitizer exits, "
  .. "%d contract violations, %d stalls, %d batches ended early; in finished batches %d calls raised, %d failed "
  .. "(nil, message, code), %d succeeded"):format(summary.calls, summary.batches, summary.targets, summary.seconds,
  summary.seed, summary.crashes, summary.sanitizer, summary.contract, summary.stalls, summary.ended_early,
  summary.raised, summary.failed, summary.succeeded))
local function top(counts)
  local list = {}
  for name, n in pairs(counts) do list[#list + 1] = { name, n } end
  table.sort(list, function(a, b) return a[2] > b[2] or a[2] == b[2] and a[1] < b[1] end)
  local parts = {}
  for i = 1, math.min(#list, 12) do parts[i] = ("%s %d"):format(list[i][1], list[i][2]) end
  return table.concat(parts, ", ")
end
if #never_past_checks > 0 then
  print(("fuzz: %d targets never got past their argument checks: %s"):format(#never_past_checks,
    table.concat(never_past_checks, " ")))
end
if summary.stalls > 0 then print("fuzz: stalled in (a legitimate block; the batch was killed): " .. top(summary.stalled_in)) end
if summary.ended_early > 0 then
  print("fuzz: batches ended early by: " .. top(summary.ended_by))
  print("fuzz: seeds of batches that ended early: " .. table.concat(summary.ended_seeds, " "))
end
os.exit(0)
