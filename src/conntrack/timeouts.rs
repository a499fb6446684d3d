//! Timeouts, in seconds, with Linux's defaults
//! (`nf_conntrack_{tcp,udp,icmp,generic}_timeout_*`).

use super::tcp::TcpState;

/// TCP timeouts per state, plus the two Linux applies on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimeouts {
    pub syn_sent: u32,
    pub syn_recv: u32,
    pub established: u32,
    pub fin_wait: u32,
    pub close_wait: u32,
    pub last_ack: u32,
    pub time_wait: u32,
    pub close: u32,
    pub syn_sent2: u32,
    /// After `max_retrans` retransmissions without an acceptable ACK.
    pub retrans: u32,
    /// While data is unacknowledged.
    pub unacknowledged: u32,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts {
            syn_sent: 120,
            syn_recv: 60,
            established: 5 * 24 * 3600,
            fin_wait: 120,
            close_wait: 60,
            last_ack: 30,
            time_wait: 120,
            close: 10,
            syn_sent2: 120,
            retrans: 300,
            unacknowledged: 300,
        }
    }
}

impl TcpTimeouts {
    pub fn get(&self, s: TcpState) -> u32 {
        match s {
            // NONE is only passed through; it times out like SYN_SENT.
            TcpState::None | TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::Established => self.established,
            TcpState::FinWait => self.fin_wait,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::SynSent2 => self.syn_sent2,
        }
    }
}

impl TcpTimeouts {
    /// The timeout named `state` (`established`, `syn_sent`, ..., with `-`
    /// or `_`), as in `--ct-timeout-tcp-STATE`.
    pub fn get_mut(&mut self, state: &str) -> Option<&mut u32> {
        Some(match state.replace('-', "_").as_str() {
            "syn_sent" => &mut self.syn_sent,
            "syn_recv" => &mut self.syn_recv,
            "established" => &mut self.established,
            "fin_wait" => &mut self.fin_wait,
            "close_wait" => &mut self.close_wait,
            "last_ack" => &mut self.last_ack,
            "time_wait" => &mut self.time_wait,
            "close" => &mut self.close,
            "syn_sent2" => &mut self.syn_sent2,
            "retrans" => &mut self.retrans,
            "unacknowledged" | "unack" => &mut self.unacknowledged,
            _ => return None,
        })
    }
}

/// Timeouts of the trackers other than TCP's (those are in `TcpConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// UDP before a reply, or with replies within 2 s of the first packet.
    pub udp: u32,
    /// UDP once it is a stream.
    pub udp_stream: u32,
    pub icmp: u32,
    pub icmpv6: u32,
    pub generic: u32,
}

impl Timeouts {
    /// The timeout named `name` (`udp`, `udp-stream`, `icmp`, `icmpv6`,
    /// `generic`), as in `--ct-timeout-NAME`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "udp" => &mut self.udp,
            "udp-stream" | "udp_stream" => &mut self.udp_stream,
            "icmp" => &mut self.icmp,
            "icmpv6" => &mut self.icmpv6,
            "generic" => &mut self.generic,
            _ => return None,
        })
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            icmpv6: 30,
            generic: 600,
        }
    }
}
