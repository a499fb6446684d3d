//! Binds the system DPDK with bindgen.
//!
//! DPDK's fast-path API (`rte_eth_rx_burst`, `rte_pktmbuf_free`, ring
//! enqueue/dequeue, ...) is `static inline` in its headers, so it has no symbol
//! to link against. bindgen's `wrap_static_fns` writes a C file with one
//! exported wrapper per inline function; we compile it (plus `shim.c` for the
//! thread-local `rte_errno`) with the same flags DPDK's pkg-config file gives.

use std::env;
use std::path::PathBuf;

const SETUP_HINT: &str =
    "DPDK (libdpdk-dev, found through pkg-config as `libdpdk`) is not installed: run scripts/setup first";

fn main() {
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // Checked with a plain pkg-config call first, so that a machine without
    // DPDK gets one clear line instead of a wall of missing-header errors.
    let found = std::process::Command::new("pkg-config")
        .args(["--atleast-version=22.11", "libdpdk"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("error: {SETUP_HINT}");
        std::process::exit(1);
    }
    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("pkg-config libdpdk: {e}"));

    // pkg-config's cflags carry `-include rte_config.h` and `-march=corei7`,
    // both needed: without the -march, rte_memcpy.h does not compile, and
    // -march=native could change struct layouts on an AVX-512 host.
    let cflags = pkg_config_cflags();
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let header = crate_dir.join("src/wrapper.h");
    let wrappers_c = out.join("static_fns.c");

    let bindings = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .clang_args(&cflags)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("static_fns"))
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_get_.*")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mbuf_.*")
        .allowlist_function("rte_mempool_.*")
        .allowlist_function("rte_ring_.*")
        .allowlist_function("rte_rdtsc.*")
        .allowlist_function("rte_prefetch.*")
        .allowlist_function("rte_softrss.*")
        .allowlist_function("rte_convert_rss_key")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_version")
        .allowlist_function("rte_tel_data_.*")
        .allowlist_function("rte_telemetry_register_cmd")
        .allowlist_function("rte_pdump_(init|uninit)")
        .allowlist_function("ctfwd_.*")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_ether_hdr")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_ETH_.*")
        .allowlist_var("RTE_MBUF_DEFAULT_.*")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_RING_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_var("RTE_TEL_.*")
        // Statics that are thread-locals or build paths, not data to bind.
        .blocklist_item("per_lcore_.*")
        .blocklist_item("RTE_EAL_PMD_PATH")
        // Packed structs with aligned members that Rust cannot express.
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .no_debug("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {}: {e}", header.display()));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(&wrappers_c)
        .file(crate_dir.join("src/shim.c"))
        .include(crate_dir.join("src"))
        .opt_level(3)
        .warnings(false);
    for path in &dpdk.include_paths {
        build.include(path);
    }
    for flag in cflags.iter().filter(|f| !f.starts_with("-I")) {
        build.flag(flag);
    }
    build.compile("dpdk_static_fns");
}

/// The compiler flags of `pkg-config --cflags libdpdk`, split as the shell would.
fn pkg_config_cflags() -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("running pkg-config: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
