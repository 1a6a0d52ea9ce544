-- busybox_root.lua: a shell in a root file system built from nothing. The sandbox's / is an empty tmpfs; the
-- entries put Debian's static busybox in it (package busybox-static, /bin/busybox) read-only, a few applets as
-- symlinks to it, a fresh /proc, a minimal /dev and a /tmp. Nothing else of the host is there: `ls /` shows the
-- four directories, and PID 1 is lunas's reaper, not the host's init.   Run: lunas examples/busybox_root.lua
local lunas = require "lunas"

local BUSYBOX = "/bin/busybox"
local f = io.open(BUSYBOX, "rb")
if not f then
  io.stderr:write("busybox_root.lua: ", BUSYBOX, " not found (install the package busybox-static)\n")
  os.exit(1)
end
f:close()

local mounts = {
  { "ro-bind", BUSYBOX, "/bin/busybox" },
  { "proc", "/proc" },
  { "dev", "/dev" },
  { "tmpfs", "/tmp", size = "16M", mode = "1777" },
}
-- busybox runs the applet its name says: /bin/sh -> busybox is a shell.
for _, applet in ipairs{ "sh", "ls", "cat", "tr", "head" } do
  mounts[#mounts + 1] = { "symlink", "busybox", "/bin/" .. applet }
end

local SCRIPT = [[
echo hello from busybox
ls /
# PID 1 may still be switching to the reaper's own image (its command line reads empty for that instant).
for try in 1 2 3 4 5 6 7 8 9 10; do
  pid1=$(cat /proc/1/cmdline | tr '\0' '\n' | head -n 1)
  [ -n "$pid1" ] && break
done
case "$pid1" in *lunas*) echo "PID 1: lunas";; *) echo "PID 1: other ($pid1)";; esac
]]

local result = lunas.sandbox{
  argv = { "/bin/sh", "-c", SCRIPT },
  rootfs = "tmpfs",
  mounts = mounts,
  env = { PATH = "/bin" },
}:run()
os.exit(result.status or 128 + (result.signal or 0))
