//! End to end through the real binary on DPDK's `net_pcap`, `net_null` and
//! `net_ring` virtual devices: what comes out of each port, exits, errors.

#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use common::*;
use ctfwd::synth::sample_conversations;

const IDLE: &str = "--idle-exit=0.5";

/// Replays the sample traffic through ports 0 and 1 with `app` flags and
/// returns (frames out of port 1, frames out of port 0, stdout).
fn replay(test: &str, app: &[&str]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (inside, outside) = sample_conversations(12, 3);
    let p = |n: &str| dir.path().join(n);
    write_pcap(&p("in0.pcap"), &inside);
    write_pcap(&p("in1.pcap"), &outside);
    let vdevs = [
        pcap_vdev(0, &[p("in0.pcap")], &[p("out0.pcap")]),
        pcap_vdev(1, &[p("in1.pcap")], &[p("out1.pcap")]),
    ];
    let mut flags = vec![IDLE];
    flags.extend_from_slice(app);
    let o = run(&eal_args(test, "0@0,1@1", &vdevs), &flags);
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(
        field(&out, "Accumulated forward statistics", "RX-packets:"),
        72
    );
    assert_eq!(
        field(&out, "Accumulated forward statistics", "TX-packets:"),
        72
    );
    (read_pcap(&p("out1.pcap")), read_pcap(&p("out0.pcap")), out)
}

#[test]
fn io_mode_forwards_frames_unchanged() {
    let (inside, outside) = sample_conversations(12, 3);
    let (out1, out0, _) = replay("io", &["--forward-mode=io"]);
    assert_eq!(out1, inside, "port 0 -> port 1 must be byte-identical");
    assert_eq!(out0, outside, "port 1 -> port 0 must be byte-identical");
}

#[test]
fn mac_mode_rewrites_both_addresses() {
    let (inside, outside) = sample_conversations(12, 3);
    let peer = [0x02, 0, 0, 0, 0, 0xaa];
    let (out1, out0, stdout) = replay(
        "mac",
        &["--forward-mode=mac", "--eth-peer=1,02:00:00:00:00:AA"],
    );
    let mac0 = port_mac(&stdout, 0);
    let mac1 = port_mac(&stdout, 1);
    for (sent, got) in inside.iter().zip(&out1) {
        assert_eq!(got[0..6], peer, "destination is port 1's --eth-peer");
        assert_eq!(got[6..12], mac1, "source is port 1's own MAC");
        assert_eq!(got[12..], sent[12..], "the rest is untouched");
    }
    for (sent, got) in outside.iter().zip(&out0) {
        assert_eq!(
            got[0..6],
            [2, 0, 0, 0, 0, 0],
            "testpmd's default peer for port 0"
        );
        assert_eq!(got[6..12], mac0);
        assert_eq!(got[12..], sent[12..]);
    }
    assert_eq!((out1.len(), out0.len()), (inside.len(), outside.len()));
}

#[test]
fn macswap_mode_swaps_addresses() {
    let (inside, _) = sample_conversations(12, 3);
    let (out1, _, _) = replay("macswap", &["--forward-mode=macswap"]);
    assert_eq!(out1.len(), inside.len());
    for (sent, got) in inside.iter().zip(&out1) {
        assert_eq!(got[0..6], sent[6..12]);
        assert_eq!(got[6..12], sent[0..6]);
        assert_eq!(got[12..], sent[12..]);
    }
}

#[test]
fn two_queues_on_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inside, outside) = sample_conversations(16, 4);
    let half = inside.len() / 2;
    // Queue q of each port reads its own file; it must come out, unchanged,
    // on queue q of the peer port.
    write_pcap(&p("in0q0.pcap"), &inside[..half]);
    write_pcap(&p("in0q1.pcap"), &inside[half..]);
    write_pcap(&p("in1q0.pcap"), &outside[..half]);
    write_pcap(&p("in1q1.pcap"), &outside[half..]);
    let vdevs = [
        pcap_vdev(
            0,
            &[p("in0q0.pcap"), p("in0q1.pcap")],
            &[p("out0q0.pcap"), p("out0q1.pcap")],
        ),
        pcap_vdev(
            1,
            &[p("in1q0.pcap"), p("in1q1.pcap")],
            &[p("out1q0.pcap"), p("out1q1.pcap")],
        ),
    ];
    // Three lcores on two CPUs: the main lcore mostly sleeps.
    let o = run(
        &eal_args("2q", "0@0,1@0,2@1", &vdevs),
        &[IDLE, "--rxq=2", "--txq=2", "--nb-cores=2"],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(out.contains("cores=2 - streams=4"), "{out}");
    assert!(
        out.contains("Logical Core 1 forwards packets on 2 streams"),
        "{out}"
    );
    assert!(
        out.contains("Logical Core 2 forwards packets on 2 streams"),
        "{out}"
    );
    assert_eq!(read_pcap(&p("out1q0.pcap")), inside[..half]);
    assert_eq!(read_pcap(&p("out1q1.pcap")), inside[half..]);
    assert_eq!(read_pcap(&p("out0q0.pcap")), outside[..half]);
    assert_eq!(read_pcap(&p("out0q1.pcap")), outside[half..]);
}

#[test]
fn sigterm_stops_cleanly_with_no_mbuf_in_use() {
    let r = Running::start(
        &eal_args("null", "0@0,1@1", &["net_null0".into(), "net_null1".into()]),
        &["--stats-period=1", "--record-core-cycles"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    r.signal("TERM");
    let o = r.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    let rx = field(&out, "Accumulated forward statistics", "RX-packets:");
    let tx = field(&out, "Accumulated forward statistics", "TX-packets:");
    let dropped = field(&out, "Accumulated forward statistics", "TX-dropped:");
    assert!(rx > 0, "net_null always has packets:\n{out}");
    assert_eq!(
        rx,
        tx + dropped,
        "every packet received was sent or dropped"
    );
    assert!(out.contains("Rx-pps:"), "periodic stats missing:\n{out}");
    assert!(out.contains("CPU cycles/packet="), "{out}");
}

#[test]
fn ring_ports_start_and_stop() {
    let r = Running::start(
        &eal_args("ring", "0@0,1@1", &["net_ring0".into(), "net_ring1".into()]),
        &["--forward-mode=macswap"],
    );
    std::thread::sleep(Duration::from_millis(700));
    r.signal("INT");
    let o = r.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    assert!(stdout(&o).contains("macswap packet forwarding - ports=2"));
}

/// Runs ctfwd with bad input and checks: exit status 2, exactly one line of
/// ctfwd's own on stderr, no panic.
fn assert_usage_error(eal: &[String], app: &[&str], expect: &str) {
    let o = run(eal, app);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{app:?}: stderr:\n{err}");
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("ctfwd:")).collect();
    assert_eq!(ours.len(), 1, "{app:?}: {err}");
    assert!(
        ours[0].contains(expect),
        "{app:?}: '{}' lacks '{expect}'",
        ours[0]
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_one_clear_line_and_status_2() {
    let eal = || eal_args("bad", "0@0,1@1", &["net_null0".into(), "net_null1".into()]);
    assert_usage_error(&eal(), &["--bogus"], "unknown option --bogus");
    assert_usage_error(&eal(), &["--burst=9999"], "--burst");
    assert_usage_error(&eal(), &["--forward-mode=warp"], "unknown mode");
    assert_usage_error(&eal(), &["--portmask=0x4"], "names port 2");
    assert_usage_error(&eal(), &["--nb-cores=2"], "only 1 worker lcore");
    assert_usage_error(
        &eal_args("bad", "0@0,1@1", &["net_ring0".into()]),
        &["--rxq=32", "--txq=32"],
        "at most 16 RX",
    );
    assert_usage_error(
        &eal_args("bad", "0@0", &["net_null0".into()]),
        &[],
        "no forwarding lcore",
    );
    assert_usage_error(
        &eal_args("bad", "0@0,1@1", &["net_nonexistent0".into()]),
        &[],
        "EAL initialisation failed",
    );
}

#[test]
fn help_lists_flags_and_exits_0() {
    for args in [&["--help"][..], &["--", "--help"]] {
        let o = std::process::Command::new(CTFWD)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        let out = stdout(&o);
        for flag in [
            "--portmask",
            "--nb-cores",
            "--forward-mode",
            "--eth-peer",
            "--record-core-cycles",
        ] {
            assert!(out.contains(flag), "{flag} missing from --help");
        }
    }
}

/// Replays `frames` through one net_pcap port (loop topology, so their
/// order is kept) in conntrack mode; returns the stdout and the frames out.
fn conntrack_replay(test: &str, frames: &[Vec<u8>], app: &[&str]) -> (String, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_pcap(&p("in.pcap"), frames);
    let vdevs = [pcap_vdev(0, &[p("in.pcap")], &[p("out.pcap")])];
    let mut flags = vec![IDLE, "--forward-mode=conntrack", "--port-topology=loop"];
    flags.extend_from_slice(app);
    let o = run(&eal_args(test, "0@0,1@1", &vdevs), &flags);
    assert_clean_exit(&o);
    (stdout(&o), read_pcap(&p("out.pcap")))
}

/// The seed's walk-through 1 through the running forwarder.
#[test]
fn conntrack_mode_seed_udp_walkthrough() {
    let frames = seed_udp_frames();
    let (out, sent) = conntrack_replay("ct-udp", &frames, &[]);
    assert_eq!(sent, frames, "conntrack mode forwards frames unchanged");
    assert!(
        out.contains("NEW=1 ESTABLISHED=1 RELATED=0 ESTABLISHED_REPLY=1 RELATED_REPLY=0 INVALID=0 UNTRACKED=0 connections=1"),
        "{out}"
    );
}

/// The seed's walk-through 2 (TFTP) through the running forwarder: the
/// server's answer from a new port is RELATED; with helpers off it is NEW.
#[test]
fn conntrack_mode_seed_tftp_walkthrough() {
    let frames = seed_tftp_frames();
    let (out, _) = conntrack_replay("ct-tftp", &frames, &[]);
    assert!(
        out.contains("NEW=1 ESTABLISHED=0 RELATED=1 ESTABLISHED_REPLY=1 RELATED_REPLY=0 INVALID=0 UNTRACKED=0 connections=2 max=262144 expected=0"),
        "{out}"
    );
    let (out, _) = conntrack_replay("ct-tftp-off", &frames, &["--ct-helper=none"]);
    assert!(
        out.contains("NEW=2 ESTABLISHED=0 RELATED=0 ESTABLISHED_REPLY=1"),
        "{out}"
    );
}

/// Malformed and non-IP frames are counted, forwarded, and leak nothing.
#[test]
fn conntrack_mode_counts_bad_frames() {
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let mut short_ip = udp_pkt("1.1.1.6:1116", "1.1.1.5:1115", b"x");
    short_ip.truncate(30);
    let frames = vec![arp, short_ip, vec![0u8; 10]];
    let (out, sent) = conntrack_replay("ct-bad", &frames, &[]);
    assert_eq!(sent.len(), 3);
    assert!(out.contains("INVALID=2 UNTRACKED=1"), "{out}");
}

/// SIGUSR1 prints every worker's connections as `conntrack -L` does;
/// without `--ct-acct=on` no counters, as Linux with `nf_conntrack_acct=0`.
#[test]
fn sigusr1_lists_connections() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let frames = seed_udp_frames()[..2].to_vec();
    write_pcap(&p("in.pcap"), &frames);
    let vdevs = [pcap_vdev(0, &[p("in.pcap")], &[p("out.pcap")])];
    let r = Running::start(
        &eal_args("usr1", "0@0,1@1", &vdevs),
        &["--forward-mode=conntrack", "--port-topology=loop"],
    );
    std::thread::sleep(Duration::from_millis(800));
    r.signal("USR1");
    std::thread::sleep(Duration::from_millis(500));
    r.signal("TERM");
    let o = r.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("udp "))
        .unwrap_or_else(|| panic!("no connection listed:\n{out}"));
    assert!(
        line.contains("src=1.1.1.6 dst=1.1.1.5 sport=1116 dport=1115 src=1.1.1.5")
            && line.contains("src=1.1.1.5 dst=1.1.1.6 sport=1115 dport=1116 mark=0")
            && !line.contains("packets=")
            && !line.contains("UNREPLIED"),
        "{line}"
    );
    assert!(
        out.contains("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown."),
        "{out}"
    );
}

/// `--record-burst-stats`: each core's bursts, their mean size and the
/// cycles each took, in the final report.
#[test]
fn burst_stats_are_reported() {
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|i| udp_pkt(&format!("198.18.0.{}:1000", i + 1), "198.19.0.1:53", b"q"))
        .collect();
    let (out, sent) = conntrack_replay("bursts", &frames, &["--record-burst-stats"]);
    assert_eq!(sent.len(), 64);
    let line = out
        .lines()
        .find(|l| l.starts_with("  Core 1 bursts: "))
        .unwrap_or_else(|| panic!("no burst line:\n{out}"));
    let bursts: u64 = line["  Core 1 bursts: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=64).contains(&bursts), "{line}");
    assert!(
        line.contains(" cycles/burst p50=") && !line.contains("max=0"),
        "{line}"
    );
}
