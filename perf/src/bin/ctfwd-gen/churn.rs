//! An endless stream of short UDP conversations for `perf/soak`: one pcap
//! stream per port, each written by its own process into a FIFO that a
//! `net_pcap` port reads, for as long as the soak lasts.
//!
//! The inside stream sends one request for flow i, i = 0, 1, 2, ... cycling
//! through `flows` tuples; the outside stream starts with `lag` ARP
//! requests (which the firewall passes untracked) and then answers flow
//! i - `lag` at its position i. The two processes run unsynchronised and
//! the core reads a burst from each in turn, so the lag keeps each answer
//! behind its request whatever the pipes buffer. More flows than the table
//! holds keep it full: every new one evicts an old one (churn).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ctfwd::capture::PcapWriter;
use ctfwd::synth::{arp_request, udp_frame};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Inside,
    Outside,
}

/// Flow `i`'s two ends: a client in 198.18.0.0/15 and a server in
/// 198.19.0.0/24.
fn ends(i: u64) -> (SocketAddr, SocketAddr) {
    let i = i as u32;
    let client = Ipv4Addr::from(0xc612_0000 | (i >> 8) & 0x1_ffff);
    let server = Ipv4Addr::new(198, 19, 0, 1 + (i % 8) as u8);
    (
        SocketAddr::new(client.into(), 1024 + (i & 0xff) as u16),
        SocketAddr::new(server.into(), 53),
    )
}

/// Writes `side`'s stream for `secs` seconds; returns the frames written.
/// A reader that goes away ends it early (a broken pipe is not an error).
pub fn write(
    side: Side,
    flows: u64,
    lag: u64,
    secs: f64,
    out: &mut PcapWriter<impl Write>,
) -> io::Result<u64> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    let mut i = 0u64;
    loop {
        // The clock is read once per 4,096 frames.
        if n % 4096 == 0 && Instant::now() >= until {
            return Ok(n);
        }
        let f = match side {
            Side::Inside => {
                let (c, s) = ends(i % flows);
                udp_frame(c, s, &[0; 18])
            }
            Side::Outside if i < lag => arp_request(
                Ipv4Addr::new(198, 19, 0, 1),
                Ipv4Addr::from(0xc612_0000 | i as u32 & 0xffff),
            ),
            Side::Outside => {
                let (c, s) = ends((i - lag) % flows);
                udp_frame(s, c, &[0; 18])
            }
        };
        match out.write(1_700_000_000_000_000_000 + n * 1000, &f) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(n),
            Err(e) => return Err(e),
        }
        n += 1;
        i += 1;
    }
}
