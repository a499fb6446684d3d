//! Packet views: typed, bounds-checked, zero-copy accessors over byte slices,
//! in the manner of smoltcp's `wire` module, and writable ones
//! ([`IpPacketMut`]) whose setters keep checksums right incrementally.
//! Every length is checked once, where a view is made; accessors then
//! cannot go out of bounds, and nothing here panics on any input.

mod checksum;
mod emit;
mod ethernet;
mod ip;
mod l4;
#[cfg(feature = "etherparse")]
pub mod reference;
mod rewrite;
mod segment;

pub use checksum::{header_checksum, ip_header_ok, l4_ok, ChecksumView};
pub use emit::{
    EthernetRepr, IcmpRepr, Ipv4Repr, Ipv6ExtRepr, Ipv6Repr, TcpRepr, UdpRepr, ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
};
pub use ethernet::{EthernetFrame, MacAddr, ETHERNET_HEADER_LEN};
pub use ip::{
    parse_frame, parse_ip, Addr, FragInfo, Fragment, Frame, IpPacket, LinkType, L3, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};
pub use l4::{
    IcmpHeader, TcpHeader, TcpOptions, UdpHeader, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH,
    TCP_RST, TCP_SYN, TCP_URG,
};
pub use rewrite::{checksum_adjust, IpPacketMut};
pub use segment::{compare_rewrites, Ipv4SegmentMut};

/// A buffer too short for the header a view needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("truncated header")
    }
}

impl std::error::Error for Truncated {}

/// Why a packet could not be parsed. [`Error::reason`] names it the way
/// `ctfwd trace` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    TruncatedLink,
    TruncatedVlan,
    TooManyVlanTags,
    TruncatedIp,
    BadIpVersion,
    BadIpHeaderLength,
    BadIpTotalLength,
    TruncatedExtHeader,
    NestedFragment,
    TruncatedTcp,
    BadTcpDataOffset,
    TruncatedUdp,
    BadUdpLength,
    TruncatedIcmp,
}

impl Error {
    pub fn reason(self) -> &'static str {
        match self {
            Error::TruncatedLink => "truncated-link-header",
            Error::TruncatedVlan => "truncated-vlan-tag",
            Error::TooManyVlanTags => "too-many-vlan-tags",
            Error::TruncatedIp => "truncated-ip-header",
            Error::BadIpVersion => "bad-ip-version",
            Error::BadIpHeaderLength => "bad-ip-header-length",
            Error::BadIpTotalLength => "bad-ip-total-length",
            Error::TruncatedExtHeader => "truncated-ipv6-extension-header",
            Error::NestedFragment => "nested-ipv6-fragment-header",
            Error::TruncatedTcp => "truncated-tcp-header",
            Error::BadTcpDataOffset => "bad-tcp-data-offset",
            Error::TruncatedUdp => "truncated-udp-header",
            Error::BadUdpLength => "bad-udp-length",
            Error::TruncatedIcmp => "truncated-icmp-header",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Error {}
