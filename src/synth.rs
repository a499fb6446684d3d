//! Frames built from scratch with correct checksums, for the demo's sample
//! traffic, the end-to-end tests and the benchmarks' generators.

use std::net::Ipv4Addr;

use crate::wire::MacAddr;

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
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&self.dst_mac.0);
        f.extend_from_slice(&self.src_mac.0);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        // IPv4 header: version 4, IHL 5, DF, TTL 64, protocol 17.
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(ip_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        let ip_sum = internet_checksum(0, &f[ip_start..]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let udp_start = f.len();
        f.extend_from_slice(&self.sport.to_be_bytes());
        f.extend_from_slice(&self.dport.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        let mut pseudo = 0u32;
        for word in [&self.src.octets()[..], &self.dst.octets()[..]] {
            pseudo = sum_words(pseudo, word);
        }
        pseudo += 17 + udp_len as u32;
        let udp_sum = match internet_checksum(pseudo, &f[udp_start..]) {
            0 => 0xffff, // RFC 768: a computed zero is sent as all ones.
            s => s,
        };
        f[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
        f
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let flow = UdpFlow {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 0, 1),
            sport: 1234,
            dport: 53,
        };
        let f = flow.frame(b"hello");
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        // A correct header sums to zero (RFC 1071).
        assert_eq!(internet_checksum(0, &f[14..34]), 0);
        let mut pseudo = sum_words(0, &f[26..34]);
        pseudo += 17 + 13;
        assert_eq!(internet_checksum(pseudo, &f[34..]), 0);
        assert_eq!(flow.reversed().reversed(), flow);
    }

    #[test]
    fn sample_is_symmetric() {
        let (a, b) = sample_conversations(5, 3);
        assert_eq!(a.len(), 15);
        assert_eq!(b.len(), 15);
        // Each answer swaps the request's addresses.
        assert_eq!(&a[0][26..30], &b[0][30..34]);
    }
}
