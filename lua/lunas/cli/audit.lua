--- `lunas audit [RUN OPTIONS]`: the escape battery (lunas.audit) run inside the sandbox that `lunas run`'s options
-- describe, a recipe builds, or another tool makes (--wrap), and a report of every attempt.
local core = require "lunas.core"
local errors = require "lunas.errors"
local security = require "lunas.security"
local audit = require "lunas.audit"
local cli = require "lunas.cli"
local options = require "lunas.cli.options"

errors.register_module()

local M = {}

local HELP = [[
usage: lunas audit [RUN OPTIONS] [--uid N] [--json]
       lunas audit --recipe FILE [--uid N] [--json]
       lunas audit --wrap 'CMD PREFIX' [--probe-path PATH] [--json]
       lunas audit --print-probe

Runs the escape battery -- about 70 attempts to get out of a sandbox: signal or trace a host process, mount,
unmount /proc's masks, load a module, reboot, set the clock, reach the caller's 127.0.0.1 or abstract unix
socket, use an inherited descriptor, read /etc/shadow, raise capabilities, make a user namespace, plant a
setuid file, io_uring, AF_VSOCK, i386 and x32 system calls... -- one attempt per run of the escape probe
(lunas-probe, installed beside lunas) inside the sandbox, and reports each: held or escaped, and what held it.
Every attempt is harmless even where it escapes: arguments the kernel rejects after its permission check,
operations undone at once, nothing written outside the audit's own scratch directory.

The sandbox: the one `lunas run` makes with the same options (no command), each attempt run twice, as uid 0 in
the sandbox and as --uid N (default 1000). Run's options about one payload's run are refused: --seccomp-show,
--json-status, --json-status-fd, --info-fd, --usage, --stop-timeout, --userns, --pidns, --userns-block-fd,
--block-fd, --sync-fd.
  --recipe FILE          the sandbox a recipe describes: FILE returns a sandbox spec (the table lunas.sandbox
                         takes, without argv), or a function returning one; run as uid 0 and as --uid N
  --wrap 'CMD PREFIX'    another tool's sandbox: the probe runs as PREFIX's command (the prefix is split into
                         words as a shell would, quotes and backslashes; no shell runs), once, as whatever
                         uid PREFIX gives: --wrap 'bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all'
  --probe-path PATH      where the probe is inside the sandbox (it must be there: bound, or in the image):
                         --wrap 'podman run --rm -v PROBE:/probe:ro IMAGE' --probe-path /probe
                         With it, the attempts that need the audit's scratch directory are "n/a".
                         Without it, the audit shows its scratch copy of the probe read-only at the same path
                         (lunas run options, recipes), or expects the wrapped tool to show the host's /tmp.
  --probe FILE           the probe to use (default: lunas-probe in ../libexec/lunas beside this lunas)
  --print-probe          print the probe's path and exit
  --json                 one JSON document: {"sandbox", "uids", "attempts": [{"id", "title", "severity",
                         "uid", "outcome", "how", "output"}], "summary": {"held", "escaped", "n/a",
                         "inconclusive", "total"}}
Fixtures, set up by the audit and removed afterwards: a scratch directory (a random name under $TMPDIR or /tmp,
made exclusively), a process, a TCP listener on 127.0.0.1 and an abstract unix socket in the caller's own
network namespace (nothing else is ever addressed), a session keyring of the audit's own, and a descriptor
left open on exec. The terminal attempts (TIOCSTI...) are in the test suite only: they need a terminal to
push keystrokes into; so is exec of a setuid-root program: the audit never leaves a setuid-root copy of its
probe on the host, where any user could run it. Outcomes: held (how: seccomp, a missing capability, a namespace, a read-only mount,
Landlock, masks, file permissions -- "not told apart" where the outcome alone cannot say), escaped, n/a (the
attempt cannot be made here), inconclusive (the probe said something the attempt does not explain, or nothing).

Exit status: 0 when every attempt held or was n/a; 1 when one escaped or was inconclusive; 2 bad usage; 125
when the sandbox could not be set up.]]

-- Splits a command prefix into words as a POSIX shell would (quotes, backslashes), without running one.
local function split_words(s)
  local words, word, i, quote = {}, nil, 1, nil
  while i <= #s do
    local c = s:sub(i, i)
    if quote == "'" then
      if c == "'" then quote = nil else word = word .. c end
    elseif quote == '"' then
      if c == '"' then
        quote = nil
      elseif c == "\\" and s:sub(i + 1, i + 1):match('[$`"\\]') then
        word, i = word .. s:sub(i + 1, i + 1), i + 1
      else
        word = word .. c
      end
    elseif c:match("%s") then
      if word then words[#words + 1], word = word, nil end
    elseif c == "'" or c == '"' then
      quote, word = c, word or ""
    elseif c == "\\" then
      if i == #s then error({ usage = "--wrap: a backslash at the end" }, 0) end
      word, i = (word or "") .. s:sub(i + 1, i + 1), i + 1
    else
      word = (word or "") .. c
    end
    i = i + 1
  end
  if quote then error({ usage = "--wrap: unterminated " .. quote }, 0) end
  if word then words[#words + 1] = word end
  if #words == 0 then error({ usage = "--wrap: an empty command" }, 0) end
  return words
end
M.split_words = split_words

--- The probe beside this lunas: ../libexec/lunas/lunas-probe from the executable's directory, or nil.
function M.default_probe()
  local exe = core.readlink("/proc/self/exe")
  if not exe then return nil end
  local path = exe:gsub("/[^/]*$", "") .. "/../libexec/lunas/lunas-probe"
  return core.realpath and core.realpath(path) or path
end

-- Run's options that report on, or wait for, one payload (or join namespaces by descriptor, as run's main does):
-- an audit runs a hundred payloads of its own.
local NOT_FOR_AUDIT = { ["--seccomp-show"] = true, ["--json-status"] = true, ["--json-status-fd"] = true,
  ["--info-fd"] = true, ["--usage"] = true, ["--stop-timeout"] = true, ["--userns"] = true, ["--pidns"] = true,
  ["--userns-block-fd"] = true, ["--block-fd"] = true, ["--sync-fd"] = true }

-- Separates audit's own options from run's.
local function parse(args)
  local o = { run_args = {} }
  local i = 1
  local function value(name)
    local v = args[i + 1]
    if v == nil then error({ usage = name .. " needs a value" }, 0) end
    i = i + 1
    return v
  end
  while args[i] ~= nil do
    local a = args[i]
    if a == "--help" or a == "-h" then return "help"
    elseif a == "--json" then o.json = true
    elseif a == "--print-probe" then o.print_probe = true
    elseif a == "--recipe" then o.recipe = value(a)
    elseif a == "--wrap" then o.wrap = split_words(value(a))
    elseif a == "--probe-path" then
      o.probe_path = value(a)
      if o.probe_path:sub(1, 1) ~= "/" then error({ usage = "--probe-path: an absolute path expected" }, 0) end
    elseif a == "--probe" then o.probe = value(a)
    elseif a == "--uid" then
      local v = value(a)
      o.uid = v:match("^%d+$") and math.tointeger(tonumber(v))
      if not o.uid or o.uid > 0x7fffffff then error({ usage = "--uid: bad id '" .. v .. "'" }, 0) end
    elseif a == "--" then
      error({ usage = "no command: the audit runs its own probe" }, 0)
    elseif NOT_FOR_AUDIT[a] then
      error({ usage = a .. " is about one run of lunas run, not an audit" }, 0)
    else
      -- a run option and its values, as they are (a value may look like one of ours: --hostname --json)
      local option = options.OPTIONS[a]
      local n = option and option.n or 0
      for k = 0, n do o.run_args[#o.run_args + 1] = args[i + k] end
      i = i + n
    end
    i = i + 1
  end
  if o.wrap and (o.recipe or #o.run_args > 0 or o.uid) then
    error({ usage = "--wrap takes no run options, --recipe or --uid: the wrapped command is the sandbox" }, 0)
  end
  if o.recipe and #o.run_args > 0 then error({ usage = "--recipe takes no run options: the recipe is the sandbox" }, 0) end
  return o
end

-- The spec a recipe describes.
local function recipe_spec(file)
  local chunk, err = loadfile(file)
  if not chunk then error({ usage = "--recipe: " .. err }, 0) end
  local spec = chunk()
  if type(spec) == "function" then spec = spec() end
  if type(spec) ~= "table" then
    error({ usage = "--recipe " .. file .. ": must return a sandbox spec (a table) or a function returning one" }, 0)
  end
  return spec
end

local function report_text(rows, uids, summary, sandbox)
  local by = {}
  local order = {}
  for _, row in ipairs(rows) do
    if not by[row.id] then
      by[row.id] = { row = row, runs = {} }
      order[#order + 1] = row.id
    end
    by[row.id].runs[#by[row.id].runs + 1] = row
  end
  local header = { "ATTEMPT", "SEVERITY" }
  for _, uid in ipairs(uids) do header[#header + 1] = uid and ("UID " .. uid) or "RESULT" end
  header[#header + 1] = "HOW"
  local lines = { header }
  for _, id in ipairs(order) do
    local e = by[id]
    local line = { id, e.row.severity }
    local hows, seen, distinct = {}, {}, {}
    for _, run in ipairs(e.runs) do
      line[#line + 1] = run.outcome == "escaped" and "ESCAPED" or run.outcome
      if not distinct[run.how or ""] then distinct[run.how or ""], distinct[1] = true, (distinct[1] or 0) + 1 end
    end
    for _, run in ipairs(e.runs) do
      local how = run.how or ""
      -- (the uid named only where the runs differ)
      if (distinct[1] or 0) > 1 then how = ("uid %d: %s"):format(run.uid, how) end
      if not seen[how] then seen[how], hows[#hows + 1] = true, how end
    end
    line[#line + 1] = table.concat(hows, "; ")
    lines[#lines + 1] = line
  end
  local text = cli.format_table(lines)
  local per = #uids > 1 and (" (%d attempts x %d uids)"):format(#order, #uids) or ""
  return ("lunas audit: %s\n"):format(sandbox) .. text ..
    ("%d runs%s: %d held, %d escaped, %d n/a, %d inconclusive\n"):format(summary.total, per, summary.held,
      summary.escaped, summary["n/a"], summary.inconclusive)
end

function M.main(args)
  local ok, o = pcall(parse, args)
  if not ok then
    if type(o) == "table" and o.usage then return cli.usage_error("audit", o.usage) end
    error(o, 0)
  end
  if o == "help" then print(HELP) return 0 end
  local probe = o.probe or M.default_probe()
  if not probe or core.file_type(probe) ~= "file" then
    return cli.usage_error("audit", ("no probe at %s: build it (make) or give --probe FILE"):format(tostring(probe)))
  end
  if o.print_probe then print(probe) return 0 end

  local spec, config, description
  local uid = o.uid or 1000
  if o.wrap then
    description = "wrapped: " .. table.concat(o.wrap, " ")
  else
    if o.recipe then
      ok, spec = pcall(recipe_spec, o.recipe)
      description = "recipe " .. o.recipe
    else
      local run = require "lunas.cli.run"
      local run_args = { table.unpack(o.run_args) }
      run_args[#run_args + 1] = "--"
      run_args[#run_args + 1] = probe -- (a placeholder: each attempt sets argv)
      ok, spec = pcall(run.parse, run_args)
      description = #o.run_args > 0 and ("lunas run " .. table.concat(o.run_args, " ")) or "lunas run (defaults)"
      if ok and spec == "help" then print(HELP) return 0 end
    end
    if not ok then
      if type(spec) == "table" and spec.usage then return cli.usage_error("audit", spec.usage) end
      io.stderr:write("lunas audit: ", tostring(spec), "\n")
      return 2
    end
    local checked, profile = pcall(security.check_profile, "seccomp", spec.seccomp)
    if not checked then
      io.stderr:write("lunas audit: ", tostring(profile), "\n")
      return 2
    end
    -- (raw BPF programs added to the profile may refuse more: their refusals are not told apart)
    if not (spec.seccomp_programs and #spec.seccomp_programs > 0) then config = { seccomp = profile } end
  end

  local fx
  ok, fx = pcall(audit.fixtures, probe)
  if not ok then
    io.stderr:write("lunas audit: ", tostring(fx), "\n")
    return 125
  end
  local rows
  local result = table.pack(pcall(function()
    if spec and not o.probe_path then audit.show_probe(spec, fx) end
    rows = audit.run{ spec = spec, wrap = o.wrap, uids = uid == 0 and { 0 } or { 0, uid }, probe_path = o.probe_path, fixtures = fx,
      config = config }
  end))
  fx.close()
  if not result[1] then
    local err = result[2]
    if require("lunas.interrupt").is(err) then return 1 end
    io.stderr:write("lunas audit: ", tostring(err), "\n")
    return 125
  end
  local summary = audit.summary(rows)
  local uids = o.wrap and { false } or uid == 0 and { 0 } or { 0, uid }
  if o.json then
    local json = require "lunas.json"
    local attempts = {}
    for _, row in ipairs(rows) do
      attempts[#attempts + 1] = { id = row.id, title = row.title, severity = row.severity,
        uid = row.uid or json.null, outcome = row.outcome, how = row.how, output = row.line or json.null }
    end
    local list = {}
    for _, u in ipairs(uids) do list[#list + 1] = u or json.null end
    io.stdout:write(json.encode{ sandbox = description, uids = list, attempts = attempts, summary = summary }, "\n")
  else
    io.stdout:write(report_text(rows, uids, summary, description))
  end
  return (summary.escaped == 0 and summary.inconclusive == 0) and 0 or 1
end

return M
