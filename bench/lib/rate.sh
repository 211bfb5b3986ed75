# bench/lib/rate.sh: the short-connection rate test the per-feature benches share (pools.sh,
# limits.sh, redis.sh): np-peer's client through a target, its conns/s and the proxy's CPU
# per connection, medians over the repetitions. Uses the caller's CONN_BYTES, CONN_COUNT,
# CONN_PARALLEL, CONN_REPS, TARGETS, LABEL, PIN_LOAD, NP_PEER, WORK, and fills VALUES, CPU and
# PROBLEMS (associative arrays and an array the caller declares). Needs stats.sh and proc.sh.

# start_target TARGET: the caller's launch TARGET PORT (which sets LAUNCHED_PID) on a free port,
# up to five tries, until it listens; sets PORT[TARGET] and TPID[TARGET], or files a PROBLEM
# with the end of WORK/TARGET.log.
start_target() {
  local attempt
  TARGET=$1 LOG=$WORK/$1.log PORT[$1]="" TPID[$1]=""
  for ((attempt = 1; attempt <= 5; attempt++)); do
    free_port
    launch "$1" "$FREE_PORT"
    PIDS+=("$LAUNCHED_PID")
    if wait_listen "$FREE_PORT" "$LAUNCHED_PID"; then
      PORT[$1]=$FREE_PORT TPID[$1]=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
  done
  PROBLEMS+=("${LABEL[$1]}: would not start; log: $(tail -5 "$LOG" | tr '\n' ' ')")
}

# measure_rate TARGET REP PORT PID: one repetition against PORT, PID's CPU time counted.
measure_rate() {
  local target=$1 rep=$2 port=$3 pid=$4 out rc=0 value t0 t1 err=$WORK/client.err
  [[ -n $port ]] || return 0
  t0=$(cpu_seconds "$pid")
  out=$("${PIN_LOAD[@]}" "$NP_PEER" client --connect "127.0.0.1:$port" --bytes "$CONN_BYTES" \
        --conns "$CONN_COUNT" --parallel "$CONN_PARALLEL" --timeout 300 2>"$err") || rc=$?
  t1=$(cpu_seconds "$pid")
  value=$(field conns_per_sec "$out")
  if ((rc == 0)) && [[ $(field failed "$out") == 0 && -n $value ]]; then
    VALUES[$target]+="$value "
    CPU[$target]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') "
    printf '  rep %d  %-48s %10s conns/s\n' "$rep" "${LABEL[$target]}" "$value" >&2
    return 0
  fi
  PROBLEMS+=("rep $rep, ${LABEL[$target]}: np-peer client exited $rc; stdout: '$out'; stderr: '$(tail -3 "$err" | tr '\n' ' ')'")
  say "  FAILED: ${PROBLEMS[-1]}"
}

stat_of() { # TARGET [median|min|max|runs]
  local v m lo hi
  read -r -a v <<<"${VALUES[$1]:-}"
  read -r m lo hi <<<"$(stats "${v[@]}")"
  case ${2:-median} in median) echo "$m" ;; min) echo "$lo" ;; max) echo "$hi" ;; runs) echo "${#v[@]}" ;; esac
}

cpu_us() { # TARGET: median proxy CPU µs per connection
  local v
  read -r -a v <<<"${CPU[$1]:-}"
  ((${#v[@]})) || { echo -; return; }
  printf '%s\n' "${v[@]}" | sort -g | awk -v n_conn="$CONN_COUNT" 'NF {v[++n] = $1}
    END { m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%.1f\n", m * 1e6 / n_conn }'
}

diff_us() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "n/a"; else printf "%+.1f\n", a - b }'; }

# rate_table FIRST_COLUMN CPU_COLUMN: the markdown table of every target.
rate_table() {
  local t
  echo "| $1 | conns/s median | min | max | $2 | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    echo "| ${LABEL[$t]} | $(stat_of "$t") | $(stat_of "$t" min) | $(stat_of "$t" max) | $(cpu_us "$t") | $(stat_of "$t" runs)/$CONN_REPS |"
  done
}
