#!/usr/bin/env bash
# Regression benchmark of the warm path: `comfyver realize` of a version that
# is already realized must stay within LIMIT (default 1.5) times `comfyver
# --version` (process start-up of the same binary) and stat-only: no child
# process, no network, no file read beyond the spec, the lock, the stamp and
# the model store's index (so nothing is hashed).
#
# Usage: bench/warm.sh [COMFYVER_BIN]
#   COMFYVER_BIN defaults to <target>/release/comfyver (built if missing).
#   NODES (default 20), MODELS (default 20), MODEL_KB (default 256),
#   BIG_MB (default 1), RUNS (default 101: pairs of runs, interleaved),
#   LIMIT (default 1.5), KEEP=1 keeps the work dir.
# Prints the figures; exits 1, saying why, when the ratio is above LIMIT or
# the warm run did more than stat. Not a test: times belong in benchmarks.
# Needs git, python3, uv and strace.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${COMFYVER_BIN:-}}"
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="${CARGO_TARGET_DIR:-$here/target}/release/comfyver"
fi
NODES="${NODES:-20}"
MODELS="${MODELS:-20}"
MODEL_KB="${MODEL_KB:-256}"
BIG_MB="${BIG_MB:-1}"
RUNS="${RUNS:-101}"
LIMIT="${LIMIT:-1.5}"
for tool in git python3 uv strace; do
  command -v "$tool" >/dev/null || { echo "bench/warm.sh needs $tool" >&2; exit 2; }
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
warm=(realize bench --wheels-dir "$work/wheels")
run_warm=("$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q "${warm[@]}")
[[ "$(cv "$cache" --json "${warm[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["warm"])')" == True ]] ||
  { echo "FAIL: the second realize did not take the warm path" >&2; exit 1; }

echo "timing $RUNS interleaved pairs..." >&2
# One python process runs both commands alternately (the same fork+exec+wait
# overhead for each, and the machine's load shared fairly between them).
read -r version_t warm_t ratio < <(python3 - "$RUNS" "$bin" -- "${run_warm[@]}" <<'EOF'
import statistics, subprocess, sys, time
runs, base = int(sys.argv[1]), [sys.argv[2], "--version"]
cmd = sys.argv[sys.argv.index("--") + 1:]
a, b = [], []
for _ in range(runs):
    for out, c in ((a, base), (b, cmd)):
        t = time.perf_counter()
        subprocess.run(c, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
va, vb = statistics.median(a), statistics.median(b)
print(f"{va:.6f} {vb:.6f} {vb / va:.3f}")
EOF
)

echo "tracing one warm run..." >&2
strace -f -qq -e trace=execve,connect,openat,open -o "$work/trace.txt" "${run_warm[@]}" >/dev/null
execs=$(grep -c 'execve(' "$work/trace.txt" || true)
connects=$(grep -c 'connect(' "$work/trace.txt" || true)
# Files the warm run opened, besides shared libraries and the kernel's own.
opened=$(grep -E 'open(at)?\(' "$work/trace.txt" | grep -v ENOENT | grep -o '"[^"]*"' | tr -d '"' |
  grep -v -E '\.so(\.[0-9]+)*$|^/proc/|^/sys/|^/etc/|^/dev/' || true)
unexpected=$(printf '%s\n' "$opened" | grep -v -E "^$work/versions/bench\.json$|/resolved/bench\.lock\.json$|/\.comfyver/realized\.json$|/models/\.comfyver/index\.json$|^$" || true)

ms() { printf '%.2f ms' "$(echo "$1 * 1000" | bc -l)"; }
echo
echo "warm path of $NODES nodes + $MODELS models (release build, $(nproc) cores, median of $RUNS)"
echo "  comfyver --version   $(ms "$version_t")"
echo "  comfyver realize     $(ms "$warm_t")  (warm)"
echo "  ratio                ${ratio}x  (limit ${LIMIT}x)"
echo "  one warm run: $execs execve (itself), $connects connect, $(printf '%s\n' "$opened" | grep -c . || true) files opened"

status=0
if (( $(echo "$ratio > $LIMIT" | bc -l) )); then
  echo "FAIL: the warm path takes ${ratio}x comfyver --version, above the limit of ${LIMIT}x" >&2
  status=1
fi
if [[ "$execs" -ne 1 ]]; then
  echo "FAIL: the warm run started $((execs - 1)) child process(es):" >&2
  grep 'execve(' "$work/trace.txt" | tail -n +2 >&2
  status=1
fi
if [[ "$connects" -ne 0 ]]; then
  echo "FAIL: the warm run made $connects connect() call(s)" >&2
  status=1
fi
if [[ -n "$unexpected" ]]; then
  echo "FAIL: the warm run opened files beyond the spec, lock, stamp and store index:" >&2
  printf '%s\n' "$unexpected" | sed 's/^/  /' >&2
  status=1
fi
[[ $status -eq 0 ]] && echo "OK: within ${LIMIT}x and stat-only"
exit $status
