-- wrk script: like forged.lua, but each request claims another client address (X-Forwarded-For, believed from
-- loopback): a botnet behind nginx, so every request is charged to a fresh per-client allowance.
local bodies = {}
local i = 0
local n = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  n = tonumber(args[2] or "0") * 16777216
end
request = function()
  i = i % #bodies + 1
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("POST", "/regapp/1/register", {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip}, bodies[i])
end
