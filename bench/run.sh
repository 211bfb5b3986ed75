#!/usr/bin/env bash
# bench/run.sh: netproxy against a direct connection and against other proxies, on one machine.
#
# What it measures, every target behind the same np-peer server on 127.0.0.1:
#   1. Bulk single-stream throughput: one connection reads BULK_BYTES from `np-peer source`
#      (content verified by the client); MB/s as np-peer reports it. Median, min and max of
#      BULK_REPS runs.
#   2. Short-connection rate: SHORT_CONNS connections, SHORT_PARALLEL at a time, each sending
#      SHORT_BYTES to `np-peer echo` and reading them back; connections per second as np-peer
#      reports it. Median, min and max of SHORT_REPS runs.
# Targets: direct (no proxy), netproxy --relay auto (splice), netproxy --relay buffered,
# socat (fork per connection), HAProxy in TCP mode with nbthread 1 (defaults, and with
# `option splice-auto` when this HAProxy build has splice). The repetitions are interleaved
# (rep 1 of every target, then rep 2, ...) so background noise spreads over all targets.
#
# How to run (from the repository root, after building):
#   cmake -S . -B build && make -C build
#   bash bench/run.sh            # full run (~3 min on 2 cores), prints the tables and
#                                # rewrites docs/benchmarks.md
#   bash bench/run.sh --quick    # smoke run: 1 repetition, smaller sizes, doc untouched
#   bash bench/run.sh --quick --write   # smoke run that also rewrites the doc
# Needs: bash, ss (iproute2), socat, haproxy; NETPROXY / NP_PEER override the binaries.
# Everything binds 127.0.0.1 only; every process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md

ALL_TARGETS=(direct netproxy-splice netproxy-buffered socat haproxy haproxy-splice)
declare -A LABEL=(
  [direct]="direct (no proxy)"
  [netproxy-splice]="netproxy, --relay auto (splice)"
  [netproxy-buffered]="netproxy, --relay buffered"
  [socat]="socat (fork)"
  [haproxy]="HAProxy, tcp mode, defaults"
  [haproxy-splice]="HAProxy, tcp mode, option splice-auto"
)

PIDS=()             # every process this script started and has not stopped yet
declare -A PORT     # target -> port the client connects to ('' when the target is down)
declare -A TPID     # target -> PID of its proxy process
declare -A VALUES   # "section:target" -> space-separated values of the successful runs
declare -A FAILS    # "section:target" -> number of failed runs
PROBLEMS=()         # human-readable reports of failures, for the summary and the doc
NOTES=()            # remarks on the run (skipped targets, ...)

die()  { echo "run.sh: $*" >&2; exit 1; }
say()  { echo "$*" >&2; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- options and sizes

parse_args() {
  QUICK=0 WRITE=0
  while (($#)); do
    case $1 in
      --quick) QUICK=1 ;;
      --write) WRITE=1 ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option '$1' (try --help)" ;;
    esac
    shift
  done
  if ((QUICK)); then
    BULK_BYTES=256M BULK_REPS=1 SHORT_CONNS=2000 SHORT_PARALLEL=64 SHORT_BYTES=1K SHORT_REPS=1
  else
    BULK_BYTES=2G BULK_REPS=5 SHORT_CONNS=20000 SHORT_PARALLEL=64 SHORT_BYTES=1K SHORT_REPS=3
    WRITE=1
  fi
}

check_tools() {
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (cmake -S . -B build && make -C build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (cmake -S . -B build && make -C build)"
  local tool
  for tool in ss socat haproxy awk; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y iproute2 socat haproxy)"
  done
  TARGETS=("${ALL_TARGETS[@]}")
  if ! haproxy -vv 2>/dev/null | grep -Eq '\+LINUX_SPLICE|USE_LINUX_SPLICE=1'; then
    NOTES+=("This HAProxy build has no Linux splice support; the splice-auto run was skipped.")
    TARGETS=(direct netproxy-splice netproxy-buffered socat haproxy)
  fi
  # 64 parallel connections need ~200 descriptors; 20000 leaves room for anything larger.
  ulimit -n 20000 2>/dev/null || {
    ulimit -n "$(ulimit -Hn)"
    NOTES+=("ulimit -n 20000 refused; ran with $(ulimit -n) descriptors.")
  }
}

# ---------------------------------------------------------------- processes

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# stop_pid PID: TERM its children (socat forks one per connection) and itself, KILL after 5 s.
stop_pid() {
  local pid=$1 child i
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  [[ -n ${WORK:-} && -d $WORK ]] && rm -rf "$WORK"
}

# ---------------------------------------------------------------- ports and readiness

# free_port: sets FREE_PORT to a port nobody uses, below the ephemeral range so that it cannot
# collide with the thousands of client ports (and TIME_WAITs) the tests create. Starting the
# listener is the real test: start_target retries with another port when the bind fails.
PICKED=" "
free_port() {
  local lo hi base span used try port
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  if ((lo > 11000)); then base=10000 span=$((lo - 10000)); else base=$((hi + 1)) span=$((65535 - hi)); fi
  used=" $(ss -Htan | awk '{n = split($4, a, ":"); printf "%s ", a[n]}') "
  for ((try = 0; try < 500; try++)); do
    port=$((base + (RANDOM * 32768 + RANDOM) % span))
    [[ $used == *" $port "* || $PICKED == *" $port "* ]] && continue
    PICKED+="$port "
    FREE_PORT=$port
    return 0
  done
  die "found no free port in $base..$((base + span - 1))"
}

# wait_listen PORT PID: polls until something listens on 127.0.0.1:PORT (0) or PID died or
# 10 s passed (1).
wait_listen() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 200; i++)); do
    alive "$pid" || return 1
    [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]] && return 0
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- servers and proxies

# start_peer MODE [ARGS...]: starts an np-peer server on an ephemeral port; sets PEER_PORT.
start_peer() {
  local mode=$1 pf=$WORK/peer-$1.port pid i
  shift
  rm -f "$pf"
  "$NP_PEER" "$mode" --listen 127.0.0.1:0 --port-file "$pf" "$@" >"$WORK/peer-$mode.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  PEER_PID=$pid
  for ((i = 0; i < 200; i++)); do
    if [[ -s $pf ]] && PEER_PORT=$(<"$pf") && [[ $PEER_PORT =~ ^[0-9]+$ ]]; then
      wait_listen "$PEER_PORT" "$pid" && return 0
    fi
    alive "$pid" || break
    sleep 0.05
  done
  die "np-peer $mode did not start: $(tail -5 "$WORK/peer-$mode.log")"
}

# The launch_* functions start one proxy on 127.0.0.1:PORT in front of 127.0.0.1:BACKEND,
# logging to $LOG, and set LAUNCHED_PID.
launch_netproxy() { # PORT BACKEND RELAY
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/run.sh
proxy {
  name = "bench",
  from = { type = "tcp", host = "127.0.0.1", port = $1 },
  to   = { type = "tcp", host = "127.0.0.1", port = $2 },
}
EOF
  "$NETPROXY" -q --relay "$3" "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_socat() { # PORT BACKEND
  socat "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork,backlog=1024" "TCP:127.0.0.1:$2" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_haproxy() { # PORT BACKEND SPLICE(0|1)
  local cfg=$WORK/$TAG.cfg
  {
    echo "# generated by bench/run.sh"
    echo "global"
    echo "  nbthread 1"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 5s"
    echo "  timeout client 60s"
    echo "  timeout server 60s"
    if (($3)); then echo "  option splice-auto"; fi
    echo "frontend bench"
    echo "  bind 127.0.0.1:$1"
    echo "  default_backend backend_bench"
    echo "backend backend_bench"
    echo "  server s1 127.0.0.1:$2"
  } >"$cfg"
  haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_target() { # TARGET PORT BACKEND
  case $1 in
    netproxy-splice) launch_netproxy "$2" "$3" auto ;;
    netproxy-buffered) launch_netproxy "$2" "$3" buffered ;;
    socat) launch_socat "$2" "$3" ;;
    haproxy) launch_haproxy "$2" "$3" 0 ;;
    haproxy-splice) launch_haproxy "$2" "$3" 1 ;;
    *) die "unknown target $1" ;;
  esac
}

# start_target SECTION TARGET BACKEND: sets PORT[TARGET] (empty when it would not start).
start_target() {
  local section=$1 target=$2 backend=$3 attempt
  TAG=$section-$target LOG=$WORK/$section-$target.log
  PORT[$target]="" TPID[$target]=""
  if [[ $target == direct ]]; then PORT[$target]=$backend; return 0; fi
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    launch_target "$target" "$FREE_PORT" "$backend"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PORT[$target]=$FREE_PORT TPID[$target]=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    say "  $target did not listen on port $FREE_PORT (attempt $attempt): $(tail -3 "$LOG")"
  done
  PROBLEMS+=("$section / ${LABEL[$target]}: did not start. Log: $(tail -5 "$LOG" | tr '\n' ' ')")
}

stop_targets() {
  local target
  for target in "${TARGETS[@]}"; do
    [[ -n ${TPID[$target]:-} ]] && stop_pid "${TPID[$target]}"
    TPID[$target]=""
  done
}

# ---------------------------------------------------------------- measuring

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# measure SECTION TARGET METRIC REP CLIENT-ARGS...: one np-peer client run; keeps METRIC
# (MBps or conns_per_sec) when every connection succeeded, else files a problem report.
measure() {
  local section=$1 target=$2 metric=$3 rep=$4 out rc=0 value failed err=$WORK/client.err
  shift 4
  local port=${PORT[$target]}
  if [[ -z $port ]]; then
    FAILS[$section:$target]=$((${FAILS[$section:$target]:-0} + 1))
    return 0
  fi
  out=$("$NP_PEER" client --connect "127.0.0.1:$port" "$@" 2>"$err") || rc=$?
  value=$(field "$metric" "$out") failed=$(field failed "$out")
  if ((rc == 0)) && [[ $failed == 0 && -n $value ]]; then
    VALUES[$section:$target]+="$value "
    printf '  %-6s rep %d  %-40s %10s %s\n' "$section" "$rep" "${LABEL[$target]}" "$value" \
      "$([[ $metric == MBps ]] && echo MB/s || echo conns/s)" >&2
    return 0
  fi
  FAILS[$section:$target]=$((${FAILS[$section:$target]:-0} + 1))
  local report="$section rep $rep, ${LABEL[$target]}: \`np-peer client --connect 127.0.0.1:$port $*\`"
  report+=" exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'"
  local pid=${TPID[$target]:-}
  if [[ -n $pid ]] && ! alive "$pid"; then
    wait "$pid" 2>/dev/null && rc=0 || rc=$?
    report+="; the proxy process died (wait status $rc), log: '$(tail -5 "$WORK/$section-$target.log" | tr '\n' ' ')'"
    PORT[$target]="" TPID[$target]=""
  fi
  PROBLEMS+=("$report")
  say "  FAILED: $report"
}

# run_section SECTION METRIC REPS BACKEND CLIENT-ARGS...: starts every target in front of
# BACKEND, runs REPS interleaved rounds over the targets, stops the targets.
run_section() {
  local section=$1 metric=$2 reps=$3 backend=$4 target rep
  shift 4
  for target in "${TARGETS[@]}"; do start_target "$section" "$target" "$backend"; done
  for ((rep = 1; rep <= reps; rep++)); do
    for target in "${TARGETS[@]}"; do measure "$section" "$target" "$metric" "$rep" "$@"; done
  done
  stop_targets
}

# ---------------------------------------------------------------- results

# stats VALUES...: prints "median min max" (median of an even count: mean of the middle two).
stats() {
  printf '%s\n' "$@" | sort -g | awk 'NF {v[++n] = $1}
    END {
      if (n == 0) { print "- - -"; exit }
      m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%.1f %.1f %.1f\n", m, v[1], v[n]
    }'
}

median_of() { # SECTION TARGET
  local v
  read -r -a v <<<"${VALUES[$1:$2]:-}"
  stats "${v[@]}" | awk '{print $1}'
}

# table SECTION UNIT REPS: a markdown table of one section.
table() {
  local section=$1 unit=$2 reps=$3 target v direct med lo hi
  direct=$(median_of "$section" direct)
  echo "| Target | $unit median | min | max | vs direct | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|"
  for target in "${TARGETS[@]}"; do
    read -r -a v <<<"${VALUES[$section:$target]:-}"
    read -r med lo hi <<<"$(stats "${v[@]}")"
    local ratio=-
    if [[ $med != - && $direct != - ]]; then
      ratio=$(awk -v a="$med" -v b="$direct" 'BEGIN {printf "%.0f%%", 100 * a / b}')
    fi
    echo "| ${LABEL[$target]} | $med | $lo | $hi | $ratio | ${#v[@]}/$reps |"
  done
}

# ratio_words A B: "1.23x" style comparison of two medians, or "n/a".
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "-" || b == "-" || b + 0 == 0) { print "n/a"; exit }
    printf "%.2fx", a / b }'
}

pct() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "-" || b == "-" || b + 0 == 0) { print "n/a"; exit }
    printf "%.0f%%", 100 * a / b }'
}

# reading: a few sentences computed from the medians.
reading() {
  local bd bs bb bso bh bhs sd s_s sb sso sh shs
  bd=$(median_of bulk direct) bs=$(median_of bulk netproxy-splice) bb=$(median_of bulk netproxy-buffered)
  bso=$(median_of bulk socat) bh=$(median_of bulk haproxy) bhs=$(median_of bulk haproxy-splice)
  sd=$(median_of short direct) s_s=$(median_of short netproxy-splice) sb=$(median_of short netproxy-buffered)
  sso=$(median_of short socat) sh=$(median_of short haproxy) shs=$(median_of short haproxy-splice)
  echo "- Bulk: a single stream through netproxy's splice relay ran at $bs MB/s, $(pct "$bs" "$bd") of"
  echo "  the direct connection ($bd MB/s). HAProxy ran at $bh MB/s with its defaults and $bhs MB/s"
  echo "  with splice-auto; netproxy splice is $(ratio "$bs" "$bh") HAProxy's default and"
  echo "  $(ratio "$bs" "$bhs") HAProxy splice-auto. socat (8 KiB read/write copies) ran at $bso MB/s."
  echo "- netproxy's own buffered (copying) relay ran at $bb MB/s: splice is $(ratio "$bs" "$bb") the"
  echo "  buffered path for this one stream."
  echo "- Short connections: netproxy accepted, connected and relayed $s_s conns/s with splice and"
  echo "  $sb conns/s buffered, against $sh (HAProxy), $shs (HAProxy splice-auto), $sso (socat, one"
  echo "  fork per connection) and $sd direct. Every proxied connection is two TCP connections"
  echo "  (client to proxy, proxy to server) on the same 2 cores, so no proxy can reach the direct rate."
}

machine_info() {
  local mem cpu
  cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "- CPUs: $(nproc) ($cpu)"
  echo "- Memory: $mem"
  echo "- Kernel: Linux $(uname -r)"
  echo "- netproxy: $("$NETPROXY" --version 2>&1 | head -1), git $(git_rev)"
  echo "- HAProxy: $(haproxy -v 2>&1 | head -1 | sed 's/ - https.*//')"
  echo "- socat: $(socat -V 2>&1 | awk '/socat version/ {print $3; exit}')"
}

git_rev() {
  local rev
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
  if git -C "$ROOT" diff-index --quiet HEAD -- src lua connectors CMakeLists.txt 2>/dev/null; then
    echo "$rev"
  else
    echo "$rev (plus uncommitted changes to the core)"
  fi
}

write_doc() {
  local tmp=$DOC.tmp.$$
  {
    cat <<EOF
# Benchmarks

netproxy measured against the same traffic sent directly and through two other proxies
(socat and HAProxy), all on one machine over loopback. The point is the comparison: how much a
proxy hop costs, and how netproxy's two relays (splice and buffered) compare with each other and
with established proxies. This file is written by \`bench/run.sh\`; rerun it to refresh it.

**Everything — the load-generating client, the proxy and the server — shares the same 2 cores**,
so the numbers are relative, not absolute: on a bigger machine, with client and server elsewhere,
every number would be higher. Compare rows within one table, not with other machines.

## Machine

Run on $RUN_DATE$( ((QUICK)) && echo " (a --quick smoke run: 1 repetition, small sizes)").

$(machine_info)
- Load average before / after the run: $LOAD_BEFORE / $LOAD_AFTER

## How to run

\`\`\`sh
cmake -S . -B build && make -C build
bash bench/run.sh            # full run, about 3 minutes; rewrites this file
bash bench/run.sh --quick    # 1 repetition, smaller sizes; leaves this file alone (add --write to rewrite it)
\`\`\`

## Method

The servers and the load generator are \`build/np-peer\` (\`spec/tools/np-peer.c\`), which verifies
every byte it receives. Each target is started on 127.0.0.1 in front of the same np-peer server:

- **direct**: the client connects to np-peer itself.
- **netproxy**: \`netproxy -q [--relay buffered] bench.lua\` with a generated config of one
  \`proxy { from = { type = "tcp", ... }, to = { type = "tcp", ... } }\`; \`--relay auto\`
  (the default) splices, \`--relay buffered\` copies through user-space buffers.
- **socat**: \`socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork,backlog=1024 TCP:127.0.0.1:BACKEND\`.
  \`backlog=1024\` because socat's default listen backlog of 5 overflows at 64 parallel connects
  and the dropped SYNs, retried after 1 s and more, made it measure TCP timers (~40 conns/s)
  rather than socat. netproxy listens with a backlog of 4096, HAProxy with its maxconn (4096 here).
- **HAProxy**: \`haproxy -db -f haproxy.cfg\` with \`nbthread 1\`, \`mode tcp\`, connect timeout 5s,
  client/server timeouts 60s; once with its defaults, once with \`option splice-auto\`.

netproxy (one process) and HAProxy (one thread) each get one event loop; socat forks one process
per connection.

1. **Bulk single stream**: \`np-peer source --bytes $BULK_BYTES\` behind each target;
   \`np-peer client --expect source --bytes $BULK_BYTES\` reads and verifies the stream over one
   connection. MB/s is np-peer's figure (bytes / seconds, 1 MB = 2^20 bytes). $BULK_REPS runs per target.
2. **Short connections**: \`np-peer echo\` behind each target;
   \`np-peer client --expect echo --bytes $SHORT_BYTES --conns $SHORT_CONNS --parallel $SHORT_PARALLEL\`:
   $SHORT_CONNS connections, $SHORT_PARALLEL at a time, each sending $SHORT_BYTES, reading it back and
   closing. conns/s is np-peer's figure. $SHORT_REPS runs per target.

Runs are interleaved (one run of every target, then the next round) so that background noise
falls on all targets alike. The tables give the median, min and max of the runs; "vs direct" is
the median over the direct median. A run counts only when every connection succeeded.

## Results

### Bulk single-stream throughput ($BULK_BYTES, one connection)

$(table bulk MB/s "$BULK_REPS")

### Short connections ($SHORT_CONNS × $SHORT_BYTES echo, $SHORT_PARALLEL in parallel)

$(table short conns/s "$SHORT_REPS")

## Reading the numbers

$(reading)
- On loopback the direct case is the ceiling: the proxy copies (or splices) every byte a second
  time and competes with client and server for the same 2 cores.
EOF
    if ((${#NOTES[@]})); then
      echo
      echo "## Notes"
      echo
      printf -- '- %s\n' "${NOTES[@]}"
    fi
    if ((${#PROBLEMS[@]})); then
      echo
      echo "## Problems seen during this run"
      echo
      printf -- '- %s\n' "${PROBLEMS[@]}"
    fi
  } >"$tmp"
  mv "$tmp" "$DOC"
}

# ---------------------------------------------------------------- main

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy benchmark$( ((QUICK)) && echo ' (--quick)'): targets ${TARGETS[*]}"

  say "bulk: $BULK_BYTES over one connection, $BULK_REPS runs per target"
  start_peer source --bytes "$BULK_BYTES"
  run_section bulk MBps "$BULK_REPS" "$PEER_PORT" \
    --expect source --bytes "$BULK_BYTES" --timeout 120
  stop_pid "$PEER_PID"

  say "short: $SHORT_CONNS x $SHORT_BYTES echo, $SHORT_PARALLEL parallel, $SHORT_REPS runs per target"
  start_peer echo
  run_section short conns_per_sec "$SHORT_REPS" "$PEER_PORT" \
    --expect echo --bytes "$SHORT_BYTES" --conns "$SHORT_CONNS" --parallel "$SHORT_PARALLEL" --timeout 60
  stop_pid "$PEER_PID"

  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  echo
  echo "### Bulk single-stream throughput ($BULK_BYTES, one connection, $BULK_REPS runs)"
  echo
  table bulk MB/s "$BULK_REPS"
  echo
  echo "### Short connections ($SHORT_CONNS x $SHORT_BYTES echo, $SHORT_PARALLEL parallel, $SHORT_REPS runs)"
  echo
  table short conns/s "$SHORT_REPS"
  echo
  reading
  if ((${#NOTES[@]})); then echo; printf 'note: %s\n' "${NOTES[@]}"; fi
  if ((${#PROBLEMS[@]})); then echo; printf 'PROBLEM: %s\n' "${PROBLEMS[@]}"; fi
  if ((WRITE)); then
    write_doc
    say "wrote ${DOC#"$ROOT"/}"
  fi
  say "done in ${SECONDS}s"
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
