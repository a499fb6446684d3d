//! NAT end to end on two net_pcap ports (port 0 inside, port 1 outside):
//! the rules file of the NAT issue, and frames out compared byte for byte
//! with frames built translated from scratch (so every checksum the
//! incremental updates left must equal a full computation's).

#![cfg(feature = "dpdk")]

mod common;

use common::*;
use ctfwd::synth::{frame, icmp, ip_packet};

/// The example, which must be accepted exactly, and a rule whose
/// range has one port, to be exhausted.
const RULES: &str = "\
in-port 0 ip saddr 198.18.0.1 snat to 198.18.0.100
in-port 1 ip daddr 198.18.0.200 tcp dport 8080 dnat to 198.18.0.1:80
in-port 1 ct status dnat accept
in-port 0 ip saddr 198.18.0.2 udp snat to 198.18.0.101:7000
";

fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x18, 0, 0, 0, 1, 0x08, 0x06]);
    f.resize(60, 0);
    f
}

fn echo(src: &str, dst: &str, ty: u8, id: u16) -> Vec<u8> {
    frame(
        &ip_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            1,
            &[],
            &icmp(ty, 0, id, 1, b"ping"),
        ),
        &[],
    )
}

#[test]
fn snat_dnat_and_an_exhausted_range() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("rules"), RULES).unwrap();
    // With --burst=1 the worker takes one frame from port 0, then one from
    // port 1: the files interleave by position, so each answer comes after
    // what it answers.
    let inside = [
        udp_pkt("198.18.0.1:5000", "198.19.0.1:53", b"query"),
        arp(),
        tcp_pkt(
            "198.18.0.1:80",
            "198.19.0.9:40000",
            7000,
            1001,
            SYN | ACK,
            b"",
        ),
        udp_pkt("198.18.0.2:5000", "198.19.0.1:53", b"first"),
        udp_pkt("198.18.0.2:5001", "198.19.0.1:53", b"second"),
        echo("198.18.0.1", "198.19.0.1", 8, 77),
    ];
    let outside = [
        udp_pkt("198.19.0.1:53", "198.18.0.100:5000", b"answer"),
        tcp_pkt("198.19.0.9:40000", "198.18.0.200:8080", 1000, 0, SYN, b""),
        arp(),
        arp(),
        arp(),
        arp(),
        echo("198.19.0.1", "198.18.0.100", 0, 77),
    ];
    write_pcap(&p("inside.pcap"), &inside);
    write_pcap(&p("outside.pcap"), &outside);
    let vdevs = [
        pcap_vdev(0, &[p("inside.pcap")], &[p("to-inside.pcap")]),
        pcap_vdev(1, &[p("outside.pcap")], &[p("to-outside.pcap")]),
    ];
    let rules = format!("--rules={}", p("rules").display());
    let o = run(
        &eal_args("nat", "0@0,1@1", &vdevs),
        &[
            "--forward-mode=firewall",
            "--idle-exit=0.5",
            "--burst=1",
            &rules,
        ],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    let to_outside = read_pcap(&p("to-outside.pcap"));
    let to_inside = read_pcap(&p("to-inside.pcap"));
    let ip_frames = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
        v.iter()
            .filter(|f| f[12..14] == [0x08, 0x00])
            .cloned()
            .collect()
    };
    assert_eq!(
        ip_frames(&to_outside),
        [
            // The client's port was free: kept.
            udp_pkt("198.18.0.100:5000", "198.19.0.1:53", b"query"),
            // The server's SYN-ACK leaves from the forwarded address.
            tcp_pkt(
                "198.18.0.200:8080",
                "198.19.0.9:40000",
                7000,
                1001,
                SYN | ACK,
                b""
            ),
            udp_pkt("198.18.0.101:7000", "198.19.0.1:53", b"first"),
            // The echo's identifier was free: kept.
            echo("198.18.0.100", "198.19.0.1", 8, 77),
        ],
        "{out}"
    );
    assert_eq!(
        ip_frames(&to_inside),
        [
            udp_pkt("198.19.0.1:53", "198.18.0.1:5000", b"answer"),
            tcp_pkt("198.19.0.9:40000", "198.18.0.1:80", 1000, 0, SYN, b""),
            echo("198.19.0.1", "198.18.0.1", 0, 77),
        ],
        "{out}"
    );
    // The second client of the one-port rule found its range used.
    assert_eq!(core_sum(&out, "dropped:", "nat="), 1, "{out}");
    assert!(
        out.contains("NAT rules: line 1 exhausted=0, line 2 exhausted=0, line 4 exhausted=1"),
        "{out}"
    );
}

#[test]
fn bad_nat_rules_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, why) in [
        (
            "accept\nsnat to 198.18.0.100:80",
            "line 2: a port in a NAT mapping needs a 'tcp' or 'udp' match",
        ),
        (
            "ip6 saddr 2001:2::1 snat to 198.18.0.1",
            "line 1: the mapping is IPv4 but the rule matches IPv6",
        ),
        (
            "dnat to 198.18.0.9-198.18.0.1",
            "line 1: '198.18.0.9-198.18.0.1' is an empty address range",
        ),
        (
            "snat to 198.18.0.1 sticky",
            "line 1: unknown NAT flag 'sticky'",
        ),
        (
            "snat 198.18.0.1",
            "line 1: 'snat' and 'dnat' are followed by 'to ADDRESS'",
        ),
    ] {
        let path = dir.path().join("rules");
        std::fs::write(&path, text).unwrap();
        let o = run(
            &eal_args(
                "nat-bad",
                "0@0,1@0",
                &["net_null0".into(), "net_null1".into()],
            ),
            &[
                "--forward-mode=firewall",
                &format!("--rules={}", path.display()),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(stderr(&o).contains(why), "{text}: {}", stderr(&o));
    }
}
