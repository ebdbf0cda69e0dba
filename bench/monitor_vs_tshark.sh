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
import ipaddress, os, re, socket, sys
follow, flows, name = sys.argv[1], sys.argv[2], sys.argv[3]

def endpoint(text):
    host, port = text.rsplit(":", 1)
    ip = ipaddress.ip_address(host.strip("[]"))
    if ip.version == 4:
        return ".".join(f"{o:03}" for o in ip.packed) + f".{int(port):05}"
    # As inet_ntop writes it (an IPv4-mapped address ends in dotted quad), like the monitor.
    return f"{socket.inet_ntop(socket.AF_INET6, ip.packed)}.{int(port):05}"

MISSING = re.compile(rb"\[\d+ bytes missing in capture file\]\x00")
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
            chunk = bytes.fromhex(line.strip())
        except ValueError:
            continue
        # tshark writes a hole as a chunk of text, "[N bytes missing in capture file]" and a
        # NUL, among the stream's bytes; the monitor leaves the hole out of the file.
        if not MISSING.fullmatch(chunk):
            cur["data"][d] += chunk
def name(base, k):
    return os.path.join(flows, base if k == 0 else f"{base}c{k}")

# Both tools create a direction's file at its first byte, so a later connection on the same
# addresses takes the next name (c1, c2, ...) only if it has bytes: the k-th stream direction
# with bytes in tshark's output is paired with the k-th file of that name.
seen, compared, identical, first, last_of = {}, 0, 0, None, {}
for st in sorted(streams, key=lambda s: s["id"]):
    if len(st["nodes"]) != 2 or ":" not in st["nodes"][0] or st["nodes"][1] == ":0":
        continue
    a, b = endpoint(st["nodes"][0]), endpoint(st["nodes"][1])
    same = True
    for d, (src, dst) in enumerate([(a, b), (b, a)]):
        base = f"{src}-{dst}"
        theirs = bytes(st["data"][d])
        if not theirs:
            continue
        k = seen.get(base, 0)
        seen[base] = k + 1
        last_of[base] = st
        path = name(base, k)
        ours = open(path, "rb").read() if os.path.exists(path) else b""
        if ours != theirs:
            same = False
            if first is None:
                at = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
                first = f"stream {st['id']} {src}->{dst} at byte {at} (ours {len(ours)} bytes, tshark {len(theirs)})"
    st["same"] = same
    compared += 1
    identical += same
# Files of ours beyond tshark's streams with bytes hold bytes tshark did not show (it left
# that stream direction empty): the connection they belong to is not identical.
for fname in sorted(os.listdir(flows)):
    m = re.fullmatch(r"(.*\.\d{5})(?:c(\d+))?", fname)
    if m is None:
        continue
    base, k = m.group(1), int(m.group(2) or 0)
    if k < seen.get(base, 0):
        continue
    st = last_of.get(base)
    if st is not None and st["same"]:
        st["same"] = False
        identical -= 1
    if first is None:
        size = os.path.getsize(os.path.join(flows, fname))
        first = f"{fname}: ours {size} bytes, tshark none"
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
