-- wrk script for bench_relay.py: POST one chat request, report figures as JSON.
--   wrk -t1 -cN -dS --latency -s chat_post.lua URL -- BODY_FILE [BEARER_KEY [FIRST_REF]]
-- The body is read once per thread in init(). Where it holds the token "aaaaaaaa" (the
-- newest turn's conversation ref), every request gets its own ref in its place, as a real
-- chat's newest turn is new each time while the history repeats; otherwise every request
-- is the same. done() prints one line "BENCH_JSON {...}" with latency in microseconds.

local prefix, suffix, counter = nil, nil, 0
local letters = "abcdefghijklmnopqrstuvwxyz"

function init(args)
   local path = args[1]
   if path == nil then
      error("chat_post.lua: pass the body file after --")
   end
   local f = assert(io.open(path, "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   if args[2] ~= nil and args[2] ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. args[2]
   end
   counter = tonumber(args[3] or "0") or 0
   local at = string.find(wrk.body, "aaaaaaaa", 1, true)
   if at ~= nil then
      prefix = string.sub(wrk.body, 1, at - 1)
      suffix = string.sub(wrk.body, at + 8)
   end
end

-- The request's ref: the counter in base 26, eight letters wide (same body length).
local function ref(n)
   local out = {}
   for i = 8, 1, -1 do
      local digit = n % 26
      out[i] = string.sub(letters, digit + 1, digit + 1)
      n = (n - digit) / 26
   end
   return table.concat(out)
end

function request()
   if prefix == nil then
      return wrk.format()
   end
   counter = counter + 1
   return wrk.format(nil, nil, nil, prefix .. ref(counter) .. suffix)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d, ' ..
      '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, ' ..
      '"err_timeout": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
