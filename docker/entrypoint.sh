#!/usr/bin/env bash
# Container entrypoint of the comfyver worker image.
#
# - With no arguments (or only flags): `comfyver serve [VERSION_ID] [flags]`.
#   When RUNPOD_WEBHOOK_GET_JOB is set, serve runs as a RunPod serverless
#   worker; otherwise it serves the local job API on COMFYVER_LISTEN
#   (default 0.0.0.0:8000).
# - With a comfyver command as first argument (`realize v1`, `list`, ...):
#   that command, with the same volume defaults (e.g. to pre-warm a volume).
#
# Environment:
#   COMFYVER_VERSION_ID  version served when a job names none
#   COMFYVER_LISTEN      address of the local job API (not in worker mode)
#   COMFYVER_VOLUME      network volume mount point (default /runpod-volume)
#   COMFY_CACHE          cache root (default $COMFYVER_VOLUME/.comfy-cache)
#   COMFY_VERSIONS_DIR   version specs (default $COMFYVER_VOLUME/versions)
#   COMFYVER_BIN         the comfyver binary (default: comfyver on PATH)
set -euo pipefail

volume="${COMFYVER_VOLUME:-/runpod-volume}"
if [ -d "$volume" ]; then
  export COMFY_CACHE="${COMFY_CACHE:-$volume/.comfy-cache}"
  export COMFY_VERSIONS_DIR="${COMFY_VERSIONS_DIR:-$volume/versions}"
fi
bin="${COMFYVER_BIN:-comfyver}"

# A first argument that is not a flag is a comfyver command of its own.
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$bin" "$@"
fi

args=(serve)
if [ -n "${COMFYVER_VERSION_ID:-}" ]; then
  args+=("$COMFYVER_VERSION_ID")
fi
if [ -z "${RUNPOD_WEBHOOK_GET_JOB:-}" ]; then
  args+=(--listen "${COMFYVER_LISTEN:-0.0.0.0:8000}")
fi
exec "$bin" "${args[@]}" "$@"
