#!/usr/bin/env bash
# bench/run.sh: netproxy against a direct connection and against other proxies, on one machine.
#
# What it measures, every target in front of the same np-peer server on 127.0.0.1:
#   1. Bulk single-stream throughput: one connection reads BULK_BYTES from `np-peer source`
#      (the client verifies every byte); MB/s as np-peer reports it (and Gbit/s), plus the CPU
#      time the proxy process used per GiB and whether it spliced. Median, min, max of BULK_REPS.
#   2. Short-connection rate: SHORT_CONNS connections, SHORT_PARALLEL at a time, each sending
#      SHORT_BYTES to `np-peer echo`, reading them back and closing; connections per second as
#      np-peer reports it, plus proxy CPU time per connection. Median, min, max of SHORT_REPS.
#   3. Ping-pong latency: one connection to `np-peer echo`, PP_ROUNDS round trips of PP_BYTES,
#      one at a time (`np-peer client --pingpong`); p50 and p99 in µs, median of PP_REPS runs.
#   4. System calls per short connection: `strace -f -c` attached to the proxy over
#      STRACE_CONNS connections of the short test (after a warm-up), calls divided by connections;
#      and per ping-pong round, over one connection's STRACE_ROUNDS rounds.
#   5. Idle memory per proxied connection: bench/lib/hold.py holds IDLE_CONNS idle connections
#      through the proxy (one byte echoed on each first); the proxy's RSS and PSS growth
#      (/proc/PID/smaps_rollup) over a baseline taken with 100 held, per connection; the
#      kernel's socket memory (ss -m, /proc/net/sockstat) and the pipes the proxy holds.
# Targets: direct (no proxy); netproxy with -w 1 (a single process, one event loop; the default
# is a worker per core), --relay auto (splice) and --relay buffered, with an identity and a
# gsub Lua hook on both directions, with an identity hook on `from` only (the other direction
# splices), and with `dual` on the `from` side (tls and http probes, then a Lua probe that
# matches anything); sslh 1.20 with the same probes, sslh-select (one event loop) and sslh (a
# process per connection), beside dual in the short and ping-pong tests; socat (one fork per
# connection); HAProxy in TCP mode with nbthread 1:
# defaults, `option splice-auto`, and splice forced with `option splice-request` +
# `option splice-response` (the splice rows run only when `haproxy -vv` shows splice support);
# nginx's stream module with 1 worker (bench/lib/nginx.sh); and the floor: bench/lib/floor-relay.c,
# a bare C relay making the fewest system calls a relay can make and doing nothing else, which
# shows what the kernel alone charges any proxy per connection (short and ping-pong tests, and
# its system calls; it cannot carry a bulk stream). Every proxy runs on CPU 0
# (`taskset -c 0`), the load generator and the servers on CPU 1 (`taskset -c 1`). Repetitions
# are interleaved (one run of every target, then the next round) so background noise falls on
# all targets alike.
#
# How to run (from the repository root, after building):
#   cmake -S . -B build && make -C build
#   apt-get install -y socat haproxy nginx-light libnginx-mod-stream sslh strace python3
#   bash bench/run.sh                   # full run (~10 min on 2 cores): prints the tables and
#                                       # replaces the "## TCP relaying" section of
#                                       # docs/benchmarks.md (the other sections are kept)
#   bash bench/run.sh --quick           # smoke run: 1 repetition, small sizes, doc untouched
#   bash bench/run.sh --quick --write   # smoke run that writes the section anyway
# Needs: bash, awk, ps, ss (iproute2), taskset, socat, haproxy, strace, python3; nginx with the
# stream module (its rows are skipped with a note when missing). NETPROXY=... NP_PEER=...
# NGINX=... override the binaries. Everything listens on 127.0.0.1; every process started here
# is stopped by PID on exit. Exits 1 when a run failed or a target would not start (reported,
# the rest still runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## TCP relaying"
# The titles this script wrote before it owned one section; replaced by it.
OLD_TITLES=("## Machine" "## How to run" "## Method" "## Results" "## Reading the numbers"
            "## Notes" "## Problems seen during this run")
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"
# shellcheck source=bench/lib/nginx.sh
source "$ROOT/bench/lib/nginx.sh"

ALL_TARGETS=(direct netproxy-splice netproxy-buffered netproxy-hook-identity netproxy-hook-gsub
             netproxy-hook-from netproxy-dual sslh-select sslh socat haproxy haproxy-splice-auto haproxy-splice nginx floor)
declare -A LABEL=(
  [direct]="direct (no proxy)"
  [netproxy-splice]="netproxy, --relay auto (splice)"
  [netproxy-buffered]="netproxy, --relay buffered"
  [netproxy-hook-identity]="netproxy, identity Lua hook both ways"
  [netproxy-hook-gsub]="netproxy, gsub Lua hook both ways"
  [netproxy-hook-from]="netproxy, identity hook on from only"
  [netproxy-dual]="netproxy, dual from (probes)"
  [sslh-select]="sslh-select (probes, one event loop)"
  [sslh]="sslh (probes, a process per connection)"
  [socat]="socat, fork"
  [haproxy]="HAProxy, defaults"
  [haproxy-splice-auto]="HAProxy, option splice-auto"
  [haproxy-splice]="HAProxy, splice-request/response"
  [nginx]="nginx stream, 1 worker"
  [floor]="floor: bare C relay, no user-space work"
)
# The targets each test leaves out: dual needs the client to speak first, and the bulk client
# (reading from `np-peer source`) sends nothing; the floor relay writes each chunk once.
declare -A SKIP=([bulk]=" netproxy-dual sslh-select sslh floor ")
STRACE_TARGETS=(netproxy-splice netproxy-buffered haproxy haproxy-splice-auto nginx floor)
STRACE_PP_TARGETS=(netproxy-splice netproxy-hook-from netproxy-dual haproxy nginx floor)
IDLE_TARGETS=(netproxy-splice haproxy nginx)

# The figures issue 12 quotes, measured before its wave of work (same machine, pinned the same
# way, medians of 3 in one run), for the before/after table: "figure|target" -> value.
declare -A BEFORE=(
  ["conns|direct"]=29390 ["conns|haproxy"]=16154 ["conns|haproxy-splice"]=19402 ["conns|nginx"]=15226 ["conns|netproxy-splice"]=13090
  ["cpu|haproxy"]=57.9 ["cpu|haproxy-splice"]=48.5 ["cpu|nginx"]=61.1 ["cpu|netproxy-splice"]=73.3
  ["rss|haproxy"]=3376 ["rss|haproxy-splice"]=3376 ["rss|nginx"]=9774 ["rss|netproxy-splice"]=4013
  ["gbit|direct"]=17.4 ["gbit|haproxy"]=10.4 ["gbit|haproxy-splice"]=8.7 ["gbit|nginx"]=9.9 ["gbit|netproxy-splice"]=8.2
  ["p50|direct"]=6.9 ["p50|haproxy"]=22.0 ["p50|haproxy-splice"]=19.7 ["p50|nginx"]=21.7 ["p50|netproxy-splice"]=18.6
)

PIDS=()             # every process this script started and has not stopped yet
declare -A PORT     # target -> port the client connects to ('' while the target is down)
declare -A TPID     # target -> PID of its proxy process
declare -A PIPES0   # target -> pipe descriptors its proxy held right after starting
declare -A SPLICED  # target -> yes/no: the proxy held more pipes after the bulk runs
declare -A VALUES   # "section:target" -> the metric of every successful run, space-separated
declare -A CPU      # "section:target" -> proxy CPU seconds of every successful run
declare -A USER_CPU # "section:target" -> the user part of those seconds
declare -A FAILS    # "section:target" -> the failed count of each run that had failures
declare -A SYSCALLS # "short|pp:target" -> "name calls errors" lines from strace -c
declare -A IDLE     # "target:what" -> idle-memory readings (rss, pss, pipes, ...)
PROBLEMS=()         # failures, for the summary and the doc
NOTES=()            # remarks on the run (skipped targets, ...)



# ---------------------------------------------------------------- options and checks

parse_args() {
  bench_options "$@"
  SHORT_PARALLEL=32 SHORT_BYTES=100 PP_BYTES=64 STRACE_CONNS=1000 STRACE_ROUNDS=2000 IDLE_CONNS=9000 IDLE_WARM=100
  if ((QUICK)); then
    BULK_BYTES=256M BULK_REPS=1 SHORT_CONNS=2000 SHORT_REPS=1 PP_ROUNDS=2000 PP_REPS=1
  else
    BULK_BYTES=2G BULK_REPS=5 SHORT_CONNS=20000 SHORT_REPS=5 PP_ROUNDS=20000 PP_REPS=5
    WRITE=1
  fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (cmake -S . -B build && make -C build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (cmake -S . -B build && make -C build)"
  for tool in awk ps ss socat haproxy strace python3; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y procps iproute2 socat haproxy strace python3)"
  done
  "$NP_PEER" --help 2>&1 | grep -q -- --pingpong || die "$NP_PEER has no --pingpong: rebuild it"
  local stale
  stale=$(stale_binary)
  if [[ -n $stale ]]; then
    NOTES+=("$stale")
    say "note: $stale"
  fi
  # One event loop, like HAProxy's nbthread 1, on builds that have worker processes.
  NP_WORKERS=()
  if "$NETPROXY" --help 2>&1 | grep -q -- --workers; then NP_WORKERS=(-w 1); fi
  TARGETS=("${ALL_TARGETS[@]}")
  if ! haproxy -vv 2>/dev/null | grep -Eq '\+LINUX_SPLICE|USE_LINUX_SPLICE=1'; then
    NOTES+=("This HAProxy build has no Linux splice support: its two splice variants were skipped.")
    drop_target haproxy-splice-auto
    drop_target haproxy-splice
  fi
  if ! command -v sslh-select >/dev/null || ! command -v sslh >/dev/null; then
    NOTES+=("sslh not found (apt-get install -y sslh): the sslh rows were skipped.")
    drop_target sslh-select
    drop_target sslh
  fi
  if ! nginx_detect; then
    NOTES+=("$NGINX_MISSING: the nginx rows were skipped.")
    drop_target nginx
  fi
  # Proxies on CPU 0, the load generator and the servers on CPU 1: the proxy's CPU time and
  # latency are then its own, not shared with its peers'.
  PIN_PROXY="" PIN_LOAD="" PINNED=0
  if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    PIN_PROXY="taskset -c 0" PIN_LOAD="taskset -c 1" PINNED=1
  else
    NOTES+=("Fewer than 2 CPUs (or no taskset): nothing was pinned.")
  fi
  NGINX_PIN=$PIN_PROXY PEER_PIN=$PIN_LOAD
  # IDLE_CONNS idle connections: 2 descriptors each in the proxy, 1 in the holder and 1 in
  # the echo server; 20000 covers 9,000 and the rest.
  raise_fd_limit
}

drop_target() {
  local t keep=()
  for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] || keep+=("$t"); done
  TARGETS=("${keep[@]}")
}

has_target() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

# section_targets SECTION: the targets SECTION runs, in table order.
section_targets() {
  local t
  for t in "${TARGETS[@]}"; do [[ ${SKIP[$1]:-} == *" $t "* ]] || echo "$t"; done
}

# ---------------------------------------------------------------- processes

# pipe_count PID: pipe descriptors the tree of PID holds (spliced pipes stay pooled in
# netproxy and HAProxy).
pipe_count() {
  local pid
  for pid in $(tree "$1"); do find "/proc/$pid/fd" -lname 'pipe:*' 2>/dev/null; done | wc -l
}

# ---------------------------------------------------------------- servers and proxies


# The launch_* functions start one proxy listening on 127.0.0.1:PORT in front of
# 127.0.0.1:BACKEND, pinned to CPU 0, config in $WORK/$TAG.*, output to $LOG; they set
# LAUNCHED_PID. Hooks: the identity hook hands each chunk back unchanged; the gsub hook scans
# it for a word that never occurs.
HOOK_IDENTITY='hook = function(data) return data end'
HOOK_GSUB='hook = function(data) return (data:gsub("netproxy", "NETPROXY")) end'

# start_netproxy CONFIG RELAY: netproxy -q (NP_LOUD=1: --log-level info instead).
start_netproxy() {
  local quiet=(-q)
  [[ ${NP_LOUD:-0} == 1 ]] && quiet=(--log-level info)
  # shellcheck disable=SC2086 # PIN_PROXY is a command and its arguments
  $PIN_PROXY "$NETPROXY" "${quiet[@]}" "${NP_WORKERS[@]}" --relay "$2" "$1" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_netproxy() { # PORT BACKEND RELAY [FROM-HOOK] [TO-HOOK]
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/run.sh
proxy {
  name = "bench",
  from = { type = "tcp", host = "127.0.0.1", port = $1, ${4:-} },
  to   = { type = "tcp", host = "127.0.0.1", port = $2, ${5:-} },
}
EOF
  start_netproxy "$cfg" "$3"
}

# dual on the from side: the tls and http probes look at the client's first bytes (np-peer's
# stream, which neither recognises), then a Lua probe that matches anything sends the client
# to the echo server; client_first (the same server) would take a client no probe matched.
launch_netproxy_dual() { # PORT BACKEND
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/run.sh
local function echo() return { type = "tcp", host = "127.0.0.1", port = $2 } end
proxy {
  name = "bench",
  from = { type = "dual", host = "127.0.0.1", port = $1,
    probes = {
      { match = "tls", to = echo() },
      { match = "http", to = echo() },
      { match = function(bytes) return true end, to = echo() },
    },
    client_first = echo(),
  },
}
EOF
  start_netproxy "$cfg" auto
}

# sslh, dual's peer, with the same probes: tls and http, then anyprot (anything else) to the
# echo server; log_level 0 on each, so that sslh logs no line per connection (netproxy runs
# with -q). BINARY: sslh-select (one event loop) or sslh (a process per connection).
launch_sslh() { # PORT BACKEND BINARY
  local cfg=$WORK/$TAG.sslh.cfg
  cat >"$cfg" <<EOF
# generated by bench/run.sh
foreground: true;
numeric: true;
timeout: 2;
listen: ( { host: "127.0.0.1"; port: "$1"; } );
protocols: (
  { name: "tls"; host: "127.0.0.1"; port: "$2"; log_level: 0; },
  { name: "http"; host: "127.0.0.1"; port: "$2"; log_level: 0; },
  { name: "anyprot"; host: "127.0.0.1"; port: "$2"; log_level: 0; }
);
EOF
  # shellcheck disable=SC2086
  $PIN_PROXY "$3" "-F$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# socat's default listen backlog is 5: at 32 parallel connects it drops SYNs, and the 1 s+
# retransmits would be measured instead of socat. netproxy uses 4096, HAProxy its maxconn.
launch_socat() { # PORT BACKEND
  # shellcheck disable=SC2086
  $PIN_PROXY socat "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork,backlog=1024" "TCP:127.0.0.1:$2" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_floor() { # PORT BACKEND
  # shellcheck disable=SC2086
  $PIN_PROXY "$WORK/floor-relay" "$1" "$2" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# HAPROXY_MAXCONN: global and defaults maxconn (4096; the idle test raises it);
# HAPROXY_TIMEOUT: timeout client and server (60s; the idle test holds connections longer).
launch_haproxy() { # PORT BACKEND SPLICE(none|auto|forced)
  local cfg=$WORK/$TAG.cfg
  {
    echo "# generated by bench/run.sh"
    echo "global"
    echo "  nbthread 1"
    echo "  maxconn ${HAPROXY_MAXCONN:-4096}"
    echo "defaults"
    echo "  mode tcp"
    echo "  maxconn ${HAPROXY_MAXCONN:-4096}"
    echo "  timeout connect 5s"
    echo "  timeout client ${HAPROXY_TIMEOUT:-60s}"
    echo "  timeout server ${HAPROXY_TIMEOUT:-60s}"
    case $3 in
      auto) echo "  option splice-auto" ;;
      forced) echo "  option splice-request"; echo "  option splice-response" ;;
    esac
    echo "frontend bench"
    echo "  bind 127.0.0.1:$1"
    echo "  default_backend bench_backend"
    echo "backend bench_backend"
    echo "  server s1 127.0.0.1:$2"
  } >"$cfg"
  # shellcheck disable=SC2086
  $PIN_PROXY haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_target() { # TARGET PORT BACKEND
  case $1 in
    netproxy-splice) launch_netproxy "$2" "$3" auto ;;
    netproxy-buffered) launch_netproxy "$2" "$3" buffered ;;
    netproxy-hook-identity) launch_netproxy "$2" "$3" auto "$HOOK_IDENTITY" "$HOOK_IDENTITY" ;;
    netproxy-hook-gsub) launch_netproxy "$2" "$3" auto "$HOOK_GSUB" "$HOOK_GSUB" ;;
    netproxy-hook-from) launch_netproxy "$2" "$3" auto "$HOOK_IDENTITY" ;;
    netproxy-dual) launch_netproxy_dual "$2" "$3" ;;
    sslh-select) launch_sslh "$2" "$3" sslh-select ;;
    sslh) launch_sslh "$2" "$3" sslh ;;
    socat) launch_socat "$2" "$3" ;;
    haproxy) launch_haproxy "$2" "$3" none ;;
    haproxy-splice-auto) launch_haproxy "$2" "$3" auto ;;
    haproxy-splice) launch_haproxy "$2" "$3" forced ;;
    nginx) launch_nginx "$2" "$3" 1 ;;
    floor) launch_floor "$2" "$3" ;;
    *) die "unknown target $1" ;;
  esac
}

# start_target SECTION TARGET BACKEND: sets PORT[TARGET] ('' when it would not start).
start_target() {
  local section=$1 target=$2 backend=$3 attempt i
  TAG=$section-$target LOG=$WORK/$section-$target.log
  PORT[$target]="" TPID[$target]=""
  if [[ $target == direct ]]; then PORT[$target]=$backend; return 0; fi
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    launch_target "$target" "$FREE_PORT" "$backend"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PORT[$target]=$FREE_PORT TPID[$target]=$LAUNCHED_PID
      # nginx's master forks its worker around the time it listens
      for ((i = 0; i < 40; i++)); do
        [[ $target != nginx || -n $(children "$LAUNCHED_PID") ]] && break
        sleep 0.05
      done
      PIPES0[$target]=$(pipe_count "$LAUNCHED_PID")
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    say "  $target did not listen on port $FREE_PORT (attempt $attempt): $(tail -3 "$LOG" "$WORK/$TAG.error.log" 2>/dev/null)"
  done
  PROBLEMS+=("$section, ${LABEL[$target]}: would not start; log: $(cat "$LOG" "$WORK/$TAG.error.log" 2>/dev/null | tail -5 | tr '\n' ' ')")
}

stop_targets() {
  local target
  for target in "${TARGETS[@]}"; do
    if [[ -n ${TPID[$target]:-} ]]; then stop_pid "${TPID[$target]}"; fi
    TPID[$target]=""
  done
}

# ---------------------------------------------------------------- measuring

# client ARGS...: the load generator, pinned to CPU 1.
client() {
  # shellcheck disable=SC2086
  $PIN_LOAD "$NP_PEER" client "$@"
}

# measure SECTION TARGET METRICS REP CLIENT-ARGS...: one np-peer client run. METRICS is a
# comma-separated list (MBps, conns_per_sec, or p50_us,p99_us): the first is kept in
# VALUES[SECTION:TARGET], the others in VALUES[SECTION.NAME:TARGET], with the proxy's CPU
# seconds, when every connection succeeded; a problem report (with the proxy's fate and log)
# is filed otherwise.
measure() {
  local section=$1 target=$2 metrics=$3 rep=$4 out rc=0 value failed i cpu0=0 cpu1=0 user0=0 user1=0 m unit others
  shift 4
  local port=${PORT[$target]} pid=${TPID[$target]:-} err=$WORK/client.err
  [[ -n $port ]] || return 0
  [[ -n $pid ]] && read -r cpu0 user0 < <(cpu_times "$pid")  # the whole process tree
  out=$(client --connect "127.0.0.1:$port" "$@" 2>"$err") || rc=$?
  if [[ -n $pid && ($target == socat || $target == sslh) ]]; then # let it reap its forks so that their CPU time is counted
    for ((i = 0; i < 40; i++)); do [[ -z $(children "$pid") ]] && break; sleep 0.05; done
  fi
  [[ -n $pid ]] && read -r cpu1 user1 < <(cpu_times "$pid")
  value=$(field "${metrics%%,*}" "$out") failed=$(field failed "$out")
  if ((rc == 0)) && [[ $failed == 0 && -n $value ]]; then
    VALUES[$section:$target]+="$value "
    IFS=, read -r -a others <<<"${metrics#*,}"
    [[ $metrics == *,* ]] || others=()
    for m in "${others[@]}"; do VALUES[$section.$m:$target]+="$(field "$m" "$out") "; done
    [[ -n $pid ]] && CPU[$section:$target]+="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}') "
    [[ -n $pid ]] && USER_CPU[$section:$target]+="$(awk -v a="$user0" -v b="$user1" 'BEGIN {print b - a}') "
    case ${metrics%%,*} in MBps) unit=MB/s ;; conns_per_sec) unit=conns/s ;; *) unit="µs p50, p99 $(field p99_us "$out")" ;; esac
    printf '  %-6s rep %d  %-40s %10s %s\n' "$section" "$rep" "${LABEL[$target]}" "$value" "$unit" >&2
    return 0
  fi
  [[ -n $failed && $failed != 0 ]] && FAILS[$section:$target]+="$failed "
  local report="$section rep $rep, ${LABEL[$target]}: \`np-peer client --connect 127.0.0.1:$port $*\`"
  report+=" exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'"
  if [[ -n $pid ]] && ! alive "$pid"; then
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    report+="; the proxy process is gone (wait status $rc); its log: '$(tail -5 "$WORK/$section-$target.log" | tr '\n' ' ')'"
    PORT[$target]="" TPID[$target]=""
  fi
  PROBLEMS+=("$report")
  say "  FAILED: $report"
}

# run_section SECTION METRICS REPS BACKEND CLIENT-ARGS...: starts the section's targets in
# front of BACKEND, runs REPS interleaved rounds over them, then stops them.
run_section() {
  local section=$1 metrics=$2 reps=$3 backend=$4 target rep list
  shift 4
  mapfile -t list < <(section_targets "$section")
  for target in "${list[@]}"; do start_target "$section" "$target" "$backend"; done
  [[ $section == short ]] && dual_check
  for ((rep = 1; rep <= reps; rep++)); do
    for target in "${list[@]}"; do measure "$section" "$target" "$metrics" "$rep" "$@"; done
  done
  if [[ $section == bulk ]]; then
    for target in "${list[@]}"; do
      SPLICED[$target]=-
      if [[ -n ${TPID[$target]:-} ]]; then
        SPLICED[$target]=no
        (($(pipe_count "${TPID[$target]}") > ${PIPES0[$target]})) && SPLICED[$target]=yes
      fi
    done
  fi
  stop_targets
}

# dual_check: which of dual's probes takes np-peer's short-test client. The dual config run
# once more at the default log level (info logs the probe that matched), for 3 connections.
dual_check() {
  local port pid i line
  DUAL_MATCHED="not checked"
  has_target netproxy-dual && [[ -n ${PORT[netproxy-dual]:-} ]] || return 0
  TAG=dualcheck LOG=$WORK/dualcheck.log
  free_port
  port=$FREE_PORT
  NP_LOUD=1 launch_netproxy_dual "$port" "$PEER_PORT"
  pid=$LAUNCHED_PID
  PIDS+=("$pid")
  if wait_listen "$port" "$pid" &&
     client --connect "127.0.0.1:$port" --expect echo --bytes "$SHORT_BYTES" --conns 3 --timeout 10 >/dev/null 2>&1; then
    for ((i = 0; i < 100; i++)); do
      line=$(grep -m1 -o 'dual: probe .* matched after [0-9]* bytes' "$LOG" || true)
      [[ -n $line ]] && break
      sleep 0.05
    done
    DUAL_MATCHED=$(sed 's/^dual: //; s/(function: 0x[0-9a-f]*)/(the Lua function)/' <<<"$line")
    [[ -n $DUAL_MATCHED ]] || DUAL_MATCHED="no probe line logged (client_first, or a log change): see $LOG"
  else
    DUAL_MATCHED="the check run failed: see $LOG"
    PROBLEMS+=("dual check: $(tail -3 "$LOG" | tr '\n' ' ')")
  fi
  stop_pid "$pid"
  say "  dual: $DUAL_MATCHED"
}

# ---------------------------------------------------------------- system calls per connection

# syscall_section KIND BACKEND: for each target of the test (short: STRACE_TARGETS, pp:
# STRACE_PP_TARGETS), a warm-up of 200 short connections (not counted), then `strace -f -c`
# attached to every process of the proxy's tree over STRACE_CONNS short connections (short) or
# one connection's STRACE_ROUNDS ping-pong rounds (pp); SYSCALLS[KIND:TARGET] keeps its "name
# calls errors" lines.
syscall_section() {
  local kind=$1 backend=$2 target pid sp i out rc args load n targets unit
  if [[ $kind == short ]]; then
    targets=("${STRACE_TARGETS[@]}") n=$STRACE_CONNS unit=conn
    load=(--expect echo --bytes "$SHORT_BYTES" --conns "$STRACE_CONNS" --parallel "$SHORT_PARALLEL" --timeout 120)
  else
    targets=("${STRACE_PP_TARGETS[@]}") n=$STRACE_ROUNDS unit=round
    load=(--pingpong "$STRACE_ROUNDS" --bytes "$PP_BYTES" --timeout 10)
  fi
  for target in "${targets[@]}"; do
    has_target "$target" || continue
    start_target strace "$target" "$backend"
    [[ -n ${PORT[$target]} ]] || continue
    client --connect "127.0.0.1:${PORT[$target]}" --expect echo --bytes "$SHORT_BYTES" --conns 200 \
      --parallel "$SHORT_PARALLEL" --timeout 60 >/dev/null 2>&1 || true
    args=()
    for pid in $(tree "${TPID[$target]}"); do args+=(-p "$pid"); done
    strace -f -c -o "$WORK/strace-$kind-$target.txt" "${args[@]}" 2>"$WORK/strace-$kind-$target.err" &
    sp=$!
    PIDS+=("$sp")
    for ((i = 0; i < 200; i++)); do # attached once it says so for every process
      (($(cat "$WORK/strace-$kind-$target.err" 2>/dev/null | grep -c 'attached' || true) >= ${#args[@]} / 2)) && break
      alive "$sp" || break
      sleep 0.05
    done
    rc=0
    out=$(client --connect "127.0.0.1:${PORT[$target]}" "${load[@]}" 2>&1) || rc=$?
    stop_pid "$sp" # strace detaches on SIGTERM and writes its summary
    if ((rc == 0)) && [[ -s $WORK/strace-$kind-$target.txt ]]; then
      SYSCALLS[$kind:$target]=$(awk 'NF >= 5 && $1 ~ /^[0-9.]+$/ { print $NF, $4, (NF == 6 ? $5 : 0) }' "$WORK/strace-$kind-$target.txt")
      say "  strace $(printf '%-40s' "${LABEL[$target]}") $(awk -v n="$n" -v u="$unit" '$1 == "total" {printf "%.1f calls/%s", $2 / n, u}' <<<"${SYSCALLS[$kind:$target]}")"
    else
      PROBLEMS+=("strace ($kind), ${LABEL[$target]}: client exited $rc ('$out'); strace: '$(tail -3 "$WORK/strace-$kind-$target.err" | tr '\n' ' ')'")
      say "  FAILED: ${PROBLEMS[-1]}"
    fi
    stop_pid "${TPID[$target]}"
    TPID[$target]=""
  done
}

# ---------------------------------------------------------------- idle memory per connection

# mem_kb PID: "RSS PSS" in kB of the tree of PID, from /proc/PID/smaps_rollup.
mem_kb() {
  local pid r=0 p=0 a b
  for pid in $(tree "$1"); do
    read -r a b < <(awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} END {print r + 0, p + 0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo "0 0")
    r=$((r + a)) p=$((p + b))
  done
  echo "$r $p"
}

fd_count() { # PID: descriptors the tree holds
  local pid
  for pid in $(tree "$1"); do ls -U "/proc/$pid/fd" 2>/dev/null; done | wc -l
}

fd_limit() { # PID: the lowest soft RLIMIT_NOFILE in the tree
  local pid
  for pid in $(tree "$1"); do awk '/^Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null; done | sort -n | head -1
}

sockstat_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

# skmem_bytes PORT BACKEND: socket memory (ss -m: receive and send queues, forward allocation,
# write queue, options, backlog) of the proxy's own sockets: those accepted on PORT and those
# it opened to BACKEND.
skmem_bytes() {
  ss -Htmn state established "( sport = :$1 or dport = :$2 )" 2>/dev/null | grep -o 'skmem:([^)]*)' |
    awk -F'[(),]' '{ for (i = 2; i <= NF; i++) if ($i ~ /^(r|t|f|w|o|bl)[0-9]+$/) { sub(/^[a-z]+/, "", $i); s += $i } }
      END { print s + 0 }'
}

# hold PORT N: bench/lib/hold.py holding N connections through PORT (on CPU 1); sets HOLD_PID
# once it printed "held N" (every connection relayed a byte each way); 1 when it failed.
hold() {
  local out=$WORK/hold-$TAG-$2.out i
  rm -f "$out" # (a reading of an old "held" line would start measuring too early)
  # shellcheck disable=SC2086
  $PIN_LOAD python3 "$ROOT/bench/lib/hold.py" "$1" "$2" 600 >"$out" 2>&1 &
  HOLD_PID=$!
  PIDS+=("$HOLD_PID")
  for ((i = 0; i < 1200; i++)); do # up to 60 s
    grep -q "^held $2\$" "$out" && return 0
    alive "$HOLD_PID" || break
    sleep 0.05
  done
  HOLD_ERR=$(tail -3 "$out" | tr '\n' ' ')
  stop_pid "$HOLD_PID"
  return 1
}

# idle_reading PID PORT BACKEND: "rss pss pipes fds sockstat-pages skmem-bytes slab-kB".
idle_reading() {
  echo "$(mem_kb "$1") $(pipe_count "$1") $(fd_count "$1") $(sockstat_pages) $(skmem_bytes "$2" "$3") $(slab_kb)"
}

# idle_section BACKEND: each of IDLE_TARGETS with IDLE_WARM connections held (the baseline),
# then IDLE_CONNS more; what grew, per connection, in IDLE[TARGET:...].
idle_section() {
  local backend=$1 target pid port need lim h1 b a
  for target in "${IDLE_TARGETS[@]}"; do
    has_target "$target" || continue
    HAPROXY_MAXCONN=$((IDLE_CONNS + IDLE_WARM + 400)) HAPROXY_TIMEOUT=10m NGINX_CONNS=$((2 * (IDLE_CONNS + IDLE_WARM) + 400)) \
      start_target idle "$target" "$backend"
    port=${PORT[$target]} pid=${TPID[$target]}
    [[ -n $port ]] || continue
    need=$((2 * (IDLE_CONNS + IDLE_WARM) + 20)) lim=$(fd_limit "$pid")
    IDLE[$target:limit]=$lim IDLE[$target:start]=${PIPES0[$target]}
    if ((lim < need)); then
      PROBLEMS+=("idle, ${LABEL[$target]}: its descriptor limit is $lim, $IDLE_CONNS + $IDLE_WARM connections need $need: skipped")
    elif ! hold "$port" "$IDLE_WARM"; then
      PROBLEMS+=("idle, ${LABEL[$target]}: holding $IDLE_WARM connections failed: $HOLD_ERR")
    else
      h1=$HOLD_PID
      b=$(idle_reading "$pid" "$port" "$backend")
      if hold "$port" "$IDLE_CONNS"; then
        a=$(idle_reading "$pid" "$port" "$backend")
        read -r "IDLE[$target:rss]" "IDLE[$target:pss]" "IDLE[$target:pipes0]" "IDLE[$target:pipes]" \
          "IDLE[$target:fds]" "IDLE[$target:sockstat]" "IDLE[$target:skmem]" "IDLE[$target:slab]" \
          <<<"$(awk -v n="$IDLE_CONNS" -v b="$b" -v a="$a" 'BEGIN { split(b, x, " "); split(a, y, " ")
            printf "%.0f %.0f %d %d %.2f %.0f %.0f %.0f\n", (y[1] - x[1]) * 1024 / n, (y[2] - x[2]) * 1024 / n,
              x[3], y[3], (y[4] - x[4]) / n, (y[5] - x[5]) * 4096 / n, (y[6] - x[6]) / n, (y[7] - x[7]) * 1024 / n }')"
        say "  idle   $(printf '%-40s' "${LABEL[$target]}") RSS ${IDLE[$target:rss]} B/conn, PSS ${IDLE[$target:pss]} B/conn, pipes ${IDLE[$target:pipes0]} -> ${IDLE[$target:pipes]}"
        stop_pid "$HOLD_PID"
      else
        PROBLEMS+=("idle, ${LABEL[$target]}: holding $IDLE_CONNS connections failed: $HOLD_ERR")
      fi
      stop_pid "$h1"
    fi
    stop_pid "$pid"
    TPID[$target]=""
  done
}

# ---------------------------------------------------------------- results

# stat_of KEY TARGET [median|min|max|runs]: one statistic of VALUES[KEY:TARGET].
stat_of() {
  local v m lo hi
  read -r -a v <<<"${VALUES[$1:$2]:-}"
  read -r m lo hi <<<"$(stats "${v[@]}")"
  case ${3:-median} in median) echo "$m" ;; min) echo "$lo" ;; max) echo "$hi" ;; runs) echo "${#v[@]}" ;; esac
}

# cpu_per SECTION TARGET UNITS SCALE FORMAT: median proxy CPU seconds per unit of work, x SCALE.
cpu_per() {
  local v
  read -r -a v <<<"${CPU[$1:$2]:-}"
  [[ ${CPU_OF:-} == user ]] && read -r -a v <<<"${USER_CPU[$1:$2]:-}"
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v u="$3" -v s="$4" -v f="$5" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf f "\n", m / u * s }'
}

# compare KEY A B: A's median over B's ("1.39x"), marked as noise when each median lies
# within the other's min-max range.
compare() {
  local a b alo ahi blo bhi
  a=$(stat_of "$1" "$2") alo=$(stat_of "$1" "$2" min) ahi=$(stat_of "$1" "$2" max)
  b=$(stat_of "$1" "$3") blo=$(stat_of "$1" "$3" min) bhi=$(stat_of "$1" "$3" max)
  awk -v a="$a" -v b="$b" -v alo="$alo" -v ahi="$ahi" -v blo="$blo" -v bhi="$bhi" 'BEGIN {
    if (a == "-" || b == "-" || b + 0 == 0) { print "n/a"; exit }
    s = sprintf("%.2fx", a / b)
    if (a >= blo + 0 && a <= bhi + 0 && b >= alo + 0 && b <= ahi + 0) s = s " (within the run-to-run noise)"
    print s }'
}

gbit() { awk -v m="$1" 'BEGIN { if (m == "-" || m == "") print "-"; else printf "%.1f\n", m * 8 / 1000 }'; }
med() { stat_of "$1" "$2"; }
# sslh_version: "1.20-1+deb12u1" (its first line says "sslh-select VERSION started").
sslh_version() { sslh -V 2>&1 | awk 'NR == 1 {print $2}'; }

# fails_of SECTION TARGET: "; connections failed in the failed runs: N, N" or nothing.
fails_of() {
  local f=${FAILS[$1:$2]:-}
  [[ -n $f ]] && printf '; connections failed in the failed runs: %s' "$(sed 's/ $//; s/ /, /g' <<<"$f")"
  return 0
}

gib_cpu() { cpu_per bulk "$1" "$(awk -v b="$(to_bytes "$BULK_BYTES")" 'BEGIN {print b / 1073741824}')" 1 %.2f; }
conn_cpu() { cpu_per short "$1" "$SHORT_CONNS" 1000000 %.1f; }
conn_user_cpu() { CPU_OF=user cpu_per short "$1" "$SHORT_CONNS" 1000000 %.1f; }

bulk_table() {
  local target
  echo "| Target | MB/s median | min | max | Gbit/s | vs direct | proxy CPU s/GiB | spliced | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|:---:|---:|"
  for target in $(section_targets bulk); do
    echo "| ${LABEL[$target]} | $(med bulk "$target") | $(stat_of bulk "$target" min)" \
      "| $(stat_of bulk "$target" max) | $(gbit "$(med bulk "$target")")" \
      "| $(pct "$(med bulk "$target")" "$(med bulk direct)")" \
      "| $(gib_cpu "$target") | ${SPLICED[$target]:--} | $(stat_of bulk "$target" runs)/$BULK_REPS |"
  done
}

short_table() {
  local target
  echo "| Target | conns/s median | min | max | vs direct | vs HAProxy | proxy CPU µs/conn | of which user | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for target in $(section_targets short); do
    echo "| ${LABEL[$target]} | $(med short "$target") | $(stat_of short "$target" min)" \
      "| $(stat_of short "$target" max) | $(pct "$(med short "$target")" "$(med short direct)")" \
      "| $(compare short "$target" haproxy | sed 's/ (within the run-to-run noise)/ (noise)/')" \
      "| $(conn_cpu "$target") | $(conn_user_cpu "$target") | $(stat_of short "$target" runs)/$SHORT_REPS |"
  done
}

pingpong_table() {
  local target
  echo "| Target | p50 µs median | min | max | p99 µs median | min | max | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for target in $(section_targets pp); do
    echo "| ${LABEL[$target]} | $(med pp "$target") | $(stat_of pp "$target" min) | $(stat_of pp "$target" max)" \
      "| $(med pp.p99_us "$target") | $(stat_of pp.p99_us "$target" min) | $(stat_of pp.p99_us "$target" max)" \
      "| $(stat_of pp "$target" runs)/$PP_REPS |"
  done
}

# syscall_table KIND: calls per connection (short) or per ping-pong round (pp), the calls any
# target makes most first (TOP of them), then the total; "(n failed)" when some returned an error.
syscall_table() {
  local kind=$1 t cols=() head="| system call |" rule="|---|" targets n
  if [[ $kind == short ]]; then targets=("${STRACE_TARGETS[@]}") n=$STRACE_CONNS; else targets=("${STRACE_PP_TARGETS[@]}") n=$STRACE_ROUNDS; fi
  for t in "${targets[@]}"; do
    [[ -n ${SYSCALLS[$kind:$t]:-} ]] || continue
    cols+=("$t") head+=" ${LABEL[$t]} |" rule+="---:|"
  done
  ((${#cols[@]})) || { echo "(no strace results: see the problems below)"; return; }
  echo "$head"
  echo "$rule"
  for t in "${cols[@]}"; do sed "s/^/$t /" <<<"${SYSCALLS[$kind:$t]}"; done |
    awk -v cols="${cols[*]}" -v n="$n" -v top=16 '
      function cell(t, s) { if (!((t, s) in c)) return "-"
        return sprintf("%.2f", c[t, s] / n) (e[t, s] > 0 ? sprintf(" (%.2f failed)", e[t, s] / n) : "") }
      { c[$1, $2] = $3; e[$1, $2] = $4
        if ($2 != "total") { if (!($2 in mx)) names[++k] = $2; if ($3 > mx[$2]) mx[$2] = $3 } }
      END {
        nc = split(cols, C, " ")
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (mx[names[j]] > mx[names[i]]) { x = names[i]; names[i] = names[j]; names[j] = x }
        for (i = 1; i <= k && i <= top; i++) { line = "| " names[i] " |"; for (j = 1; j <= nc; j++) line = line " " cell(C[j], names[i]) " |"; print line }
        line = "| **total** |"; for (j = 1; j <= nc; j++) line = line " **" cell(C[j], "total") "** |"; print line
      }'
}

idle_table() {
  local t
  echo "| Target | RSS B/conn | PSS B/conn | proxy fds/conn | pipe fds: at start, $IDLE_WARM held, $IDLE_WARM + $IDLE_CONNS held | proxy's sockets, ss -m B/conn | TCP mem (sockstat) B/conn | slab growth B/conn | fd limit |"
  echo "|---|---:|---:|---:|:---:|---:|---:|---:|---:|"
  for t in "${IDLE_TARGETS[@]}"; do
    has_target "$t" || continue
    echo "| ${LABEL[$t]} | ${IDLE[$t:rss]:--} | ${IDLE[$t:pss]:--} | ${IDLE[$t:fds]:--}" \
      "| ${IDLE[$t:start]:--}, ${IDLE[$t:pipes0]:--}, ${IDLE[$t:pipes]:--} | ${IDLE[$t:skmem]:--} | ${IDLE[$t:sockstat]:--}" \
      "| ${IDLE[$t:slab]:--} | ${IDLE[$t:limit]:--} |"
  done
}

# now_of FIGURE TARGET: this run's figure for the before/after table.
now_of() {
  case $1 in
    conns) med short "$2" ;;
    cpu) [[ $2 == direct ]] && echo - || conn_cpu "$2" ;;
    rss | pss) echo "${IDLE[$2:$1]:--}" ;;
    gbit) gbit "$(med bulk "$2")" ;;
    p50) med pp "$2" ;;
    p99) med pp.p99_us "$2" ;;
  esac
}

BA_TARGETS=(direct haproxy haproxy-splice-auto haproxy-splice nginx netproxy-splice netproxy-hook-from netproxy-dual)
before_after_table() {
  local t f line head="| figure |" rule="|---|" b n
  local -A BA_FIGURE=([conns]="short connections/s" [cpu]="proxy CPU µs per connection"
    [rss]="idle: bytes of RSS each ($IDLE_CONNS held)" [pss]="idle: bytes of PSS each ($IDLE_CONNS held)"
    [gbit]="1 stream Gbit/s" [p50]="ping-pong $PP_BYTES B p50 µs" [p99]="ping-pong $PP_BYTES B p99 µs")
  for t in "${BA_TARGETS[@]}"; do has_target "$t" && head+=" ${LABEL[$t]} |" && rule+="---:|"; done
  echo "$head"
  echo "$rule"
  for f in conns cpu rss pss gbit p50 p99; do
    line="| ${BA_FIGURE[$f]} |"
    for t in "${BA_TARGETS[@]}"; do
      has_target "$t" || continue
      b=${BEFORE[$f|$t]:-} n=$(now_of "$f" "$t")
      [[ -z $n ]] && n=-
      if [[ -n $b ]]; then line+=" $b → $n |"; else line+=" $n |"; fi
    done
    echo "$line"
  done
}

# verdict A OP B: "met" or "not met" for A OP B (numbers), "n/a" when one is missing.
verdict() {
  awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
    if (a == "-" || b == "-" || a == "" || b == "") { print "n/a"; exit }
    a += 0; b += 0
    ok = (op == ">=") ? a >= b : (op == ">") ? a > b : (op == "<") ? a < b : (op == "<=") ? a <= b : 0
    print ok ? "met" : "not met" }'
}

times() { awk -v a="$1" -v k="$2" 'BEGIN { if (a == "-" || a == "") print "-"; else printf "%.1f\n", a * k }'; }
bullet() { echo "- $*"; }

# targets_met: issue 12's targets, each against HAProxy in this run.
targets_met() {
  local t name h=haproxy hs=haproxy-splice hsa=haproxy-splice-auto best_splice
  best_splice=$(printf '%s\n' "$(med short "$hs")" "$(med short "$hsa")" | { grep -v '^-$' || true; } | sort -g | tail -1)
  for t in netproxy-splice netproxy-hook-from netproxy-dual; do
    has_target "$t" || continue
    name=${LABEL[$t]}
    bullet "**$name**: short connections/s $(med short "$t") against 1.25 × HAProxy's $(med short "$h") =" \
      "$(times "$(med short "$h")" 1.25): **$(verdict "$(med short "$t")" ">=" "$(times "$(med short "$h")" 1.25)")**;" \
      "above HAProxy with splice (best of its two splice rows, ${best_splice:--}): **$(verdict "$(med short "$t")" ">" "${best_splice:--}")**;" \
      "proxy CPU $(conn_cpu "$t") µs per connection below HAProxy's $(conn_cpu "$h"): **$(verdict "$(conn_cpu "$t")" "<" "$(conn_cpu "$h")")**;" \
      "ping-pong p50 $(med pp "$t") µs at most HAProxy's $(med pp "$h"): **$(verdict "$(med pp "$t")" "<=" "$(med pp "$h")")**," \
      "p99 $(med pp.p99_us "$t") µs at most HAProxy's $(med pp.p99_us "$h"): **$(verdict "$(med pp.p99_us "$t")" "<=" "$(med pp.p99_us "$h")")**$(
      [[ ${SKIP[bulk]} == *" $t "* ]] || echo "; bulk $(gbit "$(med bulk "$t")") Gbit/s at least HAProxy's $(gbit "$(med bulk "$h")"): **$(verdict "$(med bulk "$t")" ">=" "$(med bulk "$h")")**")."
  done
  t=netproxy-splice
  bullet "**Idle memory** ($IDLE_CONNS held, netproxy --relay auto): RSS ${IDLE[$t:rss]:--} bytes per connection" \
    "at most 2,048: **$(verdict "${IDLE[$t:rss]:--}" "<=" 2048)**; PSS ${IDLE[$t:pss]:--} at most 2,048:" \
    "**$(verdict "${IDLE[$t:pss]:--}" "<=" 2048)** (HAProxy: ${IDLE[haproxy:rss]:--} and ${IDLE[haproxy:pss]:--};" \
    "nginx: ${IDLE[nginx:rss]:--} and ${IDLE[nginx:pss]:--}). Pipes held with $IDLE_CONNS idle connections:" \
    "${IDLE[$t:pipes]:--} pipe descriptors (${IDLE[$t:pipes0]:--} with $IDLE_WARM held, ${IDLE[$t:start]:--} at start):" \
    "**$(verdict "${IDLE[$t:pipes]:--}" "<=" "${IDLE[$t:pipes0]:--}")** (no pipe per idle connection; a pipe taken for a" \
    "splice goes back to a pool shared by all connections)."
  bullet "**No behaviour lost** (every spec and the ASan/UBSan run green) is not measured here: \`./run-tests\`."
  kernel_bound
}

# kernel_bound: what the user/system split says of the 1.25x target. A proxy's rate is one
# over its CPU per connection (it runs alone on its core, at 100%); the system part is the
# kernel's work for the same system calls, which no proxy avoids.
kernel_bound() {
  local h=haproxy t=netproxy-splice hu ht tu tt
  ht=$(conn_cpu "$h") hu=$(conn_user_cpu "$h") tt=$(conn_cpu "$t") tu=$(conn_user_cpu "$t")
  [[ $ht != - && $hu != - && $tt != - && $tu != - ]] || return 0
  bullet "**Where the time goes**: per short connection HAProxy spent $ht µs of CPU, of which $hu in user space" \
    "and $(awk -v a="$ht" -v b="$hu" 'BEGIN {printf "%.1f", a - b}') in the kernel; netproxy (--relay auto) $tt µs," \
    "$tu in user space and $(awk -v a="$tt" -v b="$tu" 'BEGIN {printf "%.1f", a - b}') in the kernel. A proxy making" \
    "HAProxy's system calls with no user time at all would reach $(awk -v a="$ht" -v b="$hu" 'BEGIN {printf "%.2f", a / (a - b)}') ×" \
    "HAProxy's rate: 1.25 × needs less kernel work per connection than HAProxy does, not less user time."
  floor_bound
  client_bound
  same_code_spread
}

# same_code_spread: HAProxy's defaults and its splice-auto row run the same code on short
# connections (splice-auto splices only once a read fills a buffer: the same system calls,
# see the strace table), so what separates them is this machine's noise, the least
# difference between two rows that means anything.
same_code_spread() {
  local a b
  a=$(conn_cpu haproxy) b=$(conn_cpu haproxy-splice-auto)
  [[ $a != - && $b != - ]] || return 0
  bullet "**The noise**: HAProxy's defaults and its \`option splice-auto\` run the same code on these short" \
    "connections (the same system calls), and used $a and $b µs of CPU per connection in this run: a" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; printf "%.0f", 100 * d / (a < b ? a : b) }') %" \
    "spread between identical work. Differences between rows smaller than that are not measured here."
}

# floor_bound: the bare relay measured in the same run, what its kernel time alone costs.
floor_bound() {
  local f=floor h=haproxy
  [[ $(conn_cpu "$f") != - && $(med short "$f") != - && $(med short "$h") != - ]] || return 0
  bullet "**The floor**: bench/lib/floor-relay.c, a C relay that makes the fewest system calls a relay can" \
    "make and does nothing else, used $(conn_cpu "$f") µs of CPU per short connection ($(conn_user_cpu "$f") in user space)" \
    "and ran at $(med short "$f") connections/s, $(awk -v a="$(med short "$f")" -v b="$(med short "$h")" 'BEGIN {printf "%.2f", a / b}') ×" \
    "HAProxy's $(med short "$h") in the same run: no proxy doing this exchange on this kernel reaches much past that."
}

# client_bound: when the direct path runs no faster than a proxy, the client and the server
# on the other core were the limit of the rate, and only CPU per connection tells proxies apart.
client_bound() {
  local d p
  d=$(med short direct) p=$(med short haproxy)
  [[ $d != - && $p != - ]] || return 0
  awk -v d="$d" -v p="$p" 'BEGIN { exit !(d < 1.2 * p) }' || return 0
  bullet "**The rate is the client's here**: the direct path (no proxy) ran at $d connections/s, only" \
    "$(awk -v d="$d" -v p="$p" 'BEGIN {printf "%.2f", d / p}') × HAProxy's $p: the client and the echo server," \
    "on the other core, could not go much faster than the proxies, so the connection rates above say little;" \
    "proxy CPU per connection is the figure that compares the proxies in this run."
}

reading() {
  local vs_splice=""
  if [[ -n ${VALUES[bulk:haproxy-splice]:-} ]]; then
    vs_splice=" and $(compare bulk netproxy-splice haproxy-splice) HAProxy with splice forced on ($(med bulk haproxy-splice) MB/s)"
  fi
  bullet "Bulk: one stream through netproxy's splice relay ran at $(med bulk netproxy-splice) MB/s," \
    "$(pct "$(med bulk netproxy-splice)" "$(med bulk direct)") of the direct connection ($(med bulk direct) MB/s)," \
    "$(compare bulk netproxy-splice haproxy) HAProxy's default copying relay ($(med bulk haproxy) MB/s)$vs_splice;" \
    "nginx $(med bulk nginx) MB/s; socat, copying 8 KiB at a time in a forked process, $(med bulk socat) MB/s."
  bullet "Proxy CPU per GiB: netproxy $(gib_cpu netproxy-splice) splicing and $(gib_cpu netproxy-buffered) buffered;" \
    "HAProxy $(gib_cpu haproxy) copying and $(gib_cpu haproxy-splice) splicing; nginx $(gib_cpu nginx); socat $(gib_cpu socat)."
  bullet "Hooks on both directions: identity $(med bulk netproxy-hook-identity) MB/s ($(gib_cpu netproxy-hook-identity) CPU s/GiB)," \
    "gsub $(med bulk netproxy-hook-gsub) MB/s ($(gib_cpu netproxy-hook-gsub) CPU s/GiB). With the identity hook on" \
    "\`from\` only, the bulk stream (server to client) splices: $(med bulk netproxy-hook-from) MB/s" \
    "(spliced: ${SPLICED[netproxy-hook-from]:--})."
  if [[ ${SPLICED[haproxy-splice-auto]:-} == no ]]; then
    bullet "HAProxy's \`option splice-auto\` never spliced in the bulk test (it held no more pipes after the" \
      "bulk runs than at start), so its row is HAProxy's copying relay again."
  fi
  bullet "Short connections: netproxy $(med short netproxy-splice) conns/s (auto) and $(med short netproxy-buffered)" \
    "(buffered), $(med short netproxy-hook-from) with the one-direction hook and $(med short netproxy-dual) with dual;" \
    "HAProxy $(med short haproxy) ($(med short haproxy-splice-auto) splice-auto, $(med short haproxy-splice) forced splice);" \
    "nginx $(med short nginx); socat $(med short socat); the floor relay $(med short floor); direct $(med short direct). CPU per connection:" \
    "netproxy $(conn_cpu netproxy-splice) µs (one-direction hook $(conn_cpu netproxy-hook-from), dual $(conn_cpu netproxy-dual))," \
    "HAProxy $(conn_cpu haproxy), nginx $(conn_cpu nginx), the floor $(conn_cpu floor). Every proxied connection is two TCP connections," \
    "so no proxy can reach the direct rate."
  bullet "dual: netproxy logged \"${DUAL_MATCHED:-not checked}\" (the same config run at the info log" \
    "level over 3 connections before the counted runs): np-peer's stream is pseudo-random bytes, which" \
    "neither the tls nor the http probe matches, and the Lua probe, which matches anything, decides." \
    "The core sniffs (docs/internals.md): its cost per connection is one read and the three probes in one Lua call."
  if has_target sslh-select; then
    bullet "dual against sslh $(sslh_version) with the same probes (tls, http, then anyprot): netproxy's dual" \
      "$(med short netproxy-dual) conns/s at $(conn_cpu netproxy-dual) µs of CPU per connection" \
      "($(stat_of short netproxy-dual runs)/$SHORT_REPS runs ok); sslh-select $(med short sslh-select) conns/s" \
      "($(stat_of short sslh-select runs)/$SHORT_REPS runs ok$(fails_of short sslh-select));" \
      "sslh, a process per connection, $(med short sslh) conns/s at $(conn_cpu sslh) µs" \
      "($(stat_of short sslh runs)/$SHORT_REPS runs ok$(fails_of short sslh)). A run counts only when every one of its" \
      "$SHORT_CONNS connections got its $SHORT_BYTES bytes back."
  fi
  bullet "Ping-pong: direct p50 $(med pp direct) µs; netproxy $(med pp netproxy-splice) µs (p99 $(med pp.p99_us netproxy-splice))," \
    "HAProxy $(med pp haproxy) µs (p99 $(med pp.p99_us haproxy)), nginx $(med pp nginx) µs (p99 $(med pp.p99_us nginx))."
  bullet "Idle connections: the kernel holds, for each proxied connection, the proxy's two sockets and the" \
    "client's and the server's: the proxy's two sockets had ${IDLE[netproxy-splice:skmem]:--} bytes of socket" \
    "memory (ss -m: queues and forward allocation) through netproxy and ${IDLE[haproxy:skmem]:--} through HAProxy;" \
    "/proc/net/sockstat's TCP mem grew ${IDLE[netproxy-splice:sockstat]:--} bytes per connection (all four sockets," \
    "system-wide) and the kernel's slab ${IDLE[netproxy-splice:slab]:--} bytes (socket, inode, file and dentry" \
    "structures of all four, system-wide: other processes' work shows up here too)."
}

machine_info() {
  local cpu mem
  cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "- CPUs: $(nproc) ($cpu)"
  echo "- Memory: $mem"
  echo "- Kernel: Linux $(uname -r)"
  echo "- netproxy: $("$NETPROXY" --version 2>&1 | head -1), binary built $(date -u -r "$NETPROXY" '+%Y-%m-%d %H:%M UTC')," \
    "tree at git $(git_rev)"
  echo "- HAProxy: $(haproxy -v 2>&1 | head -1 | sed 's/ - https.*//')"
  if has_target nginx; then echo "- nginx: $(nginx_version)"; fi
  if has_target sslh-select; then echo "- sslh: $(sslh_version) (Debian's sslh-select and sslh)"; fi
  echo "- socat: $(socat -V 2>&1 | awk '/socat version/ {print $3; exit}')"
  echo "- strace: $(strace -V 2>&1 | head -1 | sed 's/^strace -- version //'); Python $(python3 -V 2>&1 | sed 's/^Python //')"
  if ((PINNED)); then
    echo "- Pinning: every proxy process on CPU 0 (\`taskset -c 0\`), the load generator, bench/lib/hold.py and the np-peer servers on CPU 1 (\`taskset -c 1\`)"
  else
    echo "- Pinning: none (fewer than 2 CPUs or no taskset)"
  fi
}

np_cmd_note() { ((${#NP_WORKERS[@]})) && echo "${NP_WORKERS[*]} "; true; }

# section: the "## TCP relaying" section of docs/benchmarks.md.
section() {
  local mode=""
  ((QUICK)) && mode=" (a --quick smoke run: 1 repetition, small sizes; the machine was shared with other work, so the figures are noisy)"
  cat <<EOF
$SECTION_TITLE

Plain TCP relaying: netproxy against a direct connection, socat, HAProxy and nginx's stream
module, each proxy with one event loop on a CPU of its own. This section is written by
\`bench/run.sh\`; rerun it to refresh the section.

### Machine

Run on $RUN_DATE$mode.

$(machine_info)
- Load average (1/5/15 min) before / after the run (after includes the run itself): $LOAD_BEFORE / $LOAD_AFTER

### How to run

\`\`\`sh
cmake -S . -B build && make -C build
apt-get install -y socat haproxy nginx-light libnginx-mod-stream sslh strace python3
bash bench/run.sh            # full run, about 10 minutes; replaces this section
bash bench/run.sh --quick    # 1 repetition, smaller sizes; leaves this file alone (--write writes it)
\`\`\`

### Method

The servers and the load generator are \`build/np-peer\` (\`spec/tools/np-peer.c\`), which checks
every byte it receives. Each target listens on 127.0.0.1 in front of the same np-peer server.
Every proxy process runs on CPU 0 (\`taskset -c 0 PROXY ...\`; nginx's and socat's children
inherit it), the np-peer servers, the np-peer client and bench/lib/hold.py on CPU 1
(\`taskset -c 1 ...\`).

- **direct**: the client connects to np-peer itself.
- **netproxy**: \`netproxy -q $(np_cmd_note)[--relay buffered] bench.lua\`, the config generated with one
  \`proxy { from = { type = "tcp", ... }, to = { type = "tcp", ... } }\`. \`--relay auto\` (the
  default) splices between the two sockets; \`--relay buffered\` copies through user-space buffers.
  The "both ways" hook rows add \`hook = function(data) return data end\` (identity) or
  \`hook = function(data) return (data:gsub("netproxy", "NETPROXY")) end\` (a scan that never
  matches) to both \`from\` and \`to\`; the "from only" row adds the identity hook to \`from\`
  alone (client-to-server data goes through Lua, server-to-client data splices).
- **netproxy, dual**: \`from = { type = "dual", probes = { { match = "tls", to = ECHO },
  { match = "http", to = ECHO }, { match = function(bytes) return true end, to = ECHO } },
  client_first = ECHO }\`. np-peer's client speaks first with pseudo-random bytes, which neither
  the tls nor the http probe recognises: the Lua probe, which matches anything, decides. So each
  connection pays the peek and the three probes (the match path, not a fallback); the run checks
  which probe took the client (see the reading below). dual needs the client to speak first:
  it is left out of the bulk test, whose client only reads.
- **socat**: \`socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork,backlog=1024 TCP:127.0.0.1:BACKEND\`
  (socat's default backlog of 5 drops SYNs at 32 parallel connects).
- **HAProxy**: \`haproxy -db -f haproxy.cfg\` with \`nbthread 1\`, \`maxconn 4096\` (global and
  defaults; $((IDLE_CONNS + IDLE_WARM + 400)) in the idle test), \`mode tcp\`, \`timeout connect 5s\`,
  \`timeout client/server 60s\` (10m in the idle test): once with its defaults, once with \`option splice-auto\`, and once
  with splice forced on (\`option splice-request\` and \`option splice-response\`).
- **nginx**: \`nginx -p WORK/ -e WORK/error.log -c nginx.conf\` (bench/lib/nginx.sh, shared with
  bench/workers.sh): \`daemon off; master_process on; worker_processes 1;\`,
  \`events { worker_connections 4096; }\` ($((2 * (IDLE_CONNS + IDLE_WARM) + 400)) and
  \`worker_rlimit_nofile\` to match in the idle test),
  \`stream { server { listen 127.0.0.1:P; proxy_pass 127.0.0.1:BACKEND; } }\`.
- **sslh**: \`sslh-select -FCONFIG\` and \`sslh -FCONFIG\` (a process per connection), the config
  \`foreground: true; numeric: true; timeout: 2;\`, listening on 127.0.0.1:P, with the probes
  \`tls\`, \`http\` and \`anyprot\` all to the echo server, each with \`log_level: 0\` (no line per
  connection, as netproxy's -q): the same decisions as netproxy's dual row. Short and ping-pong
  tests only (the client must speak first).
- **floor**: \`floor-relay PORT BACKEND\` (bench/lib/floor-relay.c, built with \`cc -O2\`): not a
  proxy but a measuring stick. A bare epoll relay with no timeouts, logs or limits that makes the
  fewest system calls relaying one connection can take (accept4, socket, connect, TCP_NODELAY,
  one edge-triggered registration per socket, a read and a write per chunk, a read per EOF, one
  shutdown, two close) and nothing else: its CPU per connection is the kernel's part of the
  exchange, which every proxy pays. It writes each chunk once, so it is left out of the bulk and
  idle tests.

The tests:

1. **Bulk single stream**: \`np-peer source --bytes $BULK_BYTES\` behind each target, and
   \`np-peer client --expect source --bytes $BULK_BYTES\` reads and verifies the stream over one
   connection. MB/s is np-peer's figure (bytes / seconds, 1 MB = 10^6 bytes); Gbit/s = MB/s × 8 / 1000.
   $BULK_REPS runs per target.
2. **Short connections**: \`np-peer echo\` behind each target, and
   \`np-peer client --expect echo --bytes $SHORT_BYTES --conns $SHORT_CONNS --parallel $SHORT_PARALLEL\`:
   $SHORT_CONNS connections, $SHORT_PARALLEL at a time; each connects, sends $SHORT_BYTES bytes,
   reads them back and closes. conns/s is np-peer's figure. $SHORT_REPS runs per target.
3. **Ping-pong**: \`np-peer client --pingpong $PP_ROUNDS --bytes $PP_BYTES\` against \`np-peer echo\`:
   one connection, $PP_ROUNDS round trips of $PP_BYTES bytes, each sent once the previous echo
   came back whole; p50 and p99 of the round-trip times (nearest rank). $PP_REPS runs per target.
4. **System calls per short connection**: after a warm-up of 200 connections, \`strace -f -c -p PID\`
   (every process of the proxy's tree) over $STRACE_CONNS connections of test 2; each call's count
   (and how many failed) divided by $STRACE_CONNS. strace slows the proxy; the counts, not the
   times, are the figure. The same over one connection's $STRACE_ROUNDS ping-pong rounds
   (test 3), divided by $STRACE_ROUNDS: what each round trip costs in system calls.
5. **Idle memory**: \`python3 bench/lib/hold.py PORT N\` opens N connections through the proxy to
   \`np-peer echo\`, sends one byte on each, reads it back, then holds them all idle. First
   $IDLE_WARM (the warm-up, still held), then the baseline reading, then $IDLE_CONNS more and a
   second reading; the growth divided by $IDLE_CONNS. RSS and PSS are the sums over the proxy's
   processes from /proc/PID/smaps_rollup. Run under \`ulimit -n 20000\`; the proxy needs two
   descriptors per connection, and its limit (/proc/PID/limits, in the table) is checked first.
   "Pipe fds" counts the pipe descriptors in /proc/PID/fd of the proxy's processes right after it
   started, at the baseline and with all connections held (a process's own pipes, such as a
   signal pipe, are in all three). The kernel side: "proxy's sockets, ss -m" sums the skmem fields (receive and
   send queues, forward allocation, write queue, options, backlog) of the proxy's own two sockets
   per connection; "TCP mem" is the growth of /proc/net/sockstat's TCP mem pages and "slab" of
   /proc/meminfo's Slab, both system-wide and covering all four sockets of a proxied connection
   (client, proxy's two, server), with whatever else the machine did meanwhile.

The runs of tests 1 to 3 are interleaved (one run of every target, then the next round) so that
background noise falls on all targets alike. The tables give the median, min and max of the
runs; "vs direct" is the median over the direct median. A run counts only when every connection
in it succeeded. "Proxy CPU" is the user + system time of the proxy's whole process tree during
each run (all its threads, its live children, such as nginx's worker or socat's forks, and the
children it reaped), from /proc/PID/stat (10 ms ticks), median per GiB or per connection.
"Spliced" says whether the proxy held more pipe descriptors after the bulk runs than right
after starting: netproxy and HAProxy keep the pipes of spliced connections pooled.

### Before and after (issue 12)

"before → now": before is the table in issue 12, measured before its wave of work on the same
machine (2 vCPUs, the same pinning, medians of 3 in one run; HAProxy 2.6 nbthread 1, nginx
stream 1 worker, \`netproxy -q -w 1\`); its "HAProxy splice" column is put against the forced
splice row here (the issue does not say which option). Now is this run$( ((QUICK)) && echo " (a --quick run: noisy)").

$(before_after_table)

### Issue 12's targets in this run

$(targets_met)

### Results

#### Bulk single-stream throughput ($BULK_BYTES over one connection, $BULK_REPS runs)

$(bulk_table)

#### Short connections ($SHORT_CONNS connections × $SHORT_BYTES B echo, $SHORT_PARALLEL in parallel, $SHORT_REPS runs)

$(short_table)

#### Ping-pong latency (one connection, $PP_ROUNDS round trips of $PP_BYTES B, $PP_REPS runs)

$(pingpong_table)

#### System calls per short connection (strace -f -c over $STRACE_CONNS connections; the 16 calls made most, then the total)

$(syscall_table short)

#### System calls per ping-pong round (strace -f -c over one connection's $STRACE_ROUNDS rounds of $PP_BYTES B)

$(syscall_table pp)

#### Idle memory per proxied connection ($IDLE_CONNS held, baseline with $IDLE_WARM held)

$(idle_table)

### Reading the numbers

$(reading)
EOF
  if ((${#NOTES[@]})); then
    printf '\n### Notes\n\n'
    printf -- '- %s\n' "${NOTES[@]}"
  fi
  if ((${#PROBLEMS[@]})); then
    printf '\n### Problems seen during this run\n\n'
    printf -- '- %s\n' "${PROBLEMS[@]}"
  fi
}

# write_doc: replaces this script's section of docs/benchmarks.md (bench/lib/doc.sh), and the
# titles it wrote before it had one section; the other sections are kept.
write_doc() {
  section >"$WORK/section.md"
  doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md" "${OLD_TITLES[@]}"
}

# ---------------------------------------------------------------- main

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-bench.XXXXXX")
  trap cleanup EXIT
  cc -O2 -o "$WORK/floor-relay" "$ROOT/bench/lib/floor-relay.c" || die "cannot build bench/lib/floor-relay.c"
  trap 'exit 130' INT
  trap 'exit 143' TERM

  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy benchmark$( ((QUICK)) && echo ' (--quick)'): ${TARGETS[*]}"

  say "bulk: $BULK_BYTES over one connection, $BULK_REPS runs per target"
  start_peer source --bytes "$BULK_BYTES"
  run_section bulk MBps "$BULK_REPS" "$PEER_PORT" --expect source --bytes "$BULK_BYTES" --timeout 120
  stop_pid "$PEER_PID"

  start_peer echo
  say "short: $SHORT_CONNS x $SHORT_BYTES B echo, $SHORT_PARALLEL in parallel, $SHORT_REPS runs per target"
  run_section short conns_per_sec "$SHORT_REPS" "$PEER_PORT" --expect echo --bytes "$SHORT_BYTES" \
    --conns "$SHORT_CONNS" --parallel "$SHORT_PARALLEL" --timeout 60
  say "ping-pong: $PP_ROUNDS x $PP_BYTES B on one connection, $PP_REPS runs per target"
  run_section pp p50_us,p99_us "$PP_REPS" "$PEER_PORT" --pingpong "$PP_ROUNDS" --bytes "$PP_BYTES" --timeout 10
  say "system calls: strace -f -c over $STRACE_CONNS short connections"
  syscall_section short "$PEER_PORT"
  say "system calls: strace -f -c over $STRACE_ROUNDS ping-pong rounds"
  syscall_section pp "$PEER_PORT"
  say "idle memory: $IDLE_CONNS connections held (baseline with $IDLE_WARM)"
  idle_section "$PEER_PORT"
  stop_pid "$PEER_PID"
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

  printf '\n### Before and after (issue 12)\n\n'
  before_after_table
  printf '\n### Targets\n\n'
  targets_met
  printf '\n### Bulk single-stream throughput (%s over one connection, %d runs)\n\n' "$BULK_BYTES" "$BULK_REPS"
  bulk_table
  printf '\n### Short connections (%d x %s B echo, %d in parallel, %d runs)\n\n' \
    "$SHORT_CONNS" "$SHORT_BYTES" "$SHORT_PARALLEL" "$SHORT_REPS"
  short_table
  printf '\n### Ping-pong (%d x %s B, %d runs)\n\n' "$PP_ROUNDS" "$PP_BYTES" "$PP_REPS"
  pingpong_table
  printf '\n### System calls per short connection (%d connections)\n\n' "$STRACE_CONNS"
  syscall_table short
  printf '\n### System calls per ping-pong round (%d rounds of %s B)\n\n' "$STRACE_ROUNDS" "$PP_BYTES"
  syscall_table pp
  printf '\n### Idle memory per connection (%d held)\n\n' "$IDLE_CONNS"
  idle_table
  echo
  reading
  if ((${#NOTES[@]})); then echo; printf 'note: %s\n' "${NOTES[@]}"; fi
  if ((${#PROBLEMS[@]})); then echo; printf 'PROBLEM: %s\n' "${PROBLEMS[@]}"; fi
  if ((WRITE)); then
    write_doc
    say "wrote the \"${SECTION_TITLE#\#\# }\" section of ${DOC#"$ROOT"/}"
  fi
  say "done in ${SECONDS}s"
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
