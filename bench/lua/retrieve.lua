-- 5. Retrieve by id: GET /ngsi-ld/v1/entities/{id}.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local ids = c.lines("ids.txt")

function init(args)
  c.seed()
end

function request()
  return wrk.format("GET", "/ngsi-ld/v1/entities/" .. ids[math.random(#ids)])
end
