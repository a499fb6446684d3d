//! Ethernet II frames.

use std::fmt;
use std::str::FromStr;

use super::Truncated;

pub const ETHERNET_HEADER_LEN: usize = 14;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Parses `XX:XX:XX:XX:XX:XX` (also with `-` separators).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts
                .next()
                .ok_or_else(|| format!("'{s}' is not a MAC address"))?;
            if part.len() != 2 {
                return Err(format!("'{s}' is not a MAC address"));
            }
            *byte =
                u8::from_str_radix(part, 16).map_err(|_| format!("'{s}' is not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("'{s}' is not a MAC address"));
        }
        Ok(MacAddr(out))
    }
}

/// A view of an Ethernet II header at the start of `buffer`.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a whole Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < ETHERNET_HEADER_LEN {
            return Err(Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[0..6].try_into().unwrap())
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[6..12].try_into().unwrap())
    }

    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[12], b[13]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[0..6].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[6..12].copy_from_slice(&addr.0);
    }

    /// Exchanges source and destination (testpmd's macswap).
    pub fn swap_addrs(&mut self) {
        let (dst, rest) = self.buffer.as_mut().split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still seen on older switches.
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// The EtherType and offset of the payload of an Ethernet frame, after up to
/// two VLAN tags (802.1Q, 802.1ad). A third tag is refused.
#[inline(always)]
pub(crate) fn payload(frame: &[u8]) -> Result<(u16, usize), super::Error> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| super::Error::TruncatedLink)?;
    let mut ethertype = eth.ethertype();
    let mut off = ETHERNET_HEADER_LEN;
    for _ in 0..2 {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            return Ok((ethertype, off));
        }
        let tag = frame.get(off..off + 4).ok_or(super::Error::TruncatedVlan)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
    }
    if matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        return Err(super::Error::TooManyVlanTags);
    }
    Ok((ethertype, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:00:00:00:00:1a".parse().unwrap();
        assert_eq!(m, MacAddr([2, 0, 0, 0, 0, 0x1a]));
        assert_eq!(m.to_string(), "02:00:00:00:00:1A");
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "0g:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn frame_views() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            Truncated
        );
        let mut buf = [0u8; 14];
        buf[..6].copy_from_slice(&[1; 6]);
        buf[6..12].copy_from_slice(&[2; 6]);
        buf[12..].copy_from_slice(&[0x08, 0x00]);
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        assert_eq!(f.ethertype(), 0x0800);
        f.swap_addrs();
        assert_eq!(f.dst_addr(), MacAddr([2; 6]));
        assert_eq!(f.src_addr(), MacAddr([1; 6]));
        f.set_src_addr(MacAddr([9; 6]));
        assert_eq!(&buf[6..12], &[9; 6]);
    }
}
