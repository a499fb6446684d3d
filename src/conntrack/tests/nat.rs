//! NAT bound to connections: the choice of the translated tuple, its
//! uniqueness, the owner constraint with several workers, and what each
//! direction's packets must be rewritten to.

use std::sync::Arc;

use super::*;
use crate::conntrack::steering::{HashFields, Owners, Steering};
use crate::wire::Addr;

fn v4(s: &str) -> Addr {
    Addr::from_std(s.parse().unwrap())
}

fn range(min: &str, max: &str, ports: Option<(u16, u16)>) -> NatRange {
    NatRange {
        min_addr: v4(min),
        max_addr: v4(max),
        ports,
        persistent: false,
        random: false,
    }
}

impl Harness {
    /// Ingress, NAT of the new connection, then egress: as the pipeline
    /// runs a connection's first packet.
    fn feed_nat(&mut self, f: &[u8], manip: Manip, r: &NatRange) -> Result<Seen, NatError> {
        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
            panic!("not IP")
        };
        let c = self.shard.classify(ip, 0);
        let mut v = self.shard.ingress(&c, self.now);
        if let Err(e) = self.shard.nat(&mut v, manip, r) {
            if let Some(u) = v.unconfirmed.take() {
                self.shard.discard(u);
            }
            return Err(e);
        }
        let conn = self.shard.egress(&mut v, &c, self.now).expect("egress");
        Ok(Seen {
            ctinfo: v.ctinfo,
            conn,
            reason: v.reason,
        })
    }

    fn reply_tuple(&self, s: &Seen) -> Tuple {
        self.tuples(s)[1]
    }
}

fn tuple_of(f: &[u8]) -> Tuple {
    let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
        panic!("not IP")
    };
    Classified::extract(&ip, 0).tuple
}

#[test]
fn snat_keeps_a_free_port_and_rewrites_both_directions() {
    let mut h = Harness::new();
    let r = range("198.18.0.100", "198.18.0.100", None);
    let req = udp_frame("198.18.0.1:5000", "198.19.0.1:53", b"q");
    let s = h.feed_nat(&req, Manip::Src, &r).unwrap();
    assert_eq!(s.ctinfo, CtInfo::New);
    let reply = h.reply_tuple(&s);
    assert_eq!(
        reply,
        tuple_of(&udp_frame("198.19.0.1:53", "198.18.0.100:5000", b""))
    );
    let c = h.conn(&s);
    assert!(c.status.has(Status::SRC_NAT) && c.status.has(Status::SRC_NAT_DONE));
    assert!(!c.status.has(Status::DST_NAT));
    // The original direction leaves with the NAT address as its source,
    // the reply with the client as its destination.
    let r0 = s.conn.unwrap();
    assert_eq!(
        h.shard.nat_target(r0, Dir::Original),
        Some(tuple_of(&udp_frame(
            "198.18.0.100:5000",
            "198.19.0.1:53",
            b""
        )))
    );
    let back = h.feed(&udp_frame("198.19.0.1:53", "198.18.0.100:5000", b"a"));
    assert_eq!(back.ctinfo, CtInfo::EstablishedReply);
    assert_eq!(
        h.shard.nat_target(back.conn.unwrap(), Dir::Reply),
        Some(tuple_of(&udp_frame(
            "198.19.0.1:53",
            "198.18.0.1:5000",
            b""
        )))
    );
    // The conntrack -L line shows the translated reply tuple.
    let line = h.shard.list(h.now);
    assert!(
        line.contains("src=198.18.0.1 dst=198.19.0.1 sport=5000 dport=53")
            && line.contains("src=198.19.0.1 dst=198.18.0.100 sport=53 dport=5000"),
        "{line}"
    );
}

#[test]
fn an_untranslated_mapping_sets_no_nat_bit() {
    let mut h = Harness::new();
    // The source is already in the range: kept, nothing to rewrite.
    let r = range("198.18.0.0", "198.18.0.255", None);
    let s = h
        .feed_nat(
            &udp_frame("198.18.0.1:5000", "198.19.0.1:53", b"q"),
            Manip::Src,
            &r,
        )
        .unwrap();
    let c = h.conn(&s);
    assert!(!c.status.has(Status::SRC_NAT) && c.status.has(Status::SRC_NAT_DONE));
    assert_eq!(h.shard.nat_target(s.conn.unwrap(), Dir::Original), None);
}

#[test]
fn reply_tuples_are_unique_and_a_full_range_is_exhausted() {
    let mut h = Harness::new();
    let r = range("198.18.0.100", "198.18.0.100", Some((6000, 6003)));
    let mut replies = Vec::new();
    for i in 1..=4 {
        let f = udp_frame(&format!("198.18.0.{i}:5000"), "198.19.0.1:53", b"q");
        let s = h.feed_nat(&f, Manip::Src, &r).unwrap();
        let rt = h.reply_tuple(&s);
        assert!((6000..=6003).contains(&rt.dport));
        replies.push(rt);
    }
    replies.sort_by_key(|t| t.dport);
    replies.dedup();
    assert_eq!(replies.len(), 4, "no two connections share a reply tuple");
    let f = udp_frame("198.18.0.9:5000", "198.19.0.1:53", b"q");
    assert_eq!(
        h.feed_nat(&f, Manip::Src, &r).err(),
        Some(NatError::Exhausted)
    );
    assert_eq!(
        h.shard.table().in_use(),
        4,
        "the refused connection is gone"
    );
    // Another server: the same ports are free again towards it.
    let f = udp_frame("198.18.0.9:5000", "198.19.0.2:53", b"q");
    assert!(h.feed_nat(&f, Manip::Src, &r).is_ok());
}

/// An outside client's SYN to 198.18.0.200:8080, forwarded by DNAT to
/// the inside server 198.18.0.1:80.
fn forward_a_syn(h: &mut Harness) -> Seen {
    let r = range("198.18.0.1", "198.18.0.1", Some((80, 80)));
    let syn = tcp_frame(
        "198.19.0.9:40000",
        "198.18.0.200:8080",
        1000,
        0,
        TCP_SYN,
        b"",
    );
    h.feed_nat(&syn, Manip::Dst, &r).unwrap()
}

/// The forwarded server's SYN-ACK to `forward_a_syn`'s client.
fn forwarded_synack() -> Vec<u8> {
    tcp_frame(
        "198.18.0.1:80",
        "198.19.0.9:40000",
        5000,
        1001,
        TCP_SYN | TCP_ACK,
        b"",
    )
}

#[test]
fn dnat_port_forward() {
    let mut h = Harness::new();
    let s = forward_a_syn(&mut h);
    let c = h.conn(&s);
    assert!(c.status.has(Status::DST_NAT));
    assert_eq!(
        h.reply_tuple(&s),
        tuple_of(&tcp_frame(
            "198.18.0.1:80",
            "198.19.0.9:40000",
            0,
            0,
            TCP_SYN,
            b""
        ))
    );
    // The server's SYN-ACK is the reply; it leaves from 198.18.0.200:8080.
    let back = h.feed(&forwarded_synack());
    assert_eq!(back.ctinfo, CtInfo::EstablishedReply);
    let t = h.shard.nat_target(back.conn.unwrap(), Dir::Reply).unwrap();
    assert_eq!((t.src, t.sport), (v4("198.18.0.200"), 8080));
}

#[test]
fn persistent_keeps_a_clients_address_and_random_moves_its_port() {
    let mut h = Harness::new();
    let mut r = range("198.18.1.0", "198.18.1.255", None);
    r.persistent = true;
    let addrs: Vec<Addr> = (1..=20)
        .map(|i| {
            let f = udp_frame("198.18.0.1:5000", &format!("198.19.0.{i}:53"), b"q");
            let s = h.feed_nat(&f, Manip::Src, &r).unwrap();
            h.reply_tuple(&s).dst
        })
        .collect();
    assert!(addrs.iter().all(|a| *a == addrs[0]), "{addrs:?}");
    let mut r = range("198.18.0.100", "198.18.0.100", None);
    r.random = true;
    let moved = (1..=20)
        .filter(|i| {
            let f = udp_frame(&format!("198.18.0.{i}:5000"), "198.19.0.1:53", b"q");
            let s = h.feed_nat(&f, Manip::Src, &r).unwrap();
            h.reply_tuple(&s).dport != 5000
        })
        .count();
    assert!(moved >= 19, "{moved}");
}

#[test]
fn icmp_echo_identifiers_are_translated() {
    let mut h = Harness::new();
    let r = range("198.18.0.100", "198.18.0.100", None);
    let echo = |src: &str, id: u16| {
        frame(
            &ip_packet(
                src.parse().unwrap(),
                "198.19.0.1".parse().unwrap(),
                1,
                &[],
                &icmp(8, 0, id, 1, b"ping"),
            ),
            &[],
        )
    };
    let a = h.feed_nat(&echo("198.18.0.1", 7), Manip::Src, &r).unwrap();
    let b = h.feed_nat(&echo("198.18.0.2", 7), Manip::Src, &r).unwrap();
    let (ra, rb) = (h.reply_tuple(&a), h.reply_tuple(&b));
    assert_eq!(ra.sport, 7, "the first keeps its identifier");
    assert_ne!(rb.sport, 7, "the second gets another");
    assert_eq!(rb.dport >> 8, 0, "the reply tuple is an echo reply");
    let reply = frame(
        &ip_packet(
            "198.19.0.1".parse().unwrap(),
            "198.18.0.100".parse().unwrap(),
            1,
            &[],
            &icmp(0, 0, rb.sport, 1, b"ping"),
        ),
        &[],
    );
    let back = h.feed(&reply);
    assert_eq!(back.ctinfo, CtInfo::EstablishedReply);
    let t = h.shard.nat_target(back.conn.unwrap(), Dir::Reply).unwrap();
    assert_eq!((t.dst, t.sport), (v4("198.18.0.2"), 7));
}

/// With several workers, every translated connection's reply tuple lands
/// on the worker that made it: SNAT by its port, DNAT to a port range by
/// its port, ICMP through an address range by its address.
#[test]
fn translated_replies_land_on_the_owner() {
    let mut next = crate::synth::xorshift(99);
    for workers in [2usize, 3] {
        let owners = Arc::new(Owners::new(None, workers));
        for me in 0..workers as u16 {
            let steering = Steering::new(Arc::clone(&owners), HashFields::ALL, me);
            let mut h = Harness::new();
            h.shard.set_steering(steering.clone());
            let mut same_entry = 0;
            let snat = range("198.18.0.100", "198.18.0.100", None);
            let dnat = range("198.18.0.1", "198.18.0.1", Some((8000, 8999)));
            let icmp_range = range("198.18.2.0", "198.18.2.255", None);
            for i in 0..300 {
                let r = next();
                let src = format!(
                    "198.18.{}.{}:{}",
                    r >> 8 & 0xff,
                    r & 0xff,
                    1024 + (r >> 16) as u16 % 60000
                );
                let s = match i % 3 {
                    0 => h.feed_nat(&udp_frame(&src, "198.19.0.1:53", b"q"), Manip::Src, &snat),
                    1 => h.feed_nat(
                        &tcp_frame(&src, "198.18.0.200:8080", 1, 0, TCP_SYN, b""),
                        Manip::Dst,
                        &dnat,
                    ),
                    _ => {
                        let ip: std::net::IpAddr = src.split(':').next().unwrap().parse().unwrap();
                        let f = frame(
                            &ip_packet(
                                ip,
                                "198.19.0.1".parse().unwrap(),
                                1,
                                &[],
                                &icmp(8, 0, r as u16, 1, b"p"),
                            ),
                            &[],
                        );
                        h.feed_nat(&f, Manip::Src, &icmp_range)
                    }
                }
                .unwrap();
                let reply = h.reply_tuple(&s);
                assert!(steering.owns(&reply), "worker {me} of {workers}, case {i}");
                if i % 3 == 0 {
                    // SNAT by port lands on the original's very entry, so
                    // a connection from any other port of the server to
                    // the translated endpoint (a TFTP transfer) lands on
                    // one entry both ways too.
                    let orig = h.tuples(&s)[0];
                    if steering.owns(&orig) {
                        assert_eq!(steering.entry(&reply), steering.entry(&orig));
                        let other_port = next() as u16;
                        let translated = Tuple {
                            sport: other_port,
                            ..reply
                        };
                        let untranslated = Tuple {
                            sport: other_port,
                            ..orig.swapped()
                        };
                        assert_eq!(steering.entry(&translated), steering.entry(&untranslated));
                        same_entry += 1;
                    }
                }
            }
            assert!(same_entry > 20, "{same_entry}");
        }
    }
}

/// TFTP through SNAT: the helper's expectation is for the translated
/// client endpoint, and the transfer from the server's new port follows
/// its master's translation back to the client (`nf_nat_follow_master`).
#[test]
fn tftp_transfer_follows_its_masters_translation() {
    let mut h = Harness::new();
    let r = range("198.18.0.100", "198.18.0.100", None);
    let rrq = udp_frame(
        "198.18.0.1:5000",
        "198.18.0.2:69",
        b"\x00\x01f\x00octet\x00",
    );
    let master = h.feed_nat(&rrq, Manip::Src, &r).unwrap();
    let nat_port = h.reply_tuple(&master).dport;
    assert_eq!(h.shard.expectations().len(), 1);
    let data = h.feed(&udp_frame(
        "198.18.0.2:6000",
        &format!("198.18.0.100:{nat_port}"),
        b"\x00\x03\x00\x01x",
    ));
    assert_eq!(data.ctinfo, CtInfo::Related);
    let c = h.conn(&data);
    assert!(c.status.has(Status::DST_NAT) && !c.status.has(Status::SRC_NAT));
    let r0 = data.conn.unwrap();
    assert_eq!(
        h.shard.nat_target(r0, Dir::Original),
        Some(tuple_of(&udp_frame(
            "198.18.0.2:6000",
            "198.18.0.1:5000",
            b""
        )))
    );
    let ack = h.feed(&udp_frame(
        "198.18.0.1:5000",
        "198.18.0.2:6000",
        b"\x00\x04\x00\x01",
    ));
    assert_eq!((ack.ctinfo, ack.conn), (CtInfo::EstablishedReply, Some(r0)));
    assert_eq!(
        h.shard.nat_target(r0, Dir::Reply),
        Some(tuple_of(&udp_frame(
            &format!("198.18.0.100:{nat_port}"),
            "198.18.0.2:6000",
            b""
        )))
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A first packet from client `c`, port `p`, to server `s`, of
        /// protocol `proto` (0 UDP, 1 TCP SYN, 2 ICMP echo), through
        /// SNAT into a small range or (`dnat`) a port forward; `keep`
        /// false drops it before egress.
        Open {
            c: u8,
            p: u16,
            s: u8,
            proto: u8,
            dnat: bool,
            keep: bool,
        },
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (0u8..6, 1000u16..1008, 0u8..3, 0u8..3, prop::bool::weighted(0.3), prop::bool::weighted(0.9))
                .prop_map(|(c, p, s, proto, dnat, keep)| Op::Open { c, p, s, proto, dnat, keep }),
            1 => (1u64..200).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever opens, times out or is dropped, every translated
        /// connection is found by both of its tuples, no two connections
        /// share a tuple, and with several workers every reply tuple
        /// lands on this one.
        #[test]
        fn translated_connections_stay_coherent(ops in prop::collection::vec(op(), 1..120), me in 0u16..2) {
            let mut h = Harness::new();
            let steering = Steering::new(Arc::new(Owners::new(None, 2)), HashFields::ALL, me);
            h.shard.set_steering(steering.clone());
            let snat = range("198.18.0.100", "198.18.0.101", Some((2000, 2015)));
            let dnat = range("198.18.0.1", "198.18.0.3", Some((80, 80)));
            for op in ops {
                match op {
                    Op::Advance(s) => {
                        h.advance(s);
                        h.shard.gc(h.now, 64);
                    }
                    Op::Open { c, p, s, proto, dnat: is_dnat, keep } => {
                        let (src, dst) = if is_dnat {
                            (format!("198.19.0.{}:{p}", c + 1), "198.18.0.200:8080".to_string())
                        } else {
                            (format!("198.18.0.{}:{p}", c + 1), format!("198.19.0.{}:{}", s + 1, 53 + u16::from(s)))
                        };
                        let f = match proto {
                            0 => udp_frame(&src, &dst, b"q"),
                            1 => tcp_frame(&src, &dst, 1, 0, TCP_SYN, b""),
                            _ => {
                                let (a, b) = (src.split(':').next().unwrap(), dst.split(':').next().unwrap());
                                frame(&ip_packet(a.parse().unwrap(), b.parse().unwrap(), 1, &[], &icmp(8, 0, p, 1, b"p")), &[])
                            }
                        };
                        let (manip, r) = if is_dnat && proto == 1 { (Manip::Dst, &dnat) } else { (Manip::Src, &snat) };
                        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, &f, f.len()).unwrap() else {
                            unreachable!()
                        };
                        let cl = h.shard.classify(ip, 0);
                        let mut v = h.shard.ingress(&cl, h.now);
                        if h.shard.nat(&mut v, manip, r).is_err() || !keep {
                            if let Some(u) = v.unconfirmed.take() {
                                h.shard.discard(u);
                            }
                        } else {
                            let _ = h.shard.egress(&mut v, &cl, h.now);
                        }
                        h.shard.reap_unconfirmed();
                    }
                }
                let mut seen = std::collections::HashSet::new();
                for (slot, c) in h.shard.table().iter() {
                    let tuples = h.shard.table().tuples(slot);
                    for (d, t) in [(Dir::Original, tuples[0]), (Dir::Reply, tuples[1])] {
                        prop_assert!(seen.insert(t), "two connections share {t}");
                        let (r, dir) = h.shard.find(&t).expect("found by each tuple");
                        prop_assert_eq!((r.slot, dir), (slot, d));
                    }
                    if c.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) != 0 {
                        prop_assert!(steering.owns(&tuples[1]), "reply {} lands elsewhere", tuples[1]);
                    }
                }
            }
        }
    }
}

/// IPv6 through the same code: SNAT binds, and the rewritten packet equals
/// the one built translated (the UDP checksum covers the addresses).
#[test]
fn ipv6_snat_binds_and_rewrites() {
    let mut h = Harness::new();
    let r = NatRange {
        min_addr: Addr::from_std("2001:2::100".parse().unwrap()),
        max_addr: Addr::from_std("2001:2::100".parse().unwrap()),
        ports: None,
        persistent: false,
        random: false,
    };
    let req = udp_frame("[2001:2::1]:5000", "[2001:2:1::1]:53", b"query");
    let s = h.feed_nat(&req, Manip::Src, &r).unwrap();
    let want = udp_frame("[2001:2::100]:5000", "[2001:2:1::1]:53", b"query");
    let to = h.shard.nat_target(s.conn.unwrap(), Dir::Original).unwrap();
    assert_eq!(to, tuple_of(&want));
    let mut out = req.clone();
    let mut ip = crate::wire::IpPacketMut::new(&mut out[14..]).unwrap();
    rewrite(&mut ip, &to).unwrap();
    assert_eq!(out, want);
}

/// Active FTP through SNAT (`nf_nat_ftp` with `nf_conntrack_seqadj`): the
/// PORT command is rewritten to the translated address, two bytes longer;
/// the server's acknowledgements of the longer stream are tracked, later
/// segments are shifted and acknowledgements shifted back, and the
/// server's data connection reaches the client's announced port.
#[test]
fn active_ftp_through_snat_rewrites_port_and_adjusts_sequences() {
    let (c, s) = ("198.18.0.1:40000", "198.19.0.1:21");
    let mut h = Harness::new();
    let nat = snat_ftp_control(&mut h, c, s);
    assert_eq!(h.shard.take_edit(), None);
    let port = h.feed(&tcp_frame(
        c,
        s,
        1009,
        5009,
        TCP_ACK | TCP_PSH,
        b"PORT 198,18,0,1,4,1\r\n",
    ));
    assert_eq!(port.ctinfo, CtInfo::Established);
    let edit = h.shard.take_edit().expect("the PORT command is rewritten");
    assert_eq!(
        (edit.at, edit.len, &edit.text[..]),
        (5, 14, &b"198,18,0,100,4,1"[..])
    );
    let r0 = port.conn.unwrap();
    let [out, back] = h.shard.seqadj(r0).expect("SEQ_ADJUST");
    // The server saw the command 2 bytes longer and acknowledges 1032.
    let ack = h.feed(&tcp_frame(s, &nat, 5009, 1032, TCP_ACK, b""));
    assert_eq!((ack.ctinfo, ack.reason), (CtInfo::EstablishedReply, None));
    assert_eq!(out.unshift_ack(1032), 1030, "the client is told 1030");
    let list = h.feed(&tcp_frame(c, s, 1030, 5009, TCP_ACK | TCP_PSH, b"LIST\r\n"));
    assert_eq!((list.ctinfo, list.reason), (CtInfo::Established, None));
    assert_eq!(out.seq(1030), 1032, "the next command is shifted");
    assert_eq!((back.seq(5009), back.unshift_ack(5009)), (5009, 5009));
    // The server connects back to the translated address and port; the
    // connection goes to the client's port 1025.
    assert_data_goes_to(
        &mut h,
        "198.19.0.1:20",
        "198.18.0.100:1025",
        "198.18.0.1:1025",
    );
}

/// FTP through NAT with two workers: the port the peer is told puts both
/// sides of the data connection on one owner-table entry, whatever port
/// the peer connects from, and stays unprivileged as the announced one
/// was (vsftpd refuses a PORT naming a privileged port); the data
/// connection reaches the announced port. Active FTP through SNAT (the
/// client's PORT), and passive FTP to a server behind DNAT (its 227).
#[test]
fn steered_ftp_data_ports_keep_their_entry_and_their_class() {
    let mut next = crate::synth::xorshift(21);
    let owners = Arc::new(Owners::new(None, 2));
    for active in [true, false] {
        let mut tally = (0, 0);
        for me in 0..2u16 {
            let steering = Steering::new(Arc::clone(&owners), HashFields::ALL, me);
            let mut h = Harness::new();
            h.shard.set_steering(steering.clone());
            for i in 0..600 {
                let port = 1024 + next() as u16 % 64000;
                let (p1, p2) = (port >> 8, port & 0xff);
                let (peer, seen) = if active {
                    let (c, s) = (format!("198.18.0.1:{}", 1024 + i * 97), "198.19.0.1:21");
                    // The control connection starts on its owner.
                    if !steering.owns(&tuple_of(&tcp_frame(&c, s, 1, 0, TCP_SYN, b""))) {
                        continue;
                    }
                    snat_ftp_control(&mut h, &c, s);
                    send_port(&mut h, &c, s, port);
                    ("198.19.0.1", "198.18.0.100")
                } else {
                    let c = format!("198.19.0.9:{}", 1024 + i * 97);
                    // Translated to one address and port, it starts where
                    // its replies land (the data plane hands it there).
                    if !steering.owns(&tuple_of(&tcp_frame(REAL_FTP, &c, 1, 0, TCP_SYN, b""))) {
                        continue;
                    }
                    dnat_ftp_control(&mut h, &c);
                    let text = format!("227 Passive (198,18,0,1,{p1},{p2})\r\n");
                    h.feed(&tcp_frame(
                        REAL_FTP,
                        &c,
                        5009,
                        1009,
                        TCP_ACK | TCP_PSH,
                        text.as_bytes(),
                    ));
                    ("198.19.0.9", "198.18.0.200")
                };
                let from = format!("{peer}:{}", next() as u16 | 1);
                let real = format!("198.18.0.1:{port}");
                assert_steered_data(&mut h, &steering, &from, seen, &real, &mut tally);
            }
        }
        assert!(tally.0 > 100 && tally.1 > 100, "active {active}: {tally:?}");
    }
}

/// After an announcement of `real` was rewritten to name `seen_addr`:
/// the port told is of the announced one's class, and a data connection
/// from `from` lands on one owner-table entry both ways; where `steering`
/// owns it, it starts here RELATED and goes to `real` (elsewhere NAT
/// would move its source port to bring the reply here). `tally` counts
/// ports moved and connections started here.
fn assert_steered_data(
    h: &mut Harness,
    steering: &Steering,
    from: &str,
    seen_addr: &str,
    real: &str,
    tally: &mut (usize, usize),
) {
    let seen = told_port(h);
    let port: u16 = real.rsplit(':').next().unwrap().parse().unwrap();
    assert!(seen >= 1024, "{port} announced as {seen}");
    tally.0 += usize::from(seen != port);
    let told = format!("{seen_addr}:{seen}");
    let data = tuple_of(&tcp_frame(from, &told, 1, 0, TCP_SYN, b""));
    let back = tuple_of(&tcp_frame(real, from, 1, 0, TCP_SYN | TCP_ACK, b""));
    assert_eq!(steering.entry(&data), steering.entry(&back), "{seen}");
    if steering.owns(&data) {
        assert_data_goes_to(h, from, &told, real);
        tally.1 += 1;
    }
}

/// Passive FTP to a server behind DNAT: a 227 reply names the server's
/// own address, which is rewritten to the forwarded one; a 229 names only
/// a port, so nothing is rewritten, but the expectation is for the
/// forwarded address all the same, as Linux's (its daddr is the reply
/// tuple's destination). Either way the client's data connection is
/// translated back to the server.
#[test]
fn passive_ftp_to_a_forwarded_server() {
    let c = "198.19.0.9:40000";
    let pasv = b"227 Entering Passive Mode (198,18,0,1,117,48).\r\n";
    let epsv = b"229 Entering Extended Passive Mode (|||30000|)\r\n";
    for (reply, rewritten) in [
        (&pasv[..], Some((&b"198,18,0,200,117,48"[..], 2))),
        (&epsv[..], None),
    ] {
        let mut h = Harness::new();
        dnat_ftp_control(&mut h, c);
        let r = h.feed(&tcp_frame(
            REAL_FTP,
            c,
            5009,
            1009,
            TCP_ACK | TCP_PSH,
            reply,
        ));
        assert_eq!(r.ctinfo, CtInfo::EstablishedReply);
        let edit = h.shard.take_edit();
        assert_eq!(edit.as_ref().map(|e| (&e.text[..], e.growth())), rewritten);
        assert_eq!(h.shard.stats().helper_refused, 0);
        assert_data_goes_to(
            &mut h,
            "198.19.0.9:40001",
            "198.18.0.200:30000",
            "198.18.0.1:30000",
        );
    }
}

/// Two clients behind one address announce the same port to one server:
/// the second is told another (`nf_nat_exp_find_port` moves on from a
/// port another master's expectation holds), with one worker and with
/// two, and each data connection reaches its own client.
#[test]
fn a_port_another_master_expects_is_not_told_twice() {
    let s = "198.19.0.1:21";
    let owners = Arc::new(Owners::new(None, 2));
    for steering in [None, Some(Steering::new(owners, HashFields::ALL, 0))] {
        let mut h = Harness::new();
        if let Some(st) = &steering {
            h.shard.set_steering(st.clone());
        }
        // The first port from `from` whose connection to `to` starts here.
        let here = |ip: &str, from: u16, to: &str| {
            (from..)
                .map(|p| format!("{ip}:{p}"))
                .find(|a| {
                    let t = tuple_of(&tcp_frame(a, to, 1, 0, TCP_SYN, b""));
                    steering.as_ref().is_none_or(|st| st.owns(&t))
                })
                .unwrap()
        };
        let mut told = Vec::new();
        for client in ["198.18.0.1", "198.18.0.3"] {
            let c = here(client, 40000, s);
            snat_ftp_control(&mut h, &c, s);
            send_port(&mut h, &c, s, 5000);
            told.push((client, told_port(&mut h)));
        }
        assert_ne!(told[0].1, told[1].1, "{told:?}");
        if steering.is_none() {
            assert_eq!((told[0].1, told[1].1), (5000, 5001));
        }
        assert_eq!(h.shard.stats().helper_refused, 0);
        for (client, port) in told {
            let seen = format!("198.18.0.100:{port}");
            let from = here("198.19.0.1", 2000, &seen);
            assert_data_goes_to(&mut h, &from, &seen, &format!("{client}:5000"));
        }
    }
}

/// Passive FTP from a translated client, with two workers: the server's
/// 227 names its own address and a port it listens on, which the client
/// must be told as they are (the client's side of the data connection is
/// what NAT moves).
#[test]
fn steered_pasv_from_a_translated_client_is_left_alone() {
    let owners = Arc::new(Owners::new(None, 2));
    let s = "198.19.0.1:21";
    for me in 0..2u16 {
        let steering = Steering::new(Arc::clone(&owners), HashFields::ALL, me);
        let mut h = Harness::new();
        h.shard.set_steering(steering.clone());
        for i in 0..100 {
            let c = format!("198.18.0.1:{}", 1024 + i * 97);
            let syn = tcp_frame(&c, s, 1000, 0, TCP_SYN, b"");
            if !steering.owns(&tuple_of(&syn)) {
                continue;
            }
            let nat = snat_ftp_control(&mut h, &c, s);
            let reply = b"227 Entering Passive Mode (198,19,0,1,117,48).\r\n";
            h.feed(&tcp_frame(s, &nat, 5009, 1009, TCP_ACK | TCP_PSH, reply));
            assert_eq!(h.shard.take_edit(), None, "{c}");
            let from = format!("198.18.0.1:{}", 1025 + i * 97);
            let data = tcp_frame(&from, "198.19.0.1:30000", 1, 0, TCP_SYN, b"");
            if steering.owns(&tuple_of(&data)) {
                assert_eq!(h.feed(&data).ctinfo, CtInfo::Related);
            }
        }
    }
}

/// An FTP control connection from `c` to `s` through source NAT to
/// 198.18.0.100, opened (`Harness::ftp_opening`). Returns the translated
/// client as the server sees it.
fn snat_ftp_control(h: &mut Harness, c: &str, s: &str) -> String {
    let r = range("198.18.0.100", "198.18.0.100", None);
    let syn = tcp_frame(c, s, 1000, 0, TCP_SYN, b"");
    let master = h.feed_nat(&syn, Manip::Src, &r).unwrap();
    let nat = format!("198.18.0.100:{}", h.reply_tuple(&master).dport);
    h.ftp_opening((c, s), (s, &nat));
    nat
}

/// The address a port forward is reached at, and the server behind it.
const PUBLIC_FTP: &str = "198.18.0.200:21";
const REAL_FTP: &str = "198.18.0.1:21";

/// An FTP control connection from `c` to `PUBLIC_FTP`, forwarded by
/// destination NAT to `REAL_FTP`, opened (`Harness::ftp_opening`).
fn dnat_ftp_control(h: &mut Harness, c: &str) {
    let r = range("198.18.0.1", "198.18.0.1", Some((21, 21)));
    let syn = tcp_frame(c, PUBLIC_FTP, 1000, 0, TCP_SYN, b"");
    h.feed_nat(&syn, Manip::Dst, &r).unwrap();
    h.ftp_opening((c, PUBLIC_FTP), (REAL_FTP, c));
}

/// The client's PORT command naming its own address and `port`, on a
/// control connection `snat_ftp_control` opened.
fn send_port(h: &mut Harness, c: &str, s: &str, port: u16) {
    let ip = c.split(':').next().unwrap().replace('.', ",");
    let cmd = format!("PORT {ip},{},{}\r\n", port >> 8, port & 0xff);
    h.feed(&tcp_frame(
        c,
        s,
        1009,
        5009,
        TCP_ACK | TCP_PSH,
        cmd.as_bytes(),
    ));
}

/// The port a rewritten PORT command or 227 reply tells.
fn told_port(h: &mut Harness) -> u16 {
    let edit = h.shard.take_edit().expect("the announcement is rewritten");
    let n: Vec<u16> = std::str::from_utf8(&edit.text)
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    n[4] << 8 | n[5]
}

/// A data connection's first packet, from `from` to what the peer was
/// told (`seen`): RELATED, and translated to `real`.
fn assert_data_goes_to(h: &mut Harness, from: &str, seen: &str, real: &str) {
    let data = h.feed(&tcp_frame(from, seen, 1, 0, TCP_SYN, b""));
    assert_eq!(data.ctinfo, CtInfo::Related);
    assert_eq!(
        h.shard.nat_target(data.conn.unwrap(), Dir::Original),
        Some(tuple_of(&tcp_frame(from, real, 1, 0, TCP_SYN, b"")))
    );
}

/// The filter's view of each packet of a translated connection (after
/// destination NAT) moves only where a destination was translated in
/// its direction, and equals the view built from the full target in
/// every case: source NAT's originals and destination NAT's replies
/// keep their tuples, source NAT's replies and destination NAT's
/// originals are seen with the real destination.
#[test]
fn dnat_view_moves_only_a_translated_destination() {
    let mut h = Harness::new();
    let view = |h: &mut Harness, f: &[u8]| {
        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
            panic!("not IP")
        };
        let c = h.shard.classify(ip, 0);
        let v = h.shard.ingress(&c, h.now);
        let full = crate::conntrack::nat::after_dnat(
            &c.tuple,
            h.shard.nat_target(v.conn.unwrap(), v.dir()),
        );
        let seen = h.shard.dnat_view(&v, &c.tuple);
        assert_eq!(seen, full, "{}", c.tuple);
        (c.tuple, seen)
    };
    let snat = range("198.18.0.100", "198.18.0.100", None);
    let req = udp_frame("198.18.0.1:5000", "198.19.0.1:53", b"q");
    h.feed_nat(&req, Manip::Src, &snat).unwrap();
    let (t, seen) = view(&mut h, &req);
    assert_eq!(seen, t);
    let (_, seen) = view(
        &mut h,
        &udp_frame("198.19.0.1:53", "198.18.0.100:5000", b"a"),
    );
    assert_eq!(
        seen,
        tuple_of(&udp_frame("198.19.0.1:53", "198.18.0.1:5000", b""))
    );
    forward_a_syn(&mut h);
    let (t, seen) = view(&mut h, &forwarded_synack());
    assert_eq!(seen, t);
    let ack = tcp_frame(
        "198.19.0.9:40000",
        "198.18.0.200:8080",
        1001,
        5001,
        TCP_ACK,
        b"",
    );
    let (_, seen) = view(&mut h, &ack);
    assert_eq!((seen.dst, seen.dport), (v4("198.18.0.1"), 80));
}
