#!/usr/bin/env bash
# Accept/close churn benchmark of the preload shim: native vs shim trace mode vs shim
# fastsocket mode vs strace, same run. Usage: bench/churn.sh [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p epollscope-preload -p epollscope --lib --example churn
exec "${CARGO_TARGET_DIR:-target}"/release/examples/churn bench "${1:-100000}" "${2:-3}"
