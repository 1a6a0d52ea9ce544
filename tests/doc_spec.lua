-- The API reference (LDoc: config.ld, `make doc`) stays complete. The names LDoc documents are compared with the
-- names the code exports, both ways:
--   * exported: every key of lunas, lunas.core and each module of lua/lunas (lua/lunas/cli, the host binary's
--     commands, is no API), except names starting with "_"; every method of the object types, named
--     "Type:method": the core's from the metatables it registers ("lunas.fd" -> type fd), the Lua modules' from
--     their class tables (t.__index == t), exported (net.Lab) or reached through the upvalues of the module's own
--     functions (sandbox's Running, security's Listener and Request), named after that upvalue;
--   * documented: what `ldoc --filter` reports (tests/support/ldoc_names.lua), types (@type) included, listed as
--     "NAME (type)".
-- A name missing on either side fails the test, listed by module.

local lfs = require "lfs"
local util = require "support.util"

-- ---- what the code exports ----------------------------------------------------------------------------------

local function public(name)
  return type(name) == "string" and not name:find("^_")
end

local function is_class(v)
  return type(v) == "table" and rawget(v, "__index") == v
end

-- Every module of lua/lunas (not lua/lunas/cli), by name, with its file.
-- lua/lunas/*.lua and the modules of its subdirectories (lunas.oci.*), but the host binary's commands (cli).
local function lua_modules()
  local modules = {}
  local function scan(dir, prefix)
    for name in lfs.dir(dir) do
      local path = dir .. "/" .. name
      local mode = lfs.attributes(path, "mode")
      if name:match("%.lua$") and mode == "file" then
        modules[name == "init.lua" and prefix or prefix .. "." .. name:gsub("%.lua$", "")] = path
      elseif mode == "directory" and prefix == "lunas" and name ~= "cli" and not name:match("^%.") then
        scan(path, prefix .. "." .. name)
      end
    end
  end
  scan(util.root .. "/lua/lunas", "lunas")
  return modules
end

local Exports = {}
Exports.__index = Exports

local function new_exports()
  return setmetatable({ names = {} }, Exports)
end

function Exports:add(module, name, kind)
  self.names[module] = self.names[module] or {}
  self.names[module][name] = kind
end

-- A type is listed as "NAME (type)": core.netlink, the function, and netlink, the type of what it returns, are
-- two entries.
local function type_key(name)
  return name .. " (type)"
end

function Exports:add_class(module, name, methods)
  self:add(module, type_key(name), "type")
  for k, v in pairs(methods) do
    if public(k) and type(v) == "function" then self:add(module, name .. ":" .. k, "method") end
  end
end

-- Classes reachable from `roots` through upvalues, following only functions defined in `source` (a module's own
-- file): {[upvalue name] = class}.
local function reachable_classes(source, roots)
  local found, seen = {}, {}
  local function visit(f)
    if seen[f] then return end
    seen[f] = true
    if debug.getinfo(f, "S").source ~= source then return end
    for i = 1, 255 do
      local name, v = debug.getupvalue(f, i)
      if not name then break end
      if type(v) == "function" then
        visit(v)
      elseif is_class(v) and not seen[v] then
        seen[v] = true
        found[name] = v
        for _, m in pairs(v) do
          if type(m) == "function" then visit(m) end
        end
      end
    end
  end
  for _, f in ipairs(roots) do visit(f) end
  return found
end

local function add_lua_module(exports, module, path)
  local m = require(module)
  local roots, exported_classes = {}, {}
  for k, v in pairs(m) do
    if public(k) then
      if type(v) == "function" then
        exports:add(module, k, "function")
        roots[#roots + 1] = v
      elseif is_class(v) then
        exports:add_class(module, k, v)
        exported_classes[v] = true
        for _, f in pairs(v) do
          if type(f) == "function" then roots[#roots + 1] = f end
        end
      else
        exports:add(module, k, "value")
      end
    end
  end
  for name, class in pairs(reachable_classes("@" .. path, roots)) do
    if not exported_classes[class] then exports:add_class(module, name, class) end
  end
end

-- The core's object types: the metatables it registers under "lunas.NAME", with their methods (__index: the
-- method table, or a function whose first upvalue is that table, as for process handles and their pid field).
local function core_classes()
  local classes = {}
  for key, mt in pairs(debug.getregistry()) do
    if type(key) == "string" and key:match("^lunas%.") and type(mt) == "table" then
      local methods = rawget(mt, "__index")
      if type(methods) == "function" then
        local _, upvalue = debug.getupvalue(methods, 1)
        methods = upvalue
      end
      if type(methods) == "table" then classes[key:sub(#"lunas." + 1)] = { metatable = mt, methods = methods } end
    end
  end
  return classes
end

local function exported_names()
  local exports = new_exports()
  for module, path in pairs(lua_modules()) do add_lua_module(exports, module, path) end
  local core = require "lunas.core"
  for k, v in pairs(core) do
    if public(k) then exports:add("lunas.core", k, type(v) == "function" and "function" or "value") end
  end
  for name, class in pairs(core_classes()) do exports:add_class("lunas.core", name, class.methods) end
  return exports.names
end

-- ---- what LDoc documents ----------------------------------------------------------------------------------------

local function find_ldoc()
  local out, _, code = util.sh("command -v ldoc")
  return code == 0 and out:match("^(%S+)") or nil
end

-- Runs ldoc in the repository with config.ld and extra arguments; returns stdout, stderr, exit code. Debian's
-- ldoc runs on Lua 5.1 or 5.2 (lua-any): only LUA_PATH is set, to reach the filter and the formatter.
local function run_ldoc(args)
  local env = "env -u LUA_INIT -u LUA_INIT_5_1 -u LUA_INIT_5_2 -u LUA_PATH_5_2 LUA_PATH="
    .. util.quote(util.root .. "/doc/?.lua;" .. util.root .. "/tests/?.lua;;")
  return util.sh(("cd %s && %s ldoc --fatalwarnings %s ."):format(util.quote(util.root), env, args))
end

-- ldoc's output without the two lines it prints for each file of a merged module.
local function ldoc_messages(text)
  return (text:gsub("found master module[^\n]*\n", ""):gsub("%*%*%*closing section from master module%*%*%*\n", ""))
end

-- names[module][name] = kind ("type" for an @type), and the set of modules; or nil and ldoc's messages.
local function documented_names()
  local out, err, code = run_ldoc("--filter support.ldoc_names.print")
  if code ~= 0 then return nil, ("ldoc failed (exit %d):\n%s%s"):format(code, err, ldoc_messages(out)) end
  local names, modules = {}, {}
  for line in out:gmatch("[^\n]+") do
    local fields = {}
    for f in line:gmatch("[^\t]+") do fields[#fields + 1] = f end
    if fields[1] == "module" then
      modules[fields[2]] = true
      names[fields[2]] = names[fields[2]] or {}
    elseif fields[1] == "type" then
      names[fields[2]][type_key(fields[3])] = "type"
    elseif fields[1] == "item" then
      names[fields[2]][fields[4]] = fields[3]
    end
  end
  return names, modules
end

-- LDoc skips a `---` comment whose first line holds " --word" with no "-" after it, taking the line for a
-- "--- banner ---" (Lua's end_comment_ pattern in ldoc/lang.lua): the name it documents would then look
-- undocumented for no visible reason. Such lines, as "file:line".
local function swallowed_doc_lines()
  local found = {}
  for _, path in pairs(lua_modules()) do
    local n, previous = 0, ""
    for line in io.lines(path) do
      n = n + 1
      local starts = line:match("^%s*%-%-%-") and not previous:match("^%s*%-%-")
      if starts and (line .. "\n"):match("[^%-]%-%-+[^-]*\n$") then
        found[#found + 1] = path:sub(#util.root + 2) .. ":" .. n
      end
      previous = line
    end
  end
  table.sort(found)
  return found
end

-- ---- comparing ------------------------------------------------------------------------------------------------

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- Lines "  MODULE: name, name" for the names of `a` missing from `b`; documented names with a dot (fields of a type
-- or table, "fd.x") describe parts of a value, not exports, and are never counted as stale.
local function missing(a, b, skip_dotted)
  local lines = {}
  local modules = {}
  for m in pairs(a) do modules[m] = true end
  for _, m in ipairs(sorted_keys(modules)) do
    local names = {}
    for _, name in ipairs(sorted_keys(a[m])) do
      if not (b[m] and b[m][name]) and not (skip_dotted and name:find(".", 1, true)) then names[#names + 1] = name end
    end
    if #names > 0 then lines[#lines + 1] = ("    %s: %s"):format(m, table.concat(names, ", ")) end
  end
  return lines
end

local function count(names)
  local n = 0
  for _ in pairs(names or {}) do n = n + 1 end
  return n
end

describe("API reference #root", function()
  local ldoc
  before_each(function()
    ldoc = find_ldoc()
  end)

  it("documents every exported name of lunas, lunas.core and the modules, and nothing else", function()
    if not ldoc then return pending("needs ldoc (Debian's lua-ldoc; make test and make doc install it)") end
    local exported = exported_names()
    local problems = {}
    local swallowed = swallowed_doc_lines()
    if #swallowed > 0 then
      problems[#problems + 1] = "  doc comments LDoc ignores (a first line with \" --word\" and no \"-\" after it): "
        .. table.concat(swallowed, ", ")
    end
    local documented, modules = documented_names()
    if not documented then
      problems[#problems + 1] = "  " .. modules:gsub("\n$", ""):gsub("\n", "\n  ")
      assert.is_true(false, "the API reference (config.ld, `make doc`) cannot be built:\n" .. table.concat(problems, "\n"))
    end
    for _, m in ipairs(sorted_keys(exported)) do
      if not modules[m] then problems[#problems + 1] = ("  module %s has no LDoc page (no @module %s)"):format(m, m) end
    end
    for _, m in ipairs(sorted_keys(modules)) do
      if not exported[m] then problems[#problems + 1] = ("  LDoc documents module %s, which is not one of lunas's"):format(m) end
    end
    local undocumented = missing(exported, documented, false)
    if #undocumented > 0 then
      problems[#problems + 1] = "  undocumented (exported, no LDoc entry):"
      for _, l in ipairs(undocumented) do problems[#problems + 1] = l end
    end
    local stale = missing(documented, exported, true)
    if #stale > 0 then
      problems[#problems + 1] = "  stale (documented, not exported):"
      for _, l in ipairs(stale) do problems[#problems + 1] = l end
    end
    assert.is_true(#problems == 0, "the API reference (config.ld, `make doc`) does not match the code:\n"
      .. table.concat(problems, "\n") .. "\n"
      .. "Document a Lua function with a `---` comment right above it (a method inside its `@type` section); a C\n"
      .. "function with a /*** ... @function NAME ... */ block above it (methods: @function TYPE:NAME); a new C file\n"
      .. "of the core also goes in config.ld's file list. A module function documented after a `@type` section\n"
      .. "becomes TYPE:name: end the section first with a `--- @section end` comment.")
    -- Both sides are large: an empty enumeration must not pass for a complete reference.
    assert.is_true(count(exported["lunas.core"]) > 100, "too few names exported by lunas.core")
    assert.is_true(count(exported.lunas) > 10, "too few names exported by lunas")
  end)

  it("sees the methods of the core's objects as the objects themselves offer them", function()
    local core = require "lunas.core"
    local classes = core_classes()
    local objects = {}
    local cleanups = util.cleanups(finally)
    local function keep(name, obj)
      assert.is_not_nil(obj, name)
      objects[name] = obj
      cleanups(function() obj:close() end)
    end
    local r, w = assert(core.pipe())
    cleanups(function() w:close() end)
    keep("fd", r)
    keep("process", assert(core.pidfd_open(core.getpid())))
    keep("ns", assert(core.ns_open("net")))
    keep("netlink", assert(core.netlink()))
    keep("seccomp", assert(core.seccomp_filter{}))
    if core.landlock_abi() >= 1 then keep("landlock", assert(core.landlock_ruleset{ fs = "read_file" })) end
    for name, obj in pairs(objects) do
      local class = classes[name]
      assert.is_not_nil(class, "no registered type " .. name)
      assert.are.equal(class.metatable, getmetatable(obj), name)
      for method in pairs(class.methods) do
        assert.are.equal("function", type(obj[method]), name .. ":" .. method)
      end
    end
  end)

  it("builds the HTML pages of `make doc`: an index and a page per module", function()
    if not ldoc then return pending("needs ldoc (Debian's lua-ldoc; make test and make doc install it)") end
    local dir, remove = util.tmpdir()
    finally(remove)
    local out, err, code = run_ldoc("-d " .. util.quote(dir))
    assert.are.equal(0, code, err .. ldoc_messages(out))
    assert.is_truthy(lfs.attributes(dir .. "/index.html"), "index.html")
    local modules = lua_modules()
    modules["lunas.core"] = true
    for m in pairs(modules) do
      local page = util.read(dir .. "/modules/" .. m .. ".html")
      assert.is_truthy(page, "no page for " .. m)
      assert.is_truthy(page:find("<h1>Module <code>" .. m:gsub("%.", "%%.") .. "</code></h1>"), m)
    end
  end)
end)
