//! Handing packets to the worker that owns their connection.
//!
//! Every connection has one owner, the worker its symmetric Toeplitz hash
//! maps to (see `rss`), and only the owner ever touches its state. A packet
//! that reaches another worker (a port without RSS, an ICMP error hashed
//! on its outer header) is put on a single-producer, single-consumer ring
//! from that worker to the owner; the owner tracks it and transmits it on
//! its own TX queue of the outgoing port. Every worker has a TX queue on
//! every port for this, as in DPDK's l3fwd.

use super::mbuf::Burst;
use super::ring::{HandoffReceiver, HandoffSender};
use super::rss::{HashFields, Owners, SymmetricToeplitz};
use super::worker::CtCounters;
use crate::conntrack::Tuple;
use std::sync::Arc;

/// One worker's ends of the handoff rings, built by the set-up.
pub struct HandoffLinks {
    /// This worker's index, which is also its TX queue on every port.
    pub me: u16,
    /// `senders[w]`: the ring to worker w (`None` for this worker).
    pub senders: Vec<Option<HandoffSender>>,
    /// The rings from every other worker.
    pub receivers: Vec<HandoffReceiver>,
    pub owners: Arc<Owners>,
    pub fields: HashFields,
    /// `tx_port_of[p]`: where packets received on port p go.
    pub tx_port_of: Arc<[u16]>,
}

/// A worker's handoff state.
pub struct Handoff {
    links: HandoffLinks,
    toeplitz: SymmetricToeplitz,
    /// `outboxes[w]`: packets of the current burst owned by worker w.
    pub(super) outboxes: Vec<Burst>,
    /// Packets taken from a ring, being tracked.
    pub(super) inbox: Burst,
    /// Packets taken from a ring at a time (`--burst`).
    burst: u16,
}

impl Handoff {
    pub fn new(links: HandoffLinks, burst: u16) -> Handoff {
        Handoff {
            burst,
            outboxes: (0..links.senders.len()).map(|_| Burst::default()).collect(),
            inbox: Burst::default(),
            toeplitz: SymmetricToeplitz::default(),
            links,
        }
    }

    pub fn me(&self) -> u16 {
        self.links.me
    }

    /// The worker that owns the connection of direction `t`.
    #[inline]
    pub fn owner(&self, t: &Tuple) -> u16 {
        self.links
            .owners
            .of(self.toeplitz.hash_tuple(t, self.links.fields))
    }

    /// Puts every outbox on its ring; counts what went and what a full ring
    /// refused (freed).
    #[inline]
    pub fn flush(&mut self, c: &CtCounters) {
        for (out, sender) in self.outboxes.iter_mut().zip(&mut self.links.senders) {
            if let (false, Some(sender)) = (out.is_empty(), sender.as_mut()) {
                let (sent, dropped) = sender.send(out);
                CtCounters::add(&c.handoff_tx, sent as u64);
                if dropped > 0 {
                    CtCounters::add(&c.handoff_drop, dropped as u64);
                }
            }
        }
    }

    /// Number of rings this worker reads.
    pub fn sources(&self) -> usize {
        self.links.receivers.len()
    }

    /// Takes a burst from ring `from` into the inbox.
    #[inline]
    pub fn receive(&mut self, from: usize) -> usize {
        self.links.receivers[from].receive(&mut self.inbox, self.burst)
    }

    /// Transmits what is left in the inbox, each packet out of the port
    /// its arrival port forwards to.
    #[inline]
    pub fn transmit_inbox(&mut self, c: &CtCounters) {
        let route = &self.links.tx_port_of;
        let (sent, dropped) = self.inbox.tx_routed(self.links.me, |p| {
            route.get(usize::from(p)).copied().unwrap_or(p)
        });
        CtCounters::add(&c.handoff_fwd, sent as u64);
        if dropped > 0 {
            CtCounters::add(&c.handoff_fwd_dropped, dropped as u64);
        }
    }
}
