//! Expectations (Linux's `nf_conntrack_expect`): connections a helper has
//! announced, such as a TFTP transfer from a new server port or an FTP
//! data connection, which become RELATED to their master when they start.
//!
//! **Across shards, without a lock.** A worker's shard owns its
//! connections, but an expected connection (other ports, and with TFTP and
//! FTP an unknown source port, so no owner can be computed from it) may
//! start on any worker. The expectations therefore live in one set shared
//! by every shard, the seed article's "global expectation table", made so
//! that no worker ever waits for another:
//! - The set is a fixed array of slots in buckets of eight, each
//!   expectation in one of two buckets chosen by a keyed hash of what it
//!   matches. A slot is a sequence word, kept with its bucket's others in
//!   one cache line, and the expectation in atomic words elsewhere. The
//!   sequence word holds a state (empty, being written, ready), 16 bits of
//!   the hash as a tag and a generation, and makes the slot a seqlock: a
//!   reader that saw the same ready sequence before and after reading has
//!   a whole expectation. A lookup that matches nothing reads two lines.
//! - Consuming one is a compare-and-swap of its sequence word from ready
//!   to empty (the next generation): of two workers that matched the same
//!   expectation one wins, which keeps Linux's one-shot semantics exactly.
//!   Removal by anyone else (the master going, its timeout, its
//!   replacement) is the same swap, so it cannot take one already used.
//! - Only the master's shard creates and removes its expectations (helpers
//!   run on the master's packets), so each shard keeps a ledger of the
//!   ones it made, by master: `max_expected`, replacement, removal with the
//!   master and expiry are O(that master's expectations) and need no other
//!   shard. A ledger entry whose expectation was consumed is seen stale by
//!   its generation and dropped.
//! - An atomic count of pending expectations bounds the set at
//!   `expect_max` and lets a packet that matched no connection skip the
//!   set with one relaxed load when nothing is expected.
//! - While some are pending, a counting filter in front of the buckets
//!   (16,384 one-byte counters, 16 KB, indexed by one keyed multiply of
//!   the destination address, port and protocol, which every expectation
//!   fixes) answers most new connections with one load of a line that
//!   stays in cache: with 1,000 pending, about 6% of them go on to the
//!   full hash and the two bucket lines. Measured with `ct-bench --cases
//!   expect`: new connections cost 1.20-1.30 times as much with 1,000
//!   expectations pending as with none before the filter, 1.02 after.
//!
//! Message passing (copies on every shard) would need a second round to
//! make consumption one-shot; a lock lets one worker's preemption stall
//! every worker's new connections.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use arrayvec::ArrayVec;

use super::conn::{Conn, Status};
use super::helper::Helper;
use super::tuple::{HashKey, Tuple};
use super::SEC;
use crate::wire::Addr;

/// The connection an expectation belongs to: its shard and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MasterRef {
    pub shard: u16,
    pub id: u32,
}

/// An expected connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    /// The original tuple the expected connection will have. Its source
    /// port is ignored when `any_source_port` (the mask TFTP and FTP use).
    pub tuple: Tuple,
    pub any_source_port: bool,
    pub master: MasterRef,
    pub helper: Helper,
    /// When it stops matching.
    pub deadline: u64,
    /// When it was made.
    pub created: u64,
    /// The translation the expected connection gets, where its master is
    /// translated.
    pub nat: Option<FollowNat>,
}

/// An expectation as one line of `conntrack -L expect`: seconds left,
/// protocol, the expected tuple, its mask, and the helper. The master is
/// named by its connection id (`master-id=`), where Linux prints the
/// master's tuple: a shard keeps its expectations by master id only.
pub struct ExpectLine<'a> {
    pub expectation: &'a Expectation,
    pub now: u64,
}

impl std::fmt::Display for ExpectLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.expectation;
        let t = &e.tuple;
        let l3 = t.l3();
        let full = match l3 {
            crate::wire::L3::V4 => "255.255.255.255",
            crate::wire::L3::V6 => "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        };
        let sport = if e.any_source_port { 0 } else { t.sport };
        write!(
            f,
            "{} proto={} src={} dst={} sport={sport} dport={} mask-src={full} mask-dst={full} \
             sport={} dport=65535 master-id={} class=0 helper={}",
            e.deadline.saturating_sub(self.now) / super::SEC,
            t.proto,
            t.src.display(l3),
            t.dst.display(l3),
            t.dport,
            if e.any_source_port { 0 } else { 65535 },
            e.master.id,
            e.helper.name(),
        )
    }
}

/// NAT for an expected connection that follows its master's
/// (`nf_nat_follow_master`): the source becomes `src`, the destination
/// `dst` and, where given, the destination port `dport`. Kept in the
/// expectation because the connection may start on another worker than
/// its master's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowNat {
    pub src: Addr,
    pub dst: Addr,
    pub dport: Option<u16>,
}

impl Expectation {
    /// What must match exactly: all but the source port.
    fn key(t: &Tuple) -> Tuple {
        Tuple { sport: 0, ..*t }
    }

    fn matches(&self, t: &Tuple) -> bool {
        Expectation::key(&self.tuple) == Expectation::key(t)
            && (self.any_source_port || self.tuple.sport == t.sport)
    }

    fn encode(&self) -> [u64; WORDS] {
        let t = self.tuple.words();
        let helper = match self.helper {
            Helper::Tftp => 0u64,
            Helper::Ftp => 1,
        };
        let master = u64::from(self.master.shard)
            | u64::from(self.master.id) << 16
            | helper << 48
            | u64::from(self.any_source_port) << 56;
        let (src, dst, flags) = match self.nat {
            Some(n) => (
                n.src.words(),
                n.dst.words(),
                1 | u64::from(n.dport.is_some()) << 1 | u64::from(n.dport.unwrap_or(0)) << 16,
            ),
            None => ([0; 2], [0; 2], 0),
        };
        [
            t[0],
            t[1],
            t[2],
            t[3],
            t[4],
            master,
            self.deadline,
            self.created,
            src[0],
            src[1],
            dst[0],
            dst[1],
            flags,
        ]
    }

    fn decode(w: &[u64; WORDS]) -> Expectation {
        Expectation {
            tuple: Tuple::from_words([w[0], w[1], w[2], w[3], w[4]]),
            any_source_port: w[5] >> 56 & 1 == 1,
            master: MasterRef {
                shard: w[5] as u16,
                id: (w[5] >> 16) as u32,
            },
            helper: if w[5] >> 48 & 0xff == 0 {
                Helper::Tftp
            } else {
                Helper::Ftp
            },
            deadline: w[6],
            created: w[7],
            nat: (w[12] & 1 == 1).then(|| FollowNat {
                src: Addr::from_words([w[8], w[9]]),
                dst: Addr::from_words([w[10], w[11]]),
                dport: (w[12] >> 1 & 1 == 1).then_some((w[12] >> 16) as u16),
            }),
        }
    }
}

/// Counters, as `conntrack -S` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpectStats {
    /// Connections created from an expectation.
    pub expect_new: u64,
    /// Expectations created.
    pub expect_create: u64,
    /// Expectations removed unused (timeout, replacement, master gone).
    pub expect_delete: u64,
    /// Expectations refused: the set was full.
    pub expect_full: u64,
}

/// Why an expectation was not created (`nf_ct_expect_related`'s errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectRefused {
    /// The set holds `expect_max` (counted as `expect_full`).
    Full,
    /// Another master's pending expectation would take the same
    /// connections (Linux's EBUSY).
    Clash,
}

const WORDS: usize = 13;
const BUCKET: usize = 8;
/// A sequence word: the state in bits 0-1, the tag in 2-17, and above them
/// the slot's generation, bumped each time the slot empties, so a stale
/// handle never matches.
const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const READY: u64 = 2;
const STATE: u64 = 3;
const TAG_SHIFT: u32 = 2;
const GEN_SHIFT: u32 = 18;

/// The sequence words of one bucket's slots: one cache line.
#[derive(Default)]
#[repr(align(64))]
struct Bucket {
    seq: [AtomicU64; BUCKET],
}

fn tag_of(seq: u64) -> u64 {
    seq >> TAG_SHIFT & 0xffff
}

/// The slot index and ready sequence of an expectation a shard made,
/// and its counter in the filter.
#[derive(Debug, Clone, Copy)]
struct Handle {
    slot: u32,
    filter: u16,
    seq: u64,
    deadline: u64,
}

/// Counters of the filter (a power of two).
const FILTER: usize = 1 << 14;
/// A counter that reached this stays there: it no longer knows how many
/// expectations it stands for, so it must keep saying "maybe".
const STUCK: u8 = u8::MAX;

/// The expectation set shared by all shards.
pub struct Expectations {
    buckets: Box<[Bucket]>,
    /// The expectation of slot i (bucket i / 8) in `WORDS` words.
    words: Box<[[AtomicU64; WORDS]]>,
    /// Buckets minus one (a power of two).
    mask: usize,
    key: HashKey,
    /// How many pending expectations have each filter index (`filter_of`);
    /// a tuple whose counter is 0 matches none of them.
    filter: Box<[AtomicU8]>,
    max: usize,
    pending: AtomicUsize,
    /// `ExpectStats`' fields in order.
    stats: [AtomicU64; 4],
}

impl Expectations {
    /// A set holding at most `max` expectations (`nf_conntrack_expect_max`);
    /// its memory, twice that in slots, is allocated here.
    pub fn new(max: usize) -> Expectations {
        let buckets = (2 * max.max(1)).div_ceil(BUCKET).next_power_of_two();
        Expectations {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            words: (0..buckets * BUCKET).map(|_| Default::default()).collect(),
            mask: buckets - 1,
            key: HashKey::random(),
            filter: (0..FILTER).map(|_| AtomicU8::new(0)).collect(),
            max,
            pending: AtomicUsize::new(0),
            stats: Default::default(),
        }
    }

    /// Whether nothing is expected (one relaxed load).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pending.load(Ordering::Relaxed) == 0
    }

    pub fn len(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ExpectStats {
        let [new, create, delete, full] = self.stats.each_ref().map(|s| s.load(Ordering::Relaxed));
        ExpectStats {
            expect_new: new,
            expect_create: create,
            expect_delete: delete,
            expect_full: full,
        }
    }

    fn count(&self, which: usize) {
        self.stats[which].fetch_add(1, Ordering::Relaxed);
    }

    /// The filter counter of a tuple: a keyed multiply of what every
    /// expectation fixes (destination address and port, protocol, family
    /// and zone; not the source port, which TFTP and FTP leave open, nor
    /// the source address, for speed). Both operands carry key words, so
    /// no input can zero the product; a sender who still makes counters
    /// collide only sends its connections on to the bucket lookup, whose
    /// cost is bounded.
    #[inline]
    fn filter_of(&self, t: &Tuple) -> usize {
        let w = t.words();
        let k = self.key.words();
        let p = u128::from(w[2] ^ w[3].rotate_left(32) ^ k[0]) * u128::from(w[4] >> 16 ^ k[1]);
        ((p >> 64) as u64 ^ p as u64) as usize & (FILTER - 1)
    }

    /// Counts one more expectation at filter index `i`.
    fn filter_add(&self, i: usize) {
        let _ = self.filter[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c != STUCK).then(|| c + 1)
        });
    }

    /// Counts one expectation less at filter index `i`.
    fn filter_sub(&self, i: usize) {
        let _ = self.filter[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c != STUCK && c > 0).then(|| c - 1)
        });
    }

    /// The tag and the two buckets an expected tuple may be in.
    fn candidates(&self, t: &Tuple) -> (u64, [usize; 2]) {
        let h = Expectation::key(t).hash(&self.key);
        (
            h >> 48,
            [h as usize & self.mask, (h >> 20) as usize & self.mask],
        )
    }

    /// The slots of buckets `b`, each bucket once.
    fn slots(b: [usize; 2]) -> impl Iterator<Item = usize> {
        let second = if b[0] == b[1] {
            0..0
        } else {
            b[1] * BUCKET..(b[1] + 1) * BUCKET
        };
        (b[0] * BUCKET..(b[0] + 1) * BUCKET).chain(second)
    }

    fn free_in(&self, bucket: usize) -> usize {
        let seqs = &self.buckets[bucket].seq;
        seqs.iter()
            .filter(|s| s.load(Ordering::Relaxed) & STATE == EMPTY)
            .count()
    }

    fn seq(&self, slot: usize) -> &AtomicU64 {
        &self.buckets[slot / BUCKET].seq[slot % BUCKET]
    }

    /// The expectation in `slot`, if it is ready (any tag) and did not
    /// change while read, with its sequence.
    fn read(&self, slot: usize) -> Option<(Expectation, u64)> {
        let seq = self.seq(slot).load(Ordering::Acquire);
        if seq & STATE != READY {
            return None;
        }
        self.read_at(slot, seq).map(|e| (e, seq))
    }

    /// The expectation in `slot` if its sequence is still `seq` (a ready
    /// one) once it has been read: a seqlock read.
    #[inline]
    fn read_at(&self, slot: usize, seq: u64) -> Option<Expectation> {
        let words = self.words[slot]
            .each_ref()
            .map(|w| w.load(Ordering::Relaxed));
        // Orders the reads above before the check below.
        fence(Ordering::Acquire);
        (self.seq(slot).load(Ordering::Relaxed) == seq).then(|| Expectation::decode(&words))
    }

    /// Empties `slot` if it still holds the expectation of sequence `seq`
    /// (counted at filter index `filter`); whether this call did.
    fn release(&self, slot: usize, seq: u64, filter: usize) -> bool {
        let next = ((seq >> GEN_SHIFT) + 1) << GEN_SHIFT | EMPTY;
        let won = self
            .seq(slot)
            .compare_exchange(seq, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            self.filter_sub(filter);
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        won
    }

    /// Finds and consumes the expectation a new connection with original
    /// tuple `t` fulfils (one-shot, as Linux). Expired ones never match.
    pub fn take(&self, t: &Tuple, now: u64) -> Option<Expectation> {
        // An expectation published meanwhile on another core may be missed
        // here: the packet then counts as having come first, as it would
        // have a moment earlier.
        let filter = self.filter_of(t);
        if self.filter[filter].load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (tag, buckets) = self.candidates(t);
        let second = usize::from(buckets[0] != buckets[1]);
        for &b in &buckets[..=second] {
            // The bucket's line first; an expectation is read only where
            // the tag matches (a miss reads nothing else).
            for (i, seq) in self.buckets[b].seq.iter().enumerate() {
                let seq = seq.load(Ordering::Acquire);
                if seq & STATE != READY || tag_of(seq) != tag {
                    continue;
                }
                let slot = b * BUCKET + i;
                let Some(e) = self.read_at(slot, seq) else {
                    continue;
                };
                // An expired one is left for its master's ledger to count.
                if e.matches(t) && e.deadline > now && self.release(slot, seq, filter) {
                    self.count(0);
                    return Some(e);
                }
            }
        }
        None
    }

    /// Whether a pending expectation of a master other than `master`
    /// would take connections an expectation of `t` from any source port
    /// (what the helpers make) would (Linux's `nf_ct_expect_related`
    /// fails with EBUSY then; `nf_nat_ftp` moves on to another port). One
    /// of the same master is not a clash: the ledger replaces it.
    pub fn clashes(&self, t: &Tuple, master: MasterRef, now: u64) -> bool {
        if self.filter[self.filter_of(t)].load(Ordering::Relaxed) == 0 {
            return false;
        }
        // Linux's `expect_clash`: the tuples agree where both masks care,
        // which with any source port on one side is all but that port.
        let key = Expectation::key(t);
        let (tag, buckets) = self.candidates(t);
        Self::slots(buckets).any(|slot| {
            let seq = self.seq(slot).load(Ordering::Acquire);
            seq & STATE == READY
                && tag_of(seq) == tag
                && self.read_at(slot, seq).is_some_and(|x| {
                    x.master != master && x.deadline > now && Expectation::key(&x.tuple) == key
                })
        })
    }

    /// Writes `e` into a free slot of its buckets.
    fn publish(&self, e: &Expectation) -> Result<Handle, ExpectRefused> {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.count(3);
            return Err(ExpectRefused::Full);
        }
        let words = e.encode();
        let filter = self.filter_of(&e.tuple);
        // The emptier of the two buckets first (two choices keep the
        // fullest bucket near the mean, so both being full is not seen).
        let (tag, mut buckets) = self.candidates(&e.tuple);
        if self.free_in(buckets[1]) > self.free_in(buckets[0]) {
            buckets.swap(0, 1);
        }
        for slot in Self::slots(buckets) {
            let seq = self.seq(slot).load(Ordering::Relaxed);
            let writing = seq | tag << TAG_SHIFT | WRITING;
            if seq & STATE != EMPTY
                || self
                    .seq(slot)
                    .compare_exchange(seq, writing, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            for (w, v) in self.words[slot].iter().zip(words) {
                w.store(v, Ordering::Relaxed);
            }
            let ready = writing & !STATE | READY;
            self.filter_add(filter);
            self.seq(slot).store(ready, Ordering::Release);
            self.count(1);
            return Ok(Handle {
                slot: slot as u32,
                filter: filter as u16,
                seq: ready,
                deadline: e.deadline,
            });
        }
        // Both buckets full: at half load with two choices, as rare as
        // anything here gets (the tests fill sets to `max`); counted as a
        // full set.
        self.pending.fetch_sub(1, Ordering::Relaxed);
        self.count(3);
        Err(ExpectRefused::Full)
    }

    /// Removes the expectation behind `h` unless it was consumed; whether
    /// it did.
    fn remove(&self, h: &Handle) -> bool {
        let won = self.release(h.slot as usize, h.seq, usize::from(h.filter));
        if won {
            self.count(2);
        }
        won
    }

    /// Whether `h`'s expectation is still pending.
    fn live(&self, h: &Handle) -> bool {
        self.seq(h.slot as usize).load(Ordering::Relaxed) == h.seq
    }

    /// The expectations pending, for listings and tests.
    pub fn snapshot(&self) -> Vec<Expectation> {
        (0..self.words.len())
            .filter_map(|i| self.read(i).map(|(e, _)| e))
            .collect()
    }
}

/// Most expectations one master may have (`max_expected`; Linux's TFTP and
/// FTP helpers allow 1).
pub const MAX_PER_MASTER: usize = 4;

/// One shard's record of the expectations it made, by master connection id.
pub(super) struct Ledger {
    by_master: HashMap<u32, ArrayVec<Handle, MAX_PER_MASTER>>,
}

impl Ledger {
    /// Room for `max` masters, reserved here.
    pub(super) fn new(max: usize) -> Ledger {
        Ledger {
            by_master: HashMap::with_capacity(max),
        }
    }

    /// Adds an expectation. One the master already has for the same
    /// tuple is replaced, so a repeated announcement does not pile up; a
    /// master at `max_per_master` loses its oldest; one that clashes with
    /// another master's is refused, and so is one a full set cannot take.
    pub(super) fn expect(
        &mut self,
        set: &Expectations,
        e: Expectation,
        max_per_master: usize,
    ) -> Result<(), ExpectRefused> {
        if set.clashes(&e.tuple, e.master, e.created) {
            return Err(ExpectRefused::Clash);
        }
        let mine = self.by_master.entry(e.master.id).or_default();
        mine.retain(|h| {
            let same = set
                .read(h.slot as usize)
                .is_some_and(|(x, seq)| seq == h.seq && x.tuple == e.tuple);
            if same {
                set.remove(h);
            }
            !same && set.live(h)
        });
        while mine.len() >= max_per_master.clamp(1, MAX_PER_MASTER) {
            set.remove(&mine.remove(0));
        }
        let h = set.publish(&e);
        if let Ok(h) = h {
            mine.push(h);
        } else if mine.is_empty() {
            self.by_master.remove(&e.master.id);
        }
        h.map(|_| ())
    }

    /// A connection is going away: if it had a helper, its expectations
    /// go with it (a flag test for every other connection).
    pub(super) fn forget_master(&mut self, set: &Expectations, c: &Conn) {
        if !c.status.has(Status::HELPER) {
            return;
        }
        for h in self.by_master.remove(&c.id).unwrap_or_default() {
            set.remove(&h);
        }
    }

    /// Removes this shard's expired expectations (and forgets consumed
    /// ones).
    pub(super) fn expire(&mut self, set: &Expectations, now: u64) {
        self.by_master.retain(|_, mine| {
            mine.retain(|h| {
                if h.deadline <= now {
                    set.remove(h);
                    return false;
                }
                set.live(h)
            });
            !mine.is_empty()
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_master.is_empty()
    }

    /// This shard's expectations still pending, for `ct expect list`.
    pub(super) fn pending(&self, set: &Expectations) -> Vec<Expectation> {
        self.by_master
            .values()
            .flatten()
            .filter_map(|h| set.read_at(h.slot as usize, h.seq))
            .collect()
    }

    /// Removes all of this shard's pending expectations (`conntrack -F
    /// expect`); returns how many it removed.
    pub(super) fn flush(&mut self, set: &Expectations) -> usize {
        let mut n = 0;
        for (_, mine) in self.by_master.drain() {
            for h in mine {
                n += usize::from(set.remove(&h));
            }
        }
        n
    }
}

/// The timeout of a helper's expectations, in the tracker's clock.
pub(crate) fn deadline(now: u64, timeout_secs: u32) -> u64 {
    now + u64::from(timeout_secs) * SEC
}

#[cfg(test)]
mod tests;
