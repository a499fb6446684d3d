//! A tracked connection (Linux's `struct nf_conn`) and its status bits.

use super::acct::Counters;
use super::tcp::TcpConn;
use super::tuple::{Key, Tuple};

/// Status bits, with Linux's `IPS_*` values so that dumps read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status(pub u16);

impl Status {
    /// The connection was announced by a helper (an expectation matched).
    pub const EXPECTED: Status = Status(1 << 0);
    /// Packets have been seen in both directions.
    pub const SEEN_REPLY: Status = Status(1 << 1);
    /// Worth keeping: never early-dropped.
    pub const ASSURED: Status = Status(1 << 2);
    /// In the table (both directions inserted).
    pub const CONFIRMED: Status = Status(1 << 3);
    pub const SRC_NAT: Status = Status(1 << 4);
    pub const DST_NAT: Status = Status(1 << 5);
    pub const SEQ_ADJUST: Status = Status(1 << 6);
    pub const SRC_NAT_DONE: Status = Status(1 << 7);
    pub const DST_NAT_DONE: Status = Status(1 << 8);
    pub const DYING: Status = Status(1 << 9);
    pub const FIXED_TIMEOUT: Status = Status(1 << 10);
    pub const UNTRACKED: Status = Status(1 << 12);
    pub const HELPER: Status = Status(1 << 13);

    pub fn has(self, bit: Status) -> bool {
        self.0 & bit.0 == bit.0
    }

    pub fn set(&mut self, bit: Status) {
        self.0 |= bit.0;
    }
}

/// Protocol-specific state (`union nf_conntrack_proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    Tcp(TcpConn),
    /// UDP: a reply after this instant (2 s after the first packet) makes
    /// the flow a stream (`nf_ct_udp.stream_ts`).
    Udp {
        stream_after: u64,
    },
    /// ICMP/ICMPv6 queries and every other protocol: timeout only.
    Other,
}

/// A connection: both tuples, status, timeout and the protocol's state.
/// 96 bytes; the index adds a 6-byte entry (a 16-bit signature and a
/// 32-bit slot) for an untranslated connection, two for a translated one,
/// in buckets sized for two a connection (see `table`). Its tuples are
/// stored as `Key`s, IPv6 addresses cut to 32 bits: the table keeps an
/// IPv6 connection's full addresses beside it and gives the tuples back
/// whole (`ConnTable::tuple`). The two keys are kept in 28 bytes, not 32:
/// what NAT may change (ends and ports) for each direction, and once what
/// they share (protocol, family, zone). Its packet and byte counters are
/// kept beside the table, and only when asked for (`acct`), as Linux
/// keeps them in an extension.
///
/// The field order is the memory layout (`repr(C)`): what a packet of an
/// established UDP, ICMP or other flow touches (the keys, timeout, id and
/// status) is the first 40 bytes, the protocol state (TCP window
/// tracking; UDP needs its `stream_after` only between the first reply
/// and ASSURED) the last 56. Aligned to 32 bytes, a connection starts at
/// a line or half way through one, so that it spans two lines, never
/// three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Conn {
    /// `tuplehash[IP_CT_DIR_ORIGINAL]` and `[IP_CT_DIR_REPLY]`, in parts
    /// (`Key::parts`): each direction's ends, then its ports, then what
    /// both share. The reply is stored, not derived, because NAT makes it
    /// differ from the inverse.
    ends: [u64; 2],
    ports: [u32; 2],
    shared: u32,
    /// When it expires.
    pub deadline: Deadline,
    /// Unique id (as `conntrack -L -o id` shows), assigned at creation.
    pub id: u32,
    pub status: Status,
    pub proto: ProtoState,
}

impl Conn {
    /// An all-zero connection, to fill memory with.
    pub const BLANK: Conn = Conn {
        ends: [0; 2],
        ports: [0; 2],
        shared: 0,
        deadline: Deadline::ZERO,
        id: 0,
        status: Status(0),
        proto: ProtoState::Other,
    };

    /// A blank connection with these keys (original, reply), which share
    /// protocol, family and zone.
    pub fn with_keys([orig, reply]: [Key; 2]) -> Conn {
        let mut c = Conn::BLANK;
        c.shared = orig.parts().2;
        c.set_key(0, orig);
        c.set_key(1, reply);
        c
    }

    /// The key of direction `d` (0 original, 1 reply).
    #[inline(always)]
    pub fn key(&self, d: usize) -> Key {
        let d = d & 1;
        Key::from_parts(self.ends[d], self.ports[d], self.shared)
    }

    /// Both keys.
    pub fn keys(&self) -> [Key; 2] {
        [self.key(0), self.key(1)]
    }

    /// Sets the key of direction `d`; protocol, family and zone stay.
    #[inline]
    pub fn set_key(&mut self, d: usize, key: Key) {
        let (ends, ports, shared) = key.parts();
        debug_assert_eq!(shared, self.shared, "a key of another protocol or zone");
        self.ends[d & 1] = ends;
        self.ports[d & 1] = ports;
    }

    /// The transport protocol's number.
    pub fn l4proto(&self) -> u8 {
        self.shared as u8
    }

    pub fn tcp(&self) -> Option<&TcpConn> {
        match &self.proto {
            ProtoState::Tcp(t) => Some(t),
            _ => None,
        }
    }

    /// Seconds left before expiry at `now`.
    pub fn seconds_left(&self, now: u64) -> u64 {
        self.deadline.left(now) / super::SEC
    }
}

/// A tick is 2^24 ns (16.8 ms) of the caller's clock.
const TICK_SHIFT: u32 = 24;
const TICK: u64 = 1 << TICK_SHIFT;

/// The tick `now` falls in, wrapped to 32 bits.
#[inline]
fn tick(now: u64) -> u32 {
    (now >> TICK_SHIFT) as u32
}

/// When a connection expires, in ticks of the caller's clock, as Linux
/// keeps `nf_conn.timeout` in 32-bit jiffies: 4 bytes where nanoseconds
/// took 8. Ticks wrap every 2^32 (2.3 years) and are compared as Linux's
/// `nf_ct_is_expired` compares jiffies, by their signed difference, which
/// holds while a deadline is within 2^31 ticks (417 days) of now:
/// timeouts are at most 365 days (`MAX_TIMEOUT`), and the table's sweep
/// removes an expired connection long before its deadline could wrap.
/// A deadline is rounded up to a tick: a connection expires at the end
/// of its timeout or up to a tick (16.8 ms) later, never before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(u32);

/// The longest timeout, in seconds, that a `Deadline` holds.
pub const MAX_TIMEOUT: u32 = 365 * 24 * 3600;

impl Deadline {
    pub const ZERO: Deadline = Deadline(0);

    /// `secs` seconds after `now`.
    #[inline]
    pub fn after(now: u64, secs: u32) -> Deadline {
        debug_assert!(secs <= MAX_TIMEOUT);
        Deadline(tick(now + u64::from(secs) * super::SEC + TICK - 1))
    }

    /// Ticks from `now` to the deadline, negative once it has passed.
    #[inline]
    fn ahead(self, now: u64) -> i32 {
        self.0.wrapping_sub(tick(now)) as i32
    }

    /// Whether it has come at `now`.
    #[inline]
    pub fn passed(self, now: u64) -> bool {
        self.ahead(now) <= 0
    }

    /// Nanoseconds left at `now`; 0 once passed.
    pub fn left(self, now: u64) -> u64 {
        match self.ahead(now) {
            ..=0 => 0,
            ticks => ((ticks as u64) << TICK_SHIFT) - (now & (TICK - 1)),
        }
    }

    /// The earlier of this deadline and `secs` seconds after `now`.
    pub fn at_most(self, now: u64, secs: u32) -> Deadline {
        let other = Deadline::after(now, secs);
        if other.ahead(now) < self.ahead(now) {
            other
        } else {
            self
        }
    }
}

/// A copy of a connection with its counters (if kept), as a listing or
/// an event carries it away from the table.
#[derive(Debug, Clone, Copy)]
pub struct ListedConn {
    pub conn: Conn,
    /// Its tuples, whole (`ConnTable::tuples`).
    pub tuples: [Tuple; 2],
    pub counters: Option<Counters>,
}

/// A connection as one line of `conntrack -L`: protocol, number, seconds
/// left, TCP state, the original tuple with its counters (if kept),
/// `[UNREPLIED]` before any reply, the reply tuple with its counters,
/// `[ASSURED]`, the zone and the id.
pub struct ConnLine<'a> {
    pub conn: &'a ListedConn,
    pub now: u64,
}

impl std::fmt::Display for ConnLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_conn(f, self.conn, Some(self.now))
    }
}

/// A connection event as one line of `conntrack -E -o timestamp`: the
/// time in seconds, then `[NEW]` with the connection as `conntrack -L`
/// shows it, or `[DESTROY]` with its tuples and counters (no timeout, no
/// state: it is gone).
pub struct EventLine<'a> {
    pub event: &'a super::CtEvent,
    /// When the event happened, in seconds since the epoch.
    pub time: f64,
}

impl std::fmt::Display for EventLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.event;
        write!(f, "[{:.6}]\t", self.time)?;
        match e.kind {
            super::CtEventKind::New => {
                f.write_str("    [NEW] ")?;
                write_conn(f, &e.conn, Some(e.at))
            }
            super::CtEventKind::Destroy => {
                f.write_str("[DESTROY] ")?;
                write_conn(f, &e.conn, None)
            }
        }
    }
}

/// A connection as `conntrack` prints it; with `now`, its timeout and
/// TCP state too. Counters show only where kept, as Linux prints them only
/// with `nf_conntrack_acct` on.
fn write_conn(
    f: &mut std::fmt::Formatter<'_>,
    listed: &ListedConn,
    now: Option<u64>,
) -> std::fmt::Result {
    let ListedConn {
        conn: c,
        tuples: [orig, reply],
        counters,
    } = listed;
    write!(
        f,
        "{:<8} {}",
        super::tuple::proto_name(orig.proto),
        orig.proto
    )?;
    if let Some(now) = now {
        write!(f, " {}", c.seconds_left(now))?;
        if let Some(t) = c.tcp() {
            write!(f, " {}", t.state.name())?;
        }
    }
    let counted = |f: &mut std::fmt::Formatter<'_>, d: usize| match counters {
        Some(n) => write!(f, " packets={} bytes={}", n.packets[d], n.bytes[d]),
        None => Ok(()),
    };
    write!(f, " {orig}")?;
    counted(f, 0)?;
    if !c.status.has(Status::SEEN_REPLY) {
        f.write_str(" [UNREPLIED]")?;
    }
    write!(f, " {reply}")?;
    counted(f, 1)?;
    if c.status.has(Status::ASSURED) {
        f.write_str(" [ASSURED]")?;
    }
    write!(f, " mark=0 zone={} use=1 id={}", orig.zone, c.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::SEC;

    /// A deadline comes at the end of its timeout or within a tick after,
    /// never before; the longest timeout fits; and all of it holds across
    /// the wrap of the 32-bit ticks (2^56 ns).
    #[test]
    fn deadlines_round_up_and_survive_the_wrap() {
        for start in [0, 1_000 * SEC + 123, (1 << 56) - 5 * SEC] {
            let end = start + 30 * SEC;
            let d = Deadline::after(start, 30);
            assert!(!d.passed(end - 1));
            assert!(d.passed(end + TICK));
            assert!((30 * SEC..30 * SEC + TICK).contains(&d.left(start)));
            assert_eq!(d.left(end + TICK), 0);
            assert_eq!(d.at_most(start, 10), Deadline::after(start, 10));
            assert_eq!(d.at_most(start, 60), d);
            let far = Deadline::after(start, MAX_TIMEOUT);
            let far_end = start + u64::from(MAX_TIMEOUT) * SEC;
            assert!(!far.passed(far_end - 1));
            assert!(far.passed(far_end + TICK));
        }
    }
}
