//! Per-queue captures, as a NIC's RSS would fill its RX queues:
//! `--queues Q` writes `NAME.qK.pcap` for K in 0..Q, each frame in the
//! queue the workers' own software owner table gives its connection
//! (`synth::rss_queues`, over the code the workers run, so the split
//! cannot drift from what they compute). Queue K is polled by worker K when
//! ctfwd runs with `--rxq=Q --nb-cores=Q`.
//!
//! `--missteer PCT` puts that share of frames (picked by a hash of their
//! index) on the next queue instead, as a NIC hashing other fields would,
//! so handoff's cost can be measured; `--unsteered` deals frames round
//! robin, as a NIC without usable RSS.

/// How frames are spread over the queues.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub queues: usize,
    /// Percent of frames put on the wrong queue.
    pub missteer: u32,
    pub unsteered: bool,
}

impl Split {
    /// The queue of each frame.
    pub fn queues_of(&self, frames: &[Vec<u8>]) -> Vec<usize> {
        let q = self.queues.max(1);
        ctfwd::synth::rss_queues(frames, q)
            .into_iter()
            .enumerate()
            .map(|(i, home)| {
                if self.unsteered {
                    return i % q;
                }
                // A fixed, well-mixed choice of the mis-steered frames.
                let pick = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
                if pick % 100 < u64::from(self.missteer) {
                    (home + 1) % q
                } else {
                    home
                }
            })
            .collect()
    }

    /// `NAME.pcap` becomes `NAME.qK.pcap`.
    pub fn path(base: &str, k: usize) -> String {
        match base.strip_suffix(".pcap") {
            Some(stem) => format!("{stem}.q{k}.pcap"),
            None => format!("{base}.q{k}"),
        }
    }
}
