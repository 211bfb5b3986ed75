#!/usr/bin/env bash
# bench/tls.sh: TLS termination: netproxy against stunnel4 and HAProxy, on one machine.
#
# Each target terminates TLS (TLS 1.3 by default, with a throw-away self-signed EC P-256
# certificate made for the run) in front of a plain np-peer server on 127.0.0.1:
#   1. Bulk single-stream throughput: np-peer speaks no TLS, so a TLS client hop that is the
#      same for every target (stunnel in client mode) sits in front:
#        np-peer client -> stunnel client (TLS) -> TARGET (terminates) -> np-peer source
#      `np-peer client --expect source` reads and verifies BULK_BYTES over one connection;
#      MB/s as np-peer reports it, plus the CPU time the target (and the client hop) used per
#      GiB. Median, min, max of BULK_REPS runs. No direct row: there is no TLS server that
#      could send np-peer's verified stream.
#   2. Full handshakes: `openssl s_time -new -www /hs` (a new session every time, no
#      resumption) for HS_TIME seconds against each target, one connection at a time: each
#      connection is a full TLS handshake, one HTTP/1.0 GET carried to `np-peer reply` behind
#      the target (48 bytes back, then the server closes) and the close. Connections per
#      second from our own wall clock (s_time rounds to whole seconds), the target's CPU time
#      per connection, every reply byte counted. Direct row: `openssl s_server -WWW` with the
#      same certificate serving the same 48 bytes itself. Median, min, max of HS_REPS runs.
# Targets: netproxy (`from = ssl`, `to = tcp`, -q, and -w 1 where the build has workers);
# stunnel4 (a thread per connection, debug = warning); HAProxy in TCP mode with
# `bind ... ssl crt`, nbthread 1. Repetitions are interleaved (one run of every target, then
# the next round) so that background noise falls on all alike.
#
# How to run (from the repository root, after building):
#   cmake -S . -B build && make -C build
#   apt-get install -y stunnel4 haproxy openssl
#   bash bench/tls.sh                   # full run (~2 min on 2 cores): prints the tables and
#                                       # replaces the "## TLS termination" section of
#                                       # docs/benchmarks.md (the other sections are kept)
#   bash bench/tls.sh --quick           # smoke run: 1 repetition, small sizes, doc untouched
#   bash bench/tls.sh --quick --write   # smoke run that writes the section anyway
# Needs: bash, awk, ps, ss (iproute2), openssl, stunnel, haproxy. NETPROXY=... NP_PEER=...
# override the binaries. Everything listens on 127.0.0.1; every process started here is
# stopped by PID on exit. Exits 1 when a run failed or a target would not start (reported,
# the rest still runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## TLS termination"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

BULK_TARGETS=(netproxy stunnel haproxy)
HS_TARGETS=(direct netproxy stunnel haproxy)
declare -A LABEL=(
  [direct]="direct (openssl s_server -WWW, no proxy)"
  [netproxy]="netproxy (from = ssl)"
  [stunnel]="stunnel4"
  [haproxy]="HAProxy (mode tcp, ssl crt)"
)

# The reply every handshake connection gets: what `openssl s_server -WWW` sends for a text
# file holding "ok\n", so that the direct row and the proxied rows read the same bytes.
REPLY_TEXT='HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\nok\n'
REPLY_BYTES=$(printf '%b' "$REPLY_TEXT" | wc -c)

PIDS=()             # every process this script started and has not stopped yet
declare -A PORT     # target -> port the load generator connects to ('' while it is down)
declare -A TPID     # target -> PID of the TLS-terminating process
declare -A CPORT    # target -> port of the TLS client hop in front of it (bulk)
declare -A CPID     # target -> PID of that client hop
declare -A NEG      # target -> negotiated protocol, cipher suite and key exchange
declare -A VALUES   # "section:target" -> the metric of every successful run, space-separated
declare -A CPU      # "section:target" -> target CPU seconds of every successful run
declare -A CCPU     # "section:target" -> client CPU seconds of every successful run
PROBLEMS=()         # failures, for the summary and the doc
NOTES=()            # remarks on the run



# ---------------------------------------------------------------- options and checks

parse_args() {
  bench_options "$@"
  if ((QUICK)); then
    BULK_BYTES=256M BULK_REPS=1 HS_TIME=2 HS_REPS=1
  else
    BULK_BYTES=1G BULK_REPS=5 HS_TIME=5 HS_REPS=3
    WRITE=1
  fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (cmake -S . -B build && make -C build)"
  [[ -x $NP_PEER ]] || die "no $NP_PEER: build first (cmake -S . -B build && make -C build)"
  for tool in awk ps ss openssl haproxy; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y procps iproute2 openssl haproxy)"
  done
  local stale
  stale=$(stale_binary)
  if [[ -n $stale ]]; then
    NOTES+=("$stale")
    say "note: $stale"
  fi
  # One event loop, like HAProxy's nbthread 1, on builds that have worker processes.
  NP_WORKERS=()
  if "$NETPROXY" --help 2>&1 | grep -q -- --workers; then NP_WORKERS=(-w 1); fi
  STUNNEL=$(command -v stunnel4 || command -v stunnel) || die "stunnel not found (apt-get install -y stunnel4)"
  raise_fd_limit
}

# make_cert: a throw-away self-signed EC P-256 certificate for localhost and 127.0.0.1.
make_cert() {
  CERT=$WORK/cert.pem KEY=$WORK/key.pem COMBINED=$WORK/combined.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" >"$WORK/cert.log" 2>&1 || die "openssl req failed: $(tail -3 "$WORK/cert.log")"
  cat "$CERT" "$KEY" >"$COMBINED"
  chmod 600 "$KEY" "$COMBINED"
  mkdir -p "$WORK/www"
  printf 'ok\n' >"$WORK/www/hs"
}

# ---------------------------------------------------------------- processes


# ---------------------------------------------------------------- ports and readiness



# ---------------------------------------------------------------- servers and proxies


# The launch_* functions start one process listening on 127.0.0.1:PORT, config in
# $WORK/$TAG.*, output to $LOG; they set LAUNCHED_PID.

launch_netproxy() { # PORT BACKEND: terminates TLS
  local cfg=$WORK/$TAG.lua
  cat >"$cfg" <<EOF
-- generated by bench/tls.sh
proxy {
  name = "tls",
  from = { type = "ssl", host = "127.0.0.1", port = $1, cert = "$CERT", key = "$KEY" },
  to   = { type = "tcp", host = "127.0.0.1", port = $2 },
}
EOF
  "$NETPROXY" -q "${NP_WORKERS[@]}" "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# stunnel logs every connection at its default level (5, notice); `debug = warning` matches
# netproxy -q and HAProxy without a log line.
launch_stunnel() { # PORT BACKEND: terminates TLS
  local cfg=$WORK/$TAG.conf
  cat >"$cfg" <<EOF
; generated by bench/tls.sh
foreground = yes
pid =
debug = warning
[tls]
accept = 127.0.0.1:$1
connect = 127.0.0.1:$2
cert = $CERT
key = $KEY
EOF
  "$STUNNEL" "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

launch_haproxy() { # PORT BACKEND: terminates TLS
  local cfg=$WORK/$TAG.cfg
  cat >"$cfg" <<EOF
# generated by bench/tls.sh
global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls
  bind 127.0.0.1:$1 ssl crt $COMBINED
  default_backend plain
backend plain
  server s1 127.0.0.1:$2
EOF
  haproxy -db -f "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# openssl s_server -WWW answers "GET /hs HTTP/1.0" with the file hs of its folder, itself.
launch_direct() { # PORT
  (cd "$WORK/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$1" -cert "$CERT" -key "$KEY" \
    </dev/null >>"$LOG" 2>&1) &
  LAUNCHED_PID=$!
}

# The bulk tests' TLS client hop, the same for every target: stunnel in client mode, no
# certificate check (the certificate is a throw-away one).
launch_client_hop() { # PORT TARGET-PORT
  local cfg=$WORK/$TAG.conf
  cat >"$cfg" <<EOF
; generated by bench/tls.sh: the TLS client hop
foreground = yes
pid =
debug = err
[client]
client = yes
accept = 127.0.0.1:$1
connect = 127.0.0.1:$2
EOF
  "$STUNNEL" "$cfg" >>"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}

# launch_up WHAT ARGS...: runs launch_WHAT on a free port until it listens (5 attempts);
# sets UP_PORT and UP_PID, or returns 1.
launch_up() {
  local what=$1 attempt
  shift
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    "launch_$what" "$FREE_PORT" "$@"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      UP_PORT=$FREE_PORT UP_PID=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    say "  $what did not listen on port $FREE_PORT (attempt $attempt): $(tail -3 "$LOG")"
  done
  return 1
}

# start_target SECTION TARGET BACKEND: sets PORT[TARGET] ('' when it would not start); for
# the bulk section, also the client hop in front of it (CPORT).
start_target() {
  local section=$1 target=$2 backend=$3
  TAG=$section-$target LOG=$WORK/$section-$target.log
  PORT[$target]="" TPID[$target]="" CPORT[$target]="" CPID[$target]=""
  if ! launch_up "$target" "$backend"; then
    PROBLEMS+=("$section, ${LABEL[$target]}: would not start; log: $(tail -5 "$LOG" | tr '\n' ' ')")
    return 0
  fi
  PORT[$target]=$UP_PORT TPID[$target]=$UP_PID
  [[ $section == bulk ]] || return 0
  TAG=$section-$target-client LOG=$WORK/$section-$target-client.log
  if ! launch_up client_hop "${PORT[$target]}"; then
    PROBLEMS+=("$section, the stunnel client hop in front of ${LABEL[$target]}: would not start; log: $(tail -5 "$LOG" | tr '\n' ' ')")
    stop_pid "${TPID[$target]}"
    PORT[$target]="" TPID[$target]=""
    return 0
  fi
  CPORT[$target]=$UP_PORT CPID[$target]=$UP_PID
}

stop_targets() {
  local target
  for target in "$@"; do
    if [[ -n ${CPID[$target]:-} ]]; then stop_pid "${CPID[$target]}"; fi
    if [[ -n ${TPID[$target]:-} ]]; then stop_pid "${TPID[$target]}"; fi
    CPID[$target]="" TPID[$target]="" PORT[$target]="" CPORT[$target]=""
  done
}

# check_fate SECTION TARGET: sets FATE to "" while the target runs; else to what became of it
# (its wait status and log), and marks it down.
check_fate() {
  local pid=${TPID[$2]:-} rc=0
  FATE=""
  [[ -n $pid ]] || return 0
  alive "$pid" && return 0
  wait "$pid" 2>/dev/null || rc=$?
  PORT[$2]="" TPID[$2]=""
  FATE="; the target process is gone (wait status $rc)"
}

# log_tail SECTION TARGET: the last lines the target logged, if any.
log_tail() {
  local log=$WORK/$1-$2.log
  [[ -s $log ]] || return 0
  echo "; its log ends: '$(tail -3 "$log" | tr '\n' ' ' | sed 's/ $//')'"
}

# negotiate TARGET: one connection with openssl s_client, which must get the 48-byte reply
# through; records the protocol, cipher suite and key exchange. Returns 1 (and files a
# problem) when the reply does not come back.
negotiate() {
  local target=$1 out
  out=$(printf 'GET /hs HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -brief -ign_eof \
        -connect "127.0.0.1:${PORT[$target]}" 2>&1) || true
  NEG[$target]=$(awk -F': ' '/^Protocol version:/ {p = $2} /^Ciphersuite:/ {c = $2}
    /^(Server|Peer) Temp Key:/ {k = $2; sub(/,.*/, "", k)}
    END {s = p " " c " " k; gsub(/^ +| +$/, "", s); print (s == "" ? "-" : s)}' <<<"$out")
  [[ $out == *"HTTP/1.0 200 ok"* && $out == *$'\nok'* ]] && return 0
  check_fate hs "$target"
  local report="handshakes, ${LABEL[$target]}: the check connection got no reply"
  report+=" (\`printf 'GET /hs HTTP/1.0\\r\\n\\r\\n' | openssl s_client -brief -ign_eof -connect 127.0.0.1:${PORT[$target]}\`"
  report+=" printed '$(tail -6 <<<"$out" | tr '\n' ' ')')$FATE$(log_tail hs "$target")"
  PROBLEMS+=("$report")
  say "  FAILED: $report"
  return 1
}

# ---------------------------------------------------------------- measuring

# measure_bulk TARGET REP: one np-peer client run through the client hop. Keeps MB/s and
# both processes' CPU seconds when it succeeded; files a problem report otherwise.
measure_bulk() {
  local target=$1 rep=$2 out rc=0 value failed t0 t1 c0 c1 err=$WORK/client.err
  local cport=${CPORT[$target]:-} tpid=${TPID[$target]:-} cpid=${CPID[$target]:-}
  [[ -n $cport ]] || return 0
  t0=$(cpu_seconds "$tpid") c0=$(cpu_seconds "$cpid")
  out=$("$NP_PEER" client --connect "127.0.0.1:$cport" --expect source --bytes "$BULK_BYTES" \
        --timeout 120 2>"$err") || rc=$?
  t1=$(cpu_seconds "$tpid") c1=$(cpu_seconds "$cpid")
  value=$(field MBps "$out") failed=$(field failed "$out")
  if ((rc == 0)) && [[ $failed == 0 && -n $value ]]; then
    VALUES[bulk:$target]+="$value "
    CPU[bulk:$target]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') "
    CCPU[bulk:$target]+="$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}') "
    printf '  bulk rep %d  %-42s %10s MB/s\n' "$rep" "${LABEL[$target]}" "$value" >&2
    return 0
  fi
  local report="bulk rep $rep, ${LABEL[$target]}: \`np-peer client --connect 127.0.0.1:$cport"
  report+=" --expect source --bytes $BULK_BYTES\` (through the stunnel client hop to the target on"
  report+=" port ${PORT[$target]}) exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'"
  check_fate bulk "$target"
  report+="$FATE$(log_tail bulk "$target"); its remaining runs were skipped"
  PROBLEMS+=("$report")
  say "  FAILED: $report"
  stop_targets "$target"
}

# measure_hs TARGET REP: one `openssl s_time -new` run. Connections per second by our wall
# clock; the target's CPU seconds; the client's user seconds as s_time reports them.
measure_hs() {
  local target=$1 rep=$2 out rc=0 n total per user start end t0 t1 rate
  local port=${PORT[$target]:-} tpid=${TPID[$target]:-}
  [[ -n $port ]] || return 0
  t0=$(cpu_seconds "$tpid")
  start=$(date +%s.%N)
  out=$(timeout $((HS_TIME + 30)) openssl s_time -connect "127.0.0.1:$port" -new -www /hs \
        -time "$HS_TIME" </dev/null 2>&1) || rc=$?
  end=$(date +%s.%N)
  t1=$(cpu_seconds "$tpid")
  # "N connections in U.UUs; ... bytes read B" and "N connections in S real seconds, ..."
  read -r n user total <<<"$(awk '/connections in .*s; .*bytes read/ {
      n = $1; u = $4; sub(/s;$/, "", u); t = $NF; print n, u, t; exit }' <<<"$out")"
  per=$(sed -n 's/.* real seconds, \([0-9]*\) bytes read per connection.*/\1/p' <<<"$out" | head -1)
  if ((rc == 0)) && [[ ${n:-0} -gt 0 && $total == $((n * REPLY_BYTES)) && $per == "$REPLY_BYTES" ]]; then
    rate=$(awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN {printf "%.1f\n", n / (e - s)}')
    VALUES[hs:$target]+="$rate "
    CPU[hs:$target]+="$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN {print (b - a) / n}') "
    CCPU[hs:$target]+="$(awk -v u="$user" -v n="$n" 'BEGIN {print u / n}') "
    printf '  hs   rep %d  %-42s %10s conns/s (%d in %.2f s)\n' "$rep" "${LABEL[$target]}" "$rate" "$n" \
      "$(awk -v s="$start" -v e="$end" 'BEGIN {print e - s}')" >&2
    return 0
  fi
  local report="handshakes rep $rep, ${LABEL[$target]}: \`openssl s_time -connect 127.0.0.1:$port -new"
  report+=" -www /hs -time $HS_TIME\` exited $rc"
  [[ -n ${n:-} ]] && report+=" after $n connections reading $total bytes (want $REPLY_BYTES each)"
  report+="; output ends: '$(tail -4 <<<"$out" | tr -d '*' | tr '\n' ' ')'"
  check_fate hs "$target"
  report+="$FATE$(log_tail hs "$target"); its remaining runs were skipped"
  PROBLEMS+=("$report")
  say "  FAILED: $report"
  stop_targets "$target"
}

# ---------------------------------------------------------------- results


# stat_of SECTION TARGET [median|min|max|runs]: one statistic of a target's metric.
stat_of() {
  local v m lo hi
  read -r -a v <<<"${VALUES[$1:$2]:-}"
  read -r m lo hi <<<"$(stats "${v[@]}")"
  case ${3:-median} in median) echo "$m" ;; min) echo "$lo" ;; max) echo "$hi" ;; runs) echo "${#v[@]}" ;; esac
}

# median_of ARRAY-NAME KEY SCALE FORMAT: the median of the CPU list KEY in ARRAY-NAME, x SCALE.
median_of() {
  local -n arr=$1
  local v
  read -r -a v <<<"${arr[$2]:-}"
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v s="$3" -v f="$4" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf f "\n", m * s }'
}

gib() { awk -v b="$(to_bytes "$BULK_BYTES")" 'BEGIN {print 1073741824 / b}'; }
bulk_cpu() { median_of CPU "bulk:$1" "$(gib)" %.2f; }      # target CPU s/GiB
bulk_ccpu() { median_of CCPU "bulk:$1" "$(gib)" %.2f; }    # client hop CPU s/GiB
hs_cpu() { median_of CPU "hs:$1" 1000000 %.0f; }           # target CPU µs/connection
hs_ccpu() { median_of CCPU "hs:$1" 1000000 %.0f; }         # s_time user CPU µs/connection

# ccpu_range: the lowest and highest client hop CPU s/GiB over the bulk targets ("1.10 to 1.25").
ccpu_range() {
  local t
  for t in "${BULK_TARGETS[@]}"; do bulk_ccpu "$t"; done | grep -v '^-$' | sort -g |
    awk 'NR == 1 {lo = $1} {hi = $1} END { if (NR == 0) print "n/a"; else if (lo == hi) print lo; else print lo " to " hi }'
}


# capacity µs: connections per second one core would do at that CPU cost per connection.
capacity() { awk -v u="$1" 'BEGIN { if (u == "-" || u + 0 == 0) print "n/a"; else printf "%.0f\n", 1000000 / u }'; }

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
  local target
  echo "| Target | MB/s median | min | max | target CPU s/GiB | client hop CPU s/GiB | negotiated | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|"
  for target in "${BULK_TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of bulk "$target") | $(stat_of bulk "$target" min)" \
      "| $(stat_of bulk "$target" max) | $(bulk_cpu "$target") | $(bulk_ccpu "$target")" \
      "| ${NEG[$target]:--} | $(stat_of bulk "$target" runs)/$BULK_REPS |"
  done
}

hs_table() {
  local target
  echo "| Target | conns/s median | min | max | vs direct | target CPU µs/conn | s_time user CPU µs/conn | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for target in "${HS_TARGETS[@]}"; do
    echo "| ${LABEL[$target]} | $(stat_of hs "$target") | $(stat_of hs "$target" min)" \
      "| $(stat_of hs "$target" max) | $(pct "$(stat_of hs "$target")" "$(stat_of hs direct)")" \
      "| $(hs_cpu "$target") | $(hs_ccpu "$target") | $(stat_of hs "$target" runs)/$HS_REPS |"
  done
}

# reading: a few sentences computed from the results, so that they stay true on a rerun.
bullet() { echo "- $*"; }
med() { stat_of "$1" "$2"; }

reading() {
  if [[ -n ${VALUES[bulk:netproxy]:-} ]]; then
    bullet "Bulk: one TLS stream terminated by netproxy ran at $(med bulk netproxy) MB/s, against" \
      "$(med bulk stunnel) MB/s through stunnel and $(med bulk haproxy) MB/s through HAProxy:" \
      "netproxy's median is $(compare bulk netproxy stunnel) stunnel's and" \
      "$(compare bulk netproxy haproxy) HAProxy's." \
      "Per GiB the terminating process used $(bulk_cpu netproxy) CPU seconds in netproxy," \
      "$(bulk_cpu stunnel) in stunnel and $(bulk_cpu haproxy) in HAProxy, while the stunnel" \
      "client hop, doing the same decryption for every target, used $(ccpu_range) s/GiB." \
      "Four busy processes (np-peer source, the target, the client hop, np-peer client) share" \
      "$(nproc) cores, so each throughput also moves with the other three; the target's CPU per" \
      "GiB is the cleaner measure of what each implementation costs."
  else
    bullet "Bulk: netproxy produced no result (see the problems below); stunnel ran at" \
      "$(med bulk stunnel) MB/s ($(bulk_cpu stunnel) CPU s/GiB) and HAProxy at $(med bulk haproxy)" \
      "MB/s ($(bulk_cpu haproxy) CPU s/GiB)."
  fi
  if [[ -n ${VALUES[hs:netproxy]:-} ]]; then
    bullet "Handshakes: one s_time client, one connection at a time, got $(med hs netproxy) conns/s" \
      "through netproxy, $(med hs stunnel) through stunnel, $(med hs haproxy) through HAProxy and" \
      "$(med hs direct) from openssl s_server directly (netproxy: $(compare hs netproxy haproxy)" \
      "HAProxy's rate, $(compare hs netproxy stunnel) stunnel's). The client is sequential and its" \
      "own handshake work ($(hs_ccpu netproxy) µs of user CPU per connection) is a large part of" \
      "each round trip, so these rates are latencies more than capacities."
    bullet "The capacity figure is the target's CPU per connection (handshake, backend connect," \
      "request, reply, close): netproxy $(hs_cpu netproxy) µs, stunnel $(hs_cpu stunnel) µs," \
      "HAProxy $(hs_cpu haproxy) µs, s_server $(hs_cpu direct) µs without any backend. On one core" \
      "that is about $(capacity "$(hs_cpu netproxy)") connections/s for netproxy against" \
      "$(capacity "$(hs_cpu haproxy)") for HAProxy (netproxy spends" \
      "$(ratio "$(hs_cpu netproxy)" "$(hs_cpu haproxy)") HAProxy's CPU per connection) and" \
      "$(capacity "$(hs_cpu stunnel)") for stunnel, which also starts a thread per connection."
  else
    bullet "Handshakes: netproxy produced no result (see the problems below); stunnel did" \
      "$(med hs stunnel) conns/s ($(hs_cpu stunnel) µs CPU/conn), HAProxy $(med hs haproxy)" \
      "($(hs_cpu haproxy) µs) and openssl s_server directly $(med hs direct) ($(hs_cpu direct) µs)."
  fi
  bullet "$(negotiated_sentence)"
}

# negotiated_sentence: whether every target negotiated the same and ran on the same libssl.
negotiated_sentence() {
  local t seen="" libs
  for t in "${HS_TARGETS[@]}"; do
    [[ -n ${NEG[$t]:-} && ${NEG[$t]} != - ]] || continue
    [[ $seen == *"|${NEG[$t]}|"* ]] || seen+="|${NEG[$t]}|"
  done
  libs=$( {
    haproxy -vv 2>&1 | sed -n 's/^Running on OpenSSL version : OpenSSL \([^ ]*\).*/\1/p'
    "$STUNNEL" -version 2>&1 | sed -n 's/.*Running  *with OpenSSL \([^ ]*\).*/\1/p'
    openssl version | sed -n 's/.*Library: OpenSSL \([^ ]*\).*/\1/p'
  } | sort -u | tr '\n' ' ' | sed 's/ $//')
  if [[ $seen == "|"*"|" && $seen != *"||"* ]]; then
    printf 'Every target negotiated %s' "${seen//|/}"
  else
    printf 'The targets did not all negotiate the same (see the negotiated column)'
  fi
  if [[ -n $libs && $libs != *" "* ]]; then
    printf ", and stunnel, HAProxy and the openssl tools all ran on OpenSSL %s (netproxy links %s)," "$libs" "$(linked_ssl "$NETPROXY")"
    printf ' so the differences come from what each proxy does around the same library.\n'
  else
    printf '; the OpenSSL versions differ (%s), see above.\n' "$libs"
  fi
}

machine_info() {
  local cpu mem
  cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "- CPUs: $(nproc) ($cpu); memory: $mem; kernel: Linux $(uname -r)"
  echo "- netproxy: $("$NETPROXY" --version 2>&1 | head -1), binary built $(date -u -r "$NETPROXY" '+%Y-%m-%d %H:%M UTC')," \
    "tree at git $(git_rev); linked with $(linked_ssl "$NETPROXY")"
  echo "- stunnel: $("$STUNNEL" -version 2>&1 | awk '/^stunnel [0-9]/ {print $2; exit}'), running with" \
    "$("$STUNNEL" -version 2>&1 | sed -n 's/.*Running  *with //p' | head -1)"
  echo "- HAProxy: $(haproxy -v 2>&1 | head -1 | sed 's/ - https.*//; s/^HAProxy version //'), running on" \
    "$(haproxy -vv 2>&1 | sed -n 's/^Running on OpenSSL version : //p' | head -1)"
  echo "- OpenSSL (s_time, s_server, s_client): $(openssl version)"
}

linked_ssl() {
  local lib
  lib=$(ldd "$1" 2>/dev/null | awk '/libssl/ {print $3; exit}')
  if [[ -n $lib ]]; then basename "$(readlink -f "$lib")"; else echo "an unknown libssl"; fi
}


np_cmd_note() { ((${#NP_WORKERS[@]})) && echo "${NP_WORKERS[*]} "; true; }
np_workers_note() {
  ((${#NP_WORKERS[@]})) && echo " (\`-w 1\`: one event loop, like HAProxy's \`nbthread 1\`)"
  true
}

section() {
  local mode=""
  ((QUICK)) && mode=" (a --quick smoke run: 1 repetition, small sizes)"
  cat <<EOF
$SECTION_TITLE

netproxy terminating TLS (\`from = ssl\`, \`to = tcp\`) against stunnel4 and HAProxy doing the
same job on the same machine. This section is written by \`bench/tls.sh\`, separately from the
rest of the file; rerun it to refresh the section.

### How to run

\`\`\`sh
bash bench/tls.sh            # full run, about 2 minutes; replaces this section
bash bench/tls.sh --quick    # 1 repetition, smaller sizes; leaves this file alone (--write writes it)
\`\`\`

### Method

Run on $RUN_DATE$mode.

$(machine_info)
- Load average (1/5/15 min) before / after the run: $LOAD_BEFORE / $LOAD_AFTER

Every run makes a throw-away self-signed EC P-256 certificate (\`openssl req -x509 -newkey ec
-pkeyopt ec_paramgen_curve:P-256\`, CN and subjectAltName localhost / 127.0.0.1) in a temporary
folder. The targets, each on 127.0.0.1 in front of a plain np-peer server, all use it:

- **netproxy**: \`netproxy -q $(np_cmd_note)tls.lua\` with
  \`proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = P, cert = CERT, key = KEY },
  to = { type = "tcp", host = "127.0.0.1", port = BACKEND } }\`. One process$(np_workers_note); TLS
  always goes through its copying relay (no kTLS on this kernel, see docs/tls.md).
- **stunnel4**: \`stunnel tls.conf\` with \`foreground = yes\`, \`pid =\`, \`debug = warning\` and a
  \`[tls]\` service with \`accept\`, \`connect\`, \`cert\` and \`key\`. One thread per connection.
  \`debug = warning\` because stunnel's default level (notice) logs four lines per connection: in a
  trial run that took its CPU per bare handshake from about 0.7 ms to 3.3 ms. netproxy runs with \`-q\`
  and HAProxy logs nothing.
- **HAProxy**: \`haproxy -db -f tls.cfg\` with \`nbthread 1\`, \`maxconn 4096\`, \`mode tcp\`,
  \`timeout connect 5s\`, \`timeout client/server 60s\` and \`bind 127.0.0.1:P ssl crt combined.pem\`
  (certificate and key in one file).
- **direct** (handshakes only): \`openssl s_server -quiet -WWW -accept 127.0.0.1:P -cert CERT -key KEY\`,
  answering from its own folder: no proxy and no backend. The bulk test has no direct row: no TLS
  server can send np-peer's verified byte stream (np-peer speaks no TLS), and the plain-TCP
  direct figure is in the [TCP relaying](#tcp-relaying) section.

Before measuring, one \`openssl s_client -brief\` connection to each target checks that a request
gets its reply through and records what was negotiated (TLS 1.3 with the library defaults; no
cipher or group was configured anywhere).

1. **Bulk single stream**: np-peer cannot speak TLS, so a TLS client hop sits in front of each
   target, the same program and config for all of them: **stunnel in client mode** (\`client = yes\`,
   no certificate check, one instance per target). The path is
   \`np-peer client\` → stunnel client (decrypts) → target (terminates
   TLS, encrypts) → \`np-peer source --bytes $BULK_BYTES\`. \`np-peer client --expect source --bytes $BULK_BYTES\`
   reads and verifies every byte over one connection; MB/s is np-peer's figure (1 MB = 2^20 bytes).
   $BULK_REPS runs per target, interleaved. "Target CPU" is the terminating process's user + system
   time during the run (all its threads, from /proc/PID/stat, 10 ms ticks) per GiB, median;
   "client hop CPU" the same for the stunnel client.
2. **Full handshakes**: \`openssl s_time -connect 127.0.0.1:P -new -www /hs -time $HS_TIME\`, $HS_REPS runs per
   target, interleaved. \`-new\` makes every connection a full handshake (no resumption). s_time is
   one process making one connection at a time: TCP connect, TLS 1.3 handshake, \`GET /hs HTTP/1.0\`,
   read until the server closes, close. Behind each proxy, \`np-peer reply --close\` answers the same
   $REPLY_BYTES bytes that s_server -WWW sends for its file, and a run counts only when s_time read exactly
   $REPLY_BYTES bytes on every connection. conns/s is the connection count over our own wall clock
   around s_time (its "real seconds" are whole seconds). "Target CPU" is the terminating process's
   CPU time per connection; "s_time user CPU" is the client's user time per connection, as s_time reports it.
   Why a request on every connection: with bare handshakes (no \`-www\`) the client closes right
   after its handshake, and in a trial run HAProxy then never opened its backend connection
   (1 connect() in 1124 handshakes) while netproxy and stunnel opened one per handshake, so the
   targets did unequal work.

### Results

#### Bulk single-stream throughput through TLS ($BULK_BYTES over one connection, $BULK_REPS runs)

$(bulk_table)

#### Full TLS handshakes, one request each ($HS_REPS runs of ${HS_TIME} s, one connection at a time)

$(hs_table)

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
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-tls-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_cert

  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  say "netproxy TLS benchmark$( ((QUICK)) && echo ' (--quick)'): ${HS_TARGETS[*]}"

  local target rep
  say "handshakes: openssl s_time -new -www /hs for ${HS_TIME}s, $HS_REPS runs per target"
  start_peer reply --text "$REPLY_TEXT" --close
  for target in "${HS_TARGETS[@]}"; do
    start_target hs "$target" "$PEER_PORT"
    [[ -n ${PORT[$target]} ]] && { negotiate "$target" || stop_targets "$target"; }
  done
  for ((rep = 1; rep <= HS_REPS; rep++)); do
    for target in "${HS_TARGETS[@]}"; do measure_hs "$target" "$rep"; done
  done
  stop_targets "${HS_TARGETS[@]}"
  stop_pid "$PEER_PID"

  say "bulk: $BULK_BYTES over one TLS connection (stunnel client hop), $BULK_REPS runs per target"
  start_peer source --bytes "$BULK_BYTES"
  for target in "${BULK_TARGETS[@]}"; do start_target bulk "$target" "$PEER_PORT"; done
  for ((rep = 1; rep <= BULK_REPS; rep++)); do
    for target in "${BULK_TARGETS[@]}"; do measure_bulk "$target" "$rep"; done
  done
  stop_targets "${BULK_TARGETS[@]}"
  stop_pid "$PEER_PID"
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

  printf '\n### Bulk single-stream throughput through TLS (%s over one connection, %d runs)\n\n' \
    "$BULK_BYTES" "$BULK_REPS"
  bulk_table
  printf '\n### Full TLS handshakes, one request each (%d runs of %d s)\n\n' "$HS_REPS" "$HS_TIME"
  hs_table
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
