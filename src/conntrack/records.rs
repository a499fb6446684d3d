//! Records of plain words kept by slot beside the connection table (an
//! IPv6 connection's addresses, a connection's counters), each starting on
//! a cache line, so that one record is one line to read.
//!
//! The allocator aligns words to 8 bytes only, and a large allocation
//! (from `mmap`, past its 16-byte header) starts 16 bytes into a line:
//! there a 64-byte record spans two lines, and a 32-byte one does every
//! other slot. That cost IPv6 packets at 1M connections a fifth of their
//! cycles (`ct-bench --protos udp6`: 170-172 against 134-136 once
//! aligned). The words are allocated zeroed, so that pages are mapped only
//! where records are written (or all at once with `prefault`).

use super::table::Region;

/// Bytes of a cache line.
const LINE: usize = 64;

/// `len` records of `N` words, the first at a line's start (and so every
/// one, as `N` words divide a line or are whole lines).
pub(super) struct Records<const N: usize> {
    words: Vec<u64>,
    /// Words before the first record: up to the first line boundary.
    base: usize,
    len: usize,
}

impl<const N: usize> Records<N> {
    /// `len` zeroed records; `advise` sees their memory before anything is
    /// written to it (see `Config::advise_memory`).
    pub fn zeroed(len: usize, advise: Option<fn(Region<'_>)>) -> Records<N> {
        const { assert!(LINE % (N * 8) == 0 || (N * 8) % LINE == 0) };
        if len == 0 {
            return Records {
                words: Vec::new(),
                base: 0,
                len: 0,
            };
        }
        let mut words = vec![0u64; len * N + LINE / 8 - 1];
        if let Some(advise) = advise {
            advise(Region::of_zeroed(&mut words));
        }
        // The pointer is 8-aligned: a whole number of words to the line.
        let base = (words.as_ptr() as usize).wrapping_neg() % LINE / 8;
        Records { words, base, len }
    }

    /// Writes every page now, so that the kernel maps them here rather
    /// than on the packet path.
    pub fn prefault(&mut self) {
        for w in self.words.iter_mut().step_by(4096 / 8) {
            *w = 0;
        }
    }

    /// Records held (0 when not kept).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Record `i`, if there is one.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u64; N]> {
        if i >= self.len {
            return None;
        }
        let at = self.base + i * N;
        self.words[at..at + N].try_into().ok()
    }

    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u64; N]> {
        if i >= self.len {
            return None;
        }
        let at = self.base + i * N;
        (&mut self.words[at..at + N]).try_into().ok()
    }

    /// Record `i`; it must exist.
    #[inline]
    pub fn at(&self, i: usize) -> &[u64; N] {
        self.get(i).expect("a record for every slot")
    }

    #[inline]
    pub fn at_mut(&mut self, i: usize) -> &mut [u64; N] {
        self.get_mut(i).expect("a record for every slot")
    }

    /// Where record `i` is (for prefetching): only an address, so no
    /// bounds check.
    #[inline]
    pub fn addr(&self, i: usize) -> *const u8 {
        self.words.as_ptr().wrapping_add(self.base + i * N).cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record starts on a line whatever the allocator returned (a
    /// large allocation starts 16 bytes into one), holds its own words, and
    /// none is found past the end.
    #[test]
    fn records_start_on_lines_and_stay_apart() {
        for len in [1_000, 1_000_000] {
            let mut r: Records<8> = Records::zeroed(len, None);
            let mut q: Records<4> = Records::zeroed(len, None);
            for i in [0, 1, 2, len / 2, len - 1] {
                assert_eq!(r.addr(i) as usize % LINE, 0, "record {i} of {len}");
                assert_eq!(q.addr(i) as usize % (LINE / 2), 0, "record {i} of {len}");
                r.at_mut(i)[7] = i as u64;
                q.at_mut(i)[0] = i as u64;
            }
            for i in [0, 1, 2, len / 2, len - 1] {
                assert_eq!((r.at(i)[7], q.at(i)[0]), (i as u64, i as u64));
                assert_eq!((r.at(i)[0], q.at(i)[3]), (0, 0));
            }
            assert!(r.get(len).is_none() && q.get_mut(len).is_none());
        }
        let none: Records<4> = Records::zeroed(0, None);
        assert_eq!((none.len(), none.get(0)), (0, None));
    }
}
