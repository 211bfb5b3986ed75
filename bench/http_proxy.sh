#!/usr/bin/env bash
# bench/http_proxy.sh: the forward HTTP proxy (from = connect serving plain http:// requests)
# against tinyproxy and squid, in the same run; and against no proxy at all (the ceiling) and
# netproxy's plain TCP relay in front of the origin (the splice relay: the floor of a proxy's
# cost per byte, the reference for "1 MiB bodies at splice speed").
#
# The origin is nginx (one worker) serving /small (a 100-byte file) and /big (1 MiB, sendfile);
# the load is wrk sending absolute-URI requests (`GET http://127.0.0.1:ORIGIN/small HTTP/1.1`,
# as curl -x does for an http:// URL) to each proxy, four ways:
#   small, keep-alive on:  many requests per client connection;
#   small, keep-alive off: "Connection: close" on every request (a connection per request);
#   1 MiB, keep-alive on and off, the same way.
# Per row: requests per second (median, min, max of REPS interleaved runs), the proxy's CPU time
# per request (user + system of its whole process, threads and children included), and for the
# 1 MiB rows MB/s through the proxy; and how busy the proxy kept its core (requests/s x CPU per
# request): a proxy well under 100% was held back by something else (the load core, or other
# processes on the machine), and its CPU per request is then the number to compare. Logging per request is off everywhere (netproxy -q,
# tinyproxy LogLevel Critical, squid access_log none). Each proxy runs as one process pinned to
# CPU 0 (netproxy -w 1; tinyproxy, its threads; squid -N, workers 1, no cache); wrk and nginx run
# pinned to CPU 1 (taskset).
#
# How to run (from the repository root, after scripts/build):
#   bash bench/http_proxy.sh             # full run (~3 min): prints the table and replaces the
#                                        # "## HTTP proxy" section of docs/benchmarks.md
#   bash bench/http_proxy.sh --quick     # smoke run: 1 repetition of 2 s, doc untouched
#   bash bench/http_proxy.sh --quick --write
# Needs: bash, awk, ss (iproute2), taskset (util-linux), wrk, nginx, tinyproxy, squid
# (apt-get install -y wrk nginx tinyproxy squid). NETPROXY=... overrides the binary. Everything
# listens on 127.0.0.1; every process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
SQUID=${SQUID:-$(command -v squid || echo /usr/sbin/squid)}
TINYPROXY=${TINYPROXY:-$(command -v tinyproxy || echo /usr/bin/tinyproxy)}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## HTTP proxy"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

PROXIES=(direct relay netproxy tinyproxy squid)
MODES=(small:keepalive small:close big:keepalive big:close)
declare -A LABEL=([direct]="no proxy (wrk to nginx)" [relay]="netproxy, tcp relay (splice), -w 1"
                  [netproxy]="netproxy, from = connect, -w 1"
                  [tinyproxy]="tinyproxy" [squid]="squid, no cache, -N")
declare -A MODE_LABEL=([small:keepalive]="100 B, keep-alive" [small:close]="100 B, Connection: close"
                       [big:keepalive]="1 MiB, keep-alive" [big:close]="1 MiB, Connection: close")
declare -A PORT SPID VALUES CPU ERRORS
PIDS=()
PROBLEMS=()
NOTES=()
ORIGIN_PORT=""

parse_args() {
  bench_options "$@"
  if ((QUICK)); then DURATION=2 REPS=1 WRK_CONNS=16; else DURATION=5 REPS=3 WRK_CONNS=32; WRITE=1; fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
  for tool in awk ss taskset wrk; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y iproute2 util-linux wrk)"
  done
  [[ -x $NGINX ]] || die "nginx not found (apt-get install -y nginx)"
  [[ -x $SQUID ]] || die "squid not found (apt-get install -y squid)"
  [[ -x $TINYPROXY ]] || die "tinyproxy not found (apt-get install -y tinyproxy)"
  if (($(nproc) >= 2)); then
    PIN_PROXY=(taskset -c 0) PIN_LOAD=(taskset -c 1)
  else
    PIN_PROXY=() PIN_LOAD=()
    NOTES+=("one CPU: nothing pinned; wrk, nginx and the proxy share it.")
  fi
  raise_fd_limit
}

# started NAME PID PORT LOG: records a server once it listens, or dies with its log.
started() {
  SPID[$1]=$2
  PIDS+=("$2")
  PORT[$1]=$3
  wait_listen "$3" "$2" || die "$1 did not start: $(tail -5 "$4" 2>/dev/null | tr '\n' ' ')"
}

start_origin() {
  free_port
  ORIGIN_PORT=$FREE_PORT
  mkdir -p "$WORK/nginx/www"
  head -c 99 /dev/zero | tr '\0' 'x' >"$WORK/nginx/www/small"
  echo >>"$WORK/nginx/www/small"
  head -c $((1 << 20)) /dev/urandom >"$WORK/nginx/www/big"
  chmod -R a+rX "$WORK/nginx/www"
  cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$FREE_PORT; root $WORK/nginx/www; }
}
CONF
  "${PIN_LOAD[@]}" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
  started origin $! "$FREE_PORT" "$WORK/nginx/error.log"
  PORT[direct]=$FREE_PORT SPID[direct]=${SPID[origin]}
}

start_netproxy() {
  free_port
  cat >"$WORK/netproxy.lua" <<CONF
proxy { name = "http", from = { type = "connect", host = "127.0.0.1", port = $FREE_PORT,
                                allow = { "127.0.0.1:$ORIGIN_PORT" } } }
CONF
  "${PIN_PROXY[@]}" "$NETPROXY" -w 1 -q "$WORK/netproxy.lua" >"$WORK/netproxy.log" 2>&1 &
  started netproxy $! "$FREE_PORT" "$WORK/netproxy.log"
}

start_relay() {
  free_port
  cat >"$WORK/relay.lua" <<CONF
proxy { name = "relay", from = { type = "tcp", host = "127.0.0.1", port = $FREE_PORT },
        to = { type = "tcp", host = "127.0.0.1", port = $ORIGIN_PORT } }
CONF
  "${PIN_PROXY[@]}" "$NETPROXY" -w 1 -q "$WORK/relay.lua" >"$WORK/relay.log" 2>&1 &
  started relay $! "$FREE_PORT" "$WORK/relay.log"
}

start_tinyproxy() {
  free_port
  cat >"$WORK/tinyproxy.conf" <<CONF
Port $FREE_PORT
Listen 127.0.0.1
Timeout 30
MaxClients 1000
Allow 127.0.0.1
LogLevel Critical
DisableViaHeader Yes
CONF
  "${PIN_PROXY[@]}" "$TINYPROXY" -d -c "$WORK/tinyproxy.conf" >"$WORK/tinyproxy.log" 2>&1 &
  started tinyproxy $! "$FREE_PORT" "$WORK/tinyproxy.log"
}

start_squid() {
  free_port
  mkdir -p "$WORK/squid"
  chmod 777 "$WORK/squid"        # squid started as root runs as its own user (proxy)
  cat >"$WORK/squid/squid.conf" <<CONF
http_port 127.0.0.1:$FREE_PORT
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid/squid.pid
coredump_dir $WORK/squid
workers 1
via off
forwarded_for delete
shutdown_lifetime 0 seconds
max_filedescriptors 16384
CONF
  "${PIN_PROXY[@]}" "$SQUID" -N -f "$WORK/squid/squid.conf" >"$WORK/squid.log" 2>&1 &
  started squid $! "$FREE_PORT" "$WORK/squid/cache.log"
}

# The wrk script: absolute-URI requests to a proxy (BENCH_URL), origin-form ones to nginx.
write_wrk_script() {
  cat >"$WORK/absolute.lua" <<'LUA'
local url = os.getenv("BENCH_URL")
wrk.path = url
wrk.headers["Host"] = url:match("^http://([^/]+)")
LUA
}

# run_wrk PROXY MODE: one run; appends requests/s and the proxy's CPU µs per request.
run_wrk() {
  local proxy=$1 mode=$2 size=${2%%:*} out rps before after reqs errors args=()
  [[ ${mode#*:} == close ]] && args+=(-H "Connection: close")
  [[ $proxy != direct && $proxy != relay ]] && args+=(-s "$WORK/absolute.lua")
  before=$(cpu_seconds "${SPID[$proxy]}")
  out=$(BENCH_URL="http://127.0.0.1:$ORIGIN_PORT/$size" "${PIN_LOAD[@]}" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" \
        "${args[@]}" "http://127.0.0.1:${PORT[$proxy]}/$size" 2>&1) || true
  after=$(cpu_seconds "${SPID[$proxy]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  if [[ -z $rps || -z $reqs || $reqs == 0 ]]; then
    PROBLEMS+=("$proxy ${MODE_LABEL[$mode]}: wrk gave no result: $(tr '\n' ' ' <<<"$out")")
    return
  fi
  # one note per row, every run's socket errors in it
  [[ -n $errors ]] && ERRORS[$proxy:$mode]+="$(tr -s ' \n' ' ' <<<"$errors" | sed 's/^ *Socket errors: //; s/ *$//'); "
  VALUES[$proxy:$mode]+="$rps "
  CPU[$proxy:$mode]+="$(awk -v a="$before" -v b="$after" -v n="$reqs" 'BEGIN {printf "%.1f", 1e6 * (b - a) / n}') "
  say "  $proxy, ${MODE_LABEL[$mode]}: $rps requests/s"
}

table() {
  local mode proxy s smin smax c mbs busy
  echo "| proxy | requests | requests/s (median) | min | max | proxy CPU µs per request | proxy core busy | MB/s |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for mode in "${MODES[@]}"; do
    for proxy in "${PROXIES[@]}"; do
      # shellcheck disable=SC2086
      read -r s smin smax <<<"$(stats ${VALUES[$proxy:$mode]:-})"
      # shellcheck disable=SC2086
      read -r c _ _ <<<"$(stats ${CPU[$proxy:$mode]:-})"
      busy=$(awk -v r="$s" -v c="$c" 'BEGIN { if (r == "-" || c == "-") print "-"; else printf "%.0f%%", r * c / 1e4 }')
      [[ $proxy == direct ]] && c="(nginx's: not a proxy)" busy=""
      mbs=""
      [[ $mode == big:* && $s != - ]] && mbs=$(awk -v r="$s" 'BEGIN {printf "%.0f", r * 1048576 / 1e6}')
      echo "| ${LABEL[$proxy]} | ${MODE_LABEL[$mode]} | $s | $smin | $smax | $c | $busy | $mbs |"
    done
  done
}

# For each mode: netproxy's rate and CPU against each other proxy's.
ratio_lines() {
  local mode other n nc x xc
  for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    read -r n _ _ <<<"$(stats ${VALUES[netproxy:$mode]:-})"
    # shellcheck disable=SC2086
    read -r nc _ _ <<<"$(stats ${CPU[netproxy:$mode]:-})"
    local line="- ${MODE_LABEL[$mode]}: netproxy"
    for other in tinyproxy squid; do
      # shellcheck disable=SC2086
      read -r x _ _ <<<"$(stats ${VALUES[$other:$mode]:-})"
      # shellcheck disable=SC2086
      read -r xc _ _ <<<"$(stats ${CPU[$other:$mode]:-})"
      line+=" $(ratio "$n" "$x") ${other}'s requests/s at $(ratio "$nc" "$xc") its CPU per request;"
    done
    echo "${line%;}."
  done
  for mode in big:keepalive big:close; do
    # shellcheck disable=SC2086
    read -r n _ _ <<<"$(stats ${VALUES[netproxy:$mode]:-})"
    # shellcheck disable=SC2086
    read -r x _ _ <<<"$(stats ${VALUES[relay:$mode]:-})"
    # shellcheck disable=SC2086
    read -r nc _ _ <<<"$(stats ${CPU[netproxy:$mode]:-})"
    # shellcheck disable=SC2086
    read -r xc _ _ <<<"$(stats ${CPU[relay:$mode]:-})"
    echo "- ${MODE_LABEL[$mode]} against netproxy's splice relay carrying the same response: the forwarder"
    echo "  at $(ratio "$n" "$x") its MB/s and $(ratio "$nc" "$xc") its CPU per response."
  done
}

section() {
  local note stale mode proxy
  echo "$SECTION_TITLE"
  echo
  echo "The forward HTTP proxy (\`from = { type = \"connect\" }\` serving plain \`http://\` URLs as"
  echo "absolute-URI requests) against tinyproxy and squid, and no proxy as the ceiling."
  echo "\`bench/http_proxy.sh\`; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)),"
  echo "build $(git_rev); $("$TINYPROXY" -v 2>&1 | head -1), $("$SQUID" -v | head -1), $("$NGINX" -v 2>&1 | head -1) as the origin."
  echo "Load average before and after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "- method: wrk -t1 -c$WRK_CONNS for ${DURATION} s per run, $REPS interleaved runs per row (every row"
  echo "  of a round, then the next round); \`Connection: close\` rows make a client connection (and an"
  echo "  origin connection) per request"
  echo "- pinning: the proxy (one process) on CPU 0; wrk and the origin (nginx, one worker) on CPU 1"
  echo "- no per-request log anywhere (netproxy -q, tinyproxy LogLevel Critical, squid access_log none)"
  echo "- runs are short and few, and the load average above says what else ran beside them: rows"
  echo "  move between runs (see each row's min and max); compare rows of one mode within this run"
  echo
  table
  echo
  ratio_lines
  echo
  echo "Reading the numbers:"
  echo
  echo "- \"proxy core busy\" is requests/s x CPU per request: a proxy far below 100% was not the"
  echo "  bottleneck (the load core, or the other processes of the shared machine, were), so its"
  echo "  requests/s says less than its CPU per request, the cost the proxy itself adds."
  echo "- tinyproxy closes the client's connection after every response (its \"read\" socket errors in"
  echo "  wrk's report below are those closes): its keep-alive rows are a connection per request too."
  echo "- netproxy's forwarder moves each body in C with \`sock:splice_to\` (splice(2) from socket to"
  echo "  socket through a pipe: the bytes enter neither Lua nor user space; a TLS side is copied in C);"
  echo "  only the heads (and chunk size lines) go through Lua. The relay row (the same binary relaying"
  echo "  TCP to the origin, splice for bulk) is what \"splice speed\" means here: what is left between"
  echo "  the two is the forwarder's per-request work (the head parsed and rewritten in Lua)."
  stale=$(stale_binary)
  [[ -n $stale ]] && echo "- note: $stale"
  for note in "${NOTES[@]}"; do echo "- note: $note"; done
  for mode in "${MODES[@]}"; do
    for proxy in "${PROXIES[@]}"; do
      [[ -n ${ERRORS[$proxy:$mode]:-} ]] && echo "- note: ${LABEL[$proxy]}, ${MODE_LABEL[$mode]}: wrk's socket errors per run: ${ERRORS[$proxy:$mode]%; }"
    done
  done
  for note in "${PROBLEMS[@]}"; do echo "- problem: $note"; done
}

main() {
  parse_args "$@"
  check_tools
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-http-proxy.XXXXXX")
  chmod 755 "$WORK"
  trap cleanup EXIT
  write_wrk_script
  start_origin
  start_relay
  start_netproxy
  start_tinyproxy
  start_squid
  local proxy rep mode
  for proxy in netproxy tinyproxy squid; do   # each serves before any measurement
    curl -sf -x "http://127.0.0.1:${PORT[$proxy]}" "http://127.0.0.1:$ORIGIN_PORT/small" >/dev/null \
      || die "$proxy does not forward http://127.0.0.1:$ORIGIN_PORT/small"
  done
  for ((rep = 1; rep <= REPS; rep++)); do
    say "round $rep of $REPS"
    for mode in "${MODES[@]}"; do
      for proxy in "${PROXIES[@]}"; do run_wrk "$proxy" "$mode"; done
    done
  done
  doc_emit
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
