//! The FTP helper's NAT half (Linux's `nf_nat_ftp`): an address and port
//! announced on a translated control connection (`PORT`, `EPRT` from the
//! client, `227`, `229` from the server) are rewritten to what the peer
//! sees, which may change the segment's length (then `seqadj` shifts
//! every later segment).

use arrayvec::ArrayVec;
use std::io::Write;

use crate::wire::{Addr, L3};

/// A change of a segment's payload: `len` bytes at `at` become `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadEdit {
    pub at: u16,
    pub len: u16,
    pub text: ArrayVec<u8, 64>,
}

impl PayloadEdit {
    /// How much longer the payload becomes.
    pub fn growth(&self) -> i32 {
        self.text.len() as i32 - i32::from(self.len)
    }
}

/// How an announcement is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `h1,h2,h3,h4,p1,p2` (RFC 959's PORT, RFC 1123's 227).
    Numbers,
    /// `|af|addr|port|` (RFC 2428's EPRT), with its delimiter.
    Eprt(u8),
    /// `|||port|` (RFC 2428's 229), with its delimiter.
    Epsv(u8),
}

/// Where the announcement of a line the helper accepted sits (`dir` 0:
/// a client command, 1: a server reply), and how it is written.
fn span(payload: &[u8], dir: usize) -> Option<(usize, usize, Form)> {
    let head = payload.get(..4)?.to_ascii_uppercase();
    let delimited = |start: usize| -> Option<(usize, usize, u8)> {
        let delim = *payload.get(start)?;
        let mut seen = 0;
        for (i, &b) in payload.iter().enumerate().skip(start) {
            if b == delim {
                seen += 1;
                if seen == 4 {
                    return Some((start, i + 1, delim));
                }
            }
        }
        None
    };
    let numbers = |start: usize| {
        let end = payload[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b','))
            .map_or(payload.len(), |n| start + n);
        (start, end, Form::Numbers)
    };
    match (dir, &head[..]) {
        (0, b"PORT") => Some(numbers(payload.iter().position(|&b| b == b' ')? + 1)),
        (0, b"EPRT") => {
            let (s, e, d) = delimited(payload.iter().position(|&b| b == b' ')? + 1)?;
            Some((s, e, Form::Eprt(d)))
        }
        (1, b"227 ") => Some(numbers(
            4 + payload[4..].iter().position(u8::is_ascii_digit)?,
        )),
        (1, b"229 ") => {
            let (s, e, d) = delimited(payload.iter().position(|&b| b == b'(')? + 1)?;
            Some((s, e, Form::Epsv(d)))
        }
        _ => None,
    }
}

/// The payload change that makes a parsed announcement say `addr`:`port`
/// (family `l3`); `None` where the text would not change (an EPSV reply
/// names no address); an error where the line's announcement cannot be
/// found again or cannot say it (an IPv6 address in a PORT command).
pub fn rewrite_announcement(
    payload: &[u8],
    dir: usize,
    addr: Addr,
    l3: L3,
    port: u16,
) -> Result<Option<PayloadEdit>, ()> {
    let (start, end, form) = span(payload, dir).ok_or(())?;
    let mut text = ArrayVec::<u8, 64>::new();
    let shown = addr.display(l3);
    let written = match form {
        Form::Numbers => {
            let std::net::IpAddr::V4(v4) = shown else {
                return Err(());
            };
            let [a, b, c, d] = v4.octets();
            write!(text, "{a},{b},{c},{d},{},{}", port >> 8, port & 0xff)
        }
        Form::Eprt(d) => {
            let (d, af) = (d as char, if l3 == L3::V4 { 1 } else { 2 });
            write!(text, "{d}{af}{d}{shown}{d}{port}{d}")
        }
        Form::Epsv(d) => {
            let d = d as char;
            write!(text, "{d}{d}{d}{port}{d}")
        }
    };
    written.map_err(|_| ())?;
    Ok((text[..] != payload[start..end]).then(|| PayloadEdit {
        at: start as u16,
        len: (end - start) as u16,
        text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(
        payload: &[u8],
        dir: usize,
        addr: &str,
        port: u16,
    ) -> Result<Option<PayloadEdit>, ()> {
        let ip: std::net::IpAddr = addr.parse().unwrap();
        let l3 = if ip.is_ipv4() { L3::V4 } else { L3::V6 };
        rewrite_announcement(payload, dir, Addr::from_std(ip), l3, port)
    }

    /// The line as rewritten and its growth; `None` if unchanged.
    fn edit(payload: &[u8], dir: usize, addr: &str, port: u16) -> Option<(Vec<u8>, i32)> {
        let e = rewrite(payload, dir, addr, port).expect("found")?;
        let mut out = payload.to_vec();
        out.splice(
            usize::from(e.at)..usize::from(e.at + e.len),
            e.text.iter().copied(),
        );
        Some((out, e.growth()))
    }

    #[test]
    fn announcements_are_rewritten_in_place() {
        assert_eq!(
            edit(b"PORT 198,18,0,1,156,64\r\n", 0, "198.18.0.100", 40001),
            Some((b"PORT 198,18,0,100,156,65\r\n".to_vec(), 2))
        );
        // The same text: no edit.
        assert_eq!(
            edit(b"port 198,18,0,1,156,64\r\n", 0, "198.18.0.1", 40000),
            None
        );
        assert_eq!(
            edit(b"EPRT |1|198.18.0.1|40000|\r\n", 0, "198.18.0.100", 7),
            Some((b"EPRT |1|198.18.0.100|7|\r\n".to_vec(), -2))
        );
        assert_eq!(
            edit(b"EPRT !2!2001:2::1!40000!\r\n", 0, "2001:2::100", 40000),
            Some((b"EPRT !2!2001:2::100!40000!\r\n".to_vec(), 2))
        );
        assert_eq!(
            edit(
                b"227 Entering Passive Mode (198,18,0,1,117,48).\r\n",
                1,
                "198.18.0.200",
                30000
            ),
            Some((
                b"227 Entering Passive Mode (198,18,0,200,117,48).\r\n".to_vec(),
                2
            ))
        );
        assert_eq!(
            edit(
                b"229 Entering Extended Passive Mode (|||30000|)\r\n",
                1,
                "198.18.0.200",
                8021
            ),
            Some((
                b"229 Entering Extended Passive Mode (|||8021|)\r\n".to_vec(),
                -1
            ))
        );
        // An EPSV reply names no address: a new one changes nothing.
        assert_eq!(
            edit(
                b"229 Extended Passive (|||30000|)\r\n",
                1,
                "198.18.0.200",
                30000
            ),
            None
        );
        // Lines the helper would not have accepted, and an address a PORT
        // command cannot name.
        assert_eq!(rewrite(b"PORT", 0, "198.18.0.1", 1), Err(()));
        assert_eq!(
            rewrite(b"EPRT |1|198.18.0.1|4", 0, "198.18.0.1", 1),
            Err(())
        );
        assert_eq!(
            rewrite(b"PORT 198,18,0,1,1,1\r\n", 0, "2001:2::1", 1),
            Err(())
        );
    }
}
