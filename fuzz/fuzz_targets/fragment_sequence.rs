//! Coverage-guided fuzzing of IP reassembly over fragment sequences: any
//! byte string is a sequence of fragments (see `run_fragment_sequence`);
//! a panic or a broken invariant is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ctfwd::conntrack::run_fragment_sequence(data) {
        panic!("invariant broken: {e}");
    }
});
