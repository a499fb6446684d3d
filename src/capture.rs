//! Classic pcap files (the libpcap format that `net_pcap` reads and writes).
//! Reading is fallible and bounds-checked: a broken file is an error, never
//! a panic.

use std::io::{self, Write};

const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const MAGIC_NSEC: u32 = 0xa1b2_3c4d;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Link type of Ethernet captures (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// A problem with a capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError(pub String);

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaptureError {}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time in nanoseconds since the epoch.
    pub ts_nanos: u64,
    /// Length of the packet on the wire (may exceed `data.len()`).
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// A pcap file held in memory, read record by record.
pub struct PcapReader<'a> {
    rest: &'a [u8],
    big_endian: bool,
    nanos: bool,
    link_type: u32,
    index: usize,
}

impl<'a> PcapReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, CaptureError> {
        if bytes.len() < FILE_HEADER_LEN {
            return Err(CaptureError(
                "not a pcap file: shorter than its header".into(),
            ));
        }
        let magic_le = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let magic_be = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
        let (big_endian, nanos) = match (magic_le, magic_be) {
            (MAGIC_USEC, _) => (false, false),
            (MAGIC_NSEC, _) => (false, true),
            (_, MAGIC_USEC) => (true, false),
            (_, MAGIC_NSEC) => (true, true),
            _ => return Err(CaptureError("not a pcap file: unknown magic number".into())),
        };
        let mut reader = PcapReader {
            rest: &bytes[FILE_HEADER_LEN..],
            big_endian,
            nanos,
            link_type: 0,
            index: 0,
        };
        reader.link_type = reader.u32_at(&bytes[20..24]) & 0x0fff_ffff;
        Ok(reader)
    }

    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    fn u32_at(&self, b: &[u8]) -> u32 {
        let b: [u8; 4] = b[..4].try_into().unwrap();
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<Record<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        if self.rest.len() < RECORD_HEADER_LEN {
            self.rest = &[];
            return Some(Err(CaptureError(format!(
                "record {index}: truncated record header"
            ))));
        }
        let h = &self.rest[..RECORD_HEADER_LEN];
        let (sec, frac) = (self.u32_at(&h[0..4]) as u64, self.u32_at(&h[4..8]) as u64);
        let incl = self.u32_at(&h[8..12]) as usize;
        let orig_len = self.u32_at(&h[12..16]);
        let body = &self.rest[RECORD_HEADER_LEN..];
        if incl > body.len() {
            self.rest = &[];
            return Some(Err(CaptureError(format!(
                "record {index}: claims {incl} bytes, {} left in the file",
                body.len()
            ))));
        }
        self.rest = &body[incl..];
        let ts_nanos = sec * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Some(Ok(Record {
            ts_nanos,
            orig_len,
            data: &body[..incl],
        }))
    }
}

/// Writes a microsecond pcap file with Ethernet link type.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(FILE_HEADER_LEN);
        h.extend_from_slice(&MAGIC_USEC.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    pub fn write(&mut self, ts_nanos: u64, frame: &[u8]) -> io::Result<()> {
        let len = frame.len() as u32;
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&((ts_nanos / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_nanos % 1_000_000_000 / 1000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a whole Ethernet pcap file into its frames.
pub fn read_frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CaptureError> {
    let reader = PcapReader::new(bytes)?;
    if reader.link_type() != LINKTYPE_ETHERNET {
        return Err(CaptureError(format!(
            "link type {} is not Ethernet",
            reader.link_type()
        )));
    }
    reader.map(|r| r.map(|r| r.data.to_vec())).collect()
}

/// A driver for fuzzers (`fuzz/fuzz_targets/capture_read.rs`) and their
/// regression test: any file is read to its end or to an error, every
/// packet lies inside the file, and each record takes some of the file
/// (pcap's 16-byte record header, pcapng's 12-byte smallest block), so
/// reading ends.
pub fn run_capture_bytes(data: &[u8]) -> Result<(), String> {
    let Ok(reader) = CaptureReader::new(data) else {
        return Ok(());
    };
    let file = data.as_ptr_range();
    let most = data.len() / 12 + 1;
    for (n, packet) in reader.enumerate() {
        if n > most {
            return Err(format!("more than {most} records in {} bytes", data.len()));
        }
        let Ok(p) = packet else { return Ok(()) };
        let inside = p.data.is_empty()
            || (file.contains(&p.data.as_ptr()) && p.data.as_ptr_range().end <= file.end);
        if !inside {
            return Err(format!("record {n}: data outside the file"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_123_000, &[1, 2, 3]).unwrap();
        w.write(1_500_000_124_000, &[]).unwrap();
        let bytes = w.finish().unwrap();
        let recs: Vec<_> = PcapReader::new(&bytes)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, &[1, 2, 3]);
        assert_eq!(recs[0].ts_nanos, 1_500_000_123_000);
        assert_eq!(read_frames(&bytes).unwrap(), vec![vec![1, 2, 3], vec![]]);
    }

    #[test]
    fn broken_files_are_errors() {
        assert!(PcapReader::new(&[0u8; 10]).is_err());
        assert!(PcapReader::new(&[0u8; 24]).is_err());
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(0, &[9; 40]).unwrap();
        let bytes = w.finish().unwrap();
        for cut in FILE_HEADER_LEN + 1..bytes.len() {
            let res: Result<Vec<_>, _> = PcapReader::new(&bytes[..cut]).unwrap().collect();
            assert!(res.is_err(), "cut at {cut}");
        }
    }
}

/// A packet from a pcap or pcapng file, with the link type of its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts_nanos: u64,
    pub link_type: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Reads pcap or pcapng, whichever the file is.
pub enum CaptureReader<'a> {
    Pcap(PcapReader<'a>),
    Pcapng(PcapngReader<'a>),
}

impl<'a> CaptureReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, CaptureError> {
        if bytes.len() >= 4 && bytes[..4] == PCAPNG_SHB.to_le_bytes() {
            Ok(CaptureReader::Pcapng(PcapngReader::new(bytes)?))
        } else {
            Ok(CaptureReader::Pcap(PcapReader::new(bytes)?))
        }
    }
}

impl<'a> Iterator for CaptureReader<'a> {
    type Item = Result<Packet<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            CaptureReader::Pcap(r) => {
                let link_type = r.link_type();
                r.next().map(|rec| {
                    rec.map(|rec| Packet {
                        ts_nanos: rec.ts_nanos,
                        link_type,
                        orig_len: rec.orig_len,
                        data: rec.data,
                    })
                })
            }
            CaptureReader::Pcapng(r) => r.next(),
        }
    }
}

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OPB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const PCAPNG_BYTE_ORDER: u32 = 0x1A2B_3C4D;

/// pcapng (draft-ietf-opsawg-pcapng): section headers, interface
/// descriptions (link type, timestamp resolution) and packet blocks
/// (enhanced, simple, and the obsolete packet block). Other blocks are
/// skipped.
pub struct PcapngReader<'a> {
    rest: &'a [u8],
    big_endian: bool,
    /// Per interface of the current section: (link type, ticks per second).
    interfaces: Vec<(u32, u64)>,
    failed: bool,
}

impl<'a> PcapngReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, CaptureError> {
        if bytes.len() < 12 {
            return Err(CaptureError(
                "not a pcapng file: shorter than its header".into(),
            ));
        }
        Ok(PcapngReader {
            rest: bytes,
            big_endian: false,
            interfaces: Vec::new(),
            failed: false,
        })
    }

    fn u32_at(&self, b: &[u8], off: usize) -> u32 {
        let b: [u8; 4] = b[off..off + 4].try_into().unwrap();
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u16_at(&self, b: &[u8], off: usize) -> u16 {
        let b: [u8; 2] = b[off..off + 2].try_into().unwrap();
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn fail(&mut self, msg: String) -> Option<Result<Packet<'a>, CaptureError>> {
        self.failed = true;
        Some(Err(CaptureError(msg)))
    }

    /// Ticks per second from an `if_tsresol` option (code 9) in `opts`.
    fn tsresol(&self, mut opts: &[u8]) -> u64 {
        while opts.len() >= 4 {
            let code = self.u16_at(opts, 0);
            let len = self.u16_at(opts, 2) as usize;
            let padded = len.div_ceil(4) * 4;
            if code == 0 || opts.len() < 4 + padded {
                break;
            }
            if code == 9 && len >= 1 {
                let v = opts[4];
                return if v & 0x80 != 0 {
                    1u64.checked_shl(u32::from(v & 0x7f)).unwrap_or(1_000_000)
                } else {
                    10u64.checked_pow(u32::from(v)).unwrap_or(1_000_000)
                };
            }
            opts = &opts[4 + padded..];
        }
        1_000_000
    }
}

impl<'a> Iterator for PcapngReader<'a> {
    type Item = Result<Packet<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed || self.rest.is_empty() {
                return None;
            }
            if self.rest.len() < 12 {
                return self.fail("truncated pcapng block header".into());
            }
            let block_type = u32::from_le_bytes(self.rest[..4].try_into().unwrap());
            if block_type == PCAPNG_SHB {
                // The byte-order magic decides how this section is read.
                let magic = &self.rest[8..12];
                self.big_endian = match (
                    u32::from_le_bytes(magic.try_into().unwrap()),
                    u32::from_be_bytes(magic.try_into().unwrap()),
                ) {
                    (PCAPNG_BYTE_ORDER, _) => false,
                    (_, PCAPNG_BYTE_ORDER) => true,
                    _ => return self.fail("pcapng section with a bad byte-order magic".into()),
                };
                self.interfaces.clear();
            }
            let block_type = self.u32_at(self.rest, 0);
            let len = self.u32_at(self.rest, 4) as usize;
            if len < 12 || len % 4 != 0 || len > self.rest.len() {
                return self.fail(format!("pcapng block of bad length {len}"));
            }
            let block = &self.rest[..len];
            self.rest = &self.rest[len..];
            let body = &block[8..len - 4];
            match block_type {
                PCAPNG_IDB => {
                    if body.len() < 8 {
                        return self.fail("truncated pcapng interface block".into());
                    }
                    let link = u32::from(self.u16_at(body, 0));
                    let res = self.tsresol(&body[8..]);
                    self.interfaces.push((link, res));
                }
                PCAPNG_EPB | PCAPNG_OPB => {
                    if body.len() < 20 {
                        return self.fail("truncated pcapng packet block".into());
                    }
                    let iface = if block_type == PCAPNG_EPB {
                        self.u32_at(body, 0) as usize
                    } else {
                        self.u16_at(body, 0) as usize
                    };
                    let ts =
                        (u64::from(self.u32_at(body, 4)) << 32) | u64::from(self.u32_at(body, 8));
                    let cap = self.u32_at(body, 12) as usize;
                    let orig_len = self.u32_at(body, 16);
                    let Some(&(link_type, res)) = self.interfaces.get(iface) else {
                        return self.fail(format!("pcapng packet on undeclared interface {iface}"));
                    };
                    let Some(data) = body.get(20..20 + cap) else {
                        return self.fail("pcapng packet longer than its block".into());
                    };
                    let ts_nanos = (ts as u128 * 1_000_000_000 / res.max(1) as u128) as u64;
                    return Some(Ok(Packet {
                        ts_nanos,
                        link_type,
                        orig_len,
                        data,
                    }));
                }
                PCAPNG_SPB => {
                    if body.len() < 4 {
                        return self.fail("truncated pcapng simple packet block".into());
                    }
                    let Some(&(link_type, _)) = self.interfaces.first() else {
                        return self.fail("pcapng packet before any interface".into());
                    };
                    let orig_len = self.u32_at(body, 0);
                    let cap = (orig_len as usize).min(body.len() - 4);
                    return Some(Ok(Packet {
                        ts_nanos: 0,
                        link_type,
                        orig_len,
                        data: &body[4..4 + cap],
                    }));
                }
                _ => {}
            }
        }
    }
}
