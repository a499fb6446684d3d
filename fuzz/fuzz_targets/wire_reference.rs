//! Differential fuzzing of `wire` against etherparse's lax slicer (see
//! `ctfwd::wire::reference`): a frame the two read differently, for no
//! reason the comparison names, is a finding; so is a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ctfwd::wire::reference::compare(data) {
        panic!("wire and etherparse disagree: {e}");
    }
});
