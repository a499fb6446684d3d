//! The connections created in the burst at hand and not confirmed yet
//! (Linux long kept them on a per-CPU unconfirmed list): a later
//! packet of the same burst must find them, NAT must not choose a tuple
//! one of them holds, and what no packet confirmed is freed at the end of
//! the burst.
//!
//! The pipeline looks up a whole chunk before it confirms any of it, so
//! in a burst of new flows the list holds up to a chunk's worth at once.
//! Two things keep that from costing a scan per packet (each was one
//! before; `ct-bench --cases new`, which runs the stages' order, measured
//! them at about 260 of a new connection's 1,413 instructions):
//!
//! - A confirmed or freed entry becomes a tombstone in place, so the
//!   others keep their places and a token finds its own by index (Linux
//!   took an entry off its list in constant time too, `hlist_nulls_del`).
//!   The list is emptied once no entry is live.
//! - A one-line filter, a bit per tuple hash, answers most misses (a new
//!   flow's first packet) without a scan.

use super::{Dir, IndexKeys, Slot};

/// Bits of the filter: one cache line. A chunk of 64 new flows sets at
/// most 128 of them.
const FILTER_BITS: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: Slot,
    /// Its tuples' hashes and whether the index keeps one entry for
    /// both: what confirm inserts it with.
    keys: IndexKeys,
    /// Still unconfirmed; otherwise a tombstone.
    live: bool,
}

/// A shard's unconfirmed connections, in the order they were created.
pub(super) struct UnconfirmedList {
    entries: Vec<Entry>,
    live: usize,
    /// Bit `(hash >> 32) % FILTER_BITS` set for each hash an entry had:
    /// bits the index uses for neither its home bucket (the low ones) nor
    /// its signatures (the top 16). A hash whose bit is clear is on no
    /// entry.
    filter: [u64; FILTER_BITS / 64],
}

impl UnconfirmedList {
    pub fn new() -> UnconfirmedList {
        UnconfirmedList {
            entries: Vec::with_capacity(1024),
            live: 0,
            filter: [0; FILTER_BITS / 64],
        }
    }

    /// How many connections are unconfirmed.
    pub fn len(&self) -> usize {
        self.live
    }

    #[inline(always)]
    fn bit(hash: u64) -> (usize, u64) {
        let b = (hash >> 32) as usize % FILTER_BITS;
        (b / 64, 1 << (b % 64))
    }

    #[inline(always)]
    fn note(&mut self, hash: u64) {
        let (w, m) = Self::bit(hash);
        self.filter[w] |= m;
    }

    /// Adds a new connection with its index keys; returns its place,
    /// which its token keeps.
    #[inline]
    pub fn push(&mut self, slot: Slot, keys: IndexKeys) -> u32 {
        self.note(keys.hashes[0]);
        self.note(keys.hashes[1]);
        self.entries.push(Entry {
            slot,
            keys,
            live: true,
        });
        self.live += 1;
        (self.entries.len() - 1) as u32
    }

    /// The newest unconfirmed connection one of whose tuples has hash
    /// `hash` and for which `is` (given its slot and that tuple's
    /// direction) says yes. The filter is asked in line; only a possible
    /// hit calls the scan.
    #[inline(always)]
    pub fn find(&self, hash: u64, is: impl FnMut(Slot, Dir) -> bool) -> Option<(Slot, Dir)> {
        let (w, m) = Self::bit(hash);
        if self.filter[w] & m == 0 {
            return None;
        }
        self.scan(hash, is)
    }

    fn scan(&self, hash: u64, mut is: impl FnMut(Slot, Dir) -> bool) -> Option<(Slot, Dir)> {
        self.entries.iter().rev().filter(|e| e.live).find_map(|e| {
            [Dir::Original, Dir::Reply]
                .into_iter()
                .find(|&d| e.keys.hashes[d.index()] == hash && is(e.slot, d))
                .map(|d| (e.slot, d))
        })
    }

    /// NAT gave the connection at `at` (in `slot`) a new reply tuple:
    /// `keys` works its keys out anew from its original tuple's hash.
    /// A place that is not the slot's live entry (which a token of this
    /// burst never gives) is left alone.
    pub fn rekey(&mut self, at: u32, slot: Slot, keys: impl FnOnce(u64) -> IndexKeys) {
        let e = self
            .entries
            .get_mut(at as usize)
            .filter(|e| e.live && e.slot == slot);
        debug_assert!(e.is_some(), "a token names its own entry");
        if let Some(e) = e {
            e.keys = keys(e.keys.hashes[0]);
            let reply = e.keys.hashes[1];
            self.note(reply);
        }
    }

    /// Takes the connection at `at` (in `slot`) off the list, to be
    /// confirmed or freed; returns its keys. `None` if that entry is not
    /// the slot's live one (a token from an earlier burst).
    #[inline]
    pub fn take(&mut self, at: u32, slot: Slot) -> Option<IndexKeys> {
        let e = self
            .entries
            .get_mut(at as usize)
            .filter(|e| e.live && e.slot == slot)?;
        e.live = false;
        let keys = e.keys;
        self.retire();
        Some(keys)
    }

    /// Takes `slot` off the list where no token is at hand (ingress
    /// dropping the connection it just created, or another of the burst):
    /// a scan from the newest. The slot must be on the list.
    pub fn remove(&mut self, slot: Slot) {
        let e = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.live && e.slot == slot);
        debug_assert!(e.is_some(), "an unconfirmed slot is on the list");
        if let Some(e) = e {
            e.live = false;
            self.retire();
        }
    }

    /// One entry fewer is live; with none left the list starts afresh.
    #[inline]
    fn retire(&mut self) {
        self.live -= 1;
        if self.live == 0 {
            self.entries.clear();
            self.filter = [0; FILTER_BITS / 64];
        }
    }

    /// Takes the newest connection still unconfirmed off the list (the
    /// end of a burst reaps them all).
    pub fn pop(&mut self) -> Option<Slot> {
        while let Some(e) = self.entries.pop() {
            if e.live {
                self.retire();
                return Some(e.slot);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `find` agrees with a plain scan of the live entries (the filter
    /// never hides one, a new reply hash included), and the places handed
    /// out stay valid while others are taken.
    #[test]
    fn the_filter_never_hides_a_live_entry() {
        proptest!(|(ops in prop::collection::vec((0u8..5, any::<u64>(), 0usize..64), 1..200))| {
            let mut list = UnconfirmedList::new();
            // (place, slot, keys, live) as a model.
            let mut model: Vec<(u32, Slot, IndexKeys, bool)> = Vec::new();
            let mut next = 0u32;
            for (op, hash, pick) in ops {
                match op {
                    0 | 1 => {
                        let one = op == 0;
                        let hashes = if one { [hash, hash] } else { [hash, hash.rotate_left(17)] };
                        let keys = IndexKeys { hashes, one, descending: false };
                        let at = list.push(Slot(next), keys);
                        if model.iter().all(|m| !m.3) {
                            model.clear();
                        }
                        prop_assert_eq!(at as usize, model.len());
                        model.push((at, Slot(next), keys, true));
                        next += 1;
                    }
                    4 => {
                        let live: Vec<_> = model.iter().filter(|m| m.3).map(|m| (m.0, m.1)).collect();
                        if let Some(&(at, slot)) = live.get(pick % live.len().max(1)) {
                            let keys = |orig| IndexKeys {
                                hashes: [orig, hash],
                                one: false,
                                descending: false,
                            };
                            list.rekey(at, slot, keys);
                            let m = &mut model[at as usize].2;
                            *m = keys(m.hashes[0]);
                        }
                    }
                    2 => {
                        let live: Vec<_> = model.iter().filter(|m| m.3).map(|m| (m.0, m.1)).collect();
                        if let Some(&(at, slot)) = live.get(pick % live.len().max(1)) {
                            let want = model[at as usize].2;
                            prop_assert_eq!(list.take(at, slot), Some(want));
                            prop_assert_eq!(list.take(at, slot), None);
                            model[at as usize].3 = false;
                        }
                    }
                    _ => {
                        let live: Vec<_> = model.iter().filter(|m| m.3).map(|m| m.1).collect();
                        if let Some(&slot) = live.get(pick % live.len().max(1)) {
                            list.remove(slot);
                            model.iter_mut().find(|m| m.1 == slot).unwrap().3 = false;
                        }
                    }
                }
                prop_assert_eq!(list.len(), model.iter().filter(|m| m.3).count());
                for m in model.iter().filter(|m| m.3) {
                    for (d, h) in [Dir::Original, Dir::Reply].into_iter().zip(m.2.hashes) {
                        let found = list.find(h, |s, dir| s == m.1 && dir == d);
                        prop_assert_eq!(found, Some((m.1, d)));
                    }
                }
            }
            let left: Vec<Slot> = std::iter::from_fn(|| list.pop()).collect();
            let left: Vec<Slot> = left.into_iter().rev().collect();
            let live: Vec<Slot> = model.iter().filter(|m| m.3).map(|m| m.1).collect();
            prop_assert_eq!(left, live);
            prop_assert_eq!(list.len(), 0);
            prop_assert_eq!(list.find(0, |_, _| true), None);
        });
    }

    /// A first packet of a new flow, the common miss, is answered by the
    /// filter alone when no entry has its bit.
    #[test]
    fn a_miss_needs_no_scan() {
        let mut list = UnconfirmedList::new();
        let hashes = [1 << 32, 2 << 32];
        list.push(
            Slot(1),
            IndexKeys {
                hashes,
                one: false,
                descending: false,
            },
        );
        let mut asked = 0;
        assert_eq!(
            list.find(3 << 32, |_, _| {
                asked += 1;
                true
            }),
            None
        );
        assert_eq!(asked, 0);
    }
}
