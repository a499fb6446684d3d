//! Internet checksums (RFC 1071) of transport segments, for the check Linux
//! does in `nf_conntrack_checksum` mode.

use super::ip::{IpPacket, L3, PROTO_ICMP, PROTO_UDP};

fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes(c.try_into().unwrap());
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether the IPv4 header checksum is right (always true for IPv6).
pub fn ip_header_ok(ip: &IpPacket<'_>) -> bool {
    ip.l3 == L3::V6 || fold(sum(0, ip.header)) == 0xffff
}

/// Whether the transport checksum is right. `None` when it cannot be told:
/// the segment was not captured whole, or it is a fragment.
pub fn l4_ok(ip: &IpPacket<'_>) -> Option<bool> {
    if ip.l4.len() != ip.l4_wire_len() || ip.fragment != super::Fragment::Whole {
        return None;
    }
    // A zero UDP checksum over IPv4 means "none" (RFC 768).
    if ip.proto == PROTO_UDP && ip.l3 == L3::V4 && ip.l4.get(6..8) == Some(&[0, 0]) {
        return Some(true);
    }
    let mut acc = sum(0, ip.l4);
    // ICMPv4 has no pseudo-header; everything else does (RFC 793, 768, 4443).
    if ip.proto != PROTO_ICMP {
        let (src, dst) = (ip.src.octets(), ip.dst.octets());
        let from = if ip.l3 == L3::V4 { 12 } else { 0 };
        acc = sum(acc, &src[from..]);
        acc = sum(acc, &dst[from..]);
        acc += ip.proto as u64 + ip.l4.len() as u64;
    }
    Some(fold(acc) == 0xffff)
}
