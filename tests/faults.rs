//! Failures on purpose (the `fault-injection` feature: `cargo test
//! --features fault-injection --test faults`; see src/dataplane/fault.rs).

#![cfg(feature = "fault-injection")]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn null_ports() -> Vec<String> {
    eal_args(
        "fault",
        "0@0,1@1",
        &["net_null0".into(), "net_null1".into()],
    )
}

/// A worker that panics is noticed by the main loop, which stops in order
/// and exits 1 with every mbuf back in the pool.
#[test]
fn a_panicking_worker_stops_ctfwd_cleanly() {
    for mode in ["io", "firewall"] {
        let started = Instant::now();
        let ctfwd = Running::start_with_env(
            &null_ports(),
            &[&format!("--forward-mode={mode}"), "--stats-period=0"],
            &[("CTFWD_FAULT", "worker-panic:100000")],
        );
        let out = ctfwd.wait(Duration::from_secs(30));
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{mode}:\n{stdout}\n{stderr}");
        assert!(
            stderr.contains("worker failed: lcore 1: injected fault"),
            "{mode}: the failed core and why:\n{stderr}"
        );
        assert!(
            stdout.contains("Mempool check: 0 of"),
            "{mode}: no mbuf lost:\n{stdout}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{mode}: noticed late"
        );
    }
}

/// TX queues that refuse everything: every packet is counted as dropped
/// and freed, and ctfwd stops cleanly when told to.
#[test]
fn refused_transmits_are_counted_and_freed() {
    let ctfwd = Running::start_with_env(
        &null_ports(),
        &["--forward-mode=io", "--stats-period=0"],
        &[("CTFWD_FAULT", "tx-refuse")],
    );
    std::thread::sleep(Duration::from_secs(1));
    ctfwd.signal("TERM");
    let out = ctfwd.wait(Duration::from_secs(30));
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert_clean_exit(&out);
    let all = "Accumulated forward statistics";
    let rx = field(&stdout, all, "RX-packets:");
    let (tx, dropped) = (
        field(&stdout, all, "TX-packets:"),
        field(&stdout, all, "TX-dropped:"),
    );
    assert!(rx > 0 && tx == 0 && dropped == rx, "{stdout}\n{stderr}");
    assert!(stdout.contains("Mempool check: 0 of"), "{stdout}");
}
