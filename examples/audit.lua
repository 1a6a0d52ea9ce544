-- audit.lua: the escape battery (lunas audit) from a recipe. Audits two sandboxes -- lunas's default one and the
-- same with the host's network and every capability kept -- and prints the attempts whose outcome differs,
-- then the two summaries. Run as root: lunas examples/audit.lua
-- The same from the command line: lunas audit; lunas audit --share-net --cap-add ALL --as-pid-1
local audit = require "lunas.audit"

local probe = require("lunas.cli.audit").default_probe()

-- Fixtures (a scratch directory, a host process, a listener on the caller's 127.0.0.1...), removed at the end.
local fx = audit.fixtures(probe)

local function audit_of(spec)
  audit.show_probe(spec, fx) -- the scratch copy of the probe, read-only at the same path inside
  return audit.run{ spec = spec, uids = { 0 }, fixtures = fx,
    config = { seccomp = require("lunas.security").check_profile("seccomp", spec.seccomp) } }
end

local ok, err = pcall(function()
  local default = audit_of{}
  -- (capabilities that include CAP_SYS_PTRACE need the payload to be PID 1: nothing else to trace then)
  local weak = audit_of{ net = "host", caps = "keep", as_pid_1 = true }
  print(("%-16s %-8s %-8s %s"):format("attempt", "default", "weak", "how the default held it"))
  for i, row in ipairs(default) do
    local other = weak[i]
    if row.outcome ~= other.outcome then
      print(("%-16s %-8s %-8s %s"):format(row.id, row.outcome, other.outcome, row.how))
    end
  end
  for _, run in ipairs{ { "default", default }, { "weak", weak } } do
    local s = audit.summary(run[2])
    print(("%s: %d held, %d escaped, %d n/a, %d inconclusive"):format(run[1], s.held, s.escaped, s["n/a"],
      s.inconclusive))
  end
end)
fx.close()
if not ok then error(err, 0) end
