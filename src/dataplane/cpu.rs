//! CPU helpers the packet path needs: the time-stamp counter and prefetch.

use crate::conntrack::Region;

/// Reads the time-stamp counter (`rte_rdtsc`, which is static inline in C).
#[inline(always)]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the time-stamp counter; no memory is touched.
    return unsafe { std::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through DPDK's portable wrapper.
    return unsafe { dpdk_sys::rte_rdtsc() };
}

/// Hints the CPU to load the cache line at `p` (`rte_prefetch0`).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// TSC ticks per second, measured against the monotonic clock over
/// `window` (for tools that run without EAL, which would calibrate it).
pub fn tsc_hz(window: std::time::Duration) -> u64 {
    let (t0, c0) = (std::time::Instant::now(), tsc());
    std::thread::sleep(window);
    let (dt, dc) = (t0.elapsed(), tsc() - c0);
    (dc as f64 / dt.as_secs_f64()) as u64
}

/// The kernel's transparent huge page mode (`always`, `madvise` or
/// `never`: the bracketed word of
/// `/sys/kernel/mm/transparent_hugepage/enabled`), if it can be read.
pub fn transparent_huge_pages() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

/// Asks the kernel to back `len` bytes at `p` with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), as DPDK's own memory is: a table of hundreds
/// of megabytes on 4 KiB pages costs a TLB miss on nearly every lookup.
/// Meant for memory not yet touched (a `Region` is reserved, unwritten
/// memory); failures (THP disabled) are ignored.
pub fn advise_huge_pages(r: Region<'_>) {
    const HUGE: usize = 2 << 20;
    // madvise wants a page-aligned start; advise the whole 2 MiB-aligned
    // span inside the region.
    let start = r.start().next_multiple_of(HUGE);
    let end = (r.start() + r.bytes()) & !(HUGE - 1);
    if end > start {
        // SAFETY: a Region exists only while its memory, one live
        // allocation, is exclusively borrowed, so the span is the caller's
        // own; MADV_HUGEPAGE changes how the kernel backs it, not its
        // contents or mappings.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}
