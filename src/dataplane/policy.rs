//! The filter stage's policies: what a tracking mode lets through, given
//! the tracker's verdict (the filter table of a netfilter ruleset).

use super::worker::FirewallSettings;
use crate::conntrack::{CtInfo, Tuple, Verdict};
use crate::rules::{RuleAction, RuleSet};

/// Why a packet was dropped (index into `CtCounters::dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// INVALID: malformed, out of window, no room, a refused confirm.
    Invalid = 0,
    /// A NEW connection from a port that is not an inside port.
    NewFromOutside = 1,
    /// A frame that is neither IP, ARP nor IPv6 neighbour discovery.
    NotIp = 2,
    /// A `drop` rule of `--rules`.
    Rule = 3,
    /// A fragment that could not join a datagram (overlap, too many, too
    /// short, oversized, no room), or whose datagram timed out.
    Fragment = 4,
    /// A new connection a NAT rule could not map (every tuple of its range
    /// in use), or a translated packet whose headers could not be
    /// rewritten.
    Nat = 5,
}

impl DropReason {
    pub const COUNT: usize = 6;
    pub const NAMES: [&'static str; Self::COUNT] = [
        "invalid",
        "new-from-outside",
        "not-ip",
        "rule",
        "fragment",
        "nat",
    ];
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop(DropReason),
}

/// A filtering policy over the tracker's verdicts.
pub trait Policy {
    /// Whether the policy ever drops (if not, bursts are not compacted).
    const FILTERS: bool;

    fn new(settings: &FirewallSettings) -> Self;

    /// Whether an IP packet should not be tracked at all (and pass).
    fn untracked(&self, in_port: u16, tuple: &Tuple) -> bool;

    /// For a tracked (IP) packet that arrived on `in_port`; `tuple` is the
    /// packet's as the filter sees it (after destination NAT).
    fn tracked(&self, in_port: u16, tuple: &Tuple, v: &Verdict) -> Action;

    /// The rules, where the policy has them (NAT rules among them).
    fn rules(&self) -> Option<&RuleSet> {
        None
    }

    /// Switches to `rules` (`rules reload`), where the policy has rules.
    fn set_rules(&mut self, _rules: RuleSet) -> Result<(), String> {
        Err("rules apply in firewall mode only".into())
    }

    /// For a frame that is not IP.
    fn not_ip(&self, ethertype: u16) -> Action;

    /// For a frame the tracker could not parse, or a fragment it refused.
    fn malformed(&self, reason: DropReason) -> Action {
        if Self::FILTERS {
            Action::Drop(reason)
        } else {
            Action::Accept
        }
    }
}

/// `conntrack` mode: everything passes.
pub struct AcceptAll;

impl Policy for AcceptAll {
    const FILTERS: bool = false;

    fn new(_: &FirewallSettings) -> Self {
        AcceptAll
    }

    #[inline]
    fn untracked(&self, _: u16, _: &Tuple) -> bool {
        false
    }

    #[inline]
    fn tracked(&self, _: u16, _: &Tuple, _: &Verdict) -> Action {
        Action::Accept
    }

    #[inline]
    fn not_ip(&self, _: u16) -> Action {
        Action::Accept
    }
}

/// `firewall` mode: the rules of `--rules` first (first match decides),
/// then the default policy: packets of ESTABLISHED and RELATED connections
/// pass both ways; NEW connections may be opened only from an inside port;
/// INVALID is dropped; ARP and IPv6 neighbour discovery pass (the hosts on
/// both sides must find each other through the bump); other frames are
/// dropped.
pub struct StatefulFirewall {
    inside_ports: u64,
    rules: RuleSet,
}

const ETHERTYPE_ARP: u16 = 0x0806;

impl Policy for StatefulFirewall {
    const FILTERS: bool = true;

    fn new(settings: &FirewallSettings) -> Self {
        StatefulFirewall {
            inside_ports: settings.inside_ports,
            rules: (*settings.rules).clone(),
        }
    }

    #[inline]
    fn untracked(&self, in_port: u16, tuple: &Tuple) -> bool {
        self.rules.untracked(in_port, tuple)
    }

    #[inline]
    fn tracked(&self, in_port: u16, tuple: &Tuple, v: &Verdict) -> Action {
        match self.rules.verdict(in_port, tuple, v.ctinfo, v.status) {
            Some(RuleAction::Accept) => return Action::Accept,
            Some(_) => return Action::Drop(DropReason::Rule),
            None => {}
        }
        match v.ctinfo {
            CtInfo::Established
            | CtInfo::EstablishedReply
            | CtInfo::Related
            | CtInfo::RelatedReply => Action::Accept,
            CtInfo::New if in_port < 64 && self.inside_ports & (1 << in_port) != 0 => {
                Action::Accept
            }
            CtInfo::New => Action::Drop(DropReason::NewFromOutside),
            // The tracker leaves only neighbour discovery and MLD untracked.
            CtInfo::Untracked => Action::Accept,
            CtInfo::Invalid => Action::Drop(DropReason::Invalid),
        }
    }

    #[inline]
    fn rules(&self) -> Option<&RuleSet> {
        Some(&self.rules)
    }

    fn set_rules(&mut self, rules: RuleSet) -> Result<(), String> {
        self.rules = rules;
        Ok(())
    }

    #[inline]
    fn not_ip(&self, ethertype: u16) -> Action {
        if ethertype == ETHERTYPE_ARP {
            Action::Accept
        } else {
            Action::Drop(DropReason::NotIp)
        }
    }
}
