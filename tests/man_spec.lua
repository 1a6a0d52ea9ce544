-- The manual page man/lunas.1: it renders without a roff warning, it names every option the commands' --help
-- texts print, its EXIT STATUS section names every code the commands use, and `make install` ships it.
-- Rendered with groff (package groff-base, in the Makefile's DEB_PACKAGES), as man(1) renders it.

local lfs = require "lfs"
local util = require "support.util"
local kernel = require "support.kernel"

local PAGE = util.root .. "/man/lunas.1"
local MAKE_BUILD = util.make_build()

local function have_groff()
  local _, _, code = util.sh("command -v groff >/dev/null")
  assert.are.equal(0, code, "groff is not installed (package groff-base: `make deps` installs it)")
end

-- The page as a terminal shows it: plain text (no bold or underline overstrikes, no colour escapes).
local function rendered()
  have_groff()
  local out, err, code = util.sh("groff -man -Tutf8 -P-b -P-u -P-c " .. util.quote(PAGE))
  assert.are.equal(0, code, err)
  return out
end

-- A section's text: from its heading (a line starting at column 0) to the next heading.
local function section(text, heading)
  local lines, inside = {}, false
  for _, line in ipairs(util.lines(text)) do
    if line:match("^%S") then
      inside = line == heading
    elseif inside then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n")
end

-- True when word occurs in text as a whole token: not inside a longer option or number.
local function has_token(text, word)
  local escaped = word:gsub("%p", "%%%0")
  return text:find("%f[%w%-%+]" .. escaped .. "%f[^%w%-%+]") ~= nil
end

-- The option tokens (starting with --) of a command's help text.
local function help_options(args)
  local help, code = util.lunas(args)
  assert.are.equal(0, code, help)
  local options, seen = {}, {}
  for opt in help:gmatch("%-%-[%a][%w-]*") do
    if not seen[opt] then
      seen[opt] = true
      options[#options + 1] = opt
    end
  end
  assert.is_true(#options > 0, "no options in lunas " .. table.concat(args, " "))
  return options
end

describe("man page", function()
  it("renders without a roff warning, with the sections a manual page has", function()
    have_groff()
    -- -ww: every warning; -z: no output, only the diagnostics.
    local out, err, code = util.sh("groff -ww -z -man " .. util.quote(PAGE))
    assert.are.equal(0, code, err)
    assert.are.equal("", out .. err)
    local text = rendered()
    assert.matches("^LUNAS%(1%)", text)
    for _, heading in ipairs{ "NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "OPTIONS OF lunas run",
      "OPTIONS OF lunas enter", "OPTIONS OF lunas ns list", "OPTIONS OF lunas ps, top, stats AND events", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES",
      "SECURITY", "SEE ALSO" } do
      assert.is_true(text:find("\n" .. heading .. "\n", 1, true) ~= nil, "no section " .. heading)
    end
  end)

  it("names every option that lunas --help, run --help, enter --help and ns --help print", function()
    local text = rendered()
    for _, args in ipairs{ { "--help" }, { "run", "--help" }, { "audit", "--help" }, { "enter", "--help" }, { "ns", "--help" },
        { "lab", "--help" }, { "gc", "--help" }, { "ps", "--help" }, { "top", "--help" }, { "stats", "--help" },
        { "events", "--help" } } do
      for _, opt in ipairs(help_options(args)) do
        assert.is_true(has_token(text, opt), opt .. " (lunas " .. table.concat(args, " ") .. ") is not in man/lunas.1")
      end
    end
  end)

  it("shows every command form in the SYNOPSIS, and run's options in the groups of run --help", function()
    local text = rendered()
    local synopsis = section(text, "SYNOPSIS")
    for _, form in ipairs{ "lunas [--lua-env] SCRIPT", "lunas -e CODE", "lunas -i", "lunas run [OPTIONS]",
      "lunas enter TARGET", "lunas ns list [--json] [--type TYPE]", "lunas lab up FILE", "lunas lab down NAME...",
      "lunas lab down --all", "lunas lab show NAME [--json | --dot]", "lunas lab list [--json]",
      "lunas gc [--dry-run]", "lunas ps [--json]", "lunas top", "lunas stats [--json | --prometheus]",
      "lunas events [--json]", "lunas --version" } do
      assert.is_true(synopsis:find(form, 1, true) ~= nil, form .. " not in the SYNOPSIS:\n" .. synopsis)
    end
    -- run --help's groups are its unindented lines from "Namespaces:" to "Exit status": "Identity:",
    -- "File system (in order):", ... The page has a subsection for each, in the same order.
    local help = util.lunas{ "run", "--help" }
    local groups, started = {}, false
    for _, line in ipairs(util.lines(help)) do
      if line == "Namespaces:" then started = true end
      if line:match("^Exit status") then break end
      if started and line:match("^%u") then groups[#groups + 1] = line:match("^([%a ]-)%s*[%(:]") end
    end
    assert.is_true(#groups >= 6, "option groups of lunas run --help: " .. table.concat(groups, ", "))
    local options = section(text, "OPTIONS OF lunas run")
    local at = 0
    for _, group in ipairs(groups) do
      local found = options:find("\n   " .. group, at + 1, true)
      assert.is_truthy(found, "group " .. group .. " of run --help missing or out of order in OPTIONS OF lunas run")
      at = found
    end
  end)

  it("names 0, 1, 2, 124, 125 and 128+N in EXIT STATUS", function()
    local exit = section(rendered(), "EXIT STATUS")
    for _, code in ipairs{ "0", "1", "2", "124", "125", "128+N" } do
      assert.is_true(has_token(exit, code), code .. " not in EXIT STATUS:\n" .. exit)
    end
  end)
end)

describe("man page: make install #root", function()
  it("installs man/lunas.1 as share/man/man1/lunas.1, and make uninstall removes it", function()
    if not kernel.requires("root") then return end
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local make = ("cd %s && make %%s DESTDIR=%s PREFIX=/usr %s"):format(util.quote(util.root), util.quote(dir),
      MAKE_BUILD)
    local out, err, code = util.sh(make:format("install"))
    assert.are.equal(0, code, out .. err)
    local installed = dir .. "/usr/share/man/man1/lunas.1"
    assert.are.equal("file", lfs.attributes(installed, "mode"))
    assert.are.equal("rw-r--r--", lfs.attributes(installed, "permissions"))
    assert.are.equal(util.read(PAGE), util.read(installed))
    out, err, code = util.sh(make:format("uninstall"))
    assert.are.equal(0, code, out .. err)
    assert.is_nil(lfs.attributes(installed, "mode"), "make uninstall left " .. installed)
  end)
end)
