--- Processes named by pid in records (labs, ops commands): a pid alone may have been reused since it was
-- written down, so a process is identified by its pid and its start time (field 22 of /proc/PID/stat, in
-- clock ticks since boot), and only ever signalled through a pidfd opened while that pair still matched.
-- @module lunas.process
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

-- The state letter (R, S, Z...) and start time of a process, from /proc/PID/stat; nil when there is none.
local function stat_of(pid)
  if math.type(pid) ~= "integer" or pid < 1 then return nil end
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local stat = f:read("a")
  f:close()
  -- Counted after the command name, which may hold spaces and parentheses: %b() takes the whole of it.
  local rest = stat and stat:match("^%d+ %b() (.*)$")
  if not rest then return nil end
  local n, state = 2, nil
  for field in rest:gmatch("%S+") do
    n = n + 1
    if n == 3 then state = field end
    if n == 22 then return state, field end
  end
  return nil
end

--- The start time of a process (clock ticks after boot, as a string: it is compared, never computed with),
-- or nil when there is no such process.
function M.start_time(pid)
  local _, start = stat_of(pid)
  return start
end

--- True when the process that had this pid at start time `start` is still there and has not ended (a zombie,
-- ended but not yet reaped by its parent, holds nothing any more).
function M.alive(pid, start)
  local state, now = stat_of(pid)
  return now ~= nil and now == start and state ~= "Z" and state ~= "X"
end

--- A pidfd handle (lunas.core process) of the process pid started at `start`, or nil when it is gone or the
-- pid now names another process. The start time is read again after the pidfd is open: from then on the
-- pidfd holds that very process, whatever happens to the number.
function M.open(pid, start)
  if not M.alive(pid, start) then return nil end
  local proc = core.pidfd_open(pid)
  if not proc then return nil end
  if not M.alive(pid, start) then
    proc:close()
    return nil
  end
  return proc
end

--- Kills the recorded process (SIGKILL) and waits until it has gone (up to `timeout` seconds, default 5).
-- Returns true when it was there and is gone, false when it was not there, nil on timeout.
function M.kill(pid, start, timeout)
  local proc = M.open(pid, start)
  if not proc then return false end
  proc:kill("KILL")
  -- Not our child, usually: the pidfd turns readable when it exits, whoever reaps it.
  local done = proc:wait(timeout or 5)
  proc:close()
  if done then return true end
  return nil
end

return M
