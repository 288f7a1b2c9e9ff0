#!/usr/bin/env python3
"""Ratios of each store backend against SQLite, from a store_bench.sh result
directory. Every repetition measures the backends back to back, so the ratio
is taken per repetition and the median (min-max) over repetitions reported.
usage: store_ratios.py RESULT_DIR
"""
import glob, json, os, re, statistics, sys
from collections import defaultdict

LABEL = re.compile(r"^(?P<b>[a-z]+)-c(?P<c>\d+)-u(?P<u>[0-9.]+)-r(?P<r>\d+)$")
ORDER = {"sqlite": 0, "redis": 1, "postgres": 2}


def rng(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):.2f} ({xs[0]:.2f}-{xs[-1]:.2f})" if xs else "-"


def main(d):
    runs = defaultdict(dict)  # (c, u) -> {rep: {backend: json}}
    for p in sorted(glob.glob(os.path.join(d, "json", "*.json"))):
        j = json.load(open(p))
        m = LABEL.match(j.get("label", ""))
        if m:
            runs[(int(m["c"]), m["u"])].setdefault(int(m["r"]), {})[m["b"]] = j
    print("| conns | unique | store | req/s (median) | p99 µs (median) | req/s vs SQLite | p99 vs SQLite | errors |")
    print("|--:|--:|---|--:|--:|--:|--:|--:|")
    for (c, u), reps in sorted(runs.items(), key=lambda kv: (-float(kv[0][1]), kv[0][0])):
        backends = sorted({b for r in reps.values() for b in r}, key=lambda b: ORDER.get(b, 9))
        for b in backends:
            rows = [r[b] for r in reps.values() if b in r]
            rps = statistics.median(x["rps"] for x in rows)
            p99 = statistics.median(x["latency"]["p99_us"] for x in rows)
            errors = sum(x.get("errors", {}).get("total", 0) for x in rows)
            vs = [r[b]["rps"] / r["sqlite"]["rps"] for r in reps.values() if b in r and "sqlite" in r]
            p99s = [r[b]["latency"]["p99_us"] / r["sqlite"]["latency"]["p99_us"] for r in reps.values() if b in r and "sqlite" in r]
            print(f"| {c} | {u} | {b} | {rps:,.0f} | {p99:,.0f} | {rng(vs)} | {rng(p99s)} | {errors} |")


if __name__ == "__main__":
    main(sys.argv[1])
