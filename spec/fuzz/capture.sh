#!/usr/bin/env bash
# Records the first bytes real clients send, as seeds for the fuzz harness (spec/fuzz/fuzz.lua):
# ClientHellos from openssl s_client and curl, CONNECT requests from curl -p -x. Each client
# talks to a socat listener on loopback that writes what it receives to a file and answers
# nothing; the client is stopped after a moment. Run by hand; the files are committed in
# spec/fixtures/corpus/ (re-run to refresh them after a client upgrade).
#   spec/fuzz/capture.sh [DIR]      (default: spec/fixtures/corpus)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-spec/fixtures/corpus}
mkdir -p "$out"

free_port() {
  local p
  while :; do
    p=$(shuf -i 20000-60000 -n 1)
    ss -ltn "sport = :$p" | grep -q LISTEN || { echo "$p"; return; }
  done
}

# capture NAME CMD...: runs CMD (with PORT in its words replaced) against a recording listener
capture() {
  local name=$1 port file listener; shift
  file="$out/$name"
  for _ in 1 2 3 4 5; do      # the port may be taken between the look and the bind: again
    port=$(free_port)
    rm -f "$file"
    socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" "CREATE:$file" 2>/dev/null &
    listener=$!
    for _ in $(seq 50); do
      ss -ltn "sport = :$port" | grep -q LISTEN && break
      kill -0 "$listener" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$listener" 2>/dev/null && break
  done
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
tp_port=$(free_port)
tp_conf=$(mktemp)
printf 'Port %s\nListen 127.0.0.1\nTimeout 5\nAllow 127.0.0.1\nConnectPort 443\nConnectPort %s\n' \
  "$tp_port" "$tp_port" >"$tp_conf"
tinyproxy -d -c "$tp_conf" >/dev/null 2>&1 &
tp=$!
for _ in $(seq 50); do ss -ltn "sport = :$tp_port" | grep -q LISTEN && break; sleep 0.1; done
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
