-- Helpers shared by the specs: paths of the build, reading kernel state from outside, running commands.
local M = {}

M.root = (os.getenv("LUNAS_ROOT") or "."):gsub("/+$", "")
M.build = os.getenv("LUNAS_BUILD") or (M.root .. "/build")
M.bin = M.build .. "/bin/lunas"
M.pass = os.getenv("LUNAS_TEST_PASS") or "root"

--- Whole content of a file, or nil, err.
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("a")
  f:close()
  return data
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Quotes a word for /bin/sh.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs argv (a table of words) through /bin/sh; returns stdout+stderr, exit code (128+N for signal N).
function M.run(argv, opts)
  local words = {}
  for i, w in ipairs(argv) do words[i] = M.quote(w) end
  local cmd = table.concat(words, " ")
  if opts and opts.stdin then cmd = "printf %s " .. M.quote(opts.stdin) .. " | " .. cmd end
  if opts and opts.env then
    local prefix = {}
    for k, v in pairs(opts.env) do prefix[#prefix + 1] = k .. "=" .. M.quote(v) end
    cmd = "env " .. table.concat(prefix, " ") .. " " .. cmd
  end
  local p = assert(io.popen(cmd .. (opts and opts.stderr == false and " 2>/dev/null" or " 2>&1"), "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  if how == "signal" then code = 128 + code end
  return out, code
end

--- Runs a /bin/sh script with stdout and stderr apart; returns stdout, stderr, exit code (128+N for signal N).
-- opts.stdin: text fed on standard input (default: /dev/null).
function M.sh(script, opts)
  local errpath = os.tmpname()
  local cmd = "{\n" .. script .. "\n} 2>" .. M.quote(errpath)
  if opts and opts.stdin then
    cmd = "printf %s " .. M.quote(opts.stdin) .. " | " .. cmd
  else
    cmd = cmd .. " </dev/null"
  end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  if how == "signal" then code = 128 + code end
  local err = M.read(errpath) or ""
  os.remove(errpath)
  return out, err, code
end

--- The lines of s (each ending in a newline).
function M.lines(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

--- The whitespace-separated words of s.
function M.words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

--- Runs the lunas host binary with the given arguments.
function M.lunas(args, opts)
  local argv = { M.bin }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return M.run(argv, opts)
end

--- The target of /proc/PID/ns/TYPE ("net:[4026531840]") read from outside.
function M.ns_link(pid, kind)
  local p = io.popen("readlink /proc/" .. tostring(pid) .. "/ns/" .. kind)
  local out = p:read("l")
  p:close()
  return out
end

--- A field of /proc/PID/status ("NSpid", "Uid", ...).
function M.status_field(pid, name)
  local status = M.read("/proc/" .. tostring(pid) .. "/status")
  return status and status:match("\n" .. name .. ":[ \t]*([^\n]*)")
end

--- Polls fn() every 10 ms until it returns a truthy value or `seconds` pass; returns that value or nil.
function M.wait_for(fn, seconds)
  local core = require "lunas.core"
  local deadline = core.now() + (seconds or 5)
  repeat
    local v = fn()
    if v then return v end
    os.execute("sleep 0.01")
  until core.now() > deadline
  return nil
end

--- True when a process with this pid exists (and is not a zombie).
function M.alive(pid)
  local stat = M.read("/proc/" .. tostring(pid) .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

--- Reads everything from a lunas.core fd until EOF.
function M.drain(fd)
  local parts = {}
  while true do
    local chunk = fd:read()
    if not chunk or chunk == "" then break end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts)
end

--- busted keeps only the last finally() of a test: this collects several cleanups into one, run in reverse.
-- Pass busted's finally (specs see it; modules do not).
function M.cleanups(finally)
  local list = {}
  finally(function()
    for i = #list, 1, -1 do pcall(list[i]) end
  end)
  return function(fn) list[#list + 1] = fn end
end

--- A fresh temporary directory, removed by the returned cleanup function.
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/lunas-test.XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir, function() os.execute("rm -rf " .. M.quote(dir)) end
end

--- The cgroup directories, in every hierarchy below our own, whose name says the lunas with this pid made them
-- (lunas-PID-RANDOM).
function M.lunas_cgroups(pid)
  local core, cgroup = require "lunas.core", require "lunas.cgroup"
  local layout = cgroup.layout()
  local found, roots = {}, {}
  if layout.v2 then roots[#roots + 1] = layout.v2.dir end
  for _, h in pairs(layout.v1) do roots[#roots + 1] = h.dir end
  for _, root in ipairs(roots) do
    for _, name in ipairs(core.cgroup_children(root) or {}) do
      if name:match("^lunas%-" .. pid .. "%-%x+$") then found[#found + 1] = root .. "/" .. name end
    end
  end
  table.sort(found)
  return found
end

--- The pids of the live processes whose command line is exactly `marker` (a unique one, such as "sleep 3001").
function M.processes_running(marker)
  local core = require "lunas.core"
  local pids = {}
  for _, entry in ipairs(core.listdir("/proc")) do
    local pid = tonumber(entry)
    if pid then
      local cmdline = M.read("/proc/" .. pid .. "/cmdline")
      if cmdline and cmdline:gsub("%z$", ""):gsub("%z", " ") == marker and M.alive(pid) then pids[#pids + 1] = pid end
    end
  end
  return pids
end

--- True once no process runs `marker` (within `seconds`, default 10).
function M.none_running(marker, seconds)
  return M.wait_for(function() return #M.processes_running(marker) == 0 end, seconds or 10) ~= nil
end

--- Starts the host binary with argv (a table of its arguments); its stdout and stderr go to the files `out` and
-- `err` (default /dev/null). Returns the process handle: signals sent to it reach lunas itself (a shell execs
-- it; a signal that comes before, at once, ends that shell as it would lunas: nothing was started yet).
function M.start_lunas(argv, out, err)
  local core = require "lunas.core"
  local full = { "/bin/sh", "-c", ('exec "$0" "$@" >%s 2>%s'):format(M.quote(out or "/dev/null"),
    M.quote(err or "/dev/null")), M.bin }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return assert(core.spawn{ argv = full })
end

--- make's BUILD= (and SANITIZE=) for the build under test, run from the tree's root: relative when the build is
-- inside the tree, since make cannot name a target whose path holds a space. A sanitizer build must never be
-- relinked without its flags.
function M.make_build()
  local build = M.build
  if build:sub(1, #M.root + 1) == M.root .. "/" then build = build:sub(#M.root + 2) end
  return "BUILD=" .. M.quote(build) .. (os.getenv("LUNAS_SANITIZE") == "1" and " SANITIZE=1" or "")
end

return M
