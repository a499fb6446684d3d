//! The NAT verdicts of a rule file, in nftables' words:
//! `snat to ADDR[-ADDR][:PORT[-PORT]] [FLAGS]` and `dnat to ...`, an IPv6
//! address in brackets when a port follows (`[2001:2::1]:80`), and the
//! flags `persistent` and `random` (nftables writes them comma-separated;
//! spaces also do).

use crate::conntrack::NatRange;
use crate::wire::{Addr, L3};

use super::parse_ports;

/// A NAT rule's mapping, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatTarget {
    pub l3: L3,
    pub range: NatRange,
}

/// Parses what follows `snat` or `dnat`: `to`, the mapping and its flags.
pub(super) fn parse_target<'a>(
    words: &mut impl Iterator<Item = &'a str>,
) -> Result<NatTarget, String> {
    if words.next() != Some("to") {
        return Err("'snat' and 'dnat' are followed by 'to ADDRESS'".into());
    }
    let spec = words
        .next()
        .ok_or_else(|| "'to' needs an address".to_string())?;
    let (addrs, ports) = split_ports(spec)?;
    let (min, max) = match addrs.split_once('-') {
        Some((a, b)) => (address(a)?, address(b)?),
        None => (address(addrs)?, address(addrs)?),
    };
    if min.0 != max.0 {
        return Err(format!("'{addrs}' mixes IPv4 and IPv6"));
    }
    if min.1 > max.1 {
        return Err(format!("'{addrs}' is an empty address range"));
    }
    let mut range = NatRange {
        min_addr: min.1,
        max_addr: max.1,
        ports: ports.map(parse_ports).transpose()?,
        persistent: false,
        random: false,
    };
    for flag in words.flat_map(|w| w.split(',')).filter(|f| !f.is_empty()) {
        match flag {
            "persistent" => range.persistent = true,
            "random" => range.random = true,
            _ => {
                return Err(format!(
                    "unknown NAT flag '{flag}' (flags: persistent, random)"
                ))
            }
        }
    }
    Ok(NatTarget { l3: min.0, range })
}

/// Splits `ADDRS[:PORTS]`, with IPv6 addresses in brackets before a port.
fn split_ports(spec: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = spec.strip_prefix('[') {
        let (addrs, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{spec}' has no closing ']'"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((addrs, Some(p))),
            None if after.is_empty() => Ok((addrs, None)),
            None => Err(format!("'{spec}': a port follows ']' after ':'")),
        };
    }
    // Two colons or more: an IPv6 address (range) without a port.
    match spec.matches(':').count() {
        0 => Ok((spec, None)),
        1 => {
            let (a, p) = spec.split_once(':').expect("one colon");
            Ok((a, Some(p)))
        }
        _ => Ok((spec, None)),
    }
}

fn address(a: &str) -> Result<(L3, Addr), String> {
    let ip: std::net::IpAddr = a.parse().map_err(|_| format!("'{a}' is not an address"))?;
    Ok((
        if ip.is_ipv4() { L3::V4 } else { L3::V6 },
        Addr::from_std(ip),
    ))
}
