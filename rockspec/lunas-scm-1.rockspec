package = "lunas"
version = "scm-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "Linux isolation toolkit scripted in Lua: namespaces, sandboxes, network labs",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "builtin",
  modules = {
    ["lunas.core"] = {
      sources = { "src/core.c", "src/proc.c", "src/ns.c", "src/mount.c", "src/net.c" },
      defines = { "_GNU_SOURCE" },
    },
    ["lunas"] = "lua/lunas/init.lua",
    ["lunas.errors"] = "lua/lunas/errors.lua",
    ["lunas.ns"] = "lua/lunas/ns.lua",
    ["lunas.sandbox"] = "lua/lunas/sandbox.lua",
    ["lunas.cli"] = "lua/lunas/cli/init.lua",
    ["lunas.cli.run"] = "lua/lunas/cli/run.lua",
  },
}
