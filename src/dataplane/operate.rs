//! A running forwarder's operations, for the prompt and telemetry:
//! pausing and resuming forwarding (testpmd's `stop` and `start`), the
//! command path to the tracking workers, and reloading the rules.

use std::sync::Arc;
use std::time::Duration;

use super::control::{Control, Request};
use super::forwarding::{rule_counters, Forwarding};
use crate::rules::RuleSet;

impl Forwarding<'_> {
    /// The tracking workers' command path (empty in modes that do not
    /// track).
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Whether forwarding is paused (`stop`, or `-i` before `start`).
    pub fn paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Pauses forwarding: every worker finishes its round and stops
    /// polling RX (it keeps serving commands and handed-over packets).
    pub fn pause(&self) -> Result<(), String> {
        if self.pause.pause(Duration::from_secs(3)) {
            Ok(())
        } else {
            Err("a worker did not pause".into())
        }
    }

    pub fn resume(&self) {
        self.pause.resume();
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.rules.lock().unwrap_or_else(|p| p.into_inner()).rules)
    }

    /// Switches every tracking worker to `rules` at its next burst
    /// boundary. The per-rule NAT counts start again from 0, as nftables'
    /// counters do when a ruleset is replaced.
    pub fn reload_rules(&self, rules: RuleSet) -> Result<(), String> {
        let rules = Arc::new(rules);
        let counters: Vec<_> = (0..self.control.workers())
            .map(|_| rule_counters(&rules))
            .collect();
        self.control.each(|w| Request::Rules {
            rules: Arc::clone(&rules),
            nat_exhausted: Arc::clone(&counters[w]),
        })?;
        let mut active = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        active.rules = rules;
        active.nat_exhausted = counters;
        Ok(())
    }
}
