#!/usr/bin/env bash
# Flow monitor throughput: reassemble a ~1 GB pcap of bulk flows (release build, pinned to one
# core) and compare with tcpflow writing every flow to files, twice:
#   counting:     `epollscope monitor --stats` (reassemble, read every byte, count) vs tcpflow
#   like-for-like: `epollscope monitor --flows DIR` (one file per direction, as tcpflow) vs tcpflow
# and a 100 MB slice vs `tshark -z follow` (tshark dissects every packet and is far slower; the
# slice keeps the run short). Also times the floors of the like-for-like comparison: `dd`
# reading the capture once (from the page cache, into a buffer) and `dd` writing as many bytes
# as the flows hold, from /dev/zero, into one file in the same directory (the kernel's cost of
# putting those bytes into files), and prints the best ratio a tool that only wrote, and one
# that read the capture once and wrote, could have against tcpflow here.
# Prints the machine's load before and after: other work on the machine skews every number, so
# read them with it.
# Usage: bench/monitor.sh [MEGABYTES=1024]. Needs tcpflow and tshark (apt-get install tcpflow tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1024}
SLICE_MB=100
TARGET=${CARGO_TARGET_DIR:-target}
TMP=${TMPDIR:-/tmp}
BIG=$TMP/epollscope-bench-${MB}m.pcap
SLICE=$TMP/epollscope-bench-${SLICE_MB}m.pcap
OUT=$(mktemp -d "$TMP/epollscope-bench-out.XXXXXX")
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
# sync: the next tool does not share the disk with the last one's writeback.
fresh() { rm -rf "${OUT:?}"/*; sync; }

printf 'load before: %s (%s cores)\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
size=$(stat -c %s "$BIG")
count=$(secs "$TARGET/release/epollscope" monitor --pcap "$BIG" --stats)
fresh
files=$(secs "$TARGET/release/epollscope" monitor --pcap "$BIG" --flows "$OUT/ours")
ours_bytes=$(cat "$OUT"/ours/* | wc -c)
fresh
tcpflow=$(secs tcpflow -r "$BIG" -o "$OUT/tcpflow")
tcpflow_bytes=$(find "$OUT/tcpflow" -type f ! -name '*.xml' -exec cat {} + | wc -c)
fresh
floor=$(secs dd if=/dev/zero of="$OUT/floor" bs=1M count="$ours_bytes" iflag=count_bytes)
fresh
read_floor=$(secs dd if="$BIG" of=/dev/null bs=1M)
ours_slice=$(secs "$TARGET/release/epollscope" monitor --pcap "$SLICE" --stats)
tshark=$(secs tshark -r "$SLICE" -q -z follow,tcp,raw,0)
printf 'load after:  %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

rate() { echo "$size / $1 / 1000000" | bc -l; }
printf 'file %s: %d bytes, 64 flows\n' "$BIG" "$size"
printf 'epollscope monitor --stats       %7.3f s  %6.0f MB/s   counting vs tcpflow: %.1fx\n' \
    "$count" "$(rate "$count")" "$(echo "$tcpflow / $count" | bc -l)"
printf 'epollscope monitor --flows DIR   %7.3f s  %6.0f MB/s   files vs tcpflow:    %.1fx  (%d bytes written)\n' \
    "$files" "$(rate "$files")" "$(echo "$tcpflow / $files" | bc -l)" "$ours_bytes"
printf 'tcpflow -r -o DIR                %7.3f s  %6.0f MB/s                        (%d bytes written)\n' \
    "$tcpflow" "$(rate "$tcpflow")" "$tcpflow_bytes"
printf 'floor: dd of %d bytes to one file    %7.3f s   a writer alone vs tcpflow:      %.1fx\n' \
    "$ours_bytes" "$floor" "$(echo "$tcpflow / $floor" | bc -l)"
printf 'floor: dd reading the capture once     %7.3f s   reading once and writing:      %.1fx\n' \
    "$read_floor" "$(echo "$tcpflow / ($floor + $read_floor)" | bc -l)"
printf 'slice %s: %d bytes\n' "$SLICE" "$(stat -c %s "$SLICE")"
printf 'epollscope monitor --stats       %7.3f s\n' "$ours_slice"
printf 'tshark -z follow,tcp,raw,0       %7.3f s                 ratio %.1fx\n' "$tshark" "$(echo "$tshark / $ours_slice" | bc -l)"
