//! The protocol step of ingress (`nf_conntrack_handle_packet`): the
//! protocol tracker's verdict on a packet of a known connection, its
//! timeout and its counters.

use super::classify::{Classified, L4};
use super::conn::{Deadline, ProtoState, Status};
use super::table::Slot;
use super::tuple::Dir;
use super::{udp, Segment, Shard, TcpVerdict};
use crate::wire::L3;

impl Shard {
    /// The protocol tracker's verdict on a UDP packet, with timeout and
    /// accounting applied (`nf_conntrack_handle_packet`). UDP, the most
    /// common and the simplest, is tracked in line, as TCP is
    /// (`track_tcp`); ICMP queries and other protocols by a call
    /// (`track_other`).
    #[inline(always)]
    pub(super) fn track_udp(
        &mut self,
        slot: Slot,
        dir: Dir,
        c: &Classified<'_>,
        now: u64,
    ) -> Track {
        let conn = self.table.get_mut(slot);
        let seen_reply = conn.status.has(Status::SEEN_REPLY);
        // No test of `conn.proto` before this: the state is read only
        // until the flow is ASSURED. Matching `ProtoState::Udp` read its
        // discriminant, on the connection's third cache line, for every
        // packet.
        let proto = &conn.proto;
        let timeout = udp::packet(
            &mut conn.status,
            || match proto {
                ProtoState::Udp { stream_after } => *stream_after,
                // Cannot be: the protocol is part of the tuple.
                _ => u64::MAX,
            },
            seen_reply,
            now,
            &self.cfg.timeouts,
        );
        conn.deadline = Deadline::after(now, timeout);
        self.acct.add(slot, dir, c.wire_len);
        Track::Accept
    }

    /// `track_udp` for a TCP segment. In line: `ingress` gives TCP a copy
    /// of the lookup of its own for this.
    #[inline(always)]
    pub(super) fn track_tcp(
        &mut self,
        slot: Slot,
        dir: Dir,
        c: &Classified<'_>,
        seg: &Segment<'_>,
        now: u64,
    ) -> Track {
        let cfg = &self.cfg;
        let conn = self.table.get_mut(slot);
        let ProtoState::Tcp(tcp) = &mut conn.proto else {
            // Cannot be: the protocol is part of the tuple.
            return Track::Invalid("protocol-mismatch");
        };
        let seen_reply = conn.status.has(Status::SEEN_REPLY);
        let assured = conn.status.has(Status::ASSURED);
        // The peer acknowledges data NAT shifted: its ACK is taken back to
        // the sender's numbers (`tcp_in_window`'s receiver_offset).
        let ack_offset = match self.exts.of(slot) {
            Some(a) if conn.status.has(Status::SEQ_ADJUST) => {
                a.seqadj[dir.other().index()].offset(seg.hdr.ack().wrapping_sub(1))
            }
            _ => 0,
        };
        match tcp.packet(dir, seg, seen_reply, assured, ack_offset, &cfg.tcp) {
            TcpVerdict::Accept { timeout, assured } => {
                if assured {
                    conn.status.set(Status::ASSURED);
                }
                conn.deadline = Deadline::after(now, timeout);
            }
            TcpVerdict::AcceptNoRefresh => {}
            TcpVerdict::Ignore => return Track::Ignore,
            TcpVerdict::Invalid { reason, shrink_to } => {
                if let Some(s) = shrink_to {
                    conn.deadline = conn.deadline.at_most(now, s);
                }
                return Track::Invalid(reason);
            }
            TcpVerdict::Kill => {
                self.acct.add(slot, dir, c.wire_len);
                return Track::Kill;
            }
            TcpVerdict::Reopen => return Track::Reopen,
        }
        self.acct.add(slot, dir, c.wire_len);
        Track::Accept
    }

    /// `track_udp` for an ICMP query or a packet of another protocol.
    pub(super) fn track_other(
        &mut self,
        slot: Slot,
        dir: Dir,
        c: &Classified<'_>,
        l4: &L4<'_>,
        now: u64,
    ) -> Track {
        let cfg = &self.cfg;
        let conn = self.table.get_mut(slot);
        let timeout = match (&conn.proto, l4) {
            (ProtoState::Other, L4::IcmpQuery) if c.tuple.l3() == L3::V6 => cfg.timeouts.icmpv6,
            (ProtoState::Other, L4::IcmpQuery) => cfg.timeouts.icmp,
            (ProtoState::Other, L4::Other) => cfg.timeouts.generic,
            // A tuple shared by two trackers cannot happen: the protocol is
            // part of the tuple.
            _ => return Track::Invalid("protocol-mismatch"),
        };
        conn.deadline = Deadline::after(now, timeout);
        self.acct.add(slot, dir, c.wire_len);
        Track::Accept
    }
}

/// What the protocol tracker decided, as the shard acts on it.
pub(super) enum Track {
    Accept,
    Ignore,
    Invalid(&'static str),
    Kill,
    Reopen,
}
