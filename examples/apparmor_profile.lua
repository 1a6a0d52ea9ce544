-- apparmor_profile.lua: a payload confined by an AppArmor profile of the recipe's own, behind lunas's PID 1. The
-- profile allows everything but reading /etc/hostname; the payload runs once without it and once under it, and
-- from outside the recipe reads the payload's label and PID 1's, which keeps the caller's (it never takes the
-- payload's profile). The profile is unloaded at the end.
-- Run (as root, on a kernel with AppArmor, package apparmor): lunas examples/apparmor_profile.lua
local lunas = require "lunas"
local lsm = require "lunas.lsm"

local NAME = "lunas-example"
local PROFILE = ([[
profile %s flags=(attach_disconnected,mediate_deleted) {
  file, capability, signal, ptrace, unix, network, mount, umount, pivot_root,
  deny /etc/hostname r,
}
]]):format(NAME)

-- apparmor_parser compiles the profile and loads it into the kernel (its own program: lunas has no compiler).
local path = os.tmpname()
local f = assert(io.open(path, "w"))
f:write(PROFILE)
f:close()
local loaded = os.execute("apparmor_parser -r " .. path)
if not loaded then
  os.remove(path)
  error("apparmor_parser -r failed (is the apparmor package installed and securityfs mounted?)")
end
local profile <close> = setmetatable({}, { __close = function()
  os.execute("apparmor_parser -R " .. path)
  os.remove(path)
end })

-- The payload prints its label and tries the file, then waits on its stdin while the recipe looks from outside.
local SCRIPT = [[
echo "label: $(cat /proc/self/attr/apparmor/current)"
if cat /etc/hostname >/dev/null 2>&1; then echo "read /etc/hostname: allowed"; else echo "read /etc/hostname: denied"; fi
read -r _
]]

local function run(field)
  local out_r, out_w = lunas.core.pipe()
  local in_r, in_w = lunas.core.pipe()
  local running = lunas.sandbox{ argv = { "sh", "-c", SCRIPT }, apparmor = field, stdout = out_w, stdin = in_r }:spawn()
  out_w:close()
  in_r:close()
  local text = ""
  while select(2, text:gsub("\n", "")) < 2 do
    local chunk = out_r:read(4096)
    if not chunk or chunk == "" then break end
    text = text .. chunk
  end
  io.write(text)
  print("  from outside: payload " .. lsm.current(running:payload_pid(), "apparmor")
    .. ", PID 1 " .. lsm.current(running.pid, "apparmor"))
  in_w:close()
  running:wait()
  out_r:close()
end

print("without a profile:")
run(nil)
print("apparmor = \"" .. NAME .. "\":")
run(NAME)
