#!/usr/bin/env bash
# The firewall on real traffic: two network namespaces, an inside host
# (198.18.0.1) and an outside host (198.18.0.2) on one L2 segment cut by
# ctfwd, which forwards between two veth pairs through net_af_packet in
# firewall mode (port 0 inside, port 1 outside). Real programs from
# Debian's packages talk through it: ping, curl over HTTP (python3's
# server), tftp-hpa against tftpd-hpa, curl against vsftpd (passive and
# active FTP); then the cases the firewall must stop; then the same hosts
# through source and destination NAT (tests/netns/nat.sh), iperf3 too. Each check is judged
# by its outcome (file checksums, a connection refused or timed out).
# Everything created is removed on exit, even on failure; only processes
# this script started are killed, by PID.
#
# usage: tests/netns.sh   (as root; prints "netns: N passed, M failed")
set -uo pipefail
cd "$(dirname "$0")/.."
ctfwd=${CTFWD:-target/release/ctfwd}
id=$$
ns_in=ctfwd-in-$id
ns_out=ctfwd-out-$id
vin=vin$id
vout=vout$id
work=$(mktemp -d /tmp/ctfwd-netns.XXXXXX)
pids=()
passed=0
failed=0

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$ns_in" 2>/dev/null
  ip netns del "$ns_out" 2>/dev/null
  ip link del "$vin" 2>/dev/null
  ip link del "$vout" 2>/dev/null
  rm -rf -- "$work"
}
trap cleanup EXIT

check() { # NAME COMMAND...: the command must succeed
  local name=$1; shift
  if "$@" >>"$work/log" 2>&1; then
    echo "ok     $name"; passed=$((passed + 1))
  else
    echo "FAILED $name"; failed=$((failed + 1))
  fi
}
refused() { # NAME COMMAND...: the command must fail
  local name=$1; shift
  if "$@" >>"$work/log" 2>&1; then
    echo "FAILED $name (it got through)"; failed=$((failed + 1))
  else
    echo "ok     $name"; passed=$((passed + 1))
  fi
}
in_ns() { ip netns exec "$ns_in" "$@"; }
out_ns() { ip netns exec "$ns_out" "$@"; }

# Every program must be there: a "must fail" check that fails because a
# tool is missing would prove nothing.
for tool in ip ethtool ping nc curl python3 tcpdump tftp iperf3 /usr/sbin/in.tftpd /usr/sbin/vsftpd "$ctfwd"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "netns: $tool is missing (run scripts/setup)"
    echo "netns: 0 passed, 1 failed"
    exit 1
  fi
done
getent passwd ftp >/dev/null || { echo "netns: no ftp user (vsftpd not installed)"; exit 1; }

# Hosts and wires.
ip netns add "$ns_in"
ip netns add "$ns_out"
ip link add "$vin" type veth peer name "${vin}p"
ip link add "$vout" type veth peer name "${vout}p"
ip link set "${vin}p" netns "$ns_in"
ip link set "${vout}p" netns "$ns_out"
in_ns ip link set "${vin}p" name eth0
out_ns ip link set "${vout}p" name eth0
in_ns ip addr add 198.18.0.1/24 dev eth0
out_ns ip addr add 198.18.0.2/24 dev eth0
for ns in "$ns_in" "$ns_out"; do
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip link set eth0 up
  # Senders must finish their checksums, and frames must stay within the
  # MTU (net_af_packet sees them as they are on the wire).
  ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off gro off >/dev/null 2>&1
done
for ifc in "$vin" "$vout"; do
  ip link set "$ifc" up
  ethtool -K "$ifc" tx off tso off gso off gro off >/dev/null 2>&1
done

# Servers on the outside host, and files to fetch.
mkdir -p "$work/srv" "$work/empty"
head -c 3000000 /dev/urandom >"$work/srv/data.bin"
chmod -R a+rX "$work"
sum=$(sha256sum <"$work/srv/data.bin")
# Started with `ip netns exec` itself, which execs the program: $! is the
# server's own PID (a shell function would leave it behind a subshell).
ip netns exec "$ns_out" python3 -m http.server 8080 --bind 198.18.0.2 --directory "$work/srv" >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$ns_out" /usr/sbin/in.tftpd -L -u root -s "$work/srv" --address 198.18.0.2:69 >/dev/null 2>&1 &
pids+=($!)
cat >"$work/vsftpd.conf" <<CONF
listen=YES
listen_address=198.18.0.2
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$work/srv
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30100
port_enable=YES
connect_from_port_20=NO
secure_chroot_dir=$work/empty
seccomp_sandbox=NO
isolate_network=NO
isolate=NO
ftp_username=ftp
CONF
ip netns exec "$ns_out" /usr/sbin/vsftpd "$work/vsftpd.conf" >/dev/null 2>&1 &
pids+=($!)
# Listeners on the inside host, which the outside must not reach.
ip netns exec "$ns_in" nc -l 198.18.0.1 2222 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$ns_in" nc -u -l 198.18.0.1 5353 >"$work/udp-received" 2>&1 &
pids+=($!)
sleep 1

same() { [ "$(sha256sum <"$1")" = "$sum" ]; }
http_get() { in_ns curl -sS --max-time 20 -o "$work/http.bin" http://198.18.0.2:8080/data.bin && same "$work/http.bin"; }
tftp_get() { (cd "$work" && in_ns tftp -m binary 198.18.0.2 -c get data.bin tftp.bin) && same "$work/tftp.bin"; }
ftp_passive() { in_ns curl -sS --max-time 20 -o "$work/pasv.bin" ftp://198.18.0.2/data.bin && same "$work/pasv.bin"; }
ftp_active() { in_ns curl -sS --max-time 20 -P - -o "$work/port.bin" ftp://198.18.0.2/data.bin && same "$work/port.bin"; }
tftp_get_within() { # SECONDS
  (cd "$work" && timeout "$1" ip netns exec "$ns_in" tftp -m binary 198.18.0.2 -c get data.bin tftp.bin) &&
    same "$work/tftp.bin"
}
udp_in() { echo unsolicited | out_ns nc -u -w 1 198.18.0.1 5353; sleep 1; [ -s "$work/udp-received" ]; }

# launch WORKERS OUT PREFIX VDEV... [-- FLAG...]: starts the firewall with
# WORKERS forwarding cores on the given ports (and more application
# flags), output to OUT; its PID in $fw.
launch() {
  local workers=$1 out=$2 prefix=$3; shift 3
  local lcores="0@0,1@$(( $(nproc) - 1 ))" queues=() eal=()
  # LCORES=... places the lcores otherwise (two workers on one CPU).
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do eal+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  if [ "$workers" -gt 1 ]; then
    lcores="0@0,1@0,2@$(( $(nproc) - 1 ))"
    queues=(--nb-cores=2 --rxq=2 --txq=2)
  fi
  lcores=${LCORES:-$lcores}
  : >"$out"
  "$ctfwd" --lcores="$lcores" --no-huge -m 256 --no-pci --no-shconf \
    --file-prefix="$prefix" --log-level=lib.eal:warning "${eal[@]}" \
    -- --forward-mode=firewall "${queues[@]}" "$@" >"$out" 2>&1 &
  fw=$!
  pids+=("$fw")
  for _ in $(seq 50); do grep -q "Forwarding started" "$out" && break; sleep 0.1; done
}

# One round of checks through ctfwd with WORKERS forwarding cores. With
# two, each port gets two queue pairs, both workers poll both ports, and
# the kernel's fanout (not the Toeplitz hash) picks the queue: about half
# the packets reach the worker that does not own their connection and are
# handed over, so every check below also crosses the handoff rings.
round() {
  local workers=$1
  local tag=" ($workers worker$([ "$workers" -gt 1 ] && echo s))"
  local out="$work/ctfwd-$workers.out"
  local cport=$((40000 + workers)) vq=""
  [ "$workers" -gt 1 ] && vq=",qpairs=2"
  launch "$workers" "$out" "netns-$id-$workers" \
    --vdev="net_af_packet0,iface=$vin$vq" --vdev="net_af_packet1,iface=$vout$vq"

  check "ping from inside$tag" in_ns ping -c 2 -W 2 198.18.0.2
  check "TCP (HTTP) download from outside, checksum$tag" http_get
  check "TFTP download: data from a new server port is RELATED$tag" tftp_get
  check "FTP passive download through vsftpd$tag" ftp_passive
  check "FTP active download (server connects back, RELATED)$tag" ftp_active
  refused "ping from outside is dropped$tag" out_ns ping -c 2 -W 1 198.18.0.1
  refused "TCP connection opened from outside is dropped$tag" out_ns nc -z -w 2 198.18.0.1 2222
  refused "unsolicited UDP from outside is dropped$tag" udp_in

  # An inside client holds a TCP connection open to the outside; the outside
  # then injects a segment 2^30 beyond the server's sequence numbers with a
  # valid ACK. Linux's tcp_in_window calls that INVALID ("SEQ is over upper
  # bound"); the firewall must drop it. (A random sequence number would not
  # do: modulo 2^32 it may fall under the lower bound, which Linux lets pass
  # as "ignored" for the end host to reject.) The handshake is captured to
  # learn both ends' sequence numbers; the drop is judged from the firewall's
  # accounting, since the inside kernel would discard the segment too.
  ip netns exec "$ns_out" tcpdump -i eth0 -n -S -l -c 2 "tcp port 9000 and port $cport and tcp[tcpflags] & tcp-syn != 0" \
    >"$work/handshake$workers" 2>/dev/null &
  pids+=($!)
  ip netns exec "$ns_out" nc -l 198.18.0.2 9000 >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
  ip netns exec "$ns_in" nc -d -p $cport 198.18.0.2 9000 >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
  # "198.18.0.2.9000 > 198.18.0.1.40001: Flags [S.], seq S, ack A, ..."
  synack=$(grep 'Flags \[S\.\]' "$work/handshake$workers" | head -1)
  server_seq=$(sed -n 's/.* seq \([0-9]*\),.*/\1/p' <<<"$synack")
  client_next=$(sed -n 's/.* ack \([0-9]*\),.*/\1/p' <<<"$synack")
  check "out-of-window segment injected from outside$tag" \
    ip netns exec "$ns_out" python3 tests/netns/inject.py "${server_seq:-x}" "${client_next:-x}" "$cport"

  # The firewall's own account, then a clean stop with no mbuf leaked.
  kill -USR1 "$fw"; sleep 0.5
  kill -TERM "$fw"; wait "$fw"; status=$?
  check "ctfwd exits 0 with every mbuf back$tag" bash -c "[ $status -eq 0 ] && grep -q 'Mempool check: 0 of' '$out'"
  check "RELATED connections were seen$tag" grep -Eq 'RELATED=[1-9]' "$out"
  check "drops were counted as new-from-outside$tag" grep -Eq 'new-from-outside=[1-9]' "$out"
  check "the injected segments were dropped as INVALID$tag" grep -Eq 'dropped: invalid=[3-9]|dropped: invalid=[1-9][0-9]' "$out"
  if [ "$workers" -gt 1 ]; then
    check "packets were handed to their owners$tag" grep -Eq 'handoff_rx=[1-9]' "$out"
  fi
  if [ "$failed" -gt 0 ]; then
    echo "--- ctfwd output$tag"; cat "$out"
  fi
}

# Fragmented traffic through the firewall, both families. net_af_packet
# cannot carry it (its fanout group reassembles IPv4 before the PMD reads
# it), so this round uses net_tap: ctfwd creates one tap per host, moved
# into the host's namespace once the port has started. A 3000-byte ping
# and a 3000-byte UDP exchange each way are fragmented by the hosts'
# kernels; the firewall must reassemble them to track them and forward
# the fragments as they came.
cat >"$work/udp-echo.py" <<'PY'
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7007))
for _ in range(4):
    data, peer = s.recvfrom(65535)
    s.sendto(data[::-1], peer)
PY
cat >"$work/udp-ask.py" <<'PY'
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(3)
msg = bytes(range(256)) * 12
s.sendto(msg, (sys.argv[1], 7007))
data, _ = s.recvfrom(65535)
sys.exit(0 if data == msg[::-1] else 1)
PY
frag_round() {
  local workers=$1
  local tag=" (net_tap, $workers worker$([ "$workers" -gt 1 ] && echo s))"
  local out="$work/ctfwd-tap-$workers.out"
  local tin="ftin$id" tout="ftout$id"
  launch "$workers" "$out" "netns-tap-$id-$workers" \
    --vdev="net_tap0,iface=$tin" --vdev="net_tap1,iface=$tout"
  ip link set "$tin" netns "$ns_in"
  ip link set "$tout" netns "$ns_out"
  in_ns ip addr add 198.18.1.1/24 dev "$tin"
  in_ns ip addr add 2001:2::1/64 dev "$tin" nodad
  out_ns ip addr add 198.18.1.2/24 dev "$tout"
  out_ns ip addr add 2001:2::2/64 dev "$tout" nodad
  in_ns ip link set "$tin" up
  out_ns ip link set "$tout" up
  in_ns ethtool -K "$tin" tx off >/dev/null 2>&1
  out_ns ethtool -K "$tout" tx off >/dev/null 2>&1
  ip netns exec "$ns_out" python3 "$work/udp-echo.py" 198.18.1.2 >/dev/null 2>&1 &
  pids+=($!)
  ip netns exec "$ns_out" python3 "$work/udp-echo.py" 2001:2::2 >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
  check "fragmented ping (3000 bytes) from inside$tag" in_ns ping -c 2 -W 2 -s 3000 198.18.1.2
  check "fragmented ping6 (3000 bytes) from inside$tag" in_ns ping -6 -c 2 -W 2 -s 3000 2001:2::2
  check "fragmented UDP exchange over IPv4$tag" in_ns python3 "$work/udp-ask.py" 198.18.1.2
  check "fragmented UDP exchange over IPv6$tag" in_ns python3 "$work/udp-ask.py" 2001:2::2
  refused "fragmented ping from outside is dropped$tag" out_ns ping -c 2 -W 1 -s 3000 198.18.1.1
  kill -TERM "$fw"; wait "$fw"; status=$?
  check "ctfwd exits 0 with every mbuf back$tag" bash -c "[ $status -eq 0 ] && grep -q 'Mempool check: 0 of' '$out'"
  check "datagrams were reassembled$tag" grep -Eq 'frag_reassembled=[1-9]' "$out"
  if [ "$failed" -gt 0 ]; then
    echo "--- ctfwd output$tag"; cat "$out"
  fi
}

# Two workers on one CPU take turns by the scheduler's slices when both
# poll without pause (a lock-step TFTP transfer stalls); with idle sleep
# an idle worker gives the CPU up at once.
shared_cpu_round() {
  local tag=" (2 workers on one CPU, --sleep-max=100)"
  local out="$work/ctfwd-shared.out"
  LCORES="0@0,1@$(( $(nproc) - 1 )),2@$(( $(nproc) - 1 ))" launch 2 "$out" "netns-shared-$id" \
    --vdev="net_af_packet0,iface=$vin,qpairs=2" --vdev="net_af_packet1,iface=$vout,qpairs=2" \
    -- --sleep-max=100 --stats-period=1
  local t0=$SECONDS
  check "TFTP download within 30 s$tag" tftp_get_within 30
  echo "       TFTP download of 3 MB took $(( SECONDS - t0 )) s$tag"
  check "TCP (HTTP) download$tag" http_get
  kill -TERM "$fw"; wait "$fw"; status=$?
  check "ctfwd exits 0 with every mbuf back$tag" bash -c "[ $status -eq 0 ] && grep -q 'Mempool check: 0 of' '$out'"
  check "the workers slept while idle$tag" grep -q 'slept: ' "$out"
  if [ "$failed" -gt 0 ]; then
    echo "--- ctfwd output$tag"; cat "$out"
  fi
}

round 1
round 2
shared_cpu_round
. tests/netns/nat.sh
nat_servers
nat_round 1
nat_round 2
frag_round 1
frag_round 2

if [ "$failed" -gt 0 ]; then
  echo "--- log"; cat "$work/log"
fi
echo "netns: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
