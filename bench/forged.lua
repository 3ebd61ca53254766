-- wrk script: POST a different body each time, round-robin over the file given after `--`.
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/regapp/1/register", {["Content-Type"] = "application/json"}, bodies[i])
end
