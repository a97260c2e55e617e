#!/usr/bin/env bash
# Model download throughput: comfyver-models (streamed to disk with on-the-fly
# BLAKE3 and a verified rename) against curl, both fetching the same 1 GiB
# file from a local static server (python3 -m http.server) on loopback.
# Prints each run and the ratio ours/curl (goal: >= 0.9). Ours also fsyncs
# the file before renaming it into place (curl does not); a `sync` before each
# timed run keeps one run's writeback out of the next one's time.
#
#   bash bench/models.sh            # 1 GiB, 3 rounds
#   SIZE_MB=256 ROUNDS=5 bash bench/models.sh
#
# Uses its own release build (CARGO_TARGET_DIR defaults to target/bench-models).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-models}

cargo build --release -q -p comfyver-models --example fetch
BIN="$CARGO_TARGET_DIR/release/examples/fetch"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom > "$work/www/model.bin"
expected=$("$BIN" --blake3 "$work/www/model.bin")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$port/model.bin" && break
  sleep 0.1
done
url="http://127.0.0.1:$port/model.bin"
bytes=$((SIZE_MB * 1024 * 1024))

ratios=()
for round in $(seq "$ROUNDS"); do
  rm -rf "$work/store" "$work/curl.out" "$work/curl2.out"
  sync  # no dirty pages of an earlier run are flushed during a timed run
  t_curl=$(curl -sf -o "$work/curl.out" -w '%{time_total}' "$url")
  rm -f "$work/curl.out"
  sync
  # curl with the same durability as ours: fsync the file before it counts.
  s0=$(date +%s.%N)
  curl -sf -o "$work/curl2.out" "$url" && sync "$work/curl2.out"
  t_curl_sync=$(echo "$(date +%s.%N) - $s0" | bc -l)
  rm -f "$work/curl2.out"
  sync
  read -r t_ours got < <("$BIN" "$url" "$work/store" "$expected")
  [ "$got" = "$bytes" ] || { echo "size mismatch: $got != $bytes" >&2; exit 1; }
  ratio=$(echo "$t_curl / $t_ours" | bc -l)
  ratios+=("$ratio")
  printf 'round %s: curl %6.3f s (%6.1f MiB/s)  curl+fsync %6.3f s (%6.1f MiB/s)  comfyver %6.3f s (%6.1f MiB/s, BLAKE3 verified, fsynced)  ratio %.2f\n' \
    "$round" "$t_curl" "$(echo "$SIZE_MB / $t_curl" | bc -l)" \
    "$t_curl_sync" "$(echo "$SIZE_MB / $t_curl_sync" | bc -l)" \
    "$t_ours" "$(echo "$SIZE_MB / $t_ours" | bc -l)" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
printf 'median ratio comfyver/curl: %.2f (goal >= 0.9)\n' "$median"
