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
