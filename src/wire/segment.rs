//! NAT's usual write on a path of its own: a whole IPv4 TCP or UDP
//! packet's addresses and ports, both checksums updated once (RFC 1624).
//! [`IpPacketMut`](super::IpPacketMut) does the same for any packet, and
//! pays for that generality on each of them: the family and protocol are
//! asked again at every field, and each field is read and written in
//! network order. Here the layout is known where the view is made, the
//! addresses are one 8-byte word and the ports one 4-byte word, and the
//! sums run in the machine's byte order, which RFC 1071 (section 2(B))
//! allows: a one's complement sum of byte-swapped words is the swapped
//! sum, so a checksum computed and stored in native order is right.

use super::ip::{PROTO_TCP, PROTO_UDP};
use super::rewrite::apply_delta;
use super::Error;

/// Where the source address starts in an IPv4 header; the destination
/// follows it.
const ADDRS: usize = 12;
/// Where the IPv4 header checksum is.
const HEADER_CHECKSUM: usize = 10;

/// A whole IPv4 TCP or UDP packet whose addresses and ports can be
/// changed in place. Lengths are checked once, in [`Ipv4SegmentMut::new`].
#[derive(Debug)]
pub struct Ipv4SegmentMut<'a> {
    buf: &'a mut [u8],
    /// The transport header's offset.
    l4: usize,
    /// The transport checksum's offset.
    csum: usize,
    udp: bool,
}

impl<'a> Ipv4SegmentMut<'a> {
    /// A view of the IPv4 packet at the start of `buf` (its first
    /// segment, headers included), a TCP or UDP packet (`proto`) whose
    /// transport header is at `l4`, as classification found it. Fails
    /// unless the transport header is in `buf` and in the packet the IP
    /// length gives, as far as its checksum.
    #[inline(always)]
    pub fn new(buf: &'a mut [u8], l4: usize, proto: u8) -> Result<Ipv4SegmentMut<'a>, Error> {
        let (at, err) = match proto {
            PROTO_TCP => (16, Error::TruncatedTcp),
            PROTO_UDP => (6, Error::TruncatedUdp),
            _ => return Err(Error::TruncatedUdp),
        };
        let Some(len) = buf.get(2..4) else {
            return Err(Error::TruncatedIp);
        };
        let ip_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let end = l4 + at + 2;
        if l4 < 20 || end > ip_len || end > buf.len() {
            return Err(err);
        }
        Ok(Ipv4SegmentMut {
            buf,
            l4,
            csum: l4 + at,
            udp: proto == PROTO_UDP,
        })
    }

    /// Sets both addresses and both ports (each given as the wire carries
    /// it: `src` is the address whose first octet is its high byte) and
    /// updates the header and transport checksums by the change.
    #[inline(always)]
    pub fn set_endpoints(&mut self, src: u32, dst: u32, sport: u16, dport: u16) {
        let addrs = u64::from_ne_bytes(bytes8(src.to_be_bytes(), dst.to_be_bytes()));
        let ports = u32::from_ne_bytes(bytes4(sport.to_be_bytes(), dport.to_be_bytes()));
        let addrs_delta = self.replace8(ADDRS, addrs);
        let ports_delta = self.replace4(self.l4, ports);
        let header = self.get2(HEADER_CHECKSUM);
        self.set2(HEADER_CHECKSUM, apply_delta(header, addrs_delta));
        let hc = self.get2(self.csum);
        // UDP over IPv4: a zero checksum means none, and stays zero
        // (RFC 768); a computed zero is sent as all ones.
        if self.udp && hc == 0 {
            return;
        }
        let mut c = apply_delta(hc, addrs_delta + ports_delta);
        if self.udp && c == 0 {
            c = 0xffff;
        }
        self.set2(self.csum, c);
    }

    /// Writes the 8 bytes at `at`; what RFC 1624's eqn. 3 adds to ~HC
    /// for the change (~m + m' over the words, unfolded).
    #[inline(always)]
    fn replace8(&mut self, at: usize, new: u64) -> u64 {
        let field: &mut [u8; 8] = (&mut self.buf[at..at + 8]).try_into().expect("8 bytes");
        let old = u64::from_ne_bytes(*field);
        *field = new.to_ne_bytes();
        halves(!old) + halves(new)
    }

    /// As `replace8`, for 4 bytes.
    #[inline(always)]
    fn replace4(&mut self, at: usize, new: u32) -> u64 {
        let field: &mut [u8; 4] = (&mut self.buf[at..at + 4]).try_into().expect("4 bytes");
        let old = u32::from_ne_bytes(*field);
        *field = new.to_ne_bytes();
        u64::from(!old) + u64::from(new)
    }

    #[inline(always)]
    fn get2(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.buf[at], self.buf[at + 1]])
    }

    #[inline(always)]
    fn set2(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    }
}

/// The fuzz target `rewrite_views`' driver: the fast view against the
/// general one. `data` is 12 bytes of new endpoints (source and
/// destination address, source and destination port, in network order),
/// a byte that names a transport offset to try besides, then an IP packet.
/// Where the packet is a whole IPv4 TCP or UDP one, both views must take
/// it or refuse it alike and leave the same bytes; any other offset must
/// be refused or taken without a panic. `Err` says how they differ.
pub fn compare_rewrites(data: &[u8]) -> Result<(), String> {
    let Some((head, packet)) = data.split_first_chunk::<13>() else {
        return Ok(());
    };
    let word = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (src, dst, ports) = (word(0), word(4), word(8));
    let (sport, dport) = ((ports >> 16) as u16, ports as u16);
    let mut other = packet.to_vec();
    if let Ok(mut ip) = Ipv4SegmentMut::new(
        &mut other,
        usize::from(head[12]),
        packet.get(9).copied().unwrap_or(0),
    ) {
        ip.set_endpoints(src, dst, sport, dport);
    }
    let Ok(ip) = super::parse_ip(packet, packet.len(), false) else {
        return Ok(());
    };
    let whole = ip.l3 == super::L3::V4
        && matches!(ip.proto, PROTO_TCP | PROTO_UDP)
        && ip.fragment == super::Fragment::Whole;
    if !whole {
        return Ok(());
    }
    let (proto, l4) = (ip.proto, ip.l4_offset);
    let mut fast = packet.to_vec();
    let fast_ok = Ipv4SegmentMut::new(&mut fast, l4, proto)
        .map(|mut ip| ip.set_endpoints(src, dst, sport, dport))
        .is_ok();
    let mut general = packet.to_vec();
    let general_ok = super::IpPacketMut::with_layout(&mut general, super::L3::V4, proto, l4)
        .ok()
        .filter(|ip| ip.rewritable())
        .map(|mut ip| {
            let (s, d) = (
                super::Addr::v4(src.to_be_bytes()),
                super::Addr::v4(dst.to_be_bytes()),
            );
            ip.set_endpoints(s, d, sport, dport)
        })
        .is_some_and(|r| r.is_ok());
    if fast_ok != general_ok {
        return Err(format!(
            "the fast view {} the packet, the general one {}",
            took(fast_ok),
            took(general_ok)
        ));
    }
    if fast_ok && fast != general {
        return Err(format!(
            "the views wrote differently:\n fast    {fast:02x?}\n general {general:02x?}"
        ));
    }
    Ok(())
}

fn took(ok: bool) -> &'static str {
    if ok {
        "took"
    } else {
        "refused"
    }
}

/// The sum of a word's 32-bit halves: folded, the one's complement sum
/// of its four 16-bit words.
#[inline(always)]
fn halves(v: u64) -> u64 {
    (v >> 32) + (v & 0xffff_ffff)
}

#[inline(always)]
fn bytes8(a: [u8; 4], b: [u8; 4]) -> [u8; 8] {
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

#[inline(always)]
fn bytes4(a: [u8; 2], b: [u8; 2]) -> [u8; 4] {
    [a[0], a[1], b[0], b[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ip_header_ok, l4_ok, parse_ip, Addr, IpPacketMut};

    /// The general view's test packets that this one takes: IPv4, TCP
    /// or UDP.
    fn packets() -> Vec<Vec<u8>> {
        let mut v = crate::wire::rewrite::tests::packets();
        v.retain(|p| p[0] >> 4 == 4 && matches!(p[9], PROTO_TCP | PROTO_UDP));
        v
    }

    fn l4_at(p: &[u8]) -> usize {
        usize::from(p[0] & 0xf) * 4
    }

    #[test]
    fn the_fast_write_is_the_general_one() {
        let mut next = crate::synth::xorshift(0x5e9_3e47);
        for p in packets() {
            let proto = p[9];
            for round in 0..500 {
                let r = next();
                let (src, dst) = (r as u32, (r >> 32) as u32);
                let r = next();
                let (sport, dport) = (r as u16, (r >> 16) as u16);
                let mut fast = p.clone();
                // Half the rounds keep some fields, which add nothing.
                let src = if round % 4 == 1 {
                    u32::from_be_bytes(p[12..16].try_into().unwrap())
                } else {
                    src
                };
                let sport = if round % 4 == 2 {
                    u16::from_be_bytes([p[l4_at(&p)], p[l4_at(&p) + 1]])
                } else {
                    sport
                };
                Ipv4SegmentMut::new(&mut fast, l4_at(&p), proto)
                    .unwrap()
                    .set_endpoints(src, dst, sport, dport);
                let mut general = p.clone();
                IpPacketMut::new(&mut general)
                    .unwrap()
                    .set_endpoints(
                        Addr::v4(src.to_be_bytes()),
                        Addr::v4(dst.to_be_bytes()),
                        sport,
                        dport,
                    )
                    .unwrap();
                assert_eq!(fast, general);
                let ip = parse_ip(&fast, fast.len(), false).unwrap();
                assert!(ip_header_ok(&ip));
                assert_eq!(l4_ok(&ip), Some(true));
            }
        }
    }

    #[test]
    fn a_udp_packet_without_a_checksum_keeps_none() {
        let mut p = packets().remove(0);
        let at = l4_at(&p) + 6;
        p[at..at + 2].fill(0);
        let l4 = l4_at(&p);
        Ipv4SegmentMut::new(&mut p, l4, PROTO_UDP)
            .unwrap()
            .set_endpoints(1, 2, 3, 4);
        assert_eq!(p[at..at + 2], [0, 0]);
        let ip = parse_ip(&p, p.len(), false).unwrap();
        assert!(ip_header_ok(&ip));
    }

    #[test]
    fn a_computed_zero_udp_checksum_is_sent_as_all_ones() {
        let p = packets().remove(0);
        let (l4, at) = (l4_at(&p), l4_at(&p) + 6);
        let word = |at: usize| u32::from_be_bytes(p[at..at + 4].try_into().unwrap());
        // The general view sends a computed zero as all ones (RFC 768):
        // the source port that gives one.
        let sport = (0..=u16::MAX)
            .find(|&sport| {
                let mut q = p.clone();
                IpPacketMut::new(&mut q).unwrap().set_sport(sport).unwrap();
                q[at..at + 2] == [0xff, 0xff]
            })
            .expect("some port sums to zero");
        let (mut fast, mut general) = (p.clone(), p.clone());
        IpPacketMut::new(&mut general)
            .unwrap()
            .set_sport(sport)
            .unwrap();
        let dport = u16::from_be_bytes([p[l4 + 2], p[l4 + 3]]);
        Ipv4SegmentMut::new(&mut fast, l4, PROTO_UDP)
            .unwrap()
            .set_endpoints(word(12), word(16), sport, dport);
        assert_eq!(fast[at..at + 2], [0xff, 0xff]);
        assert_eq!(fast, general);
    }

    #[test]
    fn short_or_other_packets_are_refused() {
        let p = packets().remove(1);
        let l4 = l4_at(&p);
        // Cut before the TCP checksum's end; an IP length that stops
        // short of it; another protocol; a transport header in the IP's.
        let mut cut = p[..l4 + 17].to_vec();
        assert!(Ipv4SegmentMut::new(&mut cut, l4, PROTO_TCP).is_err());
        let mut short = p.clone();
        short[2..4].copy_from_slice(&((l4 + 17) as u16).to_be_bytes());
        assert!(Ipv4SegmentMut::new(&mut short, l4, PROTO_TCP).is_err());
        let mut other = p.clone();
        assert!(Ipv4SegmentMut::new(&mut other, l4, 47).is_err());
        assert!(Ipv4SegmentMut::new(&mut other, 12, PROTO_TCP).is_err());
        let mut none: [u8; 3] = [0x45, 0, 0];
        assert!(Ipv4SegmentMut::new(&mut none, 20, PROTO_UDP).is_err());
    }
}
