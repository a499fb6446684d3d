//! Writes traffic as pcap files for `net_pcap` ports: the frames that
//! enter port 0 (inside hosts) and port 1 (outside hosts).
//!
//! usage: ctfwd-gen [--flows N] [--requests N] INSIDE.pcap OUTSIDE.pcap
//!        ctfwd-gen --bulk N [--tcp] INSIDE.pcap OUTSIDE.pcap
//!                                    (N UDP flows, or TCP ones as pktgen sends; 64-byte frames)
//!        ctfwd-gen --bulk N --snat-rules RULES INSIDE.pcap OUTSIDE.pcap
//!                                    (the same through SNAT; see bulk_nat.rs)
//!        ctfwd-gen --flood KIND [--established N] [--rounds N] [--per N] [--tail N]
//!                  INSIDE.pcap OUTSIDE.pcap              (see flood.rs)
//!        ctfwd-gen --churn inside|outside [--flows N] [--lag N] --seconds S FILE
//!                                                        (one endless stream; see churn.rs)
//!        ctfwd-gen --demo INSIDE.pcap OUTSIDE.pcap WIRE.pcap RULES
//!                                                        (the demo's traffic; see demo.rs)
//!        with --flows or --bulk: [--queues Q [--missteer PCT | --unsteered]]
//!                                    (one capture per RX queue; see split.rs)

mod bulk_nat;
mod churn;
mod demo;
mod flood;
mod split;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::exit;

use ctfwd::capture::PcapWriter;
use ctfwd::synth::{bulk_flows, bulk_tcp_flows, sample_conversations};

const USAGE: &str = "usage: ctfwd-gen [--flows N] [--requests N] INSIDE.pcap OUTSIDE.pcap
       ctfwd-gen --bulk N [--tcp | --snat-rules RULES] INSIDE.pcap OUTSIDE.pcap
       ctfwd-gen --flood none|syn|udp|expect|frag [--established N] [--rounds N] [--per N]
                 [--tail N] INSIDE.pcap OUTSIDE.pcap
       ctfwd-gen --churn inside|outside [--flows N] [--lag N] --seconds S FILE
       ctfwd-gen --demo INSIDE.pcap OUTSIDE.pcap WIRE.pcap RULES
       with --flows or --bulk: [--queues Q [--missteer PCT | --unsteered]]";

/// What to write.
enum Job {
    Sample,
    Bulk(u32),
    Flood(flood::Kind),
    Churn(churn::Side),
    Demo,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut job = Job::Sample;
    let mut flows: Option<u64> = None;
    let mut requests = 4u16;
    let mut sc = flood::Scenario {
        kind: flood::Kind::None,
        established: 1000,
        rounds: 100,
        per: 10,
        tail: 1000,
    };
    let mut lag = 2000u64;
    let mut snat_rules: Option<String> = None;
    let mut tcp = false;
    let mut seconds: Option<f64> = None;
    let mut split = split::Split {
        queues: 1,
        missteer: 0,
        unsteered: false,
    };
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        let mut num = |name: &str, max: u64| -> u64 {
            value(name)
                .parse()
                .ok()
                .filter(|&n| n > 0 && n <= max)
                .unwrap_or_else(|| fail(&format!("{name} needs a number from 1 to {max}")))
        };
        match a.as_str() {
            "--flows" => flows = Some(num("--flows", 1 << 32)),
            "--requests" => requests = num("--requests", 65535) as u16,
            "--bulk" => job = Job::Bulk(num("--bulk", 1 << 24) as u32),
            "--established" => sc.established = num("--established", 1 << 20) as u32,
            "--rounds" => sc.rounds = num("--rounds", 1 << 20) as u32,
            "--per" => sc.per = num("--per", 1000) as u32,
            "--tail" => sc.tail = num("--tail", 1 << 20) as u32,
            "--lag" => lag = num("--lag", 1 << 30),
            "--snat-rules" => snat_rules = Some(value("--snat-rules")),
            "--tcp" => tcp = true,
            "--queues" => split.queues = num("--queues", 64) as usize,
            "--missteer" => split.missteer = num("--missteer", 100) as u32,
            "--unsteered" => split.unsteered = true,
            "--demo" => job = Job::Demo,
            "--seconds" => {
                seconds = Some(
                    value("--seconds")
                        .parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0)
                        .unwrap_or_else(|| fail("--seconds needs a positive number")),
                )
            }
            "--flood" => {
                let k = value("--flood");
                job = Job::Flood(flood::Kind::parse(&k).unwrap_or_else(|| {
                    fail(&format!(
                        "--flood: '{k}' is not none, syn, udp, expect or frag"
                    ))
                }))
            }
            "--churn" => {
                job = Job::Churn(match value("--churn").as_str() {
                    "inside" => churn::Side::Inside,
                    "outside" => churn::Side::Outside,
                    other => fail(&format!("--churn: '{other}' is not inside or outside")),
                })
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            f if !f.starts_with('-') => files.push(f.to_string()),
            other => fail(&format!("unknown option {other}")),
        }
    }
    if tcp && (snat_rules.is_some() || !matches!(job, Job::Bulk(_))) {
        fail("--tcp goes with --bulk, without --snat-rules");
    }
    match job {
        Job::Demo => {
            let [inside, outside, wire, rules] = files.as_slice() else {
                fail("--demo writes INSIDE.pcap OUTSIDE.pcap WIRE.pcap RULES");
            };
            let (a, b, w) = demo::traffic();
            for (path, frames) in [(inside, &a), (outside, &b), (wire, &w)] {
                let mut out = writer(path);
                for (i, f) in frames.iter().enumerate() {
                    out.write(1_700_000_000_000_000_000 + i as u64 * 1_000_000, f)
                        .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
                }
                out.finish()
                    .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
            }
            std::fs::write(rules, demo::RULES).unwrap_or_else(|e| fail(&format!("{rules}: {e}")));
        }
        Job::Churn(side) => {
            let [path] = files.as_slice() else {
                fail("--churn writes one file (a FIFO)");
            };
            let secs = seconds.unwrap_or_else(|| fail("--churn needs --seconds"));
            let mut w = writer(path);
            let n = churn::write(side, flows.unwrap_or(1 << 20), lag, secs, &mut w)
                .and_then(|n| w.finish().map(|_| n))
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::BrokenPipe => Ok(0),
                    _ => Err(e),
                })
                .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
            eprintln!("ctfwd-gen: wrote {n} frames to {path}");
        }
        Job::Flood(kind) => {
            let [inside, outside] = files.as_slice() else {
                fail("give two output files: INSIDE.pcap OUTSIDE.pcap");
            };
            sc.kind = kind;
            let (mut a, mut b) = (writer(inside), writer(outside));
            let w = flood::write(&sc, &mut a, &mut b)
                .and_then(|w| a.finish().and(b.finish()).map(|_| w))
                .unwrap_or_else(|e| fail(&format!("{inside}, {outside}: {e}")));
            println!(
                "wrote {} frames to each of {inside} and {outside}: {} established TCP flows, \
                 {} flood frames, {} fresh UDP conversations",
                w.frames_per_port, sc.established, w.flood, sc.tail
            );
        }
        Job::Sample | Job::Bulk(_) => {
            let [inside_path, outside_path] = files.as_slice() else {
                fail("give two output files: INSIDE.pcap OUTSIDE.pcap");
            };
            let sample_flows = flows.map_or(16, |f| f.min(65535) as u16);
            let (inside, outside) = match (&job, &snat_rules) {
                (Job::Bulk(n), None) if tcp => bulk_tcp_flows(*n),
                (Job::Bulk(n), Some(path)) => {
                    if *n > bulk_nat::MAX_FLOWS {
                        fail(&format!(
                            "--snat-rules takes at most {} flows",
                            bulk_nat::MAX_FLOWS
                        ));
                    }
                    let (a, b, rules) = bulk_nat::flows(*n);
                    std::fs::write(path, rules).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
                    (a, b)
                }
                (Job::Bulk(n), None) => bulk_flows(*n),
                _ => sample_conversations(sample_flows, requests),
            };
            for (path, frames) in [(inside_path, &inside), (outside_path, &outside)] {
                if split.queues > 1 {
                    let queues = split.queues_of(frames);
                    for k in 0..split.queues {
                        let mine = frames.iter().zip(&queues).filter(|(_, &q)| q == k);
                        write_frames(&split::Split::path(path, k), mine.map(|(f, _)| f));
                    }
                } else {
                    write_frames(path, frames.iter());
                }
            }
            let n = match job {
                Job::Bulk(n) => n,
                _ => u32::from(sample_flows),
            };
            println!(
                "wrote {} frames to {inside_path} and {} to {outside_path} ({n} {} flows)",
                inside.len(),
                outside.len(),
                if tcp { "TCP" } else { "UDP" },
            );
        }
    }
}

/// Writes `frames` to `path`, one per millisecond from a fixed epoch.
fn write_frames<'a>(path: &str, frames: impl Iterator<Item = &'a Vec<u8>>) {
    let mut w = writer(path);
    for (i, f) in frames.enumerate() {
        let ts = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
        w.write(ts, f)
            .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    }
    w.finish().unwrap_or_else(|e| fail(&format!("{path}: {e}")));
}

fn writer(path: &str) -> PcapWriter<impl Write> {
    let file = File::create(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    PcapWriter::new(BufWriter::with_capacity(1 << 16, file))
        .unwrap_or_else(|e| fail(&format!("{path}: {e}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("ctfwd-gen: error: {msg}");
    exit(2)
}
