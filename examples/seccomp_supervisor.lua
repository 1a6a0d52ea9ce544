-- seccomp_supervisor.lua: a supervisor in Lua that sees every connect() a sandboxed program makes, logs it, and
-- decides: connections to the sandbox's own loopback on port 7070 go through, anything else fails with EACCES
-- (the program sees "Permission denied"). The payload runs under the default confinement (no capabilities,
-- no_new_privs, the default seccomp profile) plus a notify rule on connect; the supervisor is lunas itself.
-- Run: lunas examples/seccomp_supervisor.lua
local lunas = require "lunas"

-- The payload: a listener on 127.0.0.1:7070 inside its own network namespace, then three connection attempts.
local PAYLOAD = [[
exec 2>&1
perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:7070", Listen => 1, ReuseAddr => 1)
  or die; $SIG{ALRM} = sub { exit 1 }; alarm 10; $c = $s->accept; <$c>' &
while ! grep -q ":1B9E 00000000:0000 0A" /proc/net/tcp; do sleep 0.05; done
for target in 127.0.0.1/7070 127.0.0.1/9 10.1.2.3/80; do
  if (echo hi > /dev/tcp/${target}) 2>/dev/null; then echo "payload: $target connected"; else echo "payload: $target refused"; fi
done
wait
]]

local decisions = {}

local function on_connect(req)
  -- Read the address from the payload's memory, then check the call is still the same one (the payload could
  -- have changed the memory if it was a thread; the answer below only counts for a call still held).
  local address = req:sockaddr(2, 3)
  if not req:valid() then return "EACCES" end
  local allowed = address == "127.0.0.1:7070"
  decisions[#decisions + 1] = ("connect %s by pid %d: %s"):format(address, req.pid, allowed and "allowed" or "refused")
  print("supervisor: " .. decisions[#decisions])
  if allowed then return "continue" end
  return "EACCES"
end

local result = lunas.sandbox{
  argv = { "/bin/bash", "-c", PAYLOAD },
  seccomp = { notify = { "connect" }, on_notify = on_connect },
  timeout = 20,
}:run()
print(("payload exited with status %s; %d connect() calls seen"):format(tostring(result.status), #decisions))
