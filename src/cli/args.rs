//! testpmd-style command line: `ctfwd [EAL options] -- [application options]`.
//! Application flags keep testpmd's names and meanings; both `--flag=value`
//! and `--flag value` are accepted, as getopt_long does.

use std::time::Duration;

use dpdk_sys::consts::{RTE_ETH_RSS_IP, RTE_ETH_RSS_TCP, RTE_ETH_RSS_UDP};

use crate::dataplane::{forward_mode, FwdConfig, PortConfig, Topology, FORWARD_MODES, MAX_BURST};
use crate::wire::MacAddr;

/// Everything the application flags say.
#[derive(Clone)]
pub struct Options {
    pub fwd: FwdConfig,
    /// Seconds between periodic stats (0: none).
    pub stats_period: u64,
    /// Stop once no packet has been received for this long.
    pub idle_exit: Option<Duration>,
    /// `--ct-events=FILE`: where connection events are written.
    pub ct_events: Option<String>,
    /// `-i`: read commands (a prompt on a terminal, else lines of stdin).
    pub interactive: bool,
    /// `--cmdline-file=FILE`: commands run at start.
    pub cmdline_file: Option<String>,
    /// `--rules=FILE`, which `rules reload` and SIGHUP read again.
    pub rules_path: Option<String>,
}

/// The outcome of parsing: run, or print help.
pub enum Parsed {
    Run(Box<Options>),
    Help,
}

/// A flag and what it takes, for parsing and for `--help`.
struct Flag {
    name: &'static str,
    value: Option<&'static str>,
    help: &'static str,
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "help",
        value: None,
        help: "print this help and exit",
    },
    Flag {
        name: "portmask",
        value: Some("HEX"),
        help: "ports to forward on (default: all probed ports)",
    },
    Flag {
        name: "nb-cores",
        value: Some("N"),
        help: "forwarding cores (default 1; at most the EAL worker lcores)",
    },
    Flag {
        name: "rxq",
        value: Some("N"),
        help: "RX queues per port (default 1)",
    },
    Flag {
        name: "txq",
        value: Some("N"),
        help: "TX queues per port (default 1)",
    },
    Flag {
        name: "rxd",
        value: Some("N"),
        help: "RX descriptors per queue (default 1024, adjusted to the driver)",
    },
    Flag {
        name: "txd",
        value: Some("N"),
        help: "TX descriptors per queue (default 1024, adjusted to the driver)",
    },
    Flag {
        name: "burst",
        value: Some("N"),
        help: "packets per burst (default 32, at most 512)",
    },
    Flag {
        name: "total-num-mbufs",
        value: Some("N"),
        help: "mbufs in the pool (default: enough for all rings and caches)",
    },
    Flag {
        name: "mbuf-size",
        value: Some("N"),
        help: "data room of each mbuf, headroom included (default 2176); \
               longer frames are received into chains of mbufs",
    },
    Flag {
        name: "max-pkt-len",
        value: Some("N"),
        help: "longest frame to receive, CRC included (default: the port's \
               MTU); sets the MTU and asks for multi-segment RX where needed",
    },
    Flag {
        name: "mbcache",
        value: Some("N"),
        help: "per-lcore mbuf cache (default 250, at most 512)",
    },
    Flag {
        name: "forward-mode",
        value: Some("MODE"),
        help: "forwarding engine (default io; see the list below)",
    },
    Flag {
        name: "port-topology",
        value: Some("T"),
        help: "paired (default), chained or loop",
    },
    Flag {
        name: "eth-peer",
        value: Some("N,MAC"),
        help: "destination MAC for port N in mac mode (default 02:00:00:00:00:N)",
    },
    Flag {
        name: "rss-ip",
        value: None,
        help: "RSS on IP addresses only (default with more than one RX queue; \
               conntrack and firewall modes hash TCP and UDP ports too unless told)",
    },
    Flag {
        name: "rss-udp",
        value: None,
        help: "RSS on IP addresses and UDP ports",
    },
    Flag {
        name: "stats-period",
        value: Some("SECONDS"),
        help: "print port and core stats every SECONDS (default 0: only at exit)",
    },
    Flag {
        name: "auto-start",
        value: None,
        help: "with -i, start forwarding at once (without -i it always does)",
    },
    Flag {
        name: "interactive",
        value: None,
        help: "-i: commands at a ctfwd> prompt (stdin lines if not a terminal); forwarding waits for `start`",
    },
    Flag {
        name: "cmdline-file",
        value: Some("FILE"),
        help: "run the commands in FILE at start (see `help` at the prompt)",
    },
    Flag {
        name: "record-core-cycles",
        value: None,
        help: "measure TSC cycles per packet on each forwarding core",
    },
    Flag {
        name: "record-burst-stats",
        value: None,
        help: "per core, a histogram of TSC cycles per burst (p50/p99/p99.9/max) and the mean burst, with the stats",
    },
    Flag {
        name: "sleep-max",
        value: Some("US"),
        help: "an idle core sleeps, doubling from 1 us up to US microseconds (default 0: pure polling; OVS's pmd-sleep-max)",
    },
    Flag {
        name: "idle-exit",
        value: Some("SECONDS"),
        help: "stop once no packet has arrived for SECONDS (for pcap replays)",
    },
    Flag {
        name: "rules",
        value: Some("FILE"),
        help: "firewall rules, nftables-like, checked before the default policy (see README)",
    },
    Flag {
        name: "inside-ports",
        value: Some("LIST"),
        help: "ports where the firewall lets NEW connections in (default: the first of each pair)",
    },
    Flag {
        name: "ct-max",
        value: Some("N"),
        help: "connections each worker's tracker holds (default 262144)",
    },
    Flag {
        name: "ct-expect-max",
        value: Some("N"),
        help: "expectations pending at once, all workers together (default 4096; Linux's nf_conntrack_expect_max)",
    },
    Flag {
        name: "ct-events",
        value: Some("FILE"),
        help: "write connection events (created, destroyed) to FILE as conntrack -E -o timestamp does",
    },
    Flag {
        name: "ct-helper",
        value: Some("LIST"),
        help: "helpers and their ports, e.g. tftp:69,ftp:21,ftp:2121, or none (default tftp:69,ftp:21)",
    },
    Flag {
        name: "ct-checksum",
        value: Some("on|off"),
        help: "INVALID on a bad TCP/UDP/ICMP checksum, NIC-verified where the port can (default on)",
    },
    Flag {
        name: "ct-acct",
        value: Some("on|off"),
        help: "keep packet and byte counters per connection, shown by ct list (default off, as Linux's nf_conntrack_acct)",
    },
    Flag {
        name: "ct-liberal",
        value: None,
        help: "TCP window tracking marks only out-of-window RSTs invalid (tcp_be_liberal)",
    },
    Flag {
        name: "frag-max",
        value: Some("D[,F]"),
        help: "IP datagrams each worker reassembles at once, and fragments per datagram (default 256,64)",
    },
    Flag {
        name: "frag-timeout",
        value: Some("SECONDS"),
        help: "time a datagram has to complete from its first fragment (default 30, as Linux)",
    },
    Flag {
        name: "ct-ftp-loose",
        value: None,
        help: "accept FTP announcements of a third address (FTP bounce)",
    },
];

/// `--help` text.
pub fn usage() -> String {
    let mut s = String::from(
        "usage: ctfwd [EAL options] -- [options]\n       ctfwd trace [--json] [--checksum] FILE   (see ctfwd trace --help)\n\n\
         EAL options are DPDK's (-l, --lcores, -a, --vdev, --no-huge, -m, --file-prefix, ...);\n\
         see `dpdk-testpmd --help` or the DPDK EAL documentation.\n\noptions:\n",
    );
    for f in FLAGS {
        let left = match f.value {
            Some(v) => format!("--{}={v}", f.name),
            None => format!("--{}", f.name),
        };
        s.push_str(&format!("  {left:<28} {}\n", f.help));
    }
    s.push_str(&format!(
        "  {:<28} {}\n",
        "--ct-timeout-NAME=SECONDS",
        "tracker timeouts (Linux's defaults): tcp-syn-sent 120, tcp-syn-recv 60,"
    ));
    s.push_str(&format!(
        "  {:<28} {}\n",
        "", "tcp-established 432000, tcp-fin-wait 120, tcp-close-wait 60, tcp-last-ack 30,"
    ));
    s.push_str(&format!(
        "  {:<28} {}\n",
        "", "tcp-time-wait 120, tcp-close 10, tcp-syn-sent2 120, tcp-retrans 300,"
    ));
    s.push_str(&format!(
        "  {:<28} {}\n",
        "", "tcp-unack 300, udp 30, udp-stream 120, icmp 30, icmpv6 30, generic 600"
    ));
    s.push_str("\nforward modes:\n");
    for m in FORWARD_MODES {
        s.push_str(&format!("  {:<12} {}\n", m.name, m.summary));
    }
    s.push_str(
        "\nCtrl-C or SIGTERM stops forwarding, prints the final stats and the mbuf\n\
         pool check, and exits 0 (1 if mbufs leaked or a worker failed; 2 on a\n\
         set-up error).\n",
    );
    s
}

/// An `on|off` flag's value.
fn on_off(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("--{name}: '{v}' is not on or off")),
    }
}

/// Parses the application flags (everything after `--`).
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options {
        fwd: FwdConfig {
            portmask: None,
            nb_cores: 1,
            port: PortConfig {
                rx_queues: 1,
                tx_queues: 1,
                rx_desc: 1024,
                tx_desc: 1024,
                rss_hf: RTE_ETH_RSS_IP,
                promiscuous: true,
                rx_checksum: true,
                mbuf_size: dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                max_pkt_len: None,
            },
            burst: 32,
            total_mbufs: None,
            mbcache: 250,
            mode: &FORWARD_MODES[0],
            topology: Topology::Paired,
            eth_peers: Vec::new(),
            record_core_cycles: false,
            record_burst_stats: false,
            sleep_max_us: 0,
            ct_events: false,
            conntrack: crate::conntrack::Config {
                max: 262_144,
                // Linux's nf_conntrack_checksum defaults to 1.
                checksum: true,
                ..crate::conntrack::Config::default()
            },
            defrag: crate::conntrack::DefragConfig::default(),
            inside_ports: None,
            rules: Default::default(),
            start_paused: false,
        },
        stats_period: 0,
        idle_exit: None,
        ct_events: None,
        interactive: false,
        cmdline_file: None,
        rules_path: None,
    };
    let mut auto_start = false;
    let mut rss_chosen = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-i" {
            o.interactive = true;
            continue;
        }
        if arg == "-a" {
            auto_start = true; // testpmd's short --auto-start
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!(
                "unexpected argument '{arg}' (options start with --; see --help)"
            ));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if let Some(which) = name.strip_prefix("ct-timeout-") {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i - 1)
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value (SECONDS)"))?
                }
            };
            let ct = &mut o.fwd.conntrack;
            let slot = match which.strip_prefix("tcp-") {
                Some(state) => ct.tcp.timeouts.get_mut(state),
                None => ct.timeouts.get_mut(which),
            }
            .ok_or_else(|| format!("unknown option --{name} (see --help for the timeouts)"))?;
            *slot = number(name, &v, 1, u64::from(crate::conntrack::MAX_TIMEOUT))? as u32;
            continue;
        }
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("unknown option --{name} (see --help)"))?;
        let value = match (flag.value, inline) {
            (None, Some(_)) => return Err(format!("--{name} takes no value")),
            (None, None) => String::new(),
            (Some(_), Some(v)) => v,
            (Some(what), None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("--{name} needs a value ({what})"))?;
                i += 1;
                v.clone()
            }
        };
        let v = value.as_str();
        match name {
            "help" => return Ok(Parsed::Help),
            "portmask" => {
                let mask =
                    u64::from_str_radix(v.trim_start_matches("0x").trim_start_matches("0X"), 16)
                        .map_err(|_| format!("--portmask: '{v}' is not a hexadecimal mask"))?;
                if mask == 0 {
                    return Err("--portmask: the mask selects no port".into());
                }
                o.fwd.portmask = Some(mask);
            }
            "nb-cores" => o.fwd.nb_cores = number(name, v, 1, 128)? as usize,
            "rxq" => o.fwd.port.rx_queues = number(name, v, 1, 1024)? as u16,
            "txq" => o.fwd.port.tx_queues = number(name, v, 1, 1024)? as u16,
            "rxd" => o.fwd.port.rx_desc = number(name, v, 1, 65535)? as u16,
            "txd" => o.fwd.port.tx_desc = number(name, v, 1, 65535)? as u16,
            "burst" => o.fwd.burst = number(name, v, 1, MAX_BURST as u64)? as u16,
            "total-num-mbufs" => {
                o.fwd.total_mbufs = Some(number(name, v, 1025, u32::MAX as u64)? as u32)
            }
            // Room for at least an Ethernet header and an IPv4 header after
            // the headroom, as testpmd demands room for a minimal frame.
            "mbuf-size" => {
                o.fwd.port.mbuf_size = number(
                    name,
                    v,
                    u64::from(dpdk_sys::RTE_PKTMBUF_HEADROOM) + 64,
                    u64::from(u16::MAX),
                )? as u16
            }
            "max-pkt-len" => {
                o.fwd.port.max_pkt_len = Some(number(name, v, 64, 65_535 + 18)? as u32)
            }
            "mbcache" => o.fwd.mbcache = number(name, v, 0, 512)? as u32,
            "forward-mode" => {
                o.fwd.mode = forward_mode(v).ok_or_else(|| {
                    let names: Vec<&str> = FORWARD_MODES.iter().map(|m| m.name).collect();
                    format!(
                        "--forward-mode: unknown mode '{v}' (modes: {})",
                        names.join(", ")
                    )
                })?
            }
            "port-topology" => {
                o.fwd.topology = match v {
                    "paired" => Topology::Paired,
                    "chained" => Topology::Chained,
                    "loop" => Topology::Loop,
                    _ => {
                        return Err(format!(
                            "--port-topology: '{v}' is not one of paired, chained, loop"
                        ))
                    }
                }
            }
            "eth-peer" => {
                let (port, mac) = v
                    .split_once(',')
                    .ok_or_else(|| format!("--eth-peer: '{v}' is not N,XX:XX:XX:XX:XX:XX"))?;
                let port = number(name, port, 0, 1023)? as u16;
                let mac: MacAddr = mac.parse().map_err(|e| format!("--eth-peer: {e}"))?;
                o.fwd.eth_peers.push((port, mac));
            }
            "rss-ip" | "rss-udp" => {
                if !rss_chosen {
                    o.fwd.port.rss_hf = 0;
                    rss_chosen = true;
                }
                o.fwd.port.rss_hf |= if name == "rss-ip" {
                    RTE_ETH_RSS_IP
                } else {
                    RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP
                };
            }
            "stats-period" => o.stats_period = number(name, v, 0, 86400)?,
            "ct-max" => o.fwd.conntrack.max = number(name, v, 1, 1 << 31)? as usize,
            "ct-expect-max" => o.fwd.conntrack.expect_max = number(name, v, 1, 1 << 24)? as usize,
            "ct-helper" => {
                let loose = o.fwd.conntrack.helpers.ftp_loose;
                o.fwd.conntrack.helpers = crate::conntrack::HelperConfig::parse(v)
                    .map_err(|e| format!("--ct-helper: {e}"))?;
                o.fwd.conntrack.helpers.ftp_loose = loose;
            }
            "ct-liberal" => o.fwd.conntrack.tcp.be_liberal = true,
            "ct-checksum" => o.fwd.conntrack.checksum = on_off(name, v)?,
            "ct-acct" => o.fwd.conntrack.acct = on_off(name, v)?,
            "rules" => {
                let text = std::fs::read_to_string(v).map_err(|e| format!("--rules: {v}: {e}"))?;
                let set = crate::rules::RuleSet::parse(&text)
                    .map_err(|e| format!("--rules: {v}: {e}"))?;
                o.fwd.rules = std::sync::Arc::new(set);
                o.rules_path = Some(v.to_string());
            }
            "inside-ports" => {
                let ports = v
                    .split(',')
                    .map(|p| number(name, p, 0, 63).map(|p| p as u16))
                    .collect::<Result<Vec<_>, _>>()?;
                o.fwd.inside_ports = Some(ports);
            }
            "ct-ftp-loose" => o.fwd.conntrack.helpers.ftp_loose = true,
            "frag-max" => {
                let (d, f) = match v.split_once(',') {
                    Some((d, f)) => (d, Some(f)),
                    None => (v, None),
                };
                o.fwd.defrag.max_datagrams = number(name, d, 1, 1 << 20)? as usize;
                if let Some(f) = f {
                    // 65535 bytes in 8-byte pieces at most.
                    o.fwd.defrag.max_fragments = number(name, f, 1, 8192)? as usize;
                }
            }
            "frag-timeout" => {
                o.fwd.defrag.timeout = number(name, v, 1, 3600)? * crate::conntrack::SEC
            }
            "auto-start" => auto_start = true,
            "interactive" => o.interactive = true,
            "cmdline-file" => {
                std::fs::metadata(v).map_err(|e| format!("--cmdline-file: {v}: {e}"))?;
                o.cmdline_file = Some(v.to_string());
            }
            "record-core-cycles" => o.fwd.record_core_cycles = true,
            "record-burst-stats" => o.fwd.record_burst_stats = true,
            "sleep-max" => o.fwd.sleep_max_us = number(name, v, 0, 1_000_000)? as u32,
            "ct-events" => {
                if v.is_empty() {
                    return Err("--ct-events needs a file".into());
                }
                o.ct_events = Some(v.to_string());
                o.fwd.ct_events = true;
            }
            "idle-exit" => {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 86400.0)
                    .ok_or_else(|| {
                        format!("--idle-exit: '{v}' is not a number of seconds in (0, 86400]")
                    })?;
                o.idle_exit = Some(Duration::from_secs_f64(secs));
            }
            _ => unreachable!("every entry of FLAGS is handled"),
        }
    }
    if !rss_chosen && o.fwd.mode.tracks() {
        // Tracking spreads connections, not host pairs: hashing the ports
        // too keeps the many connections between two hosts apart.
        o.fwd.port.rss_hf = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
    }
    // Fragments are checked as the datagrams they make up.
    o.fwd.defrag.checksum = o.fwd.conntrack.checksum;
    // testpmd: with -i, forwarding waits for `start` unless --auto-start.
    o.fwd.start_paused = o.interactive && !auto_start;
    Ok(Parsed::Run(Box::new(o)))
}

fn number(flag: &str, v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "--{flag}: '{v}' is not a whole number from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_match_testpmd() {
        let o = run(&[]).unwrap();
        assert_eq!(o.fwd.nb_cores, 1);
        assert_eq!(o.fwd.burst, 32);
        assert_eq!(o.fwd.mbcache, 250);
        assert_eq!(o.fwd.mode.name, "io");
        assert_eq!(o.fwd.topology, Topology::Paired);
        assert_eq!(o.fwd.port.rss_hf, RTE_ETH_RSS_IP);
        assert_eq!(o.stats_period, 0);
    }

    #[test]
    fn both_value_forms() {
        let o = run(&[
            "--burst=64",
            "--nb-cores",
            "2",
            "--portmask=0x3",
            "--forward-mode",
            "macswap",
        ])
        .unwrap();
        assert_eq!(o.fwd.burst, 64);
        assert_eq!(o.fwd.nb_cores, 2);
        assert_eq!(o.fwd.portmask, Some(3));
        assert_eq!(o.fwd.mode.name, "macswap");
        let o = run(&[
            "--eth-peer=1,02:00:00:00:00:aa",
            "--rss-udp",
            "--idle-exit=0.5",
            "-a",
        ])
        .unwrap();
        assert_eq!(o.fwd.eth_peers, vec![(1, MacAddr([2, 0, 0, 0, 0, 0xaa]))]);
        assert_eq!(o.fwd.port.rss_hf, RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP);
        assert_eq!(o.idle_exit, Some(Duration::from_millis(500)));
        let o = run(&["--forward-mode=firewall"]).unwrap();
        assert_eq!(
            o.fwd.port.rss_hf,
            RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP
        );
        let o = run(&["--forward-mode=firewall", "--rss-ip"]).unwrap();
        assert_eq!(o.fwd.port.rss_hf, RTE_ETH_RSS_IP);
    }

    #[test]
    fn bad_input_is_one_line_error() {
        for bad in [
            &["--bogus"][..],
            &["--burst=0"],
            &["--burst=513"],
            &["--burst=x"],
            &["--burst"],
            &["--portmask=0"],
            &["--portmask=zz"],
            &["--forward-mode=nat"],
            &["--port-topology=ring"],
            &["--eth-peer=1"],
            &["--eth-peer=1,02:00"],
            &["--record-core-cycles=1"],
            &["--idle-exit=-1"],
            &["--ct-max=0"],
            &["--ct-expect-max=0"],
            &["--sleep-max=2000000"],
            &["--ct-helper=gopher:70"],
            &["--ct-liberal=yes"],
            &["--inside-ports=0,x"],
            &["--rules=/nonexistent/rules"],
            &["--ct-checksum=maybe"],
            &["--ct-acct=yes"],
            &["--ct-timeout-tcp-bogus=5"],
            &["--ct-timeout-udp=0"],
            &["--ct-timeout-udp"],
            &["--mbuf-size=191"],
            &["--mbuf-size=70000"],
            &["--max-pkt-len=63"],
            &["--cmdline-file=/nonexistent/commands"],
            &["stray"],
        ] {
            let e = run(bad).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(!e.contains('\n') && !e.is_empty(), "{bad:?}: {e}");
        }
    }

    #[test]
    fn counters_are_off_unless_asked_for() {
        assert!(!run(&[]).unwrap().fwd.conntrack.acct);
        assert!(run(&["--ct-acct=on"]).unwrap().fwd.conntrack.acct);
        assert!(!run(&["--ct-acct=off"]).unwrap().fwd.conntrack.acct);
    }

    #[test]
    fn interactive_waits_for_start_unless_auto_start() {
        let o = run(&["-i"]).unwrap();
        assert!(o.interactive && o.fwd.start_paused);
        let o = run(&["--interactive", "--auto-start"]).unwrap();
        assert!(o.interactive && !o.fwd.start_paused);
        assert!(!run(&[]).unwrap().fwd.start_paused);
    }

    #[test]
    fn timeouts() {
        let o = run(&[
            "--ct-timeout-tcp-established=3600",
            "--ct-timeout-udp-stream",
            "90",
            "--ct-timeout-tcp-time_wait=5",
        ])
        .unwrap();
        assert_eq!(o.fwd.conntrack.tcp.timeouts.established, 3600);
        assert_eq!(o.fwd.conntrack.tcp.timeouts.time_wait, 5);
        assert_eq!(o.fwd.conntrack.timeouts.udp_stream, 90);
        assert_eq!(o.fwd.conntrack.timeouts.udp, 30);
    }

    #[test]
    fn help_lists_every_flag_and_mode() {
        assert!(matches!(parse(&["--help".into()]), Ok(Parsed::Help)));
        let u = usage();
        for f in FLAGS {
            assert!(u.contains(&format!("--{}", f.name)), "{}", f.name);
        }
        for m in FORWARD_MODES {
            assert!(u.contains(m.name));
        }
    }
}
