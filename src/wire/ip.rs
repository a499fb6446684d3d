//! IPv4 and IPv6 headers, IPv6 extension headers, and the walk from a link
//! header down to the transport header.
//!
//! Lengths come from the IP headers, not from the capture: a frame cut short
//! by a capture's snap length is described as the wire carried it, and only
//! the bytes actually present are ever read.

use super::{ethernet, Error};

/// IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L3 {
    V4,
    V6,
}

/// An IPv6 address, or an IPv4 address in its low 32 bits, held as two
/// big-endian 64-bit halves: comparing and hashing take two word
/// operations, and a tuple stays 8-byte aligned (40 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    hi: u64,
    lo: u64,
}

impl Addr {
    pub const ZERO: Addr = Addr { hi: 0, lo: 0 };

    #[inline]
    pub fn v4(o: [u8; 4]) -> Addr {
        Addr {
            hi: 0,
            lo: u64::from(u32::from_be_bytes(o)),
        }
    }

    #[inline]
    pub fn v6(o: [u8; 16]) -> Addr {
        Addr {
            hi: u64::from_be_bytes(o[..8].try_into().unwrap()),
            lo: u64::from_be_bytes(o[8..].try_into().unwrap()),
        }
    }

    pub fn from_std(ip: std::net::IpAddr) -> Addr {
        match ip {
            std::net::IpAddr::V4(v4) => Addr::v4(v4.octets()),
            std::net::IpAddr::V6(v6) => Addr::v6(v6.octets()),
        }
    }

    /// The two halves, for hashing and for storing in atomics.
    #[inline]
    pub fn words(&self) -> [u64; 2] {
        [self.hi, self.lo]
    }

    /// The address `words` gave.
    #[inline]
    pub fn from_words([hi, lo]: [u64; 2]) -> Addr {
        Addr { hi, lo }
    }

    /// The 16 bytes in network order (IPv4 in the last four).
    pub fn octets(&self) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&self.hi.to_be_bytes());
        o[8..].copy_from_slice(&self.lo.to_be_bytes());
        o
    }

    pub fn display(&self, l3: L3) -> std::net::IpAddr {
        match l3 {
            L3::V4 => std::net::IpAddr::from((self.lo as u32).to_be_bytes()),
            L3::V6 => std::net::IpAddr::from(self.octets()),
        }
    }
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

const EXT_HOP_BY_HOP: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_AH: u8 = 51;
const EXT_DEST_OPTS: u8 = 60;
const EXT_MOBILITY: u8 = 135;
const EXT_HIP: u8 = 139;
const EXT_SHIM6: u8 = 140;

/// Where a packet sits among the fragments of its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    Whole,
    /// First fragment: the transport header is there.
    First,
    /// A later fragment: no transport header.
    Later,
}

/// Where a fragment's data sits, in its datagram and in the packet (only
/// meaningful when `IpPacket::fragment` is not `Whole`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragInfo {
    /// Identification: IPv4's 16 bits, or the IPv6 Fragment header's 32.
    pub id: u32,
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: u32,
    /// More fragments follow (MF, or the IPv6 M flag).
    pub more: bool,
    /// Offset of the fragment's data from the start of the IP header: past
    /// the IPv4 header, or past the IPv6 Fragment header.
    pub data_at: u16,
    /// IPv6: offset of the next-header byte that names the Fragment header
    /// (6 in the fixed header, or in the extension header before it).
    pub next_at: u16,
}

/// An IP packet, down to its transport header.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<'a> {
    pub l3: L3,
    pub src: Addr,
    pub dst: Addr,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    pub fragment: Fragment,
    pub frag: FragInfo,
    /// Length of the IP packet on the wire (header included).
    pub wire_len: usize,
    /// Offset of the transport header from the start of the IP header.
    pub l4_offset: usize,
    /// The IP header bytes (for checksum checks).
    pub header: &'a [u8],
    /// The captured transport bytes (possibly fewer than the wire carried,
    /// never more than the IP length says).
    pub l4: &'a [u8],
}

impl IpPacket<'_> {
    /// Length of the transport segment on the wire.
    pub fn l4_wire_len(&self) -> usize {
        self.wire_len - self.l4_offset
    }
}

/// Parses an IP packet at the start of `data`. `wire_avail` is how many
/// bytes of it the wire carried (`data.len()` unless the capture cut it).
/// `lax` accepts a packet whose total length exceeds what is there, as the
/// copy of the offending packet inside an ICMP error usually is.
// Inlined into the caller whole, with parse_ipv4: the packet view is then
// built in the caller's registers instead of being copied through each
// layer's `Result` (measured: the copies cost ~20 cycles a packet).
#[inline(always)]
pub fn parse_ip(data: &[u8], wire_avail: usize, lax: bool) -> Result<IpPacket<'_>, Error> {
    match data.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(data, wire_avail, lax),
        Some(6) => parse_ipv6(data, wire_avail, lax),
        Some(_) => Err(Error::BadIpVersion),
        None => Err(Error::TruncatedIp),
    }
}

#[inline(always)]
fn parse_ipv4(data: &[u8], wire_avail: usize, lax: bool) -> Result<IpPacket<'_>, Error> {
    if data.len() < 20 {
        return Err(Error::TruncatedIp);
    }
    let ihl = (data[0] & 0x0f) as usize * 4;
    if ihl < 20 {
        return Err(Error::BadIpHeaderLength);
    }
    if data.len() < ihl {
        return Err(Error::TruncatedIp);
    }
    let total = u16::from_be_bytes([data[2], data[3]]) as usize;
    if total < ihl {
        return Err(Error::BadIpTotalLength);
    }
    // RFC 791 total length must fit in what the link delivered (Linux's
    // ip_rcv_core drops the packet otherwise). An ICMP error's quoted packet
    // is cut short by design, so there it is checked laxly.
    if total > wire_avail && !lax {
        return Err(Error::BadIpTotalLength);
    }
    let frag = u16::from_be_bytes([data[6], data[7]]);
    let (more, offset) = (frag & 0x2000 != 0, frag & 0x1fff);
    let fragment = match (offset, more) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    let end = total.min(data.len());
    Ok(IpPacket {
        l3: L3::V4,
        src: Addr::v4(data[12..16].try_into().unwrap()),
        dst: Addr::v4(data[16..20].try_into().unwrap()),
        proto: data[9],
        fragment,
        frag: FragInfo {
            id: u32::from(u16::from_be_bytes([data[4], data[5]])),
            offset: u32::from(offset) * 8,
            more,
            data_at: ihl as u16,
            next_at: 0,
        },
        wire_len: total,
        l4_offset: ihl,
        header: &data[..ihl],
        l4: &data[ihl..end],
    })
}

#[inline(never)]
fn parse_ipv6(data: &[u8], wire_avail: usize, lax: bool) -> Result<IpPacket<'_>, Error> {
    if data.len() < 40 {
        return Err(Error::TruncatedIp);
    }
    let payload = u16::from_be_bytes([data[4], data[5]]) as usize;
    // A zero payload length followed by a hop-by-hop header announces a
    // jumbogram (RFC 2675); ctfwd does not track jumbograms. Otherwise zero
    // is simply an empty payload (Linux's ipv6_rcv makes the same call).
    if payload == 0 && data[6] == EXT_HOP_BY_HOP {
        return Err(Error::BadIpTotalLength);
    }
    let total = 40 + payload;
    if total > wire_avail && !lax {
        return Err(Error::BadIpTotalLength);
    }
    let end = total.min(data.len());
    let mut next = data[6];
    let mut off = 40;
    // Where the byte naming the header at `off` sits.
    let mut next_at = 6;
    let mut fragment = Fragment::Whole;
    let mut frag = FragInfo::default();
    // Walk the extension headers (RFC 8200 section 4), each bounded by the
    // bytes present and by the payload length.
    loop {
        match next {
            EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS | EXT_MOBILITY | EXT_HIP | EXT_SHIM6 => {
                let h = data.get(off..off + 2).ok_or(Error::TruncatedExtHeader)?;
                let len = (h[1] as usize + 1) * 8;
                if off + len > end {
                    return Err(Error::TruncatedExtHeader);
                }
                next = h[0];
                next_at = off;
                off += len;
            }
            EXT_AH => {
                let h = data.get(off..off + 2).ok_or(Error::TruncatedExtHeader)?;
                let len = (h[1] as usize + 2) * 4;
                if off + len > end {
                    return Err(Error::TruncatedExtHeader);
                }
                next = h[0];
                next_at = off;
                off += len;
            }
            EXT_FRAGMENT => {
                let h = data.get(off..off + 8).ok_or(Error::TruncatedExtHeader)?;
                if off + 8 > end {
                    return Err(Error::TruncatedExtHeader);
                }
                if fragment != Fragment::Whole {
                    return Err(Error::NestedFragment);
                }
                let fo = u16::from_be_bytes([h[2], h[3]]);
                let (offset, more) = (fo >> 3, fo & 1 != 0);
                fragment = match (offset, more) {
                    // An atomic fragment (RFC 6946) is a whole packet.
                    (0, false) => Fragment::Whole,
                    (0, true) => Fragment::First,
                    _ => Fragment::Later,
                };
                frag = FragInfo {
                    id: u32::from_be_bytes(h[4..8].try_into().unwrap()),
                    offset: u32::from(offset) * 8,
                    more,
                    data_at: (off + 8) as u16,
                    next_at: next_at as u16,
                };
                next = h[0];
                next_at = off;
                off += 8;
                if fragment == Fragment::Later {
                    break;
                }
            }
            _ => break,
        }
    }
    Ok(IpPacket {
        l3: L3::V6,
        src: Addr::v6(data[8..24].try_into().unwrap()),
        dst: Addr::v6(data[24..40].try_into().unwrap()),
        proto: next,
        fragment,
        frag,
        wire_len: total,
        l4_offset: off,
        header: &data[..40],
        l4: &data[off.min(end)..end],
    })
}

/// Link-layer framings of captured packets (pcap LINKTYPE_ values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Raw IPv4 or IPv6, version from the first nibble.
    RawIp,
    /// Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// BSD loopback, address family in host order (LINKTYPE_NULL).
    Null,
    /// OpenBSD loopback, address family in network order (LINKTYPE_LOOP).
    Loop,
}

impl LinkType {
    /// From a pcap/pcapng link type number.
    pub fn from_linktype(lt: u32) -> Option<LinkType> {
        Some(match lt {
            1 => LinkType::Ethernet,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            // DLT_RAW is 12 or 14 on some platforms; 101 is LINKTYPE_RAW;
            // 228 and 229 are LINKTYPE_IPV4 and LINKTYPE_IPV6.
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// What a frame carries.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// An IP packet.
    Ip(IpPacket<'a>),
    /// Not IP (ARP, LLDP, ...): the EtherType.
    NotIp(u16),
}

/// Parses a frame of `link` type. `wire_len` is the frame's length on the
/// wire (`data.len()` unless a capture cut it).
#[inline(always)]
pub fn parse_frame(link: LinkType, data: &[u8], wire_len: usize) -> Result<Frame<'_>, Error> {
    if link == LinkType::Ethernet {
        let (ethertype, off) = ethernet::payload(data)?;
        return ip_payload(ethertype, data, off, wire_len);
    }
    parse_other_link(link, data, wire_len)
}

/// `parse_frame` for the link types of captures.
#[inline(never)]
fn parse_other_link(link: LinkType, data: &[u8], wire_len: usize) -> Result<Frame<'_>, Error> {
    let (ethertype, off) = match link {
        LinkType::Ethernet => ethernet::payload(data)?,
        LinkType::RawIp => {
            return parse_ip(data, wire_len, false).map(Frame::Ip);
        }
        LinkType::LinuxSll => {
            let h = data.get(..16).ok_or(Error::TruncatedLink)?;
            (u16::from_be_bytes([h[14], h[15]]), 16)
        }
        LinkType::LinuxSll2 => {
            let h = data.get(..20).ok_or(Error::TruncatedLink)?;
            (u16::from_be_bytes([h[0], h[1]]), 20)
        }
        LinkType::Null | LinkType::Loop => {
            let h: [u8; 4] = data
                .get(..4)
                .ok_or(Error::TruncatedLink)?
                .try_into()
                .unwrap();
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(h)
            } else {
                // Host order of the capturing machine: accept either.
                let le = u32::from_le_bytes(h);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes(h)
                }
            };
            let ethertype = match family {
                2 => 0x0800,
                10 | 24 | 28 | 30 => 0x86dd,
                _ => 0,
            };
            (ethertype, 4)
        }
    };
    ip_payload(ethertype, data, off, wire_len)
}

/// The frame's payload at `off`, of type `ethertype`.
#[inline(always)]
fn ip_payload(
    ethertype: u16,
    data: &[u8],
    off: usize,
    wire_len: usize,
) -> Result<Frame<'_>, Error> {
    let ip = &data[off..];
    let avail = wire_len.saturating_sub(off);
    // The version nibble must agree with the EtherType. Each arm builds the
    // frame without `?`: passing the packet view up through the error
    // plumbing made the compiler copy it piecewise through the stack.
    match (ethertype, ip.first().map(|b| b >> 4)) {
        (0x0800, Some(4)) => match parse_ipv4(ip, avail, false) {
            Ok(p) => Ok(Frame::Ip(p)),
            Err(e) => Err(e),
        },
        (0x86dd, Some(6)) => match parse_ipv6(ip, avail, false) {
            Ok(p) => Ok(Frame::Ip(p)),
            Err(e) => Err(e),
        },
        (0x0800 | 0x86dd, Some(_)) => Err(Error::BadIpVersion),
        (0x0800 | 0x86dd, None) => Err(Error::TruncatedIp),
        (other, _) => Ok(Frame::NotIp(other)),
    }
}
