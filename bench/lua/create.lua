-- 1. Create single entities: POST /ngsi-ld/v1/entities, a unique id per request.
-- wrk script; see common.lua for the data files, BENCH_* variables and the result line.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local c = require("common")

-- create.json is one entity whose id holds the marker @@ID@@
local parts = c.split(c.read("create.json"), "@@ID@@")
assert(#parts == 2, "create.json must hold exactly one @@ID@@")
local prefix
local counter = 0

function init(args)
  c.seed()
  -- random prefix + thread id + per-thread counter: ids never collide
  prefix = "c" .. c.random_hex(4) .. "t" .. tostring(thread_id or 0) .. "-"
end

function request()
  counter = counter + 1
  local body = parts[1] .. prefix .. counter .. parts[2]
  return wrk.format("POST", "/ngsi-ld/v1/entities", c.json_headers, body)
end
