//! The fuzz targets' seeds and every input a fuzzer ever found a problem
//! with (`fuzz/regressions/`) replayed through the same drivers, so a
//! finding stays fixed.

use std::path::Path;

use ctfwd::capture::run_capture_bytes;
use ctfwd::conntrack::{run_byte_sequence, run_fragment_sequence};
use ctfwd::rules::run_rule_text;

/// Replays `fuzz/{seeds,regressions}/TARGET/*`; returns how many inputs.
fn replay(target: &str, run: fn(&[u8]) -> Result<(), String>) -> usize {
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

#[test]
fn seeds_and_regressions_keep_invariants() {
    let n = replay("packet_sequence", run_byte_sequence);
    assert!(n >= 3, "the committed seeds were replayed ({n} inputs)");
}

#[test]
fn fragment_seeds_and_regressions_keep_invariants() {
    let n = replay("fragment_sequence", run_fragment_sequence);
    assert!(n >= 3, "the committed seeds were replayed ({n} inputs)");
}

#[test]
fn rules_seeds_and_regressions_keep_invariants() {
    let n = replay("rules_parse", run_rule_text);
    assert!(n >= 2, "the committed seeds were replayed ({n} inputs)");
}

#[test]
fn capture_seeds_and_regressions_keep_invariants() {
    let n = replay("capture_read", run_capture_bytes);
    assert!(n >= 3, "the committed seeds were replayed ({n} inputs)");
}
