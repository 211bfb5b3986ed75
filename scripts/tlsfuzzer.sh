#!/usr/bin/env bash
# scripts/tlsfuzzer.sh: runs tlsfuzzer's large-hello and record-fragmentation scripts against
# netproxy's `from = ssl` and against HAProxy (`bind ... ssl crt`), the same certificate
# (a throw-away RSA 2048 one), both in front of the same np-peer echo server on 127.0.0.1
# (the scripts send "GET / HTTP/1.0" and expect application data back, then close_notify).
# The scripts run with -d (ECDHE key exchange): their default, RSA key exchange, is not in
# the cipher list of Debian's OpenSSL 3 (SECLEVEL 2 leaves no TLS_RSA_* suite), for HAProxy
# and netproxy alike. TLSFUZZER_ARGS replaces "-d".
#
# tlsfuzzer and tlslite-ng are not part of this repository (never commit them): fetch them
# and give their folders.
#   apt-get install -y python3-ecdsa haproxy
#   git clone https://github.com/tlsfuzzer/tlsfuzzer; git clone https://github.com/tlsfuzzer/tlslite-ng
#   scripts/tlsfuzzer.sh /path/to/tlsfuzzer /path/to/tlslite-ng [script.py ...]
# The default scripts: test-large-hello.py test-record-layer-fragmentation.py
# test-client-hello-max-size.py test-truncating-of-client-hello.py. Each runs against both
# servers; the table printed is what docs/tls.md reports. Not part of the test command.
# Uses Debian's python3 (/usr/bin/python3, where python3-ecdsa is). Every process started is
# stopped by PID on exit. Exits 1 when a script's verdict differs between the two servers.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETPROXY=${NETPROXY:-$ROOT/build/netproxy}
NP_PEER=${NP_PEER:-$ROOT/build/np-peer}
PYTHON=${PYTHON:-/usr/bin/python3}
TLSFUZZER=${1:?usage: $0 TLSFUZZER-DIR TLSLITE-NG-DIR [script.py ...]}
TLSLITE=${2:?usage: $0 TLSFUZZER-DIR TLSLITE-NG-DIR [script.py ...]}
shift 2
SCRIPTS=("$@")
((${#SCRIPTS[@]})) || SCRIPTS=(test-large-hello.py test-record-layer-fragmentation.py
                                test-client-hello-max-size.py test-truncating-of-client-hello.py)
export PYTHONPATH=$TLSFUZZER:$TLSLITE

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "${0##*/}: $*" >&2; exit 2; }
[[ -x $NETPROXY && -x $NP_PEER ]] || die "build first (scripts/build)"
command -v haproxy >/dev/null || die "haproxy not found (apt-get install -y haproxy)"
"$PYTHON" -c "import ecdsa" 2>/dev/null || die "$PYTHON has no ecdsa module (apt-get install -y python3-ecdsa)"
[[ -f $TLSFUZZER/scripts/test-large-hello.py ]] || die "$TLSFUZZER is not a tlsfuzzer checkout"
[[ -f $TLSLITE/tlslite/__init__.py ]] || die "$TLSLITE is not a tlslite-ng checkout"

# wait_port PORT: 0 once something listens there (10 s at most).
wait_port() {
  local i
  for ((i = 0; i < 100; i++)); do
    ss -Htln "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || die "openssl req failed"
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"

"$NP_PEER" echo --listen 127.0.0.1:0 --port-file "$WORK/backend.port" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [[ -s $WORK/backend.port ]] && break; sleep 0.1; done
BACKEND=$(cat "$WORK/backend.port") || die "np-peer reply did not start"

NP_PORT=${NP_PORT:-24433} HA_PORT=${HA_PORT:-24434}
cat >"$WORK/netproxy.lua" <<EOF
proxy { name = "tls", from = { type = "ssl", host = "127.0.0.1", port = $NP_PORT,
                               cert = "$WORK/cert.pem", key = "$WORK/key.pem" },
        to = { type = "tcp", host = "127.0.0.1", port = $BACKEND } }
EOF
"$NETPROXY" -w 1 -q "$WORK/netproxy.lua" >"$WORK/netproxy.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend tls
  bind 127.0.0.1:$HA_PORT ssl crt $WORK/combined.pem
  default_backend plain
backend plain
  server s1 127.0.0.1:$BACKEND
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port "$NP_PORT" || die "netproxy did not listen: $(tail -3 "$WORK/netproxy.log")"
wait_port "$HA_PORT" || die "haproxy did not listen: $(tail -3 "$WORK/haproxy.log")"

# run SCRIPT PORT: prints "verdict passed/failed/total" from tlsfuzzer's summary; on a
# failure, the failed probes go to standard error.
run() {
  local out rc total ok bad
  out=$(cd "$TLSFUZZER" && timeout 600 "$PYTHON" "scripts/$1" -h 127.0.0.1 -p "$2" ${TLSFUZZER_ARGS--d} 2>&1)
  rc=$?
  total=$(sed -n 's/^TOTAL: *\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
  ok=$(sed -n 's/^PASS: *\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
  bad=$(sed -n 's/^FAIL: *\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
  printf '%s %s/%s/%s' "$( ((rc == 0)) && echo pass || echo FAIL)" "${ok:-?}" "${bad:-?}" "${total:-?}"
  if ((rc != 0)); then
    # the failed probes' names, and what the server answered instead
    { echo "--- $1 against port $2 (exit $rc):"; sed -n '/^FAILED:/,/^=/p' <<<"$out"
      grep -o "AssertionError: .*" <<<"$out" | sort | uniq -c; } >&2
  fi
}

differ=0
printf '| script | netproxy (from = ssl) | HAProxy %s (ssl crt) |\n| --- | --- | --- |\n' \
  "$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')"
for s in "${SCRIPTS[@]}"; do
  np=$(run "$s" "$NP_PORT") ha=$(run "$s" "$HA_PORT")
  printf '| %s | %s | %s |\n' "$s" "$np" "$ha"
  [[ ${np%% *} == "${ha%% *}" ]] || differ=1
done
echo "(verdict passed/failed/total probes; OpenSSL $(openssl version | awk '{print $2}'), tlsfuzzer $(cd "$TLSFUZZER" && git rev-parse --short HEAD 2>/dev/null || echo '(no git)'))"
exit $differ
