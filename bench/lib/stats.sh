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
  if git -C "$ROOT" diff-index --quiet HEAD -- src lua connectors CMakeLists.txt 2>/dev/null; then
    echo "$rev"
  else
    echo "$rev (with uncommitted changes to the core)"
  fi
}

pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "n/a"; else printf "%.0f%%\n", 100 * a / b }'
}
