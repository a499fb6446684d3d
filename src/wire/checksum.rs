//! Internet checksums (RFC 1071) of transport segments, for the check Linux
//! does in `nf_conntrack_checksum` mode.
//!
//! The sum is taken over native-endian words: RFC 1071 (section 2(B))
//! shows the one's-complement sum is byte-order independent, the result
//! only comes out byte-swapped, and the "all ones" a correct packet sums to
//! reads the same either way. That saves a byte swap per word; eight bytes
//! are added at a time.

use super::ip::{Fragment, IpPacket, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// What checking a packet's checksums reads: a small copy of the packet
/// view, for a pipeline that checks them after it has put the view away.
#[derive(Debug, Clone, Copy)]
pub struct ChecksumView<'a> {
    l3: L3,
    proto: u8,
    fragment: Fragment,
    l4_wire_len: u32,
    header: &'a [u8],
    l4: &'a [u8],
}

impl<'a> ChecksumView<'a> {
    #[inline(always)]
    pub fn of(ip: &IpPacket<'a>) -> ChecksumView<'a> {
        ChecksumView {
            l3: ip.l3,
            proto: ip.proto,
            fragment: ip.fragment,
            l4_wire_len: ip.l4_wire_len() as u32,
            header: ip.header,
            l4: ip.l4,
        }
    }

    /// Whether this is a later fragment (no transport header to check).
    pub fn later_fragment(&self) -> bool {
        self.fragment == Fragment::Later
    }

    /// Whether the IPv4 header checksum is right (always true for IPv6).
    #[inline]
    pub fn header_ok(&self) -> bool {
        self.l3 == L3::V6 || fold(sum_ipv4_header(self.header)) == 0xffff
    }

    /// Whether the transport checksum is right. `None` when it cannot be
    /// told: the segment was not captured whole, or it is a fragment.
    /// Always in line, with `total`: each was a call on every packet, 6
    /// instructions an established packet together (`perf/bench-instructions`).
    #[inline(always)]
    pub fn l4_ok(&self) -> Option<bool> {
        if self.l4.len() != self.l4_wire_len as usize || self.fragment != Fragment::Whole {
            return None;
        }
        Some(self.finish(sum(0, self.l4)))
    }

    /// `l4_ok` for a segment whose first part is this view's and whose rest
    /// comes in `rest`, in order (the later segments of an mbuf chain).
    pub fn l4_ok_spread<'s>(&self, rest: impl Iterator<Item = &'s [u8]>) -> Option<bool> {
        if self.fragment != Fragment::Whole {
            return None;
        }
        let want = self.l4_wire_len as usize;
        let (mut acc, mut have) = (sum(0, self.l4), self.l4.len());
        for seg in rest {
            if have >= want {
                break;
            }
            let part = &seg[..seg.len().min(want - have)];
            let s = fold(sum(0, part));
            // A part that starts at an odd offset sums byte-swapped
            // (RFC 1071, section 2(B)).
            acc = add(
                acc,
                u64::from(if have % 2 == 1 { s.swap_bytes() } else { s }),
            );
            have += part.len();
        }
        (have == want).then(|| self.finish(acc))
    }

    /// A zero UDP checksum over IPv4 means "none" (RFC 768). Out of line
    /// and asked only when the sum fails (`finish`): tested first, on
    /// every packet, it took 17 instructions of the worker's 797 a
    /// firewall packet, and in line after the sum the compiler still
    /// computed it beside the sum; this way the worker takes 7 fewer in
    /// all (ten-pass profile, 813.5 against 820.6).
    #[cold]
    #[inline(never)]
    fn no_udp_checksum(&self) -> bool {
        self.proto == PROTO_UDP && self.l3 == L3::V4 && matches!(self.l4.get(6..8), Some([0, 0]))
    }

    /// Adds the pseudo-header to the segment's sum `acc` and checks it;
    /// a UDP datagram over IPv4 without a checksum passes whatever it
    /// sums to.
    #[inline]
    fn finish(&self, acc: u64) -> bool {
        self.total(acc) == 0xffff || self.no_udp_checksum()
    }

    /// The transport checksum field for this segment, captured whole, whose
    /// checksum field reads zero, in the order it is stored (`None`: not
    /// captured whole, a fragment, or no transport checksum).
    pub fn l4_checksum(&self) -> Option<[u8; 2]> {
        let whole = self.l4.len() == self.l4_wire_len as usize && self.fragment == Fragment::Whole;
        let checksummed = matches!(
            self.proto,
            PROTO_TCP | PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6
        );
        if !whole || !checksummed {
            return None;
        }
        let c = !self.total(sum(0, self.l4));
        // RFC 768: a computed zero is sent as all ones (zero means none).
        let c = if c == 0 && self.proto == PROTO_UDP {
            0xffff
        } else {
            c
        };
        Some(c.to_ne_bytes())
    }

    /// The folded sum of the segment's sum `acc` and its pseudo-header.
    #[inline(always)]
    fn total(&self, mut acc: u64) -> u16 {
        // ICMPv4 has no pseudo-header; everything else does (RFC 793, 768,
        // 4443).
        if self.proto != PROTO_ICMP {
            // Both addresses sit side by side in the IP header.
            acc = match self.l3 {
                L3::V4 => add(acc, u64::from_ne_bytes(word_at(self.header, 12))),
                L3::V6 => sum(acc, &self.header[8..40]),
            };
            // The upper-layer length is at most 65535: IPv6 jumbograms are
            // refused by the parser.
            acc = add(
                acc,
                word(u16::from(self.proto)) + word(self.l4_wire_len as u16),
            );
        }
        fold(acc)
    }
}

/// `acc + v` with the carry out of bit 63 added back in at bit 0: RFC
/// 1071's end-around carry, 64 bits at a time (as Linux's `csum_partial`
/// adds with `adc`). Since 2^64 and 2^32 are 1 modulo 2^16 - 1, such a sum
/// folds (`fold`) to the 16-bit one's complement sum of the same bytes.
/// One add and one add-with-carry per 8 bytes, where splitting each word
/// into 32-bit halves took four instructions.
#[inline(always)]
fn add(acc: u64, v: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(v);
    s + u64::from(carry)
}

/// Adds `data` to `acc` as native-endian 16-bit words (a last odd byte as
/// the high-order byte of a word in network order).
#[inline]
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut rest = data;
    // Two words a round, then one, then the tail. A minimal frame's
    // segment (26 bytes of UDP, 20 of TCP) takes the round once or not at
    // all. One word a round, the compiler unrolled the loop four times
    // behind a set-up of 17 instructions that such a segment paid and
    // never used: 11 more instructions a packet in the worker
    // (`perf/bench-instructions`: 765.6 against 754.8). A long segment
    // pays about three instructions a word (the add, the add-with-carry,
    // and half the loop's two), beside a chain of adds that each wait for
    // the one before however the loop is written.
    while let Some((w, tail)) = rest.split_first_chunk::<16>() {
        acc = add(acc, u64::from_ne_bytes(word_at(w, 0)));
        acc = add(acc, u64::from_ne_bytes(word_at(w, 8)));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<8>() {
        acc = add(acc, u64::from_ne_bytes(*w));
        rest = tail;
    }
    if rest.len() >= 4 {
        let w = u32::from_ne_bytes(rest[..4].try_into().expect("4 bytes"));
        acc = add(acc, u64::from(w));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc = add(acc, u64::from(u16::from_ne_bytes([rest[0], rest[1]])));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc = add(acc, u64::from(u16::from_ne_bytes([*last, 0])));
    }
    acc
}

/// A 16-bit value in network order, as `sum` adds it.
#[inline]
fn word(v: u16) -> u64 {
    u64::from(u16::from_ne_bytes(v.to_be_bytes()))
}

/// The 16-bit one's complement sum that `acc` stands for, with no loop
/// and no branch: 64 bits to 32 with the end-around carry (2^32 is 1
/// modulo 2^16 - 1), then 32 to 16 as Linux's `csum_fold` does it: the
/// high half of `s + (s rotated by 16)` is the halves' sum with the carry
/// out of the low half added back in. The loop it replaces took a
/// mispredictable branch and two rounds on most packets. NAT's
/// incremental updates (`rewrite`) fold with it too.
#[inline(always)]
pub(super) fn fold(acc: u64) -> u16 {
    let (s, carry) = ((acc >> 32) as u32).overflowing_add(acc as u32);
    // With a carry the sum is at most 2^32 - 2, so this cannot overflow.
    let s = s + u32::from(carry);
    (s.wrapping_add(s.rotate_right(16)) >> 16) as u16
}

/// The eight bytes of `data` from `at` (which the caller has checked it
/// holds).
#[inline(always)]
fn word_at(data: &[u8], at: usize) -> [u8; 8] {
    data[at..at + 8].try_into().expect("8 bytes")
}

/// `sum(0, header)` for an IPv4 header, with the optionless 20 bytes of
/// nearly every packet added as three words, not through `sum`'s loop
/// (whose set-up for a length it does not know costs more than the adds).
#[inline(always)]
fn sum_ipv4_header(header: &[u8]) -> u64 {
    match header.split_first_chunk::<20>() {
        Some((h, [])) => {
            let (a, rest) = h.split_first_chunk::<8>().expect("20 bytes");
            let (b, c) = rest.split_first_chunk::<8>().expect("12 bytes");
            let c: [u8; 4] = *c.first_chunk().expect("4 bytes");
            let acc = add(u64::from_ne_bytes(*a), u64::from_ne_bytes(*b));
            add(acc, u64::from(u32::from_ne_bytes(c)))
        }
        _ => sum(0, header),
    }
}

/// Whether the IPv4 header checksum is right (always true for IPv6).
#[inline]
pub fn ip_header_ok(ip: &IpPacket<'_>) -> bool {
    ChecksumView::of(ip).header_ok()
}

/// The checksum field for an IPv4 header whose checksum field is zero,
/// in the order it is stored.
pub fn header_checksum(header: &[u8]) -> [u8; 2] {
    (!fold(sum_ipv4_header(header))).to_ne_bytes()
}

/// Whether the transport checksum is right. `None` when it cannot be told:
/// the segment was not captured whole, or it is a fragment.
#[inline]
pub fn l4_ok(ip: &IpPacket<'_>) -> Option<bool> {
    ChecksumView::of(ip).l4_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_frame, Frame, LinkType};

    /// RFC 1071's reference: the big-endian sum, one 16-bit word at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        fold(acc)
    }

    #[test]
    fn a_segment_spread_over_buffers_checks_as_a_whole() {
        use crate::synth::{ip_packet, udp};
        let (a, b) = ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap());
        let payload: Vec<u8> = (0..301).map(|i| (i * 7) as u8).collect();
        let p = ip_packet(a, b, 17, &[], &udp(1, 2, &payload));
        let ip = crate::wire::parse_ip(&p, p.len(), false).unwrap();
        let whole = ChecksumView::of(&ip);
        assert_eq!(whole.l4_ok(), Some(true));
        // The first buffer ends at `cut`, the rest comes in pieces of 7, 64
        // and the remainder: odd and even offsets both.
        for cut in [28, 29, 30, 100, 101] {
            let first = crate::wire::parse_ip(&p[..cut], p.len(), false).unwrap();
            let v = ChecksumView::of(&first);
            assert_eq!(v.l4_ok(), None, "cut short");
            let rest = &p[cut..];
            let pieces = [&rest[..7], &rest[7..71], &rest[71..]];
            assert_eq!(v.l4_ok_spread(pieces.into_iter()), Some(true), "{cut}");
            let mut bad = rest.to_vec();
            bad[80] ^= 1;
            let pieces = [&bad[..7], &bad[7..71], &bad[71..]];
            assert_eq!(v.l4_ok_spread(pieces.into_iter()), Some(false), "{cut}");
            assert_eq!(
                v.l4_ok_spread([&rest[..7]].into_iter()),
                None,
                "missing bytes"
            );
        }
    }

    /// RFC 768: a zero UDP checksum over IPv4 means none, whatever the
    /// datagram sums to; over IPv6 it is wrong (RFC 8200, section 8.1).
    #[test]
    fn a_zero_udp_checksum_is_none_over_ipv4_only() {
        use crate::synth::{ip_packet, udp};
        for (a, b, ok) in [
            ("198.18.0.1", "198.19.0.1", Some(true)),
            ("2001:2::1", "2001:2::2", Some(false)),
        ] {
            let mut p = ip_packet(
                a.parse().unwrap(),
                b.parse().unwrap(),
                17,
                &[],
                &udp(1, 2, b"x"),
            );
            let l4 = p.len() - 9;
            p[l4 + 6..l4 + 8].fill(0);
            let ip = crate::wire::parse_ip(&p, p.len(), false).unwrap();
            assert_eq!(ChecksumView::of(&ip).l4_ok(), ok, "{a}");
            let rest = [&p[p.len() - 1..]];
            let first = crate::wire::parse_ip(&p[..p.len() - 1], p.len(), false).unwrap();
            assert_eq!(
                ChecksumView::of(&first).l4_ok_spread(rest.into_iter()),
                ok,
                "{a}"
            );
        }
    }

    #[test]
    fn native_order_sum_is_the_byte_swapped_reference() {
        let mut next = crate::synth::xorshift(0x1234_5678_9abc_def1);
        for len in 0..80 {
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert_eq!(fold(sum(0, &data)).swap_bytes(), reference(&data), "{len}");
        }
        // Bytes near all ones carry out of bit 63 on almost every add; a
        // jumbo frame's worth of them, and a start near the top.
        for len in [8, 9, 15, 64, 1501, 9018] {
            for fill in [0xff, 0xfe, 0x80] {
                let data = vec![fill; len];
                assert_eq!(fold(sum(0, &data)).swap_bytes(), reference(&data), "{len}");
                assert_eq!(
                    fold(sum(u64::MAX - 1, &data)),
                    fold(add(sum(0, &data), u64::MAX - 1)),
                    "{len}"
                );
            }
        }
    }

    /// `fold` against the plain definition: add the 16-bit halves with
    /// their carries until 16 bits are left.
    #[test]
    fn fold_is_the_end_around_carry_sum_of_the_words() {
        fn by_loop(mut acc: u64) -> u16 {
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        }
        let mut next = crate::synth::xorshift(0x0bad_cafe_f00d_d00d);
        let edges = [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0xffff_ffff, 0x1_0000_0000];
        let randoms = (0..100_000).map(|_| next());
        for acc in edges
            .into_iter()
            .chain(edges.map(|e| u64::MAX - e))
            .chain(randoms)
        {
            assert_eq!(fold(acc), by_loop(acc), "{acc:#x}");
        }
    }

    #[test]
    fn an_ipv4_header_sums_alike_with_and_without_options() {
        let mut next = crate::synth::xorshift(0x5eed_0f12_3456);
        for len in [20, 24, 60] {
            for _ in 0..1000 {
                let h: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                assert_eq!(fold(sum_ipv4_header(&h)), fold(sum(0, &h)), "{len}");
            }
        }
    }

    #[test]
    fn generated_packets_check_and_a_flipped_bit_does_not() {
        use crate::synth::{frame, icmp, ip_packet, udp, Tcp};
        let (a, b) = ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap());
        let (a6, b6) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let seg = Tcp {
            sport: 1,
            dport: 2,
            seq: 7,
            flags: 0x10,
            window: 9,
            ..Tcp::default()
        };
        for f in [
            frame(&ip_packet(a, b, 17, &[], &udp(1, 2, b"odd")), &[]),
            frame(&ip_packet(a, b, 6, &[], &seg.bytes(b"data!")), &[]),
            frame(&ip_packet(a, b, 1, &[], &icmp(8, 0, 1, 1, b"ping")), &[]),
            frame(&ip_packet(a6, b6, 17, &[], &udp(1, 2, b"v6")), &[]),
            frame(&ip_packet(a6, b6, 58, &[], &icmp(128, 0, 1, 1, b"p")), &[]),
        ] {
            let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, &f, f.len()) else {
                panic!("not IP")
            };
            assert!(ip_header_ok(&ip));
            assert_eq!(l4_ok(&ip), Some(true));
            let mut bad = f.clone();
            *bad.last_mut().unwrap() ^= 0x40;
            let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, &bad, bad.len()) else {
                panic!("not IP")
            };
            assert_eq!(l4_ok(&ip), Some(false));
        }
    }
}
