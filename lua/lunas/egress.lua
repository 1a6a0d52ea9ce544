--- Egress for a sandbox with a network namespace of its own: `net = "nat"` (root: a veth pair and a
-- masquerade) and `net = "pasta"` (Debian's passt package: user-mode networking, rootless). The sandbox's
-- firewall (lunas.firewall) then decides what may leave.
--
-- nat, what it changes in the caller's network namespace, and how it undoes it:
--  - a veth pair "lnatPID" (caller) / "eth0" (sandbox) with a /30 of 10.213.0.0/16 that no address or route of
--    the caller overlaps; the sandbox's end gets .2 and a default route via .1. The pair goes with the sandbox's
--    namespace.
--  - an nftables table "inet lunas_nat_PID" (masquerade of the sandbox's address leaving by any other
--    interface, forwarding accepted to and from the veth), deleted when the sandbox ends.
--  - IPv4 forwarding, per interface: Linux forwards a packet when the interface it came in by has
--    net.ipv4.conf.IF.forwarding = 1 (net.ipv4.ip_forward is conf.all and sets every interface at once). So the
--    veth's own end gets it (it dies with the pair), and each interface of a default route, by which the
--    replies come back, gets it when it had 0 (both are needed: without either, nothing comes back); that one
--    is marked in /run/lunas/nat and put back to 0 when the last lunas nat veth of the namespace is gone (the
--    kernel's own list of lnat* links is the count of users, whichever process made them). ip_forward and
--    conf.all are never touched.
-- DNS: the sandbox sees the caller's /etc/resolv.conf (through its file system); a resolver on the caller's
-- loopback (127.0.0.53) is not reachable from the sandbox: bind a resolv.conf of your own (mounts) then.
-- @module lunas.egress
local core = require "lunas.core"
local errors = require "lunas.errors"

errors.register_module()

local M = {}

local NAT_BASE = 10 << 24 | 213 << 16 -- 10.213.0.0/16, in /30 blocks
-- Which interfaces' forwarding a lunas turned on, whichever lunas that was: one empty file per namespace and
-- interface, so that the last user puts it back even when another process turned it on.
local MARKS = "/run/lunas/nat"
local PASTA_READY_TIMEOUT = 10

local function fail(op, msg, code)
  errors.raise{ op = op, msg = op .. ": " .. tostring(msg), code = code }
end

local function check(op, value, msg, code)
  if value == nil and msg ~= nil then fail(op, msg, code) end
  return value
end

-- ---- IPv4 arithmetic ----------------------------------------------------------------------------------------

local function v4_number(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)")
  if not a then return nil end
  return tonumber(a) << 24 | tonumber(b) << 16 | tonumber(c) << 8 | tonumber(d)
end

local function v4_text(n)
  return ("%d.%d.%d.%d"):format(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)
end

-- {first, last} of "a.b.c.d/len" (or a single address).
local function v4_span(text)
  local base = v4_number(text)
  if not base then return nil end
  local len = tonumber(text:match("/(%d+)$") or 32)
  local size = 1 << (32 - len)
  local first = base & ~(size - 1) & 0xffffffff
  return { first, first + size - 1 }
end

-- The first /30 of 10.213.0.0/16 that overlaps no IPv4 address or route (but the default) of the caller.
local function free_subnet(nl)
  local taken = {}
  for _, a in ipairs(check("nat", nl:addr_list())) do
    if a.family == "inet" then taken[#taken + 1] = v4_span(a.address) end
  end
  for _, r in ipairs(check("nat", nl:route_list{ family = "inet" })) do
    if r.dst ~= "default" then taken[#taken + 1] = v4_span(r.dst) end
  end
  -- (from a block of our own pid's: two lunas choosing at the same time rarely start from the same one)
  local start = core.getpid() % (1 << 14)
  for i = 0, (1 << 14) - 1 do
    local first = NAT_BASE + ((start + i) % (1 << 14)) * 4
    local last = first + 3
    local clash = false
    for _, span in ipairs(taken) do
      if span[1] <= last and first <= span[2] then clash = true break end
    end
    if not clash then return first end
  end
  fail("nat", "no free /30 left in 10.213.0.0/16", "EADDRINUSE")
end

-- ---- nat ----------------------------------------------------------------------------------------------------

-- An interface's IPv4 forwarding setting, as a sysctl key with slashes (a name may hold dots: eth0.100).
local function forwarding_key(dev)
  return "net/ipv4/conf/" .. dev .. "/forwarding"
end

local function uplinks(nl)
  local seen, list = {}, {}
  for _, r in ipairs(check("nat", nl:route_list{ family = "inet" })) do
    if r.dst == "default" and r.dev and not seen[r.dev] then
      seen[r.dev] = true
      list[#list + 1] = r.dev
    end
  end
  return list
end

-- The mark of an interface of the current network namespace ("net:[4026531840]" names the namespace).
local function mark_path(dev)
  local ns = core.readlink("/proc/thread-self/ns/net") or "net"
  return ("%s/forwarding-%s-%s"):format(MARKS, ns:match("%d+") or "0", dev)
end

local function set_mark(dev)
  for _, dir in ipairs{ "/run/lunas", MARKS } do
    local ok, msg, code = core.mkdir(dir, 448)
    if not ok and code ~= "EEXIST" then fail("nat", msg, code) end
  end
  local f, msg = io.open(mark_path(dev), "w")
  if not f then fail("nat", msg, "EIO") end
  f:close()
end

-- Held while a lunas picks a subnet and makes its veth, or decides that it ends the last nat sandbox: two
-- choosing at once would take the same /30, and one putting forwarding back while another starts would cut the
-- other's traffic. A flock: it goes with the process that dies holding it.
local function nat_lock()
  for _, dir in ipairs{ "/run/lunas", MARKS } do
    local ok, msg, code = core.mkdir(dir, 448)
    if not ok and code ~= "EEXIST" then fail("nat", msg, code) end
  end
  -- (the directory itself: a lock file would be one more file to leave behind)
  local fd = check("nat", core.open(MARKS, "r"))
  local ok, msg, code = fd:lock("exclusive")
  if not ok then
    fd:close()
    fail("nat", msg, code)
  end
  return fd
end

local function other_nat_links(nl, mine)
  for _, l in ipairs(check("nat", nl:link_list())) do
    if l.name ~= mine and l.name:match("^lnat%d+$") then return true end
  end
  return false
end

--- Connects the network namespace of process `pid` (a sandbox waiting to be released) to the caller's network
-- through a veth pair and a masquerade. Root only. Returns the state `nat_stop` takes:
-- {link =, address =, gateway =, table =}.
function M.nat_start(pid)
  if math.type(pid) ~= "integer" or pid < 1 then fail("nat", "pid expected, got " .. tostring(pid), "EINVAL") end
  local nl <close> = check("nat", core.netlink())
  local ups = uplinks(nl)
  if #ups == 0 then fail("nat", "the caller's network has no IPv4 default route: nowhere to send the sandbox's traffic", "ENETUNREACH") end
  local link = "lnat" .. pid
  local netns = "/proc/" .. pid .. "/ns/net"
  local lock <close> = nat_lock()
  local first = free_subnet(nl)
  local state = { link = link, gateway = v4_text(first + 1), address = v4_text(first + 2), table = "lunas_nat_" .. pid }
  check("nat", nl:link_add{ name = link, kind = "veth", peer = { name = "eth0", netns = netns } })
  local ok, err = pcall(function()
    check("nat", nl:addr_add(link, state.gateway .. "/30"))
    check("nat", core.sysctl(nil, forwarding_key(link), "1"))
    check("nat", nl:link_set(link, { up = true }))
    local inner <close> = check("nat", core.netlink(netns))
    check("nat", inner:link_set("eth0", { up = true }))
    check("nat", inner:addr_add("eth0", state.address .. "/30"))
    check("nat", inner:route_add{ dst = "default", via = state.gateway })
    -- (the names are the kernel's and ours, checked by the kernel's own rules: no quote can be in them)
    check("nat", core.nft(nil, table.concat({
      ("table inet %s {"):format(state.table),
      "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;",
      ('    ip saddr %s oifname != "%s" masquerade'):format(state.address, link), "  }",
      "  chain forward { type filter hook forward priority filter; policy accept;",
      ('    iifname "%s" accept'):format(link),
      ('    oifname "%s" ct state established,related accept'):format(link), "  }",
      "}" }, "\n") .. "\n"))
    state.nft = true
    for _, dev in ipairs(ups) do
      local key = forwarding_key(dev)
      if check("nat", core.sysctl(nil, key)) == "0" then
        set_mark(dev)
        check("nat", core.sysctl(nil, key, "1"))
      end
    end
  end)
  if not ok then
    lock:close() -- (nat_stop takes it again)
    error(errors.cleanup(err, M.nat_stop, state), 0)
  end
  return state
end

--- Undoes nat_start: the table, the veth (if its namespace is still there) and the forwarding it turned on,
-- when no other lunas nat veth is left.
function M.nat_stop(state)
  if not state or state.stopped then return end
  state.stopped = true
  local nl <close> = check("nat", core.netlink())
  local first_err
  local function try(fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok and not first_err then first_err = err end
  end
  if state.nft then
    try(function() check("nat", core.nft(nil, ("delete table inet %s\n"):format(state.table))) end)
  end
  -- (normally gone with the sandbox's namespace already)
  if core.sysctl(nil, forwarding_key(state.link)) then nl:link_del(state.link) end
  local locked, lock = pcall(nat_lock)
  if not locked and not first_err then first_err = lock end
  if locked and not other_nat_links(nl, state.link) then
    local prefix = mark_path("")
    for _, name in ipairs(core.listdir(MARKS) or {}) do
      local path = MARKS .. "/" .. name
      if path:sub(1, #prefix) == prefix then
        local dev = path:sub(#prefix + 1)
        -- (an interface gone meanwhile has no setting left to put back)
        if core.sysctl(nil, forwarding_key(dev)) then
          try(function() check("nat", core.sysctl(nil, forwarding_key(dev), "0")) end)
        end
        os.remove(path)
      end
    end
  end
  if locked then lock:close() end
  if first_err then error(first_err, 0) end
end

--- What a lunas that died left of its nat sandboxes in the current network namespace: the tables
-- `inet lunas_nat_PID` whose veth lnatPID is gone (their sandbox's namespace with it), and the forwarding a
-- lunas turned on once no lunas nat veth is left. Returns the names of the tables removed (or that would be,
-- with opts.dry_run).
function M.gc(opts)
  local dry_run = opts and opts.dry_run
  local nl <close> = check("nat", core.netlink())
  local links = {}
  for _, l in ipairs(check("nat", nl:link_list())) do links[l.name] = true end
  local out = check("nat", core.nft(nil, "list tables inet", { json = true }))
  local doc = require("lunas.json").decode(out)
  local removed = {}
  for _, item in ipairs(type(doc) == "table" and doc.nftables or {}) do
    local t = item.table
    local pid = t and t.family == "inet" and tostring(t.name):match("^lunas_nat_(%d+)$")
    if pid and not links["lnat" .. pid] then
      if not dry_run then check("nat", core.nft(nil, ("delete table inet lunas_nat_%s\n"):format(pid))) end
      removed[#removed + 1] = t.name
    end
  end
  if not dry_run then
    local any = false
    for name in pairs(links) do if name:match("^lnat%d+$") then any = true end end
    if not any then
      local prefix = mark_path("")
      for _, name in ipairs(core.listdir(MARKS) or {}) do
        local path = MARKS .. "/" .. name
        if path:sub(1, #prefix) == prefix then
          local dev = path:sub(#prefix + 1)
          if core.sysctl(nil, forwarding_key(dev)) then
            check("nat", core.sysctl(nil, forwarding_key(dev), "0"))
          end
          os.remove(path)
        end
      end
    end
  end
  return removed
end

-- ---- pasta --------------------------------------------------------------------------------------------------

local function find_pasta()
  for dir in ("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"):gmatch("[^:]+") do
    local path = dir .. "/pasta"
    -- (Debian's pasta is a symlink to passt, which picks its mode by the name it runs under: exec the link)
    local real = core.realpath(path)
    if real and core.file_type(real) == "file" then return path end
  end
  return nil
end

local function read_available(fd)
  local parts = {}
  while #core.poll({ fd }, 0) > 0 do
    local data = fd:read(4096)
    if type(data) ~= "string" or data == "" then break end
    parts[#parts + 1] = data
  end
  return table.concat(parts)
end

--- The argv lunas runs pasta with, for the process `pid`: foreground, quiet, the interface configured
-- (--config-net), no port forwarded either way (-t/-u/-T/-U none), the gateway address not mapped to the
-- caller's loopback (--no-map-gw: a sandbox must not reach the host's local services through it), its pid
-- written to ready_path once the namespace is configured (the readiness signal).
function M.pasta_argv(path, pid, root, ready_path)
  local argv = { path, "--foreground", "--quiet", "--config-net", "--no-map-gw",
    "-t", "none", "-u", "none", "-T", "none", "-U", "none",
    "--log-file", "/dev/null", "--pid", ready_path,
    "--userns", "/proc/" .. pid .. "/ns/user", "--netns", "/proc/" .. pid .. "/ns/net" }
  -- Run by root, pasta changes to "nobody" before it opens the namespace files of a root-owned process and
  -- fails; it confines itself (namespaces of its own, no capabilities, seccomp) either way.
  if root then table.insert(argv, 2, "--runas") table.insert(argv, 3, "0:0") end
  return argv
end

--- Starts pasta for the network namespace of process `pid` (a sandbox waiting to be released) and returns
-- once the namespace is configured: {process =, stderr =}. Raises with pasta's own message when it fails.
function M.pasta_start(pid)
  if math.type(pid) ~= "integer" or pid < 1 then fail("pasta", "pid expected, got " .. tostring(pid), "EINVAL") end
  local path = find_pasta()
  if not path then fail("pasta", "the pasta program is not installed (Debian package passt)", "ENOENT") end
  local code
  -- pasta closes every descriptor above 2 as it starts and writes its pid file once the namespace is
  -- configured, after it confined itself: the file is a FIFO in a directory of our own (mode 0700, a random
  -- name made with mkdir, so nobody can have placed anything there), opened read-write by us so that
  -- neither side blocks in open.
  local hex = (core.random(12) or ""):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  local dir = (os.getenv("XDG_RUNTIME_DIR") or "/tmp") .. "/lunas-pasta-" .. hex
  local made, msg
  made, msg, code = core.mkdir(dir, tonumber("700", 8))
  if not made then fail("pasta", msg, code) end
  local fifo = dir .. "/ready"
  local function remove_dir()
    os.remove(fifo)
    os.remove(dir)
  end
  local ready, err_r, err_w
  made, msg, code = core.mkfifo(fifo, tonumber("600", 8))
  if made then ready, msg, code = core.open(fifo, "rw") end
  if ready then err_r, err_w, code = core.pipe() end
  if not err_r then
    if ready then ready:close() end
    remove_dir()
    fail("pasta", err_w or msg, code)
  end
  local argv = M.pasta_argv(path, pid, core.ids().euid == 0, fifo)
  local proc
  proc, msg, code = core.spawn{ fn = function()
    local null = core.open("/dev/null", "rw")
    if null then core.dup2(null, 0) core.dup2(err_w, 1) end
    core.dup2(err_w, 2)
    core.prctl{ pdeathsig = "KILL" }
    local _, why = core.exec(argv)
    io.stderr:write("exec ", path, ": ", tostring(why), "\n")
    core.exit(127)
  end }
  err_w:close()
  if not proc then
    ready:close()
    remove_dir()
    err_r:close()
    fail("pasta", msg, code)
  end
  local state = { process = proc, stderr = err_r }
  -- ready (its pid on the pipe), or gone (the process handle turns readable)
  local polled = core.poll({ ready, proc }, PASTA_READY_TIMEOUT)
  local line = #polled > 0 and polled[1] == 1 and ready:read(64) or nil
  ready:close()
  remove_dir()
  if type(line) == "string" and line:match("^%d+") then return state end
  -- Gone (EOF) or stuck: its own words say why.
  if proc:alive() then proc:kill("KILL") end
  local status = proc:wait(5)
  local text = read_available(err_r):gsub("[^\n]*syslog[^\n]*\n?", ""):gsub("%s+$", "")
  err_r:close()
  proc:close()
  local how = not status and "did not answer" or status.signal and ("killed by signal " .. status.signal)
    or ("exit status " .. tostring(status.status))
  if #polled == 0 then how = ("not ready after %d s"):format(PASTA_READY_TIMEOUT) end
  fail("pasta", (text ~= "" and text .. " (" .. how .. ")" or how), "EIO")
end

--- Ends pasta (SIGTERM, then SIGKILL after a second) and reaps it.
function M.pasta_stop(state)
  if not state or state.stopped then return end
  state.stopped = true
  local proc = state.process
  if proc:alive() then
    proc:kill("TERM")
    if not proc:wait(1) then proc:kill("KILL") end
  end
  proc:wait(5)
  proc:close()
  state.stderr:close()
end

return M
