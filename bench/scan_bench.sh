#!/usr/bin/env bash
# scan_bench.sh - the SMTP proxy with content scanning on against off, in
# one run: greygate -> smtp-sink, with real clamd (a one-signature test
# database, as in the tests) and spamd (--local, 2 children).
#
# Modes: off (no scanning), clamd, clamd+spamd (thresholds only: the
# message streams), clamd+spamd+tag (the message is held for the tags);
# and each scanner asked directly about the same message (its own time,
# the floor for what it can add).
# For each: messages/s with smtp-source (SESSIONS sessions, many messages
# per session) and the latency of one message (final dot -> 250) over one
# session with scan_latency.py; then the ratios against "off".
#
# Knobs: REPS [3], SESSIONS [8], MSGS [2000], MSGS_spamd [400], LAT_N [200],
#        SIZE [4096], GREYGATE [target/release/greygate, built unless
#        SKIP_BUILD], OUT [bench/results/scan-DATE]. Loopback only; every
#        process is stopped by PID.
# Note: clamd's real databases (freshclam) make each scan slower than the
# one-signature test database; the clamd rows are a floor for the cost.
set -u -o pipefail
BENCH=$(dirname "$(readlink -f "$0")")
ROOT=$(dirname "$BENCH")
. "$BENCH/lib.sh"
GREYGATE=${GREYGATE:-$ROOT/target/release/greygate}
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet -p greygate) || { echo "cannot build greygate" >&2; exit 1; }
fi
REPS=${REPS:-3} SESSIONS=${SESSIONS:-8} MSGS=${MSGS:-2000} MSGS_spamd=${MSGS_spamd:-400} LAT_N=${LAT_N:-200} SIZE=${SIZE:-4096}
OUT=${OUT:-$BENCH/results/scan-$(date +%Y%m%d-%H%M%S)}
W=$(mktemp -d /var/tmp/scanbench.XXXXXX)
mkdir -p "$OUT" "$W/clamdb" "$W/tmp"
trap 'stop_all_started; rm -rf "$W"' EXIT
SINK=2536 GG=2538 CLAMD=2539 SPAMD=2540
for p in $SINK $GG $CLAMD $SPAMD; do port_in_use $p && { echo "port $p is in use" >&2; exit 1; }; done

echo 'Eicar-Test-Custom:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a' > "$W/clamdb/custom.ndb"
cat > "$W/clamd.conf" <<CONF
Foreground yes
DatabaseDirectory $W/clamdb
TCPSocket $CLAMD
TCPAddr 127.0.0.1
TemporaryDirectory $W/tmp
LogFile $W/clamd.log
StreamMaxLength 30M
CONF
clamd --config-file="$W/clamd.conf" > /dev/null 2>&1 &
remember_pid $!; CLAMD_PID=$!
spamd --local -x --max-children 2 --syslog=stderr --listen=127.0.0.1:$SPAMD --pidfile="$W/spamd.pid" 2> "$W/spamd.log" &
remember_pid $!
smtp-sink -u nobody "127.0.0.1:$SINK" 1024 > /dev/null 2>&1 &
remember_pid $!
wait_listen $CLAMD_PID $CLAMD 60 || exit 1
for i in $(seq 1 600); do port_in_use $SPAMD && port_in_use $SINK && break; sleep 0.1; done

config() { # mode -> config file
    local f="$W/$1.toml"
    cat > "$f" <<CONF
[store]
path = "$W/$1.db"
[policy]
listen = []
[proxy]
listen = ["127.0.0.1:$GG"]
upstream = ["127.0.0.1:$SINK"]
relay_domains = ["bench.example"]
max_sessions_per_ip = 1000
CONF
    case $1 in
        clamd) printf '[scan.clamd]\naddress = "127.0.0.1:%s"\n' $CLAMD >> "$f" ;;
        clamd+spamd) printf '[scan.clamd]\naddress = "127.0.0.1:%s"\n[scan.spamd]\naddress = "127.0.0.1:%s"\nreject_score = 15.0\ntag = false\n' $CLAMD $SPAMD >> "$f" ;;
        clamd+spamd+tag) printf '[scan.clamd]\naddress = "127.0.0.1:%s"\n[scan.spamd]\naddress = "127.0.0.1:%s"\nreject_score = 15.0\n' $CLAMD $SPAMD >> "$f" ;;
    esac
    echo "$f"
}

printf 'rep\tmode\tmessages\tmsgs_per_s\tlat_n\tp50_ms\tp90_ms\tp99_ms\tmean_ms\n' | tee "$OUT/scan.tsv"
for rep in $(seq 1 "$REPS"); do
    for mode in off clamd clamd+spamd clamd+spamd+tag; do
        conf=$(config $mode)
        rm -f "$W/$mode.db"*
        "$GREYGATE" --config "$conf" serve >> "$OUT/greygate-$mode.log" 2>&1 &
        gpid=$!; remember_pid $gpid
        wait_listen $gpid $GG 30 || exit 1
        n=$MSGS; case $mode in *spamd*) n=$MSGS_spamd ;; esac
        start=$(now_s)
        if smtp-source -d -s "$SESSIONS" -m "$n" -l "$SIZE" -f sender@client.bench.example -t rcpt@bench.example \
               -M client.bench.example "127.0.0.1:$GG" > "$W/src.log" 2>&1; then
            rate=$(python3 -c "print(round($n/($(now_s)-$start)))")
        else
            rate=FAILED
        fi
        lat=$(python3 "$BENCH/scan_latency.py" 127.0.0.1 $GG "$LAT_N" "$SIZE" 2>"$W/lat.err" || echo "FAILED")
        printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$mode" "$n" "$rate" "$lat" | tee -a "$OUT/scan.tsv"
        stop_pid $gpid 10
    done
    # The scanners alone, asked directly about the same message: the
    # floor for what each can add.
    for scanner in clamd spamd; do
        port=$CLAMD; [ $scanner = spamd ] && port=$SPAMD
        lat=$(python3 "$BENCH/scanner_latency.py" $scanner $port "$LAT_N" "$SIZE" 2>"$W/lat.err" || echo "FAILED")
        printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$scanner-alone" "-" "-" "$lat" | tee -a "$OUT/scan.tsv"
    done
done
python3 - "$OUT/scan.tsv" <<'PY' | tee "$OUT/ratios.md"
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
by = {}
for r in rows:
    if len(r) < 9 or "FAILED" in r:
        continue
    rate = float(r[3]) if r[3] != "-" else float("nan")
    by.setdefault(r[0], {})[r[1]] = (rate, float(r[5]), float(r[7]))
modes = ["off", "clamd", "clamd+spamd", "clamd+spamd+tag", "clamd-alone", "spamd-alone"]
print("| mode | msgs/s (median) | vs off | p50 ms | p99 ms | added p50 ms vs off |")
print("|---|--:|--:|--:|--:|--:|")
for m in modes:
    vals = [(v[m], v["off"]) for v in by.values() if m in v and "off" in v]
    if not vals:
        continue
    rate = statistics.median(x[0][0] for x in vals)
    ratio = statistics.median(x[0][0] / x[1][0] for x in vals)
    p50 = statistics.median(x[0][1] for x in vals)
    p99 = statistics.median(x[0][2] for x in vals)
    added = statistics.median(x[0][1] - x[1][1] for x in vals)
    if rate != rate:  # a scanner asked directly: latency only
        print(f"| {m} | | | {p50:.2f} | {p99:.2f} | |")
        continue
    print(f"| {m} | {rate:,.0f} | {ratio:.2f} | {p50:.2f} | {p99:.2f} | {added:+.2f} |")
PY
grep -h '"scan"\|message="scan"\| scan ' "$OUT"/greygate-*.log | grep -c "action=deliver" | sed 's/^/scan lines with action=deliver: /'
