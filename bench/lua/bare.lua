-- Reference: GET the bare Starlette handler (bench/bare_app.py).
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local path = "/ngsi-ld/v1/entities/urn:ngsi-ld:Bare:1"

function request()
  return wrk.format("GET", path)
end
