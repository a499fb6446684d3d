//! UDP (`nf_conntrack_proto_udp.c`): no state but whether the flow has
//! become a stream.

use super::{Status, Timeouts};

/// Linux's `udp_packet`: a flow answered, and still active 2 s after it
/// began (`stream_after`), is a stream: the longer timeout, and ASSURED.
/// ASSURED is only ever set here, so once set the stream timestamp (on
/// another cache line) need not be read, and is not: `stream_after` is
/// called only before. Returns the timeout in seconds.
#[inline]
pub(super) fn packet(
    status: &mut Status,
    stream_after: impl FnOnce() -> u64,
    seen_reply: bool,
    now: u64,
    t: &Timeouts,
) -> u32 {
    if status.has(Status::ASSURED) {
        t.udp_stream
    } else if seen_reply && now > stream_after() {
        status.set(Status::ASSURED);
        t.udp_stream
    } else {
        t.udp
    }
}
