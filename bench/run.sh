#!/usr/bin/env bash
# bench/run.sh: netproxy against a direct connection and against other proxies, on one machine.
#
# What it measures, every target in front of the same np-peer server on 127.0.0.1:
#   1. Bulk single-stream throughput: one connection reads BULK_BYTES from `np-peer source`
#      (the client verifies every byte); MB/s as np-peer reports it, plus the CPU time the
#      proxy process used per GiB and whether it spliced. Median, min, max of BULK_REPS runs.
#   2. Short-connection rate: SHORT_CONNS connections, SHORT_PARALLEL at a time, each sending
#      SHORT_BYTES to `np-peer echo` and reading them back; connections per second as np-peer
#      reports it, plus proxy CPU time per connection. Median, min, max of SHORT_REPS runs.
# Targets: direct (no proxy); netproxy with -w 1 (a single process, one event loop; the default
# is a worker per core), --relay auto (splice) and --relay buffered, and with an identity and a
# gsub Lua hook; socat (one fork per connection); HAProxy in TCP mode with nbthread 1: defaults,
# `option splice-auto`, and splice forced with `option splice-request` + `option splice-response`
# (the splice runs only when `haproxy -vv` shows splice support). Repetitions are interleaved (one run of every
# target, then the next round) so background noise falls on all targets alike.
#
# How to run (from the repository root, after building):
#   cmake -S . -B build && make -C build
#   bash bench/run.sh                   # full run (~3 min on 2 cores): prints the tables and
#                                       # replaces the "## TCP relaying" section of
#                                       # docs/benchmarks.md (the other sections are kept)
#   bash bench/run.sh --quick           # smoke run: 1 repetition, small sizes, doc untouched
#   bash bench/run.sh --quick --write   # smoke run that writes the section anyway
# Needs: bash, awk, ps, ss (iproute2), socat, haproxy. NETPROXY=... NP_PEER=... override the
# binaries. Everything listens on 127.0.0.1; every process started here is stopped by PID on
# exit. Exits 1 when a run failed or a target would not start (reported, the rest still runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
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

ALL_TARGETS=(direct netproxy-splice netproxy-buffered netproxy-hook-identity netproxy-hook-gsub
             socat haproxy haproxy-splice-auto haproxy-splice)
declare -A LABEL=(
  [direct]="direct (no proxy)"
  [netproxy-splice]="netproxy, --relay auto (splice)"
  [netproxy-buffered]="netproxy, --relay buffered"
  [netproxy-hook-identity]="netproxy, identity Lua hook"
  [netproxy-hook-gsub]="netproxy, gsub Lua hook"
  [socat]="socat, fork"
  [haproxy]="HAProxy, defaults"
  [haproxy-splice-auto]="HAProxy, option splice-auto"
  [haproxy-splice]="HAProxy, splice-request/response"
)

PIDS=()             # every process this script started and has not stopped yet
declare -A PORT     # target -> port the client connects to ('' while the target is down)
declare -A TPID     # target -> PID of its proxy process
declare -A PIPES0   # target -> pipe descriptors its proxy held right after starting
declare -A SPLICED  # target -> yes/no: the proxy held more pipes after the bulk runs
declare -A VALUES   # "section:target" -> the metric of every successful run, space-separated
declare -A CPU      # "section:target" -> proxy CPU seconds of every successful run
PROBLEMS=()         # failures, for the summary and the doc
NOTES=()            # remarks on the run (skipped targets, ...)

die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# ---------------------------------------------------------------- options and checks

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
    BULK_BYTES=256M BULK_REPS=1 SHORT_CONNS=2000 SHORT_PARALLEL=64 SHORT_BYTES=1K SHORT_REPS=1
  else
    BULK_BYTES=2G BULK_REPS=5 SHORT_CONNS=20000 SHORT_PARALLEL=64 SHORT_BYTES=1K SHORT_REPS=3
    WRITE=1
  fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (cmake -S . -B build && make -C build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (cmake -S . -B build && make -C build)"
  for tool in awk ps ss socat haproxy; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y procps iproute2 socat haproxy)"
  done
  # The binary loads lua/ and connectors/ from the tree at run time: a binary older than them
  # (or than src/) may not match them.
  local newer
  newer=$(find "$ROOT/src" "$ROOT/lua" "$ROOT/connectors" -type f -newer "$NETPROXY" 2>/dev/null | sed "s#^$ROOT/##" | sort)
  if [[ -n $newer ]]; then
    NOTES+=("${NETPROXY#"$ROOT"/} is older than $(wc -l <<<"$newer") file(s) of the tree it runs with ($(head -5 <<<"$newer" | tr '\n' ' ' | sed 's/ $//')$( (($(wc -l <<<"$newer") > 5)) && echo ', ...')): rebuild before trusting the netproxy rows.")
    say "note: ${NOTES[-1]}"
  fi
  # One event loop, like HAProxy's nbthread 1, on builds that have worker processes.
  NP_WORKERS=()
  if "$NETPROXY" --help 2>&1 | grep -q -- --workers; then NP_WORKERS=(-w 1); fi
  TARGETS=("${ALL_TARGETS[@]}")
  if ! haproxy -vv 2>/dev/null | grep -Eq '\+LINUX_SPLICE|USE_LINUX_SPLICE=1'; then
    NOTES+=("This HAProxy build has no Linux splice support: its two splice variants were skipped.")
    TARGETS=(direct netproxy-splice netproxy-buffered netproxy-hook-identity netproxy-hook-gsub socat haproxy)
  fi
  # 64 parallel connections need ~200 descriptors per process; 20000 leaves ample room.
  if ! ulimit -n 20000 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
    NOTES+=("ulimit -n 20000 was refused; ran with $(ulimit -n) descriptors.")
  fi
}

# ---------------------------------------------------------------- processes


# cpu_seconds PID: user + system time of the process tree: PID (all its threads), its live
# children (netproxy's workers, socat's forks) and the children it has reaped, in seconds.
cpu_seconds() {
  local pid stat total=0
  for pid in "$1" $(children "$1"); do
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    total=$(awk -v t="$total" '{print t + $12 + $13 + $14 + $15}' <<<"${stat##*) }")
  done
  awk -v t="$total" -v hz="$HZ" 'BEGIN {printf "%.2f\n", t / hz}'
}

# pipe_count PID: pipe descriptors PID holds (spliced pipes stay pooled in netproxy and HAProxy).
pipe_count() {
  local fd n=0
  for fd in /proc/"$1"/fd/*; do [[ $(readlink "$fd" 2>/dev/null) == pipe:* ]] && n=$((n + 1)); done
  echo "$n"
}

children() { ps -o pid= --ppid "$1" 2>/dev/null || true; }

# stop_pid PID: TERM its children (socat's forks) and itself, KILL after 5 s, reap it.
stop_pid() {
  local pid=$1 child i p keep=()
  for child in $(children "$pid"); do kill -TERM "$child" 2>/dev/null || true; done
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n ${WORK:-} && -d $WORK ]]; then
    if ((${#PROBLEMS[@]})); then say "logs and configs kept in $WORK"; else rm -rf "$WORK"; fi
  fi
}

# ---------------------------------------------------------------- ports and readiness



# ---------------------------------------------------------------- servers and proxies


# The launch_* functions start one proxy listening on 127.0.0.1:PORT in front of
# 127.0.0.1:BACKEND, config in $WORK/$TAG.*, output to $LOG; they set LAUNCHED_PID.
# Hooks on both directions (the bulk test's bytes flow server to client): the identity hook
# hands each chunk back unchanged; the gsub hook scans it for a word that never occurs.
HOOK_IDENTITY='hook = function(data) return data end'
HOOK_GSUB='hook = function(data) return (data:gsub("netproxy", "NETPROXY")) end'

launch_netproxy() { # PORT BACKEND RELAY [HOOK]
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/run.sh
proxy {
  name = "bench",
  from = { type = "tcp", host = "127.0.0.1", port = $1, ${4:-} },
  to   = { type = "tcp", host = "127.0.0.1", port = $2, ${4:-} },
}
EOF
  "$NETPROXY" -q "${NP_WORKERS[@]}" --relay "$3" "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# socat's default listen backlog is 5: at 64 parallel connects it drops SYNs, and the 1 s+
# retransmits would be measured instead of socat. netproxy uses 4096, HAProxy its maxconn.
launch_socat() { # PORT BACKEND
  socat "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork,backlog=1024" "TCP:127.0.0.1:$2" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_haproxy() { # PORT BACKEND SPLICE(none|auto|forced)
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
  haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_target() { # TARGET PORT BACKEND
  case $1 in
    netproxy-splice) launch_netproxy "$2" "$3" auto ;;
    netproxy-buffered) launch_netproxy "$2" "$3" buffered ;;
    netproxy-hook-identity) launch_netproxy "$2" "$3" auto "$HOOK_IDENTITY" ;;
    netproxy-hook-gsub) launch_netproxy "$2" "$3" auto "$HOOK_GSUB" ;;
    socat) launch_socat "$2" "$3" ;;
    haproxy) launch_haproxy "$2" "$3" none ;;
    haproxy-splice-auto) launch_haproxy "$2" "$3" auto ;;
    haproxy-splice) launch_haproxy "$2" "$3" forced ;;
    *) die "unknown target $1" ;;
  esac
}

# start_target SECTION TARGET BACKEND: sets PORT[TARGET] ('' when it would not start).
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
      PIPES0[$target]=$(pipe_count "$LAUNCHED_PID")
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    say "  $target did not listen on port $FREE_PORT (attempt $attempt): $(tail -3 "$LOG")"
  done
  PROBLEMS+=("$section, ${LABEL[$target]}: would not start; log: $(tail -5 "$LOG" | tr '\n' ' ')")
}

stop_targets() {
  local target
  for target in "${TARGETS[@]}"; do
    if [[ -n ${TPID[$target]:-} ]]; then stop_pid "${TPID[$target]}"; fi
    TPID[$target]=""
  done
}

# ---------------------------------------------------------------- measuring

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# measure SECTION TARGET METRIC REP CLIENT-ARGS...: one np-peer client run. Keeps METRIC
# (MBps or conns_per_sec) and the proxy's CPU seconds when every connection succeeded; files a
# problem report (with the proxy's fate and log) otherwise.
measure() {
  local section=$1 target=$2 metric=$3 rep=$4 out rc=0 value failed i cpu0=0 cpu1=0
  shift 4
  local port=${PORT[$target]} pid=${TPID[$target]:-} err=$WORK/client.err
  [[ -n $port ]] || return 0
  [[ -n $pid ]] && cpu0=$(cpu_seconds "$pid")  # the whole process tree
  out=$("$NP_PEER" client --connect "127.0.0.1:$port" "$@" 2>"$err") || rc=$?
  if [[ -n $pid ]]; then # let socat reap its forks so that their CPU time is counted
    for ((i = 0; i < 40; i++)); do [[ -z $(children "$pid") ]] && break; sleep 0.05; done
    cpu1=$(cpu_seconds "$pid")
  fi
  value=$(field "$metric" "$out") failed=$(field failed "$out")
  if ((rc == 0)) && [[ $failed == 0 && -n $value ]]; then
    VALUES[$section:$target]+="$value "
    [[ -n $pid ]] && CPU[$section:$target]+="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}') "
    printf '  %-6s rep %d  %-36s %10s %s\n' "$section" "$rep" "${LABEL[$target]}" "$value" \
      "$([[ $metric == MBps ]] && echo MB/s || echo conns/s)" >&2
    return 0
  fi
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

# run_section SECTION METRIC REPS BACKEND CLIENT-ARGS...: starts every target in front of
# BACKEND, runs REPS interleaved rounds over them, then stops them.
run_section() {
  local section=$1 metric=$2 reps=$3 backend=$4 target rep
  shift 4
  for target in "${TARGETS[@]}"; do start_target "$section" "$target" "$backend"; done
  for ((rep = 1; rep <= reps; rep++)); do
    for target in "${TARGETS[@]}"; do measure "$section" "$target" "$metric" "$rep" "$@"; done
  done
  if [[ $section == bulk ]]; then
    for target in "${TARGETS[@]}"; do
      SPLICED[$target]=-
      if [[ -n ${TPID[$target]:-} ]]; then
        SPLICED[$target]=no
        (($(pipe_count "${TPID[$target]}") > ${PIPES0[$target]})) && SPLICED[$target]=yes
      fi
    done
  fi
  stop_targets
}

# ---------------------------------------------------------------- results

to_bytes() { # 2G -> 2147483648
  local n=${1%[KkMmGg]}
  case $1 in
    *[Kk]) echo $((n << 10)) ;;
    *[Mm]) echo $((n << 20)) ;;
    *[Gg]) echo $((n << 30)) ;;
    *) echo "$n" ;;
  esac
}


# stat_of SECTION TARGET [median|min|max|runs]: one statistic of a target's metric.
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
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v u="$3" -v s="$4" -v f="$5" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf f "\n", m / u * s }'
}


# compare SECTION A B: A's median over B's ("1.39x"), marked as noise when each median lies
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

bulk_table() {
  local target units
  units=$(awk -v b="$(to_bytes "$BULK_BYTES")" 'BEGIN {print b / 1073741824}')
  echo "| Target | MB/s median | min | max | vs direct | proxy CPU s/GiB | spliced | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|:---:|---:|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of bulk "$target") | $(stat_of bulk "$target" min)" \
      "| $(stat_of bulk "$target" max) | $(pct "$(stat_of bulk "$target")" "$(stat_of bulk direct)")" \
      "| $(cpu_per bulk "$target" "$units" 1 %.2f) | ${SPLICED[$target]:--}" \
      "| $(stat_of bulk "$target" runs)/$BULK_REPS |"
  done
}

short_table() {
  local target
  echo "| Target | conns/s median | min | max | vs direct | proxy CPU µs/conn | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for target in "${TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of short "$target") | $(stat_of short "$target" min)" \
      "| $(stat_of short "$target" max) | $(pct "$(stat_of short "$target")" "$(stat_of short direct)")" \
      "| $(cpu_per short "$target" "$SHORT_CONNS" 1000000 %.0f)" \
      "| $(stat_of short "$target" runs)/$SHORT_REPS |"
  done
}

# reading: a few sentences computed from the results, so that they stay true on a rerun.
bullet() { echo "- $*"; }
med() { stat_of "$1" "$2"; }
gib_cpu() { cpu_per bulk "$1" "$(awk -v b="$(to_bytes "$BULK_BYTES")" 'BEGIN {print b / 1073741824}')" 1 %.2f; }
conn_cpu() { cpu_per short "$1" "$SHORT_CONNS" 1000000 %.0f; }

reading() {
  local vs_splice=""
  if [[ -n ${VALUES[bulk:haproxy-splice]:-} ]]; then
    vs_splice=" and $(compare bulk netproxy-splice haproxy-splice) HAProxy with splice forced on ($(med bulk haproxy-splice) MB/s)"
  fi
  bullet "Bulk: one stream through netproxy's splice relay ran at $(med bulk netproxy-splice) MB/s," \
    "$(pct "$(med bulk netproxy-splice)" "$(med bulk direct)") of the direct connection ($(med bulk direct) MB/s)," \
    "$(compare bulk netproxy-splice haproxy) HAProxy's default copying relay ($(med bulk haproxy) MB/s)$vs_splice." \
    "socat, copying 8 KiB at a time in a forked process, ran at $(med bulk socat) MB/s."
  bullet "netproxy's splice relay against its buffered relay: $(compare bulk netproxy-splice netproxy-buffered)" \
    "in throughput, $(gib_cpu netproxy-splice) against $(gib_cpu netproxy-buffered) proxy CPU seconds per GiB" \
    "(HAProxy: $(gib_cpu haproxy) copying, $(gib_cpu haproxy-splice) splicing; socat: $(gib_cpu socat))." \
    "With client and server competing for the same 2 cores, the proxy's CPU time shows what a relay" \
    "costs more clearly than the throughput, which also moves with the two peers."
  bullet "Hooks: an identity Lua hook on both directions carried $(med bulk netproxy-hook-identity) MB/s," \
    "$(pct "$(med bulk netproxy-hook-identity)" "$(med bulk netproxy-splice)") of the splice relay's throughput" \
    "($(gib_cpu netproxy-hook-identity) CPU s/GiB); a gsub hook scanning every chunk carried" \
    "$(med bulk netproxy-hook-gsub) MB/s ($(pct "$(med bulk netproxy-hook-gsub)" "$(med bulk netproxy-splice)")," \
    "$(gib_cpu netproxy-hook-gsub) CPU s/GiB), against $(med bulk socat) MB/s for socat with no hook at all."
  if [[ ${SPLICED[haproxy-splice-auto]:-} == no ]]; then
    bullet "HAProxy's \`option splice-auto\` never spliced in this test (it held no more pipes after the" \
      "bulk runs than at start), so its row is HAProxy's copying relay again; the" \
      "splice-request/response row is HAProxy splicing."
  fi
  bullet "Short connections: netproxy handled $(med short netproxy-splice) conns/s with --relay auto and" \
    "$(med short netproxy-buffered) with --relay buffered, against $(med short haproxy) for HAProxy" \
    "(netproxy is $(compare short netproxy-splice haproxy) HAProxy's rate), $(med short socat) for socat," \
    "which forks per connection, and $(med short direct) direct. Per connection, netproxy's process" \
    "used $(conn_cpu netproxy-splice) µs of CPU and HAProxy's $(conn_cpu haproxy) µs. Every proxied" \
    "connection is two TCP connections (client to proxy, proxy to server) on the same 2 cores as the" \
    "client and the server, so no proxy can be expected to reach the direct rate."
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
  echo "- socat: $(socat -V 2>&1 | awk '/socat version/ {print $3; exit}')"
}


np_cmd_note() { ((${#NP_WORKERS[@]})) && echo "${NP_WORKERS[*]} "; true; }

# section: the "## TCP relaying" section of docs/benchmarks.md.
section() {
  local mode=""
  ((QUICK)) && mode=" (a --quick smoke run: 1 repetition, small sizes)"
  cat <<EOF
$SECTION_TITLE

Plain TCP relaying: netproxy against a direct connection, socat and HAProxy, each proxy with one
event loop. This section is written by \`bench/run.sh\`; rerun it to refresh the section.

### Machine

Run on $RUN_DATE$mode.

$(machine_info)
- Load average (1/5/15 min) before / after the run (after includes the run itself): $LOAD_BEFORE / $LOAD_AFTER

### How to run

\`\`\`sh
cmake -S . -B build && make -C build
bash bench/run.sh            # full run, about 3 minutes; replaces this section
bash bench/run.sh --quick    # 1 repetition, smaller sizes; leaves this file alone (--write writes it)
\`\`\`

### Method

The servers and the load generator are \`build/np-peer\` (\`spec/tools/np-peer.c\`), which checks
every byte it receives. Each target listens on 127.0.0.1 in front of the same np-peer server:

- **direct**: the client connects to np-peer itself.
- **netproxy**: \`netproxy -q $(np_cmd_note)[--relay buffered] bench.lua\`, the config generated with one
  \`proxy { from = { type = "tcp", ... }, to = { type = "tcp", ... } }\`. \`--relay auto\` (the
  default) splices between the two sockets; \`--relay buffered\` copies through user-space buffers.
  The hook rows add \`hook = function(data) return data end\` (identity) or
  \`hook = function(data) return (data:gsub("netproxy", "NETPROXY")) end\` (a scan that never
  matches) to both \`from\` and \`to\`.
- **socat**: \`socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork,backlog=1024 TCP:127.0.0.1:BACKEND\`.
  \`backlog=1024\` because socat's default listen backlog of 5 overflows at 64 parallel connects,
  and the dropped SYNs (retried after 1 s and more) made it measure TCP timers (~40 conns/s)
  rather than socat. netproxy listens with a backlog of 4096, HAProxy with its maxconn (4096).
- **HAProxy**: \`haproxy -db -f haproxy.cfg\` with \`nbthread 1\`, \`maxconn 4096\`, \`mode tcp\`,
  \`timeout connect 5s\`, \`timeout client/server 60s\`: once with its defaults, once with
  \`option splice-auto\`, and once with splice forced on (\`option splice-request\` and
  \`option splice-response\`).

netproxy (\`-w 1\`: one process, where its default is one worker per core) and HAProxy
(\`nbthread 1\`) each run one event loop; socat forks a process per connection. The
[Workers](#workers) section compares 1 and 2 workers.

1. **Bulk single stream**: \`np-peer source --bytes $BULK_BYTES\` behind each target, and
   \`np-peer client --expect source --bytes $BULK_BYTES\` reads and verifies the stream over one
   connection. MB/s is np-peer's figure (bytes / seconds, 1 MB = 2^20 bytes). $BULK_REPS runs per target.
2. **Short connections**: \`np-peer echo\` behind each target, and
   \`np-peer client --expect echo --bytes $SHORT_BYTES --conns $SHORT_CONNS --parallel $SHORT_PARALLEL\`
   opens $SHORT_CONNS connections, $SHORT_PARALLEL at a time; each sends $SHORT_BYTES, reads it back
   and closes. conns/s is np-peer's figure. $SHORT_REPS runs per target.

The runs are interleaved (one run of every target, then the next round) so that background noise
falls on all targets alike. The tables give the median, min and max of the runs; "vs direct" is
the median over the direct median. A run counts only when every connection in it succeeded.
"Proxy CPU" is the user + system time of the proxy's whole process tree during each run (the
process with all its threads, its live children, such as netproxy's workers or socat's forks,
and the children it reaped), from /proc/PID/stat (10 ms ticks), median per GiB or per connection.
"Spliced" says whether the proxy held more pipe descriptors after the bulk runs than right after
starting: netproxy and HAProxy keep the pipes of spliced connections pooled.
The short-connection runs leave tens of thousands of sockets in TIME_WAIT on loopback; every
target runs under that same condition.

### Results

#### Bulk single-stream throughput ($BULK_BYTES over one connection, $BULK_REPS runs)

$(bulk_table)

#### Short connections ($SHORT_CONNS connections × $SHORT_BYTES echo, $SHORT_PARALLEL in parallel, $SHORT_REPS runs)

$(short_table)

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
  trap 'exit 130' INT
  trap 'exit 143' TERM

  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy benchmark$( ((QUICK)) && echo ' (--quick)'): ${TARGETS[*]}"

  say "bulk: $BULK_BYTES over one connection, $BULK_REPS runs per target"
  start_peer source --bytes "$BULK_BYTES"
  run_section bulk MBps "$BULK_REPS" "$PEER_PORT" --expect source --bytes "$BULK_BYTES" --timeout 120
  stop_pid "$PEER_PID"

  say "short: $SHORT_CONNS x $SHORT_BYTES echo, $SHORT_PARALLEL in parallel, $SHORT_REPS runs per target"
  start_peer echo
  run_section short conns_per_sec "$SHORT_REPS" "$PEER_PORT" --expect echo --bytes "$SHORT_BYTES" \
    --conns "$SHORT_CONNS" --parallel "$SHORT_PARALLEL" --timeout 60
  stop_pid "$PEER_PID"
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

  printf '\n### Bulk single-stream throughput (%s over one connection, %d runs)\n\n' "$BULK_BYTES" "$BULK_REPS"
  bulk_table
  printf '\n### Short connections (%d x %s echo, %d in parallel, %d runs)\n\n' \
    "$SHORT_CONNS" "$SHORT_BYTES" "$SHORT_PARALLEL" "$SHORT_REPS"
  short_table
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
