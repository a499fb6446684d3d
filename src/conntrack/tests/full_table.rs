//! A full table: early drop, refusal, incremental expiry, and gc past 95%.

use super::*;

#[test]
fn table_full_early_drops_unassured_else_refuses() {
    let cfg = Config {
        max: 4,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    for p in 0..4 {
        h.feed(&udp_frame(
            &format!("198.18.0.1:{}", 1000 + p),
            "198.19.0.1:53",
            b"q",
        ));
    }
    assert_eq!(h.shard.table().len(), 4);
    let s = h.feed(&udp_frame("198.18.0.1:2000", "198.19.0.1:53", b"q"));
    assert_eq!(s.ctinfo, CtInfo::New);
    assert_eq!(h.shard.stats().early_drop, 1);
    assert_eq!(h.shard.table().len(), 4);

    // Four assured TCP connections: nothing may be evicted.
    let mut h = Harness::with(cfg);
    for p in 0..4u16 {
        let c = format!("198.18.0.1:{}", 1000 + p);
        h.feed(&tcp_frame(&c, S, 1000, 0, TCP_SYN, b""));
        h.feed(&tcp_frame(S, &c, 5000, 1001, TCP_SYN | TCP_ACK, b""));
        let s = h.feed(&tcp_frame(&c, S, 1001, 5001, TCP_ACK, b""));
        assert!(h.conn(&s).status.has(Status::ASSURED));
    }
    let s = h.feed(&udp_frame("198.18.0.1:2000", "198.19.0.1:53", b"q"));
    assert_eq!((s.ctinfo, s.reason), (CtInfo::Invalid, Some("table-full")));
    assert_eq!(h.shard.stats().drop, 1);
    // Time passes: expired entries make room again.
    h.advance(6 * 24 * 3600);
    let s = h.feed(&udp_frame("198.18.0.1:2000", "198.19.0.1:53", b"q"));
    assert_eq!(s.ctinfo, CtInfo::New);
}

#[test]
fn gc_expires_incrementally() {
    let mut h = Harness::new();
    for p in 0..100 {
        h.feed(&udp_frame(
            &format!("198.18.0.1:{}", 1000 + p),
            "198.19.0.1:53",
            b"q",
        ));
    }
    h.advance(31);
    let mut removed = 0;
    let mut calls = 0;
    while !h.shard.table().is_empty() {
        removed += h.shard.gc(h.now, 1000);
        calls += 1;
        assert!(calls < 200, "gc makes progress");
    }
    assert_eq!(removed, 100);
    assert_eq!(h.shard.stats().expired, 100);
}

/// Past 95% full, gc evicts what early drop would take (Linux's
/// `nf_conntrack_max95`), down to the threshold and no further; ASSURED
/// connections stay.
#[test]
fn gc_past_95_percent_evicts_unassured_only() {
    let cfg = Config {
        max: 200,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    // 20 assured TCP connections, then unanswered UDP to fill the table.
    for p in 0..20u16 {
        let c = format!("198.18.0.2:{}", 1000 + p);
        h.feed(&tcp_frame(&c, S, 1000, 0, TCP_SYN, b""));
        h.feed(&tcp_frame(S, &c, 5000, 1001, TCP_SYN | TCP_ACK, b""));
        h.feed(&tcp_frame(&c, S, 1001, 5001, TCP_ACK, b""));
    }
    for p in 0..180u16 {
        let c = format!("198.18.0.1:{}", 1000 + p);
        h.feed(&udp_frame(&c, "198.19.0.1:53", b"q"));
    }
    assert_eq!(h.shard.table().len(), 200);
    assert_eq!(h.shard.stats().early_drop, 0);
    for _ in 0..10 {
        h.shard.gc(h.now, 200);
    }
    // 95% of 200 is 190: gc stops just below it.
    assert_eq!(h.shard.table().len(), 189);
    assert_eq!(h.shard.stats().early_drop, 11);
    assert_eq!(h.shard.stats().expired, 0);
    let assured = h
        .shard
        .table()
        .iter()
        .filter(|(_, c)| c.status.has(Status::ASSURED))
        .count();
    assert_eq!(assured, 20);
}
