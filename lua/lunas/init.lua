--- lunas: Linux isolation primitives scripted in Lua.
-- `local lunas = require "lunas"`: the facade over lunas.core and the high-level modules. Recipes run by the host
-- binary (`lunas recipe.lua`) see it as the global `lunas`. Network labs are in `lunas.net`.
--
-- The high-level layer raises an error object (see `lunas.errors`) when something fails, so a recipe stops at
-- the line that asked for the work; `lunas.try` turns that into `nil, err` for callers that handle failures.
-- @module lunas
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {
  core = core,
  version = core.version,
  try = errors.try,
  error = errors.new,
  is_error = errors.is,
  signals = core.signals,
}

-- The high-level modules load on first use: a recipe that never makes a sandbox does not pay for loading
-- sandbox, file system, cgroup and seccomp policy code (about half a millisecond of every start).
-- Every public module is here by its own name (lunas.net is require "lunas.net"); lunas.lab_record and
-- lunas.sandbox_record, the files behind `lunas lab down`, `lunas ps` and `lunas gc`, are internal, and so is
-- lunas.egress, the sandbox's net = "nat" and "pasta", and lunas.files, whole-file reads and atomic writes.
local LAZY = {}
for _, name in ipairs{ "ns", "cgroup", "security", "json", "sandbox", "net", "fs", "process", "idrange",
  "interrupt", "lsm", "monitor", "firewall", "audit", "topo" } do
  LAZY[name] = function() return require("lunas." .. name) end
end
LAZY.errors = function() return errors end
setmetatable(M, {
  __index = function(t, k)
    local load = LAZY[k]
    if not load then return nil end
    local v = load()
    rawset(t, k, v)
    return v
  end,
  -- pairs() sees every field, loaded or not yet
  __pairs = function(t)
    for k in pairs(LAZY) do local _ = t[k] end
    return next, t, nil
  end,
})

--- Signal numbers by name, without the SIG prefix (`lunas.core.signals`).
-- @table signals

--- The C core, `lunas.core`: every primitive, for recipes that go below the high-level modules.
-- @field core

--- The version of lunas, "MAJOR.MINOR.PATCH" (`lunas.core.version`).
-- @field version

--- Namespaces: open, join, persist, list (`lunas.ns`).
-- @field ns

--- Resource control with cgroups (`lunas.cgroup`).
-- @field cgroup

--- Confinement policy: seccomp profiles, capabilities, Landlock (`lunas.security`).
-- @field security

--- JSON encode and decode (`lunas.json`).
-- @field json

--- Linux security module labels: enabled modules, AppArmor profiles, exec labels (`lunas.lsm`).
-- @field lsm

--- Structured errors (`lunas.errors`): `new`, `raise`, `check`, `cleanup`, `closer`, `try`, `is`.
-- @field errors

--- Sandboxes (`lunas.sandbox`): called with a spec, it builds one (`lunas.sandbox.new`, which lists the fields):
-- `lunas.sandbox{argv = {"id"}}:run()`.
-- @field sandbox

--- Network labs: hosts, switches, routers and links (`lunas.net`): `lunas.net.lab{name = "demo"}`.
-- @field net

--- Root file systems of sandboxes: mount entries and the default tree (`lunas.fs`).
-- @field fs

--- Processes named by pid and start time, signalled through pidfds (`lunas.process`).
-- @field process

--- Unprivileged host id ranges for the sandboxes root runs (`lunas.idrange`).
-- @field idrange

--- What SIGINT, SIGTERM, SIGHUP and SIGQUIT do to a recipe, and what lunas closes then (`lunas.interrupt`).
-- @field interrupt

--- What runs and what it uses: snapshots, rates, the Prometheus exposition, events (`lunas.monitor`), as
-- `lunas ps`, `top`, `stats` and `events` show them.
-- @field monitor

--- Firewalls from Lua tables: one nftables table in a network namespace, with counters (`lunas.firewall`).
-- @field firewall

--- Ready topologies, addressed and routed: single, linear, tree, star, ring, mesh (`lunas.topo`, also net.topo).
-- @field topo

--- The escape battery that `lunas audit` runs, as data, with its fixtures and judge (`lunas.audit`).
-- @field audit

--- Calls `f(...)`, turning a lunas error into return values (`lunas.errors.try`): for callers that handle
-- failures themselves. Other errors propagate.
-- @function try
-- @tparam function f
-- @param ... its arguments
-- @return f's results; or nil, the error object and its code when f raised a lunas error

--- Builds an error object (`lunas.errors.new`), for a recipe's own failures: `error(lunas.error{msg = ...}, 0)`.
-- @function error
-- @tparam table fields msg (required), op, target, code, and anything worth keeping
-- @return the error object

--- True when `e` is a lunas error object (`lunas.errors.is`).
-- @function is_error
-- @param e any value
-- @treturn boolean

local spawn_fields = { flags = true, fn = true, argv = true, env = true, path = true, argv0 = true, cgroup = true }

--- Spawns a child in new namespaces: lunas.spawn{flags = "user,pid", fn = function() ... end} or
-- lunas.spawn{flags = ..., argv = {...}, env = {...}}. Returns a process handle (pid, wait, kill, close).
-- @tparam table opts the options of `lunas.core.spawn`: flags, fn or argv, env, path, argv0, cgroup
-- @return a process handle (`lunas.core` process): `p.pid`, `p:wait()`, `p:kill()`, `p:close()`
-- @raise a lunas error when the child cannot be started or, with argv, its program cannot be executed
function M.spawn(opts)
  if type(opts) ~= "table" then error("lunas.spawn: table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not spawn_fields[k] then error("lunas.spawn: unknown field '" .. tostring(k) .. "'", 2) end
  end
  return errors.check(core.spawn(opts))
end

--- Waits for a process handle; raises on failure, returns nil, "timeout" when the timeout passes.
-- @param process a process handle
-- @tparam[opt] number timeout seconds; without it, waits for ever
-- @treturn table the status, as `process:wait` gives it: `{pid, status}` or `{pid, signal, signame, core}`
-- @return nil, "timeout" when the timeout passed (the process still runs)
function M.wait(process, timeout)
  local result, msg, code = process:wait(timeout)
  if result then return result end
  if code == "ETIMEDOUT" then return nil, "timeout" end
  errors.raise{ msg = msg, code = code }
end

return M
