//! TCP sequence adjustment (Linux's `nf_conntrack_seqadj`): when NAT
//! rewrites an FTP command to a text of another length, every later
//! segment of that direction is shifted by the difference, and the peer's
//! acknowledgements (SACK blocks included) are shifted back.
//!
//! As Linux, each direction keeps one correction point: the sequence
//! number of the last segment whose length changed, and the total offset
//! before and after it, so a retransmission of data from before the
//! change is still shifted by the old offset.

use super::tcp::after;

/// One direction's adjustment (`struct nf_ct_seqadj`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqAdj {
    correction_pos: u32,
    offset_before: i32,
    offset_after: i32,
}

impl SeqAdj {
    /// `nf_ct_seqadj_set`: the segment starting at `seq` (as its sender
    /// sent it) grew by `off` bytes. A second change is recorded only
    /// after the point of the first (a retransmitted command changes
    /// nothing twice).
    pub fn set(&mut self, seq: u32, off: i32) {
        if off == 0 {
            return;
        }
        if self.offset_before == self.offset_after || after(seq, self.correction_pos) {
            self.correction_pos = seq;
            self.offset_before = self.offset_after;
            self.offset_after = self.offset_after.wrapping_add(off);
        }
    }

    /// `nf_ct_seq_offset`: the shift of a sequence number `seq` of this
    /// direction as its sender sent it.
    pub fn offset(&self, seq: u32) -> i32 {
        if after(seq, self.correction_pos) {
            self.offset_after
        } else {
            self.offset_before
        }
    }

    /// Whether nothing was ever shifted.
    pub fn is_zero(&self) -> bool {
        self.offset_before == 0 && self.offset_after == 0
    }

    /// A sequence number of this direction as the receiver sees it.
    pub fn seq(&self, seq: u32) -> u32 {
        seq.wrapping_add(self.offset(seq) as u32)
    }

    /// An acknowledgement (or SACK edge) of this direction's data, as
    /// the receiver sent it, back in the sender's numbers
    /// (`nf_ct_seq_adjust`'s ack, `nf_ct_sack_block_adjust`): the peer
    /// acknowledged shifted numbers.
    pub fn unshift_ack(&self, ack: u32) -> u32 {
        let off = if after(
            ack.wrapping_sub(self.offset_before as u32),
            self.correction_pos,
        ) {
            self.offset_after
        } else {
            self.offset_before
        };
        ack.wrapping_sub(off as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender's stream with commands rewritten longer and shorter, over
    /// the wrap of sequence space: every byte the receiver sees sits
    /// where the shifted stream puts it, and its acknowledgement of any
    /// byte maps back to the sender's number.
    #[test]
    fn many_segments_across_the_wrap() {
        for start in [1000u32, u32::MAX - 5000] {
            let mut adj = SeqAdj::default();
            // (sender's seq, its length, the length it leaves with)
            let mut segs = Vec::new();
            let mut seq = start;
            let mut shift = 0i32;
            for i in 0..200u32 {
                let len = 10 + i % 30;
                let grown = match i % 7 {
                    0 => len + 6,
                    3 => len - 4,
                    _ => len,
                };
                // Each segment is shifted by the changes before it.
                assert_eq!(adj.seq(seq), seq.wrapping_add(shift as u32), "segment {i}");
                adj.set(seq, grown as i32 - len as i32);
                segs.push((seq, len, shift));
                shift += grown as i32 - len as i32;
                seq = seq.wrapping_add(len);
            }
            // Only the last change is remembered with its point: data and
            // acknowledgements after it map exactly.
            let (last_seq, last_len, last_shift) = *segs.last().unwrap();
            let end = last_seq.wrapping_add(last_len);
            assert_eq!(adj.seq(end), end.wrapping_add(shift as u32));
            let ack_seen = end.wrapping_add(shift as u32);
            assert_eq!(adj.unshift_ack(ack_seen), end);
            // A retransmission of the last changed segment keeps its old
            // shift, and a second change there is not recorded twice.
            assert_eq!(adj.seq(last_seq), last_seq.wrapping_add(last_shift as u32));
            let before = adj;
            adj.set(last_seq, 6);
            assert_eq!(adj, before);
        }
    }

    #[test]
    fn nothing_changed_shifts_nothing() {
        let mut adj = SeqAdj::default();
        adj.set(500, 0);
        assert!(adj.is_zero());
        assert_eq!((adj.seq(7), adj.unshift_ack(7)), (7, 7));
    }
}
