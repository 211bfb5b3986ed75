# shellcheck shell=bash
# bench/lib/stats.sh: sourced by the bench scripts: medians and ratios, the git revision.

# stats VALUES...: "median min max" (median of an even count: the mean of the middle two).
stats() {
  printf '%s\n' "$@" | sort -g | awk 'NF {v[++n] = $1}
    END {
      if (n == 0) { print "- - -"; exit }
      m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%.1f %.1f %.1f\n", m, v[1], v[n]
    }'
}

git_rev() { # read-only: the commit, and whether the core differs from it
  local rev
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
  if git -C "$ROOT" diff --quiet HEAD -- src lua connectors CMakeLists.txt 2>/dev/null; then   # (by content: a touched file is no change)
    echo "$rev"
  else
    echo "$rev (with uncommitted changes to the core)"
  fi
}

# stale_binary: the note, when NETPROXY is older than a file of the tree it runs with (it
# loads lua/ and connectors/ at run time, and src/ may have changed); nothing otherwise.
stale_binary() {
  local newer n more=""
  newer=$(find "$ROOT/src" "$ROOT/lua" "$ROOT/connectors" -type f -newer "$NETPROXY" 2>/dev/null | sed "s#^$ROOT/##" | sort)
  [[ -n $newer ]] || return 0
  n=$(wc -l <<<"$newer")
  ((n <= 5)) || more=", ..."
  echo "${NETPROXY#"$ROOT"/} is older than $n file(s) of the tree it runs with ($(head -5 <<<"$newer" | tr '\n' ' ' | sed 's/ $//')$more): rebuild before trusting the netproxy rows."
}

pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "n/a"; else printf "%.0f%%\n", 100 * a / b }'
}

# field NAME TEXT: the value of NAME=value in np-peer's summary line.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# to_bytes SIZE: 2G -> 2147483648 (K, M, G: powers of 1024).
to_bytes() {
  local n=${1%[KkMmGg]}
  case $1 in
    *[Kk]) echo $((n << 10)) ;;
    *[Mm]) echo $((n << 20)) ;;
    *[Gg]) echo $((n << 30)) ;;
    *) echo "$n" ;;
  esac
}

# ratio A B: A / B as "1.23x" ("n/a" when either is missing).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "n/a"; else printf "%.2fx\n", a / b }'; }
