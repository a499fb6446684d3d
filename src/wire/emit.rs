//! Header emitters, the building half of the header model the parsers
//! read (smoltcp's `Repr`s): each describes one header by its fields and
//! appends it in wire format. Checksums: the IPv4 header's is filled in by
//! [`Ipv4Repr::emit`]; transport checksums are left zero for
//! [`IpPacketMut::fill_checksums`](super::IpPacketMut::fill_checksums),
//! which needs the whole packet.

use super::checksum::header_checksum;
use super::ethernet::MacAddr;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// An Ethernet header with up to two VLAN tags (outer first: the outer
/// one 802.1ad, the inner one 802.1Q).
#[derive(Debug, Clone, Copy)]
pub struct EthernetRepr<'a> {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub vlans: &'a [u16],
    pub ethertype: u16,
}

impl EthernetRepr<'_> {
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        for (i, vid) in self.vlans.iter().enumerate() {
            let tpid = if i + 1 < self.vlans.len() {
                TPID_8021AD
            } else {
                TPID_8021Q
            };
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&vid.to_be_bytes());
        }
        out.extend_from_slice(&self.ethertype.to_be_bytes());
    }
}

/// An IPv4 header without options (RFC 791).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Repr {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl Ipv4Repr {
    pub const HEADER_LEN: usize = 20;

    /// Appends the header, its checksum filled in.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let at = out.len();
        let total = (Self::HEADER_LEN + self.payload_len) as u16;
        let flags_offset = (self.frag_offset / 8)
            | if self.dont_fragment { 0x4000 } else { 0 }
            | if self.more_fragments { 0x2000 } else { 0 };
        out.extend_from_slice(&[0x45, 0]);
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&self.ident.to_be_bytes());
        out.extend_from_slice(&flags_offset.to_be_bytes());
        out.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
        let c = header_checksum(&out[at..]);
        out[at + 10..at + 12].copy_from_slice(&c);
    }
}

/// An IPv6 fixed header (RFC 8200).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Repr {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub next_header: u8,
    pub hop_limit: u8,
    /// Bytes after the fixed header, extension headers included.
    pub payload_len: usize,
}

impl Ipv6Repr {
    pub const HEADER_LEN: usize = 40;

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&(self.payload_len as u16).to_be_bytes());
        out.extend_from_slice(&[self.next_header, self.hop_limit]);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
    }
}

/// An 8-byte IPv6 extension header.
#[derive(Debug, Clone, Copy)]
pub enum Ipv6ExtRepr {
    /// Hop-by-hop (0) or destination (60) options, holding one PadN.
    Options { kind: u8 },
    /// Routing type 0 with no segments left.
    Routing,
    /// A fragment header; offset in bytes (a multiple of 8).
    Fragment { offset: u16, more: bool, ident: u32 },
}

impl Ipv6ExtRepr {
    pub const LEN: usize = 8;

    /// Its protocol number, as the header before it names it.
    pub fn kind(&self) -> u8 {
        match self {
            Ipv6ExtRepr::Options { kind } => *kind,
            Ipv6ExtRepr::Routing => 43,
            Ipv6ExtRepr::Fragment { .. } => 44,
        }
    }

    /// Appends the header; `next` is the header after it.
    pub fn emit(&self, next: u8, out: &mut Vec<u8>) {
        match *self {
            Ipv6ExtRepr::Options { .. } => out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            Ipv6ExtRepr::Routing => out.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]),
            Ipv6ExtRepr::Fragment {
                offset,
                more,
                ident,
            } => {
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&((offset & !7) | u16::from(more)).to_be_bytes());
                out.extend_from_slice(&ident.to_be_bytes());
            }
        }
    }
}

/// A TCP header (RFC 9293); options are padded to a multiple of 4 with EOL.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpRepr<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: &'a [u8],
}

impl TcpRepr<'_> {
    pub fn header_len(&self) -> usize {
        20 + self.options.len().div_ceil(4) * 4
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        let hl = self.header_len();
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.extend_from_slice(&[((hl / 4) as u8) << 4, self.flags]);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(self.options);
        out.resize(out.len() + (hl - 20 - self.options.len()), 0);
    }

    /// The header followed by `payload`, as one segment (checksum zero).
    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.header_len() + payload.len());
        self.emit(&mut b);
        b.extend_from_slice(payload);
        b
    }
}

/// A UDP header (RFC 768).
#[derive(Debug, Clone, Copy)]
pub struct UdpRepr {
    pub sport: u16,
    pub dport: u16,
}

impl UdpRepr {
    pub const HEADER_LEN: usize = 8;

    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&((Self::HEADER_LEN + payload_len) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
}

/// An ICMP or ICMPv6 header with an identifier and a sequence number (the
/// echo layout; errors carry zero there and the quoted packet after).
#[derive(Debug, Clone, Copy)]
pub struct IcmpRepr {
    pub ty: u8,
    pub code: u8,
    pub ident: u16,
    pub seq: u16,
}

impl IcmpRepr {
    pub const HEADER_LEN: usize = 8;

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.ty, self.code, 0, 0]);
        out.extend_from_slice(&self.ident.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_frame, Addr, Frame, IpPacketMut, LinkType, TcpHeader};

    /// What the emitters build, the parsers read back field by field.
    #[test]
    fn emitted_headers_parse_back() {
        let opts = [2, 4, 5, 0xb4, 1, 3, 3];
        let tcp = TcpRepr {
            sport: 40000,
            dport: 443,
            seq: 7,
            ack: 9,
            flags: 0x12,
            window: 512,
            options: &opts,
        };
        let mut l4 = Vec::new();
        tcp.emit(&mut l4);
        l4.extend_from_slice(b"data");
        let mut f = Vec::new();
        EthernetRepr {
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            vlans: &[5, 6],
            ethertype: ETHERTYPE_IPV4,
        }
        .emit(&mut f);
        let l3_at = f.len();
        Ipv4Repr {
            src: [198, 18, 0, 1],
            dst: [198, 19, 0, 1],
            proto: 6,
            ttl: 64,
            ident: 3,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            payload_len: l4.len(),
        }
        .emit(&mut f);
        f.extend_from_slice(&l4);
        IpPacketMut::new(&mut f[l3_at..]).unwrap().fill_checksums();
        let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, &f, f.len()) else {
            panic!("not IP");
        };
        assert_eq!(ip.src, Addr::v4([198, 18, 0, 1]));
        assert_eq!(ip.dst, Addr::v4([198, 19, 0, 1]));
        assert!(crate::wire::ip_header_ok(&ip));
        assert_eq!(crate::wire::l4_ok(&ip), Some(true));
        let h = TcpHeader::parse(ip.l4).unwrap();
        assert_eq!((h.sport(), h.dport(), h.seq(), h.ack()), (40000, 443, 7, 9));
        assert_eq!((h.flags(), h.window(), h.header_len()), (0x12, 512, 28));
        assert_eq!(&ip.l4[h.header_len()..], b"data");
    }

    #[test]
    fn an_ipv6_fragment_header_parses_back() {
        let mut p = Vec::new();
        let ext = Ipv6ExtRepr::Fragment {
            offset: 1232,
            more: true,
            ident: 0xdead_beef,
        };
        Ipv6Repr {
            src: [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst: [0x20, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
            next_header: ext.kind(),
            hop_limit: 64,
            payload_len: Ipv6ExtRepr::LEN + 16,
        }
        .emit(&mut p);
        ext.emit(17, &mut p);
        p.extend_from_slice(&[0; 16]);
        let ip = crate::wire::parse_ip(&p, p.len(), false).unwrap();
        assert_eq!(ip.proto, 17);
        assert_eq!(ip.frag.id, 0xdead_beef);
        assert_eq!((ip.frag.offset, ip.frag.more), (1232, true));
    }
}
