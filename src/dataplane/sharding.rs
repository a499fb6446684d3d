//! How several tracking workers share the connections: who owns what
//! (mirroring the NICs' RSS redirection tables where every port agrees,
//! the software Toeplitz hash otherwise) and the handoff rings between
//! every pair of workers.

use std::ops::Range;
use std::sync::Arc;

use super::forwarding::StreamSlot;
use super::handoff::HandoffLinks;
use super::port::Port;
use super::ring::handoff_ring;
use super::rss::{hash_fields_of_rss, HashFields, Owners, RssLayout};
use super::Error;

/// How several tracking workers decide who owns a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharding {
    /// Owners mirror the NICs' redirection table: packets mostly arrive at
    /// their owner.
    Rss { reta_size: usize },
    /// Owners spread by the software hash alone (ports without RSS, or
    /// queues polled by different cores on different ports): packets that
    /// arrive elsewhere are handed over.
    Software,
}

/// Packets a handoff ring holds (a power of two).
pub(super) const HANDOFF_RING_SIZE: u32 = 1024;

/// A ring from every worker to every other, and each worker's view of who
/// owns what (one entry per worker); and how the owners were chosen.
pub(super) fn handoff_links(
    ports: &[Port<'_>],
    slots: &[StreamSlot],
    ranges: &[Range<usize>],
    socket: i32,
) -> Result<(Vec<Option<HandoffLinks>>, Sharding), Error> {
    let n = ranges.len();
    let rss: Vec<(usize, u64)> = ports.iter().map(|p| (p.reta_size(), p.rss_hf())).collect();
    let layout = rss_layout(&rss, slots, ranges);
    let sharding = match &layout {
        Some(l) => Sharding::Rss {
            reta_size: l.reta_size,
        },
        None => Sharding::Software,
    };
    let owners = Arc::new(Owners::new(layout.as_ref(), n));
    let fields = match (&layout, ports.first()) {
        (Some(_), Some(p)) => hash_fields_of_rss(p.rss_hf()),
        _ => HashFields::ALL,
    };
    let max_port = slots.iter().map(|s| s.rx_port).max().unwrap_or(0);
    let mut tx_port_of: Vec<u16> = (0..=max_port).collect();
    for s in slots {
        tx_port_of[usize::from(s.rx_port)] = s.tx_port;
    }
    let tx_port_of: Arc<[u16]> = tx_port_of.into();
    let mut links: Vec<HandoffLinks> = (0..n)
        .map(|me| HandoffLinks {
            me: me as u16,
            senders: (0..n).map(|_| None).collect(),
            receivers: Vec::with_capacity(n - 1),
            owners: Arc::clone(&owners),
            fields,
            tx_port_of: Arc::clone(&tx_port_of),
        })
        .collect();
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            let (tx, rx) = handoff_ring(
                &format!("ct_handoff_{from}_{to}"),
                HANDOFF_RING_SIZE,
                socket,
            )?;
            links[from].senders[to] = Some(tx);
            links[to].receivers.push(rx);
        }
    }
    Ok((links.into_iter().map(Some).collect(), sharding))
}

/// How the NICs spread packets over the workers, if every port does RSS
/// with a redirection table ctfwd programmed, all alike, and each RX queue
/// number is polled by the same worker on every port. Otherwise `None`:
/// owners are then spread in software and handoff does the rest. `ports`
/// holds each port's (programmed table size, RSS types).
fn rss_layout(
    ports: &[(usize, u64)],
    slots: &[StreamSlot],
    ranges: &[Range<usize>],
) -> Option<RssLayout> {
    let &(reta_size, rss_hf) = ports.first()?;
    if reta_size == 0 || ports.iter().any(|&p| p != (reta_size, rss_hf)) {
        return None;
    }
    let queues = slots.iter().map(|s| s.rx_queue).max()? as usize + 1;
    let mut queue_worker: Vec<Option<u16>> = vec![None; queues];
    for (core, range) in ranges.iter().enumerate() {
        for s in &slots[range.clone()] {
            let w = &mut queue_worker[usize::from(s.rx_queue)];
            match *w {
                Some(other) if other != core as u16 => return None,
                _ => *w = Some(core as u16),
            }
        }
    }
    Some(RssLayout {
        reta_size,
        queue_worker: queue_worker.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::forwarding::{assign_streams, Topology};

    #[test]
    fn owners_follow_rss_only_when_every_port_agrees() {
        let rss = 0x3c;
        // 2 ports x 2 queues on 2 cores: queue q is core q's on both ports.
        let (s, r) = assign_streams(&[0, 1], 2, Topology::Paired, 2);
        let l = rss_layout(&[(128, rss), (128, rss)], &s, &r).unwrap();
        assert_eq!((l.reta_size, l.queue_worker), (128, vec![0, 1]));
        // A port without a programmed table, or a different one.
        assert!(rss_layout(&[(128, rss), (0, 0)], &s, &r).is_none());
        assert!(rss_layout(&[(128, rss), (64, rss)], &s, &r).is_none());
        // 1 queue per port on 2 cores: queue 0 is polled by both.
        let (s, r) = assign_streams(&[0, 1], 1, Topology::Paired, 2);
        assert!(rss_layout(&[(128, rss), (128, rss)], &s, &r).is_none());
    }
}
