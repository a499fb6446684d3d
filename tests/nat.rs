//! NAT end to end on two net_pcap ports (port 0 inside, port 1 outside):
//! the rules file of the NAT issue, and frames out compared byte for byte
//! with frames built translated from scratch (so every checksum the
//! incremental updates left must equal a full computation's).

#![cfg(feature = "dpdk")]

mod common;

use common::*;
use ctfwd::synth::{frame, icmp, ip_packet};

/// The example, which must be accepted exactly, and a rule whose
/// range has one port, to be exhausted.
const RULES: &str = "\
in-port 0 ip saddr 198.18.0.1 snat to 198.18.0.100
in-port 1 ip daddr 198.18.0.200 tcp dport 8080 dnat to 198.18.0.1:80
in-port 1 ct status dnat accept
in-port 0 ip saddr 198.18.0.2 udp snat to 198.18.0.101:7000
";

fn arp() -> Vec<u8> {
    ctfwd::synth::arp_request("198.19.0.1".parse().unwrap(), "198.18.0.1".parse().unwrap())
}

/// A port unreachable from `from` to `to`, quoting a whole UDP datagram.
fn unreachable(from: &str, to: &str, q_src: &str, q_dst: &str, payload: &[u8]) -> Vec<u8> {
    let (s, d): (std::net::SocketAddr, std::net::SocketAddr) =
        (q_src.parse().unwrap(), q_dst.parse().unwrap());
    let quoted = ip_packet(
        s.ip(),
        d.ip(),
        17,
        &[],
        &ctfwd::synth::udp(s.port(), d.port(), payload),
    );
    frame(
        &ip_packet(
            from.parse().unwrap(),
            to.parse().unwrap(),
            1,
            &[],
            &icmp(3, 3, 0, 0, &quoted),
        ),
        &[],
    )
}

fn echo(src: &str, dst: &str, ty: u8, id: u16) -> Vec<u8> {
    frame(
        &ip_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            1,
            &[],
            &icmp(ty, 0, id, 1, b"ping"),
        ),
        &[],
    )
}

#[test]
fn snat_dnat_and_an_exhausted_range() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("rules"), RULES).unwrap();
    // With --burst=1 the worker takes one frame from port 0, then one from
    // port 1: the files interleave by position, so each answer comes after
    // what it answers.
    let inside = [
        udp_pkt("198.18.0.1:5000", "198.19.0.1:53", b"query"),
        arp(),
        tcp_pkt(
            "198.18.0.1:80",
            "198.19.0.9:40000",
            7000,
            1001,
            SYN | ACK,
            b"",
        ),
        udp_pkt("198.18.0.2:5000", "198.19.0.1:53", b"first"),
        udp_pkt("198.18.0.2:5001", "198.19.0.1:53", b"second"),
        echo("198.18.0.1", "198.19.0.1", 8, 77),
    ];
    let outside = [
        udp_pkt("198.19.0.1:53", "198.18.0.100:5000", b"answer"),
        tcp_pkt("198.19.0.9:40000", "198.18.0.200:8080", 1000, 0, SYN, b""),
        arp(),
        arp(),
        arp(),
        arp(),
        echo("198.19.0.1", "198.18.0.100", 0, 77),
        // The server says its port is closed, quoting what it received.
        unreachable(
            "198.19.0.1",
            "198.18.0.100",
            "198.18.0.100:5000",
            "198.19.0.1:53",
            b"query",
        ),
    ];
    write_pcap(&p("inside.pcap"), &inside);
    write_pcap(&p("outside.pcap"), &outside);
    let vdevs = [
        pcap_vdev(0, &[p("inside.pcap")], &[p("to-inside.pcap")]),
        pcap_vdev(1, &[p("outside.pcap")], &[p("to-outside.pcap")]),
    ];
    let rules = format!("--rules={}", p("rules").display());
    let o = run(
        &eal_args("nat", "0@0,1@1", &vdevs),
        &[
            "--forward-mode=firewall",
            "--idle-exit=0.5",
            "--burst=1",
            &rules,
        ],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    let to_outside = read_pcap(&p("to-outside.pcap"));
    let to_inside = read_pcap(&p("to-inside.pcap"));
    let ip_frames = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
        v.iter()
            .filter(|f| f[12..14] == [0x08, 0x00])
            .cloned()
            .collect()
    };
    assert_eq!(
        ip_frames(&to_outside),
        [
            // The client's port was free: kept.
            udp_pkt("198.18.0.100:5000", "198.19.0.1:53", b"query"),
            // The server's SYN-ACK leaves from the forwarded address.
            tcp_pkt(
                "198.18.0.200:8080",
                "198.19.0.9:40000",
                7000,
                1001,
                SYN | ACK,
                b""
            ),
            udp_pkt("198.18.0.101:7000", "198.19.0.1:53", b"first"),
            // The echo's identifier was free: kept.
            echo("198.18.0.100", "198.19.0.1", 8, 77),
        ],
        "{out}"
    );
    assert_eq!(
        ip_frames(&to_inside),
        [
            udp_pkt("198.19.0.1:53", "198.18.0.1:5000", b"answer"),
            tcp_pkt("198.19.0.9:40000", "198.18.0.1:80", 1000, 0, SYN, b""),
            echo("198.19.0.1", "198.18.0.1", 0, 77),
            // ...and the inside host reads it about its own datagram.
            unreachable(
                "198.19.0.1",
                "198.18.0.1",
                "198.18.0.1:5000",
                "198.19.0.1:53",
                b"query"
            ),
        ],
        "{out}"
    );
    // The second client of the one-port rule found its range used.
    assert_eq!(core_sum(&out, "dropped:", "nat="), 1, "{out}");
    assert!(
        out.contains("NAT rules: line 1 exhausted=0, line 2 exhausted=0, line 4 exhausted=1"),
        "{out}"
    );
}

#[test]
fn bad_nat_rules_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, why) in [
        (
            "accept\nsnat to 198.18.0.100:80",
            "line 2: a port in a NAT mapping needs a 'tcp' or 'udp' match",
        ),
        (
            "ip6 saddr 2001:2::1 snat to 198.18.0.1",
            "line 1: the mapping is IPv4 but the rule matches IPv6",
        ),
        (
            "dnat to 198.18.0.9-198.18.0.1",
            "line 1: '198.18.0.9-198.18.0.1' is an empty address range",
        ),
        (
            "snat to 198.18.0.1 sticky",
            "line 1: unknown NAT flag 'sticky'",
        ),
        (
            "snat 198.18.0.1",
            "line 1: 'snat' and 'dnat' are followed by 'to ADDRESS'",
        ),
    ] {
        let path = dir.path().join("rules");
        std::fs::write(&path, text).unwrap();
        let o = run(
            &eal_args(
                "nat-bad",
                "0@0,1@0",
                &["net_null0".into(), "net_null1".into()],
            ),
            &[
                "--forward-mode=firewall",
                &format!("--rules={}", path.display()),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(stderr(&o).contains(why), "{text}: {}", stderr(&o));
    }
}

/// Reads a pcap stream (a FIFO that ctfwd's net_pcap port writes), calling
/// `f` with each frame until the writer closes it.
fn each_frame(path: &std::path::Path, mut f: impl FnMut(Vec<u8>)) {
    use std::io::Read;
    let mut r = std::fs::File::open(path).unwrap();
    let mut header = [0u8; 24];
    if r.read_exact(&mut header).is_err() {
        return;
    }
    let mut rec = [0u8; 16];
    while r.read_exact(&mut rec).is_ok() {
        let len = u32::from_le_bytes(rec[8..12].try_into().unwrap()) as usize;
        let mut data = vec![0; len];
        if r.read_exact(&mut data).is_err() {
            return;
        }
        f(data);
    }
}

/// Source NAT with two workers, with input steered as a NIC's RSS would
/// steer it: each port has a queue per worker and each queue carries the
/// packets whose connections that worker owns (the software owner table
/// ctfwd uses on vdevs). The answers depend on the ports ctfwd chooses, so
/// a reflector reads what port 1 sends (FIFOs), answers each request, and
/// writes the answer to the queue of port 1 its owner polls. Every
/// translated reply tuple must land on the worker that made it: nothing is
/// handed over, and every answer reaches its client.
#[test]
fn translated_replies_land_on_their_owner() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use ctfwd::capture::PcapWriter;
    use ctfwd::conntrack::steering::{HashFields, Owners, Steering};
    use ctfwd::conntrack::Tuple;

    const CLIENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(
        p("rules"),
        "in-port 0 ip saddr 198.18.0.0/16 snat to 198.18.0.100\n",
    )
    .unwrap();
    let steering = Steering::new(Arc::new(Owners::new(None, 2)), HashFields::ALL, 0);
    let udp = |src: &str, dst: &str| Tuple::between(src.parse().unwrap(), dst.parse().unwrap(), 17);
    let mut requests = [Vec::new(), Vec::new()];
    for i in 0..CLIENTS {
        let client = format!("198.18.{}.{}:{}", 1 + i / 200, i % 200 + 1, 20_000 + i);
        let q = steering.owner(&udp(&client, "198.19.0.1:53"));
        requests[usize::from(q)].push(udp_pkt(&client, "198.19.0.1:53", b"query"));
    }
    write_pcap(&p("in0q0.pcap"), &requests[0]);
    write_pcap(&p("in0q1.pcap"), &requests[1]);
    for f in ["in1q0", "in1q1", "out1w0", "out1w1"] {
        let c = std::ffi::CString::new(p(f).to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    // The reflector: the answers' writers open (and block) until ctfwd
    // opens the FIFOs to read, its readers until ctfwd opens them to write.
    let writers: Arc<Mutex<Vec<Option<PcapWriter<std::fs::File>>>>> =
        Arc::new(Mutex::new(vec![None, None]));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for q in 0..2 {
        let (writers, path) = (Arc::clone(&writers), p(&format!("in1q{q}")));
        threads.push(std::thread::spawn(move || {
            let w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
            writers.lock().unwrap()[q] = Some(w);
        }));
    }
    for w in 0..2 {
        let (writers, answered, steering) = (
            Arc::clone(&writers),
            Arc::clone(&answered),
            steering.clone(),
        );
        let path = p(&format!("out1w{w}"));
        threads.push(std::thread::spawn(move || {
            each_frame(&path, |f| {
                // 198.18.0.100:P -> 198.19.0.1:53 becomes the answer.
                let nat_port = u16::from_be_bytes([f[34], f[35]]);
                let nat = format!("198.18.0.100:{nat_port}");
                let q = usize::from(steering.owner(&udp("198.19.0.1:53", &nat)));
                let answer = udp_pkt("198.19.0.1:53", &nat, b"answer");
                loop {
                    let mut ws = writers.lock().unwrap();
                    if let Some(w) = ws[q].as_mut() {
                        w.write(0, &answer).unwrap();
                        break;
                    }
                    drop(ws);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                answered.fetch_add(1, Ordering::Relaxed);
            });
        }));
    }
    // Once every request is answered (or after a while, if some never
    // were), the answers' FIFOs close, which ctfwd reads as their end.
    let closer = {
        let (writers, answered) = (Arc::clone(&writers), Arc::clone(&answered));
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while answered.load(Ordering::Relaxed) < CLIENTS && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            writers.lock().unwrap().iter_mut().for_each(|w| *w = None);
        })
    };
    let vdevs = [
        pcap_vdev(
            0,
            &[p("in0q0.pcap"), p("in0q1.pcap")],
            &[p("out0w0.pcap"), p("out0w1.pcap")],
        ),
        pcap_vdev(1, &[p("in1q0"), p("in1q1")], &[p("out1w0"), p("out1w1")]),
    ];
    let rules = format!("--rules={}", p("rules").display());
    let o = run(
        &eal_args("nat-shard", "0@0,1@0,2@1", &vdevs),
        &[
            "--forward-mode=firewall",
            "--nb-cores=2",
            "--rxq=2",
            "--txq=2",
            "--idle-exit=1",
            &rules,
        ],
    );
    closer.join().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(out.contains("RX P=0/Q=0 -> TX P=1/Q=0"), "{out}");
    assert!(out.contains("RX P=1/Q=0 -> TX P=0/Q=0"), "{out}");
    assert!(out.contains("RX P=0/Q=1 -> TX P=1/Q=1"), "{out}");
    assert_eq!(answered.load(Ordering::Relaxed), CLIENTS, "{out}");
    assert_eq!(core_sum(&out, "handoff:", "handoff_tx="), 0, "{out}");
    assert_eq!(core_sum(&out, "dropped:", "new-from-outside="), 0, "{out}");
    let mut back: Vec<Vec<u8>> = read_pcap(&p("out0w0.pcap"));
    back.extend(read_pcap(&p("out0w1.pcap")));
    assert_eq!(back.len(), CLIENTS, "{out}");
    // Each answer reached the client that asked, untranslated.
    let mut want: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| {
            let client = format!("198.18.{}.{}:{}", 1 + i / 200, i % 200 + 1, 20_000 + i);
            udp_pkt("198.19.0.1:53", &client, b"answer")
        })
        .collect();
    want.sort();
    back.sort();
    assert_eq!(back, want);
}

/// A fragmented datagram of a translated connection: each fragment leaves
/// with the translated addresses, the first with the translated port and
/// the datagram's UDP checksum adjusted, as the fragments of the datagram
/// built translated would be.
#[test]
fn fragments_of_a_translated_datagram_are_each_rewritten() {
    use ctfwd::synth::{fragments, udp};
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(
        p("rules"),
        "in-port 0 ip saddr 198.18.0.1 snat to 198.18.0.100\n",
    )
    .unwrap();
    let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let datagram = |src: &str| {
        ip_packet(
            src.parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            17,
            &[],
            &udp(5000, 53, &payload),
        )
    };
    let pieces = |src: &str| -> Vec<Vec<u8>> {
        fragments(&datagram(src), 77, 1000)
            .iter()
            .map(|f| frame(f, &[]))
            .collect()
    };
    write_pcap(&p("inside.pcap"), &pieces("198.18.0.1"));
    write_pcap(&p("outside.pcap"), &[]);
    let vdevs = [
        pcap_vdev(0, &[p("inside.pcap")], &[p("to-inside.pcap")]),
        pcap_vdev(1, &[p("outside.pcap")], &[p("to-outside.pcap")]),
    ];
    let rules = format!("--rules={}", p("rules").display());
    let o = run(
        &eal_args("nat-frag", "0@0,1@1", &vdevs),
        &["--forward-mode=firewall", "--idle-exit=0.5", &rules],
    );
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(
        read_pcap(&p("to-outside.pcap")),
        pieces("198.18.0.100"),
        "{out}"
    );
}
