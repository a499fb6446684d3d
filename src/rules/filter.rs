//! Connection filters, as `conntrack -L`/`-D` take them: `ct list proto
//! tcp dport 22`, or conntrack's own flags, `ct list -p tcp --dport 22`.
//! Addresses and ports are the original direction's, as conntrack's `-s`,
//! `-d`, `--sport` and `--dport`; every given match must hold.

use super::Prefix;
use crate::conntrack::{Conn, Status, TcpState, Tuple};

/// Which connections a runtime command applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnFilter {
    proto: Option<u8>,
    src: Option<Prefix>,
    dst: Option<Prefix>,
    sport: Option<u16>,
    dport: Option<u16>,
    state: Option<TcpState>,
    /// Status bits that must all be set.
    status: u16,
    /// Status bits that must all be clear (`unreplied`).
    status_clear: u16,
}

impl ConnFilter {
    /// Parses the words after `ct list` (and the like). An empty list
    /// selects every connection.
    pub fn parse(words: &[&str]) -> Result<ConnFilter, String> {
        let mut f = ConnFilter::default();
        let mut it = words.iter();
        while let Some(&key) = it.next() {
            let value = it
                .next()
                .copied()
                .ok_or_else(|| format!("'{key}' needs a value"))?;
            match key {
                "proto" | "-p" | "--proto" | "--protonum" => f.proto = Some(parse_proto(value)?),
                "src" | "-s" | "--src" | "--orig-src" => f.src = Some(Prefix::parse(value)?),
                "dst" | "-d" | "--dst" | "--orig-dst" => f.dst = Some(Prefix::parse(value)?),
                "sport" | "--sport" | "--orig-port-src" => f.sport = Some(port(value)?),
                "dport" | "--dport" | "--orig-port-dst" => f.dport = Some(port(value)?),
                "state" | "--state" => f.state = Some(tcp_state(value)?),
                "status" | "--status" => {
                    for name in value.split(',') {
                        match status_bit(name)? {
                            (bit, true) => f.status |= bit,
                            (bit, false) => f.status_clear |= bit,
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown filter '{key}' (proto, src, dst, sport, dport, state, status)"
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Whether it selects every connection.
    pub fn is_empty(&self) -> bool {
        *self == ConnFilter::default()
    }

    /// Whether it selects connection `c`, of tuples `tuples`.
    pub fn matches(&self, c: &Conn, tuples: &[Tuple; 2]) -> bool {
        let t = &tuples[0];
        let l3 = t.l3();
        self.proto.is_none_or(|p| p == t.proto)
            && self.src.is_none_or(|p| p.contains(l3, &t.src))
            && self.dst.is_none_or(|p| p.contains(l3, &t.dst))
            && self
                .sport
                .is_none_or(|p| has_ports(t.proto) && p == t.sport)
            && self
                .dport
                .is_none_or(|p| has_ports(t.proto) && p == t.dport)
            && self
                .state
                .is_none_or(|s| c.tcp().is_some_and(|tcp| tcp.state == s))
            && c.status.0 & self.status == self.status
            && c.status.0 & self.status_clear == 0
    }
}

/// Ports mean something only to TCP and UDP (an ICMP tuple keeps its id
/// and type there).
fn has_ports(proto: u8) -> bool {
    matches!(proto, crate::wire::PROTO_TCP | crate::wire::PROTO_UDP)
}

/// A protocol by name or number.
fn parse_proto(v: &str) -> Result<u8, String> {
    use crate::wire::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
    Ok(match v.to_ascii_lowercase().as_str() {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        "icmp" => PROTO_ICMP,
        "icmpv6" | "ipv6-icmp" => PROTO_ICMPV6,
        n => n
            .parse()
            .map_err(|_| format!("'{v}' is not a protocol (tcp, udp, icmp, icmpv6 or a number)"))?,
    })
}

fn port(v: &str) -> Result<u16, String> {
    v.parse().map_err(|_| format!("'{v}' is not a port"))
}

/// A TCP state by the name `conntrack -L` prints (`ESTABLISHED`, any
/// case, `-` for `_`).
fn tcp_state(v: &str) -> Result<TcpState, String> {
    let upper = v.to_ascii_uppercase().replace('-', "_");
    TcpState::ALL
        .into_iter()
        .find(|s| s.name() == upper)
        .ok_or_else(|| {
            let names: Vec<&str> = TcpState::ALL.iter().map(|s| s.name()).collect();
            format!("'{v}' is not a TCP state ({})", names.join(", "))
        })
}

/// A status name, as `conntrack --status` and the rules' `ct status`
/// spell it, and whether the bit must be set (`unreplied`: SEEN_REPLY
/// clear).
pub(super) fn status_bit(v: &str) -> Result<(u16, bool), String> {
    let bit = match v.to_ascii_lowercase().replace('_', "-").as_str() {
        "expected" => Status::EXPECTED,
        "seen-reply" => Status::SEEN_REPLY,
        "unreplied" => return Ok((Status::SEEN_REPLY.0, false)),
        "assured" => Status::ASSURED,
        "confirmed" => Status::CONFIRMED,
        "snat" | "src-nat" => Status::SRC_NAT,
        "dnat" | "dst-nat" => Status::DST_NAT,
        "seq-adjust" => Status::SEQ_ADJUST,
        "helper" => Status::HELPER,
        _ => {
            return Err(format!(
                "'{v}' is not a status (expected, seen-reply, unreplied, assured, confirmed, \
                 snat, dnat, seq-adjust, helper)"
            ))
        }
    };
    Ok((bit.0, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{invert, Conn, Key};
    use crate::wire::{PROTO_TCP, PROTO_UDP};

    /// A connection and its tuples.
    fn conn(proto: u8, src: [u8; 4], sport: u16, dport: u16, status: Status) -> (Conn, [Tuple; 2]) {
        let src = std::net::SocketAddr::from((src, sport));
        let t = Tuple::between(src, ([198, 19, 0, 1], dport).into(), proto);
        let tuples = [t, invert(&t)];
        let mut c = Conn::with_keys(tuples.map(|t| Key::of(&t)));
        c.status = status;
        (c, tuples)
    }

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn both_vocabularies_parse_to_the_same_filter() {
        let a = ConnFilter::parse(&words("proto tcp dport 22 src 198.18.0.0/24")).unwrap();
        let b = ConnFilter::parse(&words("-p tcp --dport 22 -s 198.18.0.0/24")).unwrap();
        assert_eq!(a, b);
        assert!(ConnFilter::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn matches_the_original_direction() {
        let (c, t) = conn(PROTO_TCP, [198, 18, 0, 7], 40000, 22, Status::ASSURED);
        let yes = [
            "proto tcp",
            "dport 22",
            "sport 40000",
            "src 198.18.0.0/16",
            "dst 198.19.0.1",
        ];
        for f in yes {
            assert!(ConnFilter::parse(&words(f)).unwrap().matches(&c, &t), "{f}");
        }
        let no = [
            "proto udp",
            "dport 40000",
            "src 198.19.0.1",
            "dst 2001:2::1",
            "status snat",
        ];
        for f in no {
            assert!(
                !ConnFilter::parse(&words(f)).unwrap().matches(&c, &t),
                "{f}"
            );
        }
    }

    #[test]
    fn status_and_state() {
        let (mut c, t) = conn(PROTO_UDP, [198, 18, 0, 7], 1, 53, Status(0));
        let unreplied = ConnFilter::parse(&words("status unreplied")).unwrap();
        let assured = ConnFilter::parse(&words("--status ASSURED,seen-reply")).unwrap();
        assert!(unreplied.matches(&c, &t) && !assured.matches(&c, &t));
        c.status = Status(Status::ASSURED.0 | Status::SEEN_REPLY.0);
        assert!(!unreplied.matches(&c, &t) && assured.matches(&c, &t));
        let est = ConnFilter::parse(&words("state established")).unwrap();
        assert!(!est.matches(&c, &t), "a state filter selects TCP only");
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        for (f, says) in [
            ("dport", "needs a value"),
            ("dport http", "not a port"),
            ("state OPEN", "not a TCP state"),
            ("status shiny", "not a status"),
            ("colour red", "unknown filter"),
            ("src 300.1.1.1", "not an address"),
        ] {
            let e = ConnFilter::parse(&words(f)).unwrap_err();
            assert!(e.contains(says), "{f}: {e}");
        }
    }
}
