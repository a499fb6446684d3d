//! Writes sample traffic as pcap files for `net_pcap` ports: the frames that
//! enter port 0 (inside hosts) and port 1 (outside hosts).
//!
//! usage: ctfwd-gen [--flows N] [--requests N] INSIDE.pcap OUTSIDE.pcap
//!        ctfwd-gen --bulk N INSIDE.pcap OUTSIDE.pcap   (N flows, 64-byte frames)

use std::fs::File;
use std::io::BufWriter;
use std::process::exit;

use ctfwd::capture::PcapWriter;
use ctfwd::synth::{bulk_flows, sample_conversations};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flows = 16u16;
    let mut requests = 4u16;
    let mut bulk: Option<u32> = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u16 {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| fail(&format!("{name} needs a number from 1 to 65535")))
        };
        match a.as_str() {
            "--flows" => flows = num("--flows"),
            "--requests" => requests = num("--requests"),
            "--bulk" => {
                bulk = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0 && n <= 1 << 24)
                        .unwrap_or_else(|| fail("--bulk needs a number from 1 to 16777216")),
                )
            }
            "-h" | "--help" => {
                println!("usage: ctfwd-gen [--flows N] [--requests N] INSIDE.pcap OUTSIDE.pcap");
                return;
            }
            f if !f.starts_with('-') => files.push(f.to_string()),
            other => fail(&format!("unknown option {other}")),
        }
    }
    let [inside_path, outside_path] = files.as_slice() else {
        fail("give two output files: INSIDE.pcap OUTSIDE.pcap");
    };
    let (inside, outside) = match bulk {
        Some(n) => bulk_flows(n),
        None => sample_conversations(flows, requests),
    };
    for (path, frames) in [(inside_path, &inside), (outside_path, &outside)] {
        let file = File::create(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
        let mut w =
            PcapWriter::new(BufWriter::new(file)).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
        for (i, f) in frames.iter().enumerate() {
            // One packet per millisecond, from an arbitrary fixed epoch.
            let ts = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
            w.write(ts, f)
                .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
        }
        w.finish().unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    }
    println!(
        "wrote {} frames to {inside_path} and {} to {outside_path} ({} UDP flows)",
        inside.len(),
        outside.len(),
        bulk.map_or(u32::from(flows), |n| n)
    );
}

fn fail(msg: &str) -> ! {
    eprintln!("ctfwd-gen: error: {msg}");
    exit(2)
}
