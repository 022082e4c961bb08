-- wrk script: POST /api/event with a mix of sites, long-tailed pages, browser user agents, a few
-- bots, and client addresses spread over the IPv4 space (X-Forwarded-For; start Glimpse with
-- proxy.trusted = ["127.0.0.1/32"]). Requests are rendered once per thread in init(), so wrk
-- spends its time sending, not formatting.
--
--   wrk -t2 -c64 -d20s --latency -s benches/wrk/events.lua http://127.0.0.1:8080
--
-- Sites are site0.example .. site199.example (GLIMPSE_SITES must list them; see the README).

local uas = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
  "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}
local referrers = { "", "", "", "https://www.google.com/", "https://news.ycombinator.com/item?id=4242", "https://t.co/x1y2z3" }
local sections = { "blog", "docs", "pricing", "products", "about", "changelog" }

-- Zipf-like rank in [0, n): a few pages get most views.
local function zipf(n)
  local h = math.log(n) + 0.577
  return math.min(n - 1, math.floor(math.exp(math.random() * h) - 1))
end

local requests = {}
local count = 0
local index = 0

function init(args)
  -- WRK_SEED fixes the mix, for runs that must send the same requests (instruction counts).
  local seed = tonumber(os.getenv("WRK_SEED") or "")
  math.randomseed(seed or (os.time() + math.floor(os.clock() * 1e6)))
  for i = 1, 20000 do
    local site = "site" .. zipf(200) .. ".example"
    local page = zipf(5000)
    local body = string.format('{"n":"pageview","u":"https://%s/%s/%d","r":"%s"}',
      site, sections[page % #sections + 1], page, referrers[math.random(#referrers)])
    local ip = string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255),
      math.random(0, 255), math.random(1, 254))
    local ua = (math.random() < 0.05) and uas[8] or uas[math.random(7)]
    requests[i] = wrk.format("POST", "/api/event", {
      ["Content-Type"] = "text/plain",
      ["User-Agent"] = ua,
      ["Accept-Language"] = "en-US,en;q=0.9",
      ["X-Forwarded-For"] = ip,
    }, body)
  end
  count = #requests
end

function request()
  index = index % count + 1
  return requests[index]
end
