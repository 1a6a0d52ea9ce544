--- Firewalls: rules as Lua tables, compiled to one nftables table (`inet lunas_fw`) in a network namespace.
--
--   local firewall = require "lunas.firewall"
--   firewall.apply(netns, {
--     output = "drop",                        -- default policy per direction: "allow", "drop" or "reject"
--     rules = {
--       { direction = "out", proto = "tcp", to = "10.0.0.0/8", port = { 80, "8000-8080" }, action = "allow",
--         name = "web", log = "web: " },
--       { direction = "out", proto = "udp", to = "[fd00::53]", port = 53, action = "allow" },
--     },
--   })
--   for _, c in ipairs(firewall.counters(netns)) do print(c.name, c.packets, c.bytes) end
--
-- Each rule and each direction's policy has a named nftables counter: counters() reads them back. Packets of
-- established or related connections are accepted before any rule (established = false turns that off), and
-- the loopback interface passes unless loopback = false. Applying replaces the whole table in one transaction:
-- the rules are stated anew each time, never appended to.
--
-- A sandbox's payload cannot change its firewall as long as it has no CAP_NET_ADMIN (the default drops every
-- capability before it runs).
--
-- Nothing the caller gives reaches the nftables text unchecked: addresses are parsed (IPv4, IPv6, CIDR), ports
-- are numbers, names and log prefixes are restricted to safe characters. Host names are refused, never resolved
-- behind the caller's back.
-- @module lunas.firewall
local core = require "lunas.core"
local errors = require "lunas.errors"
local json = require "lunas.json"

errors.register_module()

local M = {}

--- The nftables table every firewall of lunas lives in.
M.TABLE = "lunas_fw"
-- The chain of each direction, and the hook it sits on.
local CHAINS = { { dir = "in", chain = "input" }, { dir = "out", chain = "output" }, { dir = "forward", chain = "forward" } }
local DIRECTIONS = { ["in"] = "in", input = "in", out = "out", output = "out", forward = "forward" }
local ACTIONS = { allow = "allow", accept = "allow", drop = "drop", reject = "reject" }
local PROTOS = { tcp = true, udp = true, icmp = true, icmpv6 = true, any = true }
local TOP_FIELDS = { rules = true, input = true, output = true, forward = true, established = true, loopback = true }
local RULE_FIELDS = { direction = true, proto = true, port = true, to = true, from = true, action = true,
  log = true, name = true, iif = true, oif = true }
local MAX_RULES = 4096

local function misuse(field, fmt, ...)
  errors.raise{ op = "firewall", msg = ("firewall.%s: " .. fmt):format(field, ...), code = "EINVAL", field = field }
end

-- ---- addresses -------------------------------------------------------------------------------------------

local function ipv4(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  for _, octet in ipairs{ a, b, c, d } do
    if #octet > 3 or tonumber(octet) > 255 or (#octet > 1 and octet:sub(1, 1) == "0") then return nil end
  end
  return ("%d.%d.%d.%d"):format(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
end

-- Counts the 16-bit groups of one side of "::" (a trailing dotted quad counts two); nil when malformed.
local function ipv6_groups(side, last)
  if side == "" then return 0 end
  local n = 0
  local parts = {}
  for part in (side .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    if last and i == #parts and part:find(".", 1, true) then
      if not ipv4(part) then return nil end
      n = n + 2
    elseif part:match("^%x%x?%x?%x?$") then
      n = n + 1
    else
      return nil
    end
  end
  return n
end

local function ipv6(text)
  if #text > 45 or not text:match("^[%x:%.]+$") then return nil end
  local head, tail = text:match("^(.*)::(.*)$")
  if head then
    if head:find("::", 1, true) or tail:find("::", 1, true) then return nil end
    local h, t = ipv6_groups(head, tail == ""), ipv6_groups(tail, true)
    if not h or not t or h + t > 7 then return nil end
  else
    if ipv6_groups(text, true) ~= 8 then return nil end
  end
  return text:lower()
end

--- Parses an address or network: "10.0.0.1", "10.0.0.0/8", "fd00::1", "[fd00::1]", "fd00::/64".
-- Returns the text nftables gets and the family ("ip" or "ip6"), or nil and why.
-- @tparam string text
-- @treturn string|nil
-- @treturn string family, or the reason
function M.parse_address(text)
  if type(text) ~= "string" then return nil, "address string expected, got " .. type(text) end
  local body, prefix = text:match("^([^/]*)/(%d+)$")
  if not body then body = text end
  local bracketed = body:match("^%[(.*)%]$")
  if bracketed then body = bracketed end
  local v4 = not bracketed and ipv4(body)
  local v6 = not v4 and ipv6(body)
  if not v4 and not v6 then
    if body:match("^[%w.-]+$") and body:find("%a") then
      return nil, ("'%s' is a host name: lunas resolves no names for a firewall (give its addresses)"):format(text)
    end
    return nil, ("'%s' is not an IPv4 or IPv6 address or network"):format(text)
  end
  local max = v4 and 32 or 128
  if prefix then
    local n = tonumber(prefix)
    if #prefix > 3 or n > max then return nil, ("'%s': prefix length 0-%d expected"):format(text, max) end
    return (v4 or v6) .. "/" .. n, v4 and "ip" or "ip6"
  end
  return v4 or v6, v4 and "ip" or "ip6"
end

-- A list of addresses ("*" or nil: any) as {ip = {...}, ip6 = {...}}, or nil for any.
local function check_addresses(field, value)
  if value == nil or value == "*" or value == "any" then return nil end
  local list = value
  if type(value) == "string" then list = { value } end
  if type(list) ~= "table" then misuse(field, "an address, a network or a list of them expected, got %s", type(value)) end
  if #list == 0 then misuse(field, "empty list of addresses") end
  local out = { ip = {}, ip6 = {} }
  for i, text in ipairs(list) do
    local addr, family = M.parse_address(text)
    if not addr then misuse(("%s[%d]"):format(field, i), "%s", family) end
    out[family][#out[family] + 1] = addr
  end
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then misuse(field, "a list expected (key '%s')", tostring(k)) end
  end
  return out
end

-- ---- ports, names --------------------------------------------------------------------------------------

local function check_one_port(field, value)
  if math.type(value) == "integer" then
    if value < 0 or value > 65535 then misuse(field, "port 0-65535 expected, got %d", value) end
    return tostring(value)
  end
  if type(value) == "string" then
    if value:match("^%d+$") then return check_one_port(field, math.tointeger(tonumber(value))) end
    local a, b = value:match("^(%d+)%-(%d+)$")
    if a then
      a, b = math.tointeger(tonumber(a)), math.tointeger(tonumber(b))
      if not a or not b or a > 65535 or b > 65535 or a > b then misuse(field, "range 'LOW-HIGH' of ports 0-65535 expected, got '%s'", value) end
      return ("%d-%d"):format(a, b)
    end
  end
  misuse(field, "a port (0-65535), a range 'LOW-HIGH' or a list of them expected, got '%s'", tostring(value))
end

local function check_ports(field, value)
  if value == nil or value == "*" then return nil end
  local list = type(value) == "table" and value or { value }
  if #list == 0 then misuse(field, "empty list of ports") end
  local out = {}
  for i, p in ipairs(list) do out[i] = check_one_port(type(value) == "table" and ("%s[%d]"):format(field, i) or field, p) end
  return out
end

local function check_name(field, value)
  if type(value) ~= "string" or #value > 64 or not value:match("^[%a_][%w_]*$") then
    misuse(field, "a name of letters, digits and '_' (at most 64, not starting with a digit) expected, got '%s'", tostring(value))
  end
  return value
end

-- Printable ASCII without quotes or backslashes: the prefix sits in a quoted nftables string.
local function check_log(field, value)
  if value == nil or value == false then return nil end
  if value == true then return true end
  if type(value) ~= "string" or #value < 1 or #value > 64 or value:find("[^\32-\126]") or value:find("[\"\\]") then
    misuse(field, "true or a prefix of 1-64 printable characters without quotes or backslashes expected, got %s",
      type(value) == "string" and ("'%s'"):format(value) or type(value))
  end
  return value
end

local function check_ifname(field, value)
  if value == nil then return nil end
  if type(value) ~= "string" or #value < 1 or #value > 15 or value == "." or value == ".."
    or not value:match("^[%w_.%-@+=]+$") then
    misuse(field, "an interface name (1-15 characters) expected, got '%s'", tostring(value))
  end
  return value
end

local function check_policy(field, value)
  if value == nil then return { action = "allow" } end
  local action, log = value, nil
  if type(value) == "table" then
    for k in pairs(value) do
      if k ~= "action" and k ~= "log" then misuse(field, "unknown field '%s'", tostring(k)) end
    end
    action, log = value.action, check_log(field .. ".log", value.log)
  end
  local a = type(action) == "string" and ACTIONS[action]
  if not a then misuse(field, "'allow', 'drop' or 'reject' expected, got '%s'", tostring(action)) end
  return { action = a, log = log }
end

-- ---- validation ------------------------------------------------------------------------------------------

local function check_rule(i, r, names)
  local field = ("rules[%d]"):format(i)
  if type(r) ~= "table" then misuse(field, "rule table expected, got %s", type(r)) end
  for k in pairs(r) do
    if not RULE_FIELDS[k] then misuse(field, "unknown field '%s'", tostring(k)) end
  end
  local dir = type(r.direction) == "string" and DIRECTIONS[r.direction]
  if not dir then misuse(field .. ".direction", "'in', 'out' or 'forward' expected, got '%s'", tostring(r.direction)) end
  local proto = r.proto or "any"
  if not PROTOS[proto] then misuse(field .. ".proto", "'tcp', 'udp', 'icmp', 'icmpv6' or 'any' expected, got '%s'", tostring(proto)) end
  local action = type(r.action) == "string" and ACTIONS[r.action]
  if not action then misuse(field .. ".action", "'allow', 'drop' or 'reject' expected, got '%s'", tostring(r.action)) end
  local ports = check_ports(field .. ".port", r.port)
  if ports and proto ~= "tcp" and proto ~= "udp" then misuse(field .. ".port", "ports need proto 'tcp' or 'udp'") end
  local to, from = check_addresses(field .. ".to", r.to), check_addresses(field .. ".from", r.from)
  -- The families the rule matches: those both address lists allow (all when neither has any).
  local families = {}
  for _, fam in ipairs{ "ip", "ip6" } do
    local ok_to = not to or #to[fam] > 0
    local ok_from = not from or #from[fam] > 0
    if ok_to and ok_from then families[#families + 1] = fam end
  end
  if #families == 0 then misuse(field, "'to' and 'from' have no address family in common") end
  if (to or from) and proto == "icmp" and #families == 1 and families[1] == "ip6" then
    misuse(field .. ".proto", "'icmp' is IPv4's: use 'icmpv6' with IPv6 addresses")
  end
  if (to or from) and proto == "icmpv6" and #families == 1 and families[1] == "ip" then
    misuse(field .. ".proto", "'icmpv6' is IPv6's: use 'icmp' with IPv4 addresses")
  end
  if proto == "icmp" then families = { "ip" } elseif proto == "icmpv6" then families = { "ip6" } end
  if (to or from) and not (to and from) then
    -- a one-sided list leaves out the families it lacks
    local side = to or from
    local kept = {}
    for _, fam in ipairs(families) do if #side[fam] > 0 then kept[#kept + 1] = fam end end
    families = kept
    if #families == 0 then misuse(field, "no address of the protocol's family") end
  end
  local iif, oif = check_ifname(field .. ".iif", r.iif), check_ifname(field .. ".oif", r.oif)
  if iif and dir == "out" then misuse(field .. ".iif", "an outgoing packet has no input interface") end
  if oif and dir == "in" then misuse(field .. ".oif", "an incoming packet has no output interface") end
  local name = r.name ~= nil and check_name(field .. ".name", r.name) or ("rule_%d"):format(i)
  if name:match("^policy_") then misuse(field .. ".name", "names starting with 'policy_' are the policies'") end
  if names[name] then misuse(field .. ".name", "'%s' names rules[%d] already", name, names[name]) end
  names[name] = i
  return { index = i, direction = dir, proto = proto, ports = ports, to = to, from = from, action = action,
    log = check_log(field .. ".log", r.log), name = name, iif = iif, oif = oif, families = families,
    addressed = (to or from) ~= nil }
end

--- Validates a rule set and returns its normalized form (what `apply` compiles). Misuse raises naming the bad
-- field ("firewall.rules[3].port: ...").
-- Fields: `input`, `output`, `forward`: each direction's default, "allow" (the default), "drop", "reject" or
-- `{action =, log =}`; `established` (default true): accept packets of connections already allowed;
-- `loopback` (default true): the lo interface always passes; `rules`: a list of
-- `{direction = "in"|"out"|"forward", proto = "tcp"|"udp"|"icmp"|"icmpv6"|"any", port = 80|"1000-2000"|{...},
-- to = addresses, from = addresses, iif =, oif =, action = "allow"|"drop"|"reject", log = true|"prefix",
-- name = "counter_name"}`; addresses are IPv4 or IPv6 addresses or networks (CIDR), or a list of them; `port`
-- is the destination port.
-- @tparam table rules
-- @treturn table
function M.check(rules)
  if type(rules) ~= "table" then
    errors.raise{ op = "firewall", msg = "firewall: rules table expected, got " .. type(rules), code = "EINVAL", field = "firewall" }
  end
  if rules.normalized == M then return rules end
  for k in pairs(rules) do
    if not TOP_FIELDS[k] then misuse(tostring(k), "unknown field") end
  end
  local out = { normalized = M, rules = {}, policies = {} }
  for _, c in ipairs(CHAINS) do out.policies[c.dir] = check_policy(c.chain, rules[c.chain]) end
  for _, k in ipairs{ "established", "loopback" } do
    if rules[k] ~= nil and type(rules[k]) ~= "boolean" then misuse(k, "boolean expected, got %s", type(rules[k])) end
  end
  out.established = rules.established ~= false
  out.loopback = rules.loopback ~= false
  local list = rules.rules or {}
  if type(list) ~= "table" then misuse("rules", "a list of rules expected, got %s", type(list)) end
  if #list > MAX_RULES then misuse("rules", "at most %d rules", MAX_RULES) end
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then misuse("rules", "a list expected (key '%s')", tostring(k)) end
  end
  local names = {}
  for i, r in ipairs(list) do out.rules[i] = check_rule(i, r, names) end
  return out
end

-- ---- compiling -------------------------------------------------------------------------------------------

local function set_of(items)
  if #items == 1 then return items[1] end
  return "{ " .. table.concat(items, ", ") .. " }"
end

local function verdict(action, proto)
  if action == "allow" then return "accept" end
  if action == "drop" then return "drop" end
  -- A TCP connection refused at once (ECONNREFUSED), as a closed port answers; the rest an ICMP(v6) port
  -- unreachable of the packet's family.
  if proto == "tcp" then return "reject with tcp reset" end
  return "reject"
end

local function log_statement(log, default_prefix)
  if not log then return "" end
  return (' log prefix "%s"'):format(log == true and default_prefix or log)
end

local function rule_lines(r)
  local lines = {}
  for _, fam in ipairs(r.families) do
    local parts = {}
    if r.iif then parts[#parts + 1] = ('iifname "%s"'):format(r.iif) end
    if r.oif then parts[#parts + 1] = ('oifname "%s"'):format(r.oif) end
    -- the family only when an address or ICMP needs it, so that an address-less rule matches both
    if r.addressed or r.proto == "icmp" or r.proto == "icmpv6" then parts[#parts + 1] = "meta nfproto " .. (fam == "ip" and "ipv4" or "ipv6") end
    if r.from then parts[#parts + 1] = ("%s saddr %s"):format(fam, set_of(r.from[fam])) end
    if r.to then parts[#parts + 1] = ("%s daddr %s"):format(fam, set_of(r.to[fam])) end
    if r.proto == "icmp" then
      parts[#parts + 1] = "meta l4proto icmp"
    elseif r.proto == "icmpv6" then
      parts[#parts + 1] = "meta l4proto ipv6-icmp"
    elseif r.proto ~= "any" then
      parts[#parts + 1] = "meta l4proto " .. r.proto
      if r.ports then parts[#parts + 1] = ("%s dport %s"):format(r.proto, set_of(r.ports)) end
    end
    local match = table.concat(parts, " ")
    local tail = ('counter name "%s"'):format(r.name) .. log_statement(r.log, "lunas_fw " .. r.name .. ": ")
    -- (a refused TCP connection of an any-protocol rule gets a reset too, not an ICMP unreachable)
    if r.action == "reject" and r.proto == "any" then
      lines[#lines + 1] = "    " .. (match ~= "" and match .. " " or "") .. "meta l4proto tcp " .. tail .. " " .. verdict("reject", "tcp")
    end
    lines[#lines + 1] = "    " .. (match ~= "" and match .. " " or "") .. tail .. " " .. verdict(r.action, r.proto)
    if not r.addressed and r.proto ~= "icmp" and r.proto ~= "icmpv6" then break end
  end
  return lines
end

--- The nftables script that replaces the table with this rule set (one transaction).
-- @tparam table rules as for `check`
-- @treturn string
function M.compile(rules)
  local fw = M.check(rules)
  local out = { "table inet " .. M.TABLE, "delete table inet " .. M.TABLE, "table inet " .. M.TABLE .. " {" }
  for _, r in ipairs(fw.rules) do
    out[#out + 1] = ('  counter %s { comment "%s %s" }'):format(r.name, r.direction, r.action)
  end
  for _, c in ipairs(CHAINS) do
    out[#out + 1] = ('  counter policy_%s { comment "%s %s" }'):format(c.chain, c.dir, fw.policies[c.dir].action)
  end
  for _, c in ipairs(CHAINS) do
    local policy = fw.policies[c.dir]
    out[#out + 1] = ("  chain %s {"):format(c.chain)
    out[#out + 1] = ("    type filter hook %s priority filter; policy %s;"):format(c.chain,
      policy.action == "allow" and "accept" or "drop")
    if fw.loopback then
      if c.dir == "in" then out[#out + 1] = '    iifname "lo" accept' end
      if c.dir == "out" then out[#out + 1] = '    oifname "lo" accept' end
    end
    if fw.established then out[#out + 1] = "    ct state established,related accept" end
    for _, r in ipairs(fw.rules) do
      if r.direction == c.dir then
        for _, l in ipairs(rule_lines(r)) do out[#out + 1] = l end
      end
    end
    local policy_log = log_statement(policy.log, "lunas_fw policy_" .. c.chain .. ": ")
    if policy.action == "reject" then
      out[#out + 1] = ('    meta l4proto tcp counter name "policy_%s"%s %s'):format(c.chain, policy_log, verdict("reject", "tcp"))
    end
    out[#out + 1] = ('    counter name "policy_%s"%s %s'):format(c.chain, policy_log, verdict(policy.action, "any"))
    out[#out + 1] = "  }"
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- ---- applying, reading back ------------------------------------------------------------------------------

--- The message of a failed load, with what ENOENT means there: the kernel knows no such expression (on a
-- kernel with them as modules and no module autoloading, they must be loaded first).
function M.explain(msg, code)
  if code == "ENOENT" and tostring(msg):find("Could not process rule", 1, true) then
    return tostring(msg) .. "\n(the kernel lacks an nftables expression the rules use: nft_objref for their "
      .. "counters, nft_ct for connection state, nft_reject_inet for reject, nft_log for log; load those modules)"
  end
  return msg
end

local function nft(netns, script, opts)
  local out, msg, code = core.nft(netns, script, opts)
  if out == nil then errors.raise{ op = "firewall", msg = "firewall: " .. tostring(M.explain(msg, code)), code = code } end
  return out
end

--- Replaces the firewall of a network namespace (a handle, a path, a name under /run/netns, or nil for the
-- current one) with this rule set, in one transaction. Returns the normalized rule set.
-- @param netns
-- @tparam table rules as for `check`
-- @treturn table
function M.apply(netns, rules)
  local fw = M.check(rules)
  nft(netns, M.compile(fw))
  return fw
end

--- Removes the firewall of a namespace (nothing when there is none).
function M.remove(netns)
  nft(netns, ("table inet %s\ndelete table inet %s\n"):format(M.TABLE, M.TABLE))
end

local LIST_COUNTERS = "list counters table inet " .. M.TABLE

-- The listing, read by a child that joins `userns` (a handle: lunas without privileges over the network
-- namespace, whose owner is a user namespace it made) and then `netns`; the JSON comes back on a pipe.
local function list_as_owner(userns, netns)
  local r, w, code = core.pipe()
  if not r then return nil, w, code end
  local proc, msg
  proc, msg, code = core.spawn{ fn = function()
    r:close()
    local ok, err, ecode = core.setns(userns, "user")
    if ok then ok, err, ecode = core.setns(netns, "net") end
    local out
    if ok then out, err, ecode = core.nft(nil, LIST_COUNTERS, { json = true }) end
    if out then
      w:write("0" .. out)
    else
      w:write("1" .. tostring(ecode) .. "\n" .. tostring(err))
    end
    w:close()
    return 0
  end }
  w:close()
  if not proc then
    r:close()
    return nil, msg, code
  end
  local parts = {}
  while true do
    local data = r:read()
    if type(data) ~= "string" or data == "" then break end
    parts[#parts + 1] = data
  end
  r:close()
  proc:wait()
  proc:close()
  local text = table.concat(parts)
  if text:sub(1, 1) == "0" then return text:sub(2) end
  local ecode, emsg = text:match("^1([^\n]*)\n(.*)$")
  return nil, emsg or "the helper that reads the counters gave no answer", ecode ~= "nil" and ecode or "EIO"
end

--- The counters of a namespace's firewall, in the order of the rules, then the policies (input, output,
-- forward): a list of `{name =, packets =, bytes =, direction = "in"|"out"|"forward", action =
-- "allow"|"drop"|"reject"}`; an empty list when the namespace has no lunas firewall.
-- opts.userns (a namespace handle): read them from a child that joins this user namespace first, for a caller
-- without privileges over the network namespace but owner of the user namespace that owns it (a rootless
-- sandbox's).
-- @param netns as for `apply`
-- @tparam[opt] table opts
-- @treturn table
function M.counters(netns, opts)
  local out, msg, code
  if opts and opts.userns then
    out, msg, code = list_as_owner(opts.userns, netns)
  else
    out, msg, code = core.nft(netns, LIST_COUNTERS, { json = true })
  end
  if out == nil then
    if code == "ENOENT" then return {} end
    errors.raise{ op = "firewall", msg = "firewall: " .. tostring(msg), code = code }
  end
  local doc = json.decode(out)
  local list = {}
  for _, item in ipairs(type(doc) == "table" and doc.nftables or {}) do
    local c = item.counter
    if c and c.table == M.TABLE and c.family == "inet" then
      local dir, action = tostring(c.comment or ""):match("^(%S+) (%S+)$")
      list[#list + 1] = { name = c.name, packets = c.packets, bytes = c.bytes, direction = dir, action = action,
        handle = c.handle }
    end
  end
  table.sort(list, function(a, b) return a.handle < b.handle end)
  for _, c in ipairs(list) do c.handle = nil end
  return list
end

--- The counters of a namespace's firewall by name: `{[name] = {packets =, bytes =, ...}}`.
function M.counters_by_name(netns, opts)
  local by = {}
  for _, c in ipairs(M.counters(netns, opts)) do by[c.name] = c end
  return by
end

return M
