//! Ethernet ports: configure, start, read stats, stop.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

use dpdk_sys as sys;
use sys::consts;

use super::eal::{strerror, Eal};
use super::mempool::Mempool;
use super::rss::symmetric_key;
use super::Error;
use crate::wire::MacAddr;

/// Ports DPDK has probed (PCI devices bound to a DPDK driver, `--vdev`s).
pub fn available_ports(_eal: &Eal) -> Vec<u16> {
    (0..sys::RTE_MAX_ETHPORTS as u16)
        // SAFETY: any port id is accepted; the call only checks a table entry.
        .filter(|&p| unsafe { sys::rte_eth_dev_is_valid_port(p) } != 0)
        .collect()
}

/// What a port is, read before configuring it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub id: u16,
    pub name: String,
    pub driver: String,
    pub mac: MacAddr,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// RSS hash types the device can compute (`flow_type_rss_offloads`).
    pub rss_offloads: u64,
    /// RX offloads the device offers (`rx_offload_capa`).
    pub rx_offloads: u64,
    /// TX offloads the device offers (`tx_offload_capa`).
    pub tx_offloads: u64,
    /// Entries of the RSS redirection table (0: none).
    pub reta_size: u16,
    /// Bytes of RSS key the device takes (0: unknown).
    pub hash_key_size: u8,
    pub socket: i32,
}

impl PortInfo {
    pub fn query(_eal: &Eal, id: u16) -> Result<PortInfo, Error> {
        let mut info = MaybeUninit::<sys::rte_eth_dev_info>::zeroed();
        // SAFETY: info is writable storage for one rte_eth_dev_info.
        check(
            unsafe { sys::rte_eth_dev_info_get(id, info.as_mut_ptr()) },
            || format!("port {id}: cannot read device info"),
        )?;
        // SAFETY: rte_eth_dev_info_get filled it in on success.
        let info = unsafe { info.assume_init() };
        let mut name = [0 as std::ffi::c_char; 64];
        // SAFETY: name has RTE_ETH_NAME_MAX_LEN (64) bytes, as the API requires.
        check(
            unsafe { sys::rte_eth_dev_get_name_by_port(id, name.as_mut_ptr()) },
            || format!("port {id}: cannot read its name"),
        )?;
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: mac is writable storage for one address.
        check(unsafe { sys::rte_eth_macaddr_get(id, &mut mac) }, || {
            format!("port {id}: cannot read its MAC address")
        })?;
        Ok(PortInfo {
            id,
            // SAFETY: both are NUL-terminated: `name` was written by DPDK, and
            // driver_name points to the driver's static name.
            name: unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
            driver: if info.driver_name.is_null() {
                String::new()
            } else {
                // SAFETY: see above.
                unsafe { CStr::from_ptr(info.driver_name) }
                    .to_string_lossy()
                    .into_owned()
            },
            mac: MacAddr(mac.addr_bytes),
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            rx_offloads: info.rx_offload_capa,
            tx_offloads: info.tx_offload_capa,
            reta_size: info.reta_size,
            hash_key_size: info.hash_key_size,
            // SAFETY: any valid port id is accepted.
            socket: unsafe { sys::rte_eth_dev_socket_id(id) },
        })
    }
}

impl PortInfo {
    /// Checks the queue counts against what the device offers, before any
    /// memory is set aside for them (`rte_eth_dev_configure` would refuse
    /// them later with a vaguer error).
    pub fn check_queues(&self, cfg: &PortConfig) -> Result<(), Error> {
        if cfg.rx_queues > self.max_rx_queues || cfg.tx_queues > self.max_tx_queues {
            return Err(Error::msg(format!(
                "port {} ({}) has at most {} RX and {} TX queues; asked for {} and {}",
                self.id,
                self.name,
                self.max_rx_queues,
                self.max_tx_queues,
                cfg.rx_queues,
                cfg.tx_queues
            )));
        }
        Ok(())
    }
}

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// RSS hash types wanted (testpmd's `--rss-ip`/`--rss-udp`); masked with
    /// what the device supports, and used only with more than one RX queue.
    pub rss_hf: u64,
    pub promiscuous: bool,
    /// Ask the NIC to verify TCP/UDP checksums where it can (the tracker
    /// then skips its own check for packets it vouches for).
    pub rx_checksum: bool,
    /// Data room of the pool's mbufs, headroom included (`--mbuf-size`).
    pub mbuf_size: u16,
    /// Longest frame to receive, CRC included (`--max-pkt-len`); `None`
    /// leaves the port's MTU as it is.
    pub max_pkt_len: Option<u32>,
}

/// testpmd's `--max-pkt-len`: the MTU is the frame less its Ethernet
/// header and CRC; a frame longer than an mbuf's data room needs
/// multi-segment RX, and multi-segment TX to be sent on.
fn rx_segments(
    info: &PortInfo,
    cfg: &PortConfig,
    conf: &mut sys::rte_eth_conf,
) -> Result<RxSegments, Error> {
    // Without the flag the port keeps its MTU, 1500 unless set otherwise,
    // and small mbufs (`--mbuf-size`) may still need chains for it.
    let len = cfg.max_pkt_len.unwrap_or(DEFAULT_MTU + ETHER_OVERHEAD);
    if cfg.max_pkt_len.is_some() {
        let mtu = len.saturating_sub(ETHER_OVERHEAD);
        if mtu < 68 || mtu > u32::from(u16::MAX) {
            return Err(Error::msg(format!(
                "port {}: --max-pkt-len={len} gives MTU {mtu}, outside 68..=65535",
                info.id
            )));
        }
        conf.rxmode.mtu = mtu;
    }
    let room = u32::from(cfg.mbuf_size).saturating_sub(sys::RTE_PKTMBUF_HEADROOM);
    if len <= room {
        return Ok(RxSegments::One);
    }
    conf.txmode.offloads |= info.tx_offloads & consts::RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
    if info.rx_offloads & consts::RTE_ETH_RX_OFFLOAD_SCATTER == 0 {
        return Ok(RxSegments::NotOffered);
    }
    conf.rxmode.offloads |= consts::RTE_ETH_RX_OFFLOAD_SCATTER;
    Ok(RxSegments::Scatter)
}

/// A configured, started port. Dropping it stops and closes the port, which
/// returns the mbufs held in its descriptor rings to the pool.
pub struct Port<'eal> {
    info: PortInfo,
    rx_desc: u16,
    tx_desc: u16,
    rss_hf: u64,
    /// Entries of the redirection table as programmed (entry i -> queue
    /// i % RX queues); 0 if RSS is off or the table could not be set.
    reta_size: usize,
    mtu: u16,
    rx_segments: RxSegments,
    _pool: Arc<Mempool>,
    /// A port is closed before the EAL that probed it is cleaned up.
    _eal: PhantomData<&'eal Eal>,
}

/// Whether frames can arrive in chains of mbufs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxSegments {
    /// The longest frame fits one mbuf.
    One,
    /// Longer than an mbuf: multi-segment RX (`SCATTER`) asked for.
    Scatter,
    /// Longer than an mbuf, and the device does not offer `SCATTER`: its
    /// driver decides (net_pcap chains mbufs anyway; others drop).
    NotOffered,
}

/// What a frame carries besides its IP packet: an Ethernet header and a
/// CRC (`RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN`, testpmd's overhead where
/// the driver does not tell).
const ETHER_OVERHEAD: u32 = 14 + 4;
/// Ethernet's MTU (`RTE_ETHER_MTU`), which ports start with.
const DEFAULT_MTU: u32 = 1500;

impl<'eal> Port<'eal> {
    pub fn start(
        _eal: &'eal Eal,
        info: PortInfo,
        cfg: &PortConfig,
        pool: Arc<Mempool>,
    ) -> Result<Port<'eal>, Error> {
        let id = info.id;
        let mut conf = sys::rte_eth_conf::default();
        let rss_hf = if cfg.rx_queues > 1 {
            cfg.rss_hf & info.rss_offloads
        } else {
            0
        };
        if cfg.rx_checksum {
            conf.rxmode.offloads |= info.rx_offloads
                & (consts::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM
                    | consts::RTE_ETH_RX_OFFLOAD_UDP_CKSUM
                    | consts::RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
        }
        let rx_segments = rx_segments(&info, cfg, &mut conf)?;
        // The symmetric key, so both directions of a connection reach the
        // same queue (see `rss`). It must outlive the configure call only.
        let mut key = symmetric_key(match info.hash_key_size {
            0 => DEFAULT_KEY_LEN,
            n => usize::from(n),
        });
        if rss_hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
        }
        // SAFETY: conf is a valid, initialised rte_eth_conf; the port is
        // stopped (never started, or stopped by a previous Port's drop).
        check(
            unsafe { sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf) },
            || {
                format!(
                    "port {id}: cannot configure {} RX / {} TX queues",
                    cfg.rx_queues, cfg.tx_queues
                )
            },
        )?;
        // From here on a failure must not leave the port configured: its
        // queues' memory would stay held until EAL cleanup.
        let unfinished = Unfinished(id);
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: both pointers are to live u16s.
        check(
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) },
            || format!("port {id}: cannot adjust descriptor counts"),
        )?;
        let socket = info.socket.max(0) as u32;
        for q in 0..cfg.rx_queues {
            // SAFETY: the port is configured with rx_queues queues; a null
            // rx_conf means the driver's defaults; the pool outlives the port.
            check(
                unsafe {
                    sys::rte_eth_rx_queue_setup(
                        id,
                        q,
                        rx_desc,
                        socket,
                        std::ptr::null(),
                        pool.as_ptr(),
                    )
                },
                || format!("port {id}: cannot set up RX queue {q} ({rx_desc} descriptors)"),
            )?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: as for RX; a null tx_conf means the driver's defaults.
            check(
                unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null()) },
                || format!("port {id}: cannot set up TX queue {q} ({tx_desc} descriptors)"),
            )?;
        }
        // SAFETY: all queues are set up.
        check(unsafe { sys::rte_eth_dev_start(id) }, || {
            format!("port {id}: cannot start")
        })?;
        let reta_size = if rss_hf != 0 {
            program_reta(id, info.reta_size, cfg.rx_queues)
        } else {
            0
        };
        let port = Port {
            info,
            rx_desc,
            tx_desc,
            rss_hf,
            reta_size,
            mtu: {
                let mut mtu = 0;
                // SAFETY: the port is configured; mtu is a live u16.
                unsafe { sys::rte_eth_dev_get_mtu(id, &mut mtu) };
                mtu
            },
            rx_segments,
            _pool: pool,
            _eal: PhantomData,
        };
        // The Port closes it from now on.
        std::mem::forget(unfinished);
        if cfg.promiscuous {
            // Virtual devices often cannot switch promiscuous mode; a bump in
            // the wire still works on them, so a refusal is not fatal.
            // SAFETY: the port is started.
            let _ = unsafe { sys::rte_eth_promiscuous_enable(id) };
        }
        Ok(port)
    }

    pub fn id(&self) -> u16 {
        self.info.id
    }

    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// The MTU in force.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Whether long frames arrive in mbuf chains.
    pub fn rx_segments(&self) -> RxSegments {
        self.rx_segments
    }

    /// Descriptor counts after the driver's adjustment.
    pub fn descriptors(&self) -> (u16, u16) {
        (self.rx_desc, self.tx_desc)
    }

    /// RSS hash types in force (0: RSS off).
    pub fn rss_hf(&self) -> u64 {
        self.rss_hf
    }

    /// Size of the redirection table ctfwd programmed (0: none, so the
    /// queue a hash reaches is not known).
    pub fn reta_size(&self) -> usize {
        self.reta_size
    }

    /// Link state: (up, speed in Mbps).
    pub fn link(&self) -> (bool, u32) {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: link is writable; nowait never blocks.
        if unsafe { sys::rte_eth_link_get_nowait(self.info.id, &mut link) } != 0 {
            return (false, 0);
        }
        (link.link_status() != 0, link.link_speed)
    }

    /// The device's counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> PortStats {
        let mut s = MaybeUninit::<sys::rte_eth_stats>::zeroed();
        // SAFETY: s is writable storage for one rte_eth_stats; on failure it
        // stays zeroed, which reads as "no traffic".
        let s = unsafe {
            sys::rte_eth_stats_get(self.info.id, s.as_mut_ptr());
            s.assume_init()
        };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Port<'_> {
    /// The device's extended counters by name (`rte_eth_xstats_get`), as
    /// testpmd's `show port xstats` lists them.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let id = self.info.id;
        // SAFETY: null arrays with size 0 ask for the count only.
        let n = unsafe { sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        let Ok(n) = usize::try_from(n) else {
            return Vec::new();
        };
        let mut names = vec![sys::rte_eth_xstat_name::default(); n];
        let mut values = vec![sys::rte_eth_xstat::default(); n];
        // SAFETY: both arrays hold n entries, as the calls are told.
        let (got_names, got) = unsafe {
            (
                sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n as u32),
                sys::rte_eth_xstats_get(id, values.as_mut_ptr(), n as u32),
            )
        };
        if got_names < 0 || got < 0 {
            return Vec::new();
        }
        let got = n.min(got as usize).min(got_names as usize);
        values[..got]
            .iter()
            .filter_map(|v| {
                let name = &names.get(v.id as usize)?.name;
                // SAFETY: DPDK writes NUL-terminated names into the fixed
                // RTE_ETH_XSTATS_NAME_SIZE array.
                let name = unsafe { CStr::from_ptr(name.as_ptr()) };
                Some((name.to_string_lossy().into_owned(), v.value))
            })
            .collect()
    }

    /// Zeroes the device's counters, basic and extended (testpmd's `clear
    /// port stats`).
    pub fn reset_stats(&self) {
        // SAFETY: any valid port id; both calls only reset counters.
        unsafe {
            sys::rte_eth_stats_reset(self.info.id);
            sys::rte_eth_xstats_reset(self.info.id);
        }
    }
}

/// A port configured but not yet a `Port` (a queue set-up or the start may
/// still fail): dropped on such a failure, it stops and closes the port.
struct Unfinished(u16);

impl Drop for Unfinished {
    fn drop(&mut self) {
        // SAFETY: the port was configured by this thread and no worker has
        // seen it; stopping a port that never started only returns an error.
        unsafe {
            sys::rte_eth_dev_stop(self.0);
            sys::rte_eth_dev_close(self.0);
        }
    }
}

impl Drop for Port<'_> {
    fn drop(&mut self) {
        // SAFETY: no worker polls the port any more (workers are joined before
        // ports are dropped); close frees the queues and their mbufs.
        unsafe {
            sys::rte_eth_dev_stop(self.info.id);
            sys::rte_eth_dev_close(self.info.id);
        }
    }
}

/// A port's device counters, as `rte_eth_stats` names them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// Key length when the device does not say (most NICs take 40 bytes).
const DEFAULT_KEY_LEN: usize = 40;

/// Sets the redirection table to entry i -> queue i % queues, the spread
/// most drivers default to, so that the owner table can mirror it whatever
/// the driver's default. Returns the entries set, or 0 if the device has no
/// table or refused it (then owners are spread in software and packets
/// that reach the wrong worker are handed off).
fn program_reta(port: u16, reta_size: u16, queues: u16) -> usize {
    let size = usize::from(reta_size);
    if size == 0 || !size.is_power_of_two() || queues == 0 {
        return 0;
    }
    let mut conf: Vec<sys::rte_eth_rss_reta_entry64> = (0..size.div_ceil(64))
        .map(|group| {
            let mut e = sys::rte_eth_rss_reta_entry64 {
                mask: u64::MAX,
                ..Default::default()
            };
            for (i, slot) in e.reta.iter_mut().enumerate() {
                *slot = ((group * 64 + i) % usize::from(queues)) as u16;
            }
            e
        })
        .collect();
    // SAFETY: conf holds reta_size entries in groups of 64, as the API wants.
    let ret = unsafe { sys::rte_eth_dev_rss_reta_update(port, conf.as_mut_ptr(), reta_size) };
    if ret == 0 {
        size
    } else {
        0
    }
}

fn check(ret: i32, what: impl FnOnce() -> String) -> Result<(), Error> {
    if ret < 0 {
        Err(Error::msg(format!("{}: {}", what(), strerror(-ret))))
    } else {
        Ok(())
    }
}
