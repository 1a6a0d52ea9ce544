-- build_sandbox.lua: a build that uses the host's compiler but can change nothing of the host, reach none of its
-- services and no network. The sandbox gets lunas's default tree (the host's programs read-only, a fresh /proc, a
-- minimal /dev, a private /tmp, /run and /var, no socket or FIFO of the host) and a network namespace with only
-- lo. A C source is written into a directory of the sandbox's /tmp, compiled with the host's gcc and run; then
-- the same shell tries to write to /usr and lists the network interfaces it has.
-- Run: lunas examples/build_sandbox.lua
local lunas = require "lunas"

local SOURCE = [[
#include <stdio.h>

int main(void) {
    printf("hello from a sandboxed build: 6 * 7 = %d\n", 6 * 7);
    return 0;
}
]]

local SCRIPT = [[
set -e
mkdir /tmp/build
cd /tmp/build
printf '%s' "$SOURCE" > hello.c
gcc -O2 -o hello hello.c
echo built: $(ls)
./hello
echo "write to /usr: $( (touch /usr/lunas-build-probe) 2>&1 | sed 's/.*: //')"
echo network interfaces: $(ls /sys/class/net)
]]

local result = lunas.sandbox{
  argv = { "/bin/sh", "-c", SCRIPT },
  env = { SOURCE = SOURCE },
}:run()
if result.status ~= 0 then
  io.stderr:write("build_sandbox.lua: the build failed (", result.status and ("status " .. result.status)
    or ("signal " .. tostring(result.signame)), ")\n")
end
os.exit(result.status or 128 + (result.signal or 0))
