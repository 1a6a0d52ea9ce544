--- `lunas lab up|down|show|list`: labs that outlive the command that built them, recorded under
-- /run/lunas/labs (lunas.lab_record), and everything an operator does with them afterwards.
local core = require "lunas.core"
local net = require "lunas.net"
local json = require "lunas.json"
local errors = require "lunas.errors"
local interrupt = require "lunas.interrupt"
local cli = require "lunas.cli"

errors.register_module()

local M = {}

local HELP = [[
usage: lunas lab up FILE [ARGS...]
       lunas lab up --topo KIND,PARAMS [--name NAME] [--link K=V,...] [--ipv6]
       lunas lab down NAME... | --all
       lunas lab show NAME [--json | --dot]
       lunas lab list [--json]

up     runs the recipe FILE (a Lua script that builds labs with require("lunas.net").lab{name = ...}, as any
       recipe does; ARGS in `arg` and `...`) and keeps every lab it builds once it returns, instead of removing
       them when their scope ends. Each is recorded under /run/lunas/labs/NAME; its hosts are network namespaces
       under /run/netns (ip netns exec HOST ..., lunas enter HOST -- CMD). If the recipe fails, what it built is
       removed. On a terminal, progress goes to stderr while the lab is built.
       --topo builds a ready topology instead (lunas.topo), addressed and routed: single,N (hosts h1..hN on
       switch s1), linear,N (switches s1..sN in a chain, hI on sI), tree,DEPTH,FANOUT, star,N, ring,N and
       mesh,N (routers r1..rN with their host hI each, static shortest-path routes); parameters also as
       depth=2,fanout=3. --name names the lab (default: the topology's kind), --link gives every link the same
       parameters (rate=10mbit,delay=5ms,loss=1), --ipv6 adds IPv6 addresses and routes.
down   removes labs: the processes started in their hosts, links, namespaces, cgroups and records. --all
       takes every recorded lab that no running lunas is building or using.
show   a lab's nodes with their interfaces and addresses as the kernel has them now, and its links with their
       impairments; --json as one JSON object, --dot as a Graphviz graph.
list   every recorded lab: name, status (up; building or in use: its lunas is running; stale: its lunas
       died, lunas gc removes it), nodes, links, the builder's pid and when it was made. --json as JSON.
Exit status: 0; 1 when the recipe or a removal fails; 2 for bad usage or a recipe that does not load.]]

local function fail(command, msg)
  io.stderr:write(("lunas lab %s: %s\n"):format(command, msg))
  return 1
end

local function plural(n, word)
  return ("%d %s%s"):format(n, word, n == 1 and "" or (word == "switch" and "es" or "s"))
end

-- "lab NAME: 120 nodes, 230 links" on one terminal line, rewritten at most ten times a second.
local function progress_reporter(lab)
  local last = 0
  local counts = { node = 0, link = 0 }
  return function(kind, count)
    counts[kind] = count
    local now = core.now()
    if now - last < 0.1 then return end
    last = now
    io.stderr:write(("\r\27[Klab %s: %s, %s"):format(lab.name, plural(counts.node, "node"), plural(counts.link, "link")))
    io.stderr:flush()
  end
end

local function summary_line(name)
  local labs = net.labs()
  for _, l in ipairs(labs) do
    if l.name == name and l.status == "up" then
      return ("lab %s: %s, %s, %s, %s (up in %.2f s)"):format(name, plural(l.hosts or 0, "host"),
        plural(l.routers or 0, "router"), plural(l.switches or 0, "switch"), plural(l.links or 0, "link"),
        l.built_in or 0)
    end
  end
  return ("lab %s: not recorded as up"):format(name)
end

-- Removes what a failed recipe built: labs still open are closed as failed, labs already let go are taken down.
local function discard(built)
  for _, lab in ipairs(built) do
    if not lab.closed then
      pcall(lab.close, lab, "recipe failed")
    else
      pcall(net.down, lab.name)
    end
  end
end

-- "rate=10mbit,delay=5ms,loss=1" -> {rate = "10mbit", delay = "5ms", loss = 1}; nil, message when malformed.
local function link_params(text)
  local params = {}
  for item in (text .. ","):gmatch("([^,]*),") do
    local k, v = item:match("^(%a+)=(.+)$")
    if not k then return nil, ("--link: K=V expected, got '%s'"):format(item) end
    params[k] = math.tointeger(tonumber(v)) or tonumber(v) or v
  end
  return params
end

-- `lab up --topo ...`: the recipe is a function that builds the topology (what the FILE form runs from a file).
local function topology_recipe(args)
  local topo = require "lunas.topo"
  local kind, opts, msg
  local i = 1
  local extra = {}
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--topo" or a == "--name" or a == "--link" then
      if not v then return nil, a .. " needs a value" end
      if a == "--topo" then
        kind, opts = topo.parse(v)
        if not kind then return nil, "--topo: " .. opts end
      elseif a == "--name" then
        extra.name = v
      else
        extra.link, msg = link_params(v)
        if not extra.link then return nil, msg end
      end
      i = i + 2
    elseif a == "--ipv6" then
      extra.ipv6 = true
      i = i + 1
    else
      return nil, "unknown argument '" .. a .. "'"
    end
  end
  if not kind then return nil, "--topo KIND,PARAMS expected" end
  for k, v in pairs(extra) do opts[k] = v end
  return function() topo[kind](opts) end
end

local function up(args, handler)
  local file = args[1]
  local chunk, err
  local topology_option = { ["--topo"] = true, ["--name"] = true, ["--link"] = true, ["--ipv6"] = true }
  if topology_option[file] then
    chunk, err = topology_recipe(args)
    if not chunk then return cli.usage_error("lab up", err) end
    args = { "--topo" }
  end
  if not chunk then
    if not file or file == "" then return cli.usage_error("lab up", "a recipe FILE expected") end
    if file:sub(1, 1) == "-" and file ~= "-" then return cli.usage_error("lab up", "unknown option '" .. file .. "'") end
    chunk, err = loadfile(file ~= "-" and file or nil)
    if not chunk then
      io.stderr:write("lunas lab up: ", err, "\n")
      return 2
    end
  end
  local terminal = core.isatty(2)
  local built, reporting = {}, false
  net.keep_all()
  net.observe(function(lab)
    built[#built + 1] = lab
    if terminal and not lab.on_progress then
      lab.on_progress = progress_reporter(lab)
      reporting = true
    end
  end)
  _G.lunas = require "lunas"
  local full = { [0] = "lunas" }
  for i, a in ipairs(args) do full[i] = a end
  cli.set_arg_global(full, 1)
  collectgarbage("restart")
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local ok, result = xpcall(chunk, handler or debug.traceback, table.unpack(rest))
  if reporting then io.stderr:write("\r\27[K") end
  if not ok then
    core.interrupt_defer(discard, built)
    io.stderr:write("lunas lab up: ", tostring(result), "\n")
    if #built > 0 then io.stderr:write("lunas lab up: removed what the recipe built\n") end
    return 1
  end
  if #built == 0 then
    return fail("up", file .. " built no lab (a recipe builds one with require(\"lunas.net\").lab{name = ...})")
  end
  -- Told to stop while the recipe ran (the signal waited for a teardown or the end of its scope): nothing stays
  -- up that was not reported up.
  if interrupt.signal() then
    core.interrupt_defer(discard, built)
    io.stderr:write("lunas lab up: interrupted by SIG", interrupt.signal(), ": removed what the recipe built\n")
    return 1
  end
  -- Every lab up and reported, or (a signal came first) none: a signal that comes meanwhile waits.
  core.interrupt_defer(function()
    for _, lab in ipairs(built) do
      -- Labs whose scope is still open (no <close>, or returned by the recipe) are let go here.
      if not lab.closed then lab:close() end
      print(summary_line(lab.name))
    end
  end)
  return 0
end

local function down(args)
  local names, all = {}, false
  for _, a in ipairs(args) do
    if a == "--all" then
      all = true
    elseif a:sub(1, 1) == "-" then
      return cli.usage_error("lab down", "unknown option '" .. a .. "'")
    else
      names[#names + 1] = a
    end
  end
  if all and #names > 0 then return cli.usage_error("lab down", "--all takes no names") end
  if not all and #names == 0 then return cli.usage_error("lab down", "a lab NAME or --all expected") end
  if all then
    for _, l in ipairs(net.labs()) do
      if l.status == "up" or l.status == "stale" then names[#names + 1] = l.name end
    end
  end
  local status = 0
  for _, name in ipairs(names) do
    local ok, err = errors.try(net.down, name)
    if ok then
      print(("lab %s: down"):format(name))
    else
      status = fail("down", tostring(err))
    end
  end
  return status
end

local function when(epoch)
  return epoch and os.date("%Y-%m-%d %H:%M:%S", epoch) or "-"
end

local function show_text(info)
  local out = {}
  local head = ("lab %s: %s, built by pid %s at %s"):format(info.name, info.status, tostring(info.pid or "-"),
    when(info.created))
  if info.built_in then head = head .. (" in %.2f s"):format(info.built_in) end
  out[#out + 1] = head
  local lab = info.lab
  if not lab then
    out[#out + 1] = "  no topology recorded (the lab is not up); its namespaces:"
    for _, path in ipairs(info.namespaces or {}) do out[#out + 1] = "    " .. path end
    return table.concat(out, "\n") .. "\n"
  end
  local peer = {}
  for _, link in ipairs(lab.links) do
    peer[link.a.node .. "\0" .. link.a.ifname] = link.b.node .. ":" .. link.b.ifname
    peer[link.b.node .. "\0" .. link.b.ifname] = link.a.node .. ":" .. link.a.ifname
  end
  for _, node in ipairs(lab.nodes) do
    if node.kind == "switch" then
      out[#out + 1] = ("  switch %s (bridge %s)%s"):format(node.name, tostring(node.bridge),
        node.ports and (": ports " .. table.concat(node.ports, " ")) or "")
    else
      out[#out + 1] = ("  %s %s (%s)"):format(node.kind, node.name, tostring(node.netns or "-"))
    end
    if node.error then out[#out + 1] = "    ! " .. node.error end
    for _, i in ipairs(node.interfaces or {}) do
      if i.name ~= "lo" then
        local to = peer[node.name .. "\0" .. i.name]
        out[#out + 1] = ("    %-8s %-5s mtu %-5d %s%s"):format(i.name, i.up and "up" or "down", i.mtu or 0,
          table.concat(i.addresses, " "), to and ("  -> " .. to) or "")
      end
    end
  end
  if #lab.links > 0 then out[#out + 1] = "  links:" end
  for _, link in ipairs(lab.links) do
    local params = {}
    for k, v in pairs(link.params) do params[#params + 1] = k .. " " .. tostring(v) end
    table.sort(params)
    out[#out + 1] = ("    %s:%s -- %s:%s%s"):format(link.a.node, link.a.ifname, link.b.node, link.b.ifname,
      #params > 0 and ("  " .. table.concat(params, ", ")) or "")
  end
  return table.concat(out, "\n") .. "\n"
end

local function show(args)
  local name, format
  for _, a in ipairs(args) do
    if a == "--json" or a == "--dot" then
      if format and format ~= a then return cli.usage_error("lab show", "--json and --dot exclude each other") end
      format = a
    elseif a:sub(1, 1) == "-" then
      return cli.usage_error("lab show", "unknown option '" .. a .. "'")
    elseif name then
      return cli.usage_error("lab show", "one lab NAME expected")
    else
      name = a
    end
  end
  if not name then return cli.usage_error("lab show", "a lab NAME expected") end
  local info, err = errors.try(net.show, name)
  if not info then return fail("show", tostring(err)) end
  if format == "--json" then
    io.stdout:write(json.encode(info, { indent = "  " }), "\n")
  elseif format == "--dot" then
    if not info.lab then return fail("show", ("%s is %s: no topology recorded"):format(name, info.status)) end
    io.stdout:write(net.dot(info.lab))
  else
    io.stdout:write(show_text(info))
  end
  return 0
end

local function list(args)
  local as_json = false
  for _, a in ipairs(args) do
    if a == "--json" then as_json = true else return cli.usage_error("lab list", "unknown option '" .. a .. "'") end
  end
  local labs = net.labs()
  if as_json then
    for _, l in ipairs(labs) do
      for _, k in ipairs{ "pid", "created", "built_in", "hosts", "routers", "switches", "links", "nodes" } do
        if l[k] == nil then l[k] = json.null end
      end
    end
    io.stdout:write(json.encode({ labs = labs }, { indent = "  " }), "\n")
    return 0
  end
  local rows = { { "NAME", "STATUS", "NODES", "LINKS", "PID", "CREATED" } }
  for _, l in ipairs(labs) do
    rows[#rows + 1] = { l.name, l.status, l.nodes and tostring(l.nodes) or "-", l.links and tostring(l.links) or "-",
      tostring(l.pid or "-"), when(l.created) }
  end
  io.stdout:write(cli.format_table(rows, { [3] = true, [4] = true, [5] = true }))
  return 0
end

local COMMANDS = { up = up, down = down, show = show, list = list }

function M.main(args, handler)
  local sub = args[1]
  if sub == "--help" or sub == "-h" then
    print(HELP)
    return 0
  end
  if sub == nil then return cli.usage_error("lab", "a subcommand expected (up, down, show, list)") end
  local command = COMMANDS[sub]
  if not command then return cli.usage_error("lab", "unknown subcommand '" .. sub .. "'") end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  -- (not for up: what follows the recipe's name is the recipe's)
  for i, a in ipairs(rest) do
    if (a == "--help" or a == "-h") and (sub ~= "up" or i == 1) then
      print(HELP)
      return 0
    end
  end
  return command(rest, handler)
end

return M
