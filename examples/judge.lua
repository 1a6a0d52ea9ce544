-- judge.lua: what an online judge does with a submission: run it sandboxed under memory, process and cpu limits
-- and a wall-clock timeout, then give a verdict from what the cgroup saw. Four submissions: a correct one, a
-- memory hog, a fork bomb and an endless loop. Each runs in a cgroup of its own, removed afterwards.
-- Run: lunas examples/judge.lua
local lunas = require "lunas"

local LIMITS = { memory = "16M", pids = 16, cpu = 1 }
local TIMEOUT = 4

local submissions = {
  { name = "correct", argv = { "sh", "-c", "echo $((6 * 7))" } },
  { name = "memory hog", argv = { "lua5.4", "-e", "local s = ('x'):rep(64 * 1024 * 1024)" } },
  -- no '&': every level waits for the two below it, so the bomb is still growing when it meets the limit
  { name = "fork bomb", argv = { "sh", "-c", "bomb() { bomb | bomb; }; bomb" } },
  { name = "endless loop", argv = { "sh", "-c", "while :; do :; done" } },
}

-- A limit the submission ran into explains a timeout too (a slow machine may reach the timeout first).
local function verdict(result)
  if result.oom_killed then return "memory limit exceeded" end
  if result.usage.pids.limit_hits > 0 then return "process limit exceeded" end
  if result.timed_out then return "time limit exceeded" end
  if result.status == 0 then return "accepted" end
  return "runtime error"
end

local null <close> = assert(lunas.core.open("/dev/null", "w"))
for _, submission in ipairs(submissions) do
  local result = lunas.sandbox{ argv = submission.argv, limits = LIMITS, timeout = TIMEOUT, stdout = null,
    stderr = null }:run()
  print(("%-13s %s"):format(submission.name .. ":", verdict(result)))
end
