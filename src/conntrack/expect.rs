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

/// Why an expectation was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectFull;

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
    fn publish(&self, e: &Expectation) -> Result<Handle, ExpectFull> {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.count(3);
            return Err(ExpectFull);
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
        Err(ExpectFull)
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
    /// master at `max_per_master` loses its oldest; a full set refuses it.
    pub(super) fn expect(
        &mut self,
        set: &Expectations,
        e: Expectation,
        max_per_master: usize,
    ) -> Result<(), ExpectFull> {
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
mod tests {
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
                Err(ExpectFull)
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
        assert_eq!(ledger.expect(&set, expectation(20, 20), 1), Err(ExpectFull));
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
}
