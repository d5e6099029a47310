-- wrk script for the sandbox throughput cross-check (docs/PERFORMANCE.md).
-- WRK_TOKEN: a sandbox access token; WRK_PATHS: a file with one request path per line (the benchmark's mix, as
-- printed by `api_throughput --serve`). Each connection walks the list from its own offset.
local token = os.getenv("WRK_TOKEN")
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do
  if #line > 0 then paths[#paths + 1] = line end
end
local headers = { ["Authorization"] = "Bearer " .. token }
local i = 0
local n = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
