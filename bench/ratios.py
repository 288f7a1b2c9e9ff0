#!/usr/bin/env python3
"""Ratios of greygate ("ext") against the null server and the peers, from a
run_peers.sh result directory.

Each repetition measures every server back to back, so the ratio is taken
per repetition (same machine state) and the median of those is reported,
with the min-max range. usage: ratios.py RESULT_DIR
"""
import glob, json, os, re, statistics, sys
from collections import defaultdict

LABEL = re.compile(r"^(?P<key>.+)-c(?P<c>\d+)-u(?P<u>[0-9.]+)-r(?P<r>\d+)$")


def load(d):
    runs = defaultdict(dict)  # (c, u) -> {rep: {key: json}}
    for p in sorted(glob.glob(os.path.join(d, "json", "*.json"))):
        j = json.load(open(p))
        m = LABEL.match(j.get("label", ""))
        if m:
            runs[(int(m["c"]), m["u"])].setdefault(int(m["r"]), {})[m["key"]] = j
    return runs


def rng(xs, nd=2):
    xs = sorted(xs)
    return f"{statistics.median(xs):.{nd}f} ({xs[0]:.{nd}f}-{xs[-1]:.{nd}f})" if xs else "-"


def main(d):
    print("| conns | unique | server | req/s (median) | p99 us (median) | req/s vs null | p99 vs null | req/s vs greygate |")
    print("|--:|--:|---|--:|--:|--:|--:|--:|")
    for (c, u), reps in sorted(load(d).items(), key=lambda kv: (-float(kv[0][1]), kv[0][0])):
        keys = sorted({k for r in reps.values() for k in r}, key=lambda k: (k != "null", k != "ext", k))
        for key in keys:
            rows = [r[key] for r in reps.values() if key in r]
            rps = statistics.median(x["rps"] for x in rows)
            p99 = statistics.median(x["latency"]["p99_us"] for x in rows)
            vs_null = [r[key]["rps"] / r["null"]["rps"] for r in reps.values() if key in r and "null" in r]
            p99_null = [r[key]["latency"]["p99_us"] / r["null"]["latency"]["p99_us"] for r in reps.values() if key in r and "null" in r]
            vs_gg = [r[key]["rps"] / r["ext"]["rps"] for r in reps.values() if key in r and "ext" in r]
            name = "greygate" if key == "ext" else key
            print(f"| {c} | {u} | {name} | {rps:,.0f} | {p99:,.0f} | {rng(vs_null)} | {rng(p99_null)} | {rng(vs_gg)} |")


if __name__ == "__main__":
    main(sys.argv[1])
