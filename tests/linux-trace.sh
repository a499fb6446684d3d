#!/usr/bin/env bash
# `ctfwd trace` against Linux's own conntrack on fragmented traffic. Three
# network namespaces: a client (198.18.2.1, 2001:2:0:2::1), a Linux router
# with nftables, and a server (198.18.3.1, 2001:2:0:3::1). The router
# captures what arrives on its two links (tcpdump -i any -Q in: fragments
# as they came) and, after its conntrack, logs each packet's ct state and
# direction to an NFLOG group, which a second tcpdump records. Real
# fragmented traffic (ping and UDP from the kernels of both hosts) and
# crafted fragment sequences (tests/linux-trace/craft.py: out of order,
# duplicated, overlapping, tiny, atomic; IPv4 and IPv6) go through it.
# `ctfwd trace --checksum` then reads the router's capture, and
# tests/linux-trace/compare.py matches both trackers' verdicts datagram by
# datagram. Everything created is removed on exit, even on failure; only
# processes this script started are killed, by PID.
#
# usage: tests/linux-trace.sh   (as root; prints "linux-trace: ... agree ...")
# LINUX_TRACE_KEEP=1 keeps the work directory (both captures, ctfwd's trace,
# the comparison) and prints its path, for looking into a disagreement.
set -uo pipefail
cd "$(dirname "$0")/.."
ctfwd=${CTFWD:-target/release/ctfwd}
id=$$
ns_c=ctfwd-lc-$id
ns_r=ctfwd-lr-$id
ns_s=ctfwd-ls-$id
work=$(mktemp -d /tmp/ctfwd-linux-trace.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "$ns_c" "$ns_r" "$ns_s"; do ip netns del "$ns" 2>/dev/null; done
  if [ -n "${LINUX_TRACE_KEEP:-}" ]; then echo "linux-trace: kept $work"; else rm -rf -- "$work"; fi
}
trap cleanup EXIT

for tool in ip ethtool ping nft tcpdump python3 "$ctfwd"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "linux-trace: $tool is missing (run scripts/setup)"
    exit 1
  fi
done

# Foreground only: a function run with & is a subshell, and its $! is not
# the process that must be stopped.
c() { ip netns exec "$ns_c" "$@"; }
r() { ip netns exec "$ns_r" "$@"; }
s() { ip netns exec "$ns_s" "$@"; }

# No router solicitations from anyone: the router's own loop back into its
# prerouting hook without crossing a link, so its capture never holds
# them, and the hosts' (to ff02::2, link-local) are not what is compared.
for ns in "$ns_c" "$ns_r" "$ns_s"; do
  ip netns add "$ns"
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.router_solicitations=0
done
ip link add lc$id netns "$ns_c" type veth peer name ra$id netns "$ns_r"
ip link add ls$id netns "$ns_s" type veth peer name rb$id netns "$ns_r"
c ip link set lc$id name eth0
s ip link set ls$id name eth0
r ip link set ra$id name eth-c
r ip link set rb$id name eth-s
c ip addr add 198.18.2.1/24 dev eth0
c ip addr add 2001:2:0:2::1/64 dev eth0 nodad
s ip addr add 198.18.3.1/24 dev eth0
s ip addr add 2001:2:0:3::1/64 dev eth0 nodad
r ip addr add 198.18.2.254/24 dev eth-c
r ip addr add 2001:2:0:2::fe/64 dev eth-c nodad
r ip addr add 198.18.3.254/24 dev eth-s
r ip addr add 2001:2:0:3::fe/64 dev eth-s nodad
for dev in eth-c eth-s; do r ip link set "$dev" up; r ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1; done
for ns in c s; do
  $ns ip link set eth0 up
  # Finished checksums (the comparison checks them) and frames as sent.
  $ns ethtool -K eth0 tx off tso off gso off gro off >/dev/null 2>&1
done
c ip route add default via 198.18.2.254
c ip -6 route add default via 2001:2:0:2::fe
s ip route add default via 198.18.3.254
s ip -6 route add default via 2001:2:0:3::fe
r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

# After Linux's defrag (-400) and conntrack (-200): one NFLOG record per
# datagram, its prefix the ctinfo as ctfwd names it.
r nft -f - <<'NFT'
table inet ctcmp {
  chain pre {
    type filter hook prerouting priority -150; policy accept;
    ct state invalid log group 5 prefix "INVALID"
    ct state untracked log group 5 prefix "UNTRACKED"
    ct state new log group 5 prefix "NEW"
    ct state established ct direction original log group 5 prefix "ESTABLISHED"
    ct state established ct direction reply log group 5 prefix "ESTABLISHED_REPLY"
    ct state related ct direction original log group 5 prefix "RELATED"
    ct state related ct direction reply log group 5 prefix "RELATED_REPLY"
  }
}
NFT

ip netns exec "$ns_r" tcpdump -i any -Q in --immediate-mode -B 32768 -U -w "$work/in.pcap" 2>"$work/in.log" &
pids+=($!)
ip netns exec "$ns_r" tcpdump -i nflog:5 --immediate-mode -B 32768 -U -w "$work/nflog.pcap" 2>"$work/nflog.log" &
pids+=($!)
# Both captures must be listening before anything is sent (neighbour
# discovery included), or the NFLOG one holds packets the other missed.
for log in in nflog; do
  for _ in $(seq 50); do grep -q "listening on" "$work/$log.log" && break; sleep 0.1; done
done
cat >"$work/echo.py" <<'PY'
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7007))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data[::-1], peer)
PY
ip netns exec "$ns_s" python3 "$work/echo.py" 198.18.3.1 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$ns_s" python3 "$work/echo.py" 2001:2:0:3::1 >/dev/null 2>&1 &
pids+=($!)
sleep 1

# Real fragmented traffic, from the hosts' own kernels.
c ping -q -c 2 -i 0.2 -s 3000 198.18.3.1 >/dev/null
c ping -6 -q -c 2 -i 0.2 -s 3000 2001:2:0:3::1 >/dev/null
s ping -q -c 1 -s 3000 198.18.2.1 >/dev/null # no answer to a reply it never asked for
cat >"$work/ask.py" <<'PY'
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2)
for size in (3000, 9000, 1400):
    s.sendto(bytes(size), (sys.argv[1], 7007))
    s.recvfrom(65535)
PY
c python3 "$work/ask.py" 198.18.3.1
c python3 "$work/ask.py" 2001:2:0:3::1
# Crafted sequences, sent past the client's kernel.
router_mac=$(r cat /sys/class/net/eth-c/address)
c python3 tests/linux-trace/craft.py eth0 "$router_mac" 198.18.2.1 198.18.3.1 2001:2:0:2::1 2001:2:0:3::1
sleep 1
for p in "${pids[@]:0:2}"; do kill -TERM "$p"; wait "$p" 2>/dev/null; done
pids=("${pids[@]:2}")
for log in in nflog; do
  if ! grep -q "^0 packets dropped by kernel" "$work/$log.log"; then
    echo "linux-trace: the $log capture lost packets: $(grep dropped "$work/$log.log")"
    exit 1
  fi
done

"$ctfwd" trace --json --checksum "$work/in.pcap" >"$work/trace.json"
# Where ctfwd differs from Linux by design (README): a first fragment too
# short for the transport header is refused (RFC 1858, RFC 3128); Linux
# reassembles it in IPv4. Port 41006 is that crafted TCP SYN.
python3 tests/linux-trace/compare.py "$work/in.pcap" "$work/nflog.pcap" "$work/trace.json" \
  41006="a tiny first fragment is refused (RFC 1858)"
