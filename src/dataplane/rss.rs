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

use crate::conntrack::Tuple;
use crate::wire::{PROTO_TCP, PROTO_UDP};
use dpdk_sys::consts::{RTE_ETH_RSS_TCP, RTE_ETH_RSS_UDP};

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
    fn half(&self, v: u16) -> u32 {
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
        let ports = match t.proto {
            PROTO_TCP => fields.tcp,
            PROTO_UDP => fields.udp,
            _ => false,
        };
        if ports {
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
    /// The fields a NIC hashes with RSS types `rss_hf`.
    pub fn of_rss(rss_hf: u64) -> HashFields {
        HashFields {
            tcp: rss_hf & RTE_ETH_RSS_TCP != 0,
            udp: rss_hf & RTE_ETH_RSS_UDP != 0,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::xorshift;
    use crate::wire::Addr;

    /// DPDK's own software Toeplitz over the same input, as 32-bit words
    /// in host order (what `rte_softrss` takes).
    fn softrss(input: &[u8], key: &[u8]) -> u32 {
        let mut words: Vec<u32> = input
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("whole words")))
            .collect();
        // SAFETY: words holds input_len words; the key has 40 bytes, enough
        // for 36 bytes of input (rte_softrss reads len * 4 + 4 key bytes).
        unsafe { dpdk_sys::rte_softrss(words.as_mut_ptr(), words.len() as u32, key.as_ptr()) }
    }

    /// The hash of an even number of bytes in network order.
    fn hash_bytes(t: &SymmetricToeplitz, input: &[u8]) -> u32 {
        input
            .chunks(2)
            .fold(0, |h, p| h ^ t.half(u16::from_be_bytes([p[0], p[1]])))
    }

    fn tuple(next: &mut impl FnMut() -> u64, v6: bool, proto: u8) -> Tuple {
        let addr = |n: &mut dyn FnMut() -> u64| {
            if v6 {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(&n().to_be_bytes());
                o[8..].copy_from_slice(&n().to_be_bytes());
                Addr::v6(o)
            } else {
                Addr::v4((n() as u32).to_be_bytes())
            }
        };
        Tuple {
            src: addr(next),
            dst: addr(next),
            sport: next() as u16,
            dport: next() as u16,
            proto,
            family: if v6 { 6 } else { 4 },
            zone: 0,
        }
    }

    #[test]
    fn matches_rte_softrss_on_random_inputs() {
        let key = symmetric_key(40);
        let toeplitz = SymmetricToeplitz::default();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        // Every input size the NIC hashes: IPv4 2- and 4-tuples (8, 12
        // bytes), IPv6 ones (32, 36).
        for len in [8usize, 12, 32, 36] {
            for _ in 0..2000 {
                let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                assert_eq!(
                    hash_bytes(&toeplitz, &input),
                    softrss(&input, &key),
                    "{input:02x?}"
                );
            }
        }
    }

    #[test]
    fn tuple_hash_is_the_nics_and_symmetric() {
        let key = symmetric_key(40);
        let toeplitz = SymmetricToeplitz::default();
        let mut next = xorshift(7);
        for (v6, proto) in [(false, 6), (false, 17), (false, 1), (true, 6), (true, 17)] {
            for _ in 0..500 {
                let t = tuple(&mut next, v6, proto);
                let h = toeplitz.hash_tuple(&t, HashFields::ALL);
                assert_eq!(h, toeplitz.hash_tuple(&t.swapped(), HashFields::ALL));
                let alen = if v6 { 16 } else { 4 };
                let mut input = Vec::new();
                input.extend_from_slice(&t.src.octets()[16 - alen..]);
                input.extend_from_slice(&t.dst.octets()[16 - alen..]);
                if proto != 1 {
                    input.extend_from_slice(&t.sport.to_be_bytes());
                    input.extend_from_slice(&t.dport.to_be_bytes());
                }
                assert_eq!(h, softrss(&input, &key));
                // Addresses only, when the NIC hashes no ports.
                let none = HashFields {
                    tcp: false,
                    udp: false,
                };
                assert_eq!(
                    toeplitz.hash_tuple(&t, none),
                    softrss(&input[..2 * alen], &key)
                );
            }
        }
    }

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
}
