//! Connection tracking after Linux's `nf_conntrack` and the seed article
//! (`shared/seed`): sans-IO and free of DPDK. The caller passes packets
//! and the time in, and gets verdicts out.
//!
//! One [`Shard`] is the tracker of one worker: it owns its table and is
//! never shared. A packet goes through two steps, as in netfilter:
//!
//! - **ingress** ([`Shard::ingress`], the PREROUTING hook): the tuple is
//!   looked up; on a miss a connection is created *unconfirmed*, outside the
//!   table, and an [`Unconfirmed`] token is handed back; the protocol
//!   tracker updates state and timeout; the packet gets its [`CtInfo`].
//! - **confirm** ([`Shard::confirm`], the POSTROUTING hook): the token is
//!   spent to insert both directions and set CONFIRMED. A packet dropped in
//!   between gives its token to [`Shard::discard`], so no unconfirmed
//!   connection outlives its packet; [`Shard::reap_unconfirmed`] is the
//!   backstop at the end of a burst.
//!
//! Time is whatever clock the caller uses, in nanoseconds. Expired entries
//! are never reported as found and are removed by bounded work
//! ([`Shard::gc`]) or when a lookup meets them.
//!
//! IP fragments are reassembled in front of the shard ([`Defrag`], as
//! Linux's `nf_defrag`), so the shard sees whole datagrams; a fragment
//! given to it directly is INVALID if it is a later one, and tracked by
//! its transport header if it is the first.
//!
//! Where this differs from Linux (the README lists it for users): the
//! `found` counter counts accepted
//! packets of existing connections, so the four packet counters partition
//! the packets; no NAT sequence adjustment yet. As in Linux, ICMPv6
//! neighbour discovery and MLD are UNTRACKED, and a TCP packet that cannot
//! open a connection (a FIN, an RST) creates none and is INVALID.

#![forbid(unsafe_code)]

mod classify;
mod conn;
mod defrag;
mod expect;
mod ftp_nat;
mod helper;
mod icmp;
mod nat;
mod selfcheck;
mod seqadj;
pub mod steering;
mod table;
mod tcp;
mod timeouts;
mod tuple;
mod udp;

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::wire::{Addr, L3, PROTO_TCP};
use helper::FtpState;

pub use classify::Classified;
use classify::{Early, L4};
pub use conn::{Conn, ConnLine, EventLine, ProtoState, Status};
pub use defrag::{
    run_fragment_sequence, Defrag, DefragConfig, DefragStats, FragHeader, HeldFragment, Push,
};
use expect::Ledger;
pub use expect::{
    ExpectFull, ExpectStats, Expectation, Expectations, FollowNat, MasterRef, MAX_PER_MASTER,
};
pub use ftp_nat::PayloadEdit;
pub use helper::{Helper, HelperConfig};
use icmp::{icmp_opens, icmp_reply_type};
pub use nat::{after_dnat, invert, rewrite, rewrite_icmp_error, Manip, NatError, NatRange};
pub use selfcheck::run_byte_sequence;
pub use seqadj::SeqAdj;
pub use table::{ConnTable, Region, Slot, Swept};
pub use tcp::{Segment, TcpConfig, TcpConn, TcpPeer, TcpState, TcpVerdict};
pub use timeouts::{TcpTimeouts, Timeouts};
pub use tuple::{proto_name, Dir, HashKey, Tuple};

/// One second in the tracker's clock (nanoseconds).
pub const SEC: u64 = 1_000_000_000;

/// Cache lines of one connection (`Conn` is 64-byte aligned), and those a
/// packet of a flow other than TCP reads (see `Conn`'s layout).
const CONN_LINES: usize = std::mem::size_of::<Conn>().div_ceil(64);
const CONN_LINES_NOT_TCP: usize = std::mem::offset_of!(Conn, proto).div_ceil(64);

/// UDP replies later than this after the first packet make a stream.
const UDP_STREAM_AFTER: u64 = 2 * SEC;

/// What the receiving NIC said of a packet's checksums: the IPv4 header's
/// (DPDK's `RTE_MBUF_F_RX_IP_CKSUM_*`) and the transport's
/// (`RTE_MBUF_F_RX_L4_CKSUM_*`), each on its own. A NIC that verified the
/// transport checksum has said nothing of the IP header (DPDK's PMDs set
/// the two flags independently), so each checksum the NIC left `Unknown`
/// is checked in software when `Config::checksum` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxChecksum {
    pub ip: Checked,
    pub l4: Checked,
}

impl RxChecksum {
    /// Nothing verified: software checks both.
    pub const UNKNOWN: RxChecksum = RxChecksum {
        ip: Checked::Unknown,
        l4: Checked::Unknown,
    };
}

/// One checksum's verdict from the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Unknown,
    Good,
    Bad,
}

impl Checked {
    /// The NIC's verdict, or `software`'s where it gave none.
    #[inline(always)]
    fn or_else(self, software: impl FnOnce() -> bool) -> bool {
        match self {
            Checked::Good => true,
            Checked::Bad => false,
            Checked::Unknown => software(),
        }
    }
}

/// What ingress concluded about a packet (`enum ip_conntrack_info`, plus
/// the two iptables states that carry no connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtInfo {
    New,
    Established,
    Related,
    EstablishedReply,
    RelatedReply,
    Invalid,
    Untracked,
}

impl CtInfo {
    /// Every value, in declaration (and counter index) order.
    pub const ALL: [CtInfo; 7] = [
        CtInfo::New,
        CtInfo::Established,
        CtInfo::Related,
        CtInfo::EstablishedReply,
        CtInfo::RelatedReply,
        CtInfo::Invalid,
        CtInfo::Untracked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CtInfo::New => "NEW",
            CtInfo::Established => "ESTABLISHED",
            CtInfo::Related => "RELATED",
            CtInfo::EstablishedReply => "ESTABLISHED_REPLY",
            CtInfo::RelatedReply => "RELATED_REPLY",
            CtInfo::Invalid => "INVALID",
            CtInfo::Untracked => "UNTRACKED",
        }
    }
}

/// Tracker settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Connections this shard holds at most (unconfirmed ones included).
    pub max: usize,
    pub tcp: TcpConfig,
    pub timeouts: Timeouts,
    /// Verify transport checksums (`nf_conntrack_checksum`).
    pub checksum: bool,
    /// Touch the memory of the table and its side arrays at construction,
    /// so page faults happen then and not on the packet path.
    pub prefault: bool,
    /// Called with each large region of the table before it is touched, so
    /// the owner can advise the kernel (huge pages); this module makes no
    /// system calls itself.
    pub advise_memory: Option<fn(Region<'_>)>,
    /// Which helpers serve which ports.
    pub helpers: HelperConfig,
    /// Expectations a shard's own set holds at most (`Shard::new`; shards
    /// made with `Shard::with_expectations` share the caller's set).
    pub expect_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max: 65536,
            tcp: TcpConfig::default(),
            timeouts: Timeouts::default(),
            checksum: false,
            prefault: true,
            advise_memory: None,
            helpers: HelperConfig::default(),
            expect_max: 4096,
        }
    }
}

/// Counters, named as `conntrack -S` names them. Every packet given to
/// ingress counts once in exactly one of `found`, `new`, `invalid` and
/// `ignore`; the others count events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets of an existing connection (RELATED ICMP errors included).
    pub found: u64,
    /// Packets that created a connection.
    pub new: u64,
    /// Packets marked INVALID.
    pub invalid: u64,
    /// Packets not tracked (not IP, or UNTRACKED).
    pub ignore: u64,
    /// Connections confirmed into the table.
    pub insert: u64,
    /// Confirms refused: the tuple was taken meanwhile (TCP).
    pub insert_failed: u64,
    /// New connections refused: table full and nothing to early-drop.
    pub drop: u64,
    /// Connections evicted to make room: by a new connection finding the
    /// table full, or by gc past 95% full (Linux counts only the first
    /// here; ctfwd counts both, so the counter says what a flood cost).
    pub early_drop: u64,
    /// INVALID packets that were malformed (bad headers or checksums).
    pub error: u64,
    /// Connections removed on timeout.
    pub expired: u64,
    /// Confirms that found the same tuple confirmed meanwhile and joined it.
    pub clash_resolve: u64,
    /// TCP connections deleted to be reopened by a new SYN.
    pub search_restart: u64,
    /// Connections deleted by their tracker (an RST with no reply).
    pub delete: u64,
    /// Unconfirmed connections reclaimed because nobody confirmed or
    /// discarded them (a caller bug; should stay 0).
    pub unconfirmed_reaped: u64,
    /// Helper commands that could not be used (malformed, cut, out of
    /// range, FTP bounce): no expectation.
    pub helper_refused: u64,
}

impl Stats {
    /// (name, value) pairs in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("found", self.found),
            ("new", self.new),
            ("invalid", self.invalid),
            ("ignore", self.ignore),
            ("insert", self.insert),
            ("insert_failed", self.insert_failed),
            ("drop", self.drop),
            ("early_drop", self.early_drop),
            ("error", self.error),
            ("expired", self.expired),
            ("clash_resolve", self.clash_resolve),
            ("search_restart", self.search_restart),
            ("delete", self.delete),
            ("unconfirmed_reaped", self.unconfirmed_reaped),
            ("helper_refused", self.helper_refused),
        ]
    }
}

/// A connection handle: its slot and id (the id tells a reused slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub slot: Slot,
    pub id: u32,
}

/// A connection created at ingress and not yet confirmed. Only
/// [`Shard::confirm`] and [`Shard::discard`] take it, by value, so a
/// connection is confirmed at most once and only while unconfirmed.
#[must_use = "an unconfirmed connection must be confirmed or discarded"]
#[derive(Debug, PartialEq, Eq)]
pub struct Unconfirmed {
    slot: Slot,
    gen: u32,
}

/// The result of ingress for one packet.
#[derive(Debug)]
pub struct Verdict {
    pub ctinfo: CtInfo,
    /// The connection the packet belongs to (None when INVALID/UNTRACKED).
    pub conn: Option<ConnRef>,
    /// Why the packet is INVALID or UNTRACKED.
    pub reason: Option<&'static str>,
    /// Set when the packet created a connection: confirm it at egress.
    pub unconfirmed: Option<Unconfirmed>,
    /// The connection's status as ingress left it (`ct status` rules;
    /// NAT bound to a new connection shows here too).
    pub status: Status,
    /// The connection has a helper for egress to run. Noted at ingress,
    /// which read the connection anyway, so that egress touches nothing
    /// more for the common, helperless connection.
    help: bool,
}

impl Verdict {
    /// Whether egress will run a helper on the packet.
    pub fn helped(&self) -> bool {
        self.help
    }

    /// The direction of the packet in its connection.
    pub fn dir(&self) -> Dir {
        match self.ctinfo {
            CtInfo::EstablishedReply | CtInfo::RelatedReply => Dir::Reply,
            _ => Dir::Original,
        }
    }

    /// Whether the packet's connection is translated (SNAT or DNAT).
    pub fn translated(&self) -> bool {
        self.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) != 0
    }

    fn invalid(reason: &'static str) -> Verdict {
        Verdict {
            ctinfo: CtInfo::Invalid,
            conn: None,
            reason: Some(reason),
            unconfirmed: None,
            status: Status::default(),
            help: false,
        }
    }
}

/// Why a confirm did not insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmError {
    /// The tuple was confirmed by another packet meanwhile and the protocol
    /// does not allow joining it (TCP): drop the packet.
    InsertFailed,
    /// The token was reaped before it was confirmed.
    Stale,
}

/// What a connection needs only when a helper is involved, kept beside
/// the slab so the hot connection stays three cache lines.
#[derive(Debug, Clone, Copy, Default)]
struct Aux {
    helper: Option<Helper>,
    master: Option<MasterRef>,
    ftp: FtpState,
    /// Sequence adjustment per direction, once NAT changed a segment's
    /// length (SEQ_ADJUST).
    seqadj: [SeqAdj; 2],
}

/// The connection tracker of one worker.
pub struct Shard {
    table: ConnTable,
    cfg: Config,
    stats: Stats,
    /// Connections created and not yet confirmed, with the hashes of their
    /// two tuples: a later packet of the same burst finds them by these,
    /// and confirm inserts with them.
    unconfirmed: Vec<(Slot, [u64; 2])>,
    next_id: u32,
    /// This shard's number, in its connections' `MasterRef`s.
    id: u16,
    expectations: Arc<Expectations>,
    /// The expectations this shard's helpers made, by master.
    ledger: Ledger,
    /// Per slot, grown with the slab within its reserved capacity.
    aux: Vec<Aux>,
    /// When `gc` next sweeps expired expectations.
    next_expect_sweep: u64,
    /// With several workers, which tuples land on this one: NAT chooses
    /// reply tuples that do.
    steering: Option<steering::Steering>,
    /// Keys NAT's address choice.
    nat_key: HashKey,
    /// NAT's random port offsets (xorshift64).
    rng: u64,
    /// A payload change the FTP helper made of the packet egress just saw
    /// (NAT rewriting an announcement), for the data plane to apply.
    edit: Option<PayloadEdit>,
    /// Connection events, when asked for (`enable_events`).
    events: Option<EventLog>,
}

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
    pub conn: Conn,
    pub at: u64,
}

/// Events waiting for the caller, in a buffer reserved once: when it is
/// full, events are counted as lost rather than kept.
struct EventLog {
    buf: Vec<CtEvent>,
    lost: u64,
}

impl EventLog {
    fn push(&mut self, kind: CtEventKind, conn: &Conn, at: u64) {
        if self.buf.len() < self.buf.capacity() {
            self.buf.push(CtEvent {
                kind,
                conn: *conn,
                at,
            });
        } else {
            self.lost += 1;
        }
    }
}

/// Notes a connection's end in `events`, if they are kept.
fn note_destroy(events: &mut Option<EventLog>, conn: &Conn, now: u64) {
    if let Some(log) = events {
        log.push(CtEventKind::Destroy, conn, now);
    }
}

impl Shard {
    /// A shard with its own expectation set.
    pub fn new(cfg: Config) -> Shard {
        let set = Arc::new(Expectations::new(cfg.expect_max));
        Shard::with_expectations(cfg, 0, set)
    }

    /// Shard number `id` of several, sharing one expectation set.
    pub fn with_expectations(cfg: Config, id: u16, expectations: Arc<Expectations>) -> Shard {
        let mut aux = Vec::with_capacity(cfg.max);
        if cfg.prefault {
            table::prefault_spare(&mut aux, Aux::default());
        }
        Shard {
            table: ConnTable::new(cfg.max, cfg.prefault, cfg.advise_memory),
            cfg,
            stats: Stats::default(),
            unconfirmed: Vec::with_capacity(1024),
            next_id: 1,
            id,
            expectations,
            ledger: Ledger::new(cfg.expect_max),
            aux,
            next_expect_sweep: 0,
            steering: None,
            nat_key: HashKey::random(),
            rng: std::collections::hash_map::RandomState::new().hash_one(id) | 1,
            edit: None,
            events: None,
        }
    }

    /// Keeps connection events (creation at confirm, deletion however it
    /// happens), up to `capacity` between two `drain_events`; more are
    /// counted as lost.
    pub fn enable_events(&mut self, capacity: usize) {
        self.events = Some(EventLog {
            buf: Vec::with_capacity(capacity.max(1)),
            lost: 0,
        });
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

    /// The payload change the helper made of the last packet egress saw
    /// (an FTP announcement rewritten for NAT): the caller applies it to
    /// the packet, after the address and sequence rewrites.
    pub fn take_edit(&mut self) -> Option<PayloadEdit> {
        self.edit.take()
    }

    /// A connection's sequence adjustment, by direction, once NAT changed
    /// the length of one of its segments.
    #[inline]
    pub fn seqadj(&self, r: ConnRef) -> Option<[SeqAdj; 2]> {
        let c = self.table.get(r.slot);
        if c.id != r.id || !c.status.has(Status::SEQ_ADJUST) {
            return None;
        }
        self.aux.get(r.slot.0 as usize).map(|a| a.seqadj)
    }

    /// Tells the shard which tuples land on its worker (several workers).
    pub fn set_steering(&mut self, s: steering::Steering) {
        self.steering = Some(s);
    }

    /// Binds a NAT mapping to the connection the packet of `v` created
    /// (`nf_nat_setup_info`): its reply tuple becomes the inverse of the
    /// translated tuple, and SRC_NAT or DST_NAT is set if anything
    /// changed. Source NAT after destination NAT composes, as in Linux.
    /// A packet that created no connection is left alone (NAT binds on a
    /// connection's first packet only).
    /// A manip already bound (an expected connection following its
    /// master) is left as it is, as Linux's nat hooks skip a connection
    /// whose manip is done.
    pub fn nat(&mut self, v: &mut Verdict, manip: Manip, range: &NatRange) -> Result<(), NatError> {
        let Some(slot) = v.unconfirmed.as_ref().map(|u| u.slot) else {
            return Ok(());
        };
        if self.table.get(slot).status.has(nat_done(manip)) {
            return Ok(());
        }
        v.status = self.bind_nat(slot, manip, range)?;
        Ok(())
    }

    /// `nf_nat_setup_info` on the unconfirmed connection in `slot`;
    /// returns its status.
    fn bind_nat(&mut self, slot: Slot, manip: Manip, range: &NatRange) -> Result<Status, NatError> {
        let Shard {
            table,
            unconfirmed,
            steering,
            nat_key,
            rng,
            ..
        } = self;
        let cur = invert(&table.get(slot).tuples[1]);
        // `nf_nat_used_tuple`: in the table, or taken by another new
        // connection of this burst (hashes compared before tuples).
        let used = |reply: &Tuple| {
            let h = table.hash(reply);
            table.lookup(reply, h).is_some()
                || unconfirmed.iter().any(|&(s, hashes)| {
                    s != slot && hashes.contains(&h) && table.get(s).tuples.contains(reply)
                })
        };
        let mut random = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        let new = nat::Chooser {
            original: table.get(slot).tuples[0],
            used: &used,
            steering: steering.as_ref(),
            key: nat_key,
            random: &mut random,
        }
        .unique_tuple(&cur, range, manip)?;
        let reply = invert(&new);
        let reply_hash = table.hash(&reply);
        let conn = table.get_mut(slot);
        conn.tuples[1] = reply;
        if new != cur {
            conn.status.set(match manip {
                Manip::Src => Status::SRC_NAT,
                Manip::Dst => Status::DST_NAT,
            });
        }
        conn.status.set(nat_done(manip));
        let status = conn.status;
        if let Some(e) = unconfirmed.iter_mut().find(|(s, _)| *s == slot) {
            e.1[1] = reply_hash;
        }
        Ok(status)
    }

    /// An expected connection of a translated master is translated as
    /// Linux's `nf_nat_follow_master` does: source, then destination (and
    /// the port the master's side meant). A mapping that cannot be made
    /// leaves that manip to the rules.
    fn follow_master(&mut self, slot: Slot, n: &FollowNat) {
        let single = |a: Addr, port: Option<u16>| NatRange {
            min_addr: a,
            max_addr: a,
            ports: port.map(|p| (p, p)),
            persistent: false,
            random: false,
        };
        let _ = self.bind_nat(slot, Manip::Src, &single(n.src, None));
        let _ = self.bind_nat(slot, Manip::Dst, &single(n.dst, n.dport));
    }

    /// A translated connection's tuples: of direction `dir`, then of the
    /// other (what an ICMP error about it is rewritten from).
    pub fn nat_tuples(&self, r: ConnRef, dir: Dir) -> Option<(Tuple, Tuple)> {
        let c = self.conn(r)?;
        if c.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) == 0 {
            return None;
        }
        Some((*c.tuple(dir), *c.tuple(dir.other())))
    }

    /// The tuple a packet of connection `r` in direction `dir` must carry
    /// when it leaves (`nf_nat_packet`): the inverse of the other
    /// direction's; `None` if the connection is not translated.
    ///
    /// Meant for the packets of a burst whose ingress gave `r`: it reads
    /// the slot without the liveness array (one cache line less per
    /// packet). A connection a later packet of the burst deleted still
    /// has its tuples there, which are this packet's; a slot reused since
    /// has another id.
    #[inline]
    pub fn nat_target(&self, r: ConnRef, dir: Dir) -> Option<Tuple> {
        let c = self.table.get(r.slot);
        if c.id != r.id {
            return None;
        }
        if c.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) == 0 {
            return None;
        }
        let other = match dir {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        };
        Some(invert(c.tuple(other)))
    }

    pub fn expectations(&self) -> &Expectations {
        &self.expectations
    }

    /// Announces an expected connection of one of this shard's masters (as
    /// a helper does, `nf_ct_expect_related`), subject to
    /// `max_per_master` (at most `MAX_PER_MASTER`) and the set's size.
    pub fn expect(&mut self, e: Expectation, max_per_master: usize) -> Result<(), ExpectFull> {
        debug_assert_eq!(
            e.master.shard, self.id,
            "a shard expects for its own masters"
        );
        self.ledger.expect(&self.expectations, e, max_per_master)
    }

    /// The master of an expected connection.
    pub fn master(&self, r: ConnRef) -> Option<MasterRef> {
        self.conn(r)?;
        self.aux.get(r.slot.0 as usize)?.master
    }

    /// Deletes a connection, and with it the expectations it announced.
    fn delete_conn(&mut self, slot: Slot, now: u64) {
        let conn = self.table.get(slot);
        self.ledger.forget_master(&self.expectations, conn);
        note_destroy(&mut self.events, conn, now);
        self.table.delete(slot);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    /// The connection behind a handle, if it still exists.
    pub fn conn(&self, r: ConnRef) -> Option<&Conn> {
        if !self.table.is_live(r.slot) {
            return None;
        }
        let c = self.table.get(r.slot);
        (c.id == r.id).then_some(c)
    }

    /// Counts a frame that is not IP (or is UNTRACKED by policy).
    pub fn ignore(&mut self) {
        self.stats.ignore += 1;
    }

    /// Counts a frame whose link or IP header could not be parsed: INVALID.
    pub fn malformed(&mut self) {
        self.stats.invalid += 1;
        self.stats.error += 1;
    }

    /// Ingress for one classified packet (`nf_conntrack_in`).
    #[inline]
    pub fn ingress(&mut self, c: &Classified<'_>, now: u64) -> Verdict {
        let v = match c.l4 {
            Err(Early::Untracked(reason)) => {
                self.stats.ignore += 1;
                return Verdict {
                    ctinfo: CtInfo::Untracked,
                    conn: None,
                    reason: Some(reason),
                    unconfirmed: None,
                    status: Status::default(),
                    help: false,
                };
            }
            Err(Early::Invalid { reason, malformed }) => {
                if malformed {
                    self.stats.error += 1;
                }
                Verdict::invalid(reason)
            }
            Ok(L4::IcmpError(inner)) => self.icmp_error(c, inner, now),
            Ok(ref l4) => self.resolve_and_track(c, l4, now),
        };
        match v.ctinfo {
            CtInfo::Invalid => self.stats.invalid += 1,
            CtInfo::New if v.unconfirmed.is_some() => self.stats.new += 1,
            _ => self.stats.found += 1,
        }
        v
    }

    /// Looks the connection up or creates it (`resolve_normal_ct`), then
    /// lets the protocol tracker judge the packet.
    #[inline]
    fn resolve_and_track(&mut self, c: &Classified<'_>, l4: &L4<'_>, now: u64) -> Verdict {
        // A TCP reopen deletes the old connection and resolves once more.
        for _ in 0..2 {
            let (slot, dir, fresh) = match self.lookup(&c.tuple, c.hash, now) {
                Some((slot, dir)) => (slot, dir, false),
                None => match self.unconfirmed_match(&c.tuple, c.hash) {
                    Some((slot, dir)) => (slot, dir, false),
                    None => match self.init_conntrack(c, l4, now) {
                        Ok(slot) => (slot, Dir::Original, true),
                        Err(reason) => return Verdict::invalid(reason),
                    },
                },
            };
            match self.track_l4(slot, dir, c, l4, now) {
                Track::Accept => return self.accept(slot, dir, fresh),
                Track::Ignore => return self.ctinfo_only(slot, dir, fresh),
                Track::Kill => {
                    let mut v = self.accept(slot, dir, false);
                    // Gone: no helper may announce expectations for it.
                    v.help = false;
                    if self.table.is_unconfirmed(slot) {
                        self.drop_unconfirmed(slot);
                    } else {
                        self.delete_conn(slot, now);
                    }
                    self.stats.delete += 1;
                    return v;
                }
                Track::Invalid(reason) => {
                    if fresh {
                        self.drop_unconfirmed(slot);
                    }
                    return Verdict::invalid(reason);
                }
                Track::Reopen if self.table.is_unconfirmed(slot) => {
                    return Verdict::invalid("tcp-reopen-unconfirmed");
                }
                Track::Reopen => {
                    self.delete_conn(slot, now);
                    self.stats.search_restart += 1;
                }
            }
        }
        Verdict::invalid("tcp-reopen-loop")
    }

    /// A lookup that treats an expired entry as absent and removes it.
    #[inline]
    fn lookup(&mut self, t: &Tuple, hash: u64, now: u64) -> Option<(Slot, Dir)> {
        let (slot, dir) = self.table.lookup(t, hash)?;
        if self.table.get(slot).deadline <= now {
            self.delete_conn(slot, now);
            self.stats.expired += 1;
            return None;
        }
        Some((slot, dir))
    }

    /// The connection an earlier packet of this burst created for the same
    /// original tuple and that is not confirmed yet. The pipeline looks up
    /// a whole burst before it confirms any of it, so without this a new
    /// flow's second packet in a burst would start a second connection
    /// (Linux, which finishes each packet before the next, never meets an
    /// unconfirmed entry this way). Only misses pay for it: a scan of the
    /// burst's new connections by hash.
    #[inline]
    fn unconfirmed_match(&self, t: &Tuple, hash: u64) -> Option<(Slot, Dir)> {
        self.unconfirmed.iter().rev().find_map(|&(slot, h)| {
            let tuples = &self.table.get(slot).tuples;
            [Dir::Original, Dir::Reply]
                .into_iter()
                .find(|d| h[d.index()] == hash && tuples[d.index()] == *t)
                .map(|d| (slot, d))
        })
    }

    /// Creates an unconfirmed connection for a packet that matched nothing
    /// (`init_conntrack`), if its protocol lets it start one.
    fn init_conntrack(
        &mut self,
        c: &Classified<'_>,
        l4: &L4<'_>,
        now: u64,
    ) -> Result<Slot, &'static str> {
        let orig = c.tuple;
        let (reply, proto) = match l4 {
            L4::Tcp(seg) => {
                let tcp = TcpConn::new(seg, &self.cfg.tcp).ok_or("tcp-cannot-start-connection")?;
                (orig.swapped(), ProtoState::Tcp(tcp))
            }
            L4::Udp(_) => (
                orig.swapped(),
                ProtoState::Udp {
                    stream_after: now + UDP_STREAM_AFTER,
                },
            ),
            L4::IcmpQuery => {
                let v6 = c.tuple.l3() == L3::V6;
                let ty = (orig.dport >> 8) as u8;
                // Only requests open a connection (Linux's valid_new).
                if !icmp_opens(ty, v6) {
                    return Err("icmp-not-a-request");
                }
                let mut r = orig.swapped();
                r.sport = orig.sport;
                r.dport = u16::from(icmp_reply_type(ty, v6).ok_or("icmp-not-a-request")?) << 8
                    | (orig.dport & 0xff);
                (r, ProtoState::Other)
            }
            L4::Other | L4::IcmpError(_) => (orig.swapped(), ProtoState::Other),
        };
        let conn = Conn {
            tuples: [orig, reply],
            status: Status::default(),
            id: self.next_id,
            deadline: now,
            proto,
            packets: [0; 2],
            bytes: [0; 2],
        };
        let slot = match self.table.alloc(conn) {
            Some(s) => s,
            None => {
                let (set, ledger, events) =
                    (&self.expectations, &mut self.ledger, &mut self.events);
                if self.table.early_drop(c.hash, now, |c| {
                    ledger.forget_master(set, c);
                    note_destroy(events, c, now);
                }) {
                    self.stats.early_drop += 1;
                } else {
                    self.stats.drop += 1;
                    return Err("table-full");
                }
                self.table.alloc(conn).ok_or("table-full")?
            }
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let reply_hash = self.table.hash(&self.table.get(slot).tuples[1]);
        self.unconfirmed.push((slot, [c.hash, reply_hash]));
        self.attach_helper_or_master(slot, now);
        Ok(slot)
    }

    /// A new connection either fulfils an expectation (EXPECTED, linked to
    /// its master) or may get a helper, found by its reply tuple's source
    /// port, L4 and L3 as the seed article describes.
    fn attach_helper_or_master(&mut self, slot: Slot, now: u64) {
        let i = slot.0 as usize;
        if self.aux.len() <= i {
            // Within the capacity reserved for `max` slots: no allocation.
            self.aux.resize(i + 1, Aux::default());
        }
        let mut aux = Aux::default();
        if !self.expectations.is_empty() {
            let original = self.table.get(slot).tuples[0];
            if let Some(e) = self.expectations.take(&original, now) {
                self.table.get_mut(slot).status.set(Status::EXPECTED);
                aux.master = Some(e.master);
                if let Some(n) = e.nat {
                    self.follow_master(slot, &n);
                }
            }
        }
        let conn = self.table.get_mut(slot);
        if aux.master.is_none() {
            let reply = &conn.tuples[1];
            aux.helper = self.cfg.helpers.lookup(reply.proto, reply.sport);
            if aux.helper.is_some() {
                conn.status.set(Status::HELPER);
            }
        }
        self.aux[i] = aux;
    }

    /// The protocol tracker's verdict, with timeout and accounting applied
    /// (`nf_conntrack_handle_packet`).
    #[inline]
    fn track_l4(
        &mut self,
        slot: Slot,
        dir: Dir,
        c: &Classified<'_>,
        l4: &L4<'_>,
        now: u64,
    ) -> Track {
        let cfg = &self.cfg;
        let conn = self.table.get_mut(slot);
        let seen_reply = conn.status.has(Status::SEEN_REPLY);
        let timeout = match (&mut conn.proto, l4) {
            (ProtoState::Tcp(tcp), L4::Tcp(seg)) => {
                let assured = conn.status.has(Status::ASSURED);
                // The peer acknowledges data NAT shifted: its ACK is
                // taken back to the sender's numbers (`tcp_in_window`'s
                // receiver_offset).
                let ack_offset = match self.aux.get(slot.0 as usize) {
                    Some(a) if conn.status.has(Status::SEQ_ADJUST) => {
                        a.seqadj[dir.other().index()].offset(seg.hdr.ack.wrapping_sub(1))
                    }
                    _ => 0,
                };
                match tcp.packet(dir, seg, seen_reply, assured, ack_offset, &cfg.tcp) {
                    TcpVerdict::Accept { timeout, assured } => {
                        if assured {
                            conn.status.set(Status::ASSURED);
                        }
                        Some(timeout)
                    }
                    TcpVerdict::AcceptNoRefresh => None,
                    TcpVerdict::Ignore => return Track::Ignore,
                    TcpVerdict::Invalid { reason, shrink_to } => {
                        if let Some(s) = shrink_to {
                            conn.deadline = conn.deadline.min(now + u64::from(s) * SEC);
                        }
                        return Track::Invalid(reason);
                    }
                    TcpVerdict::Kill => {
                        account(conn, dir, c);
                        return Track::Kill;
                    }
                    TcpVerdict::Reopen => return Track::Reopen,
                }
            }
            (ProtoState::Udp { stream_after }, L4::Udp(_)) => Some(udp::packet(
                &mut conn.status,
                *stream_after,
                seen_reply,
                now,
                &cfg.timeouts,
            )),
            (ProtoState::Other, L4::IcmpQuery) if c.tuple.l3() == L3::V6 => {
                Some(cfg.timeouts.icmpv6)
            }
            (ProtoState::Other, L4::IcmpQuery) => Some(cfg.timeouts.icmp),
            (ProtoState::Other, L4::Other) => Some(cfg.timeouts.generic),
            // A tuple shared by two trackers cannot happen: the protocol is
            // part of the tuple.
            _ => return Track::Invalid("protocol-mismatch"),
        };
        if let Some(t) = timeout {
            conn.deadline = now + u64::from(t) * SEC;
        }
        account(conn, dir, c);
        Track::Accept
    }

    /// Builds the verdict of an accepted packet and notes a first reply.
    #[inline]
    fn accept(&mut self, slot: Slot, dir: Dir, fresh: bool) -> Verdict {
        let v = self.ctinfo_only(slot, dir, fresh);
        if dir == Dir::Reply {
            self.table.get_mut(slot).status.set(Status::SEEN_REPLY);
        }
        v
    }

    /// Linux's ctinfo rules: a reply-direction hit is ESTABLISHED_REPLY; an
    /// original-direction hit is ESTABLISHED once a reply was seen, else
    /// RELATED if the connection was expected, else NEW.
    #[inline]
    fn ctinfo_only(&mut self, slot: Slot, dir: Dir, fresh: bool) -> Verdict {
        let conn = self.table.get(slot);
        let ctinfo = match dir {
            Dir::Reply => CtInfo::EstablishedReply,
            Dir::Original if conn.status.has(Status::SEEN_REPLY) => CtInfo::Established,
            Dir::Original if conn.status.has(Status::EXPECTED) => CtInfo::Related,
            Dir::Original => CtInfo::New,
        };
        Verdict {
            ctinfo,
            conn: Some(ConnRef { slot, id: conn.id }),
            reason: None,
            unconfirmed: fresh.then(|| Unconfirmed {
                slot,
                gen: self.table.generation(slot),
            }),
            status: conn.status,
            help: conn.status.has(Status::HELPER),
        }
    }

    /// Egress: inserts both directions of the packet's new connection and
    /// sets CONFIRMED (`__nf_conntrack_confirm`). If the same tuple was
    /// confirmed meanwhile (two packets of one new flow in a burst), UDP,
    /// ICMP and other datagram flows join it, as Linux's clash resolution
    /// does; TCP fails with `InsertFailed` and the packet should be dropped.
    pub fn confirm(&mut self, u: Unconfirmed) -> Result<ConnRef, ConfirmError> {
        let slot = u.slot;
        if self.table.generation(slot) != u.gen || !self.table.is_unconfirmed(slot) {
            return Err(ConfirmError::Stale);
        }
        let hashes = self.forget_unconfirmed(slot);
        let inserted = match hashes {
            Some(h) => self.table.insert_hashed(slot, h),
            None => self.table.insert(slot),
        };
        let other = match inserted {
            Ok(()) => {
                self.stats.insert += 1;
                return Ok(ConnRef {
                    slot,
                    id: self.table.get(slot).id,
                });
            }
            Err(other) => other,
        };
        let conn = *self.table.get(slot);
        self.table.delete(slot);
        if conn.tuples[0].proto == PROTO_TCP {
            self.stats.insert_failed += 1;
            return Err(ConfirmError::InsertFailed);
        }
        self.stats.clash_resolve += 1;
        let o = self.table.get_mut(other);
        for d in 0..2 {
            o.packets[d] += conn.packets[d];
            o.bytes[d] += conn.bytes[d];
        }
        Ok(ConnRef {
            slot: other,
            id: o.id,
        })
    }

    /// Egress for one packet (the POSTROUTING hook): confirms the
    /// connection the packet created, then lets the connection's helper
    /// read the packet. Returns the packet's connection; `InsertFailed`
    /// means the packet should be dropped.
    pub fn egress(
        &mut self,
        v: &mut Verdict,
        c: &Classified<'_>,
        now: u64,
    ) -> Result<Option<ConnRef>, ConfirmError> {
        if let Some(u) = v.unconfirmed.take() {
            let slot = u.slot;
            let r = self.confirm(u)?;
            v.conn = Some(r);
            // Inserted, not joined to a connection confirmed meanwhile.
            if let (Some(log), true) = (self.events.as_mut(), r.slot == slot) {
                log.push(CtEventKind::New, self.table.get(slot), now);
            }
        }
        if let (true, Some(r)) = (v.help, v.conn) {
            self.help(r, v.ctinfo, c, now);
        }
        Ok(v.conn)
    }

    /// The packet that created this connection was dropped before egress:
    /// free the connection (Linux frees an unconfirmed conntrack with its skb).
    pub fn discard(&mut self, u: Unconfirmed) {
        if self.table.generation(u.slot) == u.gen && self.table.is_unconfirmed(u.slot) {
            self.drop_unconfirmed(u.slot);
        }
    }

    fn drop_unconfirmed(&mut self, slot: Slot) {
        let _ = self.forget_unconfirmed(slot);
        self.table.delete(slot);
    }

    /// Takes a connection off the unconfirmed list; returns its hashes.
    fn forget_unconfirmed(&mut self, slot: Slot) -> Option<[u64; 2]> {
        let i = self.unconfirmed.iter().rposition(|&(s, _)| s == slot)?;
        Some(self.unconfirmed.swap_remove(i).1)
    }

    /// Frees every connection still unconfirmed. Called at the end of each
    /// burst, it guarantees none survives its packet even if a token was
    /// lost; each one it frees is counted as `unconfirmed_reaped`.
    pub fn reap_unconfirmed(&mut self) -> usize {
        let n = self.unconfirmed.len();
        while let Some((slot, _)) = self.unconfirmed.pop() {
            self.table.delete(slot);
        }
        self.stats.unconfirmed_reaped += n as u64;
        n
    }

    /// Connections created but not yet confirmed.
    pub fn unconfirmed_count(&self) -> usize {
        self.unconfirmed.len()
    }

    /// Removes expired connections, and past 95% full the evictable ones
    /// (`ConnTable::gc`), looking at `budget` slots at most; returns how
    /// many it removed.
    pub fn gc(&mut self, now: u64, budget: usize) -> usize {
        let (set, ledger, events) = (&self.expectations, &mut self.ledger, &mut self.events);
        let swept = self.table.gc(now, budget, |c| {
            ledger.forget_master(set, c);
            note_destroy(events, c, now);
        });
        self.stats.expired += swept.expired as u64;
        self.stats.early_drop += swept.evicted as u64;
        // Expectations nobody used time out; this shard's own, swept once
        // a second.
        if now >= self.next_expect_sweep && !self.ledger.is_empty() {
            self.ledger.expire(&self.expectations, now);
            self.next_expect_sweep = now + SEC;
        }
        swept.expired + swept.evicted
    }

    /// The table as `conntrack -L` lines, one per connection.
    pub fn list(&self, now: u64) -> String {
        let mut s = String::new();
        for (_, conn) in self.table.iter() {
            s.push_str(&ConnLine { conn, now }.to_string());
            s.push('\n');
        }
        s
    }

    /// Finds a confirmed connection by either of its tuples.
    pub fn find(&self, t: &Tuple) -> Option<(ConnRef, Dir)> {
        let (slot, dir) = self.table.lookup(t, self.table.hash(t))?;
        Some((
            ConnRef {
                slot,
                id: self.table.get(slot).id,
            },
            dir,
        ))
    }
}

/// The status bit that says a manip was bound.
fn nat_done(manip: Manip) -> Status {
    match manip {
        Manip::Src => Status::SRC_NAT_DONE,
        Manip::Dst => Status::DST_NAT_DONE,
    }
}

/// What the protocol tracker decided, as the shard acts on it.
enum Track {
    Accept,
    Ignore,
    Invalid(&'static str),
    Kill,
    Reopen,
}

/// Per-direction packet and byte counters (`nf_ct_acct`); bytes are the IP
/// length, as Linux counts `skb->len`.
#[inline]
fn account(conn: &mut Conn, dir: Dir, c: &Classified<'_>) {
    conn.packets[dir.index()] += 1;
    conn.bytes[dir.index()] += u64::from(c.wire_len);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
