//! Workers: one per forwarding lcore, each polling its own streams in bursts
//! and running every packet to completion. A worker shares nothing with the
//! others on the packet path; its counters are written by it alone and read
//! by the main lcore for stats.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::cpu::tsc;
use super::fwd::ForwardEngine;
use super::mbuf::Burst;
use crate::wire::MacAddr;

/// One RX queue forwarded to one TX queue (testpmd's `fwd_stream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub rx_port: u16,
    pub rx_queue: u16,
    pub tx_port: u16,
    pub tx_queue: u16,
    /// Destination MAC for `mac` mode (`--eth-peer` of the TX port).
    pub peer_mac: MacAddr,
    /// The TX port's own MAC (source in `mac` mode).
    pub tx_mac: MacAddr,
}

/// A stream's counters. Written only by the worker that owns the stream
/// (plain load+store, no locked instruction), read by the stats loop.
#[derive(Default)]
#[repr(align(64))]
pub struct StreamCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub dropped: AtomicU64,
    /// TSC cycles spent on bursts that received packets (testpmd's
    /// `--record-core-cycles` "busy cycles").
    pub busy_cycles: AtomicU64,
    /// TSC cycles the core slept, idle (`--sleep-max`; counted on the
    /// core's first stream).
    pub slept_cycles: AtomicU64,
}

impl StreamCounters {
    #[inline]
    fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// What an engine is built from, on its worker's lcore.
pub struct EngineContext {
    /// The worker's index among the forwarding cores.
    pub worker: u16,
    pub tsc_hz: u64,
    /// Packets taken at a time (`--burst`).
    pub burst: u16,
    /// What the tracking modes need (`None` in io, mac and macswap); the
    /// engine takes it.
    pub tracking: Option<TrackingContext>,
}

/// A tracking worker's share of the run: its tracker's settings and what it
/// shares with the other workers and the main lcore.
pub struct TrackingContext {
    pub conntrack: crate::conntrack::Config,
    pub defrag: crate::conntrack::DefragConfig,
    /// The expectation set every worker's tracker shares.
    pub expectations: Arc<crate::conntrack::Expectations>,
    /// Where the engine publishes its counters for the stats.
    pub ct_counters: Arc<[CtCounters]>,
    /// Where the per-rule NAT counts go (replaced with the rules).
    pub nat_exhausted: Arc<[AtomicU64]>,
    /// The worker's command queue (`control`).
    pub commands: Arc<super::control::CommandQueue>,
    /// Links to the other workers, when there are several.
    pub handoff: Option<super::handoff::HandoffLinks>,
    /// The firewall mode's policy settings.
    pub firewall: FirewallSettings,
    /// Where the tracker's connection events go, and whether they are
    /// asked for from the start (`--ct-events`).
    pub events: Arc<super::forwarding::EventQueue>,
    pub events_on: bool,
}

/// What only `--forward-mode=firewall` reads.
pub struct FirewallSettings {
    /// Ports (bit per port id) where the firewall lets NEW connections in.
    pub inside_ports: u64,
    /// `--rules`, consulted before the default policy.
    pub rules: Arc<crate::rules::RuleSet>,
}

/// A conntrack engine's counters: packets by ctinfo and the table's size.
/// Written by its worker only, read by the stats loop.
#[derive(Default)]
#[repr(align(64))]
pub struct CtCounters {
    /// Indexed as `CtInfo`: NEW, ESTABLISHED, RELATED, ESTABLISHED_REPLY,
    /// RELATED_REPLY, INVALID, UNTRACKED.
    pub ctinfo: [AtomicU64; 7],
    /// Packets a filtering policy dropped, by `DropReason`.
    pub dropped: [AtomicU64; super::policy::DropReason::COUNT],
    /// IP fragments by what became of them (`DefragStats` order).
    pub defrag: [AtomicU64; crate::conntrack::DefragStats::COUNT],
    pub connections: AtomicU64,
    /// The shard's capacity (`--ct-max`).
    pub connections_max: AtomicU64,
    pub expected: AtomicU64,
    /// Expectations the shared set refused, full (shared by all workers).
    pub expect_full: AtomicU64,
    pub early_drop: AtomicU64,
    pub table_full: AtomicU64,
    /// Connection events lost: the worker's queue was full.
    pub events_lost: AtomicU64,
    /// Fragments held for reassembly now, at most so far, and the limit.
    pub frag_held: [AtomicU64; 3],
    /// Packets put on a ring to their owner.
    pub handoff_tx: AtomicU64,
    /// Packets taken from rings (owned here, received elsewhere).
    pub handoff_rx: AtomicU64,
    /// Packets freed because the ring to their owner was full.
    pub handoff_drop: AtomicU64,
    /// Packets taken from rings and transmitted, and refused by TX.
    pub handoff_fwd: AtomicU64,
    pub handoff_fwd_dropped: AtomicU64,
}

impl CtCounters {
    #[inline]
    pub(crate) fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// What one forwarding lcore runs.
pub struct Worker {
    pub(crate) streams: Vec<(Stream, usize)>,
    pub(crate) counters: Arc<[StreamCounters]>,
    pub(crate) burst: u16,
    pub(crate) record_cycles: bool,
    /// `--record-burst-stats`: where this core publishes its figures.
    pub(crate) burst_stats: Option<Arc<super::burst_stats::BurstCounters>>,
    /// Longest idle sleep in microseconds (`--sleep-max`; 0: never sleep).
    pub(crate) sleep_max_us: u32,
    pub(crate) stop: Arc<AtomicBool>,
    /// Forwarding paused (testpmd's `stop`): RX is not polled, commands
    /// and handed-over packets still are.
    pub(crate) pause: Arc<Pause>,
    pub(crate) engine: EngineContext,
    /// The pool, for the `pool-drain` fault.
    #[cfg(feature = "fault-injection")]
    pub(crate) pool: Arc<super::mempool::Mempool>,
}

impl Worker {
    /// The poll loop, monomorphised per engine.
    pub(crate) fn run<E: ForwardEngine>(self) {
        let Worker {
            streams,
            counters,
            burst: max,
            record_cycles,
            burst_stats,
            sleep_max_us,
            stop,
            pause,
            engine: mut ctx,
            #[cfg(feature = "fault-injection")]
            pool,
        } = self;
        let mut engine = E::new(&mut ctx);
        let mut burst = Burst::default();
        #[cfg(feature = "fault-injection")]
        let mut faults = super::fault::Faults::from_env(pool, ctx.tsc_hz);
        let mut idle = IdleSleep::new(sleep_max_us);
        let mut bursts =
            burst_stats.map(|out| super::burst_stats::BurstStats::new(out, ctx.tsc_hz));
        let timed = record_cycles || bursts.is_some();
        let me = usize::from(ctx.worker);
        while !stop.load(Ordering::Relaxed) {
            if pause.requested.load(Ordering::Relaxed) {
                pause.parked[me].store(true, Ordering::Release);
                engine.housekeeping();
                std::thread::sleep(std::time::Duration::from_micros(100));
                continue;
            }
            if pause.parked[me].load(Ordering::Relaxed) {
                pause.parked[me].store(false, Ordering::Relaxed);
            }
            #[cfg(feature = "fault-injection")]
            faults.poll();
            let mut got = 0;
            for (stream, idx) in &streams {
                let start = if timed { tsc() } else { 0 };
                let n = burst.rx(stream.rx_port, stream.rx_queue, max);
                if n == 0 {
                    continue;
                }
                got += n;
                #[cfg(feature = "fault-injection")]
                faults.received(n);
                engine.forward(stream, &mut burst);
                let (sent, dropped) = engine.transmit(stream, &mut burst);
                let c = &counters[*idx];
                StreamCounters::add(&c.rx, n as u64);
                StreamCounters::add(&c.tx, sent as u64);
                if dropped > 0 {
                    StreamCounters::add(&c.dropped, dropped as u64);
                }
                if timed {
                    let cycles = tsc() - start;
                    if record_cycles {
                        StreamCounters::add(&c.busy_cycles, cycles);
                    }
                    if let Some(b) = bursts.as_mut() {
                        b.record(cycles, n);
                    }
                }
            }
            if let Some(b) = bursts.as_mut() {
                b.tick();
            }
            let start = if record_cycles { tsc() } else { 0 };
            let handed = engine.housekeeping();
            if handed > 0 && record_cycles {
                // Packets handed over by other workers: their cycles count
                // as this core's busy time (they were counted as received
                // where they arrived).
                if let Some((_, idx)) = streams.first() {
                    StreamCounters::add(&counters[*idx].busy_cycles, tsc() - start);
                }
            }
            if let Some(slept) = idle.after_poll(got + handed) {
                if let Some((_, idx)) = streams.first() {
                    StreamCounters::add(&counters[*idx].slept_cycles, slept);
                }
            }
        }
        // The final report reads what was published last.
        if let Some(b) = bursts.as_mut() {
            b.publish();
        }
    }
}

/// Pausing forwarding (testpmd's `stop` and `start`): the main lcore sets
/// `requested`; each worker finishes its round and says so in `parked`.
pub struct Pause {
    pub requested: AtomicBool,
    pub parked: Box<[AtomicBool]>,
}

impl Pause {
    pub fn new(workers: usize, paused: bool) -> Pause {
        Pause {
            requested: AtomicBool::new(paused),
            parked: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Asks the workers to pause and waits until each has (or `wait`
    /// passed); whether they all did.
    pub fn pause(&self, wait: std::time::Duration) -> bool {
        self.requested.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + wait;
        while !self.parked.iter().all(|p| p.load(Ordering::Acquire)) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        true
    }

    pub fn resume(&self) {
        self.requested.store(false, Ordering::Relaxed);
    }

    pub fn is_paused(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}

/// Idle sleep, as OVS's `pmd-sleep-max`: a poll that found nothing is
/// followed by a sleep that doubles from 1 microsecond on each empty poll
/// up to the maximum, and the first packet ends it. With a maximum of 0
/// the core polls without pause, as testpmd's do. A sleep is a system
/// call on an idle core, never on the packet path.
struct IdleSleep {
    max_us: u32,
    next_us: u32,
}

impl IdleSleep {
    fn new(max_us: u32) -> IdleSleep {
        IdleSleep { max_us, next_us: 0 }
    }

    /// After a poll that found `got` packets: sleeps if it found none;
    /// returns the TSC cycles slept.
    #[inline]
    fn after_poll(&mut self, got: usize) -> Option<u64> {
        if self.max_us == 0 {
            return None;
        }
        if got > 0 {
            self.next_us = 0;
            return None;
        }
        self.next_us = (self.next_us * 2).clamp(1, self.max_us);
        let t0 = tsc();
        std::thread::sleep(std::time::Duration::from_micros(u64::from(self.next_us)));
        Some(tsc() - t0)
    }
}
