#!/usr/bin/env bash
# bench/workers.sh: connection rate with 1 and 2 workers: netproxy against HAProxy and nginx.
#
# Every target listens on 127.0.0.1 in front of the same `np-peer echo` server; the load is
# `np-peer client --expect echo --bytes CONN_BYTES --conns CONNS --parallel PARALLEL`: CONNS
# connections, PARALLEL at a time, each sending CONN_BYTES, reading them back and closing.
# Reported per target: connections per second as np-peer reports it (median, min, max of REPS
# runs), the CPU time of the target's whole process tree per connection (master, workers and
# threads, from /proc), how many cores it kept busy, and how its workers' CPU time was split.
# Targets, each with 1 and with 2 workers:
#   netproxy -w 1 / -w 2 (a single process / a master and 2 worker processes);
#   HAProxy in TCP mode, nbthread 1 / nbthread 2 (one process, 1 or 2 threads);
#   nginx's stream module, worker_processes 1 / 2 (a master and 1 or 2 worker processes);
# plus the direct connection to np-peer as a reference. A warm-up run (not counted) goes
# through every target first; then the repetitions are interleaved (one run of every target,
# then the next round) so that background noise falls on all targets alike.
#
# How to run (from the repository root, after building):
#   cmake -S . -B build && make -C build
#   apt-get install -y haproxy nginx-light libnginx-mod-stream
#   bash bench/workers.sh                   # full run (~1 min on 2 cores): prints the table and
#                                           # replaces the "## Workers" section of
#                                           # docs/benchmarks.md (the other sections are kept)
#   bash bench/workers.sh --quick           # smoke run: 1 repetition, fewer connections, doc untouched
#   bash bench/workers.sh --quick --write   # smoke run that writes the section anyway
# Needs: bash, awk, ps, ss (iproute2), haproxy, nginx with the stream module (a target that is
# missing is skipped with a note). NETPROXY=... NP_PEER=... NGINX=... override the binaries.
# Everything listens on 127.0.0.1; every process started here is stopped by PID on exit (a
# master first, then any of its workers still there). Exits 1 when a run failed or a target
# would not start (reported, the rest still runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## Workers"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"
# shellcheck source=bench/lib/nginx.sh
source "$ROOT/bench/lib/nginx.sh"

declare -A LABEL=(
  [direct]="direct (no proxy)"
  [netproxy-1]="netproxy, -w 1"
  [netproxy-2]="netproxy, -w 2"
  [netproxyrp-2]="netproxy, -w 2, reuseport"
  [haproxy-1]="HAProxy, nbthread 1"
  [haproxy-2]="HAProxy, nbthread 2"
  [nginx-1]="nginx stream, worker_processes 1"
  [nginx-2]="nginx stream, worker_processes 2"
)
PROXIES=(netproxy haproxy nginx)

PIDS=()             # every process this script started and has not stopped yet
declare -A PORT     # target -> port the client connects to ('' while the target is down)
declare -A TPID     # target -> PID of its (master) process
declare -A SHAPE    # target -> "N processes, M threads" seen once it listened
declare -A UNITS0   # target -> its workers' CPU ticks when the counted runs began
declare -A SPLIT    # target -> how its workers' CPU time was split over the counted runs
declare -A VALUES   # target -> conns/s of every successful run, space-separated
declare -A CPU      # target -> CPU seconds of its process tree in every successful run
declare -A BUSY     # target -> CPU seconds over wall seconds (cores kept busy) in every run
PROBLEMS=()         # failures, for the summary and the doc
NOTES=()            # remarks on the run (skipped targets, ...)



# ---------------------------------------------------------------- options and checks

parse_args() {
  bench_options "$@"
  CONN_BYTES=1K PARALLEL=128 WARM_CONNS=3000
  if ((QUICK)); then
    CONNS=5000 REPS=1
  else
    CONNS=30000 REPS=3
    WRITE=1
  fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (cmake -S . -B build && make -C build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (cmake -S . -B build && make -C build)"
  for tool in awk ps ss; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y procps iproute2)"
  done
  "$NETPROXY" --help 2>&1 | grep -q -- --workers || die "$NETPROXY has no -w/--workers option"
  local stale
  stale=$(stale_binary)
  if [[ -n $stale ]]; then
    NOTES+=("$stale")
    say "note: $stale"
  fi
  TARGETS=(direct netproxy-1 netproxy-2 netproxyrp-2)
  if command -v haproxy >/dev/null; then
    TARGETS+=(haproxy-1 haproxy-2)
  else
    NOTES+=("haproxy is not installed (apt-get install -y haproxy): its rows were skipped.")
  fi
  # nginx with its stream module (bench/lib/nginx.sh)
  if nginx_detect; then
    TARGETS+=(nginx-1 nginx-2)
  else
    NOTES+=("$NGINX_MISSING: its rows were skipped.")
  fi
  # PARALLEL connections need ~2 descriptors each in every process; 20000 leaves ample room.
  raise_fd_limit
}

# ---------------------------------------------------------------- processes


# shape PID: "N processes, M threads" of the tree (PID and its children).
shape() {
  local pid n=0 t=0 th
  for pid in "$1" $(children "$1"); do
    th=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    [[ -n $th ]] || continue
    n=$((n + 1)) t=$((t + th))
  done
  echo "$n process$( ((n > 1)) && echo es), $t thread$( ((t > 1)) && echo s)"
}

# worker_ticks TARGET: "ID:TICKS" (user + system) for each unit that serves connections: the
# worker processes under a master (netproxy -w 2, nginx), else the threads of the process
# (HAProxy), else the process itself.
worker_ticks() {
  local pid=${TPID[$1]} kids k stat
  kids=$(children "$pid")
  if [[ -n $kids ]]; then
    for k in $kids; do
      { read -r stat <"/proc/$k/stat"; } 2>/dev/null || continue
      awk -v id="$k" '{print id ":" $12 + $13}' <<<"${stat##*) }"
    done
  else
    for k in /proc/"$pid"/task/*; do
      { read -r stat <"$k/stat"; } 2>/dev/null || continue
      awk -v id="${k##*/}" '{print id ":" $12 + $13}' <<<"${stat##*) }"
    done
  fi
}

# split BEFORE AFTER: each unit's share of the units' CPU time between the two worker_ticks
# readings, highest first ("52/48"); units that used under 1% are left out.
split() {
  awk -v before="$1" -v after="$2" 'BEGIN {
    n = split(before, b, " "); for (i = 1; i <= n; i++) { split(b[i], kv, ":"); t0[kv[1]] = kv[2] }
    n = split(after, a, " ")
    for (i = 1; i <= n; i++) { split(a[i], kv, ":"); d[kv[1]] = kv[2] - t0[kv[1]]; tot += d[kv[1]] }
    if (tot <= 0) { print "-"; exit }
    m = 0; for (k in d) if (d[k] / tot >= 0.01) s[++m] = 100 * d[k] / tot
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (s[j] > s[i]) { x = s[i]; s[i] = s[j]; s[j] = x }
    out = ""; for (i = 1; i <= m; i++) out = out (i > 1 ? "/" : "") sprintf("%.0f", s[i])
    print out }'
}

# stop_pid PID (in place of bench/lib/proc.sh's, which TERMs the children itself): TERM it
# (a master stops its own workers), KILL it after 5 s, reap it; then
# KILL any of its children (recorded with their start time, so that no reused PID is hit)
# still there 2 s later.
stop_pid() {
  local pid=$1 kid i p keep=() kids=()
  for kid in $(children "$pid"); do kids+=("$kid:$(start_time "$kid")"); done
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  for kid in "${kids[@]}"; do
    for ((i = 0; i < 40; i++)); do alive "${kid%%:*}" || break; sleep 0.05; done
    if alive "${kid%%:*}" && [[ $(start_time "${kid%%:*}") == "${kid#*:}" ]]; then
      kill -KILL "${kid%%:*}" 2>/dev/null || true
    fi
  done
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

start_time() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
  awk '{print $20}' <<<"${stat##*) }"
}

# ---------------------------------------------------------------- ports and readiness



# ---------------------------------------------------------------- servers and proxies


# The launch_* functions start one proxy listening on 127.0.0.1:PORT in front of
# 127.0.0.1:BACKEND with N workers, config in $WORK/$TAG.*, output to $LOG; they set LAUNCHED_PID.

launch_netproxy() { # PORT BACKEND N [SERVER-OPTIONS]
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/workers.sh
${4:+server { $4 \}}
proxy {
  name = "bench",
  from = { type = "tcp", host = "127.0.0.1", port = $1 },
  to   = { type = "tcp", host = "127.0.0.1", port = $2 },
}
EOF
  "$NETPROXY" -q -w "$3" "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# The same with a SO_REUSEPORT socket per worker instead of one shared listening socket.
launch_netproxyrp() { launch_netproxy "$1" "$2" "$3" "reuseport = true"; }

launch_haproxy() { # PORT BACKEND N
  local cfg=$WORK/$TAG.cfg
  cat >"$cfg" <<EOF
# generated by bench/workers.sh
global
  nbthread $3
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend bench
  bind 127.0.0.1:$1
  default_backend bench_backend
backend bench_backend
  server s1 127.0.0.1:$2
EOF
  haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# launch_nginx: bench/lib/nginx.sh.

launch_target() { # TARGET PORT BACKEND
  local kind=${1%-*} n=${1##*-}
  case $kind in
    netproxy | netproxyrp | haproxy | nginx) "launch_$kind" "$2" "$3" "$n" ;;
    *) die "unknown target $1" ;;
  esac
}

# start_target TARGET BACKEND: sets PORT[TARGET] ('' when it would not start).
start_target() {
  local target=$1 backend=$2 attempt i
  TAG=$target LOG=$WORK/$target.log
  PORT[$target]="" TPID[$target]=""
  if [[ $target == direct ]]; then PORT[$target]=$backend SHAPE[$target]="-"; return 0; fi
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    launch_target "$target" "$FREE_PORT" "$backend"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PORT[$target]=$FREE_PORT TPID[$target]=$LAUNCHED_PID
      # a master forks its workers around the time it listens: give them a moment
      for ((i = 0; i < 20; i++)); do
        [[ $target == *-1 || $target == haproxy-* || -n $(children "$LAUNCHED_PID") ]] && break
        sleep 0.05
      done
      sleep 0.2
      SHAPE[$target]=$(shape "$LAUNCHED_PID")
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    say "  $target did not listen on port $FREE_PORT (attempt $attempt): $(tail -3 "$LOG" "$WORK/$target.error.log" 2>/dev/null)"
  done
  PROBLEMS+=("${LABEL[$target]}: would not start; log: $(cat "$LOG" "$WORK/$target.error.log" 2>/dev/null | tail -5 | tr '\n' ' ')")
}

stop_targets() {
  local target
  for target in "${TARGETS[@]}"; do
    if [[ -n ${TPID[$target]:-} ]]; then stop_pid "${TPID[$target]}"; fi
    TPID[$target]=""
  done
}

# ---------------------------------------------------------------- measuring

# measure TARGET REP CONNS: one np-peer client run (REP 0: the warm-up, not counted). Keeps
# conns/s, the tree's CPU seconds and the cores it kept busy when every connection succeeded;
# files a problem report (with the target's fate and log) otherwise.
measure() {
  local target=$1 rep=$2 conns=$3 out rc=0 value failed secs cpu0=0 cpu1=0 cpu
  local port=${PORT[$target]} pid=${TPID[$target]:-} err=$WORK/client.err
  [[ -n $port ]] || return 0
  [[ -n $pid ]] && cpu0=$(cpu_seconds "$pid")
  out=$("$NP_PEER" client --connect "127.0.0.1:$port" --expect echo --bytes "$CONN_BYTES" \
        --conns "$conns" --parallel "$PARALLEL" --timeout 60 2>"$err") || rc=$?
  [[ -n $pid ]] && cpu1=$(cpu_seconds "$pid")
  value=$(field conns_per_sec "$out") failed=$(field failed "$out") secs=$(field seconds "$out")
  if ((rc == 0)) && [[ $failed == 0 && -n $value ]]; then
    if ((rep > 0)); then
      VALUES[$target]+="$value "
      if [[ -n $pid ]]; then
        cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}')
        CPU[$target]+="$cpu "
        BUSY[$target]+="$(awk -v c="$cpu" -v s="$secs" 'BEGIN {print (s > 0 ? c / s : 0)}') "
      fi
    fi
    printf '  %-8s %-34s %10s conns/s\n' "$( ((rep)) && echo "rep $rep" || echo warm-up)" \
      "${LABEL[$target]}" "$value" >&2
    return 0
  fi
  local report
  report="$( ((rep)) && echo "rep $rep" || echo warm-up), ${LABEL[$target]}: \`np-peer client"
  report+=" --connect 127.0.0.1:$port --expect echo --bytes $CONN_BYTES --conns $conns --parallel $PARALLEL\`"
  report+=" exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'"
  if [[ -n $pid ]] && ! alive "$pid"; then
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    report+="; the target process is gone (wait status $rc); its log: '$(cat "$WORK/$target.log" "$WORK/$target.error.log" 2>/dev/null | tail -5 | tr '\n' ' ')'"
    PORT[$target]="" TPID[$target]=""
  fi
  PROBLEMS+=("$report")
  say "  FAILED: $report"
}

# ---------------------------------------------------------------- results


# stat_of TARGET [median|min|max|runs]: one statistic of a target's conns/s.
stat_of() {
  local v m lo hi
  read -r -a v <<<"${VALUES[$1]:-}"
  read -r m lo hi <<<"$(stats "${v[@]}")"
  case ${2:-median} in median) echo "$m" ;; min) echo "$lo" ;; max) echo "$hi" ;; runs) echo "${#v[@]}" ;; esac
}

# median_of ARRAY-NAME KEY SCALE FORMAT: the median of the list KEY in ARRAY-NAME, x SCALE.
median_of() {
  local -n arr=$1
  local v
  read -r -a v <<<"${arr[$2]:-}"
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v s="$3" -v f="$4" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf f "\n", m * s }'
}

conn_cpu() { median_of CPU "$1" "$(awk -v c="$CONNS" 'BEGIN {print 1000000 / c}')" %.0f; }  # µs/conn
busy() { median_of BUSY "$1" 1 %.2f; }                                                       # cores


# compare A B: A's median over B's ("1.39x"), marked as noise when each median lies within the
# other's min-max range.
compare() {
  local a b alo ahi blo bhi
  a=$(stat_of "$1") alo=$(stat_of "$1" min) ahi=$(stat_of "$1" max)
  b=$(stat_of "$2") blo=$(stat_of "$2" min) bhi=$(stat_of "$2" max)
  awk -v a="$a" -v b="$b" -v alo="$alo" -v ahi="$ahi" -v blo="$blo" -v bhi="$bhi" 'BEGIN {
    if (a == "-" || b == "-" || b + 0 == 0) { print "n/a"; exit }
    s = sprintf("%.2fx", a / b)
    if (a >= blo + 0 && a <= bhi + 0 && b >= alo + 0 && b <= ahi + 0) s = s " (within the run-to-run noise)"
    print s }'
}

# two_vs_one TARGET: for a 2-worker row, its median over the same proxy's 1-worker median.
two_vs_one() {
  [[ $1 == *-2 ]] || { echo -; return; }
  compare "$1" "${1%-2}-1" | sed 's/ (within the run-to-run noise)/ (noise)/'
}

table() {
  local target
  echo "| Target | conns/s median | min | max | 2 workers vs 1 | vs direct | target CPU µs/conn | cores busy | worker CPU split | processes, threads | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---|---:|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of "$target") | $(stat_of "$target" min) | $(stat_of "$target" max)" \
      "| $(two_vs_one "$target") | $(pct "$(stat_of "$target")" "$(stat_of direct)")" \
      "| $(conn_cpu "$target") | $(busy "$target") | ${SPLIT[$target]:--} | ${SHAPE[$target]:--}" \
      "| $(stat_of "$target" runs)/$REPS |"
  done
}

# busy_range N: the lowest and highest "cores busy" over the proxies with N workers ("0.93 to 0.98").
busy_range() {
  local p
  for p in "${PROXIES[@]}"; do busy "$p-$1"; done | { grep -v '^-$' || true; } | sort -g |
    awk 'NR == 1 {lo = $1} {hi = $1} END { if (NR == 0) print "n/a"; else if (lo == hi) print lo; else print lo " to " hi }'
}

# reading: a few sentences computed from the results, so that they stay true on a rerun.
bullet() { echo "- $*"; }
has() { [[ -n ${VALUES[$1]:-} ]]; }

reading() {
  local p name
  declare -A NAME=([netproxy]=netproxy [haproxy]=HAProxy [nginx]=nginx)
  for p in "${PROXIES[@]}"; do
    name=${NAME[$p]}
    if has "$p-1" && has "$p-2"; then
      bullet "$name: $(stat_of "$p-1") conns/s with one worker and $(stat_of "$p-2") with two," \
        "$(compare "$p-2" "$p-1"); CPU per connection $(conn_cpu "$p-1") µs against $(conn_cpu "$p-2") µs," \
        "and the whole tree kept $(busy "$p-1") against $(busy "$p-2") cores busy" \
        "(the two workers' CPU split ${SPLIT[$p-2]:--})."
    elif [[ " ${TARGETS[*]} " == *" $p-1 "* ]]; then
      bullet "$name: no complete pair of results (see the problems below)."
    fi
  done
  if has netproxy-1 && has haproxy-1 && has nginx-1; then
    bullet "One worker each: netproxy is $(compare netproxy-1 haproxy-1) HAProxy's rate and" \
      "$(compare netproxy-1 nginx-1) nginx's; two workers each: $(compare netproxy-2 haproxy-2)" \
      "HAProxy's and $(compare netproxy-2 nginx-2) nginx's."
  fi
  local b1 b2
  b1=$(busy_range 1) b2=$(busy_range 2)
  if [[ $b1 != n/a && $b2 != n/a ]]; then
    bullet "With one worker the proxies' process trees kept $b1 cores busy; with two, $b2: the" \
      "second worker found little free CPU, the rest of the $(nproc) cores going to the client and" \
      "the echo server (and the kernel's work for them)."
  fi
  bullet "The direct connection to np-peer ran at $(stat_of direct) conns/s. The client, every proxy" \
    "and the echo server share the same $(nproc) cores, and np-peer's client and server are one" \
    "event loop each and busy themselves: a second worker (or thread) can only run on CPU time it" \
    "takes from them, so these rows show what a second worker costs and gains on a machine that" \
    "is already full, not how the proxies scale with free cores. Per-connection CPU is the" \
    "cleaner comparison; the rates move with whatever the peers got."
}

machine_info() {
  local cpu mem
  cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "- CPUs: $(nproc) ($cpu); memory: $mem; kernel: Linux $(uname -r)"
  echo "- netproxy: $("$NETPROXY" --version 2>&1 | head -1), binary built $(date -u -r "$NETPROXY" '+%Y-%m-%d %H:%M UTC')," \
    "tree at git $(git_rev)"
  if command -v haproxy >/dev/null; then
    echo "- HAProxy: $(haproxy -v 2>&1 | head -1 | sed 's/ - https.*//; s/^HAProxy version //')"
  fi
  if nginx_detect; then echo "- nginx: $(nginx_version)"; fi
}


# section: the "## Workers" section of docs/benchmarks.md.
section() {
  local mode=""
  ((QUICK)) && mode=" (a --quick smoke run: 1 repetition, fewer connections)"
  cat <<EOF
$SECTION_TITLE

Connection rate with one and with two workers: netproxy's worker processes (\`-w N\`) against
HAProxy's threads (\`nbthread N\`) and nginx's worker processes (\`worker_processes N\`, stream
module), all relaying plain TCP. This section is written by \`bench/workers.sh\`; rerun it to
refresh the section.

### How to run

\`\`\`sh
apt-get install -y haproxy nginx-light libnginx-mod-stream
bash bench/workers.sh            # full run, about 1 minute; replaces this section
bash bench/workers.sh --quick    # 1 repetition, fewer connections; leaves this file alone (--write writes it)
\`\`\`

### Method

Run on $RUN_DATE$mode.

$(machine_info)
- Load average (1/5/15 min) before / after the run (after includes the run itself): $LOAD_BEFORE / $LOAD_AFTER

Each target listens on 127.0.0.1 in front of the same \`np-peer echo\` server:

- **netproxy**: \`netproxy -q -w N bench.lua\` with one
  \`proxy { from = { type = "tcp", ... }, to = { type = "tcp", ... } }\` (default relay, auto).
  \`-w 1\` is a single process; \`-w 2\` a master and two worker processes that accept from the
  same listening socket.
- **HAProxy**: \`haproxy -db -f haproxy.cfg\` with \`nbthread N\`, \`maxconn 4096\`, \`mode tcp\`,
  \`timeout connect 5s\`, \`timeout client/server 60s\`: one process with N threads.
- **nginx**: \`nginx -p WORK/ -e WORK/error.log -c nginx.conf\`, the config generated with
  \`daemon off; master_process on; worker_processes N;\`, \`pid\`, \`error_log ... warn\`,
  \`events { worker_connections 4096; }\`, the stream module loaded where it is dynamic, and
  \`stream { server { listen 127.0.0.1:P; proxy_pass 127.0.0.1:BACKEND; } }\`: a master and N
  worker processes, its defaults otherwise.
- **direct**: the client connects to np-peer itself, for reference.

The load is \`np-peer client --expect echo --bytes $CONN_BYTES --conns $CONNS --parallel $PARALLEL\`:
$CONNS connections, $PARALLEL at a time; each sends $CONN_BYTES, reads it back and closes; a run
counts only when every connection succeeded. conns/s is np-peer's figure. Every target first gets
a warm-up run of $WARM_CONNS connections, not counted; then $REPS runs per target, interleaved
(one run of every target, then the next round). The table gives the median, min and max;
"2 workers vs 1" is the 2-worker median over the same proxy's 1-worker median, marked "(noise)"
when each median lies within the other's min-max range. "Target CPU" is the user + system time of
the target's whole process tree during each run (the process with all its threads, its live
children such as workers, and the children it reaped), from /proc/PID/stat (10 ms ticks), per
connection, median; "cores busy" is that CPU time over the run's wall time, median.
"Worker CPU split" is how the CPU time of the two workers (worker processes for netproxy and
nginx, threads for HAProxy) divided between them over the counted runs, highest first: how
evenly the connections were spread. "Processes, threads" is what the tree held once it listened.

**The client, the proxy and the echo server share the same $(nproc) cores.** np-peer's client
and server are one event loop each, and both are busy: a second worker competes with them for
CPU, so it cannot show how a proxy scales on a machine with cores to spare.

### Results

#### Short connections ($CONNS connections × $CONN_BYTES echo, $PARALLEL in parallel, $REPS runs)

$(table)

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

# write_doc: replaces this script's section of docs/benchmarks.md (bench/lib/doc.sh); the
# other sections are kept.
write_doc() {
  section >"$WORK/section.md"
  doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"
}

# ---------------------------------------------------------------- main

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-workers-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy workers benchmark$( ((QUICK)) && echo ' (--quick)'): ${TARGETS[*]}"
  say "short: $CONNS x $CONN_BYTES echo, $PARALLEL in parallel, $REPS runs per target"

  local target rep
  start_peer echo
  for target in "${TARGETS[@]}"; do start_target "$target" "$PEER_PORT"; done
  for target in "${TARGETS[@]}"; do measure "$target" 0 "$WARM_CONNS"; done
  for target in "${TARGETS[@]}"; do
    if [[ $target == *-2 && -n ${TPID[$target]:-} ]]; then UNITS0[$target]=$(worker_ticks "$target" | tr '\n' ' '); fi
  done
  for ((rep = 1; rep <= REPS; rep++)); do
    for target in "${TARGETS[@]}"; do measure "$target" "$rep" "$CONNS"; done
  done
  for target in "${TARGETS[@]}"; do
    if [[ $target == *-2 && -n ${TPID[$target]:-} ]]; then
      SPLIT[$target]=$(split "${UNITS0[$target]:-}" "$(worker_ticks "$target" | tr '\n' ' ')")
    fi
  done
  stop_targets
  stop_pid "$PEER_PID"
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

  printf '\n### Short connections (%d x %s echo, %d in parallel, %d runs)\n\n' \
    "$CONNS" "$CONN_BYTES" "$PARALLEL" "$REPS"
  table
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
