//! The tracking engines: `--forward-mode=conntrack` (track everything,
//! forward everything) and `--forward-mode=firewall` (a stateful policy).
//! Both compose the stages of `stages` with one [`Policy`] each: every
//! worker owns a connection-tracker shard and a reassembly table; a burst
//! goes through the stages in chunks; what the policy drops is freed and
//! counted by reason; expiry runs in the poll loop with a bounded budget.
//!
//! With several workers, each connection belongs to the worker its
//! symmetric Toeplitz hash maps to (`rss`); a packet that arrives elsewhere
//! is handed to its owner through a ring (`handoff`) before any lookup, so
//! a connection's state is only touched by its owner. All workers share
//! one expectation set, so a RELATED connection is recognised whichever
//! worker owns it.
//!
//! IP fragments (`defrag`, after Linux's `nf_defrag`): a fragment is held
//! as an mbuf until its datagram is complete; the datagram is then tracked
//! once, in the place of its last fragment in the burst, and its original
//! fragments are released in the order they came, with the datagram's
//! fate. With several workers, fragments are first handed to the worker
//! their addresses hash to (NICs hash fragments by addresses, since only
//! the first carries ports), which reassembles them; the whole datagram's
//! fragments then go together to the owner of its connection.

use std::sync::Arc;

use super::control::Controller;
use super::cpu::{advise_huge_pages, tsc};
use super::fwd::ForwardEngine;
use super::handoff::{Handoff, Router};
use super::mbuf::{Burst, Fate, HeldMbuf, MAX_BURST};
use super::policy::{AcceptAll, Action, DropReason, Policy, StatefulFirewall};
use super::rewrite::{apply_edit, rewrite_frame, rewrite_usual};
use super::stages::{Chunk, Classify, Stages};
use super::worker::{CtCounters, EngineContext, Stream};
use crate::conntrack::{Defrag, FragHeader, Push, Shard};
use crate::wire::{parse_frame, parse_ip, Fragment, Frame, IpPacket, LinkType};

/// Table slots the expiry walk looks at per poll.
const GC_BUDGET: usize = 32;

/// The longest packet `split` copies: an IP packet of 65535 bytes behind
/// an Ethernet header and two VLAN tags.
const LINEAR_MAX: usize = 65_535 + 22;

/// Which way packets came to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// From an RX queue: anything may belong to another worker.
    Rx,
    /// From a handoff ring: handed here because this worker owns them (or
    /// reassembles them); only a datagram completed here may belong to
    /// another worker.
    Handed,
}

/// A datagram released in the current burst: its fragments
/// (`Core::released_mbufs[range]`) go where `fate` says, in the place of
/// burst index `at`.
struct Released {
    at: usize,
    fate: Fate,
    range: std::ops::Range<usize>,
}

/// A worker's pipeline state.
struct Core<P: Policy> {
    stages: Stages<P>,
    defrag: Defrag<HeldMbuf>,
    /// Set when there are other workers to hand packets to.
    handoff: Option<Handoff>,
    /// What becomes of each packet of the burst at hand (kept here so a
    /// burst only resets the entries it uses).
    fates: [Fate; MAX_BURST],
    /// Whether a packet of the burst was held (its slot must be closed).
    held: bool,
    released: Vec<Released>,
    released_mbufs: Vec<HeldMbuf>,
    /// Where released packets are gathered to be sent in order.
    staging: Burst,
    /// A linear copy of a packet whose headers span mbuf segments.
    linear: Vec<u8>,
}

/// A tracking engine with policy `P`, one per worker.
pub struct Tracking<P: Policy> {
    core: Core<P>,
    /// Packets taken from a handoff ring.
    inbox: Burst,
    /// How handed-over packets are sent (with several workers).
    router: Option<Router>,
    /// TSC to nanoseconds: ns = (tsc - tsc0) * mult >> 32.
    tsc0: u64,
    mult: u64,
    /// The operator's commands (`control`).
    control: Controller,
    /// Where connection events go (`--ct-events`, `ct events on`).
    events: Arc<super::forwarding::EventQueue>,
}

/// `--forward-mode=conntrack`.
pub type Conntrack = Tracking<AcceptAll>;
/// `--forward-mode=firewall`.
pub type Firewall = Tracking<StatefulFirewall>;

impl<P: Policy> Core<P> {
    /// Runs `burst` through the stages; fills `fates`, holds fragments and
    /// records the datagrams released.
    #[inline]
    fn process(&mut self, burst: &mut Burst, now: u64, path: Path) {
        let n = burst.len();
        self.fates[..n].fill(Fate::Pass);
        self.held = false;
        let mut i = 0;
        while i < n {
            let mut chunk = Chunk::default();
            let next = self
                .stages
                .classify(|j| burst.packet(j), i..n, &mut self.fates, &mut chunk);
            if let (Path::Rx, Some(h)) = (path, self.handoff.as_ref()) {
                self.stages.dispatch(&mut chunk, h);
            }
            if chunk.spread {
                Stages::<P>::verify_spread(&mut chunk, |at| burst.later_segments(at));
            }
            self.stages.track(&mut chunk, now);
            for p in &chunk.pkt {
                self.fates[usize::from(p.at)] = p.fate;
            }
            drop(chunk);
            if !self.stages.rewrites.is_empty() {
                self.apply_rewrites(burst);
            }
            self.stages.publish();
            i = match next {
                Classify::Next(end) => end,
                Classify::Fragment(at) => {
                    self.defrag(burst, at, now, path);
                    self.stages.publish();
                    at + 1
                }
                Classify::Split(at) => {
                    self.split(burst, at, now, path);
                    self.stages.publish();
                    at + 1
                }
            };
        }
    }

    /// `defrag`: takes fragment `at` of the burst into the reassembly
    /// table, or hands it to the worker that reassembles its datagram;
    /// tracks the datagram if it is now complete.
    #[cold]
    fn defrag(&mut self, burst: &mut Burst, at: usize, now: u64, path: Path) {
        let (data, wire_len, _, in_port) = burst.packet(at);
        let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, data, wire_len) else {
            unreachable!("classify saw an IP fragment here");
        };
        if let (Path::Rx, Some(h)) = (path, self.handoff.as_ref()) {
            let w = h.owner_by_addresses(&ip);
            if w != h.me() {
                self.fates[at] = Fate::Handoff(w);
                return;
            }
        }
        let header = FragHeader::of(&ip);
        let l3_at = ip.header.as_ptr() as usize - data.as_ptr() as usize;
        let m = burst.take(at);
        self.fates[at] = Fate::Held;
        self.held = true;
        match self.defrag.push(&header, l3_at, m, now) {
            Push::Held => {}
            // A fragment that can never be part of a datagram is dropped in
            // both modes, as Linux's defragmentation drops it.
            Push::Refused(_, m) => {
                drop(m);
                self.stages.count_drop(DropReason::Fragment);
            }
            Push::Complete => self.datagram(at, in_port, now),
        }
    }

    /// Tracks a reassembled datagram in the place of its last fragment
    /// (burst index `at`) and releases its fragments with its fate.
    #[cold]
    fn datagram(&mut self, at: usize, in_port: u16, now: u64) {
        let dg = self.defrag.datagram();
        let fate = match parse_ip(dg, dg.len(), false) {
            Err(_) => malformed(&mut self.stages),
            // Reassembled here, owned perhaps elsewhere (both paths).
            Ok(ip) => track_one(
                &mut self.stages,
                self.handoff.as_ref(),
                &ip,
                at,
                0,
                in_port,
                0,
                now,
            ),
        };
        let start = self.released_mbufs.len();
        let rw = self.stages.rewrites.pop();
        let extra = rw
            .and_then(|rw| rw.extra)
            .map(|i| self.stages.extras[usize::from(i)]);
        self.stages.extras.clear();
        match fate {
            Fate::Drop => self.defrag.take_fragments().for_each(drop),
            _ => {
                self.released_mbufs.extend(self.defrag.take_fragments());
                if let Some(rw) = rw {
                    // Every fragment carries the addresses; the first the
                    // ports and the datagram's transport checksum. (An FTP
                    // command in fragments, which the helper would have
                    // rewritten, is not forwarded: its fragments cannot
                    // change length.)
                    let edited = !self.stages.edits.is_empty();
                    for m in &mut self.released_mbufs[start..] {
                        if edited || !rewrite_frame(m.data_mut(), None, &rw, extra.as_ref()) {
                            self.stages.count_drop(DropReason::Nat);
                        }
                    }
                    self.stages.edits.clear();
                }
                self.released.push(Released {
                    at,
                    fate,
                    range: start..self.released_mbufs.len(),
                });
            }
        }
    }

    /// A frame whose headers are split across mbuf segments (a pool with a
    /// small data room, or a driver that splits headers): parsed and
    /// tracked from a linear copy of the whole packet, as Linux's
    /// `skb_header_pointer` copies what is not linear, so its checksum and
    /// any helper see all of it. The mbuf itself is forwarded as it came.
    #[cold]
    fn split(&mut self, burst: &mut Burst, at: usize, now: u64, path: Path) {
        let (_, wire_len, ol_flags, in_port) = burst.packet(at);
        burst.copy_out(at, &mut self.linear);
        let dispatch = if path == Path::Rx {
            self.handoff.as_ref()
        } else {
            None
        };
        let stages = &mut self.stages;
        let fate = match parse_frame(LinkType::Ethernet, &self.linear, wire_len) {
            Ok(Frame::Ip(ip)) if ip.fragment == Fragment::Whole => {
                let l3 = ip.header.as_ptr() as usize - self.linear.as_ptr() as usize;
                track_one(stages, dispatch, &ip, at, l3, in_port, ol_flags, now)
            }
            // Reassembly holds fragments whose headers sit in their first
            // segment; one spread over several is refused, as a fragment
            // cut short is.
            Ok(Frame::Ip(_)) => {
                stages.count_drop(DropReason::Fragment);
                Fate::Drop
            }
            Ok(Frame::NotIp(ethertype)) => {
                stages.untracked();
                action_fate(stages, stages.policy.not_ip(ethertype))
            }
            Err(_) => malformed(stages),
        };
        self.fates[at] = fate;
        if !self.stages.rewrites.is_empty() {
            self.apply_rewrites(burst);
        }
    }

    /// Writes what `rewrite` decided into the burst's packets. A packet
    /// whose headers are not all in its first segment cannot be rewritten
    /// in place and is dropped, counted as `nat`. Not cold: with NAT
    /// configured, most packets pass here.
    fn apply_rewrites(&mut self, burst: &mut Burst) {
        // Read in place (moving the list out, or each record, would copy
        // them); failures are counted afterwards.
        let mut failed = 0;
        for rw in &self.stages.rewrites {
            let at = usize::from(rw.at);
            let mut p = burst.packet_mut(at);
            let mut ok = match rewrite_usual(p.data_mut(), rw) {
                Some(ok) => ok,
                None => {
                    let wire_len = p.pkt_len();
                    let extra = rw.extra.map(|i| &self.stages.extras[usize::from(i)]);
                    rewrite_frame(p.data_mut(), Some(wire_len), rw, extra)
                }
            };
            // An FTP announcement the helper rewrote, last: it may change
            // the packet's length, and its checksums are computed afresh.
            if let Some((_, edit)) = self.stages.edits.iter().find(|(a, _)| *a == rw.at) {
                ok &= apply_edit(&mut p, usize::from(rw.l3), edit);
            }
            if !ok {
                self.fates[at] = Fate::Drop;
                failed += 1;
            }
        }
        for _ in 0..failed {
            self.stages.count_drop(DropReason::Nat);
        }
        self.stages.rewrites.clear();
        self.stages.extras.clear();
        self.stages.edits.clear();
    }

    /// `tx`, the usual case: nothing was released, so the burst keeps its
    /// slots; drops are freed, handoffs put on their rings, and what
    /// passes stays for `send`.
    #[inline]
    fn sort_out(&mut self, burst: &mut Burst) {
        let n = burst.len();
        match self.handoff.as_mut() {
            Some(h) => {
                burst.sort_out(&self.fates[..n], &mut h.outboxes);
                h.flush(self.stages.counters());
            }
            None if P::FILTERS || self.held => burst.sort_out(&self.fates[..n], &mut []),
            None => {}
        }
    }

    /// `tx` with released datagrams: every packet and released fragment,
    /// in burst order, to `send` (passing), to the rings (handed over) or
    /// freed. Returns (sent, dropped).
    #[cold]
    fn emit(
        &mut self,
        burst: &mut Burst,
        mut send: impl FnMut(&mut Burst, &CtCounters) -> (usize, usize),
    ) -> (usize, usize) {
        let Core {
            stages,
            handoff,
            fates,
            released,
            released_mbufs,
            staging,
            ..
        } = self;
        let c = stages.counters();
        let mut totals = (0, 0);
        let mut mbufs = released_mbufs.drain(..);
        let mut groups = released.drain(..).peekable();
        let mut put = |fate: Fate, m: HeldMbuf, staging: &mut Burst| match fate {
            Fate::Pass => {
                if staging.is_full() {
                    let (s, d) = send(staging, c);
                    totals = (totals.0 + s, totals.1 + d);
                }
                staging.push(m);
            }
            Fate::Handoff(w) => match handoff.as_mut() {
                Some(h) => h.push(w, m, c),
                None => drop(m),
            },
            Fate::Drop | Fate::Held => drop(m),
        };
        burst.drain_with(fates, |i, fate, m| {
            // A datagram goes where its last fragment was (that slot is
            // empty: the fragment is held with the others).
            while let Some(g) = groups.next_if(|g| g.at < i) {
                for m in mbufs.by_ref().take(g.range.len()) {
                    put(g.fate, m, staging);
                }
            }
            put(fate, m, staging);
        });
        // Datagrams completed by the last packets, whose slots were empty.
        for g in groups {
            for m in mbufs.by_ref().take(g.range.len()) {
                put(g.fate, m, staging);
            }
        }
        let (s, d) = send(staging, c);
        if let Some(h) = handoff.as_mut() {
            h.flush(c);
        }
        (totals.0 + s, totals.1 + d)
    }
}

/// Tracks one IP packet outside a burst's chunks (a reassembled datagram,
/// a linear copy), handing it to its owner first where `handoff` is given;
/// returns its fate.
#[cold]
#[allow(clippy::too_many_arguments)]
fn track_one<P: Policy>(
    stages: &mut Stages<P>,
    handoff: Option<&Handoff>,
    ip: &IpPacket<'_>,
    at: usize,
    l3: usize,
    in_port: u16,
    ol_flags: u64,
    now: u64,
) -> Fate {
    let mut one = Chunk::default();
    one.push(at, l3, in_port, ol_flags, ip, false);
    if stages.policy.untracked(in_port, one.cl[0].tuple()) {
        stages.untracked();
        return Fate::Pass;
    }
    if let Some(h) = handoff {
        stages.dispatch(&mut one, h);
    }
    stages.track(&mut one, now);
    one.pkt[0].fate
}

/// The fate of a packet that could not be parsed, counted.
#[cold]
fn malformed<P: Policy>(stages: &mut Stages<P>) -> Fate {
    stages.malformed();
    let action = stages.policy.malformed(DropReason::Invalid);
    action_fate(stages, action)
}

/// A policy's action as a fate; a drop is counted by its reason.
fn action_fate<P: Policy>(stages: &mut Stages<P>, action: Action) -> Fate {
    match action {
        Action::Accept => Fate::Pass,
        Action::Drop(r) => {
            stages.count_drop(r);
            Fate::Drop
        }
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
        let Some(sources) = self.core.handoff.as_ref().map(Handoff::sources) else {
            return 0;
        };
        let mut total = 0;
        for from in 0..sources {
            let h = self.core.handoff.as_mut().expect("checked above");
            let n = h.receive(from, &mut self.inbox);
            if n == 0 {
                continue;
            }
            CtCounters::add(&self.core.stages.counters().handoff_rx, n as u64);
            total += n;
            self.inbox.prefetch_data(n);
            let core = &mut self.core;
            core.process(&mut self.inbox, now, Path::Handed);
            let router = self.router.as_ref().expect("set with the handoff links");
            if core.released.is_empty() {
                core.sort_out(&mut self.inbox);
                router.transmit(&mut self.inbox, core.stages.counters());
            } else {
                core.emit(&mut self.inbox, |b, c| router.transmit(b, c));
            }
        }
        total
    }
}

impl<P: Policy> ForwardEngine for Tracking<P> {
    const TRACKS: bool = true;

    fn new(ctx: &mut EngineContext) -> Self {
        let t = ctx
            .tracking
            .take()
            .expect("a tracking mode is set up with a tracking context");
        let mut cfg = t.conntrack;
        cfg.advise_memory = Some(advise_huge_pages);
        let worker = usize::from(ctx.worker);
        CtCounters::set(&t.ct_counters[worker].connections_max, cfg.max as u64);
        let mut shard = Shard::with_expectations(cfg, ctx.worker, Arc::clone(&t.expectations));
        if t.events_on {
            // Drained into the queue at every housekeeping: a burst's worth
            // of events and then some.
            shard.enable_events(4 * MAX_BURST);
        }
        if let Some(links) = &t.handoff {
            // NAT picks reply tuples that land on this worker.
            shard.set_steering(links.steering());
        }
        let burst = usize::from(ctx.burst).clamp(1, MAX_BURST);
        let handoff = t.handoff.map(|l| Handoff::new(l, ctx.burst));
        Tracking {
            router: handoff.as_ref().map(Handoff::router),
            core: Core {
                stages: Stages::new(shard, &t.firewall, t.ct_counters, worker, t.nat_exhausted),
                defrag: Defrag::new(t.defrag),
                handoff,
                fates: [Fate::Pass; MAX_BURST],
                held: false,
                released: Vec::with_capacity(MAX_BURST),
                // Every packet of a burst may complete a datagram.
                released_mbufs: Vec::with_capacity(
                    MAX_BURST.min(burst * 2) * t.defrag.max_fragments,
                ),
                staging: Burst::default(),
                linear: Vec::with_capacity(LINEAR_MAX),
            },
            inbox: Burst::default(),
            tsc0: tsc(),
            mult: ((1_000_000_000u128 << 32) / u128::from(ctx.tsc_hz.max(1))) as u64,
            control: Controller::new(t.commands),
            events: t.events,
        }
    }

    #[inline]
    fn forward(&mut self, _: &Stream, burst: &mut Burst) {
        let now = self.clock();
        burst.prefetch_data(burst.len());
        self.core.process(burst, now, Path::Rx);
        if self.core.released.is_empty() {
            self.core.sort_out(burst);
        }
    }

    #[inline]
    fn transmit(&mut self, stream: &Stream, burst: &mut Burst) -> (usize, usize) {
        if self.core.released.is_empty() {
            return burst.tx(stream.tx_port, stream.tx_queue);
        }
        let (port, queue) = (stream.tx_port, stream.tx_queue);
        self.core.emit(burst, |b, _| b.tx(port, queue))
    }

    #[inline]
    fn housekeeping(&mut self) -> usize {
        let now = self.clock();
        let handed_over = self.drain_handoff(now);
        let core = &mut self.core;
        // Timed-out datagrams free their mbufs as they go.
        core.defrag.expire(now);
        core.stages.shard.gc(now, GC_BUDGET);
        // An operator's command: one bounded slice per round.
        self.control.serve(&mut core.stages, now);
        // A full queue loses the event (counted): a worker never waits.
        let mut full = 0;
        let lost = core.stages.shard.drain_events(|e| {
            if self.events.push(e).is_err() {
                full += 1;
            }
        });
        if lost + full > 0 {
            CtCounters::add(&core.stages.counters().events_lost, lost + full);
        }
        let shard = &core.stages.shard;
        let c = core.stages.counters();
        let st = shard.stats();
        CtCounters::set(&c.connections, shard.table().len() as u64);
        CtCounters::set(&c.expected, shard.expectations().len() as u64);
        CtCounters::set(&c.expect_full, shard.expectations().stats().expect_full);
        CtCounters::set(&c.early_drop, st.early_drop);
        CtCounters::set(&c.table_full, st.drop);
        for (counter, v) in c.defrag.iter().zip(core.defrag.stats().values()) {
            CtCounters::set(counter, v);
        }
        let d = &core.defrag;
        for (counter, v) in c
            .frag_held
            .iter()
            .zip([d.held(), d.held_peak(), d.max_held()])
        {
            CtCounters::set(counter, v as u64);
        }
        handed_over
    }
}
