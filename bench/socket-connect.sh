#!/usr/bin/env bash
# socket-connect vs a tight blocking connect loop, both opening COUNT loopback TCP connections
# (and holding them) against a fresh accept sink each run. Rounds alternate which goes first so
# that neither always runs on a warmer (or more TIME_WAIT-laden) kernel.
#
# usage: bench/socket-connect.sh [ROUNDS] [COUNT] [CONCURRENCY]
# Times are wall clock of the whole process (start to exit, fds closed) as seen from here, plus
# each tool's own connect-phase time. ratio = throughput(socket-connect) / throughput(loop).
set -euo pipefail

rounds=${1:-5}
count=${2:-19990}
concurrency=${3:-512}

cd "$(dirname "$0")/.."
# Quiet unless it fails: warnings from unrelated modules would only clutter the results.
build=(cargo build --release --bin socket-connect --example connect_loop)
"${build[@]}" >/dev/null 2>&1 || "${build[@]}"
tool=target/release/socket-connect
loop=target/release/examples/connect_loop

sink_pid=
stop_sink() {
    if [[ -n $sink_pid ]]; then
        kill "$sink_pid" 2>/dev/null || true
        wait "$sink_pid" 2>/dev/null || true
        sink_pid=
    fi
}
trap stop_sink EXIT

# Starts a sink and sets $port; the sink prints its port as its first line.
start_sink() {
    coproc SINK { exec "$loop" sink; }
    sink_pid=$SINK_PID
    read -r port <&"${SINK[0]}"
}

now_ns() { date +%s%N; }

# run_tool NAME: one timed run against a fresh sink; sets $wall and $inner (seconds).
# Runs in this shell, not a subshell, so that the EXIT trap always stops the sink.
run_tool() {
    local out start end
    start_sink
    start=$(now_ns)
    if [[ $1 == socket-connect ]]; then
        out=$("$tool" inet "$port" --count "$count" --hold 0 --concurrency "$concurrency" --json)
        end=$(now_ns)
        if ! grep -q "\"connected\":$count," <<<"$out"; then
            echo "socket-connect fell short: $out" >&2
            exit 1
        fi
        inner=$(sed -E 's/.*"elapsed_us":([0-9]+).*/\1/' <<<"$out" | awk '{printf "%.4f", $1/1e6}')
    else
        out=$("$loop" "$port" "$count")
        end=$(now_ns)
        inner=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "s") printf "%.4f", $i}' <<<"$out")
    fi
    stop_sink
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
}

echo "count $count, concurrency $concurrency, $rounds rounds, $(nproc) cores, $(uname -r)"
printf '%-5s %-15s %9s %9s\n' round tool wall_s inner_s
results=()
for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then order=(socket-connect loop); else order=(loop socket-connect); fi
    for t in "${order[@]}"; do
        run_tool "$t"
        printf '%-5s %-15s %9s %9s\n' "$r" "$t" "$wall" "$inner"
        results+=("$t $wall $inner")
    done
done

printf '%s\n' "${results[@]}" | awk -v n="$count" '
    function median(a, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    $1 == "socket-connect" { sw[++s] = $2; si[s] = $3 }
    $1 == "loop" { lw[++l] = $2; li[l] = $3 }
    END {
        msw = median(sw, s); mlw = median(lw, l); msi = median(si, s); mli = median(li, l)
        printf "median wall:  socket-connect %.3f s (%.0f conn/s), loop %.3f s (%.0f conn/s), ratio %.2f\n", msw, n / msw, mlw, n / mlw, mlw / msw
        printf "median inner: socket-connect %.3f s (%.0f conn/s), loop %.3f s (%.0f conn/s), ratio %.2f\n", msi, n / msi, mli, n / mli, mli / msi
    }'
