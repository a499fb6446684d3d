//! Coverage-guided fuzzing of the connection tracker over packet sequences:
//! any byte string is a sequence of frames (see `run_byte_sequence`); a
//! panic or a broken invariant is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ctfwd::conntrack::run_byte_sequence(data) {
        panic!("invariant broken: {e}");
    }
});
