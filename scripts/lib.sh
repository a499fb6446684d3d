# Shared by the scripts: where cargo is, and EAL flags for a machine without
# hugepages or NICs.

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# Main lcore on CPU 0, forwarding lcore(s) on the last CPU: on a one-CPU
# machine both share CPU 0.
last_cpu=$(( $(nproc) - 1 ))

# eal_flags PREFIX: EAL options for one process with its own runtime files.
eal_flags() {
  echo "--lcores=0@0,1@${last_cpu} --no-huge -m 256 --no-pci --no-shconf --file-prefix=$1"
}

# bulk_proto NAME: sets BULK_PROTO to the flags `ctfwd-gen --bulk` takes
# for the benchmarks' PROTO (udp, the default, or tcp: TCP as pktgen
# sends it); NAME is the calling script's, for the error.
bulk_proto() {
  case ${PROTO:-udp} in
    udp) BULK_PROTO=() ;;
    tcp) BULK_PROTO=(--tcp) ;;
    *) echo "$1: PROTO is udp or tcp" >&2; exit 2 ;;
  esac
}

# huge_pages MB: memory for a benchmark's DPDK processes in 2 MB huge
# pages, as deployments run: reserves what is missing (as root) on a
# private hugetlbfs mount, both given back by huge_release (call it on
# exit). Sets HUGE_EAL to the EAL memory flags: "--huge-dir=DIR -m MB",
# or "--no-huge -m MB" with a note where huge pages cannot be had.
huge_pages() {
  local mb=$1 want free
  HUGE_EAL="--no-huge -m $mb"
  HUGE_OLD=
  HUGE_DIR=
  if [ "$(id -u)" != 0 ] || [ ! -w /proc/sys/vm/nr_hugepages ]; then
    echo "note: not root: running without huge pages (--no-huge)"
    return
  fi
  want=$(( mb / 2 + 64 ))
  HUGE_OLD=$(cat /proc/sys/vm/nr_hugepages)
  free=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
  if [ "$free" -lt "$want" ]; then
    echo $(( HUGE_OLD + want - free )) >/proc/sys/vm/nr_hugepages
  fi
  free=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
  if [ "$free" -lt "$want" ]; then
    echo "note: only $free of $want huge pages could be reserved: running with --no-huge"
    huge_release
    return
  fi
  HUGE_DIR=$(mktemp -d /tmp/ctfwd-huge.XXXXXX)
  mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_DIR"
  HUGE_EAL="--huge-dir=$HUGE_DIR -m $mb"
}

huge_release() {
  if [ -n "${HUGE_DIR:-}" ]; then
    mountpoint -q "$HUGE_DIR" && umount "$HUGE_DIR"
    rmdir "$HUGE_DIR"
    HUGE_DIR=
  fi
  if [ -n "${HUGE_OLD:-}" ]; then
    echo "$HUGE_OLD" >/proc/sys/vm/nr_hugepages
    HUGE_OLD=
  fi
}
