-- device_policy.lua: a cgroup's device policy, the one container runtimes give every container. The processes in
-- the cgroup may use /dev/null (char 1:3) and read /dev/urandom (1:9), and nothing else: /dev/zero and mknod fail
-- with EPERM, though the files are there and the process is root. On cgroup v2 the rules become a BPF program
-- on the cgroup's directory (a hybrid host's unified tree works too); the cgroup and its program go at the end.
-- Run (as root): lunas examples/device_policy.lua
local cgroup = require "lunas.cgroup"

local cg <close> = cgroup.new{}
cg:devices{
  { allow = true, type = "c", major = 1, minor = 3, access = "rw" },   -- /dev/null
  { allow = true, type = "c", major = 1, minor = 9, access = "r" },    -- /dev/urandom, read only
}
local p = cg:spawn{ argv = { "sh", "-c", [[
  try() { if eval "$2" 2>/dev/null; then echo "$1: allowed"; else echo "$1: denied"; fi; }
  try "write /dev/null" 'echo hello >/dev/null'
  try "read /dev/urandom" 'head -c 8 /dev/urandom >/dev/null'
  try "write /dev/urandom" 'echo x >/dev/urandom'
  try "read /dev/zero" 'head -c 8 /dev/zero >/dev/null'
  dir=$(mktemp -d) && try "mknod c 1 3" "mknod $dir/null c 1 3"; rm -rf "$dir"
]] } }
p:wait()
