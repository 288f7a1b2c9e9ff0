#!/usr/bin/env bash
# store_bench.sh - greygate's Postfix policy server on each store backend
# (SQLite, Redis, PostgreSQL), measured in one run, interleaved per
# repetition, with the ratios against SQLite per repetition (store_ratios.py).
#
# Every run starts greygate fresh on an empty store (a private key prefix
# on the Redis server, a private schema on the PostgreSQL server, a fresh
# SQLite file on disk), runs policyload against it, then stops it and
# deletes the state. The shared servers themselves are never restarted.
#
# Knobs (environment):
#   BACKENDS  ["sqlite redis postgres"]     REPS ["3"]
#   CONNS     ["32"]   RATIOS ["1.0 0.1"]   N ["100000"] requests per run
#   REDIS_URL ["redis://127.0.0.1:6379/"]
#   PG_URL    ["host=127.0.0.1 port=5432 user=postgres dbname=test"]
#   GREYGATE  greygate binary [$CARGO_TARGET_DIR or target/release/greygate]
#   OUT       result directory [bench/results/store-DATE]
set -u -o pipefail
BENCH=$(dirname "$(readlink -f "$0")")
ROOT=$(dirname "$BENCH")
. "$BENCH/lib.sh"
GREYGATE=${GREYGATE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/greygate}
[ -x "$GREYGATE" ] || { echo "build greygate first: cargo build --release -p greygate" >&2; exit 1; }
# policyload builds itself into bench/target.
unset CARGO_TARGET_DIR
BACKENDS=${BACKENDS:-"sqlite redis postgres"}
REPS=${REPS:-3} CONNS=${CONNS:-32} RATIOS=${RATIOS:-"1.0 0.1"} N=${N:-100000} SEED=${SEED:-1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/}
PG_URL=${PG_URL:-host=127.0.0.1 port=5432 user=postgres dbname=test}
PORT=${PORT:-10051}
WORK=${WORK:-/var/tmp/storebench.$$}
OUT=${OUT:-$BENCH/results/store-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK" "$OUT/json" "$OUT/logs"
PREFIX="storebench:$$:"
SCHEMA="storebench_$$"
trap 'stop_all_started; reset_state; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

reset_state() {
    rm -rf "$WORK/sqlite"
    redis-cli -u "$REDIS_URL" EVAL "local c='0' repeat local r=redis.call('SCAN',c,'MATCH',ARGV[1],'COUNT',1000) c=r[1] for _,k in ipairs(r[2]) do redis.call('DEL',k) end until c=='0'" 0 "$PREFIX*" >/dev/null
    psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
}

config() {
    local backend=$1 conf=$WORK/$backend.toml
    {
        echo "[store]"
        case $backend in
            sqlite) echo "path = \"$WORK/sqlite/greygate.db\"" ;;
            redis) printf 'backend = "redis"\n[store.redis]\nurl = "%s"\nprefix = "%s"\n' "$REDIS_URL" "$PREFIX" ;;
            postgres) printf 'backend = "postgres"\n[store.postgres]\nurl = "%s"\nschema = "%s"\npool_size = 16\n' "$PG_URL" "$SCHEMA" ;;
        esac
        printf '[greylist]\ndelay = "1s"\n[policy]\nlisten = ["127.0.0.1:%s"]\n[log]\nlevel = "warn"\n' "$PORT"
    } > "$conf"
    echo "$conf"
}

echo "settings: BACKENDS='$BACKENDS' REPS=$REPS CONNS='$CONNS' RATIOS='$RATIOS' N=$N GREYGATE=$GREYGATE" | tee "$OUT/settings.txt"
for rep in $(seq 1 "$REPS"); do
    for conns in $CONNS; do
        for ratio in $RATIOS; do
            for backend in $BACKENDS; do
                label="$backend-c$conns-u$ratio-r$rep"
                reset_state
                conf=$(config "$backend")
                port_in_use "$PORT" && { echo "port $PORT in use" >&2; exit 1; }
                "$GREYGATE" --config "$conf" serve > "$OUT/logs/$label.server.log" 2>&1 &
                pid=$!
                remember_pid "$pid"
                wait_listen "$pid" "$PORT" 60 || { tail -5 "$OUT/logs/$label.server.log" >&2; exit 1; }
                prefill=()
                [ "$ratio" != "1.0" ] && prefill=(--prefill $((N / 2)) --prefill-wait 1.5)
                "$BENCH/policyload" --host 127.0.0.1 --port "$PORT" --connections "$conns" --requests "$N" \
                    --unique-ratio "$ratio" --seed $((SEED + rep)) "${prefill[@]}" --server-pid "$pid" \
                    --json "$OUT/json/$label.json" --label "$label" > "$OUT/logs/$label.txt" 2>&1
                rc=$?
                echo "$label: $(grep -E '^SUMMARY' "$OUT/logs/$label.txt")"
                [ $rc -eq 0 ] || echo "    policyload exit code $rc (see $OUT/logs/$label.txt)"
                stop_pid "$pid"
            done
        done
    done
done
python3 "$BENCH/store_ratios.py" "$OUT" | tee "$OUT/ratios.md"
