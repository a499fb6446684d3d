//! What this machine charges for random memory reads, the floor under any
//! lookup in a large connection table: random reads of one 64-byte line
//! from a 32 MiB array, and of one line from it plus one from a 192 MiB
//! array (a bucket and a connection), with and without burst prefetching
//! (32 at a time, as the tracker does), on huge-page-advised memory.
//!
//! usage: mem-floor

use ctfwd::conntrack::Region;
use ctfwd::dataplane::cpu::{advise_huge_pages, prefetch, tsc, tsc_hz};

const READS: usize = 10_000_000;
const BURST: usize = 32;

fn main() {
    let hz = tsc_hz(std::time::Duration::from_millis(200));
    println!(
        "TSC {:.0} MHz; {READS} random reads per case",
        hz as f64 / 1e6
    );
    let n = 1usize << 20;
    let mut buckets: Vec<[u64; 8]> = Vec::with_capacity(n / 2);
    advise_huge_pages(Region::of(buckets.spare_capacity_mut()));
    buckets.resize(n / 2, [1; 8]);
    let mut conns: Vec<[u64; 24]> = Vec::with_capacity(n);
    advise_huge_pages(Region::of(conns.spare_capacity_mut()));
    conns.resize(n, [1; 24]);
    let mut next = ctfwd::synth::xorshift(0x2545_F491_4F6C_DD1D);
    let keys: Vec<usize> = (0..READS).map(|_| next() as usize).collect();
    for lines in [1, 2] {
        for prefetching in [false, true] {
            let mut sum = 0u64;
            let t0 = tsc();
            for burst in keys.chunks(BURST) {
                if prefetching {
                    for k in burst {
                        prefetch(buckets.as_ptr().wrapping_add(k % (n / 2)).cast());
                        if lines == 2 {
                            prefetch(conns.as_ptr().wrapping_add((k >> 20) % n).cast());
                        }
                    }
                }
                for k in burst {
                    sum += buckets[k % (n / 2)][0];
                    if lines == 2 {
                        sum += conns[(k >> 20) % n][0];
                    }
                }
            }
            let cycles = (tsc() - t0) as f64 / READS as f64;
            std::hint::black_box(sum);
            println!(
                "{lines} random line(s) per item{}: {cycles:.1} cycles/item",
                if prefetching {
                    ", prefetched per burst"
                } else {
                    ""
                }
            );
        }
    }
}
