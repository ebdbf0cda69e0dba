#!/usr/bin/env bash
# Times the whole scenario suite: parallel (the default, 2 instances per CPU) against serial
# (-j 1) in the same run, plus a --repeat 20 flakiness pass. Prints times and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin epollscope -q
bin=target/release/epollscope
rounds=${ROUNDS:-5}

best() { sort -n | head -1; }
time_run() { # prints seconds for one run of "$@"
    local start=$EPOCHREALTIME
    "$@" > /dev/null
    awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
}

par=(); ser=()
for _ in $(seq "$rounds"); do
    par+=("$(time_run "$bin" run scenarios/)")
    ser+=("$(time_run "$bin" run -j 1 scenarios/)")
done
p=$(printf '%s\n' "${par[@]}" | best)
s=$(printf '%s\n' "${ser[@]}" | best)
instances=$("$bin" run scenarios/ | tail -1)
printf 'suite: %s (%s CPUs)\n' "$instances" "$(nproc)"
printf 'parallel (default -j): best of %d = %.2f s\n' "$rounds" "$p"
printf 'serial (-j 1):         best of %d = %.2f s\n' "$rounds" "$s"
awk -v s="$s" -v p="$p" 'BEGIN { printf "speed-up parallel/serial: %.2fx\n", s / p }'
start=$EPOCHREALTIME
"$bin" run --repeat 20 scenarios/ | tail -1
awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "--repeat 20: %.1f s\n", b - a }'

