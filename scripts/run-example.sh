#!/usr/bin/env bash
# The main job (README "Run the main job"): build comfyver, then resolve and realize the bundled
# example version. Steps that are not built yet are skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo build --release --locked -p comfyver
bin=target/release/comfyver
"$bin" validate example
if "$bin" help resolve >/dev/null 2>&1; then "$bin" resolve example; fi
if "$bin" help nodes >/dev/null 2>&1; then "$bin" nodes fetch example; fi
if "$bin" help models >/dev/null 2>&1; then "$bin" models fetch example; fi
"$bin" show example
