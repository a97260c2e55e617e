# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034  # here, work and bin come from the script that sources this; server_pid is read there
# A benchmark version, shared by bench/realize.sh and bench/warm.sh: a core
# (the stand-in ComfyUI), NODES node packs as git repositories over file://,
# MODELS models served by `python3 -m http.server` on loopback, wheels in a
# local --wheels-dir (one of BIG_MB MiB standing in for torch) and an empty
# local index, so nothing leaves the machine. Two specs, `bench` and
# `bench2`, with the same nodes and models.
#
# Source it after setting: here (repo root), work (an empty directory),
# NODES, MODELS, MODEL_KB, BIG_MB (CORE_FILES and CORE_KB are optional).
# It sets server_pid (kill it on exit) and defines `cv CACHE ARGS...` and `median RUNS COMMAND...`.

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
unset COMFY_CACHE COMFY_VERSIONS_DIR COMFY_HOME COMFYVER_OFFLINE COMFYVER_WHEELS_DIR \
  MODELS_DIR CUSTOM_NODES_CACHE UV VIRTUAL_ENV || true
# comfyver runs uv several times, and uv looks for a Python on PATH; a pyenv
# shim in front of either costs about 0.3 s per call (bash scripts), which
# would be measured as comfyver's time. The real interpreter's directory goes
# first on PATH, and UV names the real uv.
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
UV="$(command -v uv)"
if [[ "$UV" == */shims/* ]] && command -v pyenv >/dev/null; then UV="$(pyenv which uv)"; fi
export PATH UV

echo "building the core, $NODES node repositories, $MODELS models, wheels..." >&2
mkdir -p "$work/srv" "$work/build" "$work/models" "$work/wheels" "$work/index" "$work/versions"
# shellcheck source=bench/lib/serve-repo.sh
source "$here/bench/lib/serve-repo.sh"
core="$work/build/ComfyUI"
cp -r "$here/crates/testkit/fixtures/fake-comfyui" "$core"
find "$core" -name __pycache__ -prune -exec rm -rf {} +
# Padded to the size of a real ComfyUI checkout (about 1,000 files, 30 MB),
# so copying a core or sharing it shows in time and disk.
mkdir -p "$core/comfy/padding"
python3 - "$core/comfy/padding" "${CORE_FILES:-1000}" "${CORE_KB:-30}" <<'PY'
import base64, os, sys
out, files, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    with open(os.path.join(out, f"module{i}.py"), "w") as f:
        f.write('DATA = "' + base64.b64encode(os.urandom(kb * 768)).decode() + '"\n')
PY
git init -q -b main "$core" && serve_repo "$core" ComfyUI
for i in $(seq 1 "$NODES"); do
  w="$work/build/node$i"
  mkdir -p "$w/nodes"
  git init -q -b main "$w"
  echo "NODE_CLASS_MAPPINGS = {}" > "$w/__init__.py"
  for f in $(seq 1 20); do head -c 3000 /dev/urandom | base64 > "$w/nodes/file$f.py"; done
  echo "benchdep$((i % 5))" > "$w/requirements.txt"
  [[ $i -eq 1 ]] && echo "bigdep" >> "$w/requirements.txt"
  serve_repo "$w" "node$i"
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

