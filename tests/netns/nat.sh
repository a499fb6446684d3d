# NAT through ctfwd with real clients and servers (sourced by
# tests/netns.sh, whose hosts, servers and helpers it uses). The inside
# host (198.18.0.1) is translated to 198.18.0.100 towards the outside, and
# the outside reaches its web server on port 80 at 198.18.0.200:8080 and
# its FTP server at 198.18.0.200:21. The
# outside host has static neighbour entries that send both addresses to
# the inside host's MAC, as a router outside would route them towards the
# inside: ctfwd itself answers no ARP.

cat >"$work/nat.rules" <<'RULES'
in-port 0 ip saddr 198.18.0.1 snat to 198.18.0.100
in-port 1 ip daddr 198.18.0.200 tcp dport 8080 dnat to 198.18.0.1:80
in-port 1 ip daddr 198.18.0.200 tcp dport 21 dnat to 198.18.0.1:21
in-port 1 ct status dnat accept
RULES

# A UDP datagram to a closed port of the outside host: its port
# unreachable, about the translated datagram, must reach the inside
# socket quoting the inside address, or the socket would not see it.
cat >"$work/udp-refused.py" <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("198.18.0.2", 9999))
s.settimeout(3)
s.send(b"anyone?")
try:
    s.recv(100)
except ConnectionRefusedError:
    raise SystemExit(0)
raise SystemExit(1)
PY

# The servers the NAT rounds add: a web server and an FTP server on the
# inside for the port forwards, a web server outside that logs who
# connects, and iperf3 outside.
nat_servers() {
  ip netns exec "$ns_in" python3 -m http.server 80 --bind 198.18.0.1 --directory "$work/srv" >/dev/null 2>&1 &
  pids+=($!)
  sed 's/^listen_address=.*/listen_address=198.18.0.1/' "$work/vsftpd.conf" >"$work/vsftpd-in.conf"
  ip netns exec "$ns_in" /usr/sbin/vsftpd "$work/vsftpd-in.conf" >/dev/null 2>&1 &
  pids+=($!)
  ip netns exec "$ns_out" python3 -m http.server 8081 --bind 198.18.0.2 --directory "$work/srv" \
    >"$work/http-log" 2>&1 &
  pids+=($!)
  ip netns exec "$ns_out" iperf3 -s -B 198.18.0.2 -p 5201 >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
}

fwd_ftp() { # [CURL FLAG]: from the outside, through the FTP port forward
  out_ns curl -sS --max-time 20 "$@" -o "$work/fwd-ftp.bin" ftp://198.18.0.200/data.bin &&
    same "$work/fwd-ftp.bin"
}

nat_round() {
  local workers=$1
  local tag=" (NAT, $workers worker$([ "$workers" -gt 1 ] && echo s))"
  local out="$work/ctfwd-nat-$workers.out" vq=""
  [ "$workers" -gt 1 ] && vq=",qpairs=2"
  local mac
  mac=$(in_ns cat /sys/class/net/eth0/address)
  out_ns ip neigh replace 198.18.0.100 lladdr "$mac" dev eth0 nud permanent
  out_ns ip neigh replace 198.18.0.200 lladdr "$mac" dev eth0 nud permanent
  launch "$workers" "$out" "netns-nat-$id-$workers" \
    --vdev="net_af_packet0,iface=$vin$vq" --vdev="net_af_packet1,iface=$vout$vq" \
    -- --rules="$work/nat.rules"

  # The web server's log line for this round's request names the client.
  check "TCP through SNAT: the server sees 198.18.0.100$tag" bash -c \
    "ip netns exec $ns_in curl -sS --max-time 20 -o $work/snat.bin 'http://198.18.0.2:8081/data.bin?round=$workers' \
     && [ \"\$(sha256sum <$work/snat.bin)\" = '$sum' ] \
     && grep -q '^198.18.0.100 .*GET /data.bin?round=$workers ' $work/http-log"
  check "port forward through DNAT: 198.18.0.200:8080 reaches the inside :80$tag" bash -c \
    "ip netns exec $ns_out curl -sS --max-time 20 -o $work/dnat.bin http://198.18.0.200:8080/data.bin \
     && [ \"\$(sha256sum <$work/dnat.bin)\" = '$sum' ]"
  check "ping through SNAT (echo identifier translated)$tag" in_ns ping -c 2 -W 2 198.18.0.2
  check "TFTP through SNAT: the transfer follows its master's translation$tag" tftp_get
  check "FTP passive through SNAT$tag" ftp_passive
  check "FTP active through SNAT: PORT rewritten, sequences adjusted$tag" ftp_active
  # The inside server names 198.18.0.1 in its 227 (PASV) reply, which
  # must reach the outside client as 198.18.0.200; its 229 (EPSV, curl's
  # first choice) names only a port. Either way the data connection must
  # come back to the server.
  check "FTP passive (EPSV) to a forwarded server$tag" fwd_ftp
  check "FTP passive (PASV) to a forwarded server: 227 rewritten$tag" fwd_ftp --disable-epsv
  check "iperf3 through SNAT$tag" in_ns iperf3 -c 198.18.0.2 -p 5201 -t 2 -J --logfile "$work/iperf-$workers.json"
  python3 -c "import json, sys; r = json.load(open(sys.argv[1])); \
print('       iperf3 through SNAT: %.2f Gbit/s received' % (r['end']['sum_received']['bits_per_second'] / 1e9))" \
    "$work/iperf-$workers.json" 2>/dev/null
  check "port unreachable about a translated datagram reaches the inside socket$tag" \
    in_ns python3 "$work/udp-refused.py"

  kill -USR1 "$fw"; sleep 0.5
  kill -TERM "$fw"; wait "$fw"; status=$?
  check "ctfwd exits 0 with every mbuf back$tag" bash -c "[ $status -eq 0 ] && grep -q 'Mempool check: 0 of' '$out'"
  check "conntrack -L shows translated reply tuples$tag" grep -q 'dst=198.18.0.100 sport=' "$out"
  check "no NAT range ran out$tag" grep -q 'NAT rules: line 1 exhausted=0, line 2 exhausted=0, line 3 exhausted=0' "$out"
  check "nothing was dropped for NAT$tag" grep -Eq 'dropped: .* nat=0' "$out"
  if [ "$failed" -gt 0 ]; then
    echo "--- ctfwd output$tag"; cat "$out"
  fi
  out_ns ip neigh del 198.18.0.100 dev eth0
  out_ns ip neigh del 198.18.0.200 dev eth0
}
