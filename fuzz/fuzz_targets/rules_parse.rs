//! Coverage-guided fuzzing of the `--rules` parser (see `run_rule_text`):
//! a panic or a broken invariant is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ctfwd::rules::run_rule_text(data) {
        panic!("invariant broken: {e}");
    }
});
