//! Coverage-guided fuzzing of the pcap and pcapng reader that `ctfwd
//! trace` uses (see `run_capture_bytes`): a panic, a hang or a broken
//! invariant is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ctfwd::capture::run_capture_bytes(data) {
        panic!("invariant broken: {e}");
    }
});
