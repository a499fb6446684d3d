//! The per-worker command path: how the main lcore (and the telemetry
//! thread) read and change a worker's connection table without sharing it.
//!
//! Each tracking worker owns a bounded crossbeam queue of commands. It
//! looks at it between bursts (`housekeeping`) and does at most one slice
//! of work per look: a listing or deletion walks `SLICE_SLOTS` table slots
//! at a time, so a flush of a million connections is thousands of short
//! slices with the RX queues polled between them, never one long stall.
//! Each command carries its own bounded reply queue; a worker whose reply
//! queue is full waits for the reader by doing nothing that round (it
//! never blocks), and drops the job if the requester has gone.
//!
//! The worker allocates nothing for a command: a listing's page buffers
//! come from the requester and go back to it (`Replies`); only a command
//! answered in one step (an expectation listing, an error) builds its
//! answer on the worker, once per command.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::cpu::tsc;
use super::policy::Policy;
use super::stages::Stages;
use crate::conntrack::{Cursor, Expectation, ListedConn, Stats};
use crate::rules::{ConnFilter, RuleSet};

/// Table slots one slice looks at. A slot is a sequential read of the
/// slab; a deletion adds two random index writes. 256 keeps the longest
/// slice (deleting 256 connections of a 1M table, index lines cold) at
/// tens of microseconds: well inside what a 1024-descriptor RX ring holds
/// at 10 Mpps (about 100 µs). `ct stats` shows the longest slice measured.
const SLICE_SLOTS: usize = 256;

/// Replies a command may have waiting before its worker pauses the walk.
const REPLY_DEPTH: usize = 16;

/// Commands a worker's queue holds.
const COMMAND_DEPTH: usize = 8;

/// How long a requester waits for a worker that makes no progress.
const STALL: Duration = Duration::from_secs(3);

/// What a worker is asked to do.
pub enum Request {
    /// Copies of the connections `filter` selects, from slot `from`, at
    /// most `max` of them (a page; `usize::MAX` for all).
    List {
        filter: Arc<ConnFilter>,
        from: usize,
        max: usize,
    },
    /// Deletes the connections `filter` selects.
    Delete { filter: Arc<ConnFilter> },
    /// This worker's pending expectations.
    Expectations,
    /// Removes this worker's pending expectations.
    FlushExpectations,
    /// Sets a timeout (`--ct-timeout-NAME`'s names) for new deadlines.
    Timeout { name: String, secs: u32 },
    /// The tracker's counters (`conntrack -S`).
    Stats,
    /// Starts or stops connection events (`ct events on|off`).
    Events(bool),
    /// Switches the firewall to `rules`, publishing the per-rule NAT
    /// counts into `nat_exhausted` from now on.
    Rules {
        rules: Arc<RuleSet>,
        nat_exhausted: Arc<[AtomicU64]>,
    },
}

/// What a worker answers.
pub enum Reply {
    /// One slice of a walk: the connections copied, how many it deleted,
    /// the worker's clock, and where the walk goes on (`None`: the end).
    /// `last` is the walk's final slice (the end, or a full page).
    Slice {
        conns: Vec<ListedConn>,
        deleted: usize,
        now: u64,
        next: Cursor,
        last: bool,
    },
    Expectations {
        list: Vec<Expectation>,
        now: u64,
    },
    Stats(Stats, SliceTimes),
    /// How many things the command changed.
    Done(usize),
    Error(String),
}

struct Command {
    request: Request,
    reply: Arc<Replies>,
}

/// A command's way back: its replies, and the page buffers a listing
/// fills. The requester allocates the buffers and hands each back once it
/// has read it, so the worker neither allocates nor frees: a free on the
/// main lcore of memory the worker allocated would take the allocator's
/// lock of the worker's arena, which the worker would then wait on.
struct Replies {
    queue: ArrayQueue<Reply>,
    spares: ArrayQueue<Vec<ListedConn>>,
}

impl Replies {
    fn new(pages: usize) -> Replies {
        let spares = ArrayQueue::new(pages.max(1));
        for _ in 0..pages {
            let _ = spares.push(Vec::with_capacity(SLICE_SLOTS));
        }
        Replies {
            queue: ArrayQueue::new(REPLY_DEPTH),
            spares,
        }
    }

    /// A page read: its buffer goes back to the worker.
    fn recycle(&self, mut page: Vec<ListedConn>) {
        page.clear();
        let _ = self.spares.push(page);
    }
}

/// A worker's command queue.
pub struct CommandQueue(ArrayQueue<Command>);

impl CommandQueue {
    pub fn new() -> CommandQueue {
        CommandQueue(ArrayQueue::new(COMMAND_DEPTH))
    }
}

/// A walk in progress on a worker.
struct Job {
    filter: Arc<ConnFilter>,
    delete: bool,
    cursor: usize,
    /// Connections still to list before the page is full.
    room: usize,
    reply: Arc<Replies>,
}

/// How long the worker's command slices took, in TSC cycles.
#[derive(Debug, Clone, Copy, Default)]
pub struct SliceTimes {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The worker's side: serves its queue one slice at a time.
pub struct Controller {
    queue: Arc<CommandQueue>,
    job: Option<Job>,
    /// Every slice's duration in TSC cycles (allocated once, here;
    /// recording never allocates).
    slices: hdrhistogram::Histogram<u64>,
}

impl Controller {
    pub fn new(queue: Arc<CommandQueue>) -> Controller {
        Controller {
            queue,
            job: None,
            // 1 cycle to about 10 s at 4 GHz, 3 significant digits.
            slices: hdrhistogram::Histogram::new_with_bounds(1, 1 << 36, 3)
                .expect("constant bounds are valid"),
        }
    }

    fn slice_times(&self) -> SliceTimes {
        let h = &self.slices;
        SliceTimes {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// Does one slice of work, if there is any: the walk in progress, or
    /// the next command. Called between bursts.
    #[inline]
    pub fn serve<P: Policy>(&mut self, stages: &mut Stages<P>, now: u64) {
        if self.job.is_none() && self.queue.0.is_empty() {
            return;
        }
        self.serve_slice(stages, now);
    }

    #[inline(never)]
    fn serve_slice<P: Policy>(&mut self, stages: &mut Stages<P>, now: u64) {
        let start = tsc();
        if let Some(job) = self.job.take() {
            if Arc::strong_count(&job.reply) == 1 {
                return; // nobody waits for it any more
            }
            if job.reply.queue.is_full() || (!job.delete && job.reply.spares.is_empty()) {
                // The reader is behind: no work this round.
                self.job = Some(job);
                return;
            }
            self.job = walk(job, stages, now);
        } else {
            let Some(cmd) = self.queue.0.pop() else {
                return;
            };
            self.start(cmd, stages, now);
        }
        self.slices.saturating_record(tsc() - start);
    }

    /// Starts a walk, or answers a command that takes one step.
    fn start<P: Policy>(&mut self, cmd: Command, stages: &mut Stages<P>, now: u64) {
        let shard = &mut stages.shard;
        let answer = match cmd.request {
            Request::List { filter, from, max } => {
                self.job = Some(Job {
                    filter,
                    delete: false,
                    cursor: from,
                    room: max,
                    reply: cmd.reply,
                });
                return;
            }
            Request::Delete { filter } => {
                self.job = Some(Job {
                    filter,
                    delete: true,
                    cursor: 0,
                    room: 0,
                    reply: cmd.reply,
                });
                return;
            }
            Request::Expectations => Reply::Expectations {
                list: shard.pending_expectations(),
                now,
            },
            Request::FlushExpectations => Reply::Done(shard.flush_expectations()),
            Request::Stats => Reply::Stats(*shard.stats(), self.slice_times()),
            Request::Events(on) => {
                if on && !shard.events_enabled() {
                    // Drained at every housekeeping: a burst's worth of
                    // events and then some.
                    shard.enable_events(4 * super::mbuf::MAX_BURST);
                } else if !on {
                    shard.disable_events();
                }
                Reply::Done(1)
            }
            Request::Timeout { name, secs } => match shard.set_timeout(&name, secs) {
                Ok(()) => Reply::Done(1),
                Err(e) => Reply::Error(e),
            },
            Request::Rules {
                rules,
                nat_exhausted,
            } => match stages.replace_rules(&rules, nat_exhausted) {
                Ok(()) => Reply::Done(1),
                Err(e) => Reply::Error(e),
            },
        };
        // A fresh reply queue has room; if the requester has gone, the
        // answer is dropped with it.
        let _ = cmd.reply.queue.push(answer);
    }
}

/// One slice of a walk; the job back if it is not finished.
fn walk<P: Policy>(mut job: Job, stages: &mut Stages<P>, now: u64) -> Option<Job> {
    let shard = &mut stages.shard;
    let filter = &job.filter;
    let (conns, deleted, next) = if job.delete {
        let (n, next) =
            shard.delete_slice(job.cursor, SLICE_SLOTS, |c, t| filter.matches(c, t), now);
        (Vec::new(), n, next)
    } else {
        // Checked before the slice: a spare page is there.
        let mut conns = job.reply.spares.pop().unwrap_or_default();
        let next = shard.list_slice(
            job.cursor,
            SLICE_SLOTS,
            job.room,
            |c, t| filter.matches(c, t),
            &mut conns,
        );
        job.room -= conns.len();
        (conns, 0, next)
    };
    let last = next.is_none() || (!job.delete && job.room == 0);
    let _ = job.reply.queue.push(Reply::Slice {
        conns,
        deleted,
        now,
        next,
        last,
    });
    match next {
        Some(cursor) if !last => {
            job.cursor = cursor;
            Some(job)
        }
        _ => None,
    }
}

/// The requester's side, for the main lcore and the telemetry thread: one
/// command queue per tracking worker (none in modes that do not track).
#[derive(Clone)]
pub struct Control {
    queues: Vec<Arc<CommandQueue>>,
}

/// A page of a listing: connections, the worker's clock, and the slot the
/// next page starts from (`None`: the worker's table is done).
pub struct Page {
    pub conns: Vec<ListedConn>,
    pub now: u64,
    pub next: Cursor,
}

impl Control {
    pub fn new(queues: Vec<Arc<CommandQueue>>) -> Control {
        Control { queues }
    }

    /// Tracking workers (0 when the mode tracks nothing).
    pub fn workers(&self) -> usize {
        self.queues.len()
    }

    /// An error unless the mode tracks connections.
    pub fn check(&self) -> Result<(), String> {
        if self.queues.is_empty() {
            Err("this forward mode tracks no connections (use conntrack or firewall)".into())
        } else {
            Ok(())
        }
    }

    fn send(&self, worker: usize, request: Request) -> Result<Arc<Replies>, String> {
        // A listing's pages: as many as may wait in the reply queue, and
        // one being filled.
        let pages = if matches!(request, Request::List { .. }) {
            REPLY_DEPTH + 1
        } else {
            0
        };
        let reply = Arc::new(Replies::new(pages));
        let cmd = Command {
            request,
            reply: Arc::clone(&reply),
        };
        let queue = &self.queues[worker].0;
        let deadline = Instant::now() + STALL;
        let mut cmd = Some(cmd);
        while let Some(c) = cmd.take() {
            if let Err(back) = queue.push(c) {
                if Instant::now() >= deadline {
                    return Err(format!("worker {worker} is not taking commands"));
                }
                std::thread::sleep(Duration::from_micros(200));
                cmd = Some(back);
            }
        }
        Ok(reply)
    }

    /// The next reply, waiting as long as the worker makes progress.
    fn next(worker: usize, reply: &Replies) -> Result<Reply, String> {
        let deadline = Instant::now() + STALL;
        let mut pause = Duration::from_micros(10);
        loop {
            if let Some(r) = reply.queue.pop() {
                return match r {
                    Reply::Error(e) => Err(e),
                    r => Ok(r),
                };
            }
            if Instant::now() >= deadline {
                return Err(format!("worker {worker} did not answer"));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Reads a walk's slices until its last, handing each to `slice` (its
    /// connections, how many it deleted, the worker's clock and where the
    /// walk goes on); the page buffers go back to the worker.
    fn slices(
        worker: usize,
        reply: &Replies,
        mut slice: impl FnMut(&[ListedConn], usize, u64, Cursor),
    ) -> Result<(), String> {
        loop {
            let Reply::Slice {
                conns,
                deleted,
                now,
                next,
                last,
            } = Control::next(worker, reply)?
            else {
                return Err("unexpected reply".into());
            };
            slice(&conns, deleted, now, next);
            reply.recycle(conns);
            if last {
                return Ok(());
            }
        }
    }

    /// Every connection `filter` selects, worker by worker, each given to
    /// `each` with its worker's clock; returns how many.
    pub fn list(
        &self,
        filter: &Arc<ConnFilter>,
        mut each: impl FnMut(&ListedConn, u64),
    ) -> Result<usize, String> {
        self.check()?;
        let mut n = 0;
        for w in 0..self.workers() {
            let filter = Arc::clone(filter);
            let max = usize::MAX;
            let reply = self.send(
                w,
                Request::List {
                    filter,
                    from: 0,
                    max,
                },
            )?;
            Control::slices(w, &reply, |conns, _, now, _| {
                n += conns.len();
                conns.iter().for_each(|c| each(c, now));
            })?;
        }
        Ok(n)
    }

    /// One page of at most `max` connections of worker `worker`'s table
    /// from slot `from` (telemetry's cursor).
    pub fn page(&self, worker: usize, from: usize, max: usize) -> Result<Page, String> {
        self.check()?;
        let filter = Arc::new(ConnFilter::default());
        let reply = self.send(worker, Request::List { filter, from, max })?;
        let mut page = Page {
            conns: Vec::new(),
            now: 0,
            next: None,
        };
        Control::slices(worker, &reply, |conns, _, now, next| {
            page.conns.extend_from_slice(conns);
            page.now = now;
            page.next = next;
        })?;
        Ok(page)
    }

    /// Deletes what `filter` selects on every worker (all at once);
    /// returns how many.
    pub fn delete(&self, filter: &Arc<ConnFilter>) -> Result<usize, String> {
        self.check()?;
        let replies = (0..self.workers())
            .map(|w| {
                let filter = Arc::clone(filter);
                self.send(w, Request::Delete { filter })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut n = 0;
        for (w, reply) in replies.iter().enumerate() {
            Control::slices(w, reply, |_, deleted, _, _| n += deleted)?;
        }
        Ok(n)
    }

    /// Every worker's pending expectations, with that worker's clock.
    pub fn expectations(&self) -> Result<Vec<(Expectation, u64)>, String> {
        self.check()?;
        let mut all = Vec::new();
        for w in 0..self.workers() {
            let reply = self.send(w, Request::Expectations)?;
            if let Reply::Expectations { list, now } = Control::next(w, &reply)? {
                all.extend(list.into_iter().map(|e| (e, now)));
            }
        }
        Ok(all)
    }

    /// Each worker's tracker counters, and how long its command slices
    /// took.
    pub fn stats(&self) -> Result<Vec<(Stats, SliceTimes)>, String> {
        self.check()?;
        (0..self.workers())
            .map(|w| {
                let reply = self.send(w, Request::Stats)?;
                match Control::next(w, &reply)? {
                    Reply::Stats(s, t) => Ok((s, t)),
                    _ => Err("unexpected reply".into()),
                }
            })
            .collect()
    }

    /// Sends `request` (made per worker) to every worker; the sum of what
    /// they changed.
    pub fn each(&self, mut request: impl FnMut(usize) -> Request) -> Result<usize, String> {
        self.check()?;
        let replies = (0..self.workers())
            .map(|w| self.send(w, request(w)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut n = 0;
        for (w, reply) in replies.iter().enumerate() {
            if let Reply::Done(k) = Control::next(w, reply)? {
                n += k;
            }
        }
        Ok(n)
    }
}
