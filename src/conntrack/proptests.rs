//! Property tests: random traffic over a few hosts, random clock steps and
//! random egress decisions; after every step the table must be coherent.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::synth::{frame, icmp, ip_packet, udp, Tcp};
use crate::wire::{parse_frame, Frame, LinkType};

#[derive(Debug, Clone)]
enum Egress {
    Confirm,
    Discard,
    /// Neither: the end-of-burst reap must catch it.
    Forget,
}

#[derive(Debug, Clone)]
enum Op {
    Packet {
        proto: u8,
        client: u8,
        server: u8,
        cport: u16,
        reverse: bool,
        v6: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u16,
        egress: Egress,
    },
    Advance(u64),
    Gc(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop::sample::select(vec![
        0x02u8, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x00, 0x03,
    ]);
    let egress = prop_oneof![
        8 => Just(Egress::Confirm),
        1 => Just(Egress::Discard),
        1 => Just(Egress::Forget),
    ];
    prop_oneof![
        10 => (
            prop::sample::select(vec![6u8, 17, 1, 47]),
            0u8..3,
            0u8..2,
            prop::sample::select(vec![1000u16, 1001, 1002]),
            any::<bool>(),
            prop::bool::weighted(0.2),
            flags,
            prop::sample::select(vec![0u32, 1, 1000, 1001, 5000, 5001, 70000, 3_000_000_000]),
            prop::sample::select(vec![0u32, 1001, 5001, 6001, 1_000_000]),
            0u16..1500,
            egress,
        )
            .prop_map(|(proto, client, server, cport, reverse, v6, flags, seq, ack, len, egress)| {
                Op::Packet { proto, client, server, cport, reverse, v6, flags, seq, ack, len, egress }
            }),
        2 => prop::sample::select(vec![0u64, 1, 3, 31, 121, 301, 432_001]).prop_map(Op::Advance),
        1 => (1usize..64).prop_map(Op::Gc),
    ]
}

fn build(op: &Op) -> Option<Vec<u8>> {
    let Op::Packet {
        proto,
        client,
        server,
        cport,
        reverse,
        v6,
        flags,
        seq,
        ack,
        len,
        ..
    } = op
    else {
        return None;
    };
    let (c, s): (IpAddr, IpAddr) = if *v6 {
        (
            format!("2001:db8::1:{}", client + 1).parse().unwrap(),
            format!("2001:db8::2:{}", server + 1).parse().unwrap(),
        )
    } else {
        (
            format!("198.18.0.{}", client + 1).parse().unwrap(),
            format!("198.19.0.{}", server + 1).parse().unwrap(),
        )
    };
    let (src, dst, sp, dp) = if *reverse {
        (s, c, 80, *cport)
    } else {
        (c, s, *cport, 80)
    };
    let payload = vec![0u8; *len as usize];
    let l4 = match proto {
        6 => Tcp {
            sport: sp,
            dport: dp,
            seq: *seq,
            ack: *ack,
            flags: *flags,
            window: 29200,
            options: &[],
        }
        .bytes(&payload),
        17 => udp(sp, dp, &payload),
        1 => {
            // Echo request or reply, id from the port.
            let ty = if *reverse {
                if *v6 {
                    129
                } else {
                    0
                }
            } else if *v6 {
                128
            } else {
                8
            };
            icmp(ty, 0, *cport, 1, &payload[..payload.len().min(64)])
        }
        _ => payload,
    };
    let proto = if *proto == 1 && *v6 { 58 } else { *proto };
    Some(frame(&ip_packet(src, dst, proto, &[], &l4), &[]))
}

fn check(shard: &Shard, packets: u64) -> Result<(), TestCaseError> {
    shard.check_invariants(packets).map_err(TestCaseError::fail)
}

proptest! {
    #[test]
    fn table_stays_coherent(ops in prop::collection::vec(op(), 1..80), max in 2usize..40) {
        let mut shard = Shard::new(Config { max, ..Config::default() });
        let mut now = 1_000 * SEC;
        let mut packets = 0u64;
        for op in &ops {
            match op {
                Op::Advance(s) => now += s * SEC,
                Op::Gc(b) => { shard.gc(now, *b); }
                Op::Packet { egress, .. } => {
                    let f = build(op).unwrap();
                    let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, &f, f.len()) else {
                        return Err(TestCaseError::fail("generated frame does not parse"));
                    };
                    let c = shard.classify(ip, 0);
                    let mut v = shard.ingress(&c, now);
                    packets += 1;
                    if let Some(conn) = v.conn.and_then(|r| shard.conn(r)) {
                        prop_assert!(!conn.deadline.passed(now), "an expired connection was found");
                    }
                    if let Some(u) = v.unconfirmed.take() {
                        match egress {
                            Egress::Confirm => { let _ = shard.confirm(u); }
                            Egress::Discard => shard.discard(u),
                            Egress::Forget => drop(u),
                        }
                    }
                    shard.reap_unconfirmed();
                }
            }
            check(&shard, packets)?;
        }
    }

    /// Whatever the bytes, parsing and tracking never panic, and every
    /// packet is counted once.
    #[test]
    fn arbitrary_bytes_never_panic(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..20),
                                   link in prop::sample::select(vec![1u32, 101, 113, 276, 0])) {
        let mut shard = Shard::new(Config { max: 16, checksum: true, ..Config::default() });
        let link = LinkType::from_linktype(link).unwrap();
        for (i, f) in frames.iter().enumerate() {
            match parse_frame(link, f, f.len()) {
                Ok(Frame::Ip(ip)) => {
                    let c = shard.classify(ip, 0);
                    let mut v = shard.ingress(&c, i as u64 * SEC);
                    if let Some(u) = v.unconfirmed.take() { let _ = shard.confirm(u); }
                }
                Ok(Frame::NotIp(_)) => shard.ignore(),
                Err(_) => shard.malformed(),
            }
        }
        check(&shard, frames.len() as u64)?;
    }

    /// Valid frames with a few bytes changed reach deeper than random bytes.
    #[test]
    fn mutated_frames_never_panic(ops in prop::collection::vec(op(), 1..30),
                                  flips in prop::collection::vec((0usize..200, any::<u8>()), 0..6)) {
        let mut shard = Shard::new(Config { max: 16, ..Config::default() });
        let mut n = 0;
        for op in &ops {
            let Some(mut f) = build(op) else { continue };
            for &(at, b) in &flips {
                let len = f.len();
                f[at % len] = b;
            }
            n += 1;
            match parse_frame(LinkType::Ethernet, &f, f.len()) {
                Ok(Frame::Ip(ip)) => {
                    let c = shard.classify(ip, 0);
                    let mut v = shard.ingress(&c, n * SEC);
                    if let Some(u) = v.unconfirmed.take() { let _ = shard.confirm(u); }
                }
                Ok(Frame::NotIp(_)) => shard.ignore(),
                Err(_) => shard.malformed(),
            }
        }
        check(&shard, n)?;
    }
}

proptest! {
    /// The fuzzers' driver, on random byte strings.
    #[test]
    fn byte_sequences_keep_invariants(data in prop::collection::vec(any::<u8>(), 0..600)) {
        run_byte_sequence(&data).map_err(TestCaseError::fail)?;
    }
}
