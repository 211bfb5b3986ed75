#!/usr/bin/env bash
# bench/services.sh: requests per second of a Lua service (examples/http-status.lua, GET
# /health) against nginx answering the same tiny response (`return 200` in an http server
# block), in the same run.
#
# Both servers run as one serving process pinned to CPU 0 (netproxy -w 1; nginx with
# worker_processes 1); wrk, the load, runs pinned to CPU 1 (taskset), with WRK_CONNS
# connections for DURATION seconds, two ways:
#   keep-alive on:  many requests per connection (HTTP/1.1's default);
#   keep-alive off: "Connection: close" on every request, so one connection per request.
# Logging per request is off on both (netproxy -q: warnings only; nginx access_log off), so
# the rows compare the serving, not the log writing. Repetitions are interleaved (one run of
# every row, then the next round); median, min and max of REPS runs, and the server's CPU
# time per 1,000 requests.
#
# How to run (from the repository root, after scripts/build):
#   bash bench/services.sh             # full run (~1 min): prints the table and replaces the
#                                      # "## Services" section of docs/benchmarks.md
#   bash bench/services.sh --quick     # smoke run: 1 repetition of 2 s, doc untouched
#   bash bench/services.sh --quick --write
# Needs: bash, awk, ss (iproute2), taskset (util-linux), wrk, nginx
# (apt-get install -y wrk nginx-light). NETPROXY=... NGINX=... override the binaries.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## Services"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

SERVERS=(netproxy nginx)
MODES=(keepalive close)
declare -A LABEL=([netproxy]="netproxy, examples/http-status.lua (Lua service)" [nginx]="nginx, return 200")
declare -A MODE_LABEL=([keepalive]="keep-alive on" [close]="keep-alive off")
declare -A PORT SPID VALUES CPU
PIDS=()
PROBLEMS=()
NOTES=()


parse_args() {
  bench_options "$@"
  if ((QUICK)); then DURATION=2 REPS=1 WRK_CONNS=20; else DURATION=8 REPS=3 WRK_CONNS=50; WRITE=1; fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
  for tool in awk ss taskset wrk; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y iproute2 util-linux wrk)"
  done
  [[ -x $NGINX ]] || die "nginx not found (apt-get install -y nginx-light)"
  if (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
  else
    PIN_SERVER=() PIN_LOAD=()
    NOTES+=("one CPU: nothing pinned; wrk and the server share it.")
  fi
  ulimit -n 20000 2>/dev/null || true
}

# cpu_ticks PID: user + system ticks of PID and of its live children (nginx's worker).
cpu_ticks() {
  local pid stat total=0
  for pid in "$1" $(children "$1"); do
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    total=$(awk -v t="$total" '{print t + $12 + $13}' <<<"${stat##*) }")
  done
  echo "$total"
}

start_netproxy() {
  free_port
  PORT[netproxy]=$FREE_PORT
  sed "s/port = 8080/port = $FREE_PORT/" "$ROOT/examples/http-status.lua" >"$WORK/http-status.lua"
  "${PIN_SERVER[@]}" "$NETPROXY" -w 1 -q "$WORK/http-status.lua" >"$WORK/netproxy.log" 2>&1 &
  SPID[netproxy]=$!
  PIDS+=("${SPID[netproxy]}")
  wait_listen "$FREE_PORT" "${SPID[netproxy]}" || die "netproxy did not start: $(tail -5 "$WORK/netproxy.log")"
}

start_nginx() {
  free_port
  PORT[nginx]=$FREE_PORT
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$FREE_PORT;
    location = /health { default_type text/plain; return 200 "ok\n"; }
  }
}
CONF
  "${PIN_SERVER[@]}" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
  SPID[nginx]=$!
  PIDS+=("${SPID[nginx]}")
  wait_listen "$FREE_PORT" "${SPID[nginx]}" || die "nginx did not start: $(tail -5 "$WORK/nginx.log" "$WORK/nginx/error.log")"
}

# run_wrk SERVER MODE: one run; appends requests/s and CPU ms per 1,000 requests.
run_wrk() {
  local server=$1 mode=$2 out rps before after reqs errors header=()
  [[ $mode == close ]] && header=(-H "Connection: close")
  before=$(cpu_ticks "${SPID[$server]}")
  out=$("${PIN_LOAD[@]}" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" "${header[@]}" \
        "http://127.0.0.1:${PORT[$server]}/health" 2>&1) || true
  after=$(cpu_ticks "${SPID[$server]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  if [[ -z $rps || -z $reqs || $reqs == 0 ]]; then
    PROBLEMS+=("$server $mode: wrk gave no result: $(tr '\n' ' ' <<<"$out")")
    return
  fi
  [[ -n $errors ]] && NOTES+=("$server, ${MODE_LABEL[$mode]}: wrk reported: $(tr '\n' ' ' <<<"$errors")")
  VALUES[$server:$mode]+="$rps "
  CPU[$server:$mode]+="$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.3f", 1e6 * t / hz / n}') "
  say "  $server, ${MODE_LABEL[$mode]}: $rps requests/s"
}

table() {
  local mode server s c
  echo "| server | keep-alive | requests/s (median) | min | max | server CPU ms per 1,000 requests |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for mode in "${MODES[@]}"; do
    for server in "${SERVERS[@]}"; do
      # shellcheck disable=SC2086
      read -r s smin smax <<<"$(stats ${VALUES[$server:$mode]:-})"
      # shellcheck disable=SC2086
      read -r c _ _ <<<"$(stats ${CPU[$server:$mode]:-})"
      echo "| ${LABEL[$server]} | ${MODE_LABEL[$mode]#keep-alive } | $s | $smin | $smax | $c |"
    done
  done
}

ratio_line() {
  local mode n x
  for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    read -r n _ _ <<<"$(stats ${VALUES[netproxy:$mode]:-})"
    # shellcheck disable=SC2086
    read -r x _ _ <<<"$(stats ${VALUES[nginx:$mode]:-})"
    echo "- ${MODE_LABEL[$mode]}: netproxy serves $(pct "$n" "$x") of nginx's requests per second."
  done
}

section() {
  local note
  echo "$SECTION_TITLE"
  echo
  echo "A Lua service (\`examples/http-status.lua\`, a straight-line \`serve\` function reading the"
  echo "request line and headers with \`client:read(\"*l\")\`) answering \`GET /health\`, against nginx"
  echo "answering the same request with \`return 200\`. \`bench/services.sh\`; $(date -u +%Y-%m-%d),"
  echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), build $(git_rev)."
  echo
  echo "- method: wrk -t1 -c$WRK_CONNS for ${DURATION} s per run, $REPS interleaved runs per row; keep-alive off"
  echo "  is \`Connection: close\` on every request (one connection per request)"
  echo "- pinning: the server (netproxy -w 1, nginx worker_processes 1) on CPU 0, wrk on CPU 1"
  echo "- no per-request log on either (netproxy -q, nginx access_log off)"
  echo
  table
  echo
  ratio_line
  for note in "${NOTES[@]}"; do echo "- note: $note"; done
  for note in "${PROBLEMS[@]}"; do echo "- problem: $note"; done
}

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-services.XXXXXX")
  trap cleanup EXIT
  start_netproxy
  start_nginx
  # both answer before any measurement
  curl -sf "http://127.0.0.1:${PORT[netproxy]}/health" >/dev/null || die "netproxy does not answer /health"
  curl -sf "http://127.0.0.1:${PORT[nginx]}/health" >/dev/null || die "nginx does not answer /health"
  local rep mode server
  for ((rep = 1; rep <= REPS; rep++)); do
    say "round $rep of $REPS"
    for mode in "${MODES[@]}"; do
      for server in "${SERVERS[@]}"; do run_wrk "$server" "$mode"; done
    done
  done
  section >"$WORK/section.md"
  cat "$WORK/section.md"
  if ((WRITE)); then
    doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"
    say "wrote the \"$SECTION_TITLE\" section of $DOC"
  fi
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
