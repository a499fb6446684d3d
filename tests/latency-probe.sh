#!/usr/bin/env bash
# perf/src/bin/latency-probe against ctfwd firewall over a pair of
# net_memif links, at a light rate: the probe's bursts (Burst::alloc) reach
# ctfwd, each flow's original opens its connection before any reply, the
# replies pass as ESTABLISHED, and every frame comes back stamped. Not a
# speed test: the rate is far below what either side can do.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

flows=200
rate=100000
work=$(mktemp -d /tmp/ctfwd-probe.XXXXXX)
ctfwd_pid=
cleanup() {
  if [ -n "$ctfwd_pid" ]; then
    kill -INT "$ctfwd_pid" 2>/dev/null && { wait "$ctfwd_pid" 2>/dev/null || true; }
  fi
  rm -f "$work"/m0.sock "$work"/m1.sock "$work"/*.log
  rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

cargo build --release --quiet --bin ctfwd
cargo build --release --quiet -p ctfwd-perf --bin latency-probe
target/release/ctfwd --lcores=0@0,1@"$last_cpu" --no-huge -m 512 --no-pci \
  --file-prefix="probe-dut-$$" --log-level=lib.eal:warning \
  --vdev="net_memif0,role=server,socket=$work/m0.sock" \
  --vdev="net_memif1,role=server,socket=$work/m1.sock" \
  -- --forward-mode=firewall </dev/null >"$work/ctfwd.log" 2>&1 &
ctfwd_pid=$!
for _ in $(seq 100); do [ -S "$work/m1.sock" ] && break; sleep 0.1; done
timeout 120 target/release/latency-probe --lcores=0@0 --no-huge -m 256 --no-pci \
  --file-prefix="probe-gen-$$" --log-level=lib.eal:warning \
  --vdev="net_memif0,role=client,socket=$work/m0.sock" \
  --vdev="net_memif1,role=client,socket=$work/m1.sock" \
  -- --flows "$flows" --seconds 1 --rate "$rate" >"$work/probe.log" 2>&1 || true
kill -INT "$ctfwd_pid"
wait "$ctfwd_pid" || true
ctfwd_pid=

passed=0
failed=0
check() { # WHAT CONDITION...
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "latency-probe: FAILED: $what"
  fi
}
line=$(grep '^trial' "$work/probe.log" || true)
field() { echo "$line" | grep -o " $1=[0-9.]*" | cut -d= -f2; }
offered=$(field offered)
received=$(field received)
p50=$(field p50)
check "a trial ran" test -n "$line"
# A scheduler tick on the shared CPU may cost a few frames; 1% is allowed.
check "received $received of $offered" test "${received:-0}" -ge $((${offered:-1} * 99 / 100))
check "every frame came back with a latency (p50 $p50 us)" test -n "$p50"
check "each flow opened one connection" grep -q " connections=$flows " "$work/ctfwd.log"
check "no reply came before its connection" grep -q "new-from-outside=0 " "$work/ctfwd.log"
check "every mbuf sent or freed" grep -q "Mempool check: 0 of" "$work/ctfwd.log"
if [ "$failed" -gt 0 ]; then
  cat "$work/probe.log"
  tail -20 "$work/ctfwd.log"
fi
echo "$line"
echo "latency-probe: $passed passed, $failed failed"
[ "$failed" = 0 ]
