--- Interruption: what SIGHUP, SIGINT, SIGQUIT and SIGTERM do to a recipe, and what lunas closes when one ends
-- it.
--
-- The host binary catches them for every recipe and command (a recipe loaded by a stock `lua5.4` calls
-- `catch` itself). The first one raises a lunas error, `{msg = "interrupted by SIGTERM", code = "EINTR",
-- interrupted = true, signal = "TERM", signo = 15, from_terminal = false}` (from_terminal: a terminal sent it,
-- to its whole foreground process group), at the next safe point: any instruction of the recipe's own
-- code, or any blocking call (a wait, a poll, a read of a child's output, a seccomp listener). lunas's own code
-- is never stopped between two instructions, only at its blocking calls, so what it was making is either made
-- and known to its owner, or not made. The error unwinds through the recipe's `<close>` scopes like any other;
-- a recipe may catch it (`lunas.try`) and clean up its own things. A second signal ends the process at once.
--
-- Whatever the recipe made and has not closed when the interruption ends it (a sandbox still running, a
-- cgroup, a lab that is not kept, a persisted namespace) is closed by `close_all`, newest first: the host binary
-- calls it, then ends by the signal (the caller sees 128+N).
-- @module lunas.interrupt
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

-- Objects with a close method, by the order they were made: what close_all closes.
local open_objects, made = {}, 0

local function interrupt_error(name, number)
  local _, _, _, from_terminal = core.interrupted()
  return errors.new{ op = "interrupt", msg = "interrupted by SIG" .. name, code = "EINTR", interrupted = true,
    signal = name, signo = number, from_terminal = from_terminal }
end

--- Makes the first SIGHUP, SIGINT, SIGQUIT or SIGTERM an error at the next safe point, and a second one the
-- end of the process (see the module). Idempotent.
function M.catch()
  errors.check(core.interrupt_catch{ error = interrupt_error, own = errors.own_sources })
end

--- Gives the four signals back their earlier actions.
function M.release()
  core.interrupt_release()
end

--- The signal that interrupted this process ("TERM" and 15), if one did.
-- @treturn[1] string the name
-- @treturn[1] integer the number
-- @return[2] nil
function M.signal()
  local name, number = core.interrupted()
  return name, number
end

--- True when e is the error an interruption raised.
-- @param e any value
-- @treturn boolean
function M.is(e)
  return errors.is(e) and e.interrupted == true
end

--- Puts an object with a `close` method among those close_all closes (lunas's sandboxes, cgroups, labs and
-- persisted namespaces do it themselves). Returns the object.
-- @param object
function M.track(object)
  made = made + 1
  open_objects[object] = made
  return object
end

--- Takes an object off that list (it was closed, or it is kept on purpose).
-- @param object
function M.untrack(object)
  open_objects[object] = nil
end

--- Closes every tracked object still open, newest first; a failure does not stop the others.
-- @treturn table the failures, as messages (empty when everything closed)
function M.close_all()
  local order = {}
  for object, n in pairs(open_objects) do order[#order + 1] = { n = n, object = object } end
  table.sort(order, function(a, b) return a.n > b.n end)
  local failures = {}
  -- A signal still waiting to be raised (it came during a teardown) must not cut these ones short.
  core.interrupt_defer(function()
    for _, entry in ipairs(order) do
      open_objects[entry.object] = nil
      local ok, err = pcall(entry.object.close, entry.object)
      if not ok then failures[#failures + 1] = errors.is(err) and err.msg or tostring(err) end
    end
  end)
  return failures
end

return M
