--- `lunas ns list [--json] [--type TYPE]`: every namespace on the machine, with what lsns and ip netns show.
local ns = require "lunas.ns"
local json = require "lunas.json"
local cli = require "lunas.cli"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local HELP = [[
usage: lunas ns list [--json] [--type TYPE]

Lists every namespace this user can see: its type, inode, number of processes, the first (lowest) pid in it
with its user and command, and the paths that keep it alive without a process (bind mounts, such as the
names `ip netns` shows under /run/netns). TYPE is one of user, pid, mount, uts, ipc, net, cgroup, time.
  --json        one JSON object: {"namespaces": [{"type", "inode", "nprocs", "pid", "uid", "user", "command",
                "names", "paths"}, ...]}
Exit status: 0, or 2 for bad usage.]]

local TYPES = { user = true, pid = true, mount = true, mnt = "mount", uts = true, ipc = true, net = true,
  cgroup = true, time = true }

local function text_table(list)
  local rows = { { "NS", "TYPE", "NPROCS", "PID", "USER", "NAME", "COMMAND" } }
  for _, e in ipairs(list) do
    local name = #e.names > 0 and table.concat(e.names, ",") or (#e.paths > 0 and table.concat(e.paths, ",") or "-")
    -- One row each, whatever a command line holds (a newline in a shell script's argument, say).
    local command = e.command and e.command:gsub("%c", " ") or "-"
    rows[#rows + 1] = { tostring(e.inode), e.type, tostring(e.nprocs), e.pid and tostring(e.pid) or "-",
      e.user or "-", name, command }
  end
  -- numbers right-aligned, words left-aligned, as lsns does
  return cli.format_table(rows, { [1] = true, [3] = true, [4] = true })
end

function M.main(args)
  if args[1] == "--help" or args[1] == "-h" or args[1] == nil then
    if args[1] == nil then return cli.usage_error("ns", "a subcommand expected (list)") end
    print(HELP)
    return 0
  end
  if args[1] ~= "list" then return cli.usage_error("ns", "unknown subcommand '" .. args[1] .. "'") end
  local as_json, kind = false, nil
  local i = 2
  while args[i] do
    local a = args[i]
    if a == "--json" then
      as_json = true
    elseif a == "--type" or a == "-t" then
      i = i + 1
      local t = args[i]
      if not t or not TYPES[t] then return cli.usage_error("ns", "--type: one of user, pid, mount, uts, ipc, net, cgroup, time") end
      kind = TYPES[t] == true and t or TYPES[t]
    elseif a == "--help" or a == "-h" then
      print(HELP)
      return 0
    else
      return cli.usage_error("ns", "unknown option '" .. a .. "'")
    end
    i = i + 1
  end
  local list = ns.list{ type = kind }
  if as_json then
    -- The same fields on every entry: null where a namespace has no process.
    for _, e in ipairs(list) do
      for _, field in ipairs{ "pid", "uid", "user", "command" } do
        if e[field] == nil then e[field] = json.null end
      end
    end
    io.stdout:write(json.encode({ namespaces = list }, { indent = "  " }), "\n")
  else
    io.stdout:write(text_table(list))
  end
  return 0
end

return M
