--- `lunas run [OPTIONS] -- CMD [ARGS...]`: a ready sandbox from the command line, with bubblewrap's option
-- names wherever bubblewrap has the same feature.
local sandbox = require "lunas.sandbox"
local errors = require "lunas.errors"
local cli = require "lunas.cli"

errors.register_module()

local M = {}

local HELP = [[
usage: lunas run [OPTIONS] [--] CMD [ARGS...]

Runs CMD in a sandbox. With no --unshare-* option every namespace is new (user, pid, mount, uts, ipc, net,
cgroup); with any, exactly those (plus a mount namespace, always, and a user namespace when not root).
Defaults: a new session, killed with lunas (die-with-parent), descriptors beyond 0-2 closed, environment
cleared except TERM, PATH, HOME and LANG, lo up in a new network namespace, a fresh /proc with a new pid
namespace, the host's file system seen through a private copy of the mount table.

Namespaces:
  --unshare-user --unshare-pid --unshare-net --unshare-ipc --unshare-uts --unshare-cgroup
  --unshare-all          all of the above
  --share-net            keep the host's network (drops --unshare-net / the default)
Identity:
  --uid UID  --gid GID   ids inside the sandbox (mapped to yours outside)
  --hostname NAME        host name inside (needs a uts namespace)
Process:
  --chdir DIR            working directory
  --setenv VAR VALUE  --unsetenv VAR  --clearenv  --keep-env (inherit the whole environment)
  --argv0 VALUE          argv[0] for CMD
  --as-pid-1             CMD is PID 1 itself (no reaper)
  --die-with-parent      (default) kill the sandbox when lunas dies; --no-die-with-parent to keep it
  --new-session          (default) setsid, so CMD cannot reach the terminal; --share-session to keep it
  --timeout SECONDS      kill the sandbox after SECONDS (exit status 124)
  --help

Exit status: CMD's status; 128+N when killed by signal N; 124 on --timeout; 125 when the sandbox could not be
set up; 2 for bad usage.]]

local UNSHARE = { ["--unshare-user"] = "user", ["--unshare-pid"] = "pid", ["--unshare-net"] = "net",
  ["--unshare-ipc"] = "ipc", ["--unshare-uts"] = "uts", ["--unshare-cgroup"] = "cgroup" }
local ALL = { "user", "pid", "net", "ipc", "uts", "cgroup" }

local function parse_id(s)
  local n = tonumber(s)
  if not n or math.type(n) ~= "integer" or n < 0 then return nil end
  return n
end

--- Parses the options into a sandbox spec; returns spec or nil, message.
function M.parse(args)
  local spec = { env = {}, unsetenv = {} }
  local chosen, share_net = nil, false
  local i = 1
  local function value(opt)
    i = i + 1
    if args[i] == nil then error({ usage = opt .. " needs a value" }) end
    return args[i]
  end
  local function choose(name)
    chosen = chosen or {}
    chosen[name] = true
  end
  local handlers = {
    ["--unshare-all"] = function() for _, n in ipairs(ALL) do choose(n) end end,
    ["--share-net"] = function() share_net = true end,
    ["--uid"] = function(o) spec.uid = parse_id(value(o)) or error({ usage = o .. ": bad id '" .. args[i] .. "'" }) end,
    ["--gid"] = function(o) spec.gid = parse_id(value(o)) or error({ usage = o .. ": bad id '" .. args[i] .. "'" }) end,
    ["--hostname"] = function(o) spec.hostname = value(o) end,
    ["--chdir"] = function(o) spec.cwd = value(o) end,
    ["--setenv"] = function(o) local k = value(o) spec.env[k] = value(o) end,
    ["--unsetenv"] = function(o) spec.unsetenv[#spec.unsetenv + 1] = value(o) end,
    ["--clearenv"] = function() spec.clearenv = true end,
    ["--keep-env"] = function() spec.keep_env = true end,
    ["--argv0"] = function(o) spec.argv0 = value(o) end,
    ["--as-pid-1"] = function() spec.as_pid_1 = true end,
    ["--die-with-parent"] = function() spec.die_with_parent = true end,
    ["--no-die-with-parent"] = function() spec.die_with_parent = false end,
    ["--new-session"] = function() spec.new_session = true end,
    ["--share-session"] = function() spec.new_session = false end,
    ["--timeout"] = function(o)
      local t = tonumber(value(o))
      if not t or t <= 0 then error({ usage = o .. ": positive number of seconds expected" }) end
      spec.timeout = t
    end,
  }
  while args[i] do
    local a = args[i]
    if a == "--" then i = i + 1 break end
    if a == "--help" or a == "-h" then return "help" end
    if a:sub(1, 1) ~= "-" then break end
    if UNSHARE[a] then choose(UNSHARE[a])
    elseif handlers[a] then handlers[a](a)
    else error({ usage = "unknown option '" .. a .. "'" }) end
    i = i + 1
  end
  local argv = {}
  for k = i, #args do argv[#argv + 1] = args[k] end
  if #argv == 0 then error({ usage = "no command given" }) end
  spec.argv = argv
  local names = {}
  for _, n in ipairs(ALL) do
    if (chosen == nil or chosen[n]) and not (n == "net" and share_net) then names[#names + 1] = n end
  end
  names[#names + 1] = "mount"
  spec.namespaces = names
  if not next(spec.env) then spec.env = nil end
  if #spec.unsetenv == 0 then spec.unsetenv = nil end
  return spec
end

function M.main(args)
  local ok, spec = pcall(M.parse, args)
  if not ok then
    if type(spec) == "table" and spec.usage then return cli.usage_error("run", spec.usage) end
    error(spec, 0)
  end
  if spec == "help" then print(HELP) return 0 end
  local result, err = errors.try(function() return sandbox.new(spec):run() end)
  if not result then
    io.stderr:write("lunas: ", tostring(err), "\n")
    -- A spec the sandbox rejects is bad usage; a step that failed is a set-up failure.
    if err.field then return 2 end
    return err.step and 125 or 1
  end
  if result.timed_out then
    io.stderr:write(("lunas run: timed out after %g s\n"):format(spec.timeout))
    return 124
  end
  if result.signal then return 128 + result.signal end
  return result.status
end

return M
