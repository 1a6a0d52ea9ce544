-- The Markdown formatter of the API reference (config.ld: format = "lunas_markdown"; the Makefile and
-- tests/doc_spec.lua put doc/ on LUA_PATH). It is Debian's lua-markdown with the doc comments' text made safe
-- first, because lunas's comments are full of identifiers that plain Markdown would mangle:
--   * underscores: "no_new_privs" would become "no<em>new</em>privs", so every "_" outside code is escaped;
--   * asterisks: "CLONE_NEW*" would open an emphasis, so "*" is escaped too, but for a list bullet;
--   * angle brackets: "E<number>" and "local x <close>" would be swallowed as HTML tags, so a "<" that does not
--     open an HTML tag LDoc itself produces (links, code blocks) is escaped.
-- Code is left alone: `code spans`, indented code blocks and the <pre> blocks LDoc has already rendered (LDoc turns
-- most code spans into <code> itself, with its own escaped underscores, which stay as they are).
-- Without lua-markdown, requiring this module fails, and LDoc falls back to another formatter or plain text.
-- LDoc runs it in its own interpreter (Lua 5.1 or 5.2 on Debian): plain Lua 5.1.
local markdown = require "markdown"

local HTML_TAGS = {}
for name in ("a b br code dd div dl dt em h1 h2 h3 h4 h5 h6 i img li ol p pre span strong sub sup table td th "
  .. "tr tt ul"):gmatch("%S+") do
  HTML_TAGS[name] = true
end

-- Text that is not code: escapes what Markdown would take for emphasis, and stray "<".
local function escape_text(s)
  -- LDoc escapes the underscores of the code it has already rendered itself: keep those as they are.
  s = s:gsub("\\?_", "\\_")
  s = s:gsub("([^\n\\])%*", "%1\\*")
  s = s:gsub("^%*([^ ])", "\\*%1")
  s = s:gsub("\n([ \t]*)%*([^ ])", "\n%1\\*%2")
  return (s:gsub("<(/?)([%w]*)", function(slash, name)
    if HTML_TAGS[name:lower()] then return "<" .. slash .. name end
    return "&lt;" .. slash .. name
  end))
end

-- A run of lines that holds no indented code: code spans and HTML tags are kept, the rest escaped.
local function escape_chunk(s)
  local out, pos = {}, 1
  while pos <= #s do
    local span_start, span_end, ticks = s:find("(`+)", pos)
    local tag_start, tag_end = s:find("</?%a[^<>]*>", pos)
    if tag_start and (not span_start or tag_start < span_start) then
      local name = s:sub(tag_start, tag_end):match("^</?(%a+)")
      out[#out + 1] = escape_text(s:sub(pos, tag_start - 1))
      out[#out + 1] = HTML_TAGS[name:lower()] and s:sub(tag_start, tag_end) or escape_text(s:sub(tag_start, tag_end))
      pos = tag_end + 1
    elseif span_start then
      local close_start, close_end = s:find(ticks, span_end + 1, true)
      if not close_start then
        out[#out + 1] = escape_text(s:sub(pos))
        break
      end
      out[#out + 1] = escape_text(s:sub(pos, span_start - 1))
      out[#out + 1] = s:sub(span_start, close_end)
      pos = close_end + 1
    else
      out[#out + 1] = escape_text(s:sub(pos))
      break
    end
  end
  return table.concat(out)
end

-- Text outside <pre> blocks: indented code blocks (4 spaces or a tab, after a blank line or more code) are kept.
local function escape_outside_pre(s)
  local out, chunk = {}, {}
  local previous_blank, in_code = true, false
  local function flush()
    if #chunk > 0 then
      out[#out + 1] = escape_chunk(table.concat(chunk, "\n"))
      chunk = {}
    end
  end
  local lines = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  for _, line in ipairs(lines) do
    local blank = line:match("^%s*$") ~= nil
    local indented = line:match("^    ") or line:match("^\t")
    in_code = indented and (previous_blank or in_code) and not blank or (in_code and blank)
    if in_code then
      flush()
      out[#out + 1] = line
    else
      chunk[#chunk + 1] = line
    end
    previous_blank = blank
  end
  flush()
  -- Rejoin: code lines and chunks each stand for whole lines.
  return table.concat(out, "\n")
end

return function(text)
  local out, pos = {}, 1
  while true do
    local pre_start, pre_end = text:find("<pre[%s>].-</pre>", pos)
    if not pre_start then
      out[#out + 1] = escape_outside_pre(text:sub(pos))
      break
    end
    out[#out + 1] = escape_outside_pre(text:sub(pos, pre_start - 1))
    out[#out + 1] = text:sub(pre_start, pre_end)
    pos = pre_end + 1
  end
  return markdown(table.concat(out))
end
