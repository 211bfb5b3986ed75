# shellcheck shell=bash
# bench/lib/proc.sh: sourced by the bench scripts: processes, free ports, readiness, np-peer
# servers. Needs NP_PEER, WORK, PIDS (an array) and die() from the script.

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
