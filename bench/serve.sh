#!/usr/bin/env bash
# A warm job through the worker's `/runsync` against the same job through a
# bare client of ComfyUI's API (`POST /prompt`, websocket, `/history`,
# `/view`), in one run on the stand-in ComfyUI
# (crates/cli/benches/serve_bare.rs). The worker should stay within LIMIT ms
# (default 3) of the bare client's median.
#
# Usage: bench/serve.sh            (release build: the bench profile)
#        PROFILE=dev bench/serve.sh (the debug build the tests use)
# Prints the figures; exits 1 when the worker is more than LIMIT ms slower.
# Needs python3 (the stand-in ComfyUI).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
LIMIT="${LIMIT:-3}"
profile=()
[[ -n "${PROFILE:-}" ]] && profile=(--profile "$PROFILE")
out="$(cd "$here" && cargo bench -q -p comfyver --bench serve_bare "${profile[@]}" 2>/dev/null)"
echo "$out"
extra="$(echo "$out" | sed -n 's/^worker - bare: \(.*\) ms$/\1/p')"
if awk -v e="$extra" -v l="$LIMIT" 'BEGIN { exit !(e > l) }'; then
  echo "the worker is ${extra} ms slower than the bare client (limit ${LIMIT} ms)" >&2
  exit 1
fi
