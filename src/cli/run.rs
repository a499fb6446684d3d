//! The forwarding run: flags, EAL, the run loop on the main lcore
//! (signals, periodic stats, idle exit), the final report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::{parse, usage, Options, Parsed};
use super::report;
use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::dataplane::{dpdk_version, Eal, EventQueue, Forwarding};

/// `ctfwd [EAL options] -- [options]`: returns the exit status.
pub fn main(argv: Vec<String>) -> i32 {
    if matches!(argv.get(1).map(String::as_str), Some("-h" | "--help")) {
        print!("{}", usage());
        return EXIT_OK;
    }
    if argv.get(1).map(String::as_str) == Some("--version") {
        println!("ctfwd {} ({})", env!("CARGO_PKG_VERSION"), dpdk_version());
        return EXIT_OK;
    }
    let split = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let (eal_args, app_args) = (&argv[..split], argv.get(split + 1..).unwrap_or(&[]));
    // Application flags are checked before EAL starts, so a typo costs no
    // memory set-up and prints one line.
    let opts = match parse(app_args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", usage());
            return EXIT_OK;
        }
        Err(e) => return usage_error(&e),
    };
    let eal = match Eal::init(eal_args) {
        Ok(eal) => eal,
        Err(e) => return usage_error(&e.to_string()),
    };
    let status = forward(&eal, &opts);
    drop(eal);
    status
}

/// SIGUSR1: the connection tables, as `conntrack -L` prints them.
fn print_connections(fwd: &Forwarding) {
    if !fwd.conntrack_mode() {
        println!("\nconntrack: this forward mode tracks no connections");
        return;
    }
    match fwd.list_connections(Duration::from_secs(2)) {
        Some((lines, n)) => print!("\n{lines}conntrack: {n} flow entries have been shown.\n"),
        None => println!("\nconntrack: a worker did not answer the listing request"),
    }
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("ctfwd: error: {msg}");
    EXIT_USAGE
}

/// Forwards until a signal (or `--idle-exit`), printing stats on the way.
fn forward(eal: &Eal, opts: &Options) -> i32 {
    let quit = Arc::new(AtomicBool::new(false));
    let list = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &quit),
        (signal_hook::consts::SIGTERM, &quit),
        (signal_hook::consts::SIGUSR1, &list),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            eprintln!("ctfwd: error: cannot handle signal {sig}: {e}");
            return EXIT_FAILURE;
        }
    }
    let events = match opts
        .ct_events
        .as_deref()
        .map(EventWriter::create)
        .transpose()
    {
        Ok(w) => w,
        Err(e) => return usage_error(&e),
    };
    let fwd = match Forwarding::start(eal, &opts.fwd) {
        Ok(f) => f,
        Err(e) => return usage_error(&e.to_string()),
    };
    print!("{}", report::banner(&fwd, opts.fwd.mode.name));
    println!("Forwarding started. Press Ctrl-C to stop.");
    let mut events = events.map(|w| w.with(fwd.event_queues()));

    let mut shown = fwd.snapshot();
    let mut failed = false;
    let mut last_rx = (0, Instant::now());
    let period = Duration::from_secs(opts.stats_period);
    while !quit.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if list.swap(false, Ordering::Relaxed) {
            print_connections(&fwd);
        }
        if let Some(w) = events.as_mut() {
            w.drain();
        }
        // A worker that died leaves its queues unpolled and its handoff
        // rings filling: stop everything, in order, and fail.
        if let Some(why) = fwd.failed_worker() {
            eprintln!("ctfwd: error: worker failed: {why}; stopping");
            failed = true;
            break;
        }
        if opts.stats_period > 0 && shown.at.elapsed() >= period {
            let now = fwd.snapshot();
            print!("{}", report::periodic(&fwd, &shown, &now));
            shown = now;
        }
        if let Some(idle) = opts.idle_exit {
            let rx = fwd.rx_packets();
            if rx != last_rx.0 {
                last_rx = (rx, Instant::now());
            } else if last_rx.1.elapsed() >= idle {
                println!(
                    "\nNo packet received for {:.1} s: stopping.",
                    idle.as_secs_f64()
                );
                break;
            }
        }
    }
    println!("\nTelling cores to stop...\nWaiting for lcores to finish...");
    let report = fwd.stop();
    // What the workers published last.
    if let Some(w) = events.as_mut() {
        w.drain();
    }
    print!(
        "{}",
        report::final_report(&report, opts.fwd.record_core_cycles)
    );
    println!("Done.");
    if failed || report.mbufs_in_use != 0 || !report.worker_failures.is_empty() {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

/// Writes the workers' connection events to a file, as `conntrack -E -o
/// timestamp` prints them.
struct EventWriter {
    out: std::io::BufWriter<std::fs::File>,
    path: String,
    queues: Vec<Arc<EventQueue>>,
    /// The wall clock when the workers' clocks read 0 (they count from
    /// their start, within milliseconds of this).
    epoch: f64,
}

impl EventWriter {
    fn create(path: &str) -> Result<EventWriter, String> {
        let file = std::fs::File::create(path).map_err(|e| format!("--ct-events: {path}: {e}"))?;
        Ok(EventWriter {
            out: std::io::BufWriter::new(file),
            path: path.to_string(),
            queues: Vec::new(),
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        })
    }

    fn with(mut self, queues: Vec<Arc<EventQueue>>) -> EventWriter {
        self.queues = queues;
        self
    }

    /// Writes every event waiting; a write error is said once per call.
    fn drain(&mut self) {
        use std::io::Write;
        let mut result = Ok(());
        for q in &self.queues {
            while let Some(e) = q.pop() {
                let line = crate::conntrack::EventLine {
                    event: &e,
                    time: self.epoch + e.at as f64 / 1e9,
                };
                if result.is_ok() {
                    result = writeln!(self.out, "{line}");
                }
            }
        }
        if let Err(e) = result.and_then(|()| self.out.flush()) {
            eprintln!("ctfwd: error: --ct-events: {}: {e}", self.path);
        }
    }
}
