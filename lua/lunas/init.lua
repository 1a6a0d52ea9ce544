--- lunas: Linux isolation primitives scripted in Lua.
-- `local lunas = require "lunas"`: the facade over lunas.core and the high-level modules.
local core = require "lunas.core"
local errors = require "lunas.errors"
local sandbox = require "lunas.sandbox"
local ns = require "lunas.ns"
local cgroup = require "lunas.cgroup"
local security = require "lunas.security"
local json = require "lunas.json"

errors.register_module()

local M = {
  core = core,
  version = core.version,
  try = errors.try,
  error = errors.new,
  is_error = errors.is,
  ns = ns,
  cgroup = cgroup,
  security = security,
  json = json,
  sandbox = sandbox.new,
  signals = core.signals,
}

local spawn_fields = { flags = true, fn = true, argv = true, env = true, path = true, argv0 = true, cgroup = true }

--- Spawns a child in new namespaces: lunas.spawn{flags = "user,pid", fn = function() ... end} or
-- lunas.spawn{flags = ..., argv = {...}, env = {...}}. Returns a process handle (pid, wait, kill, close).
function M.spawn(opts)
  if type(opts) ~= "table" then error("lunas.spawn: table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not spawn_fields[k] then error("lunas.spawn: unknown field '" .. tostring(k) .. "'", 2) end
  end
  return errors.check(core.spawn(opts))
end

--- Waits for a process handle; raises on failure, returns nil, "timeout" when the timeout passes.
function M.wait(process, timeout)
  local result, msg, code = process:wait(timeout)
  if result then return result end
  if code == "ETIMEDOUT" then return nil, "timeout" end
  errors.raise{ msg = msg, code = code }
end

return M
