//! Firewall rules (`--rules=FILE`): a small, nftables-like text format,
//! consulted in order before the firewall's default policy; the first rule
//! that matches decides.
//!
//! One rule per line: matches, then a verdict. `#` starts a comment.
//!
//! ```text
//! # let the outside reach the inside SSH server
//! in-port 1 ip daddr 198.18.0.10 tcp dport 22 ct state new accept
//! # do not track VXLAN; let it through
//! udp dport 4789 notrack
//! ip saddr 198.19.0.0/24 drop
//! ```
//!
//! Matches (all must hold):
//! - `in-port N`: the packet arrived on port N;
//! - `ip saddr|daddr A[/LEN]`, `ip6 saddr|daddr A[/LEN]`: IPv4 or IPv6
//!   source or destination in the prefix (`ip`/`ip6` alone: that family);
//! - `tcp|udp [sport|dport P[-Q]]`: the protocol, and a port or range;
//! - `icmp`, `icmpv6`, `l4proto N`: the protocol;
//! - `ct state S[,S...]`: the connection state, of `new`, `established`
//!   (replies too), `related`, `invalid`, `untracked`.
//!
//! - `ct status S[,S...]`: a status bit of the connection is set, of
//!   `expected`, `seen-reply`, `assured`, `confirmed`, `snat`, `dnat`.
//!
//! Verdicts: `accept`, `drop`, and `notrack`, which lets the packet
//! through untracked (nftables' raw-table `notrack`; such rules are
//! looked at before tracking and may not match `ct state`); and NAT,
//! `snat to ...` and `dnat to ...` (`nat.rs`), looked at on a connection's
//! first packet only, as nftables' nat chains: DNAT rules before the
//! filtering rules (which then see the translated destination), SNAT
//! rules after them. Ports in a mapping need a `tcp` or `udp` match, as
//! nftables requires.

mod filter;
mod nat;

use crate::conntrack::{CtInfo, Manip, NatRange, Status, Tuple};
use crate::wire::{Addr, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
pub use filter::ConnFilter;
pub use nat::NatTarget;

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Accept,
    Drop,
    NoTrack,
    Snat(NatTarget),
    Dnat(NatTarget),
}

impl RuleAction {
    /// Whether a filtering verdict (`accept`, `drop`).
    fn filters(&self) -> bool {
        matches!(self, RuleAction::Accept | RuleAction::Drop)
    }
}

/// An address prefix of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    l3: L3,
    addr: u128,
    len: u8,
}

impl Prefix {
    /// `ADDR[/LEN]` of either family.
    pub fn parse(v: &str) -> Result<Prefix, String> {
        let l3 = if v.contains(':') { L3::V6 } else { L3::V4 };
        parse_prefix(v, l3)
    }

    pub fn contains(&self, l3: L3, a: &Addr) -> bool {
        if self.l3 != l3 {
            return false;
        }
        let o = u128::from_be_bytes(a.octets());
        let bits = if l3 == L3::V4 { 32 } else { 128 };
        let shift = bits - u32::from(self.len);
        let (o, p) = if l3 == L3::V4 {
            (o as u32 as u128, self.addr)
        } else {
            (o, self.addr)
        };
        shift >= bits || (o >> shift) == (p >> shift)
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    in_port: Option<u16>,
    family: Option<L3>,
    saddr: Option<Prefix>,
    daddr: Option<Prefix>,
    proto: Option<u8>,
    sport: Option<(u16, u16)>,
    dport: Option<(u16, u16)>,
    /// Bit per `CtInfo` variant.
    ct_states: Option<u8>,
    /// Status bits, any of which must be set.
    ct_status: Option<u16>,
    action: Option<RuleAction>,
}

impl Rule {
    pub fn action(&self) -> RuleAction {
        self.action.unwrap_or(RuleAction::Drop)
    }

    /// Whether the rule matches a packet. `ctinfo` is `None` before
    /// tracking (only `notrack` rules are asked then, and NAT rules while
    /// steering packets to their worker); `status` is the connection's.
    fn matches(&self, in_port: u16, t: &Tuple, ctinfo: Option<CtInfo>, status: Status) -> bool {
        let l3 = t.l3();
        let port_in = |r: Option<(u16, u16)>, p: u16| r.is_none_or(|(a, b)| (a..=b).contains(&p));
        self.in_port.is_none_or(|p| p == in_port)
            && self.family.is_none_or(|f| f == l3)
            && self.saddr.is_none_or(|p| p.contains(l3, &t.src))
            && self.daddr.is_none_or(|p| p.contains(l3, &t.dst))
            && self.proto.is_none_or(|p| p == t.proto)
            && port_in(self.sport, t.sport)
            && port_in(self.dport, t.dport)
            && self
                .ct_states
                .is_none_or(|m| ctinfo.is_some_and(|c| m & state_bit(c) != 0))
            && self.ct_status.is_none_or(|m| status.0 & m != 0)
    }

    /// The mapping of a NAT rule of kind `manip`.
    fn nat(&self, manip: Manip) -> Option<&NatTarget> {
        match (&self.action, manip) {
            (Some(RuleAction::Snat(t)), Manip::Src) | (Some(RuleAction::Dnat(t)), Manip::Dst) => {
                Some(t)
            }
            _ => None,
        }
    }
}

fn state_bit(c: CtInfo) -> u8 {
    match c {
        CtInfo::New => 1,
        CtInfo::Established | CtInfo::EstablishedReply => 2,
        CtInfo::Related | CtInfo::RelatedReply => 4,
        CtInfo::Invalid => 8,
        CtInfo::Untracked => 16,
    }
}

/// A parsed rule file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The line each rule came from.
    lines: Vec<usize>,
    has_notrack: bool,
    /// Whether any rule is `accept` or `drop` (else `verdict` has nothing
    /// to look at: the common set of NAT rules alone costs nothing per
    /// packet).
    has_filter: bool,
    has_snat: bool,
    has_dnat: bool,
}

/// A NAT rule that applies to a packet: its index (for counting), its
/// line in the file and its mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatMatch<'a> {
    pub index: usize,
    pub line: usize,
    pub range: &'a NatRange,
}

impl RuleSet {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The first `notrack` rule's verdict for an untracked look at the
    /// packet (before ingress), if any rule says not to track it.
    #[inline]
    pub fn untracked(&self, in_port: u16, t: &Tuple) -> bool {
        self.has_notrack
            && self
                .rules
                .iter()
                .filter(|r| r.action() == RuleAction::NoTrack)
                .any(|r| r.matches(in_port, t, None, Status::default()))
    }

    /// The verdict of the first accept/drop rule matching a tracked
    /// packet, if any. `status` is its connection's.
    #[inline]
    pub fn verdict(
        &self,
        in_port: u16,
        t: &Tuple,
        ctinfo: CtInfo,
        status: Status,
    ) -> Option<RuleAction> {
        if !self.has_filter {
            return None;
        }
        self.rules
            .iter()
            .filter(|r| r.action().filters())
            .find(|r| r.matches(in_port, t, Some(ctinfo), status))
            .map(Rule::action)
    }

    /// Whether any rule is `accept` or `drop`.
    #[inline]
    pub fn has_filter(&self) -> bool {
        self.has_filter
    }

    /// Whether any rule is a NAT rule of kind `manip`.
    #[inline]
    pub fn has_nat(&self, manip: Manip) -> bool {
        match manip {
            Manip::Src => self.has_snat,
            Manip::Dst => self.has_dnat,
        }
    }

    /// The first NAT rule of kind `manip` matching the first packet of a
    /// connection (`t` as the packet is at that hook).
    #[inline]
    pub fn nat(
        &self,
        manip: Manip,
        in_port: u16,
        t: &Tuple,
        ctinfo: CtInfo,
        status: Status,
    ) -> Option<NatMatch<'_>> {
        if !self.has_nat(manip) {
            return None;
        }
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.nat(manip).is_some_and(|n| n.l3 == t.l3()))
            .find(|(_, r)| r.matches(in_port, t, Some(ctinfo), status))
            .map(|(index, r)| NatMatch {
                index,
                line: self.lines[index],
                range: &r.nat(manip).expect("a NAT rule").range,
            })
    }

    /// Whether rule `index` is a NAT rule.
    pub fn is_nat(&self, index: usize) -> bool {
        self.rules[index].nat(Manip::Src).is_some() || self.rules[index].nat(Manip::Dst).is_some()
    }

    /// The line of rule `index`.
    pub fn line(&self, index: usize) -> usize {
        self.lines[index]
    }

    /// Where a packet that would open a connection translated to a single
    /// tuple belongs: that tuple, when the first DNAT rule it matches maps
    /// to one address and port (or keeps the port), and for protocols
    /// without hashed ports the first SNAT rule maps to one address after
    /// that. Rules that match connection state are left out (there is no
    /// connection yet). The data plane hands such packets to the worker
    /// the translated tuple lands on, where replies will arrive.
    pub fn steer(&self, in_port: u16, t: &Tuple, ports_hashed: bool) -> Option<Tuple> {
        let single = |manip: Manip| {
            self.rules
                .iter()
                .filter(|r| r.ct_states.is_none() && r.ct_status.is_none())
                .filter(|r| r.nat(manip).is_some_and(|n| n.l3 == t.l3()))
                .find(|r| r.matches(in_port, t, None, Status::default()))
                .and_then(|r| r.nat(manip))
                .filter(|n| {
                    n.range.min_addr == n.range.max_addr
                        && n.range.ports.is_none_or(|(lo, hi)| lo == hi)
                })
                .map(|n| n.range)
        };
        let mut out = *t;
        let mut moved = false;
        if self.has_dnat {
            if let Some(r) = single(Manip::Dst) {
                out.dst = r.min_addr;
                if let Some((p, _)) = r.ports {
                    out.dport = p;
                }
                moved = true;
            }
        }
        if self.has_snat && !ports_hashed {
            if let Some(r) = single(Manip::Src) {
                out.src = r.min_addr;
                moved = true;
            }
        }
        moved.then_some(out)
    }

    /// Parses a rule file; an error names the line and the reason.
    pub fn parse(text: &str) -> Result<RuleSet, String> {
        let mut set = RuleSet::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let rule = parse_rule(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            set.has_notrack |= rule.action() == RuleAction::NoTrack;
            set.has_filter |= rule.action().filters();
            set.has_snat |= rule.nat(Manip::Src).is_some();
            set.has_dnat |= rule.nat(Manip::Dst).is_some();
            set.rules.push(rule);
            set.lines.push(n + 1);
        }
        Ok(set)
    }
}

fn parse_rule(line: &str) -> Result<Rule, String> {
    let mut r = Rule::default();
    let mut words = line.split_whitespace().peekable();
    let value = |words: &mut std::iter::Peekable<std::str::SplitWhitespace<'_>>, what: &str| {
        words
            .next()
            .map(str::to_string)
            .ok_or_else(|| format!("'{what}' needs a value"))
    };
    while let Some(w) = words.next() {
        if r.action.is_some() {
            return Err(format!("'{w}' after the verdict (the verdict comes last)"));
        }
        match w {
            "accept" => r.action = Some(RuleAction::Accept),
            "drop" => r.action = Some(RuleAction::Drop),
            "notrack" => r.action = Some(RuleAction::NoTrack),
            "snat" => r.action = Some(RuleAction::Snat(nat::parse_target(&mut words)?)),
            "dnat" => r.action = Some(RuleAction::Dnat(nat::parse_target(&mut words)?)),
            "in-port" => {
                let v = value(&mut words, w)?;
                r.in_port = Some(
                    v.parse()
                        .map_err(|_| format!("'{v}' is not a port number"))?,
                );
            }
            "ip" | "ip6" => {
                let l3 = if w == "ip" { L3::V4 } else { L3::V6 };
                r.family = Some(l3);
                while let Some(&dir @ ("saddr" | "daddr")) = words.peek() {
                    words.next();
                    let v = value(&mut words, dir)?;
                    let p = parse_prefix(&v, l3)?;
                    if dir == "saddr" {
                        r.saddr = Some(p);
                    } else {
                        r.daddr = Some(p);
                    }
                }
            }
            "tcp" | "udp" => {
                r.proto = Some(if w == "tcp" { PROTO_TCP } else { PROTO_UDP });
                while let Some(&dir @ ("sport" | "dport")) = words.peek() {
                    words.next();
                    let v = value(&mut words, dir)?;
                    let range = parse_ports(&v)?;
                    if dir == "sport" {
                        r.sport = Some(range);
                    } else {
                        r.dport = Some(range);
                    }
                }
            }
            "icmp" => r.proto = Some(PROTO_ICMP),
            "icmpv6" => r.proto = Some(PROTO_ICMPV6),
            "l4proto" => {
                let v = value(&mut words, w)?;
                r.proto = Some(
                    v.parse()
                        .map_err(|_| format!("'{v}' is not a protocol number"))?,
                );
            }
            "ct" if words.peek() == Some(&"status") => {
                words.next();
                let v = value(&mut words, "ct status")?;
                let mut mask = 0;
                for s in v.split(',') {
                    match filter::status_bit(s) {
                        Ok((bit, true)) => mask |= bit,
                        _ => return Err(format!("unknown ct status '{s}'")),
                    }
                }
                r.ct_status = Some(mask);
            }
            "ct" => {
                if words.next() != Some("state") {
                    return Err("'ct' must be followed by 'state' or 'status'".into());
                }
                let v = value(&mut words, "ct state")?;
                let mut mask = 0;
                for s in v.split(',') {
                    mask |= match s {
                        "new" => state_bit(CtInfo::New),
                        "established" => state_bit(CtInfo::Established),
                        "related" => state_bit(CtInfo::Related),
                        "invalid" => state_bit(CtInfo::Invalid),
                        "untracked" => state_bit(CtInfo::Untracked),
                        _ => return Err(format!("unknown ct state '{s}'")),
                    };
                }
                r.ct_states = Some(mask);
            }
            _ => return Err(format!("unknown word '{w}'")),
        }
    }
    match r.action {
        None => Err("no verdict (accept, drop or notrack) at the end".into()),
        Some(RuleAction::NoTrack) if r.ct_states.is_some() || r.ct_status.is_some() => Err(
            "a notrack rule cannot match 'ct state' or 'ct status' (it runs before tracking)"
                .into(),
        ),
        Some(RuleAction::Snat(t) | RuleAction::Dnat(t)) => {
            if t.range.ports.is_some() && !matches!(r.proto, Some(PROTO_TCP | PROTO_UDP)) {
                return Err("a port in a NAT mapping needs a 'tcp' or 'udp' match".into());
            }
            match r.family {
                Some(f) if f != t.l3 => Err(format!(
                    "the mapping is {} but the rule matches {}",
                    family_name(t.l3),
                    family_name(f)
                )),
                _ => {
                    r.family = Some(t.l3);
                    Ok(r)
                }
            }
        }
        Some(_) => Ok(r),
    }
}

fn family_name(l3: L3) -> &'static str {
    match l3 {
        L3::V4 => "IPv4",
        L3::V6 => "IPv6",
    }
}

fn parse_prefix(v: &str, l3: L3) -> Result<Prefix, String> {
    let (a, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let ip: std::net::IpAddr = a.parse().map_err(|_| format!("'{a}' is not an address"))?;
    let (addr, max) = match (ip, l3) {
        (std::net::IpAddr::V4(v4), L3::V4) => (u128::from(u32::from(v4)), 32),
        (std::net::IpAddr::V6(v6), L3::V6) => (u128::from(v6), 128),
        _ => {
            return Err(format!(
                "'{a}' is not an {} address",
                if l3 == L3::V4 { "IPv4" } else { "IPv6" }
            ))
        }
    };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| format!("'/{l}' is not a prefix length up to {max}"))?,
        None => max,
    };
    Ok(Prefix { l3, addr, len })
}

pub(crate) fn parse_ports(v: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("'{p}' is not a port"));
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(v)?, port(v)?),
    };
    if a > b {
        return Err(format!("'{v}' is an empty port range"));
    }
    Ok((a, b))
}

/// A driver for fuzzers (`fuzz/fuzz_targets/rules_parse.rs`) and their
/// regression test: any text either parses or is refused with an error
/// naming one of its lines, and a parsed set answers for a packet taken
/// from the input's first bytes (so a fuzzer can steer it into its rules).
pub fn run_rule_text(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let lines = text.lines().count();
    let set = match RuleSet::parse(text) {
        Ok(set) => set,
        Err(e) => {
            let line = e
                .strip_prefix("line ")
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse::<usize>().ok());
            return match line {
                Some(n) if (1..=lines).contains(&n) => Ok(()),
                _ => Err(format!("error without a line of the input: {e}")),
            };
        }
    };
    if set.len() > lines {
        return Err(format!("{} rules from {lines} lines", set.len()));
    }
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let t = Tuple {
        src: Addr::v4([198, 18, b(0), b(1)]),
        dst: Addr::v4([198, 19, b(2), b(3)]),
        sport: u16::from_be_bytes([b(4), b(5)]),
        dport: u16::from_be_bytes([b(6), b(7)]),
        proto: [PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47][usize::from(b(8) & 3)],
        family: 4,
        zone: 0,
    };
    let port = u16::from(b(9) & 1);
    let _ = set.untracked(port, &t);
    for ctinfo in [
        CtInfo::New,
        CtInfo::Established,
        CtInfo::Related,
        CtInfo::Invalid,
    ] {
        let _ = set.verdict(port, &t, ctinfo, Status::default());
        for manip in [Manip::Src, Manip::Dst] {
            let _ = set.nat(manip, port, &t, ctinfo, Status(u16::from(b(10))));
        }
    }
    let _ = set.steer(port, &t, b(11) & 1 == 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str, dst: &str, proto: u8) -> Tuple {
        Tuple::between(src.parse().unwrap(), dst.parse().unwrap(), proto)
    }

    const FILE: &str = "\
# inside SSH server
in-port 1 ip daddr 198.18.0.10 tcp dport 22 ct state new accept
udp dport 4789 notrack   # VXLAN
ip saddr 198.19.0.0/24 drop
ip6 daddr 2001:db8::/32 tcp dport 8000-8099 accept
";

    #[test]
    fn rules_match_in_order() {
        let set = RuleSet::parse(FILE).unwrap();
        assert_eq!(set.len(), 4);
        let ssh = t("203.0.113.5:40000", "198.18.0.10:22", PROTO_TCP);
        assert_eq!(
            set.verdict(1, &ssh, CtInfo::New, Status::default()),
            Some(RuleAction::Accept)
        );
        assert_eq!(
            set.verdict(0, &ssh, CtInfo::New, Status::default()),
            None,
            "other port"
        );
        assert_eq!(
            set.verdict(1, &ssh, CtInfo::Established, Status::default()),
            None,
            "other state"
        );
        let vx = t("198.19.0.1:5555", "198.18.0.1:4789", PROTO_UDP);
        assert!(set.untracked(0, &vx));
        assert!(!set.untracked(0, &t("198.19.0.1:5555", "198.18.0.1:53", PROTO_UDP)));
        let from_bad = t("198.19.0.77:1", "198.18.0.1:80", PROTO_TCP);
        assert_eq!(
            set.verdict(1, &from_bad, CtInfo::EstablishedReply, Status::default()),
            Some(RuleAction::Drop)
        );
        let v6 = t("[2001:db9::1]:1", "[2001:db8:1::1]:8080", PROTO_TCP);
        assert_eq!(
            set.verdict(1, &v6, CtInfo::New, Status::default()),
            Some(RuleAction::Accept)
        );
        let v6_out = t("[2001:db9::1]:1", "[2001:db7::1]:8080", PROTO_TCP);
        assert_eq!(
            set.verdict(1, &v6_out, CtInfo::New, Status::default()),
            None
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, line, why) in [
            ("accept\nfoo accept", 2, "unknown word 'foo'"),
            ("tcp dport 22", 1, "no verdict"),
            ("tcp dport 99999 accept", 1, "not a port"),
            ("tcp dport 30-20 accept", 1, "empty port range"),
            ("ip saddr 300.1.1.1 drop", 1, "not an address"),
            ("ip saddr 198.18.0.0/33 drop", 1, "prefix length"),
            ("ip saddr 2001:db8::1 drop", 1, "not an IPv4 address"),
            ("ct state new,weird accept", 1, "unknown ct state"),
            (
                "udp dport 1 ct state new notrack",
                1,
                "notrack rule cannot match",
            ),
            ("\n\n drop accept", 3, "after the verdict"),
            ("in-port", 1, "needs a value"),
        ] {
            let e = RuleSet::parse(text).unwrap_err();
            assert!(
                e.starts_with(&format!("line {line}:")) && e.contains(why),
                "{text:?}: {e}"
            );
        }
        assert!(RuleSet::parse("# only a comment\n\n").unwrap().is_empty());
    }
}
