//! Differential fuzzing of NAT's two writable views (see
//! `ctfwd::wire::compare_rewrites`): the fast one for a whole IPv4 TCP or
//! UDP packet against the general one. A packet they take or write
//! differently is a finding; so is a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ctfwd::wire::compare_rewrites(data) {
        panic!("the rewrite views disagree: {e}");
    }
});
