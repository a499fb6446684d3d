//! Bursts of received packets, owned: every mbuf is either transmitted or
//! freed, never dropped on the floor.

use std::marker::PhantomData;

use dpdk_sys::{self as sys, consts};

use super::cpu::prefetch;

/// The largest burst ctfwd handles (testpmd's `MAX_PKT_BURST`).
pub const MAX_BURST: usize = 512;

/// The data of one mbuf segment (`rte_pktmbuf_mtod`, `data_len`).
///
/// # Safety
/// `m` is a valid mbuf that stays alive, unchanged, for `'a`.
#[inline(always)]
unsafe fn segment<'a>(m: *const sys::rte_mbuf) -> &'a [u8] {
    // SAFETY: by the contract, m is valid for 'a, and buf_addr + data_off
    // .. + data_len lies inside its data buffer.
    unsafe {
        let m = &*m;
        std::slice::from_raw_parts(
            m.buf_addr.cast::<u8>().add(m.data_off as usize),
            m.data_len as usize,
        )
    }
}

/// What becomes of one packet of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Transmitted with the burst.
    Pass,
    /// Freed (a filtering policy dropped it).
    Drop,
    /// Handed to the worker that owns its connection.
    Handoff(u16),
    /// Taken out of the burst: a fragment held for reassembly.
    Held,
}

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

    /// Fills this (empty) burst with `n` fresh one-segment mbufs from `pool`
    /// (`rte_pktmbuf_alloc_bulk`), all or none; whether it could. Their
    /// length is 0 until `PacketMut::resize` sets it (a generator's TX
    /// path, as testpmd's `txonly` builds its bursts).
    pub fn alloc(&mut self, pool: &super::Mempool, n: usize) -> bool {
        assert!(self.is_empty() && n <= MAX_BURST);
        // SAFETY: pkts has room for MAX_BURST >= n pointers; the pool is
        // alive (borrowed) and the call fills all n or none (returns < 0).
        let ok =
            unsafe { sys::rte_pktmbuf_alloc_bulk(pool.as_ptr(), self.pkts.as_mut_ptr(), n as u32) }
                == 0;
        if ok {
            self.len = n;
        }
        ok
    }

    /// Transmits the burst on `queue` of `port`; what the queue does not take
    /// is freed. Returns (sent, dropped).
    #[inline]
    pub fn tx(&mut self, port: u16, queue: u16) -> (usize, usize) {
        let len = self.len;
        let sent = if tx_refused() {
            0
        } else {
            // SAFETY: pkts[..len] are mbufs this burst owns; the driver
            // takes ownership of the first `sent` of them.
            let sent =
                unsafe { sys::rte_eth_tx_burst(port, queue, self.pkts.as_mut_ptr(), len as u16) };
            usize::from(sent)
        };
        if sent < len {
            // SAFETY: pkts[sent..len] are still ours and are freed once.
            unsafe {
                sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(sent), (len - sent) as u32)
            };
        }
        self.len = 0;
        (sent, len - sent)
    }

    /// Sorts the burst out by `fates` (one per packet; missing ones are
    /// `Pass`): passing packets stay, in order; dropped ones are freed;
    /// handed-off ones move, in order, to `outboxes[worker]`.
    #[inline]
    pub fn sort_out(&mut self, fates: &[Fate], outboxes: &mut [Burst]) {
        // Left uninitialised: zeroing 4 KB per burst showed in profiles
        // (1.4% of firewall mode's cycles at 1k flows).
        let mut dropped =
            [const { std::mem::MaybeUninit::<*mut sys::rte_mbuf>::uninit() }; MAX_BURST];
        // In established traffic every packet passes and nothing moves. A
        // check without an early exit, which the compiler vectorises, says
        // so in a few instructions a burst; the loop below rewrote every
        // pointer, 17 instructions a packet in firewall mode, and a scan
        // for the first packet that does not pass still took 12.
        let fates = &fates[..fates.len().min(self.len)];
        if fates.iter().fold(true, |all, &f| all & (f == Fate::Pass)) {
            return;
        }
        let (mut kept, mut n_dropped) = (0, 0);
        for i in 0..self.len {
            let m = self.pkts[i];
            match fates.get(i).copied().unwrap_or(Fate::Pass) {
                Fate::Pass => {
                    self.pkts[kept] = m;
                    kept += 1;
                }
                Fate::Drop => {
                    dropped[n_dropped].write(m);
                    n_dropped += 1;
                }
                Fate::Handoff(w) => {
                    // An outbox is flushed after every burst, so it has room
                    // for a whole burst.
                    outboxes[usize::from(w)].push_raw(m);
                }
                // Already taken out (`take`): the slot is empty.
                Fate::Held => {}
            }
        }
        self.len = kept;
        if n_dropped > 0 {
            // SAFETY: the first n_dropped entries were written above; each
            // dropped mbuf was owned by this burst and is no longer listed
            // in it, so it is freed exactly once.
            unsafe {
                sys::rte_pktmbuf_free_bulk(
                    dropped.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                    n_dropped as u32,
                )
            };
        }
    }

    /// Whether the burst is full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Appends an owned mbuf; the burst must not be full.
    #[inline]
    fn push_raw(&mut self, m: *mut sys::rte_mbuf) {
        assert!(self.len < MAX_BURST, "burst overflow");
        self.pkts[self.len] = m;
        self.len += 1;
    }

    /// Appends a held mbuf (ownership moves into the burst).
    #[inline]
    pub fn push(&mut self, m: HeldMbuf) {
        self.push_raw(m.into_raw());
    }

    /// Takes packet `i` out of the burst, leaving its slot empty: its fate
    /// must then be `Fate::Held`, so that `sort_out` skips the slot.
    #[inline]
    pub fn take(&mut self, i: usize) -> HeldMbuf {
        assert!(i < self.len);
        let m = std::mem::replace(&mut self.pkts[i], std::ptr::null_mut());
        HeldMbuf(std::ptr::NonNull::new(m).expect("packet taken twice"))
    }

    /// Transmits every packet on `queue` of the port `route` gives for the
    /// port it arrived on (`mbuf.port`), in order within each port; what a
    /// queue does not take is freed. Returns (sent, dropped).
    #[inline]
    pub fn tx_routed(&mut self, queue: u16, route: impl Fn(u16) -> u16) -> (usize, usize) {
        if self.is_empty() {
            // Everything was dropped (a filtering policy).
            return (0, 0);
        }
        let first = route(self.arrival_port(0));
        if (1..self.len).all(|i| route(self.arrival_port(i)) == first) {
            // The usual case: one way out for the whole burst.
            return self.tx(first, queue);
        }
        let (mut sent, mut dropped) = (0, 0);
        let mut later = Burst::default();
        while self.len > 0 {
            // Send the packets bound where the first one goes and keep the
            // rest for the next round; there are few ports, so few rounds.
            let port = route(self.arrival_port(0));
            let mut kept = 0;
            for i in 0..self.len {
                let m = self.pkts[i];
                if route(self.arrival_port(i)) == port {
                    self.pkts[kept] = m;
                    kept += 1;
                } else {
                    later.pkts[later.len] = m;
                    later.len += 1;
                }
            }
            self.len = kept;
            let (s, d) = self.tx(port, queue);
            sent += s;
            dropped += d;
            std::mem::swap(self, &mut later);
        }
        (sent, dropped)
    }

    /// The port packet `i` was received on.
    #[inline]
    fn arrival_port(&self, i: usize) -> u16 {
        assert!(i < self.len);
        // SAFETY: pkts[i] is an mbuf owned by this burst.
        unsafe { (*self.pkts[i]).port }
    }

    /// Enqueues the whole burst on `ring`, freeing what does not fit.
    /// Returns (enqueued, freed); the burst is empty afterwards.
    ///
    /// # Safety
    /// `ring` is a live mbuf ring and the caller is its only producer.
    #[inline]
    pub(super) unsafe fn move_to_ring(&mut self, ring: *mut sys::rte_ring) -> (usize, usize) {
        let len = self.len;
        if len == 0 {
            return (0, 0);
        }
        // SAFETY: pkts[..len] are owned mbufs; those enqueued now belong to
        // the ring (the caller's contract makes the SP enqueue sound).
        let n = unsafe {
            sys::rte_ring_sp_enqueue_burst(
                ring,
                self.pkts.as_ptr().cast(),
                len as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        if n < len {
            // SAFETY: pkts[n..len] are still ours and are freed once.
            unsafe { sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(n), (len - n) as u32) };
        }
        self.len = 0;
        (n, len - n)
    }

    /// Fills this empty burst with up to `max` mbufs from `ring`.
    ///
    /// # Safety
    /// `ring` is a live mbuf ring and the caller is its only consumer.
    #[inline]
    pub(super) unsafe fn fill_from_ring(&mut self, ring: *mut sys::rte_ring, max: u16) -> usize {
        debug_assert!(self.is_empty());
        // SAFETY: pkts has room for MAX_BURST pointers; the dequeued mbufs
        // now belong to this burst (the caller's contract makes the SC
        // dequeue sound).
        let n = unsafe {
            sys::rte_ring_sc_dequeue_burst(
                ring,
                self.pkts.as_mut_ptr().cast(),
                u32::from(max).min(MAX_BURST as u32),
                std::ptr::null_mut(),
            )
        };
        self.len = n as usize;
        self.len
    }

    /// Frees every packet (the slots `take` emptied hold none).
    #[inline]
    pub fn free_all(&mut self) {
        // Close the gaps `take` leaves first.
        let mut n = 0;
        for i in 0..self.len {
            if !self.pkts[i].is_null() {
                self.pkts[n] = self.pkts[i];
                n += 1;
            }
        }
        if n > 0 {
            // SAFETY: pkts[..n] are owned by this burst and freed once.
            unsafe { sys::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr(), n as u32) };
        }
        self.len = 0;
    }

    /// Prefetches the packet data of the first `n` packets (l3fwd's
    /// `PREFETCH_OFFSET` pattern: start the loads before the headers are read).
    #[inline]
    pub fn prefetch_data(&self, n: usize) {
        for &m in self.pkts[..n.min(self.len)].iter().filter(|m| !m.is_null()) {
            // SAFETY: m is a valid mbuf of this burst; reading its header
            // fields is sound, and the address is only used as a hint.
            let data = unsafe { (*m).buf_addr.cast::<u8>().add((*m).data_off as usize) };
            prefetch(data);
        }
    }

    /// Packet `i`, as (first segment's bytes, whole packet length,
    /// offload flags, port it arrived on).
    #[inline]
    pub fn packet(&self, i: usize) -> (&[u8], usize, u64, u16) {
        assert!(i < self.len && !self.pkts[i].is_null());
        // SAFETY: the mbuf is owned by this burst, which is borrowed for the
        // slice's lifetime.
        unsafe {
            let m = &*self.pkts[i];
            (segment(m), m.pkt_len as usize, m.ol_flags, m.port)
        }
    }

    /// The segments of packet `i` after its first (an mbuf chain's `next`
    /// links), each as its bytes.
    #[inline]
    pub fn later_segments(&self, i: usize) -> impl Iterator<Item = &[u8]> {
        assert!(i < self.len && !self.pkts[i].is_null());
        // SAFETY: the packet is owned by this burst, which is borrowed for
        // the iterator's lifetime; `next` is null or a valid segment.
        let mut seg = unsafe { (*self.pkts[i]).next };
        std::iter::from_fn(move || {
            if seg.is_null() {
                return None;
            }
            // SAFETY: seg is a segment of the packet, owned by the burst
            // borrowed for the iterator's lifetime.
            unsafe {
                let m = seg;
                seg = (*m).next;
                Some(segment(m))
            }
        })
    }

    /// Copies packet `i`, all its segments, into `out` (at most
    /// `out`'s capacity: a longer packet is copied cut short, and then
    /// parses as it would from a capture with a snap length).
    pub fn copy_out(&self, i: usize, out: &mut Vec<u8>) {
        let (first, ..) = self.packet(i);
        out.clear();
        let cap = out.capacity();
        for seg in std::iter::once(first).chain(self.later_segments(i)) {
            let room = cap - out.len();
            out.extend_from_slice(&seg[..seg.len().min(room)]);
        }
    }

    /// Moves every packet out, in order, handing `f` its index, its fate
    /// and the mbuf (slots emptied by `take` are skipped); the burst is
    /// empty afterwards.
    #[inline]
    pub fn drain_with(&mut self, fates: &[Fate], mut f: impl FnMut(usize, Fate, HeldMbuf)) {
        let len = std::mem::take(&mut self.len);
        for i in 0..len {
            if let Some(m) = std::ptr::NonNull::new(self.pkts[i]) {
                f(i, fates.get(i).copied().unwrap_or(Fate::Pass), HeldMbuf(m));
            }
        }
    }

    /// Packet `i`, borrowed mutably.
    #[inline]
    pub fn packet_mut(&mut self, i: usize) -> PacketMut<'_> {
        assert!(i < self.len && !self.pkts[i].is_null());
        PacketMut {
            mbuf: self.pkts[i],
            _burst: PhantomData,
        }
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

/// Whether an injected fault makes TX queues refuse everything (never, in
/// a build without the `fault-injection` feature).
#[inline(always)]
fn tx_refused() -> bool {
    #[cfg(feature = "fault-injection")]
    return super::fault::tx_refuses();
    #[cfg(not(feature = "fault-injection"))]
    false
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// An mbuf owned on its own, outside any burst (a fragment waiting for
/// the rest of its datagram). Dropping it frees the mbuf, so a datagram
/// that times out or is refused gives its mbufs back by going away.
pub struct HeldMbuf(std::ptr::NonNull<sys::rte_mbuf>);

impl HeldMbuf {
    /// Takes ownership of `m`.
    ///
    /// # Safety
    /// `m` must be a valid mbuf owned by nobody else; it is freed when the
    /// value is dropped.
    #[cfg(feature = "fault-injection")]
    pub(super) unsafe fn from_raw(m: std::ptr::NonNull<sys::rte_mbuf>) -> HeldMbuf {
        HeldMbuf(m)
    }

    /// Gives the mbuf up, to a burst.
    fn into_raw(self) -> *mut sys::rte_mbuf {
        let m = self.0.as_ptr();
        std::mem::forget(self);
        m
    }
}

impl HeldMbuf {
    /// The first segment's bytes, writable (see `PacketMut::data_mut`).
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mbuf is owned by this value, borrowed mutably for the
        // slice's lifetime.
        unsafe { first_segment_mut(self.0.as_ptr()) }
    }
}

impl crate::conntrack::HeldFragment for HeldMbuf {
    /// The first segment's bytes (fragments are at most one MTU and sit in
    /// one segment; a multi-segment fragment is refused as cut short).
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mbuf is owned by this value, which is borrowed for the
        // slice's lifetime.
        unsafe { segment(self.0.as_ptr()) }
    }
}

impl Drop for HeldMbuf {
    fn drop(&mut self) {
        // SAFETY: the mbuf is owned by this value and freed once.
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// One packet of a [`Burst`], borrowed mutably.
pub struct PacketMut<'a> {
    mbuf: *mut sys::rte_mbuf,
    _burst: PhantomData<&'a mut Burst>,
}

impl PacketMut<'_> {
    /// The bytes of the first segment (`rte_pktmbuf_mtod`, `data_len`).
    ///
    /// Panics if the data buffer may be seen through another mbuf (a clone,
    /// an external buffer or a reference count above one): no PMD receives
    /// such a packet, and writing to it would change another's bytes.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mbuf is owned by the burst, borrowed mutably for the
        // slice's lifetime.
        unsafe { first_segment_mut(self.mbuf) }
    }

    /// Makes a one-segment packet `len` bytes long, within its buffer
    /// (`rte_pktmbuf_append` or `_trim`); whether it could (a packet in
    /// several segments, or without the tailroom, cannot).
    pub fn resize(&mut self, len: usize) -> bool {
        // SAFETY: the mbuf is owned by the borrowed burst; reading its
        // header fields is sound.
        let (segs, off, room) = unsafe {
            let m = &*self.mbuf;
            (m.nb_segs, usize::from(m.data_off), usize::from(m.buf_len))
        };
        if segs != 1 || off + len > room || len > usize::from(u16::MAX) {
            return false;
        }
        // SAFETY: as above, and borrowed mutably: one segment whose data
        // stays within its buffer (checked above), so data_len and
        // pkt_len may both be `len`.
        unsafe {
            (*self.mbuf).data_len = len as u16;
            (*self.mbuf).pkt_len = len as u32;
        }
        true
    }

    /// The whole packet's length, all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        // SAFETY: the mbuf is owned by the borrowed burst; reading a header
        // field is sound.
        unsafe { (*self.mbuf).pkt_len as usize }
    }
}

/// The bytes of `m`'s first segment (`rte_pktmbuf_mtod`, `data_len`),
/// writable. Panics if the data buffer may be seen through another mbuf
/// (a clone, an external buffer or a reference count above one).
///
/// # Safety
/// `m` must be a valid mbuf that the caller owns and has borrowed mutably
/// for the returned lifetime.
#[inline]
unsafe fn first_segment_mut<'a>(m: *mut sys::rte_mbuf) -> &'a mut [u8] {
    // SAFETY: m is valid (the caller's contract); reading header fields is
    // sound.
    let (flags, refcnt) = unsafe { ((*m).ol_flags, (*m).refcnt) };
    assert!(
        flags & (consts::RTE_MBUF_F_INDIRECT | consts::RTE_MBUF_F_EXTERNAL) == 0 && refcnt == 1,
        "a received mbuf shares its data buffer (ol_flags {flags:#x}, refcnt {refcnt})"
    );
    // SAFETY: the mbuf is direct with one reference (checked above), so
    // buf_addr + data_off .. + data_len lies inside its own data buffer,
    // and the caller's exclusive borrow makes this the only view of it.
    unsafe {
        let m = &*m;
        std::slice::from_raw_parts_mut(
            m.buf_addr.cast::<u8>().add(m.data_off as usize),
            m.data_len as usize,
        )
    }
}
