//! Connection tuples (Linux's `nf_conntrack_tuple`) and their hash.

use std::fmt;

use crate::wire::{Addr, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// Direction of a tuple within its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// One direction of a connection: what a packet is matched on.
///
/// For TCP and UDP `sport`/`dport` are the ports; for ICMP and ICMPv6 queries
/// `sport` is the identifier and `dport` holds type (high byte) and code (low
/// byte), as Linux keeps `src.u.icmp.id` and `dst.u.icmp.{type,code}`; for
/// other protocols both are 0. The 16-bit zone keeps overlapping address
/// spaces apart (`nf_conntrack_zone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub zone: u16,
}

impl Tuple {
    pub const ZERO: Tuple = Tuple {
        src: Addr::ZERO,
        dst: Addr::ZERO,
        sport: 0,
        dport: 0,
        proto: 0,
        family: 0,
        zone: 0,
    };

    pub fn l3(&self) -> L3 {
        if self.family == 6 {
            L3::V6
        } else {
            L3::V4
        }
    }

    /// The tuple a reply would carry, for protocols whose reply simply swaps
    /// the ends (`nf_ct_invert_tuple`). ICMP queries swap type as well and
    /// are inverted by the ICMP tracker.
    pub fn swapped(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// The tuple as five 64-bit words, for hashing.
    #[inline]
    fn words(&self) -> [u64; 5] {
        let (s, d) = (self.src.words(), self.dst.words());
        [
            s[0],
            s[1],
            d[0],
            d[1],
            (self.sport as u64)
                | (self.dport as u64) << 16
                | (self.proto as u64) << 32
                | (self.family as u64) << 40
                | (self.zone as u64) << 48,
        ]
    }

    /// Keyed hash of the tuple. Each table has its own random `seed`, as
    /// Linux seeds its conntrack hash, so that a sender cannot aim many
    /// tuples at one bucket without knowing it.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        // Folded 64x64->128 multiplies (as in wyhash/foldhash): strong enough
        // mixing for a seeded table, a few cycles per word.
        const K: [u64; 2] = [0x9E37_79B9_7F4A_7C15, 0xD6E8_FEB8_6659_FD93];
        let w = self.words();
        let mix = |a: u64, b: u64| {
            let p = (a as u128) * (b as u128);
            (p as u64) ^ ((p >> 64) as u64)
        };
        let h0 = mix(w[0] ^ seed, w[1] ^ K[0]);
        let h1 = mix(w[2] ^ seed.rotate_left(17), w[3] ^ K[1]);
        let h2 = mix(w[4] ^ K[0], seed ^ K[1]);
        mix(h0 ^ h2, h1 ^ K[0])
    }
}

impl fmt::Display for Tuple {
    /// `conntrack -L` style: `src=.. dst=.. sport=.. dport=..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, d) = (self.src.display(self.l3()), self.dst.display(self.l3()));
        match self.proto {
            PROTO_TCP | PROTO_UDP => write!(
                f,
                "src={s} dst={d} sport={} dport={}",
                self.sport, self.dport
            ),
            PROTO_ICMP | PROTO_ICMPV6 => write!(
                f,
                "src={s} dst={d} type={} code={} id={}",
                self.dport >> 8,
                self.dport & 0xff,
                self.sport
            ),
            _ => write!(f, "src={s} dst={d}"),
        }
    }
}

/// Protocol name as `conntrack -L` prints it.
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        _ => "unknown",
    }
}
