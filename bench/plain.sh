#!/usr/bin/env bash
# bench/plain.sh: the plain TCP path (a routed tcp -> tcp proxy) against the best peers where
# the proxy is the bottleneck, and what the accept path's options change (issue 32).
#
# Load: ../shared/bench/bt.c (built here with cc), which costs the load core little: `bt
# connrate` for short connections (CONC at a time for SECS seconds, 100 B echoed, the backend
# `bt echod` closing after 100 bytes) and `bt pingpong` for one connection's 64 B round trips.
# Every proxy on CPU 0 (taskset -c 0), one event loop each (netproxy -w 1, HAProxy nbthread 1,
# nginx 1 worker); the load and the backends on CPU 1. Repetitions interleaved (a round of
# every target, then the next) so background noise falls on all alike.
#   1. Concurrency sweep: conns/s and the proxy's CPU µs per connection at each of CONCS;
#      busy % = rate x CPU per connection (the proxy core's utilisation: at 100 % it is the
#      bottleneck). Targets: direct, HAProxy (defaults; splice-request/response), nginx stream,
#      netproxy (defaults), netproxy with defer_accept = 1 (TCP_DEFER_ACCEPT), netproxy
#      accepting one client per wake-up instead of up to 64 (a build made with
#      -DNP_ACCEPTS_PER_WAKEUP=1, given as NETPROXY_BATCH1=PATH), and netproxy with its relay's
#      sockets level-triggered as before issue 32 (-DNP_RELAY_ET=0, NETPROXY_LT=PATH); a
#      variant's rows are left out without its binary.
#   2. Ping-pong: p50 and p99 of PP_ROUNDS round trips (after bt's 2,000 warm-up rounds), each
#      target; then again with a niced busy loop on each CPU ("awake"): this machine is a VM
#      whose idle CPU halts (no cpuidle driver), so a reply that finds the proxy's CPU idle
#      pays the vCPU's wake-up; the awake rows show how much of the latency that is.
#   3. System calls per connection: strace -f -c on the proxy over STRACE_CONNS connections
#      at 1 and at 128 at a time: epoll_ctl, epoll_wait, accept4 (and its EAGAIN answers), all.
#   4. Bulk: one stream of BULK_BYTES (`bt blast` into `bt sink`), Gbit/s and the proxy's CPU
#      seconds per GiB: that the event changes cost the spliced path nothing.
#
#   bash bench/plain.sh                 # full run (~4 min): writes "## Plain path at saturation"
#                                       # of docs/benchmarks.md (the other sections are kept)
#   bash bench/plain.sh --quick         # smoke run: 1 repetition, 2 levels, doc untouched
#   bash bench/plain.sh --quick --write # smoke run that writes the section anyway
# To build the variants (outside the run, from the same tree):
#   cmake -S . -B /tmp/np-batch1 -DCMAKE_C_FLAGS=-DNP_ACCEPTS_PER_WAKEUP=1 && make -C /tmp/np-batch1 netproxy
#   cmake -S . -B /tmp/np-lt -DCMAKE_C_FLAGS=-DNP_RELAY_ET=0 && make -C /tmp/np-lt netproxy
#   NETPROXY_BATCH1=/tmp/np-batch1/netproxy NETPROXY_LT=/tmp/np-lt/netproxy bash bench/plain.sh
# Needs cc, haproxy, nginx with the stream module, strace, taskset, ss. BT_SRC=... points at
# bt.c, NETPROXY=... and NGINX=... override the binaries. Exits 1 when a run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NETPROXY_BATCH1=${NETPROXY_BATCH1:-}
NETPROXY_LT=${NETPROXY_LT:-}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
BT_SRC=${BT_SRC:-/work/shared/bench/bt.c}
[[ -f $BT_SRC ]] || BT_SRC=$ROOT/../shared/bench/bt.c
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## Plain path at saturation"
HZ=$(getconf CLK_TCK)
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"
# shellcheck source=bench/lib/nginx.sh
source "$ROOT/bench/lib/nginx.sh"

bench_options "$@"
if ((QUICK)); then
  CONCS=(32 256) SECS=1 REPS=1 PP_ROUNDS=5000 PP_REPS=1 STRACE_CONNS=1000 BULK_BYTES=$((512 << 20))
else
  CONCS=(4 32 256) SECS=2 REPS=3 PP_ROUNDS=20000 PP_REPS=3 STRACE_CONNS=3000 BULK_BYTES=$((2 << 30))
  WRITE=1
fi
for tool in cc haproxy strace taskset ss; do command -v "$tool" >/dev/null || die "$tool not found"; done
[[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
[[ -f $BT_SRC ]] || die "no bt.c (BT_SRC=...)"
(($(nproc) >= 2)) || die "needs 2 CPUs: the proxy on one, the load on the other"
PIN_PROXY="taskset -c 0" PIN_LOAD=(taskset -c 1)
NGINX_PIN=$PIN_PROXY

TARGETS=(direct haproxy haproxy-splice nginx netproxy netproxy-defer netproxy-batch1 netproxy-lt)
PEERS=(haproxy haproxy-splice nginx)
declare -A SHORT=([haproxy]="HAProxy" [haproxy-splice]="HAProxy splice" [nginx]="nginx")
declare -A LABEL=(
  [direct]="direct (no proxy)"
  [haproxy]="HAProxy, defaults"
  [haproxy-splice]="HAProxy, splice-request/response"
  [nginx]="nginx stream, 1 worker"
  [netproxy]="netproxy (defaults)"
  [netproxy-defer]="netproxy, defer_accept = 1"
  [netproxy-batch1]="netproxy, 1 accept per wake-up"
  [netproxy-lt]="netproxy, level-triggered relay"
)
declare -A PORT TPID VALUES CPU BUSY PP SC BULK BULK_CPU
PIDS=() PROBLEMS=() NOTES=() SPIN=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-plain.XXXXXX")
trap 'stop_spinners; cleanup' EXIT
raise_fd_limit

drop_target() {
  local t keep=()
  for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] || keep+=("$t"); done
  TARGETS=("${keep[@]}")
}
if [[ -z $NETPROXY_BATCH1 ]]; then
  drop_target netproxy-batch1
  NOTES+=("No NETPROXY_BATCH1 binary: the one-accept-per-wake-up rows were left out.")
fi
if [[ -z $NETPROXY_LT ]]; then
  drop_target netproxy-lt
  NOTES+=("No NETPROXY_LT binary: the level-triggered relay's rows were left out.")
fi
if ! nginx_detect; then
  drop_target nginx
  NOTES+=("$NGINX_MISSING: the nginx rows were left out.")
fi
cc -O2 -pthread -o "$WORK/bt" "$BT_SRC" || die "cannot build $BT_SRC"
BT=$WORK/bt

# ---------------------------------------------------------------- processes

# start_sink: a bt bulk sink on CPU 1; sets ECHO_PORT (the backend of the bulk test).
start_sink() {
  free_port
  "${PIN_LOAD[@]}" "$BT" sink "$FREE_PORT" >>"$WORK/sink.log" 2>&1 &
  PIDS+=("$!")
  wait_listen "$FREE_PORT" "$!" || die "bt sink did not start"
  ECHO_PORT=$FREE_PORT
}

# start_echod CLOSE_AFTER: a bt echo backend on CPU 1 (closing after CLOSE_AFTER bytes, 0:
# never); sets ECHO_PORT.
start_echod() {
  free_port
  "${PIN_LOAD[@]}" "$BT" echod "$FREE_PORT" "$1" >>"$WORK/echod.log" 2>&1 &
  PIDS+=("$!")
  wait_listen "$FREE_PORT" "$!" || die "bt echod did not start"
  ECHO_PORT=$FREE_PORT
}

launch_netproxy() { # PORT BACKEND BINARY [PROXY-OPTIONS]
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/plain.sh
proxy {
  name = "bench", ${4:-}
  from = { type = "tcp", host = "127.0.0.1", port = $1 },
  to   = { type = "tcp", host = "127.0.0.1", port = $2 },
}
EOF
  # shellcheck disable=SC2086 # PIN_PROXY is a command and its arguments
  $PIN_PROXY "$3" -q -w 1 "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_haproxy() { # PORT BACKEND SPLICE(0|1)
  local cfg=$WORK/$TAG.cfg
  {
    echo "global"
    echo "  nbthread 1"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode tcp"
    echo "  maxconn 4096"
    echo "  timeout connect 5s"
    echo "  timeout client 60s"
    echo "  timeout server 60s"
    (($3)) && echo "  option splice-request" && echo "  option splice-response"
    echo "frontend bench"
    echo "  bind 127.0.0.1:$1"
    echo "  default_backend be"
    echo "backend be"
    echo "  server s1 127.0.0.1:$2"
  } >"$cfg"
  # shellcheck disable=SC2086
  $PIN_PROXY haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_target() { # TARGET PORT BACKEND
  case $1 in
    haproxy) launch_haproxy "$2" "$3" 0 ;;
    haproxy-splice) launch_haproxy "$2" "$3" 1 ;;
    nginx) launch_nginx "$2" "$3" 1 ;;
    netproxy) launch_netproxy "$2" "$3" "$NETPROXY" ;;
    netproxy-defer) launch_netproxy "$2" "$3" "$NETPROXY" "defer_accept = 1," ;;
    netproxy-batch1) launch_netproxy "$2" "$3" "$NETPROXY_BATCH1" ;;
    netproxy-lt) launch_netproxy "$2" "$3" "$NETPROXY_LT" ;;
  esac
}

# start_targets SECTION BACKEND: every target up in front of BACKEND; PORT and TPID set (the
# process whose CPU counts: nginx's worker, the others themselves).
start_targets() {
  local target i
  for target in "${TARGETS[@]}"; do
    PORT[$target]="" TPID[$target]=""
    if [[ $target == direct ]]; then PORT[$target]=$2; continue; fi
    TAG=$1-$target LOG=$WORK/$1-$target.log
    free_port
    launch_target "$target" "$FREE_PORT" "$2"
    PIDS+=("$LAUNCHED_PID")
    if ! wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PROBLEMS+=("$1, ${LABEL[$target]}: would not start: $(tail -3 "$LOG" 2>/dev/null | tr '\n' ' ')")
      continue
    fi
    for ((i = 0; i < 40; i++)); do
      [[ $target != nginx || -n $(children "$LAUNCHED_PID") ]] && break
      sleep 0.05
    done
    PORT[$target]=$FREE_PORT TPID[$target]=$LAUNCHED_PID
  done
}

stop_targets() {
  local target
  for target in "${TARGETS[@]}"; do
    [[ -n ${TPID[$target]:-} ]] && stop_pid "${TPID[$target]}"
    TPID[$target]=""
  done
}

# A niced busy loop on each CPU keeps it from halting (the awake ping-pong rows).
start_spinners() {
  local cpu
  for cpu in 0 1; do
    taskset -c "$cpu" nice -n 19 awk 'BEGIN { while (1) {} }' &
    SPIN+=("$!")
  done
}
stop_spinners() {
  local pid
  for pid in "${SPIN[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  SPIN=()
}

# ---------------------------------------------------------------- measuring

# conns TARGET CONC REP: one connrate run; conns/s, CPU µs per connection, busy %.
conns() {
  local target=$1 conc=$2 key="$2:$1" out t0=0 t1=0 cps n errors
  [[ -n ${PORT[$target]} ]] || return 0
  [[ $target == direct ]] || t0=$(cpu_seconds "${TPID[$target]}")
  out=$("${PIN_LOAD[@]}" "$BT" connrate 127.0.0.1 "${PORT[$target]}" "$conc" "$SECS" 100000000 100 2>&1) || true
  [[ $target == direct ]] || t1=$(cpu_seconds "${TPID[$target]}")
  cps=$(field cps "$out") n=$(field conns "$out") errors=$(field errors "$out")
  if [[ -z $cps || -z $n || $n == 0 || $errors != 0 ]]; then
    PROBLEMS+=("rep $3, $conc at a time, ${LABEL[$target]}: $out")
    say "  FAILED: ${PROBLEMS[-1]}"
    return 0
  fi
  VALUES[$key]+="$cps "
  if [[ $target != direct ]]; then
    CPU[$key]+="$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }') "
    BUSY[$key]+="$(awk -v a="$t0" -v b="$t1" -v n="$n" -v r="$cps" 'BEGIN { printf "%.1f", r * (b - a) * 100 / n }') "
  fi
  printf '  rep %d  %4d at a time  %-36s %8s conns/s\n' "$3" "$conc" "${LABEL[$target]}" "$cps" >&2
}

# sched TARGET: the proxy's time waiting on a run queue (ns) and its involuntary context
# switches so far, over its threads and children (/proc/PID/task/*/schedstat and status).
sched() {
  local pid task wait=0 invol=0 f
  for pid in $(tree "${TPID[$1]}"); do
    for task in /proc/"$pid"/task/*; do
      read -r _ f _ <"$task/schedstat" 2>/dev/null && wait=$((wait + f))
      f=$(awk '/^nonvoluntary_ctxt_switches/ { print $2 }' "$task/status" 2>/dev/null)
      invol=$((invol + ${f:-0}))
    done
  done
  echo "$wait $invol"
}

# pingpong TARGET MODE REP: p50 and p99 of one connection's round trips; and per 1,000
# rounds, how long the proxy waited for its CPU (µs) and how often it was preempted.
pingpong() {
  local target=$1 out p50 p99 w0=0 i0=0 w1=0 i1=0 rounds=$((PP_ROUNDS + 2000))
  [[ -n ${PORT[$target]} ]] || return 0
  [[ $target == direct ]] || read -r w0 i0 < <(sched "$target")
  out=$("${PIN_LOAD[@]}" "$BT" pingpong 127.0.0.1 "${PORT[$target]}" "$PP_ROUNDS" 64 2>&1) || true
  [[ $target == direct ]] || read -r w1 i1 < <(sched "$target")
  p50=$(field p50_us "$out") p99=$(field p99_us "$out")
  if [[ -z $p50 || -z $p99 ]]; then
    PROBLEMS+=("ping-pong ($2), rep $3, ${LABEL[$target]}: $out")
    say "  FAILED: ${PROBLEMS[-1]}"
    return 0
  fi
  PP["$2:p50:$target"]+="$p50 " PP["$2:p99:$target"]+="$p99 "
  if [[ $target != direct ]]; then
    PP["$2:wait:$target"]+="$(awk -v a="$w0" -v b="$w1" -v n="$rounds" 'BEGIN { printf "%.1f", (b - a) / n }') "
    PP["$2:invol:$target"]+="$(awk -v a="$i0" -v b="$i1" -v n="$rounds" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }') "
  fi
  printf '  rep %d  ping-pong %-6s %-36s p50 %7s µs  p99 %7s µs\n' "$3" "$2" "${LABEL[$target]}" "$p50" "$p99" >&2
}

# bulk TARGET REP: one stream of BULK_BYTES; Gbit/s and CPU seconds per GiB.
bulk() {
  local target=$1 out t0=0 t1=0 gbps
  [[ -n ${PORT[$target]} ]] || return 0
  [[ $target == direct ]] || t0=$(cpu_seconds "${TPID[$target]}")
  out=$("${PIN_LOAD[@]}" "$BT" blast 127.0.0.1 "${PORT[$target]}" "$BULK_BYTES" 1 0 60 2>&1) || true
  [[ $target == direct ]] || t1=$(cpu_seconds "${TPID[$target]}")
  gbps=$(field gbps "$out")
  if [[ -z $gbps ]]; then
    PROBLEMS+=("bulk, rep $2, ${LABEL[$target]}: $out")
    say "  FAILED: ${PROBLEMS[-1]}"
    return 0
  fi
  BULK[$target]+="$gbps "
  [[ $target == direct ]] ||
    BULK_CPU[$target]+="$(awk -v a="$t0" -v b="$t1" -v n="$BULK_BYTES" 'BEGIN { printf "%.0f", (b - a) * 1e3 * 1073741824 / n }') "
  printf '  rep %d  bulk %-36s %7s Gbit/s\n' "$2" "${LABEL[$target]}" "$gbps" >&2
}

# syscalls TARGET CONC: strace -c over STRACE_CONNS connections; "epoll_ctl epoll_wait
# accept4 accept4-errors total" per connection.
syscalls() {
  local target=$1 conc=$2 pid st=$WORK/strace-$1-$2.txt spid i
  [[ -n ${PORT[$target]} && $target != direct ]] || return 0
  pid=${TPID[$target]}
  [[ $target == nginx ]] && pid=$(children "$pid" | head -1 | tr -d ' ')
  strace -f -c -o "$st" -p "$pid" 2>/dev/null &
  spid=$!
  for ((i = 0; i < 40; i++)); do grep -q 'TracerPid:.*[1-9]' "/proc/$pid/status" 2>/dev/null && break; sleep 0.05; done
  "${PIN_LOAD[@]}" "$BT" connrate 127.0.0.1 "${PORT[$target]}" "$conc" 60 "$STRACE_CONNS" 100 >/dev/null 2>&1 || true
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  SC["$conc:$target"]=$(awk -v n="$STRACE_CONNS" '
    NF >= 5 && $1 ~ /^[0-9.]+$/ {
      calls = $4; errs = (NF == 6) ? $5 : 0
      if ($NF == "epoll_ctl") c += calls
      if ($NF == "epoll_wait" || $NF == "epoll_pwait") w += calls
      if ($NF == "accept4" || $NF == "accept") { a += calls; e += errs }
      if ($NF == "total") t = calls
    }
    END { printf "%.2f %.2f %.2f %.2f %.1f", c / n, w / n, a / n, e / n, t / n }' "$st")
}

# ---------------------------------------------------------------- the run

say "plain path: ${TARGETS[*]}"
say "sweep: ${CONCS[*]} at a time, $SECS s each, $REPS rounds"
start_echod 100
start_targets sweep "$ECHO_PORT"
for target in "${TARGETS[@]}"; do   # warm-up: pools, caches
  if [[ -n ${PORT[$target]} ]]; then
    "${PIN_LOAD[@]}" "$BT" connrate 127.0.0.1 "${PORT[$target]}" 32 1 2000 100 >/dev/null 2>&1 || true
  fi
done
for ((rep = 1; rep <= REPS; rep++)); do
  for conc in "${CONCS[@]}"; do
    for target in "${TARGETS[@]}"; do conns "$target" "$conc" "$rep"; done
  done
done
say "system calls: $STRACE_CONNS connections at 1 and at 128 at a time"
for target in "${TARGETS[@]}"; do
  for conc in 1 128; do syscalls "$target" "$conc"; done
done
stop_targets

start_echod 0
start_targets pp "$ECHO_PORT"
say "ping-pong: $PP_ROUNDS round trips of 64 B, $PP_REPS rounds, then again with both CPUs kept awake"
for mode in idle awake; do
  [[ $mode == awake ]] && start_spinners
  for ((rep = 1; rep <= PP_REPS; rep++)); do
    for target in "${TARGETS[@]}"; do pingpong "$target" "$mode" "$rep"; done
  done
  stop_spinners
done
stop_targets

start_sink
start_targets bulk "$ECHO_PORT"
say "bulk: one stream of $BULK_BYTES bytes, $REPS rounds"
for ((rep = 1; rep <= REPS; rep++)); do
  for target in "${TARGETS[@]}"; do bulk "$target" "$rep"; done
done
stop_targets

# ---------------------------------------------------------------- the section

# spread KEY ARRAY: "median (min..max)".
spread() {
  local -n arr=$2
  local v m lo hi
  read -r -a v <<<"${arr[$1]:-}"
  ((${#v[@]})) || { echo "-"; return; }
  read -r m lo hi <<<"$(stats "${v[@]}")"
  echo "$m ($lo..$hi)"
}
med() { local s; s=$(spread "$1" "$2"); echo "${s%% *}"; }

# the level where each target's core was busiest: its CPU per connection there
busiest() {
  local target=$1 conc best="" bestb=-1 b
  for conc in "${CONCS[@]}"; do
    b=$(med "$conc:$target" BUSY)
    [[ $b == - ]] && continue
    if awk -v a="$b" -v m="$bestb" 'BEGIN { exit !(a > m) }'; then bestb=$b best=$conc; fi
  done
  echo "$best"
}

section() {
  local target conc key best c t row bc b met levels
  local -A BEST_AT=()
  echo "$SECTION_TITLE"
  echo
  echo "Written by \`bench/plain.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), netproxy $(git_rev)."
  echo "HAProxy $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'), nginx $(nginx_version 2>/dev/null || echo -); load: bt.c (\`connrate\`, \`pingpong\`); proxies on CPU 0, load and backends on CPU 1;"
  echo "medians of $REPS interleaved rounds with (min..max). Busy % = conns/s x CPU per connection: the proxy core's utilisation."
  echo
  echo "### Short connections as the concurrency rises ($SECS s each, 100 B echoed)"
  echo
  echo "| target | at a time | conns/s | proxy CPU µs per connection | busy % |"
  echo "|---|---|---|---|---|"
  for target in "${TARGETS[@]}"; do
    for conc in "${CONCS[@]}"; do
      key="$conc:$target"
      echo "| ${LABEL[$target]} | $conc | $(spread "$key" VALUES) | $(spread "$key" CPU) | $(spread "$key" BUSY) |"
    done
  done
  echo
  echo "### At saturation: each proxy's CPU per connection at its busiest level"
  echo
  echo "| target | at a time | busy % | CPU µs per connection |"
  echo "|---|---|---|---|"
  for target in "${TARGETS[@]}"; do
    [[ $target == direct ]] && continue
    best=$(busiest "$target")
    [[ -n $best ]] || continue
    c=$(med "$best:$target" CPU)
    echo "| ${LABEL[$target]} | $best | $(med "$best:$target" BUSY) | $(spread "$best:$target" CPU) |"
  done
  echo
  echo "(The busiest level of each proxy; where every level keeps the core over 95 % busy, the next"
  echo "table compares them level by level.)"
  echo
  echo "### netproxy against the best peer, and each variant against netproxy, at each level"
  echo
  echo "CPU µs per connection (medians); a ratio under 1 is cheaper than what it is compared with."
  echo
  local head="| | " line="|---|"
  for conc in "${CONCS[@]}"; do head+="$conc at a time | "; line+="---|"; done
  echo "${head% }"
  echo "$line"
  row="| best peer | "
  for conc in "${CONCS[@]}"; do
    best="" bc=99999
    for t in "${PEERS[@]}"; do
      c=$(med "$conc:$t" CPU)
      if [[ $c != - ]] && awk -v a="$c" -v b="$bc" 'BEGIN { exit !(a < b) }'; then bc=$c best=$t; fi
    done
    row+="${best:+$bc (${SHORT[$best]}) }| "
    BEST_AT[$conc]=$bc
  done
  echo "${row% }"
  for t in netproxy netproxy-defer netproxy-batch1 netproxy-lt; do
    [[ " ${TARGETS[*]} " == *" $t "* ]] || continue
    row="| ${LABEL[$t]} | "
    for conc in "${CONCS[@]}"; do
      c=$(med "$conc:$t" CPU)
      if [[ $t == netproxy ]]; then row+="$c ($(ratio "$c" "${BEST_AT[$conc]}") of the best peer) | "
      else row+="$c ($(ratio "$c" "$(med "$conc:netproxy" CPU)") of netproxy's) | "; fi
    done
    echo "${row% }"
  done
  echo
  met=0 levels=0
  for conc in "${CONCS[@]}"; do
    c=$(med "$conc:netproxy" CPU) b=$(med "$conc:netproxy" BUSY)
    [[ $c == - || ${BEST_AT[$conc]:-99999} == 99999 ]] && continue
    awk -v b="$b" 'BEGIN { exit !(b >= 95) }' || continue
    levels=$((levels + 1))
    awk -v a="$c" -v p="${BEST_AT[$conc]}" 'BEGIN { exit !(a <= p) }' && met=$((met + 1))
  done
  echo "Target (CPU per connection at or below the best peer's where the proxy core is saturated, busy >= 95 %):"
  echo "met at $met of the $levels saturated levels in this run."
  echo
  echo "### Ping-pong: one connection, $PP_ROUNDS round trips of 64 B (µs)"
  echo
  echo "| target | p50 | p99 | run-queue wait, µs per 1,000 rounds | preempted per 1,000 rounds | p50, CPUs kept awake | p99, CPUs kept awake |"
  echo "|---|---|---|---|---|---|---|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(spread "idle:p50:$target" PP) | $(spread "idle:p99:$target" PP) |" \
      "$(spread "idle:wait:$target" PP) | $(spread "idle:invol:$target" PP) |" \
      "$(spread "awake:p50:$target" PP) | $(spread "awake:p99:$target" PP) |"
  done
  echo
  echo "### Bulk: one stream of $((BULK_BYTES >> 20)) MiB (bt blast into bt sink)"
  echo
  echo "| target | Gbit/s | proxy CPU ms per GiB |"
  echo "|---|---|---|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(spread "$target" BULK) | $(spread "$target" BULK_CPU) |"
  done
  echo
  echo "### System calls per connection (strace -c, $STRACE_CONNS connections)"
  echo
  echo "| target | at a time | epoll_ctl | epoll_wait | accept4 | of which EAGAIN | all calls |"
  echo "|---|---|---|---|---|---|---|"
  for target in "${TARGETS[@]}"; do
    for conc in 1 128; do
      [[ -n ${SC["$conc:$target"]:-} ]] || continue
      read -r -a v <<<"${SC["$conc:$target"]}"
      echo "| ${LABEL[$target]} | $conc | ${v[0]} | ${v[1]} | ${v[2]} | ${v[3]} | ${v[4]} |"
    done
  done
  echo
  if ((${#NOTES[@]})); then printf -- '- %s\n' "${NOTES[@]}"; echo; fi
  if ((${#PROBLEMS[@]})); then
    echo "Problems in this run:"
    printf -- '- %s\n' "${PROBLEMS[@]}"
    echo
  fi
}

section >"$WORK/section.md"
cat "$WORK/section.md"
if ((WRITE)); then
  doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"
  say "wrote \"$SECTION_TITLE\" in ${DOC#"$ROOT"/}"
fi
((${#PROBLEMS[@]} == 0)) || exit 1
