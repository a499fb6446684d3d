//! Per-connection packet and byte counters, kept only when asked for
//! (`Config::acct`), as Linux keeps them in its `acct` extension only with
//! `nf_conntrack_acct=1` (off by default). They live beside the table,
//! one record per slot, so that a table without them is 32 bytes a
//! connection smaller and its packets skip the two read-modify-writes.

use super::records::Records;
use super::table::{Region, Slot};
use super::tuple::Dir;

/// One connection's counters, per direction; bytes are the IP length, as
/// Linux counts `skb->len`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// The counters of one shard's slots, each slot's packets then bytes,
/// original then reply, in 32 bytes that never straddle two lines
/// (`Records`); none when accounting is off. Allocated zeroed, so that a
/// table made without prefaulting has its pages faulted only when used.
pub(super) struct Acct {
    by_slot: Records<4>,
}

impl Acct {
    /// Counters for `max` slots if `on`. With `prefault` their pages are
    /// written here, after `advise` (see `Config::advise_memory`), so that
    /// page faults happen now and not on the packet path.
    pub fn new(max: usize, on: bool, prefault: bool, advise: Option<fn(Region<'_>)>) -> Acct {
        let mut by_slot = Records::zeroed(if on { max } else { 0 }, advise);
        if prefault {
            by_slot.prefault();
        }
        Acct { by_slot }
    }

    /// Counts one packet of `len` bytes in direction `dir`.
    #[inline(always)]
    pub fn add(&mut self, s: Slot, dir: Dir, len: u32) {
        if let Some(c) = self.by_slot.get_mut(s.0 as usize) {
            c[dir.index()] += 1;
            c[2 + dir.index()] += u64::from(len);
        }
    }

    /// Zeroes a slot's counters for a new connection.
    #[inline]
    pub fn reset(&mut self, s: Slot) {
        if let Some(c) = self.by_slot.get_mut(s.0 as usize) {
            *c = [0; 4];
        }
    }

    /// Adds `from`'s counters to `into`'s (a clash resolved to the
    /// connection already in the table, as `nf_ct_acct_merge`).
    pub fn merge(&mut self, from: Slot, into: Slot) {
        if let Some(&f) = self.by_slot.get(from.0 as usize) {
            let t = self.by_slot.at_mut(into.0 as usize);
            for (t, f) in t.iter_mut().zip(f) {
                *t += f;
            }
        }
    }

    /// A slot's counters, if accounting is on.
    pub fn get(&self, s: Slot) -> Option<Counters> {
        self.by_slot
            .get(s.0 as usize)
            .map(|&[p0, p1, b0, b1]| Counters {
                packets: [p0, p1],
                bytes: [b0, b1],
            })
    }

    pub fn memory(&self) -> usize {
        self.by_slot.len() * 4 * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_counts_nothing_and_takes_no_memory() {
        let mut a = Acct::new(16, false, true, None);
        a.add(Slot(3), Dir::Original, 60);
        assert_eq!(a.get(Slot(3)), None);
        assert_eq!(a.memory(), 0);
    }

    #[test]
    fn on_counts_merges_and_resets() {
        for prefault in [false, true] {
            counts_merges_and_resets(Acct::new(16, true, prefault, None));
        }
    }

    fn counts_merges_and_resets(mut a: Acct) {
        a.add(Slot(3), Dir::Original, 60);
        a.add(Slot(3), Dir::Reply, 40);
        a.add(Slot(5), Dir::Original, 100);
        a.merge(Slot(5), Slot(3));
        let want = Counters {
            packets: [2, 1],
            bytes: [160, 40],
        };
        assert_eq!(a.get(Slot(3)), Some(want));
        a.reset(Slot(3));
        assert_eq!(a.get(Slot(3)), Some(Counters::default()));
        assert_eq!(a.memory(), 16 * 32);
    }
}
