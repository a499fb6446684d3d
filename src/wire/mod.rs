//! Packet views: typed, bounds-checked, zero-copy accessors over byte slices,
//! in the manner of smoltcp's `wire` module. A view checks its length once,
//! when it is made (`new_checked`); its accessors then cannot go out of bounds.

mod ethernet;

pub use ethernet::{EthernetFrame, MacAddr, ETHERNET_HEADER_LEN};

/// A buffer too short for the header a view needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("truncated header")
    }
}

impl std::error::Error for Truncated {}
