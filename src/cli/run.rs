//! The forwarding run: flags, EAL, the run loop on the main lcore
//! (signals, periodic stats, idle exit), the final report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::mpsc::RecvTimeoutError;

use super::args::{parse, usage, Options, Parsed};
use super::commands::{Next, Session};
use super::prompt::{Input, Prompt};
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

fn usage_error(msg: &str) -> i32 {
    eprintln!("ctfwd: error: {msg}");
    EXIT_USAGE
}

/// Forwards until a signal, `quit` (or the end of `-i` input) or
/// `--idle-exit`, printing stats and running commands on the way.
fn forward(eal: &Eal, opts: &Options) -> i32 {
    let signals = match Signals::register() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ctfwd: error: {e}");
            return EXIT_FAILURE;
        }
    };
    let events = match EventWriter::create(opts.ct_events.as_deref()) {
        Ok(w) => w,
        Err(e) => return usage_error(&e),
    };
    let fwd = match Forwarding::start(eal, &opts.fwd) {
        Ok(f) => f,
        Err(e) => return usage_error(&e.to_string()),
    };
    print!("{}", report::banner(&fwd, opts.fwd.mode.name));
    if opts.fwd.mode.tracks() {
        let thp = crate::dataplane::cpu::transparent_huge_pages();
        println!("{}", report::table_pages(thp.as_deref()));
    }
    if eal.capture_ready() {
        println!("Packet capture: dpdk-dumpcap may attach (rte_pdump initialised).");
    }
    if fwd.paused() {
        println!("Forwarding waits for `start` (type `help` for the commands).");
    } else {
        println!("Forwarding started. Press Ctrl-C to stop.");
    }
    let mut events = events.with(fwd.event_queues());
    let mut session = Session::new(&fwd, opts);
    let mut quit = false;
    if let Some(file) = &opts.cmdline_file {
        quit = run_file(&mut session, file);
    }
    let prompt = if opts.interactive && !quit {
        match Prompt::spawn() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("ctfwd: error: cannot read commands: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        None
    };

    let mut shown = fwd.snapshot();
    let mut failed = false;
    let mut last_rx = (0, Instant::now());
    let period = Duration::from_secs(opts.stats_period);
    while !quit && !signals.quit.load(Ordering::Relaxed) {
        match prompt
            .as_ref()
            .map(|p| p.lines.recv_timeout(Duration::from_millis(20)))
        {
            Some(Ok(Input::Line(line))) => {
                quit = run_line(&mut session, &line);
                prompt.as_ref().map(Prompt::ran);
            }
            Some(Ok(Input::End)) | Some(Err(RecvTimeoutError::Disconnected)) => quit = true,
            Some(Err(RecvTimeoutError::Timeout)) => {}
            None => std::thread::sleep(Duration::from_millis(20)),
        }
        if signals.list.swap(false, Ordering::Relaxed) {
            run_line(&mut session, "ct list");
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            run_line(&mut session, "rules reload");
        }
        events.drain(session.events_on);
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
            if rx != last_rx.0 || fwd.paused() {
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
    drop(session);
    println!("\nTelling cores to stop...\nWaiting for lcores to finish...");
    let report = fwd.stop();
    // What the workers published last.
    events.drain(false);
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

/// Runs one command and prints what it says; whether it was `quit`.
fn run_line(session: &mut Session, line: &str) -> bool {
    let mut out = String::new();
    let next = session.run(line, &mut out);
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    next == Next::Quit
}

/// `--cmdline-file`: each line a command, as testpmd reads one; whether
/// one of them was `quit`.
fn run_file(session: &mut Session, file: &str) -> bool {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ctfwd: error: --cmdline-file: {file}: {e}");
            return false;
        }
    };
    println!("Read CLI commands from {file}");
    text.lines().any(|line| run_line(session, line))
}

/// The signals ctfwd acts on, each setting a flag the main loop reads:
/// SIGINT and SIGTERM stop, SIGUSR1 lists the connections, SIGHUP reloads
/// the rules.
struct Signals {
    quit: Arc<AtomicBool>,
    list: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals, String> {
        let s = Signals {
            quit: Arc::default(),
            list: Arc::default(),
            reload: Arc::default(),
        };
        for (sig, flag) in [
            (signal_hook::consts::SIGINT, &s.quit),
            (signal_hook::consts::SIGTERM, &s.quit),
            (signal_hook::consts::SIGUSR1, &s.list),
            (signal_hook::consts::SIGHUP, &s.reload),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
        }
        Ok(s)
    }
}

/// Writes the workers' connection events as `conntrack -E -o timestamp`
/// prints them: to `--ct-events`' file, or to stdout after `ct events on`.
struct EventWriter {
    file: Option<(std::io::BufWriter<std::fs::File>, String)>,
    queues: Vec<Arc<EventQueue>>,
    /// The wall clock when the workers' clocks read 0 (they count from
    /// their start, within milliseconds of this).
    epoch: f64,
}

impl EventWriter {
    fn create(path: Option<&str>) -> Result<EventWriter, String> {
        let file = path
            .map(|p| {
                std::fs::File::create(p)
                    .map(|f| (std::io::BufWriter::new(f), p.to_string()))
                    .map_err(|e| format!("--ct-events: {p}: {e}"))
            })
            .transpose()?;
        Ok(EventWriter {
            file,
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

    /// Writes every event waiting, to the file, and to stdout if `stdout`
    /// (without a file); a write error is said once per call.
    fn drain(&mut self, stdout: bool) {
        use std::io::Write;
        let mut result = Ok(());
        let mut console = String::new();
        for q in &self.queues {
            while let Some(e) = q.pop() {
                let line = crate::conntrack::EventLine {
                    event: &e,
                    time: self.epoch + e.at as f64 / 1e9,
                };
                match &mut self.file {
                    Some((out, _)) if result.is_ok() => result = writeln!(out, "{line}"),
                    None if stdout => {
                        console.push_str(&line.to_string());
                        console.push('\n');
                    }
                    _ => {}
                }
            }
        }
        print!("{console}");
        if let Some((out, path)) = &mut self.file {
            if let Err(e) = result.and_then(|()| out.flush()) {
                eprintln!("ctfwd: error: --ct-events: {path}: {e}");
            }
        }
    }
}
