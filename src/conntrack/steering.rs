//! Which worker owns a connection: the symmetric Toeplitz hash the NIC
//! computes for RSS, done in software, and the table that maps a hash to a
//! worker.
//!
//! The ports are given the key 0x6d5a repeated (Woo and Park, "Scalable TCP
//! Session Monitoring with Symmetric Receive-side Scaling", 2012). A key
//! whose bits repeat every 16 makes the Toeplitz hash the same for a
//! packet and its reply: swapping two 32-bit addresses, or two 16-bit
//! ports, moves their bits by a multiple of 16, where the key looks the
//! same. So a NIC doing RSS with it delivers both directions of a
//! connection to one queue, and the same hash computed here tells each
//! worker which packets it owns, for ports without RSS (vdevs), for flows
//! the NIC hashes on other fields (ICMP errors hash on the outer header,
//! but belong to the connection they quote), and later for NAT.
//!
//! The same periodicity makes the software hash cheap: the key window at
//! any bit offset depends only on the offset modulo 16, so the
//! contribution of an input byte depends only on its value and on whether
//! its offset is even or odd: two 256-entry tables instead of a loop over
//! every input bit (what `rte_softrss` does).

use std::sync::Arc;

use super::tuple::Tuple;
use crate::wire::{PROTO_TCP, PROTO_UDP};

/// The two bytes the symmetric key repeats.
const KEY_PATTERN: [u8; 2] = [0x6d, 0x5a];

/// The symmetric RSS key, `len` bytes long (devices take 40 or 52).
pub fn symmetric_key(len: usize) -> Vec<u8> {
    (0..len).map(|i| KEY_PATTERN[i % 2]).collect()
}

/// The Toeplitz hash under the symmetric key.
pub struct SymmetricToeplitz {
    /// `table[offset % 2][byte]`: the XOR of the 32-bit key windows at the
    /// byte's set bits.
    table: [[u32; 256]; 2],
}

impl Default for SymmetricToeplitz {
    fn default() -> Self {
        // The key as a bit string; any 48 bits hold every window a byte at
        // offset 0 or 1 can need (bit offsets 0..16, plus 32).
        let key = symmetric_key(8);
        let window = |bit: usize| -> u32 {
            let word = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
            (word << bit >> 32) as u32
        };
        let mut table = [[0u32; 256]; 2];
        for (parity, row) in table.iter_mut().enumerate() {
            for (byte, cell) in row.iter_mut().enumerate() {
                *cell = (0..8)
                    .filter(|k| byte & (0x80 >> k) != 0)
                    .fold(0, |h, k| h ^ window(8 * parity + k));
            }
        }
        SymmetricToeplitz { table }
    }
}

impl SymmetricToeplitz {
    /// The contribution of a 16-bit field at an even byte offset (every
    /// field the NIC hashes sits at one: addresses, then ports).
    #[inline]
    pub fn half(&self, v: u16) -> u32 {
        self.table[0][usize::from(v >> 8)] ^ self.table[1][usize::from(v & 0xff)]
    }

    #[inline]
    fn word(&self, v: u64) -> u32 {
        self.half((v >> 48) as u16)
            ^ self.half((v >> 32) as u16)
            ^ self.half((v >> 16) as u16)
            ^ self.half(v as u16)
    }

    /// The hash the NIC computes for a packet of connection direction
    /// `t`: over addresses and ports for TCP/UDP when `fields` says so, over
    /// the addresses alone for everything else (the NIC's "IPv4 other" and
    /// fragment types). Every field starts at an even offset, so its
    /// contribution does not depend on where it sits.
    #[inline]
    pub fn hash_tuple(&self, t: &Tuple, fields: HashFields) -> u32 {
        let [shi, slo] = t.src.words();
        let [dhi, dlo] = t.dst.words();
        let mut h = self.word(slo) ^ self.word(dlo);
        // An IPv4 address is the low 32 bits: its zero upper bits add nothing.
        if t.family == 6 {
            h ^= self.word(shi) ^ self.word(dhi);
        }
        if fields.ports(t.proto) {
            h ^= self.half(t.sport) ^ self.half(t.dport);
        }
        h
    }
}

/// Which fields the hash covers beyond the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashFields {
    pub tcp: bool,
    pub udp: bool,
}

impl HashFields {
    /// Addresses alone.
    pub const NONE: HashFields = HashFields {
        tcp: false,
        udp: false,
    };

    /// Whether the ports of protocol `proto` are hashed.
    pub fn ports(&self, proto: u8) -> bool {
        match proto {
            PROTO_TCP => self.tcp,
            PROTO_UDP => self.udp,
            _ => false,
        }
    }

    /// Without RSS in hardware, ports spread connections best.
    pub const ALL: HashFields = HashFields {
        tcp: true,
        udp: true,
    };
}

/// Owner of every hash: `workers[hash % len]`, `len` a power of two. With
/// RSS in hardware the table mirrors the NIC's redirection table (entry i
/// -> queue i % queues -> the worker polling that queue on every port), so
/// packets mostly arrive where they are owned; otherwise entries spread
/// over the workers round robin.
#[derive(Debug, Clone)]
pub struct Owners {
    workers: Box<[u16]>,
    mask: u32,
}

/// How the ports spread packets, if they do RSS consistently.
#[derive(Debug, Clone)]
pub struct RssLayout {
    /// Entries of the redirection table (a power of two), programmed as
    /// entry i -> queue i % queues.
    pub reta_size: usize,
    /// `queue_worker[q]`: the worker that polls RX queue q on every port.
    pub queue_worker: Vec<u16>,
}

/// Entries when no NIC table is mirrored: enough for an even spread.
const SOFTWARE_ENTRIES: usize = 128;

impl Owners {
    pub fn new(rss: Option<&RssLayout>, nb_workers: usize) -> Owners {
        let workers: Box<[u16]> = match rss {
            Some(l) if l.reta_size.is_power_of_two() && !l.queue_worker.is_empty() => (0..l
                .reta_size)
                .map(|i| l.queue_worker[i % l.queue_worker.len()])
                .collect(),
            _ => (0..SOFTWARE_ENTRIES)
                .map(|i| (i % nb_workers.max(1)) as u16)
                .collect(),
        };
        Owners {
            mask: workers.len() as u32 - 1,
            workers,
        }
    }

    #[inline]
    pub fn of(&self, hash: u32) -> u16 {
        self.workers[(hash & self.mask) as usize]
    }
}

/// One worker's view of who owns what: its number, the owner table and
/// the fields hashed, with what NAT needs to pick translated ports that
/// keep a connection on this worker.
///
/// The hash of a tuple whose port field p varies is `h0 ^ half(p)`, and
/// `half` is linear over GF(2); the owner reads its low `k` bits
/// (`k = log2` of the owner table's size). So for each owner-table entry
/// e, the ports with `(h0 ^ half(p)) & mask == e` are a coset of a
/// (16 - k)-dimensional subspace, and are computed rather than searched
/// (`rte_thash_adjust_tuple` solves the same problem for any key): `k`
/// pivot bits of the port, chosen once by elimination so that their
/// columns of `half`'s low `k` bits are independent, are set by a table
/// lookup, and the other `16 - k` bits run freely. Under the symmetric
/// key the lowest k bits are not always independent (for 128 entries
/// they have rank 6), hence the elimination.
#[derive(Clone)]
pub struct Steering {
    toeplitz: Arc<SymmetricToeplitz>,
    owners: Arc<Owners>,
    fields: HashFields,
    me: u16,
    /// The owner-table entries that map to `me`.
    mine: Arc<[u16]>,
    /// The pivot bits of a port (`k` of them).
    pivots: u16,
    /// `solve[v]`: the combination of pivot bits whose `half` has low
    /// bits `v`.
    solve: Arc<[u16]>,
}

impl Steering {
    pub fn new(owners: Arc<Owners>, fields: HashFields, me: u16) -> Steering {
        let toeplitz = Arc::new(SymmetricToeplitz::default());
        let mask = owners.mask;
        let k = mask.count_ones();
        // Greedy elimination from the lowest port bit up: keep a bit whose
        // column is independent of those kept, reduced to an echelon form
        // `(column, combination of port bits that makes it)`.
        let mut basis: Vec<(u32, u16)> = Vec::with_capacity(k as usize);
        let mut pivots = 0u16;
        for bit in 0..16 {
            let mut col = toeplitz.half(1 << bit) & mask;
            let mut combo = 1u16 << bit;
            for &(b, c) in &basis {
                if col ^ b < col {
                    col ^= b;
                    combo ^= c;
                }
            }
            if col != 0 {
                basis.push((col, combo));
                basis.sort_by_key(|b| std::cmp::Reverse(b.0));
                pivots |= 1 << bit;
            }
        }
        debug_assert_eq!(
            pivots.count_ones(),
            k,
            "the symmetric key's map has full rank"
        );
        let mut solve = vec![0u16; 1 << k];
        for (v, s) in solve.iter_mut().enumerate() {
            let (mut v, mut combo) = (v as u32, 0u16);
            for &(b, c) in &basis {
                if v ^ b < v {
                    v ^= b;
                    combo ^= c;
                }
            }
            *s = combo;
        }
        let mine: Arc<[u16]> = (0..=mask)
            .filter(|&e| owners.workers[e as usize] == me)
            .map(|e| e as u16)
            .collect();
        Steering {
            toeplitz,
            owners,
            fields,
            me,
            mine,
            pivots,
            solve: solve.into(),
        }
    }

    pub fn me(&self) -> u16 {
        self.me
    }

    pub fn fields(&self) -> HashFields {
        self.fields
    }

    /// The worker that owns tuple `t` (either direction).
    #[inline]
    pub fn owner(&self, t: &Tuple) -> u16 {
        self.owners.of(self.toeplitz.hash_tuple(t, self.fields))
    }

    /// The worker a tuple's addresses alone land on (how NICs hash
    /// fragments, which only the first carries ports for).
    #[inline]
    pub fn owner_by_addresses(&self, t: &Tuple) -> u16 {
        self.owners
            .of(self.toeplitz.hash_tuple(t, HashFields::NONE))
    }

    /// Whether this worker owns `t`.
    #[inline]
    pub fn owns(&self, t: &Tuple) -> bool {
        self.owner(t) == self.me
    }

    /// The owner-table entry `t` lands on.
    #[inline]
    pub fn entry(&self, t: &Tuple) -> u16 {
        (self.toeplitz.hash_tuple(t, self.fields) & self.owners.mask) as u16
    }

    /// The values of one port field of `t` (`dport` if `dst`, else
    /// `sport`) in `lo..=hi` that make `t` this worker's, starting from
    /// `start`'s place and wrapping round; every such value once. Empty
    /// where the field is not hashed (then it cannot steer).
    pub fn owned_ports<'s>(
        &'s self,
        t: &Tuple,
        dst: bool,
        lo: u16,
        hi: u16,
        start: u16,
    ) -> impl Iterator<Item = u16> + 's {
        self.ports_onto(t, dst, lo, hi, start, &self.mine)
    }

    /// As `owned_ports`, for the values that make `t` land on one of
    /// `entries` of the owner table.
    pub fn ports_onto<'s>(
        &'s self,
        t: &Tuple,
        dst: bool,
        lo: u16,
        hi: u16,
        start: u16,
        entries: &'s [u16],
    ) -> impl Iterator<Item = u16> + 's {
        let hashed = self.fields.ports(t.proto);
        let mut base = *t;
        if dst {
            base.dport = 0;
        } else {
            base.sport = 0;
        }
        let h0 = self.toeplitz.hash_tuple(&base, self.fields) & self.owners.mask;
        let free = !self.pivots;
        let runs = 1u32 << free.count_ones();
        let first = extract(start, free);
        (0..if hashed { runs } else { 0 })
            .map(move |i| deposit((first + i) % runs, free))
            .flat_map(move |f| {
                let hf = self.toeplitz.half(f) & self.owners.mask;
                entries
                    .iter()
                    .map(move |&e| f | self.solve[(u32::from(e) ^ h0 ^ hf) as usize])
            })
            .filter(move |p| (lo..=hi).contains(p))
    }
}

/// The bits of `v` at the set bits of `mask`, packed low (x86's `pext`).
fn extract(v: u16, mask: u16) -> u32 {
    let (mut out, mut k) = (0u32, 0);
    for bit in 0..16 {
        if mask & (1 << bit) != 0 {
            out |= u32::from(v >> bit & 1) << k;
            k += 1;
        }
    }
    out
}

/// The low bits of `v` spread to the set bits of `mask` (`pdep`).
fn deposit(v: u32, mask: u16) -> u16 {
    let (mut out, mut k) = (0u16, 0);
    for bit in 0..16 {
        if mask & (1 << bit) != 0 {
            out |= ((v >> k & 1) as u16) << bit;
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_mirror_the_redirection_table() {
        let layout = RssLayout {
            reta_size: 128,
            queue_worker: vec![0, 1, 1],
        };
        let owners = Owners::new(Some(&layout), 2);
        for h in [0u32, 1, 2, 3, 127, 128, 200, u32::MAX] {
            let entry = (h & 127) as usize;
            assert_eq!(owners.of(h), layout.queue_worker[entry % 3]);
        }
        let spread = Owners::new(None, 3);
        let mut count = [0; 3];
        for h in 0..SOFTWARE_ENTRIES as u32 {
            count[spread.of(h) as usize] += 1;
        }
        assert!(count.iter().all(|&c| c >= 42), "{count:?}");
        assert!((0..1000).all(|h| Owners::new(None, 1).of(h) == 0));
    }

    fn random_tuple(next: &mut impl FnMut() -> u64, proto: u8) -> Tuple {
        Tuple {
            src: crate::wire::Addr::v4((next() as u32).to_be_bytes()),
            dst: crate::wire::Addr::v4((next() as u32).to_be_bytes()),
            sport: next() as u16,
            dport: next() as u16,
            proto,
            family: 4,
            zone: 0,
        }
    }

    /// The ports computed for a worker are exactly those a scan of the
    /// range finds it owns: for owner tables of several sizes (the
    /// software one, NIC tables of 64 and 512 entries over 3 queues), for
    /// random tuples, both port fields, ranges wide and narrow.
    #[test]
    fn owned_ports_are_exactly_the_owned_ones() {
        let mut next = crate::synth::xorshift(0x5eed);
        let layouts = [
            (None, 2),
            (None, 3),
            (
                Some(RssLayout {
                    reta_size: 64,
                    queue_worker: vec![0, 1, 2],
                }),
                3,
            ),
            (
                Some(RssLayout {
                    reta_size: 512,
                    queue_worker: vec![1, 0, 1, 0],
                }),
                2,
            ),
            (
                Some(RssLayout {
                    reta_size: 8,
                    queue_worker: vec![0],
                }),
                1,
            ),
        ];
        for (layout, workers) in layouts {
            let owners = Arc::new(Owners::new(layout.as_ref(), workers));
            for me in 0..workers as u16 {
                let s = Steering::new(Arc::clone(&owners), HashFields::ALL, me);
                for round in 0..20 {
                    let t = random_tuple(&mut next, if round % 2 == 0 { 6 } else { 17 });
                    let dst = round % 3 == 0;
                    let (lo, hi) = if round % 4 == 0 {
                        (1024, 1100)
                    } else {
                        (1024, 65535)
                    };
                    let start = next() as u16;
                    let with = |p: u16| {
                        let mut u = t;
                        if dst {
                            u.dport = p
                        } else {
                            u.sport = p
                        }
                        u
                    };
                    let mut got: Vec<u16> = s.owned_ports(&t, dst, lo, hi, start).collect();
                    assert!(got.iter().all(|&p| s.owns(&with(p))));
                    got.sort_unstable();
                    let want: Vec<u16> = (lo..=hi).filter(|&p| s.owns(&with(p))).collect();
                    assert_eq!(got, want);
                }
            }
        }
    }

    /// A field that is not hashed cannot steer: no ports are offered.
    #[test]
    fn unhashed_ports_offer_nothing() {
        let owners = Arc::new(Owners::new(None, 2));
        let s = Steering::new(owners, HashFields::NONE, 0);
        let mut next = crate::synth::xorshift(3);
        let t = random_tuple(&mut next, 6);
        assert_eq!(s.owned_ports(&t, true, 1, 65535, 0).count(), 0);
    }
}
