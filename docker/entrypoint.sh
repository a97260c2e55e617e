#!/bin/sh
# Container entrypoint of the comfyver worker image (POSIX sh).
#
# - `comfyver serve [ARGS...]` with the container's arguments (a version id
#   and/or serve flags). When RUNPOD_WEBHOOK_GET_JOB is set, serve runs as a
#   RunPod serverless worker; otherwise it serves the local job API on
#   COMFYVER_LISTEN (default 0.0.0.0:8000). The default version is
#   COMFYVER_VERSION_ID when no argument names one.
# - `comfyver <command> ...` as the arguments (`comfyver realize v1`): that
#   command instead, with the same volume defaults (e.g. to pre-warm a volume).
#
# Environment:
#   COMFYVER_VERSION_ID  version served when a job names none
#   COMFYVER_LISTEN      address of the local job API (not in worker mode)
#   COMFYVER_API_KEY     the key the local job API requires (Authorization:
#                        Bearer <key>); without one, serve refuses to listen on
#                        the default 0.0.0.0:8000 unless COMFYVER_NO_AUTH=1
#   COMFYVER_MAX_QUEUE   queued jobs at most (default 8; beyond: 429)
#   COMFYVER_VERSIONS    the only versions jobs may name (comma-separated)
#   COMFYVER_VOLUME      network volume mount point (default /runpod-volume)
#   COMFY_CACHE          cache root (default $COMFYVER_VOLUME/.comfy-cache)
#   COMFY_VERSIONS_DIR   version specs (default $COMFYVER_VOLUME/versions)
#   COMFYVER_BIN         the comfyver binary (default: comfyver on PATH)
set -eu

volume="${COMFYVER_VOLUME:-/runpod-volume}"
if [ -d "$volume" ]; then
  COMFY_CACHE="${COMFY_CACHE:-$volume/.comfy-cache}"
  COMFY_VERSIONS_DIR="${COMFY_VERSIONS_DIR:-$volume/versions}"
  export COMFY_CACHE COMFY_VERSIONS_DIR
fi
bin="${COMFYVER_BIN:-comfyver}"

if [ "$#" -gt 0 ] && [ "$1" = "comfyver" ]; then
  shift
  exec "$bin" "$@"
fi

# The local job API's address, unless in worker mode or given as a flag.
listen=""
if [ -z "${RUNPOD_WEBHOOK_GET_JOB:-}" ]; then
  listen="${COMFYVER_LISTEN:-0.0.0.0:8000}"
fi
for arg in "$@"; do
  case "$arg" in
    --listen | --listen=*) listen="" ;;
  esac
done
# A version given as the first argument wins over COMFYVER_VERSION_ID.
version="${COMFYVER_VERSION_ID:-}"
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  version="$1"
  shift
fi
if [ -n "$listen" ]; then
  set -- --listen "$listen" "$@"
fi
if [ -n "$version" ]; then
  set -- "$version" "$@"
fi
exec "$bin" serve "$@"
