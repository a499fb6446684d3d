//! Frames built from scratch with correct checksums, for the demo's sample
//! traffic, the tests and the benchmarks' generators.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::wire::{MacAddr, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

const MAC_A: MacAddr = MacAddr([0x02, 0x18, 0, 0, 0, 1]);
const MAC_B: MacAddr = MacAddr([0x02, 0x19, 0, 0, 0, 1]);

/// A TCP segment's header fields.
#[derive(Debug, Clone, Default)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Raw option bytes; padded to a multiple of 4 with EOL.
    pub options: Vec<u8>,
}

impl Tcp {
    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        while opts.len() % 4 != 0 {
            opts.push(0);
        }
        let hl = 20 + opts.len();
        let mut b = Vec::with_capacity(hl + payload.len());
        b.extend_from_slice(&self.sport.to_be_bytes());
        b.extend_from_slice(&self.dport.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ack.to_be_bytes());
        b.push(((hl / 4) as u8) << 4);
        b.push(self.flags);
        b.extend_from_slice(&self.window.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&opts);
        b.extend_from_slice(payload);
        b
    }
}

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
        options: Vec::new(),
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

/// A UDP datagram (checksum filled in by [`ip_frame`]).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    b
}

/// An ICMP or ICMPv6 message: type, code, identifier, sequence, body.
pub fn icmp(ty: u8, code: u8, id: u16, seq: u16, body: &[u8]) -> Vec<u8> {
    let mut b = vec![ty, code, 0, 0];
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// An IP packet (no link header) carrying `l4`, with the IPv4 header
/// checksum and the transport checksum computed. `ext` lists IPv6
/// extension headers to put first (each 8 bytes long, by their protocol
/// numbers: 0 hop-by-hop, 43 routing, 44 fragment, 60 destination options).
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut l4 = l4.to_vec();
    let csum_at = match proto {
        PROTO_TCP => Some(16),
        PROTO_UDP => Some(6),
        PROTO_ICMP | PROTO_ICMPV6 => Some(2),
        _ => None,
    };
    let l4_len = l4.len() as u32;
    let pseudo = |s: &[u8], d: &[u8]| sum_words(sum_words(0, s), d) + proto as u32 + l4_len;
    if let Some(at) = csum_at.filter(|&at| l4.len() >= at + 2) {
        l4[at] = 0;
        l4[at + 1] = 0;
        let initial = match (src, dst) {
            (IpAddr::V4(_), _) if proto == PROTO_ICMP => 0,
            (IpAddr::V4(s), IpAddr::V4(d)) => pseudo(&s.octets(), &d.octets()),
            (IpAddr::V6(s), IpAddr::V6(d)) => pseudo(&s.octets(), &d.octets()),
            _ => panic!("mixed address families"),
        };
        let mut c = internet_checksum(initial, &l4);
        if c == 0 && proto == PROTO_UDP {
            c = 0xffff; // RFC 768: zero means "no checksum"
        }
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + l4.len();
            let mut p = vec![0x45, 0];
            p.extend_from_slice(&(total as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let c = internet_checksum(0, &p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&l4);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let payload = ext.len() * 8 + l4.len();
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&(payload as u16).to_be_bytes());
            p.push(*ext.first().unwrap_or(&proto));
            p.push(64);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            for (i, &e) in ext.iter().enumerate() {
                let next = *ext.get(i + 1).unwrap_or(&proto);
                match e {
                    // Fragment header: offset 0, no more fragments (atomic).
                    44 => p.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 1]),
                    // Routing type 0 with no segments left; others: PadN.
                    43 => p.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]),
                    _ => p.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
                }
            }
            p.extend_from_slice(&l4);
            p
        }
        _ => panic!("mixed address families"),
    }
}

/// An Ethernet frame carrying an IP packet (`ip_packet`), with up to two
/// VLAN tags (outer first, 802.1ad then 802.1Q).
pub fn frame(ip: &[u8], vlans: &[u16]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + ip.len());
    f.extend_from_slice(&MAC_B.0);
    f.extend_from_slice(&MAC_A.0);
    for (i, vid) in vlans.iter().enumerate() {
        let tpid: u16 = if i + 1 < vlans.len() { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    let ethertype: u16 = if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn sum_words(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

/// RFC 1071 checksum of `data`, starting from a partial sum.
pub fn internet_checksum(initial: u32, data: &[u8]) -> u16 {
    let mut acc = sum_words(initial, data) as u64;
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// One direction of a UDP/IPv4 flow.
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
        let ip = ip_packet(
            self.src.into(),
            self.dst.into(),
            PROTO_UDP,
            &[],
            &udp(self.sport, self.dport, payload),
        );
        let mut f = frame(&ip, &[]);
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
            let flow = UdpFlow {
                src_mac: MAC_A,
                dst_mac: MAC_B,
                src: Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8),
                dst: Ipv4Addr::new(198, 19, 0, 1),
                sport: 1024 + (i >> 16) as u16,
                dport: 53,
            };
            (flow.frame(&[0; 18]), flow.reversed().frame(&[0; 18]))
        })
        .unzip()
}

/// Cuts an IP packet (`ip_packet`, IPv4, or IPv6 without extension
/// headers) into fragments: one per `(offset, len)` of its payload, in the
/// order given, with identification `id`. A piece that reaches the end of
/// the payload has no More Fragments flag.
pub fn fragment(ip: &[u8], id: u32, pieces: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let v6 = ip[0] >> 4 == 6;
    let hlen = if v6 { 40 } else { usize::from(ip[0] & 0xf) * 4 };
    let payload = &ip[hlen..];
    pieces
        .iter()
        .map(|&(off, len)| {
            let data = &payload[off..off + len];
            let more = off + len < payload.len();
            let mut p = ip[..hlen].to_vec();
            if v6 {
                let next = p[6];
                p[6] = 44;
                p[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
                let fo = (off as u16 & !7) | u16::from(more);
                p.extend_from_slice(&[next, 0]);
                p.extend_from_slice(&fo.to_be_bytes());
                p.extend_from_slice(&id.to_be_bytes());
            } else {
                p[2..4].copy_from_slice(&((hlen + len) as u16).to_be_bytes());
                p[4..6].copy_from_slice(&(id as u16).to_be_bytes());
                let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
                p[6..8].copy_from_slice(&fo.to_be_bytes());
                p[10..12].copy_from_slice(&[0, 0]);
                let c = internet_checksum(0, &p);
                p[10..12].copy_from_slice(&c.to_be_bytes());
            }
            p.extend_from_slice(data);
            p
        })
        .collect()
}

/// `fragment` into pieces of `size` bytes (a multiple of 8), in order.
pub fn fragments(ip: &[u8], id: u32, size: usize) -> Vec<Vec<u8>> {
    let hlen = if ip[0] >> 4 == 6 {
        40
    } else {
        usize::from(ip[0] & 0xf) * 4
    };
    let total = ip.len() - hlen;
    let pieces: Vec<(usize, usize)> = (0..total)
        .step_by(size)
        .map(|off| (off, size.min(total - off)))
        .collect();
    fragment(ip, id, &pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{l4_ok, parse_frame, Frame, LinkType};

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
            options: vec![2, 4, 5, 0xb4, 3, 3, 7],
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
        let (a, b) = bulk_flows(70_000);
        assert!(a.iter().chain(&b).all(|f| f.len() == 60 && parsed_ok(f)));
        let distinct: std::collections::HashSet<&[u8]> = a.iter().map(|f| &f[26..38]).collect();
        assert_eq!(distinct.len(), 70_000);
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
