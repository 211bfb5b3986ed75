#!/usr/bin/env bash
# bench/quic.sh: what reading QUIC Initials costs (udp `from` with quic probes, issue 33)
# against a plain udp relay, on one machine.
#
# Two netproxies (-w 1) in front of the same UDP echo server (bench/lib/udp-load.c):
#   plain:  from = udp -> to = udp
#   quic:   from = udp with probes = { { match = "quic", sni = "*.example", to = <the echo> } },
#           fallback = <the echo>
# and every flow starts with the same 1,200-byte QUIC v1 client Initial (a whole ClientHello,
# SNI a.example: spec/support/quic_initial.py crafts it).
#   1. New flows: FLOWS flows one after the other (a new client socket sends the Initial, waits
#      for its echo, closes): flows per second, and netproxy's CPU time per new flow (its user +
#      system time over the run / FLOWS). The difference is the probing stage: a Lua conn, the
#      keys (HKDF: 4 HMAC-SHA256), header protection (one AES block), AES-128-GCM over the
#      packet, the ClientHello parsed in Lua, netproxy.udp.route.
#   0. The reader alone (src/quic.c, build/libnpquic.so through LuaJIT's FFI): CPU per
#      Initial read to its ClientHello (keys, header protection, AES-128-GCM, CRYPTO frames).
#   2. Afterwards: one flow, started with the Initial, then WINDOW datagrams of 64 and 1,400
#      bytes in flight for SECONDS: datagrams per second (median of REPS): once routed, a flow
#      is relayed as any other, so these should match.
#
#   scripts/build
#   bash bench/quic.sh                  # full run (~1 min): prints the table and replaces the
#                                       # "## QUIC routed by its SNI" section of docs/benchmarks.md
#   bash bench/quic.sh --quick          # smoke run, doc untouched (--write writes it anyway)
# Needs: bash, cc, python3 with python3-cryptography, ss. Every process started here is stopped
# by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## QUIC routed by its SNI"
HZ=$(getconf CLK_TCK)
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"

PIDS=()
bench_options "$@"
if ((QUICK)); then SECONDS_=1 REPS=1 FLOWS=2000; else SECONDS_=5 REPS=3 FLOWS=10000; fi
WINDOW=32
[[ -x $NETPROXY ]] || die "no $NETPROXY: run scripts/build first"
for tool in cc python3 luajit ss; do command -v $tool >/dev/null || die "needs $tool"; done

WORK=$(mktemp -d /tmp/netproxy-quic-bench.XXXXXX)
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cc -O2 -o "$WORK/udp-load" "$ROOT/bench/lib/udp-load.c" || die "cannot build udp-load"
LOAD=$WORK/udp-load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
python3 "$ROOT/spec/support/quic_initial.py" craft 1 a.example h3 1 forward 0 |
  python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.readline().strip()))' >"$WORK/initial.bin"
[[ $(stat -c %s "$WORK/initial.bin") -ge 1200 ]] || die "no Initial crafted"

free_port; ECHO_PORT=$FREE_PORT
free_port; PLAIN_PORT=$FREE_PORT
free_port; QUIC_PORT=$FREE_PORT
"$LOAD" echo "$ECHO_PORT" & PIDS+=($!)
ECHO="{ type = \"udp\", host = \"127.0.0.1\", port = $ECHO_PORT }"
cat >"$WORK/plain.lua" <<CONF
proxy { name = "plain", from = { type = "udp", host = "127.0.0.1", port = $PLAIN_PORT }, to = $ECHO,
        udp_idle_timeout = 600, max_flows = $((FLOWS * 2)) }
CONF
cat >"$WORK/quic.lua" <<CONF
proxy { name = "quic", udp_idle_timeout = 600, max_flows = $((FLOWS * 2)),
        from = { type = "udp", host = "127.0.0.1", port = $QUIC_PORT,
                 probes = { { match = "quic", sni = "*.example", to = $ECHO } }, fallback = $ECHO } }
CONF
"$NETPROXY" -w 1 -q "$WORK/plain.lua" 2>"$WORK/plain.log" & PLAIN_PID=$!; PIDS+=($PLAIN_PID)
"$NETPROXY" -w 1 -q "$WORK/quic.lua" 2>"$WORK/quic.log" & QUIC_PID=$!; PIDS+=($QUIC_PID)
declare -A PORT=([plain]=$PLAIN_PORT [quic]=$QUIC_PORT) PID=([plain]=$PLAIN_PID [quic]=$QUIC_PID)
for t in plain quic; do                 # ready once a flow gets through
  for ((i = 0; i < 100; i++)); do
    "$LOAD" newflows "${PORT[$t]}" 1 "$WORK/initial.bin" | grep -q "ok=1" && break
    sleep 0.05
  done
  ((i < 100)) || die "$t does not answer (port ${PORT[$t]})"
done

# the reader alone (src/quic.c through LuaJIT's FFI): CPU per Initial read to its ClientHello
cat >"$WORK/reader.lua" <<'LUA'
package.path = "./?.lua;./lua/?.lua;" .. package.path
local quic, ffi = require "spec.support.quic_ffi", require "ffi"
local f = assert(io.open(arg[1], "rb")); local d = f:read("*a"); f:close()
local why, n = ffi.new("const char *[1]"), tonumber(arg[2])
local t0 = os.clock()
for _ = 1, n do
  local st = quic.lib.np_quic_hello_new()
  assert(quic.lib.np_quic_hello_feed(st, d, #d, why) == 1)
  quic.lib.np_quic_hello_free(st)
end
print(("%.1f"):format((os.clock() - t0) * 1e6 / n))
LUA
READER_US=$(cd "$ROOT" && NETPROXY_BUILD=$(dirname "$NETPROXY") luajit "$WORK/reader.lua" "$WORK/initial.bin" $((FLOWS * 5)))
say "the reader alone: $READER_US us per Initial"

cpu() { local s; read -r s <"/proc/$1/stat"; s=${s##*) }; awk -v hz="$HZ" '{ printf "%.4f", ($12 + $13) / hz }' <<<"$s"; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A FPS US PPS
for t in plain quic; do
  c0=$(cpu "${PID[$t]}")
  out=$("$LOAD" newflows "${PORT[$t]}" "$FLOWS" "$WORK/initial.bin")
  c1=$(cpu "${PID[$t]}")
  [[ $out == *"ok=$FLOWS"* ]] || say "$t: not every flow answered: $out"
  FPS[$t]=$(sed 's/.*flows_per_s=\([0-9]*\).*/\1/' <<<"$out")
  US[$t]=$(awk -v a="$c0" -v b="$c1" -v n="$FLOWS" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')
  say "$t: ${FPS[$t]} new flows/s, ${US[$t]} us of netproxy CPU per new flow"
  for size in 64 1400; do
    runs=""
    for ((r = 0; r < REPS; r++)); do
      out=$("$LOAD" rate "${PORT[$t]}" $size $SECONDS_ $WINDOW "$WORK/initial.bin")
      runs+=" $(sed 's/.*pps=\([0-9]*\).*/\1/' <<<"$out")"
    done
    PPS[$t:$size]=$(median <<<"$runs")
    say "$t: $size B: ${PPS[$t:$size]} datagrams/s"
  done
done
EXTRA=$(awk -v a="${US[plain]}" -v b="${US[quic]}" 'BEGIN { printf "%.1f", b - a }')

{
  echo "$SECTION_TITLE"
  echo
  echo "\`bench/quic.sh$( ((QUICK)) && echo " --quick")\`, $(date -u +%Y-%m-%d), $(uname -m), $(nproc) cores, shared with other work while it ran (nothing pinned): read the ratios more than the numbers."
  echo "Every flow starts with the same 1,200-byte QUIC v1 client Initial (SNI a.example); $FLOWS new flows one after the other (each waits for its echo); then one flow, $WINDOW datagrams in flight (median of $REPS runs of ${SECONDS_} s)."
  echo
  echo "| netproxy -w 1 | new flows/s | CPU per new flow (us) | 64 B datagrams/s after | 1,400 B datagrams/s after |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "| plain udp relay | ${FPS[plain]} | ${US[plain]} | ${PPS[plain:64]} | ${PPS[plain:1400]} |"
  echo "| quic probes (SNI read, then relayed) | ${FPS[quic]} | ${US[quic]} | ${PPS[quic:64]} | ${PPS[quic:1400]} |"
  echo
  echo "Probing costs about $EXTRA us of CPU per new flow here. Of it, the C reader (src/quic.c alone, $((FLOWS * 5)) reads of the same Initial) takes $READER_US us: the keys (HKDF-SHA256: five HMACs), one AES block for the header protection, AES-128-GCM over the 1,200-byte packet (OpenSSL, the algorithms fetched once), the CRYPTO frame kept. The rest is Lua: the flow's conn (which a plain relay does not make) and netproxy.udp.route (the ClientHello parsed by netproxy.probes, the probes matched). Once routed a flow is relayed as any other: the datagrams per second after match the plain relay's within the noise of a shared machine."
  echo
} >"$WORK/section.md"
cat "$WORK/section.md"
if ((!QUICK || WRITE)); then doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"; fi
