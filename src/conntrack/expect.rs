//! Expectations (Linux's `nf_conntrack_expect`): connections a helper has
//! announced, such as a TFTP transfer from a new server port or an FTP
//! data connection, which become RELATED to their master when they start.
//!
//! **Across shards.** A worker's shard owns its connections, but an
//! expected connection (other ports) usually hashes to another worker than
//! its master. The expectations therefore live in one set shared by every
//! shard, the "global expectation table" of the seed article, behind a
//! mutex, with an atomic count beside it. A shard reads the count only when
//! a packet matched no connection, and takes the lock only when the count
//! is not zero: the established fast path never touches the set, and a new
//! connection pays one relaxed load unless expectations are pending.
//! Matching under the lock gives Linux's one-shot semantics exactly (two
//! cores cannot both consume one expectation), which broadcasting copies to
//! every shard through rings would not. Creating an expectation (a helper
//! parsing a control packet) and removing a master's are rare events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::conn::{Conn, Status};
use super::helper::Helper;
use super::tuple::Tuple;
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
    /// When it was made (the oldest is evicted first).
    pub created: u64,
}

/// What must match exactly: all but the source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: Addr,
    dst: Addr,
    dport: u16,
    proto: u8,
    family: u8,
    zone: u16,
}

impl Key {
    fn of(t: &Tuple) -> Key {
        Key {
            src: t.src,
            dst: t.dst,
            dport: t.dport,
            proto: t.proto,
            family: t.family,
            zone: t.zone,
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
    /// Expectations removed unused (timeout, eviction, master gone).
    pub expect_delete: u64,
    /// Expectations refused: the set was full.
    pub expect_full: u64,
}

struct Set {
    by_key: HashMap<Key, Expectation>,
    max: usize,
    stats: ExpectStats,
}

/// The expectation set shared by all shards.
pub struct Expectations {
    /// Entries in the set; read without the lock on table misses.
    pending: AtomicUsize,
    set: Mutex<Set>,
}

/// Why an expectation was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectFull;

impl Expectations {
    /// A set holding at most `max` expectations (`nf_conntrack_expect_max`);
    /// its memory is reserved here.
    pub fn new(max: usize) -> Expectations {
        Expectations {
            pending: AtomicUsize::new(0),
            set: Mutex::new(Set {
                by_key: HashMap::with_capacity(max),
                max,
                stats: ExpectStats::default(),
            }),
        }
    }

    /// Whether nothing is expected (one relaxed load, no lock).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pending.load(Ordering::Relaxed) == 0
    }

    pub fn len(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ExpectStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Set> {
        // A panic elsewhere while holding the lock leaves a consistent map
        // (every mutation is a single insert or remove), so carry on.
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_len(&self, set: &Set) {
        self.pending.store(set.by_key.len(), Ordering::Relaxed);
    }

    /// Finds and consumes the expectation a new connection with original
    /// tuple `t` fulfils (one-shot, as Linux). Expired ones never match.
    pub fn take(&self, t: &Tuple, now: u64) -> Option<Expectation> {
        let mut set = self.lock();
        let key = Key::of(t);
        let e = *set.by_key.get(&key)?;
        if e.deadline <= now {
            set.by_key.remove(&key);
            set.stats.expect_delete += 1;
            self.sync_len(&set);
            return None;
        }
        if !e.any_source_port && e.tuple.sport != t.sport {
            return None;
        }
        set.by_key.remove(&key);
        set.stats.expect_new += 1;
        self.sync_len(&set);
        Some(e)
    }

    /// Adds an expectation. An identical one (same tuple) is replaced, so
    /// a repeated announcement does not pile up; a master already at
    /// `max_per_master` loses its oldest first; a full set refuses it.
    pub fn insert(
        &self,
        e: Expectation,
        max_per_master: usize,
        now: u64,
    ) -> Result<(), ExpectFull> {
        let mut set = self.lock();
        let key = Key::of(&e.tuple);
        if set.by_key.remove(&key).is_none() {
            let mine = set
                .by_key
                .iter()
                .filter(|(_, x)| x.master == e.master && x.helper == e.helper);
            if mine.clone().count() >= max_per_master.max(1) {
                let oldest = mine.min_by_key(|(_, x)| x.created).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    set.by_key.remove(&k);
                    set.stats.expect_delete += 1;
                }
            }
            if set.by_key.len() >= set.max {
                let before = set.by_key.len();
                set.by_key.retain(|_, x| x.deadline > now);
                set.stats.expect_delete += (before - set.by_key.len()) as u64;
            }
            if set.by_key.len() >= set.max {
                set.stats.expect_full += 1;
                self.sync_len(&set);
                return Err(ExpectFull);
            }
        }
        set.by_key.insert(key, e);
        set.stats.expect_create += 1;
        self.sync_len(&set);
        Ok(())
    }

    /// A connection of shard `shard` is going away: if it had a helper,
    /// its expectations go with it (cheap for every other connection).
    pub fn forget_master(&self, shard: u16, c: &Conn) {
        if c.status.has(Status::HELPER) {
            self.remove_master(MasterRef { shard, id: c.id });
        }
    }

    /// Removes every expectation of a master that is going away.
    fn remove_master(&self, master: MasterRef) {
        let mut set = self.lock();
        let before = set.by_key.len();
        set.by_key.retain(|_, x| x.master != master);
        set.stats.expect_delete += (before - set.by_key.len()) as u64;
        self.sync_len(&set);
    }

    /// Removes expired expectations.
    pub fn expire(&self, now: u64) {
        if self.is_empty() {
            return;
        }
        let mut set = self.lock();
        let before = set.by_key.len();
        set.by_key.retain(|_, x| x.deadline > now);
        set.stats.expect_delete += (before - set.by_key.len()) as u64;
        self.sync_len(&set);
    }

    /// The expectations pending, for listings and tests.
    pub fn snapshot(&self) -> Vec<Expectation> {
        self.lock().by_key.values().copied().collect()
    }
}

/// The timeout of a helper's expectations, in the tracker's clock.
pub(crate) fn deadline(now: u64, timeout_secs: u32) -> u64 {
    now + u64::from(timeout_secs) * SEC
}
