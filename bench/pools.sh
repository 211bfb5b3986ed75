#!/usr/bin/env bash
# bench/pools.sh: what an upstream pool costs per connection: netproxy with one server against
# netproxy with a pool of three (balance roundrobin), and HAProxy the same two ways, in one run.
#
# What it measures: the connection rate through each proxy, CONN_COUNT connections CONN_PARALLEL
# at a time, each sending CONN_BYTES to `np-peer echo` and reading them back (np-peer client,
# every byte verified); connections per second as np-peer reports them, and the proxy's CPU time
# per connection (the number that shows the pool's own cost: picking a server, the shared
# table's updates). Median, min, max of CONN_REPS runs.
# Proxies: netproxy -w 1 with `to = { type = "tcp", host, port }` and with
# `to = { type = "tcp", servers = { 3 servers } }` (smooth weighted round robin, passive health
# on, no active checks); HAProxy (nbthread 1) with one server and with `balance roundrobin` over
# the same three. The three servers are three np-peer echo processes. Repetitions are
# interleaved (one run of every proxy, then the next round) so background noise falls on all
# alike. With two cores or more, the proxy under test is pinned to CPU 0 and the client and
# servers to CPU 1 (taskset).
#
# How to run (from the repository root, after building):
#   scripts/build
#   bash bench/pools.sh                    # full run (~1 min on 2 cores): prints the table and
#                                          # replaces the "## Pools" section of docs/benchmarks.md
#   bash bench/pools.sh --quick            # smoke run: 1 repetition, fewer connections, doc untouched
#   bash bench/pools.sh --quick --write    # smoke run that writes the section anyway
# Needs: bash, awk, ps, ss (iproute2), taskset (util-linux), haproxy. NETPROXY=... NP_PEER=...
# override the binaries. Everything listens on 127.0.0.1; every process started here is stopped
# by PID on exit. Exits 1 when a run failed or a proxy would not start (reported, the rest runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## Pools"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

TARGETS=(netproxy-one netproxy-pool haproxy-one haproxy-pool)
declare -A LABEL=(
  [netproxy-one]="netproxy -w 1, one server"
  [netproxy-pool]="netproxy -w 1, pool of 3 (roundrobin)"
  [haproxy-one]="HAProxy nbthread 1, one server"
  [haproxy-pool]="HAProxy nbthread 1, balance roundrobin over 3"
)

PIDS=()
declare -A PORT TPID VALUES CPU
PROBLEMS=()
NOTES=()
BACKENDS=()

die() { echo "pools.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

parse_args() {
  QUICK=0 WRITE=0
  while (($#)); do
    case $1 in
      --quick) QUICK=1 ;;
      --write) WRITE=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option '$1' (try --help)" ;;
    esac
    shift
  done
  if ((QUICK)); then
    CONN_COUNT=2000 CONN_PARALLEL=20 CONN_BYTES=1K CONN_REPS=1
  else
    CONN_COUNT=20000 CONN_PARALLEL=50 CONN_BYTES=1K CONN_REPS=5
    WRITE=1
  fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (scripts/build)"
  for tool in awk ps ss taskset haproxy; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y procps iproute2 util-linux haproxy)"
  done
  if (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
  else
    PIN_SERVER=() PIN_LOAD=()
    NOTES+=("one CPU: nothing pinned; the client, the servers and the proxy under test share it.")
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

# start_backends: three np-peer echo servers, pinned with the load; sets BACKENDS (ports).
start_backends() {
  local i pf pid j
  for i in 1 2 3; do
    pf=$WORK/echo$i.port
    "${PIN_LOAD[@]}" "$NP_PEER" echo --listen 127.0.0.1:0 --port-file "$pf" >"$WORK/echo$i.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for ((j = 0; j < 200; j++)); do [[ -s $pf ]] && break; sleep 0.05; done
    [[ -s $pf ]] || die "np-peer echo did not start: $(tail -3 "$WORK/echo$i.log")"
    BACKENDS+=("$(<"$pf")")
  done
}

launch_netproxy() { # PORT N(servers)
  local cfg=$WORK/$TARGET.lua list="" b
  if (($2 == 1)); then
    list="host = \"127.0.0.1\", port = ${BACKENDS[0]}"
  else
    for b in "${BACKENDS[@]}"; do list+="\"127.0.0.1:$b\", "; done
    list="servers = { $list}"
  fi
  cat >"$cfg" <<EOF
-- generated by bench/pools.sh
proxy { name = "bench", from = { type = "tcp", host = "127.0.0.1", port = $1 },
        to = { type = "tcp", $list } }
EOF
  "${PIN_SERVER[@]}" "$NETPROXY" -q -w 1 "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_haproxy() { # PORT N(servers)
  local cfg=$WORK/$TARGET.cfg i
  {
    echo "# generated by bench/pools.sh"
    echo "global"
    echo "  nbthread 1"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 5s"
    echo "  timeout client 60s"
    echo "  timeout server 60s"
    echo "frontend bench"
    echo "  bind 127.0.0.1:$1"
    echo "  default_backend pool"
    echo "backend pool"
    echo "  balance roundrobin"
    for ((i = 0; i < $2; i++)); do echo "  server s$i 127.0.0.1:${BACKENDS[$i]}"; done
  } >"$cfg"
  "${PIN_SERVER[@]}" haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch() { # TARGET PORT
  case $1 in
    netproxy-one) launch_netproxy "$2" 1 ;;
    netproxy-pool) launch_netproxy "$2" 3 ;;
    haproxy-one) launch_haproxy "$2" 1 ;;
    haproxy-pool) launch_haproxy "$2" 3 ;;
  esac
}

start_target() {
  local attempt
  TARGET=$1 LOG=$WORK/$1.log PORT[$1]="" TPID[$1]=""
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    launch "$1" "$FREE_PORT"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PORT[$1]=$FREE_PORT TPID[$1]=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
  done
  PROBLEMS+=("${LABEL[$1]}: would not start; log: $(tail -5 "$LOG" | tr '\n' ' ')")
}

# ---------------------------------------------------------------- measuring

measure() { # TARGET REP
  local target=$1 rep=$2 out rc=0 value t0 t1 err=$WORK/client.err
  local port=${PORT[$target]:-} tpid=${TPID[$target]:-}
  [[ -n $port ]] || return 0
  t0=$(cpu_seconds "$tpid")
  out=$("${PIN_LOAD[@]}" "$NP_PEER" client --connect "127.0.0.1:$port" --bytes "$CONN_BYTES" \
        --conns "$CONN_COUNT" --parallel "$CONN_PARALLEL" --timeout 300 2>"$err") || rc=$?
  t1=$(cpu_seconds "$tpid")
  value=$(field conns_per_sec "$out")
  if ((rc == 0)) && [[ $(field failed "$out") == 0 && -n $value ]]; then
    VALUES[$target]+="$value "
    CPU[$target]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') "
    printf '  rep %d  %-48s %10s conns/s\n' "$rep" "${LABEL[$target]}" "$value" >&2
    return 0
  fi
  PROBLEMS+=("rep $rep, ${LABEL[$target]}: np-peer client exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'")
  say "  FAILED: ${PROBLEMS[-1]}"
}

stat_of() { # TARGET [median|min|max|runs]
  local v m lo hi
  read -r -a v <<<"${VALUES[$1]:-}"
  read -r m lo hi <<<"$(stats "${v[@]}")"
  case ${2:-median} in median) echo "$m" ;; min) echo "$lo" ;; max) echo "$hi" ;; runs) echo "${#v[@]}" ;; esac
}

cpu_us() { # TARGET: median proxy CPU µs per connection
  local v
  read -r -a v <<<"${CPU[$1]:-}"
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v n_conn="$CONN_COUNT" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%.1f\n", m * 1e6 / n_conn }'
}

diff_us() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "n/a"; else printf "%+.1f\n", a - b }'; }

table() {
  local t
  echo "| proxy | conns/s median | min | max | proxy CPU µs/conn | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    echo "| ${LABEL[$t]} | $(stat_of "$t") | $(stat_of "$t" min) | $(stat_of "$t" max) | $(cpu_us "$t") | $(stat_of "$t" runs)/$CONN_REPS |"
  done
}

reading() {
  [[ -n ${VALUES[netproxy-pool]:-} && -n ${VALUES[netproxy-one]:-} ]] || return 0
  echo "- The pool's cost: netproxy with a pool of 3 ran at $(ratio "$(stat_of netproxy-pool)" "$(stat_of netproxy-one)")" \
    "the rate of netproxy with one server, $(diff_us "$(cpu_us netproxy-pool)" "$(cpu_us netproxy-one)") µs of proxy CPU per connection."
  [[ -n ${VALUES[haproxy-pool]:-} ]] || return 0
  echo "- Against HAProxy: netproxy's pool ran at $(ratio "$(stat_of netproxy-pool)" "$(stat_of haproxy-pool)")" \
    "HAProxy's balance roundrobin rate (HAProxy's own pool cost: $(diff_us "$(cpu_us haproxy-pool)" "$(cpu_us haproxy-one)") µs per connection)."
}

section() {
  echo "$SECTION_TITLE"
  echo
  echo "Written by \`bench/pools.sh\` on $RUN_DATE$( ((QUICK)) && echo ' (--quick: smoke sizes, not for comparison)')."
  echo "Load average before and after: $LOAD_BEFORE / $LOAD_AFTER."
  echo
  echo "- CPUs: $(nproc); netproxy at git $(git_rev); $(haproxy -v 2>&1 | head -1)"
  ((${#PIN_SERVER[@]})) && echo "- pinning: the proxy on CPU 0, the client and the three echo servers on CPU 1 (taskset)"
  printf '\n### Connection rate (%d connections, %d at a time, %s echoed each, %d runs)\n\n' \
    "$CONN_COUNT" "$CONN_PARALLEL" "$CONN_BYTES" "$CONN_REPS"
  table
  echo
  reading
  if ((${#NOTES[@]})); then echo; printf -- '- note: %s\n' "${NOTES[@]}"; fi
  if ((${#PROBLEMS[@]})); then echo; printf -- '- PROBLEM: %s\n' "${PROBLEMS[@]}"; fi
}

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-pools-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy pools benchmark$( ((QUICK)) && echo ' (--quick)'): ${TARGETS[*]}"
  start_backends
  local t rep
  for t in "${TARGETS[@]}"; do start_target "$t"; done
  for ((rep = 1; rep <= CONN_REPS; rep++)); do
    for t in "${TARGETS[@]}"; do measure "$t" "$rep"; done
  done
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
