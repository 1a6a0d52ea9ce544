-- busted --helper for the lunas specs (tests/run.sh passes it; to run a spec by
-- hand: LUNAS_ROOT=$PWD lua5.4 /usr/bin/busted --helper=tests/support/helper.lua tests/x_spec.lua).
--
-- * package.path/cpath: `require "lunas"` / `require "lunas.core"` load from
--   $LUNAS_ROOT/lua and $LUNAS_ROOT/build/lib, and `require "support.kernel"`
--   from $LUNAS_ROOT/tests.
-- * preloads support.kernel, so its probe cache survives busted's per-file
--   insulation (which unloads modules first required inside a spec file).
-- * when LUNAS_TEST_PASS=rootless (the unprivileged pass of tests/run.sh),
--   only tests whose full name carries the exact tag #rootless are registered,
--   and describe blocks whose own name carries the exact tag #root are dropped
--   (with their setup/teardown, which busted would otherwise run even when the
--   tag filter removed every test inside). busted's own --tags is a substring
--   match ("--tags=root" also selects "#rootless"), so this is done here.
-- * when LUNAS_VALGRIND=1 (tests/valgrind.sh), tests/support/valgrind.lua turns
--   the tests valgrind cannot run into pending ones that say why.
--
-- Defines no globals.

local root = os.getenv("LUNAS_ROOT")
if not root or root == "" then
  -- this file is $ROOT/tests/support/helper.lua
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = source:match("^(.*)/tests/support/[^/]*$")
  if dir == nil or dir == "" then dir = "." end
  root = dir
end
root = root:gsub("/+$", "")

package.path = table.concat({
  root .. "/lua/?.lua",
  root .. "/lua/?/init.lua",
  root .. "/tests/?.lua",
  root .. "/tests/?/init.lua",
  package.path,
}, ";")

local build = os.getenv("LUNAS_BUILD")
if not build or build == "" then build = root .. "/build" end

package.cpath = table.concat({
  build .. "/lib/?.so",
  package.cpath,
}, ";")

require("support.kernel")

-- under valgrind (tests/valgrind.sh): what valgrind cannot run becomes pending, with the reason
if os.getenv("LUNAS_VALGRIND") == "1" then
  require("support.valgrind").install(require("busted"))
end

if os.getenv("LUNAS_TEST_PASS") == "rootless" then
  local busted = require("busted")

  -- names of the describe blocks being executed, innermost last; tests are
  -- registered while their describe block's body runs, between start and end
  local stack = {}

  local function has_tag(name, tag)
    return name:find("#" .. tag .. "%f[^%w_%-]") ~= nil
  end

  busted.subscribe({ "file", "start" }, function()
    stack = {}
    return nil, true
  end)

  busted.subscribe({ "describe", "start" }, function(element)
    stack[#stack + 1] = element.name or element.descriptor or ""
    return nil, true
  end)

  busted.subscribe({ "describe", "end" }, function()
    stack[#stack] = nil
    return nil, true
  end)

  local function only_rootless(name)
    local names = { table.unpack(stack) }
    names[#names + 1] = name or ""
    return nil, has_tag(table.concat(names, " "), "rootless")
  end

  local function not_root_only(name)
    return nil, not has_tag(name or "", "root")
  end

  busted.subscribe({ "register", "it" }, only_rootless, { priority = 1 })
  busted.subscribe({ "register", "pending" }, only_rootless, { priority = 1 })
  busted.subscribe({ "register", "describe" }, not_root_only, { priority = 1 })
end
