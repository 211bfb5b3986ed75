#!/usr/bin/env bash
# bench/socks5.sh: netproxy's SOCKS5 server against microsocks and dante-server, on one machine.
#
# What it measures, every SOCKS5 server in front of the same np-peer servers on 127.0.0.1, the
# client being `np-peer client --socks5` (no authentication, a CONNECT to an IPv4 address, the
# handshake done by the client itself, then the verified stream):
#   1. Connection rate: CONN_COUNT connections, CONN_PARALLEL at a time, each a SOCKS5 handshake
#      and CONN_BYTES sent to `np-peer echo` and read back; connections per second as np-peer
#      reports it, plus the server's CPU time per connection. Median, min, max of CONN_REPS runs.
#   2. Bulk single-stream throughput: one connection reads BULK_BYTES from `np-peer source`
#      (every byte verified); MB/s, plus the server's CPU seconds per GiB. Median, min, max of
#      BULK_REPS runs.
# Servers: netproxy as `from = { type = "socks5" }` with -w 1 (one event loop) and the default
# relay (splice); microsocks (a thread per connection); dante-server (danted -N 1: one mother
# process with its negotiate, request and io children). Repetitions are interleaved (one run of
# every server, then the next round) so background noise falls on all alike. With two cores or
# more, the server under test is pinned to CPU 0 and the client and np-peer servers to CPU 1
# (taskset), so that the server never competes with the load for a core.
#
# How to run (from the repository root, after building):
#   scripts/build
#   bash bench/socks5.sh                   # full run (~2 min on 2 cores): prints the tables and
#                                          # replaces the "## SOCKS5" section of
#                                          # docs/benchmarks.md (the other sections are kept)
#   bash bench/socks5.sh --quick           # smoke run: 1 repetition, small sizes, doc untouched
#   bash bench/socks5.sh --quick --write   # smoke run that writes the section anyway
# Needs: bash, awk, ps, ss (iproute2), taskset (util-linux), microsocks, danted (dante-server).
# NETPROXY=... NP_PEER=... override the binaries. Everything listens on 127.0.0.1; every process
# started here is stopped by PID on exit. Exits 1 when a run failed or a server would not start
# (reported, the rest still runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## SOCKS5"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

TARGETS=(netproxy microsocks dante)
declare -A LABEL=(
  [netproxy]="netproxy, from = socks5, -w 1"
  [microsocks]="microsocks"
  [dante]="dante-server, danted -N 1"
)

PIDS=()             # every process this script started and has not stopped yet
declare -A PORT     # target -> its SOCKS5 port ('' while it is down)
declare -A TPID     # target -> PID of its (first) process
declare -A VALUES   # "section:target" -> the metric of every successful run, space-separated
declare -A CPU      # "section:target" -> server CPU seconds of every successful run
PROBLEMS=()
NOTES=()



# ---------------------------------------------------------------- options and checks

parse_args() {
  bench_options "$@"
  if ((QUICK)); then
    BULK_BYTES=64M BULK_REPS=1 CONN_COUNT=500 CONN_PARALLEL=20 CONN_BYTES=1K CONN_REPS=1
  else
    BULK_BYTES=1G BULK_REPS=5 CONN_COUNT=10000 CONN_PARALLEL=50 CONN_BYTES=1K CONN_REPS=5
    WRITE=1
  fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (scripts/build)"
  "$NP_PEER" --help 2>&1 | grep -q -- --socks5 || die "$NP_PEER has no --socks5: rebuild it"
  for tool in awk ps ss taskset microsocks; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y procps iproute2 util-linux microsocks)"
  done
  DANTED=$(command -v danted || echo /usr/sbin/danted)
  [[ -x $DANTED ]] || die "danted not found (apt-get install -y dante-server)"
  if (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
  else
    PIN_SERVER=() PIN_LOAD=()
    NOTES+=("one CPU: nothing pinned; the client, the servers and the SOCKS5 server under test share it.")
  fi
  if ! ulimit -n 20000 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
    NOTES+=("ulimit -n 20000 was refused; ran with $(ulimit -n) descriptors.")
  fi
}

# ---------------------------------------------------------------- processes

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n ${WORK:-} && -d $WORK ]]; then
    if ((${#PROBLEMS[@]})); then say "logs and configs kept in $WORK"; else rm -rf "$WORK"; fi
  fi
}

# The launch_* functions start one SOCKS5 server on 127.0.0.1:PORT (pinned), config in
# $WORK/$1.*, output to $LOG; they set LAUNCHED_PID.

launch_netproxy() { # PORT
  cat >"$WORK/netproxy.lua" <<EOF
-- generated by bench/socks5.sh
proxy {
  name = "socks",
  from = { type = "socks5", host = "127.0.0.1", port = $1, allow = { "127.0.0.1:*" } },
}
EOF
  "${PIN_SERVER[@]}" "$NETPROXY" -q -w 1 "$WORK/netproxy.lua" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_microsocks() { # PORT
  "${PIN_SERVER[@]}" microsocks -i 127.0.0.1 -p "$1" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_dante() { # PORT: no authentication, errors only in its log
  local root_lines=""
  [[ $(id -u) == 0 ]] && root_lines=$'user.privileged: root\nuser.unprivileged: nobody'
  cat >"$WORK/danted.conf" <<EOF
# generated by bench/socks5.sh
logoutput: stderr
internal: 127.0.0.1 port = $1
external: 127.0.0.1
socksmethod: none
$root_lines
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: error }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: error }
EOF
  "${PIN_SERVER[@]}" "$DANTED" -f "$WORK/danted.conf" -N 1 -p "$WORK/danted.pid" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# start_target TARGET: on a free port until it listens (5 attempts); sets PORT and TPID.
start_target() {
  local target=$1 attempt
  LOG=$WORK/$target.log PORT[$target]="" TPID[$target]=""
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    "launch_$target" "$FREE_PORT"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PORT[$target]=$FREE_PORT TPID[$target]=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    say "  $target did not listen on port $FREE_PORT (attempt $attempt): $(tail -3 "$LOG")"
  done
  PROBLEMS+=("${LABEL[$target]}: would not start; log: $(tail -5 "$LOG" | tr '\n' ' ')")
}

stop_targets() {
  local target
  for target in "$@"; do
    if [[ -n ${TPID[$target]:-} ]]; then stop_pid "${TPID[$target]}"; fi
    TPID[$target]="" PORT[$target]=""
  done
}

# start_peer_pinned MODE [ARGS...]: proc.sh's start_peer, pinned with the client; sets
# PEER_PORT, PEER_PID.
start_peer_pinned() {
  local mode=$1 pf=$WORK/peer-$1.port i
  shift
  "${PIN_LOAD[@]}" "$NP_PEER" "$mode" --listen 127.0.0.1:0 --port-file "$pf" "$@" >"$WORK/peer-$mode.log" 2>&1 &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  for ((i = 0; i < 200; i++)); do
    if [[ -s $pf ]]; then
      PEER_PORT=$(<"$pf")
      [[ $PEER_PORT =~ ^[0-9]+$ ]] && wait_listen "$PEER_PORT" "$PEER_PID" && return 0
    fi
    alive "$PEER_PID" || break
    sleep 0.05
  done
  die "np-peer $mode did not start: $(tail -5 "$WORK/peer-$mode.log")"
}

# ---------------------------------------------------------------- measuring

# measure SECTION TARGET REP METRIC ARGS...: one np-peer client run through the target; keeps
# METRIC and the server's CPU seconds when every connection succeeded, files a problem (and
# stops the target) otherwise.
measure() {
  local section=$1 target=$2 rep=$3 metric=$4 out rc=0 value t0 t1 err=$WORK/client.err
  shift 4
  local port=${PORT[$target]:-} tpid=${TPID[$target]:-}
  [[ -n $port ]] || return 0
  t0=$(cpu_seconds "$tpid")
  out=$("${PIN_LOAD[@]}" "$NP_PEER" client --connect "127.0.0.1:$port" --socks5 "127.0.0.1:$PEER_PORT" \
        --timeout 300 "$@" 2>"$err") || rc=$?
  t1=$(cpu_seconds "$tpid")
  value=$(field "$metric" "$out")
  if ((rc == 0)) && [[ $(field failed "$out") == 0 && -n $value ]]; then
    VALUES[$section:$target]+="$value "
    CPU[$section:$target]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') "
    printf '  %-5s rep %d  %-32s %10s %s\n' "$section" "$rep" "${LABEL[$target]}" "$value" "$metric" >&2
    return 0
  fi
  local report="$section rep $rep, ${LABEL[$target]}: \`np-peer client --connect 127.0.0.1:$port"
  report+=" --socks5 127.0.0.1:$PEER_PORT $*\` exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'"
  alive "$tpid" || report+="; the server process is gone"
  report+="; its log ends: '$(tail -3 "$WORK/$target.log" 2>/dev/null | tr '\n' ' ')'; its remaining runs were skipped"
  PROBLEMS+=("$report")
  say "  FAILED: $report"
  stop_targets "$target"
}

# ---------------------------------------------------------------- results

# stat_of SECTION TARGET [median|min|max|runs]
stat_of() {
  local v m lo hi
  read -r -a v <<<"${VALUES[$1:$2]:-}"
  read -r m lo hi <<<"$(stats "${v[@]}")"
  case ${3:-median} in median) echo "$m" ;; min) echo "$lo" ;; max) echo "$hi" ;; runs) echo "${#v[@]}" ;; esac
}

# cpu_per SECTION TARGET SCALE FORMAT: the median CPU seconds of a run, x SCALE.
cpu_per() {
  local v
  read -r -a v <<<"${CPU[$1:$2]:-}"
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v s="$3" -v f="$4" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf f "\n", m * s }'
}

conn_table() {
  local target
  echo "| SOCKS5 server | conns/s median | min | max | server CPU µs/conn | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of conn "$target") | $(stat_of conn "$target" min)" \
      "| $(stat_of conn "$target" max) | $(cpu_per conn "$target" "$((1000000 / CONN_COUNT))" %.0f)" \
      "| $(stat_of conn "$target" runs)/$CONN_REPS |"
  done
}

bulk_table() {
  local target gib
  gib=$(awk -v b="$(to_bytes "$BULK_BYTES")" 'BEGIN {print 1073741824 / b}')
  echo "| SOCKS5 server | MB/s median | min | max | server CPU s/GiB | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of bulk "$target") | $(stat_of bulk "$target" min)" \
      "| $(stat_of bulk "$target" max) | $(cpu_per bulk "$target" "$gib" %.2f) | $(stat_of bulk "$target" runs)/$BULK_REPS |"
  done
}

reading() {
  local np=netproxy
  [[ -n ${VALUES[conn:$np]:-} ]] || return 0
  echo "- Connection rate: netproxy served $(stat_of conn $np) SOCKS5 connections a second," \
    "$(ratio "$(stat_of conn $np)" "$(stat_of conn microsocks)") microsocks' rate and" \
    "$(ratio "$(stat_of conn $np)" "$(stat_of conn dante)") dante's."
  [[ -n ${VALUES[bulk:$np]:-} ]] || return 0
  echo "- Bulk: one stream through netproxy ran at $(stat_of bulk $np) MB/s," \
    "$(ratio "$(stat_of bulk $np)" "$(stat_of bulk microsocks)") microsocks' and" \
    "$(ratio "$(stat_of bulk $np)" "$(stat_of bulk dante)") dante's (netproxy relays with" \
    "splice() once the handshake is done)."
}

machine_info() {
  local cpu mem
  cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "- CPUs: $(nproc) ($cpu); memory: $mem; kernel: Linux $(uname -r)"
  echo "- netproxy: $("$NETPROXY" --version 2>&1 | head -1), tree at git $(git_rev)"
  echo "- microsocks: $(dpkg-query -W -f='${Version}' microsocks 2>/dev/null || echo unknown);" \
    "dante-server: $("$DANTED" -v 2>&1 | awk '{sub(/\.$/, "", $2); print $2; exit}')"
  if ((${#PIN_SERVER[@]})); then
    echo "- pinning: the SOCKS5 server on CPU 0, the client and the np-peer servers on CPU 1 (taskset)"
  fi
}

section() {
  echo "$SECTION_TITLE"
  echo
  echo "Written by \`bench/socks5.sh\` on $RUN_DATE$( ((QUICK)) && echo ' (--quick: smoke sizes, not for comparison)')."
  echo "Load average before and after: $LOAD_BEFORE / $LOAD_AFTER."
  echo
  machine_info
  echo
  echo "The client is \`np-peer client --socks5\`: each connection does the SOCKS5 handshake (no"
  echo "authentication, CONNECT to an IPv4 address), then its stream, every byte verified."
  printf '\n### Connection rate (%d connections, %d at a time, %s each way, %d runs)\n\n' \
    "$CONN_COUNT" "$CONN_PARALLEL" "$CONN_BYTES" "$CONN_REPS"
  conn_table
  printf '\n### Bulk single-stream throughput (%s over one connection, %d runs)\n\n' "$BULK_BYTES" "$BULK_REPS"
  bulk_table
  echo
  reading
  if ((${#NOTES[@]})); then echo; printf -- '- note: %s\n' "${NOTES[@]}"; fi
  if ((${#PROBLEMS[@]})); then echo; printf -- '- PROBLEM: %s\n' "${PROBLEMS[@]}"; fi
}

# ---------------------------------------------------------------- main

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-socks5-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy SOCKS5 benchmark$( ((QUICK)) && echo ' (--quick)'): ${TARGETS[*]}"

  local target rep
  for target in "${TARGETS[@]}"; do start_target "$target"; done

  say "connection rate: $CONN_COUNT connections, $CONN_PARALLEL at a time, $CONN_BYTES echoed, $CONN_REPS runs"
  start_peer_pinned echo
  for ((rep = 1; rep <= CONN_REPS; rep++)); do
    for target in "${TARGETS[@]}"; do
      measure conn "$target" "$rep" conns_per_sec --bytes "$CONN_BYTES" --conns "$CONN_COUNT" --parallel "$CONN_PARALLEL"
    done
  done
  stop_pid "$PEER_PID"

  say "bulk: $BULK_BYTES over one connection, $BULK_REPS runs"
  start_peer_pinned source --bytes "$BULK_BYTES"
  for ((rep = 1; rep <= BULK_REPS; rep++)); do
    for target in "${TARGETS[@]}"; do
      measure bulk "$target" "$rep" MBps --expect source --bytes "$BULK_BYTES"
    done
  done
  stop_pid "$PEER_PID"
  stop_targets "${TARGETS[@]}"
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

  section | tail -n +3
  if ((WRITE)); then
    section >"$WORK/section.md"
    doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"
    say "wrote the \"${SECTION_TITLE#\#\# }\" section of ${DOC#"$ROOT"/}"
  fi
  say "done in ${SECONDS}s"
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
