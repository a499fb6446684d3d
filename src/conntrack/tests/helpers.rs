//! Expectations and the TFTP and FTP helpers: the seed's walk-through 2,
//! both FTP modes in both families, timeouts, eviction, hostile commands,
//! two shards.

use super::*;

fn master_of(h: &Harness, s: &Seen) -> Option<u32> {
    h.shard.master(s.conn.unwrap()).map(|m| m.id)
}

fn tftp_request(opcode: u8) -> Vec<u8> {
    let mut p = vec![0, opcode];
    p.extend_from_slice(b"file.bin\0octet\0");
    p
}

/// The seed article's walk-through 2, with its tuples.
#[test]
fn seed_walkthrough_tftp() {
    let mut h = Harness::new();
    let (pc, server69, server_new) = ("1.1.1.6:1116", "1.1.1.5:69", "1.1.1.5:1115");
    // Request to port 69: a new connection, with the TFTP helper found by
    // the reply tuple's source port 69.
    let s = h.feed(&udp_frame(pc, server69, &tftp_request(1)));
    assert_eq!(s.ctinfo, CtInfo::New);
    let master = h.conn(&s).id;
    assert!(h.conn(&s).status.has(Status::HELPER));
    // Egress ran the helper: expectation C, server -> PC:1116, any port.
    let exp = h.shard.expectations().snapshot();
    assert_eq!(exp.len(), 1);
    let e = exp[0];
    assert_eq!((e.tuple.src, e.tuple.dst, e.tuple.dport, e.tuple.proto), {
        let t = tuple(17, server_new, pc);
        (t.src, t.dst, t.dport, t.proto)
    });
    assert!(e.any_source_port);
    assert_eq!(e.master.id, master);
    assert_eq!(h.shard.expectations().stats().expect_create, 1);
    // The server answers from 1115: RELATED, EXPECTED, master linked,
    // tuples D and E; the expectation is consumed.
    let s = h.feed(&udp_frame(server_new, pc, b"\0\x03\0\x01data"));
    assert_eq!(s.ctinfo, CtInfo::Related);
    let c = h.conn(&s);
    assert!(c.status.has(Status::EXPECTED));
    assert_eq!(
        h.tuples(&s),
        [tuple(17, server_new, pc), tuple(17, pc, server_new)]
    );
    assert_eq!(master_of(&h, &s), Some(master));
    assert!(h.shard.expectations().is_empty());
    assert_eq!(h.shard.expectations().stats().expect_new, 1);
    // The PC's acknowledgement is the reply direction; after it Linux
    // calls the server's packets ESTABLISHED (the seed says they stay
    // RELATED; ctfwd follows Linux's ctinfo rule).
    assert_eq!(
        h.feed(&udp_frame(pc, server_new, b"\0\x04\0\x01")).ctinfo,
        CtInfo::EstablishedReply
    );
    assert_eq!(
        h.feed(&udp_frame(server_new, pc, b"\0\x03\0\x02data"))
            .ctinfo,
        CtInfo::Established
    );
}

#[test]
fn tftp_write_requests_other_opcodes_and_replies_from_69() {
    let mut h = Harness::new();
    let (c, s69) = ("198.18.0.1:3000", "198.19.0.1:69");
    // A write request expects too.
    h.feed(&udp_frame(c, s69, &tftp_request(2)));
    assert_eq!(h.shard.expectations().len(), 1);
    // Data, ACK, error, garbage and short payloads expect nothing more.
    let mut h = Harness::new();
    for p in [
        &[0u8, 3, 0, 1][..],
        &[0, 4, 0, 1],
        &[0, 5, 0, 0],
        b"x",
        b"",
        &[1, 1, 0],
    ] {
        h.feed(&udp_frame(c, s69, p));
    }
    assert!(h.shard.expectations().is_empty());
    // A server that answers from port 69 itself: the reply direction.
    let mut h = Harness::new();
    h.feed(&udp_frame(c, s69, &tftp_request(1)));
    assert_eq!(
        h.feed(&udp_frame(s69, c, b"\0\x03\0\x01")).ctinfo,
        CtInfo::EstablishedReply
    );
}

const FC: &str = "198.18.0.1:40000";
const FS: &str = "198.19.0.1:21";

/// An FTP control connection through the banner and USER line
/// (`Harness::ftp_opening`): the next line starts at 1009 from the
/// client and 5009 from the server. Returns the connection's id.
fn ftp_session(h: &mut Harness, c: &str, s: &str) -> u32 {
    h.feed(&tcp_frame(c, s, 1000, 0, TCP_SYN, b""));
    let s1 = h.ftp_opening((c, s), (s, c));
    assert!(h.conn(&s1).status.has(Status::HELPER));
    h.conn(&s1).id
}

/// The client's next command line on a session from `ftp_session`.
fn ftp_command(h: &mut Harness, c: &str, s: &str, line: &[u8]) -> Seen {
    h.feed(&tcp_frame(c, s, 1009, 5009, TCP_ACK | TCP_PSH, line))
}

/// The server's next reply line, after a 6-byte command (`PASV\r\n`).
fn ftp_reply(h: &mut Harness, c: &str, s: &str, line: &[u8]) -> Seen {
    h.feed(&tcp_frame(s, c, 5009, 1015, TCP_ACK | TCP_PSH, line))
}

/// The first packet of a data connection.
fn data_syn(h: &mut Harness, from: &str, to: &str) -> Seen {
    h.feed(&tcp_frame(from, to, 1, 0, TCP_SYN, b""))
}

#[test]
fn ftp_active_mode_ipv4() {
    let mut h = Harness::new();
    let master = ftp_session(&mut h, FC, FS);
    let s = ftp_command(&mut h, FC, FS, b"PORT 198,18,0,1,4,1\r\n");
    assert_eq!(s.ctinfo, CtInfo::Established);
    assert_eq!(h.shard.expectations().len(), 1);
    // The server connects back from any port (20 is usual, not required).
    let s = data_syn(&mut h, "198.19.0.1:20", "198.18.0.1:1025");
    assert_eq!(s.ctinfo, CtInfo::Related);
    assert_eq!(master_of(&h, &s), Some(master));
    let s = h.feed(&tcp_frame(
        "198.18.0.1:1025",
        "198.19.0.1:20",
        7,
        2,
        TCP_SYN | TCP_ACK,
        b"",
    ));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
}

#[test]
fn ftp_passive_mode_ipv4_with_and_without_parentheses() {
    for reply in [
        &b"227 Entering Passive Mode (198,19,0,1,39,16).\r\n"[..],
        b"227 Entering Passive Mode 198,19,0,1,39,16\r\n",
    ] {
        let mut h = Harness::new();
        let master = ftp_session(&mut h, FC, FS);
        ftp_command(&mut h, FC, FS, b"PASV\r\n");
        ftp_reply(&mut h, FC, FS, reply);
        let s = data_syn(&mut h, "198.18.0.1:40001", "198.19.0.1:10000");
        assert_eq!(
            s.ctinfo,
            CtInfo::Related,
            "{}",
            String::from_utf8_lossy(reply)
        );
        assert_eq!(master_of(&h, &s), Some(master));
    }
}

#[test]
fn ftp_ipv6_eprt_and_epsv() {
    let (c, s) = ("[2001:db8::1]:40000", "[2001:db8::2]:21");
    let mut h = Harness::new();
    ftp_session(&mut h, c, s);
    ftp_command(&mut h, c, s, b"EPRT |2|2001:db8::1|5282|\r\n");
    let r = data_syn(&mut h, "[2001:db8::2]:20", "[2001:db8::1]:5282");
    assert_eq!(r.ctinfo, CtInfo::Related);
    let mut h = Harness::new();
    ftp_session(&mut h, c, s);
    ftp_command(&mut h, c, s, b"EPSV\r\n");
    h.feed(&tcp_frame(
        s,
        c,
        5009,
        1015,
        TCP_ACK | TCP_PSH,
        b"229 Entering Extended Passive Mode (|||6446|)\r\n",
    ));
    let r = data_syn(&mut h, "[2001:db8::1]:40001", "[2001:db8::2]:6446");
    assert_eq!(r.ctinfo, CtInfo::Related);
    // EPRT over IPv4 works the same.
    let mut h = Harness::new();
    ftp_session(&mut h, FC, FS);
    ftp_command(&mut h, FC, FS, b"EPRT |1|198.18.0.1|6275|\r\n");
    let r = data_syn(&mut h, "198.19.0.1:20", "198.18.0.1:6275");
    assert_eq!(r.ctinfo, CtInfo::Related);
}

#[test]
fn expectations_time_out_and_are_evicted_per_master() {
    let mut h = Harness::new();
    ftp_session(&mut h, FC, FS);
    ftp_command(&mut h, FC, FS, b"PORT 198,18,0,1,4,1\r\n");
    // FTP's max_expected is 1: a second PORT replaces the first.
    h.feed(&tcp_frame(
        FC,
        FS,
        1030,
        5009,
        TCP_ACK | TCP_PSH,
        b"PORT 198,18,0,1,4,2\r\n",
    ));
    let exp = h.shard.expectations().snapshot();
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].tuple.dport, 1026);
    assert_eq!(h.shard.expectations().stats().expect_delete, 1);
    // Five minutes later it no longer matches.
    h.advance(301);
    h.feed(&tcp_frame(FC, FS, 1051, 5009, TCP_ACK, b""));
    let s = data_syn(&mut h, "198.19.0.1:20", "198.18.0.1:1026");
    assert_eq!(s.ctinfo, CtInfo::New);
}

#[test]
fn removing_the_master_removes_its_expectations() {
    let mut h = Harness::new();
    ftp_session(&mut h, FC, FS);
    ftp_command(&mut h, FC, FS, b"PORT 198,18,0,1,4,1\r\n");
    assert_eq!(h.shard.expectations().len(), 1);
    // The control connection closes and times out (TIME_WAIT, 120 s),
    // well before the expectation's five minutes.
    h.feed(&tcp_frame(FC, FS, 1030, 5009, TCP_FIN | TCP_ACK, b""));
    h.feed(&tcp_frame(FS, FC, 5009, 1031, TCP_FIN | TCP_ACK, b""));
    h.feed(&tcp_frame(FC, FS, 1031, 5010, TCP_ACK, b""));
    h.advance(121);
    assert_eq!(h.shard.gc(h.now, 1000), 1, "the control connection expires");
    assert!(
        h.shard.expectations().is_empty(),
        "the expectation went with its master"
    );
    h.shard
        .check_invariants(h.shard.stats().found + h.shard.stats().new + h.shard.stats().invalid)
        .unwrap();
}

/// Only the connections a helper is involved in take an extension record
/// (the control connection, its helper; the data connection, its
/// master), and each record goes with its connection.
#[test]
fn extension_records_follow_their_connections() {
    let fed = |h: &Harness| {
        let st = h.shard.stats();
        st.found + st.new + st.invalid
    };
    let mut h = Harness::new();
    h.feed(&tcp_frame(
        "198.18.0.9:40000",
        "198.19.0.1:80",
        1,
        0,
        TCP_SYN,
        b"",
    ));
    assert_eq!(h.shard.exts.in_use(), 0, "a plain connection takes none");
    ftp_session(&mut h, FC, FS);
    ftp_command(&mut h, FC, FS, b"PORT 198,18,0,1,4,1\r\n");
    let s = data_syn(&mut h, "198.19.0.1:20", "198.18.0.1:1025");
    assert_eq!(s.ctinfo, CtInfo::Related);
    assert_eq!(h.shard.exts.in_use(), 2);
    h.shard.check_invariants(fed(&h)).unwrap();
    // All of them time out.
    h.advance(3 * 24 * 3600);
    h.shard.gc(h.now, 1000);
    assert!(h.shard.table().is_empty());
    assert_eq!(h.shard.exts.in_use(), 0);
    h.shard.check_invariants(fed(&h)).unwrap();
    // A new control connection reuses a record; `conntrack -D` takes it.
    ftp_session(&mut h, FC, FS);
    assert_eq!(h.shard.exts.in_use(), 1);
    h.shard.check_invariants(fed(&h)).unwrap();
    let (deleted, _) = h.shard.delete_slice(0, usize::MAX, |_, _| true, h.now);
    assert_eq!(deleted, 1);
    assert_eq!(h.shard.exts.in_use(), 0);
    // A TFTP request whose packet is dropped before egress, and one whose
    // token is lost (reaped at the end of the burst).
    let request = udp_frame("198.18.0.5:3000", "198.19.0.1:69", &tftp_request(1));
    let mut v = h.ingress(&request);
    assert_eq!(h.shard.exts.in_use(), 1, "a helper from the first packet");
    h.shard.discard(v.unconfirmed.take().expect("new"));
    let mut v = h.ingress(&request);
    let _lost = v.unconfirmed.take();
    assert_eq!(h.shard.reap_unconfirmed(), 1);
    assert_eq!(h.shard.exts.in_use(), 0);
}

#[test]
fn hostile_ftp_commands_expect_nothing() {
    for (cmd, reason) in [
        // FTP bounce (RFC 2577): a third host's address.
        (&b"PORT 203,0,113,7,0,25\r\n"[..], Some(())),
        (b"PORT 999,18,0,1,4,1\r\n", Some(())),
        (b"PORT 198,18,0,1,4,1000\r\n", Some(())),
        (b"PORT 198,18,0,1,4\r\n", Some(())),
        (b"PORT 198,18,0,1,0,0\r\n", Some(())),
        (b"PORT 1,2,3,4,5,6,7,8,9,10,11,12,13,14\r\n", Some(())),
        (b"PORT 198,18,0,1,4,1", Some(())),
        (b"PORT", Some(())),
        (b"EPRT |1|198.18.0.1|99999|\r\n", Some(())),
        (b"EPRT |3|198.18.0.1|1|\r\n", Some(())),
        (b"EPRT |2|2001:db8::1|1|\r\n", Some(())),
        (b"EPRT ||||\r\n", Some(())),
        (b"NOOP\r\n", None),
        (b"\xff\xfe\x00garbage\r\n", None),
    ] {
        let mut h = Harness::new();
        ftp_session(&mut h, FC, FS);
        let s = ftp_command(&mut h, FC, FS, cmd);
        assert_eq!(s.ctinfo, CtInfo::Established, "the packet itself is fine");
        assert!(
            h.shard.expectations().is_empty(),
            "{}",
            String::from_utf8_lossy(cmd)
        );
        let refused = h.shard.stats().helper_refused;
        assert_eq!(
            refused,
            u64::from(reason.is_some()),
            "{}",
            String::from_utf8_lossy(cmd)
        );
    }
    // The bounce is allowed with ftp_loose (Linux's loose=1).
    let mut cfg = Config::default();
    cfg.helpers.ftp_loose = true;
    let mut h = Harness::with(cfg);
    ftp_session(&mut h, FC, FS);
    ftp_command(&mut h, FC, FS, b"PORT 203,0,113,7,0,25\r\n");
    assert_eq!(h.shard.expectations().len(), 1);
}

#[test]
fn ftp_commands_out_of_sequence_or_before_a_reply_are_ignored() {
    // A PORT that does not start a line in sequence (here: mid-stream
    // offset) is not parsed, as Linux.
    let mut h = Harness::new();
    ftp_session(&mut h, FC, FS);
    h.feed(&tcp_frame(
        FC,
        FS,
        1012,
        5009,
        TCP_ACK | TCP_PSH,
        b"PORT 198,18,0,1,4,1\r\n",
    ));
    assert!(h.shard.expectations().is_empty());
    // Nothing is parsed before traffic was seen both ways.
    let mut h = Harness::new();
    h.feed(&tcp_frame(FC, FS, 1000, 0, TCP_SYN, b""));
    h.feed(&tcp_frame(
        FC,
        FS,
        1001,
        0,
        TCP_ACK | TCP_PSH,
        b"PORT 198,18,0,1,4,1\r\n",
    ));
    assert!(h.shard.expectations().is_empty());
    // Helpers can be turned off.
    let mut h = Harness::with(Config {
        helpers: HelperConfig::none(),
        ..Config::default()
    });
    let s = h.feed(&udp_frame(
        "198.18.0.1:3000",
        "198.19.0.1:69",
        &tftp_request(1),
    ));
    assert!(!h.conn(&s).status.has(Status::HELPER));
    assert!(h.shard.expectations().is_empty());
    // And put on other ports.
    let mut h = Harness::with(Config {
        helpers: HelperConfig::parse("ftp:2121").unwrap(),
        ..Config::default()
    });
    let master = ftp_session(&mut h, FC, "198.19.0.1:2121");
    ftp_command(&mut h, FC, "198.19.0.1:2121", b"PORT 198,18,0,1,4,1\r\n");
    let s = data_syn(&mut h, "198.19.0.1:2020", "198.18.0.1:1025");
    assert_eq!(
        (s.ctinfo, master_of(&h, &s)),
        (CtInfo::Related, Some(master))
    );
    assert!(HelperConfig::parse("gopher:70").is_err());
    assert!(HelperConfig::parse("ftp:0").is_err());
    assert!(HelperConfig::parse("ftp").is_err());
}

/// Two shards, as two workers: the data connection's first packet lands on
/// the other shard than its master, and is RELATED there.
#[test]
fn expectations_work_across_two_shards() {
    let set = std::sync::Arc::new(Expectations::new(64));
    let mut a = Harness {
        shard: Shard::with_expectations(Config::default(), 0, set.clone()),
        now: 1_000 * SEC,
    };
    let mut b = Harness {
        shard: Shard::with_expectations(Config::default(), 1, set.clone()),
        now: 1_000 * SEC,
    };
    let master = ftp_session(&mut a, FC, FS);
    ftp_command(&mut a, FC, FS, b"PORT 198,18,0,1,4,1\r\n");
    let s = data_syn(&mut b, "198.19.0.1:20", "198.18.0.1:1025");
    assert_eq!(s.ctinfo, CtInfo::Related);
    assert_eq!(
        b.shard.master(s.conn.unwrap()),
        Some(MasterRef {
            shard: 0,
            id: master
        })
    );
    assert!(set.is_empty(), "consumed once, on shard 1");
    // The same on shard 0 afterwards is just NEW: one-shot.
    let s = a.feed(&tcp_frame(
        "198.19.0.1:20",
        "198.18.0.1:1025",
        9,
        0,
        TCP_SYN,
        b"",
    ));
    assert_eq!(s.ctinfo, CtInfo::New);
}
