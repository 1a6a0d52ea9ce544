--- lunas as an OCI runtime (`lunas-oci`, or `lunas oci`): runc's command line, run by podman, containerd and
-- Kubernetes. config.json becomes a sandbox spec (lunas.oci.config); the container's state lives under --root
-- (lunas.oci.state); its hooks run through lunas.oci.hooks at the sandbox's hook points (spec.hooks). Errors go
-- to stderr and, with --log, to that file (--log-format json: the lines the clients parse).
-- @module lunas.cli.oci
local core = require "lunas.core"
local json = require "lunas.json"
local errors = require "lunas.errors"
local state = require "lunas.oci.state"
local process = require "lunas.process"
-- Loaded on first use: state, kill and delete, which clients call most, never build a container.
local function lazy(name)
  return setmetatable({}, { __index = function(proxy, key)
    local module = require(name)
    setmetatable(proxy, { __index = module })
    return module[key]
  end })
end
local sandbox = lazy "lunas.sandbox"
local config = lazy "lunas.oci.config"
local resources = lazy "lunas.oci.resources"
local oci_hooks = lazy "lunas.oci.hooks"

errors.register_module()

local M = {}

local NAME = "lunas-oci"

-- ---- the command line -----------------------------------------------------------------------------------------

-- Options per subcommand: name -> "value" or "flag", and aliases.
local GLOBAL = { root = "value", log = "value", ["log-format"] = "value", ["systemd-cgroup"] = "flag",
  debug = "flag", rootless = "value", criu = "value", version = "flag", help = "flag" }
local GLOBAL_SHORT = { v = "version", h = "help" }
local COMMANDS = {
  create = { bundle = "value", ["pid-file"] = "value", ["console-socket"] = "value", ["no-pivot"] = "flag",
    ["no-new-keyring"] = "flag", ["preserve-fds"] = "value", short = { b = "bundle" } },
  run = { bundle = "value", ["pid-file"] = "value", ["console-socket"] = "value", ["no-pivot"] = "flag",
    ["no-new-keyring"] = "flag", ["preserve-fds"] = "value", detach = "flag", keep = "flag",
    short = { b = "bundle", d = "detach" } },
  start = {}, state = {},
  kill = { all = "flag", short = { a = "all" } },
  delete = { force = "flag", short = { f = "force" } },
  ps = { format = "value", short = { f = "format" } },
  pause = {}, resume = {},
  list = { format = "value", quiet = "flag", short = { f = "format", q = "quiet" } },
  update = { resources = "value", short = { r = "resources" } },
  spec = { bundle = "value", rootless = "flag", short = { b = "bundle" } },
  features = {},
  exec = { process = "value", detach = "flag", tty = "flag", ["console-socket"] = "value", ["pid-file"] = "value",
    ["preserve-fds"] = "value", cwd = "value", env = "list", user = "value", cap = "list", ["no-new-privs"] = "flag",
    ["additional-gids"] = "list", ["process-label"] = "value", apparmor = "value", cgroup = "value",
    short = { p = "process", d = "detach", t = "tty", e = "env", u = "user", c = "cap", g = "additional-gids" } },
}

local function usage(msg)
  errors.raise{ op = "usage", msg = msg, code = "EINVAL", usage = true }
end

-- Go's flag syntax: --name value, --name=value, -n value, booleans bare or --name=true|false.
local function parse_flags(args, i, spec, short, stop_at_positional)
  local opts, positional = {}, {}
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for k = i + 1, #args do positional[#positional + 1] = args[k] end
      break
    end
    local name, value = a:match("^%-%-?([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-?([%w%-]+)$") end
    if name and a ~= "-" then
      name = (short and short[name]) or name
      local kind = spec[name]
      if not kind or name == "short" then usage(("flag provided but not defined: -%s"):format(name)) end
      if kind == "flag" then
        opts[name] = value == nil or value == "true" or value == "1"
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then usage(("flag needs an argument: --%s"):format(name)) end
        end
        if kind == "list" then
          opts[name] = opts[name] or {}
          table.insert(opts[name], value)
        else
          opts[name] = value
        end
      end
      i = i + 1
    else
      if stop_at_positional then return opts, i end
      positional[#positional + 1] = a
      i = i + 1
      -- (exec ID CMD ARGS...: everything after the id belongs to the command)
      if spec.process and #positional >= 1 then
        for k = i, #args do positional[#positional + 1] = args[k] end
        break
      end
    end
  end
  return opts, positional
end

-- ---- logging --------------------------------------------------------------------------------------------------

local log = { path = nil, format = "text" }

local function timestamp()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function log_line(level, msg)
  if not log.path then return end
  local f = io.open(log.path, "a")
  if not f then return end
  if log.format == "json" then
    f:write(json.encode{ level = level, msg = msg, time = timestamp() }, "\n")
  else
    f:write(("time=%q level=%s msg=%q\n"):format(timestamp(), level, msg))
  end
  f:close()
end

local function warn(msg)
  io.stderr:write(NAME, ": warning: ", msg, "\n")
  log_line("warning", msg)
end

-- An error for the caller: stderr, and the log where clients read it.
local function report_error(msg)
  io.stderr:write(NAME, ": ", msg, "\n")
  log_line("error", msg)
end

local function oci_error(msg, code)
  errors.raise{ op = "oci", msg = msg, code = code or "EINVAL" }
end

-- ---- helpers --------------------------------------------------------------------------------------------------

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return core.getcwd() .. "/" .. path
end

-- The pid file: NAME written through .NAME and a rename, no newline (what conmon and the shim read).
local function write_pid_file(path, pid)
  path = absolute(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  local tmp = dir .. "/." .. base
  local f, msg, code = core.open(tmp, "w")
  if not f then oci_error("write pid file: " .. msg, code) end
  local ok
  ok, msg, code = f:write(tostring(pid))
  f:close()
  if not ok then oci_error("write pid file: " .. msg, code) end
  local renamed, err = os.rename(tmp, path)
  if not renamed then oci_error("write pid file: " .. tostring(err), "EIO") end
end

local function must_exist(root, id)
  local record = state.read(root, id)
  if not record then oci_error(("container %s does not exist"):format(id), "ENOENT") end
  return record
end

local function known_capabilities()
  local set = {}
  for _, name in ipairs(core.capability_names()) do set[name] = true end
  return set
end

-- The container's cgroup path from cgroupsPath (absolute, relative, or systemd's slice:prefix:name).
local function cgroup_path(path, id, systemd)
  if path == nil or path == "" then return "/" .. id end
  if systemd then
    local slice, prefix, name = path:match("^([^:]*):([^:]*):([^:]+)$")
    if not slice then oci_error(("cgroupsPath %q: slice:prefix:name expected with --systemd-cgroup"):format(path)) end
    -- "a-b.slice" lives at /a.slice/a-b.slice, as systemd lays slices out.
    local parts, acc = {}, nil
    if slice == "" then slice = "system.slice" end
    for piece in slice:gsub("%.slice$", ""):gmatch("[^-]+") do
      acc = acc and (acc .. "-" .. piece) or piece
      parts[#parts + 1] = acc .. ".slice"
    end
    local unit = name:match("%.slice$") and name or ((prefix ~= "" and prefix .. "-" or "") .. name .. ".scope")
    return "/" .. table.concat(parts, "/") .. "/" .. unit
  end
  if path:sub(1, 1) ~= "/" then return "/" .. path end
  return path
end

-- A cgroup for the container at its path, spanning what the config's resources need; returns it and the
-- writes, which wait until the container's tree is built (the device rules would refuse its mknod).
local function make_cgroup(extra, id, systemd)
  local writes = resources.writes(extra.resources, require("lunas.cgroup").version)
  local controllers = resources.controllers(writes)
  -- Every controller, as runc joins them all: the container's cgroup is its cgroup in each hierarchy.
  for _, c in ipairs{ "freezer", "devices", "pids", "memory", "cpu", "cpuacct", "cpuset", "io" } do
    controllers[#controllers + 1] = c
  end
  local cg = require("lunas.cgroup").new{ path = cgroup_path(extra.cgroups_path, id, systemd), controllers = controllers }
  return cg, writes
end

local function apply_resources(cg, writes)
  for _, w in ipairs(writes) do
    local ok, msg, code
    if w.rules then
      -- cgroup v2's device policy: a BPF program on the container's cgroup, replacing the one of a create before
      local err
      ok, err, code = errors.try(cg.devices, cg, w.rules)
      msg = err and err.msg
    else
      ok, msg, code = cg:set(w.controller, w.file, w.value)
    end
    if not ok then oci_error(("linux.resources.%s: %s"):format(w.field, msg), code) end
  end
end

-- Joins the namespaces the config names by path, in this process, before the container is cloned: its first
-- process is born in them (a pid namespace joined applies to children only), and the namespaces it makes belong
-- to a user namespace joined (a pod's). The user namespace goes first, as runc joins it: the others may be that
-- one's, which only its capabilities open. A mount namespace by path is refused: building the container's tree
-- there would change a namespace that is someone else's.
local JOIN_HERE = { user = true, net = true, ipc = true, uts = true, cgroup = true, pid = true, time = true }
local function join_namespaces(joined)
  for name, path in pairs(joined) do
    if not JOIN_HERE[name] then
      oci_error(("linux.namespaces: joining a %s namespace by path is not supported (%s): the container's tree "
        .. "would be built in it"):format(name, path))
    end
  end
  for _, name in ipairs{ "user", "cgroup", "ipc", "uts", "net", "time", "pid" } do
    local path = joined[name]
    if path then
      local handle, msg, code = core.ns_open(path)
      if not handle then oci_error(("linux.namespaces: %s"):format(msg), code) end
      local ok
      ok, msg, code = core.setns(handle, name)
      handle:close()
      if not ok then oci_error(("linux.namespaces: join %s %s: %s"):format(name, path, msg), code) end
    end
  end
end

local function preserved_fds(value)
  local n = tonumber(value or "0")
  if not n or n < 0 or n ~= math.floor(n) then usage("--preserve-fds: a count expected") end
  local list = {}
  for fd = 3, 2 + n do list[#list + 1] = fd end
  return list
end

-- ---- hooks ----------------------------------------------------------------------------------------------------

local function has_hooks(hooks, kinds)
  for _, kind in ipairs(kinds) do
    if hooks[kind] and #hooks[kind] > 0 then return true end
  end
  return false
end

-- poststop: every hook runs, and a failure is a warning (the runtime spec's rule; runc 1.1 logs it as an error
-- and stops at the first, its delete still succeeding).
local function run_poststop(list, document)
  if list and #list > 0 then oci_hooks.run("poststop", list, json.encode(document), { warn = warn }) end
end

-- The sandbox's hooks for a container's prestart, createRuntime, createContainer and startContainer hooks, where
-- and when runc runs them. before(pid) runs first (the cgroup's limits: runc sets them before these hooks).
local function sandbox_hooks(record, hooks, rootfs, before)
  local function must(ok, msg, code)
    if not ok then oci_error(msg, code) end
  end
  -- (in the container's process: the state startContainer hooks read, sent by lunas-oci with its pid)
  local created_state
  local out = {
    -- In lunas-oci (the runtime's namespaces), the container's namespaces made and its tree built up to its
    -- masks, before its root switch; the container waits meanwhile.
    before_pivot = function(pid)
      before(pid)
      local creating = json.encode(state.document(record, "creating", pid))
      must(oci_hooks.run("prestart", hooks.prestart, creating))
      must(oci_hooks.run("createRuntime", hooks.createRuntime, creating))
      return creating .. "\0" .. json.encode(state.document(record, "created", pid))
    end,
    -- In the container's namespaces, right after: the host's tree still its root, the container's tree at its
    -- rootfs path (the working directory); without env of their own, hooks get the container's environment.
    before_pivot_inside = function(data, env)
      local creating
      creating, created_state = data:match("^(.-)%z(.*)$")
      return oci_hooks.run("createContainer", hooks.createContainer, creating, { cwd = rootfs, env = env })
    end,
  }
  if #hooks.startContainer > 0 then
    -- In the container's process once `start` opened its gate, with its ids, capabilities and working
    -- directory, before its seccomp filter and exec (the path resolves in the container).
    out.before_exec = function(env)
      return oci_hooks.run("startContainer", hooks.startContainer, created_state, { env = env })
    end
  end
  return out
end

-- A failure of the sandbox's hooks, in the hook's own words.
local function hook_failure(err)
  if errors.is(err) and (err.step == "before_pivot" or err.step == "before_exec") and err.reason then
    err.msg = err.reason
  end
  return err
end

-- `start` of a container whose start has hooks to wait for: what its process reports once its gate opened ("0"
-- once it goes on to exec, or the step that failed). Returns true, or nil, message, ENAME.
local function wait_start_report(report, record)
  local proc = process.open(record.pid, record.start_time)
  local text
  -- (without the process, which is gone, only what it may have written is left)
  local fds, timeout = { report, proc }, nil
  if not proc then fds, timeout = { report }, 0 end
  while true do
    local ready = core.poll(fds, timeout)
    if ready[1] == 1 or #core.poll({ report }, 0) > 0 then
      text = report:read(4096)
      break
    end
    if #ready > 0 or not proc then break end
  end
  if proc then proc:close() end
  local ok, err = sandbox.start_report_result(text)
  if ok then return true end
  if err then return nil, err.reason, err.code end
  return nil, "the container's process ended before its program started", "ESRCH"
end

-- ---- create, start, run ------------------------------------------------------------------------------------

-- The caller's console socket, connected, when the process has a terminal: its pty master goes there (runc's
-- rules: a terminal needs the socket, the socket needs a terminal).
local function console_socket(terminal, path)
  if terminal.terminal and not path then
    oci_error("cannot allocate tty if lunas-oci will detach without setting console socket")
  elseif path and not terminal.terminal then
    oci_error("cannot use console socket if lunas-oci will not detach or allocate tty")
  end
  if not path then return nil end
  local sock, msg, code = core.unix_connect(path)
  if not sock then oci_error(("--console-socket: %s"):format(msg), code) end
  return sock
end

-- The seccomp agent's copy of the listener of the process's notify rules: the container process state the
-- runtime spec defines, with the descriptor, in one message (runc's way); our copy goes.
local function send_to_agent(agent, running, record, status)
  local listener = running:listener()
  local sock, msg, code = core.unix_connect(agent.path)
  if not sock then oci_error(("linux.seccomp.listenerPath: %s"):format(msg), code) end
  local public = state.public(record)
  public.status, public.pid = status, running.pid
  local doc = { ociVersion = config.OCI_VERSION, fds = { "seccompFd" }, pid = running.pid,
    metadata = agent.metadata or "", state = public }
  local ok
  ok, msg, code = core.send_fd(sock, listener.fd, json.encode(doc))
  sock:close()
  listener:close()
  if not ok then oci_error(("linux.seccomp.listenerPath %s: %s"):format(agent.path, msg), code) end
end

-- Builds the container up to its start gate. Returns the running handle and the record written.
local function create(g, id, opts)
  local bundle = absolute(opts.bundle or core.getcwd())
  local dir = state.claim(g.root, id)
  local record, cg, running, console, hooks
  local ok, err = pcall(function()
    local cfg = config.read(bundle)
    local spec, extra = config.translate(cfg, { bundle = bundle, warn = warn, capabilities = known_capabilities() })
    console = console_socket(extra.terminal, opts["console-socket"])
    if console then spec.terminal = { socket = console, rows = extra.terminal.rows, cols = extra.terminal.cols } end
    spec.keep_fds = preserved_fds(opts["preserve-fds"])
    if opts["no-new-keyring"] then spec.keyring = "inherit" end
    local writes
    cg, writes = make_cgroup(extra, id, g["systemd-cgroup"])
    spec.cgroup = cg
    -- Written down at once: should this process be killed from here on, `delete --force` finds the cgroup, and
    -- removing it takes the half-made container with it (its first process is born in that cgroup).
    record = { ociVersion = config.OCI_VERSION, id = id, bundle = bundle, created = state.now(),
      annotations = extra.annotations, cgroup = cg:record(), rootfs = spec.rootfs }
    -- (what later commands run: config.json may change once the container exists)
    if has_hooks(extra.hooks, { "poststart", "poststop" }) then
      record.hooks = { poststart = extra.hooks.poststart, poststop = extra.hooks.poststop }
    end
    hooks = extra.hooks
    state.write(dir, record)
    local fifo_path = dir .. "/exec.fifo"
    -- (only root starts containers: nobody else may write the byte that starts one)
    local made, msg, code = core.mkfifo(fifo_path, 384)
    if not made then oci_error("mkfifo " .. fifo_path .. ": " .. msg, code) end
    local gate
    gate, msg, code = core.open(fifo_path, "rw")
    if not gate then oci_error(msg, code) end
    spec.start_gate = gate
    -- The device cgroup takes CAP_SYS_ADMIN of the host, which a user namespace joined takes away: its
    -- container's limits go first (its nodes are binds, which no device rule stops).
    local applied = false
    if extra.joined.user then
      apply_resources(cg, writes)
      applied = true
    end
    if has_hooks(hooks, { "prestart", "createRuntime", "createContainer", "startContainer" }) then
      -- (else, as runc, just before its hooks)
      spec.hooks = sandbox_hooks(record, hooks, spec.rootfs, function()
        if not applied then apply_resources(cg, writes) end
        applied = true
      end)
    end
    local report
    if has_hooks(hooks, { "startContainer", "poststart" }) then
      -- `start` learns there how the container's start went: its startContainer hooks, then its exec.
      local report_path = dir .. "/start.report"
      made, msg, code = core.mkfifo(report_path, 384)
      if not made then oci_error("mkfifo " .. report_path .. ": " .. msg, code) end
      report, msg, code = core.open(report_path, "rw")
      if not report then oci_error(msg, code) end
      spec.start_report, record.start_report = report, true
    end
    join_namespaces(extra.joined)
    running = sandbox.new(spec):spawn()
    gate:close()
    if console then console:close() end
    if report then report:close() end
    if not applied then apply_resources(cg, writes) end
    record.pid, record.start_time = running.pid, process.start_time(running.pid)
    state.write(dir, record)
    record.dir = dir
    if extra.seccomp_agent then send_to_agent(extra.seccomp_agent, running, record, "creating") end
    if opts["pid-file"] then write_pid_file(opts["pid-file"], running.pid) end
  end)
  if not ok then
    -- Nothing of a failed create stays: its process, its cgroup, its state.
    if running then pcall(running.close, running) end
    if cg then pcall(cg.remove, cg) end
    if console then pcall(console.close, console) end
    pcall(state.remove, { dir = dir })
    -- A container whose making had begun is destroyed, then its poststop hooks run (runc's way).
    if cg and hooks then pcall(run_poststop, hooks.poststop, state.document(record, "stopped")) end
    error(hook_failure(err), 0)
  end
  -- The container outlives this process: its handle is dropped, never closed.
  require("lunas.interrupt").untrack(running)
  if cg then require("lunas.interrupt").untrack(cg) end
  return running, record
end

local function adopt_cgroup(record)
  if not record.cgroup then return nil end
  local ok, cg = pcall(require("lunas.cgroup").adopt, record.cgroup)
  return ok and cg or nil
end

-- Kills the container (everything in its cgroup) and waits until its process is gone.
local function kill_all(record, sig)
  local cg = adopt_cgroup(record)
  local sent = false
  if cg then
    for _, pid in ipairs(cg:pids()) do
      if core.kill(pid, sig) then sent = true end
    end
    if sig == "KILL" then pcall(cg.thaw, cg) end
    cg:close()
  end
  local proc = process.open(record.pid, record.start_time)
  if proc then
    proc:kill(sig)
    proc:close()
    sent = true
  end
  return sent
end

-- Every process of the container killed (SIGKILL), and its first one waited for (up to 10 s): gone when this
-- returns, or as good as.
local function kill_and_wait(record)
  local proc = process.open(record.pid, record.start_time)
  kill_all(record, "KILL")
  if proc then
    proc:wait(10)
    proc:close()
  end
end

local function start(g, id)
  local record = must_exist(g.root, id)
  local status = state.status(record)
  if status ~= "created" then
    if status == "stopped" then oci_error("cannot start a container that has stopped") end
    oci_error("cannot start an already running container")
  end
  local fifo = record.dir .. "/exec.fifo"
  -- Read-write: never blocks, even if the container died a moment ago (then the byte is nobody's).
  local f, msg, code = core.open(fifo, "rw")
  if not f then oci_error("open exec fifo: " .. msg, code) end
  local report
  if record.start_report then report = core.open(record.dir .. "/start.report", "rw") end
  local ok
  ok, msg, code = f:write("0")
  f:close()
  os.remove(fifo)
  if not ok then
    if report then report:close() end
    oci_error("start: " .. msg, code)
  end
  if report then
    ok, msg, code = wait_start_report(report, record)
    report:close()
    os.remove(record.dir .. "/start.report")
    if not ok then oci_error(msg, code) end
  end
  local poststart = record.hooks and record.hooks.poststart
  if poststart and #poststart > 0 then
    ok, msg, code = oci_hooks.run("poststart", poststart, json.encode(state.document(record, "running")))
    if not ok then
      -- runc's way (and runtime-spec 1.3's): a failed poststart hook stops the container and fails the start.
      kill_and_wait(record)
      oci_error(msg, code)
    end
  end
  return record
end

local function delete(g, id, force)
  local record = state.read(g.root, id)
  if not record then
    if force then return end
    oci_error(("container %s does not exist"):format(id), "ENOENT")
  end
  local status = state.status(record)
  if status ~= "stopped" and status ~= "created" and not force then
    oci_error(("cannot delete container %s that is not stopped: %s"):format(id, status), "EBUSY")
  end
  if status ~= "stopped" then kill_and_wait(record) end
  local cg = adopt_cgroup(record)
  if cg then
    local ok, err = pcall(cg.remove, cg)
    if not ok then oci_error(("remove cgroup of %s: %s"):format(id, tostring(err)), "EBUSY") end
  end
  state.remove(record)
  run_poststop(record.hooks and record.hooks.poststop, state.document(record, "stopped"))
end

-- ---- subcommands ----------------------------------------------------------------------------------------------

local handlers = {}

local function one_id(positional, command)
  local id = positional[1]
  if not id then usage(("%s: a container id expected"):format(command)) end
  return state.check_id(id)
end

function handlers.create(g, opts, positional)
  create(g, one_id(positional, "create"), opts)
  return 0
end

function handlers.start(g, _, positional)
  start(g, one_id(positional, "start"))
  return 0
end

-- Whether the bundle's container joins a user namespace by path (an unreadable config: no; create says why).
local function joins_user_namespace(opts)
  local ok, cfg = pcall(config.read, absolute(opts.bundle or core.getcwd()))
  if not ok or type(cfg.linux) ~= "table" or type(cfg.linux.namespaces) ~= "table" then return false end
  for _, ns in ipairs(cfg.linux.namespaces) do
    if type(ns) == "table" and ns.type == "user" and type(ns.path) == "string" and ns.path ~= "" then return true end
  end
  return false
end

local function exit_status(result)
  if result and result.signal then return 128 + result.signal end
  return result and result.status or 0
end

-- run, when the container joins a user namespace: a process that joined one keeps none of the host's
-- privileges, and delete needs them (a cgroup's rmdir). A child creates and starts the container and exits;
-- the container, orphaned, comes to this process (a child subreaper), which waits for it and deletes it.
local function run_through_child(g, id, opts)
  local ok, msg, code = core.prctl{ child_subreaper = true }
  if not ok then oci_error("run: " .. msg, code) end
  local child = assert(core.spawn{ fn = function()
    local done, err = pcall(function()
      create(g, id, opts)
      start(g, id)
    end)
    if done then return 0 end
    report_error(errors.is(err) and err.msg or tostring(err))
    return 1
  end })
  local made = child:wait()
  child:close()
  if made.status ~= 0 then
    -- (a container that did not start goes, as in run below)
    if not opts.keep then pcall(delete, g, id, true) end
    return 1
  end
  if opts.detach then return 0 end
  local record = must_exist(g.root, id)
  local container = process.open(record.pid, record.start_time)
  local result = container and container:wait()
  if container then container:close() end
  if not opts.keep then delete(g, id, true) end
  return exit_status(result)
end

function handlers.run(g, opts, positional)
  local id = one_id(positional, "run")
  if joins_user_namespace(opts) then return run_through_child(g, id, opts) end
  local running = create(g, id, opts)
  local started, err = pcall(start, g, id)
  if not started then
    -- (a container that did not start goes, as runc's run destroys it)
    if not opts.keep then pcall(delete, g, id, true) end
    error(err, 0)
  end
  if opts.detach then return 0 end
  local result = running.process:wait()
  running.process:close()
  if not opts.keep then delete(g, id, true) end
  return exit_status(result)
end

function handlers.state(g, _, positional)
  local record = must_exist(g.root, one_id(positional, "state"))
  io.stdout:write(json.encode(state.public(record), { indent = "  " }), "\n")
  return 0
end

local function signal_of(text)
  text = text or "TERM"
  local n = tonumber(text)
  if n then
    if n < 1 or n > 64 or n ~= math.floor(n) then usage("invalid signal " .. text) end
    return math.tointeger(n)
  end
  local name = text:upper():gsub("^SIG", "")
  if not core.signals[name] then usage("invalid signal " .. text) end
  return name
end

function handlers.kill(g, opts, positional)
  local id = one_id(positional, "kill")
  local sig = signal_of(positional[2])
  local record = must_exist(g.root, id)
  if state.status(record) == "stopped" then oci_error("container not running", "ESRCH") end
  if opts.all then
    kill_all(record, sig)
  else
    local proc = process.open(record.pid, record.start_time)
    if not proc then oci_error("container not running", "ESRCH") end
    local ok, msg, code = proc:kill(sig)
    proc:close()
    if not ok then oci_error(msg, code) end
  end
  return 0
end

function handlers.delete(g, opts, positional)
  delete(g, one_id(positional, "delete"), opts.force)
  return 0
end

local function container_pids(record)
  local cg = adopt_cgroup(record)
  local pids = {}
  if cg then
    pids = cg:pids()
    cg:close()
  elseif state.status(record) ~= "stopped" then
    pids = { record.pid }
  end
  table.sort(pids)
  return pids
end

function handlers.ps(g, opts, positional)
  local record = must_exist(g.root, one_id(positional, "ps"))
  local pids = container_pids(record)
  if opts.format == "json" then
    io.stdout:write(#pids == 0 and "[]" or json.encode(pids), "\n")
  else
    io.stdout:write("PID\n")
    for _, pid in ipairs(pids) do io.stdout:write(pid, "\n") end
  end
  return 0
end

local function freeze(g, positional, command, thaw)
  local record = must_exist(g.root, one_id(positional, command))
  local status = state.status(record)
  if status == "stopped" or status == "created" then oci_error("container not running", "ESRCH") end
  local cg = adopt_cgroup(record)
  if not cg then oci_error(("%s: the container has no cgroup"):format(command)) end
  if thaw then cg:thaw() else cg:freeze() end
  cg:close()
  return 0
end

function handlers.pause(g, _, positional) return freeze(g, positional, "pause", false) end
function handlers.resume(g, _, positional) return freeze(g, positional, "resume", true) end

function handlers.list(g, opts)
  local states = {}
  for _, id in ipairs(state.ids(g.root)) do
    local ok, record = pcall(state.read, g.root, id)
    if ok and record then states[#states + 1] = state.public(record) end
  end
  if opts.quiet then
    for _, s in ipairs(states) do io.stdout:write(s.id, "\n") end
  elseif opts.format == "json" then
    io.stdout:write(#states == 0 and "null" or json.encode(states), "\n")
  else
    local rows = { { "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER" } }
    for _, s in ipairs(states) do rows[#rows + 1] = { s.id, tostring(s.pid), s.status, s.bundle, s.created, "root" } end
    io.stdout:write(require("lunas.cli").format_table(rows), "\n")
  end
  return 0
end

function handlers.update(g, opts, positional)
  local record = must_exist(g.root, one_id(positional, "update"))
  if not opts.resources then usage("update: --resources FILE (or -) expected") end
  local text
  if opts.resources == "-" then text = io.stdin:read("a") else
    local f, msg = io.open(opts.resources, "rb")
    if not f then oci_error("open " .. opts.resources .. ": " .. tostring(msg), "ENOENT") end
    text = f:read("a")
    f:close()
  end
  local r = json.decode(text, { uint64 = true })
  local cg = adopt_cgroup(record)
  if not cg then oci_error("update: the container has no cgroup") end
  local ok, err = pcall(apply_resources, cg, resources.writes(r, require("lunas.cgroup").version))
  cg:close()
  if not ok then error(err, 0) end
  return 0
end

function handlers.spec(_, opts)
  local bundle = opts.bundle or "."
  local path = bundle .. "/config.json"
  if core.file_type(path) then oci_error("File " .. path .. " exists. Remove it first", "EEXIST") end
  local f, msg = io.open(path, "w")
  if not f then oci_error("write " .. path .. ": " .. tostring(msg), "EIO") end
  f:write(json.encode(require("lunas.oci.spec").default{ rootless = opts.rootless }, { indent = "\t" }), "\n")
  f:close()
  return 0
end

function handlers.features()
  io.stdout:write(json.encode(require("lunas.oci.spec").features(), { indent = "  " }), "\n")
  return 0
end

-- exec's process: --process FILE (process.json, as config.json's process), or the config's process with the
-- command line's words over it (runc's way: capabilities, rlimits and no_new_privs come from the config).
local function exec_process(opts, positional, cfg)
  if opts.process then
    local f, msg = io.open(opts.process, "rb")
    if not f then oci_error("open " .. opts.process .. ": " .. tostring(msg), "ENOENT") end
    local text = f:read("a")
    f:close()
    return json.decode(text, { uint64 = true })
  end
  local argv = {}
  for k = 2, #positional do argv[#argv + 1] = positional[k] end
  if #argv == 0 then usage("exec: a command expected (or --process FILE)") end
  local p = {}
  for k, v in pairs(type(cfg.process) == "table" and cfg.process or {}) do p[k] = v end
  p.args, p.terminal = argv, opts.tty or false
  if opts.cwd then p.cwd = opts.cwd end
  if opts.env then
    local env = {}
    for i, e in ipairs(p.env or {}) do env[i] = e end
    for _, e in ipairs(opts.env) do env[#env + 1] = e end
    p.env = env
  end
  if opts["no-new-privs"] then p.noNewPrivileges = true end
  -- (runc's: the process's own AppArmor profile and SELinux context instead of the container's)
  if opts.apparmor then p.apparmorProfile = opts.apparmor end
  if opts["process-label"] then p.selinuxLabel = opts["process-label"] end
  if opts.user then
    local uid, gid = opts.user:match("^(%d+):?(%d*)$")
    if not uid then usage("exec: --user UID[:GID] expected") end
    p.user = { uid = math.tointeger(tonumber(uid)), gid = gid ~= "" and math.tointeger(tonumber(gid)) or 0 }
  end
  if opts["additional-gids"] then
    p.user.additionalGids = {}
    for i, g in ipairs(opts["additional-gids"]) do p.user.additionalGids[i] = math.tointeger(tonumber(g)) end
  end
  if opts.cap then
    local caps = {}
    for set, list in pairs(type(p.capabilities) == "table" and p.capabilities or {}) do
      caps[set] = { table.unpack(list) }
    end
    for _, set in ipairs{ "bounding", "effective", "permitted", "ambient" } do
      caps[set] = caps[set] or {}
      for _, cap in ipairs(opts.cap) do table.insert(caps[set], cap) end
    end
    p.capabilities = caps
  end
  return p
end

-- The namespaces of the container's process that differ from ours, split into what this process joins before
-- the clone and what the new process joins itself (user first, then mount).
local function exec_namespaces(pid)
  local theirs, ours = core.ns_ids(pid), core.ns_ids()
  if not theirs then oci_error("container not running", "ESRCH") end
  local here, child = {}, {}
  for _, kind in ipairs{ "user", "mount", "uts", "ipc", "net", "pid", "cgroup", "time" } do
    if theirs[kind] and theirs[kind] ~= ours[kind] then
      if kind == "user" or kind == "mount" then child[#child + 1] = kind else here[#here + 1] = kind end
    end
  end
  return table.concat(here, ","), table.concat(child, ",")
end

function handlers.exec(g, opts, positional)
  local id = one_id(positional, "exec")
  local record = must_exist(g.root, id)
  local status = state.status(record)
  if status == "paused" then oci_error("cannot exec in a paused container", "EBUSY") end
  if status == "stopped" then oci_error("cannot exec in a stopped container", "ESRCH") end
  local cfg = config.read(record.bundle)
  local spec = { as_pid_1 = true, die_with_parent = false, abstract_sockets = "host", keyring = "private",
    namespaces = {}, host_root = true }
  local terminal = config.process(spec, exec_process(opts, positional, cfg),
    { warn = warn, capabilities = known_capabilities() })
  local console = console_socket(terminal, opts["console-socket"])
  -- (a terminal comes with a session of its own, which it controls; without one the process stays in the
  -- caller's, as it is the caller's own child that waits for it)
  spec.new_session = console ~= nil
  if console then spec.terminal = { socket = console, rows = terminal.rows, cols = terminal.cols } end
  local agent
  spec.seccomp, agent = config.seccomp((cfg.linux or {}).seccomp)
  spec.keep_fds = preserved_fds(opts["preserve-fds"])
  local proc = process.open(record.pid, record.start_time)
  if not proc then oci_error("container not running", "ESRCH") end
  local here, child = exec_namespaces(record.pid)
  if here ~= "" then
    local ok, msg, code = core.setns(proc, here)
    if not ok then oci_error("exec: join the container's namespaces: " .. msg, code) end
  end
  spec.enter = { process = proc, kinds = child }
  local cg = adopt_cgroup(record)
  spec.cgroup = cg
  local running = sandbox.new(spec):spawn()
  proc:close()
  if console then console:close() end
  if agent then
    -- (an exec whose agent cannot have its listener would wait for answers nobody gives: it goes)
    local ok, err = pcall(send_to_agent, agent, running, record, "running")
    if not ok then
      core.kill(running.pid, "KILL")
      error(err, 0)
    end
  end
  if opts["pid-file"] then write_pid_file(opts["pid-file"], running.pid) end
  require("lunas.interrupt").untrack(running)
  if opts.detach then return 0 end
  local result = running.process:wait()
  running.process:close()
  if result and result.signal then return 128 + result.signal end
  return result and result.status or 0
end

-- ---- main -----------------------------------------------------------------------------------------------------

local USAGE = [[
usage: lunas-oci [global options] COMMAND [options] ID ...
  lunas as an OCI runtime, with runc's command line.
commands: create, start, run, state, kill, delete, exec, ps, pause, resume, list, update, spec, features
global options: --root DIR (default /run/lunas-oci), --log FILE, --log-format text|json, --systemd-cgroup,
  --debug, --rootless true|false|auto, --version]]

local function version_text()
  return ("%s version %s\ncommit: lunas-%s\nspec: %s\n"):format(NAME, core.version, core.version, config.OCI_VERSION)
end

local function run_command(args)
  local g, i = parse_flags(args, 1, GLOBAL, GLOBAL_SHORT, true)
  if g.version then io.stdout:write(version_text()) return 0 end
  local command = args[i]
  if g.help or command == nil or command == "help" then
    io.stdout:write(USAGE, "\n")
    return command == nil and not g.help and 1 or 0
  end
  log.path, log.format = g.log, g["log-format"] or "text"
  if log.format ~= "text" and log.format ~= "json" then usage("--log-format: text or json expected") end
  -- (relative to where we are, as runc takes it)
  g.root = absolute(g.root or state.DEFAULT_ROOT)
  local spec = COMMANDS[command]
  if not spec then usage(("unknown command %q"):format(command)) end
  local opts, positional = parse_flags(args, i + 1, spec, spec.short, false)
  return handlers[command](g, opts, positional)
end

--- Entry point: argv as the host binary passes it (index 0 the program).
-- @tparam table args
-- @treturn integer the exit status
function M.main(args)
  local ok, result = pcall(run_command, args)
  if ok then return result end
  local msg = errors.is(result) and result.msg or tostring(result)
  report_error(msg)
  if errors.is(result) and result.usage then return 2 end
  return 1
end

return M
