//! The fuzz targets' seeds and every input a fuzzer ever found a problem
//! with (`fuzz/regressions/`) replayed through the same drivers, so a
//! finding stays fixed.

use std::path::Path;

use ctfwd::capture::run_capture_bytes;
use ctfwd::conntrack::{run_byte_sequence, run_fragment_sequence};
use ctfwd::rules::run_rule_text;
use ctfwd::wire::compare_rewrites;

/// A fuzz target's driver: `Err` is a broken invariant.
type Driver = fn(&[u8]) -> Result<(), String>;

/// Replays `fuzz/{seeds,regressions}/TARGET/*`; returns how many inputs.
fn replay(target: &str, run: Driver) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "md") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = run(&data) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
    }
    n
}

/// Every fuzz target's driver, with how many seeds it has committed.
const TARGETS: [(&str, Driver, usize); 5] = [
    ("packet_sequence", run_byte_sequence, 6),
    ("fragment_sequence", run_fragment_sequence, 3),
    ("rules_parse", run_rule_text, 2),
    ("capture_read", run_capture_bytes, 3),
    ("rewrite_views", compare_rewrites, 3),
];

#[test]
fn seeds_and_regressions_keep_invariants() {
    for (target, run, seeds) in TARGETS {
        let n = replay(target, run);
        assert!(
            n >= seeds,
            "{target}: the committed seeds were replayed ({n} inputs)"
        );
    }
}

/// The differential target's inputs (it needs the `etherparse` feature,
/// which the build without DPDK in `scripts/test` turns on).
#[cfg(feature = "etherparse")]
#[test]
fn wire_reference_inputs_agree() {
    let n = replay("wire_reference", |frame| {
        ctfwd::wire::reference::compare(frame).map(|_| ())
    });
    assert!(n >= 4, "the committed seeds were replayed ({n} inputs)");
}
