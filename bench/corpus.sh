#!/usr/bin/env bash
# Builds the third-party capture corpus that BENCHMARKS.md's monitor-vs-tshark run used: the
# test captures of tcpdump, suricata-verify, nDPI and scapy, one directory per project, files
# named after their path in the project. Symbolic links and files kept out of the clone (Git
# LFS pointers, empty files) are left out. Then compare with
#   bench/monitor_vs_tshark.sh DIR
# Usage: bench/corpus.sh DIR [[NAME=]REPO...]   (default repositories: the four on GitHub; a
# local clone or mirror path works too, e.g. for an offline machine; NAME names its
# directory, by default the repository's last path component).
set -euo pipefail
DIR=${1:?usage: bench/corpus.sh DIR [REPO...]}
shift
REPOS=("$@")
if [ ${#REPOS[@]} -eq 0 ]; then
    REPOS=(
        https://github.com/the-tcpdump-group/tcpdump
        https://github.com/OISF/suricata-verify
        https://github.com/ntop/nDPI
        https://github.com/secdev/scapy
    )
fi
command -v git >/dev/null || { echo "git is not installed" >&2; exit 2; }
mkdir -p "$DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/epollscope-corpus.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for arg in "${REPOS[@]}"; do
    repo=${arg#*=}
    name=$(basename "${repo%/}" .git)
    [ "$arg" != "$repo" ] && name=${arg%%=*}
    git clone --quiet --depth 1 "$repo" "$WORK/$name" 2>&1 | grep -v 'depth is ignored' >&2 || true
    [ -d "$WORK/$name" ] || { echo "could not clone $repo" >&2; exit 2; }
    mkdir -p "$DIR/$name"
    n=0
    while IFS= read -r -d '' f; do
        rel=${f#"$WORK/$name/"}
        [ -L "$f" ] && continue
        [ -s "$f" ] || continue
        # A Git LFS pointer is a small text file, not a capture.
        head -c 40 "$f" | grep -q '^version https://git-lfs' && continue
        cp "$f" "$DIR/$name/${rel//\//_}"
        n=$((n + 1))
    done < <(find "$WORK/$name" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) -print0 -o -type l \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) -print0)
    rm -rf "${WORK:?}/$name"
    printf '%s: %d capture files\n' "$name" "$n"
done
