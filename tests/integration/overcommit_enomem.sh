#!/bin/bash
# A request larger than the machine can ever back must fail with ENOMEM
# under the library as it does under glibc (default overcommit heuristic,
# vm.overcommit_memory=0: the kernel refuses one mapping larger than RAM +
# swap). The library once mapped every block with MAP_NORESERVE, which skips
# that check: malloc(4 x RAM) succeeded, Python's bytes(2**40) gave no
# MemoryError, and in POOLMALLOC_CHECK=full mode the fill of the fresh block
# ran into the OOM killer.
#
# Nothing here touches the memory it asks for: each request is checked and
# freed at once. Full mode is run only after the default mode has refused
# every request, since a library with the bug would fill the block there.
#
# Usage: overcommit_enomem.sh LIB [CC]     exit 0 pass, 1 fail, 77 skip
set -u
LIB=${1:?usage: overcommit_enomem.sh LIB [CC]}
CC=${2:-cc}
if [ "$(cat /proc/sys/vm/overcommit_memory 2>/dev/null)" != 0 ]; then
  echo "SKIP: vm.overcommit_memory is not 0 (heuristic)"; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/huge.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// argv[1]: bytes, more than RAM + swap. Prints one line per request: NULL/ptr errno.
int main(int argc, char** argv) {
  (void)argc;
  size_t n = strtoull(argv[1], 0, 0);
  void* p;
  errno = 0; p = malloc(n);            printf("malloc %s %d\n", p ? "ptr" : "NULL", errno); free(p);
  errno = 0; p = calloc(1, n);         printf("calloc %s %d\n", p ? "ptr" : "NULL", errno); free(p);
  errno = 0; p = memalign(4096, n);    printf("memalign %s %d\n", p ? "ptr" : "NULL", errno); free(p);
  char* q = malloc(1 << 20); memset(q, 1, 1 << 20);
  errno = 0; p = realloc(q, n);        printf("realloc %s %d\n", p ? "ptr" : "NULL", errno);
  free(p ? p : q);
  // A block aligned to more than RAM + swap needs a mapping that large too.
  size_t a = 1; while (a < n) a <<= 1;
  errno = 0; p = aligned_alloc(a, 64); printf("aligned %s %d\n", p ? "ptr" : "NULL", errno); free(p);
  return 0;
}
EOF
"$CC" -O1 -o "$tmp/huge" "$tmp/huge.c" || { echo "FAIL: cannot compile"; exit 1; }
kb=$(awk '/^(MemTotal|SwapTotal):/ {s += $2} END {print s}' /proc/meminfo)
n=$((kb * 1024 * 4))
"$tmp/huge" "$n" > "$tmp/plain" || { echo "FAIL: plain run"; exit 1; }
if grep -q ptr "$tmp/plain"; then echo "SKIP: glibc itself grants $n bytes here"; cat "$tmp/plain"; exit 77; fi
LD_PRELOAD=$LIB "$tmp/huge" "$n" > "$tmp/pre" || { echo "FAIL: preloaded run exited $?"; exit 1; }
if ! cmp -s "$tmp/plain" "$tmp/pre"; then
  echo "FAIL: requests of $n bytes (4 x RAM + swap), glibc vs library:"; paste "$tmp/plain" "$tmp/pre"; exit 1
fi
POOLMALLOC_CHECK=full LD_PRELOAD=$LIB "$tmp/huge" "$n" > "$tmp/full" || { echo "FAIL: full-mode run exited $?"; exit 1; }
if ! cmp -s "$tmp/plain" "$tmp/full"; then
  echo "FAIL: full mode, glibc vs library:"; paste "$tmp/plain" "$tmp/full"; exit 1
fi
echo "PASS: requests of $n bytes fail with ENOMEM as under glibc"; exit 0
