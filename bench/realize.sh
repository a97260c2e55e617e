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

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
unset COMFY_CACHE COMFY_VERSIONS_DIR COMFY_HOME COMFYVER_OFFLINE COMFYVER_WHEELS_DIR \
  MODELS_DIR CUSTOM_NODES_CACHE UV VIRTUAL_ENV || true

echo "building the core, $NODES node repositories, $MODELS models, wheels..." >&2
mkdir -p "$work/srv" "$work/build" "$work/models" "$work/wheels" "$work/index" "$work/versions"
commit_repo() { # dir name
  git -C "$1" add -A && git -C "$1" commit -q -m "$2"
  git clone -q --bare "$1" "$work/srv/$2.git"
}
core="$work/build/ComfyUI"
cp -r "$here/crates/testkit/fixtures/fake-comfyui" "$core"
find "$core" -name __pycache__ -prune -exec rm -rf {} +
git init -q -b main "$core" && commit_repo "$core" ComfyUI
for i in $(seq 1 "$NODES"); do
  w="$work/build/node$i"
  mkdir -p "$w/nodes"
  git init -q -b main "$w"
  echo "NODE_CLASS_MAPPINGS = {}" > "$w/__init__.py"
  for f in $(seq 1 20); do head -c 3000 /dev/urandom | base64 > "$w/nodes/file$f.py"; done
  echo "benchdep$((i % 5))" > "$w/requirements.txt"
  [[ $i -eq 1 ]] && echo "bigdep" >> "$w/requirements.txt"
  commit_repo "$w" "node$i"
done
for i in $(seq 1 "$MODELS"); do
  head -c "$((MODEL_KB * 1024))" /dev/urandom > "$work/models/m$i.safetensors"
done

python3 - "$work/wheels" "$BIG_MB" <<'EOF'
import base64, hashlib, os, sys, zipfile
out, big_mb = sys.argv[1], int(sys.argv[2])
def wheel(name, payload=b""):
    info = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": b"__version__ = '1.0'\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    if payload:
        files[f"{name}/payload.bin"] = payload
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(os.path.join(out, f"{name}-1.0-py3-none-any.whl"), "w", zipfile.ZIP_STORED) as z:
        for p, d in files.items():
            z.writestr(p, d)
wheel("fakecomfydep")
for i in range(5):
    wheel(f"benchdep{i}")
wheel("bigdep", os.urandom(big_mb << 20))
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/models" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done

spec() { # id
  python3 - "$1" "$work" "$port" "$NODES" "$MODELS" <<'EOF'
import json, sys
vid, work, port, nodes, models = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
spec = {
    "schema_version": 2,
    "version_id": vid,
    "comfy": {"repo": f"file://{work}/srv/ComfyUI.git", "ref": "main"},
    "custom_nodes": [{"repo": f"file://{work}/srv/node{i}.git", "ref": "main", "name": f"node{i}"}
                     for i in range(1, nodes + 1)],
    "models": [{"source": f"http://127.0.0.1:{port}/m{i}.safetensors"} for i in range(1, models + 1)],
    "python": {"index_url": f"file://{work}/index"},
}
with open(f"{work}/versions/{vid}.json", "w") as f:
    json.dump(spec, f, indent=2)
EOF
}
spec bench
spec bench2

cv() { # cache, args...
  local cache="$1"
  shift
  "$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q "$@"
}

# Median wall time of a command over N runs, measured around fork+exec+wait
# by one python process (the same overhead for every command compared).
median() { # runs, command...
  python3 - "$@" <<'EOF'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.6f} {min(times):.6f} {max(times):.6f}")
EOF
}

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
echo "  second version, cold with warm caches: $(f "${t2%% *}")"
echo "disk"
echo "  node cache ${nodes_kb} KiB, model store ${models_kb} KiB, first venv ${venv1} KiB"
echo "  second version adds $((du_after - du_before)) KiB in all (its home incl. core checkout: ${home2_added} KiB)"
echo "  second venv: ${venv2_alone} KiB on its own, adds ${venv2_added} KiB ($(echo "100 * $venv2_added / $venv1" | bc -l | xargs printf '%.1f')% of the first)"
