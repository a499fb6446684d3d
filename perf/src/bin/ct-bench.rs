//! The connection tracker alone, on one core: cycles per packet for
//! established lookups over 1k..4M connections (64-byte UDP and TCP, both
//! directions, random order), for new-connection setup with confirm, and
//! for a 50/50 mix. Each burst of 32 frames is written outside the timed
//! region; the timed region is what a worker does per burst: parse and hash
//! (classify) and prefetch the buckets for the burst, then per packet the
//! prefetch of a later packet's connection, ingress and egress (confirm),
//! and a little expiry work. The `flood` case opens
//! 30,000 IPv6 connections whose sources are crafted against the table's
//! hash (see `Tuple::hash`) and as many ordinary ones: the two must cost
//! the same. The `expect` case opens new connections with and without
//! 1,000 pending expectations, which every new connection looks through.
//! The `nat` case opens new connections with and without source NAT to a
//! range of 64 addresses (the mapping chosen and checked unique).
//!
//! usage: ct-bench [--conns 1000,100000,1000000,4000000] [--packets N]
//!                 [--cases established,new,mixed,flood,expect,nat]
//!                 [--protos udp,tcp,udp6,tcpts] (of the established case;
//!                 tcpts: TCP with the options Linux sends, not by default)

use std::time::{Duration, Instant};

use ctfwd::conntrack::{
    Classified, Config, CtInfo, Expectation, Helper, Manip, MasterRef, NatRange, Shard, Tuple,
    Verdict, SEC,
};
use ctfwd::dataplane::cpu::{advise_huge_pages, prefetch, tsc, tsc_hz};
use ctfwd::synth::{frame, ip_packet, udp, xorshift, Tcp};
use ctfwd::wire::{parse_frame, Addr, Frame, LinkType, TCP_ACK, TCP_SYN};

const BURST: usize = 32;
/// IPv4 frames are 60 bytes on the wire (64 with the FCS), IPv6 ones 62.
/// TCP with options as Linux sends it (`tcpts`): 66 for a segment with
/// timestamps, 74 for a SYN.
const FRAME: usize = 60;
const FRAME6: usize = 62;
/// Room for the longest frame, a `tcpts` SYN; two cache lines, as one
/// was before that case came.
const BUF: usize = 128;
/// The low word of the IPv6 sources in the `flood` case: the public
/// constant the hash used to XOR into a multiply's operand, which made all
/// such sources of one /48 collide.
const CRAFTED_IID: u64 = 0x9E37_79B9_7F4A_7C15;
const GC_BUDGET: usize = 16;
/// The clock when connections are set up.
const SETUP_TIME: u64 = 1_000 * SEC;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Udp,
    /// A bare header: no options.
    Tcp,
    /// As Linux stacks send it: the handshake's SYNs with MSS,
    /// SACK-permitted, timestamps and window scale, every later segment
    /// with a timestamp (RFC 7323's appendix A layout).
    TcpTs,
    /// UDP over IPv6 from 2001:2:0:SUBNET:IID, the interface id `CRAFTED_IID`
    /// or (not crafted) a different one per connection.
    Udp6 {
        crafted: bool,
    },
}

/// Frame templates, patched per packet with the connection's addresses.
struct Templates {
    udp: [u8; BUF],
    tcp: [u8; BUF],
    /// `Proto::TcpTs`'s SYN and later segments, with their lengths.
    tcp_syn: ([u8; BUF], usize),
    tcp_ts: ([u8; BUF], usize),
    udp6: [u8; BUF],
}

impl Templates {
    fn new() -> Templates {
        let a = "198.18.0.1".parse().unwrap();
        let b = "198.19.0.1".parse().unwrap();
        let mut udp_t = [0u8; BUF];
        let f = frame(&ip_packet(a, b, 17, &[], &udp(1, 80, &[0; 18])), &[]);
        udp_t[..FRAME].copy_from_slice(&f);
        let mut udp6_t = [0u8; BUF];
        let (a6, b6) = (
            "2001:2::1".parse().unwrap(),
            "2001:2:0:3::1".parse().unwrap(),
        );
        let f = frame(&ip_packet(a6, b6, 17, &[], &udp(1, 80, &[])), &[]);
        udp6_t[..FRAME6].copy_from_slice(&f);
        let seg = Tcp {
            sport: 1,
            dport: 80,
            flags: TCP_ACK,
            window: 65535,
            ..Tcp::default()
        };
        // The segment with `options`, as a frame (Ethernet pads the bare
        // header's 54 bytes to 60), and its length.
        let with = |options: &[u8]| {
            let seg = Tcp { options, ..seg };
            let f = frame(&ip_packet(a, b, 6, &[], &seg.bytes(&[])), &[]);
            let mut t = [0u8; BUF];
            t[..f.len()].copy_from_slice(&f);
            (t, f.len())
        };
        // MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
        let syn_options = [
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let ts_options = [1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1];
        Templates {
            udp: udp_t,
            tcp: with(&[]).0,
            tcp_syn: with(&syn_options),
            tcp_ts: with(&ts_options),
            udp6: udp6_t,
        }
    }

    /// Writes packet `p` (of connection `p.conn`) into `buf`; its length.
    fn write(&self, buf: &mut [u8; BUF], proto: Proto, p: &Pkt) -> usize {
        let (i, reply) = (p.conn, p.reply);
        if let Proto::Udp6 { crafted } = proto {
            return self.write6(buf, crafted, i, reply);
        }
        let (template, len) = match proto {
            Proto::Udp => (&self.udp, FRAME),
            Proto::TcpTs if p.flags & TCP_SYN != 0 => (&self.tcp_syn.0, self.tcp_syn.1),
            Proto::TcpTs => (&self.tcp_ts.0, self.tcp_ts.1),
            _ => (&self.tcp, FRAME),
        };
        *buf = *template;
        let client = [198, 18, (i >> 8) as u8, i as u8];
        let server = [198, 19, (i >> 24) as u8, 1];
        let cport = (1024 + (i >> 16)) as u16;
        let (src, dst, sp, dp) = if reply {
            (server, client, 80, cport)
        } else {
            (client, server, cport, 80)
        };
        buf[26..30].copy_from_slice(&src);
        buf[30..34].copy_from_slice(&dst);
        buf[34..36].copy_from_slice(&sp.to_be_bytes());
        buf[36..38].copy_from_slice(&dp.to_be_bytes());
        if proto != Proto::Udp {
            buf[38..42].copy_from_slice(&p.seq.to_be_bytes());
            buf[42..46].copy_from_slice(&p.ack.to_be_bytes());
            buf[47] = p.flags;
        }
        len
    }

    /// A packet of IPv6 connection `i`: from 2001:2:0:SUBNET:IID port
    /// 40000+ to 2001:2:0:3::1 port 80, the subnet and port from `i`, or
    /// the `reply` back. Checksums are left as they are: the benchmark's
    /// shards do not check them (`Config::checksum` is off).
    fn write6(&self, buf: &mut [u8; BUF], crafted: bool, i: u32, reply: bool) -> usize {
        let iid = if crafted {
            CRAFTED_IID
        } else {
            u64::from(i).wrapping_mul(0x2545_F491_4F6C_DD1D) | 1
        };
        *buf = self.udp6;
        let net = 0x2001_0002_0000_0000 | u64::from(i & 0xffff);
        let port = (40_000 + (i >> 16) as u16).to_be_bytes();
        if reply {
            buf.copy_within(38..54, 22);
            buf.copy_within(56..58, 54);
            buf[38..46].copy_from_slice(&net.to_be_bytes());
            buf[46..54].copy_from_slice(&iid.to_be_bytes());
            buf[56..58].copy_from_slice(&port);
        } else {
            buf[22..30].copy_from_slice(&net.to_be_bytes());
            buf[30..38].copy_from_slice(&iid.to_be_bytes());
            buf[54..56].copy_from_slice(&port);
        }
        FRAME6
    }
}

/// What a packet of the stream is.
#[derive(Clone, Copy)]
struct Pkt {
    conn: u32,
    reply: bool,
    flags: u8,
    seq: u32,
    ack: u32,
}

struct Run {
    packets: u64,
    cycles: u64,
    /// Of `cycles`, those spent parsing and hashing (classify).
    classify_cycles: u64,
    wall: Duration,
    new: u64,
    invalid: u64,
}

/// Runs `pkts` through `shard` in bursts; times the tracker's part only.
fn run(
    shard: &mut Shard,
    t: &Templates,
    proto: Proto,
    now: u64,
    pkts: &mut impl Iterator<Item = Pkt>,
) -> Run {
    run_nat(shard, t, proto, now, pkts, None)
}

/// `run`, binding source NAT to `snat` on each new connection.
fn run_nat(
    shard: &mut Shard,
    t: &Templates,
    proto: Proto,
    now: u64,
    pkts: &mut impl Iterator<Item = Pkt>,
    snat: Option<&NatRange>,
) -> Run {
    let mut bufs = [[0u8; BUF]; BURST];
    let mut lens = [0usize; BURST];
    let mut r = Run {
        packets: 0,
        cycles: 0,
        classify_cycles: 0,
        wall: Duration::ZERO,
        new: 0,
        invalid: 0,
    };
    loop {
        let mut n = 0;
        for ((buf, len), p) in bufs.iter_mut().zip(&mut lens).zip(&mut *pkts) {
            *len = t.write(buf, proto, &p);
            n += 1;
        }
        if n == 0 {
            return r;
        }
        track_burst(shard, &bufs[..n], &lens[..n], now, snat, &mut r);
        r.packets += n as u64;
    }
}

/// The timed part of a burst: what a worker does with it. Never inlined,
/// so that `perf/bench-misses` can count this function alone.
#[inline(never)]
fn track_burst(
    shard: &mut Shard,
    bufs: &[[u8; BUF]],
    lens: &[usize],
    now: u64,
    snat: Option<&NatRange>,
    r: &mut Run,
) {
    // On the stack, as the workers' chunk is: no allocation per burst.
    let mut slots: [Option<Classified<'_>>; BURST] = [None; BURST];
    let w0 = Instant::now();
    let c0 = tsc();
    let mut n = 0;
    for (buf, &len) in bufs.iter().zip(lens) {
        if let Ok(Frame::Ip(ip)) = parse_frame(LinkType::Ethernet, &buf[..len], len) {
            // Filled in place, as the workers' chunks are: built aside and
            // moved in, the record's copy cost 35 instructions a packet.
            let c = slots[n].insert(Classified::EMPTY);
            shard.classify_into(c, &ip, 0);
            n += 1;
        }
    }
    r.classify_cycles += tsc() - c0;
    let classified = &mut slots[..n];
    // The data plane's order (`Stages::ct_prepare` and `ct_in`): every
    // bucket first, then each connection `PREFETCH_AHEAD` lookups early.
    for c in classified.iter().flatten() {
        shard.prefetch_bucket(c, prefetch);
    }
    for c in classified.iter_mut().take(Shard::PREFETCH_AHEAD).flatten() {
        shard.prefetch_candidate(c, prefetch);
    }
    // Ingress for the whole burst before any egress, as `Stages::track`
    // runs `ct_in` over a chunk before `confirm`: a burst's new
    // connections are all unconfirmed together.
    let mut verdicts: [Option<Verdict>; BURST] = [const { None }; BURST];
    for i in 0..classified.len() {
        if let Some(Some(ahead)) = classified.get_mut(i + Shard::PREFETCH_AHEAD) {
            shard.prefetch_candidate(ahead, prefetch);
        }
        let Some(c) = &classified[i] else { continue };
        let mut v = shard.ingress(c, now);
        r.new += u64::from(v.ctinfo == CtInfo::New && v.unconfirmed.is_some());
        if let Some(range) = snat {
            if shard.nat(&mut v, Manip::Src, range).is_err() {
                r.invalid += 1;
            }
        }
        r.invalid += u64::from(v.ctinfo == CtInfo::Invalid);
        verdicts[i] = Some(v);
    }
    for (v, c) in verdicts.iter_mut().zip(classified.iter()) {
        if let (Some(v), Some(c)) = (v, c) {
            let _ = shard.egress(v, c, now);
        }
    }
    shard.reap_unconfirmed();
    shard.gc(now, GC_BUDGET);
    r.cycles += tsc() - c0;
    r.wall += w0.elapsed();
}

/// A table size that `n` connections leave below 95% (reckoned as Linux
/// does, `max / 100 * 95`): past that, expiry work
/// evicts connections not yet ASSURED (Linux's early drop above
/// `nf_conntrack_max95`), which would take half-open ones during set-up.
fn room_for(n: u32) -> usize {
    (n as usize + 100) * 20 / 19
}

/// Opens `n` connections (UDP: request and answer; TCP: handshake).
fn populate(shard: &mut Shard, t: &Templates, proto: Proto, n: u32) {
    let setup: Vec<Pkt> = match proto {
        Proto::Udp | Proto::Udp6 { .. } => vec![(false, 0), (true, 0)],
        Proto::Tcp | Proto::TcpTs => vec![
            (false, TCP_SYN),
            (true, TCP_SYN | TCP_ACK),
            (false, TCP_ACK),
        ],
    }
    .into_iter()
    .flat_map(|(reply, flags)| {
        (0..n).map(move |conn| {
            let (seq, ack) = match (reply, flags) {
                (false, TCP_SYN) => (1000, 0),
                (true, _) => (5000, 1001),
                _ => (1001, 5001),
            };
            Pkt {
                conn,
                reply,
                flags,
                seq,
                ack,
            }
        })
    })
    .collect();
    let r = run(shard, t, proto, SETUP_TIME, &mut setup.into_iter());
    assert_eq!(r.invalid, 0, "set-up packets must all be valid");
    assert_eq!(shard.table().len(), n as usize);
}

fn report(name: &str, r: &Run, hz: u64) {
    let cpp = r.cycles as f64 / r.packets as f64;
    println!(
        "{name:<48} {:>6.1} cycles/pkt ({:>5.1} parse+hash)  {:>6.2} Mpps/core (TSC)  {:>6.2} Mpps/core (wall)",
        cpp,
        r.classify_cycles as f64 / r.packets as f64,
        hz as f64 / cpp / 1e6,
        r.packets as f64 / r.wall.as_secs_f64() / 1e6
    );
}

fn main() {
    let mut conns = vec![1_000u32, 100_000, 1_000_000, 4_000_000];
    let mut packets: u64 = 20_000_000;
    let mut cases = String::from("established,new,mixed,flood,expect,nat");
    let mut protos = String::from("udp,tcp,udp6");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--conns" => {
                conns = it
                    .next()
                    .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default()
            }
            "--packets" => packets = it.next().and_then(|v| v.parse().ok()).unwrap_or(packets),
            "--cases" => cases = it.next().cloned().unwrap_or_default(),
            "--protos" => protos = it.next().cloned().unwrap_or_default(),
            _ => {
                eprintln!("usage: ct-bench [--conns 1000,100000,...] [--packets N] [--cases established,new,mixed,flood,expect,nat] [--protos udp,tcp,udp6,tcpts]");
                std::process::exit(2);
            }
        }
    }
    let hz = tsc_hz(Duration::from_millis(200));
    let t = Templates::new();
    println!(
        "TSC {:.0} MHz, burst {BURST}, {FRAME}-byte frames ({FRAME6} for IPv6), {packets} packets per case",
        hz as f64 / 1e6
    );

    let established = if cases.contains("established") {
        &conns[..]
    } else {
        &[]
    };
    let udp6 = Proto::Udp6 { crafted: false };
    let protos_named = [
        (Proto::Udp, "udp"),
        (Proto::Tcp, "tcp"),
        (udp6, "udp6"),
        (Proto::TcpTs, "tcpts"),
    ];
    for (proto, name) in protos_named {
        if !protos.split(',').any(|p| p == name) {
            continue;
        }
        for &n in established {
            let mut shard = Shard::new(Config {
                max: room_for(n),
                advise_memory: Some(advise_huge_pages),
                ..Config::default()
            });
            populate(&mut shard, &t, proto, n);
            let mut rng = xorshift(0x9E37_79B9_7F4A_7C15 ^ u64::from(n));
            let mut stream = (0..packets).map(|_| {
                let x = rng();
                let reply = x & 1 == 1;
                let (seq, ack) = if reply { (5001, 1001) } else { (1001, 5001) };
                Pkt {
                    conn: ((x >> 1) % u64::from(n)) as u32,
                    reply,
                    flags: TCP_ACK,
                    seq,
                    ack,
                }
            });
            // Established traffic runs 10 s after the set-up: UDP flows turn into
            // streams (ASSURED) on their first later reply, as long-lived flows do.
            let r = run(&mut shard, &t, proto, SETUP_TIME + 10 * SEC, &mut stream);
            assert_eq!((r.new, r.invalid), (0, 0), "established packets only");
            // Bytes per slot: what a table sized for `max` costs each
            // connection when full.
            let mem = shard.memory() as f64;
            report(
                &format!(
                    "established {name} {n} conns ({:.0} B/conn)",
                    mem / shard.table().capacity() as f64
                ),
                &r,
                hz,
            );
        }
    }

    if cases.contains("new") {
        bench_new(&t, packets, hz);
    }
    if cases.contains("mixed") {
        bench_mixed(&t, packets, hz);
    }
    if cases.contains("flood") {
        bench_flood(&t, hz);
    }
    if cases.contains("expect") {
        bench_expect(&t, packets, hz);
    }
    if cases.contains("nat") {
        bench_nat(&t, packets, hz);
    }
}

/// New UDP connections without and with source NAT to 64 addresses
/// (about a quarter of each address's ports in use by the end, so the
/// client's port is mostly taken and searched past). Alternating rounds,
/// best of three.
fn bench_nat(t: &Templates, packets: u64, hz: u64) {
    const ROUNDS: usize = 3;
    let n_new = packets.min(1_000_000) as u32;
    let range = NatRange {
        min_addr: Addr::v4([198, 19, 255, 1]),
        max_addr: Addr::v4([198, 19, 255, 64]),
        ports: None,
        persistent: false,
        random: false,
    };
    let mut best: [Option<Run>; 2] = [None, None];
    for _ in 0..ROUNDS {
        for (k, snat) in [None, Some(&range)].into_iter().enumerate() {
            let mut shard = Shard::new(Config {
                max: n_new as usize,
                advise_memory: Some(advise_huge_pages),
                ..Config::default()
            });
            let mut stream = originals(n_new);
            let r = run_nat(&mut shard, t, Proto::Udp, SETUP_TIME, &mut stream, snat);
            assert_eq!((r.new, r.invalid), (u64::from(n_new), 0));
            keep_best(&mut best[k], r);
        }
    }
    let [Some(plain), Some(nat)] = best else {
        unreachable!("every round runs both")
    };
    report(
        &format!("new udp connections ({n_new}), no NAT"),
        &plain,
        hz,
    );
    report(
        &format!("new udp connections ({n_new}), SNAT to 64 addresses"),
        &nat,
        hz,
    );
    println!(
        "with/without source NAT (best of {ROUNDS}): {:.2}",
        nat.cycles as f64 / plain.cycles as f64
    );
}

/// New UDP connections with no expectation pending and with 1,000 (a
/// helper's announcements that these connections do not match, as on a
/// busy FTP or TFTP server): every new connection looks in the shared set,
/// which must cost the same either way. Alternating rounds, best of three.
fn bench_expect(t: &Templates, packets: u64, hz: u64) {
    const PENDING: u32 = 1_000;
    const ROUNDS: usize = 3;
    let n_new = packets.min(2_000_000) as u32;
    let mut best: [Option<Run>; 2] = [None, None];
    for _ in 0..ROUNDS {
        for (k, pending) in [0, PENDING].into_iter().enumerate() {
            let mut shard = Shard::new(Config {
                max: n_new as usize,
                advise_memory: Some(advise_huge_pages),
                prefault: true,
                ..Config::default()
            });
            for i in 0..pending {
                let e = Expectation {
                    tuple: Tuple {
                        src: Addr::v4([198, 19, 255, i as u8]),
                        dst: Addr::v4([198, 18, 255, 1]),
                        sport: 0,
                        dport: 2000 + i as u16,
                        proto: 17,
                        family: 4,
                        zone: 0,
                    },
                    any_source_port: true,
                    master: MasterRef {
                        shard: 0,
                        id: i + 1,
                    },
                    helper: Helper::Tftp,
                    deadline: SETUP_TIME + 300 * SEC,
                    created: SETUP_TIME,
                    nat: None,
                };
                shard.expect(e, 1).expect("room for the expectations");
            }
            let mut stream = originals(n_new);
            let r = run(&mut shard, t, Proto::Udp, SETUP_TIME, &mut stream);
            assert_eq!(r.new, u64::from(n_new));
            assert_eq!(shard.expectations().len(), pending as usize);
            keep_best(&mut best[k], r);
        }
    }
    let [Some(none), Some(some)] = best else {
        unreachable!("every round runs both")
    };
    report(
        &format!("new udp connections ({n_new}), no expectation"),
        &none,
        hz,
    );
    report(
        &format!("new udp connections ({n_new}), {PENDING} expected"),
        &some,
        hz,
    );
    println!(
        "with/without pending expectations (best of {ROUNDS}): {:.2}",
        some.cycles as f64 / none.cycles as f64
    );
}

/// New IPv6 connections from one /48: 30,000 ordinary ones and as many
/// crafted against the hash, each set into a fresh table, in turn for three
/// rounds; the best round of each is reported. Before the hash keyed every
/// operand the crafted set cost hundreds of times as much (issue 12).
fn bench_flood(t: &Templates, hz: u64) {
    const N: u32 = 30_000;
    const ROUNDS: usize = 3;
    let mut best: [Option<Run>; 2] = [None, None];
    for _ in 0..ROUNDS {
        for crafted in [false, true] {
            let mut shard = Shard::new(Config {
                max: N as usize,
                ..Config::default()
            });
            let mut stream = originals(N);
            let r = run(
                &mut shard,
                t,
                Proto::Udp6 { crafted },
                SETUP_TIME,
                &mut stream,
            );
            assert_eq!(r.new, u64::from(N));
            keep_best(&mut best[usize::from(crafted)], r);
        }
    }
    let [Some(ordinary), Some(crafted)] = best else {
        unreachable!("every round runs both sets")
    };
    report(
        &format!("new udp6 connections ({N}, ordinary sources)"),
        &ordinary,
        hz,
    );
    report(
        &format!("new udp6 connections ({N}, crafted sources)"),
        &crafted,
        hz,
    );
    println!(
        "crafted/ordinary (best of {ROUNDS}): {:.2}",
        crafted.cycles as f64 / ordinary.cycles as f64
    );
}

/// The first packets of connections 0..n, one each.
fn originals(n: u32) -> impl Iterator<Item = Pkt> {
    (0..n).map(|conn| Pkt {
        conn,
        reply: false,
        flags: 0,
        seq: 0,
        ack: 0,
    })
}

/// Keeps the faster of two runs (rounds of a comparison).
fn keep_best(best: &mut Option<Run>, r: Run) {
    if best.as_ref().is_none_or(|b| r.cycles < b.cycles) {
        *best = Some(r);
    }
}

/// New connections: every packet opens one (setup + confirm).
fn bench_new(t: &Templates, packets: u64, hz: u64) {
    let n_new = packets.min(4_000_000) as u32;
    let mut shard = Shard::new(Config {
        max: room_for(n_new),
        advise_memory: Some(advise_huge_pages),
        ..Config::default()
    });
    let mut stream = originals(n_new);
    let r = run(&mut shard, t, Proto::Udp, SETUP_TIME, &mut stream);
    assert_eq!(r.new, u64::from(n_new));
    report(
        &format!("new udp connections ({n_new}, setup+confirm)"),
        &r,
        hz,
    );
}

/// Half new, half established over 1M connections.
fn bench_mixed(t: &Templates, packets: u64, hz: u64) {
    let base = 1_000_000u32;
    let mixed = packets.min(4_000_000);
    let mut shard = Shard::new(Config {
        max: (base as u64 + mixed) as usize,
        advise_memory: Some(advise_huge_pages),
        ..Config::default()
    });
    populate(&mut shard, t, Proto::Udp, base);
    let mut rng = xorshift(42);
    let mut next_new = base;
    let mut stream = (0..mixed).map(|_| {
        let x = rng();
        if x & 1 == 0 {
            next_new += 1;
            Pkt {
                conn: next_new,
                reply: false,
                flags: 0,
                seq: 0,
                ack: 0,
            }
        } else {
            Pkt {
                conn: ((x >> 1) % u64::from(base)) as u32,
                reply: x & 2 == 2,
                flags: 0,
                seq: 0,
                ack: 0,
            }
        }
    });
    let r = run(&mut shard, t, Proto::Udp, SETUP_TIME, &mut stream);
    report(
        &format!("50% new udp over {base} conns ({mixed} packets)"),
        &r,
        hz,
    );
}
