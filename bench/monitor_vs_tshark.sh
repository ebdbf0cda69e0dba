#!/usr/bin/env bash
# Compares the flow monitor with `tshark -z follow,tcp,raw` on every capture in a directory,
# connection by connection and byte by byte, so anyone can repeat the comparison of issue 13
# on their own captures. Per file it prints the connections compared, how many are identical
# in both directions, and the first difference (stream, direction, byte offset).
# The monitor runs with --midstream (tshark follows flows whose SYN it did not see) and
# --gaps skip (tshark leaves out bytes missing from the capture).
# Usage: bench/monitor_vs_tshark.sh DIR [EPOLLSCOPE=target/release/epollscope]
# Needs tshark and python3.
set -euo pipefail
DIR=${1:?usage: bench/monitor_vs_tshark.sh DIR [EPOLLSCOPE]}
BIN=${2:-${CARGO_TARGET_DIR:-target}/release/epollscope}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --bin epollscope" >&2; exit 2; }
command -v tshark >/dev/null || { echo "tshark is not installed (apt-get install tshark)" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/epollscope-vs-tshark.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

total_c=0 total_i=0
while IFS= read -r -d '' f; do
    rm -rf "$WORK/flows" "$WORK/tshark"
    mkdir -p "$WORK/flows"
    rc=0
    "$BIN" monitor --pcap "$f" --midstream --gaps skip --flows "$WORK/flows" >/dev/null 2>"$WORK/err" || rc=$?
    if [ "$rc" -eq 2 ]; then
        printf '%s: monitor refused it: %s\n' "$f" "$(head -1 "$WORK/err")"
        continue
    fi
    last=$(tshark -r "$f" -T fields -e tcp.stream 2>/dev/null | sort -n | uniq | tail -1 || true)
    if [ -z "$last" ]; then
        printf '%s: no TCP\n' "$f"
        continue
    fi
    # One tshark run per 64 streams: each -z follow adds a pass over the packets it keeps.
    : >"$WORK/tshark"
    for ((s = 0; s <= last; s += 64)); do
        args=()
        for ((k = s; k <= last && k < s + 64; k++)); do args+=(-z "follow,tcp,raw,$k"); done
        tshark -r "$f" -q "${args[@]}" >>"$WORK/tshark" 2>/dev/null || true
    done
    line=$(python3 - "$WORK/tshark" "$WORK/flows" "$f" <<'PY'
import ipaddress, os, sys
follow, flows, name = sys.argv[1], sys.argv[2], sys.argv[3]

def endpoint(text):
    host, port = text.rsplit(":", 1)
    ip = ipaddress.ip_address(host.strip("[]"))
    if ip.version == 4:
        return ".".join(f"{o:03}" for o in ip.packed) + f".{int(port):05}"
    return f"{ip.compressed}.{int(port):05}"

streams, cur = [], None
for raw in open(follow, encoding="utf-8", errors="replace"):
    line = raw.rstrip("\n")
    if line.startswith("Filter: tcp.stream eq "):
        cur = {"id": int(line.split()[-1]), "nodes": [], "data": [bytearray(), bytearray()]}
        streams.append(cur)
    elif cur is None or line.startswith("===") or line.startswith("Follow:"):
        continue
    elif line.startswith("Node "):
        cur["nodes"].append(line.split(": ", 1)[1])
    elif line.strip():
        d = 1 if line.startswith("\t") else 0
        try:
            cur["data"][d] += bytes.fromhex(line.strip())
        except ValueError:
            pass
seen, compared, identical, first = {}, 0, 0, None
for st in sorted(streams, key=lambda s: s["id"]):
    if len(st["nodes"]) != 2 or ":" not in st["nodes"][0] or st["nodes"][1] == ":0":
        continue
    a, b = endpoint(st["nodes"][0]), endpoint(st["nodes"][1])
    same = True
    for d, (src, dst) in enumerate([(a, b), (b, a)]):
        base = f"{src}-{dst}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        path = os.path.join(flows, base if k == 0 else f"{base}c{k}")
        ours = open(path, "rb").read() if os.path.exists(path) else b""
        theirs = bytes(st["data"][d])
        if ours != theirs:
            same = False
            if first is None:
                at = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
                first = f"stream {st['id']} {src}->{dst} at byte {at} (ours {len(ours)} bytes, tshark {len(theirs)})"
    compared += 1
    identical += same
print(compared, identical, first or "-")
PY
)
    read -r c i rest <<<"$line"
    total_c=$((total_c + c)) total_i=$((total_i + i))
    note=""
    [ "$rc" -eq 3 ] && note=" (capture damaged: $(head -1 "$WORK/err" | sed 's/.*capture damaged: //'))"
    printf '%s: %d connections compared, %d identical, first difference: %s%s\n' "$f" "$c" "$i" "$rest" "$note"
done < <(find "$DIR" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) -print0 | sort -z)
printf 'total: %d connections compared, %d identical\n' "$total_c" "$total_i"
