//! ICMP and ICMPv6 (`nf_conntrack_proto_icmp.c`, `..._icmpv6.c`): which
//! types are errors, which queries open a connection and what answers
//! them, and the connection an error belongs to.

use super::{ConnRef, CtInfo, Dir, Shard, Tuple, Verdict};
use crate::conntrack::Classified;
use crate::wire::{self, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

impl Shard {
    /// An ICMP error belongs to the connection of the packet it quotes
    /// (`nf_conntrack_inet_error`): RELATED, or RELATED_REPLY, to it.
    pub(super) fn icmp_error(&mut self, c: &Classified<'_>, inner: &[u8], now: u64) -> Verdict {
        let inv = match quoted_flow(&c.tuple, inner) {
            Ok(t) => t,
            Err(reason) => return Verdict::invalid(reason),
        };
        let h = self.table.hash(&inv);
        let Some((slot, dir)) = self.lookup(&inv, h, None, now) else {
            return Verdict::invalid("icmp-error-no-connection");
        };
        let conn = self.table.get(slot);
        // The error must be addressed to the host that sent the quoted
        // packet (Linux 5.x: "outer daddr != inner").
        if self.table.tuple(slot, dir).dst != c.tuple.dst {
            return Verdict::invalid("icmp-error-address-mismatch");
        }
        Verdict {
            ctinfo: if dir == Dir::Reply {
                CtInfo::RelatedReply
            } else {
                CtInfo::Related
            },
            conn: Some(ConnRef { slot, id: conn.id }),
            reason: None,
            unconfirmed: None,
            status: conn.status,
            help: false,
        }
    }
}

/// ICMP error types (`icmp_is_err`; for ICMPv6, types below 128).
pub(super) fn is_icmp_error(ty: u8, v6: bool) -> bool {
    if v6 {
        ty < 128
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
}

/// Request types that may open a connection (Linux's `valid_new`): echo,
/// timestamp, information and address mask; ICMPv6 echo and node information.
pub(super) fn icmp_opens(ty: u8, v6: bool) -> bool {
    if v6 {
        matches!(ty, 128 | 139)
    } else {
        matches!(ty, 8 | 13 | 15 | 17)
    }
}

/// The ICMP query types (IPv6?, request, reply), Linux's `invmap`.
const QUERY_PAIRS: [(bool, u8, u8); 6] = [
    (false, 8, 0),
    (false, 13, 14),
    (false, 15, 16),
    (false, 17, 18),
    (true, 128, 129),
    (true, 139, 140),
];

/// The type of the other direction of an ICMP query: a request's reply
/// and a reply's request.
pub(super) fn icmp_counterpart_type(ty: u8, v6: bool) -> Option<u8> {
    QUERY_PAIRS.iter().find_map(|&(six, req, rep)| match () {
        _ if six != v6 => None,
        _ if ty == req => Some(rep),
        _ if ty == rep => Some(req),
        _ => None,
    })
}

/// The reply type of a request.
pub(super) fn icmp_reply_type(ty: u8, v6: bool) -> Option<u8> {
    QUERY_PAIRS
        .iter()
        .find(|&&(six, req, _)| six == v6 && req == ty)
        .map(|&(_, _, rep)| rep)
}

/// ICMPv6 types Linux leaves UNTRACKED (`noct_valid_new`): MLD and
/// neighbour discovery, which are link-local signalling.
pub(super) fn icmpv6_untracked(ty: u8) -> bool {
    matches!(ty, 130..=137 | 143)
}

/// The tuple, in the direction an ICMP error with outer tuple `outer`
/// travels, of the connection whose packet the error quotes (`inner`, the
/// quoted packet, usually cut short: parsed laxly, needing only the first
/// 8 transport bytes: ports, or ICMP id).
pub(super) fn quoted_flow(outer: &Tuple, inner: &[u8]) -> Result<Tuple, &'static str> {
    let Ok(q) = wire::parse_ip(inner, inner.len(), true) else {
        return Err("icmp-error-bad-inner-packet");
    };
    if q.l3 != outer.l3() || q.l4.len() < 8 || q.fragment == wire::Fragment::Later {
        return Err("icmp-error-bad-inner-packet");
    }
    let mut t = Tuple {
        src: q.src,
        dst: q.dst,
        sport: 0,
        dport: 0,
        proto: q.proto,
        family: outer.family,
        zone: outer.zone,
    };
    let ports = |b: &[u8]| {
        (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        )
    };
    let v6 = q.l3 == L3::V6;
    match q.proto {
        PROTO_TCP | PROTO_UDP => (t.sport, t.dport) = ports(q.l4),
        PROTO_ICMP | PROTO_ICMPV6 => {
            let (ty, code) = (q.l4[0], q.l4[1]);
            // An error about an error, or about a reply, relates to nothing.
            let Some(rty) = icmp_opens(ty, v6)
                .then(|| icmp_reply_type(ty, v6))
                .flatten()
            else {
                return Err("icmp-error-about-non-request");
            };
            t.sport = u16::from_be_bytes([q.l4[4], q.l4[5]]);
            t.dport = u16::from(rty) << 8 | u16::from(code);
        }
        _ => {}
    }
    // The quoted packet travelled the other way: its inverse is the
    // tuple of the direction this error travels.
    Ok(if matches!(q.proto, PROTO_ICMP | PROTO_ICMPV6) {
        Tuple {
            src: t.dst,
            dst: t.src,
            ..t
        }
    } else {
        t.swapped()
    })
}
