--- The command line of the host binary: scripts, -e, -i, and subcommands (lunas.cli.<name>).
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"

errors.register_module()

local M = {}

local USAGE = [[
usage: lunas [--lua-env] SCRIPT [ARGS...]   run a recipe (arguments in `arg` and `...`; "-" reads stdin)
       lunas -e CODE [ARGS...]              run a chunk of Lua
       lunas -i                             interactive Lua with lunas loaded
       lunas run [OPTIONS] -- CMD [ARGS...] run a command in a ready sandbox (lunas run --help)
       lunas audit [RUN OPTIONS] [--json]   the escape battery in that sandbox: held or escaped (lunas audit --help)
       lunas ns list [--json] [--type T]    every namespace: type, inode, processes, names (lsns + ip netns)
       lunas enter TARGET [--net ...] -- CMD run CMD in the namespaces of a pid or a named netns (nsenter)
       lunas lab up FILE | down NAME | show NAME | list   labs that outlive the command (lunas lab --help)
       lunas gc [--dry-run]                 remove what a crashed lunas left (stale labs, records, cgroups)
       lunas ps [--json]                    running sandboxes and labs: pid, uptime, namespaces, usage
       lunas top                            a live view of them (sorted by cpu, memory, pids or network)
       lunas stats [--json | --prometheus]  one snapshot of their usage (Prometheus text format too)
       lunas events [--json]                start, exit, OOM kill, freeze, lab up and down, as they happen
       lunas bwrap [BWRAP OPTIONS] CMD      lunas as bubblewrap (also as lunas-bwrap): bwrap's options and defaults
       lunas oci [GLOBAL] COMMAND ...       lunas as an OCI runtime (also as lunas-oci): runc's command line
       lunas --version | --help

Recipes see the global `lunas` (require "lunas") and `arg`. LUA_PATH, LUA_CPATH and LUA_INIT are ignored
unless --lua-env comes first: lunas often runs as root.
Exit status: the recipe's os.exit code, 1 for an error, 2 for bad usage or a recipe that does not load (a
syntax error, a missing file); `run` and `enter` return the
command's status (128+N when killed by signal N; 125 when it could not be started; `run --timeout`: 124).]]

M.commands = { run = "lunas.cli.run", audit = "lunas.cli.audit", ns = "lunas.cli.ns", enter = "lunas.cli.enter",
  lab = "lunas.cli.lab", gc = "lunas.cli.gc", bwrap = "lunas.cli.bwrap", oci = "lunas.cli.oci", ps = "lunas.cli.ps", top = "lunas.cli.top",
  stats = "lunas.cli.stats", events = "lunas.cli.events" }

--- Whether the arguments ask for help (--help or -h anywhere among them).
function M.asks_help(args)
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then return true end
  end
  return false
end

--- Prints a usage error and returns exit status 2.
function M.usage_error(command, msg)
  io.stderr:write(("lunas%s: %s\n"):format(command and (" " .. command) or "", msg))
  io.stderr:write(("try 'lunas%s --help'\n"):format(command and (" " .. command) or ""))
  return 2
end

--- Lays rows of strings out in columns: the columns in `right` (a set of indexes) right-aligned, the others
-- left-aligned; the last column is never padded. Returns the text, one line per row.
function M.format_table(rows, right)
  local widths = {}
  for _, row in ipairs(rows) do
    for i = 1, #row - 1 do widths[i] = math.max(widths[i] or 0, #row[i]) end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i = 1, #row - 1 do
      cells[i] = ((right and right[i]) and "%" .. widths[i] .. "s" or "%-" .. widths[i] .. "s"):format(row[i])
    end
    cells[#row] = row[#row]
    out[#out + 1] = table.concat(cells, " ")
  end
  return table.concat(out, "\n") .. "\n"
end

--- Sets the global `arg` as lua.c builds it for a script at args[script_index]: the script at 0, its arguments
-- from 1, what came before at negative indexes.
function M.set_arg_global(args, script_index)
  local t = {}
  for i = 0, #args do t[i - script_index] = args[i] end
  _G.arg = t
end

local function run_lua_init()
  local name, init = "LUA_INIT_5_4", os.getenv("LUA_INIT_5_4")
  if not init then name, init = "LUA_INIT", os.getenv("LUA_INIT") end
  if not init then return end
  local chunk, err
  if init:sub(1, 1) == "@" then chunk, err = loadfile(init:sub(2)) else chunk, err = load(init, "=" .. name) end
  if not chunk then error(err, 0) end
  chunk()
end

local function script_args(args, first)
  local rest = {}
  for i = first, #args do rest[#rest + 1] = args[i] end
  return rest
end

local function repl()
  local buffer = nil
  while true do
    io.stdout:write(buffer and ">> " or "lunas> ")
    io.stdout:flush()
    local line = io.stdin:read("l")
    if not line then io.stdout:write("\n") return 0 end
    local source = buffer and (buffer .. "\n" .. line) or line
    local chunk, err = load("return " .. source, "=stdin")
    if not chunk then chunk, err = load(source, "=stdin") end
    if not chunk and err:find("<eof>$") then
      buffer = source
    else
      buffer = nil
      if not chunk then
        io.stderr:write(err, "\n")
      else
        local results = table.pack(xpcall(chunk, debug.traceback))
        if not results[1] then
          io.stderr:write(tostring(results[2]), "\n")
        elseif results.n > 1 then
          local out = {}
          for i = 2, results.n do out[#out + 1] = tostring(results[i]) end
          print(table.concat(out, "\t"))
        end
      end
    end
  end
end

-- Called by a name that ends in "bwrap" (lunas-bwrap, a link named bwrap), lunas is bubblewrap; run as
-- /proc/self/exe (as bwrap's users nest it), by the name of the file that link names.
local function bwrap_mode(program)
  if type(program) ~= "string" then return false end
  if program:match("/exe$") then program = require("lunas.core").readlink("/proc/self/exe") or program end
  return program:match("bwrap$") ~= nil
end

-- Called as lunas-oci (or a link of that name), lunas is an OCI runtime with runc's command line.
local function oci_mode(program)
  if type(program) ~= "string" then return false end
  if program:match("/exe$") then program = require("lunas.core").readlink("/proc/self/exe") or program end
  return program:match("lunas%-oci$") ~= nil
end

local function dispatch(args, lua_env, handler)
  if oci_mode(args[0]) then
    local rest = {}
    for k = 1, #args do rest[k] = args[k] end
    rest[0] = args[0]
    return require("lunas.cli.oci").main(rest)
  end
  if bwrap_mode(args[0]) then
    local rest = {}
    for k = 1, #args do rest[k] = args[k] end
    rest[0] = args[0]
    return require("lunas.cli.bwrap").main(rest, args[0])
  end
  local i = 1
  if args[1] == "--lua-env" then i = 2 end
  if lua_env then run_lua_init() end
  local first = args[i]
  if first == nil then io.stderr:write(USAGE, "\n") return 2 end
  if first == "--version" or first == "-v" then
    print("lunas " .. require("lunas.core").version .. " (" .. _VERSION .. ")")
    return 0
  end
  if first == "--help" or first == "-h" then print(USAGE) return 0 end
  local command = M.commands[first]
  if command then
    local module = require(command)
    -- `run` restarts it itself once the sandbox runs: what it allocates before is bounded and short-lived.
    if not module.starts_collector then collectgarbage("restart") end
    return module.main(script_args(args, i + 1), handler)
  end
  _G.lunas = require "lunas"
  collectgarbage("restart")
  if first == "-i" then return repl() end
  local chunk, err
  local script_index = i
  if first == "-e" then
    if args[i + 1] == nil then return M.usage_error(nil, "-e needs an argument") end
    chunk, err = load(args[i + 1], "=(command line)")
    script_index = i + 1
  elseif first:sub(1, 1) == "-" and first ~= "-" then
    return M.usage_error(nil, "unknown option '" .. first .. "'")
  else
    chunk, err = loadfile(first ~= "-" and first or nil)
  end
  -- A recipe that does not load (missing, unreadable, a syntax error) is bad input, like a bad option: nothing
  -- of it ran, so nothing was created.
  if not chunk then
    io.stderr:write("lunas: ", err, "\n")
    return 2
  end
  M.set_arg_global(args, script_index)
  local code = chunk(table.unpack(script_args(args, script_index + 1)))
  return math.type(code) == "integer" and code or 0
end

--- Entry point called by the host binary with the raw argv (index 0 is the program). An error ends here as
-- "lunas: message" and status 1. After an interruption (SIGINT, SIGTERM, SIGHUP, SIGQUIT), whatever the recipe
-- or command left open is closed before the host binary ends by that signal.
function M.main(args, lua_env, handler)
  interrupt.catch()
  local ok, result = xpcall(dispatch, handler or debug.traceback, args, lua_env, handler)
  if interrupt.signal() then
    for _, failure in ipairs(interrupt.close_all()) do
      io.stderr:write("lunas: clean-up after SIG", interrupt.signal(), ": ", failure, "\n")
    end
  end
  if ok then return result end
  io.stderr:write("lunas: ", tostring(result), "\n")
  return 1
end

return M
