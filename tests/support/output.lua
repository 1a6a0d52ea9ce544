-- busted output handler for the lunas specs (busted -o tests/support/output.lua).
--
-- Prints one line per test as it ends:
--   ok       <full name>
--   FAIL     <full name>          (assertion failure or error inside the test)
--   pending  <full name>: <reason>
--   ERROR    <block>              (error outside a test: file, describe, setup, ...)
-- then, at the end, every failure and error with its message and traceback,
-- and a busted-style count line.
--
-- If LUNAS_RESULTS names a file, the counts are written there for tests/run.sh:
--   passed N
--   failed N        (assertion failures)
--   errors N        (errors in tests and outside them)
--   pending <full name>\t<reason>\t<file:line>     (one line per pending test)

local io_write, io_flush = io.write, io.flush

local function one_line(s)
  return (tostring(s):gsub("[\t\r\n]+", " "))
end

return function(options)
  local busted = require("busted")
  local pretty = require("pl.pretty")
  local handler = require("busted.outputHandlers.base")()

  -- totals across --repeat runs (the base handler resets per run)
  local totals = { passed = 0, failed = 0, errors = 0, pending = {} }

  local function message_text(message)
    if message == nil then return "nil error" end
    if type(message) == "string" then return message end
    local mt = getmetatable(message)
    if mt and mt.__tostring then return tostring(message) end
    return pretty.write(message)
  end

  -- busted prefixes "file:line: " to the message of pending() inside a test;
  -- the location is shown on its own, so drop it here. pending("name") in a
  -- describe body has no message: its name is the reason
  local function pending_reason(p)
    if p.message == nil then return "" end
    local text = message_text(p.message):gsub("^[^\n]-:%d+: ", "", 1)
    return one_line(text)
  end

  local function where(trace)
    if trace and trace.short_src then
      return trace.short_src .. ":" .. tostring(trace.currentline)
    end
    return "?"
  end

  handler.testEnd = function(element, parent, status)
    local name = handler.getFullName(element)
    if status == "success" then
      io_write("ok       ", name, "\n")
    elseif status == "pending" then
      local p = handler.pendings[#handler.pendings]
      local reason = p and pending_reason(p) or ""
      io_write("pending  ", name, reason ~= "" and (": " .. reason) or "", "\n")
    else
      io_write("FAIL     ", name, "\n")
    end
    io_flush()
    return nil, true
  end

  -- errors outside of tests (file load errors, describe bodies, setup,
  -- teardown, before_each, after_each): there is no test end line for them
  local function block_name(element)
    local d = element.descriptor
    if d == "file" then return "file " .. tostring(element.name) end
    if d == "describe" or d == "it" or d == nil then return handler.getFullName(element) end
    -- setup, teardown, before_each, ...: name the block it belongs to
    local parent = busted.parent(element)
    local where_ = parent and parent.descriptor ~= "file" and handler.getFullName(parent)
      or (parent and parent.descriptor == "file" and "file " .. tostring(parent.name)) or "?"
    return where_ .. " (" .. d .. ")"
  end

  -- display names of errors outside tests, keyed by their trace table (the
  -- base handler records the same trace with the error, after we see it)
  local display = setmetatable({}, { __mode = "k" })

  handler.blockError = function(element, parent, message, trace)
    if element.descriptor ~= "it" then
      local name = block_name(element)
      if type(trace) == "table" then display[trace] = name end
      io_write("ERROR    ", name, "\n")
      io_flush()
    end
    return nil, true
  end

  local function describe_failure(kind, f)
    local name = f.name
    if f.element and f.element.descriptor ~= "it" and f.trace then name = display[f.trace] or name end
    local lines = { "", kind .. ": " .. name }
    local trace = f.trace
    if trace and trace.short_src then
      lines[#lines + 1] = "  at " .. where(trace)
    elseif f.element and f.element.trace and f.element.trace.short_src then
      lines[#lines + 1] = "  at " .. where(f.element.trace)
    end
    local msg = message_text(f.message)
    lines[#lines + 1] = "  " .. msg:gsub("\n", "\n  ")
    if trace and trace.traceback and trace.traceback ~= "" then
      lines[#lines + 1] = "  " .. trace.traceback:gsub("^\n", ""):gsub("\n", "\n  ")
    end
    return table.concat(lines, "\n")
  end

  local function write_results()
    local path = os.getenv("LUNAS_RESULTS")
    if not path or path == "" then return end
    local f, err = io.open(path, "w")
    if not f then
      io.stderr:write("output.lua: cannot write results: ", tostring(err), "\n")
      return
    end
    f:write("passed ", totals.passed, "\n")
    f:write("failed ", totals.failed, "\n")
    f:write("errors ", totals.errors, "\n")
    for _, p in ipairs(totals.pending) do
      f:write("pending ", p.name, "\t", p.reason, "\t", p.where, "\n")
    end
    f:close()
  end

  handler.suiteEnd = function()
    for _, f in ipairs(handler.failures) do
      io_write(describe_failure("FAILURE", f), "\n")
    end
    for _, e in ipairs(handler.errors) do
      io_write(describe_failure("ERROR", e), "\n")
    end

    totals.passed = totals.passed + handler.successesCount
    totals.failed = totals.failed + handler.failuresCount
    totals.errors = totals.errors + handler.errorsCount
    for _, p in ipairs(handler.pendings) do
      totals.pending[#totals.pending + 1] = {
        name = one_line(p.name),
        reason = pending_reason(p),
        where = where(p.trace or (p.element and p.element.trace)),
      }
    end

    io_write(string.format("\n%d passed / %d failed / %d errors / %d pending : %.3f s\n",
      handler.successesCount, handler.failuresCount, handler.errorsCount,
      handler.pendingsCount, handler.getDuration()))
    io_flush()
    write_results()
    return nil, true
  end

  -- before the suite starts, write zero counts so a results file always exists
  -- once busted got this far (a missing file means busted died earlier)
  handler.suiteStart = function()
    write_results()
    return nil, true
  end

  busted.subscribe({ "suite", "start" }, handler.suiteStart)
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  for _, descriptor in ipairs({ "file", "describe", "strict_setup", "strict_teardown",
                                "lazy_setup", "lazy_teardown", "before_each", "after_each" }) do
    busted.subscribe({ "error", descriptor }, handler.blockError)
    busted.subscribe({ "failure", descriptor }, handler.blockError)
  end

  return handler
end
