-- wrk script: every request is a new subscription (a distinct investor and deal pair, a
-- fresh Idempotency-Key), from the tokens and deals that `local bench http-setup` wrote.
-- wrk itself reports any non-2xx answers ("Non-2xx or 3xx responses").
--   wrk -t2 -c32 -d30s -s infra/bench/subscribe.lua http://127.0.0.1:3000 -- <setup.json>
local tokens, deals = {}, {}
local counter = 0

function init(args)
  local file = assert(io.open(args[1] or "bench-setup.json", "r"))
  local text = file:read("*a")
  file:close()
  for token in text:gmatch('"token":"([^"]+)"') do tokens[#tokens + 1] = token end
  for deal in text:gmatch('"deal":"([^"]+)"') do deals[#deals + 1] = deal end
  -- Threads start at different offsets so they never send the same pair.
  counter = (tonumber(wrk.thread:get("id")) or 0) * 1000003
end

function setup(thread)
  thread:set("id", tostring(setup_id or 0))
  setup_id = (setup_id or 0) + 1
end

request = function()
  counter = counter + 1
  local investor = counter % #tokens + 1
  local deal = math.floor(counter / #tokens) % #deals + 1
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[investor],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "wrk-" .. counter,
  }
  return wrk.format("POST", "/v1/deals/" .. deals[deal] .. "/subscriptions", headers, '{"units":10}')
end

done = function(summary, latency)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
