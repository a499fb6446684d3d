//! The fuzz target's seeds and every input a fuzzer ever found a problem
//! with (`fuzz/regressions/`) replayed through the same driver, so a
//! finding stays fixed.

use std::path::Path;

use ctfwd::conntrack::run_byte_sequence;

#[test]
fn seeds_and_regressions_keep_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds/packet_sequence", "regressions/packet_sequence"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "md") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = run_byte_sequence(&data) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 3, "the committed seeds were replayed ({n} inputs)");
}
