#!/usr/bin/env bash
# What Landlock confinement costs: `comfyver run` of a realized version (the
# stand-in ComfyUI, NODES node packs, MODELS models), confined (`--confine
# required`) and not (`--confine off`), interleaved in one run. Reports the
# medians of ComfyUI's start (spawn → ready, the figure `run -v` prints) and
# of a whole warm run (start, one job, stop).
#
# Usage: bench/confine.sh [COMFYVER_BIN]
#   COMFYVER_BIN defaults to <target>/release/comfyver (built if missing).
#   NODES (default 20), MODELS (default 5), MODEL_KB (default 64),
#   BIG_MB (default 1), RUNS (default 15 pairs), KEEP=1 keeps the work dir.
# Needs git, python3 and uv, and a kernel with Landlock.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${COMFYVER_BIN:-}}"
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="${CARGO_TARGET_DIR:-$here/target}/release/comfyver"
fi
NODES="${NODES:-20}"
MODELS="${MODELS:-5}"
MODEL_KB="${MODEL_KB:-64}"
BIG_MB="${BIG_MB:-1}"
RUNS="${RUNS:-15}"
for tool in git python3 uv; do
  command -v "$tool" >/dev/null || { echo "bench/confine.sh needs $tool" >&2; exit 2; }
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
echo "realizing the version once..." >&2
cv "$cache" realize bench --wheels-dir "$work/wheels" >/dev/null
cat >"$work/job.json" <<'JSON'
{"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}
JSON

echo "timing $RUNS interleaved pairs..." >&2
python3 - "$RUNS" "$bin" "$cache" "$work" <<'PY'
import re, statistics, subprocess, sys, time
runs, binary, cache, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
figures = {"required": ([], []), "off": ([], [])}
ready = re.compile(r"spawn→ready ([0-9.]+)(ms|s|µs)")
unit = {"ms": 1.0, "s": 1000.0, "µs": 0.001}
for _ in range(runs):
    for mode in ("off", "required"):
        cmd = [binary, "--cache-dir", cache, "--versions-dir", f"{work}/versions", "-v", "--json",
               "run", "bench", "--wheels-dir", f"{work}/wheels", "--workflow", f"{work}/job.json",
               "--confine", mode]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        total = (time.perf_counter() - t0) * 1000
        if out.returncode != 0:
            sys.exit(f"FAIL: run --confine {mode}:\n{out.stderr}")
        m = ready.search(out.stderr)
        if not m:
            sys.exit(f"FAIL: no spawn→ready figure in:\n{out.stderr}")
        figures[mode][0].append(float(m.group(1)) * unit[m.group(2)])
        figures[mode][1].append(total)
print("| figure (median) | --confine off | --confine required | difference |")
print("|---|---|---|---|")
for i, name in enumerate(["ComfyUI start (spawn → ready)", "whole warm run (start, job, stop)"]):
    off, on = statistics.median(figures["off"][i]), statistics.median(figures["required"][i])
    print(f"| {name} | {off:.0f} ms | {on:.0f} ms | {on - off:+.0f} ms ({(on / off - 1) * 100:+.1f} %) |")
PY
