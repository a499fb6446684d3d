use super::*;
use crate::synth::{fragment, fragments, icmp, ip_packet, udp, Tcp};
use crate::wire::{parse_ip, Fragment};

/// A held fragment: its IP packet and a tag to tell it by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct F(Vec<u8>, usize);

impl HeldFragment for F {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

fn v4() -> (std::net::IpAddr, std::net::IpAddr) {
    ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap())
}

fn v6() -> (std::net::IpAddr, std::net::IpAddr) {
    (
        "2001:2::1".parse().unwrap(),
        "2001:2:0:1::1".parse().unwrap(),
    )
}

fn big_udp(v: (std::net::IpAddr, std::net::IpAddr), n: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
    ip_packet(v.0, v.1, 17, &[], &udp(5000, 53, &payload))
}

/// Pushes each fragment in order; returns the outcomes, as names.
fn push_all(d: &mut Defrag<F>, frags: &[Vec<u8>], now: u64) -> Vec<String> {
    frags
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let ip = parse_ip(f, f.len(), false).expect("fragment parses");
            assert_ne!(ip.fragment, Fragment::Whole);
            match d.push(&FragHeader::of(&ip), 0, F(f.clone(), i), now) {
                Push::Held => "held".to_string(),
                Push::Complete => "complete".to_string(),
                Push::Refused(r, h) => {
                    assert_eq!(h.1, i, "the refused fragment comes back");
                    r.to_string()
                }
            }
        })
        .collect()
}

fn cfg() -> DefragConfig {
    DefragConfig::default()
}

#[test]
fn reassembles_both_families_in_any_order_into_the_original() {
    for v in [v4(), v6()] {
        let whole = big_udp(v, 3000);
        let mut frags = fragments(&whole, 77, 1232);
        assert_eq!(frags.len(), 3);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut d = Defrag::new(cfg());
            let shuffled: Vec<Vec<u8>> = order.iter().map(|&i| frags[i].clone()).collect();
            let out = push_all(&mut d, &shuffled, 0);
            assert_eq!(out, ["held", "held", "complete"]);
            let got = d.datagram().to_vec();
            // The IPv4 header differs only in the flags, which ip_packet
            // sets to DF: compare the rest.
            if v.0.is_ipv4() {
                assert_eq!(got[..4], whole[..4]);
                assert_eq!(got[4..6], 77u16.to_be_bytes(), "the fragments' id");
                assert_eq!(got[8..10], whole[8..10]);
                assert_eq!(got[12..], whole[12..]);
                let ip = parse_ip(&got, got.len(), false).unwrap();
                assert!(crate::wire::ip_header_ok(&ip));
            } else {
                assert_eq!(got, whole);
            }
            let ip = parse_ip(&got, got.len(), false).unwrap();
            assert_eq!(ip.fragment, Fragment::Whole);
            assert_eq!(crate::wire::l4_ok(&ip), Some(true));
            let back: Vec<usize> = d.take_fragments().map(|f| f.1).collect();
            assert_eq!(back, [0, 1, 2], "fragments come back in arrival order");
            assert_eq!((d.pending(), d.held()), (0, 0));
            assert_eq!(d.stats().reassembled, 1);
        }
        frags.clear();
    }
}

#[test]
fn an_exact_duplicate_is_dropped_alone() {
    let whole = big_udp(v4(), 2000);
    let f = fragments(&whole, 1, 1008);
    let mut d = Defrag::new(cfg());
    let out = push_all(&mut d, &[f[0].clone(), f[0].clone(), f[1].clone()], 0);
    assert_eq!(out, ["held", "fragment-duplicate", "complete"]);
    assert_eq!(d.stats().duplicate, 1);
}

#[test]
fn overlapping_fragments_drop_the_datagram() {
    for v in [v4(), v6()] {
        let whole = big_udp(v, 2000);
        let f = fragment(&whole, 9, &[(0, 1000), (992, 1016)]);
        let mut d = Defrag::new(cfg());
        let out = push_all(&mut d, &f, 0);
        assert_eq!(out, ["held", "fragment-overlap"]);
        assert_eq!((d.pending(), d.held(), d.stats().overlap), (0, 0, 1));
    }
}

#[test]
fn a_tiny_first_fragment_drops_the_datagram() {
    // RFC 1858: a first fragment of 8 bytes hides the TCP flags.
    let seg = Tcp {
        sport: 1,
        dport: 22,
        flags: 0x02,
        ..Tcp::default()
    };
    let (a, b) = v4();
    let whole = ip_packet(a, b, 6, &[], &seg.bytes(&[0u8; 64]));
    let f = fragment(&whole, 3, &[(16, 68), (0, 16)]);
    let mut d = Defrag::new(cfg());
    assert_eq!(push_all(&mut d, &f, 0), ["held", "fragment-tiny"]);
    assert_eq!((d.pending(), d.stats().tiny), (0, 1));
}

#[test]
fn limits_on_fragments_datagrams_and_size() {
    // Too many fragments for one datagram.
    let whole = big_udp(v4(), 1000);
    let f = fragments(&whole, 5, 8);
    let mut d = Defrag::new(DefragConfig {
        max_fragments: 4,
        ..cfg()
    });
    let out = push_all(&mut d, &f[..5], 0);
    assert_eq!(out, ["held", "held", "held", "held", "fragment-too-many"]);
    assert_eq!((d.pending(), d.stats().too_many), (0, 1));

    // Too many datagrams: the next one is refused, the held ones stay.
    let mut d = Defrag::new(DefragConfig {
        max_datagrams: 2,
        ..cfg()
    });
    for id in 0..3 {
        let f = fragments(&whole, id, 512);
        let want = if id < 2 {
            "held"
        } else {
            "fragment-table-full"
        };
        assert_eq!(push_all(&mut d, &f[..1], 0), [want]);
    }
    assert_eq!((d.pending(), d.stats().full), (2, 1));

    // Fragments held in all.
    let mut d = Defrag::new(DefragConfig {
        max_held: 3,
        ..cfg()
    });
    let f = fragments(&whole, 8, 256);
    assert_eq!(
        push_all(&mut d, &f, 0),
        ["held", "held", "held", "fragment-table-full"]
    );

    // Past 65535 bytes: a last fragment at the largest offset.
    for v in [v4(), v6()] {
        let whole = big_udp(v, 64);
        let mut f = fragment(&whole, 4, &[(0, 72)]).remove(0);
        let at = if v.0.is_ipv4() { 6 } else { 42 };
        let fo = if v.0.is_ipv4() { 0x1fff } else { 0xfff8 };
        f[at..at + 2].copy_from_slice(&(fo as u16).to_be_bytes());
        if v.0.is_ipv4() {
            f[10..12].copy_from_slice(&[0, 0]);
        }
        let mut d = Defrag::new(cfg());
        assert_eq!(push_all(&mut d, &[f], 0), ["fragment-oversize"]);
        assert_eq!(d.stats().oversize, 1);
    }
}

#[test]
fn malformed_fragments_are_refused() {
    let whole = big_udp(v4(), 1000);
    // A middle fragment whose length is not a multiple of 8.
    let f = fragment(&whole, 1, &[(0, 100)]);
    let mut d = Defrag::new(cfg());
    assert_eq!(push_all(&mut d, &f, 0), ["fragment-bad-length"]);
    // Two last fragments that disagree on the datagram's length.
    let whole = big_udp(v4(), 2000);
    let last = fragment(&whole, 2, &[(1008, 1000)]).remove(0);
    let mut early_last = fragment(&whole, 2, &[(8, 1000)]).remove(0);
    early_last[6] &= !0x20;
    let mut d = Defrag::new(cfg());
    let out = push_all(&mut d, &[last, early_last], 0);
    assert_eq!(out, ["held", "fragment-past-end"]);
    assert_eq!((d.pending(), d.stats().invalid), (0, 1));
}

#[test]
fn datagrams_time_out_from_their_first_fragment() {
    let whole = big_udp(v6(), 2000);
    let f = fragments(&whole, 11, 1024);
    let mut d = Defrag::new(cfg());
    assert_eq!(push_all(&mut d, &f[..1], 0), ["held"]);
    assert_eq!(d.expire(29 * SEC), 0);
    // The second fragment, late, does not extend the deadline.
    assert_eq!(push_all(&mut d, &f[..0], 29 * SEC), Vec::<String>::new());
    assert_eq!(d.expire(30 * SEC), 1);
    assert_eq!((d.pending(), d.held(), d.stats().timeout), (0, 0, 1));
    // The rest alone is a new, incomplete datagram.
    assert_eq!(push_all(&mut d, &f[1..], 31 * SEC), ["held"]);
}

#[test]
fn an_icmp_echo_and_a_tcp_segment_reassemble() {
    let (a, b) = v4();
    let ping = ip_packet(a, b, 1, &[], &icmp(8, 0, 7, 1, &[0xab; 2972]));
    let seg = Tcp {
        sport: 40000,
        dport: 80,
        flags: 0x18,
        ..Tcp::default()
    };
    let tcp = ip_packet(a, b, 6, &[], &seg.bytes(&[0x5a; 2000]));
    for whole in [ping, tcp] {
        let f = fragments(&whole, 99, 1480);
        let mut d = Defrag::new(cfg());
        let out = push_all(&mut d, &f, 0);
        assert_eq!(out.last().map(String::as_str), Some("complete"));
        let ip = parse_ip(d.datagram(), d.datagram().len(), false).unwrap();
        assert_eq!(crate::wire::l4_ok(&ip), Some(true));
        assert_eq!(ip.wire_len, whole.len());
    }
}
