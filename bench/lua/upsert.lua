-- 2. Batch upsert: POST /ngsi-ld/v1/entityOperations/upsert with 1,000 new entities each.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

-- upsert.json is an array of entities whose ids hold the marker @@P@@; every
-- request replaces it with a fresh prefix, so each request upserts new entities.
local parts = c.split(c.read("upsert.json"), "@@P@@")
local prefix
local counter = 0

function init(args)
  c.seed()
  prefix = "u" .. c.random_hex(4) .. "t" .. tostring(thread_id or 0) .. "r"
end

function request()
  counter = counter + 1
  local body = table.concat(parts, prefix .. counter)
  return wrk.format("POST", "/ngsi-ld/v1/entityOperations/upsert", c.json_headers, body)
end
