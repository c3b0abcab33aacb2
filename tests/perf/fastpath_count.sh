#!/usr/bin/env bash
# Pins the cost of the fast path: instructions per malloc+free pair, counted
# by callgrind (exact and repeatable on a noisy machine). Fails when a count
# grows past the recorded figure in fastpath.golden.
# Usage: fastpath_count.sh LIB PAIRS_BENCH GOLDEN [--record]
set -euo pipefail
lib=$1 bench=$2 golden=$3 record=${4:-}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# Instructions of the whole run; the difference between two run lengths
# cancels start-up and exit, leaving the per-pair cost of the loop.
count() {  # count STEPS [--mixed]
  local out
  out=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" --trace-children=yes \
    env LD_PRELOAD="$lib" "$bench" "${@:2}" --steps "$1" >/dev/null 2>"$out/log"
  grep -h '^summary:' "$out"/cg.* | awk '{s += $2} END {print s}'
  rm -rf "$out"
}
per_pair() {  # per_pair [--mixed]
  local a b
  a=$(count 100000 "$@")
  b=$(count 300000 "$@")
  echo $(( (b - a) / 200000 ))
}

single=$(per_pair)
mixed=$(per_pair --mixed)
echo "instructions per malloc+free pair (including the benchmark loop): single-size $single, mixed ring $mixed"
if [ "$record" = "--record" ]; then
  printf 'single %s\nmixed %s\n' "$single" "$mixed" >"$golden"
  echo "recorded in $golden"
  exit 0
fi
status=0
while read -r name limit; do
  got=$single
  [ "$name" = mixed ] && got=$mixed
  # One instruction of tolerance: slow paths that depend on time (the
  # statistics' peak sampling) move the average by up to one between runs.
  if [ "$got" -gt $((limit + 1)) ]; then
    echo "FAIL: $name costs $got instructions per pair, recorded $limit (+1 tolerated)" >&2
    status=1
  else
    echo "ok: $name $got <= $limit"
  fi
done <"$golden"
exit $status
