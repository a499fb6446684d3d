//! The connection index against the obvious alternative: ctfwd's
//! signature-bucket index over the connection slab, and a std `HashMap`
//! (hashbrown's SwissTable, keyed by the 40-byte tuple, with a folded-multiply
//! hasher like ctfwd's rather than SipHash) from tuple to slot,
//! with the same slab behind it. Each looks up random tuples of N
//! confirmed connections and reads the connection found, in bursts of 32
//! (ctfwd's index with its bucket and connection prefetches, as the
//! tracker's burst path does). Nanoseconds and cycles per lookup.
//!
//! usage: index-bench [N ...]   (default 1000 100000 1000000 4000000)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use ctfwd::conntrack::{Conn, ConnTable, Key, Tuple};
use ctfwd::dataplane::cpu::{advise_huge_pages, prefetch, tsc, tsc_hz};
use ctfwd::wire::Addr;

const BURST: usize = 32;
const LOOKUPS: usize = 20_000_000;

/// A folded-multiply hasher like the one ctfwd's tuples use, so the map is
/// not measured with SipHash (std's default, built against flooding).
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let p = u128::from(self.0 ^ v) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(v.into());
    }

    fn write_u16(&mut self, v: u16) {
        self.write_u64(v.into());
    }
}

type FastMap = HashMap<Tuple, u32, BuildHasherDefault<FoldHasher>>;

fn tuple(i: u32) -> Tuple {
    Tuple {
        src: Addr::v4([198, 18, (i >> 8) as u8, i as u8]),
        dst: Addr::v4([198, 19, (i >> 24) as u8, 1]),
        sport: (1024 + (i >> 16)) as u16,
        dport: 80,
        proto: 17,
        family: 4,
        zone: 0,
    }
}

fn main() {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 100_000, 1_000_000, 4_000_000]
    } else {
        sizes
    };
    let hz = tsc_hz(Duration::from_millis(200));
    println!(
        "{LOOKUPS} random lookups per case, bursts of {BURST}; TSC {:.0} MHz",
        hz as f64 / 1e6
    );
    for n in sizes {
        let mut table = ConnTable::new(n as usize, true, Some(advise_huge_pages));
        let mut map = FastMap::with_capacity_and_hasher(2 * n as usize, Default::default());
        for i in 0..n {
            let t = tuple(i);
            let tuples = [t, t.swapped()];
            let conn = Conn::with_keys(tuples.map(|t| Key::of(&t)));
            let slot = table.alloc(conn, &tuples).expect("room");
            table.insert(slot).expect("distinct tuples");
            map.insert(t, i);
            map.insert(t.swapped(), i);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(n);
        let keys: Vec<Tuple> = (0..LOOKUPS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = tuple((x % u64::from(n)) as u32);
                if x & (1 << 40) != 0 {
                    t.swapped()
                } else {
                    t
                }
            })
            .collect();

        // ctfwd's index: hash the burst, prefetch buckets, then candidate
        // connections, then look up and read.
        let mut sum = 0u64;
        let (t0, c0) = (Instant::now(), tsc());
        for burst in keys.chunks(BURST) {
            let mut hashes = [0u64; BURST];
            for (h, k) in hashes.iter_mut().zip(burst) {
                *h = table.hash(k);
                prefetch(table.bucket_addr(*h));
            }
            for h in &hashes[..burst.len()] {
                if let Some((_, s)) = table.candidate(*h) {
                    prefetch(table.conn_addr(s));
                }
            }
            for (k, h) in burst.iter().zip(hashes) {
                let (slot, dir) = table.lookup(k, h).expect("present");
                sum += table.tuple(slot, dir).sport as u64;
            }
        }
        let ours = (t0.elapsed(), tsc() - c0);

        // HashMap from tuple to slot, then the slab read.
        let mut sum2 = 0u64;
        let conns: Vec<Tuple> = (0..n).map(tuple).collect();
        let (t0, c0) = (Instant::now(), tsc());
        for k in &keys {
            let i = *map.get(k).expect("present");
            sum2 += conns[i as usize].sport as u64;
        }
        let theirs = (t0.elapsed(), tsc() - c0);
        std::hint::black_box((sum, sum2));
        let per = |(d, c): (Duration, u64)| {
            (
                d.as_nanos() as f64 / LOOKUPS as f64,
                c as f64 / LOOKUPS as f64,
            )
        };
        let (a, b) = (per(ours), per(theirs));
        println!(
            "{n:>8} conns: ctfwd index {:>6.1} ns {:>6.1} cycles   HashMap {:>6.1} ns {:>6.1} cycles   index memory {} vs {} bytes/conn",
            a.0,
            a.1,
            b.0,
            b.1,
            (table.memory() - n as usize * std::mem::size_of::<Conn>()) / n as usize,
            map.capacity() * (std::mem::size_of::<(Tuple, u32)>() + 1) / n as usize,
        );
    }
}
