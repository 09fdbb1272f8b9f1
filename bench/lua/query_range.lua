-- 6. Query by type and a numeric range: ?type=T&q=temperature>=a;temperature<=b&limit=100.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local types = c.lines("types.txt")
-- BENCH_WIDTH: b - a; BENCH_MAX: the largest value of the attribute
local width = tonumber(os.getenv("BENCH_WIDTH") or "1.2")
local top = tonumber(os.getenv("BENCH_MAX") or "100")

function init(args)
  c.seed()
end

function request()
  local a = math.random() * (top - width)
  local q = string.format("temperature>=%.2f;temperature<=%.2f", a, a + width)
  local path = "/ngsi-ld/v1/entities?type=" .. types[math.random(#types)]
    .. "&q=" .. c.urlencode(q) .. "&limit=100"
  return wrk.format("GET", path)
end
