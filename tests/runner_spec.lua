-- Checks on the test runner itself (tests/run.sh): where and as whom the suite
-- runs, and the support modules. Tagged #rootless, so both passes run it.

local lfs = require "lfs"
local kernel = require "support.kernel"

local function readlink(path)
  return lfs.symlinkattributes(path, "target")
end

local function read_file(path)
  local f = assert(io.open(path, "r"))
  local data = f:read("a")
  f:close()
  return data
end

local function status_field(name)
  return read_file("/proc/self/status"):match("\n" .. name .. ":[ \t]*([^\n]*)")
end

local function command_output(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local pass = os.getenv("LUNAS_TEST_PASS")

describe("test runner #rootless", function()
  it("runs the suite in a network namespace other than the host's", function()
    local mine = readlink("/proc/self/ns/net")
    assert.matches("^net:%[%d+%]$", mine)
    -- /proc/1 is the host's init (only net and mount are unshared); an
    -- unprivileged uid cannot read its ns links, so fall back to what run.sh
    -- read before it unshared
    local host = readlink("/proc/1/ns/net") or os.getenv("LUNAS_HOST_NETNS")
    assert.matches("^net:%[%d+%]$", host)
    assert.are_not.equal(host, mine)
  end)

  it("runs the suite in a private mount namespace with its own /run", function()
    local mine = readlink("/proc/self/ns/mnt")
    local host = readlink("/proc/1/ns/mnt") or os.getenv("LUNAS_HOST_MNTNS")
    assert.matches("^mnt:%[%d+%]$", host)
    assert.are_not.equal(host, mine)
    local run_fstype
    for line in read_file("/proc/self/mountinfo"):gmatch("[^\n]+") do
      local mountpoint, fstype = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+)")
      if mountpoint == "/run" then run_fstype = fstype end -- the last one is on top
    end
    assert.are.equal("tmpfs", run_fstype)
  end)

  it("brings lo up in the test network namespace", function()
    local out, code = command_output("ip -o link show dev lo")
    assert.are.equal(0, code)
    assert.matches("<[^>]*%f[%w]UP%f[^%w][^>]*>", out)
  end)

  it("runs each pass with the identity it announces", function()
    assert.is_truthy(pass == "root" or pass == "rootless", "LUNAS_TEST_PASS=" .. tostring(pass))
    local uids = status_field("Uid")
    if pass == "root" then
      assert.matches("^0%s+0%s+0%s+0$", uids)
      assert.is_true(kernel.has("root"))
    else
      assert.matches("^65534%s+65534%s+65534%s+65534$", uids)
      assert.matches("^65534%s+65534%s+65534%s+65534$", status_field("Gid"))
      assert.are.equal("", status_field("Groups"))
      assert.are.equal("0000000000000000", status_field("CapEff"))
      assert.are.equal("0000000000000000", status_field("CapInh"))
      assert.is_false(kernel.has("root"))
      local home = os.getenv("HOME")
      assert.are.equal(65534, lfs.attributes(home, "uid"))
      local probe = home .. "/.runner-probe"
      assert(io.open(probe, "w")):close()
      assert(os.remove(probe))
    end
  end)

  it("gives the rootless pass a subordinate id range newuidmap accepts", function()
    if pass == "root" then
      -- root's own entries come from the host's files; nothing to check here
      return
    end
    assert.is_true(kernel.has("newuidmap"), kernel.why("newuidmap"))
    if not kernel.requires("userns") then return end
    -- unshare --map-auto runs newuidmap/newgidmap with our /etc/subuid range
    local out, code = command_output("unshare --user --map-auto --map-root-user cat /proc/self/uid_map")
    assert.are.equal(0, code, out)
    -- root is us; the rest of the range starts at 200000 (as run.sh wrote it)
    assert.matches("^%s*0%s+65534%s+1\n%s*1%s+200000%s+%d+", out)
  end)
end)

describe("support.kernel #rootless", function()
  it("answers a boolean for every feature and raises for unknown ones", function()
    local names = table.concat(kernel.features, " ")
    assert.are.equal("apparmor bwrap cgroup2 cgroup_device_bpf cgroup_v1_memory cgroup_write idmap landlock landlock_net "
      .. "landlock_scoped netem newuidmap root selinux timens userns", names)
    for _, feature in ipairs(kernel.features) do
      assert.is_boolean(kernel.has(feature))
      if not kernel.has(feature) then assert.is_string(kernel.why(feature)) end
    end
    assert.has_error(function() kernel.has("no_such_feature") end)
    assert.has_error(function() kernel.requires("root", "no_such_feature") end)
  end)

  it("requires() returns true when every feature is there", function()
    local present = {}
    for _, feature in ipairs(kernel.features) do
      if kernel.has(feature) then present[#present + 1] = feature end
    end
    if #present == 0 then return end
    assert.is_true(kernel.requires(table.unpack(present)))
  end)

  it("requires() marks the test pending with the reason when one is missing", function()
    for _, feature in ipairs(kernel.features) do
      if not kernel.has(feature) then
        -- busted's pending() ends a test by throwing; catch it to look at it
        local ok, err = pcall(kernel.requires, feature)
        assert.is_false(ok)
        assert.are.equal("needs " .. feature .. ": " .. kernel.why(feature), tostring(err))
        return
      end
    end
  end)
end)
