#!/usr/bin/env bash
# Version switches through `comfyver serve`, in one run on the stand-in
# ComfyUI: jobs alternating between two versions (`bench`, `bench2`) sent to
# `/runsync` of a worker with `--warm 2` (a switch to a warm version: `/free`
# to the idle one, then the job) and of a worker with `--warm 1` (every switch
# stops one ComfyUI and starts the other), against jobs on one version (no
# switch) in the same run. Also the resident memory of the idle, freed
# ComfyUI next to the active one (the stand-in holds no model: on real
# ComfyUI this is where /free shows).
#
# Usage: bench/switch.sh [COMFYVER_BIN]
#   COMFYVER_BIN defaults to <target>/release/comfyver (built if missing).
#   RUNS (default 21: switches per worker, each followed by a job without one), NODES (default 5), KEEP=1 keeps
#   the work dir.
# Prints a table of medians and the ratio. Not a test: times belong in
# benchmarks. Needs git, python3 and uv.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${COMFYVER_BIN:-}}"
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="${CARGO_TARGET_DIR:-$here/target}/release/comfyver"
fi
NODES="${NODES:-5}"
MODELS="${MODELS:-2}"
MODEL_KB="${MODEL_KB:-64}"
BIG_MB="${BIG_MB:-1}"
RUNS="${RUNS:-21}"
for tool in git python3 uv; do
  command -v "$tool" >/dev/null || { echo "bench/switch.sh needs $tool" >&2; exit 2; }
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
echo "realizing both versions once..." >&2
for v in bench bench2; do
  cv "$cache" realize "$v" --wheels-dir "$work/wheels" >/dev/null
done

echo "timing $RUNS switches per worker..." >&2
python3 - "$RUNS" "$bin" "$cache" "$work" <<'PY'
import json, socket, statistics, subprocess, sys, time, urllib.request

runs, binary, cache, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
job = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
       "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def call(port, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

def worker(warm):
    port = free_port()
    log = open(f"{work}/serve-warm{warm}.log", "w")
    p = subprocess.Popen([binary, "--cache-dir", cache, "--versions-dir", f"{work}/versions",
                          "serve", "bench", "--wheels-dir", f"{work}/wheels",
                          "--listen", f"127.0.0.1:{port}", "--warm", str(warm),
                          "--warm-min-free-mb", "0"],
                         stdout=subprocess.DEVNULL, stderr=log)
    until = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5)
            break
        except Exception:
            if p.poll() is not None or time.time() > until:
                sys.exit(f"FAIL: the --warm {warm} worker never got ready; see {work}/serve-warm{warm}.log")
            time.sleep(0.05)
    return p, port

def timed(port, version):
    t0 = time.perf_counter()
    r = call(port, "/runsync", {"input": {"workflow": job, "version_id": version}})
    if r.get("status") != "COMPLETED":
        sys.exit(f"FAIL: a job on {version}: {r}")
    return (time.perf_counter() - t0) * 1000

def switches(port):
    """Pairs of jobs on one version, the version alternating between pairs:
    the first job of a pair follows a switch, the second does not (so drift
    hits both alike)."""
    # First job of each version (a start for both workers), not timed.
    for v in ("bench2", "bench"):
        timed(port, v)
    switched, same = [], []
    for i in range(runs):
        v = "bench2" if i % 2 == 0 else "bench"
        switched.append(timed(port, v))
        same.append(timed(port, v))
    return switched, same

figures = {}
memory = None
for warm in (2, 1):
    p, port = worker(warm)
    try:
        figures[warm], figures[f"same{warm}"] = switches(port)
        health = call(port, "/health")
        figures[f"starts{warm}"] = health["comfyui"]["starts"]
        if warm == 2:
            pool = {e["state"]: e["pid"] for e in health["comfyui"]["warm"]}
            memory = (rss_mb(pool["active"]), rss_mb(pool["ready"]))
    finally:
        p.terminate()
        p.wait(timeout=60)

warm2, warm1 = statistics.median(figures[2]), statistics.median(figures[1])
same = statistics.median(figures["same2"])
print(f"| figure (median of {runs} jobs) | time | ComfyUI starts in all |")
print("|---|---|---|")
print(f"| job on the version of the job before, no switch (`--warm 2`, baseline) | {same:.1f} ms | |")
print(f"| job after a switch to a warm version (`--warm 2`) | {warm2:.1f} ms | {figures['starts2']} |")
print(f"| job after a switch with a start (`--warm 1`) | {warm1:.1f} ms | {figures['starts1']} |")
print(f"| switch with a start / switch to a warm version | {warm1 / warm2:.1f}x | |")
print(f"| switch to a warm version - no switch | {warm2 - same:+.1f} ms | |")
print()
print(f"resident memory (VmRSS) with --warm 2: active ComfyUI {memory[0]:.0f} MB, idle after /free {memory[1]:.0f} MB")
PY
