#!/usr/bin/env bash
# bench/services.sh: the same HTTP answer written as a netproxy Lua service
# (examples/http-status.lua, GET /bytes/N) and as nginx + content_by_lua_block (OpenResty's
# http Lua module), with nginx's C `return 200` (a static file for 64 KiB) as the floor; and a
# line-protocol service, examples/redis-kv.lua (GET/SET over a shared dict), against
# redis-server itself. All in the same run.
#
# HTTP: 1 KiB and 64 KiB bodies, keep-alive on (many requests per connection) and off
# ("Connection: close" on every request: one connection per request). wrk -t1 with WRK_CONNS
# connections for DURATION seconds a run. Line protocol: redis-benchmark, SET then GET of
# 32-byte values over 10,000 keys, KV_CONNS connections, KV_N commands a run.
# Every server runs as one serving process pinned to CPU 0 (netproxy -w 1; nginx
# worker_processes 1; redis-server), the load (wrk, redis-benchmark) pinned to CPU 1
# (taskset). No per-request log anywhere (netproxy -q, nginx access_log off). Runs are
# interleaved (one run of every row, then the next round); each row gives the median, min and
# max of REPS runs, and the server's CPU time (user + system, /proc) per 1,000 requests, with
# requests per CPU second; the netproxy rows' ratio to OpenResty's (target: 1.25x) and to
# redis-server's.
#
# OpenResty's module comes from Debian's libnginx-mod-http-lua, unpacked (never installed: it
# would replace Debian's LuaJIT) into /opt/np-openresty by scripts/install-deps, and run by
# Debian's nginx with load_module and LD_LIBRARY_PATH on its own libluajit2.
#
# How to run (from the repository root, after scripts/build and scripts/install-deps):
#   bash bench/services.sh             # full run (~4 min): prints the tables and replaces the
#                                      # "## Services" section of docs/benchmarks.md
#   bash bench/services.sh --quick     # smoke run: 1 repetition of 2 s, doc untouched
#   bash bench/services.sh --quick --write
# Needs: bash, awk, ss (iproute2), taskset (util-linux), curl, wrk, nginx, redis-server,
# redis-benchmark (redis-tools), /opt/np-openresty. NETPROXY=... NGINX=... OPENRESTY=... override.
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
# shellcheck source=bench/lib/openresty.sh
source "$ROOT/bench/lib/openresty.sh"

SERVERS=(netproxy openresty nginx)
SIZES=(1024 65536)
MODES=(keepalive close)
KV_SERVERS=(kv redis)
KV_TESTS=(set get)
declare -A LABEL=(
  [netproxy]="netproxy, Lua service (examples/http-status.lua)"
  [openresty]="nginx + content_by_lua_block (OpenResty's module)"
  [nginx]="nginx, C (return 200; 64 KiB: a static file)"
  [kv]="netproxy, Lua service (examples/redis-kv.lua)"
  [redis]="redis-server"
)
declare -A SIZE_LABEL=([1024]="1 KiB" [65536]="64 KiB")
declare -A MODE_LABEL=([keepalive]="keep-alive on" [close]="keep-alive off")
declare -A PORT SPID VALUES CPU
PIDS=()
PROBLEMS=()
NOTES=()

parse_args() {
  bench_options "$@"
  if ((QUICK)); then DURATION=2 REPS=1 WRK_CONNS=20 KV_N=20000 KV_CONNS=20
  else DURATION=5 REPS=3 WRK_CONNS=50 KV_N=200000 KV_CONNS=50; WRITE=1; fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
  for tool in awk ss taskset curl wrk redis-server redis-benchmark; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y iproute2 util-linux curl wrk redis-server redis-tools)"
  done
  openresty_check
  pin_server_and_load "the load and the server"
  raise_fd_limit
  local stale
  stale=$(stale_binary)
  [[ -z $stale ]] || NOTES+=("$stale")
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

# launch NAME LOG CMD...: starts a server pinned to CPU 0 on PORT[NAME] and waits for it.
launch() {
  local name=$1 log=$2
  shift 2
  "${PIN_SERVER[@]}" "$@" >"$log" 2>&1 &
  SPID[$name]=$!
  PIDS+=("${SPID[$name]}")
  wait_listen "${PORT[$name]}" "${SPID[$name]}" || die "$name did not start: $(tail -5 "$log")"
}

start_netproxy() {
  free_port
  PORT[netproxy]=$FREE_PORT
  sed "s/port = 8080/port = $FREE_PORT/" "$ROOT/examples/http-status.lua" >"$WORK/http-status.lua"
  launch netproxy "$WORK/netproxy.log" "$NETPROXY" -w 1 -q "$WORK/http-status.lua"
}

start_nginx() {
  free_port
  PORT[nginx]=$FREE_PORT
  # nginx's config tokens are at most 4 KiB: 64 KiB comes from a file (open_file_cache: no
  # open(2) per request)
  head -c 65536 /dev/zero | tr '\0' x >"$WORK/nginx-65536"
  chmod 755 "$WORK" && chmod 644 "$WORK/nginx-65536"   # nginx's worker runs as nobody
  nginx_frame "$WORK/nginx" "${PORT[nginx]}" "" "open_file_cache max=10;" "
    location = /bytes/1024 { return 200 \"$(head -c 1024 /dev/zero | tr '\0' x)\"; }
    location = /bytes/65536 { alias $WORK/nginx-65536; }" >"$WORK/nginx.conf"
  launch nginx "$WORK/nginx.log" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf"
}

# OpenResty's http Lua module on Debian's nginx; the handler does what the netproxy service
# does for /bytes/N: each size made once, sent with its Content-Length.
start_openresty() {
  free_port
  PORT[openresty]=$FREE_PORT
  openresty_conf "$WORK/openresty" "${PORT[openresty]}" "" "init_by_lua_block { FILLER = {} }" '
    location /bytes/ {
      content_by_lua_block {
        local n = tonumber(ngx.var.uri:match("^/bytes/(%d+)$"))
        if not n or n > 1048576 then return ngx.exit(404) end
        local body = FILLER[n]
        if not body then body = ("x"):rep(n); FILLER[n] = body end
        ngx.header.content_length = #body
        ngx.print(body)
      }
    }' >"$WORK/openresty.conf"
  LD_LIBRARY_PATH=$OR_LIBS launch openresty "$WORK/openresty.log" "$NGINX" -p "$WORK/openresty" -c "$WORK/openresty.conf"
}

start_kv() {
  free_port
  PORT[kv]=$FREE_PORT
  sed "s/port = 6380/port = $FREE_PORT/" "$ROOT/examples/redis-kv.lua" >"$WORK/redis-kv.lua"
  launch kv "$WORK/kv.log" "$NETPROXY" -w 1 -q "$WORK/redis-kv.lua"
}

start_redis() {
  free_port
  PORT[redis]=$FREE_PORT
  launch redis "$WORK/redis.log" redis-server --port "$FREE_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize no --dir "$WORK"
}

# per_cpu TICKS N: CPU ms per 1,000 requests.
per_cpu() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN {printf "%.3f", 1e6 * t / hz / n}'; }

# run_wrk SERVER SIZE MODE: one run; appends requests/s and CPU ms per 1,000 requests.
run_wrk() {
  local server=$1 size=$2 mode=$3 key=$1:$2:$3 out rps before after reqs errors header=()
  [[ $mode == close ]] && header=(-H "Connection: close")
  before=$(cpu_ticks "${SPID[$server]}")
  out=$("${PIN_LOAD[@]}" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" "${header[@]}" \
        "http://127.0.0.1:${PORT[$server]}/bytes/$size" 2>&1) || true
  after=$(cpu_ticks "${SPID[$server]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  if [[ -z $rps || -z $reqs || $reqs == 0 ]]; then
    PROBLEMS+=("$key: wrk gave no result: $(tr '\n' ' ' <<<"$out")")
    return
  fi
  [[ -n $errors ]] && NOTES+=("$server, ${SIZE_LABEL[$size]}, ${MODE_LABEL[$mode]}: wrk reported: $(tr '\n' ' ' <<<"$errors")")
  VALUES[$key]+="$rps "
  CPU[$key]+="$(per_cpu $((after - before)) "$reqs") "
  say "  $server, ${SIZE_LABEL[$size]}, ${MODE_LABEL[$mode]}: $rps requests/s"
}

# run_kv SERVER TEST: one redis-benchmark run of SET or GET.
run_kv() {
  local server=$1 test=$2 key=$1:$2 out rps before after
  before=$(cpu_ticks "${SPID[$server]}")
  out=$("${PIN_LOAD[@]}" redis-benchmark -h 127.0.0.1 -p "${PORT[$server]}" -c "$KV_CONNS" -n "$KV_N" \
        -r 10000 -d 32 -t "$test" --csv 2>/dev/null) || true
  after=$(cpu_ticks "${SPID[$server]}")
  rps=$(awk -F'","' -v t="${test^^}" '$1 == "\"" t {print $2}' <<<"$out")
  if [[ -z $rps ]]; then
    PROBLEMS+=("$key: redis-benchmark gave no result: $(tr '\n' ' ' <<<"$out")")
    return
  fi
  VALUES[$key]+="$rps "
  CPU[$key]+="$(per_cpu $((after - before)) "$KV_N") "
  say "  $server ${test^^}: $rps requests/s"
}

# median KEY VALUES|CPU: the median of a row's runs ("-" when none).
median() {
  local -n from=$2
  # shellcheck disable=SC2086
  read -r m _ _ <<<"$(stats ${from[$1]:-})"
  echo "$m"
}

# per_cpu_second CPU_MS: requests per CPU second from CPU ms per 1,000 requests.
per_cpu_second() { awk -v c="$1" 'BEGIN { if (c == "-" || c + 0 == 0) print "-"; else printf "%.0f", 1e6 / c }'; }

row() { # KEY CELLS: a table row of KEY's runs after its first cells ("a | b")
  local key=$1 s smin smax c cmin cmax
  # shellcheck disable=SC2086
  read -r s smin smax <<<"$(stats ${VALUES[$key]:-})"
  # shellcheck disable=SC2086
  read -r c cmin cmax <<<"$(stats ${CPU[$key]:-})"
  echo "| $2 | $s | $smin..$smax | $c ($cmin..$cmax) | $(per_cpu_second "$c") |"
}

http_table() {
  local size mode server
  echo "| server | body | keep-alive | requests/s (median) | min..max | server CPU ms per 1,000 requests (min..max) | requests per CPU second |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for size in "${SIZES[@]}"; do
    for mode in "${MODES[@]}"; do
      for server in "${SERVERS[@]}"; do
        row "$server:$size:$mode" "${LABEL[$server]} | ${SIZE_LABEL[$size]} | ${MODE_LABEL[$mode]#keep-alive }"
      done
    done
  done
}

kv_table() {
  local test server
  echo "| server | command | requests/s (median) | min..max | server CPU ms per 1,000 commands (min..max) | commands per CPU second |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for test in "${KV_TESTS[@]}"; do
    for server in "${KV_SERVERS[@]}"; do row "$server:$test" "${LABEL[$server]} | ${test^^}"; done
  done
}

# verdict KEY PEER_KEY TARGET WHAT: netproxy's requests per CPU second against the peer's
# (TARGET "-": none, the ratio only).
verdict() {
  local n p r met
  n=$(median "$1" CPU) p=$(median "$2" CPU)
  r=$(ratio "$p" "$n")
  met=$(awk -v r="${r%x}" -v t="$3" 'BEGIN { if (r == "n/a") print "no result"; else if (r + 0 >= t) print "met"; else print "NOT met" }')
  [[ $3 == - ]] && met="" || met="; target ${3}x: $met"
  echo "- $4: netproxy does $r $(peer_name "$2")'s requests per CPU second ($(pct "$(median "$1" VALUES)" "$(median "$2" VALUES)") of its requests/s)$met."
}
peer_name() { case $1 in openresty:*) echo OpenResty ;; nginx:*) echo "nginx's C" ;; redis:*) echo redis-server ;; esac; }

verdicts() {
  local size mode test
  for size in "${SIZES[@]}"; do
    for mode in "${MODES[@]}"; do
      verdict "netproxy:$size:$mode" "openresty:$size:$mode" 1.25 "${SIZE_LABEL[$size]}, ${MODE_LABEL[$mode]}"
    done
  done
  for test in "${KV_TESTS[@]}"; do
    verdict "kv:$test" "redis:$test" - "${test^^} (line protocol, against redis-server: no target)"
  done
}

section() {
  local note
  echo "$SECTION_TITLE"
  echo
  echo "The same HTTP answer (\`GET /bytes/N\`: N bytes of \"x\", made once per size, with their"
  echo "Content-Length) from a netproxy Lua service (\`examples/http-status.lua\`, a straight-line"
  echo "\`serve\` function) and from nginx + \`content_by_lua_block\` (OpenResty's http Lua module on"
  echo "Debian's nginx), with nginx's C (\`return 200\`; for 64 KiB a static file, since a \`return\`"
  echo "text is at most 4 KiB) as the floor. Then a line protocol: \`examples/redis-kv.lua\` (RESP"
  echo "GET/SET over a shared dict) against redis-server. \`bench/services.sh\`; $(date -u +%Y-%m-%d),"
  echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), build $(git_rev)."
  echo
  echo "- method: wrk -t1 -c$WRK_CONNS for ${DURATION} s per run; redis-benchmark -c$KV_CONNS -n$KV_N -r 10000"
  echo "  -d 32 per run; $REPS interleaved runs per row. Keep-alive off is \`Connection: close\` on"
  echo "  every request (one connection per request)"
  echo "- pinning: each server as one serving process (netproxy -w 1, nginx worker_processes 1,"
  echo "  redis-server) on CPU 0, the load on CPU 1; no per-request log (netproxy -q, nginx access_log off)"
  echo "- CPU: the server's user + system time (/proc) over the run, divided by the requests"
  echo "- OpenResty: Debian's \`libnginx-mod-http-lua\` (with \`-ndk\`, \`libluajit2-5.1-2\`,"
  echo "  \`lua-resty-core\`, \`lua-resty-lrucache\`) is unpacked into /opt/np-openresty by"
  echo "  \`scripts/install-deps\`, not installed: its libluajit2 conflicts with Debian's LuaJIT, which"
  echo "  netproxy builds against. Debian's nginx loads the two modules (\`load_module\`, NDK first) and"
  echo "  runs with \`LD_LIBRARY_PATH\` on the unpacked libluajit2 (same soname; the bench checks with"
  echo "  \`ldd\` that the module resolves it there), \`lua_package_path\` on the unpacked resty.core"
  echo "- line protocol: Debian has no stream-lua module (OpenResty's \`ngx_stream_lua_module\` is not"
  echo "  packaged in bookworm), and a raw socket behind an HTTP preamble in the http module would not"
  echo "  be the same protocol; so the line service is compared with redis-server doing GET/SET itself"
  echo
  http_table
  echo
  kv_table
  echo
  verdicts
  why
  for note in "${NOTES[@]}"; do echo "- note: $note"; done
  for note in "${PROBLEMS[@]}"; do echo "- problem: $note"; done
}

# What the profiles said (perf record of the server under the same wrk load, perf stat of its
# system calls; 2026-12-07): the reasons behind the verdicts, kept with the table.
why() {
  cat <<'WHY'

Why (perf and system-call counts of the server under the same load, 2026-12-07):
- Most of every row's CPU is the kernel's (TCP over loopback: 56-65% of netproxy's samples,
  the same work for every server), so even nginx's C floor is only ~1.3x OpenResty at 1 KiB
  with keep-alive: 1.25x OpenResty would put a Lua service at the C floor.
- What this wave removed from netproxy's path: the speculative read(2) that ended in EAGAIN
  before each wait (2 reads per keep-alive request, now 1, as nginx), the epoll_ctl(2) per
  request (the read event now stays armed: 0 per request), and for a 64 KiB body the copy,
  hash and memcmp of the joined head+body string (client:write({ head, body }) is one writev).
  In A/B runs of the binaries before and after (alternating, same load), 64 KiB with
  keep-alive went from 13.9 to 10.9 ms per 1,000 requests and 1 KiB from 7.4 to 6.7.
- What is left, keep-alive off: per connection, the session's Lua (accept through the from
  connector, the service's client object, the connection's end) runs mostly in LuaJIT's
  interpreter (~25-30% of the samples in libluajit, under 2% in compiled traces; jit.v shows
  few traces: aborts on "hook called during recording" and "NYI: bytecode 50" (a closure
  made per connection) in session.lua, and the serve loop blacklisted), against nginx's C
  per-connection path with one small Lua call. accept4(2) runs 1.2 times per connection
  (the accept loop's last EAGAIN) and the close's epoll_ctl DEL hits a closed descriptor
  (libevent's changelist): ~2 epoll_ctl per connection against OpenResty's 1.
- Line protocol: each RESP command is 3 to 5 client:read calls in Lua (each through the
  buffer of netproxy.lines and core.turn()) against redis-server's C parser.
- Issue 32, keep-alive off, counted by callgrind (bench/instructions.sh's service row: this
  service, GET /bytes/1024 with Connection: close; instructions per request): 48,900 before,
  41,100 after. About 21,000 of the 48,900 were the example's own parsing (a serve that reads
  the lines and writes a fixed answer costs 27,800): LuaJIT's patterns recurse in C per
  character (measured alone under luajit -joff: the Host header's `^([^:]+):%s*(.-)%s*$`
  6,200 instructions, Connection's 4,100, the request line's 2,500, the two path patterns
  2,400, the head's string.format 2,000). The example now tells headers apart by a plain
  find of the first ":" and drops the query by a plain find of "?". The serve function is
  jit.off by design (hook_budget's count hook does not run in traces); that hook, global to
  the state in LuaJIT, sends every bytecode through the hook dispatch, but a build without it
  counts 46,960 against 48,720 (3.6 %): not the main cost. np_ended_push_handle's ~10 % is
  the collector's step its lua_newuserdata happens to run (lj_gc_step inside), the GC of the
  connection's garbage, not the handle: a larger pause (collectgarbage("setpause", 400))
  takes the 27,800 floor to 26,100 (1000: 25,400) but leaves more garbage against
  lua_memory (LuaJIT has no emergency collection), so it is not done.
WHY
}

check_answers() {
  local server
  for server in "${SERVERS[@]}"; do
    [[ $(curl -sf "http://127.0.0.1:${PORT[$server]}/bytes/1024" | wc -c) == 1024 ]] || die "$server does not answer /bytes/1024"
    [[ $(curl -sf "http://127.0.0.1:${PORT[$server]}/bytes/65536" | wc -c) == 65536 ]] || die "$server does not answer /bytes/65536"
  done
  for server in "${KV_SERVERS[@]}"; do
    [[ $(redis-cli -p "${PORT[$server]}" ping) == PONG ]] || die "$server does not answer PING"
  done
}

main() {
  parse_args "$@"
  check_tools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-services.XXXXXX")
  trap cleanup EXIT
  start_netproxy
  start_openresty
  start_nginx
  start_kv
  start_redis
  check_answers
  local rep size mode server test
  for ((rep = 1; rep <= REPS; rep++)); do
    say "round $rep of $REPS"
    for size in "${SIZES[@]}"; do
      for mode in "${MODES[@]}"; do
        for server in "${SERVERS[@]}"; do run_wrk "$server" "$size" "$mode"; done
      done
    done
    for test in "${KV_TESTS[@]}"; do
      for server in "${KV_SERVERS[@]}"; do run_kv "$server" "$test"; done
    done
  done
  doc_emit
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
