//! Minimum-size traffic through source NAT, for `perf/bench-firewall`: a
//! replay's answers must be addressed to the translated tuple, so the
//! flows are laid out for a mapping known in advance. Clients come in
//! groups of 16,384, one /18 of 198.18.0.0/15 each, every client of a
//! group on its own port; each group has a rule translating it to an
//! address of its own, so every client keeps its port (source NAT keeps
//! a free port). Seven groups fit beside the server: at most 114,688
//! flows.

use std::net::Ipv4Addr;

use ctfwd::synth::UdpFlow;
use ctfwd::wire::MacAddr;

const GROUP_BITS: u32 = 14;
pub const MAX_FLOWS: u32 = 7 << GROUP_BITS;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);

/// Flow `i`'s client.
fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc612_0000 + i),
        1024 + (i & ((1 << GROUP_BITS) - 1)) as u16,
    )
}

/// The address group `g` is translated to.
fn nat_address(g: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 255, 1 + g as u8)
}

/// (requests entering port 0, answers entering port 1, the rules file).
pub fn flows(n: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, String) {
    assert!(n <= MAX_FLOWS);
    let mac = |b: u8| MacAddr([0x02, b, 0, 0, 0, 1]);
    let (requests, answers) = (0..n)
        .map(|i| {
            let (addr, port) = client(i);
            let request = UdpFlow {
                src_mac: mac(0x18),
                dst_mac: mac(0x19),
                src: addr,
                dst: SERVER,
                sport: port,
                dport: 53,
            };
            let answer = UdpFlow {
                src_mac: mac(0x19),
                dst_mac: mac(0x18),
                src: SERVER,
                dst: nat_address(i >> GROUP_BITS),
                sport: 53,
                dport: port,
            };
            (request.frame(&[0; 18]), answer.frame(&[0; 18]))
        })
        .unzip();
    let rules = (0..n.div_ceil(1 << GROUP_BITS))
        .map(|g| {
            format!(
                "in-port 0 ip saddr {}/{} snat to {}\n",
                client(g << GROUP_BITS).0,
                32 - GROUP_BITS,
                nat_address(g)
            )
        })
        .collect();
    (requests, answers, rules)
}
