-- An LDoc filter for tests/doc_spec.lua: `ldoc --filter support.ldoc_names.print .` (with tests/ on LUA_PATH)
-- prints what the API reference documents, one entry a line, tab-separated:
--   module  NAME
--   type    MODULE  NAME              (an @type: "process", "Lab")
--   item    MODULE  KIND  NAME        (KIND: function, field, table, ...; NAME: "spawn", "Lab:host", "errno")
-- LDoc runs it in its own interpreter (Debian's ldoc: Lua 5.1 or 5.2), so this file stays plain Lua 5.1.
local M = {}

function M.print(module_list)
  local out = {}
  for mod in module_list:iter() do
    out[#out + 1] = "module\t" .. mod.name
    for section in mod.sections:iter() do
      if section.type == "type" then out[#out + 1] = "type\t" .. mod.name .. "\t" .. section.name end
    end
    for item in mod.items:iter() do
      out[#out + 1] = "item\t" .. mod.name .. "\t" .. tostring(item.type) .. "\t" .. tostring(item.name)
    end
  end
  io.write(table.concat(out, "\n"), "\n")
end

return M
