//! `wire` against a second opinion: etherparse's lax slicer must read
//! every frame to the same headers, lengths and ports, or differ for a
//! reason `ctfwd::wire::reference` names. Frames are built with
//! etherparse's headers (VLAN tags, IPv4 with fragments, IPv6 with
//! extension headers, TCP, UDP, ICMP), then damaged: bytes overwritten,
//! the frame cut short.
//!
//! Needs the `etherparse` feature (`scripts/test` runs it in the build
//! without DPDK).

#![cfg(feature = "etherparse")]

use std::collections::HashMap;

use ctfwd::wire::reference::{compare, Difference, Verdict};
use etherparse::{
    EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type,
    IpFragOffset, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader,
    SingleVlanHeader, TcpHeader, UdpHeader, VlanId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// What a generated frame carries.
#[derive(Debug, Clone)]
struct Shape {
    vlans: u8,
    v6: bool,
    /// IPv4: fragment offset (units of 8) and MF; IPv6: a Fragment header.
    frag: Option<(u16, bool)>,
    /// IPv6 extension headers before the transport: (type, 8-byte units).
    exts: Vec<(u8, u8)>,
    /// 6 TCP, 17 UDP, 1/58 ICMP, anything else raw.
    proto: u8,
    ports: (u16, u16),
    payload: Vec<u8>,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0u8..=3,
        any::<bool>(),
        prop::option::of((0u16..4, any::<bool>())),
        prop::collection::vec(
            (prop::sample::select(vec![0u8, 43, 44, 60, 135]), 0u8..3),
            0..3,
        ),
        prop::sample::select(vec![6u8, 17, 1, 58, 51, 2, 47]),
        any::<(u16, u16)>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(vlans, v6, frag, exts, proto, ports, payload)| Shape {
            vlans,
            v6,
            frag,
            exts,
            proto,
            ports,
            payload,
        })
}

fn transport(s: &Shape) -> Vec<u8> {
    let echo = IcmpEchoHeader {
        id: s.ports.0,
        seq: s.ports.1,
    };
    let mut l4 = match s.proto {
        6 => TcpHeader::new(s.ports.0, s.ports.1, 1, 1024)
            .to_bytes()
            .to_vec(),
        17 => UdpHeader {
            source_port: s.ports.0,
            destination_port: s.ports.1,
            length: (8 + s.payload.len()) as u16,
            checksum: 0,
        }
        .to_bytes()
        .to_vec(),
        // An echo request, or the start of a timestamp request or reply.
        1 => match s.ports.0 % 3 {
            0 => Icmpv4Header::new(Icmpv4Type::EchoRequest(echo))
                .to_bytes()
                .to_vec(),
            n => vec![[13, 14][usize::from(n) - 1], 0, 0, 0, 0, 1, 0, 1],
        },
        58 => Icmpv6Header::new(Icmpv6Type::EchoRequest(echo))
            .to_bytes()
            .to_vec(),
        _ => Vec::new(),
    };
    l4.extend_from_slice(&s.payload);
    l4
}

fn build(s: &Shape) -> Vec<u8> {
    let l4 = transport(s);
    let mut ip = Vec::new();
    let ethertype = if s.v6 {
        // The chain, last first: the transport, the Fragment header of
        // `frag`, then the extension headers. A Fragment header among
        // those is written as a first fragment, so that a second nests.
        let mut next = s.proto;
        let mut body = l4;
        let fragment = |next, (offset, more): (u16, bool)| {
            let offset = IpFragOffset::try_new(offset).unwrap();
            Ipv6FragmentHeader::new(IpNumber(next), offset, more, 7)
                .to_bytes()
                .to_vec()
        };
        if let Some(frag) = s.frag {
            let mut h = fragment(next, frag);
            h.extend_from_slice(&body);
            (body, next) = (h, 44);
        }
        for &(ty, units) in s.exts.iter().rev() {
            let mut h = if ty == 44 {
                fragment(next, (0, true))
            } else {
                let opts = vec![0u8; 6 + 8 * usize::from(units)];
                Ipv6RawExtHeader::new_raw(IpNumber(next), &opts)
                    .unwrap()
                    .to_bytes()
                    .to_vec()
            };
            h.extend_from_slice(&body);
            (body, next) = (h, ty);
        }
        let h = Ipv6Header {
            payload_length: body.len() as u16,
            next_header: IpNumber(next),
            hop_limit: 64,
            source: [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ..Default::default()
        };
        ip.extend_from_slice(&h.to_bytes());
        ip.extend_from_slice(&body);
        EtherType::IPV6
    } else {
        let mut h = Ipv4Header::new(
            l4.len() as u16,
            64,
            IpNumber(s.proto),
            [198, 18, 0, 1],
            [198, 19, 0, 1],
        )
        .unwrap();
        if let Some((offset, more)) = s.frag {
            h.fragment_offset = IpFragOffset::try_new(offset).unwrap();
            h.more_fragments = more;
        }
        h.header_checksum = h.calc_header_checksum();
        ip.extend_from_slice(&h.to_bytes());
        ip.extend_from_slice(&l4);
        EtherType::IPV4
    };
    let mut frame = Vec::new();
    let tag_type = [EtherType::VLAN_TAGGED_FRAME, EtherType::PROVIDER_BRIDGING];
    let first = if s.vlans > 0 {
        tag_type[usize::from(s.vlans % 2)]
    } else {
        ethertype
    };
    let eth = Ethernet2Header {
        source: [2, 0, 0, 0, 0, 1],
        destination: [2, 0, 0, 0, 0, 2],
        ether_type: first,
    };
    frame.extend_from_slice(&eth.to_bytes());
    for i in 0..s.vlans {
        let tag = SingleVlanHeader {
            vlan_id: VlanId::try_new(u16::from(i) + 1).unwrap(),
            ether_type: if i + 1 < s.vlans {
                EtherType::VLAN_TAGGED_FRAME
            } else {
                ethertype
            },
            ..Default::default()
        };
        frame.extend_from_slice(&tag.to_bytes());
    }
    frame.extend_from_slice(&ip);
    frame
}

/// A frame, maybe damaged: some bytes overwritten, maybe cut short.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (
        shape(),
        prop::collection::vec((0usize..120, any::<u8>()), 0..3),
        prop::option::of(0usize..160),
    )
        .prop_map(|(s, edits, cut)| {
            let mut f = build(&s);
            for (at, b) in edits {
                let at = at % f.len();
                f[at] = b;
            }
            if let Some(cut) = cut {
                f.truncate(cut);
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn wire_and_etherparse_agree_or_explain(f in frame()) {
        if let Err(e) = compare(&f) {
            prop_assert!(false, "{e}\nframe: {f:02x?}");
        }
    }
}

/// Undamaged frames of every shape read the same in both, but for the
/// differences that are the frame's shape itself.
#[test]
fn whole_frames_mostly_read_the_same() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut verdicts: HashMap<String, u32> = HashMap::new();
    for _ in 0..5_000 {
        let s = shape().new_tree(&mut runner).unwrap().current();
        let f = build(&s);
        let v = compare(&f).unwrap_or_else(|e| panic!("{e}\n{s:?}"));
        *verdicts.entry(format!("{v:?}")).or_default() += 1;
        let timestamp = s.proto == 1 && s.ports.0 % 3 != 0;
        if s.vlans < 3 && s.exts.is_empty() && s.proto != 51 && !timestamp {
            assert_eq!(v, Verdict::Same, "{s:?}");
        }
    }
    assert!(verdicts["Same"] > 2_500, "{verdicts:?}");
}

/// Damaged frames reach every difference the comparison knows, so none
/// of its explanations is dead.
#[test]
fn every_explanation_is_reached() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen: HashMap<Difference, u32> = HashMap::new();
    for _ in 0..200_000 {
        let f = frame().new_tree(&mut runner).unwrap().current();
        match compare(&f) {
            Ok(Verdict::Explained(d)) => *seen.entry(d).or_default() += 1,
            Ok(Verdict::Same) => {}
            Err(e) => panic!("{e}\nframe: {f:02x?}"),
        }
    }
    for d in Difference::ALL {
        assert!(seen.contains_key(&d), "{d:?} never seen: {seen:?}");
    }
}
