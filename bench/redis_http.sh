#!/usr/bin/env bash
# bench/redis_http.sh: one Redis GET per HTTP request and connection, with and without
# keepalive to Redis, from a netproxy Lua service and from OpenResty, in the same run.
#
# Debian ships no stream-lua module, so the comparison is at the HTTP level: every client
# request is a connection of its own (wrk with "Connection: close"), and the server does ONE
# Redis GET and answers the value (32 bytes) in a small HTTP response. The same library on
# both sides: Debian's lua-resty-redis (/usr/share/lua/5.1/nginx/redis.lua), which netproxy
# requires as "nginx.redis" over netproxy.ngx, and OpenResty as "resty.redis" (a one-line shim
# module returning it). Paths, the same on both servers:
#   /none:       no Redis, the same answer from a constant (the floor: each server's Lua alone);
#   /keep:       connect, GET, set_keepalive(60000, 64) (one idle Redis connection reused);
#   /close:      connect, GET, close (a new Redis connection per request);
#   netproxy only, core.connect instead of nginx.redis (what the ngx layer costs):
#   /core_keep:  core.connect { pool }, "GET k" written and its reply read, sock:setkeepalive;
#   /core_close: the same, then close.
# netproxy's service (netproxy -w 1 -q) reads the request line and headers with
# client:read("*l") and answers with the header lines nginx sends (Server, Date, Content-Type,
# Content-Length, Connection: close), its Date made once a second as nginx does. OpenResty: one
# nginx worker, content_by_lua_block per path, ngx.header.content_length and ngx.print.
#
# Load: wrk -t1 -cWRK_CONNS for DURATION seconds a run, "Connection: close"; runs interleaved
# (one run of every row, then the next round), REPS rounds; each row: the median, min and max
# of requests/s, and the server's CPU (user + system of the process and its children, /proc)
# per request over the run, with requests per CPU second; the ratio netproxy / OpenResty of
# requests per CPU second for each path. Each server (netproxy -w 1; nginx worker_processes
# 1) pinned to CPU 0, wrk and redis-server to CPU 1 (taskset).
#
# How to run (from the repository root, after scripts/build and scripts/install-deps):
#   bash bench/redis_http.sh            # full run (~2 min): prints the table and replaces the
#                                       # "## Redis GET per request: netproxy and OpenResty"
#                                       # section of docs/benchmarks.md
#   bash bench/redis_http.sh --quick    # smoke run: 1 round of 2 s runs, doc untouched
#   bash bench/redis_http.sh --quick --write
# Needs: bash, awk, ss (iproute2), taskset (util-linux), curl, wrk, nginx, redis-server,
# redis-cli, Debian's lua-nginx-redis and /opt/np-openresty (scripts/install-deps).
# NETPROXY=... NGINX=... OPENRESTY=... override. Everything listens on 127.0.0.1; every
# process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## Redis GET per request: netproxy and OpenResty"
RESTY_REDIS=/usr/share/lua/5.1/nginx/redis.lua
VALUE=netproxy-redis-get-32-byte-value    # 32 bytes, the value of key k
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"
# shellcheck source=bench/lib/openresty.sh
source "$ROOT/bench/lib/openresty.sh"

# rows: SERVER:PATH, in table order
ROWS=(netproxy:none openresty:none netproxy:keep openresty:keep netproxy:close openresty:close
      netproxy:core_keep netproxy:core_close)
declare -A LABEL=(
  [none]="no Redis (the Lua answer alone)"
  [keep]="nginx.redis / resty.redis GET, set_keepalive"
  [close]="nginx.redis / resty.redis GET, close"
  [core_keep]="core.connect { pool } GET, sock:setkeepalive"
  [core_close]="core.connect GET, close"
)
declare -A PORT SPID VALUES CPU ANSWER
PIDS=()
PROBLEMS=()
NOTES=()

parse_args() {
  bench_options "$@"
  if ((QUICK)); then DURATION=2 REPS=1 WRK_CONNS=20
  else DURATION=4 REPS=3 WRK_CONNS=20; WRITE=1; fi
}

check_tools() {
  local tool
  [[ -x $NETPROXY ]] || die "no $NETPROXY: build first (scripts/build)"
  for tool in awk ss taskset curl wrk redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps)"
  done
  [[ -f $RESTY_REDIS ]] || die "no $RESTY_REDIS: run scripts/install-deps"
  openresty_check
  pin_server_and_load "wrk, redis-server and the server"
  raise_fd_limit
  local stale
  stale=$(stale_binary)
  [[ -z $stale ]] || NOTES+=("$stale")
}

# ---------------------------------------------------------------- servers

start_redis() {
  free_port
  PORT[redis]=$FREE_PORT
  "${PIN_LOAD[@]}" redis-server --port "$FREE_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  SPID[redis]=$!
  PIDS+=("${SPID[redis]}")
  wait_listen "$FREE_PORT" "${SPID[redis]}" || die "redis-server did not start: $(tail -3 "$WORK/redis.log")"
  [[ $(redis-cli -p "$FREE_PORT" set k "$VALUE") == OK ]] || die "redis-cli could not SET k"
}

netproxy_config() {
  cat <<EOF
-- generated by bench/redis_http.sh
local core = require "netproxy.core"
local ngx = require "netproxy.ngx"
local redis = require "nginx.redis"
local R, VALUE, MAX_HEADERS = ${PORT[redis]}, "$VALUE", 100

local function ngx_get(keep)
  local red = redis:new()
  red:set_timeout(5000)
  local ok, err = red:connect("127.0.0.1", R)
  if not ok then return nil, err end
  local v, err = red:get("k")
  if not v then return nil, err end
  if keep then red:set_keepalive(60000, 64) else red:close() end
  return v
end

local function core_get(keep)
  local sock, err = core.connect("127.0.0.1", R, { pool = keep or nil, timeout = 5 })
  if not sock then return nil, err end
  sock:write("GET k\r\n")
  local reply, v = ""                                   -- "\$32\r\n<32 bytes>\r\n"
  repeat
    local more = sock:read()
    if not more then sock:close() return nil, "no reply" end
    reply = reply .. more
    local len, head = reply:match("^%\$(%d+)\r\n()")
    len = tonumber(len)
    if len and #reply >= head + len + 1 then v = reply:sub(head, head + len - 1) end
  until v
  if keep then sock:setkeepalive(60, 64) else sock:close() end
  return v
end

local WORK = { ["/none"] = function() return VALUE end,
  ["/keep"] = function() return ngx_get(true) end, ["/close"] = function() return ngx_get(false) end,
  ["/core_keep"] = function() return core_get(true) end, ["/core_close"] = function() return core_get(false) end }

-- nginx's Date header, made once a second as nginx does
local date, date_at = "", -1
local function http_date()
  local now = math.floor(core.now())
  if now ~= date_at then date, date_at = os.date("!%a, %d %b %Y %H:%M:%S GMT", now), now end
  return date
end

local function answer(client, status, body)
  client:write({ ("HTTP/1.1 %s\r\nServer: netproxy\r\nDate: %s\r\nContent-Type: text/plain\r\n"
    .. "Content-Length: %d\r\nConnection: close\r\n\r\n"):format(status, http_date(), #body), body })
end

proxy { name = "redis_http", from = { type = "tcp", host = "127.0.0.1", port = ${PORT[netproxy]} },
  to = { type = "service", serve = function(client)
    local line = client:read("*l")
    if not line then return end
    local path = line:match("^GET (%S+) HTTP/1%.%d$")
    for _ = 1, MAX_HEADERS do
      local h = client:read("*l")
      if not h or h == "" then break end
    end
    local work = WORK[path]
    if not work then return answer(client, "404 Not Found", "") end
    local v, err = work()
    if not v then return answer(client, "502 Bad Gateway", tostring(err)) end
    answer(client, "200 OK", v)
  end } }
EOF
}

start_netproxy() {
  free_port
  PORT[netproxy]=$FREE_PORT
  netproxy_config >"$WORK/redis_http.lua"
  "${PIN_SERVER[@]}" "$NETPROXY" -w 1 -q "$WORK/redis_http.lua" >"$WORK/netproxy.log" 2>&1 &
  SPID[netproxy]=$!
  PIDS+=("${SPID[netproxy]}")
  wait_listen "$FREE_PORT" "${SPID[netproxy]}" || die "netproxy did not start: $(tail -5 "$WORK/netproxy.log")"
}

# openresty_location PATH KEEP|CLOSE: a content_by_lua_block doing what netproxy's /keep or /close does.
openresty_location() {
  local how="red:close()"
  [[ $2 == keep ]] && how="red:set_keepalive(60000, 64)"
  cat <<EOF
    location = $1 {
      content_by_lua_block {
        local red = redis:new()
        red:set_timeout(5000)
        local ok, err = red:connect("127.0.0.1", ${PORT[redis]})
        if not ok then ngx.status = 502 ngx.print(err) return end
        local v, err = red:get("k")
        if not v then ngx.status = 502 ngx.print(err) return end
        $how
        ngx.header.content_length = #v
        ngx.print(v)
      }
    }
EOF
}

start_openresty() {
  local dir=$WORK/openresty
  free_port
  PORT[openresty]=$FREE_PORT
  # OpenResty's name for the library is resty.redis: a one-line module returning Debian's file
  mkdir -p "$dir/lua/resty"
  echo 'return require "nginx.redis"' >"$dir/lua/resty/redis.lua"
  openresty_conf "$dir" "$FREE_PORT" "$dir/lua/?.lua;/usr/share/lua/5.1/?.lua;" \
    "init_by_lua_block { redis = require \"resty.redis\" }" "
    location = /none {
      content_by_lua_block { ngx.header.content_length = 32 ngx.print(\"$VALUE\") }
    }
$(openresty_location /keep keep)
$(openresty_location /close close)" >"$dir/nginx.conf"
  openresty_start "$dir" "$dir/nginx.conf" "$FREE_PORT"
  SPID[openresty]=$OPENRESTY_PID
}

# check_answers: every row answers 200 with the value; keeps each server's answer for the doc.
check_answers() {
  local row server path out
  for row in "${ROWS[@]}"; do
    server=${row%%:*} path=${row#*:}
    out=$(curl -si -H "Connection: close" "http://127.0.0.1:${PORT[$server]}/$path") ||
      die "$server /$path: no answer"
    [[ $out == "HTTP/1.1 200 OK"* && $out == *$'\r\n\r\n'"$VALUE" ]] ||
      die "$server /$path answered: $out"
    ANSWER[$server]=$out
  done
}

# ---------------------------------------------------------------- measuring

# run_wrk SERVER PATH: one run; appends requests/s and the server's CPU µs per request.
run_wrk() {
  local server=$1 path=$2 key=$1:$2 out rps reqs errors before after
  before=$(cpu_seconds "${SPID[$server]}")
  out=$("${PIN_LOAD[@]}" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" -H "Connection: close" \
        "http://127.0.0.1:${PORT[$server]}/$path" 2>&1) || true
  after=$(cpu_seconds "${SPID[$server]}")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  if [[ -z $rps || -z $reqs || $reqs == 0 ]]; then
    PROBLEMS+=("$key: wrk gave no result: $(tr '\n' ' ' <<<"$out")")
    return
  fi
  [[ -z $errors ]] || NOTES+=("$server /$path: wrk reported: $(tr '\n' ' ' <<<"$errors")")
  VALUES[$key]+="$rps "
  CPU[$key]+="$(awk -v a="$before" -v b="$after" -v n="$reqs" 'BEGIN {printf "%.2f", 1e6 * (b - a) / n}') "
  say "  $server /$path: $rps requests/s"
}

median() { # KEY VALUES|CPU: the median of a row's runs ("-" when none)
  local -n from=$2
  # shellcheck disable=SC2086
  read -r m _ _ <<<"$(stats ${from[$1]:-})"
  echo "$m"
}

per_cpu_second() { awk -v c="$1" 'BEGIN { if (c == "-" || c + 0 == 0) print "-"; else printf "%.0f", 1e6 / c }'; }

table() {
  local row server path s smin smax c cmin cmax
  echo "| server | per request | requests/s (median) | min..max | server CPU µs per request (min..max) | requests per CPU second |"
  echo "| --- | --- | ---: | --- | --- | ---: |"
  for row in "${ROWS[@]}"; do
    server=${row%%:*} path=${row#*:}
    # shellcheck disable=SC2086
    read -r s smin smax <<<"$(stats ${VALUES[$row]:-})"
    # shellcheck disable=SC2086
    read -r c cmin cmax <<<"$(stats ${CPU[$row]:-})"
    echo "| ${server/openresty/OpenResty} | ${LABEL[$path]} | $s | $smin..$smax | $c ($cmin..$cmax) | $(per_cpu_second "$c") |"
  done
}

# ratios: netproxy's requests per CPU second over OpenResty's, path by path.
ratios() {
  local path n o
  for path in none keep close; do
    n=$(median "netproxy:$path" CPU) o=$(median "openresty:$path" CPU)
    echo "- ${LABEL[$path]}: netproxy / OpenResty = $(ratio "$o" "$n") requests per CPU second ($(ratio "$(median "netproxy:$path" VALUES)" "$(median "openresty:$path" VALUES)") the requests/s)"
  done
  n=$(median netproxy:core_keep CPU) o=$(median openresty:keep CPU)
  echo "- core.connect kept alive against OpenResty's resty.redis kept alive: $(ratio "$o" "$n") requests per CPU second"
  n=$(median netproxy:core_close CPU) o=$(median openresty:close CPU)
  echo "- core.connect closed against OpenResty's resty.redis closed: $(ratio "$o" "$n") requests per CPU second"
}

# added SERVER PATH: the server's CPU µs per request on PATH over its floor (/none).
added() { awk -v a="$(median "$1:$2" CPU)" -v b="$(median "$1:none" CPU)" 'BEGIN { if (a == "-" || b == "-") print "n/a"; else printf "%+.1f µs\n", a - b }'; }

# reading: whether netproxy beats OpenResty, and where the difference lies.
reading() {
  local path wins=0 n o
  for path in none keep close; do
    n=$(median "netproxy:$path" CPU) o=$(median "openresty:$path" CPU)
    awk -v n="$n" -v o="$o" 'BEGIN { exit !(n != "-" && o != "-" && n + 0 < o + 0) }' && wins=$((wins + 1))
  done
  echo "- verdict: netproxy uses less CPU per request than OpenResty on $wins of the 3 paths (floor, kept alive, closed)."
  echo "- the Redis GET itself (a row's CPU per request over its server's floor): netproxy $(added netproxy keep) kept"
  echo "  alive and $(added netproxy close) closed (core.connect: $(added netproxy core_keep) and $(added netproxy core_close)); OpenResty $(added openresty keep)"
  echo "  and $(added openresty close)."
}

# where_cpu_goes: what a profile found (not measured by this script: perf on the side, with
# the servers this script starts; redo it when the rows move).
where_cpu_goes() {
  cat <<'EOF'
- where the CPU goes (profiled on the side on 2026-12-07 with the servers and config of this
  script, not redone by it): the kernel's part is the same in both (perf: about 10 µs per
  request on the floor, 15 µs kept alive); the difference is user space. Instructions per
  request in user space (callgrind, counters zeroed after a warm-up): 30,900 for netproxy's
  floor against OpenResty's 15,400, 58,200 against 38,900 kept alive. So of the 19,300 more a
  kept-alive request costs, 15,500 are the floor and 3,800 the GET. It is not netproxy.ngx:
  nginx.redis over it costs about what core.connect doing the GET by hand costs (the rows
  above), and its tcp sockets were made lighter for this run (send hands lua-resty-redis'
  pieces to one writev; receive reads from an offset): 59,200 to 58,200 instructions, 1.6 %.
  Nor the request parsing in Lua: a service answering after one read with no parsing cost
  the same 15 µs per request as one reading the request line and headers with
  client:read("*l"). It is what every connection costs in netproxy around serve(): on the
  floor 57 % of the instructions run inside lua_resume (the session coroutine: the from and
  to connectors' steps, core.serving, the service's client object, serve itself), then
  handing the connection's end to Lua (np_ended_push_handle, 10 %), the budget's counting
  allocator (8 %) and the teardown (on_reap 7 %, conn_free 6 %; inclusive figures), where
  OpenResty enters Lua once per request from C. The code a config writes stays in LuaJIT's
  interpreter (for hook_budget's count hook); letting the JIT compile it changed nothing
  measurable here.
- system calls per request (perf stat): 7.6 (netproxy) and 6.1 (OpenResty) on the floor,
  13.6 and 8.2 kept alive: on a pooled Redis connection netproxy checks it with a peek
  (recv MSG_PEEK), asks its peer address (getpeername), tries a read before waiting
  (EAGAIN) and re-arms its idle event (epoll_ctl twice), where nginx (edge-triggered, the
  socket registered once) does none of these; their kernel time is within the same 15 µs.
EOF
}

# answer_bytes SERVER: the size of the server's answer to /keep.
answer_bytes() { printf '%s' "${ANSWER[$1]}" | wc -c; }

section() {
  local note
  echo "$SECTION_TITLE"
  echo
  echo "One Redis GET per HTTP request, each request a connection of its own (\`Connection: close\`),"
  echo "with and without keepalive to Redis, from a netproxy Lua service and from OpenResty (nginx +"
  echo "\`content_by_lua_block\`) with the same library: Debian's lua-resty-redis, as \`nginx.redis\`"
  echo "over netproxy.ngx and as \`resty.redis\` in OpenResty. The floor is the same answer from each"
  echo "server's Lua with no Redis. \`bench/redis_http.sh\`; $RUN_DATE$( ((QUICK)) && echo ' (--quick: smoke sizes, not for comparison)'),"
  echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), build $(git_rev)."
  echo "Load average before and after: $LOAD_BEFORE / $LOAD_AFTER."
  echo
  echo "- method: wrk -t1 -c$WRK_CONNS -H \"Connection: close\" for $DURATION s a run, $REPS interleaved runs a row;"
  echo "  the answer is the 32-byte value in a 200 with Server, Date, Content-Type, Content-Length and"
  echo "  Connection headers ($(answer_bytes netproxy) bytes from netproxy, $(answer_bytes openresty) from OpenResty)"
  echo "- pinning: netproxy -w 1 -q or nginx (worker_processes 1, access_log off) on CPU 0, wrk and"
  echo "  redis-server on CPU 1"
  echo "- CPU: the server's user + system time (/proc, nginx's master and worker) over the run, per"
  echo "  request; redis-server's CPU is not counted"
  echo "- versions: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') with OpenResty's module from"
  echo "  /opt/np-openresty (\`bench/lib/openresty.sh\`); $(redis-server --version | cut -d' ' -f1-3);"
  echo "  lua-resty-redis $(sed -n "s/^_M._VERSION = '\(.*\)'/\1/p" "$RESTY_REDIS")"
  echo
  table
  echo
  ratios
  reading
  where_cpu_goes
  for note in "${NOTES[@]}"; do echo "- note: $note"; done
  for note in "${PROBLEMS[@]}"; do echo "- problem: $note"; done
}

main() {
  parse_args "$@"
  check_tools
  bench_workdir redis-http
  chmod 755 "$WORK"       # nginx's worker runs as nobody when started as root
  doc_run_stamp
  start_redis
  start_netproxy
  start_openresty
  check_answers
  local rep row
  for ((rep = 1; rep <= REPS; rep++)); do
    say "round $rep of $REPS"
    for row in "${ROWS[@]}"; do run_wrk "${row%%:*}" "${row#*:}"; done
  done
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  doc_emit
  say "done in ${SECONDS}s"
  ((${#PROBLEMS[@]} == 0))
}

main "$@"
