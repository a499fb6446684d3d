//! Classification (`nf_ct_get_tuple` and what precedes a lookup): a
//! packet's tuple and transport view, the checksum check and the table
//! hash, the burst's prefetches.
//!
//! One parser, [`Classified::fill`] (into a record in place;
//! [`Classified::extract`] into a fresh one); [`Shard::finish_classify`]
//! completes it where the packet is owned; [`Shard::classify_into`] and
//! [`Shard::classify`] do both.

use super::icmp::{icmpv6_untracked, is_icmp_error, quoted_flow};
use super::{tcp, RxChecksum, Segment, Shard, Tuple, CONN_BYTES, CONN_BYTES_NOT_TCP};
use crate::wire::{
    self, IcmpHeader, IpPacket, TcpHeader, UdpHeader, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
    PROTO_UDP,
};

/// A packet's transport layer, as the tracker uses it.
#[derive(Debug, Clone, Copy)]
pub(super) enum L4<'a> {
    /// First, so that `Ok(L4::Other)` has tag 0 and
    /// `Classified::EMPTY`, which a chunk writes before `fill`, is all
    /// zero bytes in the layout rustc picks: stored from a zeroed register
    /// instead of copied from a constant, 6 instructions a packet fewer
    /// (`perf/bench-instructions`, 746.0 against 752.2). Only speed hangs
    /// on that layout, never behaviour.
    Other,
    Tcp(Segment<'a>),
    Udp(&'a [u8]),
    /// ICMP or ICMPv6 query or reply.
    IcmpQuery,
    /// ICMP or ICMPv6 error quoting `inner`.
    IcmpError(&'a [u8]),
}

/// A packet made ready for lookup: its tuple and hash are computed, so a
/// burst can be hashed and prefetched before any lookup.
#[derive(Debug, Clone, Copy)]
pub struct Classified<'a> {
    pub(super) l4: Result<L4<'a>, Early>,
    pub(super) tuple: Tuple,
    pub(super) hash: u64,
    /// IP length on the wire, for the byte counters.
    pub(super) wire_len: u32,
    /// The way of its home bucket that `prefetch_candidate` found the
    /// likely connection in (`ConnTable::lookup_at`).
    pub(super) hint: Option<u8>,
}

/// A verdict reached before any lookup.
#[derive(Debug, Clone, Copy)]
pub(super) enum Early {
    Invalid {
        reason: &'static str,
        malformed: bool,
    },
    Untracked(&'static str),
}

impl<'a> Classified<'a> {
    /// A placeholder for `fill` to overwrite.
    pub const EMPTY: Classified<'static> = Classified {
        l4: Ok(L4::Other),
        tuple: Tuple::ZERO,
        hash: 0,
        wire_len: 0,
        hint: None,
    };

    /// Extracts the tuple (`nf_ct_get_tuple`) and the transport view,
    /// with no checksum check and no hash: what is needed to tell which
    /// shard owns the packet. `Shard::finish_classify` completes it.
    #[inline(always)]
    pub fn extract(ip: &IpPacket<'a>, zone: u16) -> Classified<'a> {
        let mut c = Classified::EMPTY;
        c.fill(ip, zone);
        c
    }

    /// `extract` into a record already in place (a chunk's), each field
    /// written where it stays: built aside and then moved, the record
    /// (128 bytes then, 112 now) cost the worker 37 instructions a packet
    /// more (a ten-pass profile with `perf/callgrind-inlined`: 859 against
    /// 823).
    #[inline(always)]
    pub fn fill(&mut self, ip: &IpPacket<'a>, zone: u16) {
        let (sport, dport) = self.transport(ip);
        // Written whole, after the ports are known: a wide load of the
        // tuple (its hash) right after narrow stores of the ports into it
        // could not be forwarded from them.
        self.tuple = Tuple {
            src: ip.src,
            dst: ip.dst,
            sport,
            dport,
            proto: ip.proto,
            family: if ip.l3 == L3::V4 { 4 } else { 6 },
            zone,
        };
        self.hash = 0;
        self.wire_len = ip.wire_len as u32;
        self.hint = None;
    }

    /// The transport part of `fill`: the view or the early verdict into
    /// `l4`; returns the tuple's ports (for ICMP the id, and type and
    /// code; zero where there are none).
    #[inline(always)]
    fn transport(&mut self, ip: &IpPacket<'a>) -> (u16, u16) {
        let malformed = |e: wire::Error| Early::Invalid {
            reason: e.reason(),
            malformed: true,
        };
        if ip.fragment == wire::Fragment::Later {
            // No reassembly here (Linux reassembles first, in nf_defrag).
            self.l4 = Err(Early::Invalid {
                reason: "fragment",
                malformed: false,
            });
            return (0, 0);
        }
        // Each arm stores its own result: a `match` yielding the result
        // to one assignment built it aside and copied its 72 bytes.
        match (ip.proto, ip.l3) {
            (PROTO_TCP, _) => match TcpHeader::parse(ip.l4) {
                Err(e) => self.l4 = Err(malformed(e)),
                Ok(hdr) => match tcp::check_flags(&hdr) {
                    Err(reason) => {
                        self.l4 = Err(Early::Invalid {
                            reason,
                            malformed: true,
                        })
                    }
                    Ok(()) => {
                        let ports = (hdr.sport(), hdr.dport());
                        let payload_len = ip.l4_wire_len().saturating_sub(hdr.header_len()) as u32;
                        let payload = &ip.l4[hdr.header_len()..];
                        self.l4 = Ok(L4::Tcp(Segment {
                            hdr,
                            payload_len,
                            payload,
                        }));
                        return ports;
                    }
                },
            },
            (PROTO_UDP, _) => match UdpHeader::parse(ip.l4, ip.l4_wire_len(), false) {
                Err(e) => self.l4 = Err(malformed(e)),
                Ok(hdr) => {
                    self.l4 = Ok(L4::Udp(&ip.l4[8..]));
                    return (hdr.sport, hdr.dport);
                }
            },
            (PROTO_ICMP, L3::V4) | (PROTO_ICMPV6, L3::V6) => match IcmpHeader::parse(ip.l4) {
                Err(e) => self.l4 = Err(malformed(e)),
                Ok(icmp) => {
                    let v6 = ip.l3 == L3::V6;
                    let ty_code = u16::from(icmp.ty) << 8 | u16::from(icmp.code);
                    if is_icmp_error(icmp.ty, v6) {
                        self.l4 = Ok(L4::IcmpError(icmp.body));
                        return (0, ty_code);
                    } else if v6 && icmpv6_untracked(icmp.ty) {
                        self.l4 = Err(Early::Untracked("icmpv6-neighbour-discovery"));
                        return (0, ty_code);
                    }
                    self.l4 = Ok(L4::IcmpQuery);
                    return (icmp.id, ty_code);
                }
            },
            _ => self.l4 = Ok(L4::Other),
        }
        (0, 0)
    }

    pub fn tuple(&self) -> &Tuple {
        &self.tuple
    }

    /// Whether the packet is an ICMP error (about the connection it quotes).
    pub fn is_icmp_error(&self) -> bool {
        matches!(self.l4, Ok(L4::IcmpError(_)))
    }

    /// Whether the packet needs a table lookup (else its verdict is known).
    pub fn needs_lookup(&self) -> bool {
        self.l4.is_ok()
    }

    /// The tuple of the connection the packet belongs to, in the direction
    /// it travels: its own tuple, or for an ICMP error the quoted packet's
    /// connection. `None` when the verdict needs no connection. With
    /// several shards, this says which shard must see the packet.
    pub fn flow_tuple(&self) -> Option<Tuple> {
        match self.l4 {
            Ok(L4::IcmpError(inner)) => quoted_flow(&self.tuple, inner).ok(),
            Ok(_) => Some(self.tuple),
            Err(_) => None,
        }
    }
}

impl Shard {
    /// Extracts the tuple (`nf_ct_get_tuple`) and hashes it. Pure: it
    /// reads the table's key only.
    #[inline(always)]
    pub fn classify<'a>(&self, ip: IpPacket<'a>, zone: u16) -> Classified<'a> {
        let mut c = Classified::EMPTY;
        self.classify_into(&mut c, &ip, zone);
        c
    }

    /// `classify` into a record already in place, as a data plane's
    /// chunk keeps them (`Classified::fill`).
    #[inline(always)]
    pub fn classify_into<'a>(&self, c: &mut Classified<'a>, ip: &IpPacket<'a>, zone: u16) {
        c.fill(ip, zone);
        // The checksum view is made only where it will be read: made for
        // the call whatever the setting, its stores stayed on the path
        // with checksums off too (12 instructions a packet in `ct-bench`,
        // under callgrind).
        if self.cfg.checksum {
            self.check_checksums(c, &wire::ChecksumView::of(ip), RxChecksum::UNKNOWN);
        }
        self.hash_classified(c);
    }

    /// The second half of `classify` for a packet `Classified::extract`
    /// took apart, with the NIC's checksum verdict (a verified checksum is
    /// not computed again; a bad one makes the packet INVALID, as
    /// `nf_conntrack_checksum` would): the checksum check (`nf_conntrack_checksum`) and the
    /// table hash. Split so that a data plane can first learn from the
    /// tuple which shard owns the packet, and leave this work to it.
    #[inline(always)]
    pub fn finish_classify(
        &self,
        c: &mut Classified<'_>,
        s: &wire::ChecksumView<'_>,
        rx: RxChecksum,
    ) {
        // `classify_into` takes these two steps itself, to make its view
        // only when it is read; one function for both, given the view by
        // a closure, cost the worker 6 instructions a packet
        // (`perf/bench-instructions`, 745.2 against 738.9).
        if self.cfg.checksum {
            self.check_checksums(c, s, rx);
        }
        self.hash_classified(c);
    }

    /// The checksum check of `finish_classify`. A later fragment has no
    /// transport header to check (its IP header was checked by defrag);
    /// for anything else a bad checksum outranks every other verdict, as
    /// in Linux.
    #[inline(always)]
    fn check_checksums(&self, c: &mut Classified<'_>, s: &wire::ChecksumView<'_>, rx: RxChecksum) {
        if s.later_fragment() {
            return;
        }
        let good = rx.ip.or_else(|| s.header_ok()) && rx.l4.or_else(|| s.l4_ok() != Some(false));
        if !good {
            c.l4 = Err(Early::Invalid {
                reason: "bad-checksum",
                malformed: true,
            });
        }
    }

    /// The table hash of `finish_classify`, for a packet that will be
    /// looked up.
    #[inline(always)]
    fn hash_classified(&self, c: &mut Classified<'_>) {
        if c.l4.is_ok() {
            c.hash = self.table.hash(&c.tuple);
        }
    }

    /// How many packets ahead of its lookups a burst's connections are
    /// prefetched (l3fwd's prefetch offset). Lookups run in order over a
    /// burst whose index buckets were all asked for first (`prefetch_bucket`);
    /// before packet `i`'s lookup, packet `i + PREFETCH_AHEAD`'s bucket is
    /// read, it has had time to arrive, and its connection's lines are asked
    /// for, which then have that many lookups' time. Prefetching every
    /// connection before the first lookup instead left the first lookups
    /// waiting on memory: 663 against 396 cycles a packet in firewall mode
    /// at 1M connections (`perf/bench-firewall`).
    pub const PREFETCH_AHEAD: usize = 8;

    /// The first prefetch for one packet of a burst: its index bucket.
    #[inline]
    pub fn prefetch_bucket(&self, c: &Classified<'_>, prefetch: impl Fn(*const u8)) {
        if c.needs_lookup() {
            prefetch(self.table.bucket_addr(c.hash));
        }
    }

    /// The second: the connection its bucket most likely points to (the
    /// cache lines its protocol reads). It reads the bucket, so it should
    /// come a while after `prefetch_bucket` (see `PREFETCH_AHEAD`). A
    /// likely new connection needs nothing more: its reply tuple's entry
    /// goes to the same bucket (`Tuple::hash_either_way`). The lookup
    /// starts from the entry found here (`Classified::hint`).
    #[inline]
    pub fn prefetch_candidate(&self, c: &mut Classified<'_>, prefetch: impl Fn(*const u8)) {
        if !c.needs_lookup() {
            return;
        }
        if let Some((way, slot)) = self.table.candidate(c.hash) {
            let a = self.table.conn_addr(slot);
            c.hint = Some(way as u8);
            // Only TCP reads the protocol state. The bytes read span one
            // line or two, depending on where in a line the slot starts
            // (`Conn`'s alignment keeps it to two); their first and last
            // bytes name them. Counting the lines instead took a branch,
            // mispredicted one packet in two.
            let tcp = c.tuple.proto == PROTO_TCP;
            let bytes = if tcp { CONN_BYTES } else { CONN_BYTES_NOT_TCP };
            prefetch(a);
            prefetch(a.wrapping_add(bytes - 1));
            // An IPv6 connection's addresses are kept apart (one line).
            if c.tuple.family == 6 {
                prefetch(self.table.v6_addr(slot));
            }
        }
    }
}
