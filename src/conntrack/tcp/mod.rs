//! TCP connection tracking, after Linux's `nf_conntrack_proto_tcp.c`: the
//! state table (`states`), window tracking (Guido van Rooij's "Real Stateful
//! TCP Packet Filtering in IP Filter", with RFC 793/1323/2018 details) and
//! the special cases Linux has grown for real stacks. A plain state
//! machine: the caller hands in a segment and the connection's status, it
//! returns a verdict.

use crate::wire::{TcpHeader, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

use super::timeouts::TcpTimeouts;
use super::tuple::Dir;

mod states;
#[cfg(test)]
mod tests;

pub use states::{check_flags, TcpState};
use states::{FlagSet, Next, FLAG_SET_BITS, TRANSITIONS};

// Per-direction flags (IP_CT_TCP_FLAG_*).
const WINDOW_SCALE: u8 = 0x01;
const SACK_PERM: u8 = 0x02;
const CLOSE_INIT: u8 = 0x04;
const BE_LIBERAL: u8 = 0x08;
const DATA_UNACKNOWLEDGED: u8 = 0x10;
const MAXACK_SET: u8 = 0x20;
// Connection-wide flags kept in `last_flags`.
const EXP_CHALLENGE_ACK: u8 = 0x40;
const SIMULTANEOUS_OPEN: u8 = 0x80;

/// RFC 7323: a shift count above 14 is treated as 14.
const MAX_WSCALE: u8 = 14;
/// Linux's MAXACKWINCONST: the least distance an ACK may trail td_end.
const MAX_ACK_WINDOW: u32 = 66000;

/// What is known of one end (`struct ip_ct_tcp_state`). Packed to 18
/// bytes (its words 2-byte aligned; padded, it took 20), so that the whole
/// TCP state is Linux's 56 and a connection fits in 96 (`Conn`): x86-64
/// and AArch64 load and store unaligned words at no cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed(2))]
pub struct TcpPeer {
    /// Highest sequence number sent, plus length.
    pub td_end: u32,
    /// Highest sequence number the other end's window allows.
    pub td_maxend: u32,
    /// Largest window seen from this end (scaled).
    pub td_maxwin: u32,
    /// Highest ACK sent.
    pub td_maxack: u32,
    pub td_scale: u8,
    pub flags: u8,
}

/// TCP state of a connection (`struct ip_ct_tcp`): 56 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConn {
    pub state: TcpState,
    pub seen: [TcpPeer; 2],
    last_dir: Dir,
    retrans: u8,
    last_index: FlagSet,
    last_wscale: u8,
    last_flags: u8,
    last_win: u16,
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
}

/// A segment as the tracker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub hdr: TcpHeader<'a>,
    /// Payload length as the wire carried it (from the IP length).
    pub payload_len: u32,
    /// The payload bytes captured (fewer than `payload_len` if cut short).
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// seq + payload + SYN + FIN (`segment_seq_plus_len`).
    fn end(&self) -> u32 {
        self.end_with(self.hdr.flags())
    }

    /// `end` with the header's `flags` given: constant on the fast path.
    #[inline]
    fn end_with(&self, flags: u8) -> u32 {
        self.hdr
            .seq()
            .wrapping_add(self.payload_len)
            .wrapping_add(u32::from(flags & TCP_SYN != 0))
            .wrapping_add(u32::from(flags & TCP_FIN != 0))
    }
}

/// Tracker settings (Linux's `nf_conntrack_tcp_*` sysctls).
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// `nf_conntrack_tcp_be_liberal`: only out-of-window RSTs are invalid.
    pub be_liberal: bool,
    /// `nf_conntrack_tcp_loose`: pick up connections already established.
    pub loose: bool,
    /// `nf_conntrack_tcp_max_retrans`: retransmissions before the shorter
    /// "retrans" timeout applies.
    pub max_retrans: u8,
    pub timeouts: TcpTimeouts,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            be_liberal: false,
            loose: true,
            max_retrans: 3,
            timeouts: TcpTimeouts::default(),
        }
    }
}

/// What the tracker decided for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVerdict {
    /// In window: refresh the timeout to `timeout` seconds, set ASSURED if
    /// `assured`.
    Accept { timeout: u32, assured: bool },
    /// Accepted but the timeout is not renewed (a retransmitted SYN).
    AcceptNoRefresh,
    /// Let through without touching the state: we may be out of sync.
    Ignore,
    /// Invalid; `shrink_to` shortens a stale assured connection's timeout.
    Invalid {
        reason: &'static str,
        shrink_to: Option<u32>,
    },
    /// Accepted, then the connection is deleted (an RST before any reply).
    Kill,
    /// A SYN reopening a closed connection: delete it and track the SYN as new.
    Reopen,
}

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
pub(super) fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Reads window scale and SACK-permitted from the options (`tcp_options`).
fn read_options(h: &TcpHeader<'_>, peer: &mut TcpPeer) {
    peer.td_scale = 0;
    peer.flags &= BE_LIBERAL;
    for (kind, data) in h.options() {
        match (kind, data) {
            (4, []) => peer.flags |= SACK_PERM,
            (3, [shift]) => {
                peer.td_scale = (*shift).min(MAX_WSCALE);
                peer.flags |= WINDOW_SCALE;
            }
            _ => {}
        }
    }
}

/// The highest right edge among the first SACK option's blocks, if above
/// `sack` (`tcp_sack`).
fn highest_sack(h: &TcpHeader<'_>, mut sack: u32) -> u32 {
    // Linux's fast path: a timestamp alone, as nearly every segment of a
    // stack with timestamps on carries, holds no SACK block.
    if h.timestamp_only() {
        return sack;
    }
    let sack_option =
        |(kind, data): &(u8, &[u8])| *kind == 5 && !data.is_empty() && data.len() % 8 == 0;
    let Some((_, blocks)) = h.options().find(sack_option) else {
        return sack;
    };
    for block in blocks.chunks_exact(8) {
        let right = u32::from_be_bytes(block[4..8].try_into().unwrap());
        if after(right, sack) {
            sack = right;
        }
    }
    sack
}

/// The outcome of the window check (`enum nf_ct_tcp_action`).
enum Window {
    Accept,
    Ignore,
    Invalid(&'static str),
}

impl TcpConn {
    /// `tcp_new`: a connection from its first segment, or `None` when that
    /// segment cannot open one (then the packet is INVALID).
    pub fn new(seg: &Segment<'_>, cfg: &TcpConfig) -> Option<TcpConn> {
        let index = FlagSet::of(seg.hdr.flags());
        let mut c = TcpConn {
            state: TcpState::None,
            seen: [TcpPeer::default(); 2],
            last_dir: Dir::Original,
            retrans: 0,
            last_index: FlagSet::None,
            last_wscale: 0,
            last_flags: 0,
            last_win: 0,
            last_seq: 0,
            last_ack: 0,
            last_end: 0,
        };
        let s = &mut c.seen[0];
        s.td_end = seg.end();
        s.td_maxwin = u32::from(seg.hdr.window()).max(1);
        match TRANSITIONS[0][index as usize][0] {
            Next::To(TcpState::SynSent) => {
                s.td_maxend = s.td_end;
                read_options(&seg.hdr, s);
            }
            Next::To(_) if cfg.loose => {
                // Mid-stream pickup: the history is lost, so assume SACK and
                // be liberal, since the window scale was never seen.
                s.td_maxend = s.td_end.wrapping_add(s.td_maxwin);
                c.seen[0].flags = SACK_PERM | BE_LIBERAL;
                c.seen[1].flags = SACK_PERM | BE_LIBERAL;
            }
            _ => return None,
        }
        Some(c)
    }

    /// `nf_conntrack_tcp_packet`: tracks one segment of this connection.
    /// `seen_reply` and `assured` are the connection's status bits;
    /// `ack_offset` is how far NAT shifted the data the segment
    /// acknowledges (0 unless a helper changed a segment's length).
    /// In line into `track_tcp`, and the fast path with `in_window` into
    /// it: as two calls, their register saves and arguments took 59
    /// instructions of an established segment's 924 in `ct-bench` (under
    /// callgrind), and once the fast path came, the compiler no longer
    /// put this in line by itself (28 more). This, `established_ack`,
    /// `any_segment` and `accept` take the segment's context argument by
    /// argument: as one struct it cost 29 instructions more (round 13).
    #[inline(always)]
    pub fn packet(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        seen_reply: bool,
        assured: bool,
        ack_offset: i32,
        cfg: &TcpConfig,
    ) -> TcpVerdict {
        if self.state == TcpState::Established && seg.hdr.flags() & FLAG_SET_BITS == TCP_ACK {
            return self.established_ack(dir, seg, seen_reply, assured, ack_offset, cfg);
        }
        self.any_segment(dir, seg, seen_reply, assured, ack_offset, cfg)
    }

    /// The segment nearly every packet of a connection is: an ACK, with or
    /// without data, in ESTABLISHED. Linux has no such path; this is
    /// `any_segment` with what that case fixes taken as constants, so the
    /// compiler drops the transition table, the SYN and RST cases and the
    /// closing states' checks. The outcome is the same, state included
    /// (`fast_path_agrees_with_the_general_one` checks it).
    #[inline]
    fn established_ack(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        seen_reply: bool,
        assured: bool,
        ack_offset: i32,
        cfg: &TcpConfig,
    ) -> TcpVerdict {
        const STAY: TcpState = TcpState::Established;
        match self.in_window(dir, FlagSet::Ack, TCP_ACK, seg, ack_offset, cfg.be_liberal) {
            Window::Accept => self.accept(dir, FlagSet::Ack, STAY, STAY, seen_reply, assured, cfg),
            Window::Ignore => TcpVerdict::Ignore,
            // `stale_timeout` shortens only for a FIN or an RST.
            Window::Invalid(reason) => TcpVerdict::Invalid {
                reason,
                shrink_to: None,
            },
        }
    }

    /// `packet` for any segment in any state. Out of line, so that the
    /// fast path's function stays small: 3 fewer instructions an
    /// established segment than in line.
    #[inline(never)]
    fn any_segment(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        seen_reply: bool,
        assured: bool,
        ack_offset: i32,
        cfg: &TcpConfig,
    ) -> TcpVerdict {
        let t = &cfg.timeouts;
        let index = FlagSet::of(seg.hdr.flags());
        let d = dir.index();
        let mut old = self.state;
        let next = TRANSITIONS[d][index as usize][old as usize];
        let mut new = match next {
            Next::To(s) => s,
            _ => old,
        };
        let mut check_window = true;
        let mut ignore = next == Next::Ignore;
        match next {
            Next::To(TcpState::SynSent) if old >= TcpState::TimeWait => {
                // RFC 1122: a SYN may reopen a connection in TIME_WAIT. If
                // either end began closing, or this side reset it, the old
                // connection is gone: delete it and track the SYN afresh.
                let closing = (self.seen[0].flags | self.seen[1].flags) & CLOSE_INIT != 0;
                if closing || (self.last_dir == dir && self.last_index == FlagSet::Rst) {
                    return TcpVerdict::Reopen;
                }
                ignore = true;
            }
            Next::Invalid => {
                return TcpVerdict::Invalid {
                    reason: "tcp-invalid-state-transition",
                    shrink_to: None,
                }
            }
            Next::To(TcpState::TimeWait)
                if old == TcpState::LastAck
                    && index == FlagSet::Ack
                    && self.last_dir != dir
                    && self.last_index == FlagSet::Syn
                    && self.last_flags & EXP_CHALLENGE_ACK != 0 =>
            {
                // An RFC 5961 challenge ACK answering a spurious SYN does not
                // acknowledge the last FIN.
                self.last_flags &= !EXP_CHALLENGE_ACK;
                return TcpVerdict::Ignore;
            }
            Next::To(TcpState::SynSent2) => self.last_flags |= SIMULTANEOUS_OPEN,
            Next::To(TcpState::SynRecv)
                if dir == Dir::Reply
                    && index == FlagSet::Ack
                    && self.last_flags & SIMULTANEOUS_OPEN != 0 =>
            {
                new = TcpState::Established;
            }
            Next::To(TcpState::Close) if index == FlagSet::Rst => {
                match self.check_rst(dir, seg, old, seen_reply, assured, cfg) {
                    RstCheck::Invalid => {
                        return TcpVerdict::Invalid {
                            reason: "tcp-invalid-rst",
                            shrink_to: None,
                        }
                    }
                    RstCheck::SkipWindow => check_window = false,
                    RstCheck::KeepState => new = old,
                    RstCheck::Normal => {}
                }
            }
            _ => {}
        }
        if ignore {
            if index == FlagSet::SynAck
                && self.last_index == FlagSet::Syn
                && self.last_dir != dir
                && seg.hdr.ack() == self.last_end
            {
                // This SYN/ACK answers a SYN we ignored: both ends are in
                // sync and we are not. Resynchronise from that SYN.
                old = TcpState::SynSent;
                new = TcpState::SynRecv;
                let l = self.last_dir.index();
                self.seen[l].td_end = self.last_end;
                self.seen[l].td_maxend = self.last_end;
                self.seen[l].td_maxwin = u32::from(self.last_win).max(1);
                self.seen[l].td_scale = self.last_wscale;
                self.last_flags &= !EXP_CHALLENGE_ACK;
                self.seen[l].flags = self.last_flags;
                let me = &mut self.seen[d];
                *me = TcpPeer {
                    flags: me.flags & BE_LIBERAL,
                    ..TcpPeer::default()
                };
            } else {
                self.note_ignored(dir, index, seg, old);
                return TcpVerdict::Ignore;
            }
        }
        if check_window {
            let flags = seg.hdr.flags();
            match self.in_window(dir, index, flags, seg, ack_offset, cfg.be_liberal) {
                Window::Accept => {}
                Window::Ignore => return TcpVerdict::Ignore,
                Window::Invalid(reason) => {
                    return TcpVerdict::Invalid {
                        reason,
                        shrink_to: self.stale_timeout(dir, index, assured, t),
                    }
                }
            }
        }
        self.accept(dir, index, old, new, seen_reply, assured, cfg)
    }

    /// An in-window segment moves the connection from `old` to `new`:
    /// remember it, and choose the timeout and whether it is now ASSURED.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn accept(
        &mut self,
        dir: Dir,
        index: FlagSet,
        old: TcpState,
        new: TcpState,
        seen_reply: bool,
        assured: bool,
        cfg: &TcpConfig,
    ) -> TcpVerdict {
        let t = &cfg.timeouts;
        let d = dir.index();
        self.last_index = index;
        self.last_dir = dir;
        self.state = new;
        if old != new && new == TcpState::FinWait {
            self.seen[d].flags |= CLOSE_INIT;
        }
        let mut timeout = if self.retrans >= cfg.max_retrans && t.get(new) > t.retrans {
            t.retrans
        } else if index == FlagSet::Rst {
            t.close
        } else if (self.seen[0].flags | self.seen[1].flags) & DATA_UNACKNOWLEDGED != 0
            && t.get(new) > t.unacknowledged
        {
            t.unacknowledged
        } else if self.last_win == 0 && t.get(new) > t.retrans {
            t.retrans
        } else {
            t.get(new)
        };
        if !seen_reply {
            // An RST as the only answer: no connection was ever established.
            if index == FlagSet::Rst {
                return TcpVerdict::Kill;
            }
            // A retransmitted SYN does not renew the timeout, or port reuse
            // could keep the entry alive for ever.
            if index == FlagSet::Syn && old == TcpState::SynSent {
                return TcpVerdict::AcceptNoRefresh;
            }
            // A picked-up connection without a reply gets no long timeout.
            if new == TcpState::Established && timeout > t.unacknowledged {
                timeout = t.unacknowledged;
            }
            return TcpVerdict::Accept {
                timeout,
                assured: false,
            };
        }
        let assure = !assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established;
        TcpVerdict::Accept {
            timeout,
            assured: assure,
        }
    }

    /// Remembers an ignored segment, to resynchronise on its answer.
    fn note_ignored(&mut self, dir: Dir, index: FlagSet, seg: &Segment<'_>, old: TcpState) {
        self.last_index = index;
        self.last_dir = dir;
        self.last_seq = seg.hdr.seq();
        self.last_end = seg.end();
        self.last_win = seg.hdr.window();
        if index == FlagSet::Syn && dir == Dir::Original {
            let mut peer = TcpPeer::default();
            read_options(&seg.hdr, &mut peer);
            self.last_flags = 0;
            self.last_wscale = 0;
            if peer.flags & WINDOW_SCALE != 0 {
                self.last_flags |= WINDOW_SCALE;
                self.last_wscale = peer.td_scale;
            }
            if peer.flags & SACK_PERM != 0 {
                self.last_flags |= SACK_PERM;
            }
            // In LAST_ACK the answer may be an RFC 5961 challenge ACK.
            if old == TcpState::LastAck {
                self.last_flags |= EXP_CHALLENGE_ACK;
            }
        }
        if old == TcpState::SynSent && index == FlagSet::Ack && dir == Dir::Reply {
            self.last_ack = seg.hdr.ack();
        }
    }

    fn check_rst(
        &self,
        dir: Dir,
        seg: &Segment<'_>,
        old: TcpState,
        seen_reply: bool,
        assured: bool,
        cfg: &TcpConfig,
    ) -> RstCheck {
        // Closing already: the tuple may have been reused, skip the checks.
        if self.can_early_drop() {
            return RstCheck::SkipWindow;
        }
        let peer = &self.seen[dir.other().index()];
        let established = self.state == TcpState::Established && assured;
        let mut verdict = RstCheck::Normal;
        if peer.flags & MAXACK_SET != 0 && self.last_index != FlagSet::Syn {
            let seq = seg.hdr.seq();
            if seq == 0 && !established {
                return RstCheck::Normal;
            }
            // RFC 5961 3.2: an RST must carry the sequence number the peer
            // expects; one below it is a blind reset.
            if before(seq, peer.td_maxack) && !cfg.be_liberal {
                return RstCheck::Invalid;
            }
            if !established || seq == peer.td_maxack {
                return RstCheck::Normal;
            }
            if self.last_index == FlagSet::Ack && self.last_dir == dir && seq == self.last_end {
                return RstCheck::Normal;
            }
            // Not an exact match: keep the state so a challenge ACK can
            // settle it.
            verdict = RstCheck::KeepState;
        }
        if ((seen_reply && self.last_index == FlagSet::Syn)
            || (!assured && self.last_index == FlagSet::Ack))
            && seg.hdr.ack() == self.last_end
        {
            // The RST answers a SYN or ACK we let through while out of sync.
            return RstCheck::SkipWindow;
        }
        if old == TcpState::SynSent
            && self.last_index == FlagSet::Ack
            && self.last_dir == Dir::Reply
            && seg.hdr.seq() == self.last_ack
        {
            // Reset answering a challenge ACK we let through.
            return RstCheck::SkipWindow;
        }
        verdict
    }

    /// `nf_tcp_handle_invalid`: FIN or RST out of window in both directions
    /// of an assured connection means the ends have moved on; shorten its
    /// timeout to the "unacknowledged" one rather than keep it for days.
    fn stale_timeout(
        &mut self,
        dir: Dir,
        index: FlagSet,
        assured: bool,
        t: &TcpTimeouts,
    ) -> Option<u32> {
        if !assured || !matches!(index, FlagSet::Rst | FlagSet::Fin) {
            return None;
        }
        if self.last_dir != dir && matches!(self.last_index, FlagSet::Fin | FlagSet::Rst) {
            Some(t.unacknowledged)
        } else {
            self.last_index = index;
            self.last_dir = dir;
            None
        }
    }

    /// `tcp_in_window`: checks the segment against what each end has
    /// announced, and learns from it. `flags` are the header's, given so
    /// that the fast path's are constants. Always in line, once in each
    /// path: left to the compiler, it became one call from both, and an
    /// established segment took 74 more instructions in `ct-bench`.
    #[inline(always)]
    fn in_window(
        &mut self,
        dir: Dir,
        index: FlagSet,
        flags: u8,
        seg: &Segment<'_>,
        ack_offset: i32,
        liberal: bool,
    ) -> Window {
        let d = dir.index();
        let state = self.state;
        let h = &seg.hdr;
        let (lo, hi) = self.seen.split_at_mut(1);
        let (sender, receiver) = if d == 0 {
            (&mut lo[0], &mut hi[0])
        } else {
            (&mut hi[0], &mut lo[0])
        };
        let liberal = liberal || sender.flags & BE_LIBERAL != 0;
        let has = |flag: u8| flags & flag != 0;
        let mut seq = h.seq();
        let mut ack = h.ack();
        let mut sack = ack;
        let mut end = seg.end_with(flags);
        let win_raw = h.window();
        let mut win = u32::from(win_raw);
        if receiver.flags & SACK_PERM != 0 {
            sack = highest_sack(h, sack);
        }
        ack = ack.wrapping_sub(ack_offset as u32);
        sack = sack.wrapping_sub(ack_offset as u32);

        if sender.td_maxwin == 0 {
            if has(TCP_SYN) {
                init_sender(sender, receiver, h, end, win, dir);
                if !has(TCP_ACK) {
                    return Window::Accept; // simultaneous open
                }
            } else {
                // Mid-connection: take what the segment says.
                sender.td_end = end;
                let swin = win << sender.td_scale;
                sender.td_maxwin = swin.max(1);
                sender.td_maxend = end.wrapping_add(sender.td_maxwin);
                if receiver.td_maxwin == 0 {
                    // Nothing seen the other way yet: let III and IV pass.
                    receiver.td_end = sack;
                    receiver.td_maxend = sack;
                } else if sack == receiver.td_end.wrapping_add(1) {
                    receiver.td_end = receiver.td_end.wrapping_add(1); // keepalive answer
                }
            }
        } else if has(TCP_SYN)
            && after(end, sender.td_end)
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 793: a reinitialised end only has to use larger sequence
            // numbers. Start this direction again.
            init_sender(sender, receiver, h, end, win, dir);
            if dir == Dir::Reply && !has(TCP_ACK) {
                return Window::Accept;
            }
        }

        if !has(TCP_ACK) {
            ack = receiver.td_end;
            sack = ack;
        } else if flags & (TCP_ACK | TCP_RST) == TCP_ACK | TCP_RST && ack == 0 {
            // Stacks that set ACK with a zero value in RSTs.
            ack = receiver.td_end;
            sack = ack;
        }
        if has(TCP_RST) && seq == 0 && state == TcpState::SynSent {
            // An RST answering our SYN.
            seq = sender.td_end;
            end = seq;
        }
        let max_ack_window = sender.td_maxwin.max(MAX_ACK_WINDOW);
        let verdict = |w: Window| if liberal { Window::Accept } else { w };

        // I. Upper bound for valid data: seq <= sender.td_maxend.
        if !before(seq, sender.td_maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
            let ack_ok = after(
                sack,
                receiver.td_end.wrapping_sub(max_ack_window).wrapping_sub(1),
            );
            let in_recv_win = receiver.td_maxwin != 0
                && after(
                    end,
                    sender
                        .td_end
                        .wrapping_sub(receiver.td_maxwin)
                        .wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= receiver.td_maxwin
                && before(sack, receiver.td_end.wrapping_add(1))
            {
                // A stack sending a little more than the window allows: note
                // the data so the peer's ACK of it is not out of bounds later.
                sender.td_end = end;
                sender.flags |= DATA_UNACKNOWLEDGED;
                return verdict(Window::Ignore);
            }
            return verdict(Window::Invalid("tcp-seq-over-upper-bound"));
        }
        // III. Upper bound for valid (s)ack: sack <= receiver.td_end.
        if !before(sack, receiver.td_end.wrapping_add(1)) {
            return verdict(Window::Invalid("tcp-ack-over-upper-bound"));
        }
        // II. Lower bound for valid data: end >= sender.td_end - receiver.td_maxwin.
        let in_recv_win = receiver.td_maxwin == 0
            || after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        if !in_recv_win {
            return verdict(Window::Ignore);
        }
        // IV. Lower bound for valid (s)ack.
        if !after(
            sack,
            receiver.td_end.wrapping_sub(max_ack_window).wrapping_sub(1),
        ) {
            return verdict(Window::Ignore);
        }

        // RFC 7323: windows in SYNs are never scaled.
        if !has(TCP_SYN) {
            win <<= sender.td_scale;
        }
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if sender.td_maxwin < swin {
            sender.td_maxwin = swin;
        }
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags |= DATA_UNACKNOWLEDGED;
        }
        if has(TCP_ACK) {
            if sender.flags & MAXACK_SET == 0 {
                sender.td_maxack = ack;
                sender.flags |= MAXACK_SET;
            } else if after(ack, sender.td_maxack) {
                sender.td_maxack = ack;
            }
        }
        if receiver.td_maxwin != 0 && after(end, sender.td_maxend) {
            receiver.td_maxwin = receiver
                .td_maxwin
                .wrapping_add(end.wrapping_sub(sender.td_maxend));
        }
        if after(sack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
            receiver.td_maxend = sack.wrapping_add(win);
            if win == 0 {
                receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
            }
        }
        if ack == receiver.td_end {
            receiver.flags &= !DATA_UNACKNOWLEDGED;
        }

        // Count retransmissions: the same ACK segment again.
        if index == FlagSet::Ack {
            if self.last_dir == dir
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win_raw
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.last_dir = dir;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win_raw;
                self.retrans = 0;
            }
        }
        Window::Accept
    }

    /// Whether early drop may take this connection though it is assured
    /// (`tcp_can_early_drop`): it is closing anyway.
    pub fn can_early_drop(&self) -> bool {
        matches!(
            self.state,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        )
    }
}

enum RstCheck {
    Normal,
    Invalid,
    SkipWindow,
    KeepState,
}

/// `tcp_init_sender`: a SYN or SYN/ACK (re)starts this direction.
fn init_sender(
    sender: &mut TcpPeer,
    receiver: &mut TcpPeer,
    h: &TcpHeader<'_>,
    end: u32,
    win: u32,
    dir: Dir,
) {
    sender.td_end = end;
    sender.td_maxend = end;
    sender.td_maxwin = win.max(1);
    read_options(h, sender);
    // RFC 7323: scaling is on only if both ends offered it.
    if dir == Dir::Reply
        && !(sender.flags & WINDOW_SCALE != 0 && receiver.flags & WINDOW_SCALE != 0)
    {
        sender.td_scale = 0;
        receiver.td_scale = 0;
    }
}
