//! A shard's NAT: binding a mapping to a new connection
//! (`nf_nat_setup_info`, with `nat`'s choice), following a master's
//! translation, and what a packet of a translated connection must become
//! (tuples, sequence adjustment, a helper's payload change).

use super::nat::{self, invert, Manip, NatError, NatRange};
use super::{
    steering, Addr, ConnRef, Dir, FollowNat, Key, PayloadEdit, SeqAdj, Shard, Slot, Status, Tuple,
    Verdict,
};
use crate::wire::PROTO_ICMP;

impl Shard {
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
        self.exts.of(r.slot).map(|a| a.seqadj)
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
        let Some((slot, at)) = v.unconfirmed.as_ref().map(|u| (u.slot, u.at)) else {
            return Ok(());
        };
        if self.table.get(slot).status.has(nat_done(manip)) {
            return Ok(());
        }
        v.status = self.bind_nat(slot, at, manip, range)?;
        Ok(())
    }

    /// `nf_nat_setup_info` on the unconfirmed connection in `slot`, at
    /// `at` on the unconfirmed list; returns its status.
    fn bind_nat(
        &mut self,
        slot: Slot,
        at: u32,
        manip: Manip,
        range: &NatRange,
    ) -> Result<Status, NatError> {
        let Shard {
            table,
            unconfirmed,
            steering,
            nat_key,
            rng,
            ..
        } = self;
        let [original, reply] = table.tuples(slot);
        let cur = invert(&reply);
        // `nf_nat_used_tuple`: in the table, or taken by another new
        // connection of this burst (hashes compared before tuples).
        let used = |reply: &Tuple| {
            let h = table.hash(reply);
            table.lookup(reply, h).is_some()
                || unconfirmed
                    .find(h, |s, d| s != slot && table.has_tuple(s, d, reply))
                    .is_some()
        };
        let mut random = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        let new = nat::Chooser {
            original,
            used: &used,
            steering: steering.as_ref(),
            key: nat_key,
            random: &mut random,
        }
        .unique_tuple(&cur, range, manip)?;
        let reply = invert(&new);
        table.set_reply(slot, &reply);
        let conn = table.get_mut(slot);
        if new != cur {
            conn.status.set(match manip {
                Manip::Src => Status::SRC_NAT,
                Manip::Dst => Status::DST_NAT,
            });
        }
        conn.status.set(nat_done(manip));
        let status = conn.status;
        unconfirmed.rekey(at, slot, |orig_hash| {
            table.keys(&[original, reply], orig_hash)
        });
        Ok(status)
    }

    /// An expected connection of a translated master is translated as
    /// Linux's `nf_nat_follow_master` does: source, then destination (and
    /// the port the master's side meant). A mapping that cannot be made
    /// leaves that manip to the rules.
    pub(super) fn follow_master(&mut self, slot: Slot, at: u32, n: &FollowNat) {
        let single = |a: Addr, port: Option<u16>| NatRange {
            min_addr: a,
            max_addr: a,
            ports: port.map(|p| (p, p)),
            persistent: false,
            random: false,
        };
        let _ = self.bind_nat(slot, at, Manip::Src, &single(n.src, None));
        let _ = self.bind_nat(slot, at, Manip::Dst, &single(n.dst, n.dport));
    }

    /// The tuple of the packet whose verdict is `v` (its own, `t`) as
    /// filtering and SNAT rules see it: after destination NAT, where its
    /// connection is translated (`nat::after_dnat`).
    ///
    /// Only a destination translated in the packet's direction moves the
    /// view: DNAT's for an original, SNAT's undone for a reply (Linux's
    /// PREROUTING manip). Binding sets each bit only where it changed that
    /// side of the tuple (`bind_nat`), so without the bit the target's
    /// destination is the packet's and the target is not built: an
    /// original packet of a source-translated connection, half the
    /// traffic of plain SNAT, skips it.
    #[inline]
    pub fn dnat_view(&self, v: &Verdict, t: &Tuple) -> Tuple {
        let moves_dst = match v.dir() {
            Dir::Original => Status::DST_NAT,
            Dir::Reply => Status::SRC_NAT,
        };
        match v.conn.filter(|_| v.status.has(moves_dst)) {
            Some(r) => nat::after_dnat(t, self.nat_target(r, v.dir())),
            None => *t,
        }
    }

    /// A translated connection's tuples: of direction `dir`, then of the
    /// other (what an ICMP error about it is rewritten from).
    pub fn nat_tuples(&self, r: ConnRef, dir: Dir) -> Option<(Tuple, Tuple)> {
        let c = self.conn(r)?;
        if c.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) == 0 {
            return None;
        }
        Some((
            self.table.tuple(r.slot, dir),
            self.table.tuple(r.slot, dir.other()),
        ))
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
        if c.id != r.id || c.status.0 & (Status::SRC_NAT.0 | Status::DST_NAT.0) == 0 {
            return None;
        }
        let other = match dir {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        };
        let key = c.key(other.index());
        // `invert` is a swap for all but ICMP queries, and an IPv4 key
        // swapped gives the tuple wanted. The two ways meet in parts (a
        // key and address words), not in a tuple: met in a tuple, the
        // compiler kept it in memory, written in narrow stores and copied
        // out in wide loads that the store buffer cannot forward (a stall
        // a translated packet, 17.0 against 18.7 Mpps with source NAT at
        // 1k flows).
        let (k, [s0, s1, d0, d1]) = if key.is_v6() || key.proto() == PROTO_ICMP {
            self.inverted(r.slot, other)
        } else {
            let k = key.swapped();
            (k, k.v4_words())
        };
        Some(k.tuple_with([Addr::from_words([s0, s1]), Addr::from_words([d0, d1])]))
    }

    /// `invert` of the tuple of direction `d` of the connection in slot
    /// `s`, the long way: its key (for the ports, protocol, family and
    /// zone) and its addresses' words.
    #[inline(never)]
    fn inverted(&self, s: Slot, d: Dir) -> (Key, [u64; 4]) {
        let t = invert(&self.table.tuple(s, d));
        let ([s0, s1], [d0, d1]) = (t.src.words(), t.dst.words());
        (Key::of(&t), [s0, s1, d0, d1])
    }
}

/// The status bit that says a manip was bound.
fn nat_done(manip: Manip) -> Status {
    match manip {
        Manip::Src => Status::SRC_NAT_DONE,
        Manip::Dst => Status::DST_NAT_DONE,
    }
}
