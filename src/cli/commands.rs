//! The runtime commands, as testpmd and conntrack-tools spell them: read
//! at the `ctfwd> ` prompt, from stdin, from `--cmdline-file`; SIGUSR1 and
//! SIGHUP run `ct list` and `rules reload` through the same code. A bad
//! command prints one error line and the session goes on.

use std::fmt::Write;
use std::sync::Arc;

use super::args::Options;
use super::report;
use crate::conntrack::{ConnLine, ExpectLine};
use crate::dataplane::{Control, Forwarding, Snapshot};
use crate::rules::{ConnFilter, RuleSet};

/// What the session does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    Quit,
}

/// The commands, for `help`.
const HELP: &str = "\
Forwarding (testpmd's):
  start                              start forwarding
  stop                               pause forwarding; print the forward statistics
  quit                               stop and exit
  show port info|stats|xstats all|N  a port's settings, counters, extended counters
  clear port stats all|N             zero a port's counters
  show fwd stats all                 forward statistics since `start`
  clear fwd stats all                restart them from now
  show config fwd                    the forwarding configuration
Connection tracking (conntrack-tools'):
  ct list [FILTER]                   connections, as conntrack -L
  ct count                           how many, as conntrack -C
  ct stats                           per core, as conntrack -S
  ct delete FILTER                   delete what FILTER selects, as conntrack -D
  ct flush [FILTER]                  delete all (or what FILTER selects), as conntrack -F
  ct expect list | ct expect flush   expectations, as conntrack -L/-F expect
  ct timeout NAME SECONDS            a timeout, as --ct-timeout-NAME (new deadlines)
  ct events on|off                   connection events, as conntrack -E
  rules reload [FILE]                parse FILE (default: --rules) and switch to it
FILTER: any of proto P, src A[/LEN], dst A[/LEN], sport N, dport N, state S,
  status S[,S] (expected, seen-reply, unreplied, assured, snat, dnat, ...);
  conntrack's flags too: -p tcp --dport 22 -s 198.18.0.0/24 --state ESTABLISHED
";

/// A command session over a running forwarder.
pub struct Session<'a, 'eal> {
    fwd: &'a Forwarding<'eal>,
    opts: &'a Options,
    /// The counters when forwarding (re)started, for `show fwd stats`.
    since_start: Snapshot,
    /// Per port, the counters at the last `show port stats` (throughput).
    last_shown: Vec<Option<Snapshot>>,
    /// Whether `ct events on` asked for events on stdout.
    pub events_on: bool,
}

impl<'a, 'eal> Session<'a, 'eal> {
    pub fn new(fwd: &'a Forwarding<'eal>, opts: &'a Options) -> Session<'a, 'eal> {
        Session {
            fwd,
            opts,
            since_start: fwd.snapshot(),
            last_shown: vec![None; fwd.ports().count()],
            events_on: false,
        }
    }

    /// Runs one command line; what it prints goes to `out`.
    pub fn run(&mut self, line: &str, out: &mut String) -> Next {
        let line = line.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return Next::Continue;
        }
        match self.dispatch(&words, out) {
            Ok(next) => next,
            Err(e) => {
                let _ = writeln!(out, "Bad command '{line}': {e}");
                Next::Continue
            }
        }
    }

    fn dispatch(&mut self, w: &[&str], out: &mut String) -> Result<Next, String> {
        match w {
            ["help"] => out.push_str(HELP),
            ["start"] => self.start(out),
            ["stop"] => self.stop(out)?,
            ["quit" | "exit"] => return Ok(Next::Quit),
            ["show", "port", what, which] => self.show_port(what, which, out)?,
            ["clear", "port", "stats", which] => {
                for p in self.ports(which)? {
                    p.reset_stats();
                    let _ = writeln!(out, "\n  NIC statistics for port {} cleared", p.id());
                }
                // The forward statistics and the throughput are read from
                // the device counters: both start again from the zeroed
                // counters.
                self.since_start = self.fwd.snapshot();
                self.last_shown.iter_mut().for_each(|s| *s = None);
            }
            ["show", "fwd", "stats", "all"] => {
                out.push_str(&report::forward_stats(
                    Some(&self.since_start),
                    &self.fwd.snapshot(),
                ));
            }
            ["clear", "fwd", "stats", "all"] => self.since_start = self.fwd.snapshot(),
            ["show", "config", "fwd"] => {
                out.push_str(&report::banner(self.fwd, self.opts.fwd.mode.name));
            }
            ["ct", rest @ ..] => self.ct(rest, out)?,
            ["rules", "reload"] => self.reload(None, out)?,
            ["rules", "reload", file] => self.reload(Some(file), out)?,
            _ => return Err("unknown command (try `help`)".into()),
        }
        Ok(Next::Continue)
    }

    fn start(&mut self, out: &mut String) {
        if !self.fwd.paused() {
            out.push_str("Packet forwarding already started\n");
            return;
        }
        self.since_start = self.fwd.snapshot();
        self.fwd.resume();
        let _ = writeln!(
            out,
            "{} packet forwarding - ports={} - cores={} - streams={}",
            self.opts.fwd.mode.name,
            self.fwd.ports().count(),
            self.fwd.cores().len(),
            self.fwd.streams().len()
        );
    }

    fn stop(&mut self, out: &mut String) -> Result<(), String> {
        if self.fwd.paused() {
            out.push_str("Packet forwarding not started\n");
            return Ok(());
        }
        out.push_str("Telling cores to stop...\nWaiting for lcores to finish...\n");
        self.fwd.pause()?;
        out.push_str(&report::forward_stats(
            Some(&self.since_start),
            &self.fwd.snapshot(),
        ));
        out.push_str("\nDone.\n");
        Ok(())
    }

    fn ports(&self, which: &str) -> Result<Vec<&crate::dataplane::Port<'eal>>, String> {
        if which == "all" {
            return Ok(self.fwd.ports().collect());
        }
        let id: u16 = which
            .parse()
            .map_err(|_| format!("'{which}' is not a port id or 'all'"))?;
        let p = self
            .fwd
            .ports()
            .find(|p| p.id() == id)
            .ok_or_else(|| format!("port {id} is not forwarding"))?;
        Ok(vec![p])
    }

    fn show_port(&mut self, what: &str, which: &str, out: &mut String) -> Result<(), String> {
        let ports = self.ports(which)?;
        match what {
            "info" => ports
                .iter()
                .for_each(|p| out.push_str(&report::port_info(p))),
            "xstats" => {
                for p in ports {
                    let _ = writeln!(out, "###### NIC extended statistics for port {:<2}", p.id());
                    for (name, v) in p.xstats() {
                        let _ = writeln!(out, "{name}: {v}");
                    }
                }
            }
            "stats" => {
                let now = self.fwd.snapshot();
                let ids: Vec<u16> = ports.iter().map(|p| p.id()).collect();
                for id in ids {
                    let i = now.ports.iter().position(|s| s.id == id).unwrap_or(0);
                    let prev = self.last_shown[i].as_ref();
                    out.push_str(&report::port_stats(prev, &now, i));
                    self.last_shown[i] = Some(now.clone());
                }
            }
            _ => return Err(format!("'show port {what}': info, stats or xstats")),
        }
        Ok(())
    }

    fn control(&self) -> Control {
        self.fwd.control()
    }

    fn ct(&mut self, w: &[&str], out: &mut String) -> Result<(), String> {
        match w {
            ["list", filter @ ..] => {
                let filter = Arc::new(ConnFilter::parse(filter)?);
                list(&self.control(), &filter, out)?;
            }
            ["count"] => {
                let n: u64 = self
                    .fwd
                    .snapshot()
                    .conntrack
                    .iter()
                    .map(|c| c.connections)
                    .sum();
                self.control().check()?;
                let _ = writeln!(out, "{n}");
            }
            ["stats"] => {
                let stats = self.control().stats()?;
                out.push_str(&report::ct_stats(self.fwd, &stats, &self.fwd.snapshot()));
            }
            ["delete"] => return Err("ct delete needs a FILTER (ct flush deletes all)".into()),
            ["delete" | "flush", filter @ ..] => {
                let filter = Arc::new(ConnFilter::parse(filter)?);
                let n = self.control().delete(&filter)?;
                if w[0] == "flush" && filter.is_empty() {
                    out.push_str(
                        "conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n",
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "conntrack v1.4.7 (conntrack-tools): {n} flow entries have been deleted."
                    );
                }
            }
            ["expect", "list"] => {
                let all = self.control().expectations()?;
                for (e, now) in &all {
                    let _ = writeln!(
                        out,
                        "{}",
                        ExpectLine {
                            expectation: e,
                            now: *now
                        }
                    );
                }
                let _ = writeln!(
                    out,
                    "conntrack v1.4.7 (conntrack-tools): {} expectations have been shown.",
                    all.len()
                );
            }
            ["expect", "flush"] => {
                let n = self
                    .control()
                    .each(|_| crate::dataplane::Request::FlushExpectations)?;
                let _ = writeln!(
                    out,
                    "conntrack v1.4.7 (conntrack-tools): expectation table has been emptied ({n})."
                );
            }
            ["timeout", name, secs] => {
                let secs: u32 = secs
                    .parse()
                    .ok()
                    .filter(|s| (1..=crate::conntrack::MAX_TIMEOUT).contains(s))
                    .ok_or_else(|| {
                        format!(
                            "'{secs}' is not a whole number of seconds from 1 to {}",
                            crate::conntrack::MAX_TIMEOUT
                        )
                    })?;
                let name = name.to_string();
                self.control()
                    .each(|_| crate::dataplane::Request::Timeout {
                        name: name.clone(),
                        secs,
                    })?;
                let _ = writeln!(out, "timeout {name} set to {secs} s");
            }
            ["events", on @ ("on" | "off")] => {
                let on = *on == "on";
                self.control()
                    .each(|_| crate::dataplane::Request::Events(on))?;
                self.events_on = on;
            }
            _ => return Err("unknown ct command (try `help`)".into()),
        }
        Ok(())
    }

    fn reload(&mut self, file: Option<&str>, out: &mut String) -> Result<(), String> {
        let path = file
            .map(str::to_string)
            .or_else(|| self.opts.rules_path.clone())
            .ok_or("no file: give one, or start with --rules")?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let rules =
            RuleSet::parse(&text).map_err(|e| format!("{path}: {e}; the rules in force stay"))?;
        let n = rules.len();
        self.fwd.reload_rules(rules)?;
        let _ = writeln!(out, "rules: {n} rules from {path} in force");
        Ok(())
    }
}

/// `ct list`: every connection, as `conntrack -L` prints them. The lines
/// go to stdout as the pages come (a million connections are 250 MB of
/// text: held in one string, its growth would remap memory, and every
/// remap interrupts the workers for TLB shootdowns); `out` gets the
/// closing line.
pub fn list(control: &Control, filter: &Arc<ConnFilter>, out: &mut String) -> Result<(), String> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut failed = None;
    let n = control.list(filter, |conn, now| {
        if failed.is_none() {
            failed = writeln!(w, "{}", ConnLine { conn, now }).err();
        }
    })?;
    if let Some(e) = failed.or_else(|| w.flush().err()) {
        return Err(format!("writing the listing: {e}"));
    }
    let _ = writeln!(
        out,
        "conntrack v1.4.7 (conntrack-tools): {n} flow entries have been shown."
    );
    Ok(())
}
