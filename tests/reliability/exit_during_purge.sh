#!/usr/bin/env bash
# Runs exit_during_purge RUNS times with a purge delay of an hour, under
# LD_PRELOAD of LIB, while two busy loops keep both cores loaded (which
# makes the last exit land during a purge pass more often): every run must
# end within 5 s. Usage: exit_during_purge.sh LIB PROGRAM [RUNS]
set -uo pipefail
lib=$1 prog=$2 runs=${3:-40}
burners=()
for _ in 1 2; do
  timeout 120 sh -c 'while :; do :; done' &
  burners+=($!)
done
trap 'kill "${burners[@]}" 2>/dev/null' EXIT
late=0
for ((i = 0; i < runs; i++)); do
  env LD_PRELOAD="$lib" POOLMALLOC_PURGE_DELAY=3600000 timeout -s KILL 5 "$prog"
  status=$?
  if [ "$status" -eq 137 ]; then
    late=$((late + 1))
  elif [ "$status" -ne 0 ]; then
    echo "exit_during_purge: run $i ended with status $status" >&2
    exit 1
  fi
done
echo "exit_during_purge: $late of $runs runs still alive after 5 s"
[ "$late" -eq 0 ]
