#!/usr/bin/env bash
# bench/unix.sh: a TCP port in front of a unix-socket service, netproxy against socat and
# against the service reached directly: bulk single-stream throughput (MB/s, the client
# verifies every byte) and the proxy's CPU per GiB; median, min, max of REPS runs,
# interleaved. The service is `np-peer source` behind a unix socket made by netproxy itself
# (unix -> tcp, a second netproxy), so every target reaches the same thing the same way.
#
#   bash bench/unix.sh            # full run: writes "## Unix sockets" in docs/benchmarks.md
#   bash bench/unix.sh --quick    # 1 repetition, 256 MiB, no doc
# Pinned: the proxy under test on CPU 0, the client and the service on CPU 1 (taskset).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## Unix sockets"
HZ=$(getconf CLK_TCK)
source "$ROOT/bench/lib/doc.sh"
source "$ROOT/bench/lib/proc.sh"
source "$ROOT/bench/lib/stats.sh"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
WORK=$(mktemp -d /tmp/netproxy-unix.XXXXXX)
trap cleanup EXIT
REPS=5 BYTES=2G WRITE=1
if [[ ${1:-} == --quick ]]; then REPS=1 BYTES=256M WRITE=0; fi
PIN_PROXY=(taskset -c 0) PIN_LOAD=(taskset -c 1)
command -v taskset >/dev/null || PIN_PROXY=() PIN_LOAD=()
command -v socat >/dev/null || die "socat not found"

SOCK=$WORK/service.sock
start_peer source --bytes "$BYTES"
SRC_PORT=$PEER_PORT
# the service on a unix socket: unix -> tcp to the source, on the load's CPU
cat >"$WORK/service.lua" <<LUA
proxy { name = "service", from = { type = "unix", path = "$SOCK" },
        to = { type = "tcp", host = "127.0.0.1", port = $SRC_PORT } }
LUA
"${PIN_LOAD[@]}" "$NETPROXY" -q -w 1 "$WORK/service.lua" 2>"$WORK/service.log" &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [[ -S $SOCK ]] && break; sleep 0.05; done
[[ -S $SOCK ]] || die "the unix service did not start: $(cat "$WORK/service.log")"

declare -A PORT TPID
free_port; PORT[netproxy]=$FREE_PORT
cat >"$WORK/front.lua" <<LUA
proxy { name = "front", from = { type = "tcp", host = "127.0.0.1", port = ${PORT[netproxy]} },
        to = { type = "unix", path = "$SOCK" } }
LUA
"${PIN_PROXY[@]}" "$NETPROXY" -q -w 1 "$WORK/front.lua" 2>"$WORK/front.log" &
TPID[netproxy]=$!; PIDS+=($!)
free_port; PORT[socat]=$FREE_PORT
"${PIN_PROXY[@]}" socat "TCP-LISTEN:${PORT[socat]},bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$SOCK" 2>"$WORK/socat.log" &
TPID[socat]=$!; PIDS+=($!)
for t in netproxy socat; do wait_listen "${PORT[$t]}" "${TPID[$t]}" || die "$t did not start"; done

cpu_ticks() { # the process and its children (socat forks per connection)
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null); do
    [[ -r /proc/$p/stat ]] || continue
    read -r -a f <"/proc/$p/stat"
    total=$((total + f[13] + f[14] + f[15] + f[16]))
  done
  echo "$total"
}

declare -A MBPS CPU
for ((r = 0; r < REPS; r++)); do
  for t in netproxy socat; do
    c0=$(cpu_ticks "${TPID[$t]}")
    out=$("${PIN_LOAD[@]}" "$NP_PEER" client --connect "127.0.0.1:${PORT[$t]}" --expect source --bytes "$BYTES" --timeout 120)
    c1=$(cpu_ticks "${TPID[$t]}")
    mb=$(grep -o 'MBps=[0-9.]*' <<<"$out" | cut -d= -f2)
    grep -q "failed=0" <<<"$out" || die "$t: $out"
    MBPS[$t]+="$mb "
    CPU[$t]+="$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v b="$(numfmt --from=iec "$BYTES")" 'BEGIN { printf "%.2f", t / hz / (b / 2^30) }') "
  done
done

SECTION=$WORK/section.md
{
  echo "$SECTION_TITLE"
  echo
  echo "\`bench/unix.sh\` ($(date -u +%Y-%m-%d), commit $(git_rev)): a TCP port in front of a service on a unix"
  echo "socket, one stream of $BYTES (verified), $REPS runs interleaved, median (min-max); the proxy on CPU 0,"
  echo "the client and the service on CPU 1. The service is np-peer's source behind a unix socket (a second"
  echo "netproxy, unix -> tcp, on CPU 1), the same for both."
  echo
  echo "| proxy | MB/s | CPU s/GiB |"
  echo "| --- | ---: | ---: |"
  for t in netproxy socat; do
    read -r m lo hi <<<"$(stats ${MBPS[$t]})"
    read -r c _ _ <<<"$(stats ${CPU[$t]})"
    echo "| $t | $m ($lo-$hi) | $c |"
  done
} >"$SECTION"
cat "$SECTION"
if ((WRITE)); then doc_write_section "$DOC" "$SECTION_TITLE" "$SECTION"; fi
