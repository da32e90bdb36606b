-- POST /requests with a unique external_id per request: args = <api key> <tag>.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
require "common"
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
function init(args)
  key = args[1]
  tag = args[2]
  n = 0
end
function request()
  n = n + 1
  local ext = tag .. "-" .. tid .. "-" .. n
  local body = '{"channel":"phone","property_id":"HY","area":"公共区域' .. ext .. '",' ..
    '"reporter":{"kind":"resident","name":"测试住户"},"description":"楼道水管漏水，地面积水",' ..
    '"category":"repair","subcategory":"plumbing","external_id":"' .. ext .. '"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
end
done = bench_done
