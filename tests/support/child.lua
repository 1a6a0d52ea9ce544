-- Helpers for the core specs. Children: a child runs a copy of the spec's Lua state (fork semantics) and talks
-- to the test through a channel (two pipes: lines of tab-separated fields up, lines down), blocking on it while
-- the test looks at it from outside (/proc/PID/*). `stop` reaps a child whatever state it is in.
local core = require "lunas.core"
local lfs = require "lfs"
local assert = require "luassert"
local util = require "support.util"

local M = {}
local IDS = core.ids()

local function fields(line)
  local t = {}
  for f in (line .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = f end
  return t
end

local function encode(...)
  local parts = {}
  for i = 1, select("#", ...) do
    parts[i] = (tostring((select(i, ...))):gsub("[\t\n]", " "))
  end
  return table.concat(parts, "\t") .. "\n"
end

--- A channel between the test (parent side) and a child (child side).
-- Child side: ch.child() first (closes the parent's ends), ch.send(...), ch.recv() (blocks; nil on EOF).
-- Parent side: ch.parent() after the spawn, ch.expect() (next message, raises on timeout / EOF / "error"),
-- ch.post(...), ch.close().
function M.channel()
  local up_r, up_w = assert(core.pipe{ nonblock = true })
  local down_r, down_w = assert(core.pipe())
  local ch, inbuf, outbuf = {}, "", ""
  function ch.child()
    up_r:close()
    down_w:close()
  end
  function ch.parent()
    up_w:close()
    down_r:close()
  end
  function ch.send(...) assert(up_w:write(encode(...))) end
  function ch.recv()
    while true do
      local line, rest = inbuf:match("^([^\n]*)\n(.*)$")
      if line then
        inbuf = rest
        return table.unpack(fields(line))
      end
      local chunk = down_r:read()
      if not chunk or chunk == "" then return nil end
      inbuf = inbuf .. chunk
    end
  end
  function ch.post(...) assert(down_w:write(encode(...))) end
  function ch.expect(timeout)
    local deadline = core.now() + (timeout or 15)
    while true do
      local line, rest = outbuf:match("^([^\n]*)\n(.*)$")
      if line then
        outbuf = rest
        local f = fields(line)
        if f[1] == "error" then error("child failed: " .. tostring(f[2]), 2) end
        return table.unpack(f)
      end
      local chunk, msg, code = up_r:read()
      if chunk == "" then error("the child closed the channel before sending a message", 2) end
      if chunk then
        outbuf = outbuf .. chunk
      elseif code == "EAGAIN" then
        if core.now() > deadline then error("timed out waiting for a message from the child", 2) end
        os.execute("sleep 0.01")
      else
        error(msg, 2)
      end
    end
  end
  function ch.close()
    for _, f in ipairs({ up_r, up_w, down_r, down_w }) do f:close() end
  end
  return ch
end

--- Spawns body(ch) in a child (opts: spawn options other than fn). Raises in the test if the spawn fails.
-- A body that raises sends "error" with a traceback (the test's expect() re-raises it) and exits 125.
function M.start(opts, body)
  local ch = M.channel()
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.fn = function()
    ch.child()
    local ok, res = xpcall(body, debug.traceback, ch)
    if not ok then
      pcall(ch.send, "error", res)
      return 125
    end
    return res
  end
  local p, msg, code = core.spawn(o)
  ch.parent()
  if not p then
    ch.close()
    error("spawn failed: " .. tostring(msg) .. " (" .. tostring(code) .. ")", 2)
  end
  return p, ch
end

--- Ends a child whatever state it is in: closes the channel (a child blocked in recv() returns), kills it if
-- it still runs, reaps it, closes the handle.
function M.stop(p, ch)
  if ch then ch.close() end
  if p then
    pcall(function()
      if p:alive() then p:kill("KILL") end
      p:wait(10)
    end)
    p:close()
  end
end

--- Waits for a process handle with a bound; fails the test instead of hanging.
function M.finish(p, timeout)
  local st, msg = p:wait(timeout or 15)
  assert(st, "wait: " .. tostring(msg))
  return st
end

--- open(2) flags of a descriptor of a process, from /proc/PID/fdinfo/FD.
function M.fd_flags(pid, fd)
  local info = util.read("/proc/" .. tostring(pid) .. "/fdinfo/" .. tostring(fd))
  return info and tonumber(info:match("flags:%s*(%d+)"), 8)
end

M.O_CLOEXEC = tonumber("2000000", 8)
M.O_NONBLOCK = tonumber("4000", 8)

function M.has_flag(flags, bit)
  return flags ~= nil and (flags // bit) % 2 == 1
end

function M.readlink(path)
  return lfs.symlinkattributes(path, "target")
end

function M.fd_link(pid, fd)
  return M.readlink("/proc/" .. tostring(pid) .. "/fd/" .. tostring(fd))
end

--- Asserts a core failure: nil, message matching pattern, errno name.
function M.assert_failure(pattern, ename, value, msg, code)
  assert.is_nil(value, "expected a failure, got " .. tostring(value))
  assert.equal(ename, code)
  assert.matches(pattern, msg)
end

--- Asserts that fn(...) raises an error whose text contains every plain string given in texts.
function M.assert_raises(texts, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  err = tostring(err)
  if type(texts) == "string" then texts = { texts } end
  for _, t in ipairs(texts) do
    assert.is_truthy(err:find(t, 1, true), "error '" .. err .. "' does not contain '" .. t .. "'")
  end
  return err
end

--- Maps root in a fresh user namespace to our own ids (called in a child spawned with "user").
function M.map_self()
  assert(core.id_maps(0, { uid = { { 0, IDS.euid, 1 } }, gid = { { 0, IDS.egid, 1 } }, setgroups = "deny" }))
end

return M
