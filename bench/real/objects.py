"""Allocation-heavy Python: dicts of lists of strings, sorting, tuples and
nested records, rebuilt every round. scripts/compare runs it with
PYTHONMALLOC=malloc so every object comes from the allocator under test
instead of pymalloc's arenas. Prints one digest of everything computed."""
import hashlib
import sys


def one_round(rnd, h):
    d = {}
    for i in range(20000):
        key = f"k{(i * 7919 + rnd) % 15000}"
        d.setdefault(key, []).append(str(i) * (i % 7 + 1))
    keys = sorted(d)
    h.update(",".join(keys[::50]).encode())
    sizes = sorted((len(v), k) for k, v in d.items())
    h.update(repr(sizes[:100]).encode())
    records = [{"id": i, "tags": [str(j) for j in range(i % 10)]} for i in range(5000)]
    h.update(str(sum(len(r["tags"]) for r in records)).encode())
    text = " ".join(v[0] for v in d.values())
    h.update(str(len(text.split())).encode())


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    h = hashlib.sha256()
    for rnd in range(rounds):
        one_round(rnd, h)
    print(h.hexdigest())


main()
