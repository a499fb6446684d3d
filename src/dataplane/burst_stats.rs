//! `--record-burst-stats`: per forwarding core, how many cycles each
//! burst took from RX to TX, as an hdrhistogram the worker keeps (no
//! allocation after start, one record per burst), and the burst sizes.
//! The worker publishes its percentiles every 100 ms and when it stops;
//! the stats print them beside testpmd's per-core lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::cpu::tsc;

/// One core's published figures: bursts, packets, and cycles per burst at
/// the 50th, 99th and 99.9th percentiles and the most.
#[derive(Default)]
#[repr(align(64))]
pub struct BurstCounters {
    values: [AtomicU64; 6],
}

/// A core's burst figures at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct BurstSnapshot {
    pub bursts: u64,
    pub packets: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl BurstCounters {
    pub fn snapshot(&self) -> BurstSnapshot {
        let [bursts, packets, p50, p99, p999, max] =
            self.values.each_ref().map(|v| v.load(Ordering::Relaxed));
        BurstSnapshot {
            bursts,
            packets,
            p50,
            p99,
            p999,
            max,
        }
    }
}

/// The worker's side.
pub struct BurstStats {
    out: Arc<BurstCounters>,
    cycles: hdrhistogram::Histogram<u64>,
    bursts: u64,
    packets: u64,
    period: u64,
    next_publish: u64,
}

impl BurstStats {
    pub fn new(out: Arc<BurstCounters>, tsc_hz: u64) -> BurstStats {
        BurstStats {
            out,
            // 1 cycle to about 17 s at 4 GHz, 3 significant digits.
            cycles: hdrhistogram::Histogram::new_with_bounds(1, 1 << 36, 3)
                .expect("constant bounds are valid"),
            bursts: 0,
            packets: 0,
            period: tsc_hz / 10,
            next_publish: 0,
        }
    }

    /// A burst of `packets` that took `cycles`.
    #[inline]
    pub fn record(&mut self, cycles: u64, packets: usize) {
        self.cycles.saturating_record(cycles);
        self.bursts += 1;
        self.packets += packets as u64;
    }

    /// Publishes at most every 100 ms (one TSC read per call).
    #[inline]
    pub fn tick(&mut self) {
        if tsc() >= self.next_publish {
            self.publish();
        }
    }

    pub fn publish(&mut self) {
        let h = &self.cycles;
        let v = [
            self.bursts,
            self.packets,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        ];
        for (c, v) in self.out.values.iter().zip(v) {
            c.store(v, Ordering::Relaxed);
        }
        self.next_publish = tsc() + self.period;
    }
}
