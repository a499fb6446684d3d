//! Runtime operations on a shard, as `conntrack -L/-D/-F`, `conntrack -L
//! expect` and the timeout sysctls do them: walks over the table in
//! bounded slices, so the owner can serve an operator between two bursts
//! without holding its queues unpolled for long.

use super::conn::{Conn, ListedConn};
use super::expect::Expectation;
use super::table::Slot;
use super::tuple::Tuple;
use super::Shard;

/// Where a sliced walk over the table stopped: the next slot to look at,
/// or `None` when it has looked at all of them.
pub type Cursor = Option<usize>;

impl Shard {
    /// Looks at up to `budget` slots from `from`, copying the connections
    /// `keep` selects into `out` until it holds `max_out`; returns where
    /// to go on. A copy, not a reference: the caller formats it later,
    /// away from the packet path, while the connection may have changed.
    pub fn list_slice(
        &self,
        from: usize,
        budget: usize,
        max_out: usize,
        keep: impl Fn(&Conn, &[Tuple; 2]) -> bool,
        out: &mut Vec<ListedConn>,
    ) -> Cursor {
        let end = self.table.slots().min(from.saturating_add(budget));
        for i in from..end {
            if out.len() >= max_out {
                return Some(i);
            }
            let slot = Slot(i as u32);
            if let Some(c) = self.table.confirmed(slot) {
                let tuples = self.table.tuples(slot);
                if keep(c, &tuples) {
                    out.push(ListedConn {
                        conn: *c,
                        tuples,
                        counters: self.acct.get(slot),
                    });
                }
            }
        }
        (end < self.table.slots()).then_some(end)
    }

    /// Deletes the connections `kill` selects among up to `budget` slots
    /// from `from` (`conntrack -D`, `nf_ct_delete`: a DESTROY event each,
    /// and a helper's expectations go with their master); returns how many
    /// it deleted and where to go on.
    pub fn delete_slice(
        &mut self,
        from: usize,
        budget: usize,
        kill: impl Fn(&Conn, &[Tuple; 2]) -> bool,
        now: u64,
    ) -> (usize, Cursor) {
        let (table, mut teardown) = self.table_and_teardown();
        let end = table.slots().min(from.saturating_add(budget));
        let mut deleted = 0;
        for i in from..end {
            let slot = Slot(i as u32);
            let Some(c) = table.confirmed(slot) else {
                continue;
            };
            let tuples = table.tuples(slot);
            if !kill(c, &tuples) {
                continue;
            }
            teardown.conn(slot, c, &tuples, now);
            table.delete(slot);
            deleted += 1;
        }
        (deleted, (end < table.slots()).then_some(end))
    }

    /// The expectations this shard's connections made that are still
    /// pending (`conntrack -L expect`, for this shard's masters).
    pub fn pending_expectations(&self) -> Vec<Expectation> {
        self.ledger.pending(&self.expectations)
    }

    /// Removes the expectations this shard's connections made (`conntrack
    /// -F expect`); returns how many.
    pub fn flush_expectations(&mut self) -> usize {
        self.ledger.flush(&self.expectations)
    }

    /// Sets the timeout `name` to `secs` seconds, as the
    /// `nf_conntrack_*_timeout_*` sysctls do: connections pick it up at
    /// their next packet; their current deadlines stand. Names are those of
    /// `--ct-timeout-NAME` (`tcp-established`, `udp`, `udp-stream`, ...).
    pub fn set_timeout(&mut self, name: &str, secs: u32) -> Result<(), String> {
        if !(1..=super::MAX_TIMEOUT).contains(&secs) {
            return Err(format!(
                "timeout {secs} s is not from 1 to {} s",
                super::MAX_TIMEOUT
            ));
        }
        let slot = match name.strip_prefix("tcp-").or(name.strip_prefix("tcp_")) {
            Some(state) => self.cfg.tcp.timeouts.get_mut(state),
            None => self.cfg.timeouts.get_mut(name),
        };
        *slot.ok_or_else(|| format!("unknown timeout '{name}'"))? = secs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{Config, SEC};
    use crate::wire::{parse_frame, Frame, LinkType};

    /// A UDP flow from port `sport`, confirmed.
    fn udp_flow(s: &mut Shard, sport: u16, now: u64) {
        let f = crate::synth::udp_frame(
            format!("198.18.0.1:{sport}").parse().unwrap(),
            "198.19.0.1:53".parse().unwrap(),
            b"q",
        );
        let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, &f, f.len()) else {
            panic!("not IP")
        };
        let c = s.classify(ip, 0);
        let mut v = s.ingress(&c, now);
        s.egress(&mut v, &c, now).expect("confirmed");
    }

    fn shard_with(n: u16) -> Shard {
        let mut s = Shard::new(Config {
            max: 4096,
            prefault: false,
            ..Config::default()
        });
        for i in 0..n {
            udp_flow(&mut s, 1000 + i, 0);
        }
        s
    }

    #[test]
    fn listing_in_slices_sees_every_connection_once() {
        let s = shard_with(1000);
        let mut out = Vec::new();
        let mut cursor = Some(0);
        let mut slices = 0;
        while let Some(from) = cursor {
            cursor = s.list_slice(from, 64, usize::MAX, |_, _| true, &mut out);
            slices += 1;
        }
        assert_eq!(out.len(), 1000);
        assert!(slices >= 1000 / 64);
        let mut ids: Vec<u32> = out.iter().map(|c| c.conn.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn a_page_stops_at_its_size_and_goes_on_from_there() {
        let s = shard_with(10);
        let mut page = Vec::new();
        let next = s.list_slice(0, usize::MAX, 4, |_, _| true, &mut page);
        assert_eq!(page.len(), 4);
        let mut rest = Vec::new();
        assert_eq!(
            s.list_slice(next.unwrap(), usize::MAX, 100, |_, _| true, &mut rest),
            None
        );
        assert_eq!(rest.len(), 6);
    }

    #[test]
    fn deleting_in_slices_removes_what_the_filter_selects() {
        let mut s = shard_with(300);
        s.enable_events(1000);
        let even = |_: &Conn, t: &[Tuple; 2]| t[0].sport % 2 == 0;
        let (mut deleted, mut cursor) = (0, Some(0));
        while let Some(from) = cursor {
            let (n, next) = s.delete_slice(from, 50, even, SEC);
            deleted += n;
            cursor = next;
        }
        assert_eq!(deleted, 150);
        assert_eq!(s.table().len(), 150);
        let t = s.table();
        assert!(t.iter().all(|(slot, c)| !even(c, &t.tuples(slot))));
        let mut destroyed = 0;
        s.drain_events(|e| {
            destroyed += usize::from(e.kind == crate::conntrack::CtEventKind::Destroy)
        });
        assert_eq!(destroyed, 150);
    }

    #[test]
    fn timeouts_are_set_by_their_flag_names() {
        let mut s = shard_with(0);
        s.set_timeout("tcp-established", 60).unwrap();
        s.set_timeout("udp-stream", 7).unwrap();
        assert_eq!(s.cfg.tcp.timeouts.established, 60);
        assert_eq!(s.cfg.timeouts.udp_stream, 7);
        assert!(s.set_timeout("tcp-bogus", 1).is_err());
        assert!(s.set_timeout("sctp", 1).is_err());
        assert!(s.set_timeout("udp", 0).is_err());
        assert!(s.set_timeout("udp", super::super::MAX_TIMEOUT + 1).is_err());
    }
}
