//! Bursts of received packets, owned: every mbuf is either transmitted or
//! freed, never dropped on the floor.

use std::marker::PhantomData;

use dpdk_sys as sys;

use super::cpu::prefetch;

/// The largest burst ctfwd handles (testpmd's `MAX_PKT_BURST`).
pub const MAX_BURST: usize = 512;

/// Up to [`MAX_BURST`] mbufs received from one queue. Dropping a burst frees
/// whatever it still holds.
pub struct Burst {
    len: usize,
    pkts: [*mut sys::rte_mbuf; MAX_BURST],
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            len: 0,
            pkts: [std::ptr::null_mut(); MAX_BURST],
        }
    }
}

impl Burst {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Receives up to `max` packets from `queue` of `port` into this (empty)
    /// burst; returns how many arrived.
    #[inline]
    pub fn rx(&mut self, port: u16, queue: u16, max: u16) -> usize {
        debug_assert!(self.is_empty());
        let max = max.min(MAX_BURST as u16);
        // SAFETY: pkts has room for MAX_BURST >= max pointers; the port and
        // queue were configured and started by Port, which outlives workers.
        let n = unsafe { sys::rte_eth_rx_burst(port, queue, self.pkts.as_mut_ptr(), max) };
        self.len = n as usize;
        self.len
    }

    /// Transmits the burst on `queue` of `port`; what the queue does not take
    /// is freed. Returns (sent, dropped).
    #[inline]
    pub fn tx(&mut self, port: u16, queue: u16) -> (usize, usize) {
        let len = self.len;
        // SAFETY: pkts[..len] are mbufs this burst owns; the driver takes
        // ownership of the first `sent` of them.
        let sent = unsafe { sys::rte_eth_tx_burst(port, queue, self.pkts.as_mut_ptr(), len as u16) }
            as usize;
        if sent < len {
            // SAFETY: pkts[sent..len] are still ours and are freed once.
            unsafe {
                sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(sent), (len - sent) as u32)
            };
        }
        self.len = 0;
        (sent, len - sent)
    }

    /// Keeps the packets whose `keep` entry is true, in order, and frees the
    /// others (the dropped packets of a filtering engine).
    #[inline]
    pub fn retain(&mut self, keep: &[bool]) {
        let mut dropped = [std::ptr::null_mut(); MAX_BURST];
        let (mut kept, mut n_dropped) = (0, 0);
        for i in 0..self.len {
            if keep.get(i).copied().unwrap_or(true) {
                self.pkts[kept] = self.pkts[i];
                kept += 1;
            } else {
                dropped[n_dropped] = self.pkts[i];
                n_dropped += 1;
            }
        }
        self.len = kept;
        if n_dropped > 0 {
            // SAFETY: each dropped mbuf was owned by this burst and is no
            // longer listed in it, so it is freed exactly once.
            unsafe { sys::rte_pktmbuf_free_bulk(dropped.as_mut_ptr(), n_dropped as u32) };
        }
    }

    /// Prefetches the packet data of the first `n` packets (l3fwd's
    /// `PREFETCH_OFFSET` pattern: start the loads before the headers are read).
    #[inline]
    pub fn prefetch_data(&self, n: usize) {
        for &m in &self.pkts[..n.min(self.len)] {
            // SAFETY: m is a valid mbuf of this burst; reading its header
            // fields is sound, and the address is only used as a hint.
            let data = unsafe { (*m).buf_addr.cast::<u8>().add((*m).data_off as usize) };
            prefetch(data);
        }
    }

    /// The packets, as (first segment's bytes, whole packet length, offload
    /// flags).
    #[inline]
    pub fn packets(&self) -> impl Iterator<Item = (&[u8], usize, u64)> {
        self.pkts[..self.len].iter().map(|&m| {
            // SAFETY: the mbuf is owned by this burst, which is borrowed for
            // the slice's lifetime; buf_addr + data_off .. + data_len lies
            // inside its data buffer.
            unsafe {
                let m = &*m;
                (
                    std::slice::from_raw_parts(
                        m.buf_addr.cast::<u8>().add(m.data_off as usize),
                        m.data_len as usize,
                    ),
                    m.pkt_len as usize,
                    m.ol_flags,
                )
            }
        })
    }

    /// The packets, as mutable views of their first segment.
    #[inline]
    pub fn packets_mut(&mut self) -> impl Iterator<Item = PacketMut<'_>> {
        self.pkts[..self.len].iter().map(|&m| PacketMut {
            mbuf: m,
            _burst: PhantomData,
        })
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: pkts[..len] are owned by this burst and not yet freed.
            unsafe { sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr(), self.len as u32) };
        }
    }
}

/// One packet of a [`Burst`], borrowed mutably.
pub struct PacketMut<'a> {
    mbuf: *mut sys::rte_mbuf,
    _burst: PhantomData<&'a mut Burst>,
}

impl PacketMut<'_> {
    /// The bytes of the first segment (`rte_pktmbuf_mtod`, `data_len`).
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mbuf is owned by the borrowed burst; buf_addr + data_off
        // .. + data_len lies inside its data buffer, and the `&mut` borrow of
        // the burst makes this the only view of it.
        unsafe {
            let m = &*self.mbuf;
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }
}
