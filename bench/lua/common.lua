-- Shared by every workload script: data files, status accounting and the JSON summary.
--
-- Each workload script does `local c = require("common")` and defines request()
-- (and init() when it needs per-thread state).  This module installs the global
-- setup(), response() and done() hooks.  done() prints one line
-- "BENCH_RESULT {json}" that bench/broker.py parses.
--
-- Environment:
--   BENCH_DATA    directory holding the data files written by the runner
--   BENCH_EXPECT  comma-separated HTTP statuses that count as success (e.g. "201,204")

local M = {}

M.data_dir = os.getenv("BENCH_DATA") or "."

local expected = {}
for code in string.gmatch(os.getenv("BENCH_EXPECT") or "200", "%d+") do
  expected[tonumber(code)] = true
end

--- The whole content of a data file.
function M.read(name)
  local f = assert(io.open(M.data_dir .. "/" .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

--- The non-empty lines of a data file.
function M.lines(name)
  local t = {}
  for line in io.lines(M.data_dir .. "/" .. name) do
    if #line > 0 then
      t[#t + 1] = line
    end
  end
  return t
end

--- Split s on every occurrence of the plain-text marker.
function M.split(s, marker)
  local parts, start = {}, 1
  while true do
    local i, j = string.find(s, marker, start, true)
    if not i then
      parts[#parts + 1] = string.sub(s, start)
      return parts
    end
    parts[#parts + 1] = string.sub(s, start, i - 1)
    start = j + 1
  end
end

--- Percent-encode everything but RFC 3986 unreserved characters.
function M.urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(ch)
    return string.format("%%%02X", string.byte(ch))
  end))
end

--- A random hex string from /dev/urandom (so ids never collide across threads or runs).
function M.random_hex(nbytes)
  local f = assert(io.open("/dev/urandom", "rb"))
  local raw = f:read(nbytes)
  f:close()
  return (string.gsub(raw, ".", function(ch)
    return string.format("%02x", string.byte(ch))
  end))
end

--- Seed math.random differently in every thread.
function M.seed()
  local hex = M.random_hex(4)
  math.randomseed(tonumber(hex, 16))
end

M.json_headers = { ["Content-Type"] = "application/json" }

-- ---------------------------------------------------------------- hooks

local threads = {}
local next_thread_id = 0

function setup(thread)
  next_thread_id = next_thread_id + 1
  thread:set("thread_id", next_thread_id)
  threads[#threads + 1] = thread
end

-- per-thread state, read back by done() through thread:get()
statuses = {}
bad_sample = nil

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if not expected[status] and bad_sample == nil then
    bad_sample = key .. " " .. string.sub(body or "", 1, 600)
  end
end

local function encode(v)
  local kind = type(v)
  if kind == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return "null"
    end
    return string.format("%.17g", v)
  elseif kind == "string" then
    return '"' .. string.gsub(v, '[%c"\\]', function(ch)
      return string.format("\\u%04x", string.byte(ch))
    end) .. '"'
  elseif kind == "table" then
    local items = {}
    for k, item in pairs(v) do
      items[#items + 1] = encode(tostring(k)) .. ":" .. encode(item)
    end
    return "{" .. table.concat(items, ",") .. "}"
  elseif kind == "boolean" then
    return tostring(v)
  end
  return "null"
end

function done(summary, latency, requests)
  local counts, sample = {}, nil
  for _, thread in ipairs(threads) do
    local got = thread:get("statuses") or {}
    for code, n in pairs(got) do
      counts[code] = (counts[code] or 0) + n
    end
    sample = sample or thread:get("bad_sample")
  end
  local result = {
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    errors = {
      connect = summary.errors.connect,
      read = summary.errors.read,
      write = summary.errors.write,
      status = summary.errors.status,
      timeout = summary.errors.timeout,
    },
    latency_us = {
      p50 = latency:percentile(50),
      p95 = latency:percentile(95),
      p99 = latency:percentile(99),
      mean = latency.mean,
      max = latency.max,
    },
    statuses = counts,
    bad_sample = sample,
  }
  io.write("BENCH_RESULT ", encode(result), "\n")
end

return M
