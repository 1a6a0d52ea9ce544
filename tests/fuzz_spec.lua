-- The API fuzzer (tests/fuzz/fuzz.lua, confined by tests/fuzz/run.sh) over the sanitizer build: every function of
-- lunas.core, every method of its objects and every public function of the Lua modules, called with random and
-- mutated arguments. No crash, no abort, no sanitizer report, and every failure a Lua error or nil, message,
-- code. `make test` builds the sanitizer core (build/asan) for it; `make fuzz` runs a million calls.
--
-- LUNAS_FUZZ_CALLS sets the number of calls (default 100000; 10000 in the VM lane, where emulation makes every
-- call some twenty times slower). LUNAS_FUZZ_SEED replays a run; the seed of each run is printed.

local core = require "lunas.core"
local json = require "lunas.json"
local util = require "support.util"

-- The build to fuzz: LUNAS_FUZZ_BUILD, or build/asan of the tree (the VM lane's guest gets no environment of ours).
local function fuzz_build()
  local build = os.getenv("LUNAS_FUZZ_BUILD") or (util.root .. "/build/asan")
  if core.file_type(build .. "/lib/lunas/core.so") then return build end
  return nil
end

describe("the API fuzzer #root", function()
  it("finds no crash, abort, sanitizer report or failure outside the conventions", function()
    local build = fuzz_build()
    if not build then
      pending("needs the sanitizer build of the core (LUNAS_FUZZ_BUILD; make test builds build/asan)")
      return
    end
    local calls = tonumber(os.getenv("LUNAS_FUZZ_CALLS") or "") or (os.getenv("LUNAS_VM") and 10000 or 100000)
    local seed = tonumber(os.getenv("LUNAS_FUZZ_SEED") or "") or os.time()
    local dir, remove_dir = util.tmpdir()
    finally(remove_dir)
    local out, err, code = util.sh(("LUNAS_FUZZ_BUILD=%s LUNAS_SANITIZE=%s sh %s/tests/fuzz/run.sh --calls %d "
      .. "--seed %d --out %s"):format(util.quote(build), os.getenv("LUNAS_FUZZ_SANITIZE") or "1", util.quote(util.root),
      calls, seed, util.quote(dir)))
    print("\n" .. out:gsub("\n$", ""):gsub("\n", "\n  "):gsub("^", "  "))
    assert.are.equal(0, code, out .. err)
    assert.matches("fuzz: PASS\n$", out)
    local summary = json.decode(assert(util.read(dir .. "/summary.json")))
    assert.is_true(summary.calls >= calls, ("only %d calls"):format(summary.calls))
    assert.are.same({ 0, 0, 0 }, { summary.crashes, summary.sanitizer, summary.contract })
    -- The generator must keep reaching the code behind the argument checks of the functions that do the most.
    -- (Counted over enough calls to mean something: a short run, the VM lane's, calls a method a few times only.)
    if calls < 50000 then
      print(("  (the check of what the calls reached needs 50000 calls or more; this run made %d)"):format(calls))
      return
    end
    for _, target in ipairs{ "core.spawn", "core.mount", "core.seccomp_filter", "core.landlock_ruleset",
      "core.netlink", "lunas.netlink:link_add", "lunas.netlink:addr_add", "lunas.netlink:route_add",
      "lunas.netlink:qdisc_replace", "lunas.sandbox.new", "lunas.net.lab", "core.persist", "core.sysctl" } do
      local c = summary.per_target[target]
      assert.is_truthy(c and c.succeeded + c.failed > 0, target .. " never got past its argument checks")
    end
  end)
end)
