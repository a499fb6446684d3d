//! Flood scenarios for `perf/bench-floods`: established connections
//! carrying traffic while a flood arrives beside them.
//!
//! Both files have the same number of frames, in three sections, so that
//! frame i of one port and frame i of the other are read in the same poll
//! round (one forwarding core polls port 0, then port 1, a burst each):
//! - warm-up: one ACK from each established TCP flow's inside end, and at
//!   the same place in the other file its reply, so each flow is picked up
//!   (`loose`) and, on its reply, ASSURED as Linux does;
//! - flood: rounds of one frame per established flow each way, each frame
//!   followed by `per` flood frames on the flooded port and as many more
//!   established frames (repeated ACKs, in window) on the other;
//! - tail: fresh UDP conversations, request and reply at the same place:
//!   the new connections that must still open once the flood has passed.
//!
//! So every frame of the other port must pass, and each drop has one cause.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use ctfwd::capture::PcapWriter;
use ctfwd::synth::{fragment, frame, ip_packet, tcp_frame, udp, udp_frame, xorshift};
use ctfwd::wire::PROTO_UDP;

const TCP_ACK: u8 = 0x10;
const TCP_SYN: u8 = 0x02;
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 80);
const TFTP_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 69);
const DNS_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 3), 53);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No flood: the same established traffic alone, for comparison.
    None,
    /// TCP SYNs from the inside, random sources in 198.18.0.0/15.
    Syn,
    /// UDP from the outside to random inside addresses and ports.
    Udp,
    /// TFTP read requests from the inside, each from a new client port:
    /// each one asks for an expectation.
    Expect,
    /// First fragments of IPv4 datagrams that never complete.
    Frag,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "none" => Kind::None,
            "syn" => Kind::Syn,
            "udp" => Kind::Udp,
            "expect" => Kind::Expect,
            "frag" => Kind::Frag,
            _ => return None,
        })
    }

    /// Whether the flood enters on the outside port (1).
    fn enters_outside(self) -> bool {
        self == Kind::Udp
    }
}

pub struct Scenario {
    pub kind: Kind,
    /// Established TCP flows.
    pub established: u32,
    /// Rounds of one frame per established flow each way.
    pub rounds: u32,
    /// Flood frames after each established frame.
    pub per: u32,
    /// Fresh UDP conversations after the flood.
    pub tail: u32,
}

/// Frame counts of one scenario's files.
#[derive(Debug, Default)]
pub struct Written {
    pub frames_per_port: u64,
    pub flood: u64,
}

/// Pads a frame to Ethernet's 60-byte minimum (64 on the wire), as a NIC
/// would; the IP length still says where the packet ends.
fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn client(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(198, 18, 1 + (i >> 16) as u8, (i >> 8) as u8),
        10_000 + (i & 0xff) as u16,
    )
}

/// Flow `i`'s ACK from the inside and its reply: pure ACKs with fixed
/// sequence numbers, so any number of them are in window in any order.
fn established(i: u32) -> (Vec<u8>, Vec<u8>) {
    let (c, s) = (SocketAddr::V4(client(i)), SocketAddr::V4(SERVER));
    let (cseq, sseq) = (1_000_000 + i, 5_000_000 + i);
    (
        pad(tcp_frame(c, s, cseq, sseq, TCP_ACK, b"")),
        pad(tcp_frame(s, c, sseq, cseq, TCP_ACK, b"")),
    )
}

/// One flood frame of `kind`, the `n`th.
fn flood_frame(kind: Kind, n: u64, rand: &mut impl FnMut() -> u64) -> Vec<u8> {
    let r = rand();
    // A random host of 198.18.0.0/15 and a port above 1023.
    let host = Ipv4Addr::from(0xc612_0000 | (r as u32 & 0x1_ffff));
    let port = 1024 + (r >> 32) as u16 % 64_000;
    match kind {
        Kind::None => unreachable!("no flood frames without a flood"),
        Kind::Syn => pad(tcp_frame(
            SocketAddr::new(host.into(), port),
            SocketAddr::V4(SERVER),
            r as u32,
            0,
            TCP_SYN,
            b"",
        )),
        Kind::Udp => pad(udp_frame(
            SocketAddr::V4(DNS_SERVER),
            SocketAddr::new(host.into(), port),
            &[0; 18],
        )),
        Kind::Expect => {
            // A new client port each time: 64,000 ports of each of 2^17
            // hosts, walked in order so none repeats.
            let host = Ipv4Addr::from(0xc612_0000 | (n / 64_000) as u32 & 0x1_ffff);
            let port = 1024 + (n % 64_000) as u16;
            pad(udp_frame(
                SocketAddr::new(host.into(), port),
                SocketAddr::V4(TFTP_SERVER),
                b"\x00\x01f\x00octet\x00",
            ))
        }
        Kind::Frag => {
            let ip = ip_packet(
                host.into(),
                (*DNS_SERVER.ip()).into(),
                PROTO_UDP,
                &[],
                &udp(port, 53, &[0; 64]),
            );
            let mut first = fragment(&ip, n as u32, &[(0, 16)]);
            pad(frame(&first.remove(0), &[]))
        }
    }
}

/// A fresh UDP conversation for the tail: request and reply.
fn fresh(j: u32) -> (Vec<u8>, Vec<u8>) {
    let c = SocketAddr::new(
        Ipv4Addr::new(198, 18, 200 + (j >> 16) as u8, (j >> 8) as u8).into(),
        20_000 + (j & 0xff) as u16,
    );
    let s = SocketAddr::V4(DNS_SERVER);
    (udp_frame(c, s, &[0; 18]), udp_frame(s, c, &[0; 18]))
}

/// Writes the scenario to the inside (port 0) and outside (port 1) files.
pub fn write(
    sc: &Scenario,
    inside: &mut PcapWriter<impl Write>,
    outside: &mut PcapWriter<impl Write>,
) -> io::Result<Written> {
    let mut w = Written::default();
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut pair = |w: &mut Written, a: &[u8], b: &[u8]| -> io::Result<()> {
        ts += 1000;
        inside.write(ts, a)?;
        outside.write(ts, b)?;
        w.frames_per_port += 1;
        Ok(())
    };
    let flows: Vec<(Vec<u8>, Vec<u8>)> = (0..sc.established).map(established).collect();
    for (a, b) in &flows {
        pair(&mut w, a, b)?;
    }
    let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
    let per = if sc.kind == Kind::None { 0 } else { sc.per };
    for _ in 0..sc.rounds {
        for (a, b) in &flows {
            pair(&mut w, a, b)?;
            for _ in 0..per {
                let f = flood_frame(sc.kind, w.flood, &mut rand);
                w.flood += 1;
                if sc.kind.enters_outside() {
                    pair(&mut w, a, &f)?;
                } else {
                    pair(&mut w, &f, b)?;
                }
            }
        }
    }
    for j in 0..sc.tail {
        let (a, b) = fresh(j);
        pair(&mut w, &a, &b)?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctfwd::wire::{parse_frame, Frame, LinkType};

    #[test]
    fn every_frame_parses_and_is_minimum_size() {
        let mut rand = xorshift(7);
        for kind in [Kind::Syn, Kind::Udp, Kind::Expect, Kind::Frag] {
            for n in 0..100 {
                let f = flood_frame(kind, n, &mut rand);
                assert_eq!(f.len(), 60, "{kind:?}");
                assert!(matches!(
                    parse_frame(LinkType::Ethernet, &f, f.len()),
                    Ok(Frame::Ip(_))
                ));
            }
        }
        let (a, b) = established(3);
        assert_eq!((a.len(), b.len()), (60, 60));
    }
}
