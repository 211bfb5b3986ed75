#!/usr/bin/env bash
# bench/instructions.sh: what each proxy does in user space per short connection, counted in
# instructions by callgrind (valgrind) rather than timed. On this kind of machine CPU time moves
# 5 to 20 % between runs of the same code (see "The noise" in the TCP relaying section); an
# instruction count of the same binary, config and traffic moves by well under 1 %, so a change
# of a few hundred instructions per connection shows. It says nothing of the kernel's part
# (most of a short connection's cost: the TCP exchange itself), which callgrind does not see.
#
# Each target in front of the same `np-peer echo`: WARM connections, then the counters are
# zeroed (callgrind_control -z) and CONNS connections of bench/run.sh's short test (100 B each
# way, 32 at a time) are counted; instructions / CONNS. Targets: netproxy routed (plain tcp ->
# tcp: no Lua per connection), routed with an identity hook on `from` (function(data): no conn
# object) and with one that takes its conn, a plain proxy forced through the Lua session (an
# accept function), dual with three probes (as in bench/run.sh); HAProxy (nbthread 1, defaults);
# bench/lib/floor-relay.c. The routed proxy also with defer_accept = 1, and, when given, as built
# with its relay level-triggered (NETPROXY_LT=PATH, a -DNP_RELAY_ET=0 build) and accepting one
# client per wake-up (NETPROXY_BATCH1=PATH, -DNP_ACCEPTS_PER_WAKEUP=1): bench/plain.sh's variants.
# And a Lua service, examples/http-status.lua (bench/services.sh's), driven by wrk with
# "Connection: close" on every request (GET /bytes/1024: one connection per request) for
# SERVICE_SECONDS (5; --quick 3) after a 2 s warm-up: instructions / requests wrk completed
# (the few requests in flight when wrk stops count against it: well under 1 %).
# INSTR_TARGETS="service session" measures only those (no doc written); SERVICE_CONFIG=FILE
# another service config in the place of examples/http-status.lua (its port = 8080 replaced).
#
#   bash bench/instructions.sh           # writes "## Instructions per connection" in docs/benchmarks.md
#   bash bench/instructions.sh --quick   # 500 connections, doc untouched (--write writes it)
# Needs valgrind (callgrind_control), haproxy, cc. Pinned: the proxy on CPU 0, the load on CPU 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## Instructions per connection"
HZ=$(getconf CLK_TCK)
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

bench_options "$@"
CONNS=2000 WARM=200
if ((QUICK)); then CONNS=500; else WRITE=1; fi
SERVICE_SECONDS=5
((QUICK)) && SERVICE_SECONDS=3
for tool in valgrind callgrind_control haproxy cc taskset wrk; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y valgrind haproxy gcc util-linux)"
done
[[ -x $NETPROXY && -x $NP_PEER ]] || die "build first (cmake -S . -B build && make -C build)"

PIDS=() PROBLEMS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-instr.XXXXXX")
trap cleanup EXIT
PEER_PIN="taskset -c 1"
cc -O2 -o "$WORK/floor-relay" "$ROOT/bench/lib/floor-relay.c" || die "cannot build bench/lib/floor-relay.c"
start_peer echo
ECHO=$PEER_PORT

TARGETS=(routed routed-defer)
[[ -n ${NETPROXY_LT:-} ]] && TARGETS+=(routed-lt)
[[ -n ${NETPROXY_BATCH1:-} ]] && TARGETS+=(routed-batch1)
TARGETS+=(hook-data hook-conn session dual service haproxy floor)
if [[ -n ${INSTR_TARGETS:-} ]]; then read -ra TARGETS <<<"$INSTR_TARGETS"; WRITE=0; fi
declare -A LABEL=(
  [routed]="netproxy, routed (tcp -> tcp, no Lua per connection)"
  [routed-defer]="netproxy, routed, defer_accept = 1"
  [routed-lt]="netproxy, routed, level-triggered relay (-DNP_RELAY_ET=0)"
  [routed-batch1]="netproxy, routed, 1 accept per wake-up"
  [hook-data]="netproxy, routed, hook on from: function(data)"
  [hook-conn]="netproxy, routed, hook on from: function(data, conn)"
  [session]="netproxy, the Lua session (an accept function)"
  [dual]="netproxy, dual from (three probes)"
  [service]="netproxy, Lua service (examples/http-status.lua), per request"
  [haproxy]="HAProxy, defaults, nbthread 1"
  [floor]="floor: bare C relay (bench/lib/floor-relay.c)"
)
declare -A COUNT

# config TARGET PORT: the target's config file (netproxy's Lua, HAProxy's cfg).
config() {
  local from="type = \"tcp\", host = \"127.0.0.1\", port = $2" to="to = { type = \"tcp\", host = \"127.0.0.1\", port = $ECHO }"
  case $1 in
    routed | routed-lt | routed-batch1) echo "proxy { name = \"b\", from = { $from }, $to }" ;;
    routed-defer) echo "proxy { name = \"b\", defer_accept = 1, from = { $from }, $to }" ;;
    hook-data) echo "proxy { name = \"b\", from = { $from, hook = function(data) return data end }, $to }" ;;
    hook-conn) echo "proxy { name = \"b\", from = { $from, hook = function(data, conn) return data end }, $to }" ;;
    session) echo "proxy { name = \"b\", accept = function(conn) return true end, from = { $from }, $to }" ;;
    dual) cat <<EOF
local function echo() return { type = "tcp", host = "127.0.0.1", port = $ECHO } end
proxy { name = "b", from = { type = "dual", host = "127.0.0.1", port = $2,
  probes = { { match = "tls", to = echo() }, { match = "http", to = echo() },
             { match = function(bytes) return true end, to = echo() } },
  client_first = echo() } }
EOF
      ;;
    service) sed "s/port = 8080/port = $2/" "${SERVICE_CONFIG:-$ROOT/examples/http-status.lua}" ;;
    haproxy) printf '%s\n' "global" "  nbthread 1" "  maxconn 4096" "defaults" "  mode tcp" "  maxconn 4096" \
      "  timeout connect 5s" "  timeout client 60s" "  timeout server 60s" "frontend f" "  bind 127.0.0.1:$2" \
      "  default_backend b" "backend b" "  server s 127.0.0.1:$ECHO" ;;
  esac
}

# count TARGET: COUNT[TARGET] = instructions per connection ('' when the run failed).
count() {
  local t=$1 port cfg out pid
  free_port
  port=$FREE_PORT cfg=$WORK/$t.cfg
  config "$t" "$port" >"$cfg"
  local grind=(taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$WORK/cg-$t.%p")
  case $t in
    haproxy) "${grind[@]}" haproxy -db -f "$cfg" >"$WORK/$t.log" 2>&1 & ;;
    floor) "${grind[@]}" "$WORK/floor-relay" "$port" "$ECHO" >"$WORK/$t.log" 2>&1 & ;;
    routed-lt) "${grind[@]}" "$NETPROXY_LT" -q -w 1 "$cfg" >"$WORK/$t.log" 2>&1 & ;;
    routed-batch1) "${grind[@]}" "$NETPROXY_BATCH1" -q -w 1 "$cfg" >"$WORK/$t.log" 2>&1 & ;;
    *) "${grind[@]}" "$NETPROXY" -q -w 1 "$cfg" >"$WORK/$t.log" 2>&1 & ;;
  esac
  pid=$!
  PIDS+=("$pid")
  local i
  for ((i = 0; i < 10; i++)); do wait_listen "$port" "$pid" && break; done   # valgrind starts slowly
  if [[ $t == service ]]; then count_service "$t" "$port" "$pid"; return; fi
  if ! taskset -c 1 "$NP_PEER" client --connect "127.0.0.1:$port" --expect echo --bytes 100 \
         --conns "$WARM" --parallel 32 --timeout 60 >/dev/null 2>"$WORK/$t.client"; then
    PROBLEMS+=("${LABEL[$t]}: the warm-up failed: $(tail -2 "$WORK/$t.client" "$WORK/$t.log" | tr '\n' ' ')")
    stop_pid "$pid"
    return
  fi
  callgrind_control -z "$pid" >/dev/null
  out=$(taskset -c 1 "$NP_PEER" client --connect "127.0.0.1:$port" --expect echo --bytes 100 \
          --conns "$CONNS" --parallel 32 --timeout 120 2>>"$WORK/$t.client") || true
  callgrind_control -d "$pid" >/dev/null
  stop_pid "$pid"
  if [[ $out != *"failed=0"* ]]; then
    PROBLEMS+=("${LABEL[$t]}: $out")
    return
  fi
  # the dump after the zeroing: its "summary:" line is the instructions counted since
  COUNT[$t]=$(awk -v n="$CONNS" '/^summary:/ { printf "%.0f\n", $2 / n; exit }' "$WORK/cg-$t.$pid.1")
  say "  $(printf '%-58s' "${LABEL[$t]}") ${COUNT[$t]} instructions per connection"
}

# count_service TARGET PORT PID: count's part for an HTTP service, per request wrk completed.
count_service() {
  local t=$1 port=$2 pid=$3 out reqs url="http://127.0.0.1:$2/bytes/1024"
  local wrk=(taskset -c 1 wrk -t1 -c8 -H "Connection: close")
  if ! out=$("${wrk[@]}" -d2s "$url" 2>&1) || [[ $out != *"requests in"* ]]; then
    PROBLEMS+=("${LABEL[$t]}: the warm-up failed: $(tr '\n' ' ' <<<"$out")")
    stop_pid "$pid"
    return
  fi
  callgrind_control -z "$pid" >/dev/null
  out=$("${wrk[@]}" -d"${SERVICE_SECONDS}s" "$url" 2>&1) || true
  callgrind_control -d "$pid" >/dev/null
  stop_pid "$pid"
  reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
  if [[ -z $reqs || $reqs == 0 || $out == *"Non-2xx"* || $out == *"Socket errors"* ]]; then
    PROBLEMS+=("${LABEL[$t]}: $(tr '\n' ' ' <<<"$out")")
    return
  fi
  COUNT[$t]=$(awk -v n="$reqs" '/^summary:/ { printf "%.0f\n", $2 / n; exit }' "$WORK/cg-$t.$pid.1")
  say "  $(printf '%-58s' "${LABEL[$t]}") ${COUNT[$t]} instructions per request ($reqs requests)"
}

for t in "${TARGETS[@]}"; do count "$t"; done

vs() { ratio "${COUNT[$1]:--}" "${COUNT[haproxy]:--}"; }

section() {
  echo "$SECTION_TITLE"
  echo
  echo "User-space instructions per short connection, counted by callgrind: \`bench/instructions.sh\`."
  echo "Timed figures move 5 to 20 % between runs here; these move by well under 1 %, and show what"
  echo "each proxy does in user space. The kernel's part of a connection, most of its cost, is not in"
  echo "them (see the TCP relaying section's CPU split)."
  echo
  echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'); $(valgrind --version); netproxy tree at git $(git_rev);"
  echo "$(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3). Each target in front of \`np-peer echo\`: $WARM"
  echo "connections, the counters zeroed, then $CONNS connections of 100 B each way, 32 at a time"
  echo "(bench/run.sh's short test); the proxy on CPU 0, the load on CPU 1. The service row is per"
  echo "HTTP request, each on its own connection: wrk -t1 -c8 with \"Connection: close\", GET /bytes/1024"
  echo "of examples/http-status.lua (bench/services.sh's service), 2 s of warm-up, then ${SERVICE_SECONDS} s counted."
  echo
  echo "| Target | instructions per connection | vs HAProxy |"
  echo "|---|---:|---:|"
  for t in "${TARGETS[@]}"; do echo "| ${LABEL[$t]} | ${COUNT[$t]:--} | $(vs "$t") |"; done
  if ((${#PROBLEMS[@]})); then echo; printf -- '- problem: %s\n' "${PROBLEMS[@]}"; fi
}

section >"$WORK/section.md"
cat "$WORK/section.md"
if ((WRITE)); then
  doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"
  say "wrote the \"${SECTION_TITLE#\#\# }\" section of ${DOC#"$ROOT"/}"
fi
((${#PROBLEMS[@]} == 0))
