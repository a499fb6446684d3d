//! The demo's traffic (`scripts/demo`): a little of everything the
//! firewall decides, between inside hosts (198.18.0.0/24, port 0) and
//! outside hosts (198.19.0.0/24, port 1). Frame i of each port's capture is
//! read in the same poll round (the demo runs with `--burst=1`, port 0
//! first), so every answer comes after what it answers; ARP requests fill
//! the places where one side is silent.

use std::net::Ipv4Addr;

use ctfwd::synth::{arp_request, tcp_frame, udp_frame};

/// The rules the demo runs with: one inside host goes out as another
/// address, and its answers come back to it.
pub const RULES: &str = "\
# The inside host 198.18.0.50 is seen outside as 198.18.0.100.
in-port 0 ip saddr 198.18.0.50 snat to 198.18.0.100
";

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn udp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    udp_frame(src.parse().unwrap(), dst.parse().unwrap(), payload)
}

fn tcp(src: &str, dst: &str, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_frame(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        seq,
        ack,
        flags,
        payload,
    )
}

/// An outside host asking for an inside one: fills a silent place.
fn arp() -> Vec<u8> {
    arp_request(Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 18, 0, 1))
}

/// Frames, each a byte vector.
type Frames = Vec<Vec<u8>>;

/// (frames entering port 0, entering port 1, all of them in wire order).
pub fn traffic() -> (Frames, Frames, Frames) {
    let (c, s) = ("198.18.0.1:40000", "198.19.0.1:80");
    // (what port 0 reads, what port 1 reads) in one poll round.
    type Step = (Option<Vec<u8>>, Option<Vec<u8>>);
    let steps: Vec<Step> = vec![
        // DNS-like UDP: asked from inside, answered from outside.
        (
            Some(udp("198.18.0.1:5353", "198.19.0.1:53", b"query")),
            Some(udp("198.19.0.1:53", "198.18.0.1:5353", b"answer")),
        ),
        (
            Some(udp("198.18.0.2:5353", "198.19.0.1:53", b"query")),
            Some(udp("198.19.0.1:53", "198.18.0.2:5353", b"answer")),
        ),
        // A TCP connection from inside: handshake, a request, its answer.
        (
            Some(tcp(c, s, 1000, 0, SYN, b"")),
            Some(tcp(s, c, 5000, 1001, SYN | ACK, b"")),
        ),
        (
            Some(tcp(c, s, 1001, 5001, ACK | PSH, b"GET / HTTP/1.0\r\n\r\n")),
            Some(tcp(s, c, 5001, 1019, ACK | PSH, b"HTTP/1.0 200 OK\r\n\r\n")),
        ),
        (Some(tcp(c, s, 1019, 5020, ACK, b"")), None),
        // TFTP: a read request, the data from the server's new port
        // (RELATED, through the helper's expectation), the client's ACK.
        (
            Some(udp(
                "198.18.0.1:1116",
                "198.19.0.2:69",
                b"\x00\x01demo.txt\x00octet\x00",
            )),
            Some(udp(
                "198.19.0.2:1115",
                "198.18.0.1:1116",
                b"\x00\x03\x00\x01hello",
            )),
        ),
        (
            Some(udp(
                "198.18.0.1:1116",
                "198.19.0.2:1115",
                b"\x00\x04\x00\x01",
            )),
            None,
        ),
        // From outside, uninvited: dropped.
        (
            None,
            Some(tcp("198.19.0.9:40001", "198.18.0.1:22", 1, 0, SYN, b"")),
        ),
        (
            None,
            Some(udp("198.19.0.9:40002", "198.18.0.2:161", b"public")),
        ),
        // SYN and FIN together: INVALID, dropped.
        (
            Some(tcp(
                "198.18.0.3:40003",
                "198.19.0.1:80",
                1,
                0,
                SYN | FIN,
                b"",
            )),
            None,
        ),
        // The host behind SNAT: its answer comes to 198.18.0.100.
        (
            Some(udp("198.18.0.50:7000", "198.19.0.3:123", b"time?")),
            Some(udp("198.19.0.3:123", "198.18.0.100:7000", b"now")),
        ),
    ];
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    let mut wire = Vec::new();
    for (a, b) in steps {
        wire.extend(a.iter().chain(&b).cloned());
        inside.push(a.unwrap_or_else(arp));
        outside.push(b.unwrap_or_else(arp));
    }
    (inside, outside, wire)
}
