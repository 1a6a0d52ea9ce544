--- Structured errors of the high-level layer.
-- A failure raises a table {op, target, msg, code, where} whose __tostring gives "file:line: msg", where
-- file:line is the first caller outside lunas's own modules (the recipe line that asked for the work).
local M = {}

local own_sources = {}

--- Registers the calling module as part of lunas, so error positions skip its frames.
function M.register_module()
  own_sources[debug.getinfo(2, "S").source] = true
end
M.register_module()

local Error = {}
Error.__index = Error
Error.__tostring = function(e)
  if e.where then return e.where .. ": " .. e.msg end
  return e.msg
end

local function caller_position()
  for level = 3, 64 do
    local info = debug.getinfo(level, "Sl")
    if not info then return nil end
    if info.what ~= "C" and not own_sources[info.source] and info.currentline > 0 then
      return info.short_src .. ":" .. info.currentline
    end
  end
end

--- Builds an error object. fields: op, target, msg (required), code, step, and anything else worth keeping.
function M.new(fields)
  local e = setmetatable({}, Error)
  for k, v in pairs(fields) do e[k] = v end
  e.where = e.where or caller_position()
  return e
end

--- Raises an error object built from fields.
function M.raise(fields)
  error(M.new(fields), 0)
end

--- Turns a core result (value or nil, "op target: message", "ENAME") into the value or a raised error.
function M.check(value, msg, code, ...)
  if value == nil and msg ~= nil then M.raise{ msg = msg, code = code } end
  return value, msg, code, ...
end

--- True when e is a lunas error object.
function M.is(e)
  return getmetatable(e) == Error
end

--- Calls f(...); a lunas error becomes nil, err, err.code. Other errors propagate.
function M.try(f, ...)
  local results = table.pack(pcall(f, ...))
  if results[1] then return table.unpack(results, 2, results.n) end
  local e = results[2]
  if M.is(e) then return nil, e, e.code end
  error(e, 0)
end

return M
