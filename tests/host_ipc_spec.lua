-- Host services through the default tree: real listeners (a unix stream socket, a unix datagram socket and a FIFO
-- with a reader) in every place where services keep them, on the host side of the test's namespaces; the default
-- sandbox walks its whole tree for sockets and FIFOs and tries each one it finds, and tries each listener by its
-- path: none may connect or open. The same walk in a tree that binds the host's / (bubblewrap's --ro-bind / /)
-- reaches them: the walk sees an escape when there is one.

local lunas = require "lunas"
local core = require "lunas.core"
local kernel = require "support.kernel"
local util = require "support.util"

local PROBE = util.build .. "/tests/escape-probe"
local PERL_LISTENERS = [[
use IO::Socket::UNIX; use POSIX qw(mkfifo);
my @keep;
for my $dir (@ARGV) {
  my $s = IO::Socket::UNIX->new(Local => "$dir/stream.sock", Listen => 16, Type => SOCK_STREAM) or die "$dir: $!";
  my $d = IO::Socket::UNIX->new(Local => "$dir/dgram.sock", Type => SOCK_DGRAM) or die "$dir: $!";
  mkfifo("$dir/fifo", 0666) or die "$dir: $!";
  open(my $f, "+<", "$dir/fifo") or die "$dir: $!";
  chmod 0666, "$dir/stream.sock", "$dir/dgram.sock";
  push @keep, $s, $d, $f;
}
sleep 3600;
]]

-- Where services keep their sockets and FIFOs, as seen by this pass, each as a fresh directory of ours: /run
-- (the runner's private tmpfs), /tmp, /var/tmp, /dev/shm, XDG_RUNTIME_DIR, HOME, below the working directory (the
-- checkout's build/scratch, which the default tree shows read-only), and /var/lib, where no default tree looks.
local function places()
  local list = { "/run", "/tmp", "/var/tmp", "/dev/shm", util.build .. "/scratch" }
  for _, var in ipairs{ "XDG_RUNTIME_DIR", "HOME" } do
    local dir = os.getenv(var)
    if dir and dir ~= "" then list[#list + 1] = dir end
  end
  if core.ids().euid == 0 then list[#list + 1] = "/var/lib" end
  return list
end

local function start_listeners(defer)
  local dirs = {}
  for _, parent in ipairs(places()) do
    local p = io.popen("mktemp -d " .. util.quote(parent .. "/lunas-ipc.XXXXXX") .. " 2>/dev/null")
    local dir = p:read("l")
    p:close()
    if dir then
      os.execute("chmod 755 " .. util.quote(dir))
      dirs[#dirs + 1] = dir
      defer(function() os.execute("rm -rf " .. util.quote(dir)) end)
    end
  end
  local argv = { "/usr/bin/perl", "-e", PERL_LISTENERS }
  for _, d in ipairs(dirs) do argv[#argv + 1] = d end
  local proc = assert(core.spawn{ argv = argv })
  defer(function()
    proc:kill("KILL")
    proc:wait(10)
    proc:close()
  end)
  assert.is_truthy(util.wait_for(function()
    for _, d in ipairs(dirs) do
      if core.file_type(d .. "/fifo") ~= "fifo" or core.file_type(d .. "/dgram.sock") ~= "socket" then return false end
    end
    return true
  end, 10), "the listeners did not start")
  return dirs
end

-- The probe's line in a sandbox (the default one plus spec).
local function probe(spec, ...)
  local r, w = assert(core.pipe())
  spec.argv = { PROBE, ... }
  -- (a walk of the whole tree takes minutes on an emulated machine)
  spec.stdout, spec.stderr, spec.timeout = w, w, 900
  local result = lunas.sandbox(spec):run()
  w:close()
  local out = util.drain(r)
  r:close()
  return out:match("^[^\n]*"), result
end

describe("host services through the default tree #rootless", function()
  it("no socket or FIFO of the host answers anywhere in the default tree", function()
    if not kernel.requires("userns") then return end
    local defer = util.cleanups(finally)
    local dirs = start_listeners(defer)
    assert.is_true(#dirs >= 5, "listeners in " .. #dirs .. " places")
    -- The listeners answer outside: every one, by its path.
    for _, dir in ipairs(dirs) do
      assert.matches("^ok", util.run{ PROBE, "unix-connect", dir .. "/stream.sock" }, nil, dir)
      assert.matches("^ok", util.run{ PROBE, "unix-connect", dir .. "/dgram.sock", "dgram" }, nil, dir)
      assert.matches("^ok", util.run{ PROBE, "fifo-open", dir .. "/fifo" }, nil, dir)
    end
    -- Inside: the whole tree walked, every socket and FIFO found tried.
    local line = probe({}, "walk-ipc", "/")
    assert.matches("^NONE", line)
    -- Each listener by its path: gone, or inert (the view of the working directory shows them as inodes of its
    -- own, which nothing on the host listens on).
    for _, dir in ipairs(dirs) do
      for _, attempt in ipairs{ { "unix-connect", dir .. "/stream.sock" }, { "unix-connect", dir .. "/dgram.sock", "dgram" },
        { "fifo-open", dir .. "/fifo" } } do
        line = probe({}, table.unpack(attempt))
        assert.is_true(line == "ENOENT" or line == "ECONNREFUSED" or line == "ENXIO" or line == "EACCES",
          table.concat(attempt, " ") .. ": " .. line)
      end
    end
  end)

  it("the same walk reaches them in a tree that binds the host's / (the walk sees an escape when there is one)", function()
    if not kernel.requires("userns") then return end
    local defer = util.cleanups(finally)
    start_listeners(defer)
    local line = probe({ mounts = { { "ro-bind", "/", "/" }, { "dev-bind", "/dev", "/dev" }, { "proc", "/proc" } } },
      "walk-ipc", "/")
    assert.matches("^ok ", line)
  end)

  it("hands in one socket named on purpose, on top of the default tree", function()
    if not kernel.requires("userns") then return end
    local defer = util.cleanups(finally)
    local dirs = start_listeners(defer)
    local chosen = dirs[1] .. "/stream.sock"
    local line = probe({ mounts = { { "default" }, { "bind", chosen, chosen } } }, "unix-connect", chosen)
    assert.equal("ok", line)
    -- and only that one
    line = probe({ mounts = { { "default" }, { "bind", chosen, chosen } } }, "walk-ipc", "/")
    assert.matches("^ok " .. chosen:gsub("%p", "%%%0") .. "$", line)
  end)
end)
