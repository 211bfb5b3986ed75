#!/usr/bin/env bash
# bench/udp.sh: netproxy's UDP relay against socat and a direct path, on one machine.
#
# What it measures, each path in front of the same UDP echo server (bench/lib/udp-load.c, built
# here with cc) on 127.0.0.1:
#   1. Datagrams per second: one client socket keeps WINDOW datagrams in flight for SECONDS
#      (a lost one is noticed after 100 ms and the window refilled), 64 and 1,400 bytes; the
#      echoed datagrams per second. Median of REPS runs.
#   2. Latency: ping-pong of COUNT datagrams, 64 and 1,400 bytes; median and 99th percentile
#      round trip in microseconds (the added latency is the difference with "direct").
#   3. Memory per flow: netproxy's resident memory before and after FLOWS client sockets (one
#      flow each) have each been answered once; (after - before) / FLOWS. The kernel's socket
#      memory is not in it (each flow holds a socket toward the server).
#   4. Workers: datagrams per second of 64 bytes through netproxy -w 1 and -w 2, with WFLOWS
#      flows (client sockets, from 2 client processes, WWINDOW datagrams in flight each) in
#      front of an echo server of 2 processes (a flow stays on one worker, so one flow could
#      not use two). Median of REPS runs. With 4 cores or more both netproxies get CPUs 0-1
#      and the load CPUs 2-3; with fewer nothing is pinned (everything shares the cores).
# Paths: direct (the client to the echo server), netproxy (from = udp, to = udp, -w 1, no hook),
# socat (UDP4-LISTEN:PORT,fork UDP4:...: a process per client address). With two cores or more,
# the proxy is pinned to CPU 0 and the client and the echo server to CPU 1 (taskset).
#
# How to run (from the repository root, after building):
#   scripts/build
#   bash bench/udp.sh                   # full run (~1 min): prints the tables and replaces the
#                                       # "## UDP" section of docs/benchmarks.md
#   bash bench/udp.sh --quick           # smoke run: short runs, 1,000 flows, doc untouched
#   bash bench/udp.sh --quick --write   # smoke run that writes the section anyway
# Needs: bash, cc, socat, taskset (util-linux), ss. NETPROXY=... overrides the binary. Every
# process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## UDP"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"

PIDS=()

bench_options "$@"
if ((QUICK)); then SECONDS_=1 REPS=1 COUNT=2000 FLOWS=1000; else SECONDS_=5 REPS=3 COUNT=20000 FLOWS=10000; fi
WINDOW=32 WFLOWS=16 WWINDOW=4
[[ -x $NETPROXY ]] || die "no $NETPROXY: run scripts/build first"
for tool in cc socat taskset ss; do command -v $tool >/dev/null || die "needs $tool"; done

WORK=$(mktemp -d /tmp/netproxy-udp-bench.XXXXXX)
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if (($(nproc) >= 2)); then PROXY_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1); else PROXY_CPU=() LOAD_CPU=(); fi
cc -O2 -o "$WORK/udp-load" "$ROOT/bench/lib/udp-load.c" || die "cannot build udp-load"
LOAD=$WORK/udp-load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port; ECHO_PORT=$FREE_PORT
free_port; NP_PORT=$FREE_PORT
free_port; SOCAT_PORT=$FREE_PORT
free_port; ECHO2_PORT=$FREE_PORT
free_port; W1_PORT=$FREE_PORT
free_port; W2_PORT=$FREE_PORT
"${LOAD_CPU[@]}" "$LOAD" echo "$ECHO_PORT" & PIDS+=($!)
cat >"$WORK/udp.lua" <<CONF
proxy { name = "udp", from = { type = "udp", host = "127.0.0.1", port = $NP_PORT },
        to = { type = "udp", host = "127.0.0.1", port = $ECHO_PORT },
        udp_idle_timeout = 600, max_flows = $((FLOWS * 2)) }
CONF
"${PROXY_CPU[@]}" "$NETPROXY" -w 1 -q "$WORK/udp.lua" 2>"$WORK/netproxy.log" & NP_PID=$!; PIDS+=($NP_PID)
"${PROXY_CPU[@]}" socat -T 60 "UDP4-LISTEN:$SOCAT_PORT,fork,reuseaddr" "UDP4:127.0.0.1:$ECHO_PORT" & PIDS+=($!)

# the workers' comparison: its own echo server (2 processes) and two netproxies
if (($(nproc) >= 4)); then WPROXY_CPU=(taskset -c 0,1) WLOAD_CPU=(taskset -c 2,3); else WPROXY_CPU=() WLOAD_CPU=(); fi
"${WLOAD_CPU[@]}" "$LOAD" echo "$ECHO2_PORT" 2 & PIDS+=($!)
for w in 1 2; do
  wport=W${w}_PORT
  cat >"$WORK/udp-w$w.lua" <<CONF
proxy { name = "udp", from = { type = "udp", host = "127.0.0.1", port = ${!wport} },
        to = { type = "udp", host = "127.0.0.1", port = $ECHO2_PORT }, udp_idle_timeout = 600 }
CONF
  "${WPROXY_CPU[@]}" "$NETPROXY" -w $w -q "$WORK/udp-w$w.lua" 2>"$WORK/netproxy-w$w.log" & PIDS+=($!)
done

declare -A PORT=([direct]=$ECHO_PORT [netproxy]=$NP_PORT [socat]=$SOCAT_PORT [w1]=$W1_PORT [w2]=$W2_PORT)
declare -A LABEL=([direct]="direct" [netproxy]="netproxy, from/to udp, -w 1" [socat]="socat UDP4-LISTEN,fork")
TARGETS=(direct netproxy socat)
for t in "${TARGETS[@]}" w1 w2; do      # ready once a ping-pong gets through
  for ((i = 0; i < 100; i++)); do
    "$LOAD" latency "${PORT[$t]}" 8 1 >/dev/null 2>&1 && break
    sleep 0.05
  done
  ((i < 100)) || die "$t does not answer (port ${PORT[$t]})"
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A PPS P50 P99
for size in 64 1400; do
  for t in "${TARGETS[@]}"; do
    runs=""
    for ((r = 0; r < REPS; r++)); do
      out=$("${LOAD_CPU[@]}" "$LOAD" rate "${PORT[$t]}" $size $SECONDS_ $WINDOW)
      runs+=" $(sed 's/.*pps=\([0-9]*\).*/\1/' <<<"$out")"
    done
    PPS[$t:$size]=$(median <<<"$runs")
    out=$("${LOAD_CPU[@]}" "$LOAD" latency "${PORT[$t]}" $size $COUNT)
    P50[$t:$size]=$(sed 's/.*p50_us=\([0-9.]*\).*/\1/' <<<"$out")
    P99[$t:$size]=$(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$out")
    say "$t $size B: ${PPS[$t:$size]} datagrams/s, round trip p50 ${P50[$t:$size]} us p99 ${P99[$t:$size]} us"
  done
done

declare -A WPPS
for r in $(seq "$REPS"); do       # interleaved: noise falls on both alike
  for w in 1 2; do
    out=$("${WLOAD_CPU[@]}" "$LOAD" mrate "${PORT[w$w]}" 64 $SECONDS_ $WWINDOW $WFLOWS 2)
    WPPS[$w]+=" $(sed 's/.*pps=\([0-9]*\).*/\1/' <<<"$out")"
  done
done
for w in 1 2; do
  WPPS[$w]=$(median <<<"${WPPS[$w]}")
  say "netproxy -w $w, $WFLOWS flows, 64 B: ${WPPS[$w]} datagrams/s"
done
WRATIO=$(awk -v a="${WPPS[2]}" -v b="${WPPS[1]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
before=$(rss $NP_PID)
"${LOAD_CPU[@]}" "$LOAD" flows "$NP_PORT" "$FLOWS" >"$WORK/flows.out" & FLOWS_PID=$!; PIDS+=($FLOWS_PID)
for ((i = 0; i < 1200; i++)); do grep -q ready "$WORK/flows.out" && break; sleep 0.05; done
grep -q "ready ok=$FLOWS" "$WORK/flows.out" || die "flows: $(cat "$WORK/flows.out")"
after=$(rss $NP_PID)
fds=$(ls /proc/$NP_PID/fd | wc -l)
PER_FLOW=$(((after - before) * 1024 / FLOWS))
say "memory: $before KiB before, $after KiB with $FLOWS flows: $PER_FLOW bytes per flow; $fds descriptors"

{
  echo "$SECTION_TITLE"
  echo
  echo "\`bench/udp.sh$( ((QUICK)) && echo " --quick")\`, $(date -u +%Y-%m-%d), $(uname -m), $(nproc) cores; proxy on CPU 0, client and echo server on CPU 1."
  echo "One client socket (one flow), $WINDOW datagrams in flight for the rate (median of $REPS runs of ${SECONDS_} s), ping-pong of $COUNT for the round trip."
  echo
  echo "| path | 64 B datagrams/s | 64 B round trip p50 / p99 (us) | 1,400 B datagrams/s | 1,400 B round trip p50 / p99 (us) |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for t in "${TARGETS[@]}"; do
    echo "| ${LABEL[$t]} | ${PPS[$t:64]} | ${P50[$t:64]} / ${P99[$t:64]} | ${PPS[$t:1400]} | ${P50[$t:1400]} / ${P99[$t:1400]} |"
  done
  echo
  echo "Memory per flow (netproxy, no hook): $PER_FLOW bytes of resident memory per flow with $FLOWS flows ($before KiB before, $after KiB after; $fds descriptors open), plus one kernel socket per flow."
  echo
  echo "Workers: $WFLOWS flows from 2 client processes, $WWINDOW datagrams of 64 B in flight per flow, in front of an echo server of 2 processes (median of $REPS runs of ${SECONDS_} s; $( (($(nproc) >= 4)) && echo "netproxy on CPUs 0-1, the load on CPUs 2-3" || echo "nothing pinned: netproxy, the clients and the echo server share the $(nproc) cores"))."
  echo
  echo "| netproxy | 64 B datagrams/s | against -w 1 |"
  echo "| --- | ---: | ---: |"
  echo "| -w 1 | ${WPPS[1]} | 1.00 |"
  echo "| -w 2 | ${WPPS[2]} | $WRATIO |"
  echo
} >"$WORK/section.md"
cat "$WORK/section.md"
if ((!QUICK || WRITE)); then doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"; fi
