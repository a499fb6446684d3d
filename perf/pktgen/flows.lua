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
local last_ip = string.format("198.18.%d.%d", flows // 256, flows % 256)

-- A range-mode field that keeps one value.
local function fixed(port, field, value)
  local f = pktgen.range[field]
  f(port, "start", value)
  f(port, "inc", type(value) == "string" and "0.0.0.0" or 0)
  f(port, "min", value)
  f(port, "max", value)
end

-- A range-mode address that steps by one from `first` to `last`.
local function stepped(port, field, first, last_value)
  local f = pktgen.range[field]
  f(port, "start", first)
  f(port, "inc", "0.0.0.1")
  f(port, "min", first)
  f(port, "max", last_value)
end

local function setup()
  pktgen.stop("all")
  pktgen.reset("all")
  pktgen.set("all", "size", size)
  pktgen.set("all", "burst", 32)
  pktgen.range.ip_proto("all", proto)
  fixed("all", "pkt_size", size)
  -- Inside: the clients' addresses step through the range; all else fixed.
  stepped("0", "src_ip", "198.18.0.1", last_ip)
  fixed("0", "dst_ip", "198.19.0.1")
  fixed("0", "src_port", 1024)
  fixed("0", "dst_port", 53)
  -- Outside: the exact replies, the clients' addresses as destinations.
  fixed("1", "src_ip", "198.19.0.1")
  stepped("1", "dst_ip", "198.18.0.1", last_ip)
  fixed("1", "src_port", 53)
  fixed("1", "dst_port", 1024)
  pktgen.set_range("all", "on")
end

-- Runs both directions at `rate` percent for `secs` seconds, inside
-- first; returns frames sent and received over both ports.
local function trial(rate, secs)
  pktgen.stop("all")
  pktgen.delay(500)
  pktgen.clr()
  pktgen.set("all", "rate", rate)
  pktgen.start("0")
  pktgen.delay(200)
  pktgen.start("1")
  pktgen.delay(secs * 1000)
  pktgen.stop("all")
  -- What is still in flight arrives.
  pktgen.delay(1000)
  local p = pktgen.portStats("all", "port")
  local tx = p[0].opackets + p[1].opackets
  local rx = p[0].ipackets + p[1].ipackets
  return tx, rx
end

setup()
if mode == "rfc2544" then
  -- RFC 2544 section 26.1: the highest rate with no frame lost, searched
  -- by halving between the last rate that lost none and the last that did.
  local full_tx, full_rx = trial(100, seconds)
  say(string.format("trial rate=100.00%% tx=%d rx=%d lost=%d", full_tx, full_rx, full_tx - full_rx))
  -- pktgen paces by link speed: on ports that report none (net_memif) it
  -- sends at full speed whatever the rate, and no search can work.
  local tenth_tx = trial(10, seconds)
  if tenth_tx > 0.5 * full_tx then
    say(string.format("zero-loss search not possible: at 10%% pktgen still sent %d frames, "
      .. "%d at 100%%: its rate setting has no effect on these ports", tenth_tx, full_tx))
  else
    local lo, hi = 0, 100
    if full_tx - full_rx <= 0 then
      lo = 100
    end
    for _ = 1, 7 do
      if hi - lo < 0.5 then
        break
      end
      local rate = (lo + hi) / 2
      local tx, rx = trial(rate, seconds)
      say(string.format("trial rate=%.2f%% tx=%d rx=%d lost=%d", rate, tx, rx, tx - rx))
      if tx - rx <= 0 and tx > 0 then
        lo = rate
      else
        hi = rate
      end
    end
    -- The rate found, run once more to confirm it.
    local tx, rx = trial(lo, seconds)
    say(string.format("zero-loss rate=%.2f%% pps=%.0f lost=%d%s flows=%d size=%d proto=%s",
      lo, rx / seconds, tx - rx, tx - rx > 0 and " (not confirmed)" or "", flows, size, proto))
  end
else
  -- Frames received over the trial, not pktgen's instantaneous rate.
  local tx, rx = trial(100, seconds)
  say(string.format("rate pps=%.0f tx=%d rx=%d lost=%d flows=%d size=%d proto=%s",
    rx / seconds, tx, rx, tx - rx, flows, size, proto))
end
pktgen.quit()
