#!/usr/bin/env bash
# Capture, as DPDK applications offer it: Debian's dpdk-dumpcap attaches to
# a running ctfwd as a secondary process and captures port 0's traffic.
# A secondary process can only map a primary whose memory is in huge
# pages, so this reserves some (2 MB pages, as root) on a private
# hugetlbfs mount, and gives back both at the end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

skip() {
  if [ -n "${CI:-}" ]; then
    echo "dumpcap: FAILED: $1"
    echo "dumpcap: 0 passed, 1 failed"
    exit 1
  fi
  echo "dumpcap: skipped: $1"
  exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root to reserve huge pages"
command -v dpdk-dumpcap >/dev/null || skip "no dpdk-dumpcap (package dpdk)"

pages=/proc/sys/vm/nr_hugepages
old_pages=$(cat "$pages")
work=$(mktemp -d /tmp/ctfwd-dumpcap.XXXXXX)
huge="$work/huge"
ctfwd_pid=
cleanup() {
  [ -n "$ctfwd_pid" ] && kill "$ctfwd_pid" 2>/dev/null && wait "$ctfwd_pid" 2>/dev/null
  mountpoint -q "$huge" && umount "$huge"
  echo "$old_pages" >"$pages"
  rm -f "$work"/*.pcap "$work"/*.pcapng "$work"/*.log "$work/commands"
  rmdir "$huge" "$work" 2>/dev/null || true
}
trap cleanup EXIT

# 384 pages of 2 MB: ctfwd's 256 MB and dumpcap's share.
free=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
if [ "$free" -lt 384 ]; then
  echo $((old_pages + 384 - free)) >"$pages"
fi
mkdir "$huge"
mount -t hugetlbfs -o pagesize=2M nodev "$huge"

cargo build --release --quiet --workspace
target/release/ctfwd-gen --flows 500 --requests 2 "$work/in.pcap" "$work/out.pcap" >/dev/null
mkfifo "$work/commands"
prefix="ctfwd-dumpcap-$$"
# Shared configuration (no --no-shconf): dumpcap finds ctfwd by prefix.
# No tx_pcap: the PMD then drops what is sent. With tx_pcap files in the
# work folder, each run left two empty pcap files at paths cut short,
# /tmp/ctfwd-d and /tmp/ctfwd-du; only this test did, where dpdk-dumpcap's
# secondary process attaches to the ports (the other tests give tx_pcap
# files too and leave nothing behind).
target/release/ctfwd --lcores=0@0,1@"$last_cpu" -m 256 --huge-dir="$huge" --no-pci \
  --file-prefix="$prefix" --log-level=lib.eal:warning \
  --vdev=net_pcap0,rx_pcap="$work/in.pcap" \
  --vdev=net_pcap1,rx_pcap="$work/out.pcap" \
  -- -i --forward-mode=firewall <"$work/commands" >"$work/ctfwd.log" 2>&1 &
ctfwd_pid=$!
exec 3>"$work/commands"
for _ in $(seq 100); do
  grep -q "Forwarding waits" "$work/ctfwd.log" && break
  sleep 0.1
done
grep -q "Packet capture: dpdk-dumpcap may attach" "$work/ctfwd.log" ||
  { cat "$work/ctfwd.log"; skip "ctfwd did not initialise rte_pdump"; }

# Forwarding waits for `start`, so the capture sees every frame of port 0.
timeout 30 dpdk-dumpcap --file-prefix="$prefix" -i 0 -c 1000 -w "$work/port0.pcapng" \
  >"$work/dumpcap.log" 2>&1 &
dumpcap_pid=$!
for _ in $(seq 100); do
  grep -q "Capturing on" "$work/dumpcap.log" && break
  sleep 0.1
done
echo start >&3
wait "$dumpcap_pid" || true
echo quit >&3
exec 3>&-
wait "$ctfwd_pid" || true
ctfwd_pid=
cat "$work/dumpcap.log"
got=$(sed -n "s/.*on interface 'net_pcap0': \([0-9]*\)\/\([0-9]*\).*/\1 \2/p" "$work/dumpcap.log")
received=${got% *}
dropped=${got#* }
if [ -n "$got" ] && [ "$received" -ge 1000 ] && [ "$dropped" = 0 ] &&
  grep -q "Mempool check: 0 of" "$work/ctfwd.log" &&
  [ "$(stat -c %s "$work/port0.pcapng")" -gt 60000 ]; then
  echo "dumpcap: captured $received frames of port 0 from a running ctfwd, 0 dropped"
  echo "dumpcap: 1 passed, 0 failed"
else
  cat "$work/ctfwd.log"
  echo "dumpcap: 0 passed, 1 failed"
  exit 1
fi
