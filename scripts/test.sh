#!/usr/bin/env bash
# The test command (README "Run the tests"): installs what the tests need on a
# fresh machine, then runs the format and lint checks and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== stand-in ComfyUI self-tests (python)"
python3 -m unittest discover -s crates/testkit/fixtures/fake-comfyui-tests -t crates/testkit/fixtures/fake-comfyui-tests
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole suite (the last cargo line is a doc-test
# run that may hold no test).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all: %d passed, %d failed\n", p, f }' "$log"
