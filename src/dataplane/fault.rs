//! Faults injected on purpose, for tests (the cargo feature
//! `fault-injection`, off by default, so release builds carry none of
//! this), chosen by `CTFWD_FAULT`:
//! - `worker-panic:N`: every worker panics once it has received N
//!   packets, with the burst it holds still in hand;
//! - `tx-refuse`: every TX queue refuses every packet, as a full ring does;
//! - `pool-drain:MS`: every worker, as it starts, takes every mbuf it can
//!   get from the pool and holds them for MS milliseconds, so the PMDs'
//!   RX refills fail as they do when mbufs are stuck elsewhere (a slow TX
//!   ring, a leak);
//! - `handoff-stall`: no worker drains its handoff rings, so they fill and
//!   every later handoff is refused, as when the owner is overloaded.

use std::sync::{Arc, OnceLock};

use super::cpu::tsc;
use super::mbuf::HeldMbuf;
use super::mempool::Mempool;

fn spec() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| std::env::var("CTFWD_FAULT").unwrap_or_default())
}

/// Whether TX queues refuse everything.
#[inline]
pub(crate) fn tx_refuses() -> bool {
    spec() == "tx-refuse"
}

/// Whether handoff rings are never drained.
#[inline]
pub(crate) fn handoff_stalled() -> bool {
    spec() == "handoff-stall"
}

/// One worker's injected faults.
pub(crate) struct Faults {
    panic_after: Option<u64>,
    received: u64,
    /// `pool-drain`: the pool, and for how many TSC cycles to hold it.
    drain: Option<(Arc<Mempool>, u64)>,
    /// The mbufs held, and the TSC at which they go back.
    held: Vec<HeldMbuf>,
    release_at: u64,
}

impl Faults {
    pub(crate) fn from_env(pool: Arc<Mempool>, tsc_hz: u64) -> Faults {
        let number = |prefix| spec().strip_prefix(prefix).and_then(|n| n.parse().ok());
        Faults {
            panic_after: number("worker-panic:"),
            received: 0,
            drain: number("pool-drain:").map(|ms: u64| (pool, ms * tsc_hz / 1000)),
            held: Vec::new(),
            release_at: 0,
        }
    }

    /// Called once per poll round: drains the pool on the first, gives the
    /// mbufs back when their time is up.
    #[inline]
    pub(crate) fn poll(&mut self) {
        if let Some((pool, cycles)) = self.drain.take() {
            while let Some(m) = pool.alloc() {
                self.held.push(m);
            }
            self.release_at = tsc() + cycles;
            eprintln!(
                "injected fault: a worker holds {} mbufs of the pool ({} in use)",
                self.held.len(),
                pool.in_use()
            );
        } else if !self.held.is_empty() && tsc() >= self.release_at {
            self.held.clear();
        }
    }

    /// The worker received `n` packets.
    pub(crate) fn received(&mut self, n: usize) {
        self.received += n as u64;
        if let Some(after) = self.panic_after {
            if self.received >= after {
                panic!(
                    "injected fault: worker panic after {} packets",
                    self.received
                );
            }
        }
    }
}
