//! A tracker's settings.

use super::table::Region;
use super::{HelperConfig, TcpConfig, Timeouts};

/// Tracker settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Connections this shard holds at most (unconfirmed ones included).
    pub max: usize,
    pub tcp: TcpConfig,
    pub timeouts: Timeouts,
    /// Verify transport checksums (`nf_conntrack_checksum`).
    pub checksum: bool,
    /// Keep per-connection packet and byte counters
    /// (`nf_conntrack_acct`, off by default in Linux too).
    pub acct: bool,
    /// Touch the memory of the table and its side arrays at construction,
    /// so page faults happen then and not on the packet path. The one
    /// exception is the IPv6 connections' addresses (`ConnTable`'s `v6`),
    /// which an IPv4-only table never touches: a page of them is faulted
    /// in when an IPv6 connection first lands on it.
    pub prefault: bool,
    /// Called with each large region of the table before it is touched, so
    /// the owner can advise the kernel (huge pages); this module makes no
    /// system calls itself.
    pub advise_memory: Option<fn(Region<'_>)>,
    /// Which helpers serve which ports.
    pub helpers: HelperConfig,
    /// Expectations a shard's own set holds at most (`Shard::new`; shards
    /// made with `Shard::with_expectations` share the caller's set).
    pub expect_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max: 65536,
            tcp: TcpConfig::default(),
            timeouts: Timeouts::default(),
            checksum: false,
            acct: false,
            prefault: true,
            advise_memory: None,
            helpers: HelperConfig::default(),
            expect_max: 4096,
        }
    }
}
