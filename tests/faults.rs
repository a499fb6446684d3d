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

/// A pool with nothing left (every mbuf held for 300 ms): the PMDs'
/// refills fail and are counted where the driver counts them (net_pcap:
/// RX-nombufs, each a frame lost; net_null just returns nothing), nothing
/// crashes, forwarding resumes once the mbufs come back, and every mbuf is
/// back at the end.
#[test]
fn an_empty_pool_is_survived_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let frames = seed_udp_frames();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, &frames);
    let vdevs = [
        pcap_vdev(0, &[input], &[dir.path().join("out.pcap")]),
        "net_null1".into(),
    ];
    for mode in ["io", "firewall"] {
        let ctfwd = Running::start_with_env(
            &eal_args("fault-pool", "0@0,1@1", &vdevs),
            &[&format!("--forward-mode={mode}"), "--stats-period=0"],
            &[("CTFWD_FAULT", "pool-drain:300")],
        );
        std::thread::sleep(Duration::from_secs(1));
        ctfwd.signal("TERM");
        let out = ctfwd.wait(Duration::from_secs(30));
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        assert_clean_exit(&out);
        assert!(
            stderr.contains("injected fault: a worker holds"),
            "{stderr}"
        );
        let port0 = "Forward statistics for port 0";
        let (rx, nombuf) = (
            field(&stdout, port0, "RX-packets:"),
            field(&stdout, port0, "RX-nombufs:"),
        );
        assert!(nombuf > 0, "{mode}: no failed refill counted:\n{stdout}");
        assert_eq!(rx + nombuf, frames.len() as u64, "{mode}:\n{stdout}");
        let port1 = "Forward statistics for port 1";
        assert!(
            field(&stdout, port1, "RX-packets:") > 0,
            "{mode}: forwarding never resumed:\n{stdout}"
        );
        assert!(stdout.contains("Mempool check: 0 of"), "{mode}: {stdout}");
    }
}

/// Handoff rings nobody drains: each fills to its capacity, every later
/// handoff is refused, freed and counted, the packets a worker owns itself
/// still pass, and the mbufs left in the rings are freed at the end.
#[test]
fn full_handoff_rings_drop_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // Enough conversations that far more than one ring's worth (1,023
    // packets) must be handed over.
    let (inside, outside) = ctfwd::synth::sample_conversations(1000, 3);
    write_pcap(&p("in0.pcap"), &inside);
    write_pcap(&p("in1.pcap"), &outside);
    let vdevs = [
        pcap_vdev(0, &[p("in0.pcap")], &[p("o0w0.pcap"), p("o0w1.pcap")]),
        pcap_vdev(1, &[p("in1.pcap")], &[p("o1w0.pcap"), p("o1w1.pcap")]),
    ];
    let ctfwd = Running::start_with_env(
        &eal_args("fault-ring", "0@0,1@0,2@1", &vdevs),
        &[
            "--idle-exit=0.5",
            "--forward-mode=conntrack",
            "--nb-cores=2",
        ],
        &[("CTFWD_FAULT", "handoff-stall")],
    );
    let out = ctfwd.wait(Duration::from_secs(60));
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert_clean_exit(&out);
    let handoff = |k| core_sum(&stdout, "handoff:", k);
    assert_eq!(handoff("handoff_rx="), 0, "{stdout}\n{stderr}");
    // Two rings (one each way), each holding at most size - 1.
    let sent = handoff("handoff_tx=");
    assert!(sent > 1023 && sent <= 2 * 1023, "{stdout}");
    let dropped = handoff("handoff_drop=");
    assert!(dropped > 0, "{stdout}");
    let tracked: u64 = ["NEW=", "ESTABLISHED=", "ESTABLISHED_REPLY="]
        .iter()
        .map(|k| core_sum(&stdout, "conntrack:", k))
        .sum();
    let received = (inside.len() + outside.len()) as u64;
    assert_eq!(tracked + sent + dropped, received, "{stdout}");
    assert!(stdout.contains("Mempool check: 0 of"), "{stdout}");
}
