//! Packets in chains of mbufs through firewall mode on net_pcap (which
//! receives a frame longer than an mbuf's data room into a chain, as a NIC
//! with multi-segment RX does): jumbo frames in testpmd's 2 KiB mbufs, and
//! headers split across segments in mbufs of 64 bytes. Every packet is
//! tracked from all of its bytes and forwarded as it came.

#![cfg(feature = "dpdk")]

mod common;

use common::*;
use ctfwd::synth::{frame, ip_packet, udp, Tcp};

const C: &str = "198.18.0.1";
const S: &str = "198.19.0.1";
const C6: &str = "2001:2::1";
const S6: &str = "2001:2:0:1::1";

fn ip(src: &str, dst: &str, proto: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    ip_packet(src.parse().unwrap(), dst.parse().unwrap(), proto, ext, l4)
}

/// Runs `input` through firewall mode on one looped port with `flags`;
/// returns the report and the frames that came out.
fn firewall(prefix: &str, input: &[Vec<u8>], flags: &[&str]) -> (String, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_pcap(&p("in.pcap"), input);
    let vdevs = [pcap_vdev(0, &[p("in.pcap")], &[p("out.pcap")])];
    let mut app = vec![
        "--idle-exit=0.5",
        "--forward-mode=firewall",
        "--port-topology=loop",
    ];
    app.extend_from_slice(flags);
    let o = run(&eal_args(prefix, "0@0,1@1", &vdevs), &app);
    assert_clean_exit(&o);
    (stdout(&o), read_pcap(&p("out.pcap")))
}

/// A 9000-byte jumbo frame spans several mbufs (2 KiB each, as testpmd's
/// default pool): its headers sit in the first segment, its checksum is
/// checked over every segment, and it is tracked and forwarded whole; a
/// copy with one byte flipped in its fourth segment is INVALID.
#[test]
fn a_jumbo_frame_in_several_mbufs_passes() {
    let data: Vec<u8> = (0..8958).map(|i| (i * 3) as u8).collect();
    let jumbo = frame(&ip(C, S, 17, &[], &udp(7000, 53, &data)), &[]);
    assert_eq!(jumbo.len(), 9000);
    let mut corrupt = frame(&ip(C, S, 17, &[], &udp(7001, 53, &data)), &[]);
    corrupt[7000] ^= 0x10;
    let (out, frames) = firewall("jumbo", &[jumbo.clone(), corrupt], &[]);
    assert!(out.contains("NEW=1 "), "{out}");
    assert!(out.contains("dropped: invalid=1 "), "{out}");
    assert_eq!(frames, vec![jumbo]);
}

/// A TCP segment with options (MSS, SACK permitted, timestamps, window
/// scale: 20 bytes of them) between "addr:port"s, VLAN-tagged twice.
fn tcp(src: (&str, u16), dst: (&str, u16), seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let seg = Tcp {
        sport: src.1,
        dport: dst.1,
        seq,
        ack,
        flags,
        window: 64240,
        options: &[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ],
    };
    frame(&ip(src.0, dst.0, 6, &[], &seg.bytes(b"")), &[100, 200])
}

/// In mbufs of 64 data bytes (`--mbuf-size=192`), a double-tagged TCP
/// header with options (82 bytes of headers) and an IPv6 UDP header behind
/// two extension headers (78 bytes) are split across segments: they are
/// tracked from a linear copy, so the handshake is ESTABLISHED, the IPv6
/// exchange gets its reply, a jumbo frame in 141 segments passes, and a
/// split packet with a bad checksum is INVALID. Everything else comes out
/// as it went in.
#[test]
fn headers_split_across_segments_are_tracked() {
    let (c, s) = ((C, 40000), (S, 443));
    let mut input = vec![
        tcp(c, s, 1000, 0, 0x02),
        tcp(s, c, 7000, 1001, 0x12),
        tcp(c, s, 1001, 7001, 0x10),
    ];
    // Hop-by-hop and destination options before UDP.
    let v6 = |src, dst, sport, dport, data: &[u8]| {
        frame(&ip(src, dst, 17, &[0, 60], &udp(sport, dport, data)), &[])
    };
    input.push(v6(C6, S6, 5000, 53, b"question"));
    input.push(v6(S6, C6, 53, 5000, b"answer"));
    let data: Vec<u8> = (0..8958).map(|i| (i * 5) as u8).collect();
    input.push(frame(&ip(C, S, 17, &[], &udp(7000, 53, &data)), &[]));
    let mut bad = v6(C6, S6, 5001, 53, b"question");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut expected = input.clone();
    input.push(bad);
    let (out, frames) = firewall("split", &input, &["--mbuf-size=192", "--max-pkt-len=9018"]);
    assert!(out.contains("NEW=3 ESTABLISHED=1 "), "{out}");
    assert!(out.contains("ESTABLISHED_REPLY=2 "), "{out}");
    assert!(out.contains("dropped: invalid=1 "), "{out}");
    assert!(out.contains("MTU 9000"), "{out}");
    assert_eq!(frames.len(), expected.len(), "{out}");
    assert_eq!(frames, std::mem::take(&mut expected));
}
