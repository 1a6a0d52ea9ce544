--- OCI hooks (config.json's hooks): programs run at points of a container's life with its state on their stdin.
-- Each hook runs as runc runs it: `path` executed with `args` as its whole argv (argv[0] included; `path` alone
-- without args), `env` as its whole environment (without env: the environment of the process that runs it, or
-- the one the caller gives), stdin a pipe with the state JSON, stdout and stderr pipes read into the error, no
-- other descriptor; `timeout` seconds, after which it is killed (SIGKILL) and counts as failed. The caller says
-- where it runs: this module only starts it from the calling process (its namespaces, root, working directory
-- unless `cwd`), waits and words the failure.
-- @module lunas.oci.hooks
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

--- The kinds, in the order a container meets them.
M.KINDS = { "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop" }

-- How much of a hook's stdout and of its stderr an error keeps (their ends: where a failure is said). An error
-- of a hook inside the container crosses the sandbox's error pipe (4000 bytes).
local KEEP = 1200
-- A state bigger than this might not fit in a pipe (64 KiB by default): a process of its own feeds it.
local PIPE_ROOM = 65536

local function keep_tail(kept, chunk)
  kept = kept .. chunk
  if #kept > 4 * KEEP then kept = kept:sub(-2 * KEEP) end
  return kept
end

local function shown(text)
  text = text:gsub("%s+$", "")
  if #text > KEEP then text = "..." .. text:sub(-KEEP) end
  return text
end

-- Standard input: a pipe holding the state. Written before the hook exists (no SIGPIPE when it does not read),
-- or by a process of its own when it would not fit.
local function state_pipe(text)
  local r, w = errors.check(core.pipe())
  if #text <= PIPE_ROOM then
    local ok, msg, code = w:write(text)
    w:close()
    if not ok then
      r:close()
      return nil, msg, code
    end
    return r
  end
  local feeder, msg, code = core.spawn{ fn = function()
    r:close()
    w:write(text)
    return 0
  end }
  w:close()
  if not feeder then
    r:close()
    return nil, msg, code
  end
  return r, feeder
end

-- The hook's process: stdin, stdout, stderr the pipes, every other descriptor closed at its exec; an exec
-- failure comes back through a close-on-exec pipe. Returns the process, or nil and the failure.
local function start(hook, stdin, out_w, err_w, opts)
  local args = hook.args or {}
  local argv = { hook.path }
  for i = 2, #args do argv[i] = args[i] end
  local env = hook.env
  if env == nil then env = opts.env end
  local report_r, report_w = errors.check(core.pipe())
  local proc, msg, code = core.spawn{ fn = function()
    local ok, m, c = core.dup2(stdin, 0)
    if ok then ok, m, c = core.dup2(out_w, 1) end
    if ok then ok, m, c = core.dup2(err_w, 2) end
    if ok and opts.cwd then ok, m, c = core.chdir(opts.cwd) end
    -- (marked, not closed: the report pipe goes only if the exec succeeds)
    if ok then ok, m, c = core.close_range(3, nil, { cloexec = true }) end
    if ok then _, m, c = core.exec(argv, { env = env, path = false, argv0 = args[1] }) end
    report_w:write(("%s\0%s"):format(c or "", tostring(m)))
    return 127
  end }
  report_w:close()
  if not proc then
    report_r:close()
    return nil, msg, code
  end
  local said = report_r:read(4096)
  report_r:close()
  if said and said ~= "" then
    proc:wait()
    proc:close()
    local c, m = said:match("^([^%z]*)%z(.*)$")
    return nil, m or said, c ~= "" and c or nil
  end
  return proc
end

-- Waits for the hook, reading its stdout and stderr meanwhile; kills it at its timeout. Returns its status
-- table, what it wrote on each, and whether it timed out.
local function collect(proc, out_r, err_r, timeout)
  local deadline = timeout and core.now() + timeout
  local pipes, kept = { out_r, err_r }, { "", "" }
  local open = { true, true }
  local function read_ready(ready)
    for _, i in ipairs(ready) do
      if i > 1 and open[i - 1] then
        local chunk = pipes[i - 1]:read(65536)
        if chunk == nil or chunk == "" then open[i - 1] = false else kept[i - 1] = keep_tail(kept[i - 1], chunk) end
      end
    end
  end
  local function watched()
    local fds = { proc }
    for i = 1, 2 do fds[#fds + 1] = open[i] and pipes[i] or proc end
    return fds
  end
  local timed_out = false
  while true do
    local left = deadline and math.max(0, deadline - core.now())
    local ready = core.poll(watched(), left)
    if #ready == 0 then
      timed_out = true
      break
    end
    read_ready(ready)
    if ready[1] == 1 then break end
  end
  if timed_out then
    proc:kill("KILL")
  end
  local status = errors.check(proc:wait())
  -- What is left in the pipes now (a process the hook left behind may hold them open: never wait for their end).
  for _ = 1, 64 do
    if not (open[1] or open[2]) then break end
    local ready = core.poll(watched(), 0)
    local any = false
    for _, i in ipairs(ready) do any = any or (i > 1 and open[i - 1]) end
    if not any then break end
    read_ready(ready)
  end
  proc:close()
  return status, kept[1], kept[2], timed_out
end

local function describe(status, timed_out, timeout)
  if timed_out then return ("ran past its timeout of %ds and was killed"):format(timeout) end
  if status.signal then
    return ("killed by signal %d%s"):format(status.signal, status.signame and (" (SIG" .. status.signame .. ")") or "")
  end
  return ("exit status %d"):format(status.status)
end

--- Runs one hook with `state` (the container's state JSON) on its stdin.
-- @tparam table hook {path =, args =, env =, timeout =} (lunas.oci.config.hooks)
-- @tparam string state
-- @tparam[opt] table opts {cwd = directory it starts in, env = its environment when the hook gives none
--   (a map or a list; default: this process's)}
-- @return true, or nil and the failure ("exit status 3, stdout: ..., stderr: ...", "exec PATH: message",
--   "ran past its timeout of Ns and was killed, ...") and an ENAME
function M.run_one(hook, state, opts)
  opts = opts or {}
  local stdin, feeder, code = state_pipe(state)
  if not stdin then return nil, feeder, code end
  local out_r, out_w = errors.check(core.pipe())
  local err_r, err_w = errors.check(core.pipe())
  local proc, msg
  proc, msg, code = start(hook, stdin, out_w, err_w, opts)
  stdin:close()
  out_w:close()
  err_w:close()
  local ok, status, out, err, timed_out = true, nil, "", "", false
  if proc then
    ok, status, out, err, timed_out = pcall(collect, proc, out_r, err_r, hook.timeout)
    -- (interrupted while it ran: it goes too)
    if not ok then
      pcall(proc.kill, proc, "KILL")
      pcall(proc.wait, proc)
      pcall(proc.close, proc)
    end
  end
  out_r:close()
  err_r:close()
  if feeder then
    feeder:kill("KILL")
    feeder:wait()
    feeder:close()
  end
  if not proc then return nil, msg, code end
  if not ok then error(status, 0) end
  if not timed_out and status.status == 0 then return true end
  return nil, ("%s, stdout: %s, stderr: %s"):format(describe(status, timed_out, hook.timeout), shown(out), shown(err)),
    timed_out and "ETIMEDOUT" or "ECHILD"
end

--- Runs the hooks of one kind in order, each with `state` on its stdin. By default the first failure stops them
-- and is returned; with opts.warn, every hook runs and each failure goes to warn(message) (poststop's way).
-- @tparam string kind "createRuntime", ... (for the messages)
-- @tparam table list the hooks
-- @tparam string state the state JSON
-- @tparam[opt] table opts as run_one's, and warn = function(message)
-- @return true, or nil and "error running KIND hook #N (PATH): failure", ENAME
function M.run(kind, list, state, opts)
  opts = opts or {}
  for i, hook in ipairs(list or {}) do
    local ok, msg, code = M.run_one(hook, state, opts)
    if not ok then
      msg = ("error running %s hook #%d (%s): %s"):format(kind, i - 1, hook.path, msg)
      if not opts.warn then return nil, msg, code end
      opts.warn(msg)
    end
  end
  return true
end

return M
