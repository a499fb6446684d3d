//! The connection table of one shard: a slab of connections allocated once,
//! and an index from tuple to (connection, direction).
//!
//! A connection whose reply tuple is its original swapped (every one not
//! translated, but for ICMP queries, whose reply changes the type) has one
//! index entry, found from either direction, as in OVS's userspace
//! conntrack: the index's hash is the same for a tuple and its swapped
//! twin (`Tuple::hash_either_way`), and the entry records which way the
//! original's ends sort, so a lookup knows from the packet's tuple which
//! of the connection's two to compare. A translated connection has an
//! entry for each direction, as Linux's `tuplehash` pair. A new connection
//! thus costs one insert, not two, and its reply tuple's bucket is the one
//! its lookup already read.
//!
//! The index is an array of 64-byte buckets, each holding eight
//! 16-bit hash signatures and eight 32-bit entries (slot and direction), as
//! DPDK's `rte_hash` does: a probe reads one cache line, compares the eight
//! signatures at once, and touches a connection only on a signature match.
//! A full bucket spills into the next one; each bucket counts the entries
//! that spilled past it, so a lookup stops at the first bucket with a zero
//! count and deletion never needs tombstones. Buckets are sized for at most
//! six live entries of eight on average with two entries for each of `max`
//! connections (all translated), so that spills stay rare in the worst
//! case; with none translated the index is three-eighths full. The count
//! is exactly that, not rounded up to a power of two (`home` maps a hash
//! onto it with a multiply): 21 bytes a connection.
//!
//! Measured against a SwissTable map from tuple to slot (std's HashMap, with
//! a hasher as fast as ours) by `perf/src/bin/index-bench.rs`, random
//! lookups plus the read of the connection, one core of this 2.6 GHz VM:
//! in cache (1k connections) the map is a little faster (34 against 40
//! cycles); at 1M connections this index with burst prefetching takes 146
//! cycles against 328, at 4M 177 against 517, and it needs 42 bytes per
//! connection against 179, because the map keeps both 40-byte tuples as
//! keys while this index keeps 2-byte signatures and compares in the slab.
//! Chained hashing (Linux's hlist) costs a dependent miss per chain link,
//! and cuckoo hashing two buckets to prefetch per packet; those were not
//! built to be measured.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use super::conn::{Conn, Status};
use super::records::Records;
use super::tuple::{Dir, HashKey, Key, Tuple};
use crate::wire::Addr;

const WAYS: usize = 8;
const EMPTY: u32 = u32::MAX;
/// An entry for the reply direction only (a translated connection's); in
/// a `BOTH_BIT` entry, that the original tuple's ends are in descending
/// order (`descending`).
const REPLY_BIT: u32 = 1 << 31;
/// The one entry of a connection found from both directions.
const BOTH_BIT: u32 = 1 << 30;
const SLOT_MASK: u32 = BOTH_BIT - 1;
/// An IPv6 connection's addresses as words (`Addr::words`): the
/// original's source and destination, then the reply's. Plain words, so
/// that their array is allocated zeroed and a page of it is faulted in
/// only when an IPv6 connection first lands on it.
type Ends = [u64; 8];

/// Buckets Linux's early drop scans (`NF_CT_EVICTION_RANGE`).
const EVICTION_RANGE: usize = 8;

/// What the index needs to insert a connection (`ConnTable::keys`): its
/// two tuples' hashes, whether it takes one entry for both (its reply is
/// its original swapped, `one_entry`), and then whether its original's
/// ends sort `descending`: all worked out from the tuples while they are
/// at hand, so that confirming needs only the connection's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexKeys {
    pub hashes: [u64; 2],
    pub one: bool,
    pub descending: bool,
}

/// One cache line of the index.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct Bucket {
    /// The eight 16-bit signatures, way `i`'s at `i`: one 128-bit vector
    /// for `matches`.
    sig: [u16; WAYS],
    entry: [u32; WAYS],
    /// Entries whose probe passed this bucket because it was full.
    overflow: u32,
}

const EMPTY_BUCKET: Bucket = Bucket {
    sig: [0; WAYS],
    entry: [EMPTY; WAYS],
    overflow: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum SlotKind {
    Free = 0,
    Unconfirmed = 1,
    Confirmed = 2,
}

/// A slot's kind (the low two bits) and generation (the other 14), in 16
/// bits. The generation is bumped each time the slot is freed, so that a
/// stale handle to an unconfirmed connection can be told; such a handle
/// lives for one burst, in which a slot is freed at most twice a packet
/// (bursts hold at most 512), so 14 bits do not wrap meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotMeta(u16);

impl SlotMeta {
    /// A slot never used.
    const FRESH: SlotMeta = SlotMeta(0);

    #[inline]
    fn kind(self) -> SlotKind {
        match self.0 & 3 {
            0 => SlotKind::Free,
            1 => SlotKind::Unconfirmed,
            _ => SlotKind::Confirmed,
        }
    }

    fn generation(self) -> u16 {
        self.0 >> 2
    }

    /// The same generation, of kind `k`.
    #[inline]
    fn with(self, k: SlotKind) -> SlotMeta {
        SlotMeta(self.0 & !3 | k as u16)
    }

    /// Free, of the next generation.
    fn freed(self) -> SlotMeta {
        SlotMeta((self.0 & !3).wrapping_add(4))
    }
}

/// Where a connection lives; valid while the connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub(crate) u32);

/// What one `ConnTable::gc` call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Timed out.
    pub expired: usize,
    /// Evicted to keep the table under 95% full.
    pub evicted: usize,
}

/// Whether a connection takes one index entry: its reply tuple is its
/// original swapped, so both hash alike (`Tuple::hash_either_way`). The
/// tuples do not change once confirmed, so this is the same from insert
/// to delete.
fn one_entry([orig, reply]: &[Tuple; 2]) -> bool {
    *reply == orig.swapped()
}

/// The one entry of such a connection in slot `s`: `BOTH_BIT`, and
/// `REPLY_BIT` if its original's ends sort `descending`.
fn both_entry(s: Slot, descending: bool) -> u32 {
    s.0 | BOTH_BIT | if descending { REPLY_BIT } else { 0 }
}

/// Whether the tuple's source end (address, then port) sorts after its
/// destination end; of a tuple and its swapped twin exactly one is, unless
/// both ends are equal (and so are the tuples). Each address is compared
/// as one 128-bit number (a compare and a subtract-with-borrow), and
/// bitwise `&` and `|` join the port's tie-break, so that no branch
/// depends on the direction; comparing the 64-bit halves in turn took
/// twice the instructions. An IPv4 end, 32 bits of address above 16 of
/// port, is one 48-bit number, and one compare orders it: 4 instructions
/// fewer a lookup than the 128-bit compares (`ct-bench` under callgrind),
/// behind a branch on the family that goes one way for nearly every
/// packet.
#[inline]
fn descending(t: &Tuple) -> bool {
    if t.family == 4 {
        let end = |a: Addr, port: u16| a.words()[1] << 16 | u64::from(port);
        return end(t.src, t.sport) > end(t.dst, t.dport);
    }
    let wide = |w: [u64; 2]| u128::from(w[0]) << 64 | u128::from(w[1]);
    let (s, d) = (wide(t.src.words()), wide(t.dst.words()));
    (s > d) | ((s == d) & (t.sport > t.dport))
}

/// A connection early drop may take although it has not timed out
/// (`gc_worker_can_early_drop`): one never ASSURED (no reply, or a
/// handshake that did not finish), or a TCP connection already closing.
fn evictable(c: &Conn) -> bool {
    !c.status.has(Status::ASSURED) || c.tcp().is_some_and(|t| t.can_early_drop())
}

pub struct ConnTable {
    key: HashKey,
    max: usize,
    buckets: Vec<Bucket>,
    /// Slots in use so far; reserved for `max` at construction and grown by
    /// `push` into that reservation, so no allocation ever happens later and
    /// pages of a large table are only touched once used.
    conns: Vec<Conn>,
    /// The addresses of the IPv6 connections, which their keys cut, by
    /// slot: a lookup finds them without reading anything else first, and
    /// they can be prefetched with the connection (`candidate`). A
    /// slot's stay while it is free, as its connection does. Never
    /// prefaulted: a page is faulted in when an IPv6 connection first
    /// takes one of its slots (64 slots a 4 KiB page, 32,768 a 2 MiB one
    /// where `advise` asks for huge pages), so IPv4 connections cost
    /// nothing here.
    /// Each slot's on a line of its own (`Records`).
    v6: Records<8>,
    /// Slots below which IPv6 addresses were ever written (what `memory`
    /// counts of `v6`).
    v6_high: usize,
    meta: Vec<SlotMeta>,
    free: Vec<u32>,
    gc_cursor: usize,
    confirmed: usize,
    /// The farthest any entry was ever placed from its home bucket. With
    /// the ring wrapping, every bucket can have a non-zero overflow count
    /// at once (seen in a two-bucket table), so the overflow counts alone
    /// cannot end a probe for an absent key; this bound does.
    max_displacement: usize,
}

/// Memory reserved and not yet written, lent for the duration of a call:
/// only an exclusive borrow of a vector's spare capacity, or of a slice
/// allocated zeroed and not written since, makes one, so whoever receives
/// it (`Config::advise_memory`) knows the bytes are one live allocation
/// that nobody reads meanwhile.
pub struct Region<'a> {
    start: usize,
    len: usize,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Region<'a> {
    pub fn of<T>(spare: &'a mut [MaybeUninit<T>]) -> Region<'a> {
        Region {
            start: spare.as_ptr() as usize,
            len: std::mem::size_of_val(spare),
            _borrow: PhantomData,
        }
    }

    /// A slice of plain words just allocated zeroed (`vec![[0; N]; n]`,
    /// which large allocations map from the kernel's zero pages).
    pub(super) fn of_zeroed(words: &'a mut [u64]) -> Region<'a> {
        Region {
            start: words.as_ptr() as usize,
            len: std::mem::size_of_val(words),
            _borrow: PhantomData,
        }
    }

    /// The first byte's address.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> usize {
        self.len
    }
}

/// Writes `blank` once per page of `v`'s spare capacity, so the kernel
/// maps those pages now rather than on the packet path. The writes go to
/// uninitialised (`MaybeUninit`) memory: `v`'s length does not change.
fn prefault_spare<T: Copy>(v: &mut Vec<T>, blank: T) {
    let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for slot in v.spare_capacity_mut().iter_mut().step_by(per_page) {
        slot.write(blank);
    }
}

impl ConnTable {
    /// A table for at most `max` connections; all memory is allocated here.
    /// With `prefault`, every page of the connection slab is touched now, so
    /// the first connections do not pay the kernel's page faults on the
    /// packet path.
    /// `advise` is called on the bucket array and the slab once reserved and
    /// before they are written (see `Config::advise_memory`).
    pub fn new(max: usize, prefault: bool, advise: Option<fn(Region<'_>)>) -> ConnTable {
        // The last slot number is left unused: with both bits it would
        // spell `EMPTY`.
        let max = max.clamp(1, SLOT_MASK as usize - 1);
        let buckets = (2 * max).div_ceil(6);
        let mut bucket_vec: Vec<Bucket> = Vec::with_capacity(buckets);
        let mut conns: Vec<Conn> = Vec::with_capacity(max);
        if let Some(advise) = advise {
            advise(Region::of(bucket_vec.spare_capacity_mut()));
            advise(Region::of(conns.spare_capacity_mut()));
        }
        bucket_vec.resize(buckets, EMPTY_BUCKET);
        let v6 = Records::zeroed(max, advise);
        let mut meta = Vec::with_capacity(max);
        let mut free = Vec::with_capacity(max);
        if prefault {
            prefault_spare(&mut conns, Conn::BLANK);
            prefault_spare(&mut meta, SlotMeta::FRESH);
            prefault_spare(&mut free, 0);
        }
        ConnTable {
            key: HashKey::random(),
            max,
            buckets: bucket_vec,
            conns,
            v6,
            v6_high: 0,
            meta,
            free,
            gc_cursor: 0,
            confirmed: 0,
            max_displacement: 0,
        }
    }

    /// Connections it can hold (`max`).
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Connections in the table (confirmed).
    pub fn len(&self) -> usize {
        self.confirmed
    }

    pub fn is_empty(&self) -> bool {
        self.confirmed == 0
    }

    /// Connections allocated, confirmed or not.
    pub fn in_use(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Bytes of memory the table holds: the index, the slots, and the
    /// addresses of the IPv6 connections (at most: the pages of their
    /// array below the highest slot one took).
    pub fn memory(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
            + self.max * (std::mem::size_of::<Conn>() + std::mem::size_of::<SlotMeta>() + 4)
            + self.v6_high * std::mem::size_of::<Ends>()
    }

    /// The index's hash of `t`: the same for `t` and `t.swapped()`.
    #[inline]
    pub fn hash(&self, t: &Tuple) -> u64 {
        t.hash_either_way(&self.key)
    }

    /// What inserting a connection of `tuples` into the index needs,
    /// given its original tuple's hash: the reply's is the same when the
    /// connection takes one entry, so that it is not computed twice.
    #[inline]
    pub fn keys(&self, tuples: &[Tuple; 2], orig_hash: u64) -> IndexKeys {
        let one = one_entry(tuples);
        let reply = if one {
            orig_hash
        } else {
            self.hash(&tuples[1])
        };
        IndexKeys {
            hashes: [orig_hash, reply],
            one,
            descending: one && descending(&tuples[0]),
        }
    }

    /// The bucket `hash` belongs to: the high half of `hash` times the
    /// bucket count (Lemire's multiply-shift range reduction), so that the
    /// count need not be a power of two. Rounded up to one, the index took
    /// 32-34 bytes a connection instead of 21.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// The bucket after `b`, round the ring.
    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// The signature: the hash's low bits, as `home` takes its high ones.
    #[inline]
    fn sig(hash: u64) -> u16 {
        hash as u16
    }

    /// The bucket a lookup of `hash` reads first (for prefetching).
    #[inline]
    pub fn bucket_addr(&self, hash: u64) -> *const u8 {
        (&self.buckets[self.home(hash)] as *const Bucket).cast()
    }

    /// The connection a lookup of `hash` will most likely compare (the first
    /// signature match in its home bucket), for prefetching: its way in
    /// the bucket, which `lookup_at` takes as a hint, and its slot.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<(usize, Slot)> {
        let b = &self.buckets[self.home(hash)];
        let m = Self::matches(b, Self::sig(hash));
        if m == 0 {
            return None;
        }
        let way = m.trailing_zeros() as usize;
        let e = b.entry[way];
        (e != EMPTY).then_some((way, Slot(e & SLOT_MASK)))
    }

    /// Where the connection in slot `s` is (for prefetching).
    #[inline]
    pub fn conn_addr(&self, s: Slot) -> *const u8 {
        let c: *const Conn = &self.conns[s.0 as usize];
        c.cast()
    }

    /// Where the IPv6 addresses of slot `s` are (for prefetching).
    #[inline]
    pub fn v6_addr(&self, s: Slot) -> *const u8 {
        self.v6.addr(s.0 as usize)
    }

    /// Bit i set where signature i equals `sig`: one 128-bit compare of the
    /// eight lanes, narrowed to a bit each (the `wide` crate: SSE2 here,
    /// which every x86-64 has; NEON or plain integers elsewhere). The SWAR
    /// form before it (the signatures four to a 64-bit word, XORed with
    /// `sig` in four lanes, a carry trick to find zero lanes, a multiply to
    /// gather their top bits) took 34 more instructions a packet in the
    /// worker (ten-pass profile, 813.5 against 779.6): the connection
    /// prefetch compares one bucket's signatures for every packet, and a
    /// lookup that misses its hint more.
    #[inline]
    fn matches(b: &Bucket, sig: u16) -> u32 {
        use wide::u16x8;
        u16x8::new(b.sig).simd_eq(u16x8::splat(sig)).to_bitmask()
    }

    /// Sets way `i`'s signature.
    #[inline]
    fn set_sig(b: &mut Bucket, i: usize, sig: u16) {
        b.sig[i] = sig;
    }

    /// Finds the connection with tuple `t` (of hash `hash`) in either direction.
    #[inline]
    pub fn lookup(&self, t: &Tuple, hash: u64) -> Option<(Slot, Dir)> {
        let key = Key::of(t);
        // The closure is forced inline: in the data plane's build the
        // compiler left it out of line, a call per candidate.
        self.probe(
            hash,
            #[inline(always)]
            |e, slot| self.holds(e, slot, &key, t),
        )
        .map(|(slot, dir)| (Slot(slot), dir))
    }

    /// `lookup`, first trying way `hint` of the home bucket, where
    /// `candidate` found the likely connection while prefetching it (as
    /// `rte_hash`'s bulk lookup compares signatures in one pass and keys in
    /// the next): a hit there skips the signature comparison. The entry is
    /// read afresh, so a hint that went stale meanwhile (an entry removed
    /// or another added since) costs only the full lookup: any entry whose
    /// tuple is `t` is the one connection that has it.
    #[inline(always)]
    pub fn lookup_at(&self, t: &Tuple, hash: u64, hint: Option<usize>) -> Option<(Slot, Dir)> {
        if let Some(way) = hint {
            let e = self.buckets[self.home(hash)].entry[way % WAYS];
            if e != EMPTY {
                let slot = e & SLOT_MASK;
                if let Some(dir) = self.holds(e, slot, &Key::of(t), t) {
                    return Some((Slot(slot), dir));
                }
            }
        }
        // A stale hint works the key out again in `lookup`. Passing it on
        // (a lookup taking the key) saved that on the rare miss but cost
        // the worker 16 instructions an established packet, in how the
        // compiler then allocated registers over the inlined stages.
        self.lookup(t, hash)
    }

    /// The direction in which entry `e`, of the connection in `slot`,
    /// holds `t` (whose key is `key`), if it does.
    #[inline(always)]
    fn holds(&self, e: u32, slot: u32, key: &Key, t: &Tuple) -> Option<Dir> {
        let dir = match e & (REPLY_BIT | BOTH_BIT) {
            0 => 0,
            REPLY_BIT => 1,
            // One entry for both: the packet is in the original's
            // orientation when its ends are ordered as the original's are
            // (computed without a branch: the direction is as random as
            // the traffic).
            flags => usize::from(descending(t) != (flags & REPLY_BIT != 0)),
        };
        // The direction stays an index until the end: as a `Dir` chosen
        // by `if` before the comparison, the compiler branched on it, a
        // mispredict every other packet.
        self.has(slot, dir, key, t)
            .then_some(if dir == 0 { Dir::Original } else { Dir::Reply })
    }

    /// Whether the connection in `slot` has tuple `t` (of key `key`) in
    /// direction `dir` (0 or 1): its key is `t`'s and, for IPv6, so are
    /// its addresses.
    #[inline(always)]
    fn has(&self, slot: u32, dir: usize, key: &Key, t: &Tuple) -> bool {
        self.conns[slot as usize].key(dir) == *key
            && (!key.is_v6() || self.v6_has(Slot(slot), dir, t))
    }

    /// Whether the IPv6 connection in slot `s` has `t`'s addresses in
    /// direction `dir`. Out of line and given `t` by reference, so that
    /// an IPv4 lookup carries nothing of it but a test of the key's
    /// family (with the addresses passed by value, the compiler loaded
    /// them before that test: 15 instructions a packet).
    #[inline(never)]
    fn v6_has(&self, s: Slot, dir: usize, t: &Tuple) -> bool {
        self.v6_addrs(s, dir) == [t.src, t.dst]
    }

    /// The addresses of an IPv6 connection's tuple of direction `dir`.
    fn v6_addrs(&self, s: Slot, dir: usize) -> [Addr; 2] {
        let w = &self.v6.at(s.0 as usize)[4 * (dir & 1)..];
        [
            Addr::from_words([w[0], w[1]]),
            Addr::from_words([w[2], w[3]]),
        ]
    }

    /// The tuple of direction `d` of the connection in slot `s`.
    #[inline]
    pub fn tuple(&self, s: Slot, d: Dir) -> Tuple {
        let key = self.conns[s.0 as usize].key(d.index());
        if key.is_v6() {
            return self.v6_tuple(s, d);
        }
        key.tuple_v4()
    }

    /// `tuple`, of an IPv6 connection: out of line, as `v6_has`.
    #[inline(never)]
    fn v6_tuple(&self, s: Slot, d: Dir) -> Tuple {
        let key = self.conns[s.0 as usize].key(d.index());
        key.tuple_with(self.v6_addrs(s, d.index()))
    }

    /// Both tuples of the connection in slot `s`.
    pub fn tuples(&self, s: Slot) -> [Tuple; 2] {
        [self.tuple(s, Dir::Original), self.tuple(s, Dir::Reply)]
    }

    /// Whether the connection in slot `s` has tuple `t` in direction `d`.
    #[inline]
    pub fn has_tuple(&self, s: Slot, d: Dir, t: &Tuple) -> bool {
        self.has(s.0, d.index(), &Key::of(t), t)
    }

    /// Gives an unconfirmed connection a new reply tuple (NAT's choice).
    pub fn set_reply(&mut self, s: Slot, reply: &Tuple) {
        debug_assert!(self.is_unconfirmed(s));
        self.conns[s.0 as usize].set_key(1, Key::of(reply));
        if reply.family == 6 {
            let [s0, s1] = reply.src.words();
            let [d0, d1] = reply.dst.words();
            self.v6.at_mut(s.0 as usize)[4..].copy_from_slice(&[s0, s1, d0, d1]);
        }
    }

    /// The connection that already holds the original tuple of the
    /// connection in slot `s` or its swapped twin (its reply), both of
    /// hash `hash`: the clash check of a connection taking one entry, in
    /// one walk of the bucket chain where a lookup of each tuple would walk
    /// it twice. An entry's tuple is the original's unless the entry is a
    /// reply entry; for a one-entry connection comparing its original with
    /// both is enough, since its reply is the original swapped.
    #[inline]
    fn holder_of_either(&self, s: Slot, hash: u64) -> Option<Slot> {
        let keys = self.conns[s.0 as usize].keys();
        // Whether `slot` has in direction `held` what `s` has in `dir`.
        let same = |slot: u32, held: usize, dir: usize| {
            self.conns[slot as usize].key(held) == keys[dir]
                && (!keys[dir].is_v6() || self.v6_addrs(Slot(slot), held) == self.v6_addrs(s, dir))
        };
        self.probe(
            hash,
            #[inline(always)]
            |e, slot| {
                let held = usize::from(e & (REPLY_BIT | BOTH_BIT) == REPLY_BIT);
                (same(slot, held, 0) || same(slot, held, 1)).then_some(())
            },
        )
        .map(|(slot, ())| Slot(slot))
    }

    /// Walks the bucket chain of `hash` and returns the first entry whose
    /// signature matches and for which `hit` (given the entry and its
    /// slot) says yes, with its slot.
    #[inline(always)]
    fn probe<R>(&self, hash: u64, mut hit: impl FnMut(u32, u32) -> Option<R>) -> Option<(u32, R)> {
        let sig = Self::sig(hash);
        let mut b = self.home(hash);
        let mut probed = 0;
        loop {
            let bucket = &self.buckets[b];
            let mut m = Self::matches(bucket, sig);
            while m != 0 {
                let e = bucket.entry[m.trailing_zeros() as usize];
                m &= m - 1;
                if e == EMPTY {
                    continue;
                }
                let slot = e & SLOT_MASK;
                if let Some(r) = hit(e, slot) {
                    return Some((slot, r));
                }
            }
            if bucket.overflow == 0 || probed == self.max_displacement {
                return None;
            }
            probed += 1;
            b = self.next(b);
        }
    }

    /// Takes a free slot for a new, unconfirmed connection `conn`, whose
    /// keys are those of `tuples` (an IPv6 connection's addresses are kept
    /// beside it). In line, so that the caller builds the connection in
    /// its slot: as a call it was built on the stack and copied over with
    /// `memcpy` (41 instructions and 6% of a new connection's cycles in
    /// `ct-bench`).
    #[inline(always)]
    pub fn alloc(&mut self, conn: Conn, tuples: &[Tuple; 2]) -> Option<Slot> {
        debug_assert_eq!(conn.keys(), tuples.map(|t| Key::of(&t)));
        let s = if let Some(s) = self.free.pop() {
            self.conns[s as usize] = conn;
            let m = &mut self.meta[s as usize];
            *m = m.with(SlotKind::Unconfirmed);
            Slot(s)
        } else {
            if self.conns.len() == self.max {
                return None;
            }
            // Within the reserved capacity: no reallocation.
            self.conns.push(conn);
            self.meta.push(SlotMeta::FRESH.with(SlotKind::Unconfirmed));
            Slot((self.conns.len() - 1) as u32)
        };
        if conn.key(0).is_v6() {
            let [o, r] = tuples;
            let w = [o.src, o.dst, r.src, r.dst].map(|a| a.words());
            *self.v6.at_mut(s.0 as usize) = std::array::from_fn(|i| w[i / 2][i % 2]);
            self.v6_high = self.v6_high.max(s.0 as usize + 1);
        }
        Some(s)
    }

    pub fn get(&self, s: Slot) -> &Conn {
        &self.conns[s.0 as usize]
    }

    pub fn get_mut(&mut self, s: Slot) -> &mut Conn {
        &mut self.conns[s.0 as usize]
    }

    pub fn generation(&self, s: Slot) -> u16 {
        self.meta[s.0 as usize].generation()
    }

    /// Whether the slot holds a connection (a freed slot keeps its stale
    /// data, status bits and id included).
    pub fn is_live(&self, s: Slot) -> bool {
        self.meta
            .get(s.0 as usize)
            .is_some_and(|m| m.kind() != SlotKind::Free)
    }

    pub fn is_unconfirmed(&self, s: Slot) -> bool {
        self.meta[s.0 as usize].kind() == SlotKind::Unconfirmed
    }

    /// Inserts both directions of an unconfirmed connection (one entry or
    /// two, see the module's notes) and sets CONFIRMED (the table half of
    /// `__nf_conntrack_confirm`), unless either tuple is already in the
    /// table: then it returns the connection that holds it and inserts
    /// nothing. Each tuple is hashed once.
    pub fn insert(&mut self, s: Slot) -> Result<(), Slot> {
        let tuples = self.tuples(s);
        let keys = self.keys(&tuples, self.hash(&tuples[0]));
        self.insert_keyed(s, keys)
    }

    /// `insert` with the keys worked out when the connection was made
    /// (`keys`, again if its reply tuple changed since).
    #[inline(always)]
    pub fn insert_keyed(&mut self, s: Slot, keys: IndexKeys) -> Result<(), Slot> {
        debug_assert!(self.is_unconfirmed(s));
        debug_assert_eq!(keys, {
            let tuples = self.tuples(s);
            self.keys(&tuples, self.hash(&tuples[0]))
        });
        let hashes = keys.hashes;
        // The one entry, if the connection takes one.
        let both = keys.one.then(|| both_entry(s, keys.descending));
        let clash = match both {
            Some(_) => self.holder_of_either(s, hashes[0]),
            None => self
                .tuples(s)
                .iter()
                .zip(hashes)
                .find_map(|(t, h)| self.lookup(t, h).map(|(other, _)| other)),
        };
        if let Some(other) = clash {
            return Err(other);
        }
        match both {
            Some(entry) => self.insert_entry(hashes[0], entry),
            None => {
                self.insert_entry(hashes[0], s.0);
                self.insert_entry(hashes[1], s.0 | REPLY_BIT);
            }
        }
        let m = &mut self.meta[s.0 as usize];
        *m = m.with(SlotKind::Confirmed);
        self.conns[s.0 as usize].status.set(Status::CONFIRMED);
        self.confirmed += 1;
        Ok(())
    }

    #[inline(always)]
    fn insert_entry(&mut self, hash: u64, entry: u32) {
        let mut b = self.home(hash);
        let mut displacement = 0;
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.entry.iter().position(|&e| e == EMPTY) {
                bucket.entry[i] = entry;
                Self::set_sig(bucket, i, Self::sig(hash));
                self.max_displacement = self.max_displacement.max(displacement);
                return;
            }
            // Sizing keeps the index at most 75% full, so a free entry is
            // always found within a few buckets.
            bucket.overflow += 1;
            displacement += 1;
            b = self.next(b);
        }
    }

    fn remove_entry(&mut self, hash: u64, entry: u32) {
        let home = self.home(hash);
        let mut b = home;
        loop {
            if let Some(i) = self.buckets[b].entry.iter().position(|&e| e == entry) {
                self.buckets[b].entry[i] = EMPTY;
                Self::set_sig(&mut self.buckets[b], i, 0);
                let mut p = home;
                while p != b {
                    self.buckets[p].overflow -= 1;
                    p = self.next(p);
                }
                return;
            }
            b = self.next(b);
            assert!(b != home, "conntrack index lost an entry");
        }
    }

    /// Removes a connection, confirmed or not, and frees its slot.
    pub fn delete(&mut self, s: Slot) {
        let i = s.0 as usize;
        match self.meta[i].kind() {
            SlotKind::Free => return,
            SlotKind::Confirmed => {
                let tuples = self.tuples(s);
                if one_entry(&tuples) {
                    let entry = both_entry(s, descending(&tuples[0]));
                    self.remove_entry(self.hash(&tuples[0]), entry);
                } else {
                    self.remove_entry(self.hash(&tuples[0]), s.0);
                    self.remove_entry(self.hash(&tuples[1]), s.0 | REPLY_BIT);
                }
                self.confirmed -= 1;
            }
            SlotKind::Unconfirmed => {}
        }
        self.meta[i] = self.meta[i].freed();
        self.free.push(s.0);
    }

    /// Walks up to `budget` slots round-robin (Linux's incremental
    /// `gc_worker`; bounded work per call, no full scan on the packet
    /// path) and removes what it finds expired. Past 95% of `max` it also
    /// removes what early drop would take (`gc_worker_can_early_drop`
    /// above `nf_conntrack_max95`): under a flood of connections that never
    /// finish, room is made before the table is full, so a new connection
    /// seldom has to evict on the packet path and established ones, which
    /// are ASSURED, are never touched. `on_delete` sees each connection,
    /// its slot and its tuples, before it goes.
    pub fn gc(
        &mut self,
        now: u64,
        budget: usize,
        mut on_delete: impl FnMut(Slot, &Conn, &[Tuple; 2]),
    ) -> Swept {
        let mut swept = Swept::default();
        if self.conns.is_empty() {
            return swept;
        }
        let max95 = self.max / 100 * 95;
        for _ in 0..budget.min(self.conns.len()) {
            let i = self.gc_cursor;
            // A compare, not `%`: a division a slot walked, on the
            // cursor's dependency chain, every burst.
            self.gc_cursor = if i + 1 == self.conns.len() { 0 } else { i + 1 };
            if self.meta[i].kind() != SlotKind::Confirmed {
                continue;
            }
            let c = &self.conns[i];
            if c.deadline.passed(now) {
                swept.expired += 1;
            } else if max95 > 0 && self.in_use() >= max95 && evictable(c) {
                swept.evicted += 1;
            } else {
                continue;
            }
            on_delete(Slot(i as u32), c, &self.tuples(Slot(i as u32)));
            self.delete(Slot(i as u32));
        }
        swept
    }

    /// Linux's `early_drop`: with the table full, look through the buckets
    /// near `hash` for a connection not worth keeping (expired, or one
    /// `evictable`) and delete it.
    /// `on_delete` sees the evicted connection, its slot and its tuples,
    /// before it goes.
    pub fn early_drop(
        &mut self,
        hash: u64,
        now: u64,
        on_delete: impl FnOnce(Slot, &Conn, &[Tuple; 2]),
    ) -> bool {
        let mut b = self.home(hash);
        for _ in 0..EVICTION_RANGE {
            for e in self.buckets[b].entry {
                if e == EMPTY {
                    continue;
                }
                let s = Slot(e & SLOT_MASK);
                let c = self.get(s);
                if c.deadline.passed(now) || evictable(c) {
                    on_delete(s, c, &self.tuples(s));
                    self.delete(s);
                    return true;
                }
            }
            b = self.next(b);
        }
        false
    }

    /// Slots ever used: every connection's slot is below this.
    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    /// The connection in slot `s` if it is confirmed.
    pub fn confirmed(&self, s: Slot) -> Option<&Conn> {
        let i = s.0 as usize;
        (self.meta.get(i).map(|m| m.kind()) == Some(SlotKind::Confirmed)).then(|| &self.conns[i])
    }

    /// The confirmed connections, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Conn)> {
        self.meta
            .iter()
            .zip(&self.conns)
            .enumerate()
            .filter(|(_, (m, _))| m.kind() == SlotKind::Confirmed)
            .map(|(i, (_, c))| (Slot(i as u32), c))
    }
}

#[cfg(test)]
mod tests;
