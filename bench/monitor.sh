#!/usr/bin/env bash
# Flow monitor throughput: reassemble a ~1 GB pcap of bulk flows with `epollscope monitor
# --stats` (release build, one core) vs tcpflow, and a 100 MB slice vs `tshark -z follow`
# (tshark dissects every packet and is far slower; the slice keeps the run short).
# Usage: bench/monitor.sh [MEGABYTES=1024]. Needs tcpflow and tshark (apt-get install tcpflow tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1024}
SLICE_MB=100
TARGET=${CARGO_TARGET_DIR:-target}
BIG=/tmp/epollscope-bench-${MB}m.pcap
SLICE=/tmp/epollscope-bench-${SLICE_MB}m.pcap
OUT=$(mktemp -d /tmp/epollscope-bench-tcpflow.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release --bin epollscope --example gen_pcap
[ -s "$BIG" ] || "$TARGET/release/examples/gen_pcap" "$BIG" "$MB" 64
[ -s "$SLICE" ] || "$TARGET/release/examples/gen_pcap" "$SLICE" "$SLICE_MB" 64
cat "$BIG" "$SLICE" >/dev/null # page cache: measure reassembly, not the disk

secs() { # runs "$@" pinned to one core, prints wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    taskset -c 0 "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

size=$(stat -c %s "$BIG")
ours=$(secs "$TARGET/release/epollscope" monitor --pcap "$BIG" --stats)
tcpflow=$(secs tcpflow -r "$BIG" -o "$OUT")
rm -rf "${OUT:?}"/*
ours_slice=$(secs "$TARGET/release/epollscope" monitor --pcap "$SLICE" --stats)
tshark=$(secs tshark -r "$SLICE" -q -z follow,tcp,raw,0)

printf 'file %s: %d bytes, 64 flows\n' "$BIG" "$size"
printf 'epollscope monitor --stats  %7.3f s  %6.0f MB/s\n' "$ours" "$(echo "$size / $ours / 1000000" | bc -l)"
printf 'tcpflow -r                  %7.3f s  %6.0f MB/s   ratio %.1fx\n' "$tcpflow" \
    "$(echo "$size / $tcpflow / 1000000" | bc -l)" "$(echo "$tcpflow / $ours" | bc -l)"
printf 'slice %s: %d bytes\n' "$SLICE" "$(stat -c %s "$SLICE")"
printf 'epollscope monitor --stats  %7.3f s\n' "$ours_slice"
printf 'tshark -z follow,tcp,raw,0  %7.3f s                 ratio %.1fx\n' "$tshark" "$(echo "$tshark / $ours_slice" | bc -l)"
