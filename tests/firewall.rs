//! Firewall mode end to end on two net_pcap ports: port 0 faces the inside,
//! port 1 the outside. What each port sent out is checked frame by frame.

#![cfg(feature = "dpdk")]

mod common;

use common::*;
use ctfwd::synth::{frame, icmp, ip_packet, udp};

/// A bare segment with `flags` and sequence number 1000.
fn segment(src: &str, dst: &str, flags: u8) -> Vec<u8> {
    tcp_pkt(src, dst, 1000, 0, flags, b"")
}

fn ethertype_frame(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x18, 0, 0, 0, 1]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&[0; 46]);
    f
}

#[test]
fn default_policy() {
    let inside = "198.18.0.1:5000";
    let server = "198.19.0.1:53";
    let request = udp_pkt(inside, server, b"query");
    let arp = ethertype_frame(0x0806);
    let lldp = ethertype_frame(0x88cc);
    let syn_fin = segment(inside, "198.19.0.1:80", 0x03);
    let reply = udp_pkt(server, inside, b"answer");
    let unsolicited = udp_pkt("198.19.0.9:1234", "198.18.0.1:7", b"hi");
    let syn_in = segment("198.19.0.9:40000", "198.18.0.1:22", 0x02);
    // Port unreachable about the request, from a router outside: RELATED.
    let quoted = &ip_packet(
        "198.18.0.1".parse().unwrap(),
        "198.19.0.1".parse().unwrap(),
        17,
        &[],
        &udp(5000, 53, b"query"),
    )[..28];
    let unreachable = frame(
        &ip_packet(
            "198.19.0.254".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            1,
            &[],
            &icmp(3, 3, 0, 0, quoted),
        ),
        &[],
    );

    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_pcap(
        &p("inside.pcap"),
        &[request.clone(), arp.clone(), syn_fin, lldp],
    );
    write_pcap(
        &p("outside.pcap"),
        &[
            reply.clone(),
            unsolicited,
            syn_in,
            arp.clone(),
            unreachable.clone(),
        ],
    );
    let vdevs = [
        pcap_vdev(0, &[p("inside.pcap")], &[p("to-inside.pcap")]),
        pcap_vdev(1, &[p("outside.pcap")], &[p("to-outside.pcap")]),
    ];
    let o = run(
        &eal_args("fw", "0@0,1@1", &vdevs),
        &["--forward-mode=firewall", "--idle-exit=0.5"],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(
        read_pcap(&p("to-outside.pcap")),
        vec![request, arp.clone()],
        "{out}"
    );
    assert_eq!(
        read_pcap(&p("to-inside.pcap")),
        vec![reply, arp, unreachable],
        "{out}"
    );
    assert!(
        out.contains("dropped: invalid=1 new-from-outside=2 not-ip=1"),
        "{out}"
    );
    assert!(out.contains("RELATED_REPLY=1"), "{out}");
    // Nothing the firewall dropped opened a connection.
    assert!(out.contains("connections=1 "), "{out}");
}

#[test]
fn inside_ports_can_be_chosen() {
    // With port 1 as the inside, the same outside-initiated flow passes.
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let unsolicited = udp_pkt("198.19.0.9:1234", "198.18.0.1:7", b"hi");
    write_pcap(&p("a.pcap"), &[]);
    write_pcap(&p("b.pcap"), std::slice::from_ref(&unsolicited));
    let vdevs = [
        pcap_vdev(0, &[p("a.pcap")], &[p("to-a.pcap")]),
        pcap_vdev(1, &[p("b.pcap")], &[p("to-b.pcap")]),
    ];
    let o = run(
        &eal_args("fw-in", "0@0,1@1", &vdevs),
        &[
            "--forward-mode=firewall",
            "--inside-ports=1",
            "--idle-exit=0.5",
        ],
    );
    assert_clean_exit(&o);
    assert_eq!(read_pcap(&p("to-a.pcap")), vec![unsolicited]);
    // A port that is not forwarding is refused.
    let o = run(
        &eal_args("fw-bad", "0@0,1@1", &vdevs),
        &["--forward-mode=firewall", "--inside-ports=5"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--inside-ports names port 5"));
}

#[test]
fn rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(
        p("rules"),
        "# an outside service allowed in, VXLAN untracked, one inside host blocked\n\
         in-port 1 ip daddr 198.18.0.1 udp dport 7 ct state new accept\n\
         udp dport 4789 notrack\n\
         ip saddr 198.18.0.66 drop\n",
    )
    .unwrap();
    let allowed = udp_pkt("198.19.0.9:1234", "198.18.0.1:7", b"echo");
    let vxlan = udp_pkt("198.19.0.9:5555", "198.18.0.1:4789", b"vxlan");
    let refused = udp_pkt("198.19.0.9:1234", "198.18.0.1:8", b"nope");
    let blocked = udp_pkt("198.18.0.66:1000", "198.19.0.1:53", b"q");
    write_pcap(&p("a.pcap"), std::slice::from_ref(&blocked));
    write_pcap(&p("b.pcap"), &[allowed.clone(), vxlan.clone(), refused]);
    let vdevs = [
        pcap_vdev(0, &[p("a.pcap")], &[p("to-a.pcap")]),
        pcap_vdev(1, &[p("b.pcap")], &[p("to-b.pcap")]),
    ];
    let rules_flag = format!("--rules={}", p("rules").display());
    let o = run(
        &eal_args("fw-rules", "0@0,1@1", &vdevs),
        &["--forward-mode=firewall", &rules_flag, "--idle-exit=0.5"],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(read_pcap(&p("to-a.pcap")), vec![allowed, vxlan], "{out}");
    assert!(read_pcap(&p("to-b.pcap")).is_empty(), "{out}");
    assert!(
        out.contains("dropped: invalid=0 new-from-outside=1 not-ip=0 rule=1"),
        "{out}"
    );
    assert!(out.contains("UNTRACKED=1"), "{out}");

    // A bad file is refused at start, naming the line.
    std::fs::write(p("bad"), "udp dport 53 accept\ntcp dport 22 allow\n").unwrap();
    let bad_flag = format!("--rules={}", p("bad").display());
    let o = run(
        &eal_args("fw-bad-rules", "0@0,1@1", &vdevs),
        &["--forward-mode=firewall", &bad_flag],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("line 2: unknown word 'allow'"), "{err}");
}

#[test]
fn bad_checksums_are_invalid_unless_off() {
    let mut bad = udp_pkt("198.18.0.1:1000", "198.19.0.1:53", b"query");
    let last = bad.len() - 1;
    bad[last] ^= 0x5a;
    for (flag, passed) in [("--ct-checksum=on", false), ("--ct-checksum=off", true)] {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        write_pcap(&p("a.pcap"), std::slice::from_ref(&bad));
        write_pcap(&p("b.pcap"), &[]);
        let vdevs = [
            pcap_vdev(0, &[p("a.pcap")], &[p("to-a.pcap")]),
            pcap_vdev(1, &[p("b.pcap")], &[p("to-b.pcap")]),
        ];
        let o = run(
            &eal_args("fw-csum", "0@0,1@1", &vdevs),
            &["--forward-mode=firewall", flag, "--idle-exit=0.5"],
        );
        assert_clean_exit(&o);
        let out = read_pcap(&p("to-b.pcap"));
        assert_eq!(out.len(), usize::from(passed), "{flag}: {}", stdout(&o));
    }
}

/// `--ct-events=FILE`: a line per connection created and destroyed, as
/// `conntrack -E -o timestamp` writes them, the destroyed ones (here by
/// their 1 s timeout) with both directions' counters.
#[test]
fn connection_events_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inside, outside) = ctfwd::synth::sample_conversations(3, 2);
    write_pcap(&p("inside.pcap"), &inside);
    write_pcap(&p("outside.pcap"), &outside);
    let vdevs = [
        pcap_vdev(0, &[p("inside.pcap")], &[p("to-inside.pcap")]),
        pcap_vdev(1, &[p("outside.pcap")], &[p("to-outside.pcap")]),
    ];
    let events = format!("--ct-events={}", p("events").display());
    let o = run(
        &eal_args("events", "0@0,1@1", &vdevs),
        &[
            "--forward-mode=firewall",
            "--idle-exit=2.5",
            "--ct-timeout-udp=1",
            "--ct-acct=on",
            &events,
        ],
    );
    assert_clean_exit(&o);
    let text = std::fs::read_to_string(p("events")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (i, l) in lines.iter().enumerate() {
        let (stamp, rest) = l.split_once('\t').unwrap();
        assert!(
            stamp.starts_with('[') && stamp.ends_with(']') && stamp.contains('.'),
            "{l}"
        );
        let kind = if i < 3 {
            "    [NEW] udp "
        } else {
            "[DESTROY] udp "
        };
        assert!(rest.starts_with(kind), "{l}");
        assert!(rest.contains(&format!("id={}", i % 3 + 1)), "{l}");
    }
    // Destroyed, with what each direction carried (`--ct-acct=on`).
    assert!(
        lines[3].contains("packets=2 bytes=") && !lines[3].contains("UNREPLIED"),
        "{text}"
    );
    let bad = run(
        &eal_args("events-bad", "0@0,1@1", &vdevs),
        &[
            "--forward-mode=firewall",
            "--ct-events=/nonexistent/dir/events",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--ct-events: /nonexistent/dir/events"),
        "{}",
        stderr(&bad)
    );
}
