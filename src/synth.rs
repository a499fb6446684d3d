//! Frames built from scratch with correct checksums, for the demo's sample
//! traffic, the tests and the benchmarks' generators.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::wire::{
    parse_ip, Addr, EthernetRepr, IcmpRepr, IpPacketMut, Ipv4Repr, Ipv6ExtRepr, Ipv6Repr, MacAddr,
    TcpRepr, UdpRepr, ETHERTYPE_IPV4, ETHERTYPE_IPV6, L3, PROTO_TCP, PROTO_UDP, TCP_ACK,
};

const MAC_A: MacAddr = MacAddr([0x02, 0x18, 0, 0, 0, 1]);
const MAC_B: MacAddr = MacAddr([0x02, 0x19, 0, 0, 0, 1]);

/// A TCP segment's header fields: wire's emitter, which `bytes` turns
/// into a segment.
pub type Tcp<'a> = TcpRepr<'a>;

/// An Ethernet frame carrying a TCP segment from `src` to `dst` (addresses
/// and ports), window 65535, no options.
pub fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = Tcp {
        sport: src.port(),
        dport: dst.port(),
        seq,
        ack,
        flags,
        window: 65535,
        options: &[],
    };
    frame(
        &ip_packet(src.ip(), dst.ip(), PROTO_TCP, &[], &seg.bytes(payload)),
        &[],
    )
}

/// An Ethernet frame carrying a UDP datagram from `src` to `dst`.
pub fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    frame(
        &ip_packet(
            src.ip(),
            dst.ip(),
            PROTO_UDP,
            &[],
            &udp(src.port(), dst.port(), payload),
        ),
        &[],
    )
}

/// A broadcast ARP request (RFC 826) from `sender` (MAC_B, the outside
/// side's) asking for `target`: what hosts send all the time, and what a
/// firewall passes untracked.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_B.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_B.0);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// A deterministic stream of well-mixed numbers (Marsaglia's xorshift64)
/// for tests and benchmarks; `seed` must not be 0.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A UDP datagram (checksum filled in by [`ip_packet`]).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(UdpRepr::HEADER_LEN + payload.len());
    UdpRepr { sport, dport }.emit(payload.len(), &mut b);
    b.extend_from_slice(payload);
    b
}

/// An ICMP or ICMPv6 message: type, code, identifier, sequence, body.
pub fn icmp(ty: u8, code: u8, id: u16, seq: u16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(IcmpRepr::HEADER_LEN + body.len());
    IcmpRepr {
        ty,
        code,
        ident: id,
        seq,
    }
    .emit(&mut b);
    b.extend_from_slice(body);
    b
}

/// An IP packet (no link header) carrying `l4`, with the IPv4 header
/// checksum and the transport checksum computed. `ext` lists IPv6
/// extension headers to put first (each 8 bytes long, by their protocol
/// numbers: 0 hop-by-hop, 43 routing, 44 fragment (an atomic one), 60
/// destination options).
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + ext.len() * 8 + l4.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src: s.octets(),
            dst: d.octets(),
            proto,
            ttl: 64,
            ident: 0,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            payload_len: l4.len(),
        }
        .emit(&mut p),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let exts: Vec<Ipv6ExtRepr> = ext
                .iter()
                .map(|&kind| match kind {
                    43 => Ipv6ExtRepr::Routing,
                    44 => Ipv6ExtRepr::Fragment {
                        offset: 0,
                        more: false,
                        ident: 0,
                    },
                    kind => Ipv6ExtRepr::Options { kind },
                })
                .collect();
            Ipv6Repr {
                src: s.octets(),
                dst: d.octets(),
                next_header: exts.first().map_or(proto, Ipv6ExtRepr::kind),
                hop_limit: 64,
                payload_len: exts.len() * Ipv6ExtRepr::LEN + l4.len(),
            }
            .emit(&mut p);
            for (i, e) in exts.iter().enumerate() {
                e.emit(exts.get(i + 1).map_or(proto, Ipv6ExtRepr::kind), &mut p);
            }
        }
        _ => panic!("mixed address families"),
    }
    p.extend_from_slice(l4);
    IpPacketMut::new(&mut p)
        .expect("a packet just built parses")
        .fill_checksums();
    p
}

/// An Ethernet frame carrying an IP packet (`ip_packet`), with up to two
/// VLAN tags (outer first, 802.1ad then 802.1Q).
pub fn frame(ip: &[u8], vlans: &[u16]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + ip.len());
    EthernetRepr {
        dst: MAC_B,
        src: MAC_A,
        vlans,
        ethertype: if ip.first().map(|b| b >> 4) == Some(6) {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        },
    }
    .emit(&mut f);
    f.extend_from_slice(ip);
    f
}

/// One direction of a flow between two IPv4 ends: its UDP datagrams
/// (`frame`) or, between the same ends, TCP segments (`tcp_segment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFlow {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

impl UdpFlow {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> UdpFlow {
        UdpFlow {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// An Ethernet/IPv4/UDP frame carrying `payload`.
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = self.ends();
        self.addressed(udp_frame(src, dst, payload))
    }

    /// An Ethernet/IPv4/TCP frame between the same ends (`tcp_frame`).
    pub fn tcp_segment(&self, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = self.ends();
        self.addressed(tcp_frame(src, dst, seq, ack, flags, payload))
    }

    fn ends(&self) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(self.src.into(), self.sport),
            SocketAddr::new(self.dst.into(), self.dport),
        )
    }

    /// `f` with this flow's MAC addresses.
    fn addressed(&self, mut f: Vec<u8>) -> Vec<u8> {
        f[0..6].copy_from_slice(&self.dst_mac.0);
        f[6..12].copy_from_slice(&self.src_mac.0);
        f
    }
}

/// The demo's sample traffic: `flows` UDP conversations between hosts in
/// 198.18.0.0/24 (inside) and 198.19.0.0/24 (outside), addresses from the
/// benchmarking range (RFC 2544). Returns (frames entering port 0, frames
/// entering port 1): each flow sends `requests` packets out and gets as many
/// answers, with payload sizes cycling through a small, a medium and a large
/// one.
pub fn sample_conversations(flows: u16, requests: u16) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for i in 0..flows {
        let flow = UdpFlow {
            src_mac: MacAddr([0x02, 0x18, 0, 0, 0, (i % 250) as u8 + 1]),
            dst_mac: MacAddr([0x02, 0x19, 0, 0, 0, 1]),
            src: Ipv4Addr::new(198, 18, 0, (i % 250) as u8 + 1),
            dst: Ipv4Addr::new(198, 19, 0, (i % 4) as u8 + 1),
            sport: 40000 + i,
            dport: [53, 123, 5001, 4789][i as usize % 4],
        };
        for r in 0..requests {
            let len = [18, 200, 1200][(r as usize + i as usize) % 3];
            let payload: Vec<u8> = (0..len).map(|b| (b as u8) ^ (r as u8)).collect();
            inside.push(flow.frame(&payload));
            outside.push(flow.reversed().frame(&payload));
        }
    }
    (inside, outside)
}

/// Minimum-size traffic for benchmarks: `flows` UDP flows, one 60-byte
/// frame (64 on the wire) each way, between clients in 198.18.0.0/16 and a
/// server at 198.19.0.1:53. Returns (requests, answers).
pub fn bulk_flows(flows: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    (0..flows)
        .map(|i| {
            let flow = bulk_flow(i);
            (flow.frame(&[0; 18]), flow.reversed().frame(&[0; 18]))
        })
        .unzip()
}

/// `bulk_flows` over TCP between the same ends, as pktgen sends TCP: one
/// segment each way carrying only ACK and 6 bytes (a 60-byte frame),
/// with fixed sequence numbers. The firewall picks such connections up
/// mid-stream (Linux's `nf_conntrack_tcp_loose`), and a replay repeats
/// each segment as a retransmission would.
pub fn bulk_tcp_flows(flows: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    (0..flows)
        .map(|i| {
            let flow = bulk_flow(i);
            (
                flow.tcp_segment(1001, 5001, TCP_ACK, &[0; 6]),
                flow.reversed().tcp_segment(5001, 1007, TCP_ACK, &[0; 6]),
            )
        })
        .unzip()
}

/// The ends of bulk flow `i`, client first.
fn bulk_flow(i: u32) -> UdpFlow {
    UdpFlow {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        src: Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8),
        dst: Ipv4Addr::new(198, 19, 0, 1),
        sport: 1024 + (i >> 16) as u16,
        dport: 53,
    }
}

/// The RX queue of each frame when `queues` queues are spread the way
/// ctfwd's workers spread connections without a NIC table to mirror
/// (`conntrack::steering`'s software owner table over the symmetric
/// Toeplitz hash of addresses and ports): frame i belongs in queue
/// `rss_queues(..)[i]`, polled by worker i with `--rxq=Q --nb-cores=Q`,
/// as a NIC's RSS would have put it. Frames that are not IP go to queue 0.
pub fn rss_queues(frames: &[Vec<u8>], queues: usize) -> Vec<usize> {
    use crate::conntrack::steering::{HashFields, Owners, Steering};
    use crate::conntrack::Tuple;
    use crate::wire::{parse_frame, Frame, LinkType, L3, PROTO_TCP, PROTO_UDP};
    let owners = std::sync::Arc::new(Owners::new(None, queues.max(1)));
    let steering = Steering::new(owners, HashFields::ALL, 0);
    let tuple_of = |f: &[u8]| -> Option<Tuple> {
        let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, f, f.len()) else {
            return None;
        };
        let ports = matches!(ip.proto, PROTO_TCP | PROTO_UDP) && ip.l4.len() >= 4;
        let port = |at: usize| {
            if ports {
                u16::from_be_bytes([ip.l4[at], ip.l4[at + 1]])
            } else {
                0
            }
        };
        Some(Tuple {
            src: ip.src,
            dst: ip.dst,
            sport: port(0),
            dport: port(2),
            proto: ip.proto,
            family: if ip.l3 == L3::V6 { 6 } else { 4 },
            zone: 0,
        })
    };
    frames
        .iter()
        .map(|f| tuple_of(f).map_or(0, |t| usize::from(steering.owner(&t))))
        .collect()
}

/// Cuts an IP packet (`ip_packet`, IPv4, or IPv6 without extension
/// headers) into fragments: one per `(offset, len)` of its payload, in the
/// order given, with identification `id`. A piece that reaches the end of
/// the payload has no More Fragments flag.
pub fn fragment(ip: &[u8], id: u32, pieces: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let packet = parse_ip(ip, ip.len(), false).expect("a packet built by ip_packet");
    let payload = &ip[packet.l4_offset..];
    let octets = |a: Addr| a.octets();
    pieces
        .iter()
        .map(|&(off, len)| {
            let data = &payload[off..off + len];
            let more = off + len < payload.len();
            let mut p = Vec::with_capacity(48 + len);
            match packet.l3 {
                L3::V4 => Ipv4Repr {
                    src: octets(packet.src)[12..].try_into().expect("4 bytes"),
                    dst: octets(packet.dst)[12..].try_into().expect("4 bytes"),
                    proto: packet.proto,
                    ttl: 64,
                    ident: id as u16,
                    dont_fragment: false,
                    more_fragments: more,
                    frag_offset: off as u16,
                    payload_len: len,
                }
                .emit(&mut p),
                L3::V6 => {
                    let ext = Ipv6ExtRepr::Fragment {
                        offset: off as u16,
                        more,
                        ident: id,
                    };
                    Ipv6Repr {
                        src: octets(packet.src),
                        dst: octets(packet.dst),
                        next_header: ext.kind(),
                        hop_limit: 64,
                        payload_len: Ipv6ExtRepr::LEN + len,
                    }
                    .emit(&mut p);
                    ext.emit(packet.proto, &mut p);
                }
            }
            p.extend_from_slice(data);
            p
        })
        .collect()
}

/// `fragment` into pieces of `size` bytes (a multiple of 8), in order.
pub fn fragments(ip: &[u8], id: u32, size: usize) -> Vec<Vec<u8>> {
    let packet = parse_ip(ip, ip.len(), false).expect("a packet built by ip_packet");
    let total = ip.len() - packet.l4_offset;
    let pieces: Vec<(usize, usize)> = (0..total)
        .step_by(size)
        .map(|off| (off, size.min(total - off)))
        .collect();
    fragment(ip, id, &pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{l4_ok, parse_frame, Frame, LinkType, PROTO_ICMP, PROTO_ICMPV6};

    fn parsed_ok(f: &[u8]) -> bool {
        match parse_frame(LinkType::Ethernet, f, f.len()) {
            Ok(Frame::Ip(ip)) => crate::wire::ip_header_ok(&ip) && l4_ok(&ip) == Some(true),
            _ => false,
        }
    }

    #[test]
    fn checksums_verify() {
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.19.0.1".parse().unwrap();
        let a6: IpAddr = "2001:db8::1".parse().unwrap();
        let b6: IpAddr = "2001:db8::2".parse().unwrap();
        let tcp = Tcp {
            sport: 1,
            dport: 2,
            flags: 0x02,
            window: 100,
            options: &[2, 4, 5, 0xb4, 3, 3, 7],
            ..Tcp::default()
        };
        for f in [
            frame(&ip_packet(a, b, PROTO_UDP, &[], &udp(1, 2, b"hello")), &[]),
            frame(&ip_packet(a, b, PROTO_TCP, &[], &tcp.bytes(b"xyz")), &[7]),
            frame(
                &ip_packet(a, b, PROTO_ICMP, &[], &icmp(8, 0, 1, 1, b"ping")),
                &[1, 2],
            ),
            frame(
                &ip_packet(a6, b6, PROTO_ICMPV6, &[0, 60], &icmp(128, 0, 1, 1, b"p")),
                &[],
            ),
            frame(&ip_packet(a6, b6, PROTO_TCP, &[44], &tcp.bytes(b"")), &[]),
        ] {
            assert!(parsed_ok(&f), "{f:02x?}");
        }
    }

    #[test]
    fn bulk_flows_are_distinct_minimum_frames() {
        for (a, b) in [bulk_flows(70_000), bulk_tcp_flows(70_000)] {
            assert!(a.iter().chain(&b).all(|f| f.len() == 60 && parsed_ok(f)));
            let distinct: std::collections::HashSet<&[u8]> = a.iter().map(|f| &f[26..38]).collect();
            assert_eq!(distinct.len(), 70_000);
            // Each answer swaps the request's addresses and ports.
            assert_eq!(&a[7][26..30], &b[7][30..34]);
            assert_eq!(&a[7][34..36], &b[7][36..38]);
        }
    }

    #[test]
    fn sample_is_symmetric() {
        let (a, b) = sample_conversations(5, 3);
        assert_eq!(a.len(), 15);
        assert_eq!(b.len(), 15);
        assert!(a.iter().chain(&b).all(|f| parsed_ok(f)));
        // Each answer swaps the request's addresses.
        assert_eq!(&a[0][26..30], &b[0][30..34]);
    }
}
