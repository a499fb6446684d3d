//! Fragmented traffic through firewall mode on net_pcap, with one worker
//! and with two: datagrams are reassembled to be tracked, and their
//! original fragments come out unchanged and in the order they came; bad
//! fragments are dropped and counted, and held ones are freed.

#![cfg(feature = "dpdk")]

mod common;

use common::*;
use ctfwd::synth::{fragment, fragments, frame, icmp, ip_packet, udp};

const V4: (&str, &str) = ("198.18.0.1", "198.19.0.1");
const V6: (&str, &str) = ("2001:2::1", "2001:2:0:1::1");

fn ip(v: (&str, &str), proto: u8, l4: &[u8]) -> Vec<u8> {
    ip_packet(v.0.parse().unwrap(), v.1.parse().unwrap(), proto, &[], l4)
}

fn framed(ips: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    ips.iter().map(|p| frame(p, &[])).collect()
}

/// The capture, and the groups of frames that must come out, each in order.
fn session() -> (Vec<Vec<u8>>, Vec<Vec<Vec<u8>>>) {
    let data = |n: usize| (0..n).map(|i| (i * 7) as u8).collect::<Vec<u8>>();
    let mut input = Vec::new();
    let mut out = Vec::new();
    // UDP over IPv4, out of order, the first fragment duplicated.
    let f = framed(fragments(&ip(V4, 17, &udp(5000, 53, &data(3000))), 1, 1480));
    input.extend([f[1].clone(), f[0].clone(), f[0].clone(), f[2].clone()]);
    out.push(vec![f[1].clone(), f[0].clone(), f[2].clone()]);
    // UDP over IPv6, in order.
    let f = framed(fragments(&ip(V6, 17, &udp(5001, 53, &data(3000))), 2, 1232));
    input.extend(f.clone());
    out.push(f);
    // 3000-byte pings in both families.
    let f = framed(fragments(
        &ip(V4, 1, &icmp(8, 0, 9, 1, &data(3000))),
        3,
        1480,
    ));
    input.extend(f.clone());
    out.push(f);
    let f = framed(fragments(
        &ip(V6, 58, &icmp(128, 0, 9, 1, &data(3000))),
        4,
        1232,
    ));
    input.extend(f.clone());
    out.push(f);
    // A TCP connection whose data segment is fragmented.
    let (c, s) = ("198.18.0.1:40000", "198.19.0.1:80");
    let handshake = vec![
        tcp_pkt(c, s, 1000, 0, 0x02, b""),
        tcp_pkt(s, c, 5000, 1001, 0x12, b""),
        tcp_pkt(c, s, 1001, 5001, 0x10, b""),
    ];
    let seg = tcp_pkt(c, s, 1001, 5001, 0x18, &data(2500));
    let f = framed(fragments(&seg[14..], 5, 1200));
    input.extend(handshake.clone());
    input.extend(f.clone());
    out.push(handshake);
    out.push(f);
    // Overlapping fragments: the whole datagram is dropped.
    let whole = ip(V4, 17, &udp(5002, 53, &data(2000)));
    input.extend(framed(fragment(&whole, 6, &[(0, 1008), (1000, 1008)])));
    // A TCP first fragment too short for the TCP header (RFC 1858).
    let seg = tcp_pkt(c, s, 1001, 5001, 0x18, &data(100));
    input.extend(framed(fragment(&seg[14..], 7, &[(16, 104), (0, 16)])));
    // A datagram whose last fragment never comes: held, then timed out.
    let whole = ip(V6, 17, &udp(5003, 53, &data(2000)));
    input.extend(framed(fragment(&whole, 8, &[(0, 1024)])));
    (input, out)
}

/// Whether `group` appears in `out` in order (other frames may come
/// between, from other datagrams).
fn in_order(group: &[Vec<u8>], out: &[Vec<u8>]) -> bool {
    let mut it = out.iter();
    group.iter().all(|g| it.any(|o| o == g))
}

#[test]
fn fragmented_traffic_passes_the_firewall_whole_and_in_order() {
    let (input, groups) = session();
    let expected: usize = groups.iter().map(Vec::len).sum();
    for cores in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        write_pcap(&p("q0.pcap"), &input);
        write_pcap(&p("q1.pcap"), &[]);
        // One port looped back, two RX queues: the whole capture arrives in
        // order on queue 0; with two workers, worker 1 polls the empty
        // queue 1 and gets what is handed to it.
        let vdevs = [pcap_vdev(
            0,
            &[p("q0.pcap"), p("q1.pcap")],
            &[p("w0.pcap"), p("w1.pcap")],
        )];
        let o = run(
            &eal_args(&format!("frag{cores}"), "0@0,1@0,2@1", &vdevs),
            &[
                "--idle-exit=1.6",
                "--frag-timeout=1",
                "--forward-mode=firewall",
                "--port-topology=loop",
                "--rxq=2",
                &format!("--nb-cores={cores}"),
            ],
        );
        assert_clean_exit(&o);
        let out = stdout(&o);
        let (w0, w1) = (read_pcap(&p("w0.pcap")), read_pcap(&p("w1.pcap")));
        assert_eq!(w0.len() + w1.len(), expected, "{out}");
        for g in &groups {
            assert!(in_order(g, &w0) || in_order(g, &w1), "{cores} cores\n{out}");
        }
        let sum = |k: &str| core_sum(&out, "defrag:", k);
        // With two workers a datagram may be reassembled twice: by the
        // worker its addresses hash to, to learn its owner, and then by
        // the owner, which it is handed to.
        let reassembled = sum("frag_reassembled=");
        if cores == "1" {
            assert_eq!(reassembled, 5, "{out}");
        } else {
            assert!((5..=10).contains(&reassembled), "{out}");
        }
        assert_eq!(
            core_sum(&out, "conntrack:", " NEW=") + core_sum(&out, "conntrack:", " ESTABLISHED="),
            7,
            "five datagrams and the handshake's SYN and ACK:\n{out}"
        );
        assert_eq!(sum("frag_duplicate="), 1, "{out}");
        assert_eq!(sum("frag_overlap="), 1, "{out}");
        assert_eq!(sum("frag_tiny="), 1, "{out}");
        assert_eq!(sum("frag_timeout="), 1, "{out}");
        // Each datagram is one tracked packet; nothing is INVALID.
        assert!(!out.contains("INVALID=1"), "{out}");
    }
}

/// Fragments still waiting for their datagram when ctfwd stops are freed
/// with the reassembly table: the mempool check stays 0. A fragment flood
/// beyond the limits is refused and counted, never held.
#[test]
fn held_fragments_are_freed_at_exit_and_floods_are_bounded() {
    let data: Vec<u8> = (0..2000).map(|i| i as u8).collect();
    // 40 datagrams' first fragments, with --frag-max=16: 16 are held, the
    // rest refused as the table is full.
    let input: Vec<Vec<u8>> = (0..40)
        .flat_map(|id| {
            framed(fragment(
                &ip(V4, 17, &udp(6000, 53, &data)),
                id,
                &[(0, 1024)],
            ))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_pcap(&p("in.pcap"), &input);
    let vdevs = [pcap_vdev(0, &[p("in.pcap")], &[p("out.pcap")])];
    let o = run(
        &eal_args("frag-exit", "0@0,1@1", &vdevs),
        &[
            "--idle-exit=0.5",
            "--frag-max=16,4",
            "--forward-mode=firewall",
            "--port-topology=loop",
        ],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(out.contains("frag_held=16 "), "{out}");
    assert!(out.contains("frag_full=24 "), "{out}");
    assert!(out.contains("fragment=24"), "{out}");
    assert!(read_pcap(&p("out.pcap")).is_empty());
}
