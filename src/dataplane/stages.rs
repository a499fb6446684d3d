//! The stages of the tracking pipeline, each a small unit that walks the
//! packets of a chunk once, over per-packet metadata kept beside the burst
//! (as VPP keeps buffer metadata and l3fwd its per-burst arrays):
//!
//! `classify` -> `defrag` -> `dispatch` -> `ct_in` -> `dnat` -> `filter`
//! -> `snat` -> `confirm` -> `rewrite` -> `tx`
//!
//! (`dnat`, `snat` and `rewrite` run where the rules have NAT rules).
//! `classify`, `dispatch`, `ct_in`, `dnat`, `filter`, `snat`, `confirm`
//! and `rewrite` are here; `defrag` and `tx` hold and release mbufs and
//! live with the engine (`conntrack_fwd`), which also applies what
//! `rewrite` decided once the chunk's borrows of the packets end. A stage
//! decides a packet's fate (drop, with a reason; hand to another worker;
//! hold) or leaves it live for the next stage.
//!
//! Packets keep the wire's order within a flow: `ct_in` looks up the whole
//! chunk before `confirm` confirms any of it, and a new flow's second packet
//! in a chunk joins the connection the first created (`Shard::ingress`
//! finds unconfirmed connections of the burst).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arrayvec::ArrayVec;

use super::cpu::prefetch;
use super::handoff::Handoff;
use super::mbuf::Fate;
use super::policy::{Action, DropReason, Policy};
use super::worker::{CtCounters, FirewallSettings};
use crate::conntrack::{
    Checked, Classified, CtInfo, Dir, Manip, PayloadEdit, RxChecksum, SeqAdj, Shard, Tuple, Verdict,
};
use crate::wire::{parse_frame, ChecksumView, Fragment, Frame, IpPacket, LinkType};
use dpdk_sys::consts::{
    RTE_MBUF_F_RX_IP_CKSUM_BAD, RTE_MBUF_F_RX_IP_CKSUM_GOOD, RTE_MBUF_F_RX_IP_CKSUM_MASK,
    RTE_MBUF_F_RX_L4_CKSUM_BAD, RTE_MBUF_F_RX_L4_CKSUM_GOOD, RTE_MBUF_F_RX_L4_CKSUM_MASK,
};

/// Packets a chunk holds at most (larger bursts are taken in chunks).
pub const CHUNK: usize = 64;
/// Bytes of transport header and payload a packet continued in further
/// mbuf segments must have in its first for the tracker to read it there:
/// a TCP header with options (60), an ICMP error's quoted headers (an
/// IPv6 header, extension headers, 8 bytes). With less, it is tracked from
/// a linear copy (`Classify::Split`).
const L4_IN_FIRST_SEGMENT: usize = 128;

/// What the stages know of one IP packet still in the pipeline besides
/// its classification (kept in arrays of their own, so that building a
/// chunk copies small items: one 300-byte record a packet cost a `memcpy`
/// call each, measured at ~30 cycles a packet).
#[derive(Debug, Clone, Copy)]
pub struct Pkt {
    /// Its index in the burst.
    pub at: u16,
    /// Where its IP header starts in the first segment.
    pub l3: u16,
    /// Where its transport header starts, from the IP header.
    pub l4: u16,
    pub in_port: u16,
    /// `Pass` while the packet is live.
    pub fate: Fate,
    /// The packet continues in further mbuf segments.
    pub spread: bool,
    /// The receiving NIC's offload flags (0 for a reassembled datagram,
    /// which no NIC checked).
    pub ol_flags: u64,
}

impl Pkt {
    fn live(&self) -> bool {
        self.fate == Fate::Pass
    }
}

/// The per-packet metadata of a chunk, beside the burst (VPP's buffer
/// metadata): entry i of each array is the same packet. Verdicts, which
/// borrow nothing, live in `Stages`.
#[derive(Default)]
pub struct Chunk<'a> {
    pub pkt: ArrayVec<Pkt, CHUNK>,
    /// Tuple, transport view and table hash.
    pub cl: ArrayVec<Classified<'a>, CHUNK>,
    /// What the checksum check reads.
    pub sums: ArrayVec<ChecksumView<'a>, CHUNK>,
    /// Some packet continues in further mbuf segments.
    pub spread: bool,
}

impl<'a> Chunk<'a> {
    /// Adds IP packet `ip`, number `at` of its burst.
    #[inline(always)]
    pub fn push(
        &mut self,
        at: usize,
        l3: usize,
        in_port: u16,
        ol_flags: u64,
        ip: &IpPacket<'a>,
        spread: bool,
    ) {
        self.pkt.push(Pkt {
            at: at as u16,
            l3: l3 as u16,
            l4: ip.l4_offset as u16,
            in_port,
            fate: Fate::Pass,
            spread,
            ol_flags,
        });
        self.spread |= spread;
        // Filled where it stays (`Classified::fill`).
        self.cl.push(Classified::EMPTY);
        let n = self.cl.len();
        self.cl[n - 1].fill(ip, 0);
        self.sums.push(ChecksumView::of(ip));
    }

    /// Drops the last packet again.
    #[inline]
    fn pop(&mut self) {
        self.pkt.pop();
        self.cl.pop();
        self.sums.pop();
    }

    pub fn len(&self) -> usize {
        self.pkt.len()
    }
}

/// How `classify` left a chunk.
pub enum Classify {
    /// Every frame was taken; the next chunk starts at this index.
    Next(usize),
    /// The frame at this index is an IP fragment: the chunk ends before it
    /// and `defrag` takes it (a chunk holds at most one fragment's
    /// datagram, so that the datagram is tracked in its place in the
    /// burst).
    Fragment(usize),
    /// The frame at this index continues in further mbuf segments and its
    /// headers do not all sit in the first: the chunk ends before it, and
    /// the engine tracks it from a linear copy.
    Split(usize),
}

/// A packet `rewrite` found translated: burst index `at`, IP header at
/// `l3`, to leave with the tuple `to`; or, for an ICMP error (its
/// `RewriteExtra` holds the error's own direction's tuple), `to` is its
/// connection's tuple of the other direction. 48 bytes: what only a few
/// packets need is in `RewriteExtra`, which `extra` indexes. (With the
/// packet's own tuple and the sequence adjustment in it, the record took
/// 120 bytes, and a translated packet 15 more instructions,
/// `perf/bench-instructions`.)
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    pub at: u16,
    pub l3: u16,
    /// The transport header's offset from the IP header's, as classified.
    pub l4: u16,
    /// Index of this packet's `RewriteExtra` in `Stages::extras`.
    pub extra: Option<u8>,
    pub to: Tuple,
}

/// What a few translated packets need besides their `Rewrite`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RewriteExtra {
    /// An ICMP error's connection's tuple of the error's direction (set
    /// for an ICMP error only).
    pub this: Option<Tuple>,
    /// The packet's direction and its connection's sequence adjustment,
    /// where NAT changed the length of one of its segments.
    pub seqadj: Option<(Dir, [SeqAdj; 2])>,
}

/// A worker's tracker and policy, and its counts until they are published.
pub struct Stages<P: Policy> {
    pub shard: Shard,
    pub policy: P,
    counters: Arc<[CtCounters]>,
    pub worker: usize,
    /// `verdicts[i]`: what `ct_in` concluded of packet i of the chunk.
    verdicts: [Option<Verdict>; CHUNK],
    by_ctinfo: [u64; 7],
    drops: [u64; DropReason::COUNT],
    /// Whether the rules have NAT rules (else `dnat`, `snat` and `rewrite`
    /// do not run).
    nat: bool,
    /// New connections each rule could not map, by rule index, and where
    /// they are published (replaced with the rules).
    nat_exhausted: Vec<u64>,
    nat_exhausted_out: Arc<[AtomicU64]>,
    /// What `rewrite` decided for the chunk at hand, for the engine.
    pub rewrites: ArrayVec<Rewrite, CHUNK>,
    /// What some of `rewrites` need besides.
    pub extras: ArrayVec<RewriteExtra, CHUNK>,
    /// Payload changes the FTP helper made for NAT, by burst index.
    pub edits: ArrayVec<(u16, PayloadEdit), CHUNK>,
}

/// The NIC's checksum verdicts from an mbuf's offload flags. Each of the
/// two fields is GOOD, BAD, UNKNOWN or (both bits) NONE; only the first two
/// are verdicts.
#[inline]
fn rx_checksum(ol_flags: u64) -> RxChecksum {
    // A PMD with no checksum offload (net_pcap, net_af_packet, memif, a
    // reassembled datagram's 0) leaves all four bits clear: one test
    // instead of decoding both fields.
    if ol_flags & (RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK) == 0 {
        return RxChecksum::UNKNOWN;
    }
    let verdict = |mask: u64, good: u64, bad: u64| match ol_flags & mask {
        f if f == good => Checked::Good,
        f if f == bad => Checked::Bad,
        _ => Checked::Unknown,
    };
    RxChecksum {
        ip: verdict(
            RTE_MBUF_F_RX_IP_CKSUM_MASK,
            RTE_MBUF_F_RX_IP_CKSUM_GOOD,
            RTE_MBUF_F_RX_IP_CKSUM_BAD,
        ),
        l4: verdict(
            RTE_MBUF_F_RX_L4_CKSUM_MASK,
            RTE_MBUF_F_RX_L4_CKSUM_GOOD,
            RTE_MBUF_F_RX_L4_CKSUM_BAD,
        ),
    }
}

impl<P: Policy> Stages<P> {
    pub fn new(
        shard: Shard,
        firewall: &FirewallSettings,
        counters: Arc<[CtCounters]>,
        worker: usize,
        nat_exhausted_out: Arc<[AtomicU64]>,
    ) -> Stages<P> {
        let policy = P::new(firewall);
        let rules = policy.rules();
        let nat = rules.is_some_and(|r| r.has_nat(Manip::Src) || r.has_nat(Manip::Dst));
        let nat_exhausted = vec![0; rules.map_or(0, |r| r.len())];
        Stages {
            shard,
            policy,
            counters,
            worker,
            verdicts: [const { None }; CHUNK],
            by_ctinfo: [0; 7],
            drops: [0; DropReason::COUNT],
            nat,
            nat_exhausted,
            nat_exhausted_out,
            rewrites: ArrayVec::new(),
            extras: ArrayVec::new(),
            edits: ArrayVec::new(),
        }
    }

    /// Switches the policy to `rules` between bursts (`rules reload`):
    /// connections keep their state and NAT bindings, new ones meet the
    /// new rules. The per-rule counts so far are published first; from
    /// now on they go to `nat_exhausted_out`, indexed as `rules`.
    pub fn replace_rules(
        &mut self,
        rules: &crate::rules::RuleSet,
        nat_exhausted_out: Arc<[AtomicU64]>,
    ) -> Result<(), String> {
        self.publish();
        self.policy.set_rules(rules.clone())?;
        self.nat = rules.has_nat(Manip::Src) || rules.has_nat(Manip::Dst);
        self.nat_exhausted = vec![0; rules.len()];
        self.nat_exhausted_out = nat_exhausted_out;
        Ok(())
    }

    pub fn counters(&self) -> &CtCounters {
        &self.counters[self.worker]
    }

    /// Counts a drop for the stats.
    #[inline]
    pub fn count_drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    /// `classify`: parses frames `start..` of `frames` (at most a chunk's
    /// worth, up to the first fragment) into `chunk`. Frames that are not
    /// IP, cannot be parsed, or that a `notrack` rule exempts get their
    /// fate here (nftables' raw table sees packets before conntrack, and
    /// after defragmentation: a datagram is exempted in `datagram`).
    #[inline]
    pub fn classify<'a>(
        &mut self,
        frame: impl Fn(usize) -> (&'a [u8], usize, u64, u16),
        range: std::ops::Range<usize>,
        fates: &mut [Fate],
        chunk: &mut Chunk<'a>,
    ) -> Classify {
        // A plain index loop: walking `fates` with `enumerate`, `take` and
        // `skip` cost 26 more instructions a packet
        // (`perf/bench-instructions`), the adaptors' state held in
        // registers the inlined loop has none spare for.
        debug_assert!(range.end <= fates.len(), "a fate for every frame");
        let end = range.end.min(range.start + CHUNK);
        #[allow(clippy::needless_range_loop)] // measured, as said above
        for i in range.start..end {
            let (data, wire_len, ol_flags, in_port) = frame(i);
            let action = match parse_frame(LinkType::Ethernet, data, wire_len) {
                Ok(Frame::Ip(ip)) if ip.fragment != Fragment::Whole => {
                    return Classify::Fragment(i);
                }
                Ok(Frame::Ip(ip)) => {
                    let spread = data.len() < wire_len;
                    if spread && ip.l4.len() < L4_IN_FIRST_SEGMENT {
                        return Classify::Split(i);
                    }
                    let l3 = ip.header.as_ptr() as usize - data.as_ptr() as usize;
                    chunk.push(i, l3, in_port, ol_flags, &ip, spread);
                    if self
                        .policy
                        .untracked(in_port, chunk.cl[chunk.len() - 1].tuple())
                    {
                        // notrack: never looked up, never a connection, so
                        // no owner either; it passes.
                        chunk.pop();
                        self.untracked();
                    }
                    continue;
                }
                Ok(Frame::NotIp(ethertype)) => {
                    self.untracked();
                    self.policy.not_ip(ethertype)
                }
                Err(_) if data.len() < wire_len => return Classify::Split(i),
                Err(_) => {
                    self.malformed();
                    self.policy.malformed(DropReason::Invalid)
                }
            };
            if let Action::Drop(r) = action {
                fates[i] = Fate::Drop;
                self.count_drop(r);
            }
        }
        Classify::Next(end)
    }

    /// A packet that passes untracked.
    #[inline]
    pub fn untracked(&mut self) {
        self.shard.ignore();
        self.by_ctinfo[CtInfo::Untracked as usize] += 1;
    }

    /// A frame (or reassembled datagram) that could not be parsed.
    #[inline]
    pub fn malformed(&mut self) {
        self.shard.malformed();
        self.by_ctinfo[CtInfo::Invalid as usize] += 1;
    }

    /// `dispatch`: a packet whose connection another worker owns is handed
    /// to it before any lookup. The owner comes from the NIC's hash (fixed,
    /// public key, linear); the table keeps its own seeded hash, so that
    /// crafted tuples cannot pile into one bucket. A packet for another
    /// worker leaves before its checksum is checked and its table hash
    /// computed: the owner does both.
    ///
    /// A packet a NAT rule would translate to a single tuple (a port
    /// forward to one address and port) belongs where that tuple lands:
    /// replies will arrive there, and nothing about the connection can be
    /// chosen to land them anywhere else (`RuleSet::steer`).
    #[inline]
    pub fn dispatch(&self, chunk: &mut Chunk<'_>, h: &Handoff) {
        let rules = self.policy.rules().filter(|_| self.nat);
        for (p, cl) in chunk.pkt.iter_mut().zip(&chunk.cl) {
            let Some(mut t) = cl.flow_tuple() else {
                continue;
            };
            if let Some(r) = rules.filter(|_| !cl.is_icmp_error()) {
                let hashed = h.fields().ports(t.proto);
                t = r.steer(p.in_port, &t, hashed).unwrap_or(t);
            }
            let owner = h.owner(&t);
            if owner != h.me() {
                p.fate = Fate::Handoff(owner);
            }
        }
    }

    /// Checks the checksums of packets spread over several mbuf segments
    /// (jumbo frames), whose views hold only the first: the verdict goes
    /// into the offload flags, as a NIC's would, unless the NIC gave one.
    #[cold]
    pub fn verify_spread<'s, I: Iterator<Item = &'s [u8]>>(
        chunk: &mut Chunk<'_>,
        rest: impl Fn(usize) -> I,
    ) {
        for (p, sums) in chunk.pkt.iter_mut().zip(&chunk.sums) {
            if !p.spread || !p.live() || p.ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK != 0 {
                continue;
            }
            if let Some(ok) = sums.l4_ok_spread(rest(usize::from(p.at))) {
                p.ol_flags |= if ok && sums.header_ok() {
                    RTE_MBUF_F_RX_L4_CKSUM_GOOD
                } else {
                    RTE_MBUF_F_RX_L4_CKSUM_BAD
                };
            }
        }
    }

    /// The first half of `ct_in`, over the whole chunk: the checksum check
    /// and table hash, then the prefetch of every packet's index bucket
    /// and of the first few packets' connections.
    #[inline]
    pub fn ct_prepare(&mut self, chunk: &mut Chunk<'_>) {
        for ((p, cl), sums) in chunk.pkt.iter().zip(&mut chunk.cl).zip(&chunk.sums) {
            if p.live() {
                self.shard
                    .finish_classify(cl, sums, rx_checksum(p.ol_flags));
                self.shard.prefetch_bucket(cl, prefetch);
            }
        }
        for i in 0..Shard::PREFETCH_AHEAD.min(chunk.len()) {
            if chunk.pkt[i].live() {
                self.shard.prefetch_candidate(&mut chunk.cl[i], prefetch);
            }
        }
    }

    /// `ct_in`: ingress (`nf_conntrack_in`) for packets `from..` in order,
    /// up to and including the first whose connection has a helper;
    /// returns where it stopped. A helper runs at `confirm` and may create
    /// an expectation that the very next packet must meet (the seed's TFTP
    /// walk-through, replayed in one burst), so the stages after `ct_in`
    /// run on that part before `ct_in` goes on.
    ///
    /// Each lookup first starts loading the connection of the packet
    /// `Shard::PREFETCH_AHEAD` places on.
    #[inline]
    pub fn ct_in(&mut self, chunk: &mut Chunk<'_>, from: usize, now: u64) -> usize {
        for i in from..chunk.len() {
            if let Some(ahead) = chunk.cl.get_mut(i + Shard::PREFETCH_AHEAD) {
                if chunk.pkt[i + Shard::PREFETCH_AHEAD].live() {
                    self.shard.prefetch_candidate(ahead, prefetch);
                }
            }
            if !chunk.pkt[i].live() {
                continue;
            }
            let v = self.shard.ingress(&chunk.cl[i], now);
            self.by_ctinfo[v.ctinfo as usize] += 1;
            let helped = v.helped();
            self.verdicts[i] = Some(v);
            if helped {
                return i + 1;
            }
        }
        chunk.len()
    }

    /// `filter`: the policy (and `--rules`) on the verdicts of packets
    /// `part`. A dropped packet's new connection goes with it, as Linux
    /// frees an unconfirmed conntrack with its skb.
    #[inline]
    pub fn filter(&mut self, chunk: &mut Chunk<'_>, part: std::ops::Range<usize>) {
        for i in part {
            let p = &mut chunk.pkt[i];
            let Some(v) = self.verdicts[i].as_mut().filter(|_| p.live()) else {
                continue;
            };
            // An ICMP error's outer header is seen as it is, and the
            // translated view is only made where filter rules will look.
            let view = v.translated()
                && !chunk.cl[i].is_icmp_error()
                && self.policy.rules().is_some_and(|r| r.has_filter());
            // Borrowed, not copied, where there is no view to make.
            let t = chunk.cl[i].tuple();
            let viewed;
            let seen = if view {
                viewed = self.shard.dnat_view(v, t);
                &viewed
            } else {
                t
            };
            if let Action::Drop(r) = self.policy.tracked(p.in_port, seen, v) {
                if let Some(u) = v.unconfirmed.take() {
                    self.shard.discard(u);
                }
                p.fate = Fate::Drop;
                self.drops[r as usize] += 1;
            }
        }
    }

    /// `dnat` (PREROUTING's nat chain) and `snat` (POSTROUTING's): the
    /// first NAT rule of kind `manip` that matches a connection's first
    /// packet binds its mapping; `snat` sees the tuple after `dnat`. A
    /// mapping that cannot be made drops the packet and its connection,
    /// counted by reason and by rule.
    #[inline]
    pub fn nat(&mut self, chunk: &mut Chunk<'_>, part: std::ops::Range<usize>, manip: Manip) {
        let Some(rules) = self.policy.rules() else {
            return;
        };
        if !rules.has_nat(manip) {
            return;
        }
        for i in part {
            let p = &mut chunk.pkt[i];
            let Some(v) = self.verdicts[i]
                .as_mut()
                .filter(|v| p.live() && v.unconfirmed.is_some())
            else {
                continue;
            };
            let t = self.shard.dnat_view(v, chunk.cl[i].tuple());
            let Some(m) = rules.nat(manip, p.in_port, &t, v.ctinfo, v.status) else {
                continue;
            };
            if self.shard.nat(v, manip, m.range).is_err() {
                if let Some(u) = v.unconfirmed.take() {
                    self.shard.discard(u);
                }
                p.fate = Fate::Drop;
                self.drops[DropReason::Nat as usize] += 1;
                self.nat_exhausted[m.index] += 1;
            }
        }
    }

    /// `rewrite`: notes each passing packet of a translated connection
    /// with the tuple it must leave with (`nf_nat_packet`); the engine
    /// writes it into the packet.
    #[inline]
    pub fn rewrite(&mut self, chunk: &Chunk<'_>, part: std::ops::Range<usize>) {
        for i in part {
            let p = &chunk.pkt[i];
            let Some(v) = self.verdicts[i]
                .as_ref()
                .filter(|v| p.live() && v.translated())
            else {
                continue;
            };
            let cl = &chunk.cl[i];
            let Some(r) = v.conn else { continue };
            if cl.is_icmp_error() {
                if let Some((this, to)) = self.shard.nat_tuples(r, v.dir()) {
                    let extra = self.extra(RewriteExtra {
                        this: Some(this),
                        seqadj: None,
                    });
                    self.rewrites.push(Rewrite {
                        at: p.at,
                        l3: p.l3,
                        l4: p.l4,
                        extra,
                        to,
                    });
                }
            } else if let Some(to) = self.shard.nat_target(r, v.dir()) {
                // No comparison of `to` with the packet's tuple: a
                // connection is marked translated only where binding
                // changed its tuple (`Shard::nat`, as
                // `nf_nat_setup_info`), so every packet of it changes.
                // The comparison cost 21 instructions a translated packet.
                debug_assert_ne!(to, *cl.tuple());
                let extra = match self.shard.seqadj(r) {
                    Some(a) => self.extra(RewriteExtra {
                        this: None,
                        seqadj: Some((v.dir(), a)),
                    }),
                    None => None,
                };
                self.rewrites.push(Rewrite {
                    at: p.at,
                    l3: p.l3,
                    l4: p.l4,
                    extra,
                    to,
                });
            }
        }
    }

    /// Keeps `e` for a rewrite of this chunk; its index.
    #[cold]
    fn extra(&mut self, e: RewriteExtra) -> Option<u8> {
        self.extras.push(e);
        Some((self.extras.len() - 1) as u8)
    }

    /// `confirm`: egress (`__nf_conntrack_confirm` and the helpers) for
    /// every accepted packet of `part`.
    #[inline]
    pub fn confirm(&mut self, chunk: &mut Chunk<'_>, part: std::ops::Range<usize>, now: u64) {
        for i in part {
            let p = &mut chunk.pkt[i];
            let Some(v) = self.verdicts[i].as_mut().filter(|_| p.live()) else {
                continue;
            };
            // Two packets opened the same TCP connection; as in Linux the
            // second is dropped where a policy filters.
            if self.shard.egress(v, &chunk.cl[i], now).is_err() && P::FILTERS {
                p.fate = Fate::Drop;
                self.drops[DropReason::Invalid as usize] += 1;
            }
            if v.helped() {
                if let Some(e) = self.shard.take_edit() {
                    self.edits.push((p.at, e));
                }
            }
        }
    }

    /// `ct_in`, `dnat`, `filter`, `snat`, `confirm` and `rewrite` over a
    /// chunk.
    #[inline]
    pub fn track(&mut self, chunk: &mut Chunk<'_>, now: u64) {
        self.ct_prepare(chunk);
        self.rewrites.clear();
        self.extras.clear();
        self.edits.clear();
        let mut done = 0;
        while done < chunk.len() {
            let end = self.ct_in(chunk, done, now);
            if self.nat {
                self.nat(chunk, done..end, Manip::Dst);
            }
            self.filter(chunk, done..end);
            if self.nat {
                self.nat(chunk, done..end, Manip::Src);
            }
            self.confirm(chunk, done..end, now);
            if self.nat {
                self.rewrite(chunk, done..end);
            }
            done = end;
        }
    }

    /// Publishes the counts gathered since the last call and frees what no
    /// packet confirmed.
    #[inline]
    pub fn publish(&mut self) {
        let c = &self.counters[self.worker];
        for (counter, n) in c.ctinfo.iter().zip(&mut self.by_ctinfo) {
            if *n > 0 {
                CtCounters::add(counter, std::mem::take(n));
            }
        }
        for (counter, n) in c.dropped.iter().zip(&mut self.drops) {
            if *n > 0 {
                CtCounters::add(counter, std::mem::take(n));
            }
        }
        for (counter, n) in self.nat_exhausted_out.iter().zip(&mut self.nat_exhausted) {
            if *n > 0 {
                CtCounters::add(counter, std::mem::take(n));
            }
        }
        self.shard.reap_unconfirmed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NIC's good transport verdict leaves the IPv4 header to be
    /// checked (in software, by `finish_classify`); the two fields' NONE
    /// value (both bits) is no verdict either.
    #[test]
    fn offload_flags_give_each_checksum_its_own_verdict() {
        let l4_good = rx_checksum(RTE_MBUF_F_RX_L4_CKSUM_GOOD);
        assert_eq!((l4_good.ip, l4_good.l4), (Checked::Unknown, Checked::Good));
        let both = rx_checksum(RTE_MBUF_F_RX_IP_CKSUM_BAD | RTE_MBUF_F_RX_L4_CKSUM_GOOD);
        assert_eq!((both.ip, both.l4), (Checked::Bad, Checked::Good));
        let none = rx_checksum(RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK);
        assert_eq!(none, RxChecksum::UNKNOWN);
        assert_eq!(rx_checksum(RTE_MBUF_F_RX_IP_CKSUM_GOOD).ip, Checked::Good);
        // Other offload flags alone (an RSS hash, VLAN stripped) are no
        // verdict.
        assert_eq!(
            rx_checksum(!(RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK)),
            RxChecksum::UNKNOWN
        );
        assert_eq!(rx_checksum(0), RxChecksum::UNKNOWN);
    }

    /// The record of a packet to rewrite stays small: what few packets
    /// need is in `RewriteExtra`.
    #[test]
    fn a_rewrite_record_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Rewrite>(), 48);
    }
}
