//! ctfwd: a DPDK poll-mode forwarder with netfilter-style connection tracking.
//!
//! Layers, each calling only downward:
//! - [`wire`]: bounds-checked, zero-copy packet views;
//! - `dataplane` (feature `dpdk`, on by default): safe wrappers over DPDK,
//!   per-core workers, forwarding engines;
//! - [`cli`]: testpmd-style flags, stats and reports.
//!
//! [`capture`] reads and writes pcap files, and [`synth`] builds frames for the
//! demo, tests and benchmarks; neither touches DPDK.

pub mod capture;
pub mod cli;
pub mod conntrack;
#[cfg(feature = "dpdk")]
pub mod dataplane;
pub mod rules;
pub mod synth;
pub mod wire;
