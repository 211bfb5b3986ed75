#!/usr/bin/env bash
# Records the first bytes real clients send, as seeds for the fuzz harness (spec/fuzz/fuzz.lua):
# ClientHellos from openssl s_client and curl, CONNECT requests from curl -p -x. Each client
# talks to a socat listener on loopback (port 0) that writes what it receives to a file and
# answers nothing; the client is stopped after a moment. Run by hand; the files are committed in
# spec/fixtures/corpus/ (re-run to refresh them after a client upgrade).
#   spec/fuzz/capture.sh [DIR]      (default: spec/fixtures/corpus)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-spec/fixtures/corpus}
mkdir -p "$out"

# listening_port PID: the TCP port process PID listens on, once it does (5 s at most; nothing
# if it exits first or never listens).
listening_port() {
  local pid=$1 port
  for _ in $(seq 50); do
    port=$(ss -ltnpH | grep "pid=$pid," | sed -E 's/^\S+\s+\S+\s+\S+\s+\S*:([0-9]+)\s.*/\1/' | head -1)
    [ -n "$port" ] && { echo "$port"; return; }
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# capture NAME CMD...: runs CMD (with PORT in its words replaced) against a recording listener
# on port 0, its port read back from the socket table
capture() {
  local name=$1 port file listener; shift
  file="$out/$name"
  rm -f "$file"
  socat -u "TCP-LISTEN:0,bind=127.0.0.1" "CREATE:$file" 2>/dev/null &
  listener=$!
  port=$(listening_port "$listener")
  [ -n "$port" ] || { echo "$file: the recording listener did not start" >&2; exit 1; }
  local argv=()
  for a in "$@"; do argv+=("${a//PORT/$port}"); done
  timeout 2 "${argv[@]}" </dev/null >/dev/null 2>&1 || true
  kill "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  echo "$file: $(wc -c <"$file") bytes"
}

capture tls-openssl-sni openssl s_client -connect 127.0.0.1:PORT -servername www.example.com
capture tls-openssl-alpn openssl s_client -connect 127.0.0.1:PORT -servername a.test -alpn h2,http/1.1
capture tls-openssl-tls12 openssl s_client -connect 127.0.0.1:PORT -tls1_2 -servername old.example
capture tls-openssl-nosni openssl s_client -connect 127.0.0.1:PORT -noservername
capture tls-curl curl -sk --resolve www.example.com:PORT:127.0.0.1 https://www.example.com:PORT/
capture connect-curl curl -s -p -x http://127.0.0.1:PORT http://www.example.com:443/
capture connect-curl-auth curl -s -p -x http://alice:secret@127.0.0.1:PORT https://www.example.com/

# What a real CONNECT proxy (tinyproxy) answers: a tunnel opened, and a refusal.
# tinyproxy cannot take port 0: a port seen free a moment ago, and another if it was taken
# meanwhile (tinyproxy exits, or listens on no port)
tp_conf=$(mktemp)
for _ in 1 2 3 4 5; do
  socat -u TCP-LISTEN:0,bind=127.0.0.1 /dev/null 2>/dev/null &
  probe=$!
  tp_port=$(listening_port "$probe")
  kill "$probe" 2>/dev/null || true
  wait "$probe" 2>/dev/null || true
  printf 'Port %s\nListen 127.0.0.1\nTimeout 5\nAllow 127.0.0.1\nConnectPort 443\nConnectPort %s\n' \
    "$tp_port" "$tp_port" >"$tp_conf"
  tinyproxy -d -c "$tp_conf" >/dev/null 2>&1 &
  tp=$!
  [ "$(listening_port "$tp")" = "$tp_port" ] && break
  kill "$tp" 2>/dev/null || true
  wait "$tp" 2>/dev/null || true
  tp=
done
[ -n "$tp" ] || { echo "tinyproxy did not start on any of 5 free ports" >&2; exit 1; }
reply() {
  local name=$1 request=$2
  printf '%b' "$request" | timeout 3 socat -t 1 - "TCP:127.0.0.1:$tp_port" >"$out/$name" || true
  echo "$out/$name: $(wc -c <"$out/$name") bytes"
}
reply connect-reply-tinyproxy-200 "CONNECT 127.0.0.1:$tp_port HTTP/1.1\r\nHost: 127.0.0.1:$tp_port\r\n\r\n"
reply connect-reply-tinyproxy-403 "CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n"
kill "$tp" 2>/dev/null || true
wait "$tp" 2>/dev/null || true
rm -f "$tp_conf"
