#!/usr/bin/env bash
# bench/accesslog.sh: what the JSON access log costs per short connection (issue 30).
#
# One netproxy -w 1 relays to an `np-peer echo` server, three ways: the default (the log line
# per connection only, to a file), with `access_log = { format = "json" }` (a JSON line too),
# and with a template. The load is `np-peer client --expect echo --bytes 100 --conns CONNS
# --parallel 32`; reported: the CPU time of netproxy per connection (user + system, from
# /proc), median of REPS runs, interleaved (one run of each, then the next round) so that
# background noise falls on all alike; and the extra cost against the default.
#
# How to run (from the repository root, after building):
#   scripts/build
#   bash bench/accesslog.sh                  # full run: prints the table and replaces the
#                                            # "## Access log" section of docs/benchmarks.md
#   bash bench/accesslog.sh --quick          # smoke run: 1 repetition, doc untouched
# Needs: bash, awk, ss. NETPROXY=... NP_PEER=... override the binaries. Everything listens on
# 127.0.0.1; every process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
DOC=$ROOT/docs/benchmarks.md
HZ=$(getconf CLK_TCK)
SECTION_TITLE="## Access log"
# shellcheck source=bench/lib/doc.sh
source "$ROOT/bench/lib/doc.sh"
# shellcheck source=bench/lib/proc.sh
source "$ROOT/bench/lib/proc.sh"
# shellcheck source=bench/lib/stats.sh
source "$ROOT/bench/lib/stats.sh"

bench_options "$@"
CONNS=50000 REPS=5
((QUICK)) && CONNS=3000 REPS=1
PIDS=() PROBLEMS=() NOTES=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/np-bench-accesslog.XXXXXX")
trap cleanup EXIT
raise_fd_limit
[[ -x $NETPROXY && -x $NP_PEER ]] || die "build first (scripts/build): $NETPROXY, $NP_PEER"

start_peer echo
VARIANTS=(default json template)
declare -A LABEL=([default]="the log line only" [json]="log line + JSON access log"
                  [template]="log line + template access log")
declare -A PORT PID CPU
for v in "${VARIANTS[@]}"; do
  case $v in
    default) extra="" ;;
    json) extra="access_log = { path = \"$WORK/access-json.log\", format = \"json\" }," ;;
    template) extra="access_log = { path = \"$WORK/access-tpl.log\", format = \"%{time} %{client_addr} %{target} %{end} %{bytes_in} %{duration}\" }," ;;
  esac
  free_port
  PORT[$v]=$FREE_PORT
  cat >"$WORK/$v.lua" <<EOF
server { log_file = "$WORK/$v.log" }
proxy { name = "bench", $extra
        from = { type = "tcp", host = "127.0.0.1", port = ${PORT[$v]} },
        to = { type = "tcp", host = "127.0.0.1", port = $PEER_PORT } }
EOF
  "$NETPROXY" -w 1 "$WORK/$v.lua" 2>"$WORK/$v.err" &
  PID[$v]=$!
  PIDS+=("${PID[$v]}")
  wait_listen "${PORT[$v]}" "${PID[$v]}" || die "netproxy ($v) did not start: $(tail -3 "$WORK/$v.err")"
done

# run V: one load run against variant V; appends its CPU microseconds per connection.
run() {
  local v=$1 before after out
  before=$(cpu_seconds "${PID[$v]}")
  out=$("$NP_PEER" client --connect "127.0.0.1:${PORT[$v]}" --expect echo --bytes 100 --conns "$CONNS" --parallel 32 2>&1) ||
    { PROBLEMS+=("$v: $out"); return; }
  [[ $(field failed "$out") == 0 ]] || PROBLEMS+=("$v: $out")
  after=$(cpu_seconds "${PID[$v]}")
  CPU[$v]+="$(awk -v a="$before" -v b="$after" -v n="$CONNS" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }') "
}

for v in "${VARIANTS[@]}"; do run "$v"; done     # warm-up, not counted
for v in "${VARIANTS[@]}"; do CPU[$v]=""; done
for ((r = 0; r < REPS; r++)); do
  for v in "${VARIANTS[@]}"; do run "$v"; done
done

lines=$(wc -l <"$WORK/access-json.log")
TABLE=$WORK/table.md
{
  echo "| netproxy -w 1 | CPU per connection, µs (median, min, max of $REPS) | against the default |"
  echo "| --- | --- | --- |"
  read -r base _ _ < <(stats ${CPU[default]})
  for v in "${VARIANTS[@]}"; do
    read -r med lo hi < <(stats ${CPU[$v]})
    echo "| ${LABEL[$v]} | $med ($lo..$hi) | $(awk -v a="$med" -v b="$base" 'BEGIN { printf "%+.1f%%", 100 * (a - b) / b }') |"
  done
} >"$TABLE"
cat "$TABLE"

SECTION=$WORK/section.md
{
  echo "$SECTION_TITLE"
  echo
  echo "What \`access_log\` costs per short connection (issue 30): \`bench/accesslog.sh\`, run $(date -u +%Y-%m-%d)"
  echo "on $(nproc) cores **shared with other work** (the machine was busy: the spread is wide), build $(git_rev)."
  echo "One netproxy \`-w 1\` in front of \`np-peer echo\`; $CONNS connections × 100 B echo, 32 in parallel,"
  echo "per run; CPU time of netproxy (user + system, /proc) divided by the connections. Every variant"
  echo "writes the default log line too (to a file); the JSON run wrote $lines access log lines."
  echo "Target: under 5% more than the default. CPU time is read in ticks of 10 ms: a run's"
  echo "share of a tick is about 0.3% here, the machine's noise far more (see min..max)."
  echo
  cat "$TABLE"
  note=$(stale_binary)
  [[ -z $note ]] || { echo; echo "Note: $note"; }
  for n in "${NOTES[@]}"; do echo; echo "Note: $n"; done
} >"$SECTION"
if ((!QUICK || WRITE)); then doc_write_section "$DOC" "$SECTION_TITLE" "$SECTION"; say "wrote $SECTION_TITLE in ${DOC#"$ROOT"/}"; fi
((${#PROBLEMS[@]} == 0)) || { printf '%s\n' "${PROBLEMS[@]}" >&2; exit 1; }
