//! IP reassembly in front of the tracker, after Linux's `nf_defrag_ipv4`
//! and `nf_defrag_ipv6`: the tracker sees whole datagrams, so a datagram's
//! later fragments (which carry no ports) belong to its connection, a UDP
//! length is checked against the datagram, and helpers and checksums see
//! the whole payload.
//!
//! Fragments are held as the caller's handles `H` (mbufs in the data
//! plane), never copied while they wait. When the last piece arrives, the
//! datagram is assembled once into a scratch buffer for the tracker, and
//! the original fragments are given back in arrival order, to be forwarded
//! unchanged: a bump in the wire must not change the fragmentation of what
//! it forwards. Linux keeps IPv6 fragments as they came (`nf_ct_frag6`)
//! but refragments IPv4 on output; ctfwd keeps both families as they came.
//!
//! Hostile input is bounded: datagrams in reassembly, fragments per
//! datagram and fragments held in all are capped, a datagram expires
//! `timeout` after its first fragment (Linux's `ipfrag_time`, 30 s),
//! overlapping fragments drop the whole datagram (RFC 5722; Linux does the
//! same for IPv4 since 4.19), an exact duplicate is dropped alone (as
//! Linux's `inet_frag_queue_insert`), a first fragment too short for the
//! transport header drops the datagram (RFC 1858, RFC 3128, RFC 7112), and
//! no datagram grows past 65535 bytes (IPv6: no jumbograms).
//!
//! Differences from Linux: a full table refuses new fragments, as Linux
//! does above `ipfrag_high_thresh`, but by count rather than by memory; a
//! non-final fragment whose length is not a multiple of 8 is refused in
//! both families (Linux trims IPv4 ones); a timed-out datagram sends no ICMP
//! "reassembly time exceeded" (a bump in the wire has no address).

use std::collections::HashMap;

use crate::wire::{Addr, FragInfo, IpPacket, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use super::SEC;

/// Reassembly limits of one shard.
#[derive(Debug, Clone, Copy)]
pub struct DefragConfig {
    /// Datagrams in reassembly at once.
    pub max_datagrams: usize,
    /// Fragments one datagram may have.
    pub max_fragments: usize,
    /// Fragments held in all (the data plane bounds it by its mempool).
    pub max_held: usize,
    /// How long a datagram may take to complete, from its first fragment
    /// (nanoseconds).
    pub timeout: u64,
    /// Verify each IPv4 fragment's header checksum (`--ct-checksum`).
    pub checksum: bool,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_datagrams: 256,
            max_fragments: 64,
            max_held: 256 * 64,
            timeout: 30 * SEC,
            checksum: false,
        }
    }
}

/// What became of fragments, counted by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Fragments accepted and held.
    pub held: u64,
    /// Datagrams completed.
    pub reassembled: u64,
    /// Datagrams that did not complete in time.
    pub timeout: u64,
    /// Datagrams dropped for overlapping fragments.
    pub overlap: u64,
    /// Datagrams dropped for having too many fragments.
    pub too_many: u64,
    /// Datagrams dropped for growing past 65535 bytes.
    pub oversize: u64,
    /// Datagrams dropped for a first fragment without its transport header.
    pub tiny: u64,
    /// Exact duplicate fragments, dropped alone.
    pub duplicate: u64,
    /// Fragments refused because no more could be held.
    pub full: u64,
    /// Fragments refused as malformed (cut short, bad length, a second
    /// last fragment that disagrees, a bad header checksum).
    pub invalid: u64,
}

impl DefragStats {
    pub const COUNT: usize = 10;
    pub const NAMES: [&'static str; Self::COUNT] = [
        "frag_held",
        "frag_reassembled",
        "frag_timeout",
        "frag_overlap",
        "frag_too_many",
        "frag_oversize",
        "frag_tiny",
        "frag_duplicate",
        "frag_full",
        "frag_invalid",
    ];

    /// The values, in `NAMES` order.
    pub fn values(&self) -> [u64; Self::COUNT] {
        [
            self.held,
            self.reassembled,
            self.timeout,
            self.overlap,
            self.too_many,
            self.oversize,
            self.tiny,
            self.duplicate,
            self.full,
            self.invalid,
        ]
    }
}

/// A held fragment as the caller keeps it: its bytes can be read while it
/// waits (the frame, from its link header; the IP header at `l3_at`).
pub trait HeldFragment {
    fn bytes(&self) -> &[u8];
}

/// What reassembly needs of a fragment's headers, copied out of the
/// packet so that the packet itself can be handed over with its handle.
#[derive(Debug, Clone, Copy)]
pub struct FragHeader {
    src: Addr,
    dst: Addr,
    l3: L3,
    proto: u8,
    frag: FragInfo,
    wire_len: usize,
    /// Bytes of the IP packet present in the first segment or capture.
    present: usize,
    /// Transport bytes present (of a first fragment).
    l4_present: usize,
    header_ok: bool,
}

impl FragHeader {
    pub fn of(ip: &IpPacket<'_>) -> FragHeader {
        FragHeader {
            src: ip.src,
            dst: ip.dst,
            l3: ip.l3,
            proto: ip.proto,
            frag: ip.frag,
            wire_len: ip.wire_len,
            present: ip.l4_offset + ip.l4.len(),
            l4_present: ip.l4.len(),
            header_ok: crate::wire::ip_header_ok(ip),
        }
    }
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<H> {
    /// Held until its datagram is complete.
    Held,
    /// It completed its datagram: [`Defrag::datagram`] is the datagram and
    /// [`Defrag::take_fragments`] gives back every fragment, this one too.
    Complete,
    /// Refused, with why; the handle comes back. Where the reason spoils
    /// the whole datagram, its other fragments were dropped already.
    Refused(&'static str, H),
}

/// Fragments of one datagram share this (`inet_frag_queue`'s key: IPv4
/// includes the protocol, IPv6 does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: Addr,
    dst: Addr,
    id: u32,
    proto: u8,
    l3: L3,
}

/// One held fragment: its place in the datagram and where its data sits in
/// the caller's bytes of it.
#[derive(Debug)]
struct Piece<H> {
    offset: u32,
    end: u32,
    data_at: u32,
    handle: H,
}

/// Where the first fragment's header is, once it came.
#[derive(Debug, Clone, Copy)]
struct First {
    piece: usize,
    /// Offset of the IP header in the caller's bytes of the fragment.
    l3_at: u32,
    /// Offset of the fragment data from the IP header.
    data_at: u16,
    /// IPv6: the next-header byte naming the Fragment header.
    next_at: u16,
}

#[derive(Debug)]
struct Queue<H> {
    key: Key,
    deadline: u64,
    pieces: Vec<Piece<H>>,
    /// The datagram's payload length, once its last fragment came.
    total: Option<u32>,
    /// Payload bytes held (pieces never overlap, so a plain sum).
    have: u32,
    first: Option<First>,
    /// The list of live queues, oldest first (slots).
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// The reassembly table of one shard.
pub struct Defrag<H> {
    cfg: DefragConfig,
    /// Keyed by the standard library's randomly seeded SipHash: keys are
    /// chosen by senders, and a fixed hash would let them pile up.
    index: HashMap<Key, u32>,
    slots: Vec<Option<Queue<H>>>,
    /// Piece lists of free slots, allocated once and reused.
    spare: Vec<Vec<Piece<H>>>,
    free: Vec<u32>,
    /// Oldest and newest live queue.
    head: u32,
    tail: u32,
    held: usize,
    /// The most fragments ever held at once.
    held_peak: usize,
    stats: DefragStats,
    /// The last completed datagram, and its fragments in arrival order.
    scratch: Vec<u8>,
    done: Vec<H>,
}

/// Largest reassembled datagram (IPv4 total length, IPv6 payload length).
const MAX_DATAGRAM: u32 = 65535;

impl<H: HeldFragment> Defrag<H> {
    pub fn new(cfg: DefragConfig) -> Defrag<H> {
        let n = cfg.max_datagrams;
        Defrag {
            cfg,
            index: HashMap::with_capacity(n),
            slots: (0..n).map(|_| None).collect(),
            spare: (0..n)
                .map(|_| Vec::with_capacity(cfg.max_fragments))
                .collect(),
            free: (0..n as u32).rev().collect(),
            head: NIL,
            tail: NIL,
            held: 0,
            held_peak: 0,
            stats: DefragStats::default(),
            scratch: Vec::with_capacity(MAX_DATAGRAM as usize + 40),
            done: Vec::with_capacity(cfg.max_fragments),
        }
    }

    pub fn stats(&self) -> &DefragStats {
        &self.stats
    }

    /// Datagrams in reassembly.
    pub fn pending(&self) -> usize {
        self.index.len()
    }

    /// Fragments held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The most fragments it may hold (`DefragConfig::max_held`).
    pub fn max_held(&self) -> usize {
        self.cfg.max_held
    }

    /// The most fragments held at once so far: never above
    /// `DefragConfig::max_held`, whatever arrives.
    pub fn held_peak(&self) -> usize {
        self.held_peak
    }

    /// Takes a fragment with headers `ip`, whose IP header starts at
    /// `l3_at` in `handle.bytes()`, at time `now`.
    pub fn push(&mut self, ip: &FragHeader, l3_at: usize, handle: H, now: u64) -> Push<H> {
        let f = ip.frag;
        let data_at = usize::from(f.data_at);
        if ip.wire_len > ip.present || ip.wire_len < data_at {
            // Cut short by a capture's snap length, or spread over mbuf
            // segments: nothing to assemble from.
            return self.refuse_fragment("fragment-truncated", handle);
        }
        if self.cfg.checksum && !ip.header_ok {
            return self.refuse_fragment("bad-checksum", handle);
        }
        let len = (ip.wire_len - data_at) as u32;
        let (offset, end) = (f.offset, f.offset + len);
        // RFC 791 and RFC 8200: every fragment but the last carries a
        // multiple of 8 bytes, and at least 8.
        if f.more && (len == 0 || len % 8 != 0) {
            return self.refuse_fragment("fragment-bad-length", handle);
        }
        let key = Key {
            src: ip.src,
            dst: ip.dst,
            id: f.id,
            proto: if ip.l3 == L3::V4 { ip.proto } else { 0 },
            l3: ip.l3,
        };
        // The header before the fragmentable part: the IPv4 header, or the
        // IPv6 header and extension headers before the Fragment header.
        let unfrag = match ip.l3 {
            L3::V4 => data_at as u32,
            L3::V6 => data_at as u32 - 8 - 40,
        };
        let found = self.index.get(&key).copied();
        let slot = match found {
            _ if self.held >= self.cfg.max_held => None,
            Some(s) => Some(s),
            None => self.open(key, now),
        };
        let Some(slot) = slot else {
            self.stats.full += 1;
            return Push::Refused("fragment-table-full", handle);
        };
        let max_fragments = self.cfg.max_fragments;
        let q = self.slots[slot as usize]
            .as_mut()
            .expect("indexed slot is live");
        // IPv4's total length, or IPv6's payload length, of the datagram.
        if unfrag + end > MAX_DATAGRAM {
            self.stats.oversize += 1;
            return self.drop_datagram(slot, "fragment-oversize", handle);
        }
        if offset == 0 && !first_holds_transport(ip) {
            self.stats.tiny += 1;
            return self.drop_datagram(slot, "fragment-tiny", handle);
        }
        // A last fragment fixes the length; nothing may lie past it, and a
        // second last fragment must agree (Linux checks this first too).
        let past_end = match q.total {
            Some(t) => end > t || (!f.more && end != t),
            None => !f.more && q.pieces.iter().any(|p| p.end > end),
        };
        if past_end {
            self.stats.invalid += 1;
            return self.drop_datagram(slot, "fragment-past-end", handle);
        }
        for p in &q.pieces {
            if p.offset == offset && p.end == end {
                self.stats.duplicate += 1;
                return Push::Refused("fragment-duplicate", handle);
            }
            if p.offset < end && offset < p.end {
                self.stats.overlap += 1;
                return self.drop_datagram(slot, "fragment-overlap", handle);
            }
        }
        if q.pieces.len() >= max_fragments {
            self.stats.too_many += 1;
            return self.drop_datagram(slot, "fragment-too-many", handle);
        }
        if !f.more {
            q.total = Some(end);
        }
        if offset == 0 {
            q.first = Some(First {
                piece: q.pieces.len(),
                l3_at: l3_at as u32,
                data_at: f.data_at,
                next_at: f.next_at,
            });
        }
        q.pieces.push(Piece {
            offset,
            end,
            data_at: (l3_at + data_at) as u32,
            handle,
        });
        q.have += len;
        self.held += 1;
        self.held_peak = self.held_peak.max(self.held);
        self.stats.held += 1;
        if q.total != Some(q.have) {
            return Push::Held;
        }
        self.complete(slot);
        Push::Complete
    }

    /// The datagram the last `Push::Complete` assembled.
    pub fn datagram(&self) -> &[u8] {
        &self.scratch
    }

    /// The fragments of the datagram the last `Push::Complete` assembled,
    /// in the order they arrived.
    pub fn take_fragments(&mut self) -> std::vec::Drain<'_, H> {
        self.done.drain(..)
    }

    /// Drops every datagram whose time is up; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while self.head != NIL {
            let q = self.slots[self.head as usize]
                .as_ref()
                .expect("listed slot is live");
            if q.deadline > now {
                break;
            }
            self.close(self.head);
            n += 1;
        }
        self.stats.timeout += n as u64;
        n
    }

    fn refuse_fragment(&mut self, reason: &'static str, handle: H) -> Push<H> {
        self.stats.invalid += 1;
        Push::Refused(reason, handle)
    }

    /// Drops a datagram and everything held of it; this fragment comes back.
    fn drop_datagram(&mut self, slot: u32, reason: &'static str, handle: H) -> Push<H> {
        self.close(slot);
        Push::Refused(reason, handle)
    }

    /// A queue for a new datagram, newest in the list.
    fn open(&mut self, key: Key, now: u64) -> Option<u32> {
        let slot = self.free.pop()?;
        let pieces = self.spare.pop().unwrap_or_default();
        self.slots[slot as usize] = Some(Queue {
            key,
            deadline: now.saturating_add(self.cfg.timeout),
            pieces,
            total: None,
            have: 0,
            first: None,
            prev: self.tail,
            next: NIL,
        });
        match self.tail {
            NIL => self.head = slot,
            t => self.slots[t as usize].as_mut().expect("tail is live").next = slot,
        }
        self.tail = slot;
        self.index.insert(key, slot);
        Some(slot)
    }

    /// Frees a queue's slot and unlinks it; returns its pieces (emptied
    /// into the caller or dropped with their handles).
    fn unlink(&mut self, slot: u32) -> Vec<Piece<H>> {
        let q = self.slots[slot as usize]
            .take()
            .expect("closing a live slot");
        match q.prev {
            NIL => self.head = q.next,
            p => self.slots[p as usize].as_mut().expect("prev is live").next = q.next,
        }
        match q.next {
            NIL => self.tail = q.prev,
            n => self.slots[n as usize].as_mut().expect("next is live").prev = q.prev,
        }
        self.index.remove(&q.key);
        self.free.push(slot);
        self.held -= q.pieces.len();
        q.pieces
    }

    /// Drops a queue with its fragments.
    fn close(&mut self, slot: u32) {
        let mut pieces = self.unlink(slot);
        pieces.clear();
        self.spare.push(pieces);
    }

    /// Assembles a complete queue's datagram into the scratch buffer and
    /// moves its fragments to `done`.
    fn complete(&mut self, slot: u32) {
        let q = self.slots[slot as usize]
            .as_ref()
            .expect("completing a live slot");
        let first = q.first.expect("a complete datagram has its first fragment");
        let total = q.have as usize;
        let l3 = q.key.l3;
        let head = q.pieces[first.piece].handle.bytes();
        let l3_at = first.l3_at as usize;
        let s = &mut self.scratch;
        s.clear();
        match l3 {
            L3::V4 => {
                let ihl = usize::from(first.data_at);
                s.extend_from_slice(&head[l3_at..l3_at + ihl]);
                s[2..4].copy_from_slice(&((ihl + total) as u16).to_be_bytes());
                // Keep DF, clear MF and the offset; a fresh header checksum.
                s[6] &= 0x40;
                s[7] = 0;
                s[10] = 0;
                s[11] = 0;
                let c = crate::wire::header_checksum(&s[..ihl]);
                s[10..12].copy_from_slice(&c);
            }
            L3::V6 => {
                // The unfragmentable part, with the Fragment header cut out.
                let frag_at = usize::from(first.data_at) - 8;
                s.extend_from_slice(&head[l3_at..l3_at + frag_at]);
                s[usize::from(first.next_at)] = head[l3_at + frag_at];
                s[4..6].copy_from_slice(&((frag_at - 40 + total) as u16).to_be_bytes());
            }
        }
        let base = s.len();
        s.resize(base + total, 0);
        for p in &q.pieces {
            let src = &p.handle.bytes()[p.data_at as usize..][..(p.end - p.offset) as usize];
            s[base + p.offset as usize..base + p.end as usize].copy_from_slice(src);
        }
        let mut pieces = self.unlink(slot);
        self.done.clear();
        self.done.extend(pieces.drain(..).map(|p| p.handle));
        self.spare.push(pieces);
        self.stats.reassembled += 1;
    }
}

/// Whether a first fragment holds its transport header whole (RFC 1858 and
/// RFC 3128 for TCP over IPv4; RFC 7112 for IPv6's header chain), so that
/// no later fragment can change the ports or flags a filter saw.
fn first_holds_transport(ip: &FragHeader) -> bool {
    let need = match ip.proto {
        PROTO_TCP => 20,
        PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6 => 8,
        _ => 0,
    };
    ip.l4_present >= need
}

mod sequence;
pub use sequence::run_fragment_sequence;

#[cfg(test)]
mod tests;
