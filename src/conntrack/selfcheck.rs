//! The tracker's invariants, checked on demand, and a byte-string driver
//! for coverage-guided fuzzers (the `fuzz/` targets and their regression
//! test use the same code).

use super::classify::L4;
use super::steering::{HashFields, Owners, Steering};
use super::{Classified, Config, Dir, Manip, NatRange, Shard, Status, SEC};
use crate::wire::{parse_frame, Addr, Frame, LinkType, L3};

impl Shard {
    /// Checks what must hold between bursts: every confirmed connection is
    /// found by both of its tuples; nothing is left unconfirmed; no slot is
    /// lost; the packet counters add up to `packets` (how many packets the
    /// caller fed, counting `ignore`d and `malformed` frames).
    pub fn check_invariants(&self, packets: u64) -> Result<(), String> {
        let st = self.stats();
        let counted = st.found + st.new + st.invalid + st.ignore;
        if counted != packets {
            return Err(format!(
                "counters add up to {counted}, {packets} packets fed: {st:?}"
            ));
        }
        if self.unconfirmed_count() != 0 {
            return Err(format!(
                "{} unconfirmed connections survive",
                self.unconfirmed_count()
            ));
        }
        if self.table().in_use() != self.table().len() {
            return Err(format!(
                "{} slots in use for {} connections",
                self.table().in_use(),
                self.table().len()
            ));
        }
        let mut n = 0u64;
        for (slot, c) in self.table().iter() {
            n += 1;
            if !c.status.has(Status::CONFIRMED) {
                return Err(format!(
                    "connection {} in the table without CONFIRMED",
                    c.id
                ));
            }
            for dir in [Dir::Original, Dir::Reply] {
                let tuples = self.table().tuples(slot);
                let found = self.find(&tuples[dir.index()]);
                // A host talking to itself on a port-less protocol has equal
                // tuples; then either direction may be found, as in Linux.
                let ok = match found {
                    Some((r, d)) => r.slot == slot && (d == dir || tuples[0] == tuples[1]),
                    None => false,
                };
                if !ok {
                    return Err(format!(
                        "connection {} not found by its {dir:?} tuple",
                        c.id
                    ));
                }
            }
        }
        // A connection has an extension record exactly when a helper is
        // involved (it has one, or an expectation made it), and a record
        // goes with its connection.
        let mut with_ext = 0;
        for (slot, c) in self.table().iter() {
            let wants = c.status.has(Status::HELPER) || c.status.has(Status::EXPECTED);
            if wants != self.exts.of(slot).is_some() {
                return Err(format!("connection {} has a record: {}", c.id, !wants));
            }
            with_ext += usize::from(wants);
        }
        if self.exts.in_use() != with_ext {
            return Err(format!(
                "{} extension records held for {with_ext} connections",
                self.exts.in_use()
            ));
        }
        // Every pending expectation of this shard belongs to a live
        // connection with a helper: a master takes its expectations along.
        let masters: std::collections::HashSet<u32> = self
            .table()
            .iter()
            .filter(|(_, c)| c.status.has(Status::HELPER))
            .map(|(_, c)| c.id)
            .collect();
        for e in self.expectations().snapshot() {
            if e.master.shard == self.id && !masters.contains(&e.master.id) {
                return Err(format!(
                    "expectation {:?} outlived its master {}",
                    e.tuple, e.master.id
                ));
            }
        }
        let removed = st.expired + st.early_drop + st.delete + st.search_restart;
        if st.insert != removed + n {
            return Err(format!(
                "{} inserted, {removed} removed, {n} in the table",
                st.insert
            ));
        }
        Ok(())
    }
}

const LINK_TYPES: [u32; 6] = [1, 101, 113, 276, 0, 108];

/// Runs a byte string as a packet sequence through a fresh shard and checks
/// the invariants after every packet. Format: a link-type byte, a
/// settings byte (bit 0 checksum, bit 1 liberal, bit 2 not loose, bit 3
/// the shard is worker 0 of two, whose NAT steers replies to it, bits 4-7
/// table size), then records of [control, length, frame bytes...], where
/// the control byte's low 2 bits say what egress does (confirm; NAT then
/// confirm; discard; forget), bit 7 which NAT (source to 198.18.0.100 or
/// 2001:2::100, or destination to 198.18.0.1 or 2001:2::1, port 21, so
/// that the FTP helper reads what the fuzzer sends both ways),
/// and bits 2-6 advance the clock by that many 10-second steps. A payload
/// change NAT asks for (an FTP announcement rewritten) must lie within
/// the packet's payload.
pub fn run_byte_sequence(data: &[u8]) -> Result<(), String> {
    let [link, settings, rest @ ..] = data else {
        return Ok(());
    };
    let link = LinkType::from_linktype(LINK_TYPES[*link as usize % LINK_TYPES.len()])
        .expect("every listed link type is known");
    let mut cfg = Config {
        max: 2 + (*settings >> 4) as usize,
        prefault: false,
        ..Config::default()
    };
    cfg.checksum = settings & 1 != 0;
    cfg.tcp.be_liberal = settings & 2 != 0;
    cfg.tcp.loose = settings & 4 == 0;
    let mut shard = Shard::new(cfg);
    if settings & 8 != 0 {
        let owners = std::sync::Arc::new(Owners::new(None, 2));
        shard.set_steering(Steering::new(owners, HashFields::ALL, 0));
    }
    let mut now = 1_000 * SEC;
    let mut packets = 0;
    let mut rest = rest;
    while let [control, len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (f, next) = tail.split_at(len);
        rest = next;
        now += u64::from(control >> 2 & 0x1f) * 10 * SEC;
        packets += 1;
        match parse_frame(link, f, f.len()) {
            Ok(Frame::Ip(ip)) => {
                let c = shard.classify(ip, 0);
                let mut v = shard.ingress(&c, now);
                if let Some(r) = v.conn {
                    if shard.conn(r).is_some_and(|c| c.deadline.passed(now)) {
                        return Err("an expired connection was reported".into());
                    }
                }
                match control & 3 {
                    0 => {
                        let _ = shard.egress(&mut v, &c, now);
                    }
                    1 => {
                        let manip = if control & 0x80 == 0 {
                            Manip::Src
                        } else {
                            Manip::Dst
                        };
                        if shard.nat(&mut v, manip, &fuzz_range(manip, &c)).is_err() {
                            if let Some(u) = v.unconfirmed.take() {
                                shard.discard(u);
                            }
                        } else {
                            let _ = shard.egress(&mut v, &c, now);
                        }
                    }
                    2 => {
                        if let Some(u) = v.unconfirmed.take() {
                            shard.discard(u);
                        }
                    }
                    _ => drop(v.unconfirmed.take()),
                }
                if let Some(e) = shard.take_edit() {
                    let within = match &c.l4 {
                        Ok(L4::Tcp(seg)) => {
                            usize::from(e.at) + usize::from(e.len) <= seg.payload.len()
                        }
                        _ => false,
                    };
                    if !within {
                        return Err(format!("a payload change outside the payload: {e:?}"));
                    }
                }
            }
            Ok(Frame::NotIp(_)) => shard.ignore(),
            Err(_) => shard.malformed(),
        }
        shard.reap_unconfirmed();
        shard.gc(now, 4);
        shard.check_invariants(packets)?;
    }
    Ok(())
}

/// The mapping the byte-sequence driver applies: one address of the
/// packet's family, and for destination NAT one port.
fn fuzz_range(manip: Manip, c: &Classified<'_>) -> NatRange {
    let (v4, v6, ports) = match manip {
        Manip::Src => ([198, 18, 0, 100], 0x100, None),
        Manip::Dst => ([198, 18, 0, 1], 1, Some((21, 21))),
    };
    let a = match c.tuple.l3() {
        L3::V4 => Addr::v4(v4),
        L3::V6 => Addr::from_std(std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, v6).into()),
    };
    NatRange {
        min_addr: a,
        max_addr: a,
        ports,
        persistent: false,
        random: false,
    }
}
