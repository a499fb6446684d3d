//! The tracking engines: `--forward-mode=conntrack` (track everything,
//! forward everything) and `--forward-mode=firewall` (a stateful policy).
//! Both run one pipeline, parameterised by a [`Policy`]: every worker owns
//! a connection-tracker shard; per burst, every packet is parsed and hashed
//! and the burst's lookups prefetched, then each packet in order goes
//! through ingress (lookup or create), the policy, and egress (confirm and
//! helpers) if accepted, or has its new connection discarded if dropped.
//! Dropped packets are freed and counted by reason; expiry runs in the poll
//! loop with a bounded budget.
//!
//! With several workers, each connection belongs to the worker its
//! symmetric Toeplitz hash maps to (`rss`); a packet that arrives elsewhere
//! is handed to its owner through a ring (`handoff`) before any lookup, so
//! a connection's state is only touched by its owner. All workers share
//! one expectation set, so a RELATED connection is recognised whichever
//! worker owns it.

use std::sync::Arc;

use arrayvec::ArrayVec;

use super::cpu::{advise_huge_pages, prefetch, tsc};
use super::fwd::ForwardEngine;
use super::handoff::Handoff;
use super::mbuf::{Burst, Fate, MAX_BURST};
use super::worker::{CtCounters, EngineContext, Stream, TableDump};
use crate::conntrack::{Classified, CtInfo, RxChecksum, Shard, Tuple, Verdict};
use crate::rules::{RuleAction, RuleSet};
use crate::wire::{parse_frame, Frame, LinkType};
use dpdk_sys::consts::{
    RTE_MBUF_F_RX_L4_CKSUM_BAD, RTE_MBUF_F_RX_L4_CKSUM_GOOD, RTE_MBUF_F_RX_L4_CKSUM_MASK,
};

/// Packets classified at a time (larger bursts are taken in chunks).
const CHUNK: usize = 64;
/// Table slots the expiry walk looks at per poll.
const GC_BUDGET: usize = 32;

/// Why a packet was dropped (index into `CtCounters::dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// INVALID: malformed, out of window, no room, a refused confirm.
    Invalid = 0,
    /// A NEW connection from a port that is not an inside port.
    NewFromOutside = 1,
    /// A frame that is neither IP, ARP nor IPv6 neighbour discovery.
    NotIp = 2,
    /// A `drop` rule of `--rules`.
    Rule = 3,
}

impl DropReason {
    pub const NAMES: [&'static str; 4] = ["invalid", "new-from-outside", "not-ip", "rule"];
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop(DropReason),
}

/// A filtering policy over the tracker's verdicts.
pub trait Policy {
    /// Whether the policy ever drops (if not, bursts are not compacted).
    const FILTERS: bool;

    fn new(ctx: &EngineContext) -> Self;

    /// Whether an IP packet should not be tracked at all (and pass).
    fn untracked(&self, in_port: u16, tuple: &Tuple) -> bool;

    /// For a tracked (IP) packet that arrived on `in_port`.
    fn tracked(&self, in_port: u16, tuple: &Tuple, v: &Verdict) -> Action;

    /// For a frame that is not IP.
    fn not_ip(&self, ethertype: u16) -> Action;
}

/// `conntrack` mode: everything passes.
pub struct AcceptAll;

impl Policy for AcceptAll {
    const FILTERS: bool = false;

    fn new(_: &EngineContext) -> Self {
        AcceptAll
    }

    #[inline]
    fn untracked(&self, _: u16, _: &Tuple) -> bool {
        false
    }

    #[inline]
    fn tracked(&self, _: u16, _: &Tuple, _: &Verdict) -> Action {
        Action::Accept
    }

    #[inline]
    fn not_ip(&self, _: u16) -> Action {
        Action::Accept
    }
}

/// `firewall` mode: the rules of `--rules` first (first match decides),
/// then the default policy: packets of ESTABLISHED and RELATED connections
/// pass both ways; NEW connections may be opened only from an inside port;
/// INVALID is dropped; ARP and IPv6 neighbour discovery pass (the hosts on
/// both sides must find each other through the bump); other frames are
/// dropped.
pub struct StatefulFirewall {
    inside_ports: u64,
    rules: RuleSet,
}

const ETHERTYPE_ARP: u16 = 0x0806;

impl Policy for StatefulFirewall {
    const FILTERS: bool = true;

    fn new(ctx: &EngineContext) -> Self {
        StatefulFirewall {
            inside_ports: ctx.inside_ports,
            rules: (*ctx.rules).clone(),
        }
    }

    #[inline]
    fn untracked(&self, in_port: u16, tuple: &Tuple) -> bool {
        self.rules.untracked(in_port, tuple)
    }

    #[inline]
    fn tracked(&self, in_port: u16, tuple: &Tuple, v: &Verdict) -> Action {
        match self.rules.verdict(in_port, tuple, v.ctinfo) {
            Some(RuleAction::Accept) => return Action::Accept,
            Some(_) => return Action::Drop(DropReason::Rule),
            None => {}
        }
        match v.ctinfo {
            CtInfo::Established
            | CtInfo::EstablishedReply
            | CtInfo::Related
            | CtInfo::RelatedReply => Action::Accept,
            CtInfo::New if in_port < 64 && self.inside_ports & (1 << in_port) != 0 => {
                Action::Accept
            }
            CtInfo::New => Action::Drop(DropReason::NewFromOutside),
            // The tracker leaves only neighbour discovery and MLD untracked.
            CtInfo::Untracked => Action::Accept,
            CtInfo::Invalid => Action::Drop(DropReason::Invalid),
        }
    }

    #[inline]
    fn not_ip(&self, ethertype: u16) -> Action {
        if ethertype == ETHERTYPE_ARP {
            Action::Accept
        } else {
            Action::Drop(DropReason::NotIp)
        }
    }
}

/// The NIC's transport-checksum verdict from an mbuf's offload flags.
#[inline]
fn rx_checksum(ol_flags: u64) -> RxChecksum {
    match ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK {
        RTE_MBUF_F_RX_L4_CKSUM_GOOD => RxChecksum::Good,
        RTE_MBUF_F_RX_L4_CKSUM_BAD => RxChecksum::Bad,
        _ => RxChecksum::Unknown,
    }
}

/// The tracker and policy of one worker.
struct Tracker<P: Policy> {
    shard: Shard,
    policy: P,
    counters: Arc<[CtCounters]>,
    worker: usize,
}

/// A tracking engine with policy `P`, one per worker.
pub struct Tracking<P: Policy> {
    tracker: Tracker<P>,
    /// Set when there are other workers to hand packets to.
    handoff: Option<Handoff>,
    /// What becomes of each packet of the burst at hand (kept here so a
    /// burst only resets the entries it uses).
    fates: [Fate; MAX_BURST],
    /// TSC to nanoseconds: ns = (tsc - tsc0) * mult >> 32.
    tsc0: u64,
    mult: u64,
    dump: Arc<TableDump>,
    /// The last dump request answered.
    dumped: u64,
}

/// `--forward-mode=conntrack`.
pub type Conntrack = Tracking<AcceptAll>;
/// `--forward-mode=firewall`.
pub type Firewall = Tracking<StatefulFirewall>;

impl<P: Policy> Tracker<P> {
    /// Tracks up to CHUNK frames; `fates[i]` says what becomes of frame i.
    /// With `handoff`, packets of connections another worker owns are
    /// marked for it and left alone.
    fn track(
        &mut self,
        frames: &[(&[u8], usize, u64, u16)],
        now: u64,
        fates: &mut [Fate],
        handoff: Option<&Handoff>,
    ) {
        let c = &self.counters[self.worker];
        let mut by_ctinfo = [0u64; 7];
        let mut drops = [0u64; 4];
        let mut classified: ArrayVec<Classified<'_>, CHUNK> = ArrayVec::new();
        let mut at: ArrayVec<u8, CHUNK> = ArrayVec::new();
        for (i, &(data, wire_len, ol_flags, in_port)) in frames.iter().enumerate() {
            let action = match parse_frame(LinkType::Ethernet, data, wire_len) {
                Ok(Frame::Ip(ip)) => {
                    let cl = Classified::extract(&ip, 0);
                    if self.policy.untracked(in_port, cl.tuple()) {
                        // notrack: never looked up, never a connection, so
                        // no owner either; it passes.
                        self.shard.ignore();
                        by_ctinfo[CtInfo::Untracked as usize] += 1;
                        continue;
                    }
                    // The owner comes from the NIC's hash (fixed, public
                    // key, linear); the table keeps its own seeded hash, so
                    // that crafted tuples cannot pile into one bucket. A
                    // packet for another worker leaves before its checksum
                    // is checked and its table hash computed: the owner
                    // does both.
                    if let Some(h) = handoff {
                        if let Some(owner) = cl.flow_tuple().map(|t| h.owner(&t)) {
                            if owner != h.me() {
                                fates[i] = Fate::Handoff(owner);
                                continue;
                            }
                        }
                    }
                    let cl = self.shard.finish_classify(cl, &ip, rx_checksum(ol_flags));
                    classified.push(cl);
                    at.push(i as u8);
                    continue;
                }
                Ok(Frame::NotIp(ethertype)) => {
                    self.shard.ignore();
                    by_ctinfo[CtInfo::Untracked as usize] += 1;
                    self.policy.not_ip(ethertype)
                }
                Err(_) => {
                    self.shard.malformed();
                    by_ctinfo[CtInfo::Invalid as usize] += 1;
                    if P::FILTERS {
                        Action::Drop(DropReason::Invalid)
                    } else {
                        Action::Accept
                    }
                }
            };
            if let Action::Drop(r) = action {
                fates[i] = Fate::Drop;
                drops[r as usize] += 1;
            }
        }
        self.shard.prefetch_burst(&classified, prefetch);
        for (cl, &i) in classified.iter().zip(&at) {
            let in_port = frames[usize::from(i)].3;
            let mut v = self.shard.ingress(cl, now);
            by_ctinfo[v.ctinfo as usize] += 1;
            let action = match self.policy.tracked(in_port, cl.tuple(), &v) {
                Action::Accept => match self.shard.egress(&mut v, cl, now) {
                    Ok(_) => Action::Accept,
                    // Two packets opened the same TCP connection; as in
                    // Linux the second is dropped where a policy filters.
                    Err(_) if P::FILTERS => Action::Drop(DropReason::Invalid),
                    Err(_) => Action::Accept,
                },
                drop => {
                    // Dropped before egress: its new connection goes too.
                    if let Some(u) = v.unconfirmed.take() {
                        self.shard.discard(u);
                    }
                    drop
                }
            };
            if let Action::Drop(r) = action {
                fates[usize::from(i)] = Fate::Drop;
                drops[r as usize] += 1;
            }
        }
        for (counter, n) in c.ctinfo.iter().zip(by_ctinfo) {
            if n > 0 {
                CtCounters::add(counter, n);
            }
        }
        for (counter, n) in c.dropped.iter().zip(drops) {
            if n > 0 {
                CtCounters::add(counter, n);
            }
        }
        self.shard.reap_unconfirmed();
    }

    /// Tracks a whole burst in chunks; fills `fates`.
    #[inline]
    fn track_burst(
        &mut self,
        burst: &Burst,
        now: u64,
        fates: &mut [Fate; MAX_BURST],
        handoff: Option<&Handoff>,
    ) {
        let mut frames: ArrayVec<(&[u8], usize, u64, u16), CHUNK> = ArrayVec::new();
        let mut base = 0;
        for p in burst.packets() {
            frames.push(p);
            if frames.is_full() {
                self.track(&frames, now, &mut fates[base..], handoff);
                base += CHUNK;
                frames.clear();
            }
        }
        self.track(&frames, now, &mut fates[base..], handoff);
    }
}

impl<P: Policy> Tracking<P> {
    #[inline]
    fn clock(&self) -> u64 {
        (((tsc() - self.tsc0) as u128 * self.mult as u128) >> 32) as u64
    }

    /// Tracks and transmits what the other workers handed to this one;
    /// returns how many packets that was.
    #[inline]
    fn drain_handoff(&mut self, now: u64) -> usize {
        let Some(h) = self.handoff.as_mut() else {
            return 0;
        };
        let mut total = 0;
        let me = self.tracker.worker;
        for from in 0..h.sources() {
            let n = h.receive(from);
            if n == 0 {
                continue;
            }
            CtCounters::add(&self.tracker.counters[me].handoff_rx, n as u64);
            total += n;
            h.inbox.prefetch_data(n);
            self.fates[..n].fill(Fate::Pass);
            // Owned here by construction: no second dispatch.
            self.tracker
                .track_burst(&h.inbox, now, &mut self.fates, None);
            if P::FILTERS {
                h.inbox.sort_out(&self.fates[..n], &mut []);
            }
            h.transmit_inbox(&self.tracker.counters[me]);
        }
        total
    }
}

impl<P: Policy> ForwardEngine for Tracking<P> {
    const TRACKS: bool = true;

    fn new(ctx: &mut EngineContext) -> Self {
        let mut cfg = ctx.conntrack;
        cfg.advise_memory = Some(advise_huge_pages);
        CtCounters::set(
            &ctx.ct_counters[usize::from(ctx.worker)].connections_max,
            cfg.max as u64,
        );
        Tracking {
            tracker: Tracker {
                shard: Shard::with_expectations(cfg, ctx.worker, Arc::clone(&ctx.expectations)),
                policy: P::new(ctx),
                counters: Arc::clone(&ctx.ct_counters),
                worker: ctx.worker as usize,
            },
            handoff: ctx.handoff.take().map(|l| Handoff::new(l, ctx.burst)),
            fates: [Fate::Pass; MAX_BURST],
            tsc0: tsc(),
            mult: ((1_000_000_000u128 << 32) / u128::from(ctx.tsc_hz.max(1))) as u64,
            dump: Arc::clone(&ctx.dump),
            dumped: 0,
        }
    }

    #[inline]
    fn forward(&mut self, _: &Stream, burst: &mut Burst) {
        let now = self.clock();
        burst.prefetch_data(burst.len());
        let fates = &mut self.fates;
        fates[..burst.len()].fill(Fate::Pass);
        self.tracker
            .track_burst(burst, now, fates, self.handoff.as_ref());
        match self.handoff.as_mut() {
            Some(h) => {
                burst.sort_out(&fates[..burst.len()], &mut h.outboxes);
                h.flush(&self.tracker.counters[self.tracker.worker]);
            }
            None if P::FILTERS => burst.sort_out(&fates[..burst.len()], &mut []),
            None => {}
        }
    }

    #[inline]
    fn housekeeping(&mut self) -> usize {
        let now = self.clock();
        let handed_over = self.drain_handoff(now);
        let t = &mut self.tracker;
        t.shard.gc(now, GC_BUDGET);
        let c = &t.counters[t.worker];
        let st = t.shard.stats();
        CtCounters::set(&c.connections, t.shard.table().len() as u64);
        CtCounters::set(&c.expected, t.shard.expectations().len() as u64);
        CtCounters::set(&c.early_drop, st.early_drop);
        CtCounters::set(&c.table_full, st.drop);
        let wanted = self.dump.request.load(std::sync::atomic::Ordering::Relaxed);
        if wanted != self.dumped {
            // A rare, operator-driven listing: allocating here is fine.
            let listing = t.shard.list(now);
            if let Some(slot) = self.dump.replies.get(t.worker) {
                let mut r = slot.lock().unwrap_or_else(|p| p.into_inner());
                *r = (wanted, listing, t.shard.table().len());
            }
            self.dumped = wanted;
        }
        handed_over
    }
}
