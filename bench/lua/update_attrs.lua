-- 4. Update of three attributes: PATCH /entities/{id}/attrs.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

local ids = c.lines("ids.txt")
local categories = { "lighting", "environment", "parking", "waste", "weather" }
local template = '{"category":{"type":"Property","value":"%s"},'
  .. '"batteryLevel":{"type":"Property","value":%.3f},'
  .. '"temperature":{"type":"Property","value":%.2f,"datasetId":"urn:ngsi-ld:Dataset:a"}}'

function init(args)
  c.seed()
end

function request()
  local id = ids[math.random(#ids)]
  local body = string.format(
    template, categories[math.random(#categories)], math.random(), math.random() * 100
  )
  return wrk.format("PATCH", "/ngsi-ld/v1/entities/" .. id .. "/attrs", c.json_headers, body)
end
