# shellcheck shell=bash
# bench/lib/doc.sh: sourced by the bench scripts; writes their sections of docs/benchmarks.md.
#
# The file is an introduction (everything before the first "## " title, shared, kept the same by
# every script) followed by "## " sections, each owned by one script:
#   doc_write_section DOC TITLE FILE [OLD-TITLE...]
# replaces the section TITLE (from its title line to the next "## " title or the end of the
# file) with the text of FILE, which starts with the TITLE line; the other sections are kept as
# they are. A section not there yet goes in the order of DOC_SECTIONS below (unknown titles
# keep their place). OLD-TITLES are sections the script used to write under other titles: they
# are removed, the new section taking the place of the first one found. "## " lines inside
# ``` code blocks are not titles. Needs ROOT (the repository root) to be set.

# Every section of the file: title, script, what it measures (for the introduction).
DOC_SECTIONS=(
  "## TCP relaying|bench/run.sh|bulk single-stream throughput, short-connection rate, ping-pong latency, system calls per connection and memory per idle connection: netproxy's relays, Lua hooks and dual against a direct connection, socat, HAProxy and nginx; one event loop per proxy, pinned to its own CPU; before and after issue 12"
  "## Plain path at saturation|bench/plain.sh|the plain TCP path (routed tcp -> tcp) against HAProxy and nginx's stream module with bt.c's load: short connections as the concurrency rises until the proxy core saturates (CPU per connection, busy %), ping-pong with the CPUs idle and kept awake, system calls per connection, and what defer_accept and accept batching change"
  "## Instructions per connection|bench/instructions.sh|user-space instructions per short connection, counted by callgrind instead of timed: netproxy's routed, hooked, session and dual paths against HAProxy and the floor relay"
  "## TLS termination|bench/tls.sh|netproxy terminating TLS against stunnel4 and HAProxy: bulk throughput and full handshakes"
  "## Workers|bench/workers.sh|connection rate with 1 and 2 worker processes (or threads): netproxy against HAProxy and nginx's stream module"
  "## Reload under load|bench/reload.sh|connections and long transfers across 20 reloads (and a binary upgrade): all must succeed"
  "## Unix sockets|bench/unix.sh|a TCP port in front of a unix-socket service: netproxy against socat, bulk throughput and CPU per GiB"
  "## SOCKS5|bench/socks5.sh|netproxy's SOCKS5 server against microsocks and dante-server: connection rate and bulk throughput"
  "## UDP|bench/udp.sh|netproxy's UDP relay against socat and a direct path: datagrams per second, round trip, memory per flow"
  "## Services|bench/services.sh|the same HTTP answer (1 and 64 KiB, keep-alive on and off) from a netproxy Lua service and from nginx + content_by_lua_block (OpenResty), nginx's C as the floor; a Redis-like GET/SET service (examples/redis-kv.lua) against redis-server: requests per second and per CPU second"
  "## Pools|bench/pools.sh|an upstream pool's cost per connection: netproxy with one server and with a pool of three, against HAProxy the same two ways"
  "## Access log|bench/accesslog.sh|the CPU per short connection of a JSON (or template) access log against the default log line"
  "## Redis through netproxy.ngx|bench/redis.sh|one Redis GET per connection from a Lua service, with and without keepalive, through Debian's lua-resty-redis over netproxy.ngx and through plain core.connect"
  "## Redis GET per request: netproxy and OpenResty|bench/redis_http.sh|one Redis GET per HTTP request and connection, kept alive to Redis and not, from a netproxy Lua service (nginx.redis over netproxy.ngx, and core.connect) and from OpenResty (resty.redis in content_by_lua_block), each server's Lua answer alone as the floor: requests per second and server CPU per request"
  "## HTTP proxy|bench/http_proxy.sh|the forward HTTP proxy (plain http:// URLs through from = connect) against tinyproxy and squid: requests per second and proxy CPU per request, keep-alive and not, 100-byte and 1 MiB responses"
  "## Bandwidth shaping|bench/bandwidth.sh|how close \`bandwidth\` (per_conn, per_source, per_proxy) keeps 10 s transfers to the asked rate, one and 20 at once, and the proxy's CPU meanwhile"
  "## Hooks|bench/hooks.sh|what an identity Lua data hook costs per GiB on one and on both directions against the spliced and the buffered plain relay, and what the memory bound of user Lua (the counting allocator behind \`lua_call_memory\`) adds to it, A/B in the same run"
)

# usage: the script's opening comment, its help.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# bench_options ARGS...: the options every bench script takes: --quick (a smoke run) and
# --write (write the doc section even then) into QUICK and WRITE; --help.
bench_options() {
  QUICK=0 WRITE=0
  while (($#)); do
    case $1 in
      --quick) QUICK=1 ;;
      --write) WRITE=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option '$1' (try --help)" ;;
    esac
    shift
  done
}

# doc_run_stamp: RUN_DATE and LOAD_BEFORE, the run's time and the load average it began in.
doc_run_stamp() {
  RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
}

# doc_notes: the run's NOTES and PROBLEMS as the last lines of its section.
doc_notes() {
  if ((${#NOTES[@]})); then echo; printf -- '- note: %s\n' "${NOTES[@]}"; fi
  if ((${#PROBLEMS[@]})); then echo; printf -- '- PROBLEM: %s\n' "${PROBLEMS[@]}"; fi
}

# doc_emit: the run's section (the script's section function, made once) printed without its
# title, and written into DOC under SECTION_TITLE when WRITE is set.
doc_emit() {
  section >"$WORK/section.md"
  tail -n +3 "$WORK/section.md"
  if ((WRITE)); then
    doc_write_section "$DOC" "$SECTION_TITLE" "$WORK/section.md"
    say "wrote the \"${SECTION_TITLE#\#\# }\" section of ${DOC#"$ROOT"/}"
  fi
}

# doc_anchor TITLE: the GitHub anchor of a "## " title.
doc_anchor() {
  local a=${1#\#\# }
  a=${a,,}
  a=$(sed 's/[^a-z0-9 _-]//g; s/ /-/g' <<<"$a")
  echo "#$a"
}

# doc_intro: the shared introduction.
doc_intro() {
  local entry title script what
  cat <<EOF
# Benchmarks

netproxy measured against the same traffic sent directly and through other proxies, all on one
machine over loopback. The point is the comparison: what a proxy hop costs, and how netproxy
compares with established proxies doing the same job. Each section below is written by its own
script, which replaces only its own section when rerun and keeps the others as they are:

EOF
  for entry in "${DOC_SECTIONS[@]}"; do
    IFS='|' read -r title script what <<<"$entry"
    echo "- [${title#\#\# }]($(doc_anchor "$title")), \`$script\`: $what."
  done
  cat <<EOF

**Everything (the load-generating client, the proxies and the servers) shares the same $(nproc) cores**,
so the numbers are relative, not absolute: with the client and the server on other machines every
number would differ. Compare rows within one table. Each section records the date, machine and
build of its own run; two sections may come from different runs.
EOF
}

doc_write_section() {
  local doc=$1 title=$2 file=$3 tmp intro order="" entry
  shift 3
  tmp=$doc.tmp.$$
  intro=$(mktemp "${TMPDIR:-/tmp}/bench-intro.XXXXXX")
  doc_intro >"$intro"
  for entry in "${DOC_SECTIONS[@]}"; do order+="${entry%%|*}"$'\n'; done
  [[ -f $doc ]] || : >"$doc"
  DOC_TITLE=$title DOC_NEW=$file DOC_INTRO=$intro DOC_ORDER=$order DOC_OLD=$(printf '%s\n' "$@") \
  awk '
    function trim(s) { sub(/\n+$/, "", s); return s }
    function slurp(f,   s, line) { s = ""; while ((getline line < f) > 0) s = s line "\n"; close(f); return trim(s) }
    BEGIN {
      title = ENVIRON["DOC_TITLE"]
      n = split(ENVIRON["DOC_ORDER"], o, "\n"); for (i = 1; i <= n; i++) if (o[i] != "") rank[o[i]] = i
      n = split(ENVIRON["DOC_OLD"], o, "\n"); for (i = 1; i <= n; i++) if (o[i] != "") old[o[i]] = 1
      nb = 0; fence = 0
    }
    /^```/ { fence = !fence }
    !fence && /^## / { nb++; bt[nb] = $0; body[nb] = ""; }
    { if (nb) body[nb] = body[nb] $0 "\n" }
    END {
      new = slurp(ENVIRON["DOC_NEW"])
      out = slurp(ENVIRON["DOC_INTRO"])
      done = 0
      for (i = 1; i <= nb; i++) {
        t = bt[i]
        if (t == title || t in old) {
          if (!done) { out = out "\n\n" new; done = 1 }
          continue
        }
        if (!done && (title in rank) && (t in rank) && rank[t] > rank[title]) { out = out "\n\n" new; done = 1 }
        out = out "\n\n" trim(body[i])
      }
      if (!done) out = out "\n\n" new
      print out
    }
  ' "$doc" >"$tmp"
  rm -f "$intro"
  mv "$tmp" "$doc"
}
