//! Connection events (`conntrack -E`): a shard keeps NEW (at confirm)
//! and DESTROY (however a connection goes) in a buffer reserved once,
//! which its caller drains between bursts.

use super::acct::{Acct, Counters};
use super::expect::{Expectations, Ledger};
use super::ext::Exts;
use super::table::{ConnTable, Slot};
use super::{Conn, ListedConn, Shard, Tuple};

/// What happened to a connection (`conntrack -E`'s NEW and DESTROY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtEventKind {
    New,
    Destroy,
}

/// A connection event: the connection as it was then, and when (the
/// tracker's clock).
#[derive(Debug, Clone, Copy)]
pub struct CtEvent {
    pub kind: CtEventKind,
    /// The connection then, with its counters if kept (`Config::acct`).
    pub conn: ListedConn,
    pub at: u64,
}

/// Events waiting for the caller, in a buffer reserved once: when it is
/// full, events are counted as lost rather than kept.
pub(super) struct EventLog {
    buf: Vec<CtEvent>,
    lost: u64,
}

impl EventLog {
    pub(super) fn push(
        &mut self,
        kind: CtEventKind,
        conn: &Conn,
        tuples: &[Tuple; 2],
        counters: Option<Counters>,
        at: u64,
    ) {
        if self.buf.len() < self.buf.capacity() {
            self.buf.push(CtEvent {
                kind,
                conn: ListedConn {
                    conn: *conn,
                    tuples: *tuples,
                    counters,
                },
                at,
            });
        } else {
            self.lost += 1;
        }
    }
}

/// What goes with a confirmed connection however it ends (Linux's
/// `nf_ct_destroy` and its extensions' destructors): the expectations it
/// announced, a DESTROY event if events are kept, and its extension
/// record. Holds the shard's parts other than its table, so that the
/// table's own sweeps (`ConnTable::gc`, `early_drop`) can call it.
pub(super) struct Teardown<'a> {
    set: &'a Expectations,
    ledger: &'a mut Ledger,
    events: &'a mut Option<EventLog>,
    exts: &'a mut Exts,
    acct: &'a Acct,
}

impl Teardown<'_> {
    pub(super) fn conn(&mut self, slot: Slot, conn: &Conn, tuples: &[Tuple; 2], now: u64) {
        self.ledger.forget_master(self.set, conn);
        if let Some(log) = self.events {
            log.push(CtEventKind::Destroy, conn, tuples, self.acct.get(slot), now);
        }
        self.exts.release(slot);
    }
}

impl Shard {
    /// The table, and the teardown of its connections beside it.
    pub(super) fn table_and_teardown(&mut self) -> (&mut ConnTable, Teardown<'_>) {
        (
            &mut self.table,
            Teardown {
                set: &self.expectations,
                ledger: &mut self.ledger,
                events: &mut self.events,
                exts: &mut self.exts,
                acct: &self.acct,
            },
        )
    }
}

impl Shard {
    /// Keeps connection events (creation at confirm, deletion however it
    /// happens), up to `capacity` between two `drain_events`; more are
    /// counted as lost.
    pub fn enable_events(&mut self, capacity: usize) {
        self.events = Some(EventLog {
            buf: Vec::with_capacity(capacity.max(1)),
            lost: 0,
        });
    }

    /// Stops keeping events; those kept so far are dropped.
    pub fn disable_events(&mut self) {
        self.events = None;
    }

    /// Whether events are kept.
    pub fn events_enabled(&self) -> bool {
        self.events.is_some()
    }

    /// Hands the events kept since the last call to `f`, oldest first;
    /// returns how many were lost meanwhile (the buffer was full).
    pub fn drain_events(&mut self, f: impl FnMut(CtEvent)) -> u64 {
        let Some(log) = self.events.as_mut() else {
            return 0;
        };
        log.buf.drain(..).for_each(f);
        std::mem::take(&mut log.lost)
    }
}
