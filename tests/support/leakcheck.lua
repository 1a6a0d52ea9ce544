-- Leak check for tests/run.sh (runs as root inside the test's private network
-- and mount namespace).
--
--   lua5.4 tests/support/leakcheck.lua snapshot FILE [DIR...]
--   lua5.4 tests/support/leakcheck.lua check BEFORE RESULTS [DIR...]
--
-- A snapshot records:
--   netns   entries of /run/netns
--   state   files (anything but directories) below /run/lunas and each DIR, but the journal of sandbox
--           events (lunas/events and events.old: lunas keeps it, as a log, whatever ran)
--   link    network links of this network namespace (`ip -o link show`)
--   mount   mount points of this mount namespace (/proc/self/mountinfo)
--   cgroup  cgroup directories below this process's own cgroup, in every
--           hierarchy listed in /proc/self/cgroup
--   proc    every process (pid + start time), to tell old from new ones
--   scratch the specs' scratch directories (/tmp/lunas-test.*: util.tmpdir)
-- `check` takes a new snapshot, reports everything that is new compared to
-- BEFORE, and writes "passed 1" (no leaks) or "failed 1" into RESULTS.
-- New processes count as leaks when they are in this network or mount
-- namespace, or carry LUNAS_TEST_RUN=<this run's token> in their environment,
-- or descend from such a process (the runner's own chain excluded). Leaked
-- processes are reported, then killed (SIGKILL): they were started by this
-- test run, and would otherwise keep the test namespaces alive. Leaked
-- cgroups are only reported (never removed here).

local lfs = require "lfs"

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function readlink(path)
  return lfs.symlinkattributes(path, "target")
end

local function list_dir(dir)
  local names = {}
  local ok, iter, state = pcall(lfs.dir, dir)
  if not ok then return names end
  for name in iter, state do
    if name ~= "." and name ~= ".." then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

local function is_dir(path)
  return lfs.symlinkattributes(path, "mode") == "directory"
end

-- mountinfo: unescape \040 etc. in paths
local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

local function mountinfo()
  local mounts = {}
  for line in (read_file("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local pre, post = line:match("^(.-) %- (.*)$")
    if pre then
      local f = {}
      for w in pre:gmatch("%S+") do f[#f + 1] = w end
      local g = {}
      for w in post:gmatch("%S+") do g[#g + 1] = w end
      mounts[#mounts + 1] = {
        root = unescape(f[4]), mountpoint = unescape(f[5]),
        fstype = g[1], source = unescape(g[2] or ""), superopts = g[3] or "",
      }
    end
  end
  return mounts
end

local function add(items, kind, key)
  items[#items + 1] = kind .. "\t" .. key
end

local function snap_netns(items)
  for _, name in ipairs(list_dir("/run/netns")) do add(items, "netns", "/run/netns/" .. name) end
end

local function snap_state(items, dirs)
  local function walk(dir)
    for _, name in ipairs(list_dir(dir)) do
      local path = dir .. "/" .. name
      if is_dir(path) then walk(path)
      elseif not ((name == "events" or name == "events.old") and dir:match("lunas$")) then add(items, "state", path) end
    end
  end
  for _, dir in ipairs(dirs) do walk(dir) end
end

local function snap_links(items)
  local p = io.popen("ip -o link show 2>/dev/null")
  if not p then return end
  for line in p:lines() do
    local name = line:match("^%d+:%s+([^:%s]+)")
    if name then add(items, "link", (name:gsub("@.*$", ""))) end
  end
  p:close()
end

local function snap_mounts(items)
  for _, m in ipairs(mountinfo()) do
    local key = m.mountpoint .. " (" .. m.fstype .. " " .. m.source
    if m.root ~= "/" then key = key .. " root=" .. m.root end
    add(items, "mount", key .. ")")
  end
end

-- directory of this process's cgroup in each hierarchy it belongs to, with
-- that hierarchy's mount point
local function own_cgroup_dirs()
  local mounts = mountinfo()
  local dirs = {}
  local seen = {}
  for line in (read_file("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
    local id, controllers, path = line:match("^(%d+):([^:]*):(.*)$")
    if id then
      local found, mountpoint
      for _, m in ipairs(mounts) do
        local match = false
        if id == "0" and controllers == "" then
          match = (m.fstype == "cgroup2")
        elseif m.fstype == "cgroup" then
          local opts = {}
          for o in m.superopts:gmatch("[^,]+") do opts[o] = true end
          match = true
          for c in controllers:gmatch("[^,]+") do
            if not opts[c] then match = false end
          end
        end
        if match then
          local rel = path
          if m.root ~= "/" then
            if rel:sub(1, #m.root) == m.root then rel = rel:sub(#m.root + 1) else rel = nil end
          end
          if rel then
            found = (m.mountpoint .. rel):gsub("/+$", "")
            mountpoint = m.mountpoint:gsub("/+$", "")
            break
          end
        end
      end
      if found and not seen[found] and is_dir(found) then
        seen[found] = true
        dirs[#dirs + 1] = { dir = found, mountpoint = mountpoint }
      end
    end
  end
  return dirs
end

-- Where this process sits deeper in one hierarchy than in another (a
-- machine that gives each command its own memory cgroup, say
-- memory:/process_api/ID next to pids:/), the directories on that path are
-- the machine's layout: what appears below them in the shallower hierarchy
-- is the machine's other commands, not something a test made.
local function machine_layout()
  local layout = {}
  for line in (read_file("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
    local path = line:match("^%d+:[^:]*:(.*)$") or ""
    local prefix = ""
    for part in path:gmatch("[^/]+") do
      prefix = prefix .. "/" .. part
      layout[prefix] = true
    end
  end
  return layout
end

local function snap_cgroups(items)
  local layout = machine_layout()
  local function walk(dir, mountpoint)
    for _, name in ipairs(list_dir(dir)) do
      local path = dir .. "/" .. name
      if is_dir(path) and not layout[path:sub(#mountpoint + 1)] then
        add(items, "cgroup", path)
        walk(path, mountpoint)
      end
    end
  end
  for _, own in ipairs(own_cgroup_dirs()) do walk(own.dir, own.mountpoint) end
end

-- pid -> { ppid, start, comm } for every process
local function processes()
  local procs = {}
  for _, name in ipairs(list_dir("/proc")) do
    local pid = tonumber(name)
    if pid then
      local stat = read_file("/proc/" .. name .. "/stat")
      if stat then
        local comm, rest = stat:match("^%d+ %((.*)%) (.*)$")
        if rest then
          local f = {}
          for w in rest:gmatch("%S+") do f[#f + 1] = w end
          -- rest starts at field 3 (state); ppid is field 4, starttime field 22
          procs[pid] = { pid = pid, ppid = tonumber(f[2]), start = f[20], comm = comm }
        end
      end
    end
  end
  return procs
end

local function snap_procs(items, procs)
  for pid, p in pairs(procs) do add(items, "proc", pid .. " " .. p.start) end
end

local function snap_scratch(items)
  for _, name in ipairs(list_dir("/tmp")) do
    if name:match("^lunas%-test%.") then add(items, "scratch", "/tmp/" .. name) end
  end
end

local function snapshot(dirs, procs)
  local items = {}
  snap_scratch(items)
  snap_netns(items)
  snap_state(items, dirs)
  snap_links(items)
  snap_mounts(items)
  snap_cgroups(items)
  snap_procs(items, procs or processes())
  return items
end

local function count(items)
  local c = {}
  for _, item in ipairs(items) do c[item] = (c[item] or 0) + 1 end
  return c
end

local function leaked_processes(procs, before)
  local self_pid = tonumber(readlink("/proc/self"))
  local my_net = readlink("/proc/self/ns/net")
  local my_mnt = readlink("/proc/self/ns/mnt")
  local token = os.getenv("LUNAS_TEST_RUN")
  local marker = token and token ~= "" and ("LUNAS_TEST_RUN=" .. token) or nil

  local chain = {}
  local pid = self_pid
  while pid and pid > 0 and not chain[pid] do
    chain[pid] = true
    pid = procs[pid] and procs[pid].ppid
  end

  local function is_old(p) return before["proc\t" .. p.pid .. " " .. p.start] end

  local ours = {}
  for pid, p in pairs(procs) do
    if not chain[pid] and not is_old(p) then
      local base = "/proc/" .. pid
      local hit = (my_net and readlink(base .. "/ns/net") == my_net)
        or (my_mnt and readlink(base .. "/ns/mnt") == my_mnt)
      if not hit and marker then
        local env = read_file(base .. "/environ")
        if env and ("\0" .. env):find("\0" .. marker .. "\0", 1, true) then hit = true end
      end
      if hit then ours[pid] = true end
    end
  end
  -- and everything below them
  local grew = true
  while grew do
    grew = false
    for pid, p in pairs(procs) do
      if not ours[pid] and not chain[pid] and ours[p.ppid] and not is_old(p) then
        ours[pid] = true
        grew = true
      end
    end
  end

  local list = {}
  for pid in pairs(ours) do
    local p = procs[pid]
    local cmdline = (read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z$", ""):gsub("%z", " ")
    local uid = (read_file("/proc/" .. pid .. "/status") or ""):match("\nUid:%s+(%d+)")
    list[#list + 1] = { pid = pid, start = p.start, text = string.format("pid %d uid %s ppid %d (%s) %s",
      pid, uid or "?", p.ppid or 0, p.comm, cmdline) }
  end
  table.sort(list, function(a, b) return a.pid < b.pid end)
  return list
end

local function kill(list)
  for _, p in ipairs(list) do
    local stat = read_file("/proc/" .. p.pid .. "/stat")
    local rest = stat and stat:match("^%d+ %(.*%) (.*)$")
    local f = {}
    for w in (rest or ""):gmatch("%S+") do f[#f + 1] = w end
    if f[20] == p.start then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
  end
end

local function write_lines(path, lines)
  local f = assert(io.open(path, "w"))
  for _, l in ipairs(lines) do f:write(l, "\n") end
  f:close()
end

local mode = arg[1]
local dirs = { "/run/lunas" }

if mode == "snapshot" and arg[2] then
  for i = 3, #arg do dirs[#dirs + 1] = arg[i] end
  local items = snapshot(dirs)
  table.sort(items)
  write_lines(arg[2], items)
  os.exit(0)
elseif mode == "check" and arg[2] and arg[3] then
  for i = 4, #arg do dirs[#dirs + 1] = arg[i] end
  local before = {}
  for line in (read_file(arg[2]) or error("cannot read " .. arg[2])):gmatch("[^\n]+") do
    before[line] = (before[line] or 0) + 1
  end
  local procs = processes()
  local after = count(snapshot(dirs, procs))

  local labels = { netns = "netns file", state = "state file", link = "link", mount = "mount",
                   cgroup = "cgroup", scratch = "scratch directory" }
  local leaks = {}
  for item, n in pairs(after) do
    local kind, key = item:match("^([^\t]+)\t(.*)$")
    if kind ~= "proc" and n > (before[item] or 0) then
      local extra = (before[item] or 0) > 0 and string.format(" (x%d, was x%d)", n, before[item]) or ""
      leaks[#leaks + 1] = labels[kind] .. ": " .. key .. extra
    end
  end
  table.sort(leaks)
  local leaked_procs = leaked_processes(procs, before)
  for _, p in ipairs(leaked_procs) do leaks[#leaks + 1] = "process: " .. p.text end

  if #leaks == 0 then
    io.write("ok       leak check: no new netns files, state files, links, mounts, cgroups, scratch directories or processes\n")
    write_lines(arg[3], { "passed 1", "failed 0", "errors 0" })
  else
    io.write("FAIL     leak check: ", #leaks, " leaked\n")
    for _, l in ipairs(leaks) do io.write("  ", l, "\n") end
    if #leaked_procs > 0 then
      kill(leaked_procs)
      io.write("  (leaked processes were sent SIGKILL)\n")
    end
    write_lines(arg[3], { "passed 0", "failed 1", "errors 0" })
  end
  io.flush()
  os.exit(0)
else
  io.stderr:write("usage: leakcheck.lua snapshot FILE [DIR...] | check BEFORE RESULTS [DIR...]\n")
  os.exit(2)
end
