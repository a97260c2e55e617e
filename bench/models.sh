#!/usr/bin/env bash
# Model download throughput: comfyver-models (verified with BLAKE3, fsynced,
# renamed into place) against curl, fetching the same file on loopback, in
# the same run. Cases (CASES, default all four):
#
#   plain   1 GiB from python3 -m http.server, unthrottled (the disk is the
#           limit): ratio curl/ours, goal >= 0.9, and curl followed by an
#           fsync of its file (the same durability) over ours, goal >= 1.5
#           (see docs/performance.md).
#   conn    a server that limits each connection (as CDNs do; testkit's
#           server, PER_CONN_MIB/s per connection, default 32) and a
#           THROTTLED_MB file (default 256): ours uses 8 ranged connections,
#           curl one stream. Goal >= 3x.
#   link    the same server limited to LINK_MIB/s for all connections
#           together (default 200; the network is the bottleneck), a
#           LINK_FILE_MB file (default 512). Goal >= 0.95x.
#   resume  the conn server: ours is SIGKILLed after KILL_AFTER seconds
#           (default 0.5), then run again; the server's byte counts must
#           show that exactly the missing bytes were sent again.
#
# A `sync` before each timed run keeps one run's writeback out of the next.
#
#   bash bench/models.sh
#   CASES="conn link" ROUNDS=5 bash bench/models.sh
#
# Uses its own release build (CARGO_TARGET_DIR defaults to target/bench-models).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/median.sh
source bench/lib/median.sh
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-plain conn link resume}
PER_CONN_MIB=${PER_CONN_MIB:-32}
THROTTLED_MB=${THROTTLED_MB:-256}
LINK_MIB=${LINK_MIB:-200}
LINK_FILE_MB=${LINK_FILE_MB:-512}
KILL_AFTER=${KILL_AFTER:-0.5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-models}

cargo build --release -q -p comfyver-models --example fetch -p comfyver-testkit --example http_serve
BIN="$CARGO_TARGET_DIR/release/examples/fetch"
SERVE="$CARGO_TARGET_DIR/release/examples/http_serve"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT


# Starts testkit's server on $1 with extra flags; sets $url and $server_pid.
start_serve() {
  local file=$1; shift
  rm -f "$work/serve.url"
  "$SERVE" "$file" "$@" > "$work/serve.url" &
  server_pid=$!
  for _ in $(seq 100); do [ -s "$work/serve.url" ] && break; sleep 0.05; done
  url=$(cat "$work/serve.url")
}
stop_serve() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# Times curl and ours against $url for $1 MiB; prints the rounds and the median.
compare() {
  local label=$1 mb=$2 goal=$3 expected=$4
  local ratios=()
  for round in $(seq "$ROUNDS"); do
    rm -rf "$work/store" "$work/curl.out"
    sync
    t_curl=$(curl -sf -o "$work/curl.out" -w '%{time_total}' "$url")
    rm -f "$work/curl.out"
    sync
    read -r t_ours got < <("$BIN" "$url" "$work/store" "$expected")
    [ "$got" = "$((mb * 1024 * 1024))" ] || { echo "size mismatch: $got" >&2; exit 1; }
    ratio=$(echo "$t_curl / $t_ours" | bc -l)
    ratios+=("$ratio")
    printf '%s round %s: curl %6.3f s (%6.1f MiB/s)  comfyver %6.3f s (%6.1f MiB/s, verified, fsynced)  ratio %.2f\n' \
      "$label" "$round" "$t_curl" "$(echo "$mb / $t_curl" | bc -l)" "$t_ours" "$(echo "$mb / $t_ours" | bc -l)" "$ratio"
  done
  printf '%s median ratio curl/comfyver: %.2f (goal >= %s)\n' "$label" "$(median "${ratios[@]}")" "$goal"
}

if [[ " $CASES " == *" plain "* ]]; then
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

ratios=() sync_ratios=()
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
  sync_ratio=$(echo "$t_curl_sync / $t_ours" | bc -l)
  sync_ratios+=("$sync_ratio")
  printf 'round %s: curl %6.3f s (%6.1f MiB/s)  curl+fsync %6.3f s (%6.1f MiB/s)  comfyver %6.3f s (%6.1f MiB/s, BLAKE3 verified, fsynced)  ratio %.2f, %.2f to curl+fsync\n' \
    "$round" "$t_curl" "$(echo "$SIZE_MB / $t_curl" | bc -l)" \
    "$t_curl_sync" "$(echo "$SIZE_MB / $t_curl_sync" | bc -l)" \
    "$t_ours" "$(echo "$SIZE_MB / $t_ours" | bc -l)" "$ratio" "$sync_ratio"
done
printf 'median ratio curl/comfyver: %.2f (goal >= 0.9)\n' "$(median "${ratios[@]}")"
printf 'median ratio curl+fsync/comfyver: %.2f (goal >= 1.5: the same durability)\n' "$(median "${sync_ratios[@]}")"
kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=
fi

if [[ " $CASES " == *" conn "* || " $CASES " == *" resume "* ]]; then
  head -c "$((THROTTLED_MB * 1024 * 1024))" /dev/urandom > "$work/throttled.bin"
  t_expected=$("$BIN" --blake3 "$work/throttled.bin")
fi

if [[ " $CASES " == *" conn "* ]]; then
  start_serve "$work/throttled.bin" --per-connection "$((PER_CONN_MIB * 1024 * 1024))"
  echo "conn: $THROTTLED_MB MiB, each connection limited to $PER_CONN_MIB MiB/s"
  compare conn "$THROTTLED_MB" 3 "$t_expected"
  stop_serve
fi

if [[ " $CASES " == *" link "* ]]; then
  head -c "$((LINK_FILE_MB * 1024 * 1024))" /dev/urandom > "$work/link.bin"
  l_expected=$("$BIN" --blake3 "$work/link.bin")
  start_serve "$work/link.bin" --total "$((LINK_MIB * 1024 * 1024))"
  echo "link: $LINK_FILE_MB MiB, all connections together limited to $LINK_MIB MiB/s"
  compare link "$LINK_FILE_MB" 0.95 "$l_expected"
  rm -f "$work/link.bin"
  stop_serve
fi

if [[ " $CASES " == *" resume "* ]]; then
  start_serve "$work/throttled.bin" --per-connection "$((PER_CONN_MIB * 1024 * 1024))" --stats "$work/stats"
  rm -rf "$work/store"
  "$BIN" "$url" "$work/store" "$t_expected" > /dev/null &
  pid=$!
  sleep "$KILL_AFTER"
  kill -9 "$pid" 2>/dev/null || { echo "resume: the download ended before the kill; lower KILL_AFTER" >&2; exit 1; }
  wait "$pid" 2>/dev/null || true
  sleep 0.5
  sent_before=$(cat "$work/stats")
  recorded=$(python3 -c 'import glob, json, sys
s = json.load(open(glob.glob(sys.argv[1] + "/models/.comfyver/partial/*.json")[0]))
print(sum(c["done"] for c in s["chunks"]))' "$work/store")
  "$BIN" "$url" "$work/store" "$t_expected" > /dev/null
  sleep 0.5
  sent_after=$(cat "$work/stats")
  total=$((THROTTLED_MB * 1024 * 1024))
  resent=$((sent_after - sent_before))
  missing=$((total - recorded))
  printf 'resume: killed after %s s with %d of %d bytes recorded; the rerun was sent %d bytes, %d were missing\n' \
    "$KILL_AFTER" "$recorded" "$total" "$resent" "$missing"
  if [ "$resent" -ne "$missing" ]; then echo "resume: FAILED (bytes sent again != missing bytes)"; exit 1; fi
  echo "resume: ok (only the missing bytes of each chunk were sent again)"
  stop_serve
fi
