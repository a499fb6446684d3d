//! Stats in testpmd's layout and field names (`RX-packets:`, `Rx-pps:`, ...),
//! so scripts written for testpmd's output read ctfwd's too.

use std::fmt::Write;

use crate::conntrack::{CtInfo, DefragStats, Stats};
use crate::dataplane::{
    FinalReport, Forwarding, RxSegments, Sharding, SliceTimes, Snapshot, DROP_REASONS,
    HANDOFF_COUNTERS,
};

/// What pages the connection tables get, from the kernel's transparent
/// huge page mode: the tables are advised (`MADV_HUGEPAGE`) as they are
/// reserved, which `madvise` and `always` honour with 2 MB pages; with
/// `never` a table of hundreds of megabytes costs a TLB miss per lookup.
pub fn table_pages(thp: Option<&str>) -> String {
    match thp {
        Some("always" | "madvise") => format!(
            "Connection tables: 2 MB pages asked for (transparent huge pages: {})",
            thp.unwrap_or_default()
        ),
        Some(mode) => format!(
            "Connection tables: 4 KB pages: transparent huge pages are '{mode}' \
             (/sys/kernel/mm/transparent_hugepage/enabled); large tables will \
             cost a TLB miss per lookup"
        ),
        None => "Connection tables: page size unknown (no transparent huge page \
                 setting to read)"
            .to_string(),
    }
}

/// The start-up banner: ports, and which core forwards which stream.
pub fn banner(fwd: &Forwarding, mode: &str) -> String {
    let mut s = String::new();
    for p in fwd.ports() {
        let (up, speed) = p.link();
        let (rxd, txd) = p.descriptors();
        let _ = writeln!(
            s,
            "Port {}: {} ({}, driver {}, link {} {} Mbps, rxd={rxd} txd={txd}, RSS 0x{:x}, \
             MTU {}{})",
            p.id(),
            p.info().mac,
            p.info().name,
            p.info().driver,
            if up { "up" } else { "down" },
            speed,
            p.rss_hf(),
            p.mtu(),
            match p.rx_segments() {
                RxSegments::One => "",
                RxSegments::Scatter => ", multi-segment RX",
                RxSegments::NotOffered => ", multi-segment RX not offered: the driver decides",
            }
        );
    }
    let _ = writeln!(
        s,
        "{mode} packet forwarding - ports={} - cores={} - streams={} - mbufs={}",
        fwd.ports().count(),
        fwd.cores().len(),
        fwd.streams().len(),
        fwd.pool_size()
    );
    match fwd.sharding() {
        Some(Sharding::Rss { reta_size }) => {
            let _ = writeln!(
                s,
                "Connections sharded over {} cores as the NICs' RSS spreads them \
                 (symmetric key, RETA {reta_size}); strays are handed to their owner",
                fwd.cores().len()
            );
        }
        Some(Sharding::Software) => {
            let _ = writeln!(
                s,
                "Connections sharded over {} cores by a software symmetric Toeplitz hash \
                 (no RSS redirection table to mirror); packets are handed to their owner",
                fwd.cores().len()
            );
        }
        None => {}
    }
    for core in fwd.cores() {
        let _ = writeln!(
            s,
            "Logical Core {} forwards packets on {} streams:",
            core.lcore,
            core.streams.len()
        );
        for st in &fwd.streams()[core.streams.clone()] {
            let _ = writeln!(
                s,
                "  RX P={}/Q={} -> TX P={}/Q={} peer={}",
                st.rx_port, st.rx_queue, st.tx_port, st.tx_queue, st.peer_mac
            );
        }
    }
    s
}

/// testpmd's periodic "NIC statistics" block per port, with the throughput
/// since the previous snapshot, then one line per forwarding core.
pub fn periodic(fwd: &Forwarding, prev: &Snapshot, now: &Snapshot) -> String {
    let secs = now.at.duration_since(prev.at).as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs) as u64;
    let mut s = String::new();
    for i in 0..now.ports.len() {
        s.push_str(&port_stats(Some(prev), now, i));
    }
    let cycles = secs * fwd.tsc_hz() as f64;
    for core in fwd.cores() {
        let sum = |snap: &Snapshot| -> [u64; 5] {
            snap.streams[core.streams.clone()]
                .iter()
                .fold([0; 5], |a, c| {
                    [
                        a[0] + c.rx,
                        a[1] + c.tx,
                        a[2] + c.dropped,
                        a[3] + c.busy_cycles,
                        a[4] + c.slept_cycles,
                    ]
                })
        };
        let [rx0, _, _, busy0, slept0] = sum(prev);
        let [rx, tx, dropped, busy, slept] = sum(now);
        // The share of the interval the core spent on packets (with
        // --record-core-cycles) and asleep (with --sleep-max).
        let share = |a: u64, b: u64| 100.0 * b.saturating_sub(a) as f64 / cycles;
        let mut shares = String::new();
        if busy > 0 {
            let _ = write!(shares, " busy: {:.1}%", share(busy0, busy));
        }
        if slept > 0 {
            let _ = write!(shares, " slept: {:.1}%", share(slept0, slept));
        }
        let _ = writeln!(
            s,
            "  Core {}: RX-packets: {rx:<12} TX-packets: {tx:<12} TX-dropped: {dropped:<8} Mpps: {:.3}{shares}",
            core.lcore,
            rate(rx0, rx) as f64 / 1e6
        );
    }
    s.push_str(&burst_lines(fwd.cores().iter().map(|c| c.lcore), now));
    if fwd.conntrack_mode() {
        s.push_str(&conntrack_lines(fwd.cores().iter().map(|c| c.lcore), now));
        s.push_str(&nat_lines(now));
    }
    s
}

/// With `--record-burst-stats`, per core: bursts, their mean size, and
/// TSC cycles per burst (RX to TX) at the 50th, 99th and 99.9th
/// percentiles and the most, since the start.
fn burst_lines(lcores: impl Iterator<Item = u32>, snap: &Snapshot) -> String {
    let mut s = String::new();
    for (lcore, b) in lcores.zip(&snap.bursts) {
        let _ = writeln!(
            s,
            "  Core {lcore} bursts: {} avg={:.1} pkts; cycles/burst p50={} p99={} p99.9={} max={}",
            b.bursts,
            b.packets as f64 / b.bursts.max(1) as f64,
            b.p50,
            b.p99,
            b.p999,
            b.max
        );
    }
    s
}

/// Per NAT rule, new connections it could not map, if there are NAT rules.
fn nat_lines(snap: &Snapshot) -> String {
    if snap.nat_exhausted.is_empty() {
        return String::new();
    }
    let rules: Vec<String> = snap
        .nat_exhausted
        .iter()
        .map(|(line, n)| format!("line {line} exhausted={n}"))
        .collect();
    format!("  NAT rules: {}\n", rules.join(", "))
}

/// Per worker: packets by state and the table's fill, drops by reason,
/// and with several workers the handoffs.
fn conntrack_lines(lcores: impl ExactSizeIterator<Item = u32>, snap: &Snapshot) -> String {
    let mut s = String::new();
    // Several tracking workers hand packets to each other.
    let handoff = lcores.len() > 1;
    for (lcore, c) in lcores.zip(&snap.conntrack) {
        let counts: Vec<String> = CtInfo::ALL
            .iter()
            .zip(c.ctinfo)
            .map(|(n, v)| format!("{}={v}", n.name()))
            .collect();
        let drops: Vec<String> = DROP_REASONS
            .iter()
            .zip(c.dropped)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "  Core {lcore} conntrack: {} connections={} max={} expected={} expect_full={} \
             early_drop={} table_full={}",
            counts.join(" "),
            c.connections,
            c.connections_max,
            c.expected,
            c.expect_full,
            c.early_drop,
            c.table_full
        );
        let _ = writeln!(s, "  Core {lcore} dropped: {}", drops.join(" "));
        if c.events_lost > 0 {
            let _ = writeln!(s, "  Core {lcore} events: lost={}", c.events_lost);
        }
        let frags: Vec<String> = DefragStats::NAMES
            .iter()
            .zip(c.defrag)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let [held, peak, limit] = c.frag_held;
        let _ = writeln!(
            s,
            "  Core {lcore} defrag: {} frag_held_now={held} frag_held_peak={peak} frag_held_max={limit}",
            frags.join(" ")
        );
        if handoff {
            let counts: Vec<String> = HANDOFF_COUNTERS
                .iter()
                .zip(c.handoff)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            let _ = writeln!(s, "  Core {lcore} handoff: {}", counts.join(" "));
        }
    }
    s
}

/// testpmd's per-port and accumulated forward statistics, of the counters
/// since `base` (since the ports started, without one).
pub fn forward_stats(base: Option<&Snapshot>, last: &Snapshot) -> String {
    let mut s = String::new();
    let (mut rx, mut rx_drop, mut tx, mut tx_drop) = (0, 0, 0, 0);
    for (i, p) in last.ports.iter().enumerate() {
        let b = base.and_then(|b| b.ports.get(i));
        let since =
            |f: fn(&crate::dataplane::PortSnapshot) -> u64| f(p).saturating_sub(b.map_or(0, f));
        let ipackets = since(|p| p.stats.ipackets);
        let imissed = since(|p| p.stats.imissed);
        let opackets = since(|p| p.stats.opackets);
        let tx_dropped = since(|p| p.tx_dropped);
        let (ierrors, nombuf) = (since(|p| p.stats.ierrors), since(|p| p.stats.rx_nombuf));
        let _ = writeln!(
            s,
            "\n  ---------------------- Forward statistics for port {:<2} ----------------------",
            p.id
        );
        let _ = writeln!(
            s,
            "  RX-packets: {ipackets:<14} RX-dropped: {imissed:<14} RX-total: {}",
            ipackets + imissed
        );
        if ierrors > 0 || nombuf > 0 {
            let _ = writeln!(s, "  RX-error: {ierrors:<16} RX-nombufs: {nombuf}");
        }
        let _ = writeln!(
            s,
            "  TX-packets: {opackets:<14} TX-dropped: {tx_dropped:<14} TX-total: {}",
            opackets + tx_dropped
        );
        let _ = writeln!(
            s,
            "  ----------------------------------------------------------------------------"
        );
        rx += ipackets;
        rx_drop += imissed;
        tx += opackets;
        tx_drop += tx_dropped;
    }
    let _ = writeln!(
        s,
        "\n  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++"
    );
    let _ = writeln!(
        s,
        "  RX-packets: {rx:<14} RX-dropped: {rx_drop:<14} RX-total: {}",
        rx + rx_drop
    );
    let _ = writeln!(
        s,
        "  TX-packets: {tx:<14} TX-dropped: {tx_drop:<14} TX-total: {}",
        tx + tx_drop
    );
    let _ = writeln!(
        s,
        "  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++\n"
    );
    s
}

/// testpmd's `show port stats`: port `i`'s counters, with the throughput
/// since `prev` (the last time they were shown).
pub fn port_stats(prev: Option<&Snapshot>, now: &Snapshot, i: usize) -> String {
    let q = &now.ports[i];
    let st = &q.stats;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n  ######################## NIC statistics for port {:<2} ########################",
        q.id
    );
    let _ = writeln!(
        s,
        "  RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}",
        st.ipackets, st.imissed, st.ibytes
    );
    let _ = writeln!(s, "  RX-errors: {}", st.ierrors);
    let _ = writeln!(s, "  RX-nombuf:  {}", st.rx_nombuf);
    let _ = writeln!(
        s,
        "  TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}",
        st.opackets, st.oerrors, st.obytes
    );
    let (rx_pps, rx_bps, tx_pps, tx_bps) = match prev.and_then(|p| p.ports.get(i).map(|q| (p, q))) {
        Some((p, pq)) => {
            let secs = now.at.duration_since(p.at).as_secs_f64().max(1e-9);
            let rate = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs) as u64;
            (
                rate(pq.stats.ipackets, st.ipackets),
                8 * rate(pq.stats.ibytes, st.ibytes),
                rate(pq.stats.opackets, st.opackets),
                8 * rate(pq.stats.obytes, st.obytes),
            )
        }
        None => (0, 0, 0, 0),
    };
    let _ = writeln!(s, "\n  Throughput (since last show)");
    let _ = writeln!(s, "  Rx-pps: {rx_pps:>12}          Rx-bps: {rx_bps:>12}");
    let _ = writeln!(s, "  Tx-pps: {tx_pps:>12}          Tx-bps: {tx_bps:>12}");
    let _ = writeln!(
        s,
        "  ############################################################################"
    );
    s
}

/// testpmd's `show port info`, the fields ctfwd knows.
pub fn port_info(p: &crate::dataplane::Port<'_>) -> String {
    let info = p.info();
    let (up, speed) = p.link();
    let (rxd, txd) = p.descriptors();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n********************* Infos for port {:<2} *********************",
        p.id()
    );
    let _ = writeln!(s, "MAC address: {}", info.mac);
    let _ = writeln!(s, "Device name: {}", info.name);
    let _ = writeln!(s, "Driver name: {}", info.driver);
    let _ = writeln!(s, "Connect to socket: {}", info.socket);
    let _ = writeln!(s, "Link status: {}", if up { "up" } else { "down" });
    let _ = writeln!(s, "Link speed: {speed} Mbps");
    let _ = writeln!(s, "MTU: {}", p.mtu());
    let _ = writeln!(s, "Max possible RX queues: {}", info.max_rx_queues);
    let _ = writeln!(s, "Max possible TX queues: {}", info.max_tx_queues);
    let _ = writeln!(s, "RX descriptors: {rxd}, TX descriptors: {txd}");
    let _ = writeln!(s, "Redirection table size: {}", p.reta_size());
    let _ = writeln!(
        s,
        "Supported RSS offload flow types: 0x{:x}",
        info.rss_offloads
    );
    let _ = writeln!(s, "RSS hash functions in use: 0x{:x}", p.rss_hf());
    s
}

/// `conntrack -S`: one line per forwarding core of its tracker's counters,
/// then (ctfwd's own) the table's fill and how long the worker's command
/// slices took: how many, median, 99th and 99.9th percentiles, longest.
pub fn ct_stats(fwd: &Forwarding, stats: &[(Stats, SliceTimes)], snap: &Snapshot) -> String {
    let us = |cycles: u64| cycles as f64 * 1e6 / fwd.tsc_hz().max(1) as f64;
    let mut s = String::new();
    for (cpu, ((st, c), core)) in stats
        .iter()
        .zip(&snap.conntrack)
        .zip(fwd.cores())
        .enumerate()
    {
        let (st, t) = st;
        let fields: Vec<String> = st
            .fields()
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "cpu={cpu:<4}\t{} entries={} max={} lcore={} command_slices={} \
             slice_p50_us={:.1} slice_p99_us={:.1} slice_p999_us={:.1} slice_max_us={:.1}",
            fields.join(" "),
            c.connections,
            c.connections_max,
            core.lcore,
            t.count,
            us(t.p50),
            us(t.p99),
            us(t.p999),
            us(t.max),
        );
    }
    s
}

/// The exit report: per-port and accumulated forward statistics (testpmd's
/// layout), per stream and per core counts, cycles per packet if recorded,
/// and the mbuf pool check.
pub fn final_report(report: &FinalReport, record_cycles: bool) -> String {
    let last = &report.last;
    let (tsc_hz, pool_size) = (report.tsc_hz, report.pool_size);
    let secs = last
        .at
        .duration_since(report.started)
        .as_secs_f64()
        .max(1e-9);
    let mut s = forward_stats(None, last);
    if report.streams.len() > last.ports.len() {
        for (st, c) in report.streams.iter().zip(&last.streams) {
            let _ = writeln!(
                s,
                "  ------- Forward Stats for RX Port={:>2}/Queue={:>2} -> TX Port={:>2}/Queue={:>2} -------",
                st.rx_port, st.rx_queue, st.tx_port, st.tx_queue
            );
            let _ = writeln!(
                s,
                "  RX-packets: {:<14} TX-packets: {:<14} TX-dropped: {}\n",
                c.rx, c.tx, c.dropped
            );
        }
    }
    let mut busy_total = 0;
    let mut rx_total = 0;
    for core in &report.cores {
        let lcore = core.lcore;
        let streams = &last.streams[core.streams.clone()];
        let (crx, ctx, cdrop, busy) = streams.iter().fold((0, 0, 0, 0), |a, c| {
            (a.0 + c.rx, a.1 + c.tx, a.2 + c.dropped, a.3 + c.busy_cycles)
        });
        let _ = writeln!(
            s,
            "  Core {lcore}: RX-packets: {crx:<12} TX-packets: {ctx:<12} TX-dropped: {cdrop:<8} Mpps: {:.3}",
            crx as f64 / secs / 1e6
        );
        if record_cycles && crx > 0 {
            let _ = writeln!(
                s,
                "  Core {lcore}: CPU cycles/packet={:.2} (busy cycles={busy} / total RX packets={crx}) at {} MHz Clock",
                busy as f64 / crx as f64,
                tsc_hz / 1_000_000
            );
        }
        busy_total += busy;
        rx_total += crx;
    }
    s.push_str(&burst_lines(report.cores.iter().map(|c| c.lcore), last));
    if record_cycles && rx_total > 0 {
        let _ = writeln!(
            s,
            "\n  CPU cycles/packet={:.2} (busy cycles={busy_total} / total RX packets={rx_total}) at {} MHz Clock",
            busy_total as f64 / rx_total as f64,
            tsc_hz / 1_000_000
        );
    }
    if report.conntrack_mode {
        s.push('\n');
        s.push_str(&conntrack_lines(report.cores.iter().map(|c| c.lcore), last));
        s.push_str(&nat_lines(last));
    }
    for failure in &report.worker_failures {
        let _ = writeln!(s, "\n  Worker failed: {failure}");
    }
    if report.mbufs_in_use == 0 {
        let _ = writeln!(
            s,
            "\nMempool check: 0 of {pool_size} mbufs in use: every mbuf was sent or freed."
        );
    } else {
        let _ = writeln!(
            s,
            "\nMempool check: LEAK: {} of {pool_size} mbufs still in use after all ports closed.",
            report.mbufs_in_use
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::table_pages;

    /// The banner's page line names the mode, and warns where the kernel
    /// gives no huge pages.
    #[test]
    fn table_pages_warn_when_transparent_huge_pages_are_off() {
        assert!(table_pages(Some("madvise")).contains("2 MB pages asked for"));
        assert!(table_pages(Some("always")).contains("2 MB pages asked for"));
        let off = table_pages(Some("never"));
        assert!(
            off.contains("4 KB pages") && off.contains("'never'"),
            "{off}"
        );
        assert!(table_pages(None).contains("unknown"));
    }
}
