# shellcheck shell=bash
# bench/lib/proc.sh: sourced by the bench scripts: processes, free ports, readiness, np-peer
# servers, CPU time; die and say. Needs NP_PEER, WORK, PIDS (an array) and HZ (getconf CLK_TCK)
# from the script.

die() { echo "${0##*/}: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

# alive PID: the process exists and is not a zombie.
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# free_port: sets FREE_PORT to a port no socket uses, below the ephemeral range so that it
# cannot clash with the many client ports (and TIME_WAITs) the tests create. Binding is the real
# test: start_target retries with another port when the proxy does not come up.
PICKED=" "
free_port() {
  local lo hi base span used try port
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  if ((lo > 11000)); then base=10000 span=$((lo - 10000)); else base=$((hi + 1)) span=$((65535 - hi)); fi
  used=" $(ss -Htan | awk '{n = split($4, a, ":"); printf "%s ", a[n]}') "
  for ((try = 0; try < 500; try++)); do
    port=$((base + (RANDOM * 32768 + RANDOM) % span))
    [[ $used == *" $port "* || $PICKED == *" $port "* ]] && continue
    PICKED+="$port "
    FREE_PORT=$port
    return 0
  done
  die "found no free port in $base..$((base + span - 1))"
}

# wait_listen PORT PID: 0 once something listens on PORT; 1 if PID died or after 10 s.
wait_listen() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 200; i++)); do
    alive "$pid" || return 1
    [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]] && return 0
    sleep 0.05
  done
  return 1
}

# start_peer MODE [ARGS...]: an np-peer server on an ephemeral port; sets PEER_PORT, PEER_PID.
# PEER_PIN: a command put in front (e.g. "taskset -c 1"; word-split).
start_peer() {
  local mode=$1 pf=$WORK/peer-$1.port i
  shift
  # shellcheck disable=SC2086 # PEER_PIN is a command and its arguments
  ${PEER_PIN:-} "$NP_PEER" "$mode" --listen 127.0.0.1:0 --port-file "$pf" "$@" >"$WORK/peer-$mode.log" 2>&1 &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  for ((i = 0; i < 200; i++)); do
    if [[ -s $pf ]]; then
      PEER_PORT=$(<"$pf")
      [[ $PEER_PORT =~ ^[0-9]+$ ]] && wait_listen "$PEER_PORT" "$PEER_PID" && return 0
    fi
    alive "$PEER_PID" || break
    sleep 0.05
  done
  die "np-peer $mode did not start: $(tail -5 "$WORK/peer-$mode.log")"
}

# children PID: its live children (nginx's workers, socat's forks, a master's workers).
children() { ps -o pid= --ppid "$1" 2>/dev/null || true; }

# tree PID: PID and its children.
tree() { echo "$1"; children "$1"; }

# cpu_times PID: user + system time of the process tree: PID (all its threads), its live
# children and the children it has reaped, in seconds; then the user time alone. Needs HZ.
cpu_times() {
  local pid stat total=0 user=0
  for pid in $(tree "$1"); do
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    read -r total user < <(awk -v t="$total" -v u="$user" '{print t + $12 + $13 + $14 + $15, u + $12 + $14}' <<<"${stat##*) }")
  done
  awk -v t="$total" -v u="$user" -v hz="$HZ" 'BEGIN {printf "%.2f %.2f\n", t / hz, u / hz}'
}

# cpu_seconds PID: the first of cpu_times, user + system.
cpu_seconds() { local t; read -r t _ < <(cpu_times "$1"); echo "$t"; }

# stop_pid PID: TERM its children (socat's forks, nginx's workers) and itself, KILL after 5 s,
# reap it, and take it out of PIDS.
stop_pid() {
  local pid=$1 child i p keep=()
  for child in $(children "$pid"); do kill -TERM "$child" 2>/dev/null || true; done
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# cleanup: stops every process in PIDS; removes WORK unless PROBLEMS were filed (their logs
# and configs are kept there).
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n ${WORK:-} && -d $WORK ]]; then
    if ((${#PROBLEMS[@]})); then say "logs and configs kept in $WORK"; else rm -rf "$WORK"; fi
  fi
}

# bench_workdir NAME: a fresh WORK folder for the run (netproxy-NAME-bench.XXXXXX under TMPDIR),
# cleanup on exit, and an interrupted run exits through it too.
bench_workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netproxy-$1-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# pin_server_and_load WHO: on two CPUs or more, PIN_SERVER (taskset) runs what is measured on
# CPU 0 and PIN_LOAD the load on CPU 1; on one, nothing is pinned and a note says that WHO
# share it.
pin_server_and_load() {
  if (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
  else
    PIN_SERVER=() PIN_LOAD=()
    NOTES+=("one CPU: nothing pinned; $1 share it.")
  fi
}

# raise_fd_limit: ulimit -n 20000 (the machines' cap), or the hard limit with a note.
raise_fd_limit() {
  if ! ulimit -n 20000 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
    NOTES+=("ulimit -n 20000 was refused; ran with $(ulimit -n) descriptors.")
  fi
}
