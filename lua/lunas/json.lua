--- JSON for what lunas prints (`ns list` and `lab show` in JSON, status files): encode and decode, no
-- dependency. Objects print with sorted keys so output is stable; json.null stands for null.
-- @module lunas.json
local errors = require "lunas.errors"

errors.register_module()

local M = {}

--- Stands for JSON's null: in a value to encode, and in what decode returns.
M.null = setmetatable({}, { __tostring = function() return "null" end })

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t" }

local function escape(c) return ESCAPES[c] or ("\\u%04x"):format(c:byte()) end

local function encode_string(s)
  -- (most strings need no escape: no gsub for them)
  if not s:find('[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%c"\\]', escape) .. '"'
end

local OBJECT = { __name = "json.object" }

--- Marks a table as a JSON object, so that it encodes as {} when empty (an unmarked empty table is []).
function M.object(t)
  return setmetatable(t or {}, OBJECT)
end

-- A table is an array when its keys are exactly 1..n (an empty table is an empty array, unless marked).
local function is_array(t)
  if getmetatable(t) == OBJECT then return false end
  local n = #t
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

local encode_value

local function encode_table(t, indent, depth, seen)
  if seen[t] then error("json: cycle in the value", 0) end
  seen[t] = true
  local nl, pad, inner = "", "", ""
  if indent then
    nl = "\n"
    pad = string.rep(indent, depth)
    inner = string.rep(indent, depth + 1)
  end
  local parts = {}
  local open, close
  if is_array(t) then
    open, close = "[", "]"
    for _, v in ipairs(t) do parts[#parts + 1] = inner .. encode_value(v, indent, depth + 1, seen) end
  else
    open, close = "{", "}"
    local keys = {}
    for k in pairs(t) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then error("json: key of type " .. type(k), 0) end
      keys[#keys + 1] = tostring(k)
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = t[k]
      if v == nil then v = t[tonumber(k)] end
      parts[#parts + 1] = inner .. encode_string(k) .. (indent and ": " or ":") .. encode_value(v, indent, depth + 1, seen)
    end
  end
  seen[t] = nil
  if #parts == 0 then return open .. close end
  return open .. nl .. table.concat(parts, "," .. nl) .. nl .. pad .. close
end

encode_value = function(v, indent, depth, seen)
  local kind = type(v)
  if v == M.null or v == nil then return "null" end
  if kind == "boolean" then return tostring(v) end
  if kind == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("json: " .. tostring(v) .. " has no JSON form", 0) end
    if math.type(v) == "integer" then return tostring(v) end
    return ("%.17g"):format(v)
  end
  if kind == "string" then return encode_string(v) end
  if kind == "table" then return encode_table(v, indent, depth, seen) end
  error("json: cannot encode a " .. kind, 0)
end

--- Encodes a value; opts.indent (a string such as "  ") pretty-prints.
-- A table whose keys are exactly 1..n (or an empty table) is an array; other tables are objects, with sorted
-- keys. Cycles, NaN, infinities, functions and userdata raise.
-- @param value nil, boolean, number, string, table or json.null
-- @tparam[opt] table opts
-- @tparam[opt] string opts.indent pretty-print with this indent per level
-- @treturn string
function M.encode(value, opts)
  if opts ~= nil and type(opts) ~= "table" then error("json.encode: options table expected", 2) end
  if opts and opts.indent ~= nil and type(opts.indent) ~= "string" then
    error("json.encode: indent: a string such as \"  \" expected", 2)
  end
  return encode_value(value, opts and opts.indent, 0, {})
end

-- ---- decoding ---------------------------------------------------------------------------------------------

local decode_value

local function fail(s, pos, what)
  error(("json: %s at byte %d"):format(what, pos), 0)
end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local function decode_string(s, pos)
  local out, i = {}, pos + 1
  while true do
    local c = s:sub(i, i)
    if c == "" then fail(s, pos, "unterminated string") end
    if c == '"' then return table.concat(out), i + 1 end
    if c == "\\" then
      local e = s:sub(i + 1, i + 1)
      local simple = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
      if simple[e] then
        out[#out + 1], i = simple[e], i + 2
      elseif e == "u" then
        local hex = s:sub(i + 2, i + 5)
        if not hex:match("^%x%x%x%x$") then fail(s, i, "bad \\u escape") end
        local code = tonumber(hex, 16)
        i = i + 6
        -- A character beyond the first plane comes as a UTF-16 surrogate pair.
        local low = code >= 0xD800 and code <= 0xDBFF and s:match("^\\u([dD][c-fC-F]%x%x)", i)
        if low then
          code, i = 0x10000 + ((code - 0xD800) << 10) + (tonumber(low, 16) - 0xDC00), i + 6
        end
        out[#out + 1] = utf8.char(code)
      else
        fail(s, i, "bad escape")
      end
    else
      out[#out + 1], i = c, i + 1
    end
  end
end

-- An integer literal of 2^63 to 2^64-1 (seccomp's argument values and masks in an OCI config go that high) as
-- the Lua integer with the same 64 bits, when the caller asks; nil when the literal is no such integer.
local function unsigned64(num)
  if not num:match("^%d+$") or #num > 20 then return nil end
  local value = 0
  for digit in num:gmatch("%d") do
    local next_value = value * 10 + tonumber(digit)
    -- Past 2^64-1 the wrapped value falls below value * 10 (or value * 10 itself wrapped).
    if math.ult(0x1999999999999999, value) or math.ult(next_value, value * 10) then return nil end
    value = next_value
  end
  return value
end

-- Integer literals exactly (a float only beyond 64 bits); "1e3" or "2.0" as integers too (their value is one).
local function decode_number(num, uint64)
  local value = tonumber(num)
  if not num:match("^-?%d+$") then return math.tointeger(value) or value end
  if math.type(value) == "integer" then return value end
  return uint64 and unsigned64(num) or value
end

decode_value = function(s, pos, uint64)
  pos = skip(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then
    -- Marked, so that an empty object decoded and encoded again stays {}.
    local t = M.object()
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "}" then return t, pos + 1 end
    while true do
      if s:sub(pos, pos) ~= '"' then fail(s, pos, "object key expected") end
      local k
      k, pos = decode_string(s, pos)
      pos = skip(s, pos)
      if s:sub(pos, pos) ~= ":" then fail(s, pos, "':' expected") end
      t[k], pos = decode_value(s, pos + 1, uint64)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "}" then return t, pos + 1 end
      if d ~= "," then fail(s, pos, "',' or '}' expected") end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    local t = {}
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "]" then return t, pos + 1 end
    while true do
      t[#t + 1], pos = decode_value(s, pos, uint64)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "]" then return t, pos + 1 end
      if d ~= "," then fail(s, pos, "',' or ']' expected") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(s, pos)
  elseif s:find("^true", pos) then
    return true, pos + 4
  elseif s:find("^false", pos) then
    return false, pos + 5
  elseif s:find("^null", pos) then
    return M.null, pos + 4
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if num and num ~= "" and num ~= "-" then return decode_number(num, uint64), pos + #num end
  fail(s, pos, "value expected")
end

--- Decodes a JSON text; null becomes json.null. Raises "json: ... at byte N" on malformed input.
-- Integer literals from -2^63 to 2^63-1 decode exactly, as Lua integers; with opts.uint64, so do those from 2^63
-- to 2^64-1 (unsigned 64-bit values such as seccomp's argument masks), as the Lua integer with the same 64 bits
-- (negative: compare them with math.ult, print them with %u). Other numbers are floats.
-- @tparam string text
-- @tparam[opt] table opts
-- @tparam[opt=false] boolean opts.uint64 unsigned 64-bit integers exactly
-- @return the value: numbers with an integer value as Lua integers, objects and arrays as tables
function M.decode(text, opts)
  if type(text) ~= "string" then error("json: string expected, got " .. type(text), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("json.decode: options table expected", 2) end
  local value, pos = decode_value(text, 1, opts and opts.uint64 == true)
  pos = skip(text, pos)
  if pos <= #text then fail(text, pos, "trailing characters") end
  return value
end

return M
