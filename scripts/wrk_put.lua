-- wrk script for scripts/bench.ts: PUT /v1/kv/bench-<n> with a 1 KiB body, keys cycling over
-- BENCH_KEYS (the same key space redis-benchmark gets with -r). BENCH_CONTENT_TYPE picks the body:
-- "json" sends a 1024-byte JSON string, "bytes" 1024 raw bytes as application/octet-stream.
-- done() prints one JSON line the benchmark parses; latencies are in microseconds.

local keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
local kind = os.getenv("BENCH_CONTENT_TYPE") or "json"
local body
local headers = {}
if kind == "bytes" then
  body = string.rep("x", 1024)
  headers["Content-Type"] = "application/octet-stream"
else
  body = '"' .. string.rep("x", 1022) .. '"'
  headers["Content-Type"] = "application/json"
end
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/bench-" .. (counter % keys), headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
