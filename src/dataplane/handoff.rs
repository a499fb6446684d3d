//! Handing packets to the worker that owns their connection.
//!
//! Every connection has one owner, the worker its symmetric Toeplitz hash
//! maps to (see `rss`), and only the owner ever touches its state. A packet
//! that reaches another worker (a port without RSS, an ICMP error hashed
//! on its outer header) is put on a single-producer, single-consumer ring
//! from that worker to the owner; the owner tracks it and transmits it on
//! its own TX queue of the outgoing port. Every worker has a TX queue on
//! every port for this, as in DPDK's l3fwd.

use super::mbuf::{Burst, HeldMbuf};
use super::ring::{HandoffReceiver, HandoffSender};
use super::rss::{HashFields, Owners};
use super::worker::CtCounters;
use crate::conntrack::steering::Steering;
use crate::conntrack::Tuple;
use crate::wire::{IpPacket, L3};
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

impl HandoffLinks {
    /// This worker's view of who owns what.
    pub fn steering(&self) -> Steering {
        Steering::new(Arc::clone(&self.owners), self.fields, self.me)
    }
}

/// A worker's handoff state.
pub struct Handoff {
    links: HandoffLinks,
    steering: Steering,
    /// `outboxes[w]`: packets of the current burst owned by worker w.
    pub(super) outboxes: Vec<Burst>,
    /// Packets taken from a ring at a time (`--burst`).
    burst: u16,
}

impl Handoff {
    pub fn new(links: HandoffLinks, burst: u16) -> Handoff {
        Handoff {
            burst,
            outboxes: (0..links.senders.len()).map(|_| Burst::default()).collect(),
            steering: links.steering(),
            links,
        }
    }

    pub fn me(&self) -> u16 {
        self.links.me
    }

    /// The worker that owns the connection of direction `t`.
    #[inline]
    pub fn owner(&self, t: &Tuple) -> u16 {
        self.steering.owner(t)
    }

    /// The fields the owner's hash covers.
    pub fn fields(&self) -> HashFields {
        self.links.fields
    }

    /// The worker that reassembles fragments between two addresses. A NIC
    /// hashes fragments by their addresses alone (only the first carries
    /// ports), so all fragments of a datagram meet on the worker this
    /// gives; the datagram, once whole, goes to the owner of its
    /// connection.
    #[inline]
    pub fn owner_by_addresses(&self, ip: &IpPacket<'_>) -> u16 {
        let t = Tuple {
            src: ip.src,
            dst: ip.dst,
            sport: 0,
            dport: 0,
            proto: ip.proto,
            family: if ip.l3 == L3::V4 { 4 } else { 6 },
            zone: 0,
        };
        self.steering.owner_by_addresses(&t)
    }

    /// Adds a released fragment to worker `w`'s outbox, sending the outbox
    /// first if it is full.
    #[inline]
    pub fn push(&mut self, w: u16, m: HeldMbuf, c: &CtCounters) {
        if self.outboxes[usize::from(w)].is_full() {
            self.flush(c);
        }
        self.outboxes[usize::from(w)].push(m);
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

    /// Takes a burst from ring `from` into `inbox` (empty).
    #[inline]
    pub fn receive(&mut self, from: usize, inbox: &mut Burst) -> usize {
        self.links.receivers[from].receive(inbox, self.burst)
    }

    /// How this worker sends handed-over packets.
    pub fn router(&self) -> Router {
        Router {
            me: self.links.me,
            tx_port_of: Arc::clone(&self.links.tx_port_of),
        }
    }
}

/// Sends packets on a worker's own TX queues, each out of the port its
/// arrival port forwards to.
pub struct Router {
    me: u16,
    tx_port_of: Arc<[u16]>,
}

impl Router {
    /// Transmits a burst of handed-over packets; counts what went and what
    /// a TX queue refused (freed). Returns (sent, dropped).
    #[inline]
    pub fn transmit(&self, burst: &mut Burst, c: &CtCounters) -> (usize, usize) {
        let route = &self.tx_port_of;
        let (sent, dropped) =
            burst.tx_routed(self.me, |p| route.get(usize::from(p)).copied().unwrap_or(p));
        CtCounters::add(&c.handoff_fwd, sent as u64);
        if dropped > 0 {
            CtCounters::add(&c.handoff_fwd_dropped, dropped as u64);
        }
        (sent, dropped)
    }
}
