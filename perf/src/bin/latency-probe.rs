//! A two-port probe for a bump-in-the-wire forwarder: N UDP flows, each
//! original from port 0 (the inside) and its exact reply from port 1,
//! paced by the TSC; every frame carries its send time, so what comes
//! back gives the latency of each packet, kept in an hdrhistogram. Either
//! one trial at a rate, or an RFC 2544 search (section 26.1) for the
//! highest rate with no loss, then the latency at that rate (26.2).
//!
//! It exists because pktgen-dpdk 23.06, which users run on NICs, cannot
//! do either over net_memif on one machine: its rate setting paces by link
//! speed, which memif does not report (`perf/bench-pktgen` measures this),
//! and its latency page keeps min/avg/max only (`pktgen-latency.c`).
//!
//! usage: latency-probe EAL-ARGS -- [--flows N] [--seconds S]
//!        [--rate PPS | --search STEPS [--retries K]]
//! `--retries` runs a search trial that lost frames up to K times more
//! before its rate counts as too high: a departure from RFC 2544 for
//! machines where the probe shares a CPU and a scheduler tick can cost it
//! frames no forwarder lost.
//! Frames are 60 bytes (64 on the wire); a frame lost or refused by the
//! forwarder's receive ring counts as lost.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ctfwd::dataplane::cpu::tsc;
use ctfwd::dataplane::{available_ports, Burst, Eal, Mempool, Port, PortConfig, PortInfo};
use ctfwd::synth::udp_frame;
use hdrhistogram::Histogram;

const BURST: usize = 32;
const FRAME: usize = 60;
/// Where the probe's mark, flow and send time sit: the UDP payload.
const MARK_AT: usize = 42;
const MARK: [u8; 4] = *b"ctpb";
/// Time after a trial for frames still in flight to arrive.
const DRAIN: Duration = Duration::from_millis(50);

struct Args {
    flows: u32,
    seconds: f64,
    rate: Option<f64>,
    search: Option<u32>,
    /// Times a search trial that lost frames is run again before the rate
    /// counts as too high.
    retries: u32,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        flows: 1000,
        seconds: 2.0,
        rate: None,
        search: None,
        retries: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |v: &String| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--flows" => {
                let v = value()?;
                a.flows = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(v))?;
            }
            "--seconds" => {
                let v = value()?;
                a.seconds = v.parse().ok().filter(|&s| s > 0.0).ok_or_else(|| bad(v))?;
            }
            "--rate" => {
                let v = value()?;
                a.rate = Some(v.parse().ok().filter(|&r| r > 0.0).ok_or_else(|| bad(v))?);
            }
            "--search" => {
                let v = value()?;
                a.search = Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(v))?);
            }
            "--retries" => {
                let v = value()?;
                a.retries = v.parse().map_err(|_| bad(v))?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// Each flow's original and reply frames, ready to copy.
struct Frames {
    orig: Vec<[u8; FRAME]>,
    reply: Vec<[u8; FRAME]>,
}

impl Frames {
    /// Flow i: 198.18.x.y (from i) port 1024 + i / 65536 to 198.19.0.1
    /// port 9, and back. The UDP checksum is left 0 (none, RFC 768), so
    /// that writing the send time does not make it wrong.
    fn new(flows: u32) -> Frames {
        let make = |i: u32, reply: bool| {
            let client = format!(
                "198.18.{}.{}:{}",
                (i >> 8) & 0xff,
                i & 0xff,
                1024 + (i >> 16)
            );
            let server = "198.19.0.1:9".to_string();
            let (src, dst) = if reply {
                (server, client)
            } else {
                (client, server)
            };
            let f = udp_frame(src.parse().unwrap(), dst.parse().unwrap(), &[0; 16]);
            let mut out = [0u8; FRAME];
            out[..f.len()].copy_from_slice(&f);
            out[40..42].fill(0);
            out
        };
        Frames {
            orig: (0..flows).map(|i| make(i, false)).collect(),
            reply: (0..flows).map(|i| make(i, true)).collect(),
        }
    }
}

/// What one trial saw.
struct Trial {
    offered: u64,
    received: u64,
    /// Latency in nanoseconds.
    latency: Histogram<u64>,
}

impl Trial {
    fn lost(&self) -> u64 {
        self.offered.saturating_sub(self.received)
    }

    fn line(&self, rate: Option<f64>, secs: f64) -> String {
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        format!(
            "trial rate={} offered={} received={} lost={} rx-pps={:.0} latency-us p50={:.1} p90={:.1} p99={:.1} p99.9={:.1} max={:.1}",
            rate.map_or("full".to_string(), |r| format!("{r:.0}")),
            self.offered,
            self.received,
            self.lost(),
            self.received as f64 / secs,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            self.latency.max() as f64 / 1000.0,
        )
    }
}

struct Probe<'eal> {
    ports: [Port<'eal>; 2],
    pool: Arc<Mempool>,
    frames: Frames,
    hz: u64,
    /// The next flow to send, per side.
    next_flow: [u32; 2],
}

impl Probe<'_> {
    /// Sends one burst from `side` (0: originals, 1: replies) stamped with
    /// `now`, of the flows next in turn; how many frames the port took
    /// (the rest is freed).
    fn send(&mut self, side: usize, n: usize, now: u64) -> usize {
        let mut burst = Burst::default();
        if !burst.alloc(&self.pool, n) {
            return 0;
        }
        let flows = self.frames.orig.len() as u32;
        for mut p in burst.packets_mut() {
            let flow = self.next_flow[side];
            self.next_flow[side] = (flow + 1) % flows;
            let frame = if side == 0 {
                &self.frames.orig[flow as usize]
            } else {
                &self.frames.reply[flow as usize]
            };
            if !p.resize(FRAME) {
                continue;
            }
            let data = p.data_mut();
            data.copy_from_slice(frame);
            data[MARK_AT..MARK_AT + 4].copy_from_slice(&MARK);
            data[MARK_AT + 4..MARK_AT + 8].copy_from_slice(&flow.to_le_bytes());
            data[MARK_AT + 8..MARK_AT + 16].copy_from_slice(&now.to_le_bytes());
        }
        let sent = burst.tx(self.ports[side].id(), 0).0;
        // The port takes a prefix of the burst: the flows it refused go
        // first next time.
        let refused = (n - sent) as u32 % flows;
        self.next_flow[side] = (self.next_flow[side] + flows - refused) % flows;
        sent
    }

    /// Receives what both ports have; records the latency of each of the
    /// probe's frames; returns how many it saw.
    fn receive(&mut self, latency: &mut Histogram<u64>) -> u64 {
        let mut seen = 0;
        for port in &self.ports {
            let mut burst = Burst::default();
            let n = burst.rx(port.id(), 0, BURST as u16);
            let now = tsc();
            for i in 0..n {
                let (data, _, _, _) = burst.packet(i);
                if data.len() < MARK_AT + 16 || data[MARK_AT..MARK_AT + 4] != MARK {
                    continue;
                }
                let sent = u64::from_le_bytes(data[MARK_AT + 8..MARK_AT + 16].try_into().unwrap());
                let ns =
                    (now.saturating_sub(sent) as u128 * 1_000_000_000 / self.hz as u128) as u64;
                latency.saturating_record(ns.max(1));
                seen += 1;
            }
            // Dropping the burst frees what it received.
        }
        seen
    }

    /// Offers `rate` frames a second (None: as fast as the ports take
    /// them) for `secs`, alternating a burst of originals and a burst of
    /// replies, then waits `DRAIN` for stragglers.
    fn trial(&mut self, rate: Option<f64>, secs: f64) -> Trial {
        let mut t = Trial {
            offered: 0,
            received: 0,
            latency: Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds"),
        };
        let hz = self.hz as f64;
        let interval = rate.map(|r| BURST as f64 * hz / r);
        let start = tsc();
        let end = start + (secs * hz) as u64;
        let mut next = start as f64;
        let mut side = 0;
        loop {
            let now = tsc();
            if now >= end {
                break;
            }
            if interval.is_none_or(|_| now as f64 >= next) {
                // With no rate, refused frames were never offered: the
                // port (the forwarder's ring) sets the pace.
                let sent = self.send(side, BURST, now);
                t.offered += if rate.is_some() { BURST } else { sent } as u64;
                side ^= 1;
                if let Some(iv) = interval {
                    // Late by more than a millisecond (the probe was
                    // descheduled): restart the clock rather than burst.
                    next = (next + iv).max(now as f64 - hz / 1000.0);
                }
            }
            t.received += self.receive(&mut t.latency);
        }
        let drain_end = tsc() + (DRAIN.as_secs_f64() * hz) as u64;
        while tsc() < drain_end {
            t.received += self.receive(&mut t.latency);
        }
        t
    }

    /// Sends every flow's original once, as fast as the port takes them,
    /// so that the forwarder holds each connection before replies come.
    /// Fails if the port stops taking frames (the forwarder went away).
    fn open_flows(&mut self) -> Result<(), String> {
        let mut scratch = Histogram::new(3).expect("valid precision");
        let flows = self.frames.orig.len();
        let mut left = flows;
        self.next_flow = [0, 0];
        let give_up = tsc() + 10 * self.hz;
        while left > 0 {
            if tsc() > give_up {
                return Err(format!(
                    "port 0 took {} of {flows} frames in 10 s",
                    flows - left
                ));
            }
            let n = left.min(BURST);
            left -= self.send(0, n, tsc());
            self.receive(&mut scratch);
        }
        let end = tsc() + (DRAIN.as_secs_f64() * self.hz as f64) as u64;
        while tsc() < end {
            self.receive(&mut scratch);
        }
        self.next_flow = [0, 0];
        Ok(())
    }
}

fn start_ports<'e>(eal: &'e Eal, pool: &Arc<Mempool>) -> Result<[Port<'e>; 2], String> {
    let ids = available_ports(eal);
    if ids.len() != 2 {
        return Err(format!("needs exactly 2 ports, has {}", ids.len()));
    }
    let cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 1024,
        tx_desc: 1024,
        rss_hf: 0,
        promiscuous: true,
        rx_checksum: false,
        mbuf_size: 2176,
        max_pkt_len: None,
    };
    let mut ports = Vec::new();
    for id in ids {
        let info = PortInfo::query(eal, id).map_err(|e| e.to_string())?;
        ports.push(Port::start(eal, info, &cfg, Arc::clone(pool)).map_err(|e| e.to_string())?);
    }
    let ports: [Port<'e>; 2] = ports.try_into().ok().expect("two ports");
    // A memif link comes up when its peer connects.
    for _ in 0..100 {
        if ports.iter().all(|p| p.link().0) {
            return Ok(ports);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("links not up after 10 s".into())
}

fn run(eal_args: &[String], args: &Args) -> Result<(), String> {
    let eal = Eal::init(eal_args).map_err(|e| e.to_string())?;
    let pool =
        Arc::new(Mempool::new(&eal, "probe_pool", 16383, 256, 2176, 0).map_err(|e| e.to_string())?);
    let ports = start_ports(&eal, &pool)?;
    let mut probe = Probe {
        ports,
        pool,
        frames: Frames::new(args.flows),
        hz: eal.tsc_hz(),
        next_flow: [0, 0],
    };
    probe.open_flows()?;
    println!(
        "{} UDP flows each way, {FRAME}-byte frames, {} s trials",
        args.flows, args.seconds
    );
    let Some(steps) = args.search else {
        let t = probe.trial(args.rate, args.seconds);
        println!("{}", t.line(args.rate, args.seconds));
        return Ok(());
    };
    // RFC 2544 26.1: the highest offered rate with no frame lost, by
    // halving between the full rate's received rate and zero.
    let full = probe.trial(None, args.seconds);
    println!("{}", full.line(None, args.seconds));
    let (mut lo, mut hi) = (0.0, full.received as f64 / args.seconds);
    let mut best: Option<(f64, Trial)> = None;
    for _ in 0..steps {
        let mid = (lo + hi) / 2.0;
        let mut t = probe.trial(Some(mid), args.seconds);
        println!("{}", t.line(Some(mid), args.seconds));
        for _ in 0..args.retries {
            if t.lost() == 0 {
                break;
            }
            t = probe.trial(Some(mid), args.seconds);
            println!("{} (again)", t.line(Some(mid), args.seconds));
        }
        if t.lost() == 0 {
            lo = mid;
            best = Some((mid, t));
        } else {
            hi = mid;
        }
    }
    match best {
        // 26.2: latency at the throughput rate; the trial that found it
        // measured it.
        Some((rate, t)) => println!("zero-loss {}", t.line(Some(rate), args.seconds)),
        None => println!("zero-loss rate not found in {steps} steps"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let all: Vec<String> = std::env::args().collect();
    let split = all.iter().position(|a| a == "--").unwrap_or(all.len());
    let (eal_args, app) = (&all[..split], all.get(split + 1..).unwrap_or(&[]));
    let args = match parse_args(app) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("latency-probe: {e}");
            eprintln!(
                "usage: latency-probe EAL-ARGS -- [--flows N] [--seconds S] [--rate PPS | --search STEPS [--retries K]]"
            );
            return ExitCode::from(2);
        }
    };
    match run(eal_args, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency-probe: {e}");
            ExitCode::FAILURE
        }
    }
}
