#!/usr/bin/env bash
# Fastsocket's locality side by side, in one run: the churn server and nginx (4 workers each)
# under the shared listener, plain SO_REUSEPORT, pinned workers on a hashing group, fastsocket
# mode (SO_INCOMING_CPU) and fastsocket with the classic-BPF program; throughput, server CPU
# and the fraction of local accepts for each. Usage: bench/locality.sh [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p epollscope-preload -p epollscope --lib --example churn --example nginx_locality
bin="${CARGO_TARGET_DIR:-target}"/release
export EPOLLSCOPE_PRELOAD="$bin"/libepollscope_preload.so
echo "# $(date -u '+%F %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r)"
echo "# uptime: $(uptime)"
"$bin"/examples/churn locality "${1:-20000}" "${2:-3}" 4
echo
"$bin"/examples/nginx_locality "${1:-20000}" "${2:-3}"
echo "# uptime: $(uptime)"
