//! ctfwd's commands on DPDK's telemetry socket, so `dpdk-telemetry.py -f
//! PREFIX` and any monitoring client read a running forwarder beside
//! DPDK's own `/ethdev/...` endpoints:
//!
//! - `/ctfwd/stats`: per port (`port0`, ...) and per core (`core1`, ...),
//!   packets, drops by reason and handoffs;
//! - `/ctfwd/ct/stats`: per core, the tracker's counters (`conntrack -S`);
//! - `/ctfwd/ct/count`: connections in the tables, and their capacity;
//! - `/ctfwd/ct/list,CURSOR`: a page of connections keyed `0`, `1`, ...
//!   and, while there are more, the `next` cursor (start from 0). A 22.11
//!   reply nests one level of containers and holds 16 KB of JSON, so a
//!   page is `PAGE` connections;
//! - `/ctfwd/expect/list`: the pending expectations (the first
//!   `EXPECT_PAGE`) and their `total`.
//!
//! The callbacks run on DPDK's telemetry thread. Table reads go through
//! the workers' command queues like every other runtime read; counters are
//! read as the stats loop reads them.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{Arc, Mutex, Once};

use dpdk_sys as sys;

use super::control::Control;
use super::forwarding::{Forwarding, DROP_REASONS, HANDOFF_COUNTERS};
use super::worker::{CtCounters, StreamCounters};
use crate::conntrack::{proto_name, CtInfo, ListedConn, Status};

/// Connections per `/ctfwd/ct/list` page: each is a dictionary of 16
/// fields, about 400 bytes of JSON with IPv6 addresses, and a reply must
/// fit the 16 KB output buffer.
const PAGE: usize = 24;

/// What the callbacks read: set while a forwarder runs.
struct State {
    control: Control,
    ct: Arc<[CtCounters]>,
    streams: Arc<[StreamCounters]>,
    /// Per stream: its RX port.
    stream_ports: Vec<u16>,
    /// Per forwarding core: its lcore and stream range.
    cores: Vec<(u32, std::ops::Range<usize>)>,
    ports: Vec<u16>,
}

static STATE: Mutex<Option<Arc<State>>> = Mutex::new(None);

fn state() -> Option<Arc<State>> {
    STATE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Registers the commands (once per process) and points them at `fwd`.
pub fn publish(fwd: &Forwarding<'_>) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(register);
    let s = State {
        control: fwd.control(),
        ct: Arc::clone(&fwd.ct_counters),
        streams: Arc::clone(&fwd.counters),
        stream_ports: fwd.streams().iter().map(|s| s.rx_port).collect(),
        cores: fwd
            .cores()
            .iter()
            .map(|c| (c.lcore, c.streams.clone()))
            .collect(),
        ports: fwd.ports().map(|p| p.id()).collect(),
    };
    *STATE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
}

/// The forwarder is stopping: the commands answer with an error from now.
pub fn withdraw() {
    *STATE.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

type Handler = fn(&State, &str, &Tel) -> Result<(), String>;

/// The commands, their help and handlers.
const COMMANDS: [(&CStr, &CStr, Handler); 5] = [
    (
        c"/ctfwd/stats",
        c"Per port and per core: packets, drops by reason, handoffs.",
        stats,
    ),
    (
        c"/ctfwd/ct/stats",
        c"Per core, the connection tracker's counters (conntrack -S).",
        ct_stats,
    ),
    (
        c"/ctfwd/ct/count",
        c"Connections tracked and the tables' capacity.",
        ct_count,
    ),
    (
        c"/ctfwd/ct/list",
        c"A page of connections from CURSOR (0 first); 'next' is the next page's.",
        ct_list,
    ),
    (c"/ctfwd/expect/list", c"Pending expectations.", expect_list),
];

fn register() {
    macro_rules! callback {
        ($i:literal) => {{
            unsafe extern "C" fn cb(
                _cmd: *const c_char,
                params: *const c_char,
                d: *mut sys::rte_tel_data,
            ) -> c_int {
                answer(COMMANDS[$i].2, params, d)
            }
            cb
        }};
    }
    let callbacks: [unsafe extern "C" fn(_, _, _) -> c_int; 5] = [
        callback!(0),
        callback!(1),
        callback!(2),
        callback!(3),
        callback!(4),
    ];
    for ((cmd, help, _), cb) in COMMANDS.iter().zip(callbacks) {
        // SAFETY: both strings are static and NUL-terminated; the callback
        // is a plain function that lives as long as the process.
        let ret = unsafe { sys::rte_telemetry_register_cmd(cmd.as_ptr(), Some(cb), help.as_ptr()) };
        if ret != 0 {
            eprintln!(
                "ctfwd: telemetry: cannot register {}",
                cmd.to_string_lossy()
            );
        }
    }
}

/// Runs `handler` for one request; a negative return makes telemetry
/// answer with an error.
fn answer(handler: Handler, params: *const c_char, d: *mut sys::rte_tel_data) -> c_int {
    let params = if params.is_null() {
        String::new()
    } else {
        // SAFETY: telemetry passes the NUL-terminated text after the comma.
        unsafe { CStr::from_ptr(params) }
            .to_string_lossy()
            .into_owned()
    };
    let Some(state) = state() else {
        return -1;
    };
    let tel = Tel::dict(d);
    // A panic must not unwind into C.
    match std::panic::catch_unwind(|| handler(&state, params.trim(), &tel)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tel.str("error", &e);
            0
        }
        Err(_) => -1,
    }
}

/// A telemetry dictionary being filled.
struct Tel(*mut sys::rte_tel_data);

/// A name telemetry accepts (letters, digits, `_`; at most 63 bytes).
fn name(n: &str) -> CString {
    let clean: String = n
        .chars()
        .take(63)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    CString::new(clean).unwrap_or_default()
}

impl Tel {
    /// Starts `d` (given by telemetry for the reply) as a dictionary.
    fn dict(d: *mut sys::rte_tel_data) -> Tel {
        // SAFETY: d is the reply object telemetry passed to the callback.
        unsafe { sys::rte_tel_data_start_dict(d) };
        Tel(d)
    }

    /// A new dictionary, to be put into another with `child`.
    fn new_dict() -> Option<Tel> {
        // SAFETY: allocation only; a null result is handled.
        let d = unsafe { sys::rte_tel_data_alloc() };
        (!d.is_null()).then(|| Tel::dict(d))
    }

    fn u64(&self, n: &str, v: u64) {
        // SAFETY: self.0 is a started dictionary; the name is a C string.
        unsafe { sys::rte_tel_data_add_dict_u64(self.0, name(n).as_ptr(), v) };
    }

    fn int(&self, n: &str, v: i32) {
        // SAFETY: as in `u64`.
        unsafe { sys::rte_tel_data_add_dict_int(self.0, name(n).as_ptr(), v) };
    }

    fn str(&self, n: &str, v: &str) {
        // Telemetry's strings hold at most 127 bytes.
        let v: String = v.chars().take(127).filter(|&c| c != '\0').collect();
        let v = CString::new(v).unwrap_or_default();
        // SAFETY: as in `u64`; telemetry copies the value.
        unsafe { sys::rte_tel_data_add_dict_string(self.0, name(n).as_ptr(), v.as_ptr()) };
    }

    /// Puts `child` under `n`; telemetry owns and frees it from then on.
    fn child(&self, n: &str, child: Tel) {
        // SAFETY: child came from rte_tel_data_alloc; keep=0 hands it over.
        let ret =
            unsafe { sys::rte_tel_data_add_dict_container(self.0, name(n).as_ptr(), child.0, 0) };
        if ret != 0 {
            // Not taken (the dictionary is full): still ours to free.
            // SAFETY: child is an allocated, unshared object.
            unsafe { sys::rte_tel_data_free(child.0) };
        }
    }
}

/// A port's device counters, read as the stats loop reads them.
fn port_stats(id: u16) -> sys::rte_eth_stats {
    let mut s = sys::rte_eth_stats::default();
    // SAFETY: s is writable; on failure it stays zeroed.
    unsafe { sys::rte_eth_stats_get(id, &mut s) };
    s
}

fn stats(s: &State, _: &str, out: &Tel) -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    // Telemetry nests one level of containers: the reply's keys are
    // `port0`, `port1`, ..., `core1`, ..., each a dictionary of counters.
    for &id in &s.ports {
        let p = Tel::new_dict().ok_or("out of memory")?;
        let st = port_stats(id);
        p.u64("rx_packets", st.ipackets);
        p.u64("tx_packets", st.opackets);
        p.u64("rx_missed", st.imissed);
        p.u64("rx_errors", st.ierrors);
        p.u64("rx_nombuf", st.rx_nombuf);
        let tx_dropped = s
            .stream_ports
            .iter()
            .zip(s.streams.iter())
            .filter(|(&port, _)| port == id)
            .map(|(_, c)| c.dropped.load(Relaxed))
            .sum();
        p.u64("tx_dropped", tx_dropped);
        out.child(&format!("port{id}"), p);
    }
    for (w, (lcore, range)) in s.cores.iter().enumerate() {
        let c = Tel::new_dict().ok_or("out of memory")?;
        let sum = |f: fn(&StreamCounters) -> &std::sync::atomic::AtomicU64| -> u64 {
            s.streams[range.clone()]
                .iter()
                .map(|x| f(x).load(Relaxed))
                .sum()
        };
        c.u64("rx_packets", sum(|x| &x.rx));
        c.u64("tx_packets", sum(|x| &x.tx));
        c.u64("tx_dropped", sum(|x| &x.dropped));
        if let Some(ct) = s.ct.get(w).filter(|_| s.control.workers() > 0) {
            for (info, v) in CtInfo::ALL.iter().zip(&ct.ctinfo) {
                c.u64(info.name(), v.load(Relaxed));
            }
            for (reason, v) in DROP_REASONS.iter().zip(&ct.dropped) {
                c.u64(&format!("drop_{reason}"), v.load(Relaxed));
            }
            let handoff = [
                &ct.handoff_tx,
                &ct.handoff_rx,
                &ct.handoff_drop,
                &ct.handoff_fwd,
                &ct.handoff_fwd_dropped,
            ];
            for (n, v) in HANDOFF_COUNTERS.iter().zip(handoff) {
                c.u64(n, v.load(Relaxed));
            }
        }
        out.child(&format!("core{lcore}"), c);
    }
    Ok(())
}

fn ct_stats(s: &State, _: &str, out: &Tel) -> Result<(), String> {
    for (cpu, (st, _)) in s.control.stats()?.iter().enumerate() {
        let c = Tel::new_dict().ok_or("out of memory")?;
        for (n, v) in st.fields() {
            c.u64(n, v);
        }
        out.child(&cpu.to_string(), c);
    }
    Ok(())
}

fn ct_count(s: &State, _: &str, out: &Tel) -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    s.control.check()?;
    let sum = |f: fn(&CtCounters) -> &std::sync::atomic::AtomicU64| -> u64 {
        s.ct.iter().map(|c| f(c).load(Relaxed)).sum()
    };
    out.u64("count", sum(|c| &c.connections));
    out.u64("max", sum(|c| &c.connections_max));
    out.u64(
        "expected",
        s.ct.first().map_or(0, |c| c.expected.load(Relaxed)),
    );
    Ok(())
}

fn ct_list(s: &State, params: &str, out: &Tel) -> Result<(), String> {
    s.control.check()?;
    let cursor: u64 = if params.is_empty() {
        0
    } else {
        params
            .parse()
            .map_err(|_| format!("'{params}' is not a cursor"))?
    };
    let (worker, slot) = ((cursor >> 32) as usize, (cursor & 0xffff_ffff) as usize);
    if worker >= s.control.workers() {
        return Err(format!("cursor {cursor} is past the last table"));
    }
    let page = s.control.page(worker, slot, PAGE)?;
    // One level of nesting: the connections are keyed "0", "1", ...
    for (i, c) in page.conns.iter().enumerate() {
        out.child(&i.to_string(), conn_dict(c, page.now)?);
    }
    let next = match page.next {
        Some(slot) => Some((worker as u64) << 32 | slot as u64),
        None if worker + 1 < s.control.workers() => Some(((worker + 1) as u64) << 32),
        None => None,
    };
    if let Some(next) = next {
        out.u64("next", next);
    }
    Ok(())
}

/// A connection as a dictionary: the fields of its `conntrack -L` line.
fn conn_dict(listed: &ListedConn, now: u64) -> Result<Tel, String> {
    let d = Tel::new_dict().ok_or("out of memory")?;
    let c = &listed.conn;
    let [orig, reply] = &listed.tuples;
    let l3 = orig.l3();
    d.str("proto", proto_name(orig.proto));
    d.u64("timeout", c.seconds_left(now));
    if let Some(t) = c.tcp() {
        d.str("state", t.state.name());
    }
    for (prefix, t) in [("orig", orig), ("reply", reply)] {
        d.str(&format!("{prefix}_src"), &t.src.display(l3).to_string());
        d.str(&format!("{prefix}_dst"), &t.dst.display(l3).to_string());
        d.u64(&format!("{prefix}_sport"), u64::from(t.sport));
        d.u64(&format!("{prefix}_dport"), u64::from(t.dport));
    }
    // As `conntrack -L`, only where counters are kept (`--ct-acct=on`).
    if let Some(n) = listed.counters {
        d.u64("packets", n.packets[0] + n.packets[1]);
        d.u64("bytes", n.bytes[0] + n.bytes[1]);
    }
    d.int("assured", i32::from(c.status.has(Status::ASSURED)));
    d.u64("id", u64::from(c.id));
    Ok(d)
}

/// Expectations a reply lists at most (it must fit 16 KB); `total` says
/// how many there are.
const EXPECT_PAGE: usize = 64;

fn expect_list(s: &State, _: &str, out: &Tel) -> Result<(), String> {
    let all = s.control.expectations()?;
    out.u64("total", all.len() as u64);
    for (i, (e, now)) in all.iter().take(EXPECT_PAGE).enumerate() {
        let d = Tel::new_dict().ok_or("out of memory")?;
        let t = &e.tuple;
        let l3 = t.l3();
        d.u64(
            "timeout",
            e.deadline.saturating_sub(*now) / crate::conntrack::SEC,
        );
        d.str("proto", proto_name(t.proto));
        d.str("src", &t.src.display(l3).to_string());
        d.str("dst", &t.dst.display(l3).to_string());
        d.u64("dport", u64::from(t.dport));
        d.str("helper", e.helper.name());
        d.u64("master_id", u64::from(e.master.id));
        out.child(&i.to_string(), d);
    }
    Ok(())
}
