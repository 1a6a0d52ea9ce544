--- Whole-file reads and writes the Lua layer shares: records under /run/lunas, cgroup files, /proc, exports.
-- Internal: not in the facade.
-- @module lunas.files
local core = require "lunas.core"

local M = {}

--- The whole content of a file, or nil when it cannot be opened or read.
function M.read_text(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

--- Writes text to path atomically: a temporary file in the same directory (named after the file and this
-- process), renamed over, so that a reader sees the old content or the new, never half of one. Returns true,
-- or nil and a message (the temporary file removed).
function M.write_atomic(path, text)
  local dir = path:match("^(.*)/[^/]*$") or "."
  local tmp = ("%s/.%s.%d.tmp"):format(dir, path:match("([^/]*)$"), core.getpid())
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:close() else f:close() end
  if not ok then
    os.remove(tmp)
    return nil, werr
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

return M
