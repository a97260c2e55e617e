#!/bin/sh
# The worker image's entrypoint: `comfyver serve` with the environment RunPod
# injects (RUNPOD_WEBHOOK_GET_JOB & co. select the RunPod worker mode; without
# them the local job API listens on COMFYVER_LISTEN, here 0.0.0.0:8000 by
# default). The default version comes from COMFYVER_VERSION_ID (or the first
# argument); cache, versions and homes default to the network volume.
set -eu
export COMFYVER_LISTEN="${COMFYVER_LISTEN:-0.0.0.0:8000}"
exec comfyver serve "$@"
