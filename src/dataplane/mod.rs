//! The DPDK side: safe wrappers over EAL, mempools, ports and mbufs
//! (`eal`, `mempool`, `port`, `mbuf`), the per-core workers and their
//! forwarding engines (`worker`, `fwd`), and the set-up of a run
//! (`forwarding`). Every `unsafe` block of the crate lives in these thin
//! wrappers, each with a `// SAFETY:` comment.

mod burst_stats;
mod conntrack_fwd;
mod control;
pub mod cpu;
mod eal;
#[cfg(feature = "fault-injection")]
mod fault;
mod forwarding;
mod fwd;
mod handoff;
mod mbuf;
mod mempool;
mod operate;
mod policy;
mod port;
mod rewrite;
mod ring;
mod rss;
mod sharding;
mod stages;
mod telemetry;
mod worker;

pub use burst_stats::BurstSnapshot;
pub use control::{Control, Page, Request, SliceTimes};
pub use eal::{dpdk_version, Eal};
pub use forwarding::{
    assign_streams, CoreAssignment, CtSnapshot, EventQueue, FinalReport, Forwarding, FwdConfig,
    PortSnapshot, Sharding, Snapshot, StreamSlot, StreamSnapshot, Topology, DROP_REASONS,
    HANDOFF_COUNTERS,
};
pub use fwd::{forward_mode, ForwardMode, FORWARD_MODES};
pub use mbuf::{Burst, MAX_BURST};
pub use mempool::Mempool;
pub use port::{available_ports, Port, PortConfig, PortInfo, PortStats, RxSegments};
pub use worker::Stream;

/// A set-up or runtime failure of the data plane, as one line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub(crate) fn msg(m: impl Into<String>) -> Error {
        Error(m.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
