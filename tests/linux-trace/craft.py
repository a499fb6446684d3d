"""Fragment sequences no kernel sends by itself, written to a link with an
AF_PACKET socket: out of order, duplicated, overlapping, tiny first
fragments, a fragmented TCP SYN, atomic fragments; IPv4 and IPv6.

usage: craft.py IFACE ROUTER_MAC SRC4 DST4 SRC6 DST6
Each case is its own datagram (own id, own source port) so that the two
trackers' verdicts can be matched case by case.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from inet import csum, pseudo4, pseudo6  # noqa: E402

iface, router_mac, src4, dst4, src6, dst6 = sys.argv[1:7]
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((iface, 0))
own_mac = sock.getsockname()[4]
dst_mac = bytes.fromhex(router_mac.replace(":", ""))


def udp(src, dst, pseudo, sport, dport, payload):
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    c = csum(pseudo(src, dst, 17, len(hdr) + len(payload)) + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack("!H", c) + payload


def tcp_syn(src, dst, pseudo, sport, dport):
    # 20 bytes of options (MSS, SACK permitted, timestamps, window scale)
    opts = bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01030307")
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, (5 + len(opts) // 4) << 4, 0x02, 64240, 0, 0) + opts
    c = csum(pseudo(src, dst, 6, len(hdr)) + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def frame(ethertype, packet):
    sock.send(dst_mac + own_mac + struct.pack("!H", ethertype) + packet)


def v4_fragment(ident, proto, offset, more, data, ttl=64):
    flags = (0x2000 if more else 0) | (offset // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), ident, flags, ttl, proto, 0,
                      socket.inet_aton(src4), socket.inet_aton(dst4))
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + data


def v6_fragment(ident, proto, offset, more, data):
    frag = struct.pack("!BBHI", proto, 0, offset | (1 if more else 0), ident)
    hdr = struct.pack("!IHBB16s16s", 0x60000000, len(frag) + len(data), 44, 64,
                      socket.inet_pton(socket.AF_INET6, src6), socket.inet_pton(socket.AF_INET6, dst6))
    return hdr + frag + data


def send4(ident, proto, l4, pieces):
    """pieces: (offset, length) in sending order; the last piece of the
    datagram is the one that reaches its end."""
    for offset, length in pieces:
        more = offset + length < len(l4)
        frame(0x0800, v4_fragment(ident, proto, offset, more, l4[offset:offset + length]))
        time.sleep(0.01)
    time.sleep(0.2)


def send6(ident, proto, l4, pieces):
    for offset, length in pieces:
        more = offset + length < len(l4)
        frame(0x86DD, v6_fragment(ident, proto, offset, more, l4[offset:offset + length]))
        time.sleep(0.01)
    time.sleep(0.2)


payload = bytes(range(256)) * 11 + bytes(184)  # 3000 bytes
u4 = lambda sport: udp(src4, dst4, pseudo4, sport, 7007, payload)
u6 = lambda sport: udp(src6, dst6, pseudo6, sport, 7007, payload)

# IPv4 (the echo server on the far side answers each accepted datagram).
send4(0x4101, 17, u4(41001), [(2960, 48), (0, 1480), (1480, 1480)])  # out of order
send4(0x4102, 17, u4(41002), [(0, 1480), (0, 1480), (1480, 1480), (2960, 48)])  # duplicate first
send4(0x4103, 17, u4(41003), [(0, 1480), (1000, 1480), (2480, 528)])  # overlap: dropped
send4(0x4104, 17, u4(41004), [(2960, 48), (1480, 1480), (0, 1480)])  # last first
send4(0x4105, 6, tcp_syn(src4, dst4, pseudo4, 41005, 7008), [(0, 24), (24, 16)])  # SYN in two
send4(0x4106, 6, tcp_syn(src4, dst4, pseudo4, 41006, 7008), [(0, 8), (8, 32)])  # tiny first
send4(0x4107, 17, udp(src4, dst4, pseudo4, 41007, 7999, payload), [(0, 1480), (1480, 1480), (2960, 48)])  # closed port
# IPv6.
send6(0x6101, 17, u6(61001), [(2896, 112), (0, 1448), (1448, 1448)])  # out of order
send6(0x6102, 17, u6(61002), [(0, 1448), (0, 1448), (1448, 1448), (2896, 112)])  # duplicate first
send6(0x6103, 17, u6(61003), [(0, 1448), (1000, 1448), (2448, 560)])  # overlap: dropped (RFC 5722)
send6(0x6104, 17, udp(src6, dst6, pseudo6, 61004, 7007, b"atomic"), [(0, 14)])  # atomic (RFC 6946)
send6(0x6105, 6, tcp_syn(src6, dst6, pseudo6, 61005, 7008), [(0, 24), (24, 16)])  # SYN in two
send6(0x6106, 17, udp(src6, dst6, pseudo6, 61007, 7999, payload), [(0, 1448), (1448, 1448), (2896, 112)])  # closed port
