//! Running the real `ctfwd` binary on DPDK virtual devices, without hugepages.
#![allow(dead_code)] // each test binary uses its own part of these helpers

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ctfwd::capture::{read_frames, PcapWriter};

pub const CTFWD: &str = env!("CARGO_BIN_EXE_ctfwd");

/// A distinct `--file-prefix` per DPDK process: tests run in parallel.
pub fn file_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ctfwd-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// EAL flags for a test run: no hugepages, no PCI, private runtime files.
pub fn eal_args(test: &str, lcores: &str, vdevs: &[String]) -> Vec<String> {
    let mut a = vec![
        "--lcores".to_string(),
        lcores.to_string(),
        "--no-huge".into(),
        "-m".into(),
        "256".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        format!("--file-prefix={}", file_prefix(test)),
        "--log-level=lib.eal:warning".into(),
    ];
    a.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    a
}

/// A running ctfwd, killed (by its PID, which we started) if the test fails
/// before it exits.
pub struct Running {
    child: Option<Child>,
    readers: Vec<std::thread::JoinHandle<Vec<u8>>>,
    /// With `start_piped`: the child's stdin, for commands.
    stdin: Option<std::process::ChildStdin>,
}

impl Running {
    pub fn start(eal: &[String], app: &[&str]) -> Running {
        Running::start_with_env(eal, app, &[])
    }

    /// `start` with stdin a pipe the test writes commands to (`send`).
    pub fn start_piped(eal: &[String], app: &[&str]) -> Running {
        Running::spawn(eal, app, &[], Stdio::piped())
    }

    /// Writes one command line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("started with start_piped");
        writeln!(stdin, "{line}").expect("write a command");
    }

    /// Kills the child and returns what it wrote, for a failure message.
    pub fn kill_for_output(mut self) -> String {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.stdin = None;
        let o = self.wait(Duration::from_secs(10));
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            stdout(&o),
            stderr(&o)
        )
    }

    /// Closes the child's stdin (the end of its commands).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// `start` with extra environment variables for the child.
    pub fn start_with_env(eal: &[String], app: &[&str], env: &[(&str, &str)]) -> Running {
        Running::spawn(eal, app, env, Stdio::null())
    }

    fn spawn(eal: &[String], app: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Running {
        let child = Command::new(CTFWD)
            .envs(env.iter().copied())
            .args(eal)
            .arg("--")
            .args(app)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ctfwd");
        let mut child = child;
        // Drain both pipes as the process writes, so it never blocks on a
        // full pipe while we wait for it.
        let readers = vec![
            drain(child.stdout.take().unwrap()),
            drain(child.stderr.take().unwrap()),
        ];
        Running {
            stdin: child.stdin.take(),
            child: Some(child),
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        while child.try_wait().expect("try_wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "ctfwd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.take().unwrap().wait().expect("wait");
        let mut streams = self.readers.drain(..).map(|r| r.join().unwrap());
        Output {
            status,
            stdout: streams.next().unwrap(),
            stderr: streams.next().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The `--file-prefix` among EAL flags.
pub fn prefix_of(eal: &[String]) -> String {
    eal.iter()
        .find_map(|a| a.strip_prefix("--file-prefix="))
        .expect("a --file-prefix")
        .to_string()
}

/// Asks a running ctfwd's telemetry socket each of `commands` with
/// Debian's `dpdk-telemetry.py`, as an operator would; one JSON reply per
/// command, keyed by the command.
pub fn telemetry(prefix: &str, commands: &[&str]) -> Vec<serde_json::Value> {
    try_telemetry(prefix, commands).unwrap_or_else(|e| panic!("telemetry {commands:?}: {e}"))
}

/// `telemetry`, or what went wrong (the socket is not there yet, say).
pub fn try_telemetry(prefix: &str, commands: &[&str]) -> Result<Vec<serde_json::Value>, String> {
    use std::io::Write;
    let mut child = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dpdk-telemetry.py (package dpdk)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for c in commands {
            writeln!(stdin, "{c}").unwrap();
        }
    }
    let out = child.wait_with_output().expect("dpdk-telemetry.py");
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if replies.len() != commands.len() {
        return Err(format!(
            "{} replies:\n{text}\n{}",
            replies.len(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(replies)
}

/// Runs ctfwd to completion (it must stop by itself, e.g. `--idle-exit`).
pub fn run(eal: &[String], app: &[&str]) -> Output {
    Running::start(eal, app).wait(Duration::from_secs(60))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean run: exit 0 and the mempool check found no leak.
pub fn assert_clean_exit(o: &Output) {
    let out = stdout(o);
    assert!(
        status_ok(o.status),
        "ctfwd failed ({:?})\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        stderr(o)
    );
    assert!(
        out.contains("Mempool check: 0 of"),
        "no clean mempool check in:\n{out}"
    );
}

fn status_ok(s: ExitStatus) -> bool {
    s.code() == Some(0)
}

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(std::io::BufWriter::new(f)).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        w.write(i as u64 * 1000, fr).unwrap();
    }
    w.finish().unwrap();
}

pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    read_frames(&std::fs::read(path).unwrap()).unwrap()
}

/// A `net_pcap` vdev reading `rx` files and writing `tx` files, one per queue.
pub fn pcap_vdev(index: u16, rx: &[PathBuf], tx: &[PathBuf]) -> String {
    let mut v = format!("net_pcap{index}");
    for p in rx {
        v.push_str(&format!(",rx_pcap={}", p.display()));
    }
    for p in tx {
        v.push_str(&format!(",tx_pcap={}", p.display()));
    }
    v
}

/// The MAC ctfwd reports for `port` in its banner ("Port N: XX:..").
pub fn port_mac(out: &str, port: u16) -> [u8; 6] {
    let prefix = format!("Port {port}: ");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{out}"));
    let mac = &line[prefix.len()..prefix.len() + 17];
    let mut b = [0u8; 6];
    for (i, part) in mac.split(':').enumerate() {
        b[i] = u8::from_str_radix(part, 16).unwrap();
    }
    b
}

/// The number after `key` on the first line of `section` that has it.
pub fn field(out: &str, section: &str, key: &str) -> u64 {
    let start = out
        .find(section)
        .unwrap_or_else(|| panic!("no '{section}' in:\n{out}"));
    let rest = &out[start..];
    let at = rest
        .find(key)
        .unwrap_or_else(|| panic!("no '{key}' after '{section}'"));
    rest[at + key.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{key}'"))
}

/// The sum over cores of the number after `key` on "Core N <section>:" lines.
pub fn core_sum(out: &str, section: &str, key: &str) -> u64 {
    out.lines()
        .filter(|l| l.trim_start().starts_with("Core ") && l.contains(section))
        .filter_map(|l| {
            let at = l.find(key)? + key.len();
            l[at..].split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// An Ethernet/IPv4/UDP frame between two "addr:port"s.
pub fn udp_pkt(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    ctfwd::synth::udp_frame(src.parse().unwrap(), dst.parse().unwrap(), payload)
}

/// The seed's walk-through 1: 1.1.1.6:1116 asks 1.1.1.5:1115 over UDP,
/// gets an answer, and asks again.
pub fn seed_udp_frames() -> Vec<Vec<u8>> {
    vec![
        udp_pkt("1.1.1.6:1116", "1.1.1.5:1115", b"request"),
        udp_pkt("1.1.1.5:1115", "1.1.1.6:1116", b"reply"),
        udp_pkt("1.1.1.6:1116", "1.1.1.5:1115", b"again"),
    ]
}

/// The seed's walk-through 2: a TFTP read request to port 69, the data
/// from the server's new port 1115, and the client's ACK to that port.
pub fn seed_tftp_frames() -> Vec<Vec<u8>> {
    vec![
        udp_pkt("1.1.1.6:1116", "1.1.1.5:69", b"\0\x01seed.txt\0octet\0"),
        udp_pkt("1.1.1.5:1115", "1.1.1.6:1116", b"\0\x03\0\x01hello"),
        udp_pkt("1.1.1.6:1116", "1.1.1.5:1115", b"\0\x04\0\x01"),
    ]
}

/// An Ethernet/IPv4/TCP frame between two "addr:port"s.
pub fn tcp_pkt(src: &str, dst: &str, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    ctfwd::synth::tcp_frame(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        seq,
        ack,
        flags,
        data,
    )
}
