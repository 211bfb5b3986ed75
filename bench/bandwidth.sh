#!/usr/bin/env bash
# bench/bandwidth.sh: how close netproxy's bandwidth shaping (`bandwidth = { per_conn,
# per_proxy }`) keeps a transfer to the asked rate, and what it costs. Each case is a ~10 s
# download from `np-peer source` through a shaped proxy (the client verifies every byte): the
# rate measured (bytes received / the client's seconds), its error against the asked rate,
# the spread of the connections' durations (from netproxy's log lines: a fair split ends them
# together), the proxy's CPU time over the run, and the relay path it took. Median of REPS
# runs for the rate and CPU; the spread and path of the last run.
#
#   bash bench/bandwidth.sh           # full run: writes "## Bandwidth shaping" in docs/benchmarks.md
#   bash bench/bandwidth.sh --quick   # 1 repetition, no doc (--write: write it anyway)
# Pinned: the proxy on CPU 0, the client and the servers on CPU 1 (taskset).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## Bandwidth shaping"
HZ=$(getconf CLK_TCK)
source "$ROOT/bench/lib/doc.sh"
source "$ROOT/bench/lib/proc.sh"
source "$ROOT/bench/lib/stats.sh"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
WORK=$(mktemp -d /tmp/netproxy-bandwidth.XXXXXX)
trap cleanup EXIT
bench_options "$@"
REPS=3
if ((QUICK)); then REPS=1; else WRITE=1; fi
PIN_PROXY=(taskset -c 0) PIN_LOAD=(taskset -c 1)
command -v taskset >/dev/null || PIN_PROXY=() PIN_LOAD=()
PEER_PIN="${PIN_LOAD[*]}"

# The cases: name | proxy options | connections | bytes each | rate asked in all (bytes/s)
CASES=(
  'per_conn 2m, 1 conn, splice|bandwidth = { per_conn = "2m" }|1|20M|2097152'
  'per_conn 2m, 1 conn, buffered|relay = "buffered", bandwidth = { per_conn = "2m" }|1|20M|2097152'
  'per_conn 20m, 1 conn, splice|bandwidth = { per_conn = "20m" }|1|200M|20971520'
  'per_conn 512k, 20 conns|bandwidth = { per_conn = "512k" }|20|5M|10485760'
  'per_proxy 2m, 20 conns|bandwidth = { per_proxy = "2m" }|20|1M|2097152'
  'per_proxy 20m, 20 conns|bandwidth = { per_proxy = "20m" }|20|10M|20971520'
  'per_source 1m, 10 conns|bandwidth = { per_source = "1m" }|10|1M|1048576'
)

declare -A SRC
CONFIG=$WORK/bandwidth.lua
: >"$CONFIG"
declare -A PORT
for i in "${!CASES[@]}"; do
  IFS='|' read -r _ opts _ bytes _ <<<"${CASES[$i]}"
  if [[ -z ${SRC[$bytes]:-} ]]; then
    rm -f "$WORK/peer-source.port"   # start_peer reads the port from it: one source per size
    start_peer source --bytes "$bytes"
    mv "$WORK/peer-source.log" "$WORK/peer-source-$bytes.log"
    SRC[$bytes]=$PEER_PORT
  fi
  free_port; PORT[$i]=$FREE_PORT
  cat >>"$CONFIG" <<LUA
proxy { name = "case$i", from = { type = "tcp", host = "127.0.0.1", port = ${PORT[$i]} },
        to = { type = "tcp", host = "127.0.0.1", port = ${SRC[$bytes]} }, $opts }
LUA
done
"${PIN_PROXY[@]}" "$NETPROXY" -v -w 1 "$CONFIG" 2>"$WORK/netproxy.log" &
NPID=$!; PIDS+=($NPID)
for i in "${!CASES[@]}"; do wait_listen "${PORT[$i]}" "$NPID" || die "netproxy did not start: $(cat "$WORK/netproxy.log")"; done

cpu_ticks() { read -r -a f <"/proc/$1/stat"; echo $((f[13] + f[14])); }

declare -A RATE ERR CPU SPREAD RELAY
for ((r = 0; r < REPS; r++)); do
  for i in "${!CASES[@]}"; do
    IFS='|' read -r name _ conns bytes asked <<<"${CASES[$i]}"
    say "run $((r + 1))/$REPS: $name"
    mark=$(wc -l <"$WORK/netproxy.log")
    c0=$(cpu_ticks "$NPID")
    out=$("${PIN_LOAD[@]}" "$NP_PEER" client --connect "127.0.0.1:${PORT[$i]}" --expect source \
          --bytes "$bytes" --conns "$conns" --parallel "$conns" --timeout 120)
    c1=$(cpu_ticks "$NPID")
    grep -q "failed=0" <<<"$out" || die "$name: $out"
    recv=$(grep -o 'bytes_recv=[0-9]*' <<<"$out" | cut -d= -f2)
    secs=$(grep -o 'seconds=[0-9.]*' <<<"$out" | cut -d= -f2)
    RATE[$i]+="$(awk -v b="$recv" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1024 }') "
    ERR[$i]+="$(awk -v b="$recv" -v s="$secs" -v a="$asked" 'BEGIN { printf "%.2f", (b / s / a - 1) * 100 }') "
    CPU[$i]+="$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') "
    for ((w = 0; w < 100; w++)); do   # the log lines of the run's connections
      (($(tail -n +"$((mark + 1))" "$WORK/netproxy.log" | grep -c " case$i: .* end=eof") >= conns)) && break
      sleep 0.05
    done
    SPREAD[$i]=$(tail -n +"$((mark + 1))" "$WORK/netproxy.log" | grep " case$i: .* end=eof" |
                 grep -o 'time=[0-9.]*' | cut -d= -f2 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
    RELAY[$i]=$(grep -o "case$i: relay: .*" "$WORK/netproxy.log" | tail -1 | sed 's/.*relay: //')
  done
done

SECTION=$WORK/section.md
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "$SECTION_TITLE"
  echo
  echo "\`bench/bandwidth.sh\` ($(date -u +%Y-%m-%d), commit $(git_rev)): downloads of about 10 s from np-peer's"
  echo "source through a proxy with \`bandwidth\` set (every byte verified by the client), $REPS runs, median"
  echo "(min-max); the proxy (\`-w 1\`) on CPU 0, the client and the servers on CPU 1. The rate is the bytes"
  echo "received over the client's own seconds (connect to last byte), for all its connections together;"
  echo "error = measured / asked - 1. Durations: the shortest and longest connection of the last run"
  echo "(netproxy's log lines); a fair split ends them together. CPU: the proxy's user + system time over"
  echo "the whole run. 1 KiB = 1024 bytes, as \`bandwidth\` counts. Load average at the end: $LOAD (on"
  echo "$(nproc) cores, shared with other work): a run whose minimum stands out was held up longer than the"
  echo "half second of budget a cap keeps for catching up (the medians are the behaviour)."
  echo
  echo "| case | asked KiB/s | measured KiB/s | error % | durations s | proxy CPU s | relay |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
  for i in "${!CASES[@]}"; do
    IFS='|' read -r name _ _ _ asked <<<"${CASES[$i]}"
    read -r m lo hi <<<"$(stats ${RATE[$i]})"
    read -r e elo ehi <<<"$(printf '%s\n' ${ERR[$i]} | sort -g | awk '{v[++n] = $1} END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%+.2f %+.2f %+.2f\n", m, v[1], v[n] }')"
    read -r c _ _ <<<"$(printf '%s\n' ${CPU[$i]} | sort -g | awk '{v[++n] = $1} END { printf "%.2f\n", v[int((n + 1) / 2)] }')"
    echo "| $name | $((asked / 1024)) | $m ($lo-$hi) | $e ($elo..$ehi) | ${SPREAD[$i]} | $c | ${RELAY[$i]} |"
  done
} >"$SECTION"
cat "$SECTION"
if ((WRITE)); then doc_write_section "$DOC" "$SECTION_TITLE" "$SECTION"; fi
