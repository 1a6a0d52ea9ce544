-- The soak: 10,000 sandboxes, then 1,000 lab build-and-teardown cycles, in one lunas process
-- (tests/support/soak.lua). What that process holds is sampled every 100 items; the trend must be flat:
-- descriptors and live children exactly, resident memory and the Lua heap within a small bound, and the time an
-- item takes must not grow.
--
-- LUNAS_SOAK_SCALE divides the counts (default 1; 10 in the VM lane, where emulation makes each item some twenty
-- times slower).

local json = require "lunas.json"
local kernel = require "support.kernel"
local util = require "support.util"

local SCALE = tonumber(os.getenv("LUNAS_SOAK_SCALE") or "") or (os.getenv("LUNAS_VM") and 10 or 1)
local SANDBOXES, LAB_CYCLES, WINDOW = 10000 // SCALE, 1000 // SCALE, 100 // SCALE

local function median(list)
  local t = { table.unpack(list) }
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- Least-squares slope of ys over xs.
local function slope(xs, ys)
  local n, sx, sy = #xs, 0, 0
  for i = 1, n do sx, sy = sx + xs[i], sy + ys[i] end
  local mx, my = sx / n, sy / n
  local num, den = 0, 0
  for i = 1, n do
    num = num + (xs[i] - mx) * (ys[i] - my)
    den = den + (xs[i] - mx) ^ 2
  end
  return den > 0 and num / den or 0
end

-- The samples of one phase after its warm-up (the first tenth: caches filling, the seccomp program compiled).
local function steady(samples, phase, count)
  local out = {}
  for _, s in ipairs(samples) do
    if s.phase == phase and s.done >= count // 10 then out[#out + 1] = s end
  end
  return out
end

local function column(samples, key)
  local t = {}
  for i, s in ipairs(samples) do t[i] = s[key] end
  return t
end

-- Flat: every sample holds what the first steady one holds (descriptors, children); memory grows by less than
-- `budget_kib` over the whole phase by its least-squares trend; the last quarter's items take at most twice as
-- long as the first quarter's (medians: a trend, not a timing; a cost that grows with the items done shows as a
-- ratio well past that over ten thousand of them).
local function assert_flat(samples, phase, count, budget_kib)
  local s = steady(samples, phase, count)
  assert.is_true(#s >= 8, phase .. ": too few samples")
  for _, sample in ipairs(s) do
    assert.are.equal(s[1].fds, sample.fds, ("%s: %d descriptors after %d items, %d at first"):format(phase,
      sample.fds, sample.done, s[1].fds))
    assert.are.equal(0, sample.children, ("%s: %d children alive after %d items"):format(phase, sample.children,
      sample.done))
  end
  local done = column(s, "done")
  local report = {}
  for _, key in ipairs{ "rss_kib", "lua_kib" } do
    local growth = slope(done, column(s, key)) * count
    report[#report + 1] = ("%s %+.0f KiB"):format(key, growth)
    assert.is_true(growth < budget_kib, ("%s: %s grows by %.0f KiB over %d items (trend), budget %d KiB"):format(phase,
      key, growth, count, budget_kib))
  end
  local quarter = #s // 4
  local first, last = {}, {}
  for i = 2, quarter + 1 do first[#first + 1] = s[i].seconds end
  for i = #s - quarter + 1, #s do last[#last + 1] = s[i].seconds end
  local per_item_first = median(first) / WINDOW * 1000
  local per_item_last = median(last) / WINDOW * 1000
  assert.is_true(per_item_last <= per_item_first * 2, ("%s: an item took %.2f ms at first, %.2f ms at the end")
    :format(phase, per_item_first, per_item_last))
  return ("%s: %d items, %.2f ms each at first and %.2f ms at the end, %d descriptors, %s"):format(phase, count,
    per_item_first, per_item_last, s[1].fds, table.concat(report, ", "))
end

describe("the soak #root", function()
  it(("runs %d sandboxes and %d lab cycles in one process with flat descriptors, memory and time per item")
    :format(SANDBOXES, LAB_CYCLES), function()
    kernel.requires("userns")
    local out, err, code = util.sh(("%s %s/tests/support/soak.lua %d %d %d"):format(util.quote(util.bin),
      util.quote(util.root), SANDBOXES, LAB_CYCLES, WINDOW))
    assert.are.equal(0, code, err)
    local samples = {}
    for line in out:gmatch("[^\n]+") do samples[#samples + 1] = json.decode(line) end
    assert.are.equal(SANDBOXES // WINDOW + LAB_CYCLES // WINDOW + 2, #samples, "missing samples")
    local lines = {}
    -- 1 MiB over 10,000 sandboxes: a leak of 100 bytes a sandbox fails; 1 MiB over 1,000 labs of 4 nodes
    -- and 4 links: 1 KiB a lab.
    lines[#lines + 1] = assert_flat(samples, "sandbox", SANDBOXES, 1024)
    lines[#lines + 1] = assert_flat(samples, "lab", LAB_CYCLES, 1024)
    print("\n  " .. table.concat(lines, "\n  "))
  end)
end)
