//! Setting up a forwarding run the way testpmd does: ports from the portmask,
//! streams from queues and topology, streams spread over the forwarding
//! lcores, one mbuf pool; then launching the workers, reading their counters
//! and tearing everything down in the order that leaves no mbuf behind.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::control::{CommandQueue, Control};
use super::eal::{Eal, Launched};
use super::fwd::ForwardMode;
use super::handoff::HandoffLinks;
use super::mbuf::MAX_BURST;
use super::mempool::Mempool;
use super::port::{available_ports, Port, PortConfig, PortInfo, PortStats};
pub use super::sharding::Sharding;
use super::sharding::{handoff_links, HANDOFF_RING_SIZE};
use super::worker::{
    CtCounters, EngineContext, FirewallSettings, Pause, Stream, StreamCounters, TrackingContext,
    Worker,
};
use super::Error;
use crate::wire::MacAddr;

/// testpmd's `--port-topology`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Ports 0<->1, 2<->3, ...; an odd last port forwards to itself.
    Paired,
    /// Port i sends to port i+1, the last to the first.
    Chained,
    /// Every port sends back out of itself.
    Loop,
}

impl Topology {
    /// Index (among the forwarding ports) of the port that RX index `rxp` sends to.
    fn tx_index(self, rxp: usize, nb_ports: usize) -> usize {
        match self {
            Topology::Paired if rxp % 2 == 0 && rxp + 1 < nb_ports => rxp + 1,
            Topology::Paired if rxp % 2 == 0 => rxp,
            Topology::Paired => rxp - 1,
            Topology::Chained => (rxp + 1) % nb_ports,
            Topology::Loop => rxp,
        }
    }
}

/// Where a stream reads and writes, before MACs are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSlot {
    pub rx_port: u16,
    pub rx_queue: u16,
    pub tx_port: u16,
    pub tx_queue: u16,
}

/// testpmd's stream layout (`rss_fwd_config_setup` and
/// `setup_fwd_config_of_each_lcore`): streams ordered queue-major, port-minor,
/// queue q of a port sending on queue q of its peer; then cut into
/// contiguous runs, one per core, the last cores taking one extra when the
/// count does not divide. Returns the streams and each core's range; there
/// are never more cores than streams.
pub fn assign_streams(
    ports: &[u16],
    queues: u16,
    topology: Topology,
    nb_cores: usize,
) -> (Vec<StreamSlot>, Vec<Range<usize>>) {
    let mut streams = Vec::with_capacity(ports.len() * queues as usize);
    for q in 0..queues {
        for rxp in 0..ports.len() {
            streams.push(StreamSlot {
                rx_port: ports[rxp],
                rx_queue: q,
                tx_port: ports[topology.tx_index(rxp, ports.len())],
                tx_queue: q,
            });
        }
    }
    let cores = nb_cores.min(streams.len());
    let mut ranges = Vec::with_capacity(cores);
    if let Some(per_core) = streams.len().checked_div(cores) {
        let extra = streams.len() % cores;
        let mut start = 0;
        for core in 0..cores {
            let n = per_core + usize::from(core >= cores - extra);
            ranges.push(start..start + n);
            start += n;
        }
    }
    (streams, ranges)
}

/// Everything a forwarding run is set up from (the application flags).
#[derive(Clone)]
pub struct FwdConfig {
    pub portmask: Option<u64>,
    pub nb_cores: usize,
    pub port: PortConfig,
    pub burst: u16,
    pub total_mbufs: Option<u32>,
    pub mbcache: u32,
    pub mode: &'static ForwardMode,
    pub topology: Topology,
    pub eth_peers: Vec<(u16, MacAddr)>,
    pub record_core_cycles: bool,
    /// `--record-burst-stats`: a histogram of cycles per burst per core.
    pub record_burst_stats: bool,
    /// Longest idle sleep of a forwarding core, in microseconds (0: none).
    pub sleep_max_us: u32,
    /// Whether the trackers report connection events (`--ct-events`).
    pub ct_events: bool,
    /// The tracker of each worker (conntrack mode); `max` is per worker.
    pub conntrack: crate::conntrack::Config,
    /// Each tracking worker's IP reassembly (`--frag-max`, `--frag-timeout`).
    pub defrag: crate::conntrack::DefragConfig,
    /// Ports where the firewall accepts NEW connections; default: the
    /// first port of each forwarding pair (even positions in the port list).
    pub inside_ports: Option<Vec<u16>>,
    /// `--rules`, consulted by the firewall before its default policy.
    pub rules: Arc<crate::rules::RuleSet>,
    /// Launch the workers paused (testpmd's `-i` without `--auto-start`):
    /// forwarding begins at `start`.
    pub start_paused: bool,
}

/// A forwarding lcore and the streams it polls.
#[derive(Debug, Clone)]
pub struct CoreAssignment {
    pub lcore: u32,
    pub streams: Range<usize>,
}

/// A running forwarder. It borrows the EAL, so the EAL cannot be cleaned
/// up while ports are open and workers run:
/// ```compile_fail,E0505
/// use ctfwd::dataplane::{Eal, Forwarding, FwdConfig};
/// fn run(eal: Eal, cfg: &FwdConfig) {
///     let fwd = Forwarding::start(&eal, cfg).unwrap();
///     drop(eal);
///     drop(fwd);
/// }
/// ```
pub struct Forwarding<'eal> {
    jobs: Vec<Launched<'eal, ()>>,
    stop: Arc<AtomicBool>,
    pub(super) counters: Arc<[StreamCounters]>,
    pub(super) ct_counters: Arc<[CtCounters]>,
    /// The tracking workers' command queues.
    pub(super) control: Control,
    pub(super) pause: Arc<Pause>,
    /// Per core, with `--record-burst-stats`.
    burst_stats: Vec<Arc<super::burst_stats::BurstCounters>>,
    streams: Vec<Stream>,
    cores: Vec<CoreAssignment>,
    ports: Vec<Port<'eal>>,
    /// Shared with the ports and (in fault-injection builds) the workers,
    /// all of which are gone before the EAL: the ports by their lifetime,
    /// the workers because `Eal` waits for every lcore before cleaning up.
    pool: Arc<Mempool>,
    tsc_hz: u64,
    started: Instant,
    conntrack_mode: bool,
    sharding: Option<Sharding>,
    /// The rules in force, for naming NAT rules in the stats, with each
    /// worker's per-rule counts (both replaced by `rules reload`).
    pub(super) rules: std::sync::Mutex<ActiveRules>,
    /// Each worker's connection events (`--ct-events`), for the main loop.
    events: Vec<Arc<EventQueue>>,
}

/// A worker's connection events on their way to the main lcore: a bounded
/// lock-free queue (crossbeam's), which the worker never waits on.
pub type EventQueue = crossbeam_queue::ArrayQueue<crate::conntrack::CtEvent>;

/// Events a worker's queue holds (each about 200 bytes).
const EVENT_QUEUE: usize = 16_384;

impl<'eal> Forwarding<'eal> {
    /// Sets up ports, pool and streams, then launches the workers, in the
    /// steps testpmd takes: ports, lcores, streams, queues, pool, port
    /// start, sharding, workers.
    pub fn start(eal: &'eal Eal, cfg: &FwdConfig) -> Result<Forwarding<'eal>, Error> {
        let port_ids = select_ports(eal, cfg.portmask)?;
        let workers = worker_lcores(eal, cfg)?;
        let tracking = cfg.mode.tracks();
        let queues = if tracking {
            cfg.port.rx_queues
        } else {
            cfg.port.rx_queues.min(cfg.port.tx_queues)
        };
        let (slots, ranges) = assign_streams(&port_ids, queues, cfg.topology, cfg.nb_cores);
        let mut port_cfg = cfg.port.clone();
        if tracking {
            // A tracking worker transmits every packet it owns, whichever
            // port it arrived on, so it needs a TX queue of its own on every
            // port, as in l3fwd: queue w belongs to worker w.
            port_cfg.tx_queues = port_cfg.tx_queues.max(ranges.len() as u16);
        }
        let infos = query_ports(eal, &port_ids, &port_cfg, cfg)?;
        let streams = make_streams(&slots, &ranges, &infos, cfg);
        let handoff_workers = if tracking && ranges.len() > 1 {
            ranges.len()
        } else {
            0
        };
        let socket = infos.first().map_or(0, |i| i.socket.max(0));
        let pool = create_pool(
            eal,
            cfg,
            &port_cfg,
            port_ids.len(),
            workers.len() + 1,
            handoff_workers,
            socket,
        )?;
        let ports = infos
            .into_iter()
            .map(|info| Port::start(eal, info, &port_cfg, Arc::clone(&pool)))
            .collect::<Result<Vec<_>, _>>()?;
        let (handoff, sharding) = if handoff_workers > 0 {
            let (links, sharding) = handoff_links(&ports, &slots, &ranges, socket)?;
            (links, Some(sharding))
        } else {
            (Vec::new(), None)
        };
        let shared = Shared::new(cfg, &port_ids, ranges.len(), pool.size())?;
        let cores: Vec<CoreAssignment> = ranges
            .into_iter()
            .zip(&workers)
            .map(|(streams, &lcore)| CoreAssignment { lcore, streams })
            .collect();
        let mut fwd = Forwarding {
            jobs: Vec::with_capacity(cores.len()),
            stop: Arc::new(AtomicBool::new(false)),
            counters: (0..streams.len())
                .map(|_| StreamCounters::default())
                .collect(),
            ct_counters: Arc::clone(&shared.ct_counters),
            control: Control::new(if tracking {
                shared.commands.clone()
            } else {
                Vec::new()
            }),
            pause: Arc::new(Pause::new(cores.len(), cfg.start_paused)),
            burst_stats: if cfg.record_burst_stats {
                cores.iter().map(|_| Arc::default()).collect()
            } else {
                Vec::new()
            },
            streams,
            cores,
            ports,
            pool,
            tsc_hz: eal.tsc_hz(),
            started: Instant::now(),
            conntrack_mode: tracking,
            sharding,
            rules: std::sync::Mutex::new(ActiveRules {
                rules: Arc::clone(&cfg.rules),
                nat_exhausted: shared.nat_exhausted.clone(),
            }),
            events: shared.events.clone(),
        };
        fwd.launch_workers(eal, cfg, &shared, handoff)?;
        super::telemetry::publish(&fwd);
        Ok(fwd)
    }

    /// Launches one worker per core; on failure, dropping `self` stops the
    /// workers already launched.
    fn launch_workers(
        &mut self,
        eal: &'eal Eal,
        cfg: &FwdConfig,
        shared: &Shared,
        mut handoff: Vec<Option<HandoffLinks>>,
    ) -> Result<(), Error> {
        for (index, core) in self.cores.clone().into_iter().enumerate() {
            let worker = Worker {
                streams: core
                    .streams
                    .clone()
                    .map(|i| (self.streams[i].clone(), i))
                    .collect(),
                counters: Arc::clone(&self.counters),
                burst: cfg.burst,
                record_cycles: cfg.record_core_cycles,
                burst_stats: self.burst_stats.get(index).cloned(),
                sleep_max_us: cfg.sleep_max_us,
                stop: Arc::clone(&self.stop),
                pause: Arc::clone(&self.pause),
                engine: EngineContext {
                    worker: index as u16,
                    tsc_hz: self.tsc_hz,
                    burst: cfg.burst,
                    tracking: self.conntrack_mode.then(|| {
                        shared.tracking_context(
                            cfg,
                            index,
                            handoff.get_mut(index).and_then(Option::take),
                        )
                    }),
                },
                #[cfg(feature = "fault-injection")]
                pool: Arc::clone(&self.pool),
            };
            let run = cfg.mode.run;
            self.jobs.push(eal.launch(core.lcore, move || run(worker))?);
        }
        Ok(())
    }

    pub fn ports(&self) -> impl Iterator<Item = &Port<'eal>> {
        self.ports.iter()
    }

    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    pub fn cores(&self) -> &[CoreAssignment] {
        &self.cores
    }

    pub fn pool_size(&self) -> u32 {
        self.pool.size()
    }

    /// How connections are spread over several tracking workers (`None`
    /// with one worker or a mode that does not track).
    pub fn sharding(&self) -> Option<Sharding> {
        self.sharding
    }

    /// Whether the mode runs the connection tracker.
    pub fn conntrack_mode(&self) -> bool {
        self.conntrack_mode
    }

    /// Packets received by all workers so far (cheap: no device counters).
    pub fn rx_packets(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.rx.load(Ordering::Relaxed))
            .sum()
    }

    /// Each worker's connection events, when `--ct-events` asked for them.
    pub fn event_queues(&self) -> Vec<Arc<EventQueue>> {
        self.events.clone()
    }

    /// The TSC's frequency.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    /// Reads every counter now.
    pub fn snapshot(&self) -> Snapshot {
        let streams: Vec<StreamSnapshot> = self
            .counters
            .iter()
            .map(|c| StreamSnapshot {
                rx: c.rx.load(Ordering::Relaxed),
                tx: c.tx.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                busy_cycles: c.busy_cycles.load(Ordering::Relaxed),
                slept_cycles: c.slept_cycles.load(Ordering::Relaxed),
            })
            .collect();
        let ports = self
            .ports
            .iter()
            .map(|p| PortSnapshot {
                id: p.id(),
                stats: p.stats(),
                tx_dropped: self
                    .streams
                    .iter()
                    .zip(&streams)
                    .filter(|(s, _)| s.tx_port == p.id())
                    .map(|(_, c)| c.dropped)
                    .sum(),
            })
            .collect();
        let conntrack = self
            .ct_counters
            .iter()
            .map(|c| CtSnapshot {
                ctinfo: std::array::from_fn(|i| c.ctinfo[i].load(Ordering::Relaxed)),
                connections: c.connections.load(Ordering::Relaxed),
                connections_max: c.connections_max.load(Ordering::Relaxed),
                expected: c.expected.load(Ordering::Relaxed),
                expect_full: c.expect_full.load(Ordering::Relaxed),
                events_lost: c.events_lost.load(Ordering::Relaxed),
                frag_held: std::array::from_fn(|i| c.frag_held[i].load(Ordering::Relaxed)),
                early_drop: c.early_drop.load(Ordering::Relaxed),
                table_full: c.table_full.load(Ordering::Relaxed),
                handoff: [
                    &c.handoff_tx,
                    &c.handoff_rx,
                    &c.handoff_drop,
                    &c.handoff_fwd,
                    &c.handoff_fwd_dropped,
                ]
                .map(|a| a.load(Ordering::Relaxed)),
                dropped: std::array::from_fn(|i| c.dropped[i].load(Ordering::Relaxed)),
                defrag: std::array::from_fn(|i| c.defrag[i].load(Ordering::Relaxed)),
            })
            .collect();
        let nat_exhausted = {
            let active = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            let r = &active.rules;
            (0..r.len())
                .filter(|&i| r.is_nat(i))
                .map(|i| {
                    let n = active
                        .nat_exhausted
                        .iter()
                        .map(|c| c[i].load(Ordering::Relaxed))
                        .sum();
                    (r.line(i), n)
                })
                .collect()
        };
        Snapshot {
            at: Instant::now(),
            ports,
            streams,
            conntrack,
            nat_exhausted,
            bursts: self.burst_stats.iter().map(|b| b.snapshot()).collect(),
        }
    }

    /// Stops the workers, reads the last counters, stops and closes the
    /// ports (returning their ring mbufs), and counts what is still out of
    /// the pool: anything but 0 is a leak.
    pub fn stop(mut self) -> FinalReport {
        super::telemetry::withdraw();
        let worker_failures = self.join_workers();
        let last = self.snapshot();
        self.ports.clear();
        FinalReport {
            last,
            mbufs_in_use: self.pool.in_use(),
            pool_size: self.pool.size(),
            worker_failures,
            streams: std::mem::take(&mut self.streams),
            cores: std::mem::take(&mut self.cores),
            tsc_hz: self.tsc_hz,
            started: self.started,
            conntrack_mode: self.conntrack_mode,
        }
    }

    /// A worker that ended while it should be forwarding (a worker only
    /// returns when told to stop): which lcore, and why.
    pub fn failed_worker(&self) -> Option<String> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.jobs.iter().find_map(|j| match j.ended()? {
            Err(panic) => Some(format!("{panic} (panicked)")),
            Ok(()) => Some("a worker returned before it was told to stop".to_string()),
        })
    }

    fn join_workers(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs.drain(..).filter_map(|j| j.wait().err()).collect()
    }
}

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        super::telemetry::withdraw();
        // Workers poll the ports; they must be gone before the ports close.
        self.join_workers();
    }
}

/// Counters of one port at one instant.
#[derive(Debug, Clone, Copy)]
pub struct PortSnapshot {
    pub id: u16,
    pub stats: PortStats,
    /// Packets the TX queues of this port refused (freed by the workers).
    pub tx_dropped: u64,
}

/// Counters of one stream at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamSnapshot {
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    pub busy_cycles: u64,
    pub slept_cycles: u64,
}

/// A worker's conntrack counters at one instant (all zero in other modes).
#[derive(Debug, Clone, Copy, Default)]
pub struct CtSnapshot {
    /// Packets by ctinfo, in `CtInfo` order.
    pub ctinfo: [u64; 7],
    pub connections: u64,
    pub connections_max: u64,
    /// Expectations pending (shared by all workers).
    pub expected: u64,
    /// Expectations refused because the set was full (shared).
    pub expect_full: u64,
    /// Connection events lost to a full queue (`--ct-events`).
    pub events_lost: u64,
    pub early_drop: u64,
    /// New connections refused because the table was full.
    pub table_full: u64,
    /// Packets dropped by the policy, by reason (`DROP_REASONS`).
    pub dropped: [u64; super::policy::DropReason::COUNT],
    /// IP fragments by outcome, in `DefragStats::NAMES` order.
    pub defrag: [u64; crate::conntrack::DefragStats::COUNT],
    /// Fragments held now, the most held at once, and the limit.
    pub frag_held: [u64; 3],
    /// Handoff counters, in `HANDOFF_COUNTERS` order.
    pub handoff: [u64; 5],
}

/// Names of the handoff counters, in `CtSnapshot::handoff` order: packets
/// put on a ring to their owner, taken from rings, freed because a ring was
/// full, and of those taken, transmitted and refused by the TX queue.
pub const HANDOFF_COUNTERS: [&str; 5] = [
    "handoff_tx",
    "handoff_rx",
    "handoff_drop",
    "handoff_fwd",
    "handoff_fwd_dropped",
];

/// Names of the firewall's drop reasons, in `CtSnapshot::dropped` order.
pub const DROP_REASONS: [&str; super::policy::DropReason::COUNT] = super::policy::DropReason::NAMES;

/// All counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub ports: Vec<PortSnapshot>,
    pub streams: Vec<StreamSnapshot>,
    /// One per forwarding core.
    pub conntrack: Vec<CtSnapshot>,
    /// Per NAT rule (by its line in the rules file), new connections it
    /// could not map, all cores together.
    pub nat_exhausted: Vec<(usize, u64)>,
    /// Per core, with `--record-burst-stats`.
    pub bursts: Vec<super::BurstSnapshot>,
}

/// What is known once forwarding has stopped.
#[derive(Debug)]
pub struct FinalReport {
    pub last: Snapshot,
    /// Mbufs not back in the pool after every queue was released.
    pub mbufs_in_use: u32,
    pub pool_size: u32,
    /// Panic messages of workers that died.
    pub worker_failures: Vec<String>,
    pub streams: Vec<Stream>,
    pub cores: Vec<CoreAssignment>,
    pub tsc_hz: u64,
    /// When the workers were launched.
    pub started: Instant,
    pub conntrack_mode: bool,
}

/// The EAL's worker lcores, if there are enough for `--nb-cores`.
fn worker_lcores(eal: &Eal, cfg: &FwdConfig) -> Result<Vec<u32>, Error> {
    let workers = eal.worker_lcores();
    if workers.is_empty() {
        return Err(Error::msg(
            "no forwarding lcore: give EAL at least two lcores (for example -l 0-1); \
             the main lcore only prints stats",
        ));
    }
    if cfg.nb_cores > workers.len() {
        return Err(Error::msg(format!(
            "--nb-cores={} but EAL has only {} worker lcore(s) (add lcores with -l or --lcores)",
            cfg.nb_cores,
            workers.len()
        )));
    }
    Ok(workers)
}

/// What each port is, checked against the queues it must have.
fn query_ports(
    eal: &Eal,
    port_ids: &[u16],
    port_cfg: &PortConfig,
    cfg: &FwdConfig,
) -> Result<Vec<PortInfo>, Error> {
    let infos = port_ids
        .iter()
        .map(|&p| PortInfo::query(eal, p))
        .collect::<Result<Vec<_>, _>>()?;
    for info in &infos {
        info.check_queues(port_cfg).map_err(|e| {
            if cfg.mode.tracks() && info.max_tx_queues < port_cfg.tx_queues {
                Error::msg(format!(
                    "{e}: {} mode needs one TX queue per forwarding core on every port \
                     (give the port more TX queues, or use fewer cores)",
                    cfg.mode.name
                ))
            } else {
                e
            }
        })?;
    }
    Ok(infos)
}

/// The streams with their MACs; a tracking worker sends on its own TX
/// queue (its index) of every port.
fn make_streams(
    slots: &[StreamSlot],
    ranges: &[Range<usize>],
    infos: &[PortInfo],
    cfg: &FwdConfig,
) -> Vec<Stream> {
    let core_of = |stream: usize| ranges.iter().position(|r| r.contains(&stream)).unwrap_or(0);
    slots
        .iter()
        .enumerate()
        .map(|(i, s)| Stream {
            rx_port: s.rx_port,
            rx_queue: s.rx_queue,
            tx_port: s.tx_port,
            tx_queue: if cfg.mode.tracks() {
                core_of(i) as u16
            } else {
                s.tx_queue
            },
            peer_mac: peer_mac(&cfg.eth_peers, s.tx_port),
            tx_mac: infos
                .iter()
                .find(|i| i.id == s.tx_port)
                .map(|i| i.mac)
                .unwrap_or_default(),
        })
        .collect()
}

/// The mbuf pool: `--total-num-mbufs`, or enough for every ring, cache
/// and handoff ring.
fn create_pool(
    eal: &Eal,
    cfg: &FwdConfig,
    port_cfg: &PortConfig,
    nb_ports: usize,
    nb_lcores: usize,
    handoff_workers: usize,
    socket: i32,
) -> Result<Arc<Mempool>, Error> {
    let size = cfg.total_mbufs.unwrap_or_else(|| {
        default_pool_size(port_cfg, cfg.mbcache, nb_ports, nb_lcores)
            + (handoff_workers * handoff_workers.saturating_sub(1)) as u32 * HANDOFF_RING_SIZE
    });
    Ok(Arc::new(Mempool::new(
        eal,
        &format!("mb_pool_{socket}"),
        size,
        cfg.mbcache,
        port_cfg.mbuf_size,
        socket,
    )?))
}

/// The rules in force and each worker's per-rule NAT counts.
pub(super) struct ActiveRules {
    pub rules: Arc<crate::rules::RuleSet>,
    pub nat_exhausted: Vec<Arc<[AtomicU64]>>,
}

/// One worker's per-rule counters for `rules`.
pub(super) fn rule_counters(rules: &crate::rules::RuleSet) -> Arc<[AtomicU64]> {
    (0..rules.len()).map(|_| AtomicU64::new(0)).collect()
}

/// What the tracking workers share with each other and the main lcore.
struct Shared {
    /// One expectation set for all workers' trackers.
    expectations: Arc<crate::conntrack::Expectations>,
    ct_counters: Arc<[CtCounters]>,
    /// Per worker: its command queue, and where its per-rule NAT counts go.
    commands: Vec<Arc<CommandQueue>>,
    nat_exhausted: Vec<Arc<[AtomicU64]>>,
    inside_ports: u64,
    defrag: crate::conntrack::DefragConfig,
    /// Per worker, when events are asked for.
    events: Vec<Arc<EventQueue>>,
}

impl Shared {
    fn new(
        cfg: &FwdConfig,
        port_ids: &[u16],
        cores: usize,
        pool_size: u32,
    ) -> Result<Shared, Error> {
        Ok(Shared {
            expectations: Arc::new(crate::conntrack::Expectations::new(
                cfg.conntrack.expect_max,
            )),
            ct_counters: (0..cores).map(|_| CtCounters::default()).collect(),
            commands: (0..cores).map(|_| Arc::new(CommandQueue::new())).collect(),
            nat_exhausted: (0..cores).map(|_| rule_counters(&cfg.rules)).collect(),
            inside_ports: inside_mask(cfg.inside_ports.as_deref(), port_ids)?,
            // Made for every run, so `ct events on` can start them later.
            events: (0..cores)
                .map(|_| Arc::new(EventQueue::new(EVENT_QUEUE)))
                .collect(),
            defrag: crate::conntrack::DefragConfig {
                max_held: held_fragments_max(&cfg.defrag, pool_size, cores),
                ..cfg.defrag
            },
        })
    }

    /// One tracking worker's context.
    fn tracking_context(
        &self,
        cfg: &FwdConfig,
        worker: usize,
        handoff: Option<HandoffLinks>,
    ) -> TrackingContext {
        TrackingContext {
            events: Arc::clone(&self.events[worker]),
            events_on: cfg.ct_events,
            conntrack: cfg.conntrack,
            defrag: self.defrag,
            expectations: Arc::clone(&self.expectations),
            ct_counters: Arc::clone(&self.ct_counters),
            nat_exhausted: Arc::clone(&self.nat_exhausted[worker]),
            commands: Arc::clone(&self.commands[worker]),
            handoff,
            firewall: FirewallSettings {
                inside_ports: self.inside_ports,
                rules: Arc::clone(&cfg.rules),
            },
        }
    }
}

fn select_ports(eal: &Eal, portmask: Option<u64>) -> Result<Vec<u16>, Error> {
    let available = available_ports(eal);
    if available.is_empty() {
        return Err(Error::msg(
            "no Ethernet ports: add virtual devices (--vdev=net_null0) or bind a NIC to a DPDK driver",
        ));
    }
    let Some(mask) = portmask else {
        return Ok(available);
    };
    let wanted: Vec<u16> = (0..64u16).filter(|b| mask & (1 << b) != 0).collect();
    if let Some(missing) = wanted.iter().find(|p| !available.contains(p)) {
        let list: Vec<String> = available.iter().map(u16::to_string).collect();
        return Err(Error::msg(format!(
            "--portmask=0x{mask:x} names port {missing}, which does not exist (ports: {})",
            list.join(",")
        )));
    }
    Ok(wanted)
}

/// The inside ports as a bit mask; each must be a forwarding port.
fn inside_mask(inside: Option<&[u16]>, ports: &[u16]) -> Result<u64, Error> {
    let default: Vec<u16> = ports.iter().step_by(2).copied().collect();
    let mut mask = 0u64;
    for &p in inside.unwrap_or(&default) {
        if !ports.contains(&p) || p >= 64 {
            return Err(Error::msg(format!(
                "--inside-ports names port {p}, which is not a forwarding port"
            )));
        }
        mask |= 1 << p;
    }
    Ok(mask)
}

/// testpmd's default peer address for a port: 02:00:00:00:00:<port>.
fn peer_mac(peers: &[(u16, MacAddr)], port: u16) -> MacAddr {
    peers
        .iter()
        .rev()
        .find(|(p, _)| *p == port)
        .map(|(_, m)| *m)
        .unwrap_or(MacAddr([2, 0, 0, 0, 0, port as u8]))
}

/// Enough mbufs to fill every descriptor ring, every lcore's cache (which
/// can hold 1.5x its nominal size) and one burst in flight per lcore, with
/// some slack.
fn default_pool_size(port: &PortConfig, mbcache: u32, nb_ports: usize, nb_lcores: usize) -> u32 {
    let rings = nb_ports
        * (port.rx_desc as usize * port.rx_queues as usize
            + port.tx_desc as usize * port.tx_queues as usize);
    let caches = nb_lcores * (mbcache as usize * 3 / 2 + MAX_BURST);
    (rings + caches + 1024) as u32
}

/// Fragments one worker may hold: what `--frag-max` allows, but never
/// more than a quarter of the pool over all workers, so that a fragment
/// flood cannot starve the RX rings of mbufs.
fn held_fragments_max(
    cfg: &crate::conntrack::DefragConfig,
    pool_size: u32,
    workers: usize,
) -> usize {
    let share = pool_size as usize / 4 / workers.max(1);
    (cfg.max_datagrams * cfg.max_fragments).min(share).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(rx_port: u16, rx_queue: u16, tx_port: u16) -> StreamSlot {
        StreamSlot {
            rx_port,
            rx_queue,
            tx_port,
            tx_queue: rx_queue,
        }
    }

    #[test]
    fn paired_two_ports_one_queue() {
        let (s, r) = assign_streams(&[0, 1], 1, Topology::Paired, 1);
        assert_eq!(s, vec![slot(0, 0, 1), slot(1, 0, 0)]);
        assert_eq!(r, vec![0..2]);
    }

    #[test]
    fn queue_major_order_and_extra_streams_on_last_cores() {
        // testpmd with 2 ports, --rxq=2 --txq=2 --nb-cores=3: 4 streams,
        // cores take 1, 1, 2.
        let (s, r) = assign_streams(&[0, 1], 2, Topology::Paired, 3);
        assert_eq!(
            s,
            vec![slot(0, 0, 1), slot(1, 0, 0), slot(0, 1, 1), slot(1, 1, 0)]
        );
        assert_eq!(r, vec![0..1, 1..2, 2..4]);
    }

    #[test]
    fn never_more_cores_than_streams() {
        let (s, r) = assign_streams(&[0, 1], 1, Topology::Paired, 4);
        assert_eq!(s.len(), 2);
        assert_eq!(r, vec![0..1, 1..2]);
    }

    #[test]
    fn topologies() {
        let tx = |t: Topology, n: usize| (0..n).map(|p| t.tx_index(p, n)).collect::<Vec<_>>();
        assert_eq!(tx(Topology::Paired, 4), vec![1, 0, 3, 2]);
        assert_eq!(tx(Topology::Paired, 3), vec![1, 0, 2]);
        assert_eq!(tx(Topology::Chained, 3), vec![1, 2, 0]);
        assert_eq!(tx(Topology::Loop, 2), vec![0, 1]);
        let (s, _) = assign_streams(&[3, 5], 1, Topology::Paired, 1);
        assert_eq!(s, vec![slot(3, 0, 5), slot(5, 0, 3)]);
    }

    #[test]
    fn peer_default_and_override() {
        assert_eq!(peer_mac(&[], 1), MacAddr([2, 0, 0, 0, 0, 1]));
        let m = MacAddr([0xaa; 6]);
        assert_eq!(peer_mac(&[(1, m)], 1), m);
        assert_eq!(peer_mac(&[(1, m)], 0), MacAddr([2, 0, 0, 0, 0, 0]));
    }
}
