#!/usr/bin/env bash
# Runs real programs plainly and under LD_PRELOAD of libpoolmalloc.so,
# and checks that output and exit status are identical and that the
# preloaded allocator really served the program's allocations.
# Usage: real_programs.sh /path/to/libpoolmalloc.so [program...]
set -uo pipefail
lib=${1:?usage: real_programs.sh LIB [program...]}
shift
[ -f "$lib" ] || { echo "no such library: $lib" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# served NAME: the stats reports written at exit by the processes of the run
# (one file each) count allocations.
served() {
  /usr/bin/python3 - "$work" "$1" <<'PY'
import glob, json, os, sys
requests = 0
for path in glob.glob(os.path.join(sys.argv[1], sys.argv[2] + ".stats.*.json")):
    with open(path) as f:
        requests += json.load(f)["total"]["requests"]
sys.exit(0 if requests > 0 else 1)
PY
}

# check NAME CMD...: plain run vs preloaded run.
check() {
  local name=$1
  shift
  local plain_rc pre_rc
  (cd "$work/run" && "$@") >"$work/$name.plain" 2>&1
  plain_rc=$?
  (cd "$work/run" && POOLMALLOC_STATS="json:$work/$name.stats.%p.json" LD_PRELOAD="$lib" "$@") >"$work/$name.pre" 2>&1
  pre_rc=$?
  local why=""
  [ "$plain_rc" -eq "$pre_rc" ] || why="exit status $plain_rc plain, $pre_rc preloaded"
  [ -z "$why" ] && ! cmp -s "$work/$name.plain" "$work/$name.pre" && why="output differs"
  [ -z "$why" ] && ! served "$name" 2>/dev/null && why="poolmalloc did not serve the allocations"
  if [ -z "$why" ]; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $why"
    diff "$work/$name.plain" "$work/$name.pre" | head -20
    failed=$((failed + 1))
  fi
}

mkdir -p "$work/run"
cat >"$work/run/prog.py" <<'PY'
import json, threading, collections
d = {str(i): [i] * (i % 17) for i in range(200000)}
s = json.dumps(d)
back = json.loads(s)
words = collections.Counter(w for v in back for w in map(str, v))
out = []
def work(k):
    out.append(sum(len(x) for x in ("%d-%s" % (i, "x" * (i % 40)) for i in range(k, k + 50000))))
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(s), len(words), sorted(out))
PY
cat >"$work/run/prog.pl" <<'PL'
my %h; my @a;
for my $i (1..300000) { $h{"k$i"} = "v" x ($i % 50); push @a, [$i, "x$i"]; }
my $n = 0; $n += length($h{$_}) for keys %h;
my @s = sort { $b->[0] <=> $a->[0] } @a;
print "$n $s[0][1] ", scalar(@s), "\n";
PL
cat >"$work/run/prog.sql" <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, 'name' || x, x * 1.5 FROM c;
CREATE INDEX i ON t(name);
SELECT count(*), sum(v), max(name) FROM t WHERE name LIKE 'name1%';
SELECT name FROM t ORDER BY v DESC LIMIT 3;
SQL
cat >"$work/run/prog.cpp" <<'CPP'
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>
int main() {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 100000; ++i) m[std::to_string(i % 1000)].push_back(i);
  size_t total = 0;
  for (auto& [k, v] : m) total += v.size() * k.size();
  std::cout << m.size() << " " << total << "\n";
}
CPP
/usr/bin/python3 -c 'import random; random.seed(1); print("\n".join("%08x %s" % (random.getrandbits(32), "y"*random.randint(0,60)) for _ in range(200000)))' >"$work/run/lines.txt"

want() { [ $# -eq 0 ] || [[ " $* " == *" $1 "* ]]; }
progs=("$@")
sel() { [ ${#progs[@]} -eq 0 ] || [[ " ${progs[*]} " == *" $1 "* ]]; }

sel python3 && check python3 /usr/bin/python3 prog.py
sel perl && check perl perl prog.pl
sel sqlite3 && check sqlite3 sh -c 'sqlite3 :memory: < prog.sql'
sel sort && check sort sort lines.txt
sel g++ && check g++ sh -c 'g++ -std=c++17 -O1 -o prog prog.cpp && ./prog'
sel git && check git sh -c '
  export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
  export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" HOME=$PWD
  rm -rf repo && git init -q repo && cd repo && for i in $(seq 1 30); do seq $i 3000 > f$i; git add f$i; git commit -qm "c$i"; done
  git gc -q && git log --format=%H | head -3 && git count-objects -v | grep -v size'

sel clang && check clang sh -c 'clang++ -std=c++17 -O1 -o prog2 prog.cpp && ./prog2'
# Compressors with two worker threads: blocks cross threads, and the
# round trip must give back the input.
sel xz && check xz sh -c 'xz -T2 -6 --block-size=1MiB -c lines.txt | tee lines.xz | xz -T2 -dc | cmp - lines.txt && sha256sum < lines.xz'
sel zstd && check zstd sh -c 'zstd -q -T2 -19 -c lines.txt | zstd -q -dc | cmp - lines.txt && echo same'
sel awk && check awk awk '{ n[substr($1, 1, 3)]++; len += length($2) } END { for (k in n) c++; print c, len }' lines.txt
sel bash && check bash bash -c 'declare -A h; for i in $(seq 1 40000); do h[k$i]=$((i * 7)); done; s=0; for k in "${!h[@]}"; do s=$((s + h[$k])); done; echo ${#h[@]} $s'
sel tar && check tar sh -c 'tar -czf a.tgz prog.py prog.pl prog.sql prog.cpp lines.txt && tar -tzvf a.tgz | awk "{print \$3, \$6}"'
# A JavaScript engine: objects in a map, JSON, compression, and worker
# threads that build their own data and post it back.
cat >"$work/run/prog.js" <<'JS'
const { Worker } = require("worker_threads");
const zlib = require("zlib");
const m = new Map();
for (let i = 0; i < 200000; i++) m.set("k" + i, { a: i, s: "x".repeat(i % 50) });
let sum = 0;
for (const v of m.values()) sum += v.a + v.s.length;
const text = JSON.stringify([...m.entries()].slice(0, 50000));
const round = zlib.gunzipSync(zlib.gzipSync(Buffer.from(text))).toString();
const jobs = [0, 1, 2].map((k) => new Promise((done) => {
  const w = new Worker("const { parentPort, workerData } = require('worker_threads');" +
    "const a = []; for (let i = 0; i < 100000; i++) a.push({ i, t: 'w' + (i * workerData) });" +
    "parentPort.postMessage(a.filter((o) => o.i % 7 === 0).length);", { eval: true, workerData: k + 1 });
  w.on("message", done);
}));
Promise.all(jobs).then((r) => console.log(sum, text.length, round === text, r.join(" ")));
JS
# A Java virtual machine: its compiler turns the source into classes in
# memory, then a pool of threads fills maps that the main thread reads.
cat >"$work/run/Prog.java" <<'JAVA'
import java.util.*;
import java.util.concurrent.*;
public class Prog {
  public static void main(String[] args) throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(4);
    List<Future<Long>> parts = new ArrayList<>();
    for (int t = 0; t < 8; t++) {
      final int seed = t;
      parts.add(pool.submit(() -> {
        Map<String, int[]> m = new HashMap<>();
        for (int i = 0; i < 100000; i++) m.put("k" + (i * seed), new int[i % 20 + 1]);
        long s = 0;
        for (int[] v : m.values()) s += v.length;
        return s;
      }));
    }
    long total = 0;
    for (Future<Long> f : parts) total += f.get();
    pool.shutdown();
    System.out.println(total);
  }
}
JAVA
cat >"$work/run/prog.tcl" <<'TCL'
set d [dict create]
for {set i 0} {$i < 150000} {incr i} { dict set d k$i [string repeat x [expr {$i % 40}]] }
set n 0
dict for {k v} $d { incr n [string length $v] }
puts "[dict size $d] $n [lindex [lsort [dict keys $d]] end]"
TCL
mkdir -p "$work/run/cm"
printf 'cmake_minimum_required(VERSION 3.10)\nproject(prog CXX)\nadd_executable(prog ../prog.cpp)\n' >"$work/run/cm/CMakeLists.txt"

sel node && check node node prog.js
sel java && check java java -Xmx256m Prog.java
sel tclsh && check tclsh tclsh prog.tcl
sel jq && check jq sh -c '/usr/bin/python3 -c "import json; print(json.dumps([{\"a\": i, \"b\": [str(j) for j in range(i % 30)]} for i in range(50000)]))" | jq -c "map(.b | length) | add, (map(select(.a % 1000 == 0) | .b[-1:]) | length)"'
sel cmake && check cmake sh -c 'cmake -S cm -B cm/b -G Ninja >/dev/null && cmake --build cm/b >/dev/null && cm/b/prog'
sel openssl && check openssl sh -c 'openssl enc -aes-256-cbc -pbkdf2 -iter 20000 -k secret -S 0102030405060708 -in lines.txt | tee lines.enc | openssl dgst -sha256 -r | cut -c1-64 && openssl enc -d -aes-256-cbc -pbkdf2 -iter 20000 -k secret -in lines.enc | cmp - lines.txt && echo same'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
