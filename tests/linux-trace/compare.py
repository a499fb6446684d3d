"""Compares `ctfwd trace --json` with what Linux's conntrack decided for the
same packets.

usage: compare.py IN_PCAP NFLOG_PCAP TRACE_JSON [EXPECTED_PORT=REASON ...]

IN_PCAP is what reached the Linux router (tcpdump -i any -Q in: Linux
cooked frames, fragments as they came). NFLOG_PCAP holds one NFLOG record
per packet that passed the router's conntrack, whose prefix is the ct
state and direction (ctinfo) nft saw; a fragmented datagram reaches
conntrack once, reassembled, as it does in ctfwd. TRACE_JSON is ctfwd's
verdict for every packet of IN_PCAP.

Both sides become a list of (flow, ctinfo) per datagram, in arrival order,
aligned by flow. A difference is expected only for a flow with one of the
EXPECTED ports (a documented difference); any other fails the comparison.
"""

import difflib
import json
import re
import socket
import struct
import sys

EXT_HEADERS = {0, 43, 60}  # hop-by-hop, routing, destination options


def pcap_records(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        sys.exit(f"{path}: not a pcap file")
    link = struct.unpack(endian + "I", data[20:24])[0]
    at = 24
    while at + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[at + 8:at + 12])[0]
        yield link, data[at + 16:at + 16 + caplen]
        at += 16 + caplen


def ip_of_cooked(link, frame):
    """The IP packet in a Linux cooked (SLL or SLL2) frame, or None."""
    if link == 113:
        proto, at = struct.unpack("!H", frame[14:16])[0], 16
    elif link == 276:
        proto, at = struct.unpack("!H", frame[0:2])[0], 20
    else:
        sys.exit(f"link type {link}: expected Linux cooked capture")
    return frame[at:] if proto in (0x0800, 0x86DD) else None


def ip_of_nflog(frame):
    """(prefix, IP packet) of a DLT_NFLOG record: a 4-byte header, then
    TLVs in host byte order, each padded to 4 bytes."""
    prefix, payload, at = "", b"", 4
    while at + 4 <= len(frame):
        length, kind = struct.unpack("<HH", frame[at:at + 4])
        if length < 4:
            break
        value = frame[at + 4:at + length]
        if kind == 10:  # NFULA_PREFIX
            prefix = value.split(b"\0")[0].decode()
        elif kind == 9:  # NFULA_PAYLOAD
            payload = value
        at += (length + 3) & ~3
    return prefix, payload


def parse(ip):
    """(flow, fragment offset or None when whole) of an IP packet."""
    if not ip:
        return None, None
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        proto, src, dst = ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        flags = struct.unpack("!H", ip[6:8])[0]
        offset = (flags & 0x1FFF) * 8
        fragment = offset if (flags & 0x2000 or offset) else None
        l4 = ip[ihl:]
    else:
        src = socket.inet_ntop(socket.AF_INET6, ip[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
        proto, l4, fragment = ip[6], ip[40:], None
        while proto in EXT_HEADERS or proto == 44:
            if proto == 44:
                off_m = struct.unpack("!H", l4[2:4])[0]
                # An atomic fragment (RFC 6946) is a whole packet.
                if off_m & 0xFFF9:
                    fragment = off_m & 0xFFF8
                proto, l4 = l4[0], l4[8:]
            else:
                proto, l4 = l4[0], l4[(l4[1] + 1) * 8:]
    if fragment:  # not the first fragment: no transport header
        return f"{proto} {src} > {dst}", fragment
    if proto in (6, 17) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        return f"{proto} {src}:{sport} > {dst}:{dport}", fragment
    if proto in (1, 58) and len(l4) >= 8:
        kind = l4[0]
        ident = struct.unpack("!H", l4[4:6])[0] if kind in (0, 8, 128, 129) else 0
        return f"{proto} {src} > {dst} type {kind} id {ident}", fragment
    return f"{proto} {src} > {dst}", fragment


def linux_events(path):
    events = []
    for _, rec in pcap_records(path):
        prefix, payload = ip_of_nflog(rec)
        flow, _ = parse(payload)
        if flow:
            events.append((flow, prefix))
    return events


def ctfwd_events(in_path, trace_path):
    packets = [parse(ip_of_cooked(link, f)) for link, f in pcap_records(in_path)]
    lines = [json.loads(line) for line in open(trace_path)]
    events, refused = [], []
    for line in lines:
        if "summary" in line:
            continue
        flow, fragment = packets[line["index"]]
        if flow is None:
            continue
        if fragment is None:
            events.append((flow, line["ctinfo"]))
        elif "fragments" in line:
            # The datagram's flow is its first fragment's.
            first = [packets[i][0] for i in line["fragments"] if packets[i][1] == 0]
            events.append((first[0] if first else flow, line["ctinfo"]))
        elif line["ctinfo"] != "HELD":
            refused.append((flow, line["reason"]))
    return events, refused


def host_chatter(flow):
    """ICMPv6 neighbour discovery (RFC 4861, types 133-137) and multicast
    listener messages (MLD, RFC 2710 and 3810: types 130-132 and 143),
    which the hosts send when they please (an MLDv2 report can come after
    the capture that ctfwd traces has stopped, while the router still logs
    it): neither tracker gives them a connection (Linux leaves ND without
    any conntrack entry and MLD UNTRACKED; ctfwd calls both UNTRACKED), so
    they are left out of the comparison."""
    return re.match(r"58 .* type (13[0-7]|143) ", flow) is not None


def main():
    in_path, nflog_path, trace_path = sys.argv[1:4]
    expected = dict(arg.split("=", 1) for arg in sys.argv[4:])

    def why_expected(flow):
        for port, reason in expected.items():
            if re.search(rf":{port}\b", flow):
                return reason
        return None

    linux = [e for e in linux_events(nflog_path) if not host_chatter(e[0])]
    ours, refused = ctfwd_events(in_path, trace_path)
    ours = [e for e in ours if not host_chatter(e[0])]
    matcher = difflib.SequenceMatcher(a=[f for f, _ in linux], b=[f for f, _ in ours], autojunk=False)
    agree, differ, unexpected = 0, [], 0
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            for (flow, theirs), (_, mine) in zip(linux[a0:a1], ours[b0:b1]):
                if theirs == mine:
                    agree += 1
                else:
                    differ.append((flow, theirs, mine))
        else:
            differ += [(flow, theirs, "-") for flow, theirs in linux[a0:a1]]
            differ += [(flow, "-", mine) for flow, mine in ours[b0:b1]]
    for flow, theirs, mine in differ:
        reason = why_expected(flow)
        if reason is None:
            unexpected += 1
        print(f"  {flow}: Linux {theirs}, ctfwd {mine}" + (f" (expected: {reason})" if reason else ""))
    for flow, reason in refused:
        print(f"  refused by ctfwd's reassembly: {flow}: {reason}")
    print(f"linux-trace: {len(linux)} datagrams through Linux's conntrack, {len(ours)} through ctfwd's; "
          f"{agree} agree, {len(differ) - unexpected} differ as expected, {unexpected} differ otherwise")
    sys.exit(1 if unexpected or not agree else 0)


main()
