//! Two tracking workers through the real binary on net_pcap ports: every
//! connection is owned by one worker, packets that reach the other are
//! handed over, and every frame still comes out where it should.

#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;

use common::*;
use ctfwd::synth::sample_conversations;

const IDLE: &str = "--idle-exit=0.5";

/// Frames grouped by their bytes 26..38 (IPv4 addresses and ports), in
/// order: what a connection saw, which handoff must not reorder.
fn by_flow(frames: &[Vec<u8>]) -> HashMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut m: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    for f in frames {
        m.entry(f[26..38].to_vec()).or_default().push(f.clone());
    }
    m
}

/// Two ports, one RX queue each, two workers: worker 0 polls port 0 and
/// worker 1 port 1, so each connection's two directions arrive on
/// different workers (as on a vdev without RSS). Each connection must be
/// tracked once, by its owner, with the other direction handed over.
#[test]
fn both_directions_meet_at_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inside, outside) = sample_conversations(24, 3);
    write_pcap(&p("in0.pcap"), &inside);
    write_pcap(&p("in1.pcap"), &outside);
    // Each worker transmits on its own TX queue of every port.
    let vdevs = [
        pcap_vdev(0, &[p("in0.pcap")], &[p("out0w0.pcap"), p("out0w1.pcap")]),
        pcap_vdev(1, &[p("in1.pcap")], &[p("out1w0.pcap"), p("out1w1.pcap")]),
    ];
    let o = run(
        &eal_args("shard-ct", "0@0,1@0,2@1", &vdevs),
        &[IDLE, "--forward-mode=conntrack", "--nb-cores=2"],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(out.contains("RX P=0/Q=0 -> TX P=1/Q=0"), "{out}");
    assert!(out.contains("RX P=1/Q=0 -> TX P=0/Q=1"), "{out}");
    assert!(
        out.contains("Connections sharded over 2 cores by a software symmetric Toeplitz hash"),
        "{out}"
    );
    // One connection per conversation, not one per direction and worker.
    assert_eq!(core_sum(&out, "conntrack:", "connections="), 24, "{out}");
    // Every packet tracked once. (How many are NEW depends on which
    // direction the owner happens to see first: the two ports race.)
    let tracked: u64 = ["NEW=", "ESTABLISHED=", "ESTABLISHED_REPLY="]
        .iter()
        .map(|k| core_sum(&out, "conntrack:", k))
        .sum();
    assert_eq!(tracked, 144, "{out}");
    assert_eq!(core_sum(&out, "conntrack:", "INVALID="), 0, "{out}");
    let (sent, received) = (
        core_sum(&out, "handoff:", "handoff_tx="),
        core_sum(&out, "handoff:", "handoff_rx="),
    );
    assert!(sent > 0, "no packet was handed over:\n{out}");
    assert_eq!(sent, received, "{out}");
    assert_eq!(
        core_sum(&out, "handoff:", "handoff_fwd="),
        received,
        "{out}"
    );
    assert_eq!(core_sum(&out, "handoff:", "handoff_drop="), 0, "{out}");
    // Everything came out of the right port, each connection's packets in
    // their original order.
    let out1: Vec<Vec<u8>> = [p("out1w0.pcap"), p("out1w1.pcap")]
        .iter()
        .flat_map(|f| read_pcap(f))
        .collect();
    let out0: Vec<Vec<u8>> = [p("out0w0.pcap"), p("out0w1.pcap")]
        .iter()
        .flat_map(|f| read_pcap(f))
        .collect();
    assert_eq!(by_flow(&out1), by_flow(&inside));
    assert_eq!(by_flow(&out0), by_flow(&outside));
}

/// Firewall mode reading one port with two RX queues (loop topology), on
/// one worker and on two: each connection's packets come from a single
/// queue in order, whichever worker owns it, so both runs must reach the
/// same verdicts: the seed's UDP walk-through, a whole TCP session and
/// more conversations pass, in order, with the same counts by state.
#[test]
fn firewall_verdicts_do_not_depend_on_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (c, s) = ("198.18.0.7:40001", "198.19.0.9:80");
    let mut frames = seed_udp_frames();
    frames.extend([
        tcp_pkt(c, s, 100, 0, 0x02, b""),
        tcp_pkt(s, c, 500, 101, 0x12, b""),
        tcp_pkt(c, s, 101, 501, 0x10, b""),
        tcp_pkt(c, s, 101, 501, 0x18, b"GET / HTTP/1.0\r\n\r\n"),
        tcp_pkt(s, c, 501, 119, 0x18, b"HTTP/1.0 200 OK\r\n\r\n"),
        tcp_pkt(c, s, 119, 520, 0x11, b""),
        tcp_pkt(s, c, 520, 120, 0x11, b""),
        tcp_pkt(c, s, 120, 521, 0x10, b""),
    ]);
    // Many more conversations, so that both workers own some.
    let (more, _) = sample_conversations(16, 2);
    frames.extend(more);
    write_pcap(&p("q0.pcap"), &frames);
    write_pcap(&p("q1.pcap"), &[]);
    // The same frames with one worker (both queues on it) and with two.
    let mut by_state = Vec::new();
    for cores in ["1", "2"] {
        let w = |q: &str| p(&format!("{cores}cores-{q}.pcap"));
        let vdevs = [pcap_vdev(
            0,
            &[p("q0.pcap"), p("q1.pcap")],
            &[w("w0"), w("w1")],
        )];
        let nb_cores = format!("--nb-cores={cores}");
        let o = run(
            &eal_args("shard-fw", "0@0,1@0,2@1", &vdevs),
            &[
                IDLE,
                "--forward-mode=firewall",
                "--port-topology=loop",
                "--rxq=2",
                &nb_cores,
            ],
        );
        assert_clean_exit(&o);
        let out = stdout(&o);
        let sent: Vec<Vec<u8>> = [w("w0"), w("w1")]
            .iter()
            .flat_map(|f| read_pcap(f))
            .collect();
        assert_eq!(by_flow(&sent), by_flow(&frames), "{out}");
        assert_eq!(core_sum(&out, "conntrack:", "INVALID="), 0, "{out}");
        assert_eq!(core_sum(&out, "conntrack:", "connections="), 18, "{out}");
        if cores == "2" {
            assert!(core_sum(&out, "handoff:", "handoff_tx=") > 0, "{out}");
        }
        by_state.push(
            ["NEW=", "ESTABLISHED=", "ESTABLISHED_REPLY="].map(|k| core_sum(&out, "conntrack:", k)),
        );
    }
    assert_eq!(by_state[0], by_state[1], "same states with 1 and 2 workers");
}

/// The seed's TFTP walk-through with two workers. Its two connections
/// hash to different workers: the request's connection stays on worker 0,
/// which reads the port, and the data connection from the server's new
/// port belongs to worker 1. The expectation the TFTP helper set up on
/// worker 0 must still make it RELATED on worker 1.
#[test]
fn seed_tftp_related_across_workers() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let frames = seed_tftp_frames();
    write_pcap(&p("q0.pcap"), &frames);
    write_pcap(&p("q1.pcap"), &[]);
    let vdevs = [pcap_vdev(
        0,
        &[p("q0.pcap"), p("q1.pcap")],
        &[p("w0.pcap"), p("w1.pcap")],
    )];
    let o = run(
        &eal_args("shard-tftp", "0@0,1@0,2@1", &vdevs),
        &[
            IDLE,
            "--forward-mode=firewall",
            "--port-topology=loop",
            "--rxq=2",
            "--nb-cores=2",
        ],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    // The request went out from worker 0, the data connection from worker
    // 1 (its TX queue 1): all three frames passed.
    assert_eq!(read_pcap(&p("w0.pcap")), frames[..1]);
    assert_eq!(read_pcap(&p("w1.pcap")), frames[1..]);
    assert!(
        out.contains("Core 1 conntrack: NEW=1 ESTABLISHED=0 RELATED=0 ESTABLISHED_REPLY=0 RELATED_REPLY=0 INVALID=0 UNTRACKED=0 connections=1 max=262144 expected=0"),
        "{out}"
    );
    assert!(
        out.contains("Core 2 conntrack: NEW=0 ESTABLISHED=0 RELATED=1 ESTABLISHED_REPLY=1 RELATED_REPLY=0 INVALID=0 UNTRACKED=0 connections=1 max=262144 expected=0"),
        "{out}"
    );
    assert!(
        out.contains("Core 1 handoff: handoff_tx=2 handoff_rx=0"),
        "{out}"
    );
}

/// Two workers forwarding at full speed (both ports replay their capture
/// endlessly), stopped by SIGTERM: packets still on a handoff ring, or in
/// a worker's hands, must all be back in the pool, and the handoff
/// counters must add up.
#[test]
fn stopping_under_load_leaves_no_mbuf_on_the_rings() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inside, outside) = ctfwd::synth::bulk_flows(2000);
    write_pcap(&p("in0.pcap"), &inside);
    write_pcap(&p("in1.pcap"), &outside);
    // Two TX queues a port, one per worker; what they send is discarded.
    let vdev = |i: u16| {
        format!(
            "net_pcap{i},rx_pcap={},infinite_rx=1,tx_pcap=/dev/null,tx_pcap=/dev/null",
            p(&format!("in{i}.pcap")).display()
        )
    };
    let r = Running::start(
        &eal_args("shard-load", "0@0,1@0,2@1", &[vdev(0), vdev(1)]),
        &[
            "--forward-mode=conntrack",
            "--nb-cores=2",
            "--record-core-cycles",
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    r.signal("TERM");
    let o = r.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(out.contains("Mempool check: 0 of"), "{out}");
    let sent = core_sum(&out, "handoff:", "handoff_tx=");
    let taken = core_sum(&out, "handoff:", "handoff_rx=");
    assert!(sent > 0, "{out}");
    // What was on a ring at the stop was freed with the ring.
    assert!(taken <= sent, "{out}");
    assert_eq!(core_sum(&out, "conntrack:", "connections="), 2000, "{out}");
    assert!(out.contains("CPU cycles/packet="), "{out}");
}

/// Unsolicited traffic from outside with two workers: packets owned by the
/// worker that does not poll the outside port are handed over and dropped
/// there, whole bursts of them.
#[test]
fn handed_over_packets_can_all_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (_, outside) = sample_conversations(24, 3);
    write_pcap(&p("in0.pcap"), &[]);
    write_pcap(&p("in1.pcap"), &outside);
    let vdevs = [
        pcap_vdev(0, &[p("in0.pcap")], &[p("out0w0.pcap"), p("out0w1.pcap")]),
        pcap_vdev(1, &[p("in1.pcap")], &[p("out1w0.pcap"), p("out1w1.pcap")]),
    ];
    let o = run(
        &eal_args("shard-drop", "0@0,1@0,2@1", &vdevs),
        &[IDLE, "--forward-mode=firewall", "--nb-cores=2"],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(core_sum(&out, "dropped:", "new-from-outside="), 72, "{out}");
    assert!(core_sum(&out, "handoff:", "handoff_rx=") > 0, "{out}");
    assert_eq!(core_sum(&out, "handoff:", "handoff_fwd="), 0, "{out}");
    for f in ["out0w0.pcap", "out0w1.pcap"] {
        assert!(read_pcap(&p(f)).is_empty(), "{f}: {out}");
    }
}

/// A port with fewer TX queues than tracking workers is refused at start,
/// in one line that says why.
#[test]
fn too_few_tx_queues_for_the_workers_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_pcap(&p("in.pcap"), &[]);
    let vdevs = [
        pcap_vdev(0, &[p("in.pcap")], &[p("out0.pcap")]),
        pcap_vdev(1, &[p("in.pcap")], &[p("out1.pcap")]),
    ];
    let o = run(
        &eal_args("shard-txq", "0@0,1@0,2@1", &vdevs),
        &[IDLE, "--forward-mode=firewall", "--nb-cores=2"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("ctfwd:")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].contains("firewall mode needs one TX queue per forwarding core on every port"),
        "{err}"
    );
}

/// Input split per queue as a NIC's RSS would split it (`synth::rss_queues`,
/// what ctfwd-gen --queues writes): with two workers no packet is handed
/// over, and each worker holds exactly the connections of its queue.
#[test]
fn split_input_is_never_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inside, outside) = ctfwd::synth::bulk_flows(2000);
    let queues = ctfwd::synth::rss_queues(&inside, 2);
    // Replies land where their requests did: symmetric hashing.
    assert_eq!(ctfwd::synth::rss_queues(&outside, 2), queues);
    let on = |frames: &[Vec<u8>], q: usize| -> Vec<Vec<u8>> {
        frames
            .iter()
            .zip(&queues)
            .filter(|(_, &k)| k == q)
            .map(|(f, _)| f.clone())
            .collect()
    };
    for q in 0..2 {
        write_pcap(&p(&format!("in{q}.pcap")), &on(&inside, q));
        write_pcap(&p(&format!("out{q}.pcap")), &on(&outside, q));
    }
    let per_queue: Vec<usize> = (0..2)
        .map(|q| queues.iter().filter(|&&k| k == q).count())
        .collect();
    assert!(per_queue.iter().all(|&n| n > 800), "{per_queue:?}");
    let vdevs = [
        pcap_vdev(
            0,
            &[p("in0.pcap"), p("in1.pcap")],
            &[p("o0.pcap"), p("o1.pcap")],
        ),
        pcap_vdev(
            1,
            &[p("out0.pcap"), p("out1.pcap")],
            &[p("o2.pcap"), p("o3.pcap")],
        ),
    ];
    let o = run(
        &eal_args("split", "0@0,1@0,2@1", &vdevs),
        &[
            IDLE,
            "--forward-mode=firewall",
            "--rxq=2",
            "--txq=2",
            "--nb-cores=2",
        ],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(core_sum(&out, "handoff:", "handoff_tx="), 0, "{out}");
    assert_eq!(core_sum(&out, "conntrack:", "connections="), 2000, "{out}");
    // Worker w (lcore w + 1) polls queue w of both ports.
    for (w, n) in per_queue.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("  Core {} conntrack:", w + 1)))
            .unwrap_or_else(|| panic!("no line for worker {w}:\n{out}"));
        assert!(line.contains(&format!(" connections={n} ")), "{line}");
        assert!(line.contains(&format!("NEW={n} ")), "{line}");
        assert!(line.contains(&format!("ESTABLISHED_REPLY={n} ")), "{line}");
    }
}
