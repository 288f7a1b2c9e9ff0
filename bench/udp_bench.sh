#!/usr/bin/env bash
# udp_bench.sh - greygate's qmail UDP front end against a null UDP responder
# (the ceiling), measured in one run, with ratios per repetition.
#
# Rows, each started fresh for every repetition and stopped before the next:
#   null        null_udp_responder: answers 01 03 without reading
#   greygate    `greygate serve` with [qmail] mode = "greygate" (its default
#               config otherwise: SQLite on disk, /24 keys, lists, rules)
#   greydaemon  `greygate greydaemon 127.0.0.1:PORT savefile`, the drop-in
#               command line (greydaemon mode, exact-address keys, SQLite
#               next to the save file)
# greygate logs one line per decision to a file, as in production.
#
# Knobs (environment):
#   REPS [3]  CLIENTS [32]  RECIPIENTS [2]  UNIQUE ["1.0 0.1"]
#   N [200000] datagrams per run   VARIANTS ["null greygate greydaemon"]
#   GREYGATE  greygate binary [target/release/greygate, built if missing]
#   WORK_DISK [/var/tmp/udpbench]  OUT [bench/results/udp-DATE]
set -u -o pipefail
BENCH=$(dirname "$(readlink -f "$0")")
ROOT=$(dirname "$BENCH")
# shellcheck source=lib.sh
. "$BENCH/lib.sh"
trap stop_all_started EXIT INT TERM
GREYGATE=${GREYGATE:-$ROOT/target/release/greygate}
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet -p greygate) || { echo "cannot build greygate" >&2; exit 1; }
fi
(unset CARGO_TARGET_DIR; "$BENCH/udpload" --help >/dev/null 2>&1; "$BENCH/null_udp_responder" --help >/dev/null 2>&1) || true
REPS=${REPS:-3} CLIENTS=${CLIENTS:-32} RECIPIENTS=${RECIPIENTS:-2} N=${N:-200000}
UNIQUE=${UNIQUE:-"1.0 0.1"} VARIANTS=${VARIANTS:-"null greygate greydaemon"}
WORK_DISK=${WORK_DISK:-/var/tmp/udpbench}
OUT=${OUT:-$BENCH/results/udp-$(date +%Y%m%d-%H%M%S)}
PORT=${PORT:-10061}
mkdir -p "$OUT/json" "$OUT/logs" "$WORK_DISK"

udp_bound() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q "127.0.0.1:$1"; }

start() { # variant logfile -> sets PID
    local v=$1 log=$2
    rm -rf "${WORK_DISK:?}/$v"
    mkdir -p "$WORK_DISK/$v"
    case $v in
        null) "$BENCH/null_udp_responder" --listen "127.0.0.1:$PORT" >"$log" 2>&1 & ;;
        greygate)
            cat >"$WORK_DISK/$v/greygate.toml" <<CONF
[store]
path = "$WORK_DISK/$v/greygate.db"
[greylist]
delay = "1s"
[policy]
listen = []
[qmail]
listen = ["127.0.0.1:$PORT"]
mode = "greygate"
CONF
            "$GREYGATE" --config "$WORK_DISK/$v/greygate.toml" serve >"$log" 2>&1 & ;;
        greydaemon) "$GREYGATE" greydaemon -m 0.02 "127.0.0.1:$PORT" "$WORK_DISK/$v/grey.save" >"$log" 2>&1 & ;;
        *) echo "unknown variant $v" >&2; return 1 ;;
    esac
    PID=$!
    remember_pid "$PID"
    for _ in $(seq 1 100); do
        udp_bound "$PORT" && return 0
        is_alive "$PID" || break
        sleep 0.1
    done
    echo "  $v did not bind 127.0.0.1:$PORT (log $log)" >&2
    return 1
}

for rep in $(seq 1 "$REPS"); do
    for u in $UNIQUE; do
        for v in $VARIANTS; do
            label="$v-u$u-r$rep"
            start "$v" "$OUT/logs/$label.server.txt" || exit 1
            (unset CARGO_TARGET_DIR; "$BENCH/udpload" --target "127.0.0.1:$PORT" --clients "$CLIENTS" \
                --recipients "$RECIPIENTS" --unique "$u" --requests "$N" --label "$label") \
                >"$OUT/json/$label.json" 2>"$OUT/logs/$label.load.txt"
            stop_pid "$PID" 20
            echo "  $(cat "$OUT/json/$label.json")"
        done
    done
done
python3 "$BENCH/udp_ratios.py" "$OUT" | tee "$OUT/ratios.md"
