#!/usr/bin/env python3
"""Ratios of the UDP rows against the null responder, per repetition (same
machine state), as the median and the min-max range. usage: udp_ratios.py DIR
"""
import glob, json, os, re, statistics, sys
from collections import defaultdict

LABEL = re.compile(r"^(?P<v>[a-z]+)-u(?P<u>[0-9.]+)-r(?P<r>\d+)$")


def rng(xs, nd=2):
    xs = sorted(xs)
    return f"{statistics.median(xs):.{nd}f} ({xs[0]:.{nd}f}-{xs[-1]:.{nd}f})" if xs else "-"


def main(d):
    runs = defaultdict(dict)  # u -> rep -> v -> json
    for p in sorted(glob.glob(os.path.join(d, "json", "*.json"))):
        try:
            j = json.load(open(p))
        except ValueError:
            continue
        m = LABEL.match(j.get("label", ""))
        if m:
            runs[m["u"]].setdefault(int(m["r"]), {})[m["v"]] = j
    print("| unique | server | datagrams/s (median) | p50 µs | p99 µs | lost | datagrams/s vs null | p99 vs null |")
    print("|--:|---|--:|--:|--:|--:|--:|--:|")
    for u in sorted(runs, reverse=True):
        reps = runs[u]
        variants = sorted({v for r in reps.values() for v in r}, key=lambda v: (v != "null", v))
        for v in variants:
            rows = [r[v] for r in reps.values() if v in r]
            dps = statistics.median(x["dps"] for x in rows)
            p50 = statistics.median(x["p50_us"] for x in rows)
            p99 = statistics.median(x["p99_us"] for x in rows)
            lost = sum(x["lost"] for x in rows)
            rd = [r[v]["dps"] / r["null"]["dps"] for r in reps.values() if v in r and "null" in r]
            rp = [r[v]["p99_us"] / r["null"]["p99_us"] for r in reps.values() if v in r and "null" in r]
            print(f"| {u} | {v} | {dps:,.0f} | {p50:,.0f} | {p99:,.0f} | {lost} | {rng(rd)} | {rng(rp)} |")


if __name__ == "__main__":
    main(sys.argv[1])
