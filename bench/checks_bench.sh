#!/usr/bin/env bash
# checks_bench.sh - greygate's policy throughput with the sender checks on
# against the same binary with them off, measured back to back in one run.
#
#   off: greygate's default config, greylist.delay = 1s (as policy_bench.sh)
#   on:  the same plus SPF, reverse DNS, HELO, two DNSBL zones and one
#        DNSWL zone; DNS from `testdns` (the test suite's DNS server as a
#        process) on 127.0.0.1:$DNS_PORT: every TXT question gets
#        "v=spf1 ip4:198.18.0.0/15 ip6:2001:db8::/32 -all" (so SPF passes
#        for every policyload client and the SPF-domain key is used),
#        everything else is NXDOMAIN (no PTR, not listed).
#
# Each server is started fresh (empty store, cold DNS cache) for every
# run, by PID, and stopped by PID. The ratio on/off is taken per
# repetition. Knobs: REPS [3], CONNS [32], RATIOS ["1.0 0.1"], N [100000],
# SEED [42], DNS_PORT [10053], PORT [10051], OUT [results/checks-<time>].
set -u -o pipefail
BENCH=$(dirname "$(readlink -f "$0")")
ROOT=$(dirname "$BENCH")
. "$BENCH/lib.sh"
REPS=${REPS:-3} CONNS=${CONNS:-32} RATIOS=${RATIOS:-"1.0 0.1"} N=${N:-100000} SEED=${SEED:-42}
DNS_PORT=${DNS_PORT:-10053} PORT=${PORT:-10051}
OUT=${OUT:-$BENCH/results/checks-$(date +%Y%m%d-%H%M%S)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet -p greygate -p greygate-testkit --bin greygate --bin testdns) \
        || { echo "cannot build greygate/testdns" >&2; exit 1; }
fi
# policyload builds itself into bench/target (not our CARGO_TARGET_DIR).
policyload_run() { env -u CARGO_TARGET_DIR "$BENCH/policyload" "$@"; }
policyload_run --help >/dev/null 2>&1 || true
WORK=${WORK_DISK:-/var/tmp/checksbench}
mkdir -p "$OUT/json" "$WORK"
trap stop_all_started EXIT

for variant in off on; do
    cat > "$WORK/$variant.toml" <<CONF
[store]
path = "$WORK/$variant/greygate.db"
[greylist]
delay = "1s"
hostname = "mx.bench"
[policy]
listen = ["127.0.0.1:$PORT"]
[log]
level = "info"
CONF
done
cat >> "$WORK/on.toml" <<CONF
[dns]
nameservers = ["127.0.0.1:$DNS_PORT"]
timeout = "1s"
[checks.spf]
enabled = true
[checks.rdns]
enabled = true
[checks.helo]
enabled = true
[[checks.dnsbl]]
zone = "bl1.bench"
weight = 5
[[checks.dnsbl]]
zone = "bl2.bench"
weight = 3
[[checks.dnswl]]
zone = "wl.bench"
CONF

"$TARGET/release/testdns" "$DNS_PORT" "v=spf1 ip4:198.18.0.0/15 ip6:2001:db8::/32 -all" > "$OUT/testdns.log" 2>&1 &
DNS_PID=$!
remember_pid $DNS_PID
sleep 0.3
is_alive $DNS_PID || { echo "testdns did not start (port $DNS_PORT busy?)" >&2; exit 1; }
{ echo "rustc: $(rustc --version)"; echo "REPS=$REPS CONNS=$CONNS RATIOS='$RATIOS' N=$N SEED=$SEED"; echo "loadavg at start: $(cat /proc/loadavg)"; } | tee "$OUT/env.txt"

for rep in $(seq 1 "$REPS"); do
    for u in $RATIOS; do
        for c in $CONNS; do
            for variant in off on; do
                rm -rf "$WORK/$variant"
                "$TARGET/release/greygate" --config "$WORK/$variant.toml" serve 2> "$OUT/$variant-r$rep.log" &
                pid=$!
                remember_pid $pid
                wait_listen $pid "$PORT" || exit 1
                label="$variant-c$c-u$u-r$rep"
                prefill=()
                [ "$u" != "1.0" ] && prefill=(--prefill 20000 --prefill-wait 2)
                policyload_run --host 127.0.0.1 --port "$PORT" --connections "$c" --requests "$N" \
                    --unique-ratio "$u" --seed $((SEED + rep - 1)) "${prefill[@]}" --server-pid $pid \
                    --label "$label" --json "$OUT/json/$label.json" --quiet | tee "$OUT/$label.txt"
                stop_pid $pid
            done
        done
    done
done
stop_pid $DNS_PID
python3 - "$OUT" <<'PY' | tee "$OUT/ratios.md"
import glob, json, os, statistics, sys
from collections import defaultdict
runs = defaultdict(dict)
for p in glob.glob(os.path.join(sys.argv[1], "json", "*.json")):
    j = json.load(open(p))
    v, c, u, r = j["label"].split("-")
    runs[(c[1:], u[1:])].setdefault(r, {})[v] = j
def med(xs): xs = sorted(xs); return xs and f"{statistics.median(xs):.2f} ({xs[0]:.2f}-{xs[-1]:.2f})"
print("| conns | unique | checks | req/s (median) | p50 us | p99 us (median) | req/s on/off | p99 on/off | errors |")
print("|--:|--:|---|--:|--:|--:|--:|--:|--:|")
for (c, u), reps in sorted(runs.items(), key=lambda kv: (-float(kv[0][1]), int(kv[0][0]))):
    for v in ("off", "on"):
        rows = [r[v] for r in reps.values() if v in r]
        both = [r for r in reps.values() if "on" in r and "off" in r]
        rr = med([r["on"]["rps"] / r["off"]["rps"] for r in both]) if v == "on" else "1.00"
        pr = med([r["on"]["latency"]["p99_us"] / r["off"]["latency"]["p99_us"] for r in both]) if v == "on" else "1.00"
        print(f"| {c} | {u} | {v} | {statistics.median(x['rps'] for x in rows):,.0f} | "
              f"{statistics.median(x['latency']['p50_us'] for x in rows):,.0f} | "
              f"{statistics.median(x['latency']['p99_us'] for x in rows):,.0f} | {rr} | {pr} | "
              f"{sum(x['errors']['total'] for x in rows)} |")
PY
