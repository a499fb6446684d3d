//! NAT's changes to a packet in its mbuf: addresses, ports and checksums
//! (`conntrack::rewrite`), ICMP errors (`conntrack::rewrite_icmp_error`),
//! TCP sequence adjustment (`conntrack::SeqAdj`) and an FTP announcement
//! rewritten to another length (`conntrack::PayloadEdit`).

use super::mbuf::PacketMut;
use super::stages::{Rewrite, RewriteExtra};
use crate::conntrack::{rewrite, rewrite_icmp_error, Dir, PayloadEdit, SeqAdj, Tuple};
use crate::wire::{
    parse_frame, Frame, IpPacketMut, Ipv4SegmentMut, LinkType, L3, PROTO_TCP, PROTO_UDP,
};

/// NAT's usual write, in line in the engine's loop: a whole IPv4 TCP or
/// UDP packet's addresses and ports (`Ipv4SegmentMut`), at `rw.l3` of a
/// frame's first segment `data`; whether it could, or `None` where the
/// packet is not such a one (then `rewrite_frame` takes it). Through the
/// general path, a call and a view that asks the family and protocol
/// again at every field, NAT's writes took 226 instructions a translated
/// packet; through this one 146 (`perf/bench-instructions`, mode snat).
#[inline(always)]
pub(super) fn rewrite_usual(data: &mut [u8], rw: &Rewrite) -> Option<bool> {
    let (PROTO_TCP | PROTO_UDP, None, L3::V4) = (rw.to.proto, rw.extra, rw.to.l3()) else {
        return None;
    };
    let ([_, src], [_, dst]) = (rw.to.src.words(), rw.to.dst.words());
    let buf = data.get_mut(usize::from(rw.l3)..)?;
    // A `match`, not `is_ok_and`: that one's closure was left out of
    // line, with the view passed through memory.
    match Ipv4SegmentMut::new(buf, usize::from(rw.l4), rw.to.proto) {
        Ok(mut ip) => ip.set_endpoints(src as u32, dst as u32, rw.to.sport, rw.to.dport),
        Err(_) => return Some(false),
    }
    Some(true)
}

/// Rewrites the IP packet at `rw.l3` of a frame's first segment `data`
/// (of `wire_len` bytes in all, if given; a fragment's IP header is found
/// by parsing), with what else it needs (`extra`); whether it could. Out
/// of line: the usual packet takes `rewrite_usual`.
#[inline(never)]
pub(super) fn rewrite_frame(
    data: &mut [u8],
    wire_len: Option<usize>,
    rw: &Rewrite,
    extra: Option<&RewriteExtra>,
) -> bool {
    let from_chunk = wire_len.is_some();
    let (l3, wire_len) = match wire_len {
        Some(len) => (usize::from(rw.l3), len),
        None => match parse_frame(LinkType::Ethernet, data, data.len()) {
            Ok(Frame::Ip(ip)) => (
                ip.header.as_ptr() as usize - data.as_ptr() as usize,
                data.len(),
            ),
            _ => return false,
        },
    };
    let Some(buf) = data.get_mut(l3..) else {
        return false;
    };
    let extra = extra.copied().unwrap_or_default();
    if let Some(this) = extra.this {
        // An ICMP error. The quoted packet is rewritten and the message's
        // checksum computed afresh: all of it must be in this segment.
        return buf.len() >= wire_len - l3
            && rewrite_icmp_error(buf, wire_len - l3, &this, &rw.to).is_ok();
    }
    // Each view is used where it is built: one variable taking either
    // would be built in memory byte by byte and moved as words, a
    // store-forwarding stall on every translated packet.
    if from_chunk {
        // Whole, and parsed by `classify`: its layout is known.
        IpPacketMut::with_layout(buf, rw.to.l3(), rw.to.proto, usize::from(rw.l4))
            .is_ok_and(|mut ip| translate(&mut ip, &rw.to, extra.seqadj, true))
    } else {
        IpPacketMut::spread(buf, wire_len - l3)
            .is_ok_and(|mut ip| translate(&mut ip, &rw.to, extra.seqadj, false))
    }
}

/// Rewrites the view's addresses and ports to `to`'s (and its sequence
/// numbers if `seqadj` says); `whole`: a packet, not a fragment.
#[inline(always)]
fn translate(
    ip: &mut IpPacketMut<'_>,
    to: &Tuple,
    seqadj: Option<(Dir, [SeqAdj; 2])>,
    whole: bool,
) -> bool {
    // A whole packet whose transport checksum is not in this segment
    // cannot be changed and stay right; a later fragment has no transport
    // header (its datagram's is in the first).
    if !(ip.rewritable() || !whole && !ip.carries_ports()) {
        return false;
    }
    if rewrite(ip, to).is_err() {
        return false;
    }
    match seqadj {
        Some((dir, adj)) => shift(ip, dir, &adj),
        None => true,
    }
}

/// `nf_ct_seq_adjust`: the segment's sequence number shifted by its own
/// direction's changes, its acknowledgement and SACK edges shifted back by
/// the other's.
fn shift(ip: &mut IpPacketMut<'_>, dir: Dir, adj: &[SeqAdj; 2]) -> bool {
    let Some((seq, ack)) = ip.tcp_seq_ack() else {
        return false;
    };
    let (this, other) = (adj[dir.index()], adj[dir.other().index()]);
    ip.shift_tcp(this.seq(seq), other.unshift_ack(ack), |edge| {
        other.unshift_ack(edge)
    })
    .is_ok()
}

/// Replaces `edit.len` bytes at `edit.at` of the TCP payload of the packet
/// whose IP header is at `l3` with `edit.text`, moving what follows and
/// resizing the mbuf; sets the IP length and computes the IPv4 header and
/// TCP checksums afresh. Whether it could (one segment, with room).
pub(super) fn apply_edit(p: &mut PacketMut<'_>, l3: usize, edit: &PayloadEdit) -> bool {
    let data = p.data_mut();
    let Some(ip) = data.get(l3..) else {
        return false;
    };
    let (l3kind, ip_len) = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => (L3::V4, usize::from(u16::from_be_bytes([ip[2], ip[3]]))),
        Some(6) if ip.len() >= 40 => (L3::V6, 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))),
        _ => return false,
    };
    let Ok(view) = IpPacketMut::spread(&mut data[l3..], ip_len) else {
        return false;
    };
    let Some(payload) = view.tcp_payload_offset() else {
        return false;
    };
    let (at, old_end) = (
        payload + usize::from(edit.at),
        payload + usize::from(edit.at + edit.len),
    );
    let new_len = (ip_len as isize + edit.growth() as isize) as usize;
    if old_end > ip_len || l3 + ip_len > data.len() || new_len > usize::from(u16::MAX) {
        return false;
    }
    let frame_len = l3 + new_len;
    if frame_len > data.len() && !p.resize(frame_len) {
        return false;
    }
    let data = p.data_mut();
    let ip = &mut data[l3..];
    ip.copy_within(old_end..ip_len, at + edit.text.len());
    ip[at..at + edit.text.len()].copy_from_slice(&edit.text);
    match l3kind {
        L3::V4 => ip[2..4].copy_from_slice(&(new_len as u16).to_be_bytes()),
        L3::V6 => ip[4..6].copy_from_slice(&((new_len - 40) as u16).to_be_bytes()),
    }
    if frame_len < data.len() && !p.resize(frame_len) {
        return false;
    }
    let data = p.data_mut();
    IpPacketMut::new(&mut data[l3..l3 + new_len]).is_ok_and(|mut ip| {
        ip.fill_checksums();
        true
    })
}
