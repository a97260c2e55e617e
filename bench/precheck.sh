#!/usr/bin/env bash
# The pre-check's gain: the time from `comfyver run` to the error for a
# workflow the version cannot run (an unknown class), with the version's node
# index (refused before ComfyUI starts) and without it (ComfyUI starts and
# refuses the prompt). The index is removed before each run without it, so
# both sides realize through the warm path alike.
#
# Usage: bench/precheck.sh [COMFYVER_BIN]
#   COMFYVER_BIN defaults to <target>/release/comfyver (built if missing).
#   RUNS (default 5) runs of each, interleaved; KEEP=1 keeps the work dir.
# Prints the median of each and their ratio. Needs git, python3 and uv.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${COMFYVER_BIN:-}}"
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="${CARGO_TARGET_DIR:-$here/target}/release/comfyver"
fi
NODES="${NODES:-2}"
MODELS="${MODELS:-1}"
MODEL_KB="${MODEL_KB:-16}"
BIG_MB="${BIG_MB:-1}"
RUNS="${RUNS:-5}"
for tool in git python3 uv; do
  command -v "$tool" >/dev/null || { echo "bench/precheck.sh needs $tool" >&2; exit 2; }
done

work="$(mktemp -d)"
server_pid=""
# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  if [[ -n "${KEEP:-}" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# shellcheck source=bench/lib/version.sh
source "$here/bench/lib/version.sh"

cache="$work/cache"
index="$cache/versions/comfy-bench/.comfyver/node-index.json"
cat > "$work/good.json" <<'EOF'
{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}
EOF
cat > "$work/bad.json" <<'EOF'
{"1": {"class_type": "NoSuchNode", "inputs": {}},
 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}
EOF
echo "realizing and running the version once (records the node index)..." >&2
cv "$cache" run bench --wheels-dir "$work/wheels" --workflow "$work/good.json" >/dev/null
[[ -f "$index" ]] || { echo "FAIL: the first run recorded no node index" >&2; exit 1; }
cp "$index" "$work/index.json"

echo "timing $RUNS runs of each, interleaved..." >&2
read -r with_t without_t < <(python3 - "$RUNS" "$index" "$work/index.json" -- \
  "$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q --json \
  run bench --wheels-dir "$work/wheels" --workflow "$work/bad.json" <<'EOF'
import json, os, shutil, statistics, subprocess, sys, time
runs, index, saved = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cmd = sys.argv[sys.argv.index("--") + 1:]
def once(with_index):
    if with_index:
        shutil.copyfile(saved, index)
    elif os.path.exists(index):
        os.remove(index)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True)
    t = time.perf_counter() - t0
    kind = json.loads(out.stdout)["kind"]
    assert out.returncode != 0 and kind == "missing_node", (out.returncode, kind)
    return t
w, wo = [], []
for _ in range(runs):
    w.append(once(True))
    wo.append(once(False))
print(f"{statistics.median(w):.3f} {statistics.median(wo):.3f}")
EOF
)
printf 'run -> missing_node error, with the node index:    %6.3f s\n' "$with_t"
printf 'run -> missing_node error, without (ComfyUI start): %6.3f s\n' "$without_t"
python3 -c "import sys; print(f'ratio without / with: {float(sys.argv[2]) / float(sys.argv[1]):.1f}x')" "$with_t" "$without_t"
