//! A second opinion on parsing: etherparse's lax slicer read beside
//! [`parse_frame`] and the transport views, for the differential property
//! test (`tests/wire_reference.rs`) and the `wire_reference` fuzz target.
//! The hot path keeps `wire`; this module exists only with the cargo
//! feature `etherparse`.
//!
//! [`compare`] says whether the two read a frame to the same headers,
//! lengths and ports, and where they do not, why: every difference must be
//! one of the [`Difference`]s below, each a place where ctfwd follows Linux
//! (or RFC 8200) and a lax general-purpose slicer need not. Anything else
//! is a disagreement, returned as text.

use etherparse::err::packet::SliceError;
use etherparse::err::{ip, ipv6_exts, tcp, Layer};
use etherparse::{LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, LenSource, TransportSlice};

use super::{
    parse_frame, Addr, Error, Fragment, Frame, IcmpHeader, IpPacket, LinkType, TcpHeader,
    UdpHeader, L3, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};

/// Why the two readings of a frame may rightly differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Difference {
    /// A third VLAN tag: ctfwd refuses it, etherparse reads up to three.
    ThirdVlanTag,
    /// MACsec (EtherType 0x88e5): not IP to ctfwd, which forwards it as it
    /// is; etherparse reads into its SecTAG.
    Macsec,
    /// The IP version nibble disagrees with the EtherType: ctfwd refuses
    /// the packet (as Linux's ip_rcv_core and ipv6_rcv do), etherparse
    /// goes by the nibble.
    VersionNotEtherType,
    /// A length field the frame cannot hold (IPv4 total length beyond the
    /// frame or below the header, an IPv6 payload beyond the frame, a
    /// jumbogram): ctfwd refuses, as Linux's ip_rcv_core does; the lax
    /// slicer reads what is there.
    LengthBeyondFrame,
    /// IPv6 payload length 0 without a jumbo option: an empty payload to
    /// ctfwd (and Linux); to etherparse, a jumbogram running to the frame's
    /// end.
    Ipv6ZeroPayload,
    /// An IPv4 Authentication Header: etherparse steps over it, ctfwd
    /// tracks protocol 51 itself, as Linux's IPv4 conntrack does.
    Ipv4AuthHeader,
    /// Mobility, HIP or shim6 headers (RFC 8200's list of extension
    /// headers): ctfwd walks over them, etherparse stops at them.
    LaterExtensionHeader,
    /// A hop-by-hop header that is not the first: etherparse refuses it,
    /// ctfwd walks over it (Linux's conntrack does, with
    /// ipv6_skip_exthdr).
    HopByHopNotFirst,
    /// An Authentication Header whose length field is 0 (8 bytes, short
    /// of RFC 4302's 12 with the sequence number): etherparse refuses it,
    /// ctfwd steps over it as Linux's ipv6_skip_exthdr does.
    AuthHeaderZeroLength,
    /// A second Fragment header in one packet: ctfwd refuses (RFC 8200
    /// 4.5 forbids it), etherparse walks on.
    NestedFragment,
    /// A later IPv6 fragment: ctfwd stops at its Fragment header (what
    /// follows is data, RFC 8200 4.5), etherparse walks on into it.
    LaterFragmentData,
    /// A UDP length beyond the IP payload or below 8: ctfwd refuses, as
    /// Linux's udp_error; the lax slicer falls back on the IP length.
    UdpLength,
    /// An ICMP timestamp (or reply) not exactly 20 bytes long: etherparse
    /// refuses it, ctfwd needs only the 8-byte header, as Linux does.
    IcmpTimestampLength,
}

impl Difference {
    pub const ALL: [Difference; 13] = [
        Difference::ThirdVlanTag,
        Difference::Macsec,
        Difference::VersionNotEtherType,
        Difference::LengthBeyondFrame,
        Difference::Ipv6ZeroPayload,
        Difference::Ipv4AuthHeader,
        Difference::LaterExtensionHeader,
        Difference::HopByHopNotFirst,
        Difference::AuthHeaderZeroLength,
        Difference::NestedFragment,
        Difference::LaterFragmentData,
        Difference::UdpLength,
        Difference::IcmpTimestampLength,
    ];
}

/// What [`compare`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Both read the same headers, lengths and ports (or refuse the frame
    /// at the same layer).
    Same,
    /// They differ, for this reason.
    Explained(Difference),
}

/// Reads `frame` (Ethernet, as captured whole) with both parsers.
pub fn compare(frame: &[u8]) -> Result<Verdict, String> {
    let ours = parse_frame(LinkType::Ethernet, frame, frame.len());
    let Ok(theirs) = LaxSlicedPacket::from_ethernet(frame) else {
        return match ours {
            Err(Error::TruncatedLink) => Ok(Verdict::Same),
            other => Err(format!("etherparse: short frame; wire: {other:?}")),
        };
    };
    let vlans = theirs
        .link_exts
        .iter()
        .filter(|e| matches!(e, LaxLinkExtSlice::Vlan(_)))
        .count();
    let stop = theirs.stop_err.as_ref();
    let explained = |d| Ok(Verdict::Explained(d));
    match ours {
        Err(Error::TruncatedLink) => Err("wire: short frame; etherparse read it".into()),
        Err(Error::TruncatedVlan) if stopped_at(stop, &[Layer::VlanHeader]) => Ok(Verdict::Same),
        // ctfwd refuses at the third tag's EtherType, before reading the
        // tag; etherparse reads the tag, or stops where it is cut.
        Err(Error::TooManyVlanTags)
            if vlans >= 3 || (vlans == 2 && stopped_at(stop, &[Layer::VlanHeader])) =>
        {
            explained(Difference::ThirdVlanTag)
        }
        Ok(Frame::NotIp(0x88e5))
            if stopped_at(stop, &[Layer::MacsecHeader, Layer::MacsecPacket])
                || theirs
                    .link_exts
                    .iter()
                    .any(|e| matches!(e, LaxLinkExtSlice::Macsec(_))) =>
        {
            explained(Difference::Macsec)
        }
        Ok(Frame::NotIp(0x0806)) if matches!(theirs.net, Some(LaxNetSlice::Arp(_))) => {
            Ok(Verdict::Same)
        }
        Ok(Frame::NotIp(0x0806)) if stopped_at(stop, &[Layer::Arp]) => Ok(Verdict::Same),
        Ok(Frame::NotIp(_)) if theirs.net.is_none() && stop.is_none() => Ok(Verdict::Same),
        Ok(Frame::Ip(p)) => compare_ip(frame, &p, &theirs),
        Err(e) => compare_refusal(e, &theirs),
        Ok(other) => Err(format!("wire: {other:?}; etherparse: {theirs:?}")),
    }
}

/// Whether etherparse stopped at one of `layers`.
fn stopped_at(stop: Option<&(SliceError, Layer)>, layers: &[Layer]) -> bool {
    stop.is_some_and(|(_, l)| layers.contains(l))
}

const EXT_LAYERS: [Layer; 5] = [
    Layer::Ipv6HopByHopHeader,
    Layer::Ipv6DestOptionsHeader,
    Layer::Ipv6RouteHeader,
    Layer::Ipv6FragHeader,
    Layer::IpAuthHeader,
];

/// An IP header ctfwd refused: etherparse must refuse it at the same layer
/// or read it for a known reason.
fn compare_refusal(e: Error, theirs: &LaxSlicedPacket<'_>) -> Result<Verdict, String> {
    let stop = theirs.stop_err.as_ref();
    let payload = theirs.net.as_ref().and_then(|n| n.ip_payload_ref());
    let v6_payload_len = match &theirs.net {
        Some(LaxNetSlice::Ipv6(v6)) => Some(v6.header().payload_length()),
        _ => None,
    };
    let same = Ok(Verdict::Same);
    let explained = |d| Ok(Verdict::Explained(d));
    match e {
        Error::BadIpVersion => match stop {
            Some((SliceError::Ip(ip::HeaderError::UnsupportedIpVersion { .. }), _)) => same,
            // The other version's header, read or cut short.
            _ if theirs.net.is_some() || stopped_at(stop, &[Layer::IpHeader]) => {
                explained(Difference::VersionNotEtherType)
            }
            _ => Err(format!("wire: {e:?}; etherparse: {theirs:?}")),
        },
        // Both refuse the header; which of "cut short" and "IHL below 5"
        // is found first is a matter of the order of the checks.
        Error::TruncatedIp | Error::BadIpHeaderLength
            if matches!(
                stop,
                Some((
                    SliceError::Len(_)
                        | SliceError::Ip(ip::HeaderError::Ipv4HeaderLengthSmallerThanHeader { .. }),
                    Layer::IpHeader
                ))
            ) =>
        {
            same
        }
        // A jumbogram (payload length 0 and a hop-by-hop header), refused
        // by ctfwd, is read by etherparse to the frame's end, or not at all
        // when nothing follows the fixed header.
        Error::BadIpTotalLength
            if v6_payload_len == Some(0)
                || payload.is_some_and(|p| p.incomplete || p.len_source == LenSource::Slice) =>
        {
            explained(Difference::LengthBeyondFrame)
        }
        Error::TruncatedExtHeader | Error::NestedFragment if v6_payload_len == Some(0) => {
            explained(Difference::Ipv6ZeroPayload)
        }
        Error::NestedFragment if matches!(theirs.net, Some(LaxNetSlice::Ipv6(_))) => {
            explained(Difference::NestedFragment)
        }
        Error::TruncatedExtHeader if stopped_at(stop, &EXT_LAYERS) => same,
        Error::TruncatedExtHeader => match (stop, payload) {
            (Some((SliceError::Ipv6Exts(_), Layer::Ipv6HopByHopHeader)), _) => {
                explained(Difference::HopByHopNotFirst)
            }
            (None, Some(p)) if matches!(p.ip_number.0, 135 | 139 | 140) => {
                explained(Difference::LaterExtensionHeader)
            }
            _ => Err(format!("wire: {e:?}; etherparse: {theirs:?}")),
        },
        _ => Err(format!("wire: {e:?}; etherparse: {theirs:?}")),
    }
}

/// An IP packet ctfwd read: etherparse must read the same addresses,
/// protocol, lengths and transport header, or differ for a known reason.
fn compare_ip(
    frame: &[u8],
    p: &IpPacket<'_>,
    theirs: &LaxSlicedPacket<'_>,
) -> Result<Verdict, String> {
    let fail = |what: &str| Err(format!("{what}: wire {p:?}; etherparse {theirs:?}"));
    let explained = |d| Ok(Verdict::Explained(d));
    let (src, dst, total, payload) = match (&theirs.net, p.l3) {
        (Some(LaxNetSlice::Ipv4(v4)), L3::V4) => {
            let h = v4.header();
            (
                Addr::v4(h.source()),
                Addr::v4(h.destination()),
                usize::from(h.total_len()),
                v4.payload(),
            )
        }
        (Some(LaxNetSlice::Ipv6(v6)), L3::V6) => {
            let h = v6.header();
            if h.payload_length() == 0 && v6.payload().len_source == LenSource::Slice {
                return explained(Difference::Ipv6ZeroPayload);
            }
            (
                Addr::v6(h.source()),
                Addr::v6(h.destination()),
                40 + usize::from(h.payload_length()),
                v6.payload(),
            )
        }
        _ => return fail("network layer"),
    };
    if (src, dst, total) != (p.src, p.dst, p.wire_len) || payload.incomplete {
        return fail("addresses or length");
    }
    let at = payload.payload.as_ptr() as usize - frame.as_ptr() as usize;
    let ours_at = p.l4.as_ptr() as usize - frame.as_ptr() as usize;
    if p.fragment == Fragment::Later
        && p.l3 == L3::V6
        && payload.fragmented
        && (payload.ip_number.0, at) != (p.proto, ours_at)
    {
        // Past the Fragment header: what etherparse reads there is data.
        return explained(Difference::LaterFragmentData);
    }
    let stop = theirs.stop_err.as_ref();
    match stop {
        Some((SliceError::Ipv6Exts(_), Layer::Ipv6HopByHopHeader)) => {
            return explained(Difference::HopByHopNotFirst);
        }
        Some((SliceError::Ipv6Exts(ipv6_exts::HeaderError::IpAuth(_)), _)) => {
            return explained(Difference::AuthHeaderZeroLength);
        }
        // Fewer than 12 bytes left, which ctfwd's walk took as a whole
        // 8-byte header.
        Some((SliceError::Len(l), Layer::IpAuthHeader)) if l.required_len == 12 => {
            return explained(Difference::AuthHeaderZeroLength);
        }
        _ => {}
    }
    if p.l3 == L3::V6 && matches!(payload.ip_number.0, 135 | 139 | 140) && at != ours_at {
        return explained(Difference::LaterExtensionHeader);
    }
    let v4_auth = p.l3 == L3::V4 && p.proto == 51;
    if v4_auth
        && (payload.ip_number.0 != 51 || at != ours_at || stopped_at(stop, &[Layer::IpAuthHeader]))
    {
        return explained(Difference::Ipv4AuthHeader);
    }
    if payload.ip_number.0 != p.proto {
        return fail("protocol");
    }
    // Where the transport header starts, and how much of it there is.
    if (at, payload.payload.len()) != (ours_at, p.l4.len()) {
        return fail("transport offset or length");
    }
    if payload.fragmented != (p.fragment != Fragment::Whole) {
        return fail("fragmentation");
    }
    if p.fragment != Fragment::Whole {
        // etherparse does not read into fragments.
        return Ok(Verdict::Same);
    }
    if stopped_at(stop, &EXT_LAYERS) || stopped_at(stop, &[Layer::IpHeader]) {
        return fail("extension headers");
    }
    compare_transport(p, theirs)
}

fn compare_transport(p: &IpPacket<'_>, theirs: &LaxSlicedPacket<'_>) -> Result<Verdict, String> {
    let fail = |what: &str| Err(format!("{what}: wire {p:?}; etherparse {theirs:?}"));
    let stop = theirs.stop_err.as_ref();
    let same = Ok(Verdict::Same);
    match (p.proto, &theirs.transport) {
        (PROTO_TCP, t) => match (TcpHeader::parse(p.l4), t, stop) {
            (Ok(h), Some(TransportSlice::Tcp(t)), None)
                if (h.sport(), h.dport(), h.header_len())
                    == (
                        t.source_port(),
                        t.destination_port(),
                        usize::from(t.data_offset()) * 4,
                    ) =>
            {
                same
            }
            (Err(Error::TruncatedTcp), None, Some((SliceError::Len(_), Layer::TcpHeader))) => same,
            (
                Err(Error::BadTcpDataOffset),
                None,
                Some((SliceError::Tcp(tcp::HeaderError::DataOffsetTooSmall { .. }), _)),
            ) => same,
            _ => fail("TCP"),
        },
        (PROTO_UDP, t) => match (UdpHeader::parse(p.l4, p.l4_wire_len(), false), t, stop) {
            (Ok(h), Some(TransportSlice::Udp(u)), None)
                if (h.sport, h.dport, usize::from(h.length))
                    == (u.source_port(), u.destination_port(), u.slice().len()) =>
            {
                same
            }
            (Err(Error::BadUdpLength), Some(TransportSlice::Udp(_)), None) => {
                Ok(Verdict::Explained(Difference::UdpLength))
            }
            (Err(Error::TruncatedUdp), None, Some((SliceError::Len(_), Layer::UdpHeader))) => same,
            _ => fail("UDP"),
        },
        // etherparse reads ICMP by protocol number whatever the IP version,
        // and so does this comparison.
        (PROTO_ICMP | PROTO_ICMPV6, t) => {
            let theirs_icmp = match t {
                Some(TransportSlice::Icmpv4(i)) => Some((i.type_u8(), i.code_u8())),
                Some(TransportSlice::Icmpv6(i)) => Some((i.type_u8(), i.code_u8())),
                _ => None,
            };
            match (IcmpHeader::parse(p.l4), theirs_icmp, stop) {
                (Ok(h), Some(t), None) if (h.ty, h.code) == t => same,
                (Err(Error::TruncatedIcmp), None, Some((SliceError::Len(_), _))) => same,
                (Ok(_), None, Some((SliceError::Len(l), Layer::Icmpv4)))
                    if matches!(
                        l.layer,
                        Layer::Icmpv4Timestamp | Layer::Icmpv4TimestampReply
                    ) =>
                {
                    Ok(Verdict::Explained(Difference::IcmpTimestampLength))
                }
                _ => fail("ICMP"),
            }
        }
        // ctfwd reads no other transport header (etherparse reads IGMP).
        _ => same,
    }
}
