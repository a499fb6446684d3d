//! `ctfwd trace` end to end: real malformed captures, the seed's
//! walk-through, pcapng and the link types captures commonly have.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{seed_tftp_frames, seed_udp_frames, write_pcap, CTFWD};
use ctfwd::synth::{frame, ip_packet, udp, Tcp};
use serde_json::Value;

fn trace(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let o = Command::new(CTFWD)
        .arg("trace")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines = if args.contains(&"--json") {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
            .collect()
    } else {
        Vec::new()
    };
    (
        o.status.code(),
        lines,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Checks the JSON output's shape and that the summary adds up.
fn check_json(lines: &[Value]) -> (Vec<&Value>, &Value) {
    let (summary, packets) = lines.split_last().expect("a summary line");
    let summary = &summary["summary"];
    assert!(summary.is_object(), "last line is the summary");
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p["index"], i as u64);
        let ct = p["ctinfo"].as_str().unwrap();
        assert!(
            ct == "HELD" || ctfwd::conntrack::CtInfo::ALL.iter().any(|c| c.name() == ct),
            "{ct}"
        );
        for key in ["conn", "master", "tcp_state", "reason"] {
            assert!(p.get(key).is_some(), "key {key} missing in {p}");
        }
        assert_eq!(
            ct == "INVALID" || ct == "UNTRACKED",
            p["reason"].is_string(),
            "{p}"
        );
    }
    let n = |k: &str| summary[k].as_u64().unwrap();
    // A datagram of k held fragments is one packet to the tracker.
    assert_eq!(
        n("found") + n("new") + n("invalid") + n("ignore") + n("frag_held") - n("frag_reassembled"),
        packets.len() as u64,
        "every packet counted once: {summary}"
    );
    (packets.iter().collect(), summary)
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/malformed")
}

/// Every real malformed capture gives counters or one clear error line,
/// never a panic; where the file is readable, one line per packet.
#[test]
fn malformed_corpus_never_panics() {
    let path = corpus_dir().join("MANIFEST.tsv");
    let manifest = match std::fs::read_to_string(&path) {
        Ok(m) => m,
        // A clone without ../shared beside it: skipped, and said so; in CI
        // the corpus must be there.
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "skipped malformed_corpus_never_panics: {}: {e} (the external corpus \
                 lives in ../shared beside the clone; with CI set this fails)",
                path.display()
            );
            return;
        }
        Err(e) => panic!(
            "{}: {e} (CI is set: the corpus must be there)",
            path.display()
        ),
    };
    let mut files = 0;
    for row in manifest.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, packets) = (cols[0], cols[5].parse::<usize>().unwrap());
        let path = corpus_dir().join(file);
        let (code, lines, stderr) = trace(&["--json", "--checksum", path.to_str().unwrap()]);
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
        match code {
            Some(0) => {
                let (pkts, _) = check_json(&lines);
                assert_eq!(pkts.len(), packets, "{file}: one line per packet");
            }
            Some(2) => {
                // A broken file: one clear line, after the packets before it.
                let errs: Vec<&str> = stderr
                    .lines()
                    .filter(|l| l.starts_with("ctfwd: error:"))
                    .collect();
                assert_eq!(errs.len(), 1, "{file}: {stderr}");
                assert!(lines.len() < packets, "{file}: stopped early");
            }
            other => panic!("{file}: exit {other:?}: {stderr}"),
        }
        files += 1;
    }
    assert_eq!(files, 40, "every file of the manifest was traced");
}

/// Fragments are reassembled before tracking, as Linux's conntrack sees
/// them: held ones have no state, the one that completes a datagram
/// carries the datagram's, bad ones are INVALID.
#[test]
fn fragments_are_tracked_as_datagrams() {
    use ctfwd::synth::fragment;
    let (a, b) = ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap());
    let (a6, b6) = ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap());
    let request = ip_packet(a, b, 17, &[], &udp(5000, 53, &[1; 2000]));
    let answer = ip_packet(b, a, 17, &[], &udp(53, 5000, &[2; 2000]));
    let v6 = ip_packet(a6, b6, 17, &[], &udp(1, 2, &[3; 2000]));
    let f = |ip: &[u8], id, pieces: &[(usize, usize)]| -> Vec<Vec<u8>> {
        fragment(ip, id, pieces)
            .iter()
            .map(|p| frame(p, &[]))
            .collect()
    };
    let mut frames = Vec::new();
    frames.extend(f(&request, 1, &[(1000, 1008), (0, 1000)]));
    frames.extend(f(&answer, 1, &[(0, 1000), (1000, 1008)]));
    frames.extend(f(&v6, 7, &[(0, 1000), (1000, 1008)]));
    // Overlapping: the held first fragment goes with it.
    frames.extend(f(&request, 2, &[(0, 1000), (992, 1016)]));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("frag.pcap");
    write_pcap(&pcap, &frames);
    let (code, lines, _) = trace(&["--json", "--checksum", pcap.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let (pkts, summary) = check_json(&lines);
    let ct: Vec<&str> = pkts.iter().map(|p| p["ctinfo"].as_str().unwrap()).collect();
    assert_eq!(
        ct,
        [
            "HELD",
            "NEW",
            "HELD",
            "ESTABLISHED_REPLY",
            "HELD",
            "NEW",
            "HELD",
            "INVALID"
        ]
    );
    assert_eq!(pkts[1]["fragments"], serde_json::json!([0, 1]));
    assert_eq!(pkts[3]["conn"], pkts[1]["conn"]);
    assert_eq!(pkts[7]["reason"], "fragment-overlap");
    assert_eq!(summary["frag_reassembled"], 3);
    assert_eq!(summary["frag_overlap"], 1);
}

/// The seed's walk-through 1 through the binary.
#[test]
fn seed_walkthrough_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("seed.pcap");
    write_pcap(&pcap, &seed_udp_frames());
    let (code, lines, _) = trace(&["--json", pcap.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let (pkts, summary) = check_json(&lines);
    let ct: Vec<&str> = pkts.iter().map(|p| p["ctinfo"].as_str().unwrap()).collect();
    assert_eq!(ct, ["NEW", "ESTABLISHED_REPLY", "ESTABLISHED"]);
    assert!(pkts
        .iter()
        .all(|p| p["conn"] == pkts[0]["conn"] && p["conn"].is_u64()));
    assert_eq!(summary["insert"], 1);
    // The text form says the same.
    let o = Command::new(CTFWD)
        .args(["trace", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("NEW") && text.contains("src=1.1.1.6 dst=1.1.1.5 sport=1116 dport=1115"),
        "{text}"
    );
    assert!(text.contains("summary: found=2 new=1"), "{text}");
    // --list prints the table as conntrack -L does.
    let o = Command::new(CTFWD)
        .args(["trace", "--list", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("udp "))
        .expect("a listed connection");
    assert!(
        line.starts_with("udp      17 30 src=1.1.1.6 dst=1.1.1.5 sport=1116 dport=1115 packets=2"),
        "{line}"
    );
    assert!(
        line.contains("src=1.1.1.5 dst=1.1.1.6 sport=1115 dport=1116 packets=1"),
        "{line}"
    );
    assert!(
        text.contains("conntrack: 1 flow entries have been shown."),
        "{text}"
    );
}

/// The seed's walk-through 2 (TFTP) through the binary: the server's
/// answer from a new port is RELATED, and names its master.
#[test]
fn seed_tftp_walkthrough_shows_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tftp.pcap");
    write_pcap(&pcap, &seed_tftp_frames());
    let (code, lines, _) = trace(&["--json", pcap.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let (pkts, summary) = check_json(&lines);
    let ct: Vec<&str> = pkts.iter().map(|p| p["ctinfo"].as_str().unwrap()).collect();
    assert_eq!(ct, ["NEW", "RELATED", "ESTABLISHED_REPLY"]);
    assert_eq!(pkts[1]["master"], pkts[0]["conn"]);
    assert!(pkts[0]["master"].is_null());
    assert_ne!(pkts[1]["conn"], pkts[0]["conn"]);
    assert_eq!(
        (
            summary["expect_create"].as_u64(),
            summary["expect_new"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

/// A pcapng file with three interfaces of different link types (Linux
/// cooked v2, raw IP, BSD loopback), nanosecond timestamps, and a packet
/// cut by the snap length: the truncated data segment is tracked from its
/// headers.
#[test]
fn pcapng_link_types_and_snaplen() {
    let c: std::net::IpAddr = "198.18.0.1".parse().unwrap();
    let s: std::net::IpAddr = "198.19.0.1".parse().unwrap();
    let seg = |seq, ack, flags, len: usize, sport, dport| {
        let t = Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window: 65535,
            options: &[],
        };
        ip_packet(
            if sport == 40000 { c } else { s },
            if sport == 40000 { s } else { c },
            6,
            &[],
            &t.bytes(&vec![0; len]),
        )
    };
    let syn = seg(1000, 0, 0x02, 0, 40000, 80);
    let synack = seg(5000, 1001, 0x12, 0, 80, 40000);
    let ack = seg(1001, 5001, 0x10, 0, 40000, 80);
    let data = seg(1001, 5001, 0x18, 1000, 40000, 80);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 4, 6, 2, 0, 0, 0, 0, 0, 0,
    ];
    sll2.extend_from_slice(&syn);
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ack);

    let mut f = Vec::new();
    let block = |f: &mut Vec<u8>, ty: u32, body: &[u8]| {
        let mut b = body.to_vec();
        while b.len() % 4 != 0 {
            b.push(0);
        }
        let len = (12 + b.len()) as u32;
        f.extend_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&b);
        f.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = 0x1A2B3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut f, 0x0A0D0D0A, &shb);
    for lt in [276u16, 101, 0] {
        let mut idb = lt.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&200u32.to_le_bytes()); // snaplen
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
        idb.extend_from_slice(&[0, 0, 0, 0]);
        block(&mut f, 1, &idb);
    }
    let epb = |f: &mut Vec<u8>, iface: u32, t: u64, pkt: &[u8], orig: usize| {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(t as u32).to_le_bytes());
        b.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        b.extend_from_slice(&(orig as u32).to_le_bytes());
        b.extend_from_slice(pkt);
        block(f, 6, &b);
    };
    epb(&mut f, 0, 1_000_000_000, &sll2, sll2.len());
    epb(&mut f, 1, 1_100_000_000, &synack, synack.len());
    epb(&mut f, 2, 1_200_000_000, &null, null.len());
    epb(&mut f, 1, 1_300_000_000, &data[..200], data.len());
    block(&mut f, 5, &[0; 8]); // an interface statistics block, skipped

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.pcapng");
    std::fs::write(&path, &f).unwrap();
    let (code, lines, stderr) = trace(&["--json", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let (pkts, _) = check_json(&lines);
    let got: Vec<(&str, &str)> = pkts
        .iter()
        .map(|p| {
            (
                p["ctinfo"].as_str().unwrap(),
                p["tcp_state"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("NEW", "SYN_SENT"),
            ("ESTABLISHED_REPLY", "SYN_RECV"),
            ("ESTABLISHED", "ESTABLISHED"),
            ("ESTABLISHED", "ESTABLISHED"),
        ]
    );
}

#[test]
fn not_ip_checksums_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // ARP is UNTRACKED with reason not-ip; a corrupted UDP checksum is
    // INVALID only with --checksum.
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let mut bad = frame(
        &ip_packet(
            "198.18.0.1".parse().unwrap(),
            "198.19.0.1".parse().unwrap(),
            17,
            &[],
            &udp(1, 2, b"abc"),
        ),
        &[],
    );
    let last = bad.len() - 1;
    bad[last] ^= 1;
    write_pcap(&p("mix.pcap"), &[arp, bad]);
    let (_, lines, _) = trace(&["--json", p("mix.pcap").to_str().unwrap()]);
    let (pkts, _) = check_json(&lines);
    assert_eq!(
        (pkts[0]["ctinfo"].as_str(), pkts[0]["reason"].as_str()),
        (Some("UNTRACKED"), Some("not-ip"))
    );
    assert_eq!(pkts[1]["ctinfo"], "NEW");
    let (_, lines, _) = trace(&["--json", "--checksum", p("mix.pcap").to_str().unwrap()]);
    let (pkts, _) = check_json(&lines);
    assert_eq!(pkts[1]["reason"], "bad-checksum");

    // Not a capture, a missing file, an unsupported link type, bad flags.
    std::fs::write(p("junk"), b"this is not a capture file at all").unwrap();
    let mut ppp = std::fs::read(p("mix.pcap")).unwrap();
    ppp[20] = 9; // LINKTYPE_PPP
    std::fs::write(p("ppp.pcap"), ppp).unwrap();
    for (args, expect) in [
        (
            vec![p("junk").to_str().unwrap().to_string()],
            "not a pcap file",
        ),
        (
            vec![p("missing").to_str().unwrap().to_string()],
            "No such file",
        ),
        (
            vec![p("ppp.pcap").to_str().unwrap().to_string()],
            "link type 9 is not supported",
        ),
        (vec!["--bogus".to_string()], "unexpected argument"),
        (vec![], "no capture file"),
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = trace(&a);
        assert_eq!(code, Some(2), "{args:?}");
        let errs: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ctfwd: error:"))
            .collect();
        assert_eq!(errs.len(), 1, "{args:?}: {stderr}");
        assert!(errs[0].contains(expect), "{args:?}: {}", errs[0]);
    }
}

/// `--rules` applies a rules file's NAT offline: the SNAT and port forward
/// of the NAT issue's example, the translated tuple on each line, and the
/// reply tuple in the listing.
#[test]
fn rules_translate_offline() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(
        &rules,
        "in-port 0 ip saddr 198.18.0.1 snat to 198.18.0.100\n\
         in-port 1 ip daddr 198.18.0.200 tcp dport 8080 dnat to 198.18.0.1:80\n\
         in-port 1 ct status dnat accept\n",
    )
    .unwrap();
    let cap = dir.path().join("nat.pcap");
    write_pcap(
        &cap,
        &[
            common::udp_pkt("198.18.0.1:5000", "198.19.0.1:53", b"query"),
            common::udp_pkt("198.19.0.1:53", "198.18.0.100:5000", b"answer"),
            common::tcp_pkt("198.19.0.9:40000", "198.18.0.200:8080", 1000, 0, 0x02, b""),
            common::tcp_pkt("198.18.0.1:80", "198.19.0.9:40000", 7000, 1001, 0x12, b""),
        ],
    );
    let (rules_arg, cap_arg) = (
        format!("--rules={}", rules.display()),
        cap.display().to_string(),
    );
    let (code, lines, err) = trace(&["--json", &rules_arg, "--inside=198.18.0.0/24", &cap_arg]);
    assert_eq!(code, Some(0), "{err}");
    let nat: Vec<&str> = lines[..4]
        .iter()
        .map(|l| l["nat"].as_str().unwrap())
        .collect();
    assert_eq!(
        nat,
        [
            "udp src=198.18.0.100 dst=198.19.0.1 sport=5000 dport=53",
            "udp src=198.19.0.1 dst=198.18.0.1 sport=53 dport=5000",
            "tcp src=198.19.0.9 dst=198.18.0.1 sport=40000 dport=80",
            "tcp src=198.18.0.200 dst=198.19.0.9 sport=8080 dport=40000",
        ]
    );
    let states: Vec<&str> = lines[..4]
        .iter()
        .map(|l| l["ctinfo"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["NEW", "ESTABLISHED_REPLY", "NEW", "ESTABLISHED_REPLY"]
    );
    let o = Command::new(CTFWD)
        .args([
            "trace",
            "--list",
            &rules_arg,
            "--inside=198.18.0.0/24",
            &cap_arg,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("src=198.19.0.1 dst=198.18.0.100 sport=53 dport=5000"),
        "{text}"
    );
    let (code, _, err) = trace(&["--rules=/nonexistent", &cap_arg]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--rules: /nonexistent"), "{err}");
}
