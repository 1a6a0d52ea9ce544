--- Structured errors of the high-level layer.
-- A failure raises a table {op, target, msg, code, where} whose __tostring gives "file:line: msg", where
-- file:line is the first caller outside lunas's own modules (the recipe line that asked for the work).
-- @module lunas.errors
local M = {}

local own_sources = {}
--- The chunk sources of lunas's own modules, as a set (what register_module adds to).
M.own_sources = own_sources

--- Registers the calling module as part of lunas, so error positions skip its frames. Every lunas module calls it
-- once; a library built on lunas may too.
function M.register_module()
  own_sources[debug.getinfo(2, "S").source] = true
end
M.register_module()

local Error = {}
Error.__index = Error
Error.__tostring = function(e)
  local text = tostring(e.msg)
  if e.where ~= nil then text = tostring(e.where) .. ": " .. text end
  if type(e.cleanup) == "table" then
    for _, failure in ipairs(e.cleanup) do text = text .. "\n  (then clean-up failed: " .. tostring(failure) .. ")" end
  end
  return text
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

-- Misuse of new/raise is blamed on their caller (level 3: past this function and new/raise).
local function check_fields(fields)
  if type(fields) ~= "table" then error("lunas.error: table expected, got " .. type(fields), 3) end
  if type(fields.msg) ~= "string" then error("lunas.error: field 'msg': string expected, got " .. type(fields.msg), 3) end
end

--- Builds an error object. fields: op, target, msg (required), code, step, and anything else worth keeping.
-- @tparam table fields copied into the object; `where` defaults to the first caller outside lunas
-- @treturn Error
function M.new(fields)
  check_fields(fields)
  local e = setmetatable({}, Error)
  for k, v in pairs(fields) do e[k] = v end
  e.where = e.where or caller_position()
  return e
end

--- Raises an error object built from fields (level 0: the position is the object's own `where`).
-- @tparam table fields as for `new`
function M.raise(fields)
  check_fields(fields)
  error(M.new(fields), 0)
end

--- Turns a core result (value or nil, "op target: message", "ENAME") into the value or a raised error.
-- @param value
-- @tparam[opt] string msg
-- @tparam[opt] string code
-- @param ... more results
-- @return all of its arguments, when value is not nil or msg is nil
-- @raise an error object {msg = msg, code = code}
function M.check(value, msg, code, ...)
  if value == nil and msg ~= nil then M.raise{ msg = msg, code = code } end
  return value, msg, code, ...
end

--- Runs fn(...) as the clean-up after `err`, the error that made it necessary: a failure of the clean-up never
-- replaces err. It is added to err.cleanup (a list of messages, which tostring(err) shows after the error) when
-- err is a lunas error, and written to stderr otherwise. Returns err, for `error(errors.cleanup(err, f), 0)`.
-- @param err the error being handled
-- @tparam function fn the clean-up
-- @param ... its arguments
-- @return err
function M.cleanup(err, fn, ...)
  local ok, failure = pcall(fn, ...)
  if ok then return err end
  if M.is(err) then
    err.cleanup = err.cleanup or {}
    err.cleanup[#err.cleanup + 1] = M.is(failure) and failure.msg or tostring(failure)
  else
    io.stderr:write("lunas: clean-up after an error failed: ", tostring(failure), "\n")
  end
  return err
end

--- A `__close` metamethod made of a close function: on a normal exit from the scope it is close itself (a
-- failure raises); while an error unwinds the scope, a failure of close is kept with that error (see cleanup)
-- instead of replacing it.
-- @tparam function close called as close(object)
-- @treturn function the metamethod
function M.closer(close)
  return function(self, err)
    if err == nil then return close(self) end
    M.cleanup(err, close, self)
  end
end

--- True when e is a lunas error object.
-- @param e any value
-- @treturn boolean
function M.is(e)
  return getmetatable(e) == Error
end

--- Calls f(...); a lunas error becomes nil, err, err.code. Other errors propagate.
-- @tparam function f
-- @param ... its arguments
-- @return f's results, or nil, the error object, its code
function M.try(f, ...)
  local results = table.pack(pcall(f, ...))
  if results[1] then return table.unpack(results, 2, results.n) end
  local e = results[2]
  if M.is(e) then return nil, e, e.code end
  error(e, 0)
end

--- Error objects.
-- Tables with `msg` (the whole message: "sandbox: mounts: ..."), `code` (the errno name, "ENOENT"), `op` and
-- `target` when known, `where` ("recipe.lua:12", the first caller outside lunas), `cleanup` (the failures of the
-- clean-up that followed it, if any) and whatever else the raiser kept (`step`, `field`). `tostring(e)` gives
-- "where: msg", then one line per clean-up failure.
-- @type Error

return M
