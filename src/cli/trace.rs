//! `ctfwd trace FILE`: runs a capture through the connection tracker, with
//! the capture's timestamps as the clock, and says what it made of each
//! packet. No EAL, no DPDK.

use std::io::{self, BufWriter, Write};

use crate::capture::CaptureReader;
use crate::conntrack::{
    proto_name, Config, CtInfo, Defrag, DefragConfig, DefragStats, FragHeader, HeldFragment,
    HelperConfig, Manip, Push, Shard, Verdict,
};
use crate::rules::{Prefix, RuleSet};
use crate::wire::{parse_frame, parse_ip, Fragment, Frame, IpPacket, LinkType};

/// Connections the trace's table holds (room for large captures).
const TRACE_MAX_CONNS: usize = 1 << 20;
/// Datagrams the trace reassembles at once.
const TRACE_MAX_DATAGRAMS: usize = 1 << 14;
/// Slots the garbage collector looks at per packet.
const GC_BUDGET: usize = 32;

const USAGE: &str = "usage: ctfwd trace [--json] [--checksum] [--liberal] [--no-loose] \
     [--rules=FILE [--inside=PREFIX,...]] FILE.pcap|FILE.pcapng";

struct TraceOptions {
    json: bool,
    /// Print the connection table (`conntrack -L` style) at the end.
    list: bool,
    file: String,
    cfg: Config,
    /// `--rules`: their NAT rules are applied.
    rules: Option<RuleSet>,
    /// `--inside`: a packet from these addresses came in on port 0, any
    /// other on port 1 (for the rules' `in-port`).
    inside: Vec<Prefix>,
}

impl TraceOptions {
    /// The port a packet from `t`'s source would have arrived on.
    fn in_port(&self, t: &crate::conntrack::Tuple) -> u16 {
        let inside =
            self.inside.is_empty() || self.inside.iter().any(|p| p.contains(t.l3(), &t.src));
        u16::from(!inside)
    }
}

fn parse(args: &[String]) -> Result<Option<TraceOptions>, String> {
    // Lazily faulted: a short capture should not pay for a large table.
    // Counters are kept: `--list` is for looking closely.
    let mut cfg = Config {
        max: TRACE_MAX_CONNS,
        prefault: false,
        acct: true,
        ..Config::default()
    };
    let mut json = false;
    let mut list = false;
    let mut file = None;
    let mut rules = None;
    let mut inside = Vec::new();
    for a in args {
        match a.as_str() {
            r if r.starts_with("--rules=") => {
                let path = &r["--rules=".len()..];
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("trace: --rules: {path}: {e}"))?;
                rules = Some(
                    RuleSet::parse(&text).map_err(|e| format!("trace: --rules: {path}: {e}"))?,
                );
            }
            i if i.starts_with("--inside=") => {
                for p in i["--inside=".len()..].split(',') {
                    inside.push(Prefix::parse(p).map_err(|e| format!("trace: --inside: {e}"))?);
                }
            }
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--list" => list = true,
            "--checksum" => cfg.checksum = true,
            "--liberal" => cfg.tcp.be_liberal = true,
            "--no-loose" => cfg.tcp.loose = false,
            "--ct-ftp-loose" => cfg.helpers.ftp_loose = true,
            h if h.starts_with("--ct-helper=") => {
                let loose = cfg.helpers.ftp_loose;
                cfg.helpers = HelperConfig::parse(&h["--ct-helper=".len()..])
                    .map_err(|e| format!("trace: --ct-helper: {e}"))?;
                cfg.helpers.ftp_loose = loose;
            }
            f if !f.starts_with('-') && file.is_none() => file = Some(f.to_string()),
            other => return Err(format!("trace: unexpected argument '{other}' ({USAGE})")),
        }
    }
    let file = file.ok_or_else(|| format!("trace: no capture file given ({USAGE})"))?;
    Ok(Some(TraceOptions {
        json,
        list,
        file,
        cfg,
        rules,
        inside,
    }))
}

/// Runs `ctfwd trace`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!(
                "{USAGE}\n\n\
                Feeds every packet, in file order and with its timestamp as the clock,\n\
                through conntrack ingress and confirm, and prints one line per packet:\n\
                index, tuple, ctinfo, TCP state, connection id, and why it is INVALID.\n\
                --json prints one JSON object per packet, then {{\"summary\": {{...}}}}.\n\
                --list prints the connection table at the end, as conntrack -L does\n\
                (with counters, as with nf_conntrack_acct=1).\n\
                --checksum verifies checksums (off: endpoint captures carry offloaded ones).\n\
                --liberal and --no-loose set Linux's tcp_be_liberal and tcp_loose=0.\n\
                --ct-helper=tftp:69,ftp:21,ftp:2121 says which helpers serve which ports\n\
                (default tftp:69,ftp:21; none turns them off). --ct-ftp-loose accepts FTP\n\
                announcements of a third address (FTP bounce), as Linux's loose=1.\n\
                --rules=FILE applies the NAT rules of a firewall rules file (--rules of\n\
                the forwarder) and prints each translated packet's new tuple after nat=;\n\
                --inside=PREFIX,... says which sources came in on port 0 (the others on\n\
                port 1; without it, all on port 0)."
            );
            return 0;
        }
        Err(e) => {
            eprintln!("ctfwd: error: {e}");
            return 2;
        }
    };
    let bytes = match std::fs::read(&opts.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ctfwd: error: {}: {e}", opts.file);
            return 2;
        }
    };
    let out = io::stdout();
    let mut out = BufWriter::new(out.lock());
    match trace(&bytes, &opts, &mut out) {
        Ok(()) => {}
        Err(TraceError::Capture(e)) => {
            let _ = out.flush();
            eprintln!("ctfwd: error: {}: {e}", opts.file);
            return 2;
        }
        // stdout closed (a pager quit): stop quietly.
        Err(TraceError::Io) => return 0,
    }
    let _ = out.flush();
    0
}

enum TraceError {
    Capture(String),
    Io,
}

impl From<io::Error> for TraceError {
    fn from(_: io::Error) -> Self {
        TraceError::Io
    }
}

fn trace(bytes: &[u8], opts: &TraceOptions, out: &mut impl Write) -> Result<(), TraceError> {
    let reader = CaptureReader::new(bytes).map_err(|e| TraceError::Capture(e.0))?;
    let mut shard = Shard::new(opts.cfg);
    // As Linux's conntrack sees them: fragments are reassembled first.
    let mut defrag = Defrag::new(DefragConfig {
        max_datagrams: TRACE_MAX_DATAGRAMS,
        max_held: TRACE_MAX_DATAGRAMS * DefragConfig::default().max_fragments,
        checksum: opts.cfg.checksum,
        ..DefragConfig::default()
    });
    let mut now = 0u64;
    for (index, pkt) in reader.enumerate() {
        let pkt = pkt.map_err(|e| TraceError::Capture(e.0))?;
        let link = LinkType::from_linktype(pkt.link_type).ok_or_else(|| {
            TraceError::Capture(format!("link type {} is not supported", pkt.link_type))
        })?;
        // Captures can step back in time; the tracker's clock does not.
        now = now.max(pkt.ts_nanos);
        shard.gc(now, GC_BUDGET);
        defrag.expire(now);
        let wire_len = (pkt.orig_len as usize).max(pkt.data.len());
        let line = match parse_frame(link, pkt.data, wire_len) {
            Err(e) => {
                shard.malformed();
                Line::bare(index, CtInfo::Invalid, e.reason())
            }
            Ok(Frame::NotIp(_)) => {
                shard.ignore();
                Line::bare(index, CtInfo::Untracked, "not-ip")
            }
            Ok(Frame::Ip(ip)) if ip.fragment != Fragment::Whole => {
                let l3_at = ip.header.as_ptr() as usize - pkt.data.as_ptr() as usize;
                let held = TraceFragment {
                    index,
                    bytes: pkt.data,
                };
                match defrag.push(&FragHeader::of(&ip), l3_at, held, now) {
                    Push::Held => Line::held(index),
                    Push::Refused(reason, _) => {
                        shard.malformed();
                        Line::bare(index, CtInfo::Invalid, reason)
                    }
                    Push::Complete => {
                        let dg = defrag.datagram();
                        let mut line = match parse_ip(dg, dg.len(), false) {
                            Ok(ip) => track(&mut shard, opts, ip, index, now),
                            Err(e) => {
                                shard.malformed();
                                Line::bare(index, CtInfo::Invalid, e.reason())
                            }
                        };
                        line.fragments = Some(defrag.take_fragments().map(|f| f.index).collect());
                        line
                    }
                }
            }
            Ok(Frame::Ip(ip)) => track(&mut shard, opts, ip, index, now),
        };
        line.write(out, opts.json)?;
    }
    if opts.list {
        out.write_all(shard.list(now).as_bytes())?;
        writeln!(
            out,
            "conntrack: {} flow entries have been shown.",
            shard.table().len()
        )?;
    }
    let stats = shard.stats();
    let e = shard.expectations().stats();
    let mut all = stats.fields().to_vec();
    all.extend([
        ("expect_new", e.expect_new),
        ("expect_create", e.expect_create),
        ("expect_delete", e.expect_delete),
        ("expect_full", e.expect_full),
    ]);
    all.extend(DefragStats::NAMES.into_iter().zip(defrag.stats().values()));
    if opts.json {
        let fields: Vec<String> = all.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        writeln!(
            out,
            "{{\"summary\":{{{},\"connections\":{}}}}}",
            fields.join(","),
            shard.table().len()
        )?;
    } else {
        // Fragment counters only when the capture had fragments.
        let frags = DefragStats::NAMES
            .into_iter()
            .zip(defrag.stats().values())
            .filter(|&(_, v)| v > 0);
        let fields: Vec<String> = stats
            .fields()
            .into_iter()
            .chain(frags)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(
            out,
            "summary: {} connections={}",
            fields.join(" "),
            shard.table().len()
        )?;
    }
    Ok(())
}

/// A fragment the trace holds: its index and its frame.
struct TraceFragment<'a> {
    index: usize,
    bytes: &'a [u8],
}

impl HeldFragment for TraceFragment<'_> {
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

/// Runs one whole packet (or reassembled datagram) through ingress, the
/// rules' NAT and egress.
fn track(shard: &mut Shard, opts: &TraceOptions, ip: IpPacket<'_>, index: usize, now: u64) -> Line {
    let c = shard.classify(ip, 0);
    let t = c.tuple();
    // A packet rejected before lookup has no complete tuple.
    let tuple = if c.needs_lookup() {
        format!("{} {}", proto_name(t.proto), t)
    } else {
        let l3 = t.l3();
        format!(
            "{} src={} dst={}",
            proto_name(t.proto),
            t.src.display(l3),
            t.dst.display(l3)
        )
    };
    let mut v: Verdict = shard.ingress(&c, now);
    let mut reason = v.reason;
    if let Some(rules) = &opts.rules {
        let in_port = opts.in_port(c.tuple());
        for manip in [Manip::Dst, Manip::Src] {
            let seen = shard.dnat_view(&v, c.tuple());
            let Some(m) = rules.nat(manip, in_port, &seen, v.ctinfo, v.status) else {
                continue;
            };
            if shard.nat(&mut v, manip, m.range).is_err() {
                if let Some(u) = v.unconfirmed.take() {
                    shard.discard(u);
                }
                let mut line = Line::bare(index, CtInfo::Invalid, "nat-exhausted");
                line.tuple = Some(tuple);
                return line;
            }
        }
    }
    // Egress: confirm, and let the connection's helper look.
    let conn = match shard.egress(&mut v, &c, now) {
        Ok(conn) => conn,
        Err(_) => {
            v.ctinfo = CtInfo::Invalid;
            reason = Some("insert-failed");
            None
        }
    };
    let master = conn.and_then(|r| shard.master(r)).map(|m| m.id);
    let nat = conn
        .filter(|_| !c.is_icmp_error())
        .and_then(|r| shard.nat_target(r, v.dir()))
        .filter(|to| to != c.tuple())
        .map(|to| format!("{} {to}", proto_name(to.proto)));
    let c = conn.and_then(|r| shard.conn(r));
    Line {
        nat,
        index,
        tuple: Some(tuple),
        ctinfo: v.ctinfo.name(),
        conn: c.map(|c| c.id),
        master,
        tcp_state: c.and_then(|c| c.tcp()).map(|t| t.state.name()),
        reason,
        fragments: None,
    }
}

struct Line {
    index: usize,
    tuple: Option<String>,
    /// A `CtInfo` name, or HELD for a fragment waiting for its datagram.
    ctinfo: &'static str,
    conn: Option<u32>,
    /// The master connection of a RELATED (expected) connection.
    master: Option<u32>,
    tcp_state: Option<&'static str>,
    reason: Option<&'static str>,
    /// For the fragment that completed a datagram: the indices of all its
    /// fragments, in arrival order.
    fragments: Option<Vec<usize>>,
    /// The tuple a translated packet leaves with.
    nat: Option<String>,
}

impl Line {
    fn bare(index: usize, ctinfo: CtInfo, reason: &'static str) -> Line {
        Line {
            index,
            tuple: None,
            ctinfo: ctinfo.name(),
            conn: None,
            master: None,
            tcp_state: None,
            reason: Some(reason),
            fragments: None,
            nat: None,
        }
    }

    /// A fragment held until its datagram is complete: no state yet.
    fn held(index: usize) -> Line {
        Line {
            reason: None,
            ctinfo: "HELD",
            ..Line::bare(index, CtInfo::Untracked, "")
        }
    }

    fn write(&self, out: &mut impl Write, json: bool) -> io::Result<()> {
        if json {
            let s =
                |v: Option<&str>| v.map_or("null".to_string(), |s| format!("\"{}\"", escape(s)));
            let n = |v: Option<u32>| v.map_or("null".to_string(), |c| c.to_string());
            let fragments = match &self.fragments {
                Some(f) => {
                    let list: Vec<String> = f.iter().map(usize::to_string).collect();
                    format!(",\"fragments\":[{}]", list.join(","))
                }
                None => String::new(),
            };
            writeln!(
                out,
                "{{\"index\":{},\"ctinfo\":\"{}\",\"conn\":{},\"master\":{},\"tcp_state\":{},\"reason\":{},\"tuple\":{},\"nat\":{}{fragments}}}",
                self.index,
                self.ctinfo,
                n(self.conn),
                n(self.master),
                s(self.tcp_state),
                s(self.reason),
                s(self.tuple.as_deref()),
                s(self.nat.as_deref()),
            )
        } else {
            write!(out, "{:>6} {:<18}", self.index, self.ctinfo)?;
            if let Some(c) = self.conn {
                write!(out, " conn={c}")?;
            }
            if let Some(m) = self.master {
                write!(out, " master={m}")?;
            }
            if let Some(t) = self.tcp_state {
                write!(out, " {t}")?;
            }
            if let Some(t) = &self.tuple {
                write!(out, " {t}")?;
            }
            if let Some(n) = &self.nat {
                write!(out, " nat={n}")?;
            }
            if let Some(r) = self.reason {
                write!(out, " reason={r}")?;
            }
            if let Some(f) = &self.fragments {
                let list: Vec<String> = f.iter().map(usize::to_string).collect();
                write!(out, " fragments={}", list.join(","))?;
            }
            writeln!(out)
        }
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}
