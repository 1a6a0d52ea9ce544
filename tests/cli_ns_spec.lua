-- `lunas ns list`: every namespace with type, inode, process count, first pid, user, command and persisted names,
-- checked against /proc/PID/ns (counted here), lsns -J and ip netns. Also the JSON module it prints with.

local lunas = require "lunas"
local core = require "lunas.core"
local json = require "lunas.json"
local kernel = require "support.kernel"
local util = require "support.util"

local LUNAS = (os.getenv("LUNAS_BUILD") or ((os.getenv("LUNAS_ROOT") or ".") .. "/build")) .. "/bin/lunas"

local function ns_list(...)
  local out, code = util.run({ LUNAS, "ns", "list", ... }, { stderr = false })
  assert.equal(0, code, out)
  return out
end

-- The processes in a namespace, counted from /proc/PID/ns links: their number and the lowest pid.
local function members(kind, inode)
  local link = ("%s:[%d]"):format(kind == "mount" and "mnt" or kind, inode)
  local count, first = 0, nil
  for _, name in ipairs(core.listdir("/proc")) do
    if name:match("^%d+$") then
      local target = require("lfs").symlinkattributes("/proc/" .. name .. "/ns/" .. (kind == "mount" and "mnt" or kind), "target")
      if target == link then
        count = count + 1
        local pid = tonumber(name)
        if not first or pid < first then first = pid end
      end
    end
  end
  return count, first
end

local function find(list, kind, inode)
  for _, e in ipairs(list) do
    if e.type == kind and e.inode == inode then return e end
  end
end

describe("lunas ns list #rootless", function()
  it("lists a running sandbox's namespaces with the processes /proc and lsns count in them", function()
    if not kernel.requires("userns") then return end
    local running <close> = lunas.sandbox{ argv = { "/bin/sleep", "60" } }:spawn()
    local ids = assert(core.ns_ids(running.pid))
    local list = json.decode(ns_list("--json")).namespaces
    for _, kind in ipairs{ "user", "pid", "mount", "uts", "ipc", "net", "cgroup" } do
      local e = find(list, kind, ids[kind])
      assert.is_not_nil(e, kind .. " namespace of the sandbox listed")
      local count, first = members(kind, ids[kind])
      assert.equal(count, e.nprocs, kind)
      assert.equal(first, e.pid, kind)
      assert.equal(running.pid, e.pid, kind) -- its PID 1 (the reaper) comes before the payload
      assert.equal(2, e.nprocs, kind)        -- the reaper and sleep
      -- its first process's uid, as the host sees it (root's sandboxes: a range of host ids)
      assert.equal(tonumber(util.status_field(running.pid, "Uid"):match("%d+")), e.uid)
      assert.matches("lunas", e.command)
    end
    -- what lsns says of the same network namespace
    local lsns = json.decode((util.run({ "lsns", "-J", "-t", "net" }, { stderr = false })))
    for _, n in ipairs(lsns.namespaces) do
      if n.ns == ids.net then
        assert.equal(n.nprocs, find(list, "net", ids.net).nprocs)
        assert.equal(n.pid, find(list, "net", ids.net).pid)
      end
    end
  end)

  it("prints a table with a header and one row per namespace, filtered by --type", function()
    if not kernel.requires("userns") then return end
    local running <close> = lunas.sandbox{ argv = { "/bin/sleep", "60" } }:spawn()
    local ids = assert(core.ns_ids(running.pid))
    local out = ns_list("--type", "uts")
    local lines = util.lines(out)
    assert.matches("^%s*NS TYPE%s+NPROCS%s+PID%s+USER%s+NAME%s+COMMAND%s*$", lines[1])
    for i = 2, #lines do assert.matches("^%s*%d+ uts ", lines[i]) end
    assert.matches(("\n%%s*%d uts%%s+2%%s+%d "):format(ids.uts, running.pid), out)
    local list = json.decode(ns_list("--json", "-t", "mnt")).namespaces
    for _, e in ipairs(list) do assert.equal("mount", e.type) end
    assert.is_not_nil(find(list, "mount", ids.mount))
  end)

  it("refuses bad usage with exit status 2", function()
    for _, argv in ipairs{ { "ns" }, { "ns", "lst" }, { "ns", "list", "--type", "bogus" }, { "ns", "list", "--jsn" } } do
      local out, code = util.run{ LUNAS, table.unpack(argv) }
      assert.equal(2, code, out)
      assert.matches("^lunas ns: ", out)
    end
    local out, code = util.run{ LUNAS, "ns", "list", "--help" }
    assert.equal(0, code)
    assert.matches("usage: lunas ns list", out)
  end)
end)

describe("lunas ns list with persisted namespaces #root", function()
  it("shows a network namespace kept only by ip netns under its name, with no process", function()
    local name = "lunas-ns-list-" .. core.getpid()
    assert.equal(0, select(2, util.run{ "ip", "netns", "add", name }))
    finally(function() util.run{ "ip", "netns", "delete", name } end)
    local inode = tonumber((util.run{ "stat", "-L", "-c", "%i", "/run/netns/" .. name }))
    local list = json.decode(ns_list("--json", "--type", "net")).namespaces
    local e = find(list, "net", inode)
    assert.is_not_nil(e)
    assert.same({ name }, e.names)
    assert.same({ "/run/netns/" .. name }, e.paths)
    assert.equal(0, e.nprocs)
    assert.equal(json.null, e.pid)
    assert.matches(("\n%%s*%d net%%s+0%%s+%%- %%-%%s+%s"):format(inode, name:gsub("%-", "%%-")), ns_list("-t", "net"))
  end)
end)

describe("lunas.json #rootless", function()
  it("encodes with sorted keys and decodes back", function()
    local value = { b = { 1, 2.5, "x\n\"y\"" }, a = true, c = json.null, d = {}, e = { z = -3 } }
    local text = json.encode(value)
    assert.equal('{"a":true,"b":[1,2.5,"x\\n\\"y\\""],"c":null,"d":[],"e":{"z":-3}}', text)
    assert.same(value, json.decode(text))
    assert.same(value, json.decode(json.encode(value, { indent = "  " })))
    assert.equal("\1\u{e9}", json.decode('"\\u0001\\u00e9"'))
  end)

  it("refuses what JSON cannot say and malformed text", function()
    assert.has_error(function() json.encode(math.huge) end, "json: inf has no JSON form")
    assert.has_error(function() json.encode({ f = print }) end, "json: cannot encode a function")
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end, "json: cycle in the value")
    assert.has_error(function() json.decode('{"a" 1}') end, "json: ':' expected at byte 6")
    assert.has_error(function() json.decode("[1,") end, "json: value expected at byte 4")
    assert.has_error(function() json.decode("1 2") end, "json: trailing characters at byte 3")
  end)
end)
