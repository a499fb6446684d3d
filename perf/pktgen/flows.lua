-- ctfwd's benchmark traffic for pktgen-dpdk: N UDP flows from the inside
-- port and their exact replies from the outside port, so that a stateful
-- firewall between the two sees real conversations.
--
-- Port 0 (cabled to ctfwd's inside port) sends from 198.18.0.1 ... (N
-- addresses, range mode) port 1024 to 198.19.0.1 port 53; port 1 (cabled
-- to ctfwd's outside port) sends the mirror image, from 198.19.0.1 port
-- 53 to the same N addresses. The inside port starts first, so every
-- connection exists before its replies come.
--
-- Settings from the environment (all optional):
--   CTFWD_FLOWS  flows, at most 65,536 (default 1000)
--   CTFWD_SIZE   frame size without CRC, 64 to 1518 (default 64)
--   CTFWD_PROTO  udp or tcp (default udp; pktgen's TCP frames carry only
--                ACK, which the firewall picks up mid-stream as `loose`
--                allows)
--   CTFWD_MODE   "rate": send at 100% for CTFWD_SECONDS and print the
--                receive rates; "rfc2544": search the zero-loss rate
--                (default rate)
--   CTFWD_SECONDS trial length (default 5)
--   CTFWD_OUT    file the results are appended to (default stdout only)
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;../?.lua"
require "Pktgen"

local flows = tonumber(os.getenv("CTFWD_FLOWS") or "1000")
local size = tonumber(os.getenv("CTFWD_SIZE") or "64")
local proto = os.getenv("CTFWD_PROTO") or "udp"
local mode = os.getenv("CTFWD_MODE") or "rate"
local seconds = tonumber(os.getenv("CTFWD_SECONDS") or "5")
local outfile = os.getenv("CTFWD_OUT")

local function say(line)
  print(line)
  if outfile then
    local f = io.open(outfile, "a")
    f:write(line .. "\n")
    f:close()
  end
end

-- The last flow's address: 198.18.0.1 plus flows - 1.
local last = flows - 1 + 1
local last_ip = string.format("198.18.%d.%d", last // 256, last % 256)

local function setup()
  pktgen.stop("all")
  pktgen.reset("all")
  pktgen.set("all", "size", size)
  pktgen.set("all", "burst", 32)
  pktgen.range.ip_proto("all", proto)
  pktgen.range.pkt_size("all", "start", size)
  pktgen.range.pkt_size("all", "inc", 0)
  pktgen.range.pkt_size("all", "min", size)
  pktgen.range.pkt_size("all", "max", size)
  -- Inside: the clients' addresses step through the range; all else fixed.
  pktgen.range.src_ip("0", "start", "198.18.0.1")
  pktgen.range.src_ip("0", "inc", "0.0.0.1")
  pktgen.range.src_ip("0", "min", "198.18.0.1")
  pktgen.range.src_ip("0", "max", last_ip)
  pktgen.range.dst_ip("0", "start", "198.19.0.1")
  pktgen.range.dst_ip("0", "inc", "0.0.0.0")
  pktgen.range.dst_ip("0", "min", "198.19.0.1")
  pktgen.range.dst_ip("0", "max", "198.19.0.1")
  pktgen.range.src_port("0", "start", 1024)
  pktgen.range.src_port("0", "inc", 0)
  pktgen.range.src_port("0", "min", 1024)
  pktgen.range.src_port("0", "max", 1024)
  pktgen.range.dst_port("0", "start", 53)
  pktgen.range.dst_port("0", "inc", 0)
  pktgen.range.dst_port("0", "min", 53)
  pktgen.range.dst_port("0", "max", 53)
  -- Outside: the exact replies, the clients' addresses as destinations.
  pktgen.range.src_ip("1", "start", "198.19.0.1")
  pktgen.range.src_ip("1", "inc", "0.0.0.0")
  pktgen.range.src_ip("1", "min", "198.19.0.1")
  pktgen.range.src_ip("1", "max", "198.19.0.1")
  pktgen.range.dst_ip("1", "start", "198.18.0.1")
  pktgen.range.dst_ip("1", "inc", "0.0.0.1")
  pktgen.range.dst_ip("1", "min", "198.18.0.1")
  pktgen.range.dst_ip("1", "max", last_ip)
  pktgen.range.src_port("1", "start", 53)
  pktgen.range.src_port("1", "inc", 0)
  pktgen.range.src_port("1", "min", 53)
  pktgen.range.src_port("1", "max", 53)
  pktgen.range.dst_port("1", "start", 1024)
  pktgen.range.dst_port("1", "inc", 0)
  pktgen.range.dst_port("1", "min", 1024)
  pktgen.range.dst_port("1", "max", 1024)
  pktgen.set_range("all", "on")
end

-- Runs both directions at `rate` percent for `secs` seconds, inside
-- first; returns packets sent and received over both ports.
local function trial(rate, secs)
  pktgen.stop("all")
  pktgen.delay(500)
  pktgen.clr()
  pktgen.set("all", "rate", rate)
  pktgen.start("0")
  pktgen.delay(200)
  pktgen.start("1")
  pktgen.delay(secs * 1000)
  local r = pktgen.portStats("all", "rate")
  pktgen.stop("all")
  -- What is still in flight arrives.
  pktgen.delay(1000)
  local p = pktgen.portStats("all", "port")
  local tx = p[0].opackets + p[1].opackets
  local rx = p[0].ipackets + p[1].ipackets
  return tx, rx, r[0].pkts_rx + r[1].pkts_rx
end

setup()
if mode == "rfc2544" then
  -- RFC 2544 section 26.1: the highest rate with no frame lost, searched
  -- by halving between the last rate that lost none and the last that did.
  local lo, hi, best = 0, 100, 0
  local rate = 100
  local full_tx = nil
  for _ = 1, 7 do
    local tx, rx = trial(rate, seconds)
    local lost = tx - rx
    say(string.format("trial rate=%.2f%% tx=%d rx=%d lost=%d", rate, tx, rx, lost))
    -- pktgen paces by the link speed; ports that report none (net_memif)
    -- send at full speed whatever the rate, and no search can work.
    full_tx = full_tx or tx
    if rate <= 50 and tx > 0.75 * full_tx then
      say("zero-loss search not possible: pktgen's rate setting has no effect on these ports")
      pktgen.quit()
      return
    end
    if lost <= 0 and tx > 0 then
      best = math.max(best, rate)
      lo = rate
    else
      hi = rate
    end
    rate = (lo + hi) / 2
  end
  local tx, rx = trial(best, seconds)
  say(string.format("zero-loss rate=%.2f%% pps=%.0f lost=%d flows=%d size=%d proto=%s",
    best, rx / seconds, tx - rx, flows, size, proto))
else
  local tx, rx, pps = trial(100, seconds)
  say(string.format("rate pps=%d tx=%d rx=%d lost=%d flows=%d size=%d proto=%s",
    pps, tx, rx, tx - rx, flows, size, proto))
end
pktgen.quit()
