-- 7. Query by type and relationship object: ?type=T&q=refOwner=="urn:ngsi-ld:Owner:k"&limit=100.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local types = c.lines("types.txt")
local owners = tonumber(os.getenv("BENCH_OWNERS") or "100")

function init(args)
  c.seed()
end

function request()
  local q = string.format('refOwner=="urn:ngsi-ld:Owner:%d"', math.random(owners))
  local path = "/ngsi-ld/v1/entities?type=" .. types[math.random(#types)]
    .. "&q=" .. c.urlencode(q) .. "&limit=100"
  return wrk.format("GET", path)
end
