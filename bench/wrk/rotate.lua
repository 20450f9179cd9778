-- Rotate POST requests over a file of JSON bodies, one body per line.
--   wrk -s bench/wrk/rotate.lua URL -- BODIES_FILE PATH
-- Every request is pre-formatted once per thread in init(), so the Lua side costs wrk
-- next to nothing while measuring. Threads start at different offsets so that the
-- connections do not all ask the same question at the same moment.

local requests = {}
local n = 0
local i = 0

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open bodies file " .. tostring(args[1]))
  local path = args[2]
  local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
  for line in file:lines() do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("POST", path, headers, line)
    end
  end
  file:close()
  assert(n > 0, "no bodies in " .. args[1])
  -- `id` is not available in init; a random offset per thread spreads the rotation.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  i = math.random(0, n - 1)
end

function request()
  i = i % n + 1
  return requests[i]
end
