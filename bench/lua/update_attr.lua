-- 3. Partial attribute update: PATCH /entities/{id}/attrs/batteryLevel {"value": n}.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local ids = c.lines("ids.txt")

function init(args)
  c.seed()
end

function request()
  local id = ids[math.random(#ids)]
  local body = string.format('{"value":%.3f}', math.random())
  local path = "/ngsi-ld/v1/entities/" .. id .. "/attrs/batteryLevel"
  return wrk.format("PATCH", path, c.json_headers, body)
end
