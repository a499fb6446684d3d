//! Faults injected on purpose, for tests (the cargo feature
//! `fault-injection`, off by default, so release builds carry none of
//! this), chosen by `CTFWD_FAULT`:
//! - `worker-panic:N`: every worker panics once it has received N
//!   packets, with the burst it holds still in hand;
//! - `tx-refuse`: every TX queue refuses every packet, as a full ring does.

use std::sync::OnceLock;

fn spec() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| std::env::var("CTFWD_FAULT").unwrap_or_default())
}

/// Whether TX queues refuse everything.
#[inline]
pub(crate) fn tx_refuses() -> bool {
    spec() == "tx-refuse"
}

pub(crate) struct Faults {
    panic_after: Option<u64>,
    received: u64,
}

impl Faults {
    pub(crate) fn from_env() -> Faults {
        Faults {
            panic_after: spec()
                .strip_prefix("worker-panic:")
                .and_then(|n| n.parse().ok()),
            received: 0,
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
