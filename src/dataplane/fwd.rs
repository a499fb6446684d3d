//! Forwarding engines and the mode table (testpmd's `fwd_engine`).
//!
//! A mode is one [`ForwardEngine`] type plus a table row. The worker loop is
//! generic over the engine, so each mode gets its own monomorphised loop and
//! the per-burst call inlines; adding a mode is a new type and a new row.

use super::conntrack_fwd::{Conntrack, Firewall};
use super::mbuf::Burst;
use super::worker::{EngineContext, Stream, Worker};
use crate::wire::EthernetFrame;

/// What a mode does to each received burst before it is transmitted.
pub trait ForwardEngine {
    /// Whether the engine runs the connection tracker (its stats are shown).
    const TRACKS: bool = false;

    /// The engine of one worker (per-core state lives here); it may take
    /// what it keeps from `ctx`.
    fn new(ctx: &mut EngineContext) -> Self;

    /// Works on `burst`, received on `stream`'s RX queue and about to be
    /// sent on its TX queue.
    fn forward(&mut self, stream: &Stream, burst: &mut Burst);

    /// Sends what `forward` left of the burst (the `tx` stage); returns
    /// (sent, dropped). An engine that holds or releases packets sends
    /// them here, in order.
    #[inline]
    fn transmit(&mut self, stream: &Stream, burst: &mut Burst) -> (usize, usize) {
        burst.tx(stream.tx_port, stream.tx_queue)
    }

    /// Bounded background work, once per poll of all the worker's streams
    /// (expiry, packets other workers handed over). Returns how many
    /// packets it forwarded.
    #[inline]
    fn housekeeping(&mut self) -> usize {
        0
    }
}

/// A row of the mode table.
pub struct ForwardMode {
    pub name: &'static str,
    pub summary: &'static str,
    pub(crate) run: fn(Worker),
    tracks: bool,
}

impl ForwardMode {
    const fn of<E: ForwardEngine>(name: &'static str, summary: &'static str) -> ForwardMode {
        ForwardMode {
            name,
            summary,
            run: Worker::run::<E>,
            tracks: E::TRACKS,
        }
    }

    pub fn tracks(&self) -> bool {
        self.tracks
    }
}

/// Every `--forward-mode`, by name.
pub static FORWARD_MODES: &[ForwardMode] = &[
    ForwardMode::of::<Io>("io", "forward packets unchanged"),
    ForwardMode::of::<Mac>(
        "mac",
        "set source MAC to the TX port's, destination MAC to the peer's (--eth-peer)",
    ),
    ForwardMode::of::<MacSwap>("macswap", "swap source and destination MAC addresses"),
    ForwardMode::of::<Conntrack>(
        "conntrack",
        "track every connection, forward every frame unchanged, count packets by state",
    ),
    ForwardMode::of::<Firewall>(
        "firewall",
        "stateful firewall: established/related pass, new only from --inside-ports, invalid dropped",
    ),
];

/// Looks a mode up by its `--forward-mode` name.
pub fn forward_mode(name: &str) -> Option<&'static ForwardMode> {
    FORWARD_MODES.iter().find(|m| m.name == name)
}

/// `io`: the packets go out as they came in.
pub struct Io;

impl ForwardEngine for Io {
    fn new(_: &mut EngineContext) -> Self {
        Io
    }

    #[inline]
    fn forward(&mut self, _: &Stream, _: &mut Burst) {}
}

/// `mac`: rewrite both addresses, as testpmd's mac engine.
pub struct Mac;

impl ForwardEngine for Mac {
    fn new(_: &mut EngineContext) -> Self {
        Mac
    }

    #[inline]
    fn forward(&mut self, stream: &Stream, burst: &mut Burst) {
        burst.prefetch_data(burst.len());
        for mut pkt in burst.packets_mut() {
            // A runt shorter than an Ethernet header goes out untouched, as
            // the driver handed it to us.
            if let Ok(mut eth) = EthernetFrame::new_checked(pkt.data_mut()) {
                eth.set_dst_addr(stream.peer_mac);
                eth.set_src_addr(stream.tx_mac);
            }
        }
    }
}

/// `macswap`: exchange the addresses, as testpmd's macswap engine.
pub struct MacSwap;

impl ForwardEngine for MacSwap {
    fn new(_: &mut EngineContext) -> Self {
        MacSwap
    }

    #[inline]
    fn forward(&mut self, _: &Stream, burst: &mut Burst) {
        burst.prefetch_data(burst.len());
        for mut pkt in burst.packets_mut() {
            if let Ok(mut eth) = EthernetFrame::new_checked(pkt.data_mut()) {
                eth.swap_addrs();
            }
        }
    }
}
