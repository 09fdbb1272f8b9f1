-- Temporal: GET /ngsi-ld/v1/temporal/entities/{id}?<query> for a random id of one group.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
--
-- Environment (besides common.lua's):
--   BENCH_IDS    data file with the group's entity ids, one a line (e.g. ids_C.txt)
--   BENCH_QUERY  the query string, without "?" (attrs, options, aggrMethods, lastN ...)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local ids = c.lines(assert(os.getenv("BENCH_IDS"), "BENCH_IDS is not set"))
local query = os.getenv("BENCH_QUERY") or ""
local suffix = (#query > 0) and ("?" .. query) or ""

function init(args)
  c.seed()
end

function request()
  return wrk.format("GET", "/ngsi-ld/v1/temporal/entities/" .. ids[math.random(#ids)] .. suffix)
end
