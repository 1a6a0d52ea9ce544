-- Sandbox records and monitoring: `lunas run --name`, the `name` field, `lunas ps`, `lunas stats`, `lunas top`,
-- `lunas events` and `lunas gc`, through the binary as a user types them. The numbers are checked against what the
-- kernel says from outside: the record directory, the cgroup files it names, /proc, and `ip -s -j link` inside
-- the sandbox's network namespace (nsenter). `lunas top` runs in a real terminal (tmux) whose screen is read back.

local core = require "lunas.core"
local json = require "lunas.json"
local util = require "support.util"
local kernel = require "support.kernel"

local function records_dir()
  if core.ids().euid == 0 then return "/run/lunas/sandboxes" end
  return (os.getenv("XDG_RUNTIME_DIR") or "/nonexistent") .. "/lunas/sandboxes"
end

local function events_file()
  return records_dir():gsub("/sandboxes$", "/events")
end

local function lunas(...)
  local words = { util.quote(util.bin) }
  for _, a in ipairs{ ... } do words[#words + 1] = util.quote(a) end
  return util.sh(table.concat(words, " "))
end

local function record_of(name)
  local text = util.read(records_dir() .. "/" .. name .. "/record.json")
  local ok, rec = pcall(json.decode, text or "")
  return ok and type(rec) == "table" and rec.pid and rec or nil
end

local function wait_record(name)
  return util.wait_for(function() return record_of(name) end, 10)
end

local function ps_json(...)
  local out, err, code = lunas("ps", "--json", ...)
  assert.are.equal(0, code, err)
  local list = json.decode(out)
  local by_name = {}
  for _, e in ipairs(list) do by_name[e.name] = e end
  return by_name, list
end

-- A sandbox started by the binary in the background: the lunas process handle (killed at cleanup).
local function start_run(cleanup, args, out, err)
  local proc = util.start_lunas(args, out, err)
  -- (ended as a user ends it, so that it removes its record; killed if it does not within 10 s)
  cleanup(function()
    if proc:alive() then proc:kill("TERM") end
    if not proc:wait(10) then
      proc:kill("KILL")
      proc:wait()
    end
    proc:close()
  end)
  return proc
end

-- The first number in a cgroup file (nil when absent).
local function cgroup_number(dir, file)
  local text = dir and util.read(dir .. "/" .. file)
  return text and tonumber(text:match("%d+"))
end

local function keyed(dir, file, key)
  local text = dir and util.read(dir .. "/" .. file)
  return text and tonumber(text:match("%f[%w]" .. key .. " (%d+)"))
end

-- What the cgroup named by a record says, from its files: cpu (seconds), memory (bytes), peak.
local function cgroup_says(rec)
  local dirs = rec.cgroup.dirs
  local v1 = dirs.v1 or {}
  local out = {}
  if v1.cpuacct then out.cpu = cgroup_number(v1.cpuacct, "cpuacct.usage") / 1e9
  else out.cpu = keyed(dirs.v2, "cpu.stat", "usage_usec") / 1e6 end
  if v1.memory then
    out.memory, out.peak = cgroup_number(v1.memory, "memory.usage_in_bytes"), cgroup_number(v1.memory, "memory.max_usage_in_bytes")
  else
    out.memory, out.peak = cgroup_number(dirs.v2, "memory.current"), cgroup_number(dirs.v2, "memory.peak")
  end
  if v1.pids then out.pids = cgroup_number(v1.pids, "pids.current")
  elseif dirs.v2 and util.read(dirs.v2 .. "/pids.current") then out.pids = cgroup_number(dirs.v2, "pids.current") end
  return out
end

-- The processes in a pid namespace (by its inode), from /proc.
local function pidns_members(inode)
  local list = {}
  for _, entry in ipairs(core.listdir("/proc")) do
    if entry:match("^%d+$") and util.alive(entry) then
      local link = core.readlink("/proc/" .. entry .. "/ns/pid")
      if link == ("pid:[%d]"):format(inode) then list[#list + 1] = tonumber(entry) end
    end
  end
  return list
end

describe("sandbox records and lunas ps #root", function()
  if not kernel.requires("root") then return end

  it("lunas run records what it starts (named, or run-PID) and removes the record when it ends", function()
    local cleanup = util.cleanups(finally)
    local proc = start_run(cleanup, { "run", "--name", "mon-ps", "--", "sleep", "3001" })
    local rec = assert(wait_record("mon-ps"), "no record of mon-ps")
    -- what the record says is what /proc says
    assert.are.equal(proc.pid, rec.owner.pid)
    assert.are.same({ "sleep", "3001" }, rec.argv)
    assert.are.equal(tostring(proc.pid), util.status_field(rec.pid, "PPid"))
    for kind, inode in pairs(rec.namespaces) do
      if kind ~= "cgroup" then assert.are.equal(("%s:[%d]"):format(kind == "mount" and "mnt" or kind, inode), util.ns_link(rec.pid, kind == "mount" and "mnt" or kind)) end
    end
    local entries = ps_json()
    local e = assert(entries["mon-ps"], "lunas ps does not list mon-ps")
    assert.are.equal(rec.pid, e.pid)
    assert.are.equal("running", e.status)
    assert.are.same({ "user", "pid", "mount", "net", "uts", "ipc", "cgroup" }, e.own)
    -- without a cgroup, processes come from /proc: those of its pid namespace
    assert.are.equal(#pidns_members(rec.namespaces.pid), e.pids)
    assert.are.equal("proc", e.source)
    assert.is_true(e.uptime >= 0 and e.uptime < 60)
    local out = lunas("ps")
    assert.matches("\nsandbox%s+mon%-ps%s+" .. rec.pid .. "%s+running%s", out)
    -- the end of the sandbox removes the record
    proc:kill("TERM")
    proc:wait()
    assert.is_nil(core.file_type(records_dir() .. "/mon-ps"))
    -- an unnamed run gets run-PID
    local unnamed = start_run(cleanup, { "run", "--", "sleep", "3011" })
    local urec = assert(wait_record("run-" .. unnamed.pid), "no record run-PID")
    assert.are.same({ "sleep", "3011" }, urec.argv)
  end)

  it("a recipe's named sandbox has a record; the same name while it runs is refused, a stale one replaced", function()
    local cleanup = util.cleanups(finally)
    local lunas_mod = require "lunas"
    local s = lunas_mod.sandbox{ argv = { "sleep", "3002" }, name = "mon-api" }:spawn()
    cleanup(function() s:close() end)
    local rec = assert(record_of("mon-api"))
    assert.are.equal(s.pid, rec.pid)
    assert.are.equal(core.getpid(), rec.owner.pid)
    -- a second live one of that name: refused, naming the field; the first stays recorded
    local ok, err = pcall(function() return lunas_mod.sandbox{ argv = { "true" }, name = "mon-api" }:spawn() end)
    assert.is_false(ok)
    assert.are.equal("name", err.field)
    assert.matches("running sandbox is named mon%-api", tostring(err))
    assert.are.equal(s.pid, record_of("mon-api").pid)
    local out, errout, code = lunas("run", "--name", "mon-api", "--", "true")
    assert.are.equal(2, code)
    assert.matches("%-%-name", errout)
    assert.are.equal("", out)
    -- a bad name is misuse naming the field
    ok, err = pcall(lunas_mod.sandbox, { argv = { "true" }, name = "../x" })
    assert.is_false(ok)
    assert.matches("name", tostring(err))
    s:close()
    assert.is_nil(core.file_type(records_dir() .. "/mon-api"))
    -- a record whose owner is gone (a pid that is no process) does not hold the name
    local dead = core.spawn{ argv = { "true" } }
    dead:wait()
    dead:close()
    os.execute("mkdir -p " .. util.quote(records_dir() .. "/mon-stale"))
    util.write(records_dir() .. "/mon-stale/record.json", json.encode{ owner = { pid = dead.pid, start = "1" },
      pid = dead.pid, start = "1", argv = { "x" } })
    cleanup(function() os.execute("rm -rf " .. util.quote(records_dir() .. "/mon-stale")) end)
    assert.are.equal("stale", ps_json()["mon-stale"].status)
    local result = lunas_mod.sandbox{ argv = { "sh", "-c", "exit 7" }, name = "mon-stale" }:run()
    assert.are.equal(7, result.status)
    assert.is_nil(core.file_type(records_dir() .. "/mon-stale"))
  end)

  it("a name prefix takes a free name: PREFIX-PID, then PREFIX-PID-RANDOM while that one runs", function()
    local cleanup = util.cleanups(finally)
    local lunas_mod = require "lunas"
    local first = lunas_mod.sandbox{ argv = { "sleep", "3003" }, name = { prefix = "mon-pre" } }:spawn()
    cleanup(function() first:close() end)
    local own = "mon-pre-" .. core.getpid()
    assert.are.equal(own, first.name)
    assert.are.equal(first.pid, assert(record_of(own)).pid)
    local second = lunas_mod.sandbox{ argv = { "sleep", "3003" }, name = { prefix = "mon-pre" } }:spawn()
    cleanup(function() second:close() end)
    assert.matches("^mon%-pre%-" .. core.getpid() .. "%-%x+$", second.name)
    assert.are.equal(second.pid, assert(record_of(second.name)).pid)
    local ok, err = pcall(lunas_mod.sandbox, { argv = { "true" }, name = { prefix = "../x" } })
    assert.is_false(ok)
    assert.matches("name.prefix", tostring(err))
    second:close()
    first:close()
    assert.is_nil(core.file_type(records_dir() .. "/" .. own))
    assert.is_nil(core.file_type(records_dir() .. "/" .. second.name))
  end)

  it("ps and stats give what the cgroup files and /proc say", function()
    if not kernel.requires("cgroup_write") then return end
    local cleanup = util.cleanups(finally)
    -- busy: a core's worth of cpu and 8 MiB touched; steady memory once written
    start_run(cleanup, { "run", "--name", "mon-cg", "--memory", "128M", "--pids", "32", "--", "sh", "-c",
      "head -c 8M /dev/zero | (read -r x; sleep 3003) & while :; do :; done" })
    local rec = assert(wait_record("mon-cg"))
    assert.is_table(rec.cgroup)
    os.execute("sleep 0.5")
    local before = cgroup_says(rec)
    local entries = ps_json()
    local after = cgroup_says(rec)
    local e = entries["mon-cg"]
    assert.are.equal("cgroup", e.source)
    -- (lunas reports whole microseconds)
    assert.is_true(e.cpu_seconds >= before.cpu - 1e-6 and e.cpu_seconds <= after.cpu,
      ("cpu %s not within %s..%s"):format(e.cpu_seconds, before.cpu, after.cpu))
    assert.is_true(e.memory_bytes >= math.min(before.memory, after.memory)
      and e.memory_bytes <= math.max(before.memory, after.memory), "memory")
    assert.is_true(e.memory_peak_bytes >= before.peak and e.memory_peak_bytes <= after.peak, "peak")
    assert.are.equal(before.pids, e.pids)
    -- stats: the cpu share over its interval matches the cgroup's own account over that time
    local c0, t0 = cgroup_says(rec).cpu, core.now()
    local out, err, code = lunas("stats", "--json", "--interval", "1", "mon-cg")
    local c1, t1 = cgroup_says(rec).cpu, core.now()
    assert.are.equal(0, code, err)
    local s = json.decode(out)
    assert.are.equal(1, #s)
    assert.are.equal("mon-cg", s[1].name)
    -- its last sample lies between the two reads of the cgroup, and the cpu its interval (1 s) saw cannot exceed
    -- what the cgroup counted over the longer span around it
    assert.is_true(s[1].cpu_seconds >= c0 - 1e-6 and s[1].cpu_seconds <= c1, ("cpu %s not in %s..%s"):format(
      s[1].cpu_seconds, c0, c1))
    assert.is_true(s[1].cpu_percent > 0 and s[1].cpu_percent / 100 <= (c1 - c0) * 1.05 + 0.01,
      ("cpu %.1f%% over 1 s, cgroup %.3f s over %.2f s"):format(s[1].cpu_percent, c1 - c0, t1 - t0))
    assert.are.equal(134217728, s[1].memory_limit_bytes)
    assert.are.equal(134217728, cgroup_number(rec.cgroup.dirs.v1.memory or rec.cgroup.dirs.v2,
      rec.cgroup.dirs.v1.memory and "memory.limit_in_bytes" or "memory.max"))
    -- the human table has it too
    out = lunas("stats", "--interval", "0")
    assert.matches("\nsandbox%s+mon%-cg%s", out)
  end)

  it("the traffic of the sandbox's own interfaces is what ip -s -j link says in its namespace", function()
    local cleanup = util.cleanups(finally)
    local net = require "lunas.net"
    local lab = net.lab{ name = "monlab" }
    cleanup(function() lab:close() end)
    local a, sw = lab:host("mona"), lab:switch("monsw")
    lab:link(a, sw)
    a:addr("eth0", "10.77.0.1/24")
    local s = require("lunas").sandbox{ argv = { "sleep", "3004" }, name = "mon-net",
      net = { switch = sw, address = "10.77.0.2/24" } }:spawn()
    cleanup(function() s:close() end)
    local ping = a:run{ "ping", "-c", "5", "-i", "0.2", "-s", "1000", "10.77.0.2", capture = true }
    assert.are.equal(0, ping.status, ping.stdout)
    local function ip_totals()
      local out, err, code = util.sh("nsenter --net=/proc/" .. s.pid .. "/ns/net ip -s -j link")
      assert.are.equal(0, code, err)
      local t = { rx = 0, tx = 0 }
      for _, l in ipairs(json.decode(out)) do
        if l.ifname ~= "lo" then
          t.rx, t.tx = t.rx + l.stats64.rx.bytes, t.tx + l.stats64.tx.bytes
        end
      end
      return t
    end
    local before = ip_totals()
    local e = ps_json("mon-net")["mon-net"]
    local after = ip_totals()
    assert.is_true(before.rx >= 5 * 1000, "the pings did not arrive")
    assert.is_true(e.net.rx_bytes >= before.rx and e.net.rx_bytes <= after.rx, ("rx %d not in %d..%d"):format(
      e.net.rx_bytes, before.rx, after.rx))
    assert.is_true(e.net.tx_bytes >= before.tx and e.net.tx_bytes <= after.tx, "tx")
    assert.are.equal(1, e.net.interfaces)
    -- the lab: its hosts' interfaces (not those of its switches' namespace, which would count each packet twice)
    local function host_rx()
      local out, err, code = util.sh("ip -n mona -s -j link")
      assert.are.equal(0, code, err)
      local rx = 0
      for _, link in ipairs(json.decode(out)) do
        if link.ifname ~= "lo" then rx = rx + link.stats64.rx.bytes end
      end
      return rx
    end
    local rx0 = host_rx()
    local l = ps_json("--labs")["monlab"]
    local rx1 = host_rx()
    assert.is_table(l)
    assert.are.equal("lab", l.kind)
    assert.are.equal(1, l.hosts)
    assert.is_true(l.net.rx_bytes >= rx0 and l.net.rx_bytes <= rx1, ("lab rx %d not in %d..%d"):format(
      l.net.rx_bytes, rx0, rx1))
    assert.is_true(rx0 >= 5 * 1000)
  end)

  it("a lunas killed with its sandbox leaves a record that lunas gc removes, with its cgroup", function()
    if not kernel.requires("cgroup_write") then return end
    local cleanup = util.cleanups(finally)
    local proc = start_run(cleanup, { "run", "--name", "mon-gc", "--memory", "64M", "--", "sleep", "3005" })
    local rec = assert(wait_record("mon-gc"))
    proc:kill("KILL")
    proc:wait()
    assert.is_truthy(util.none_running("sleep 3005"))
    -- (its PID 1 ends the payload, then itself: gc keeps the record of a sandbox that still runs)
    assert.is_truthy(util.wait_for(function() return not require("lunas.process").alive(rec.pid, rec.start) end, 10))
    assert.is_truthy(core.file_type(records_dir() .. "/mon-gc"), "the record went without gc")
    assert.are.equal("stale", ps_json()["mon-gc"].status)
    local out, err, code = lunas("gc", "--json")
    assert.are.equal(0, code, err)
    local report = json.decode(out)
    local listed = false
    for _, n in ipairs(report.sandboxes) do listed = listed or n == "mon-gc" end
    assert.is_true(listed, out)
    assert.is_nil(core.file_type(records_dir() .. "/mon-gc"))
    assert.is_truthy(util.wait_for(function()
      for _, dir in pairs(rec.cgroup.dirs.v1) do if core.file_type(dir) then return false end end
      return not (rec.cgroup.dirs.v2 and core.file_type(rec.cgroup.dirs.v2))
    end, 5), "the sandbox's cgroup is left")
  end)
end)

describe("lunas stats --prometheus #root", function()
  if not kernel.requires("root") then return end

  it("writes the text exposition format, atomically with --output", function()
    local cleanup = util.cleanups(finally)
    start_run(cleanup, { "run", "--name", "mon-prom", "--", "sleep", "3006" })
    local rec = assert(wait_record("mon-prom"))
    local out, err, code = lunas("stats", "--prometheus")
    assert.are.equal(0, code, err)
    -- every sample line belongs to a family announced by HELP and TYPE before it
    local typed, helped = {}, {}
    for line in out:gmatch("[^\n]+") do
      local name, kind = line:match("^# TYPE (%S+) (%S+)$")
      if name then
        assert.is_truthy(kind == "counter" or kind == "gauge", line)
        assert.is_true(helped[name], "TYPE before HELP: " .. line)
        typed[name] = kind
      elseif line:match("^# HELP ") then
        helped[line:match("^# HELP (%S+)")] = true
      else
        local metric, labels, value = line:match('^([%a_:][%w_:]*)(%b{}) (%S+)$')
        if not metric then metric, value = line:match("^([%a_:][%w_:]*) (%S+)$") end
        assert.is_truthy(metric, "not a sample line: " .. line)
        assert.is_truthy(typed[metric], "no TYPE for " .. metric)
        assert.is_truthy(tonumber(value), line)
        if labels then assert.matches('^{[%a_][%w_]*="[^"]*"[,}]', labels) end
        if typed[metric] == "counter" then assert.matches("_total$", metric) end
      end
    end
    assert.matches('\nlunas_sandbox_info{name="mon%-prom",pid="' .. rec.pid .. '",status="running"} 1\n', out)
    assert.matches('\nlunas_sandbox_cpu_seconds_total{name="mon%-prom"} [%d.e-]+\n', out)
    assert.matches('\nlunas_sandbox_processes{name="mon%-prom"} 2\n', out) -- its PID 1 and sleep
    assert.matches("\nlunas_sandboxes 1\n", out)
    -- --output: the whole file, no temporary left beside it
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    out, err, code = lunas("stats", "--prometheus", "--output", dir .. "/lunas.prom")
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.matches('lunas_sandbox_info{name="mon%-prom"', util.read(dir .. "/lunas.prom"))
    assert.are.same({ "lunas.prom" }, core.listdir(dir))
    out, err, code = lunas("stats", "--prometheus", "--output", dir .. "/missing/x.prom")
    assert.are.equal(1, code)
    assert.matches("missing", err)
  end)

  it("shows a sandbox's firewall counters, as nft lists them in its network namespace", function()
    local cleanup = util.cleanups(finally)
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    -- (lo would pass unless loopback = false: then the payload's datagrams to itself meet the rule)
    util.write(dir .. "/rules.lua", [[return { loopback = false, rules = {
      { direction = "out", proto = "udp", port = 9, action = "drop", name = "discard" } } }]])
    start_run(cleanup, { "run", "--name", "mon-fw", "--firewall", dir .. "/rules.lua", "--", "python3", "-c",
      "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(3):\n"
      .. "  try: s.sendto(b'x' * 10, ('127.0.0.1', 9))\n  except OSError: pass\ntime.sleep(600)" })
    local rec = assert(wait_record("mon-fw"))
    local function listed()
      local out = util.sh("nsenter --net=/proc/" .. rec.pid .. "/ns/net nft -j list counters table inet lunas_fw")
      local by = {}
      for _, item in ipairs(json.decode(out).nftables) do
        if item.counter then by[item.counter.name] = item.counter end
      end
      return by
    end
    assert.is_truthy(util.wait_for(function() local c = listed().discard return c and c.packets == 3 end, 10))
    local nft = listed()
    local out, err, code = lunas("stats", "--prometheus", "mon-fw")
    assert.are.equal(0, code, err)
    assert.matches('\nlunas_sandbox_firewall_packets_total{name="mon%-fw",action="drop",direction="out",'
      .. 'rule="discard"} 3\n', out)
    assert.matches('\nlunas_sandbox_firewall_bytes_total{name="mon%-fw",action="drop",direction="out",'
      .. 'rule="discard"} ' .. nft.discard.bytes .. "\n", out)
    local by_name = ps_json("mon-fw")
    local seen = {}
    for _, c in ipairs(by_name["mon-fw"].firewall) do seen[c.name] = c end
    for name, c in pairs(nft) do
      assert.is_truthy(seen[name], name)
      assert.are.equal(c.packets, seen[name].packets, name)
      assert.are.equal(c.bytes, seen[name].bytes, name)
    end
    -- a sandbox without a firewall has no such samples
    out = lunas("stats", "--prometheus")
    assert.is_nil(out:find('lunas_sandbox_firewall_packets_total{name="mon%-prom"'))
  end)

  it("shows the firewall counters of a lab's hosts, labelled with the host, as nft lists them there", function()
    local cleanup = util.cleanups(finally)
    local lab = require("lunas.net").lab{ name = "monfw" }
    cleanup(function() lab:close() end)
    local a, r, b = lab:host("a"), lab:router("r"), lab:host("b")
    lab:link(a, r)
    lab:link(r, b)
    a:addr("eth0", "10.78.1.2/24"):route("default", "10.78.1.1")
    r:addr("eth0", "10.78.1.1/24"):addr("eth1", "10.78.2.1/24")
    b:addr("eth0", "10.78.2.2/24"):route("default", "10.78.2.1")
    r:firewall{ forward = "drop", rules = {} }
    assert.are_not.equal(0, a:run{ "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.78.2.2", capture = true }.status)
    local path = ("/proc/%d/fd/%d"):format(core.getpid(), r:netns():fileno())
    local listed = util.sh("nsenter --net=" .. path .. " nft -j list counters table inet lunas_fw")
    local nft
    for _, item in ipairs(json.decode(listed).nftables) do
      if item.counter and item.counter.name == "policy_forward" then nft = item.counter end
    end
    assert.are.equal(2, nft.packets)
    local out, err, code = lunas("stats", "--prometheus", "--labs", "monfw")
    assert.are.equal(0, code, err)
    assert.matches('\nlunas_lab_firewall_packets_total{name="monfw",action="drop",direction="forward",host="r",'
      .. 'rule="policy_forward"} 2\n', out)
    assert.matches('\nlunas_lab_firewall_bytes_total{name="monfw",action="drop",direction="forward",host="r",'
      .. 'rule="policy_forward"} ' .. nft.bytes .. "\n", out)
    -- only the host that has one
    assert.is_nil(out:find('host="a"', 1, true))
  end)

  it("escapes label values as the format says", function()
    local monitor = require "lunas.monitor"
    assert.are.equal('a\\"b\\\\c\\nd', monitor.escape_label('a"b\\c\nd'))
    local text = monitor.prometheus{ time = 0, wall = 0, entries = { { kind = "sandbox", name = 'we"ird\n',
      pid = 1, status = "running", cpu_seconds = 1.5 } } }
    assert.matches('lunas_sandbox_cpu_seconds_total{name="we\\"ird\\n"} 1.5\n', text, 1, true)
  end)
end)

describe("lunas events #root", function()
  if not kernel.requires("root") then return end

  -- Starts `lunas events --json` and returns a function that waits for an event matching fields.
  local function watch_events(cleanup)
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    local out = dir .. "/events"
    start_run(cleanup, { "events", "--json" }, out, out .. ".err")
    -- it watches once the journal exists and it has opened it: a marker event it must see
    assert.is_truthy(util.wait_for(function() return core.file_type(events_file()) end, 5))
    local function events()
      local list = {}
      for line in (util.read(out) or ""):gmatch("[^\n]+") do list[#list + 1] = json.decode(line) end
      return list
    end
    local function find(fields)
      local found = util.wait_for(function()
        for _, e in ipairs(events()) do
          local all = true
          for k, v in pairs(fields) do all = all and e[k] == v end
          if all then return e end
        end
      end, 10)
      if not found then io.stderr:write("events so far:\n", util.read(out) or "", util.read(out .. ".err") or "", "\n") end
      return found
    end
    -- How many events match, once at least n do (nil after 10 s).
    local function count(fields, n)
      return util.wait_for(function()
        local k = 0
        for _, e in ipairs(events()) do
          local all = true
          for key, v in pairs(fields) do all = all and e[key] == v end
          if all then k = k + 1 end
        end
        return k >= n and k or nil
      end, 10)
    end
    -- (lunas events is ready once a start written now reaches it)
    os.execute("sleep 0.3")
    return find, events, count
  end

  it("reports start, exit with its status, OOM kills, freeze and thaw, lab up and down", function()
    if not kernel.requires("cgroup_write") then return end
    local cleanup = util.cleanups(finally)
    local find, _, count = watch_events(cleanup)
    local out, err, code = lunas("run", "--name", "mon-ev", "--", "sh", "-c", "exit 5")
    assert.are.equal(5, code, out .. err)
    local start = assert(find{ event = "start", name = "mon-ev" }, "no start event")
    assert.are.same({ "sh", "-c", "exit 5" }, start.argv)
    local exit = assert(find{ event = "exit", name = "mon-ev" }, "no exit event")
    assert.are.equal(5, exit.status)
    assert.are.equal(start.pid, exit.pid)
    -- killed by a signal
    lunas("run", "--name", "mon-sig", "--", "sh", "-c", "kill -KILL $$")
    assert.are.equal("KILL", assert(find{ event = "exit", name = "mon-sig" }).signame)
    -- the OOM killer, under a memory limit: the kernel's own count (memory.events or memory.oom_control)
    out, err, code = lunas("run", "--name", "mon-oom", "--memory", "32M", "--", "sh", "-c",
      "sleep 0.5; head -c 256M /dev/zero | tail > /dev/null; exit 3")
    assert.are.equal(3, code, out .. err)
    assert.matches("out of memory", err)
    local oom = assert(find{ event = "oom_kill", name = "mon-oom" }, "no oom_kill event")
    assert.is_true(oom.count >= 1)
    assert.is_true(assert(find{ event = "exit", name = "mon-oom" }).oom_killed)
    -- freeze and thaw, with the freezer's own state checked from outside
    local s = require("lunas").sandbox{ argv = { "sleep", "3007" }, name = "mon-frz", limits = { memory = "64M" } }:spawn()
    cleanup(function() s:close() end)
    s:freeze()
    local rec = record_of("mon-frz")
    local fdir = rec.cgroup.dirs.v1.freezer
    if fdir then assert.matches("FROZEN", util.read(fdir .. "/freezer.state")) end
    assert.is_truthy(find{ event = "freeze", name = "mon-frz" }, "no freeze event")
    s:thaw()
    assert.is_truthy(find{ event = "thaw", name = "mon-frz" }, "no thaw event")
    if not fdir then
      -- frozen through cgroup v2: the kernel's cgroup.events tells, whoever writes cgroup.freeze (here the test)
      local v2 = rec.cgroup.dirs.v2
      util.write(v2 .. "/cgroup.freeze", "1")
      assert.is_truthy(util.wait_for(function() return util.read(v2 .. "/cgroup.events"):find("frozen 1") end, 5))
      assert.are.equal(2, count({ event = "freeze", name = "mon-frz" }, 2), "no freeze event from cgroup.events")
      util.write(v2 .. "/cgroup.freeze", "0")
      assert.are.equal(2, count({ event = "thaw", name = "mon-frz" }, 2), "no thaw event from cgroup.events")
    end
    s:close()
    assert.is_truthy(find{ event = "exit", name = "mon-frz", killed = true })
    -- a lab's record appears and goes
    local lab = require("lunas.net").lab{ name = "monev" }
    lab:host("monev1")
    assert.is_truthy(find{ event = "lab_up", name = "monev" }, "no lab_up event")
    lab:close()
    assert.is_truthy(find{ event = "lab_down", name = "monev" }, "no lab_down event")
  end)

  it("follows the journal when it starts afresh past its size", function()
    local cleanup = util.cleanups(finally)
    local find, events = watch_events(cleanup)
    local sandbox_record = require "lunas.sandbox_record"
    local max = sandbox_record.EVENTS_MAX
    cleanup(function() sandbox_record.EVENTS_MAX = max end)
    -- (this process writes the lines: a journal past 300 bytes moves to events.old at the next line)
    sandbox_record.EVENTS_MAX = 300
    for i = 1, 6 do
      local r = require("lunas").sandbox{ argv = { "sh", "-c", "exit " .. i }, name = "mon-rot" .. i }:run()
      assert.are.equal(i, r.status)
    end
    assert.is_truthy(find{ event = "exit", name = "mon-rot6" }, "the last exit was not seen")
    assert.is_truthy(core.file_type(events_file() .. ".old"), "the journal never moved")
    local seen = {}
    for _, e in ipairs(events()) do
      if e.name and e.name:match("^mon%-rot") then seen[#seen + 1] = e.event .. " " .. e.name .. " " .. tostring(e.status) end
    end
    local want = {}
    for i = 1, 6 do
      want[#want + 1] = "start mon-rot" .. i .. " nil"
      want[#want + 1] = "exit mon-rot" .. i .. " " .. i
    end
    assert.are.same(want, seen)
  end)

  it("reports the exit of a sandbox whose lunas was killed (its pidfd), with no status", function()
    local cleanup = util.cleanups(finally)
    local find = watch_events(cleanup)
    local proc = start_run(cleanup, { "run", "--name", "mon-lost", "--", "sleep", "3008" })
    assert.is_truthy(find{ event = "start", name = "mon-lost" })
    proc:kill("KILL")
    local e = assert(find{ event = "exit", name = "mon-lost" }, "no exit event")
    assert.is_true(e.lost)
    assert.is_nil(e.status)
    lunas("gc")
  end)
end)

describe("lunas top #root", function()
  if not kernel.requires("root") then return end

  -- (a socket in the test's own directory: tmux -L would leave one in /tmp/tmux-UID after kill-server)
  local function tmux(socket, ...)
    local words = { "tmux", "-S", util.quote(socket), "-f", "/dev/null" }
    for _, a in ipairs{ ... } do words[#words + 1] = util.quote(a) end
    return util.sh(table.concat(words, " "))
  end

  it("runs in a terminal: refreshes in place, sorts on c/m/p/n, quits on q and restores the terminal", function()
    if core.file_type("/usr/bin/tmux") == nil then
      pending("needs tmux (make deps installs it)")
      return
    end
    local cleanup = util.cleanups(finally)
    start_run(cleanup, { "run", "--name", "mon-busy", "--", "sh", "-c", "while :; do :; done" })
    start_run(cleanup, { "run", "--name", "mon-big", "--memory", "64M", "--", "sh", "-c",
      "x=$(head -c 24M /dev/zero | tr '\\0' a); sleep 3009" })
    assert(wait_record("mon-busy"))
    assert(wait_record("mon-big"))
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    local socket = dir .. "/tmux"
    cleanup(function() tmux(socket, "kill-server") end)
    local _, err, code = tmux(socket, "new-session", "-d", "-x", "120", "-y", "20", "sh", "-c",
      util.quote(util.bin) .. " top --interval 0.3; echo \"exit $?\" > " .. dir .. "/status; stty -a > " .. dir
      .. "/stty; sleep 60")
    assert.are.equal(0, code, err)
    local function screen()
      return (tmux(socket, "capture-pane", "-p"))
    end
    local function settled(pattern)
      return util.wait_for(function() local s = screen() if s:find(pattern) then return s end end, 10)
    end
    local s = assert(settled("mon%-big"), "no row for mon-big:\n" .. screen())
    local alternate = tmux(socket, "display", "-p", "#{alternate_on}")
    assert.are.equal("1\n", alternate)
    -- the header, and the busy one first when sorted by cpu
    assert.matches("^lunas top %- %d%d:%d%d:%d%d %- 2 sandboxes, 0 labs", s)
    assert.matches("sorted by cpu", s)
    s = assert(util.wait_for(function()
      local text = screen()
      local first = text:match("KIND[^\n]*\n([^\n]*)")
      if first and first:find("mon%-busy") and first:find("%d+%.%d") then return text end
    end, 10), "mon-busy not first by cpu:\n" .. screen())
    local cpu = tonumber(s:match("mon%-busy%s+%d+%s+(%d+%.%d)"))
    assert.is_true(cpu > 0, "cpu " .. tostring(cpu))
    -- m: by memory, the 24 MiB one first
    tmux(socket, "send-keys", "m")
    s = assert(settled("sorted by memory"), screen())
    assert.matches("KIND[^\n]*\n[^\n]*mon%-big", s)
    -- p and c change the order key too
    tmux(socket, "send-keys", "p")
    assert.is_truthy(settled("sorted by pids"))
    tmux(socket, "send-keys", "n")
    assert.is_truthy(settled("sorted by network"))
    -- in place: one header on the screen, however many refreshes
    os.execute("sleep 0.7")
    local _, headers = screen():gsub("lunas top %-", "")
    assert.are.equal(1, headers)
    -- q: gone, status 0, the normal screen back and the terminal out of raw mode
    tmux(socket, "send-keys", "q")
    assert.is_truthy(util.wait_for(function()
      local t = util.read(dir .. "/stty")
      return t and t:find("\n") and t
    end, 10), "top did not quit")
    assert.are.equal("exit 0\n", util.read(dir .. "/status"))
    assert.are.equal("0\n", (tmux(socket, "display", "-p", "#{alternate_on}")))
    local stty = util.read(dir .. "/stty")
    assert.matches("%f[%w-]icanon", stty)
    assert.matches("%f[%w-]echo%f[^%w]", stty)
    assert.is_nil(screen():find("lunas top", 1, true))
  end)

  it("restores the terminal when a signal ends it", function()
    if core.file_type("/usr/bin/tmux") == nil then
      pending("needs tmux (make deps installs it)")
      return
    end
    local cleanup = util.cleanups(finally)
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    local socket = dir .. "/tmux"
    cleanup(function() tmux(socket, "kill-server") end)
    tmux(socket, "new-session", "-d", "-x", "100", "-y", "15", "sh", "-c", util.quote(util.bin) .. " top; stty -a > "
      .. dir .. "/stty; sleep 60")
    assert.is_truthy(util.wait_for(function()
      return (tmux(socket, "capture-pane", "-p")):find("lunas top", 1, true)
    end, 10), "top did not start")
    assert.are.equal("1\n", (tmux(socket, "display", "-p", "#{alternate_on}")))
    -- lunas top: the child of the pane's shell
    local shell = tonumber((tmux(socket, "display", "-p", "#{pane_pid}")))
    local pid
    for _, entry in ipairs(core.listdir("/proc")) do
      if entry:match("^%d+$") and tonumber(util.status_field(entry, "PPid")) == shell then pid = tonumber(entry) end
    end
    assert.is_truthy(pid, "no lunas top under the pane's shell")
    assert.are.equal(0, select(3, util.sh("kill -TERM " .. pid)))
    assert.is_truthy(util.wait_for(function()
      local t = util.read(dir .. "/stty")
      return t and t:find("\n") and t
    end, 10), "top did not end")
    assert.are.equal("0\n", (tmux(socket, "display", "-p", "#{alternate_on}")))
    assert.matches("%f[%w-]icanon", util.read(dir .. "/stty"))
  end)
end)

describe("records of an unprivileged user #rootless", function()
  it("live under XDG_RUNTIME_DIR, where lunas ps finds them", function()
    if not kernel.requires("userns") then return end
    local cleanup = util.cleanups(finally)
    local dir, remove_dir = util.tmpdir()
    cleanup(remove_dir)
    -- (root's records are under /run/lunas whatever XDG_RUNTIME_DIR says)
    local env = "XDG_RUNTIME_DIR=" .. util.quote(dir) .. " "
    local base = core.ids().euid == 0 and "/run/lunas" or dir .. "/lunas"
    local started, _, code = util.sh(env .. util.quote(util.bin) .. " run --name mon-user -- sleep 3010 >/dev/null 2>&1 & echo $!")
    assert.are.equal(0, code)
    -- (lunas run: its sandbox dies with it)
    cleanup(function() util.sh("kill -TERM " .. assert(tonumber(started))) end)
    local rec_path = base .. "/sandboxes/mon-user/record.json"
    -- (complete once the sandbox's first process is in it: before, it holds only its owner)
    local rec = util.wait_for(function()
      local ok, r = pcall(json.decode, util.read(rec_path) or "")
      return ok and type(r) == "table" and r.pid and r
    end, 10)
    assert.is_table(rec, "no record under " .. base)
    local out, err
    out, err, code = util.sh(env .. util.quote(util.bin) .. " ps --json")
    assert.are.equal(0, code, err)
    local e
    for _, entry in ipairs(json.decode(out)) do if entry.name == "mon-user" then e = entry end end
    assert.is_table(e, out)
    assert.are.equal(rec.pid, e.pid)
    assert.are.equal(#pidns_members(rec.namespaces.pid), e.pids)
  end)

  it("a name with no place for its record is said so, and the sandbox runs", function()
    if not kernel.requires("userns") then return end
    if core.ids().euid == 0 then
      pending("root always has /run/lunas")
      return
    end
    local out, err, code = util.sh("env -u XDG_RUNTIME_DIR " .. util.quote(util.bin) .. " run --name mon-nowhere -- echo ran")
    assert.are.equal(0, code, err)
    assert.are.equal("ran\n", out)
    assert.matches("warning: sandbox name: mon%-nowhere has no record", err)
    -- an unnamed one is not recorded either, and says nothing
    out, err, code = util.sh("env -u XDG_RUNTIME_DIR " .. util.quote(util.bin) .. " run -- true")
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
  end)
end)
