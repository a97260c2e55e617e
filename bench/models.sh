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

best_ours=999999
best_curl=999999
for round in $(seq "$ROUNDS"); do
  rm -rf "$work/store" "$work/curl.out"
  sync  # no dirty pages of an earlier run are flushed during a timed run
  t_curl=$(curl -sf -o "$work/curl.out" -w '%{time_total}' "$url")
  sync
  read -r t_ours got < <("$BIN" "$url" "$work/store" "$expected")
  [ "$got" = "$bytes" ] || { echo "size mismatch: $got != $bytes" >&2; exit 1; }
  printf 'round %s: curl %6.3f s (%7.1f MiB/s)   comfyver %6.3f s (%7.1f MiB/s, BLAKE3 verified)\n' \
    "$round" "$t_curl" "$(echo "$SIZE_MB / $t_curl" | bc -l)" "$t_ours" "$(echo "$SIZE_MB / $t_ours" | bc -l)"
  best_curl=$(echo "if ($t_curl < $best_curl) $t_curl else $best_curl" | bc -l)
  best_ours=$(echo "if ($t_ours < $best_ours) $t_ours else $best_ours" | bc -l)
done
ratio=$(echo "$best_curl / $best_ours" | bc -l)
printf 'best: curl %.1f MiB/s, comfyver %.1f MiB/s, ratio %.2f (goal >= 0.9)\n' \
  "$(echo "$SIZE_MB / $best_curl" | bc -l)" "$(echo "$SIZE_MB / $best_ours" | bc -l)" "$ratio"
