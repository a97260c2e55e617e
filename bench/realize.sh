#!/usr/bin/env bash
# Benchmark: `comfyver realize` of a version with 20 node packs and 20 models,
# cold (empty cache) and warm (already realized), plus the disk a second
# version with the same nodes and models adds.
#
# Usage: bench/realize.sh [COMFYVER_BIN]
#   COMFYVER_BIN defaults to <target>/release/comfyver (built if missing).
#   NODES (default 20), MODELS (default 20), MODEL_KB (default 1024),
#   BIG_MB (default 64: one wheel with a payload standing in for torch),
#   RUNS (warm runs, default 51), COLD_RUNS (default 3), KEEP=1 keeps the work dir.
# Node packs are git repositories served over file://, models by
# `python3 -m http.server` on loopback, wheels from a local --wheels-dir
# (python.index_url is an empty local directory: nothing leaves the machine).
# Needs git, python3 and uv. Not a test: it only prints figures.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${COMFYVER_BIN:-}}"
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="${CARGO_TARGET_DIR:-$here/target}/release/comfyver"
fi
NODES="${NODES:-20}"
MODELS="${MODELS:-20}"
MODEL_KB="${MODEL_KB:-1024}"
BIG_MB="${BIG_MB:-64}"
RUNS="${RUNS:-51}"
COLD_RUNS="${COLD_RUNS:-3}"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  if [[ -n "${KEEP:-}" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# shellcheck source=bench/lib/version.sh
source "$here/bench/lib/version.sh"

echo "cold realize x$COLD_RUNS (empty cache each time)..." >&2
cold=()
for r in $(seq 1 "$COLD_RUNS"); do
  rm -rf "$work/cold$r"
  t=$(median 1 "$bin" --cache-dir "$work/cold$r" --versions-dir "$work/versions" -q \
      realize bench --wheels-dir "$work/wheels")
  cold+=("${t%% *}")
  [[ $r -gt 1 ]] && rm -rf "$work/cold$r"
done
cache="$work/cold1"
cv "$cache" verify bench >/dev/null

echo "warm realize x$RUNS and baselines..." >&2
true_t=$(median "$RUNS" true)
version_t=$(median "$RUNS" "$bin" --version)
warm_t=$(median "$RUNS" "$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q \
  realize bench --wheels-dir "$work/wheels")
inner=$(for _ in $(seq 1 15); do
  cv "$cache" --json realize bench --wheels-dir "$work/wheels" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'
done | sort -g | sed -n 8p)
warm_json=$(cv "$cache" --json realize bench --wheels-dir "$work/wheels")
syscalls=$(strace -f -c -o "$work/strace.txt" "$bin" --cache-dir "$cache" --versions-dir "$work/versions" \
  -q realize bench --wheels-dir "$work/wheels" >/dev/null && awk '$NF == "total" {print $4}' "$work/strace.txt")
opened=$(strace -f -e trace=openat,open -o "$work/open.txt" "$bin" --cache-dir "$cache" --versions-dir \
  "$work/versions" -q realize bench --wheels-dir "$work/wheels" >/dev/null && grep 'open' "$work/open.txt" | grep -v ENOENT | grep -vc '\.so\|/proc/\|/sys/\|/etc/')
children=$(strace -f -e trace=execve -o "$work/exec.txt" "$bin" --cache-dir "$cache" --versions-dir \
  "$work/versions" -q realize bench --wheels-dir "$work/wheels" >/dev/null && grep -c 'execve(' "$work/exec.txt")

echo "second version with the same nodes and models..." >&2
# Resolved first (its refs are the same, but it is a new version): the
# realize is what a second version on the same core costs.
r2=$(median 1 "$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q resolve bench2)
du_before=$(du -sk "$cache" | cut -f1)
t2=$(median 1 "$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q realize bench2 --wheels-dir "$work/wheels")
du_after=$(du -sk "$cache" | cut -f1)
venv1=$(du -sk "$cache/versions/comfy-bench/.venv" | cut -f1)
venv2_alone=$(du -sk "$cache/versions/comfy-bench2/.venv" | cut -f1)
# du counts each inode once per invocation: the second argument's share is
# what it adds beyond the first.
venv2_added=$(( $(du -skc "$cache/versions/comfy-bench/.venv" "$cache/versions/comfy-bench2/.venv" | tail -1 | cut -f1) - venv1 ))
home2_added=$(( $(du -skc "$cache/versions/comfy-bench" "$cache/versions/comfy-bench2" | tail -1 | cut -f1) - $(du -sk "$cache/versions/comfy-bench" | cut -f1) ))
nodes_kb=$(du -sk "$cache/custom_nodes" | cut -f1)
models_kb=$(du -sk "$cache/models" | cut -f1)

f() { printf '%.1f ms' "$(echo "$1 * 1000" | bc -l)"; }
cold_sorted=$(printf '%s\n' "${cold[@]}" | sort -g | tr '\n' ' ')
w=${warm_t%% *}
echo
echo "realize of $NODES nodes + $MODELS models of ${MODEL_KB} KiB + a ${BIG_MB} MiB wheel (release build, $(nproc) cores)"
echo "  process start: true                 $(f "${true_t%% *}") (median of $RUNS)"
echo "  process start: comfyver --version   $(f "${version_t%% *}")"
echo "  warm realize (whole process)        $(f "$w")  (min $(f "$(echo "$warm_t" | cut -d' ' -f2)"), max $(f "$(echo "$warm_t" | cut -d' ' -f3)"))"
echo "  warm realize (its own timer, json)  $(f "$inner") median; reports warm=$(echo "$warm_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["warm"])')"
echo "  warm realize: $children execve (itself only), $syscalls syscalls in all, $opened files opened besides libraries (spec, lock, stamp)"
echo "  warm - comfyver --version           $(f "$(echo "$w - ${version_t%% *}" | bc -l)")"
echo "  cold realize (empty cache)          $(for c in $cold_sorted; do printf '%s ' "$(f "$c")"; done)"
cold_median=$(printf '%s\n' "${cold[@]}" | sort -g | sed -n "$(( (COLD_RUNS + 1) / 2 ))p")
echo "  cold (median) / warm                $(echo "$cold_median / $w" | bc -l | xargs printf '%.0fx')"
echo "  second version (same core, nodes and models): resolve $(f "${r2%% *}"), realize $(f "${t2%% *}") (goal: 1000 ms)"
echo "disk"
echo "  node cache ${nodes_kb} KiB, model store ${models_kb} KiB, first venv ${venv1} KiB"
echo "  core checkout $(du -sk "$work/build/ComfyUI" --exclude=.git | cut -f1) KiB"
echo "  second version adds $((du_after - du_before)) KiB in all (goal: 5120 KiB; its home: ${home2_added} KiB)"
echo "  second venv: ${venv2_alone} KiB on its own, adds ${venv2_added} KiB ($(echo "100 * $venv2_added / $venv1" | bc -l | xargs printf '%.1f')% of the first)"
