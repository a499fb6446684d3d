//! The index and slab of `ConnTable`: entries per connection, clash
//! checks, hinted lookups, signature matching, and IPv6 addresses kept
//! beside folded keys.

use super::*;
use crate::wire::Addr;

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
    Tuple {
        src: crate::wire::Addr::v4(src),
        dst: crate::wire::Addr::v4(dst),
        sport,
        dport,
        proto: 17,
        family: 4,
        zone: 0,
    }
}

/// A new, unconfirmed connection with tuples `orig` and `reply`.
fn new_conn(t: &mut ConnTable, orig: Tuple, reply: Tuple) -> Slot {
    let tuples = [orig, reply];
    let c = Conn::with_keys(tuples.map(|t| Key::of(&t)));
    t.alloc(c, &tuples).unwrap()
}

/// A connection with tuples `orig` and `reply`, confirmed.
fn add(t: &mut ConnTable, orig: Tuple, reply: Tuple) -> Slot {
    let s = new_conn(t, orig, reply);
    t.insert(s).unwrap();
    s
}

fn entries(t: &ConnTable) -> usize {
    t.buckets
        .iter()
        .map(|b| b.entry.iter().filter(|&&e| e != EMPTY).count())
        .sum()
}

/// An untranslated connection takes one index entry and a translated
/// one two; each is found from both of its tuples, in the right
/// direction, and from nothing else (the swapped pre-translation
/// original is not a translated connection's reply); delete leaves
/// the index empty.
#[test]
fn one_entry_unless_translated() {
    let mut t = ConnTable::new(64, false, None);
    let plain = udp([198, 18, 0, 1], 1024, [198, 19, 0, 1], 53);
    let natted = udp([198, 18, 0, 2], 1024, [198, 19, 0, 1], 53);
    let natted_reply = udp([198, 19, 0, 1], 53, [198, 19, 255, 1], 40000);
    let a = add(&mut t, plain, plain.swapped());
    assert_eq!(entries(&t), 1);
    let b = add(&mut t, natted, natted_reply);
    assert_eq!(entries(&t), 3);
    let find = |t: &ConnTable, x: &Tuple| t.lookup(x, t.hash(x));
    assert_eq!(find(&t, &plain), Some((a, Dir::Original)));
    assert_eq!(find(&t, &plain.swapped()), Some((a, Dir::Reply)));
    assert_eq!(find(&t, &natted), Some((b, Dir::Original)));
    assert_eq!(find(&t, &natted_reply), Some((b, Dir::Reply)));
    assert_eq!(find(&t, &natted.swapped()), None);
    // An original whose ends sort the other way, and one whose ends
    // are equal (its reply is itself: found as the original).
    let down = udp([198, 19, 0, 9], 2000, [198, 18, 0, 1], 53);
    let d = add(&mut t, down, down.swapped());
    let same_ends = udp([198, 18, 0, 7], 7, [198, 18, 0, 7], 7);
    let e = add(&mut t, same_ends, same_ends);
    assert_eq!(entries(&t), 5);
    assert_eq!(find(&t, &down), Some((d, Dir::Original)));
    assert_eq!(find(&t, &down.swapped()), Some((d, Dir::Reply)));
    assert_eq!(find(&t, &same_ends), Some((e, Dir::Original)));
    t.delete(d);
    t.delete(e);
    // A clash from either direction is refused.
    let c = new_conn(&mut t, plain.swapped(), plain);
    assert_eq!(t.insert(c), Err(a));
    t.delete(c);
    t.delete(a);
    t.delete(b);
    assert_eq!(entries(&t), 0);
    assert_eq!(find(&t, &plain), None);
    assert_eq!(find(&t, &natted_reply), None);
}

/// A new untranslated connection is refused, in the one walk of the
/// index its clash check makes, whichever tuple of whichever kind of
/// entry already holds its original or its reply; and it is refused
/// exactly when a lookup of either tuple finds a connection.
#[test]
fn clash_check_of_one_entry_finds_every_holder() {
    let client = udp([198, 18, 0, 1], 1024, [198, 19, 0, 1], 53);
    let elsewhere = udp([198, 18, 0, 9], 9, [198, 19, 0, 9], 9);
    // Existing connections (original, reply) holding `client` or its
    // twin in each place an entry can keep it, and one holding neither.
    let holders = [
        (client, client.swapped()),
        (client.swapped(), client),
        (client, elsewhere),
        (elsewhere, client),
        (client.swapped(), elsewhere),
        (elsewhere, client.swapped()),
        (elsewhere, elsewhere.swapped()),
    ];
    for (i, &(orig, reply)) in holders.iter().enumerate() {
        let mut t = ConnTable::new(64, false, None);
        add(&mut t, orig, reply);
        let by_lookup = [client, client.swapped()]
            .iter()
            .find_map(|x| t.lookup(x, t.hash(x)))
            .map(|(s, _)| s);
        let new = new_conn(&mut t, client, client.swapped());
        let clash = t.insert(new).err();
        assert_eq!(clash, by_lookup, "holder {i}");
        assert_eq!(clash.is_some(), i < 6, "holder {i}");
    }
}

/// Whatever way a hint names (the right one, one gone stale, one of
/// another connection's entries or an empty one), a hinted lookup
/// finds what a plain one does.
#[test]
fn hinted_lookup_agrees_with_lookup() {
    let mut t = ConnTable::new(64, false, None);
    let tuples: Vec<Tuple> = (0..48u8)
        .map(|i| udp([198, 18, 0, i], 1000 + u16::from(i), [198, 19, 0, 1], 53))
        .collect();
    let slots: Vec<Slot> = tuples
        .iter()
        .map(|&x| add(&mut t, x, x.swapped()))
        .collect();
    let absent = udp([198, 18, 1, 1], 9, [198, 19, 0, 1], 53);
    let agree = |t: &ConnTable| {
        for q in tuples
            .iter()
            .flat_map(|x| [*x, x.swapped()])
            .chain([absent])
        {
            let h = t.hash(&q);
            let plain = t.lookup(&q, h);
            for hint in (0..WAYS).map(Some).chain([None]) {
                assert_eq!(t.lookup_at(&q, h, hint), plain, "{q:?} hint {hint:?}");
            }
        }
    };
    agree(&t);
    for &s in slots.iter().step_by(2) {
        t.delete(s);
    }
    agree(&t);
}

/// `matches` agrees with comparing the ways one by one, for lanes
/// drawn from a few values (so that many match), the extremes
/// included: 0 (an empty way), 0x7fff, 0x8000 and 0xffff, where a
/// carry or borrow between lanes would show.
#[test]
fn signature_match_is_exact_per_way() {
    const VALUES: [u16; 6] = [0, 1, 0x7fff, 0x8000, 0xfffe, 0xffff];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..100_000 {
        let mut b = EMPTY_BUCKET;
        let mut sigs = [0u16; WAYS];
        for (i, s) in sigs.iter_mut().enumerate() {
            *s = VALUES[next() as usize % VALUES.len()];
            ConnTable::set_sig(&mut b, i, *s);
        }
        let sig = VALUES[next() as usize % VALUES.len()];
        let naive = sigs
            .iter()
            .enumerate()
            .fold(0, |m, (i, &s)| m | u32::from(s == sig) << i);
        assert_eq!(ConnTable::matches(&b, sig), naive, "{sigs:x?} vs {sig:x}");
    }
}

/// UDP over IPv6 from `src` (two 64-bit halves) port 1024 to 2001:2::53
/// port 53.
fn udp6(src: [u64; 2]) -> Tuple {
    Tuple {
        src: Addr::from_words(src),
        dst: Addr::from_words([0x2001_0002_0000_0000, 0x53]),
        sport: 1024,
        dport: 53,
        proto: 17,
        family: 6,
        zone: 0,
    }
}

/// Two IPv6 connections whose sources share their low 32 bits have the
/// same keys; the table tells them apart by the addresses it keeps beside
/// them, in lookups, clash checks and the tuples it gives back, and an
/// IPv4 connection that takes a freed IPv6 slot does not inherit them.
#[test]
fn ipv6_keys_alike_are_told_apart() {
    let mut t = ConnTable::new(64, false, None);
    let a = udp6([0x2001_0002_0000_0001, 7]);
    let b = udp6([0x2001_0002_0000_0002, 7]);
    assert_eq!(Key::of(&a), Key::of(&b));
    assert_ne!(a, b);
    let empty = t.memory();
    let sa = add(&mut t, a, a.swapped());
    let sb = add(&mut t, b, b.swapped());
    // Counted up to the highest slot with IPv6 addresses.
    assert_eq!(t.memory(), empty + 2 * std::mem::size_of::<Ends>());
    let find = |t: &ConnTable, x: &Tuple| t.lookup(x, t.hash(x));
    for (s, x) in [(sa, a), (sb, b)] {
        assert_eq!(find(&t, &x), Some((s, Dir::Original)));
        assert_eq!(find(&t, &x.swapped()), Some((s, Dir::Reply)));
        assert_eq!(t.tuples(s), [x, x.swapped()]);
    }
    // A second connection of `b` clashes with `b`'s, not `a`'s.
    let again = new_conn(&mut t, b.swapped(), b);
    assert_eq!(t.insert(again), Err(sb));
    t.delete(again);
    // Freed, `a`'s slot keeps its tuples until taken again; an IPv4
    // connection taking it keeps no addresses.
    t.delete(sa);
    assert_eq!(t.tuples(sa), [a, a.swapped()]);
    let v4 = udp([198, 18, 0, 1], 1024, [198, 19, 0, 1], 53);
    let s4 = add(&mut t, v4, v4.swapped());
    assert_eq!(s4, sa, "the freed slot is reused");
    assert_eq!(t.tuples(s4), [v4, v4.swapped()]);
    // The refused connection's slot, above, took addresses too.
    assert_eq!(t.memory(), empty + 3 * std::mem::size_of::<Ends>());
    assert_eq!(find(&t, &a), None);
    assert_eq!(find(&t, &b), Some((sb, Dir::Original)));
}

/// A translated IPv6 connection's new reply tuple is kept whole: found
/// by it, and given back.
#[test]
fn ipv6_reply_set_by_nat_is_kept() {
    let mut t = ConnTable::new(64, false, None);
    let orig = udp6([0x2001_0002_0000_0001, 7]);
    let s = new_conn(&mut t, orig, orig.swapped());
    let reply = Tuple {
        dst: Addr::from_words([0x2001_0002_0000_00ff, 1]),
        dport: 40_000,
        ..orig.swapped()
    };
    t.set_reply(s, &reply);
    t.insert(s).unwrap();
    assert_eq!(entries(&t), 2, "translated: an entry each way");
    assert_eq!(t.tuples(s), [orig, reply]);
    assert_eq!(t.lookup(&reply, t.hash(&reply)), Some((s, Dir::Reply)));
    assert_eq!(t.lookup(&orig.swapped(), t.hash(&orig.swapped())), None);
}

/// A slot's kind and generation share 16 bits: a kind change keeps the
/// generation, a free bumps it, and the generation wraps without
/// touching the kind.
#[test]
fn slot_meta_keeps_kind_and_generation_apart() {
    let m = SlotMeta::FRESH.with(SlotKind::Unconfirmed);
    assert_eq!((m.kind(), m.generation()), (SlotKind::Unconfirmed, 0));
    let m = m.with(SlotKind::Confirmed).freed();
    assert_eq!((m.kind(), m.generation()), (SlotKind::Free, 1));
    let last = SlotMeta(!3).with(SlotKind::Confirmed);
    assert_eq!(last.generation(), (1 << 14) - 1);
    let wrapped = last.freed();
    assert_eq!((wrapped.kind(), wrapped.generation()), (SlotKind::Free, 0));
    let mut t = ConnTable::new(4, false, None);
    let s = new_conn(
        &mut t,
        udp([198, 18, 0, 1], 1, [198, 19, 0, 1], 2),
        udp([198, 19, 0, 1], 2, [198, 18, 0, 1], 1),
    );
    assert!(t.is_unconfirmed(s));
    t.delete(s);
    assert!(!t.is_live(s));
    assert_eq!(t.generation(s), 1);
}

/// Every slot's IPv6 addresses start on a line, whatever the allocator
/// returned (a large allocation starts 16 bytes into one), so that a
/// direction's four words are one line.
#[test]
fn ipv6_addresses_start_on_a_line() {
    for max in [1_000, 1_000_000] {
        let t = ConnTable::new(max, false, None);
        for s in [0, 1, max as u32 / 2, max as u32 - 2] {
            assert_eq!(t.v6_addr(Slot(s)) as usize % 64, 0, "slot {s} of {max}");
        }
    }
}

/// An IPv4 tuple's ends are ordered by one 48-bit compare: the same order
/// as the 128-bit compare of the addresses with the ports' tie-break that
/// IPv6 tuples take, and of a tuple and its swapped twin exactly one
/// sorts descending unless the two are equal.
#[test]
fn descending_v4_orders_as_the_wide_compare() {
    let wide = |t: &Tuple| {
        let w = |a: Addr| u128::from(a.words()[0]) << 64 | u128::from(a.words()[1]);
        let (s, d) = (w(t.src), w(t.dst));
        s > d || (s == d && t.sport > t.dport)
    };
    let addrs = [
        [198, 18, 0, 1],
        [198, 18, 0, 2],
        [198, 19, 255, 254],
        [0, 0, 0, 0],
    ];
    let ports = [0, 1, 53, 1024, 65535];
    for (&a, &b) in addrs.iter().flat_map(|a| addrs.iter().map(move |b| (a, b))) {
        for (&p, &q) in ports.iter().flat_map(|p| ports.iter().map(move |q| (p, q))) {
            let t = udp(a, p, b, q);
            assert_eq!(descending(&t), wide(&t), "{t:?}");
            if t != t.swapped() {
                assert_ne!(descending(&t), descending(&t.swapped()), "{t:?}");
            }
        }
    }
}
