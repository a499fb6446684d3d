//! Failures on purpose (the `fault-injection` feature: `cargo test
//! --features fault-injection --test faults`): a worker that panics is
//! noticed by the main loop, which stops in order and exits 1 with every
//! mbuf back in the pool.

#![cfg(feature = "fault-injection")]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_panicking_worker_stops_ctfwd_cleanly() {
    // Inherited by the child; the only test in this binary.
    std::env::set_var("CTFWD_FAULT", "worker-panic:100000");
    for mode in ["io", "firewall"] {
        let started = Instant::now();
        let ctfwd = Running::start(
            &eal_args("fault", "0@0,1@1", &["net_null0".into(), "net_null1".into()]),
            &[&format!("--forward-mode={mode}"), "--stats-period=0"],
        );
        let out = ctfwd.wait(Duration::from_secs(30));
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{mode}:\n{stdout}\n{stderr}");
        assert!(
            stderr.contains("worker failed: lcore 1: injected fault"),
            "{mode}: the failed core and why:\n{stderr}"
        );
        assert!(stdout.contains("Mempool check: 0 of"), "{mode}: no mbuf lost:\n{stdout}");
        assert!(started.elapsed() < Duration::from_secs(20), "{mode}: noticed late");
    }
}
