-- wrk script for bench_relay.py: POST one fixed chat request, report figures as JSON.
--   wrk -t1 -cN -dS --latency -s chat_post.lua URL -- BODY_FILE [BEARER_KEY]
-- The body is read once per thread in init(); wrk then sends the same request every time.
-- done() prints one line "BENCH_JSON {...}" with latency in microseconds.

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
