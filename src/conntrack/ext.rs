//! What a connection keeps only when a helper is involved: its helper, its
//! master, FTP parsing state and sequence adjustment (Linux's conntrack
//! extensions, `nf_ct_ext`, which a connection also carries only when it
//! needs them). The records live in a slab of their own, found from the
//! connection's slot through a 4-byte index, so a plain connection costs
//! neither a record's 60 bytes nor a write when it is created.

use super::expect::MasterRef;
use super::helper::{FtpState, Helper};
use super::seqadj::SeqAdj;
use super::table::Slot;

/// The index of a slot without a record.
const NO_EXT: u32 = u32::MAX;

/// One connection's record.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ext {
    pub helper: Option<Helper>,
    pub master: Option<MasterRef>,
    pub ftp: FtpState,
    /// Sequence adjustment per direction, once NAT changed a segment's
    /// length (SEQ_ADJUST).
    pub seqadj: [SeqAdj; 2],
}

/// The records of one shard. Capacity for one per connection is reserved
/// at start (address space only: a page is touched when a record first
/// lands on it), so adding one never allocates; the index by slot is
/// written whole at start, so that no slot's entry is written on the
/// packet path but for connections that take a record.
pub(super) struct Exts {
    recs: Vec<Ext>,
    free: Vec<u32>,
    by_slot: Vec<u32>,
}

impl Exts {
    /// Records for a table of `max` slots.
    pub fn new(max: usize) -> Exts {
        Exts {
            recs: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            by_slot: vec![NO_EXT; max],
        }
    }

    /// Gives slot `s` the record `e`; false if it cannot have one (a slot
    /// beyond the table's, or every record taken, neither of which can be
    /// while each slot holds at most one).
    pub fn attach(&mut self, s: Slot, e: Ext) -> bool {
        let Some(at) = self.by_slot.get_mut(s.0 as usize) else {
            return false;
        };
        debug_assert_eq!(*at, NO_EXT, "slot {s:?} already has a record");
        let i = match self.free.pop() {
            Some(i) => {
                self.recs[i as usize] = e;
                i
            }
            None if self.recs.len() < self.recs.capacity() => {
                self.recs.push(e);
                (self.recs.len() - 1) as u32
            }
            None => return false,
        };
        *at = i;
        true
    }

    /// Slot `s`'s record, if it has one.
    #[inline]
    pub fn of(&self, s: Slot) -> Option<&Ext> {
        let i = *self.by_slot.get(s.0 as usize)?;
        self.recs.get(i as usize)
    }

    pub fn of_mut(&mut self, s: Slot) -> Option<&mut Ext> {
        let i = *self.by_slot.get(s.0 as usize)?;
        self.recs.get_mut(i as usize)
    }

    /// Takes slot `s`'s record back, if it has one (its connection is
    /// gone).
    #[inline]
    pub fn release(&mut self, s: Slot) {
        if let Some(at) = self.by_slot.get_mut(s.0 as usize) {
            if *at != NO_EXT {
                self.free.push(*at);
                *at = NO_EXT;
            }
        }
    }

    /// Records held by connections.
    pub fn in_use(&self) -> usize {
        self.recs.len() - self.free.len()
    }

    /// Bytes of memory: the index, and the records in use.
    pub fn memory(&self) -> usize {
        self.by_slot.len() * std::mem::size_of::<u32>() + self.in_use() * std::mem::size_of::<Ext>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot has a record from attach to release; records are reused,
    /// and the slab never grows past its capacity.
    #[test]
    fn attach_release_reuse_and_bound() {
        let mut x = Exts::new(2);
        let cap = x.recs.capacity();
        let master = Ext {
            helper: Some(Helper::Tftp),
            ..Ext::default()
        };
        assert!(x.of(Slot(0)).is_none());
        assert!(x.attach(Slot(0), master));
        assert_eq!(x.of(Slot(0)).and_then(|e| e.helper), Some(Helper::Tftp));
        assert!(x.of(Slot(1)).is_none());
        assert!(!x.attach(Slot(2), master), "beyond the table");
        let first = x.by_slot[0];
        x.release(Slot(0));
        x.release(Slot(0));
        x.release(Slot(1));
        assert!(x.of(Slot(0)).is_none());
        assert!(x.attach(Slot(1), Ext::default()));
        assert_eq!(x.by_slot[1], first, "the released record is reused");
        assert_eq!(x.free.len(), 0);
        assert_eq!(x.recs.capacity(), cap);
    }
}
