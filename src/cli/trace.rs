//! `ctfwd trace FILE`: runs a capture through the connection tracker, with
//! the capture's timestamps as the clock, and says what it made of each
//! packet. No EAL, no DPDK.

use std::io::{self, BufWriter, Write};

use crate::capture::CaptureReader;
use crate::conntrack::{proto_name, Config, CtInfo, HelperConfig, Shard, Verdict};
use crate::wire::{parse_frame, Frame, LinkType};

/// Connections the trace's table holds (room for large captures).
const TRACE_MAX_CONNS: usize = 1 << 20;
/// Slots the garbage collector looks at per packet.
const GC_BUDGET: usize = 32;

const USAGE: &str =
    "usage: ctfwd trace [--json] [--checksum] [--liberal] [--no-loose] FILE.pcap|FILE.pcapng";

struct TraceOptions {
    json: bool,
    /// Print the connection table (`conntrack -L` style) at the end.
    list: bool,
    file: String,
    cfg: Config,
}

fn parse(args: &[String]) -> Result<Option<TraceOptions>, String> {
    // Lazily faulted: a short capture should not pay for a large table.
    let mut cfg = Config {
        max: TRACE_MAX_CONNS,
        prefault: false,
        ..Config::default()
    };
    let mut json = false;
    let mut list = false;
    let mut file = None;
    for a in args {
        match a.as_str() {
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
                --list prints the connection table at the end, as conntrack -L does.\n\
                --checksum verifies checksums (off: endpoint captures carry offloaded ones).\n\
                --liberal and --no-loose set Linux's tcp_be_liberal and tcp_loose=0.\n\
                --ct-helper=tftp:69,ftp:21,ftp:2121 says which helpers serve which ports\n\
                (default tftp:69,ftp:21; none turns them off). --ct-ftp-loose accepts FTP\n\
                announcements of a third address (FTP bounce), as Linux's loose=1."
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
    let mut now = 0u64;
    for (index, pkt) in reader.enumerate() {
        let pkt = pkt.map_err(|e| TraceError::Capture(e.0))?;
        let link = LinkType::from_linktype(pkt.link_type).ok_or_else(|| {
            TraceError::Capture(format!("link type {} is not supported", pkt.link_type))
        })?;
        // Captures can step back in time; the tracker's clock does not.
        now = now.max(pkt.ts_nanos);
        shard.gc(now, GC_BUDGET);
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
            Ok(Frame::Ip(ip)) => {
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
                let c = conn.and_then(|r| shard.conn(r));
                Line {
                    index,
                    tuple: Some(tuple),
                    ctinfo: v.ctinfo,
                    conn: c.map(|c| c.id),
                    master,
                    tcp_state: c.and_then(|c| c.tcp()).map(|t| t.state.name()),
                    reason,
                }
            }
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
    if opts.json {
        let fields: Vec<String> = all.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        writeln!(
            out,
            "{{\"summary\":{{{},\"connections\":{}}}}}",
            fields.join(","),
            shard.table().len()
        )?;
    } else {
        let fields: Vec<String> = stats
            .fields()
            .iter()
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

struct Line {
    index: usize,
    tuple: Option<String>,
    ctinfo: CtInfo,
    conn: Option<u32>,
    /// The master connection of a RELATED (expected) connection.
    master: Option<u32>,
    tcp_state: Option<&'static str>,
    reason: Option<&'static str>,
}

impl Line {
    fn bare(index: usize, ctinfo: CtInfo, reason: &'static str) -> Line {
        Line {
            index,
            tuple: None,
            ctinfo,
            conn: None,
            master: None,
            tcp_state: None,
            reason: Some(reason),
        }
    }

    fn write(&self, out: &mut impl Write, json: bool) -> io::Result<()> {
        if json {
            let s =
                |v: Option<&str>| v.map_or("null".to_string(), |s| format!("\"{}\"", escape(s)));
            let n = |v: Option<u32>| v.map_or("null".to_string(), |c| c.to_string());
            writeln!(
                out,
                "{{\"index\":{},\"ctinfo\":\"{}\",\"conn\":{},\"master\":{},\"tcp_state\":{},\"reason\":{},\"tuple\":{}}}",
                self.index,
                self.ctinfo.name(),
                n(self.conn),
                n(self.master),
                s(self.tcp_state),
                s(self.reason),
                s(self.tuple.as_deref()),
            )
        } else {
            write!(out, "{:>6} {:<18}", self.index, self.ctinfo.name())?;
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
            if let Some(r) = self.reason {
                write!(out, " reason={r}")?;
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
