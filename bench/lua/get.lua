-- GET /requests/<number>, cycling through the numbers in a file: args = <api key> <file>.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
require "common"
function init(args)
  key = args[1]
  numbers = {}
  for line in io.lines(args[2]) do
    if #line > 0 then numbers[#numbers + 1] = line end
  end
  i = math.random(#numbers)
end
function request()
  i = (i % #numbers) + 1
  return wrk.format("GET", wrk.path .. "/" .. numbers[i], {["X-API-Key"] = key})
end
done = bench_done
