--- Network labs: hosts, switches, routers and impaired links built from namespaces in a fraction of a second.
--
--   local net = require "lunas.net"
--   local lab <close> = net.lab{ name = "demo" }
--   local h1, h2, s1 = lab:host("h1"), lab:host("h2"), lab:switch("s1")
--   lab:link(h1, s1) ; lab:link(h2, s1, { delay = "10ms", loss = 1 })
--   h1:addr("eth0", "10.0.0.1/24") ; h2:addr("eth0", "10.0.0.2/24")
--   h1:run{ "ping", "-c1", "10.0.0.2" }
--
-- Hosts are network namespaces, persisted in /run/netns when lunas is root (so `ip netns exec h1 ...` works);
-- switches are bridges in a namespace of the lab's own ("lunas-NAME"), so a lab never adds a link to the
-- namespace it was built from. Every link of the lab carries the lab's link group: close() deletes them with
-- one request, then drops the namespaces.
--
-- A lab that persists its namespaces is recorded under /run/lunas/labs/NAME (lunas.lab_record) before each
-- object exists, so `lunas gc` can remove what a crashed lunas left. lab:keep() (or `lunas lab up`, which keeps
-- every lab its recipe builds) lets a lab outlive its builder: net.down(NAME) removes it later, from any process.
-- @module lunas.net
local core = require "lunas.core"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"
local json = require "lunas.json"
local lab_record = require "lunas.lab_record"
local process = require "lunas.process"

errors.register_module()

local M = {}

local NETNS_DIR = "/run/netns"
local LAB_GROUP = 7342 -- any non-zero group: the fabric namespace holds nothing but this lab's links
local NETEM_PARAMS = { "delay", "jitter", "loss", "duplicate", "corrupt", "reorder" }
local LINK_PARAMS = { delay = true, jitter = true, loss = true, duplicate = true, corrupt = true, reorder = true,
  rate = true, mtu = true, names = true, limit = true }

local function misuse(what, fmt, ...)
  errors.raise{ op = "lab", msg = ("lab: %s: " .. fmt):format(what, ...), code = "EINVAL" }
end

local function check(value, msg, code, ...)
  if value == nil and msg ~= nil then errors.raise{ op = "lab", msg = "lab: " .. msg, code = code } end
  return value, msg, code, ...
end

local function valid_name(name)
  return type(name) == "string" and #name >= 1 and #name <= 64 and name:match("^[%w][%w_.-]*$") ~= nil
end

-- Root in the initial user namespace: the only case where /run/netns is ours to write.
local initial_root = require("lunas.idrange").initial_root

local function is_process(value)
  local meta = type(value) == "userdata" and getmetatable(value)
  return type(meta) == "table" and meta.__name == "lunas.process"
end

-- Ends a process we started and nobody else knows yet (its start went wrong after it existed): killed, reaped,
-- its handle closed.
local function stop(proc)
  if proc:alive() then proc:kill("KILL") end
  proc:wait(5)
  proc:close()
end

-- Runs fn inside the network namespace ns (a handle), coming back whatever happens.
local function in_netns(ns, fn, ...)
  local home <close> = check(core.ns_open("net"))
  check(core.setns(ns))
  local results = table.pack(pcall(fn, ...))
  local back, msg, code = core.setns(home)
  if not back then
    -- Fatal whatever fn did: everything after this would run in the node's namespace. fn's own failure stays
    -- as the cause; a process fn started is ended, since our caller never gets its handle.
    local cause = not results[1] and results[2] or nil
    local text = "lab: " .. tostring(msg)
    if cause ~= nil then text = text .. " (after: " .. (errors.is(cause) and cause.msg or tostring(cause)) .. ")" end
    local err = errors.new{ op = "lab", msg = text, code = code, cause = cause }
    for i = 2, results[1] and results.n or 0 do
      if is_process(results[i]) then errors.cleanup(err, stop, results[i]) end
    end
    error(err, 0)
  end
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

-- ---- nodes -----------------------------------------------------------------------------------------------

--- Lab nodes: hosts and routers (a network namespace each) and switches (a bridge in the lab's namespace).
-- `node.name`, `node.kind` ("host", "router" or "switch"). Failures raise a lunas error.
-- @type Node
local Node = {}
Node.__index = Node

local function node_check(self)
  if self.lab.closed then errors.raise{ op = "lab", msg = "lab: attempt to use a closed lab", code = "EBADF" } end
  return self
end

--- Adds an address ("10.0.0.1/24" or "fd00::1/64") to one of the node's links. IPv6 addresses skip duplicate
-- address detection: a lab address is usable at once.
function Node:addr(link, address, opts)
  node_check(self)
  if type(address) ~= "string" then misuse(self.name .. ":addr", "address string expected, got %s", type(address)) end
  local o = { nodad = address:find(":", 1, true) ~= nil or nil }
  for k, v in pairs(opts or {}) do o[k] = v end
  check(self.netlink:addr_add(link, address, o))
  self.assigned[#self.assigned + 1] = { link = link, address = address }
  return self
end

--- Adds a route: node:route("default", "10.0.0.254"), node:route("10.2.0.0/16", "10.0.0.254", {metric = 10}),
-- node:route("10.3.0.0/16", nil, {dev = "eth1"}).
function Node:route(dst, via, opts)
  node_check(self)
  local spec = { dst = dst, via = via }
  for k, v in pairs(opts or {}) do spec[k] = v end
  if spec.dst == "default" and not spec.family and type(via) == "string" and via:find(":", 1, true) then
    spec.family = "inet6"
  end
  check(self.netlink:route_add(spec))
  self.added_routes[#self.added_routes + 1] = spec
  return self
end

--- Reads or writes a network sysctl inside the node ("net.ipv4.ip_forward").
function Node:sysctl(key, value)
  node_check(self)
  return check(core.sysctl(self.ns, key, value))
end

--- The node's links (as `ip link` lists them), addresses and routes, read from the kernel now.
function Node:links() return check(node_check(self).netlink:link_list()) end
--- The node's addresses, as netlink:addr_list gives them.
function Node:addresses() return check(node_check(self).netlink:addr_list()) end
--- The node's routes, as netlink:route_list gives them (opts: family, table).
function Node:routes(opts) return check(node_check(self).netlink:route_list(opts)) end

--- A node's firewall (lunas.firewall): what `node:firewall` returns.
-- `fw.rules` is the normalized rule set in force.
-- @type Firewall
local Firewall = {}
Firewall.__index = Firewall

--- The counters now: a list of {name, packets, bytes, direction, action}, the rules' then the policies'.
function Firewall:counters()
  node_check(self.node)
  if self.node.firewall_state ~= self then misuse(self.node.name .. ":firewall", "these rules were replaced or removed") end
  return require("lunas.firewall").counters(self.node.ns)
end

--- The counters by name: {[name] = {packets =, bytes =, ...}}.
function Firewall:counters_by_name()
  local by = {}
  for _, c in ipairs(self:counters()) do by[c.name] = c end
  return by
end

--- Removes the node's firewall (every packet passes again).
function Firewall:remove()
  node_check(self.node)
  if self.node.firewall_state ~= self then return end
  require("lunas.firewall").remove(self.node.ns)
  self.node.firewall_state = nil
end

function Firewall:__tostring() return "firewall of " .. tostring(self.node) end

--- @type Node

--- The node's firewall: node:firewall{output = "drop", rules = {...}} (lunas.firewall's rules, with
-- direction = "forward" for what a router passes on) replaces the node's rules with these, in one transaction,
-- and returns the firewall object (counters, remove); node:firewall() returns the one in force, or nil.
function Node:firewall(rules)
  node_check(self)
  if self.kind == "switch" then misuse(self.name .. ":firewall", "a switch has no network namespace of its own: use a host or a router") end
  if rules == nil then return self.firewall_state end
  local fw = require("lunas.firewall")
  local checked = fw.check(rules)
  -- Named in the lab's record (once, before the table exists): lunas stats reads the counters of those hosts.
  local record = self.lab.record
  if record and self.path and not self.firewall_recorded then
    record:note{ firewall = { host = self.name, netns = self.path } }
    self.firewall_recorded = true
  end
  local applied = fw.apply(self.ns, checked)
  self.firewall_state = setmetatable({ node = self, rules = applied }, Firewall)
  return self.firewall_state
end

--- The node's network namespace handle (for core.setns, sandboxes, core.netlink).
function Node:netns() return node_check(self).ns end

local function argv_and_options(what, spec)
  if type(spec) ~= "table" then misuse(what, "table expected, got %s", type(spec)) end
  local argv, opts = {}, {}
  for k, v in pairs(spec) do
    if math.type(k) == "integer" then argv[k] = v else opts[k] = v end
  end
  if #argv == 0 then misuse(what, "a command expected ({ \"ping\", \"-c1\", ... })") end
  for k in pairs(opts) do
    if k ~= "env" and k ~= "capture" and k ~= "stdout" and k ~= "timeout" then misuse(what, "unknown option '%s'", k) end
  end
  -- Checked here, before the process exists: a bad value found later would leave it running.
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
    misuse(what, "timeout: non-negative number of seconds expected, got %s", tostring(timeout))
  end
  if opts.env ~= nil and type(opts.env) ~= "table" then misuse(what, "env: table expected, got %s", type(opts.env)) end
  return argv, opts
end

-- Everything a pipe carries until its write ends close; closes it.
local function read_all(fd)
  local chunks = {}
  while true do
    local data = fd:read(65536)
    if not data or data == "" then break end
    chunks[#chunks + 1] = data
  end
  fd:close()
  return table.concat(chunks)
end

-- The cgroup that holds what a kept lab's hosts run, made at the first command: after `lab up` returns, nothing
-- else knows those processes, and one that forks a daemon would escape a list of pids.
local function lab_cgroup(lab)
  if not lab.cgroup then
    lab.cgroup = require("lunas.cgroup").new()
    lab.record:note{ cgroup = lab.cgroup:record() }
  end
  return lab.cgroup
end

-- The environment of a command run in a node: ours, as `ip netns exec` keeps it. A command left running in a
-- kept lab (detached) gets /dev/null for what it does not redirect: it outlives lunas, and a pipe or terminal
-- of ours held open by it would keep whoever reads lunas's output waiting for ever.
local function spawn_in(node, argv, opts, stdout_w, detached)
  local lab = node.lab
  local function spawn(o)
    if lab.kept then return lab_cgroup(lab):spawn(o) end
    return check(core.spawn(o))
  end
  detached = detached and lab.kept
  local proc = in_netns(node.ns, function()
    if not stdout_w and not detached then return spawn{ argv = argv, env = opts.env } end
    return spawn{ fn = function()
      if detached then
        local null = core.open("/dev/null", "rw")
        for fd = 0, 2 do core.dup2(null, fd) end
      end
      if stdout_w then core.dup2(stdout_w, 1) end
      local _, msg = core.exec(argv, { env = opts.env })
      io.stderr:write(tostring(msg), "\n")
      core.exit(127)
    end }
  end)
  -- So that gc can still find it if lunas dies while it runs (by pid and start time: the pid may be reused).
  -- Unrecorded, it must not run on: nothing would end it after a crash.
  if lab.record then
    local ok, err = pcall(lab.record.note, lab.record, { process = { pid = proc.pid,
      start = process.start_time(proc.pid) } })
    if not ok then error(errors.cleanup(err, stop, proc), 0) end
  end
  return proc
end

--- Starts a command inside the node (same user and file system, only the network namespace changes, as with
-- `ip netns exec`): node:spawn{"iperf3", "-s", env = {...}, stdout = fd}. Returns the process handle; the lab
-- kills what is still running when it closes.
function Node:spawn(spec)
  node_check(self)
  local argv, opts = argv_and_options(self.name .. ":spawn", spec)
  local proc = spawn_in(self, argv, opts, opts.stdout, true)
  -- The lab's own handle, taken while the process is our unreaped child (its pid cannot name another yet): the
  -- user may wait on or close the one returned, and close() must still be able to end it.
  local own, msg, code = core.pidfd_open(proc.pid)
  if not own then
    error(errors.cleanup(errors.new{ op = "lab", msg = "lab: " .. tostring(msg), code = code }, stop, proc), 0)
  end
  self.lab.processes[#self.lab.processes + 1] = { proc = proc, own = own }
  return proc
end

--- Runs a command inside the node to completion: {status | signal, stdout (with capture = true)}. With
-- capture, the output is read to its end first: the timeout counts from there.
-- timeout (seconds) kills it and sets timed_out.
function Node:run(spec)
  node_check(self)
  local argv, opts = argv_and_options(self.name .. ":run", spec)
  local out_r, out_w
  if opts.capture then out_r, out_w = check(core.pipe()) end
  local ok, proc = pcall(spawn_in, self, argv, opts, out_w)
  if out_w then out_w:close() end
  if not ok then
    if out_r then out_r:close() end
    error(proc, 0)
  end
  -- Reading its output and waiting for it are where an interruption of lunas (SIGINT, SIGTERM) lands: the
  -- command is then ended, not left running in the host.
  local waited, output, result, msg, code = pcall(function()
    local text = out_r and read_all(out_r)
    return text, proc:wait(opts.timeout)
  end)
  if not waited then
    error(errors.cleanup(output, function()
      if out_r then out_r:close() end
      proc:kill("KILL")
      proc:wait()
      proc:close()
    end), 0)
  end
  local timed_out
  if not result and code == "ETIMEDOUT" then
    proc:kill("KILL")
    result, msg, code = proc:wait()
    timed_out = true
  end
  proc:close()
  check(result, msg, code)
  result.timed_out = timed_out
  result.stdout = output
  return result
end

--- A full lunas sandbox whose network is this node: lunas.sandbox spec fields, net set to the node.
function Node:sandbox(spec)
  node_check(self)
  local sandbox = require "lunas.sandbox"
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  s.net = self
  return sandbox.new(s)
end

function Node:__tostring() return ("%s %s"):format(self.kind, self.name) end

-- ---- links -----------------------------------------------------------------------------------------------

--- Lab links: veth pairs between two nodes, impaired on both ends.
-- @type Link
local Link = {}
Link.__index = Link

local function has_netem(params)
  for _, k in ipairs(NETEM_PARAMS) do
    if params[k] ~= nil and params[k] ~= 0 and params[k] ~= "0" and params[k] ~= "0%" and params[k] ~= "0ms" then
      return true
    end
  end
  return false
end

-- The qdisc one end needs for params: netem (which also shapes) when anything but a rate is asked, else tbf for
-- a rate alone (tbf needs no netem module: it works where netem is missing), else none.
local function qdisc_for(params)
  if has_netem(params) then
    local q = { kind = "netem" }
    for _, k in ipairs(NETEM_PARAMS) do q[k] = params[k] end
    q.rate, q.limit = params.rate, params.limit
    return q
  end
  if params.rate then return { kind = "tbf", rate = params.rate } end
  return nil
end

local function apply_end(endpoint, params)
  local nl, ifname = endpoint.netlink, endpoint.ifname
  local q = qdisc_for(params)
  if not q then
    if endpoint.qdisc then check(nl:qdisc_del(ifname)) end
    endpoint.qdisc = nil
    return
  end
  -- A different kind at the root: remove the old one first (the kernel will not change a qdisc's kind).
  if endpoint.qdisc and endpoint.qdisc ~= q.kind then check(nl:qdisc_del(ifname)) end
  check(nl:qdisc_replace(ifname, q))
  endpoint.qdisc = q.kind
end

-- The checks tc.c makes on the values qdisc_for passes it, made before anything exists: the veth pair is made
-- first and its qdiscs after, so a value tc.c refuses would otherwise cost a link made and deleted again.
-- Units as tc.c reads them; a number is in the unit given to number_factor.
local TIME_UNITS = { s = 1e9, sec = 1e9, ms = 1e6, msec = 1e6, us = 1e3, usec = 1e3, ns = 1, nsec = 1 }
local PERCENT_UNITS = { ["%"] = 0.01 }
local RATE_UNITS = { bit = 1 / 8, kbit = 1e3 / 8, mbit = 1e6 / 8, gbit = 1e9 / 8, tbit = 1e12 / 8,
  kibit = 1024 / 8, mibit = 1048576 / 8, gibit = 1073741824 / 8, bps = 1, kbps = 1e3, mbps = 1e6, gbps = 1e9 }
local TBF_MAX_RATE = 2147483647 -- bytes/s: libnl's tbf takes an int
local TBF_MAX_BUCKET_SECONDS = 4294967295 * 64e-9 -- a u32 of 64 ns ticks

local function check_unit(what, field, value, units, number_factor, example)
  if type(value) == "number" then
    if not (value >= 0) or value == math.huge then misuse(what, "%s: non-negative value expected", field) end
    return value * number_factor
  end
  if type(value) ~= "string" then
    misuse(what, "%s: number or string like \"%s\" expected, got %s", field, example, type(value))
  end
  local number, unit = value:match("^(%d*%.?%d*[eE][+-]?%d+)(.*)$")
  if not number then number, unit = value:match("^(%d*%.?%d*)(.*)$") end
  local n = tonumber(number)
  if not n or n == math.huge then misuse(what, "%s: bad value '%s' (like \"%s\")", field, value, example) end
  local factor = units[unit:lower()]
  if not factor then misuse(what, "%s: unknown unit in '%s' (like \"%s\")", field, value, example) end
  return n * factor
end

local function check_mtu(what, value)
  local mtu = type(value) == "number" and math.tointeger(value)
  if not mtu or mtu < 68 or mtu > 65535 then misuse(what, "mtu: integer 68-65535 expected, got %s", tostring(value)) end
  return mtu
end

-- Raises on what the link's qdiscs would refuse: units, ranges, a jitter or reordering without a delay, a rate
-- tbf cannot take (tbf: a rate alone). mtu, when given, is checked too.
local function check_impairments(what, params)
  local v = {}
  for _, k in ipairs{ "delay", "jitter" } do
    if params[k] ~= nil then v[k] = check_unit(what, k, params[k], TIME_UNITS, 1e6, "10ms") end
  end
  for _, k in ipairs{ "loss", "duplicate", "corrupt", "reorder" } do
    if params[k] ~= nil then
      v[k] = check_unit(what, k, params[k], PERCENT_UNITS, 0.01, "1%")
      if v[k] > 1 then misuse(what, "%s: more than 100%%", k) end
    end
  end
  if params.rate ~= nil then
    v.rate = check_unit(what, "rate", params.rate, RATE_UNITS, 1 / 8, "100mbit")
    if v.rate < 1 then misuse(what, "rate: a rate of at least 8bit expected") end
  end
  if params.limit ~= nil then
    local limit = type(params.limit) == "number" and math.tointeger(params.limit)
    if not limit or limit < 1 or limit > 4294967295 then
      misuse(what, "limit: queue length in packets (integer 1-4294967295) expected, got %s", tostring(params.limit))
    end
  end
  if params.mtu ~= nil then check_mtu(what, params.mtu) end
  if has_netem(params) then
    if (v.jitter or 0) > 0 and (v.delay or 0) <= 0 then misuse(what, "jitter: jitter needs a delay") end
    if (v.reorder or 0) > 0 and (v.delay or 0) <= 0 then misuse(what, "reorder: reordering needs a delay") end
  elseif v.rate then
    if v.rate > TBF_MAX_RATE then misuse(what, "rate: at most 17gbit on a link with no other impairment (tbf)") end
    -- tbf's default bucket: 10 ms worth of the rate, at least 16 KiB, which must drain in the time a u32 holds.
    if math.max(v.rate / 100, 16384) / v.rate > TBF_MAX_BUCKET_SECONDS then
      misuse(what, "rate: at least 477bit expected on a link with no other impairment (tbf)")
    end
  end
end

--- Changes a link's impairments while it carries traffic: link:set{loss = 5}, link:set{delay = "50ms"},
-- link:set{rate = false} (false removes one). Applies to both directions.
function Link:set(changes)
  if self.lab.closed then errors.raise{ op = "lab", msg = "lab: attempt to use a closed lab", code = "EBADF" } end
  if type(changes) ~= "table" then misuse("link:set", "table expected") end
  -- Into a copy, kept once applied: a refused change leaves the link and what describe() says as they were.
  local params = {}
  for k, v in pairs(self.params) do params[k] = v end
  for k, v in pairs(changes) do
    if not LINK_PARAMS[k] or k == "names" then misuse("link:set", "unknown parameter '%s'", tostring(k)) end
    if v == false then params[k] = nil else params[k] = v end
  end
  check_impairments("link:set", params)
  if changes.mtu then
    for _, e in ipairs(self.ends) do check(e.netlink:link_set(e.ifname, { mtu = changes.mtu })) end
  end
  for _, e in ipairs(self.ends) do apply_end(e, params) end
  self.params = params
  return self
end

-- Both ends administratively up or down, each from its own side (a switch's end in the fabric namespace).
local function set_state(self, up, what)
  if self.lab.closed then errors.raise{ op = "lab", msg = "lab: attempt to use a closed lab", code = "EBADF" } end
  if getmetatable(self) ~= Link then misuse(what, "a link expected (link:%s())", up and "up" or "down") end
  for _, e in ipairs(self.ends) do check(e.netlink:link_set(e.ifname, { up = up })) end
  self.is_down = not up or nil
  return self
end

--- Takes the link down, both ends (Mininet's `link a b down`): nothing crosses it until `link:up()`. The
-- addresses, routes and impairments stay; routes through it are the kernel's to withdraw while it is down.
function Link:down() return set_state(self, false, "link:down") end

--- Brings a link taken down back up, both ends.
function Link:up() return set_state(self, true, "link:up") end

--- Whether the link is up (not taken down by link:down()).
function Link:is_up() return not self.is_down end

--- Interface names of the link's two ends, in the order of lab:link(a, b).
function Link:names() return self.ends[1].ifname, self.ends[2].ifname end

function Link:__tostring()
  return ("link %s:%s -- %s:%s"):format(self.ends[1].node.name, self.ends[1].ifname, self.ends[2].node.name,
    self.ends[2].ifname)
end

-- ---- the lab ---------------------------------------------------------------------------------------------

--- Labs: what a lab makes is its own, and close() takes it all down.
-- @type Lab
local Lab = {}
Lab.__index = Lab

local function lab_check(self)
  if self.closed then errors.raise{ op = "lab", msg = "lab: attempt to use a closed lab", code = "EBADF" } end
  return self
end

-- A namespace for a node, persisted under the lab's directory when it has one.
local function new_namespace(self, name)
  local ns = check(core.ns_create("net"))
  if self.netns_dir then
    local path = self.netns_dir .. "/" .. name
    -- Written down before it exists: a crash right after persist() still leaves it named in the record. (A crash
    -- before it, and another tool creating the same name before gc runs, is the one case gc would take a
    -- namespace that is not ours: a few microseconds against a leak at every crash.)
    if self.record then
      local ok, err = pcall(self.record.note, self.record, { netns = path })
      if not ok then
        ns:close()
        error(err, 0)
      end
    end
    local ok, msg, code = core.persist(ns, path, { shared_dir = self.netns_dir == NETNS_DIR })
    if not ok then
      -- The namespace goes first (it is only a descriptor yet); noting the failure is clean-up after it.
      ns:close()
      local err = errors.new{ op = "lab", msg = "lab: " .. tostring(msg), code = code }
      if self.record then errors.cleanup(err, self.record.note, self.record, { failed = path }) end
      error(err, 0)
    end
    return ns, path
  end
  return ns
end

-- A name for a new link in the fabric namespace (a bridge or a switch port), reserved in fabric_names: the
-- wanted one when it is free and fits, else the first free PREFIX<n>. Ports and bridges share the namespace,
-- so a port named after its switch and peer ("s1-h1") must not take a bridge's name, nor the other way round.
local function fabric_name(self, wanted, prefix)
  local name = wanted
  if #name > 15 or self.fabric_names[name] then
    repeat
      self.port_seq = self.port_seq + 1
      name = prefix .. self.port_seq
    until not self.fabric_names[name]
  end
  self.fabric_names[name] = true
  return name
end

local function add_node(self, name, kind)
  lab_check(self)
  if not valid_name(name) then misuse(kind, "bad name '%s' (letters, digits, '_', '.', '-')", tostring(name)) end
  if self.nodes[name] then misuse(kind, "a node named '%s' exists already", name) end
  local node = setmetatable({ lab = self, name = name, kind = kind, lab_links = {}, assigned = {}, added_routes = {},
    next_if = 0 }, Node)
  if kind == "switch" then
    node.netlink = self.fabric_netlink
    node.bridge = fabric_name(self, name, "br")
    local ok, made, msg, code = pcall(node.netlink.link_add, node.netlink,
      { name = node.bridge, kind = "bridge", up = true, group = LAB_GROUP })
    -- A bridge that was not made frees its name; one that was keeps it (the group delete of close() takes it).
    if not (ok and made) then self.fabric_names[node.bridge] = nil end
    if not ok then error(made, 0) end
    check(made, msg, code)
    node.ifindex = check(node.netlink:link_get(node.bridge)).index
  else
    -- The interface names in use in the node's namespace: a name asked for twice is refused before anything is
    -- made, and the automatic ethN names go round the ones asked for.
    node.ifnames = { lo = true }
    node.ns, node.path = new_namespace(self, name)
    -- From here on close() removes it, even if the rest of its set-up fails.
    self.nodes[name] = node
    self.order[#self.order + 1] = node
    node.netlink = check(core.netlink(node.ns))
    check(node.netlink:link_set(1, { up = true })) -- lo is always index 1 in a new namespace
    -- No duplicate address detection on the lab's links: a link-local address stays tentative for a second or
    -- two otherwise, and IPv6 neighbour discovery through a router waits for it.
    check(core.sysctl(node.ns, "net.ipv6.conf.default.accept_dad", "0"))
    if kind == "router" then
      check(core.sysctl(node.ns, "net.ipv4.ip_forward", "1"))
      check(core.sysctl(node.ns, "net.ipv6.conf.all.forwarding", "1"))
    end
  end
  if kind == "switch" then
    self.nodes[name] = node
    self.order[#self.order + 1] = node
  end
  self.count = self.count + 1
  if self.on_progress then self.on_progress("node", self.count) end
  return node
end

--- A host: a network namespace with lo up.
function Lab:host(name) return add_node(self, name, "host") end
--- A router: a host with IPv4 and IPv6 forwarding on.
function Lab:router(name) return add_node(self, name, "router") end
--- A switch: a bridge (in the lab's own namespace).
function Lab:switch(name) return add_node(self, name, "switch") end

--- A node by name.
function Lab:node(name) return lab_check(self).nodes[name] end

local function resolve_node(self, value, what)
  if type(value) == "string" then value = self.nodes[value] end
  if getmetatable(value) ~= Node or value.lab ~= self then misuse("link", "%s: a node of this lab expected", what) end
  -- A host whose set-up failed halfway stays in the lab (close() removes it) but cannot take links.
  if not value.netlink then misuse("link", "%s: %s was not set up (its creation failed)", what, value.name) end
  return value
end

-- The kernel's rule for interface names (dev_valid_name), and no quote or backslash: nftables names a link in
-- quotes, and a lab's names reach it.
local function check_ifname(what, name)
  if type(name) ~= "string" then misuse(what, "interface name expected, got %s", type(name)) end
  if #name < 1 then misuse(what, "empty interface name") end
  if #name > 15 then misuse(what, "interface name longer than 15 bytes ('%s')", name) end
  if name == "." or name == ".." or name:find("[%s/:\"\\\0]") then misuse(what, "bad interface name '%s'", name) end
  return name
end

-- The name of one end of a new link, not reserved yet (a host's are taken once the link exists): given (checked
-- against the names the node uses) or the first free ethN.
local function host_end_name(node, given, what)
  if given then
    if node.ifnames[given] then misuse(what, "%s has an interface named '%s' already", node.name, given) end
    return given
  end
  local n = node.next_if
  while node.ifnames["eth" .. n] do n = n + 1 end
  return "eth" .. n, n
end

-- Everything lab:link is given, checked before anything is made. Returns the impairments (a new table), the
-- mtu and the names.
local function check_link_params(opts)
  if type(opts) ~= "table" then misuse("link", "options table expected, got %s", type(opts)) end
  local params = {}
  for k, v in pairs(opts) do
    if not LINK_PARAMS[k] then misuse("link", "unknown parameter '%s'", tostring(k)) end
    if k ~= "names" and k ~= "mtu" then params[k] = v end
  end
  check_impairments("link", params)
  local mtu = opts.mtu ~= nil and check_mtu("link", opts.mtu) or nil
  local names = opts.names or {}
  if type(names) ~= "table" then misuse("link", "names: table {name_a, name_b} expected") end
  for k, v in pairs(names) do
    if k ~= 1 and k ~= 2 then misuse("link", "names: table {name_a, name_b} expected, got key '%s'", tostring(k)) end
    check_ifname(("link: names[%d]"):format(k), v)
  end
  return params, mtu, names
end

local make_link

--- Connects two nodes with a veth pair: lab:link(a, b, {delay=, jitter=, loss=, duplicate=, corrupt=, reorder=,
-- rate=, mtu=, names = {name_in_a, name_in_b}}). In a host the end is eth0, eth1, ... in the order of the
-- host's links, unless names says otherwise. Impairments apply in both directions.
function Lab:link(a, b, opts)
  lab_check(self)
  local params, mtu, names = check_link_params(opts or {})
  a, b = resolve_node(self, a, "first node"), resolve_node(self, b, "second node")
  if a == b then misuse("link", "a node cannot be linked to itself") end
  local ends = { { node = a, peer = b, given = names[1], what = "link: names[1]" },
    { node = b, peer = a, given = names[2], what = "link: names[2]" } }
  for _, e in ipairs(ends) do
    if e.node.kind == "switch" then
      if e.given then misuse(e.what, "a switch port is named by the lab") end
    else
      e.name, e.number = host_end_name(e.node, e.given, e.what)
    end
  end
  -- Only now, with nothing left to refuse: a switch end's name is reserved in the fabric.
  for _, e in ipairs(ends) do
    if e.node.kind == "switch" then e.name = fabric_name(self, e.node.name .. "-" .. e.peer.name, "lp") end
  end
  local ok, result = pcall(make_link, self, a, b, ends[1].name, ends[2].name, params, mtu)
  if not ok then
    -- make_link removed the pair if it made one: the names are free again.
    for _, e in ipairs(ends) do
      if e.node.kind == "switch" then self.fabric_names[e.name] = nil end
    end
    error(result, 0)
  end
  for _, e in ipairs(ends) do
    if e.node.kind ~= "switch" then
      e.node.ifnames[e.name] = true
      if e.number then e.node.next_if = e.number + 1 end
    end
  end
  return result
end

make_link = function(self, a, b, name_a, name_b, params, mtu)
  -- The request comes from the fabric namespace; each end is created directly where it belongs. A switch's end,
  -- when there is one, is the request's own link: being in the fabric, it joins the bridge and comes up in the
  -- creating request (the peer cannot: ENOTCONN), which saves a request per host link.
  local first, second, first_name, second_name = a, b, name_a, name_b
  if b.kind == "switch" and a.kind ~= "switch" then first, second, first_name, second_name = b, a, name_b, name_a end
  local spec = { name = first_name, kind = "veth", group = LAB_GROUP, mtu = mtu,
    peer = { name = second_name, group = LAB_GROUP, mtu = mtu } }
  if first.kind == "switch" then spec.master, spec.up = first.ifindex, true else spec.netns = first.ns end
  if second.kind ~= "switch" then spec.peer.netns = second.ns end
  -- A failure here made nothing: a name that exists already (EEXIST) is someone else's interface, left alone.
  check(self.fabric_netlink:link_add(spec))
  local ok, result = pcall(function()
    -- Each end that is not up yet comes up from its own side.
    if first.kind ~= "switch" then check(first.netlink:link_set(first_name, { up = true })) end
    if second.kind == "switch" then
      check(second.netlink:link_set(second_name, { master = second.ifindex, up = true }))
    else
      check(second.netlink:link_set(second_name, { up = true }))
    end
    local link = setmetatable({ lab = self, params = params, ends = {
      { node = a, ifname = name_a, netlink = a.netlink }, { node = b, ifname = name_b, netlink = b.netlink } } }, Link)
    if next(params) then
      for _, e in ipairs(link.ends) do apply_end(e, params) end
    end
    return link
  end)
  if not ok then
    -- The pair is ours now: deleting one end deletes both.
    error(errors.cleanup(result, function() check(first.netlink:link_del(first_name)) end), 0)
  end
  a.lab_links[#a.lab_links + 1], b.lab_links[#b.lab_links + 1] = result, result
  self.links[#self.links + 1] = result
  if self.on_progress then self.on_progress("link", #self.links) end
  return result
end

-- Whether value is a descriptor object (a namespace handle, say): anything with fileno(), as core.netlink takes.
local function has_fileno(value)
  if type(value) ~= "userdata" and type(value) ~= "table" then return false end
  local ok, fileno = pcall(function() return value.fileno end) -- a userdata may have no __index at all
  return ok and fileno ~= nil
end

--- Plugs a network namespace that is not a lab node (a sandbox's, any process's) into a switch: a veth pair
-- whose port joins the switch and whose other end, opts.name (default eth0), appears in netns (a namespace
-- handle, a path, or a pid). Returns the port's name. The pair goes away with that namespace.
function Lab:attach(switch, netns, opts)
  lab_check(self)
  switch = resolve_node(self, switch, "switch")
  if switch.kind ~= "switch" then misuse("attach", "a switch expected, got %s", tostring(switch)) end
  opts = opts or {}
  if type(opts) ~= "table" then misuse("attach", "options table expected, got %s", type(opts)) end
  for k in pairs(opts) do
    if k ~= "name" then misuse("attach", "unknown option '%s'", tostring(k)) end
  end
  local name = check_ifname("attach: name", opts.name or "eth0")
  -- Without a namespace the peer would be made in the fabric, next to the bridge.
  if math.type(netns) == "integer" then
    if netns < 1 then misuse("attach", "netns: pid expected, got %d", netns) end
    netns = "/proc/" .. netns .. "/ns/net"
  elseif type(netns) == "string" then
    if netns == "" then misuse("attach", "netns: empty path") end
  elseif not has_fileno(netns) then
    misuse("attach", "netns: a namespace handle, path or pid expected, got %s", type(netns))
  end
  self.attach_seq = self.attach_seq + 1
  local port = fabric_name(self, switch.name .. "-a" .. self.attach_seq, "lp")
  local ok, made, msg, code = pcall(self.fabric_netlink.link_add, self.fabric_netlink, { name = port, kind = "veth",
    master = switch.ifindex, up = true, group = LAB_GROUP, peer = { name = name, netns = netns } })
  if not (ok and made) then
    self.fabric_names[port] = nil
    if not ok then error(made, 0) end
    check(made, msg, code)
  end
  return port
end

local function check_port(what, value)
  if math.type(value) ~= "integer" or value < 1 or value > 65535 then misuse(what, "port 1-65535 expected") end
  return value
end

local function check_address(what, value)
  if type(value) ~= "string" or not (value:match("^%d+%.%d+%.%d+%.%d+$") or value:match("^[%x:]+$")) then
    misuse(what, "IP address expected, got '%s'", tostring(value))
  end
  return value
end

--- NAT in a node (a router, usually): traffic leaving through `out` takes the node's address (masquerade),
-- and forward = {{proto = "tcp", port = 8080, to = "10.0.0.2", to_port = 80}, ...} sends connections arriving
-- on `out` to inside addresses. out defaults to the interface of the node's default route.
function Lab:nat(node, opts)
  lab_check(self)
  node = resolve_node(self, node, "node")
  if node.kind == "switch" then misuse("nat", "a switch has no addresses: use a router or a host") end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "out" and k ~= "forward" then misuse("nat", "unknown option '%s'", tostring(k)) end
  end
  local out = opts.out
  if not out then
    for _, r in ipairs(check(node.netlink:route_list())) do
      if r.dst == "default" and r.dev then out = r.dev end
    end
    if not out then misuse("nat", "no 'out' interface given and %s has no default route", node.name) end
  end
  check_ifname("nat: out", out)
  local lines = {
    "table inet lunas_nat {",
    "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname \"" .. out .. "\" masquerade; }",
  }
  local forwards = {}
  for i, f in ipairs(opts.forward or {}) do
    local what = ("nat: forward[%d]"):format(i)
    if type(f) ~= "table" then misuse(what, "table expected") end
    local proto = f.proto or "tcp"
    if proto ~= "tcp" and proto ~= "udp" then misuse(what, "proto 'tcp' or 'udp' expected") end
    local to = check_address(what .. ".to", f.to)
    local family = to:find(":", 1, true) and "ip6" or "ip"
    local target = family == "ip6" and ("[" .. to .. "]") or to
    forwards[#forwards + 1] = ("    iifname \"%s\" %s dport %d dnat %s to %s:%d;"):format(out, proto,
      check_port(what .. ".port", f.port), family, target, check_port(what .. ".to_port", f.to_port or f.port))
  end
  if #forwards > 0 then
    lines[#lines + 1] = "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;"
    for _, l in ipairs(forwards) do lines[#lines + 1] = l end
    lines[#lines + 1] = "  }"
  end
  lines[#lines + 1] = "}"
  -- Replace, not add: calling nat() again on the node states the whole NAT configuration anew.
  local script = "table inet lunas_nat\ndelete table inet lunas_nat\n" .. table.concat(lines, "\n") .. "\n"
  check(core.nft(node.ns, script))
  node.nat = { out = out, forward = opts.forward }
  return node
end

-- ---- drawing ---------------------------------------------------------------------------------------------

local function dot_quote(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"'
end

local function link_label(link)
  local parts = {}
  if link.down then parts[1] = "down" end
  for _, k in ipairs{ "rate", "delay", "jitter", "loss", "duplicate", "corrupt", "reorder" } do
    local v = link.params[k]
    if v ~= nil then
      if (k == "loss" or k == "duplicate" or k == "corrupt" or k == "reorder") and type(v) == "number" then v = v .. "%" end
      if (k == "delay" or k == "jitter") and type(v) == "number" then v = v .. "ms" end
      if k == "rate" and type(v) == "number" then v = v .. "bit" end
      parts[#parts + 1] = k .. " " .. tostring(v)
    end
  end
  return table.concat(parts, ", ")
end

local SHAPES = { host = "box", router = "diamond", switch = "ellipse" }

--- The lab as plain data (what state.json keeps, and what `lunas lab show` prints as JSON): {name, fabric = path,
-- nodes = {{name, kind, netns = path | nil, bridge = name (a switch), addresses = {{link, address}}, routes =
-- {{dst, via, dev, ...}}, nat = {out, forward} | nil}}, links = {{a = {node, ifname}, b = {node, ifname},
-- params = {delay =, loss =, rate =, ...}, down = true | nil}}}, nodes and links in the order they were made.
function Lab:describe()
  lab_check(self)
  local nodes, links = {}, {}
  for _, node in ipairs(self.order) do
    local addresses, routes = {}, {}
    for _, a in ipairs(node.assigned) do addresses[#addresses + 1] = { link = a.link, address = a.address } end
    for _, r in ipairs(node.added_routes) do
      local copy = {}
      for k, v in pairs(r) do copy[k] = v end
      routes[#routes + 1] = copy
    end
    nodes[#nodes + 1] = { name = node.name, kind = node.kind, netns = node.path, bridge = node.bridge,
      addresses = addresses, routes = routes, nat = node.nat }
  end
  for _, link in ipairs(self.links) do
    local params = json.object()
    for k, v in pairs(link.params) do params[k] = v end
    local a, b = link.ends[1], link.ends[2]
    links[#links + 1] = { a = { node = a.node.name, ifname = a.ifname }, b = { node = b.node.name, ifname = b.ifname },
      params = params, down = link.is_down }
  end
  return { name = self.name, fabric = self.fabric_path, nodes = nodes, links = links }
end

--- @section end

--- The topology of a lab description (lab:describe(), or a recorded one) in Graphviz DOT: nodes with their
-- addresses, links with interface names and impairments.
function M.dot(description)
  if type(description) ~= "table" or type(description.nodes) ~= "table" or type(description.links) ~= "table" then
    misuse("dot", "a lab description expected (lab:describe())")
  end
  local out = { "graph " .. dot_quote(description.name or "lab") .. " {", "  node [fontname=\"monospace\"];" }
  for _, node in ipairs(description.nodes) do
    local label = { node.name }
    for _, a in ipairs(node.addresses or {}) do label[#label + 1] = a.link .. " " .. a.address end
    out[#out + 1] = ("  %s [shape=%s, label=%s];"):format(dot_quote(node.name), SHAPES[node.kind] or "box",
      dot_quote(table.concat(label, "\\n")):gsub("\\\\n", "\\n"))
  end
  for _, link in ipairs(description.links) do
    local a, b = link.a, link.b
    local attrs = { ("taillabel=%s, headlabel=%s"):format(dot_quote(a.ifname), dot_quote(b.ifname)) }
    local label = link_label(link)
    if label ~= "" then attrs[#attrs + 1] = "label=" .. dot_quote(label) end
    out[#out + 1] = ("  %s -- %s [%s];"):format(dot_quote(a.node), dot_quote(b.node), table.concat(attrs, ", "))
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

--- @type Lab

--- The topology in Graphviz DOT (net.dot of lab:describe()).
function Lab:dot()
  return M.dot(self:describe())
end

local function find_program(name)
  for dir in ((os.getenv("PATH") or "") .. ":/usr/local/bin:/usr/bin:/bin"):gmatch("[^:]+") do
    local path = dir .. "/" .. name
    local f = io.open(path, "rb")
    if f then f:close() return path end
  end
end

--- The topology as SVG, drawn by Graphviz's dot (which must be installed: package graphviz).
function Lab:svg()
  local source = self:dot()
  local dot = find_program("dot")
  if not dot then errors.raise{ op = "lab", msg = "lab: svg: Graphviz's dot is not installed (package graphviz)", code = "ENOENT" } end
  -- The DOT text goes through a private file: through a pipe, a big lab's text and dot's output could each fill
  -- their pipe while both sides wait on the other.
  local path = os.tmpname()
  local out_r, out_w
  -- Whatever fails on the way (a raise of core.spawn included), the file and the pipe go.
  local ok, proc = pcall(function()
    local f, ferr = io.open(path, "w")
    if not f then errors.raise{ op = "lab", msg = "lab: svg: " .. tostring(ferr), code = "EIO" } end
    f:write(source)
    f:close()
    out_r, out_w = check(core.pipe())
    return check(core.spawn{ fn = function()
      core.dup2(out_w, 1)
      core.exec({ dot, "-Tsvg", path })
      core.exit(127)
    end })
  end)
  if out_w then out_w:close() end
  local svg = ok and read_all(out_r)
  if not ok and out_r then out_r:close() end
  os.remove(path)
  if not ok then error(proc, 0) end
  local result = proc:wait()
  proc:close()
  if result.status ~= 0 then errors.raise{ op = "lab", msg = "lab: svg: dot failed", code = "EIO" } end
  return svg
end

-- ---- teardown --------------------------------------------------------------------------------------------

-- A raised lunas error as attempt() takes it.
local function attempt_call(attempt, fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then attempt(nil, errors.is(err) and err.msg or tostring(err), errors.is(err) and err.code or "EIO") end
end

-- Removes a lab's kernel objects from what is left of it: parts.kill(attempt) ends its processes, then one group
-- delete in the fabric (parts.fabric_netlink) takes every switch port and the veths with an end there, then the
-- persisted namespaces go (parts.paths, fabric last), and with them the links between hosts. Everything is
-- attempted, each part whatever the others did; the first failure (parts.problems first: what the caller found
-- wrong before) is returned as {msg, code}.
local function remove_objects(parts)
  local first
  local function attempt(ok, msg, code)
    if ok == nil and msg ~= nil and not first then first = { msg = msg, code = code } end
  end
  for _, problem in ipairs(parts.problems or {}) do attempt(nil, problem.msg, problem.code) end
  attempt_call(attempt, parts.kill, attempt)
  if parts.fabric_netlink then
    attempt_call(attempt, function()
      -- ENODEV: no link in the group (a lab of hosts linked only to each other).
      local ok, msg, code = parts.fabric_netlink:link_del_group(LAB_GROUP)
      if code ~= "ENODEV" then attempt(ok, msg, code) end
    end)
  end
  for _, path in ipairs(parts.paths) do
    attempt_call(attempt, function()
      local ok, msg, code = core.unpersist(path)
      if code ~= "ENOENT" then attempt(ok, msg, code) end
    end)
  end
  return first
end

-- Ends a process a node started, through the lab's own handle on it (entry.own): the one its caller got
-- (entry.proc) may be closed or reaped already. Then both handles are closed.
local function end_process(entry)
  local own = entry.own
  local ok, msg, code = own:kill("KILL")
  -- ESRCH: it has exited and been reaped (through the caller's handle) already.
  if ok or code == "ESRCH" then ok, msg, code = own:wait(5) end
  own:close()
  entry.proc:close()
  check(ok, msg, code)
end

local function close_handles(self)
  if self.fabric_netlink then self.fabric_netlink:close() end
  for _, node in ipairs(self.order) do
    if node.kind ~= "switch" then
      if node.netlink then node.netlink:close() end
      node.ns:close()
    end
  end
  if self.fabric then self.fabric:close() end
end

-- A kept lab at the end of its builder's scope: the record says it is up, and this process lets go of it
-- (descriptors closed, nothing in the kernel touched).
local function let_go(self)
  local description = self:describe()
  self.closed = true
  interrupt.untrack(self)
  local counts = { host = 0, router = 0, switch = 0 }
  for _, node in ipairs(self.order) do counts[node.kind] = counts[node.kind] + 1 end
  self.record:finish{ status = "up", name = self.name, pid = core.getpid(), created = self.created,
    built_in = core.now() - self.started, hosts = counts.host, routers = counts.router, switches = counts.switch,
    links = #self.links, lab = description }
  self.record:close()
  for _, entry in ipairs(self.processes) do
    entry.own:close()
    entry.proc:close()
  end
  if self.cgroup then
    self.cgroup.owner = nil -- its processes live on: closing the object must not remove it
    self.cgroup:close()
  end
  close_handles(self)
end

-- The teardown behind Lab:close.
local function close_lab(self, err)
  if self.closed or self.owner ~= core.getpid() then return end
  if self.kept and err == nil then return let_go(self) end
  self.closed = true
  interrupt.untrack(self)
  local paths = {}
  for _, node in ipairs(self.order) do
    if node.path then paths[#paths + 1] = node.path end
  end
  if self.fabric_path then paths[#paths + 1] = self.fabric_path end
  local first = remove_objects{
    kill = function(attempt)
      -- One by one: a process that cannot be ended does not keep the others running.
      for _, entry in ipairs(self.processes) do attempt_call(attempt, end_process, entry) end
      if self.cgroup then attempt_call(attempt, self.cgroup.close, self.cgroup) end
    end,
    fabric_netlink = self.fabric_netlink, paths = paths }
  close_handles(self)
  if self.record then
    if first then
      self.record:close()
    else
      local ok, msg, code = self.record:remove()
      if not ok then first = { msg = msg, code = code } end
    end
  end
  if not first then return end
  local failure = errors.new{ op = "lab", msg = "lab: close: " .. tostring(first.msg), code = first.code }
  if err == nil then error(failure, 0) end
  errors.cleanup(err, error, failure, 0)
end

--- Removes everything the lab made: its processes (killed), every link (one group delete in the fabric;
-- links between hosts go with their namespaces), the namespaces and their /run/netns entries, and its record.
-- Idempotent. Errors are collected: everything is attempted, then the first failure is raised (the record then
-- stays, so `lunas gc` can finish the job). A kept lab (lab:keep()) is not removed when its scope ends without
-- an error: it is recorded as up and left running; when the scope ends by an error, it is removed like any other.
-- err, when given, is the error that ends the lab's scope: a failure of the teardown is then added to it (see
-- errors.cleanup) instead of raised, so that the error that caused the teardown is the one that surfaces.
-- A signal that arrives during the teardown waits for its end (lunas.interrupt): half a teardown is a leak.
function Lab:close(err)
  return core.interrupt_defer(close_lab, self, err)
end

-- Not errors.closer(Lab.close): close needs the scope's error, which decides the fate of a kept lab.
function Lab:__close(err)
  if err == nil then return self:close() end
  errors.cleanup(err, self.close, self, err)
end
Lab.__gc = nil

--- Lets the lab outlive this process: when its scope ends (or close() is called) without an error, it is
-- recorded as up under /run/lunas/labs/NAME and left in place, processes and all; net.down(NAME) or
-- `lunas lab down NAME` removes it later, from any process. Needs persisted namespaces (root). Returns the lab.
function Lab:keep()
  lab_check(self)
  if not self.record then
    errors.raise{ op = "lab", code = "EPERM", msg = ("lab: keep %s: only a lab with persisted namespaces and a record "
      .. "under %s can outlive its process (root in the initial user namespace)"):format(self.name, lab_record.DIR) }
  end
  if not self.kept then
    self.record:note{ kept = true }
    self.kept = true
  end
  return self
end

function Lab:__tostring()
  return ("lab %s (%d nodes, %d links%s)"):format(self.name, self.count, #self.links, self.closed and ", closed" or "")
end

--- @section end

-- ---- labs recorded under /run/lunas/labs: down, list, show, gc ------------------------------------------------

local function lab_error(msg, code)
  errors.raise{ op = "lab", msg = "lab: " .. msg, code = code }
end

-- A namespace path as a record names it, or nil: a journal is data (cut short by a crash, edited, written by
-- another version), and a bad value must cost only itself. The builder persisted its namespaces directly under
-- its netns_dir, and nothing else is removed by the record's word.
local function recorded_path(rec, path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then return nil end
  local dir = rec.netns_dir
  if type(dir) == "string" and (path:sub(1, #dir + 1) ~= dir .. "/" or path:find("/", #dir + 2, true)) then
    return nil
  end
  return path
end

-- Removes a recorded lab's objects and then its record.
local function remove_record(rec)
  local fabric_ns, fabric_netlink
  local paths, problems = {}, {}
  local fabric = recorded_path(rec, rec.fabric)
  local has_fabric = false
  for _, value in ipairs(rec.netns) do
    local path = recorded_path(rec, value)
    if not path then
      local shown = type(value) == "string" and ("'" .. value .. "'") or ("a " .. type(value))
      problems[#problems + 1] = { code = "EINVAL", msg = ("the record names a bad namespace path (%s), left alone")
        :format(shown) }
    elseif path == fabric then
      has_fabric = true
      fabric_ns = core.ns_open(path)
      fabric_netlink = fabric_ns and core.netlink(fabric_ns) or nil
    else
      paths[#paths + 1] = path
    end
  end
  -- Last, and even when it cannot be opened: a builder killed inside persist() leaves the file without the
  -- namespace bound on it.
  if has_fabric then paths[#paths + 1] = fabric end
  local first = remove_objects{
    kill = function(attempt)
      for _, p in ipairs(rec.processes) do
        attempt_call(attempt, function()
          if type(p) == "table" and process.kill(p.pid, p.start) == nil then
            attempt(nil, ("kill pid %s: still there after 5 s"):format(tostring(p.pid)), "EBUSY")
          end
        end)
      end
      local cgroup = require "lunas.cgroup"
      for _, c in ipairs(rec.cgroups) do
        attempt_call(attempt, function() cgroup.adopt(c):remove() end)
      end
    end,
    fabric_netlink = fabric_netlink, paths = paths, problems = problems }
  if fabric_netlink then fabric_netlink:close() end
  if fabric_ns then fabric_ns:close() end
  if first then lab_error(("down %s: %s"):format(rec.name, first.msg), first.code) end
  local ok, msg, code = lab_record.remove(rec.name)
  if not ok then lab_error(("down %s: %s"):format(rec.name, msg), code) end
  return true
end

local function read_record(name)
  if not valid_name(name) then misuse("down", "bad lab name '%s'", tostring(name)) end
  local rec = lab_record.read(name)
  if not rec then lab_error(("no lab named %s (under %s)"):format(name, lab_record.DIR), "ENOENT") end
  return rec
end

--- Removes a recorded lab (kept with lab:keep() or `lunas lab up`, or left by a crashed lunas): kills the
-- processes started in its hosts, deletes its links, namespaces and cgroup, then its record. A lab whose
-- builder is still at work is refused (EBUSY): that process owns it.
function M.down(name)
  local rec = read_record(name)
  if rec.status == "building" or rec.status == "in use" then
    lab_error(("down %s: the lab is %s by pid %d"):format(name, rec.status == "building" and "being built" or "in use",
      rec.pid), "EBUSY")
  end
  -- A signal that comes meanwhile waits for the end of the teardown (lunas.interrupt).
  return core.interrupt_defer(remove_record, rec)
end

-- The summary of one record, as `lunas lab list` shows it.
local function summary(rec)
  local state = rec.state or {}
  local lab = state.lab
  return { name = rec.name, status = rec.status, pid = rec.pid, created = rec.created, built_in = state.built_in,
    hosts = state.hosts, routers = state.routers, switches = state.switches, links = state.links,
    nodes = lab and #lab.nodes or nil, namespaces = #rec.netns }
end

--- Every recorded lab: {{name, status = "up" | "building" | "in use" | "stale", pid (builder), created (epoch
-- seconds), built_in (seconds), hosts, routers, switches, links, nodes, namespaces}}, sorted by name. Counts
-- of nodes and links are known once a kept lab is up.
function M.labs()
  local out = {}
  for _, name in ipairs(lab_record.names()) do
    local rec = lab_record.read(name)
    if rec then out[#out + 1] = summary(rec) end
  end
  return out
end

-- A node's interfaces as its namespace has them now: {{name, index, kind, up, operstate, mtu, mac, master,
-- addresses = {...}}}, or nil, message.
local function live_interfaces(ns)
  local nl, msg = core.netlink(ns)
  if not nl then return nil, msg end
  local links, lmsg = nl:link_list()
  local addrs = links and nl:addr_list() or nil
  nl:close()
  if not links then return nil, lmsg end
  local by_index = {}
  local out = {}
  for _, l in ipairs(links) do
    local entry = { name = l.name, index = l.index, kind = l.kind, up = l.up, operstate = l.operstate, mtu = l.mtu,
      mac = l.mac, master = l.master, addresses = {} }
    by_index[l.index] = entry
    out[#out + 1] = entry
  end
  for _, a in ipairs(addrs or {}) do
    local entry = by_index[a.index]
    if entry then entry.addresses[#entry.addresses + 1] = a.address end
  end
  table.sort(out, function(x, y) return x.index < y.index end)
  return out
end

--- One recorded lab in full: the summary of net.labs() plus `lab`, its description (lab:describe()) with each
-- node's live state read from the kernel now: node.interfaces (name, index, kind, up, operstate, mtu, mac,
-- addresses) for hosts and routers, node.ports (the bridge's ports) for switches, node.error when its namespace
-- cannot be read. A lab that is not up has no description: `namespaces` lists what its record names.
function M.show(name)
  local rec = read_record(name)
  local out = summary(rec)
  out.namespaces = rec.netns
  local lab = rec.state and rec.state.lab
  if not lab then return out end
  out.lab = lab
  local fabric_links
  local fabric = lab.fabric and core.ns_open(lab.fabric)
  if fabric then
    fabric_links = live_interfaces(fabric)
    fabric:close()
  end
  for _, node in ipairs(lab.nodes) do
    if node.kind == "switch" then
      local bridge
      for _, l in ipairs(fabric_links or {}) do
        if l.name == node.bridge then bridge = l end
      end
      if bridge then
        node.ports = {}
        for _, l in ipairs(fabric_links) do
          if l.master == bridge.index then node.ports[#node.ports + 1] = l.name end
        end
        node.up = bridge.up
      else
        node.error = ("bridge %s is gone from %s"):format(tostring(node.bridge), tostring(lab.fabric))
      end
    elseif node.netns then
      local ns, msg = core.ns_open(node.netns)
      if ns then
        node.interfaces, msg = live_interfaces(ns)
        ns:close()
      end
      if not node.interfaces then node.error = msg end
    end
  end
  return out
end

--- Removes the labs whose builder died before they were complete or closed (status "stale"), as net.down
-- would. opts.dry_run only reports. Returns {removed = {names}, cgroups = {the cgroup paths recorded by the
-- labs that stay, which a cgroup gc must leave alone}}. A stale lab that cannot be removed does not stop the
-- others: once all were tried, an error names each that failed, with the report as its `report` field
-- (report.failed = {{name, msg, code}}; their records stay, and so do their cgroups' paths in report.cgroups).
function M.gc(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("gc", "options table expected") end
  for k in pairs(opts) do
    if k ~= "dry_run" then misuse("gc", "unknown option '%s'", tostring(k)) end
  end
  local report = { removed = {}, cgroups = {} }
  if not opts.dry_run then lab_record.remove_leftovers() end
  report.failed = {}
  for _, name in ipairs(lab_record.names()) do
    local rec = lab_record.read(name)
    local ok, err = true, nil
    if rec and rec.status == "stale" and not opts.dry_run then ok, err = pcall(remove_record, rec) end
    if rec and rec.status == "stale" and ok then
      report.removed[#report.removed + 1] = name
    elseif rec then
      if not ok then
        report.failed[#report.failed + 1] = { name = name, msg = errors.is(err) and err.msg or tostring(err),
          code = errors.is(err) and err.code or "EIO" }
      end
      for _, c in ipairs(rec.cgroups) do
        if type(c) == "table" and type(c.path) == "string" then report.cgroups[#report.cgroups + 1] = c.path end
      end
    end
  end
  if #report.failed > 0 then
    local each = {}
    for _, f in ipairs(report.failed) do each[#each + 1] = f.msg end
    errors.raise{ op = "lab", code = report.failed[1].code, report = report, msg = ("lab: gc: %d of the stale "
      .. "labs could not be removed: %s"):format(#report.failed, table.concat(each, "; ")) }
  end
  return report
end

-- ---- creating a lab -------------------------------------------------------------------------------------

local keep_every_lab, observers = false, {}

--- From now on every lab this process creates is kept (lab:keep()): what `lunas lab up` does for its recipe.
function M.keep_all()
  keep_every_lab = true
end

--- Calls fn(lab) for every lab this process creates, right after it exists and before any node (the host
-- binary uses it to show progress on a terminal).
function M.observe(fn)
  if type(fn) ~= "function" then misuse("observe", "function expected") end
  observers[#observers + 1] = fn
end

local lab_options = { name = true, netns_dir = true, progress = true }

--- @section end

--- Creates a lab: net.lab{name = "lab", netns_dir = "/run/netns" | false | DIR, progress = fn(kind, count)}.
-- netns_dir defaults to /run/netns when lunas is root in the initial user namespace, else false (namespaces
-- are then kept by descriptor only, which is what an unprivileged user inside a user namespace gets).
-- progress is called after each node ("node", count) and link ("link", count).
-- With persisted namespaces, the lab is recorded under /run/lunas/labs/NAME (when that directory can be made),
-- and a record of the same name refuses the lab: such a lab is up, in use, or was left by a crash (lunas gc).
function M.lab(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("lab", "options table expected") end
  for k in pairs(opts) do
    if not lab_options[k] then misuse("lab", "unknown option '%s'", tostring(k)) end
  end
  local name = opts.name or "lab"
  if not valid_name(name) then misuse("lab", "bad name '%s'", tostring(name)) end
  local netns_dir = opts.netns_dir
  if netns_dir == nil then netns_dir = initial_root() and NETNS_DIR or false end
  if netns_dir ~= false and (type(netns_dir) ~= "string" or netns_dir:sub(1, 1) ~= "/") then
    misuse("lab", "netns_dir: absolute path or false expected")
  end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then misuse("lab", "progress: function expected") end
  local self = setmetatable({ name = name, netns_dir = netns_dir, nodes = {}, order = {}, links = {}, processes = {},
    count = 0, port_seq = 0, attach_seq = 0, fabric_names = {}, owner = core.getpid(), on_progress = opts.progress,
    created = os.time(), started = core.now() }, Lab)
  -- Enough descriptors for a namespace and a netlink socket per node, as far as the hard limit allows.
  local soft, hard = core.getrlimit("nofile")
  if soft and hard and soft < hard then core.setrlimit("nofile", hard, hard) end
  if netns_dir then
    local fabric_path = netns_dir .. "/lunas-" .. name
    local record, msg, code = lab_record.create(name, { netns_dir = netns_dir, fabric = fabric_path })
    -- Without a record (not root), a crash leaves what gc cannot find: only a lab that must be kept needs one.
    if not record and keep_every_lab then lab_error(("keep %s: cannot record it: %s"):format(name, msg), code) end
    self.record = record
  end
  local ok, err = pcall(function()
    self.fabric, self.fabric_path = new_namespace(self, "lunas-" .. name)
    self.fabric_netlink = check(core.netlink(self.fabric))
    if keep_every_lab then self:keep() end
  end)
  if not ok then error(errors.cleanup(err, self.close, self, err), 0) end
  -- An interruption that ends the recipe closes it, as the end of its scope would (lunas.interrupt).
  interrupt.track(self)
  for _, observe in ipairs(observers) do observe(self) end
  return self
end

M.Lab, M.Node, M.Link = Lab, Node, Link
--- Ready topologies with their addresses and routes (`lunas.topo`): net.topo.single{n = 4}, linear, tree, star,
-- ring, mesh.
M.topo = require "lunas.topo"

return M
