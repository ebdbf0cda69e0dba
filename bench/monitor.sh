#!/usr/bin/env bash
# Flow monitor throughput: reassemble a ~1 GB pcap of bulk flows (release build, pinned to one
# core) and compare with tcpflow writing every flow to files, twice:
#   counting:     `epollscope monitor --stats` (reassemble, read every byte, count) vs tcpflow
#   like-for-like: `epollscope monitor --flows DIR` (one file per direction, as tcpflow) vs tcpflow
# and a 100 MB slice vs `tshark -z follow` (tshark dissects every packet and is far slower; the
# slice keeps the run short). Also times the floors of the like-for-like comparison: `dd`
# reading the capture once (from the page cache, into a buffer) and `dd` writing as many bytes
# as the flows hold, from /dev/zero, into one file in the same directory (the kernel's cost of
# putting those bytes into files), plainly and into blocks reserved first (`fallocate -n`, as
# `--flows` reserves them), and prints the best ratio a tool that only wrote, and one that
# read the capture once and wrote, could have against tcpflow here.
# Each timed command runs RUNS times (default 5), the tools taking turns in every round, and
# the ratios are of the fastest runs (as hyperfine's "min") and of the medians. A machine's
# write speed varies from run to run (on a VM, a page the host reclaimed costs a fault on
# first write): every run's time is printed, so that an outlier is seen, not averaged in.
# Prints the machine's load before and after: other work on the machine skews every number, so
# read them with it.
# Usage: bench/monitor.sh [MEGABYTES=1024] [RUNS=5]. Needs tcpflow and tshark
# (apt-get install tcpflow tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1024}
RUNS=${2:-5}
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
# Page cache: measure reassembly, not the disk. The pages a writer left (gen_pcap's small
# writes) are dropped first and the captures read back, as a capture is read after it was
# written elsewhere or evicted: read-ahead fills the cache with large folios, which cost the
# kernel far less to map and to read (on a 6.18 kernel, mapping the 1.15 GB capture took
# 0.10 s of system time from gen_pcap's pages and 0.01 s after this).
for f in "$BIG" "$SLICE"; do dd if="$f" iflag=nocache count=0 status=none; done
cat "$BIG" "$SLICE" >/dev/null

secs() { # runs "$@" pinned to one core, prints wall seconds (stops the script if it fails)
    local t0 t1
    t0=$(date +%s.%N)
    taskset -c 0 "$@" >/dev/null 2>"$OUT/stderr" || {
        printf 'failed: %s\n' "$*" >&2
        cat "$OUT/stderr" >&2
        return 1
    }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
# sync: the next tool does not share the disk with the last one's writeback.
fresh() { rm -rf "${OUT:?}"/*; sync; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
list() { printf '%.3f ' "$@"; }

printf 'load before: %s (%s cores)\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
# A VM that hands freed memory back to its host at once (free page reporting) makes the next
# writer fault every page in again; on such a kernel, hold freed pages a minute for the run
# (this script does not change the machine's settings).
HOLD=/sys/module/page_reporting/parameters/min_free_ms
if [ -r "$HOLD" ] && [ "$(cat "$HOLD")" -lt 30000 ]; then
    printf 'note: free page reporting hands freed pages back after %s ms: writers will be slow\n' \
        "$(cat "$HOLD")"
    printf '      now and then; to measure the tools, not the host: echo 60000 > %s\n' "$HOLD"
fi
# DAMON's proactive reclaim pages out what was not touched for a while, the capture's page
# cache included: a run then reads it from disk again (the same note: this script changes
# nothing).
for state in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
    [ -r "$state" ] && [ "$(cat "$state")" = on ] || continue
    if grep -qx pageout "${state%/state}"/contexts/*/schemes/*/action 2>/dev/null; then
        printf 'note: DAMON pages out cold memory (%s is on): the capture may be read from\n' "$state"
        printf '      disk again between runs; to measure the tools: echo off > %s\n' "$state"
    fi
done
# Warm-up, not timed: memory the last runs freed, written once.
dd if=/dev/zero of="$OUT/warm" bs=1M count=$((2 * MB)) status=none
fresh
size=$(stat -c %s "$BIG")
ours_bytes=0
tcpflow_bytes=0
count=() files=() tcpflow=() floor=() reserved_floor=() read_floor=()
for round in $(seq "$RUNS"); do
    count+=("$(secs "$TARGET/release/epollscope" monitor --pcap "$BIG" --stats)")
    fresh
    files+=("$(secs "$TARGET/release/epollscope" monitor --pcap "$BIG" --flows "$OUT/ours")")
    ours_bytes=$(cat "$OUT"/ours/* | wc -c)
    fresh
    tcpflow+=("$(secs tcpflow -r "$BIG" -o "$OUT/tcpflow")")
    tcpflow_bytes=$(find "$OUT/tcpflow" -type f ! -name '*.xml' -exec cat {} + | wc -c)
    fresh
    floor+=("$(secs dd if=/dev/zero of="$OUT/floor" bs=1M count="$ours_bytes" iflag=count_bytes)")
    fresh
    reserved_floor+=("$(secs sh -c ': >"$2" && fallocate -n -l "$1" "$2" &&
        dd if=/dev/zero of="$2" bs=1M count="$1" iflag=count_bytes conv=notrunc' - \
        "$ours_bytes" "$OUT/floor")")
    fresh
    read_floor+=("$(secs dd if="$BIG" of=/dev/null bs=1M)")
    printf 'round %d of %d done\n' "$round" "$RUNS" >&2
done
ours_slice=$(secs "$TARGET/release/epollscope" monitor --pcap "$SLICE" --stats)
tshark=$(secs tshark -r "$SLICE" -q -z follow,tcp,raw,0)
printf 'load after:  %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { echo "$1 / $2" | bc -l; }
rate() { echo "$size / $1 / 1000000" | bc -l; }
printf 'file %s: %d bytes, 64 flows; %d runs each, seconds in run order\n' "$BIG" "$size" "$RUNS"
show() { # name, times...
    local name=$1
    shift
    printf '%-34s min %7.3f s  median %7.3f s  (%s)\n' "$name" "$(min "$@")" "$(median "$@")" "$(list "$@")"
}
show "epollscope monitor --stats" "${count[@]}"
show "epollscope monitor --flows DIR" "${files[@]}"
show "tcpflow -r -o DIR" "${tcpflow[@]}"
show "floor: dd writing the bytes" "${floor[@]}"
show "floor: dd into reserved blocks" "${reserved_floor[@]}"
show "floor: dd reading the capture" "${read_floor[@]}"
printf 'bytes written: epollscope %d, tcpflow %d\n' "$ours_bytes" "$tcpflow_bytes"
tf_min=$(min "${tcpflow[@]}") tf_med=$(median "${tcpflow[@]}")
printf '%-34s %6s %8s\n' "vs tcpflow" "min" "median"
printf '%-34s %5.1fx %7.1fx   %6.0f MB/s\n' "counting (--stats)" \
    "$(ratio "$tf_min" "$(min "${count[@]}")")" "$(ratio "$tf_med" "$(median "${count[@]}")")" \
    "$(rate "$(min "${count[@]}")")"
printf '%-34s %5.1fx %7.1fx   %6.0f MB/s\n' "like-for-like (--flows DIR)" \
    "$(ratio "$tf_min" "$(min "${files[@]}")")" "$(ratio "$tf_med" "$(median "${files[@]}")")" \
    "$(rate "$(min "${files[@]}")")"
printf '%-34s %5.1fx %7.1fx\n' "a writer alone (write floor)" \
    "$(ratio "$tf_min" "$(min "${floor[@]}")")" "$(ratio "$tf_med" "$(median "${floor[@]}")")"
printf '%-34s %5.1fx %7.1fx\n' "a writer alone, blocks reserved" \
    "$(ratio "$tf_min" "$(min "${reserved_floor[@]}")")" "$(ratio "$tf_med" "$(median "${reserved_floor[@]}")")"
printf '%-34s %5.1fx %7.1fx\n' "reading once and writing (floors)" \
    "$(ratio "$tf_min" "$(echo "$(min "${reserved_floor[@]}") + $(min "${read_floor[@]}")" | bc -l)")" \
    "$(ratio "$tf_med" "$(echo "$(median "${reserved_floor[@]}") + $(median "${read_floor[@]}")" | bc -l)")"
printf 'slice %s: %d bytes\n' "$SLICE" "$(stat -c %s "$SLICE")"
printf 'epollscope monitor --stats       %7.3f s\n' "$ours_slice"
printf 'tshark -z follow,tcp,raw,0       %7.3f s                 ratio %.1fx\n' "$tshark" "$(ratio "$tshark" "$ours_slice")"
