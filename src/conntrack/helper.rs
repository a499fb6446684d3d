//! Connection helpers (Linux's `nf_conntrack_tftp` and `nf_conntrack_ftp`):
//! they read a control connection's payload and say which connection to
//! expect. They return requests as data and never touch a table.

use super::classify::L4;
use super::steering::Steering;
use super::{
    expect, Classified, ConnRef, CtInfo, Dir, ExpectRefused, Expectation, FollowNat, MasterRef,
    Status, Tuple,
};
use crate::wire::{Addr, L3, PROTO_TCP, PROTO_UDP};

/// A helper, attached to a connection by its reply tuple's source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Helper {
    Tftp,
    Ftp,
}

impl Helper {
    /// Its name, as `conntrack` prints it (`helper=tftp`).
    pub fn name(self) -> &'static str {
        match self {
            Helper::Tftp => "tftp",
            Helper::Ftp => "ftp",
        }
    }

    /// The transport protocol the helper's control connection uses.
    pub fn proto(self) -> u8 {
        match self {
            Helper::Tftp => PROTO_UDP,
            Helper::Ftp => PROTO_TCP,
        }
    }

    /// Linux's policies: one expectation per master, five minutes.
    pub fn max_expected(self) -> usize {
        1
    }

    pub fn timeout(self) -> u32 {
        300
    }
}

/// Which helper serves which port (`--ct-helper=tftp:69,ftp:21,ftp:2121`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelperConfig {
    entries: [Option<(Helper, u16)>; HelperConfig::MAX],
    /// Bit `port % 64` set for each port in `entries`: every new
    /// connection asks for a helper, and nearly all are refused by this
    /// one test instead of a scan of the entries.
    ports: u64,
    /// Accept FTP announcements of a third address (FTP bounce), Linux's
    /// `nf_conntrack_ftp loose=1`.
    pub ftp_loose: bool,
}

impl Default for HelperConfig {
    /// TFTP on 69 and FTP on 21, as Linux's modules load by default.
    fn default() -> Self {
        HelperConfig::parse("tftp:69,ftp:21").expect("valid default")
    }
}

impl HelperConfig {
    /// How many (helper, port) pairs fit.
    pub const MAX: usize = 8;

    /// No helper at all.
    pub fn none() -> HelperConfig {
        HelperConfig {
            entries: [None; HelperConfig::MAX],
            ports: 0,
            ftp_loose: false,
        }
    }

    /// Parses `name:port[,name:port...]`; an empty string or `none`
    /// turns helpers off.
    pub fn parse(s: &str) -> Result<HelperConfig, String> {
        let mut c = HelperConfig::none();
        if s.is_empty() || s == "none" {
            return Ok(c);
        }
        for (i, item) in s.split(',').enumerate() {
            if i >= HelperConfig::MAX {
                return Err(format!("at most {} helper ports", HelperConfig::MAX));
            }
            let (name, port) = item
                .split_once(':')
                .ok_or_else(|| format!("'{item}' is not helper:port"))?;
            let helper = match name {
                "tftp" => Helper::Tftp,
                "ftp" => Helper::Ftp,
                _ => return Err(format!("unknown helper '{name}' (helpers: tftp, ftp)")),
            };
            let port: u16 = port
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("'{port}' is not a port number"))?;
            c.entries[i] = Some((helper, port));
            c.ports |= 1 << (port % 64);
        }
        Ok(c)
    }

    /// The helper for a connection whose reply comes from `sport` over
    /// `proto` (the seed: looked up by the reply tuple's source port, L4
    /// and L3).
    #[inline]
    pub fn lookup(&self, proto: u8, sport: u16) -> Option<Helper> {
        if self.ports & 1 << (sport % 64) == 0 {
            return None;
        }
        self.entries
            .iter()
            .flatten()
            .find(|(h, p)| *p == sport && h.proto() == proto)
            .map(|(h, _)| *h)
    }
}

/// TFTP (RFC 1350): a read or write request makes the server's answer,
/// from a port of its choosing, expected. Other opcodes, short or garbage
/// payloads: nothing.
pub fn tftp_wants_expectation(payload: &[u8]) -> bool {
    matches!(payload, [0, 1 | 2, ..])
}

/// Per-connection FTP state: the sequence numbers just after the last
/// newlines seen in each direction (Linux's `seq_aft_nl`). Commands are
/// parsed only in a segment that starts a line in sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FtpState {
    after_nl: [[u32; 2]; 2],
    count: [u8; 2],
}

impl FtpState {
    fn starts_line(&self, dir: usize, seq: u32) -> bool {
        self.after_nl[dir][..self.count[dir] as usize].contains(&seq)
    }

    /// Remembers up to two positions per direction, replacing the oldest,
    /// so a retransmitted line is still recognised (`update_nl_seq`).
    fn note_line_end(&mut self, dir: usize, seq: u32) {
        let n = self.count[dir] as usize;
        if self.after_nl[dir][..n].contains(&seq) {
            return;
        }
        if n < 2 {
            self.after_nl[dir][n] = seq;
            self.count[dir] += 1;
        } else {
            let older =
                usize::from(self.after_nl[dir][1].wrapping_sub(self.after_nl[dir][0]) as i32 > 0);
            let oldest = 1 - older;
            self.after_nl[dir][oldest] = seq;
        }
    }
}

/// What the FTP helper made of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpOutcome {
    /// Nothing to do (no command, out of sequence, not yet established).
    Nothing,
    /// Expect a data connection to `addr`:`port` from the peer.
    Expect { addr: Addr, port: u16 },
    /// A command that could not be used: counted, no expectation.
    Refused(&'static str),
}

/// One segment of an FTP control connection.
pub struct FtpSegment<'a> {
    /// 0 original (client), 1 reply (server).
    pub dir: usize,
    pub seq: u32,
    /// The payload bytes captured.
    pub payload: &'a [u8],
    /// Whether `payload` is the whole payload the wire carried.
    pub whole: bool,
    /// Traffic was seen both ways (Linux looks at nothing before).
    pub established: bool,
    /// The sender's address and family.
    pub sender: Addr,
    pub l3: L3,
}

/// `help()` of `nf_conntrack_ftp`: PORT and EPRT from the client, 227 and
/// 229 replies from the server.
pub fn ftp_help(state: &mut FtpState, seg: &FtpSegment<'_>, loose: bool) -> FtpOutcome {
    if !seg.established || seg.payload.is_empty() {
        return FtpOutcome::Nothing;
    }
    let outcome = if state.starts_line(seg.dir, seg.seq) {
        parse_command(seg, loose)
    } else {
        FtpOutcome::Nothing
    };
    if seg.whole && seg.payload.last() == Some(&b'\n') {
        state.note_line_end(seg.dir, seg.seq.wrapping_add(seg.payload.len() as u32));
    }
    outcome
}

fn parse_command(seg: &FtpSegment<'_>, loose: bool) -> FtpOutcome {
    let d = seg.payload;
    // Linux's search table: the pattern, then (for all but 227) the
    // character the numbers follow.
    let patterns: [(&[u8], Parser); 2] = if seg.dir == 0 {
        [
            (b"PORT", |d, l3| after(d, b' ', rfc959, l3)),
            (b"EPRT", |d, l3| after(d, b' ', eprt, l3)),
        ]
    } else {
        [
            (b"227 ", rfc1123),
            (b"229 ", |d, l3| after(d, b'(', epsv, l3)),
        ]
    };
    for (pattern, parse) in patterns {
        if d.len() <= pattern.len() {
            if d.eq_ignore_ascii_case(&pattern[..d.len()]) {
                // Linux drops such a packet; ctfwd lets it through and
                // expects nothing (the command is split across segments).
                return FtpOutcome::Refused("ftp-partial-command");
            }
            continue;
        }
        if !d[..pattern.len()].eq_ignore_ascii_case(pattern) {
            continue;
        }
        return match parse(&d[pattern.len()..], seg.l3) {
            Parsed::Bad(why) => FtpOutcome::Refused(why),
            Parsed::Port(port) => FtpOutcome::Expect {
                addr: seg.sender,
                port,
            },
            Parsed::AddrPort(addr, port) if addr == seg.sender || loose => {
                FtpOutcome::Expect { addr, port }
            }
            // An address other than the sender's: the FTP bounce attack
            // (RFC 2577) unless loose.
            Parsed::AddrPort(..) => FtpOutcome::Refused("ftp-address-not-sender"),
        };
    }
    FtpOutcome::Nothing
}

/// Reads a command's numbers from what follows its pattern.
type Parser = fn(&[u8], L3) -> Parsed;

enum Parsed {
    AddrPort(Addr, u16),
    Port(u16),
    Bad(&'static str),
}

/// Parses what follows the first `c` with `f`; no `c` means the line is
/// cut short.
fn after(d: &[u8], c: u8, f: Parser, l3: L3) -> Parsed {
    match d.iter().position(|&b| b == c) {
        Some(i) => f(&d[i + 1..], l3),
        None => Parsed::Bad("ftp-partial-command"),
    }
}

/// Reads up to `n` numbers of at most 255 separated by `sep`; returns them
/// and what follows. Larger numbers (Linux lets them wrap) are refused.
fn numbers(d: &[u8], n: usize, sep: u8) -> Result<([u32; 6], &[u8]), &'static str> {
    let mut out = [0u32; 6];
    let mut i = 0;
    let mut digits = 0;
    for (pos, &b) in d.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                out[i] = out[i] * 10 + u32::from(b - b'0');
                digits += 1;
                if out[i] > 255 || digits > 3 {
                    return Err("ftp-number-out-of-range");
                }
            }
            _ if b == sep && i + 1 < n && digits > 0 => {
                i += 1;
                digits = 0;
            }
            _ if i + 1 == n && digits > 0 => return Ok((out, &d[pos..])),
            _ => return Err("ftp-malformed"),
        }
    }
    // Ran out of bytes before a terminator: the line is cut.
    Err("ftp-partial-command")
}

fn v4(n: &[u32; 6]) -> (Addr, u16) {
    let a = Addr::v4([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8]);
    (a, (n[4] << 8 | n[5]) as u16)
}

/// `h1,h2,h3,h4,p1,p2` (RFC 959), IPv4 only, as Linux.
fn rfc959(d: &[u8], l3: L3) -> Parsed {
    if l3 != L3::V4 {
        return Parsed::Bad("ftp-family-mismatch");
    }
    match numbers(d, 6, b',') {
        Ok((n, _)) => match v4(&n) {
            (_, 0) => Parsed::Bad("ftp-port-zero"),
            (a, p) => Parsed::AddrPort(a, p),
        },
        Err(e) => Parsed::Bad(e),
    }
}

/// 227's numbers start at the first digit, with or without parentheses
/// (RFC 1123 4.1.2.6).
fn rfc1123(d: &[u8], l3: L3) -> Parsed {
    match d.iter().position(u8::is_ascii_digit) {
        Some(i) => rfc959(&d[i..], l3),
        None => Parsed::Bad("ftp-malformed"),
    }
}

/// `|af|addr|port|` (RFC 2428), any printable delimiter.
fn eprt(d: &[u8], l3: L3) -> Parsed {
    let [delim, af, second, rest @ ..] = d else {
        return Parsed::Bad("ftp-partial-command");
    };
    if !(33..=126).contains(delim) || delim.is_ascii_digit() || second != delim {
        return Parsed::Bad("ftp-malformed");
    }
    let family = match af {
        b'1' => L3::V4,
        b'2' => L3::V6,
        _ => return Parsed::Bad("ftp-malformed"),
    };
    if family != l3 {
        return Parsed::Bad("ftp-family-mismatch");
    }
    let Some(end) = rest.iter().position(|b| b == delim) else {
        return Parsed::Bad("ftp-partial-command");
    };
    let Some(addr) = std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        .filter(|ip| ip.is_ipv4() == (family == L3::V4))
    else {
        return Parsed::Bad("ftp-malformed");
    };
    match port(&rest[end + 1..], *delim) {
        Ok(p) => Parsed::AddrPort(Addr::from_std(addr), p),
        Err(e) => Parsed::Bad(e),
    }
}

/// `|||port|` (RFC 2428), the server's own address.
fn epsv(d: &[u8], _: L3) -> Parsed {
    let [delim, a, b, rest @ ..] = d else {
        return Parsed::Bad("ftp-partial-command");
    };
    if !(33..=126).contains(delim) || delim.is_ascii_digit() || a != delim || b != delim {
        return Parsed::Bad("ftp-malformed");
    }
    match port(rest, *delim) {
        Ok(p) => Parsed::Port(p),
        Err(e) => Parsed::Bad(e),
    }
}

/// A decimal port ended by `delim` (Linux's `get_port`).
fn port(d: &[u8], delim: u8) -> Result<u16, &'static str> {
    let mut p: u32 = 0;
    for &b in d {
        match b {
            b'0'..=b'9' => {
                p = p * 10 + u32::from(b - b'0');
                if p > 65535 {
                    return Err("ftp-number-out-of-range");
                }
            }
            _ if b == delim && p != 0 => return Ok(p as u16),
            _ if b == delim => return Err("ftp-port-zero"),
            _ => return Err("ftp-malformed"),
        }
    }
    Err("ftp-partial-command")
}

/// The glue between a shard and its helpers (`nf_conntrack_helper`'s help
/// callback): egress runs a connection's helper on its packets.
impl super::Shard {
    /// Runs a connection's helper on one of its packets and records the
    /// expectation it asks for (`nf_conntrack_helper`'s help callback).
    pub(super) fn help(&mut self, r: ConnRef, ctinfo: CtInfo, c: &Classified<'_>, now: u64) {
        let Some(ext) = self.exts.of_mut(r.slot) else {
            return;
        };
        let Some(helper) = ext.helper else { return };
        let conn = *self.table.get(r.slot);
        let tuples = self.table.tuples(r.slot);
        let dir = match ctinfo {
            CtInfo::EstablishedReply | CtInfo::RelatedReply => Dir::Reply,
            _ => Dir::Original,
        };
        let [orig, reply] = tuples;
        let master = MasterRef {
            shard: self.id,
            id: conn.id,
        };
        let nat = conn.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) != 0;
        // The port the announcing side meant, which a translated data
        // connection is sent back to.
        let mut saved_port = 0;
        let expected = match (helper, &c.l4) {
            // The server answers from a port of its choosing: expect
            // server -> client:port from any source port.
            (Helper::Tftp, Ok(L4::Udp(payload))) if tftp_wants_expectation(payload) => {
                Some(Tuple { sport: 0, ..reply })
            }
            (Helper::Ftp, Ok(L4::Tcp(seg))) => {
                let sender = tuples[dir.index()];
                let peer = tuples[dir.other().index()];
                let fseg = FtpSegment {
                    dir: dir.index(),
                    seq: seg.hdr.seq(),
                    payload: seg.payload,
                    whole: seg.payload.len() == seg.payload_len as usize,
                    established: matches!(ctinfo, CtInfo::Established | CtInfo::EstablishedReply),
                    sender: sender.src,
                    l3: sender.l3(),
                };
                match ftp_help(&mut ext.ftp, &fseg, self.cfg.helpers.ftp_loose) {
                    FtpOutcome::Nothing => None,
                    FtpOutcome::Refused(_) => {
                        self.stats.helper_refused += 1;
                        None
                    }
                    // The peer of the announcing side connects to the
                    // announced address and port, from any port; through
                    // NAT, to what the peer sees of them.
                    FtpOutcome::Expect { addr, port } => {
                        let told = if nat {
                            // The port told must be one whose expectation
                            // the set will take (`expect` refuses a clash):
                            // NAT looks ahead, as `nf_nat_exp_find_port`
                            // tries each port.
                            let free = |addr, port| {
                                let tuple = Tuple {
                                    src: peer.src,
                                    dst: addr,
                                    sport: 0,
                                    dport: port,
                                    ..orig
                                };
                                !self.expectations.clashes(&tuple, master, now)
                            };
                            let steering = self.steering.as_ref();
                            ftp_nat(&tuples, dir, (addr, port), steering, &fseg, free)
                        } else {
                            Ok(Told::as_announced(addr, port))
                        };
                        match told {
                            Ok(told) => {
                                if let Some(edit) = told.edit {
                                    let growth = edit.growth();
                                    if growth != 0 {
                                        ext.seqadj[dir.index()].set(seg.hdr.seq(), growth);
                                        self.table.get_mut(r.slot).status.set(Status::SEQ_ADJUST);
                                    }
                                    self.edit = Some(edit);
                                }
                                saved_port = port;
                                Some(Tuple {
                                    src: peer.src,
                                    dst: told.addr,
                                    sport: 0,
                                    dport: told.port,
                                    ..orig
                                })
                            }
                            Err(()) => {
                                self.stats.helper_refused += 1;
                                None
                            }
                        }
                    }
                }
            }
            _ => None,
        };
        if let Some(tuple) = expected {
            // The expected connection flows the other way from the
            // announcement; a translated master's is translated alike:
            // from where the announcing side sends to, to the announcing
            // side itself at the port it meant (before NAT changed it).
            let announcer = tuples[dir.index()];
            let nat = nat.then_some(FollowNat {
                src: announcer.dst,
                dst: announcer.src,
                dport: Some(match helper {
                    Helper::Tftp => announcer.sport,
                    Helper::Ftp => saved_port,
                }),
            });
            let e = Expectation {
                nat,
                tuple,
                any_source_port: true,
                master,
                helper,
                deadline: expect::deadline(now, helper.timeout()),
                created: now,
            };
            // A full set is counted there (expect_full), a clash with
            // another master's as the helper's refusal; the packet passes
            // either way (Linux drops it).
            if self.expect(e, helper.max_expected()) == Err(ExpectRefused::Clash) {
                self.stats.helper_refused += 1;
            }
        }
    }
}

/// What the peer of an FTP announcement is told, and the payload change
/// that tells it, if any.
struct Told {
    addr: Addr,
    port: u16,
    edit: Option<super::PayloadEdit>,
}

impl Told {
    /// The announcement as it stands.
    fn as_announced(addr: Addr, port: u16) -> Told {
        Told {
            addr,
            port,
            edit: None,
        }
    }
}

/// How many ports an announcement may be moved through before it is
/// refused.
const MAX_PORT_TRIES: usize = 128;

/// What NAT makes of an FTP announcement of `addr`:`port` on a translated
/// control connection (`nf_nat_ftp`): the peer sees the announcing side
/// at `tuples[!dir].dst`, and is told that address and, where it is the
/// announcing side that is translated, the first port from the announced
/// one (`nf_nat_exp_find_port`) that is `free` (no other master's
/// expectation holds it), of the announced port's class (`port_class`:
/// vsftpd, for one, refuses a PORT or EPRT naming a privileged port);
/// with several workers, the first such port that also lands the data
/// connection where `steered_data_target` says. An error if none is free
/// or the announcement cannot be found again to rewrite.
fn ftp_nat(
    tuples: &[Tuple; 2],
    dir: Dir,
    (addr, port): (Addr, u16),
    steering: Option<&Steering>,
    seg: &FtpSegment<'_>,
    free: impl Fn(Addr, u16) -> bool,
) -> Result<Told, ()> {
    let (mine, theirs) = (tuples[dir.index()], tuples[dir.other().index()]);
    let seen = theirs.dst;
    // Where the peer sees the announcing side as it is (a server named
    // in a passive reply to a translated client), the data connection
    // goes to the announced port itself, which stays.
    let translated = seen != mine.src || theirs.dport != mine.sport;
    let seen_port = if translated {
        let (lo, hi) = super::nat::port_class(port);
        match steering.filter(|s| s.fields().ports(mine.proto)) {
            Some(s) => {
                let (told, entry) = steered_data_target(s, &mine, &theirs, port);
                s.ports_onto(&told, true, lo, hi, port, &[entry])
                    .take(MAX_PORT_TRIES)
                    .find(|&p| free(seen, p))
            }
            None => (port..=hi).take(MAX_PORT_TRIES).find(|&p| free(seen, p)),
        }
        .ok_or(())?
    } else {
        port
    };
    if seen == addr && seen_port == port {
        return Ok(Told::as_announced(addr, port));
    }
    let edit = super::ftp_nat::rewrite_announcement(seg.payload, seg.dir, seen, seg.l3, seen_port)?;
    Ok(Told {
        addr: seen,
        port: seen_port,
        edit,
    })
}

/// Where a translated data connection must land with several workers:
/// its tuple (the port told still 0) and the owner-table entry its reply
/// lands on. A port told that puts the tuple on that entry puts the
/// connection's two sides on one worker whichever port the peer connects
/// from (an expectation leaves it open, and the Toeplitz hash being
/// linear, it moves both sides' hashes alike). `Steering::ports_onto`
/// gives those ports from the announced one's place: first the announced
/// port with its low pivot bits set.
///
/// `mine` is the announcing side's direction of the control connection,
/// `theirs` the peer's.
fn steered_data_target(s: &Steering, mine: &Tuple, theirs: &Tuple, port: u16) -> (Tuple, u16) {
    // Both sides with the peer's port 0: the hash of any other port
    // differs from these by the same amount on both sides.
    let told = Tuple {
        sport: 0,
        dport: 0,
        ..*theirs
    };
    let back = Tuple {
        sport: port,
        dport: 0,
        ..*mine
    };
    (told, s.entry(&back))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn seg(dir: usize, payload: &[u8]) -> FtpSegment<'_> {
        FtpSegment {
            dir,
            seq: 100,
            payload,
            whole: true,
            established: true,
            sender: Addr::v4([198, 18, 0, 1]),
            l3: L3::V4,
        }
    }

    /// A state in which the next line starts at sequence 100.
    fn ready() -> FtpState {
        let mut st = FtpState::default();
        st.note_line_end(0, 100);
        st.note_line_end(1, 100);
        st
    }

    /// The port filter refuses only what the entries would: every port
    /// against a scan of the entries, including ports that share a
    /// filter bit with a configured one (21 + 64, 69 + 128).
    #[test]
    fn lookup_agrees_with_a_scan_of_the_entries() {
        let c = HelperConfig::parse("tftp:69,ftp:21,ftp:2121").unwrap();
        assert_eq!(c.lookup(17, 69), Some(Helper::Tftp));
        assert_eq!(c.lookup(6, 2121), Some(Helper::Ftp));
        assert_eq!(c.lookup(6, 69), None, "TFTP is UDP");
        assert_eq!(c.lookup(6, 21 + 64), None);
        assert_eq!(c.lookup(17, 69 + 128), None);
        for port in 0..=u16::MAX {
            for proto in [6, 17] {
                let scan = c
                    .entries
                    .iter()
                    .flatten()
                    .find(|(h, p)| *p == port && h.proto() == proto)
                    .map(|(h, _)| *h);
                assert_eq!(c.lookup(proto, port), scan, "{proto} {port}");
            }
        }
        assert_eq!(HelperConfig::none().lookup(17, 69), None);
    }

    #[test]
    fn commands_parse() {
        let me = Addr::v4([198, 18, 0, 1]);
        for (dir, cmd, port) in [
            (0, &b"PORT 198,18,0,1,4,1\r\n"[..], 1025),
            (0, b"port 198,18,0,1,0,21\r\n", 21),
            (0, b"EPRT |1|198.18.0.1|6275|\r\n", 6275),
            (0, b"EPRT !1!198.18.0.1!6275!\r\n", 6275),
            (
                1,
                b"227 Entering Passive Mode (198,18,0,1,39,16)\r\n",
                10000,
            ),
            (1, b"227 =198,18,0,1,39,16\r\n", 10000),
            (
                1,
                b"229 Entering Extended Passive Mode (|||6446|)\r\n",
                6446,
            ),
        ] {
            let got = ftp_help(&mut ready(), &seg(dir, cmd), false);
            assert_eq!(
                got,
                FtpOutcome::Expect { addr: me, port },
                "{}",
                String::from_utf8_lossy(cmd)
            );
        }
        // Commands of the other direction are not looked for.
        assert_eq!(
            ftp_help(&mut ready(), &seg(1, b"PORT 198,18,0,1,4,1\r\n"), false),
            FtpOutcome::Nothing
        );
        assert_eq!(
            ftp_help(&mut ready(), &seg(0, b"227 (198,18,0,1,4,1)\r\n"), false),
            FtpOutcome::Nothing
        );
    }

    #[test]
    fn line_tracking_remembers_two_positions() {
        let mut st = FtpState::default();
        assert_eq!(
            ftp_help(&mut st, &seg(0, b"PORT 198,18,0,1,4,1\r\n"), false),
            FtpOutcome::Nothing
        );
        // That line ended at 100 + 21: the next one is parsed...
        let mut next = seg(0, b"PORT 198,18,0,1,4,2\r\n");
        next.seq = 121;
        assert!(matches!(
            ftp_help(&mut st, &next, false),
            FtpOutcome::Expect { port: 1026, .. }
        ));
        // ...and so is its retransmission.
        assert!(matches!(
            ftp_help(&mut st, &next, false),
            FtpOutcome::Expect { port: 1026, .. }
        ));
    }

    proptest! {
        /// Any payload, in either direction, behind any prefix: no panic,
        /// and an expectation only ever for a non-zero port of the sender.
        #[test]
        fn any_payload_is_safe(prefix in prop::sample::select(vec!["PORT ", "EPRT ", "227 ", "229 (", "port ", ""]),
                               body in prop::collection::vec(any::<u8>(), 0..80),
                               dir in 0usize..2, whole: bool, loose: bool) {
            let mut p = prefix.as_bytes().to_vec();
            p.extend_from_slice(&body);
            let mut s = seg(dir, &p);
            s.whole = whole;
            match ftp_help(&mut ready(), &s, loose) {
                FtpOutcome::Expect { addr, port } => {
                    prop_assert!(port != 0);
                    prop_assert!(loose || addr == s.sender);
                }
                FtpOutcome::Nothing | FtpOutcome::Refused(_) => {}
            }
        }

        /// Well-formed PORT commands with any numbers: out-of-range ones are
        /// refused, the rest expected exactly.
        #[test]
        fn port_numbers(n in prop::array::uniform6(0u32..300)) {
            let cmd = format!("PORT {},{},{},{},{},{}\r\n", n[0], n[1], n[2], n[3], n[4], n[5]);
            let mut s = seg(0, cmd.as_bytes());
            s.sender = Addr::v4([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8]);
            let got = ftp_help(&mut ready(), &s, false);
            let port = (n[4] << 8 | n[5]) as u16;
            if n.iter().any(|&x| x > 255) || port == 0 {
                prop_assert!(matches!(got, FtpOutcome::Refused(_)));
            } else {
                prop_assert_eq!(got, FtpOutcome::Expect { addr: s.sender, port });
            }
        }
    }
}
