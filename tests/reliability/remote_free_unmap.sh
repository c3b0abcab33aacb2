#!/usr/bin/env bash
# Runs remote_free_unmap under gdb: the freeing thread is stopped on the
# instruction after the compare-and-swap that publishes its block (the
# first `lock cmpxchg` of the push), the owner then trims, which
# gives the pool back and unmaps its segment, and the freeing thread goes
# on. It must finish its free without touching the pool.
# Usage: remote_free_unmap.sh LIB PROGRAM
set -euo pipefail
lib=$1 prog=$2
# The push is inlined into pool_free_remote in an optimised build, and
# called from it otherwise.
dump=$(objdump -d --no-show-raw-insn "$lib")
body() {
  awk -v s="<_ZN2pm16${1}EPNS_4PoolEPNS_5BlockE>:" '$2 == s {on = 1; next} on && /^$/ {on = 0} on' <<<"$dump"
}
fn=pool_free_remote
grep -q 'call.*pool_push_remote' <<<"$(body pool_free_remote)" && fn=pool_push_remote
start='' after=''
{
  sym=_ZN2pm16${fn}EPNS_4PoolEPNS_5BlockE
  start=$(awk -v s="<$sym>:" '$2 == s && !done {print $1; done = 1}' <<<"$dump")
  # The address of the instruction after the function's first lock cmpxchg.
  after=$(awk -v s="<$sym>:" '
    $2 == s {on = 1; next}
    on && /^$/ {on = 0}
    on && want {sub(":", "", $1); print $1; want = 0; on = 0}
    on && /lock cmpxchg/ {want = 1}' <<<"$dump")
}
if [ -z "$start" ] || [ -z "$after" ]; then
  echo "remote_free_unmap: no compare-and-swap found in pool_push_remote or pool_free_remote of $lib" >&2
  exit 1
fi
offset=$((0x$after - 0x$start))
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<G
set pagination off
set width 0
set confirm off
set environment LD_PRELOAD=$lib
set environment POOLMALLOC_PURGE_THREAD=0
break main
run
break *((char*)&'pm::$fn(pm::Pool*, pm::Block*)' + $offset)
break owner_trimmed
continue
echo @@ freeing thread held after its swap\n
set scheduler-locking on
thread 1
continue
echo @@ owner trimmed\n
set scheduler-locking off
delete
continue
G
out=$(gdb -q -batch -x "$script" "$prog" 2>&1)
printf '%s\n' "$out"
fail() { echo "remote_free_unmap: $1" >&2; exit 1; }
grep -q '@@ freeing thread held after its swap' <<<"$out" || fail "the freeing thread never reached the breakpoint"
grep -q "hit Breakpoint 2, " <<<"$out" || fail "the freeing thread did not stop after its swap in $fn"
line=$(grep 'owner: segments' <<<"$out") || fail "the owner did not trim"
read -r _ _ with after <<<"$(sed 's/.*segments [0-9]*, \([0-9]*\) with the block, \([0-9]*\) after trim/x x \1 \2/' <<<"$line")"
[ "$after" -lt "$with" ] || fail "the trim left the block's segment mapped ($line): the test proves nothing"
grep -q 'SIGSEGV' <<<"$out" && fail "the freeing thread faulted on the unmapped pool"
grep -q 'freeing thread: done' <<<"$out" || fail "the freeing thread did not finish"
# The program's "ok" shares the pipe with gdb's own messages, which may
# follow it on the same line ("ok[Thread ... exited]").
grep -q '^ok' <<<"$out" || fail "the program did not finish"
echo "remote_free_unmap: passed"
