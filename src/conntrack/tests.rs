//! Tests of the tracker against the seed article's walk-through and Linux's
//! behaviour, with generated packets.

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::synth::{frame, icmp, ip_packet, udp, Tcp};
use crate::wire::{parse_frame, Frame, LinkType, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

/// A shard and a clock, fed whole frames: ingress, then confirm at once
/// (the packet is forwarded), as the data plane will do.
struct Harness {
    shard: Shard,
    now: u64,
}

#[derive(Debug)]
struct Seen {
    ctinfo: CtInfo,
    conn: Option<ConnRef>,
    reason: Option<&'static str>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Config::default())
    }

    fn with(cfg: Config) -> Harness {
        Harness {
            shard: Shard::new(cfg),
            now: 1_000 * SEC,
        }
    }

    fn ingress(&mut self, f: &[u8]) -> Verdict {
        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
            panic!("not IP")
        };
        let c = self.shard.classify(ip, 0);
        self.shard.ingress(&c, self.now)
    }

    fn feed(&mut self, f: &[u8]) -> Seen {
        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
            panic!("not IP")
        };
        let c = self.shard.classify(ip, 0);
        let mut v = self.shard.ingress(&c, self.now);
        let conn = self.shard.egress(&mut v, &c, self.now).expect("egress");
        Seen {
            ctinfo: v.ctinfo,
            conn,
            reason: v.reason,
        }
    }

    fn conn(&self, s: &Seen) -> &Conn {
        self.shard
            .conn(s.conn.expect("a connection"))
            .expect("live")
    }

    fn tuples(&self, s: &Seen) -> [Tuple; 2] {
        self.shard
            .tuples(s.conn.expect("a connection"))
            .expect("live")
    }

    fn tcp_state(&self, s: &Seen) -> TcpState {
        self.conn(s).tcp().unwrap().state
    }

    fn advance(&mut self, secs: u64) {
        self.now += secs * SEC;
    }

    /// An FTP control connection's opening after its SYN went through:
    /// the server's answer, the banner and the USER line, so that the
    /// next line starts at 1009 from the client and 5009 from the server
    /// (the helper reads a line that starts where one it saw ended).
    /// `client` is the client and where it sends to, `server` the server
    /// and where it sends to (each side's view, which NAT makes differ).
    /// Returns what the handshake's last packet saw.
    fn ftp_opening(&mut self, client: (&str, &str), server: (&str, &str)) -> Seen {
        let ((c, to_s), (s, to_c)) = (client, server);
        self.feed(&tcp_frame(s, to_c, 5000, 1001, TCP_SYN | TCP_ACK, b""));
        let established = self.feed(&tcp_frame(c, to_s, 1001, 5001, TCP_ACK, b""));
        let banner = b"220 ok\r\n";
        self.feed(&tcp_frame(s, to_c, 5001, 1001, TCP_ACK | TCP_PSH, banner));
        let user = b"USER a\r\n";
        self.feed(&tcp_frame(c, to_s, 1001, 5009, TCP_ACK | TCP_PSH, user));
        self.feed(&tcp_frame(s, to_c, 5009, 1009, TCP_ACK, b""));
        established
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp_frame(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    crate::synth::udp_frame(sa(src), sa(dst), payload)
}

fn tcp_frame(src: &str, dst: &str, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    crate::synth::tcp_frame(sa(src), sa(dst), seq, ack, flags, payload)
}

#[allow(clippy::too_many_arguments)]
fn tcp_frame_opts(
    src: &str,
    dst: &str,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let (s, d) = (sa(src), sa(dst));
    let seg = Tcp {
        sport: s.port(),
        dport: d.port(),
        seq,
        ack,
        flags,
        window,
        options,
    };
    frame(&ip_packet(s.ip(), d.ip(), 6, &[], &seg.bytes(payload)), &[])
}

fn tuple(proto: u8, src: &str, dst: &str) -> Tuple {
    let (s, d) = (sa(src), sa(dst));
    Tuple {
        src: crate::wire::Addr::from_std(s.ip()),
        dst: crate::wire::Addr::from_std(d.ip()),
        sport: s.port(),
        dport: d.port(),
        proto,
        family: if s.is_ipv4() { 4 } else { 6 },
        zone: 0,
    }
}

/// The seed article's walk-through 1, step by step, with its addresses.
#[test]
fn seed_walkthrough_udp() {
    let mut h = Harness::with(Config {
        acct: true,
        ..Config::default()
    });
    let pc = "1.1.1.6:1116";
    let server = "1.1.1.5:1115";
    let a = tuple(17, pc, server);
    let b = tuple(17, server, pc);

    // Ingress: nothing found; a connection with tuples A and B is created,
    // unconfirmed (not in the hash table); the packet is NEW.
    let mut v = h.ingress(&udp_frame(pc, server, b"req"));
    assert_eq!(v.ctinfo, CtInfo::New);
    let r = v.conn.unwrap();
    let c = h.shard.conn(r).unwrap();
    assert_eq!(h.shard.tuples(r), Some([a, b]));
    assert!(!c.status.has(Status::CONFIRMED));
    assert_eq!(h.shard.unconfirmed_count(), 1);
    assert!(h.shard.find(&a).is_none() && h.shard.find(&b).is_none());

    // Egress: both A and B inserted, CONFIRMED set.
    let r = h.shard.confirm(v.unconfirmed.take().unwrap()).unwrap();
    assert_eq!(h.shard.unconfirmed_count(), 0);
    assert!(h.shard.conn(r).unwrap().status.has(Status::CONFIRMED));
    assert_eq!(h.shard.find(&a).map(|(_, d)| d), Some(Dir::Original));
    assert_eq!(h.shard.find(&b).map(|(_, d)| d), Some(Dir::Reply));

    // The reply finds B, a reply-direction tuple: SEEN_REPLY, ESTABLISHED.
    let s = h.feed(&udp_frame(server, pc, b"resp"));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
    assert_eq!(s.conn, Some(r));
    assert!(h.conn(&s).status.has(Status::SEEN_REPLY));
    // From now on the original direction is ESTABLISHED too.
    assert_eq!(
        h.feed(&udp_frame(pc, server, b"again")).ctinfo,
        CtInfo::Established
    );
    let n = h.shard.counters(s.conn.unwrap()).unwrap();
    assert_eq!(n.packets, [2, 1]);
    // The IP length, 20 + 8 and the payload: "req" and "again", "resp".
    assert_eq!(n.bytes, [31 + 33, 32]);
    assert_eq!(h.shard.stats().insert, 1);
    assert_eq!(h.shard.stats().new, 1);
    assert_eq!(h.shard.stats().found, 2);
}

const C: &str = "198.18.0.1:40000";
const S: &str = "198.19.0.1:80";

/// Runs a three-way handshake; returns the connection after it, with the
/// client's next sequence number 1001 and the server's 5001.
fn handshake(h: &mut Harness) -> Seen {
    let s = h.feed(&tcp_frame(C, S, 1000, 0, TCP_SYN, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::New, TcpState::SynSent)
    );
    let s = h.feed(&tcp_frame(S, C, 5000, 1001, TCP_SYN | TCP_ACK, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::EstablishedReply, TcpState::SynRecv)
    );
    assert!(!h.conn(&s).status.has(Status::ASSURED));
    let s = h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::Established, TcpState::Established)
    );
    assert!(
        h.conn(&s).status.has(Status::ASSURED),
        "ASSURED once the handshake completes"
    );
    s
}

#[test]
fn tcp_handshake_data_and_fin_teardown() {
    let mut h = Harness::new();
    handshake(&mut h);
    let s = h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK | TCP_PSH, &[7; 100]));
    assert_eq!(s.ctinfo, CtInfo::Established);
    let s = h.feed(&tcp_frame(S, C, 5001, 1101, TCP_ACK | TCP_PSH, &[8; 300]));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
    // Timeout is ESTABLISHED's once the data is acknowledged.
    let s = h.feed(&tcp_frame(C, S, 1101, 5301, TCP_ACK, b""));
    assert_eq!(h.conn(&s).seconds_left(h.now), 432_000);
    // Client closes.
    let s = h.feed(&tcp_frame(C, S, 1101, 5301, TCP_FIN | TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::FinWait);
    let s = h.feed(&tcp_frame(S, C, 5301, 1102, TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::CloseWait);
    let s = h.feed(&tcp_frame(S, C, 5301, 1102, TCP_FIN | TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::LastAck);
    let s = h.feed(&tcp_frame(C, S, 1102, 5302, TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::TimeWait);
    assert_eq!(h.conn(&s).seconds_left(h.now), 120);
    // TIME_WAIT expires after 120 s; a new SYN on the tuple is NEW again.
    h.advance(121);
    let s = h.feed(&tcp_frame(C, S, 90000, 0, TCP_SYN, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::New, TcpState::SynSent)
    );
    assert_eq!(h.shard.stats().expired, 1);
}

#[test]
fn tcp_rst_teardown_then_syn_resynchronises() {
    let mut h = Harness::new();
    handshake(&mut h);
    let s = h.feed(&tcp_frame(S, C, 5001, 1001, TCP_RST | TCP_ACK, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::EstablishedReply, TcpState::Close)
    );
    assert_eq!(h.conn(&s).seconds_left(h.now), 10);
    let old = s.conn.unwrap();
    // A SYN from the side that did not reset: Linux lets it through but
    // ignores it (we may be out of sync) and notes it...
    let s = h.feed(&tcp_frame(C, S, 7000, 0, TCP_SYN, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::Established, TcpState::Close)
    );
    // ...and the server's SYN/ACK answering exactly that SYN resynchronises.
    let s = h.feed(&tcp_frame(S, C, 9000, 7001, TCP_SYN | TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::SynRecv);
    let s = h.feed(&tcp_frame(C, S, 7001, 9001, TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::Established);
    assert_eq!(
        s.conn.unwrap().id,
        old.id,
        "the same connection, resynchronised"
    );
}

#[test]
fn tcp_syn_from_the_resetting_side_reopens() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.feed(&tcp_frame(C, S, 1001, 5001, TCP_RST | TCP_ACK, b""));
    let s = h.feed(&tcp_frame(C, S, 7000, 0, TCP_SYN, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::New, TcpState::SynSent)
    );
    assert_eq!(h.shard.stats().search_restart, 1);
}

#[test]
fn tcp_reopen_after_close_deletes_and_starts_afresh() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.feed(&tcp_frame(C, S, 1001, 5001, TCP_FIN | TCP_ACK, b""));
    h.feed(&tcp_frame(S, C, 5001, 1002, TCP_FIN | TCP_ACK, b""));
    let s = h.feed(&tcp_frame(C, S, 1002, 5002, TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::TimeWait);
    let old = s.conn.unwrap();
    let s = h.feed(&tcp_frame(C, S, 50000, 0, TCP_SYN, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::New, TcpState::SynSent)
    );
    assert_ne!(s.conn.unwrap().id, old.id, "a new connection");
    assert_eq!(h.shard.stats().search_restart, 1);
}

#[test]
fn tcp_rst_before_any_reply_deletes_the_connection() {
    let mut h = Harness::new();
    let s = h.feed(&tcp_frame(C, S, 1000, 0, TCP_SYN, b""));
    let [t, _] = h.tuples(&s);
    let s = h.feed(&tcp_frame(S, C, 0, 1001, TCP_RST | TCP_ACK, b""));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
    assert!(h.shard.find(&t).is_none());
    assert_eq!(h.shard.stats().delete, 1);
}

#[test]
fn tcp_simultaneous_open() {
    let mut h = Harness::new();
    let s = h.feed(&tcp_frame(C, S, 1000, 0, TCP_SYN, b""));
    assert_eq!(h.tcp_state(&s), TcpState::SynSent);
    let s = h.feed(&tcp_frame(S, C, 5000, 0, TCP_SYN, b""));
    assert_eq!(h.tcp_state(&s), TcpState::SynSent2);
    let s = h.feed(&tcp_frame(C, S, 1000, 5001, TCP_SYN | TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::SynRecv);
    let s = h.feed(&tcp_frame(S, C, 5001, 1001, TCP_ACK, b""));
    assert_eq!(h.tcp_state(&s), TcpState::Established);
}

#[test]
fn tcp_retransmissions_are_tracked_not_refreshed() {
    let mut h = Harness::new();
    let s = h.feed(&tcp_frame(C, S, 1000, 0, TCP_SYN, b""));
    let deadline = h.conn(&s).deadline;
    h.advance(5);
    let s = h.feed(&tcp_frame(C, S, 1000, 0, TCP_SYN, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::New, TcpState::SynSent)
    );
    assert_eq!(
        h.conn(&s).deadline,
        deadline,
        "a SYN retransmission keeps the timeout"
    );
    h.feed(&tcp_frame(S, C, 5000, 1001, TCP_SYN | TCP_ACK, b""));
    h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK, b""));
    // The same data segment four times: after three retransmissions the
    // timeout drops to the "retrans" one (300 s).
    let mut s = h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK, &[1; 10]));
    for _ in 0..4 {
        s = h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK, &[1; 10]));
        assert_eq!(s.ctinfo, CtInfo::Established);
    }
    assert_eq!(h.conn(&s).seconds_left(h.now), 300);
}

#[test]
fn tcp_out_of_window_data_and_injected_rst_are_invalid() {
    let mut h = Harness::new();
    handshake(&mut h);
    // Far beyond what the receiver's window allows.
    let s = h.feed(&tcp_frame(S, C, 5001 + 10_000_000, 1001, TCP_ACK, &[0; 10]));
    assert_eq!(
        (s.ctinfo, s.reason),
        (CtInfo::Invalid, Some("tcp-seq-over-upper-bound"))
    );
    // Acknowledging data never sent.
    let s = h.feed(&tcp_frame(S, C, 5001, 900_000, TCP_ACK, b""));
    assert_eq!(
        (s.ctinfo, s.reason),
        (CtInfo::Invalid, Some("tcp-ack-over-upper-bound"))
    );
    // Data and ACKs move td_maxack on; an RST below it is a blind reset.
    h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK | TCP_PSH, &[1; 500]));
    h.feed(&tcp_frame(S, C, 5001, 1501, TCP_ACK, b""));
    let s = h.feed(&tcp_frame(C, S, 1400, 5001, TCP_RST, b""));
    assert_eq!(
        (s.ctinfo, s.reason),
        (CtInfo::Invalid, Some("tcp-invalid-rst"))
    );
    // The connection is untouched by the rejected segments.
    let s = h.feed(&tcp_frame(C, S, 1501, 5001, TCP_ACK, b""));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::Established, TcpState::Established)
    );
    // With be_liberal only out-of-window RSTs stay invalid.
    let mut cfg = Config::default();
    cfg.tcp.be_liberal = true;
    let mut h = Harness::with(cfg);
    handshake(&mut h);
    let s = h.feed(&tcp_frame(S, C, 5001 + 10_000_000, 1001, TCP_ACK, &[0; 10]));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
}

/// A handshake with 1000-byte windows, both ends offering `options`,
/// then the server's first plain ACK, which opens its (scaled) window to
/// the client: windows in SYNs are never scaled.
fn small_window_handshake(h: &mut Harness, options: &[u8]) {
    h.feed(&tcp_frame_opts(C, S, 1000, 0, TCP_SYN, 1000, options, b""));
    h.feed(&tcp_frame_opts(
        S,
        C,
        5000,
        1001,
        TCP_SYN | TCP_ACK,
        1000,
        options,
        b"",
    ));
    h.feed(&tcp_frame_opts(C, S, 1001, 5001, TCP_ACK, 1000, &[], b""));
    h.feed(&tcp_frame_opts(S, C, 5001, 1001, TCP_ACK, 1000, &[], b""));
}

#[test]
fn tcp_window_scaling() {
    // 100 KB ahead: inside a 1000 << 7 window, far outside a raw 1000.
    let ahead = tcp_frame_opts(C, S, 1001 + 100_000, 5001, TCP_ACK, 1000, &[], &[0; 100]);
    let mut h = Harness::new();
    small_window_handshake(&mut h, &[1, 3, 3, 7]);
    let s = h.feed(&ahead);
    assert_eq!(s.ctinfo, CtInfo::Established, "{:?}", s.reason);
    let mut h = Harness::new();
    small_window_handshake(&mut h, &[]);
    assert_eq!(h.feed(&ahead).ctinfo, CtInfo::Invalid);
}

#[test]
fn tcp_sack_blocks_count_as_acknowledgements() {
    let mut h = Harness::new();
    let sack_perm = [4, 2];
    h.feed(&tcp_frame_opts(
        C, S, 1000, 0, TCP_SYN, 65535, &sack_perm, b"",
    ));
    h.feed(&tcp_frame_opts(
        S,
        C,
        5000,
        1001,
        TCP_SYN | TCP_ACK,
        65535,
        &sack_perm,
        b"",
    ));
    h.feed(&tcp_frame(C, S, 1001, 5001, TCP_ACK, b""));
    h.feed(&tcp_frame(S, C, 5001, 1001, TCP_ACK | TCP_PSH, &[0; 1000]));
    let sack = |left: u32, right: u32| {
        let mut o = vec![1, 1, 5, 10];
        o.extend_from_slice(&left.to_be_bytes());
        o.extend_from_slice(&right.to_be_bytes());
        o
    };
    // The first 500 bytes were lost; the rest is selectively acknowledged.
    let s = h.feed(&tcp_frame_opts(
        C,
        S,
        1001,
        5001,
        TCP_ACK,
        65535,
        &sack(5501, 6001),
        b"",
    ));
    assert_eq!(s.ctinfo, CtInfo::Established, "{:?}", s.reason);
    // A SACK block past anything the server sent is as bad as such an ACK.
    let s = h.feed(&tcp_frame_opts(
        C,
        S,
        1001,
        5001,
        TCP_ACK,
        65535,
        &sack(5501, 90001),
        b"",
    ));
    assert_eq!(s.reason, Some("tcp-ack-over-upper-bound"));
}

#[test]
fn tcp_mid_stream_pickup_follows_loose() {
    let mut h = Harness::new();
    let s = h.feed(&tcp_frame(C, S, 777_000, 888_000, TCP_ACK, &[1; 50]));
    assert_eq!(
        (s.ctinfo, h.tcp_state(&s)),
        (CtInfo::New, TcpState::Established)
    );
    // No reply seen yet: the "unacknowledged" timeout, not five days.
    assert_eq!(h.conn(&s).seconds_left(h.now), 300);
    let s = h.feed(&tcp_frame(S, C, 888_000, 777_050, TCP_ACK, &[2; 50]));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
    let mut cfg = Config::default();
    cfg.tcp.loose = false;
    let mut h = Harness::with(cfg);
    let s = h.feed(&tcp_frame(C, S, 777_000, 888_000, TCP_ACK, &[1; 50]));
    assert_eq!(
        (s.ctinfo, s.reason),
        (CtInfo::Invalid, Some("tcp-cannot-start-connection"))
    );
}

#[test]
fn tcp_bad_flags_and_lone_fin_are_invalid() {
    let mut h = Harness::new();
    let s = h.feed(&tcp_frame(C, S, 1, 0, TCP_SYN | TCP_FIN, b""));
    assert_eq!(s.reason, Some("tcp-invalid-flags"));
    let s = h.feed(&tcp_frame(C, S, 1, 0, 0, b""));
    assert_eq!(s.reason, Some("tcp-invalid-flags"));
    let s = h.feed(&tcp_frame(C, S, 1, 1, TCP_FIN | TCP_ACK, b""));
    assert_eq!(s.reason, Some("tcp-cannot-start-connection"));
    assert_eq!(
        h.shard.table().in_use(),
        0,
        "an invalid first packet leaves nothing"
    );
}

#[test]
fn udp_timeouts_and_stream() {
    let mut h = Harness::new();
    let (a, b) = ("198.18.0.1:5000", "198.19.0.1:53");
    // Unreplied: 30 s.
    let s = h.feed(&udp_frame(a, b, b"q"));
    assert_eq!(h.conn(&s).seconds_left(h.now), 30);
    h.advance(31);
    assert_eq!(
        h.feed(&udp_frame(a, b, b"q")).ctinfo,
        CtInfo::New,
        "expired, so new again"
    );
    // Answered within 2 s: still 30 s, not assured.
    h.advance(1);
    let s = h.feed(&udp_frame(b, a, b"r"));
    assert_eq!(h.conn(&s).seconds_left(h.now), 30);
    let s = h.feed(&udp_frame(a, b, b"q2"));
    assert!(!h.conn(&s).status.has(Status::ASSURED));
    // Still talking after 2 s: a stream, 120 s and ASSURED.
    h.advance(2);
    let s = h.feed(&udp_frame(b, a, b"r2"));
    assert_eq!(h.conn(&s).seconds_left(h.now), 120);
    assert!(h.conn(&s).status.has(Status::ASSURED));
}

fn icmp_frame(src: &str, dst: &str, ty: u8, id: u16, body: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let proto = if s.is_ipv4() { 1 } else { 58 };
    frame(&ip_packet(s, d, proto, &[], &icmp(ty, 0, id, 1, body)), &[])
}

#[test]
fn icmp_echo_both_directions_and_unsolicited_reply() {
    let mut h = Harness::new();
    let s = h.feed(&icmp_frame("198.18.0.1", "198.19.0.1", 8, 77, b"ping"));
    assert_eq!(s.ctinfo, CtInfo::New);
    assert_eq!(h.conn(&s).seconds_left(h.now), 30);
    let s = h.feed(&icmp_frame("198.19.0.1", "198.18.0.1", 0, 77, b"ping"));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
    let s = h.feed(&icmp_frame("198.19.0.1", "198.18.0.1", 0, 78, b"ping"));
    assert_eq!(
        (s.ctinfo, s.reason),
        (CtInfo::Invalid, Some("icmp-not-a-request"))
    );
    // ICMPv6 echo.
    let s = h.feed(&icmp_frame("2001:db8::1", "2001:db8::2", 128, 5, b"p"));
    assert_eq!(s.ctinfo, CtInfo::New);
    let s = h.feed(&icmp_frame("2001:db8::2", "2001:db8::1", 129, 5, b"p"));
    assert_eq!(s.ctinfo, CtInfo::EstablishedReply);
}

/// An ICMP error from `from` to `to`, quoting `quoted` (an IP packet).
fn icmp_error(from: &str, to: &str, ty: u8, quoted: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (from.parse().unwrap(), to.parse().unwrap());
    let proto = if s.is_ipv4() { 1 } else { 58 };
    // ICMP quotes the IP header and 8 bytes after it (RFC 792); ICMPv6 as
    // much as fits in the minimum MTU (RFC 4443).
    let quote = &quoted[..quoted.len().min(if s.is_ipv4() { 28 } else { 1232 })];
    frame(&ip_packet(s, d, proto, &[], &icmp(ty, 3, 0, 0, quote)), &[])
}

#[test]
fn icmp_errors_are_related_in_both_directions() {
    let mut h = Harness::new();
    let (a, b) = ("198.18.0.1:5000", "198.19.0.1:53");
    let s = h.feed(&udp_frame(a, b, b"q"));
    let id = s.conn.unwrap().id;
    let sent = ip_packet(sa(a).ip(), sa(b).ip(), 17, &[], &udp(5000, 53, b"q"));
    // Port unreachable from the server (or a router on the way) back to
    // the client: it travels in the reply direction.
    let s = h.feed(&icmp_error("198.19.0.1", "198.18.0.1", 3, &sent));
    assert_eq!(s.ctinfo, CtInfo::RelatedReply);
    assert_eq!(s.conn.unwrap().id, id);
    let s = h.feed(&icmp_error("203.0.113.9", "198.18.0.1", 11, &sent));
    assert_eq!(
        s.ctinfo,
        CtInfo::RelatedReply,
        "from a router: time exceeded"
    );
    // An error about the server's reply, sent to the server: RELATED.
    let answer = ip_packet(sa(b).ip(), sa(a).ip(), 17, &[], &udp(53, 5000, b"r"));
    let s = h.feed(&icmp_error("198.18.0.1", "198.19.0.1", 3, &answer));
    assert_eq!(s.ctinfo, CtInfo::Related);
    // Addressed to someone other than the sender of the quoted packet.
    let s = h.feed(&icmp_error("198.19.0.1", "198.18.0.99", 3, &sent));
    assert_eq!(s.reason, Some("icmp-error-address-mismatch"));
    // About a flow nobody opened.
    let other = ip_packet(sa(a).ip(), sa(b).ip(), 17, &[], &udp(5001, 53, b"q"));
    let s = h.feed(&icmp_error("198.19.0.1", "198.18.0.1", 3, &other));
    assert_eq!(s.reason, Some("icmp-error-no-connection"));
    // A quote too short to hold the ports.
    let s = h.feed(&icmp_error("198.19.0.1", "198.18.0.1", 3, &sent[..24]));
    assert_eq!(s.reason, Some("icmp-error-bad-inner-packet"));
    // IPv6: packet too big about a TCP flow.
    let (c6, s6) = ("[2001:db8::1]:40000", "[2001:db8::2]:443");
    let syn = tcp_frame(c6, s6, 1, 0, TCP_SYN, b"");
    h.feed(&syn);
    let s = h.feed(&icmp_error("2001:db8::2", "2001:db8::1", 2, &syn[14..]));
    assert_eq!(s.ctinfo, CtInfo::RelatedReply);
}

/// Errors about a fragmented datagram quote its first fragment, whose
/// transport header names the connection (a router that cannot forward
/// it, or a host whose reassembly timed out): RELATED, in both families.
/// A quoted later fragment carries no ports and relates to nothing.
#[test]
fn icmp_errors_quoting_fragments() {
    use crate::synth::fragment;
    let mut h = Harness::new();
    for (a, b, router) in [
        ("198.18.0.1:5000", "198.19.0.1:53", "203.0.113.1"),
        ("[2001:2::1]:5000", "[2001:2::2]:53", "2001:2:0:ff::1"),
    ] {
        let (ca, cb) = (sa(a), sa(b));
        h.feed(&udp_frame(a, b, &[7; 3000]));
        let whole = ip_packet(ca.ip(), cb.ip(), 17, &[], &udp(5000, 53, &[7; 3000]));
        let frags = fragment(&whole, 1, &[(0, 1232), (1232, 1776)]);
        // Fragmentation needed / packet too big, and time exceeded
        // (reassembly), about the first fragment.
        let (too_big, exceeded) = if ca.is_ipv4() { (3, 11) } else { (2, 3) };
        let client = ca.ip().to_string();
        for ty in [too_big, exceeded] {
            let s = h.feed(&icmp_error(router, &client, ty, &frags[0]));
            assert_eq!(s.ctinfo, CtInfo::RelatedReply, "{a} type {ty}");
        }
        let s = h.feed(&icmp_error(router, &client, exceeded, &frags[1]));
        assert_eq!(s.reason, Some("icmp-error-bad-inner-packet"), "{a}");
    }
}

/// With several shards, a packet goes to the shard of its flow tuple: an
/// ICMP error to the shard of the connection it quotes.
#[test]
fn flow_tuple_of_an_icmp_error_is_its_connections() {
    let h = Harness::new();
    let (a, b) = ("198.18.0.1:5000", "198.19.0.1:53");
    let classify = |f: &[u8]| -> Option<Tuple> {
        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
            panic!("not IP")
        };
        h.shard.classify(ip, 0).flow_tuple()
    };
    let request = classify(&udp_frame(a, b, b"q")).unwrap();
    let sent = ip_packet(sa(a).ip(), sa(b).ip(), 17, &[], &udp(5000, 53, b"q"));
    // From a router: neither outer address is the connection's.
    let err = classify(&icmp_error("203.0.113.9", "198.18.0.1", 11, &sent)).unwrap();
    assert_eq!(err, request.swapped());
    assert_eq!(
        classify(&icmp_error("198.19.0.1", "198.18.0.1", 3, &sent[..24])),
        None,
        "an unusable quote belongs to no connection"
    );
    let echo = classify(&icmp_frame("198.18.0.1", "198.19.0.1", 8, 77, b"ping")).unwrap();
    assert_eq!((echo.sport, echo.dport), (77, 8 << 8));
}

#[test]
fn ipv6_extension_headers_and_vlans() {
    let mut h = Harness::new();
    let (c, s) = (sa("[2001:db8::1]:40000"), sa("[2001:db8::2]:443"));
    let seg = |seq, ack, flags| Tcp {
        sport: 40000,
        dport: 443,
        seq,
        ack,
        flags,
        window: 1000,
        options: &[],
    };
    // Hop-by-hop, destination options, routing and an atomic fragment
    // header in front of TCP, inside two VLAN tags.
    let f = frame(
        &ip_packet(
            c.ip(),
            s.ip(),
            6,
            &[0, 60, 43, 44],
            &seg(1, 0, TCP_SYN).bytes(b""),
        ),
        &[10, 20],
    );
    let r = h.feed(&f);
    assert_eq!(
        (r.ctinfo, h.tcp_state(&r)),
        (CtInfo::New, TcpState::SynSent)
    );
    assert_eq!(h.tuples(&r)[0].dport, 443);
    // Three VLAN tags are refused by the parser.
    let mut f3 = frame(
        &ip_packet(c.ip(), s.ip(), 6, &[], &seg(1, 0, TCP_SYN).bytes(b"")),
        &[1, 2],
    );
    f3.splice(12..12, [0x81, 0x00, 0, 3]);
    assert!(parse_frame(LinkType::Ethernet, &f3, f3.len()).is_err());
}

#[test]
fn dropped_before_egress_leaves_nothing() {
    let mut h = Harness::new();
    let v = h.ingress(&udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q"));
    h.shard.discard(v.unconfirmed.unwrap());
    assert_eq!(h.shard.unconfirmed_count(), 0);
    assert_eq!(h.shard.table().in_use(), 0);
    // A token nobody spent is reaped at the end of the burst.
    let v = h.ingress(&udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q"));
    assert_eq!(h.shard.reap_unconfirmed(), 1);
    assert_eq!(h.shard.table().in_use(), 0);
    assert_eq!(
        h.shard.confirm(v.unconfirmed.unwrap()),
        Err(ConfirmError::Stale)
    );
}

#[test]
fn a_new_flows_second_packet_in_a_burst_joins_the_first() {
    let mut h = Harness::with(Config {
        acct: true,
        ..Config::default()
    });
    let f = udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q");
    // Both looked up before either is confirmed, as the pipeline does.
    let mut v1 = h.ingress(&f);
    let v2 = h.ingress(&f);
    assert!(v2.unconfirmed.is_none(), "only the first creates");
    assert_eq!(v2.ctinfo, CtInfo::New);
    let r1 = h.shard.confirm(v1.unconfirmed.take().unwrap()).unwrap();
    assert_eq!(v2.conn, Some(r1));
    assert_eq!(h.shard.counters(r1).unwrap().packets[0], 2);
    assert_eq!(h.shard.stats().clash_resolve, 0);
    // A retransmitted SYN in the same burst joins too.
    let syn = tcp_frame(C, S, 1, 0, TCP_SYN, b"");
    let mut v1 = h.ingress(&syn);
    let v2 = h.ingress(&syn);
    assert!(v2.unconfirmed.is_none());
    h.shard.confirm(v1.unconfirmed.take().unwrap()).unwrap();
    assert_eq!(h.shard.table().in_use(), h.shard.table().len());
}

#[test]
fn both_directions_of_a_new_flow_in_one_burst() {
    let mut h = Harness::new();
    // The reply finds the connection its request created in the same
    // burst, unconfirmed, as it would have found it confirmed.
    let q = udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q");
    let a = udp_frame("198.19.0.1:2", "198.18.0.1:1", b"a");
    let mut v1 = h.ingress(&q);
    let v2 = h.ingress(&a);
    assert_eq!(v2.ctinfo, CtInfo::EstablishedReply);
    let r1 = h.shard.confirm(v1.unconfirmed.take().unwrap()).unwrap();
    assert_eq!(v2.conn, Some(r1));
    assert!(h.shard.conn(r1).unwrap().status.has(Status::SEEN_REPLY));
    assert_eq!(h.shard.stats().clash_resolve, 0);
}

#[test]
fn zones_keep_flows_apart() {
    let mut h = Harness::new();
    let f = udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q");
    let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, &f, f.len()).unwrap() else {
        panic!()
    };
    for zone in [1, 2] {
        let c = h.shard.classify(ip, zone);
        let mut v = h.shard.ingress(&c, h.now);
        assert_eq!(v.ctinfo, CtInfo::New, "zone {zone}");
        h.shard.confirm(v.unconfirmed.take().unwrap()).unwrap();
    }
    assert_eq!(h.shard.table().len(), 2);
}

#[test]
fn checksum_mode() {
    let mut f = udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q");
    let last = f.len() - 1;
    f[last] ^= 0xff;
    let mut h = Harness::new();
    assert_eq!(h.feed(&f).ctinfo, CtInfo::New, "not checked by default");
    let mut h = Harness::with(Config {
        checksum: true,
        ..Config::default()
    });
    assert_eq!(h.feed(&f).reason, Some("bad-checksum"));
}

// A full table.
mod full_table;

// Expectations, helpers and NAT.
mod helpers;
mod nat;

#[test]
fn nic_checksum_verdicts() {
    let mut f = udp_frame("198.18.0.1:1", "198.19.0.1:2", b"q");
    let last = f.len() - 1;
    f[last] ^= 0xff;
    let good_frame = udp_frame("198.18.0.1:3", "198.19.0.1:2", b"q");
    let cfg = Config {
        checksum: true,
        ..Config::default()
    };
    let check = |f: &[u8], rx| {
        let Frame::Ip(ip) = parse_frame(LinkType::Ethernet, f, f.len()).unwrap() else {
            panic!("not IP")
        };
        let mut shard = Shard::new(cfg);
        let mut c = Classified::extract(&ip, 0);
        shard.finish_classify(&mut c, &crate::wire::ChecksumView::of(&ip), rx);
        shard.ingress(&c, SEC).reason
    };
    let rx = |ip, l4| RxChecksum { ip, l4 };
    let (unknown, good, bad) = (Checked::Unknown, Checked::Good, Checked::Bad);
    // Software finds the corruption; a NIC that vouched for the packet
    // is believed; a NIC that flagged it is believed too.
    assert_eq!(check(&f, RxChecksum::UNKNOWN), Some("bad-checksum"));
    assert_eq!(check(&f, rx(unknown, good)), None);
    assert_eq!(check(&good_frame, rx(unknown, bad)), Some("bad-checksum"));
    assert_eq!(check(&good_frame, RxChecksum::UNKNOWN), None);
    // A good transport verdict says nothing of the IPv4 header: a broken
    // header checksum is found in software, or taken from the NIC's own
    // IP verdict where it gave one.
    let mut bad_header = good_frame.clone();
    bad_header[14 + 10] ^= 0x01;
    assert_eq!(check(&bad_header, rx(unknown, good)), Some("bad-checksum"));
    assert_eq!(check(&bad_header, rx(good, good)), None);
    assert_eq!(check(&good_frame, rx(bad, good)), Some("bad-checksum"));
}

/// The sizes the documentation states: a connection is 96 bytes, a key
/// 16, a tuple 40 bytes, an index bucket one line, a packet's
/// classification record 112 bytes.
#[test]
fn layout_sizes() {
    assert_eq!(std::mem::size_of::<Classified>(), 112);
    assert_eq!(std::mem::size_of::<Conn>(), 96);
    assert_eq!(std::mem::align_of::<Conn>(), 32);
    assert_eq!(std::mem::size_of::<Key>(), 16);
    assert_eq!(std::mem::size_of::<Tuple>(), 40);
    assert_eq!(std::mem::size_of::<table::Bucket>(), 64);
    // The hot fields of a flow other than TCP: keys, deadline, id, status.
    assert_eq!(CONN_BYTES_NOT_TCP, 40);
    // At most 96, two lines from a 32-byte boundary, which
    // `prefetch_candidate`'s two prefetches cover.
    assert_eq!(CONN_BYTES, 96);
}
