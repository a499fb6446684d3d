//! A byte-string driver of reassembly for coverage-guided fuzzers (the
//! `fragment_sequence` target in `fuzz/` and its regression test): any
//! byte string is a sequence of fragments of four datagrams (two per
//! family), each with an offset, a length, a More Fragments flag and a
//! step of the clock; every datagram completed is tracked. A panic or a
//! broken invariant is a finding.

use super::{Defrag, DefragConfig, FragHeader, HeldFragment, Push};
use crate::conntrack::{Config, Shard, SEC};
use crate::wire::{parse_ip, Fragment};

struct Held(Vec<u8>);

impl HeldFragment for Held {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

const PROTOS: [u8; 4] = [17, 6, 1, 47];

/// Builds one fragment from a 5-byte record.
fn fragment(rec: &[u8; 5]) -> Vec<u8> {
    let [kind, off_hi, off_lo, len8, extra] = *rec;
    let v6 = kind & 2 != 0;
    let id = u32::from(kind & 1);
    let more = kind & 4 != 0;
    let proto = PROTOS[usize::from(kind >> 6)];
    let offset = (u16::from_be_bytes([off_hi, off_lo]) & 0x1fff) as usize;
    let len = usize::from(len8) * 8 + usize::from(extra & 7);
    // A first fragment starts with something like a transport header.
    let payload: Vec<u8> = (0..len)
        .map(|i| match (offset, i) {
            (0, 4) => (len >> 8) as u8,
            (0, 5) => len as u8,
            _ => extra.wrapping_add(i as u8),
        })
        .collect();
    let mut p = Vec::with_capacity(48 + len);
    if v6 {
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&((8 + len) as u16).to_be_bytes());
        p.extend_from_slice(&[44, 64]);
        p.extend_from_slice(&[0x20, 1, 0, 2].repeat(8));
        p[23] = 1;
        p[39] = 2;
        let fo = (offset as u16) << 3 | u16::from(more);
        p.extend_from_slice(&[if proto == 1 { 58 } else { proto }, 0]);
        p.extend_from_slice(&fo.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
    } else {
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&((20 + len).min(0xffff) as u16).to_be_bytes());
        p.extend_from_slice(&(id as u16).to_be_bytes());
        let fo = offset as u16 | if more { 0x2000 } else { 0 };
        p.extend_from_slice(&fo.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0, 198, 18, 0, 1, 198, 19, 0, 1]);
        let c = crate::wire::header_checksum(&p);
        p[10..12].copy_from_slice(&c);
    }
    p.extend_from_slice(&payload);
    p
}

/// Runs the fragments `data` encodes; `Err` says which invariant broke.
pub fn run_fragment_sequence(data: &[u8]) -> Result<(), String> {
    let [limits, rest @ ..] = data else {
        return Ok(());
    };
    let cfg = DefragConfig {
        max_datagrams: 1 + usize::from(limits & 3),
        max_fragments: 2 + usize::from(limits >> 2 & 15),
        max_held: 4 + usize::from(limits >> 6) * 8,
        timeout: 30 * SEC,
        checksum: true,
    };
    let mut defrag: Defrag<Held> = Defrag::new(cfg);
    let mut shard = Shard::new(Config {
        max: 64,
        prefault: false,
        checksum: true,
        ..Config::default()
    });
    let mut now = 0;
    let (mut pushed, mut held, mut refused, mut datagrams) = (0u64, 0u64, 0u64, 0u64);
    for rec in rest.chunks_exact(5) {
        let rec: &[u8; 5] = rec.try_into().expect("5 bytes");
        now += u64::from(rec[0] >> 3 & 7) * 10 * SEC;
        defrag.expire(now);
        let f = fragment(rec);
        let Ok(ip) = parse_ip(&f, f.len(), false) else {
            continue;
        };
        if ip.fragment == Fragment::Whole {
            continue;
        }
        pushed += 1;
        match defrag.push(&FragHeader::of(&ip), 0, Held(f.clone()), now) {
            Push::Held => held += 1,
            Push::Refused(_, h) => {
                refused += 1;
                if h.0 != f {
                    return Err("a refused fragment came back changed".into());
                }
            }
            Push::Complete => {
                held += 1;
                datagrams += 1;
                let dg = defrag.datagram().to_vec();
                let ip = parse_ip(&dg, dg.len(), false)
                    .map_err(|e| format!("a reassembled datagram does not parse: {e}"))?;
                if ip.fragment != Fragment::Whole || ip.wire_len != dg.len() {
                    return Err("a reassembled datagram is not whole".into());
                }
                let n = defrag.take_fragments().count();
                if n == 0 || n > cfg.max_fragments {
                    return Err(format!("{n} fragments came back"));
                }
                let c = shard.classify(ip, 0);
                let mut v = shard.ingress(&c, now);
                let _ = shard.egress(&mut v, &c, now);
                shard.reap_unconfirmed();
            }
        }
        if defrag.pending() > cfg.max_datagrams || defrag.held() > cfg.max_held {
            return Err(format!(
                "{} datagrams and {} fragments held past the limits",
                defrag.pending(),
                defrag.held()
            ));
        }
    }
    if pushed != held + refused || defrag.stats().held != held {
        return Err(format!(
            "{pushed} pushed, {held} held, {refused} refused: {:?}",
            defrag.stats()
        ));
    }
    if defrag.stats().reassembled != datagrams {
        return Err("reassembled count is off".into());
    }
    defrag.expire(now + 31 * SEC);
    if defrag.pending() != 0 || defrag.held() != 0 {
        return Err("datagrams survive their timeout".into());
    }
    shard.check_invariants(datagrams)
}
