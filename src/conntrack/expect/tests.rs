//! The shared expectation set: its clash rules, one-shot consumption
//! under two racing workers, its bound and filter, and the ledger.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};

use super::*;
use crate::wire::{Addr, PROTO_UDP};

fn expectation(i: u32, master: u32) -> Expectation {
    Expectation {
        tuple: Tuple {
            src: Addr::v4([198, 19, (i >> 8) as u8, i as u8]),
            dst: Addr::v4([198, 18, 0, 1]),
            sport: 0,
            dport: 1024 + (i % 60_000) as u16,
            proto: PROTO_UDP,
            family: 4,
            zone: 0,
        },
        any_source_port: true,
        master: MasterRef {
            shard: 0,
            id: master,
        },
        helper: Helper::Tftp,
        deadline: 100 * SEC,
        created: 0,
        nat: None,
    }
}

/// The transfer's first packet, from any source port.
fn first_packet(i: u32) -> Tuple {
    Tuple {
        sport: 40_000,
        ..expectation(i, 0).tuple
    }
}

/// A clash is another master's pending expectation of the same
/// connections: not one of the same master (replaced instead), not
/// an expired one, not one for another port, and not one consumed.
#[test]
fn clashes_are_other_masters_pending_overlaps() {
    let set = Expectations::new(16);
    let mut ledger = Ledger::new(16);
    let exact = Expectation {
        tuple: first_packet(8),
        any_source_port: false,
        ..expectation(8, 3)
    };
    ledger.expect(&set, expectation(7, 1), 1).unwrap();
    ledger.expect(&set, exact, 1).unwrap();
    let (t, other) = (expectation(7, 0).tuple, MasterRef { shard: 1, id: 2 });
    assert!(set.clashes(&t, other, 0));
    assert!(!set.clashes(&t, expectation(7, 1).master, 0), "same master");
    assert!(!set.clashes(&t, other, 100 * SEC), "expired");
    let elsewhere = Tuple {
        dport: t.dport + 1,
        ..t
    };
    assert!(!set.clashes(&elsewhere, other, 0));
    // The set refuses the clashing one, as `nf_ct_expect_related` does.
    let e = Expectation {
        master: other,
        ..expectation(7, 0)
    };
    assert_eq!(ledger.expect(&set, e, 1), Err(ExpectRefused::Clash));
    assert_eq!(set.len(), 2);
    assert!(
        set.clashes(&expectation(8, 0).tuple, other, 0),
        "any port overlaps one"
    );
    assert!(set.take(&first_packet(7), 0).is_some());
    assert!(!set.clashes(&t, other, 0), "consumed");
}

/// Two workers race for every expectation: each is consumed exactly
/// once (Linux's one-shot), whoever wins, and the set ends empty.
#[test]
fn two_workers_consume_each_expectation_once() {
    const N: u32 = 2_000;
    let set = Arc::new(Expectations::new(N as usize));
    let mut ledger = Ledger::new(N as usize);
    for i in 0..N {
        ledger.expect(&set, expectation(i, i + 1), 1).unwrap();
    }
    assert_eq!(set.len(), N as usize);
    let start = Arc::new(Barrier::new(2));
    let won: Vec<Vec<u32>> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (set, start) = (&set, Arc::clone(&start));
                s.spawn(move || {
                    start.wait();
                    (0..N)
                        .filter(|&i| set.take(&first_packet(i), SEC).is_some())
                        .collect()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut all: Vec<u32> = won.concat();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "each taken exactly once");
    assert!(set.is_empty());
    assert_eq!(set.stats().expect_new, u64::from(N));
}

/// A master removed while another worker consumes its expectations:
/// every expectation is either used or removed, never both.
#[test]
fn removal_and_consumption_never_both_win() {
    const N: u32 = 2_000;
    let set = Expectations::new(N as usize);
    let mut ledger = Ledger::new(N as usize);
    for i in 0..N {
        ledger.expect(&set, expectation(i, i + 1), 1).unwrap();
    }
    let go = AtomicBool::new(false);
    let taken = std::thread::scope(|s| {
        let taker = s.spawn(|| {
            while !go.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            (0..N)
                .filter(|&i| set.take(&first_packet(i), SEC).is_some())
                .count()
        });
        go.store(true, Ordering::Release);
        let mut helper_conn = Conn::BLANK;
        helper_conn.status.set(Status::HELPER);
        for i in 0..N {
            helper_conn.id = i + 1;
            ledger.forget_master(&set, &helper_conn);
        }
        taker.join().unwrap()
    });
    let st = set.stats();
    assert_eq!(st.expect_new, taken as u64);
    assert_eq!(st.expect_new + st.expect_delete, u64::from(N));
    assert!(set.is_empty() && ledger.is_empty());
}

/// A set takes `max` expectations, wherever their keys hash (ten
/// random keys, the default size), and refuses the next.
#[test]
fn fills_to_max() {
    for _ in 0..10 {
        let set = Expectations::new(4096);
        let mut ledger = Ledger::new(4096);
        for i in 0..4096 {
            ledger.expect(&set, expectation(i, i + 1), 1).unwrap();
        }
        assert_eq!(
            ledger.expect(&set, expectation(5000, 5000), 1),
            Err(ExpectRefused::Full)
        );
    }
}

/// `max_expected`, replacement of the same tuple, the size bound,
/// expiry and a stale handle (its slot reused) that removes nothing.
#[test]
fn ledger_semantics() {
    let set = Expectations::new(4);
    let mut ledger = Ledger::new(4);
    // One per master: the second announcement replaces the first.
    ledger.expect(&set, expectation(1, 7), 1).unwrap();
    ledger.expect(&set, expectation(2, 7), 1).unwrap();
    assert_eq!(set.snapshot(), vec![expectation(2, 7)]);
    // The same tuple again replaces it, also with room for more.
    ledger.expect(&set, expectation(2, 7), 2).unwrap();
    assert_eq!(set.len(), 1);
    for m in 8..11 {
        ledger.expect(&set, expectation(m, m), 1).unwrap();
    }
    assert_eq!(
        ledger.expect(&set, expectation(20, 20), 1),
        Err(ExpectRefused::Full)
    );
    assert_eq!(set.stats().expect_full, 1);
    // Master 8's is consumed; its ledger entry goes stale and the slot
    // may be reused, but removing master 8 then removes nothing.
    assert!(set.take(&first_packet(8), SEC).is_some());
    ledger.expect(&set, expectation(21, 21), 1).unwrap();
    let deleted = set.stats().expect_delete;
    let mut c = Conn::BLANK;
    c.status.set(Status::HELPER);
    c.id = 8;
    ledger.forget_master(&set, &c);
    assert_eq!(set.stats().expect_delete, deleted);
    assert_eq!(set.len(), 4);
    // Past the deadline nothing matches, and expiry removes them all.
    assert!(set.take(&first_packet(9), 100 * SEC).is_none());
    ledger.expire(&set, 100 * SEC);
    assert!(set.is_empty() && ledger.is_empty());
    assert!(set.filter.iter().all(|c| c.load(Ordering::Relaxed) == 0));
}

/// The filter counts exactly what is pending, through taking,
/// replacement, removal with the master and expiry; a tuple whose
/// counter is 0 is answered without the buckets, and one counter that
/// saturates stays saturated (it can no longer count down) without
/// hiding anything.
#[test]
fn filter_counts_what_is_pending() {
    let set = Expectations::new(4096);
    let mut ledger = Ledger::new(4096);
    let counted = |set: &Expectations| -> usize {
        set.filter
            .iter()
            .map(|c| usize::from(c.load(Ordering::Relaxed)))
            .sum()
    };
    for i in 0..3000 {
        ledger.expect(&set, expectation(i, i + 1), 1).unwrap();
    }
    assert_eq!(counted(&set), 3000);
    for i in 0..1000 {
        assert!(set.take(&first_packet(i), SEC).is_some());
    }
    for i in 1000..1500 {
        // Replaced by master i + 1's next announcement.
        ledger
            .expect(&set, expectation(i + 5000, i + 1), 1)
            .unwrap();
    }
    for i in 1500..2000 {
        let mut c = Conn::BLANK;
        c.status.set(Status::HELPER);
        c.id = i + 1;
        ledger.forget_master(&set, &c);
    }
    assert_eq!(counted(&set), set.len());
    assert_eq!(set.len(), 1500);
    ledger.expire(&set, 100 * SEC);
    assert_eq!(counted(&set), 0);
    // Nothing pending: no tuple gets past the filter.
    ledger.expect(&set, expectation(1, 1), 1).unwrap();
    let unrelated = Tuple {
        dport: 9,
        ..first_packet(1)
    };
    assert_eq!(
        set.filter[set.filter_of(&unrelated)].load(Ordering::Relaxed),
        0
    );
    assert!(set.take(&unrelated, SEC).is_none());
    // 300 expectations on one counter (the same destination, sources
    // apart): it sticks at the top, and each is still found.
    let set = Expectations::new(4096);
    let mut ledger = Ledger::new(4096);
    let same_dst = |i: u32| Expectation {
        tuple: Tuple {
            dport: 2000,
            ..expectation(i, i + 1).tuple
        },
        ..expectation(i, i + 1)
    };
    for i in 0..300 {
        ledger.expect(&set, same_dst(i), 1).unwrap();
    }
    let c = set.filter_of(&same_dst(0).tuple);
    assert_eq!(set.filter[c].load(Ordering::Relaxed), STUCK);
    for i in 0..300 {
        let t = Tuple {
            sport: 40_000,
            ..same_dst(i).tuple
        };
        assert!(set.take(&t, SEC).is_some(), "{i}");
    }
    assert_eq!(set.filter[c].load(Ordering::Relaxed), STUCK);
}
