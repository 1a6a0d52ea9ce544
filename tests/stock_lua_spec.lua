-- lunas outside its host binary: the stock `lua5.4` interpreter loading the module from the source tree, from
-- a `make install` tree, and from a luarocks tree built from rockspec/lunas-scm-1.rockspec.

local lfs = require "lfs"
local core = require "lunas.core"
local util = require "support.util"
local kernel = require "support.kernel"

-- ---- helpers ------------------------------------------------------------------------------------------------

local sh = util.sh
local MAKE_BUILD = util.make_build()

-- Runs stock lua5.4 with exactly these module paths (no default entries) on a chunk or a file.
local function stock_lua(lua_path, lua_cpath, args)
  local words = {}
  for i, a in ipairs(args) do words[i] = util.quote(a) end
  return sh(("env -u LUA_INIT -u LUA_INIT_5_4 LUA_PATH=%s LUA_CPATH=%s lua5.4 %s"):format(util.quote(lua_path),
    util.quote(lua_cpath), table.concat(words, " ")))
end

local function source_paths()
  return util.root .. "/lua/?.lua;" .. util.root .. "/lua/?/init.lua", util.build .. "/lib/?.so"
end

local function lunas_version()
  local out, err, code = sh(util.quote(util.bin) .. " --version")
  assert.are.equal(0, code, err)
  return out:match("^lunas (%d+%.%d+%.%d+)")
end

-- The Lua modules of the tree: { ["lunas.cli.run"] = "cli/run.lua", ... } (paths relative to lua/lunas).
local function lua_modules()
  local modules = {}
  local function walk(dir, rel)
    for name in lfs.dir(dir) do
      if name ~= "." and name ~= ".." then
        local path, relpath = dir .. "/" .. name, rel == "" and name or (rel .. "/" .. name)
        local mode = lfs.attributes(path, "mode")
        if mode == "directory" then
          walk(path, relpath)
        elseif mode == "file" and name:match("%.lua$") then
          local module = ("lunas/" .. relpath):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
          modules[module] = relpath
        end
      end
    end
  end
  walk(util.root .. "/lua/lunas", "")
  return modules
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- A chunk for stock lua that loads lunas and every module, prints where they came from, and runs program in a
-- sandbox.
local function probe_chunk(program)
  local requires = {}
  for _, m in ipairs(sorted_keys(lua_modules())) do requires[#requires + 1] = ("require %q"):format(m) end
  local chunk = (table.concat(requires, "\n") .. [[

local lunas = require "lunas"
print("lunas=" .. package.searchpath("lunas", package.path))
print("core=" .. package.searchpath("lunas.core", package.cpath))
print("sandbox source=" .. debug.getinfo(require("lunas.sandbox").new, "S").source)
print("version=" .. require("lunas.core").version)
print("status=" .. tostring(lunas.sandbox{argv={PROGRAM}}:run().status))
]]):gsub("PROGRAM", ("%q"):format(program))
  return chunk
end

-- Runs probe_chunk with stock lua and these paths, for /bin/true and /bin/false: modules must come from
-- lua_dir, the core from core_path, and the sandboxes' statuses must be 0 and 1.
local function check_probe(lua_path, lua_cpath, lua_dir, core_path)
  for program, status in pairs({ ["/bin/true"] = 0, ["/bin/false"] = 1 }) do
    local out, err, code = stock_lua(lua_path, lua_cpath, { "-e", probe_chunk(program) })
    assert.are.equal(0, code, err)
    assert.are.equal(table.concat({
      "lunas=" .. lua_dir .. "/lunas/init.lua",
      "core=" .. core_path,
      "sandbox source=@" .. lua_dir .. "/lunas/sandbox.lua",
      "version=" .. lunas_version(),
      "status=" .. status,
      "",
    }, "\n"), out)
  end
end

-- ---- the source tree ----------------------------------------------------------------------------------------

describe("stock lua5.4 #rootless", function()
  it("loads lunas from the source tree and the build, and runs sandboxes", function()
    assert(pending) -- (a global: gives this function the spec's _ENV, where kernel.requires finds pending)
    kernel.requires("userns")
    local lua_path, lua_cpath = source_paths()
    check_probe(lua_path, lua_cpath, util.root .. "/lua", util.build .. "/lib/lunas/core.so")
  end)

  it("require 'lunas.core' has the version `lunas --version` prints", function()
    local lua_path, lua_cpath = source_paths()
    local out, err, code = stock_lua(lua_path, lua_cpath, { "-e", 'io.write(require("lunas.core").version)' })
    assert.are.equal(0, code, err)
    assert.matches("^%d+%.%d+%.%d+$", out)
    assert.are.equal(lunas_version(), out)
    out, err, code = stock_lua(lua_path, lua_cpath, { "-e", 'io.write(require("lunas").version)' })
    assert.are.equal(0, code, err)
    assert.are.equal(lunas_version(), out)
  end)

  it("require 'lunas' loads the high-level modules on first use, and pairs() still lists every field", function()
    local lua_path, lua_cpath = source_paths()
    local out, err, code = stock_lua(lua_path, lua_cpath, { "-e", [[
      local lunas = require "lunas"
      local loaded = {}
      for _, m in ipairs{ "lunas.sandbox", "lunas.cgroup", "lunas.security", "lunas.ns", "lunas.json", "lunas.fs" } do
        if package.loaded[m] then loaded[#loaded + 1] = m end
      end
      print("at start: " .. table.concat(loaded, " "))
      print("ns: " .. tostring(lunas.ns == require("lunas.ns")))
      local keys = {}
      for k in pairs(lunas) do keys[#keys + 1] = k end
      table.sort(keys)
      print("keys: " .. table.concat(keys, " "))
      print("sandbox: " .. tostring(lunas.sandbox == require("lunas.sandbox")))
    ]] })
    assert.are.equal(0, code, err)
    assert.are.equal("at start: \nns: true\nkeys: audit cgroup core error errors firewall fs idrange interrupt is_error json lsm monitor net ns process "
      .. "sandbox security signals spawn topo try version wait\nsandbox: true\n", out)
  end)

  it("reaches every public module under lua/lunas/ from the facade, in stock lua and in the host binary", function()
    local internal = { init = true, lab_record = true, sandbox_record = true, egress = true, files = true }
    local names = {}
    for _, file in ipairs(core.listdir(util.root .. "/lua/lunas")) do
      local name = file:match("^(.+)%.lua$")
      if name and not internal[name] then names[#names + 1] = name end
    end
    table.sort(names)
    assert.is_true(#names >= 10, table.concat(names, " "))
    local check = ([[
      local lunas = require "lunas"
      for name in (%q):gmatch("%%S+") do
        assert(rawequal(lunas[name], require("lunas." .. name)), "lunas." .. name .. " is not the module")
      end
      assert(type(lunas.net.lab) == "function")
      assert(lunas.sandbox{ argv = { "true" } }.spec)
      io.write("ok")
    ]]):format(table.concat(names, " "))
    local lua_path, lua_cpath = source_paths()
    local out, err, code = stock_lua(lua_path, lua_cpath, { "-e", check })
    assert.are.equal(0, code, err)
    assert.are.equal("ok", out)
    out, err, code = util.sh(("%s -e %s"):format(util.quote(util.bin), util.quote(check)))
    assert.are.equal(0, code, err)
    assert.are.equal("ok", out)
  end)

  it("reports a lunas error at the recipe's line", function()
    assert(pending)
    kernel.requires("userns")
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local recipe = dir .. "/recipe.lua"
    util.write(recipe, 'local lunas = require "lunas"\n\nlunas.sandbox{argv={"/nonexistent"}}:run()\n')
    local lua_path, lua_cpath = source_paths()
    local out, err, code = stock_lua(lua_path, lua_cpath, { recipe })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("lua5.4: " .. recipe .. ":3: sandbox: exec: /nonexistent: No such file or directory",
      err:match("^[^\n]*"))
  end)
end)

-- ---- packaging: what make install and the rockspec ship -----------------------------------------------------

describe("packaging #rootless", function()
  it("the rockspec builds through the Makefile, whose rock-install ships every Lua module and a working core", function()
    assert(pending) -- (a global: gives this function the spec's _ENV, where kernel.requires finds pending)
    kernel.requires("userns")
    local spec = {}
    assert(loadfile(util.root .. "/rockspec/lunas-scm-1.rockspec", "t", spec))()
    assert.are.equal("lunas", spec.package)
    assert.are.equal("make", spec.build.type)
    assert.are.equal("rock-install", spec.build.install_target)
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    -- what luarocks' make backend runs, with its directory variables
    local out, err, code = sh(("cd %s && make rock-install %s INST_LIBDIR=%s INST_LUADIR=%s INST_BINDIR=%s"):format(
      util.quote(util.root), MAKE_BUILD, util.quote(dir .. "/lib"), util.quote(dir .. "/share"),
      util.quote(dir .. "/bin")))
    assert.are.equal(0, code, out .. err)
    for module, relpath in pairs(lua_modules()) do
      assert.are.equal(util.read(util.root .. "/lua/lunas/" .. relpath), util.read(dir .. "/share/lunas/" .. relpath), module)
    end
    check_probe(dir .. "/share/?.lua;" .. dir .. "/share/?/init.lua", dir .. "/lib/?.so", dir .. "/share",
      dir .. "/lib/lunas/core.so")
  end)
end)

describe("make install #root", function()
  it("installs the binary, the core and every Lua module, and they work from stock lua5.4", function()
    if not kernel.requires("root") then return end
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local out, err, code = sh(("cd %s && make install DESTDIR=%s PREFIX=/usr %s"):format(util.quote(util.root),
      util.quote(dir), MAKE_BUILD))
    assert.are.equal(0, code, out .. err)
    local usr = dir .. "/usr"
    -- the binary
    assert.are.equal("file", lfs.attributes(usr .. "/bin/lunas", "mode"))
    assert.matches("x", lfs.attributes(usr .. "/bin/lunas", "permissions"):sub(3, 3))
    out, err, code = sh(util.quote(usr .. "/bin/lunas") .. " --version")
    assert.are.equal(0, code, err)
    assert.are.equal(lunas_version(), out:match("^lunas (%d+%.%d+%.%d+)"))
    out, err, code = sh(util.quote(usr .. "/bin/lunas") .. " -e 'os.exit(lunas.sandbox{argv={\"/bin/false\"}}:run().status + 10)'")
    assert.are.equal(11, code, err)
    _, err, code = sh(util.quote(usr .. "/bin/lunas") .. " run -- /bin/sh -c 'exit 7'")
    assert.are.equal(7, code, err)
    -- the C core
    assert.are.equal("file", lfs.attributes(usr .. "/lib/lua/5.4/lunas/core.so", "mode"))
    -- every Lua module, as in the tree
    local share = usr .. "/share/lua/5.4"
    for module, relpath in pairs(lua_modules()) do
      local installed = util.read(share .. "/lunas/" .. relpath)
      assert.is_string(installed, module .. " not installed as " .. share .. "/lunas/" .. relpath)
      assert.are.equal(util.read(util.root .. "/lua/lunas/" .. relpath), installed, module)
    end
    -- stock lua5.4 with paths pointing into DESTDIR only
    check_probe(share .. "/?.lua;" .. share .. "/?/init.lua", usr .. "/lib/lua/5.4/?.so", share,
      usr .. "/lib/lua/5.4/lunas/core.so")
  end)
end)

describe("luarocks", function()
  it("luarocks make builds the rockspec into a tree whose module loads and runs sandboxes", function()
    local _, _, found = sh("command -v luarocks >/dev/null")
    if found ~= 0 then pending("needs luarocks: luarocks is not installed") end
    kernel.requires("userns")
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    -- build from a copy: luarocks compiles next to the sources
    local copy, tree = dir .. "/src", dir .. "/tree"
    local out, err, code = sh(("mkdir %s && cp -r %s %s %s %s %s/"):format(util.quote(copy),
      util.quote(util.root .. "/src"), util.quote(util.root .. "/lua"), util.quote(util.root .. "/rockspec"),
      util.quote(util.root .. "/Makefile"), util.quote(copy)))
    assert.are.equal(0, code, err)
    -- (the headers where pkg-config says: luarocks' own search misses them on some systems)
    out, err, code = sh(("cd %s && HOME=%s luarocks --lua-version=5.4 make --tree %s rockspec/lunas-scm-1.rockspec "
      .. "LUA_INCDIR=$(pkg-config --cflags-only-I lua5.4 | sed 's/^-I//; s/ .*//')")
      :format(util.quote(copy), util.quote(dir), util.quote(tree)))
    assert.are.equal(0, code, out .. err)
    local share, lib = tree .. "/share/lua/5.4", tree .. "/lib/lua/5.4"
    check_probe(share .. "/?.lua;" .. share .. "/?/init.lua", lib .. "/?.so", share, lib .. "/lunas/core.so")
  end)
end)
