//! Operating a running ctfwd through the real binary: commands from
//! `--cmdline-file` and piped to stdin (`-i`), the telemetry socket read
//! with Debian's `dpdk-telemetry.py`, rule reloads (bad file, good file,
//! SIGHUP) and connection events switched on at the prompt.

#![cfg(feature = "dpdk")]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Three-way conversations: `flows` UDP flows answered from outside.
fn conversations(dir: &std::path::Path, flows: u16) -> Vec<String> {
    let (inside, outside) = ctfwd::synth::sample_conversations(flows, 1);
    let p = |n: &str| dir.join(n);
    write_pcap(&p("inside.pcap"), &inside);
    write_pcap(&p("outside.pcap"), &outside);
    vec![
        pcap_vdev(0, &[p("inside.pcap")], &[p("to-inside.pcap")]),
        pcap_vdev(1, &[p("outside.pcap")], &[p("to-outside.pcap")]),
    ]
}

/// Waits until telemetry counts `n` connections.
fn count_reached(prefix: &str, n: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The socket appears once EAL is up.
        let r = try_telemetry(prefix, &["/ctfwd/ct/count"]);
        if r.as_ref()
            .is_ok_and(|r| r[0]["/ctfwd/ct/count"]["count"] == n)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("never {n} connections: {r:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `count_reached`, or a failure that says what ctfwd printed.
fn wait_for_count(prefix: &str, n: u64, ctfwd: Running) -> Running {
    match count_reached(prefix, n) {
        Ok(()) => ctfwd,
        Err(e) => panic!("{e}\n{}", ctfwd.kill_for_output()),
    }
}

/// The text between the first line containing `from` and the next line
/// containing `to`.
fn between<'a>(out: &'a str, from: &str, to: &str) -> &'a str {
    let a = out
        .find(from)
        .unwrap_or_else(|| panic!("no '{from}' in:\n{out}"));
    let rest = &out[a..];
    let b = rest
        .find(to)
        .unwrap_or_else(|| panic!("no '{to}' after '{from}':\n{out}"));
    &rest[..b + to.len()]
}

#[test]
fn commands_from_a_file_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let vdevs = conversations(dir.path(), 40);
    let file = dir.path().join("commands");
    std::fs::write(
        &file,
        "# testpmd reads these first\nstart\nshow config fwd\n",
    )
    .unwrap();
    let eal = eal_args("operate", "0@0,1@1", &vdevs);
    let prefix = prefix_of(&eal);
    let cmdline = format!("--cmdline-file={}", file.display());
    let ctfwd = Running::start_piped(&eal, &["-i", "--forward-mode=firewall", &cmdline]);
    let mut ctfwd = wait_for_count(&prefix, 40, ctfwd);
    for c in [
        "ct count",
        "ct list proto udp src 198.18.0.0/24 dport 53",
        "ct list -p tcp",
        "ct list colour red",
        "ct delete",
        "ct stats",
        "show port stats all",
        "show port xstats 1",
        "show port info 0",
        "clear port stats all",
        "show fwd stats all",
        "ct timeout udp 5",
        "ct timeout udp-bogus 5",
        "ct timeout udp 31536001",
        "ct delete --dport 53",
        "ct count",
        "ct expect list",
        "ct flush",
        "ct count",
        "frobnicate",
        "stop",
        "stop",
        "quit",
    ] {
        ctfwd.send(c);
    }
    let o = ctfwd.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(out.contains("Read CLI commands from"), "{out}");
    assert!(out.contains("Forwarding waits for `start`"), "{out}");
    assert!(
        out.contains("Logical Core 1 forwards packets on 2 streams"),
        "{out}"
    );
    // `ct count` before any deletion, then after each.
    let counts: Vec<&str> = out
        .lines()
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let dns = out
        .lines()
        .filter(|l| l.starts_with("udp ") && l.contains("dport=53 "))
        .count();
    assert_eq!(counts[0], "40", "{out}");
    assert!(dns > 0, "{out}");
    assert!(
        out.contains(&format!(
            "conntrack v1.4.7 (conntrack-tools): {dns} flow entries have been shown."
        )),
        "{out}"
    );
    assert!(out.contains(": 0 flow entries have been shown."), "{out}");
    assert!(
        out.contains("Bad command 'ct list colour red': unknown filter 'colour'"),
        "{out}"
    );
    assert!(out.contains("Bad command 'ct delete': ct delete needs a FILTER"));
    assert!(out.contains("cpu=0   \tfound="), "{out}");
    assert!(out.contains("NIC statistics for port 1"), "{out}");
    assert!(out.contains("rx_good_packets: "), "{out}");
    assert!(out.contains("Driver name: net_pcap"), "{out}");
    assert!(out.contains("NIC statistics for port 0 cleared"), "{out}");
    assert!(out.contains("timeout udp set to 5 s"), "{out}");
    assert!(out.contains("Bad command 'ct timeout udp-bogus 5': unknown timeout"));
    // Past 365 days, what a connection's deadline holds.
    assert!(
        out.contains(
            "Bad command 'ct timeout udp 31536001': '31536001' is not a whole number of seconds from 1 to 31536000"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "conntrack v1.4.7 (conntrack-tools): {dns} flow entries have been deleted."
        )),
        "{out}"
    );
    assert_eq!(counts[1], (40 - dns).to_string(), "{out}");
    assert!(out.contains("0 expectations have been shown."), "{out}");
    assert!(out.contains("connection tracking table has been emptied."));
    assert_eq!(counts[2], "0", "{out}");
    assert!(
        out.contains("Bad command 'frobnicate': unknown command"),
        "{out}"
    );
    // `stop` prints the forward statistics since `start`, then says it is
    // not started.
    let stop = between(
        &out,
        "Telling cores to stop",
        "Accumulated forward statistics",
    );
    assert!(stop.contains("Forward statistics for port 0"), "{out}");
    assert!(out.contains("Packet forwarding not started"), "{out}");
}

#[test]
fn telemetry_pages_through_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let vdevs = conversations(dir.path(), 60);
    let eal = eal_args("telemetry", "0@0,1@1", &vdevs);
    let prefix = prefix_of(&eal);
    let ctfwd = Running::start_piped(&eal, &["-i", "-a", "--forward-mode=firewall"]);
    let mut ctfwd = wait_for_count(&prefix, 60, ctfwd);
    let mut ids = Vec::new();
    let mut cursor = serde_json::Value::from(0);
    let mut pages = 0;
    loop {
        let cmd = format!("/ctfwd/ct/list,{cursor}");
        let r = telemetry(&prefix, &[&cmd]).remove(0);
        let page = r["/ctfwd/ct/list"].as_object().unwrap().clone();
        pages += 1;
        for (k, c) in &page {
            if k != "next" {
                ids.push(c["id"].as_u64().unwrap());
                assert_eq!(c["proto"], "udp", "{c}");
                assert!(c["orig_src"].as_str().unwrap().starts_with("198.18."));
            }
        }
        match page.get("next") {
            Some(next) => cursor = next.clone(),
            None => break,
        }
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60, "every connection once over {pages} pages");
    assert!(pages >= 3, "60 connections take several pages");
    let r = telemetry(
        &prefix,
        &[
            "/ctfwd/stats",
            "/ctfwd/ct/stats",
            "/ctfwd/expect/list",
            "/ethdev/list",
        ],
    );
    let stats = &r[0]["/ctfwd/stats"];
    assert_eq!(stats["port0"]["rx_packets"], 60, "{stats}");
    assert_eq!(stats["core1"]["NEW"], 60, "{stats}");
    assert_eq!(stats["core1"]["drop_invalid"], 0, "{stats}");
    assert_eq!(r[1]["/ctfwd/ct/stats"]["0"]["new"], 60, "{}", r[1]);
    assert_eq!(r[2]["/ctfwd/expect/list"]["total"], 0, "{}", r[2]);
    assert_eq!(r[3]["/ethdev/list"], serde_json::json!([0, 1]), "{}", r[3]);
    ctfwd.close_stdin();
    assert_clean_exit(&ctfwd.wait(Duration::from_secs(30)));
}

#[test]
fn rules_reload_keeps_the_old_set_on_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vdevs = conversations(dir.path(), 10);
    let rules = dir.path().join("rules");
    std::fs::write(&rules, "udp dport 53 accept\n").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "udp dport 53 accept\nudp dport 99999 drop\n").unwrap();
    let eal = eal_args("reload", "0@0,1@1", &vdevs);
    let prefix = prefix_of(&eal);
    let rules_flag = format!("--rules={}", rules.display());
    let ctfwd = Running::start_piped(&eal, &["-i", "-a", "--forward-mode=firewall", &rules_flag]);
    let mut ctfwd = wait_for_count(&prefix, 10, ctfwd);
    ctfwd.send(&format!("rules reload {}", bad.display()));
    ctfwd.send("ct count");
    std::fs::write(
        &rules,
        "udp dport 53 accept\nudp dport 123 drop\nicmp accept\n",
    )
    .unwrap();
    ctfwd.send("rules reload");
    // SIGHUP reads --rules again, through the same command.
    std::thread::sleep(Duration::from_millis(500));
    ctfwd.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    ctfwd.send("ct count");
    ctfwd.send("quit");
    let o = ctfwd.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "Bad command 'rules reload {}': {}: line 2:",
            bad.display(),
            bad.display()
        )),
        "{out}"
    );
    assert!(out.contains("the rules in force stay"), "{out}");
    assert_eq!(
        out.matches(&format!("rules: 3 rules from {} in force", rules.display()))
            .count(),
        2,
        "{out}"
    );
    // Connections keep their state across reloads.
    assert_eq!(out.lines().filter(|l| *l == "10").count(), 2, "{out}");
}

#[test]
fn events_switched_on_at_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let vdevs = conversations(dir.path(), 3);
    let eal = eal_args("events-on", "0@0,1@1", &vdevs);
    let mut ctfwd = Running::start_piped(
        &eal,
        &["-i", "--forward-mode=firewall", "--ct-timeout-udp=1"],
    );
    ctfwd.send("ct events on");
    ctfwd.send("start");
    std::thread::sleep(Duration::from_millis(3000));
    ctfwd.send("ct events off");
    ctfwd.send("quit");
    let o = ctfwd.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    assert_eq!(out.matches("    [NEW] udp ").count(), 3, "{out}");
    assert_eq!(out.matches("[DESTROY] udp ").count(), 3, "{out}");
}

#[test]
fn expectations_listed_and_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // A TFTP read request: the helper expects the server's answer.
    write_pcap(&p("in.pcap"), &seed_tftp_frames()[..1]);
    let vdevs = [pcap_vdev(0, &[p("in.pcap")], &[p("out.pcap")])];
    let eal = eal_args("expect", "0@0,1@1", &vdevs);
    let prefix = prefix_of(&eal);
    let ctfwd = Running::start_piped(
        &eal,
        &[
            "-i",
            "-a",
            "--forward-mode=conntrack",
            "--port-topology=loop",
        ],
    );
    let mut ctfwd = wait_for_count(&prefix, 1, ctfwd);
    let r = telemetry(&prefix, &["/ctfwd/expect/list"]).remove(0);
    let list = &r["/ctfwd/expect/list"];
    assert_eq!(list["total"], 1, "{r}");
    assert_eq!(list["0"]["helper"], "tftp", "{r}");
    assert_eq!(list["0"]["dst"], "1.1.1.6", "{r}");
    assert_eq!(list["0"]["dport"], 1116, "{r}");
    for c in [
        "ct expect list",
        "ct expect flush",
        "ct expect list",
        "quit",
    ] {
        ctfwd.send(c);
    }
    let o = ctfwd.wait(Duration::from_secs(30));
    assert_clean_exit(&o);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.contains(" proto=17 src=1.1.1.5 dst=1.1.1.6 sport=0 dport=1116 "))
        .unwrap_or_else(|| panic!("no expectation listed:\n{out}"));
    assert!(line.contains("helper=tftp"), "{line}");
    assert!(out.contains("1 expectations have been shown."), "{out}");
    assert!(
        out.contains("expectation table has been emptied (1)."),
        "{out}"
    );
    assert!(out.contains("0 expectations have been shown."), "{out}");
}

/// On a terminal, `-i` gives the `ctfwd> ` prompt (line editing by
/// rustyline); `script` provides the terminal. Lines are typed one at a
/// time, as a person would: a line editor drops input typed ahead of its
/// prompt, as readline does.
#[test]
fn a_terminal_gets_the_prompt() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let vdevs = conversations(dir.path(), 5);
    let eal = eal_args("pty", "0@0,1@1", &vdevs);
    let prefix = prefix_of(&eal);
    let mut cmdline = vec![CTFWD.to_string()];
    cmdline.extend(eal);
    cmdline.extend(["--", "-i", "-a", "--forward-mode=firewall"].map(String::from));
    let mut child = Command::new("script")
        .args(["-qec", &cmdline.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script (bsdutils)");
    if let Err(e) = count_reached(&prefix, 5) {
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        panic!(
            "{e}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut stdin = child.stdin.take().unwrap();
    for line in ["ct count", "quit"] {
        std::thread::sleep(Duration::from_millis(500));
        write!(stdin, "{line}\r").unwrap();
        stdin.flush().unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ctfwd> "), "{out}");
    assert!(out.lines().any(|l| l.trim() == "5"), "{out}");
    assert!(out.contains("Mempool check: 0 of"), "{out}");
}
