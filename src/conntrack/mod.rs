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

mod acct;
mod classify;
mod config;
mod conn;
mod defrag;
mod events;
mod expect;
mod ext;
mod ftp_nat;
mod helper;
mod icmp;
mod nat;
mod nat_bind;
mod ops;
mod records;
mod selfcheck;
mod seqadj;
mod stats;
pub mod steering;
mod table;
mod tcp;
mod timeouts;
mod track;
mod tuple;
mod udp;
mod unconfirmed;

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::wire::{Addr, L3, PROTO_TCP};

use acct::Acct;
pub use acct::Counters;
pub use classify::Classified;
use classify::{Early, L4};
pub use config::Config;
pub use conn::{Conn, ConnLine, Deadline, EventLine, ListedConn, ProtoState, Status, MAX_TIMEOUT};
pub use defrag::{
    run_fragment_sequence, Defrag, DefragConfig, DefragStats, FragHeader, HeldFragment, Push,
};
use events::EventLog;
pub use events::{CtEvent, CtEventKind};
use expect::Ledger;
pub use expect::{
    ExpectLine, ExpectRefused, ExpectStats, Expectation, Expectations, FollowNat, MasterRef,
    MAX_PER_MASTER,
};
use ext::{Ext, Exts};
pub use ftp_nat::PayloadEdit;
pub use helper::{Helper, HelperConfig};
use icmp::{icmp_opens, icmp_reply_type};
pub use nat::{invert, rewrite, rewrite_icmp_error, Manip, NatError, NatRange};
pub use ops::Cursor;
pub use selfcheck::run_byte_sequence;
pub use seqadj::SeqAdj;
pub use stats::Stats;
pub use table::{ConnTable, IndexKeys, Region, Slot, Swept};
pub use tcp::{Segment, TcpConfig, TcpConn, TcpPeer, TcpState, TcpVerdict};
pub use timeouts::{TcpTimeouts, Timeouts};
use track::Track;
pub use tuple::{proto_name, Dir, HashKey, Key, Tuple};
use unconfirmed::UnconfirmedList;

/// One second in the tracker's clock (nanoseconds).
pub const SEC: u64 = 1_000_000_000;

/// Bytes of a connection that a TCP packet reads (all of it), and that a
/// packet of another flow reads (see `Conn`'s layout).
const CONN_BYTES: usize = std::mem::size_of::<Conn>();
const CONN_BYTES_NOT_TCP: usize = std::mem::offset_of!(Conn, proto);

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
    gen: u16,
    /// Its place on the shard's unconfirmed list.
    at: u32,
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

/// The connection tracker of one worker.
pub struct Shard {
    table: ConnTable,
    cfg: Config,
    stats: Stats,
    /// Connections created and not yet confirmed, with the hashes of their
    /// two tuples: a later packet of the same burst finds them by these,
    /// and confirm inserts with them.
    unconfirmed: UnconfirmedList,
    next_id: u32,
    /// This shard's number, in its connections' `MasterRef`s.
    id: u16,
    expectations: Arc<Expectations>,
    /// The expectations this shard's helpers made, by master.
    ledger: Ledger,
    /// Extension records of the connections a helper is involved in.
    exts: Exts,
    /// Packet and byte counters, if kept (`Config::acct`).
    acct: Acct,
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

impl Shard {
    /// A shard with its own expectation set.
    pub fn new(cfg: Config) -> Shard {
        let set = Arc::new(Expectations::new(cfg.expect_max));
        Shard::with_expectations(cfg, 0, set)
    }

    /// Shard number `id` of several, sharing one expectation set.
    pub fn with_expectations(cfg: Config, id: u16, expectations: Arc<Expectations>) -> Shard {
        Shard {
            table: ConnTable::new(cfg.max, cfg.prefault, cfg.advise_memory),
            cfg,
            stats: Stats::default(),
            unconfirmed: UnconfirmedList::new(),
            next_id: 1,
            id,
            expectations,
            ledger: Ledger::new(cfg.expect_max),
            exts: Exts::new(cfg.max),
            acct: Acct::new(cfg.max, cfg.acct, cfg.prefault, cfg.advise_memory),
            next_expect_sweep: 0,
            steering: None,
            nat_key: HashKey::random(),
            rng: std::collections::hash_map::RandomState::new().hash_one(id) | 1,
            edit: None,
            events: None,
        }
    }

    pub fn expectations(&self) -> &Expectations {
        &self.expectations
    }

    /// Announces an expected connection of one of this shard's masters (as
    /// a helper does, `nf_ct_expect_related`), subject to
    /// `max_per_master` (at most `MAX_PER_MASTER`), other masters'
    /// expectations and the set's size.
    pub fn expect(&mut self, e: Expectation, max_per_master: usize) -> Result<(), ExpectRefused> {
        debug_assert_eq!(
            e.master.shard, self.id,
            "a shard expects for its own masters"
        );
        self.ledger.expect(&self.expectations, e, max_per_master)
    }

    /// The master of an expected connection.
    pub fn master(&self, r: ConnRef) -> Option<MasterRef> {
        self.conn(r)?;
        self.exts.of(r.slot)?.master
    }

    /// Deletes a connection, and with it the expectations it announced.
    fn delete_conn(&mut self, slot: Slot, now: u64) {
        let (table, mut teardown) = self.table_and_teardown();
        teardown.conn(slot, table.get(slot), &table.tuples(slot), now);
        table.delete(slot);
    }

    /// Frees a connection that was never confirmed: nobody saw it, so no
    /// event and no expectation can name it.
    fn free_unconfirmed(&mut self, slot: Slot) {
        self.exts.release(slot);
        self.table.delete(slot);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    /// Bytes of memory the connections take: the table, the extension
    /// records of those a helper is involved in, and the counters.
    pub fn memory(&self) -> usize {
        self.table.memory() + self.exts.memory() + self.acct.memory()
    }

    /// The connection behind a handle, if it still exists.
    pub fn conn(&self, r: ConnRef) -> Option<&Conn> {
        if !self.table.is_live(r.slot) {
            return None;
        }
        let c = self.table.get(r.slot);
        (c.id == r.id).then_some(c)
    }

    /// The tuples of the connection behind a handle, if it still exists.
    pub fn tuples(&self, r: ConnRef) -> Option<[Tuple; 2]> {
        self.conn(r)?;
        Some(self.table.tuples(r.slot))
    }

    /// A connection's counters, if it still exists and they are kept
    /// (`Config::acct`).
    pub fn counters(&self, r: ConnRef) -> Option<Counters> {
        self.conn(r)?;
        self.acct.get(r.slot)
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

    /// Ingress for one classified packet (`nf_conntrack_in`). Always in
    /// line, with `resolve_and_track`: the data plane's build called both,
    /// and in line firewall mode forwarded 13.2-13.4 against 11.2-12.6
    /// Mpps at 1k flows (three rounds of `perf/bench-firewall`).
    #[inline(always)]
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
            // Two arms, so TCP gets its own copy of the lookup and the
            // step, with its tracker in line: in one copy with UDP's, the
            // bigger function's spills cost UDP 14 instructions a packet,
            // and with TCP's step a call (`track_l4`, as it was), TCP 37
            // more (round 13).
            Ok(ref l4 @ L4::Tcp(_)) => self.resolve_and_track(c, l4, now),
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
    /// lets the protocol tracker judge the packet. In line, as `ingress`.
    #[inline(always)]
    fn resolve_and_track(&mut self, c: &Classified<'_>, l4: &L4<'_>, now: u64) -> Verdict {
        // A TCP reopen deletes the old connection and resolves once more.
        for _ in 0..2 {
            let hint = c.hint.map(usize::from);
            // `fresh`: the new connection's place on the unconfirmed list.
            let (slot, dir, fresh) = match self.lookup(&c.tuple, c.hash, hint, now) {
                Some((slot, dir)) => (slot, dir, None),
                None => match self.unconfirmed_match(&c.tuple, c.hash) {
                    Some((slot, dir)) => (slot, dir, None),
                    None => match self.init_conntrack(c, l4, now) {
                        Ok((slot, at)) => (slot, Dir::Original, Some(at)),
                        Err(reason) => return Verdict::invalid(reason),
                    },
                },
            };
            let tracked = match l4 {
                L4::Udp(_) => self.track_udp(slot, dir, c, now),
                L4::Tcp(seg) => self.track_tcp(slot, dir, c, seg, now),
                _ => self.track_other(slot, dir, c, l4, now),
            };
            match tracked {
                Track::Accept => return self.accept(slot, dir, fresh),
                Track::Ignore => return self.ctinfo_only(slot, dir, fresh),
                Track::Kill => {
                    let mut v = self.accept(slot, dir, None);
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
                    if fresh.is_some() {
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
    /// Always in line, with the table's `lookup_at`: as a call, with its
    /// register saves and spills, it took 112 instructions for a hit at
    /// its hint; in line the worker spends 36 fewer an established packet
    /// (`perf/bench-instructions`). Keeping the table's bucket walk (a
    /// miss, a stale hint) out of line measured 6 more.
    #[inline(always)]
    fn lookup(
        &mut self,
        t: &Tuple,
        hash: u64,
        hint: Option<usize>,
        now: u64,
    ) -> Option<(Slot, Dir)> {
        let (slot, dir) = self.table.lookup_at(t, hash, hint)?;
        if self.table.get(slot).deadline.passed(now) {
            self.expire(slot, now);
            return None;
        }
        Some((slot, dir))
    }

    /// A lookup met an expired connection: it goes, as Linux's lookup
    /// kills an expired entry it meets (`nf_ct_gc_expired`).
    #[cold]
    fn expire(&mut self, slot: Slot, now: u64) {
        self.delete_conn(slot, now);
        self.stats.expired += 1;
    }

    /// The connection an earlier packet of this burst created for the same
    /// original tuple and that is not confirmed yet. The pipeline looks up
    /// a whole burst before it confirms any of it, so without this a new
    /// flow's second packet in a burst would start a second connection
    /// (Linux, which finishes each packet before the next, never meets an
    /// unconfirmed entry this way). Only misses pay for it, most of them
    /// one look at the list's filter (`unconfirmed`).
    #[inline]
    fn unconfirmed_match(&self, t: &Tuple, hash: u64) -> Option<(Slot, Dir)> {
        self.unconfirmed
            .find(hash, |slot, d| self.table.has_tuple(slot, d, t))
    }

    /// Creates an unconfirmed connection for a packet that matched nothing
    /// (`init_conntrack`), if its protocol lets it start one; returns its
    /// slot and its place on the unconfirmed list.
    fn init_conntrack(
        &mut self,
        c: &Classified<'_>,
        l4: &L4<'_>,
        now: u64,
    ) -> Result<(Slot, u32), &'static str> {
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
        let tuples = [orig, reply];
        let mut conn = Conn::with_keys(tuples.map(|t| Key::of(&t)));
        conn.id = self.next_id;
        conn.deadline = Deadline::after(now, 0);
        conn.proto = proto;
        let slot = match self.table.alloc(conn, &tuples) {
            Some(s) => s,
            None => {
                let (table, mut teardown) = self.table_and_teardown();
                if table.early_drop(c.hash, now, |s, c, t| teardown.conn(s, c, t, now)) {
                    self.stats.early_drop += 1;
                } else {
                    self.stats.drop += 1;
                    return Err("table-full");
                }
                self.table.alloc(conn, &tuples).ok_or("table-full")?
            }
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.acct.reset(slot);
        let keys = self.table.keys(&tuples, c.hash);
        let at = self.unconfirmed.push(slot, keys);
        self.attach_helper_or_master(slot, at, &tuples, now);
        Ok((slot, at))
    }

    /// A new connection either fulfils an expectation (EXPECTED, linked to
    /// its master) or may get a helper, found by its reply tuple's source
    /// port, L4 and L3 as the seed article describes. `tuples` are the
    /// connection's, as created.
    fn attach_helper_or_master(&mut self, slot: Slot, at: u32, tuples: &[Tuple; 2], now: u64) {
        let mut ext = Ext::default();
        let [original, reply] = tuples;
        if !self.expectations.is_empty() {
            if let Some(e) = self.expectations.take(original, now) {
                self.table.get_mut(slot).status.set(Status::EXPECTED);
                ext.master = Some(e.master);
                if let Some(n) = e.nat {
                    self.follow_master(slot, at, &n);
                }
            }
        }
        if ext.master.is_none() {
            ext.helper = self.cfg.helpers.lookup(reply.proto, reply.sport);
        }
        // Most connections have neither, and take no record.
        if (ext.master.is_some() || ext.helper.is_some())
            && self.exts.attach(slot, ext)
            && ext.helper.is_some()
        {
            self.table.get_mut(slot).status.set(Status::HELPER);
        }
    }

    /// Builds the verdict of an accepted packet and notes a first reply.
    #[inline]
    fn accept(&mut self, slot: Slot, dir: Dir, fresh: Option<u32>) -> Verdict {
        self.verdict_of(slot, dir, fresh, true)
    }

    /// The verdict of a packet the protocol tracker ignored: its ctinfo,
    /// and nothing learnt from it.
    #[inline]
    fn ctinfo_only(&mut self, slot: Slot, dir: Dir, fresh: Option<u32>) -> Verdict {
        self.verdict_of(slot, dir, fresh, false)
    }

    /// Linux's ctinfo rules: a reply-direction hit is ESTABLISHED_REPLY; an
    /// original-direction hit is ESTABLISHED once a reply was seen, else
    /// RELATED if the connection was expected, else NEW. An `accepted`
    /// reply sets SEEN_REPLY, after the verdict's copy of the status is
    /// taken, as Linux sets it after `nf_ct_get` gave the ctinfo. One
    /// reference to the connection for both: the verdict's read and the
    /// reply's write each indexed the slab, with its bounds check (4
    /// instructions an established packet in `ct-bench`, under callgrind).
    #[inline(always)]
    fn verdict_of(&mut self, slot: Slot, dir: Dir, fresh: Option<u32>, accepted: bool) -> Verdict {
        let unconfirmed = fresh.map(|at| Unconfirmed {
            slot,
            gen: self.table.generation(slot),
            at,
        });
        let conn = self.table.get_mut(slot);
        let status = conn.status;
        if accepted && dir == Dir::Reply {
            conn.status.set(Status::SEEN_REPLY);
        }
        let ctinfo = match dir {
            Dir::Reply => CtInfo::EstablishedReply,
            Dir::Original if status.has(Status::SEEN_REPLY) => CtInfo::Established,
            Dir::Original if status.has(Status::EXPECTED) => CtInfo::Related,
            Dir::Original => CtInfo::New,
        };
        Verdict {
            ctinfo,
            conn: Some(ConnRef { slot, id: conn.id }),
            reason: None,
            unconfirmed,
            status,
            help: status.has(Status::HELPER),
        }
    }

    /// Egress: inserts both directions of the packet's new connection and
    /// sets CONFIRMED (`__nf_conntrack_confirm`). If the same tuple was
    /// confirmed meanwhile (two packets of one new flow in a burst), UDP,
    /// ICMP and other datagram flows join it, as Linux's clash resolution
    /// does; TCP fails with `InsertFailed` and the packet should be dropped.
    #[inline(always)]
    pub fn confirm(&mut self, u: Unconfirmed) -> Result<ConnRef, ConfirmError> {
        let slot = u.slot;
        if self.table.generation(slot) != u.gen || !self.table.is_unconfirmed(slot) {
            return Err(ConfirmError::Stale);
        }
        let inserted = match self.unconfirmed.take(u.at, slot) {
            Some(keys) => self.table.insert_keyed(slot, keys),
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
        let tcp = self.table.get(slot).l4proto() == PROTO_TCP;
        if !tcp {
            self.acct.merge(slot, other);
        }
        self.free_unconfirmed(slot);
        if tcp {
            self.stats.insert_failed += 1;
            return Err(ConfirmError::InsertFailed);
        }
        self.stats.clash_resolve += 1;
        Ok(ConnRef {
            slot: other,
            id: self.table.get(other).id,
        })
    }

    /// Egress for one packet (the POSTROUTING hook): confirms the
    /// connection the packet created, then lets the connection's helper
    /// read the packet. Returns the packet's connection; `InsertFailed`
    /// means the packet should be dropped.
    #[inline]
    pub fn egress(
        &mut self,
        v: &mut Verdict,
        c: &Classified<'_>,
        now: u64,
    ) -> Result<Option<ConnRef>, ConfirmError> {
        // Most packets belong to a confirmed connection without a helper:
        // nothing to do, and no call.
        if v.unconfirmed.is_none() && !v.help {
            return Ok(v.conn);
        }
        self.confirm_and_help(v, c, now)
    }

    fn confirm_and_help(
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
                let counters = self.acct.get(slot);
                let tuples = self.table.tuples(slot);
                log.push(
                    CtEventKind::New,
                    self.table.get(slot),
                    &tuples,
                    counters,
                    now,
                );
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
            let _ = self.unconfirmed.take(u.at, u.slot);
            self.free_unconfirmed(u.slot);
        }
    }

    fn drop_unconfirmed(&mut self, slot: Slot) {
        self.unconfirmed.remove(slot);
        self.free_unconfirmed(slot);
    }

    /// Frees every connection still unconfirmed. Called at the end of each
    /// burst, it guarantees none survives its packet even if a token was
    /// lost; each one it frees is counted as `unconfirmed_reaped`.
    pub fn reap_unconfirmed(&mut self) -> usize {
        let n = self.unconfirmed.len();
        while let Some(slot) = self.unconfirmed.pop() {
            self.free_unconfirmed(slot);
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
        let (table, mut teardown) = self.table_and_teardown();
        let swept = table.gc(now, budget, |s, c, t| teardown.conn(s, c, t, now));
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
        for (slot, conn) in self.table.iter() {
            let conn = &ListedConn {
                conn: *conn,
                tuples: self.table.tuples(slot),
                counters: self.acct.get(slot),
            };
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
