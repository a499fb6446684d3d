//! Handoff rings: DPDK's lock-free `rte_ring` in single-producer,
//! single-consumer mode, carrying mbufs from the worker that received them
//! to the worker that owns their connection. The two ends are separate
//! types, each `Send` but used by one worker only, so "single producer,
//! single consumer" is what the types allow, not a convention.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys as sys;
use sys::consts::{RING_F_SC_DEQ, RING_F_SP_ENQ};

use super::eal::last_error_string;
use super::mbuf::{Burst, MAX_BURST};
use super::Error;

/// The ring itself; freed, with any mbufs still in it, when both ends are
/// gone.
struct Ring(NonNull<sys::rte_ring>);

// SAFETY: an rte_ring lives in DPDK shared memory and may be used from any
// thread; the SP/SC discipline is kept by the end types below.
unsafe impl Send for Ring {}
// SAFETY: as above; the shared reference is only used for the final free.
unsafe impl Sync for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut left = Burst::default();
        // SAFETY: no end is left, so nothing else touches the ring; what it
        // holds are mbufs enqueued by the sender and now owned by `left`,
        // which frees them.
        unsafe {
            while left.fill_from_ring(self.0.as_ptr(), MAX_BURST as u16) > 0 {
                left.free_all();
            }
            sys::rte_ring_free(self.0.as_ptr());
        }
    }
}

/// The producer end.
pub struct HandoffSender(Arc<Ring>);
/// The consumer end.
pub struct HandoffReceiver(Arc<Ring>);

/// A ring of `size` (a power of two) mbufs; `name` must be unique in the
/// process.
pub fn handoff_ring(
    name: &str,
    size: u32,
    socket: i32,
) -> Result<(HandoffSender, HandoffReceiver), Error> {
    let cname = CString::new(name).map_err(|_| Error::msg("ring name has a NUL byte"))?;
    // SAFETY: cname is NUL-terminated and outlives the call; size is a
    // power of two (checked by DPDK, which returns null otherwise).
    let ring = unsafe {
        sys::rte_ring_create(cname.as_ptr(), size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ)
    };
    let ring = NonNull::new(ring).ok_or_else(|| {
        Error::msg(format!(
            "cannot create handoff ring {name}: {}",
            last_error_string()
        ))
    })?;
    let ring = Arc::new(Ring(ring));
    Ok((HandoffSender(Arc::clone(&ring)), HandoffReceiver(ring)))
}

impl HandoffSender {
    /// Moves every packet of `out` into the ring; what does not fit is
    /// freed. Returns (handed off, dropped). `out` is empty afterwards.
    #[inline]
    pub fn send(&mut self, out: &mut Burst) -> (usize, usize) {
        // SAFETY: this is the ring's only producer (`&mut self`, and the
        // sender is not Clone).
        unsafe { out.move_to_ring(self.0 .0.as_ptr()) }
    }
}

impl HandoffReceiver {
    /// Takes up to `max` packets from the ring into the empty `into`.
    #[inline]
    pub fn receive(&mut self, into: &mut Burst, max: u16) -> usize {
        #[cfg(feature = "fault-injection")]
        if super::fault::handoff_stalled() {
            return 0;
        }
        // SAFETY: this is the ring's only consumer (`&mut self`, not Clone).
        unsafe { into.fill_from_ring(self.0 .0.as_ptr(), max) }
    }
}
