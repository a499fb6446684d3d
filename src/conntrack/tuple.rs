//! Connection tuples (Linux's `nf_conntrack_tuple`) and their hash.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;

use crate::wire::{Addr, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// Direction of a tuple within its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// One direction of a connection: what a packet is matched on.
///
/// For TCP and UDP `sport`/`dport` are the ports; for ICMP and ICMPv6 queries
/// `sport` is the identifier and `dport` holds type (high byte) and code (low
/// byte), as Linux keeps `src.u.icmp.id` and `dst.u.icmp.{type,code}`; for
/// other protocols both are 0. The 16-bit zone keeps overlapping address
/// spaces apart (`nf_conntrack_zone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub zone: u16,
}

impl Tuple {
    pub const ZERO: Tuple = Tuple {
        src: Addr::ZERO,
        dst: Addr::ZERO,
        sport: 0,
        dport: 0,
        proto: 0,
        family: 0,
        zone: 0,
    };

    /// The tuple of protocol `proto` from `src` to `dst`.
    pub fn between(src: std::net::SocketAddr, dst: std::net::SocketAddr, proto: u8) -> Tuple {
        Tuple {
            src: Addr::from_std(src.ip()),
            dst: Addr::from_std(dst.ip()),
            sport: src.port(),
            dport: dst.port(),
            proto,
            family: if src.is_ipv4() { 4 } else { 6 },
            zone: 0,
        }
    }

    pub fn l3(&self) -> L3 {
        if self.family == 6 {
            L3::V6
        } else {
            L3::V4
        }
    }

    /// The tuple a reply would carry, for protocols whose reply simply swaps
    /// the ends (`nf_ct_invert_tuple`). ICMP queries swap type as well and
    /// are inverted by the ICMP tracker.
    pub fn swapped(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// The tuple as five 64-bit words, for hashing and for storing in
    /// atomics (`from_words` inverts it).
    #[inline]
    pub(super) fn words(&self) -> [u64; 5] {
        let (s, d) = (self.src.words(), self.dst.words());
        [
            s[0],
            s[1],
            d[0],
            d[1],
            (self.sport as u64)
                | (self.dport as u64) << 16
                | (self.proto as u64) << 32
                | (self.family as u64) << 40
                | (self.zone as u64) << 48,
        ]
    }

    /// The tuple `words` gave.
    pub(super) fn from_words(w: [u64; 5]) -> Tuple {
        Tuple {
            src: Addr::from_words([w[0], w[1]]),
            dst: Addr::from_words([w[2], w[3]]),
            sport: w[4] as u16,
            dport: (w[4] >> 16) as u16,
            proto: (w[4] >> 32) as u8,
            family: (w[4] >> 40) as u8,
            zone: (w[4] >> 48) as u16,
        }
    }

    /// Keyed hash of the tuple. Each table has its own random `key`, as
    /// Linux seeds its conntrack hash, so that a sender cannot aim many
    /// tuples at one bucket without knowing it.
    #[inline]
    pub fn hash(&self, key: &HashKey) -> u64 {
        // Folded 64x64->128 multiplies, as foldhash does. Every operand of
        // every multiply is XORed with its own secret word: were one of
        // them input XOR a public constant, an input equal to the constant
        // would zero that product and erase the other operand, so all
        // tuples differing only there would collide whatever the seed.
        let (w, k) = (self.words(), &key.0);
        let h0 = fold_mul(w[0] ^ k[0], w[1] ^ k[1]);
        let h1 = fold_mul(w[2] ^ k[2], w[3] ^ k[3]);
        let h2 = fold_mul(w[4] ^ k[4], k[5]);
        fold_mul(h0 ^ h2 ^ k[6], h1 ^ k[7])
    }

    /// A keyed hash equal for the tuple and its `swapped` twin: the
    /// connection table keeps one entry for a connection whose reply is
    /// its original swapped and finds it from either direction, as OVS's
    /// userspace conntrack does. Each end (address, port) is hashed on its
    /// own and the two are added, which commutes. Putting the ends in
    /// order first and hashing as `hash` does cost a mispredicted branch
    /// on half the packets: parse and hash took 44-64 cycles a packet
    /// instead of 31-40 in `perf/bench-conntrack`. Every multiply's
    /// operands are XORed with secret words, as in `hash`.
    ///
    /// An IPv4 end (32 bits of address, 16 of port) is two words of input
    /// to one multiply, as foldhash hashes inputs of up to 16 bytes; an
    /// IPv6 end takes two multiplies. The branch on the family goes the
    /// same way for nearly every packet. Hashed as an IPv6 end, an IPv4
    /// one paid a multiply of its zero high word: 6 instructions more an
    /// established packet in `ct-bench`'s timed function (534 against
    /// 528, callgrind), 2.5 in the worker (`perf/bench-instructions`).
    #[inline]
    pub fn hash_either_way(&self, key: &HashKey) -> u64 {
        let k = &key.0;
        let ends = if self.family == 4 {
            let end = |a: Addr, port: u16| fold_mul(a.words()[1] ^ k[1], u64::from(port) ^ k[3]);
            end(self.src, self.sport).wrapping_add(end(self.dst, self.dport))
        } else {
            let end = |a: [u64; 2], port: u16| {
                let h = fold_mul(a[0] ^ k[0], a[1] ^ k[1]);
                fold_mul(h ^ k[2], u64::from(port) ^ k[3])
            };
            end(self.src.words(), self.sport).wrapping_add(end(self.dst.words(), self.dport))
        };
        let rest = u64::from(self.proto) | u64::from(self.family) << 8 | u64::from(self.zone) << 16;
        fold_mul(ends ^ k[4], rest ^ k[5])
    }
}

/// A tuple as a connection stores it: 16 bytes where the tuple takes 40,
/// two words compared at once. An IPv4 address fits whole in 32 bits; of
/// an IPv6 one the key keeps the low 32, and the table keeps the full
/// addresses of an IPv6 connection beside it, compared only when the
/// keys match. A better fold of IPv6 addresses would save nothing: a key
/// is compared only after a 16-bit signature of the full tuple's hash
/// matched, so a match of the key alone is rare whatever it keeps, and a
/// true match reads the addresses anyway. Linux sizes every tuple for
/// IPv6 (`union nf_inet_addr`); here an IPv4 connection, the common case,
/// stops paying for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Key {
    /// The source's 32 bits, then the destination's.
    ends: u64,
    /// Ports, protocol, family and zone, as `Tuple::words`' last.
    rest: u64,
}

/// An address's low 32 bits: all of an IPv4 one.
#[inline]
fn low32(a: Addr) -> u64 {
    a.words()[1] & 0xffff_ffff
}

impl Key {
    pub const ZERO: Key = Key { ends: 0, rest: 0 };

    /// The key of tuple `t`.
    #[inline]
    pub fn of(t: &Tuple) -> Key {
        Key {
            ends: low32(t.src) | t.dst.words()[1] << 32,
            rest: t.words()[4],
        }
    }

    /// Whether the tuple is IPv6, and its addresses kept beside it.
    #[inline]
    pub fn is_v6(&self) -> bool {
        (self.rest >> 40) as u8 == 6
    }

    /// The transport protocol's number.
    pub fn proto(&self) -> u8 {
        (self.rest >> 32) as u8
    }

    /// Its parts as a connection stores them (`Conn`): the ends, the
    /// ports, and what a connection's two keys share (protocol, family
    /// and zone).
    #[inline]
    pub(super) fn parts(&self) -> (u64, u32, u32) {
        (self.ends, self.rest as u32, (self.rest >> 32) as u32)
    }

    /// The key of those parts.
    #[inline]
    pub(super) fn from_parts(ends: u64, ports: u32, shared: u32) -> Key {
        Key {
            ends,
            rest: u64::from(ports) | u64::from(shared) << 32,
        }
    }

    /// The key of the tuple swapped (`Tuple::swapped`).
    #[inline]
    pub fn swapped(&self) -> Key {
        let ports = self.rest as u32;
        Key {
            ends: self.ends.rotate_left(32),
            rest: (self.rest & !0xffff_ffff) | u64::from(ports.rotate_left(16)),
        }
    }

    /// The tuple of an IPv4 key.
    #[inline]
    pub fn tuple_v4(&self) -> Tuple {
        let [s0, s1, d0, d1] = self.v4_words();
        self.tuple_with([Addr::from_words([s0, s1]), Addr::from_words([d0, d1])])
    }

    /// An IPv4 key's source and destination addresses as words
    /// (`Addr::words`).
    #[inline]
    pub fn v4_words(&self) -> [u64; 4] {
        [0, self.ends & 0xffff_ffff, 0, self.ends >> 32]
    }

    /// The tuple, given its source and destination addresses (an IPv6
    /// key's, kept beside it).
    #[inline]
    pub fn tuple_with(&self, [src, dst]: [Addr; 2]) -> Tuple {
        Tuple {
            src,
            dst,
            ..Tuple::from_words([0, 0, 0, 0, self.rest])
        }
    }
}

/// The high and low halves of a 128-bit product, XORed.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The secret words of one table's tuple hash.
#[derive(Clone)]
pub struct HashKey([u64; 8]);

impl HashKey {
    /// Fresh words from the standard library's per-process random keys
    /// (the OS's random source), one SipHash output per word.
    pub fn random() -> HashKey {
        let state = RandomState::new();
        HashKey(std::array::from_fn(|i| state.hash_one(i)))
    }

    /// The secret words, for other keyed structures of the same owner.
    pub(super) fn words(&self) -> &[u64; 8] {
        &self.0
    }

    /// A fixed key, for reproducible tests.
    #[cfg(test)]
    pub fn fixed(words: [u64; 8]) -> HashKey {
        HashKey(words)
    }
}

impl fmt::Display for Tuple {
    /// `conntrack -L` style: `src=.. dst=.. sport=.. dport=..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, d) = (self.src.display(self.l3()), self.dst.display(self.l3()));
        match self.proto {
            PROTO_TCP | PROTO_UDP => write!(
                f,
                "src={s} dst={d} sport={} dport={}",
                self.sport, self.dport
            ),
            PROTO_ICMP | PROTO_ICMPV6 => write!(
                f,
                "src={s} dst={d} type={} code={} id={}",
                self.dport >> 8,
                self.dport & 0xff,
                self.sport
            ),
            _ => write!(f, "src={s} dst={d}"),
        }
    }
}

/// Protocol name as `conntrack -L` prints it.
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::wire::PROTO_UDP;

    const N: usize = 30_000;
    /// About two tuples per bucket, as a full table has.
    const BUCKETS: usize = 1 << 14;

    fn v6(hi: u64, lo: u64) -> Addr {
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&hi.to_be_bytes());
        o[8..].copy_from_slice(&lo.to_be_bytes());
        Addr::v6(o)
    }

    /// UDP flows from sources in one IPv6 /48 (2001:2:0::/48, the subnet
    /// varying) with interface id `iid`, to one server port.
    fn flows_from_48(mut iid: impl FnMut(usize) -> u64) -> Vec<Tuple> {
        (0..N)
            .map(|i| Tuple {
                src: v6(0x2001_0002_0000_0000 | (i as u64 & 0xffff), iid(i)),
                dst: v6(0x2001_0002_0000_0003, 1),
                sport: 40_000 + (i >> 16) as u16,
                dport: 53,
                proto: PROTO_UDP,
                family: 6,
                zone: 0,
            })
            .collect()
    }

    /// (distinct 64-bit hashes, most tuples in one of `BUCKETS` buckets),
    /// the worse of `hash` and `hash_either_way`.
    fn spread(tuples: &[Tuple], key: &HashKey) -> (usize, usize) {
        let (d1, w1) = spread_of(tuples, |t| t.hash(key));
        let (d2, w2) = spread_of(tuples, |t| t.hash_either_way(key));
        (d1.min(d2), w1.max(w2))
    }

    fn spread_of(tuples: &[Tuple], hash: impl Fn(&Tuple) -> u64) -> (usize, usize) {
        let hashes: Vec<u64> = tuples.iter().map(hash).collect();
        let mut load = vec![0usize; BUCKETS];
        for h in &hashes {
            load[*h as usize % BUCKETS] += 1;
        }
        let distinct = hashes.iter().collect::<HashSet<_>>().len();
        (distinct, load.into_iter().max().unwrap_or(0))
    }

    /// The inputs that broke the previous hash (one multiply's operand was
    /// the source's low word XOR 0x9E37_79B9_7F4A_7C15, so sources with
    /// that interface id all hashed alike: 30,000 flows in one bucket),
    /// and words equal to other constants an attacker might try, cost no
    /// more probes than random interface ids. With 30,000 tuples in 16,384
    /// buckets the fullest bucket holds about 9; with fresh random keys,
    /// 16 or more came up once in 2,000 runs of this test (20 spreads
    /// each), so the keys are drawn from a seeded generator: the same
    /// four each run.
    #[test]
    fn crafted_tuples_spread_as_ordinary_ones() {
        let mut rng = crate::synth::xorshift(0x5EED);
        let ordinary = flows_from_48(|_| rng());
        let suspects = [0, u64::MAX, 0x9E37_79B9_7F4A_7C15, 0xD6E8_FEB8_6659_FD93];
        for _ in 0..4 {
            let key = HashKey::fixed(std::array::from_fn(|_| rng()));
            let (distinct, worst) = spread(&ordinary, &key);
            assert_eq!(distinct, N);
            assert!(worst < 16, "ordinary tuples: {worst} in one bucket");
            for c in suspects {
                let (distinct, worst) = spread(&flows_from_48(|_| c), &key);
                assert_eq!(distinct, N, "interface id {c:#x}: colliding hashes");
                assert!(worst < 16, "interface id {c:#x}: {worst} in one bucket");
            }
        }
    }

    /// Every word of the tuple reaches the hash: changing any one of them
    /// alone changes it, also when the others hold the suspect constants.
    /// Each field tells tuples apart, in both hashes and in comparisons.
    #[test]
    fn every_word_counts() {
        let key = HashKey::fixed([1, 2, 3, 4, 5, 6, 7, 8]);
        let base = flows_from_48(|_| 0x9E37_79B9_7F4A_7C15)[0];
        let variants = [
            Tuple {
                src: v6(0x2001_0002_0000_0001, 0x9E37_79B9_7F4A_7C15),
                ..base
            },
            Tuple {
                src: v6(0x2001_0002_0000_0000, 0x9E37_79B9_7F4A_7C16),
                ..base
            },
            Tuple {
                dst: v6(0x2001_0002_0000_0004, 1),
                ..base
            },
            Tuple {
                dst: v6(0x2001_0002_0000_0003, 2),
                ..base
            },
            Tuple {
                sport: base.sport + 1,
                ..base
            },
            Tuple { dport: 54, ..base },
            Tuple { proto: 6, ..base },
            Tuple { zone: 1, ..base },
            Tuple { family: 4, ..base },
        ];
        for v in variants {
            assert_ne!(v, base);
            assert_ne!(v.hash(&key), base.hash(&key), "{v:?}");
            assert_ne!(v.hash_either_way(&key), base.hash_either_way(&key), "{v:?}");
        }
    }

    /// A key gives its tuple back: an IPv4 one whole, an IPv6 one with its
    /// addresses; every field of an IPv4 tuple is in its key, and a family
    /// tells IPv4 keys from IPv6 ones.
    #[test]
    fn keys_give_tuples_back() {
        let v4 = Tuple::between(
            "198.18.0.1:1024".parse().unwrap(),
            "198.19.255.254:53".parse().unwrap(),
            PROTO_UDP,
        );
        let k = Key::of(&v4);
        assert!(!k.is_v6());
        assert_eq!((k.tuple_v4(), k.proto()), (v4, PROTO_UDP));
        assert_eq!(k.swapped().tuple_v4(), v4.swapped());
        for other in [
            Tuple { src: v4.dst, ..v4 },
            Tuple { dst: v4.src, ..v4 },
            Tuple { sport: 1, ..v4 },
            Tuple { dport: 1, ..v4 },
            Tuple { proto: 6, ..v4 },
            Tuple { zone: 1, ..v4 },
            Tuple { family: 6, ..v4 },
        ] {
            assert_ne!(Key::of(&other), k, "{other:?}");
        }
        for v6 in flows_from_48(|i| i as u64).into_iter().take(100) {
            let k = Key::of(&v6);
            assert!(k.is_v6());
            assert_eq!(k.tuple_with([v6.src, v6.dst]), v6);
            assert_eq!(Key::of(&v6.swapped()), k.swapped());
        }
    }

    /// A tuple and its swapped twin hash alike either way, also when the
    /// two ends share an address, and a tuple differing in one port does
    /// not: IPv6 tuples and IPv4 ones, which take a path of their own.
    #[test]
    fn either_way_hash_is_symmetric() {
        let key = HashKey::random();
        let v4 = (0..1000u32).map(|i| Tuple {
            src: Addr::v4([198, 18, (i >> 8) as u8, i as u8]),
            dst: Addr::v4([198, 19, 0, (i % 7) as u8]),
            sport: 1024 + (i % 13) as u16,
            dport: 53,
            proto: PROTO_UDP,
            family: 4,
            zone: 0,
        });
        for t in flows_from_48(|i| i as u64).into_iter().take(1000).chain(v4) {
            let twin = t.swapped();
            assert_eq!(t.hash_either_way(&key), twin.hash_either_way(&key));
            let same_addr = Tuple { dst: t.src, ..t };
            assert_eq!(
                same_addr.hash_either_way(&key),
                same_addr.swapped().hash_either_way(&key)
            );
            let other = Tuple {
                dport: t.dport + 1,
                ..t
            };
            assert_ne!(t.hash_either_way(&key), other.hash_either_way(&key));
        }
    }
}
