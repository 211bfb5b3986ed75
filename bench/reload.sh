#!/usr/bin/env bash
# bench/reload.sh: reloads and binary upgrades under load. For each process model, netproxy
# relays to an np-peer echo server while 50 clients connect in a loop (512 bytes each way,
# checked) and 10 long transfers run (each verified byte for byte); meanwhile it is sent
# 20 SIGHUPs in 10 s (and, with workers, one SIGUSR2 in the middle). Counted: connections
# that failed (all must be 0), transfers that arrived short or wrong (0), and how many
# connections were served across the reloads.
#
# How to run (from the repository root, after building):
#   bash bench/run.sh is the throughput benchmark; this one is about correctness under reload:
#   bash bench/reload.sh            # both models, writes "## Reload under load" in docs/benchmarks.md
#   bash bench/reload.sh --quick    # 5 reloads, no doc
# Needs: bash, ss (iproute2). Loopback only; every process started here is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
SECTION_TITLE="## Reload under load"
source "$ROOT/bench/lib/doc.sh"
source "$ROOT/bench/lib/proc.sh"
source "$ROOT/bench/lib/stats.sh"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
WORK=$(mktemp -d /tmp/netproxy-reload.XXXXXX)
trap cleanup EXIT

RELOADS=20 SPAN=10 WRITE=1 TRANSFER=256M
if [[ ${1:-} == --quick ]]; then RELOADS=5 SPAN=3 WRITE=0 TRANSFER=64M; fi
ulimit -n 20000 2>/dev/null || true

start_peer echo
ECHO_PORT=$PEER_PORT

# run_model LABEL WORKERS UPGRADE: one measurement; prints a table row.
run_model() {
  local label=$1 workers=$2 upgrade=$3 port cfg np i rounds=0 ok=0 failed=0 long_bad=0 long_ok=0
  free_port
  port=$FREE_PORT
  cfg=$WORK/reload-$workers.lua
  cat >"$cfg" <<LUA
server { workers = $workers }
proxy { name = "echo", from = { type = "tcp", host = "127.0.0.1", port = $port },
        to = { type = "tcp", host = "127.0.0.1", port = $ECHO_PORT } }
LUA
  "$NETPROXY" -q -w "$workers" "$cfg" 2>"$WORK/np-$workers.log" &
  np=$!
  PIDS+=("$np")
  wait_listen "$port" "$np" || die "netproxy did not start: $(tail -5 "$WORK/np-$workers.log")"
  local long=()
  for ((i = 0; i < 10; i++)); do
    "$NP_PEER" client --connect "127.0.0.1:$port" --bytes "$TRANSFER" --half-close --timeout 120 \
      >"$WORK/long-$workers-$i.out" 2>&1 &
    long+=($!)
    PIDS+=("$!")
  done
  # the clients: rounds of 2000 connections, 50 at a time, until the reloads are done
  (
    while [[ ! -e $WORK/stop-$workers ]]; do
      "$NP_PEER" client --connect "127.0.0.1:$port" --conns 2000 --parallel 50 --bytes 512 --timeout 60 \
        >>"$WORK/short-$workers.out" 2>&1 || true
    done
  ) &
  local loop=$!
  PIDS+=("$loop")
  local pause
  pause=$(awk -v s="$SPAN" -v n="$RELOADS" 'BEGIN { printf "%.3f", s / n }')
  for ((i = 1; i <= RELOADS; i++)); do
    sleep "$pause"
    if ((upgrade && i == RELOADS / 2)); then kill -USR2 "$np"; else kill -HUP "$np"; fi
  done
  touch "$WORK/stop-$workers"
  wait "$loop" || true
  for i in "${long[@]}"; do wait "$i" || true; done
  for ((i = 0; i < 10; i++)); do
    if grep -q "bytes_recv=$(numfmt --from=iec "$TRANSFER") " "$WORK/long-$workers-$i.out" &&
       grep -q "failed=0" "$WORK/long-$workers-$i.out"; then
      long_ok=$((long_ok + 1))
    else
      long_bad=$((long_bad + 1))
    fi
  done
  ok=$(grep -o 'ok=[0-9]*' "$WORK/short-$workers.out" | awk -F= '{s += $2} END {print s + 0}')
  failed=$(grep -o 'failed=[0-9]*' "$WORK/short-$workers.out" | awk -F= '{s += $2} END {print s + 0}')
  rounds=$(grep -c 'ok=' "$WORK/short-$workers.out" || true)
  kill "$np" 2>/dev/null || true
  wait "$np" 2>/dev/null || true
  local reloads="$RELOADS SIGHUP"
  ((upgrade)) && reloads="$((RELOADS - 1)) SIGHUP + 1 SIGUSR2"
  echo "| $label | $reloads in ${SPAN} s | $ok | $failed | $long_ok of 10 | $long_bad |"
  say "$label: served $ok, failed $failed, long transfers ok $long_ok, bad $long_bad ($rounds rounds)"
}

ROWS=()
ROWS+=("$(run_model "single process (-w 1)" 1 0)")
ROWS+=("$(run_model "master + 2 workers" 2 1)")

SECTION=$WORK/section.md
{
  echo "$SECTION_TITLE"
  echo
  echo "\`bench/reload.sh\` ($(date -u +%Y-%m-%d), commit $(git_rev)): netproxy relays to an np-peer echo"
  echo "server while 50 clients connect in a loop (512 bytes each way, checked) and 10 transfers of"
  echo "$TRANSFER each run through it, verified byte for byte; meanwhile netproxy gets $RELOADS signals."
  echo "Every connection must succeed and every transfer arrive whole."
  echo
  echo "| model | signals | connections served | failed | long transfers whole | short or wrong |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${ROWS[@]}"
} >"$SECTION"
cat "$SECTION"
if ((WRITE)); then doc_write_section "$DOC" "$SECTION_TITLE" "$SECTION"; fi
