#!/usr/bin/env bash
# How fast one `tailbeat consume` drains a fleet's frames (README, "Scale, by simulation").
#
#   bench/consume_scale.sh AGENTS FRAMES_PER_AGENT LINES_PER_FRAME [LINE_BYTES]
#
# Mosquitto on loopback (max_queued_messages 0; max_inflight_messages $INFLIGHT, default 20
# as Mosquitto's: at most that many messages in flight to the consumer, so in one of its
# batches). The consumer connects once (its persistent session and QoS 1
# subscriptions), stops; examples/frame_pub publishes AGENTS streams of frames, which wait
# in the consumer's session; the consumer starts again and is timed until its saved marks
# (the snapshot `marks` and the journal `marks.journal`, where there is one) have every
# stream at its last seq (polled every 0.1 s). Prints the consumer's wall time,
# CPU (user + system, from /proc) and the broker's CPU meanwhile. Output to a directory
# (--out DIR: fsync before every PUBACK), under $TMPDIR.
# Needs: cargo build --release --features consume --bin tailbeat --example frame_pub
set -euo pipefail
cd "$(dirname "$0")/.."
agents=$1 frames=$2 lines=$3 line_bytes=${4:-200}
port=${PORT:-18833}
bin=${BIN:-target/release/tailbeat}   # BIN=another build, to compare
dir=$(mktemp -d)
trap 'kill $mpid 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $dir" || rm -rf "$dir"' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages %s\n' "$port" "${INFLIGHT:-20}" > "$dir/mosquitto.conf"
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosq" -c "$dir/mosquitto.conf" 2> "$dir/mosquitto.log" &
mpid=$!
sleep 0.5
consume() { exec "$bin" consume --broker "mqtt://127.0.0.1:$port" --client-id bench --out "$dir/out" --state "$dir/state" 2>> "$dir/consume.log"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # clock ticks, 1/100 s
consume & cpid=$!
sleep 1
kill -TERM $cpid; wait $cpid || true
target/release/examples/frame_pub --broker "127.0.0.1:$port" --agents "$agents" --frames "$frames" --lines "$lines" --line-bytes "$line_bytes"
m0=$(cpu $mpid)
t0=$(date +%s.%N)
consume & cpid=$!
# Streams at the last seq: counted in the snapshot and the journal (a stream reaches it once,
# so in one of them, but a compaction between the two reads may count it twice: a count that
# reaches $agents is checked again, exactly, by stream name).
at_last() {
  cat "$dir/state/marks" "$dir/state/marks.journal" 2>/dev/null |
    awk -v f="$frames" -v exact="$1" '$1 == f && NF == 3 {if (exact) s[$3] = 1; else n++} END {if (exact) for (k in s) n++; print n + 0}'
}
while [ "$(at_last 0)" -lt "$agents" ] || [ "$(at_last 1)" -lt "$agents" ]; do
  sleep 0.1
done
t1=$(date +%s.%N)
c=$(cpu $cpid); m1=$(cpu $mpid)
kill -TERM $cpid; wait $cpid || true
grep stopped "$dir/consume.log" | tail -n 1
awk -v t0="$t0" -v t1="$t1" -v c="$c" -v m="$((m1 - m0))" -v n="$((agents * frames))" -v l="$lines" 'BEGIN {
  w = t1 - t0; printf "consume: %d frames, %d lines in %.2f s: %.0f frames/s, %.0f lines/s; CPU %.2f s (%.0f%% of a core), %.2f CPU-s per million lines, %.1f per million frames; mosquitto CPU %.2f s\n",
    n, n * l, w, n / w, n * l / w, c / 100, c / w, c / 100 / (n * l) * 1e6, c / 100 / n * 1e6, m / 100 }'
