-- Temporal: GET /ngsi-ld/v1/temporal/entities?type=T&attrs=A&timerel=between&timeAt=..
-- &endTimeAt=..&limit=N, with a random window among those of the data file.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
--
-- Environment (besides common.lua's):
--   BENCH_TYPE   the entity type queried
--   BENCH_ATTRS  the attrs parameter
--   BENCH_LIMIT  the page size
-- windows.txt holds one "timeAt endTimeAt" pair a line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local windows = {}
for _, line in ipairs(c.lines("windows.txt")) do
  local from, to = string.match(line, "^(%S+)%s+(%S+)$")
  windows[#windows + 1] = { from, to }
end
local prefix = "/ngsi-ld/v1/temporal/entities?type=" .. c.urlencode(os.getenv("BENCH_TYPE"))
  .. "&attrs=" .. c.urlencode(os.getenv("BENCH_ATTRS") or "pm25")
  .. "&limit=" .. (os.getenv("BENCH_LIMIT") or "10")
  .. "&timerel=between"

function init(args)
  c.seed()
end

function request()
  local w = windows[math.random(#windows)]
  return wrk.format("GET", prefix .. "&timeAt=" .. w[1] .. "&endTimeAt=" .. w[2])
end
