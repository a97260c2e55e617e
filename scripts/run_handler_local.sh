#!/usr/bin/env bash
# Runs one job through the local job API: starts `comfyver serve` on a free
# loopback port, posts the job to /runsync, prints the result JSON, stops serve.
#
# Usage: scripts/run_handler_local.sh --version-id ID (--workflow WF.json | --input JOB.json)
#                                     [--bin COMFYVER] [-- SERVE-ARGS...]
#   --workflow   an API-format workflow (wrapped as {"input": {"workflow": ...}})
#   --input      a whole job {"input": {"workflow", "images", ...}}
#   --bin        the comfyver binary (default: comfyver on PATH)
#   SERVE-ARGS   passed to `comfyver serve` (e.g. --gpu, --timeout 600)
# Exit status: 0 when the job COMPLETED, 1 otherwise (the result is printed either way).
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
version="" workflow="" input="" bin="comfyver"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --version-id) version="${2:?}"; shift 2 ;;
    --workflow) workflow="${2:?}"; shift 2 ;;
    --input) input="${2:?}"; shift 2 ;;
    --bin) bin="${2:?}"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[[ -n "$version" ]] || { echo "--version-id is required" >&2; usage; }
[[ -n "$workflow" || -n "$input" ]] || { echo "give --workflow or --input" >&2; usage; }
command -v curl >/dev/null || { echo "curl is required" >&2; exit 2; }

body="$(mktemp)"
serve_pid=""
cleanup() {
  if [[ -n "$serve_pid" ]] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  rm -f "$body"
}
trap cleanup EXIT

if [[ -n "$input" ]]; then
  cp "$input" "$body"
else
  python3 -c 'import json,sys; print(json.dumps({"input": {"workflow": json.load(open(sys.argv[1]))}}))' \
    "$workflow" > "$body"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Never the RunPod worker mode here, whatever the environment says.
env -u RUNPOD_WEBHOOK_GET_JOB "$bin" serve "$version" --listen "127.0.0.1:$port" "${extra[@]}" >&2 &
serve_pid=$!

# /health answers once the version is realized and its ComfyUI is ready.
until curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$port/health"; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    wait "$serve_pid" || true
    serve_pid=""
    echo "comfyver serve exited before it listened" >&2
    exit 1
  fi
  sleep 0.2
done

result="$(curl -sS --max-time 7200 -H 'Content-Type: application/json' \
  --data-binary @"$body" "http://127.0.0.1:$port/runsync")"
printf '%s\n' "$result"
status="$(printf '%s' "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status", ""))')"
[[ "$status" == "COMPLETED" ]]
