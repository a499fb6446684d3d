//! The DPDK Environment Abstraction Layer: initialisation, lcores, launch.

use std::ffi::{c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dpdk_sys as sys;

use super::Error;

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. At most one exists per process (DPDK's rule);
/// dropping it runs `rte_eal_cleanup`.
pub struct Eal {
    _not_send: std::marker::PhantomData<*const ()>,
    /// `rte_pdump_init` succeeded.
    pdump: bool,
}

impl Eal {
    /// Initialises EAL from `args` (`args[0]` is the program name, then EAL
    /// options), exactly as `rte_eal_init(argc, argv)` in testpmd.
    pub fn init(args: &[String]) -> Result<Eal, Error> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(Error::msg("EAL is already initialised in this process"));
        }
        let cstrings = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::msg("an EAL argument contains a NUL byte"))?;
        // EAL keeps pointers into argv for the life of the process (for
        // example the program name used in log lines), so argv is leaked
        // once, on purpose.
        let mut argv: Vec<*mut std::ffi::c_char> =
            cstrings.into_iter().map(|c| c.into_raw()).collect();
        let argc = argv.len() as c_int;
        let argv_ptr = argv.as_mut_ptr();
        std::mem::forget(argv);
        // SAFETY: argv holds argc valid, NUL-terminated strings that are never
        // freed; EAL may permute the pointer array, which we no longer read.
        let ret = unsafe { sys::rte_eal_init(argc, argv_ptr) };
        if ret < 0 {
            EAL_UP.store(false, Ordering::SeqCst);
            return Err(Error::msg(format!(
                "EAL initialisation failed: {}",
                last_error_string()
            )));
        }
        // Lets `dpdk-dumpcap` (a secondary process) capture the ports, as
        // every DPDK application that wants capture does. It needs the
        // multi-process channel, which `--no-shconf` and `--in-memory` turn
        // off: capture is then unavailable and the run goes on.
        let shared = !args
            .iter()
            .any(|a| a == "--no-shconf" || a == "--in-memory");
        // SAFETY: EAL is initialised; called once, from the main lcore.
        let pdump = shared && unsafe { sys::rte_pdump_init() } == 0;
        Ok(Eal {
            _not_send: std::marker::PhantomData,
            pdump,
        })
    }

    /// Whether `dpdk-dumpcap` can attach (`rte_pdump_init` succeeded).
    pub fn capture_ready(&self) -> bool {
        self.pdump
    }

    /// The worker lcores (every enabled lcore but the main one), in order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut lcores = Vec::new();
        let mut i = u32::MAX;
        loop {
            // SAFETY: EAL is initialised; the call only reads lcore config.
            i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
            if i >= sys::RTE_MAX_LCORE {
                return lcores;
            }
            lcores.push(i);
        }
    }

    /// Timestamp-counter ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised (it calibrated the TSC).
        unsafe { sys::rte_get_tsc_hz() }
    }

    /// Runs `job` on worker lcore `lcore` (`rte_eal_remote_launch`). A panic
    /// in the job is caught at the lcore boundary and returned by
    /// [`Launched::wait`], never unwound into C.
    pub fn launch<R, F>(&self, lcore: u32, job: F) -> Result<Launched<'_, R>, Error>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let slot: Arc<Mutex<Option<LaunchResult<R>>>> = Arc::new(Mutex::new(None));
        let result = Arc::clone(&slot);
        let task: Box<dyn FnOnce() + Send> = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(job)).map_err(panic_message);
            *result.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        });
        let arg = Box::into_raw(Box::new(task));
        // SAFETY: `lcore_entry` takes back ownership of `arg` exactly once; if
        // the launch fails the box is reclaimed here instead.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(lcore_entry), arg.cast(), lcore) };
        if ret != 0 {
            // SAFETY: the launch failed, so the lcore never saw `arg`.
            drop(unsafe { Box::from_raw(arg) });
            return Err(Error::msg(format!(
                "cannot launch on lcore {lcore}: {}",
                strerror(-ret)
            )));
        }
        Ok(Launched {
            lcore,
            slot,
            _eal: PhantomData,
        })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // Ports and launched jobs borrow the Eal, so they are gone by now,
        // unless a `Launched` was leaked (mem::forget): its job may still
        // run, and holds what it was given (an mbuf pool, say), so wait for
        // every lcore first. A leaked job that never returns hangs here
        // rather than running on over a cleaned-up EAL.
        // SAFETY: EAL is initialised; waiting is allowed from the main lcore.
        unsafe { sys::rte_eal_mp_wait_lcore() };
        if self.pdump {
            // SAFETY: initialised above; no capture can start any more.
            unsafe { sys::rte_pdump_uninit() };
        }
        // SAFETY: no port, lcore job or pool is left: ports borrow the Eal,
        // jobs have ended, and the pools were owned by ports and jobs.
        unsafe { sys::rte_eal_cleanup() };
        EAL_UP.store(false, Ordering::SeqCst);
    }
}

type LaunchResult<R> = Result<R, String>;

/// A job running on a worker lcore, which cannot outlive the EAL that
/// launched it.
pub struct Launched<'eal, R> {
    lcore: u32,
    slot: Arc<Mutex<Option<LaunchResult<R>>>>,
    _eal: PhantomData<&'eal Eal>,
}

impl<R> Launched<'_, R> {
    /// Whether the job has ended (returned or panicked), without waiting;
    /// its panic message if it panicked.
    pub fn ended(&self) -> Option<Result<(), String>> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(|r| {
            r.as_ref()
                .map(|_| ())
                .map_err(|e| format!("lcore {}: {e}", self.lcore))
        })
    }

    /// Waits for the job to return (`rte_eal_wait_lcore`); `Err` carries the
    /// message of a panic in the job.
    pub fn wait(self) -> Result<R, String> {
        // SAFETY: EAL is up (a Launched only exists after a launch).
        unsafe { sys::rte_eal_wait_lcore(self.lcore) };
        let outcome = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        outcome.unwrap_or_else(|| Err(format!("lcore {} returned no result", self.lcore)))
    }
}

extern "C" fn lcore_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Box<dyn FnOnce>> leaked by `Eal::launch`, handed
    // to this lcore once.
    let task = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
    // The task catches its own panics; this outer guard only makes sure
    // nothing ever unwinds into EAL's C frames.
    match catch_unwind(AssertUnwindSafe(task)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// DPDK's text for an errno value (`rte_strerror`).
pub(crate) fn strerror(errnum: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or per-lcore buffer
    // holding a NUL-terminated string; we copy it out at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(errnum)) }
        .to_string_lossy()
        .into_owned()
}

/// The text of this thread's `rte_errno`.
pub(crate) fn last_error_string() -> String {
    // SAFETY: reads this thread's rte_errno through the C shim.
    strerror(unsafe { sys::ctfwd_rte_errno() })
}

/// The DPDK version string, e.g. "DPDK 22.11.11".
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a static NUL-terminated string; it needs no EAL.
    unsafe { CStr::from_ptr(sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}
