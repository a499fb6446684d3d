//! `--forward-mode=conntrack`: every worker owns a connection-tracker shard
//! and runs each burst through it, netfilter-style: parse and hash every
//! packet and prefetch for the whole burst, then per packet in order look
//! up (ingress) and egress (confirm, helpers);
//! every frame is forwarded unchanged and counted by its ctinfo. Expiry
//! runs in the poll loop with a bounded budget.
//!
//! All workers share one expectation set, so a RELATED connection is
//! recognised on whichever worker its first packet reaches. Connections are
//! not yet handed to an owner worker: with several workers, a flow whose
//! two directions arrive on different workers is tracked twice, once per
//! direction (RSS sharding and handoff come with the firewall mode).

use std::sync::Arc;

use arrayvec::ArrayVec;

use super::cpu::{advise_huge_pages, prefetch, tsc};
use super::fwd::ForwardEngine;
use super::mbuf::Burst;
use super::worker::{CtCounters, EngineContext, Stream};
use crate::conntrack::{Classified, CtInfo, Shard};
use crate::wire::{parse_frame, Frame, LinkType};

/// Packets classified at a time (bursts larger than this are cut).
const CHUNK: usize = 64;
/// Table slots the expiry walk looks at per poll.
const GC_BUDGET: usize = 32;

/// The per-worker conntrack engine.
pub struct Conntrack {
    shard: Shard,
    counters: Arc<[CtCounters]>,
    worker: usize,
    /// TSC to nanoseconds: ns = (tsc - tsc0) * mult >> 32.
    tsc0: u64,
    mult: u64,
    now: u64,
}

impl Conntrack {
    #[inline]
    fn clock(&mut self) -> u64 {
        self.now = (((tsc() - self.tsc0) as u128 * self.mult as u128) >> 32) as u64;
        self.now
    }

    /// Tracks up to CHUNK frames: classify all, then the burst lookup with
    /// prefetches, then egress for each.
    fn track(&mut self, frames: &[(&[u8], usize)], now: u64) {
        let c = &self.counters[self.worker];
        let mut classified: ArrayVec<Classified<'_>, CHUNK> = ArrayVec::new();
        for &(data, wire_len) in frames {
            match parse_frame(LinkType::Ethernet, data, wire_len) {
                Ok(Frame::Ip(ip)) => classified.push(self.shard.classify(ip, 0)),
                Ok(Frame::NotIp(_)) => {
                    self.shard.ignore();
                    CtCounters::add(&c.ctinfo[CtInfo::Untracked as usize], 1);
                }
                Err(_) => {
                    self.shard.malformed();
                    CtCounters::add(&c.ctinfo[CtInfo::Invalid as usize], 1);
                }
            }
        }
        self.shard.prefetch_burst(&classified, prefetch);
        let mut by_ctinfo = [0u64; 7];
        for cl in &classified {
            let mut v = self.shard.ingress(cl, now);
            // Conntrack mode forwards everything: a refused confirm (a TCP
            // clash) only means this packet's connection is the other one.
            let _ = self.shard.egress(&mut v, cl, now);
            by_ctinfo[v.ctinfo as usize] += 1;
        }
        for (counter, n) in c.ctinfo.iter().zip(by_ctinfo) {
            if n > 0 {
                CtCounters::add(counter, n);
            }
        }
        self.shard.reap_unconfirmed();
    }
}

impl ForwardEngine for Conntrack {
    fn new(ctx: &EngineContext) -> Self {
        let mut cfg = ctx.conntrack;
        cfg.advise_memory = Some(advise_huge_pages);
        Conntrack {
            shard: Shard::with_expectations(cfg, ctx.worker, Arc::clone(&ctx.expectations)),
            counters: Arc::clone(&ctx.ct_counters),
            worker: ctx.worker as usize,
            tsc0: tsc(),
            mult: ((1_000_000_000u128 << 32) / u128::from(ctx.tsc_hz.max(1))) as u64,
            now: 0,
        }
    }

    #[inline]
    fn forward(&mut self, _: &Stream, burst: &mut Burst) {
        let now = self.clock();
        burst.prefetch_data(burst.len());
        let mut frames: ArrayVec<(&[u8], usize), CHUNK> = ArrayVec::new();
        for p in burst.packets() {
            frames.push(p);
            if frames.is_full() {
                self.track(&frames, now);
                frames.clear();
            }
        }
        self.track(&frames, now);
    }

    #[inline]
    fn housekeeping(&mut self) {
        let now = self.clock();
        self.shard.gc(now, GC_BUDGET);
        let c = &self.counters[self.worker];
        let st = self.shard.stats();
        CtCounters::set(&c.connections, self.shard.table().len() as u64);
        CtCounters::set(&c.expected, self.shard.expectations().len() as u64);
        CtCounters::set(&c.early_drop, st.early_drop);
        CtCounters::set(&c.table_full, st.drop);
    }
}
