//! Writable packet views: the fields NAT and a router change (addresses,
//! ports, the ICMP query identifier, TTL), each setter keeping the IPv4
//! header checksum and the transport checksum right by RFC 1624's
//! incremental update instead of a recomputation over the packet.

use super::checksum::{fold, header_checksum, ChecksumView};
use super::ip::{parse_ip, Addr, Fragment, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::Error;

/// RFC 1624, eqn. 3: the checksum `hc` of data in which the 16-bit words
/// `old` became `new` (equal, even lengths): HC' = ~(~HC + ~m + m').
pub fn checksum_adjust(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    apply_delta(hc, u64::from(checksum_delta(old, new)))
}

/// What RFC 1624's eqn. 3 adds to ~HC for a change of `old` to `new`:
/// ~m + m' over their 16-bit words, folded to 16 bits. Computed once, it
/// serves every checksum that covers the change.
#[inline]
fn checksum_delta(old: &[u8], new: &[u8]) -> u32 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = 0u32;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    u32::from(fold(u64::from(acc)))
}

/// HC' = ~(~HC + delta), for a delta folded or not (a sum of a few
/// 16-bit words: `fold` takes any sum). The order of `hc` and the
/// delta's words is the caller's, network or native (RFC 1071 2(B)).
#[inline(always)]
pub(super) fn apply_delta(hc: u16, delta: u64) -> u16 {
    !fold(u64::from(!hc) + delta)
}

/// An IP packet whose headers can be changed in place. Lengths are checked
/// once, in [`IpPacketMut::new`]; setters then cannot go out of bounds.
#[derive(Debug)]
pub struct IpPacketMut<'a> {
    buf: &'a mut [u8],
    l3: L3,
    proto: u8,
    /// Offset of the transport header, when this packet carries it (a whole
    /// packet or a first fragment, captured far enough).
    l4: Option<usize>,
    /// Offset of the transport checksum from the IP header, when it is
    /// here. Whether it covers the addresses (the pseudo-header) and what
    /// a zero means follow from `proto` and `l3`; keeping only the offset
    /// lets the view be built and moved in whole words (a view with two
    /// flag bytes beside it was written byte by byte and read back as a
    /// word: a store-forwarding stall of 13 cycles a NAT packet, measured
    /// with `perf annotate` on `rewrite_frame`).
    csum: Option<usize>,
}

impl<'a> IpPacketMut<'a> {
    /// A view of the IP packet at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Result<IpPacketMut<'a>, Error> {
        let len = buf.len();
        IpPacketMut::spread(buf, len)
    }

    /// A view of an IP packet of `wire_len` bytes of which `buf` holds the
    /// start (the first segment of a packet in several), headers included.
    pub fn spread(buf: &'a mut [u8], wire_len: usize) -> Result<IpPacketMut<'a>, Error> {
        IpPacketMut::parse(buf, wire_len, false)
    }

    /// A view of the packet an ICMP error quotes (`buf`, to the end of the
    /// error): its lengths may promise more than was quoted.
    pub fn quoted(buf: &'a mut [u8]) -> Result<IpPacketMut<'a>, Error> {
        let len = buf.len();
        IpPacketMut::parse(buf, len, true)
    }

    fn parse(buf: &'a mut [u8], wire_len: usize, lax: bool) -> Result<IpPacketMut<'a>, Error> {
        let ip = parse_ip(buf, wire_len, lax)?;
        let (l3, proto, l4_offset) = (ip.l3, ip.proto, ip.l4_offset);
        let present = ip.l4.len();
        let has_l4 = ip.fragment != Fragment::Later;
        Ok(IpPacketMut::with(
            buf, l3, proto, l4_offset, present, has_l4,
        ))
    }

    /// A view of a whole (unfragmented) IP packet whose headers were
    /// parsed before, as `parse_ip` found them: family `l3`, transport
    /// protocol `proto` at `l4_offset`. Only the lengths the setters need
    /// are checked again; the IP length field bounds the transport bytes.
    pub fn with_layout(
        buf: &'a mut [u8],
        l3: L3,
        proto: u8,
        l4_offset: usize,
    ) -> Result<IpPacketMut<'a>, Error> {
        let ip_len = match l3 {
            L3::V4 if buf.len() >= 20 => usize::from(u16::from_be_bytes([buf[2], buf[3]])),
            L3::V6 if buf.len() >= 40 => 40 + usize::from(u16::from_be_bytes([buf[4], buf[5]])),
            L3::V4 => return Err(Error::TruncatedIp),
            L3::V6 => return Err(Error::TruncatedIp),
        };
        let end = ip_len.min(buf.len());
        if l4_offset > end {
            return Err(Error::TruncatedIp);
        }
        Ok(IpPacketMut::with(
            buf,
            l3,
            proto,
            l4_offset,
            end - l4_offset,
            true,
        ))
    }

    fn with(
        buf: &'a mut [u8],
        l3: L3,
        proto: u8,
        l4_offset: usize,
        present: usize,
        has_l4: bool,
    ) -> IpPacketMut<'a> {
        // The fields a setter touches must be there: the ports (4 bytes)
        // or the ICMP identifier (bytes 4-5). The checksum field may be
        // missing where the transport header is cut short (the quoted
        // packet of an ICMP error often keeps 8 bytes of a TCP header, as
        // RFC 792 asks): then the ports change and no checksum is kept.
        let (need, at) = match (proto, l3) {
            (PROTO_TCP, _) => (4, 16),
            (PROTO_UDP, _) => (4, 6),
            (PROTO_ICMP, L3::V4) | (PROTO_ICMPV6, L3::V6) => (6, 2),
            _ => (usize::MAX, 0),
        };
        let l4 = (has_l4 && present >= need).then_some(l4_offset);
        let csum = l4.filter(|_| present >= at + 2).map(|_| l4_offset + at);
        IpPacketMut {
            buf,
            l3,
            proto,
            l4,
            csum,
        }
    }

    /// Whether every field NAT may change is here with the checksum that
    /// covers it: for TCP, UDP and ICMP the transport header as far as its
    /// checksum; for other protocols the IP header is enough.
    pub fn rewritable(&self) -> bool {
        match self.proto {
            PROTO_TCP | PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6 => self.csum.is_some(),
            _ => true,
        }
    }

    /// Whether the transport header is here to change (not a later
    /// fragment, nor cut short).
    pub fn carries_ports(&self) -> bool {
        self.l4.is_some()
    }

    fn word(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    fn set_word(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Adjusts the IPv4 header checksum by the delta of a change of its
    /// bytes (`replace`).
    fn adjust_header_by(&mut self, delta: u32) {
        if self.l3 == L3::V4 {
            let c = apply_delta(self.word(10), u64::from(delta));
            self.set_word(10, c);
        }
    }

    /// Adjusts the transport checksum by the delta of a change of covered
    /// bytes (`pseudo`: the bytes are the pseudo-header's addresses).
    fn adjust_l4_by(&mut self, delta: u32, pseudo: bool) {
        let Some(at) = self.csum else { return };
        // ICMPv4's checksum covers no pseudo-header (RFC 792).
        if pseudo && self.proto == PROTO_ICMP {
            return;
        }
        let hc = self.word(at);
        // UDP over IPv4: a zero checksum means none, and stays zero
        // (RFC 768).
        if hc == 0 && self.proto == PROTO_UDP && self.l3 == L3::V4 {
            return;
        }
        let mut v = apply_delta(hc, u64::from(delta));
        if v == 0 && self.proto == PROTO_UDP {
            v = 0xffff; // RFC 768: zero would mean "no checksum"
        }
        self.set_word(at, v);
    }

    /// Where the source (`dst` false) or destination address sits.
    fn addr_at(&self, dst: bool) -> usize {
        match (self.l3, dst) {
            (L3::V4, false) => 12,
            (L3::V4, true) => 16,
            (L3::V6, false) => 8,
            (L3::V6, true) => 24,
        }
    }

    /// Writes the source (`dst` false) or destination address; the
    /// checksum delta of the change. Always in line: `set_endpoints`
    /// calls it twice per translated packet, where a call measured 45
    /// more instructions (`perf/bench-instructions`).
    #[inline(always)]
    fn replace_addr(&mut self, dst: bool, a: Addr) -> u32 {
        let at = self.addr_at(dst);
        match self.l3 {
            L3::V4 => self.replace32(at, a.words()[1] as u32),
            L3::V6 => self.replace(at, a.octets()),
        }
    }

    fn set_addr(&mut self, dst: bool, a: Addr) {
        let delta = self.replace_addr(dst, a);
        // The IPv4 header checksum and the pseudo-header's both cover the
        // address: one delta serves both.
        self.adjust_header_by(delta);
        self.adjust_l4_by(delta, true);
    }

    /// Computes the IPv4 header checksum and the transport checksum from
    /// scratch (a packet being built; a packet in flight is changed with
    /// the setters, which adjust them incrementally).
    pub fn fill_checksums(&mut self) {
        if self.l3 == L3::V4 {
            self.buf[10..12].fill(0);
            let hl = usize::from(self.buf[0] & 0xf) * 4;
            let c = header_checksum(&self.buf[..hl]);
            self.buf[10..12].copy_from_slice(&c);
        }
        let Some(at) = self.csum else { return };
        self.buf[at..at + 2].fill(0);
        let len = self.buf.len();
        if let Ok(ip) = parse_ip(self.buf, len, false) {
            if let Some(sum) = ChecksumView::of(&ip).l4_checksum() {
                self.buf[at..at + 2].copy_from_slice(&sum);
            }
        }
    }

    /// Sets the source address (an IPv4 address for an IPv4 packet).
    pub fn set_src(&mut self, a: Addr) {
        self.set_addr(false, a);
    }

    pub fn set_dst(&mut self, a: Addr) {
        self.set_addr(true, a);
    }

    /// Sets a 16-bit transport field at `off` from the transport header.
    fn set_l4_word(&mut self, off: usize, v: u16) -> Result<(), Error> {
        let at = self.l4.ok_or(Error::TruncatedTcp)? + off;
        let delta = self.replace(at, v.to_be_bytes());
        self.adjust_l4_by(delta, false);
        Ok(())
    }

    fn word32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Sets a 32-bit transport field at `at` (from the IP header).
    fn set_l4_word32(&mut self, at: usize, v: u32) {
        let delta = self.replace32(at, v);
        self.adjust_l4_by(delta, false);
    }

    /// Where a whole TCP header is: its offset and length.
    fn tcp_header(&self) -> Option<(usize, usize)> {
        let l4 = self
            .l4
            .filter(|_| self.proto == PROTO_TCP && self.csum.is_some())?;
        let hl = usize::from(self.buf.get(l4 + 12)? >> 4) * 4;
        (hl >= 20 && l4 + hl <= self.buf.len()).then_some((l4, hl))
    }

    /// Where a TCP segment's payload starts, from the IP header.
    pub fn tcp_payload_offset(&self) -> Option<usize> {
        self.tcp_header().map(|(l4, hl)| l4 + hl)
    }

    /// A TCP segment's sequence and acknowledgement numbers.
    pub fn tcp_seq_ack(&self) -> Option<(u32, u32)> {
        let (l4, _) = self.tcp_header()?;
        Some((self.word32(l4 + 4), self.word32(l4 + 8)))
    }

    /// Sets a TCP segment's sequence and acknowledgement numbers and maps
    /// the edges of its SACK blocks through `sack` (sequence adjustment
    /// after NAT changed a segment's length), the checksum kept right.
    pub fn shift_tcp(
        &mut self,
        seq: u32,
        ack: u32,
        sack: impl Fn(u32) -> u32,
    ) -> Result<(), Error> {
        let (l4, hl) = self.tcp_header().ok_or(Error::TruncatedTcp)?;
        self.set_l4_word32(l4 + 4, seq);
        self.set_l4_word32(l4 + 8, ack);
        // Options: End (0), No-Op (1), else kind, length, data.
        let mut at = l4 + 20;
        while at < l4 + hl {
            let kind = self.buf[at];
            if kind == 0 {
                break;
            }
            if kind == 1 {
                at += 1;
                continue;
            }
            let Some(&len) = self.buf.get(at + 1) else {
                break;
            };
            let len = usize::from(len);
            if len < 2 || at + len > l4 + hl {
                break;
            }
            if kind == 5 && (len - 2) % 8 == 0 {
                for edge in (at + 2..at + len).step_by(4) {
                    let v = sack(self.word32(edge));
                    self.set_l4_word32(edge, v);
                }
            }
            at += len;
        }
        Ok(())
    }

    fn ports(&self) -> Result<(), Error> {
        match self.proto {
            PROTO_TCP | PROTO_UDP => Ok(()),
            _ => Err(Error::TruncatedUdp),
        }
    }

    /// Sets the TCP or UDP source port; fails on other packets and on
    /// fragments without the transport header.
    pub fn set_sport(&mut self, port: u16) -> Result<(), Error> {
        self.ports()?;
        self.set_l4_word(0, port)
    }

    pub fn set_dport(&mut self, port: u16) -> Result<(), Error> {
        self.ports()?;
        self.set_l4_word(2, port)
    }

    /// Sets an ICMP or ICMPv6 query's identifier.
    pub fn set_icmp_id(&mut self, id: u16) -> Result<(), Error> {
        match (self.proto, self.l3) {
            (PROTO_ICMP, L3::V4) | (PROTO_ICMPV6, L3::V6) => self.set_l4_word(4, id),
            _ => Err(Error::TruncatedIcmp),
        }
    }

    /// Sets a TCP or UDP packet's addresses and ports at once (what NAT
    /// does to nearly every translated packet), with one update of each
    /// checksum: RFC 1624's update is a one's-complement sum, so the sum
    /// of the fields' changes changes the checksum as the fields one by
    /// one would, and fields left as they were add nothing. Fails as
    /// `set_sport` does.
    #[inline(always)]
    pub fn set_endpoints(
        &mut self,
        src: Addr,
        dst: Addr,
        sport: u16,
        dport: u16,
    ) -> Result<(), Error> {
        self.ports()?;
        let l4 = self.l4.ok_or(Error::TruncatedTcp)?;
        let addrs = self.replace_addr(false, src) + self.replace_addr(true, dst);
        let ports = self.replace32(l4, u32::from(sport) << 16 | u32::from(dport));
        self.adjust_header_by(addrs);
        self.adjust_l4_by(addrs + ports, true);
        Ok(())
    }

    /// Writes the 32-bit word `new` at `at`; the checksum delta of the
    /// change, two 16-bit words' worth, unfolded.
    #[inline]
    fn replace32(&mut self, at: usize, new: u32) -> u32 {
        let old = !self.word32(at);
        self.buf[at..at + 4].copy_from_slice(&new.to_be_bytes());
        (old >> 16) + (old & 0xffff) + (new >> 16) + (new & 0xffff)
    }

    /// Writes `new` at `at`; the checksum delta of the change.
    #[inline]
    fn replace<const N: usize>(&mut self, at: usize, new: [u8; N]) -> u32 {
        let field = &mut self.buf[at..at + N];
        let delta = checksum_delta(field, &new);
        field.copy_from_slice(&new);
        delta
    }

    /// Sets the IPv4 TTL or the IPv6 hop limit.
    pub fn set_ttl(&mut self, ttl: u8) {
        match self.l3 {
            L3::V4 => {
                // TTL shares its word with the protocol.
                let delta = self.replace(8, [ttl, self.buf[9]]);
                self.adjust_header_by(delta);
            }
            L3::V6 => self.buf[7] = ttl,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::synth::{fragment, icmp, ip_packet, udp, Tcp};
    use crate::wire::{ip_header_ok, l4_ok};

    /// The packet checks, by a full recomputation.
    fn sums_ok(p: &[u8]) -> bool {
        let ip = parse_ip(p, p.len(), false).unwrap();
        ip_header_ok(&ip) && l4_ok(&ip) != Some(false)
    }

    /// Packets of each family and protocol NAT rewrites, an even and an
    /// odd transport length among them.
    pub(in crate::wire) fn packets() -> Vec<Vec<u8>> {
        let (a, b) = ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap());
        let (a6, b6) = ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap());
        let seg = Tcp {
            sport: 40000,
            dport: 80,
            seq: 7,
            flags: 0x18,
            window: 9,
            ..Tcp::default()
        };
        vec![
            ip_packet(a, b, 17, &[], &udp(5000, 53, b"odd")),
            ip_packet(a, b, 6, &[], &seg.bytes(b"data!")),
            ip_packet(a, b, 1, &[], &icmp(8, 0, 1, 1, b"ping")),
            ip_packet(a6, b6, 17, &[], &udp(1, 2, b"v6")),
            ip_packet(a6, b6, 6, &[], &seg.bytes(b"six")),
            ip_packet(a6, b6, 58, &[], &icmp(128, 0, 1, 1, b"p")),
            ip_packet(a, b, 17, &[], &udp(5000, 53, b"even")),
            ip_packet(a, b, 6, &[], &seg.bytes(b"")),
        ]
    }

    #[test]
    fn incremental_updates_match_a_full_recomputation() {
        let mut next = crate::synth::xorshift(0xfeed_beef);
        for p in packets() {
            for _ in 0..200 {
                let mut q = p.clone();
                let mut m = IpPacketMut::new(&mut q).unwrap();
                let v6 = p[0] >> 4 == 6;
                let r = next();
                let addr = if v6 {
                    Addr::v6((r as u128 * 0x9e37_79b9_7f4a_7c15).to_be_bytes())
                } else {
                    Addr::v4((r as u32).to_be_bytes())
                };
                match r % 6 {
                    0 => m.set_src(addr),
                    1 => m.set_dst(addr),
                    2 => {
                        let _ = m.set_sport((r >> 8) as u16);
                    }
                    3 => {
                        let _ = m.set_dport((r >> 8) as u16);
                    }
                    4 => {
                        let _ = m.set_icmp_id((r >> 8) as u16);
                    }
                    _ => m.set_ttl((r >> 8) as u8),
                }
                assert!(sums_ok(&q), "{p:02x?} -> {q:02x?}");
            }
        }
    }

    /// Setting addresses and ports at once writes what the setters one
    /// by one write, checksums included (a UDP checksum of zero too).
    #[test]
    fn endpoints_at_once_equal_the_setters_one_by_one() {
        let mut next = crate::synth::xorshift(0x5eed_0dd5);
        let mut zero_sum = packets().remove(0);
        zero_sum[26..28].copy_from_slice(&[0, 0]);
        for p in packets().into_iter().chain([zero_sum]) {
            for _ in 0..200 {
                let r = next();
                let pick = |shift: u32, old: Addr| -> Addr {
                    if (r >> shift) & 1 == 0 {
                        return old;
                    }
                    match p[0] >> 4 {
                        6 => Addr::v6(
                            (r.rotate_left(shift) as u128 * 0x9e37_79b9_7f4a_7c15).to_be_bytes(),
                        ),
                        _ => Addr::v4((r.rotate_left(shift) as u32).to_be_bytes()),
                    }
                };
                let ip = parse_ip(&p, p.len(), false).unwrap();
                let (src, dst) = (pick(1, ip.src), pick(2, ip.dst));
                let (sport, dport) = ((r >> 16) as u16, (r >> 32) as u16);
                let (mut at_once, mut one_by_one) = (p.clone(), p.clone());
                let done = IpPacketMut::new(&mut at_once)
                    .unwrap()
                    .set_endpoints(src, dst, sport, dport);
                let mut m = IpPacketMut::new(&mut one_by_one).unwrap();
                m.set_src(src);
                m.set_dst(dst);
                let ports = m.set_sport(sport).and_then(|()| m.set_dport(dport));
                assert_eq!(done.is_ok(), ports.is_ok());
                if done.is_ok() {
                    assert_eq!(at_once, one_by_one, "{p:02x?}");
                    assert!(sums_ok(&at_once));
                }
            }
        }
    }

    #[test]
    fn setters_write_the_fields() {
        let mut p = packets().remove(1);
        let mut m = IpPacketMut::new(&mut p).unwrap();
        m.set_src(Addr::v4([198, 18, 0, 100]));
        m.set_dport(8080).unwrap();
        m.set_ttl(63);
        assert!(m.set_icmp_id(1).is_err(), "not ICMP");
        let ip = parse_ip(&p, p.len(), false).unwrap();
        assert_eq!(ip.src, Addr::v4([198, 18, 0, 100]));
        assert_eq!(u16::from_be_bytes([ip.l4[2], ip.l4[3]]), 8080);
        assert_eq!(p[8], 63);
        assert!(sums_ok(&p));
    }

    #[test]
    fn a_udp_checksum_of_zero_stays_zero() {
        let mut p = packets().remove(0);
        p[26..28].copy_from_slice(&[0, 0]);
        let mut m = IpPacketMut::new(&mut p).unwrap();
        m.set_dst(Addr::v4([198, 19, 0, 9]));
        m.set_sport(1).unwrap();
        assert_eq!(p[26..28], [0, 0]);
        assert!(sums_ok(&p));
    }

    #[test]
    fn a_later_fragment_has_no_ports_but_its_addresses_change() {
        let whole = packets().remove(0);
        let mut f = fragment(&whole, 1, &[(0, 8), (8, 3)]).remove(1);
        let mut m = IpPacketMut::new(&mut f).unwrap();
        assert!(m.set_sport(9).is_err());
        m.set_src(Addr::v4([198, 18, 0, 7]));
        let ip = parse_ip(&f, f.len(), false).unwrap();
        assert!(ip_header_ok(&ip));
    }

    /// Sequence, acknowledgement and SACK edges shifted in place equal the
    /// segment built with the shifted numbers, checksum included.
    #[test]
    fn shifting_a_segment_equals_building_it_shifted() {
        let sack = |a: u32, b: u32, c: u32, d: u32| {
            let mut o = vec![1, 1, 5, 18];
            for v in [a, b, c, d] {
                o.extend_from_slice(&v.to_be_bytes());
            }
            o
        };
        let seg = |seq: u32, ack: u32, opts: &[u8]| {
            let t = Tcp {
                sport: 21,
                dport: 40000,
                seq,
                ack,
                flags: 0x10,
                window: 1000,
                options: opts,
            };
            ip_packet(
                "198.19.0.1".parse().unwrap(),
                "198.18.0.100".parse().unwrap(),
                6,
                &[],
                &t.bytes(b"data"),
            )
        };
        let mut p = seg(5000, u32::MAX - 1, &sack(100, 200, u32::MAX, 7));
        let mut ip = IpPacketMut::new(&mut p).unwrap();
        assert_eq!(ip.tcp_seq_ack(), Some((5000, u32::MAX - 1)));
        ip.shift_tcp(5002, 1, |e| e.wrapping_sub(2)).unwrap();
        assert_eq!(p, seg(5002, 1, &sack(98, 198, u32::MAX - 2, 5)));
        assert!(sums_ok(&p));
    }
}
