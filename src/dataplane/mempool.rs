//! Packet-buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::CString;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::eal::{last_error_string, Eal};
use super::Error;

/// An mbuf pool. Ports hold it through an `Arc`, so it outlives every queue
/// that can hold its buffers.
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
    size: u32,
}

// SAFETY: rte_mempool is multi-producer/multi-consumer safe; the per-lcore
// caches are keyed by the calling lcore, not by this handle.
unsafe impl Send for Mempool {}
// SAFETY: as above; all methods taking &self are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with a per-lcore cache of `cache` and
    /// `data_room` bytes of data each (headroom included), on `socket`.
    pub fn new(
        _eal: &Eal,
        name: &str,
        size: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, Error> {
        let cname = CString::new(name).map_err(|_| Error::msg("pool name contains NUL"))?;
        // SAFETY: name is a valid C string; EAL is initialised (the caller
        // holds the Eal).
        let raw = unsafe {
            sys::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, data_room, socket)
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw, size })
            .ok_or_else(|| {
                Error::msg(format!(
                    "cannot create mbuf pool of {size} mbufs (cache {cache}): {} \
                     (lower --total-num-mbufs or raise EAL -m)",
                    last_error_string()
                ))
            })
    }

    /// Number of mbufs the pool was created with.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Mbufs currently taken from the pool (held by queues, workers or leaked).
    pub fn in_use(&self) -> u32 {
        // SAFETY: raw is a live pool; the count walks the per-lcore caches.
        unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Takes one mbuf from the pool, if it has any.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn alloc(&self) -> Option<super::mbuf::HeldMbuf> {
        // SAFETY: the pool is alive (borrowed); rte_pktmbuf_alloc is safe
        // from any lcore and returns null when the pool is empty.
        let m = unsafe { sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a freshly allocated mbuf is owned by nobody else.
        NonNull::new(m).map(|m| unsafe { super::mbuf::HeldMbuf::from_raw(m) })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: no port holds the pool any more (they hold an Arc to it).
        unsafe { sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}
