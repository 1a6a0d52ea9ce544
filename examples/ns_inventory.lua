-- ns_inventory.lua: an inventory of the machine's namespaces as JSON, as `lunas ns list --json` prints it,
-- built from lunas.ns.list(): each type with how many namespaces and processes it has, and the namespaces of a
-- sandbox started for the occasion, found in the inventory by the sandbox's pid. Run: lunas examples/ns_inventory.lua
local lunas = require "lunas"

local box <close> = lunas.sandbox{ argv = { "/bin/sleep", "30" } }:spawn()

local summary, mine = {}, {}
for _, ns in ipairs(lunas.ns.list()) do
  local t = summary[ns.type] or { namespaces = 0, processes = 0 }
  t.namespaces, t.processes = t.namespaces + 1, t.processes + ns.nprocs
  summary[ns.type] = t
  if ns.pid == box.pid then mine[ns.type] = { inode = ns.inode, processes = ns.nprocs } end
end

print(lunas.json.encode({ by_type = summary, sandbox = { pid = box.pid, namespaces = mine } }, { indent = "  " }))
