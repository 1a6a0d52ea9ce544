--- `lunas enter TARGET [--user --mount ... | --all] [--root] [--wd] -- CMD`: runs CMD in the namespaces of a
-- process, a sandbox (its pid) or a persisted network namespace (a name under /run/netns, as `ip netns exec`).
--
-- The target is read from our own /proc (never the target's, which it controls: LXC CVE-2015-1334) and held by a
-- pidfd from before anything is read, so a pid reused meanwhile cannot be joined by mistake: the namespaces are
-- joined through that pidfd, all at once, and the process must still be the one whose start time we read.
local core = require "lunas.core"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"
local cli = require "lunas.cli"
local process = require "lunas.process"

errors.register_module()

local M = {}

local HELP = [[
usage: lunas enter TARGET [NAMESPACES] [--root] [--wd] [--] CMD [ARGS...]

TARGET is a pid (a process, or a sandbox's PID 1), or the name of a network namespace under /run/netns (a
lab host), or a namespace file path. CMD runs with lunas's environment; without CMD, $SHELL or /bin/sh.
Namespaces (default for a pid: every one that differs from ours; for a name or path: that namespace):
  --user --mount --uts --ipc --net --pid --cgroup --time   join only these
  --all                  every namespace of the target that differs from ours
  --root                 also take the target's root directory (a chroot inside its mount namespace)
  --wd                   also take the target's working directory
  --stop-timeout SECONDS when lunas gets SIGINT, SIGTERM or SIGHUP, it passes it on to CMD (unless the terminal
                         sent it to both) and kills CMD if it has not ended after SECONDS (default 10); SIGQUIT,
                         or a second signal, kills it at once. lunas then ends by that signal
Exit status: CMD's status; 128+N when killed by signal N; 125 when the namespaces could not be joined;
2 for bad usage.]]

local NS_OPTIONS = { ["--user"] = "user", ["--mount"] = "mount", ["--uts"] = "uts", ["--ipc"] = "ipc",
  ["--net"] = "net", ["--pid"] = "pid", ["--cgroup"] = "cgroup", ["--time"] = "time" }
local ORDER = { "user", "mount", "uts", "ipc", "net", "pid", "cgroup", "time" }

local function parse(args)
  local opts = { kinds = {}, all = false, stop_timeout = 10 }
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "--" then i = i + 1 break end
    if a == "--help" or a == "-h" then return "help" end
    if NS_OPTIONS[a] then
      opts.kinds[NS_OPTIONS[a]] = true
    elseif a == "--all" then
      opts.all = true
    elseif a == "--root" then
      opts.root = true
    elseif a == "--wd" then
      opts.wd = true
    elseif a == "--stop-timeout" then
      opts.stop_timeout = tonumber(args[i + 1] or "")
      if not opts.stop_timeout or opts.stop_timeout < 0 then error({ usage = a .. ": 0 or more seconds expected" }) end
      i = i + 1
    elseif a:sub(1, 1) == "-" then
      error({ usage = "unknown option '" .. a .. "'" })
    elseif not opts.target then
      opts.target = a
    else
      break
    end
    i = i + 1
  end
  if not opts.target then error({ usage = "a target (pid, network namespace name or path) expected" }) end
  opts.argv = {}
  for k = i, #args do opts.argv[#opts.argv + 1] = args[k] end
  if #opts.argv == 0 then opts.argv = { os.getenv("SHELL") or "/bin/sh" } end
  return opts
end

local function fail(msg)
  io.stderr:write("lunas enter: ", msg, "\n")
  return 125
end

-- Joins a process's namespaces through a pidfd; returns nil or an error message.
local function join_process(pid, opts)
  local before = process.start_time(pid)
  if not before then return ("no process %d"):format(pid) end
  local proc, msg = core.pidfd_open(pid)
  if not proc then return msg end
  -- The pidfd names the process that had this pid when it was opened: the one we read, if it started then.
  if process.start_time(pid) ~= before then
    proc:close()
    return ("process %d exited while being entered"):format(pid)
  end
  local theirs, ours = core.ns_ids(pid), core.ns_ids()
  if not theirs then
    proc:close()
    return ("cannot read the namespaces of process %d"):format(pid)
  end
  local chosen = {}
  local explicit = next(opts.kinds) ~= nil
  for _, kind in ipairs(ORDER) do
    local wanted = opts.all or not explicit or opts.kinds[kind]
    -- Joining one's own user namespace is refused by the kernel (EINVAL): skip what we already share.
    if wanted and theirs[kind] and theirs[kind] ~= ours[kind] then chosen[#chosen + 1] = kind end
  end
  local root, cwd
  if opts.root then root = core.open("/proc/" .. pid .. "/root", "r") end
  if opts.wd then cwd = core.open("/proc/" .. pid .. "/cwd", "r") end
  if (opts.root and not root) or (opts.wd and not cwd) then
    proc:close()
    return ("cannot open the root or working directory of process %d"):format(pid)
  end
  if #chosen > 0 then
    local ok, err = core.setns(proc, table.concat(chosen, ","))
    if not ok then
      proc:close()
      return err
    end
  end
  proc:close()
  if root then
    local ok, err = core.chdir(root)
    if ok then ok, err = core.chroot(".") end
    root:close()
    if not ok then return err end
    if not cwd then core.chdir("/") end
  end
  if cwd then
    local ok, err = core.chdir(cwd)
    cwd:close()
    if not ok then return err end
  end
end

local function join_file(target)
  local path = target
  if not target:find("/", 1, true) then path = "/run/netns/" .. target end
  local handle, msg = core.ns_open(path)
  if not handle then return msg end
  local ok, err = core.setns(handle)
  handle:close()
  if not ok then return err end
end

-- Waits for CMD. An interruption of lunas is passed on to CMD (not when the terminal sent it to both: CMD
-- shares our process group) and CMD gets stop_timeout seconds to end; SIGQUIT kills it at once.
local function wait_forwarding(child, stop_timeout)
  local ok, status, msg, code = pcall(child.wait, child)
  if ok then return errors.check(status, msg, code) end
  if not interrupt.is(status) then error(status, 0) end
  local interruption = status
  if interruption.signal ~= "QUIT" then
    if not interruption.from_terminal then child:kill(interruption.signal) end
    status = child:wait(stop_timeout)
    if status then return status end
  end
  child:kill("KILL")
  return errors.check(child:wait())
end

function M.main(args)
  local ok, opts = pcall(parse, args)
  if not ok then
    if type(opts) == "table" and opts.usage then return cli.usage_error("enter", opts.usage) end
    error(opts, 0)
  end
  if opts == "help" then print(HELP) return 0 end
  local err
  local pid = opts.target:match("^%d+$") and math.tointeger(tonumber(opts.target))
  if pid then
    if pid < 1 then return cli.usage_error("enter", "bad pid '" .. opts.target .. "'") end
    err = join_process(pid, opts)
  else
    if next(opts.kinds) or opts.all or opts.root or opts.wd then
      return cli.usage_error("enter", "namespace options and --root/--wd go with a pid target")
    end
    err = join_file(opts.target)
  end
  if err then return fail(err) end
  -- A child, so that a joined pid namespace applies (it takes effect for children) and CMD's status is ours.
  local child, msg = core.spawn{ argv = opts.argv }
  if not child then return fail(msg) end
  local status = wait_forwarding(child, opts.stop_timeout)
  child:close()
  if status.signal then return 128 + status.signal end
  return status.status
end

return M
