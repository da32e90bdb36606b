-- GET of the URL's path and query as given: args = <api key>.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
require "common"
function init(args)
  key = args[1]
end
function request()
  return wrk.format("GET", nil, {["X-API-Key"] = key})
end
done = bench_done
