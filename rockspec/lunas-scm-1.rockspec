package = "lunas"
version = "scm-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "Linux isolation toolkit scripted in Lua: namespaces, sandboxes, network labs",
  detailed = [[
    A C core (lunas.core) exposes clone3, namespaces, mounts and the other isolation primitives to Lua 5.4;
    Lua modules compose them into sandboxes and network labs. Linux only.
  ]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
-- The Makefile is the one build definition: it also builds the freestanding PID 1 program the core embeds.
build = {
  type = "make",
  build_target = "all",
  build_variables = { CFLAGS = "$(CFLAGS)", LUA = "$(LUA)" },
  install_target = "rock-install",
  install_variables = { INST_LIBDIR = "$(LIBDIR)", INST_LUADIR = "$(LUADIR)", INST_BINDIR = "$(BINDIR)" },
}
