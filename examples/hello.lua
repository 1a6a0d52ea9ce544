-- hello.lua: one command run twice, on the host and in new user, pid, mount, uts, ipc and net namespaces,
-- with what it sees printed side by side. Run: lunas examples/hello.lua   (or: make demo)
local lunas = require "lunas"

-- What a shell sees, one "key=value" line each.
local PROBE = [[
echo "hostname=$(hostname)"
echo "uid=$(id -u)"
echo "shell pid=$$"
echo "processes visible=$(ls /proc | grep -c '^[0-9]')"
echo "uid_map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
echo "interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
for ns in user pid mnt uts ipc net; do echo "$ns ns=$(readlink /proc/self/ns/$ns)"; done
]]

-- Runs PROBE in a sandbox with the given namespaces ({} = none: the host's view, as whoever runs this, root
-- included) and returns its lines.
local function probe(namespaces)
  local r, w = lunas.core.pipe()
  lunas.sandbox{
    argv = { "/bin/sh", "-c", PROBE },
    namespaces = namespaces,
    host_root = #namespaces == 0 or nil,
    hostname = #namespaces > 0 and "lunas-hello" or nil,
    stdout = w,
  }:run()
  w:close()
  local lines, chunks = {}, {}
  repeat
    local chunk = r:read()
    chunks[#chunks + 1] = chunk
  until chunk == nil or chunk == ""
  r:close()
  for key, value in table.concat(chunks):gmatch("([^=\n]+)=([^\n]*)") do lines[#lines + 1] = { key, value } end
  return lines
end

local host = probe({})
local inside = probe({ "user", "pid", "mount", "uts", "ipc", "net" })

print(("%-18s %-28s %s"):format("", "host", "sandbox"))
for i, row in ipairs(host) do
  print(("%-18s %-28s %s"):format(row[1], row[2], inside[i] and inside[i][2] or "?"))
end
