#!/usr/bin/env bash
# The main job (README "Run the main job"): build comfyver, realize the bundled
# example version (real ComfyUI from its public repository, two node packs, one
# small model, CPU torch) and run the bundled smoke workflow on it (no model, no
# GPU). The outputs land in ./out/example; the JSON result is printed.
#
# Machines that cannot reach the public git hosts: point the version at local
# mirrors with URL rewrite rules, and skip the model download, e.g.
#   COMFYVER_URL_REWRITES="https://github.com/=file:///srv/mirrors/" \
#     bash scripts/run-example.sh --skip-models
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo build --release --locked -p comfyver
bin=target/release/comfyver
"$bin" validate example
"$bin" run example --workflow workflows/smoke.json --output dir:out/example "$@"
