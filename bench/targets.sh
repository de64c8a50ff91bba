#!/usr/bin/env bash
# Target expressions on a large inventory (issue 15): `ctl hosts -g EXPR` on a generated
# inventory of N hosts (default 100,000: the inventory's range limit) in two groups, R
# timed rounds of each expression after one warm-up; prints the median wall time. Builds
# nothing: give the ctl to time (default target/release/ctl). Contacts no host.
#
#   bench/targets.sh                  # N=100000 R=5
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
R=${R:-5}
CTL=${CTL:-target/release/ctl}
[ -x "$CTL" ] || { echo "no $CTL: cargo build --release first" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
half=$((N / 2))
cat >"$dir/inventory.yaml" <<INV
hosts:
  h[1:$N]: { address: 10.0.0.1, port: 7070 }
groups:
  web: ["h[1:$half]"]
  db: ["h[$((half + 1)):$N]"]
  canary: [h1, h2, h3]
INV
for expression in 'all:!web' 'web:db:!canary:&~5$' "h[1:$half]:!h7"; do
  times=()
  for round in $(seq 0 "$R"); do
    t0=$EPOCHREALTIME
    count=$("$CTL" hosts -i "$dir/inventory.yaml" -g "$expression" | wc -l)
    t1=$EPOCHREALTIME
    [ "$round" = 0 ] || times+=("$(echo "$t1 - $t0" | bc)")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-28s %7d hosts selected   median %.3f s over %d rounds\n' "$expression" "$count" "$median" "$R"
done
