--- `lunas gc [--dry-run] [--json]`: removes what a lunas killed halfway left behind, from the records it keeps
-- (labs under /run/lunas/labs) and the names it gives (cgroups lunas-PID-RANDOM below our own that no running
-- lunas holds).
local net = require "lunas.net"
local cgroup = require "lunas.cgroup"
local json = require "lunas.json"
local errors = require "lunas.errors"
local cli = require "lunas.cli"
local idrange = require "lunas.idrange"
local core = require "lunas.core"
local sandbox_record = require "lunas.sandbox_record"

errors.register_module()

local M = {}

local HELP = [[
usage: lunas gc [--dry-run] [--json]

Removes what a lunas that died (SIGKILL, a crash, a reboot of /run aside) left behind:
  - labs whose builder died before they were complete or closed (status "stale" in lunas lab list): the
    processes started in their hosts, their namespaces, links and cgroups, as recorded under /run/lunas/labs;
  - cgroups named lunas-PID-RANDOM (the sandboxes' cgroups) below this process's own cgroup whose lunas is
    gone (in any pid namespace: the lunas that made one holds a lock on it while it runs) and that hold no
    process; one that still holds processes (a sandbox run with --no-die-with-parent) is listed
    and left alone;
  - the records of host id ranges (/run/lunas/userns) that no lunas holds and no running sandbox uses;
  - the records of sandboxes (/run/lunas/sandboxes, lunas ps) whose lunas died; one whose sandbox still runs
    (--no-die-with-parent) stays, listed, until it ends.
  - run by root, in this network namespace: the masquerade tables (inet lunas_nat_PID) of sandboxes with
    net = "nat" whose veth is gone, and the IPv4 forwarding a lunas turned on for them once none is left.
Labs that are up (lunas lab up) and anything a running lunas owns are never touched.
  --dry-run     only say what would be removed
  --json        {"labs": [names], "sandboxes": [names], "running_sandboxes": [names], "cgroups": [paths],
                "busy_cgroups": [paths], "id_ranges": [first ids], "nat_tables": [names],
                "dry_run": bool}
Exit status: 0; 1 when something could not be removed; 2 for bad usage.]]

function M.main(args)
  local dry_run, as_json = false, false
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then
      print(HELP)
      return 0
    elseif a == "--dry-run" or a == "-n" then
      dry_run = true
    elseif a == "--json" then
      as_json = true
    else
      return cli.usage_error("gc", "unknown option '" .. a .. "'")
    end
  end
  local labs, err = errors.try(net.gc, { dry_run = dry_run })
  if not labs then
    io.stderr:write("lunas gc: ", tostring(err), "\n")
    return 1
  end
  local sandboxes = sandbox_record.gc{ dry_run = dry_run }
  local cgroups
  cgroups, err = errors.try(cgroup.gc, { dry_run = dry_run, keep = labs.cgroups })
  if not cgroups then
    io.stderr:write("lunas gc: ", tostring(err), "\n")
    cgroups = { removed = {}, busy = {} }
  end
  local ranges = idrange.gc{ dry_run = dry_run }
  local nat_tables = {}
  if core.ids().euid == 0 then
    local removed, nat_err = errors.try(require("lunas.egress").gc, { dry_run = dry_run })
    if removed then
      nat_tables = removed
    else
      io.stderr:write("lunas gc: ", tostring(nat_err), "\n")
      err = err or nat_err
    end
  end
  if as_json then
    io.stdout:write(json.encode({ labs = labs.removed, cgroups = cgroups.removed, busy_cgroups = cgroups.busy,
      id_ranges = ranges, sandboxes = sandboxes.removed, running_sandboxes = sandboxes.running,
      nat_tables = nat_tables, dry_run = dry_run }, { indent = "  " }), "\n")
  else
    local verb = dry_run and "would remove" or "removed"
    for _, name in ipairs(labs.removed) do print(("%s lab %s"):format(verb, name)) end
    for _, name in ipairs(sandboxes.removed) do print(("%s the record of sandbox %s"):format(verb, name)) end
    for _, name in ipairs(sandboxes.running) do
      print(("kept the record of sandbox %s: its lunas is gone but it still runs"):format(name))
    end
    for _, path in ipairs(cgroups.removed) do print(("%s cgroup %s"):format(verb, path)) end
    for _, path in ipairs(cgroups.busy) do
      print(("kept cgroup %s: its lunas is gone but processes are still inside"):format(path))
    end
    for _, base in ipairs(ranges) do print(("%s the record of id range %d"):format(verb, base)) end
    for _, name in ipairs(nat_tables) do print(("%s nftables table inet %s"):format(verb, name)) end
    if #labs.removed + #cgroups.removed + #cgroups.busy + #ranges + #sandboxes.removed + #sandboxes.running
        + #nat_tables == 0 then
      print("nothing to remove")
    end
  end
  return err and 1 or 0
end

return M
