-- Prints, one per line, the paths (relative to the modules directory) of the modules named in LIST and of
-- everything they need, in an order insmod can follow: each module after its dependencies. Dependencies come
-- from the kernel's own modules.dep, soft dependencies ("pre:") from modules.softdep, and names that are
-- aliases (crc32c) from modules.alias, preferring a generic implementation (the emulated CPU may lack the
-- instructions an accelerated one needs).
-- usage: lua5.4 tests/vm/modules.lua MODULES_DIR LIST
local dir, list = arg[1], arg[2]

local function normalize(name) return (name:gsub("-", "_")) end

local deps, by_name = {}, {}
for line in io.lines(dir .. "/modules.dep") do
  local path, rest = line:match("^([^:]+):%s*(.*)$")
  if path then
    local d = {}
    for dep in rest:gmatch("%S+") do d[#d + 1] = dep end
    deps[path] = d
    by_name[normalize(path:match("([^/]+)%.ko[%.%w]*$"))] = path
  end
end

local aliases = {}
for line in io.lines(dir .. "/modules.alias") do
  local alias, module = line:match("^alias%s+(%S+)%s+(%S+)")
  if alias and not alias:find("[%*%?%[]") then
    alias = normalize(alias)
    aliases[alias] = aliases[alias] or {}
    table.insert(aliases[alias], normalize(module))
  end
end

local soft = {}
local softdep_file = io.open(dir .. "/modules.softdep")
if softdep_file then
  for line in softdep_file:lines() do
    local module, rest = line:match("^softdep%s+(%S+)%s+(.*)$")
    if module then
      local pre = rest:match("pre:%s*(.-)%s*post:") or rest:match("pre:%s*(.*)$") or ""
      soft[normalize(module)] = {}
      for name in pre:gmatch("%S+") do table.insert(soft[normalize(module)], name) end
    end
  end
  softdep_file:close()
end

local function resolve(name)
  name = normalize(name)
  if by_name[name] then return by_name[name] end
  local candidates = aliases[name]
  if not candidates then return nil end
  for _, c in ipairs(candidates) do
    if c:find("generic") and by_name[c] then return by_name[c] end
  end
  for _, c in ipairs(candidates) do
    if by_name[c] then return by_name[c] end
  end
end

local order, seen = {}, {}
local function visit(path)
  if seen[path] then return end
  seen[path] = true
  local name = normalize(path:match("([^/]+)%.ko[%.%w]*$"))
  for _, pre in ipairs(soft[name] or {}) do
    local p = resolve(pre)
    if p then visit(p) end
  end
  for _, dep in ipairs(deps[path] or {}) do visit(dep) end
  order[#order + 1] = path
end

for line in io.lines(list) do
  local name = line:gsub("#.*", ""):match("^%s*(%S+)")
  if name then
    local path = resolve(name)
    if path then
      visit(path)
    else
      io.stderr:write("vm: module ", name, " is not in ", dir, "/modules.dep (built in?)\n")
    end
  end
end
for _, path in ipairs(order) do print(path) end
