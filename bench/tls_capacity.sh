#!/usr/bin/env bash
# bench/tls_capacity.sh: TLS capacity (not latency) of netproxy, HAProxy and stunnel4, each
# pinned to one core (taskset -c TARGET_CPU), loaded by parallel clients on the other core.
#
#   1. Full handshakes: CLIENTS `openssl s_time -new -www /hs` processes at once for T
#      seconds (TLS 1.3, X25519, a throw-away EC P-256 certificate): every connection a full
#      handshake, one GET carried to `np-peer reply --close` behind the target (the reply, then
#      the close). Handshakes per second (the sum of the clients' counts over our wall clock),
#      the target's CPU per handshake and handshakes per CPU second (its user + system time
#      from /proc over the run).
#   2. Resumed handshakes: the same with `-reuse` (each client resumes its first session: the
#      ticket of TLS 1.3, which s_time receives with the reply). The share of resumed
#      connections is counted from s_time's marks ('r' resumed, '*' full) and reported.
#   3. Bulk: `openssl s_client` reads BULK bytes from `np-peer source` through the target,
#      one stream; MB/s and the target's CPU seconds per GiB.
# The backend and the clients share the other core: on a 2-core machine the clients are the
# bottleneck long before a target's core is full, so compare the CPU per handshake (what a
# core can do: 1e6 / µs), not the rates.
#
# Run from the repository root after scripts/build:
#   apt-get install -y haproxy stunnel4 openssl
#   bash bench/tls_capacity.sh            # ROUNDS=3, T=5 s per run, CLIENTS=4, BULK=512M; prints the table
#   T=2 BULK=128M bash bench/tls_capacity.sh
# Everything listens on 127.0.0.1; every process started is stopped by PID on exit. Results
# are printed (markdown), not written into docs/benchmarks.md: copy them there with the
# machine's conditions.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
HZ=$(getconf CLK_TCK)
T=${T:-5}
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-3}
BULK=${BULK:-512M}
TARGET_CPU=${TARGET_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
WORK=$(mktemp -d)
PIDS=()
PROBLEMS=()
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"
trap cleanup EXIT

STUNNEL=$(command -v stunnel4 || command -v stunnel) || die "stunnel not found (apt-get install -y stunnel4)"
command -v haproxy >/dev/null || die "haproxy not found (apt-get install -y haproxy)"
[[ -x $NETPROXY && -x $NP_PEER ]] || die "build first (scripts/build)"
raise_fd_limit

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || die "openssl req failed"
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"
chmod 600 "$WORK/key.pem" "$WORK/combined.pem"

PEER_PIN="taskset -c $CLIENT_CPU" start_peer reply --text 'HTTP/1.0 200 ok\r\n\r\nok\n' --close
REPLY_PORT=$PEER_PORT
PEER_PIN="taskset -c $CLIENT_CPU" start_peer source --bytes "$BULK"
SOURCE_PORT=$PEER_PORT

# launch TARGET PORT BACKEND: the target on TARGET_CPU; sets LAUNCHED_PID.
launch() {
  local pin=(taskset -c "$TARGET_CPU")
  case $1 in
  netproxy)
    printf 'proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = %d, cert = "%s", key = "%s" },\n        to = { type = "tcp", host = "127.0.0.1", port = %d } }\n' \
      "$2" "$WORK/cert.pem" "$WORK/key.pem" "$3" >"$WORK/np-$2.lua"
    "${pin[@]}" "$NETPROXY" -q -w 1 "$WORK/np-$2.lua" >>"$WORK/netproxy.log" 2>&1 &
    ;;
  haproxy)
    printf 'global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend tls\n  bind 127.0.0.1:%d ssl crt %s\n  default_backend plain\nbackend plain\n  server s1 127.0.0.1:%d\n' \
      "$2" "$WORK/combined.pem" "$3" >"$WORK/ha-$2.cfg"
    "${pin[@]}" haproxy -db -f "$WORK/ha-$2.cfg" >>"$WORK/haproxy.log" 2>&1 &
    ;;
  stunnel)
    printf 'foreground = yes\npid =\ndebug = warning\n[tls]\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\ncert = %s\nkey = %s\n' \
      "$2" "$3" "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/st-$2.conf"
    "${pin[@]}" "$STUNNEL" "$WORK/st-$2.conf" >>"$WORK/stunnel.log" 2>&1 &
    ;;
  esac
  LAUNCHED_PID=$!
  PIDS+=("$LAUNCHED_PID")
}

# up TARGET BACKEND: starts it on a free port; sets UP_PORT, UP_PID.
up() {
  free_port
  launch "$1" "$FREE_PORT" "$2"
  wait_listen "$FREE_PORT" "$LAUNCHED_PID" || die "$1 did not start: $(tail -3 "$WORK/$1.log" 2>/dev/null)"
  UP_PORT=$FREE_PORT UP_PID=$LAUNCHED_PID
}

# handshakes PORT PID MODE(-new|-reuse): prints "rate cpu_us_per_hs hs_per_cpu_s resumed%".
handshakes() {
  local port=$1 pid=$2 mode=$3 i c0 c1 t0 t1 n=0 r=0 all=0 out
  c0=$(cpu_seconds "$pid") t0=$(date +%s.%N)
  for ((i = 0; i < CLIENTS; i++)); do
    taskset -c "$CLIENT_CPU" timeout $((T + 30)) openssl s_time -connect "127.0.0.1:$port" "$mode" -www /hs \
      -time "$T" </dev/null >"$WORK/stime-$i.out" 2>&1 &
    PIDS+=($!)
  done
  for ((i = 0; i < CLIENTS; i++)); do
    wait "${PIDS[-1]}" || PROBLEMS+=("s_time $mode against port $port exited with an error")
    unset 'PIDS[-1]'
  done
  c1=$(cpu_seconds "$pid") t1=$(date +%s.%N)
  for ((i = 0; i < CLIENTS; i++)); do
    out=$WORK/stime-$i.out
    n=$((n + $(awk '/connections in .*real seconds/ {c = $1} END {print c + 0}' "$out")))
    r=$((r + $(grep -v connections "$out" | tr -cd 'r' | wc -c)))
    all=$((all + $(grep -v connections "$out" | tr -cd 'r*' | wc -c)))
  done
  awk -v n="$n" -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" -v r="$r" -v all="$all" 'BEGIN {
    cpu = c1 - c0; if (n == 0 || cpu <= 0) { print "- - - -"; exit }
    printf "%.0f %.0f %.0f %.0f\n", n / (b - a), cpu * 1e6 / n, n / cpu, all ? 100 * r / all : 0 }'
}

# bulk PORT PID: prints "MB/s cpu_s_per_GiB".
bulk() {
  local port=$1 pid=$2 c0 c1 t0 t1 bytes want
  want=$(to_bytes "$BULK")
  c0=$(cpu_seconds "$pid") t0=$(date +%s.%N)
  bytes=$(taskset -c "$CLIENT_CPU" timeout 300 openssl s_client -quiet -connect "127.0.0.1:$port" </dev/null 2>/dev/null | wc -c)
  c1=$(cpu_seconds "$pid") t1=$(date +%s.%N)
  [[ $bytes == "$want" ]] || PROBLEMS+=("bulk through port $port: $bytes bytes, want $want")
  awk -v n="$bytes" -v a="$t0" -v b="$t1" -v c="$(awk -v x="$c0" -v y="$c1" 'BEGIN {print y - x}')" 'BEGIN {
    printf "%.0f %.2f\n", n / (b - a) / 1e6, c * 1073741824 / n }'
}

# Rounds interleave the targets (one run of each, then the next round) so that the other
# engineers' load on the shared machine falls on all alike; each figure is the median.
declare -A R
for ((round = 1; round <= ROUNDS; round++)); do
  for target in netproxy haproxy stunnel; do
    up "$target" "$REPLY_PORT"
    full=$(handshakes "$UP_PORT" "$UP_PID" -new)
    resumed=$(handshakes "$UP_PORT" "$UP_PID" -reuse)
    stop_pid "$UP_PID"
    up "$target" "$SOURCE_PORT"
    bulk=$(bulk "$UP_PORT" "$UP_PID")
    stop_pid "$UP_PID"
    R[$target]+="$full $resumed $bulk"$'\n'
    say "round $round, $target: full $full | resumed $resumed | bulk $bulk"
  done
done

# median COLUMN TARGET: the median of that column over the rounds.
median() {
  awk -v c="$1" 'NF {print $c}' <<<"${R[$2]}" | sort -g |
    awk '{v[++n] = $1} END { if (!n) print "-"; else if (n % 2) print v[(n + 1) / 2]; else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

echo "| target (one pinned core) | full hs/s | CPU µs/full hs | full hs per CPU s | resumed hs/s | CPU µs/resumed hs | resumed hs per CPU s | resumed share | bulk MB/s | CPU s/GiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for target in netproxy haproxy stunnel; do
  printf '| %s |' "$target"
  for col in 1 2 3 5 6 7 8 9 10; do printf ' %s%s |' "$(median "$col" "$target")" "$([[ $col == 8 ]] && echo %)"; done
  echo
done
echo
echo "(medians of $ROUNDS rounds; $CLIENTS s_time clients, $T s per run, $BULK bulk; targets on CPU $TARGET_CPU, clients and backends on CPU $CLIENT_CPU;" \
  "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; git $(git_rev); $(openssl version))"
if ((${#PROBLEMS[@]})); then printf 'problem: %s\n' "${PROBLEMS[@]}"; exit 1; fi
