-- Bash completion (completions/lunas.bash): the options it offers are exactly the options the commands accept
-- (compared with each --help and with the parsers' own verdict), and completing a few words gives what a user
-- expects. Completion runs in a real bash.

local util = require "support.util"
local security = require "lunas.security"

local ROOT = os.getenv("LUNAS_ROOT") or "."
local LUNAS = (os.getenv("LUNAS_BUILD") or (ROOT .. "/build")) .. "/bin/lunas"
local SCRIPT = ROOT .. "/completions/lunas.bash"

local function bash(script)
  local out, code = util.run{ "bash", "-c", "source " .. util.quote(SCRIPT) .. "\n" .. script }
  assert.equal(0, code, out)
  return out
end

-- What bash completes for the words given (the last one being completed).
local function complete(...)
  local words = {}
  for i, w in ipairs{ ... } do words[i] = util.quote(w) end
  local out = bash(("COMP_WORDS=(%s); COMP_CWORD=%d; _lunas; printf '%%s\\n' \"${COMPREPLY[@]}\"")
    :format(table.concat(words, " "), select("#", ...) - 1))
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

local function set_of(words)
  local set = {}
  for _, w in ipairs(words) do set[w] = true end
  return set
end

-- The options a command's --help names that its parser accepts (help text also says "--unshare-*" and quotes
-- other programs' options).
local function help_options(argv, accepted)
  local help = util.run(argv)
  local set = {}
  for opt in help:gmatch("%-%-[%a][%w-]*") do
    if accepted(opt) then set[opt] = true end
  end
  return set
end

-- An option is accepted when the parser does not call it unknown. (The enter target 0 fails after parsing: no
-- namespace is ever joined and no shell started here.)
local function accepted_by(command)
  return function(opt)
    local argv = { LUNAS, table.unpack(command) }
    argv[#argv + 1] = opt
    local out = util.run(argv)
    return not out:find("unknown option", 1, true)
  end
end

describe("bash completion #rootless", function()
  it("offers every option lunas run, enter and ns list accept, and nothing else", function()
    local cases = {
      { var = "_lunas_run_options", help = { LUNAS, "run", "--help" }, command = { "run" } },
      { var = "_lunas_enter_options", help = { LUNAS, "enter", "--help" }, command = { "enter", "0" } },
      { var = "_lunas_ns_options", help = { LUNAS, "ns", "list", "--help" }, command = { "ns", "list" } },
      { var = "_lunas_lab_show_options", help = { LUNAS, "lab", "--help" }, command = { "lab", "show" },
        only = { ["--json"] = true, ["--dot"] = true, ["--help"] = true } },
      { var = "_lunas_lab_list_options", help = { LUNAS, "lab", "--help" }, command = { "lab", "list" },
        only = { ["--json"] = true, ["--help"] = true } },
      { var = "_lunas_lab_down_options", help = { LUNAS, "lab", "--help" }, command = { "lab", "down", "no-such-lab" },
        only = { ["--all"] = true, ["--help"] = true } },
      { var = "_lunas_gc_options", help = { LUNAS, "gc", "--help" }, command = { "gc" } },
      { var = "_lunas_ps_options", help = { LUNAS, "ps", "--help" }, command = { "ps" } },
      -- (top without a terminal, stats without its wait, events with its end at once: they all return)
      { var = "_lunas_top_options", help = { LUNAS, "top", "--help" }, command = { "top" } },
      { var = "_lunas_stats_options", help = { LUNAS, "stats", "--help" }, command = { "stats", "--interval", "0" } },
      { var = "_lunas_events_options", help = { LUNAS, "events", "--help" }, command = { "events", "--timeout", "0" } },
    }
    for _, c in ipairs(cases) do
      local offered = set_of(util.words(bash("echo $" .. c.var)))
      local accepted = accepted_by(c.command)
      for opt in pairs(offered) do
        assert.is_true(accepted(opt), c.var .. " offers " .. opt .. ", which the command refuses")
      end
      -- (lab's help covers four subcommands: each is held to the options that are its own)
      for opt in pairs(help_options(c.help, accepted)) do
        if not c.only or c.only[opt] then
          assert.is_true(offered[opt], opt .. " (in " .. table.concat(c.help, " ") .. ") is not completed")
        end
      end
    end
  end)

  it("completes commands, options, seccomp groups, namespace types and capability names", function()
    assert.same({ "run" }, complete("lunas", "r"))
    assert.same({ "audit" }, complete("lunas", "au"))
    assert.same({ "--wrap" }, complete("lunas", "audit", "--wr"))
    -- audit offers run's options (but those about one payload's run) and its own
    assert.same({ "--share-net" }, complete("lunas", "audit", "--share-n"))
    assert.same({}, complete("lunas", "audit", "--seccomp-sh"))
    assert.same({ "--landlock-bind", "--landlock-connect", "--landlock-ro", "--landlock-rw", "--landlock-strict" },
      complete("lunas", "run", "--landl"))
    assert.same({ "list" }, complete("lunas", "ns", "l"))
    assert.same({ "lab" }, complete("lunas", "la"))
    assert.same({ "gc" }, complete("lunas", "g"))
    assert.same({ "down" }, complete("lunas", "lab", "d"))
    assert.same({ "--dot" }, complete("lunas", "lab", "show", "--d"))
    assert.same({ "--dry-run" }, complete("lunas", "gc", "--d"))
    assert.same({ "--prometheus" }, complete("lunas", "stats", "--p"))
    assert.same({ "memory" }, complete("lunas", "top", "--sort", "m"))
    assert.same({ "events" }, complete("lunas", "ev"))
    assert.same({ "net" }, complete("lunas", "ns", "list", "--type", "n"))
    assert.same({ "CAP_NET_ADMIN" }, complete("lunas", "run", "--cap-add", "CAP_NET_A"))
    local groups = {}
    for name in pairs(security.groups) do groups[#groups + 1] = name end
    table.sort(groups)
    local offered = complete("lunas", "run", "--seccomp-deny", "")
    table.sort(offered)
    assert.same(groups, offered)
    -- after --, the command's own words are bash's default completion
    assert.same({}, complete("lunas", "run", "--", "ls", "--al"))
  end)
end)
