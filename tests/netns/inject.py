"""A TCP segment from the server (198.18.0.2:9000) to the inside client's
port, 2^30 past the server's next sequence number, with a valid ACK: the
firewall must drop it as out of window.

usage: inject.py SERVER_SEQ CLIENT_NEXT CLIENT_PORT
"""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from inet import csum, pseudo4  # noqa: E402

src, dst, sport = "198.18.0.2", "198.18.0.1", 9000
server_seq, client_next, dport = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
payload = b"INJECTED"
seq = (server_seq + 1 + (1 << 30)) % (1 << 32)
hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, client_next, 5 << 4, 0x18, 65535, 0, 0)
c = csum(pseudo4(src, dst, 6, len(hdr) + len(payload)) + hdr + payload)
hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for _ in range(3):
    s.sendto(hdr + payload, (dst, 0))
