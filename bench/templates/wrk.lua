math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local path = string.gsub(PATH, "{user}", function() return "u" .. math.random(0, USERS - 1) end)
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "p50_us": %d, '
    .. '"p90_us": %d, "p99_us": %d, "mean_us": %.1f}\n', summary.requests, summary.duration, e.connect + e.read
    + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
