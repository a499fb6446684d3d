//! The command line: `ctfwd [EAL options] -- [options]`, as testpmd, and
//! `ctfwd trace`. Forwarding needs the `dpdk` feature (on by default);
//! without it the binary has `trace` only, and builds where libdpdk is not
//! installed.

#[cfg(feature = "dpdk")]
mod args;
#[cfg(feature = "dpdk")]
mod commands;
#[cfg(feature = "dpdk")]
mod prompt;
#[cfg(feature = "dpdk")]
mod report;
#[cfg(feature = "dpdk")]
mod run;
mod trace;

/// Exit statuses.
const EXIT_OK: i32 = 0;
#[cfg(feature = "dpdk")]
const EXIT_FAILURE: i32 = 1;
const EXIT_USAGE: i32 = 2;

/// Runs ctfwd with the process arguments; returns the exit status.
pub fn main(argv: Vec<String>) -> i32 {
    if argv.get(1).map(String::as_str) == Some("trace") {
        return trace::run(&argv[2..]);
    }
    forwarding(argv)
}

#[cfg(feature = "dpdk")]
fn forwarding(argv: Vec<String>) -> i32 {
    run::main(argv)
}

/// A build without the data plane: say so, and what does work.
#[cfg(not(feature = "dpdk"))]
fn forwarding(argv: Vec<String>) -> i32 {
    match argv.get(1).map(String::as_str) {
        Some("-h" | "--help") => {
            println!(
                "usage: ctfwd trace [--json] [--checksum] FILE   (see ctfwd trace --help)\n\n\
                 This ctfwd was built without the `dpdk` feature: it traces captures but\n\
                 cannot forward. Rebuild with default features (libdpdk-dev installed)."
            );
            EXIT_OK
        }
        Some("--version") => {
            println!("ctfwd {} (built without DPDK)", env!("CARGO_PKG_VERSION"));
            EXIT_OK
        }
        _ => {
            eprintln!(
                "ctfwd: error: forwarding needs the `dpdk` feature, which this build \
                 lacks; rebuild with default features (libdpdk-dev installed), or use \
                 `ctfwd trace`"
            );
            EXIT_USAGE
        }
    }
}
