//! Source and destination NAT bound to connections, after Linux's
//! `nf_nat_core.c`: a mapping is chosen on a connection's first packet
//! (`nf_nat_setup_info`), stored as the connection's reply tuple, which
//! becomes the inverse of the translated tuple, and every later packet of
//! either direction is rewritten to the inverse of the other direction's
//! tuple (`nf_nat_packet`), which the data plane does.
//!
//! The choice (`get_unique_tuple`): keep what the packet has when it is in
//! the range and unused (source NAT only, and not with `random`); else an
//! address from the range by a keyed hash of the addresses (`persistent`:
//! of the source alone, so a client keeps its address across
//! connections); then a port, the packet's own if it fits and is unused,
//! else the range searched from a random offset, 128 tries and then
//! halving rounds from new offsets (`nf_nat_l4proto_unique_tuple`).
//! Unused means no connection has the would-be reply tuple in either
//! direction (`nf_nat_used_tuple`).
//!
//! **Replies on the owning worker.** With several workers, the reply tuple
//! must hash to this worker too, or replies would arrive where nobody
//! knows the connection. Where the protocol's ports are hashed, every
//! port tried is one `Steering` computed to land here, so uniqueness
//! needs only this worker's table: no other worker can pick a tuple that
//! lands on this one. Preferably on the very owner-table entry the
//! original tuple lands on: the Toeplitz hash is linear, so the two
//! tuples' hashes then differ by nothing in those bits whatever the
//! far end's address and port, and every other connection between the
//! same translated endpoint and the same far host (a TFTP transfer from
//! the server's new port, an FTP data connection) lands both ways on one
//! worker too. Where they are not (ICMP, or RSS over
//! addresses alone), an address of the range that lands here is chosen;
//! a single address that does not land here cannot be made to, and the
//! data plane hands such connections' first packets to the worker the
//! translated tuple lands on before they are tracked.
//!
//! Differences from Linux: no `find_appropriate_src` (reusing another
//! connection's mapping of the same source), so without `persistent` a
//! client's connections may get different addresses of a range; a search
//! that finds nothing fails (the packet is dropped and counted by the
//! caller) instead of leaving a clash for confirm to drop.

use crate::wire::{self, Addr, IpPacketMut, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use super::icmp::icmp_counterpart_type;
use super::steering::Steering;
use super::tuple::{HashKey, Tuple};

/// Which end of the original direction a mapping changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manip {
    /// Source NAT (`snat`, POSTROUTING): the original source.
    Src,
    /// Destination NAT (`dnat`, PREROUTING): the original destination.
    Dst,
}

/// What a NAT rule maps to (`struct nf_nat_range2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatRange {
    pub min_addr: Addr,
    pub max_addr: Addr,
    /// A port range for TCP and UDP; `None` keeps ports where it can.
    pub ports: Option<(u16, u16)>,
    /// The address is chosen by the source alone (`persistent`).
    pub persistent: bool,
    /// The port is chosen at random, never kept (`random`).
    pub random: bool,
}

impl NatRange {
    fn contains_addr(&self, a: &Addr) -> bool {
        (to_u128(&self.min_addr)..=to_u128(&self.max_addr)).contains(&to_u128(a))
    }
}

fn to_u128(a: &Addr) -> u128 {
    let [hi, lo] = a.words();
    u128::from(hi) << 64 | u128::from(lo)
}

fn from_u128(v: u128) -> Addr {
    Addr::from_words([(v >> 64) as u64, v as u64])
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    /// Every tuple the range allows (on this worker) is in use.
    Exhausted,
}

/// Tries of a port search before it starts over from another offset
/// (Linux's `max_attempts`).
const MAX_ATTEMPTS: usize = 128;
/// Addresses of a range tried for one that lands on this worker.
const MAX_ADDRESS_TRIES: u128 = 1024;

/// The tuple of the other direction: addresses and ports swapped, and for
/// ICMP queries the identifier kept and the type turned into its
/// counterpart (request and reply), as the tracker stores them.
pub fn invert(t: &Tuple) -> Tuple {
    let mut r = t.swapped();
    if is_icmp_query(t) {
        r.sport = t.sport;
        let ty = icmp_counterpart_type((t.dport >> 8) as u8, t.l3() == L3::V6)
            .unwrap_or((t.dport >> 8) as u8);
        r.dport = u16::from(ty) << 8 | (t.dport & 0xff);
    }
    r
}

/// The ports a translated port may take when no range is given: Linux's
/// loose convention (`nf_nat_l4proto_unique_tuple`) keeps a port's class,
/// so a privileged port stays privileged and an unprivileged one does
/// not become one (a server may refuse a privileged peer port: vsftpd's
/// PORT does).
pub(super) fn port_class(p: u16) -> (u16, u16) {
    match p {
        p if p < 512 => (1, 511),
        p if p < 1024 => (600, 1023),
        _ => (1024, u16::MAX),
    }
}

fn is_icmp_query(t: &Tuple) -> bool {
    matches!(
        (t.proto, t.l3()),
        (PROTO_ICMP, L3::V4) | (PROTO_ICMPV6, L3::V6)
    )
}

/// Rewrites a packet of a translated connection to carry the tuple `to`
/// (`nf_nat_packet`): addresses, TCP and UDP ports, the ICMP query
/// identifier, each with the IPv4 header and transport checksums updated
/// incrementally (RFC 1624). Every field is written, changed or not: a
/// field written as it was adds nothing to the update. A later fragment
/// has addresses only: its datagram's ports and checksum are in the
/// first.
#[inline(always)]
pub fn rewrite(ip: &mut IpPacketMut<'_>, to: &Tuple) -> Result<(), wire::Error> {
    // The usual case: TCP or UDP with its ports, all four fields and each
    // checksum once.
    if ip.carries_ports() && matches!(to.proto, PROTO_TCP | PROTO_UDP) {
        return ip.set_endpoints(to.src, to.dst, to.sport, to.dport);
    }
    ip.set_src(to.src);
    ip.set_dst(to.dst);
    if ip.carries_ports() && is_icmp_query(to) {
        ip.set_icmp_id(to.sport)?;
    }
    Ok(())
}

/// A packet's tuple as the filter rules see it: after destination NAT and
/// before source NAT (Linux rewrites destinations at PREROUTING and
/// sources at POSTROUTING, either direction), given the tuple the packet
/// leaves with (`Shard::nat_target`).
pub fn after_dnat(t: &Tuple, target: Option<Tuple>) -> Tuple {
    match target {
        Some(to) => Tuple {
            dst: to.dst,
            dport: to.dport,
            ..*t
        },
        None => *t,
    }
}

/// An ICMP error about a translated connection, travelling in the
/// direction whose tuple is `this` (`other` is the other direction's),
/// as Linux's `nf_nat_icmp_reply_translation`: the quoted packet, which
/// travelled the other way, becomes what it was on this side of the
/// translation (`other`'s tuple, as sent); the outer header's addresses
/// that belong to the connection are rewritten as a packet of this
/// direction's would be (a router's own address stays); then the IPv4
/// header and ICMP checksums are computed afresh (the ICMP checksum
/// covers the quoted packet, and ICMPv6's the outer addresses too).
/// `buf` is the IP packet (of `wire_len` bytes, all in `buf`).
pub fn rewrite_icmp_error(
    buf: &mut [u8],
    wire_len: usize,
    this: &Tuple,
    other: &Tuple,
) -> Result<(), wire::Error> {
    let outer = wire::parse_ip(buf, wire_len, false)?;
    let (inner_at, src, dst) = (outer.l4_offset + 8, outer.src, outer.dst);
    let quoted = buf.get_mut(inner_at..).ok_or(wire::Error::TruncatedIcmp)?;
    rewrite(&mut IpPacketMut::quoted(quoted)?, other)?;
    let to = invert(other);
    let mut ip = IpPacketMut::spread(buf, wire_len)?;
    if dst == this.dst {
        ip.set_dst(to.dst);
    }
    if src == this.src {
        ip.set_src(to.src);
    }
    ip.fill_checksums();
    Ok(())
}

/// The field a manip's port search changes: TCP and UDP ports, the ICMP
/// query identifier (the tuple's `sport` in both directions, as Linux's
/// `src.u.icmp.id`); `None` for other protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyField {
    Sport,
    Dport,
}

fn key_field(t: &Tuple, manip: Manip) -> Option<KeyField> {
    match t.proto {
        PROTO_TCP | PROTO_UDP => Some(match manip {
            Manip::Src => KeyField::Sport,
            Manip::Dst => KeyField::Dport,
        }),
        _ if is_icmp_query(t) => Some(KeyField::Sport),
        _ => None,
    }
}

fn get(t: &Tuple, f: KeyField) -> u16 {
    match f {
        KeyField::Sport => t.sport,
        KeyField::Dport => t.dport,
    }
}

fn set(t: &mut Tuple, f: KeyField, v: u16) {
    match f {
        KeyField::Sport => t.sport = v,
        KeyField::Dport => t.dport = v,
    }
}

/// What the chooser asks of the table and the worker.
pub(super) struct Chooser<'a> {
    /// The connection's original tuple as it arrived.
    pub original: Tuple,
    /// Whether a reply tuple is taken by a connection (either direction).
    pub used: &'a dyn Fn(&Tuple) -> bool,
    pub steering: Option<&'a Steering>,
    pub key: &'a HashKey,
    pub random: &'a mut dyn FnMut() -> u64,
}

impl Chooser<'_> {
    /// Whether the reply tuple of `t` lands on this worker.
    fn lands_here(&self, t: &Tuple) -> bool {
        self.steering.is_none_or(|s| s.owns(&invert(t)))
    }

    /// Whether the reply tuple of `t` lands on the owner-table entry of
    /// the original tuple, where that is this worker's (else, where the
    /// data plane steered the first packet here, on this worker).
    fn same_entry(&self, t: &Tuple) -> bool {
        match self.steering {
            Some(s) if s.owns(&self.original) => s.entry(&invert(t)) == s.entry(&self.original),
            _ => self.lands_here(t),
        }
    }

    /// Whether `t` (original direction) may be used: unused and landing
    /// on the original's entry.
    fn usable(&self, t: &Tuple) -> bool {
        self.same_entry(t) && !(self.used)(&invert(t))
    }

    /// `get_unique_tuple`: the translated original-direction tuple for a
    /// connection whose current one is `cur`.
    pub fn unique_tuple(
        &mut self,
        cur: &Tuple,
        r: &NatRange,
        manip: Manip,
    ) -> Result<Tuple, NatError> {
        let field = key_field(cur, manip);
        let in_range = |t: &Tuple| {
            let a = match manip {
                Manip::Src => &t.src,
                Manip::Dst => &t.dst,
            };
            r.contains_addr(a)
                && match (r.ports, field) {
                    (Some((lo, hi)), Some(f)) => (lo..=hi).contains(&get(t, f)),
                    _ => true,
                }
        };
        // 1. Source NAT keeps what fits.
        if manip == Manip::Src && !r.random && in_range(cur) && self.usable(cur) {
            return Ok(*cur);
        }
        // 2. The address.
        let mut t = *cur;
        let addr = self.pick_address(cur, r, manip, field);
        match manip {
            Manip::Src => t.src = addr,
            Manip::Dst => t.dst = addr,
        }
        // 3. The port, where the protocol has one.
        let Some(f) = field else {
            return if self.lands_here(&t) && !(self.used)(&invert(&t)) {
                Ok(t)
            } else {
                Err(NatError::Exhausted)
            };
        };
        let (lo, hi) = match r.ports {
            Some(p) => p,
            // A destination's port stays unless a range says otherwise.
            None if manip == Manip::Dst => (cur.dport, cur.dport),
            None if is_icmp_query(cur) => (0, u16::MAX),
            None => port_class(get(cur, f)),
        };
        if !r.random && (lo..=hi).contains(&get(&t, f)) && self.usable(&t) {
            return Ok(t);
        }
        let from_random_offset = manip == Manip::Src || r.random;
        self.search_port(t, f, lo, hi, from_random_offset)
            .ok_or(NatError::Exhausted)
    }

    /// Linux's `find_best_ips_proto`: an address of the range by a keyed
    /// hash of the source (and, unless persistent, the destination) address;
    /// with steering and a port that cannot steer, the first address from
    /// there whose reply lands here.
    fn pick_address(
        &self,
        cur: &Tuple,
        r: &NatRange,
        manip: Manip,
        field: Option<KeyField>,
    ) -> Addr {
        let (min, max) = (to_u128(&r.min_addr), to_u128(&r.max_addr));
        if min >= max {
            return r.min_addr;
        }
        let span = max - min + 1;
        let seed = Tuple {
            dst: if r.persistent { Addr::ZERO } else { cur.dst },
            sport: 0,
            dport: 0,
            ..*cur
        };
        let first = u128::from(seed.hash(self.key)) % span;
        let steer_by_port = self
            .steering
            .is_some_and(|s| field.is_some() && s.fields().ports(cur.proto));
        if self.steering.is_none() || steer_by_port {
            return from_u128(min + first);
        }
        let mut t = *cur;
        for strict in [true, false] {
            for i in 0..span.min(MAX_ADDRESS_TRIES) {
                let a = from_u128(min + (first + i) % span);
                match manip {
                    Manip::Src => t.src = a,
                    Manip::Dst => t.dst = a,
                }
                if if strict {
                    self.same_entry(&t)
                } else {
                    self.lands_here(&t)
                } {
                    return a;
                }
            }
        }
        from_u128(min + first)
    }

    /// `nf_nat_l4proto_unique_tuple`: ports of `lo..=hi` from a random
    /// offset (destination NAT without `random`: from the start), 128
    /// tries, then rounds of half as many from new offsets while more
    /// than 16; with steering only ports whose reply lands here.
    fn search_port(
        &mut self,
        mut t: Tuple,
        f: KeyField,
        lo: u16,
        hi: u16,
        from_random_offset: bool,
    ) -> Option<Tuple> {
        let size = usize::from(hi - lo) + 1;
        let mut attempts = size.min(MAX_ATTEMPTS);
        let mut off = if from_random_offset {
            (self.random)() as usize
        } else {
            0
        };
        loop {
            let start = lo.wrapping_add((off % size) as u16);
            let found = match self.steering.filter(|s| s.fields().ports(t.proto)) {
                Some(s) => {
                    // The reply tuple's field that the original's key
                    // field becomes: source and destination swap, except
                    // for the ICMP identifier.
                    let reply = invert(&t);
                    let dst = f == KeyField::Sport && !is_icmp_query(&t);
                    let used = self.used;
                    let mut free = |p: u16| {
                        set(&mut t, f, p);
                        !used(&invert(&t))
                    };
                    let entry = [s.entry(&self.original)];
                    let same_entry = s
                        .owns(&self.original)
                        .then(|| {
                            s.ports_onto(&reply, dst, lo, hi, start, &entry)
                                .take(attempts)
                                .find(|&p| free(p))
                        })
                        .flatten();
                    same_entry.or_else(|| {
                        s.owned_ports(&reply, dst, lo, hi, start)
                            .take(attempts)
                            .find(|&p| free(p))
                    })
                }
                None => (0..attempts)
                    .map(|i| lo.wrapping_add(((off + i) % size) as u16))
                    .find(|&p| {
                        set(&mut t, f, p);
                        self.usable(&t)
                    }),
            };
            if let Some(p) = found {
                set(&mut t, f, p);
                return Some(t);
            }
            if attempts >= size || attempts < 16 {
                return None;
            }
            attempts /= 2;
            off = (self.random)() as usize;
        }
    }
}
