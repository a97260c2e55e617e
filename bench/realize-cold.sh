#!/usr/bin/env bash
# Benchmark: cold `comfyver realize` against uv alone (issue 16, goal 1).
#
# Builds, at run time (nothing big is committed):
#   - a PEP 503 simple index of PKGS packages (default 80; most in two
#     versions, with dependencies between them and `<2` caps, so the resolver
#     backtracks), a few large wheels standing in for torch, opencv, scipy and
#     numpy (BIG_MB, default 160, for the largest), PEP 658 metadata files as
#     PyPI serves them; several hundred MB in all, served on loopback by
#     testkit's HTTP server (crates/testkit/examples/http_serve.rs) limited to
#     LINK_MIB MiB/s for all connections together (default 100) and
#     PER_CONN_MIB per connection (default 0: no limit);
#   - a core repository: the stand-in ComfyUI (crates/testkit/fixtures/
#     fake-comfyui) padded with CORE_FILES files (default 1100, ~25 KB each),
#     whose requirements.txt names the large packages and a part of the index;
#     3 node packs with their own requirements.txt; all served by `git daemon`
#     on loopback, with partial fetches allowed as forges allow them
#     (FILTER=0: refused, git's default), reached through a relay limiting
#     what it sends to GIT_MIB MiB/s (bench/lib/throttle.py; default 0: no
#     relay, as fast as the disk allows), as from a forge.
# Then ROUNDS times (default 5), each from empty caches (a fresh cache dir and
# UV_CACHE_DIR on the same filesystem; the sides in an order that changes
# from round to round (each first, second and last as often over six
# rounds); before each command, `settle`
# (bench/lib/settle.sh) waits for the machine's I/O to be quiet):
#   uv alone   `uv venv` + `uv pip install -r <core + nodes requirements>`
#   fresh      `comfyver realize` (resolution of the git refs and the Python set)
#   replay     `comfyver realize` on another empty cache from the lock the
#              fresh run wrote (the recorded Python set installed exactly)
# and prints each time, the ratio of each to uv alone (median over rounds,
# and the best time of each side over the best of uv alone's),
# and checks that the fresh home, the replayed home and uv alone hold exactly
# the same package set (the script fails otherwise).
#
# Everything (index, repositories, caches, homes) lives in one work dir made
# with mktemp: TMPDIR=/dev/shm/<dir> puts it on a tmpfs, where a VM disk's
# drift (uv alone 4 s in one round, 7 s a few rounds later) does not drown
# the sides' difference; the summary names the work dir's filesystem.
#
# Usage: bench/realize-cold.sh [COMFYVER_BIN]   (KEEP=1 keeps the work dir;
#        BASELINE_BIN=<another comfyver> also times that one in each round)
# Needs git, python3, uv and a Rust toolchain. Not a test: it prints figures.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib/settle.sh
source "$here/bench/lib/settle.sh"
# shellcheck source=bench/lib/median.sh
source "$here/bench/lib/median.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
bin="${1:-${COMFYVER_BIN:-}}"
(cd "$here" && cargo build --release -q -p comfyver-testkit --example http_serve)
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="$CARGO_TARGET_DIR/release/comfyver"
fi
serve="$CARGO_TARGET_DIR/release/examples/http_serve"
# Another comfyver build (e.g. of the commit before a change), timed in the
# same rounds for a before/after figure.
base="${BASELINE_BIN:-}"
PKGS="${PKGS:-80}"
BIG_MB="${BIG_MB:-160}"
LINK_MIB="${LINK_MIB:-100}"
PER_CONN_MIB="${PER_CONN_MIB:-0}"
GIT_MIB="${GIT_MIB:-0}"
CORE_FILES="${CORE_FILES:-1100}"
ROUNDS="${ROUNDS:-5}"
# The real uv and the real interpreter first on PATH, not a version
# manager's shims (bash scripts costing about 0.3 s per call, which a
# production machine does not have); both sides use the same binary and PATH.
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
export PATH
uv_bin="${UV:-$(command -v uv)}"
if command -v pyenv >/dev/null 2>&1 && pyenv which uv >/dev/null 2>&1; then
  uv_bin="$(pyenv which uv)"
fi
export UV="$uv_bin"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "${KEEP:-}" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
unset COMFY_CACHE COMFY_VERSIONS_DIR COMFY_HOME COMFYVER_OFFLINE COMFYVER_WHEELS_DIR \
  MODELS_DIR CUSTOM_NODES_CACHE VIRTUAL_ENV UV_CACHE_DIR UV_INDEX_URL UV_EXTRA_INDEX_URL || true

echo "building the index ($PKGS packages), the core ($CORE_FILES files) and 3 node packs..." >&2
mkdir -p "$work/srv" "$work/build" "$work/www" "$work/versions"
python3 - "$work" "$PKGS" "$BIG_MB" <<'EOF'
import base64, hashlib, os, random, sys, zipfile
work, n, big_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(16)
www = os.path.join(work, "www")
files_dir = os.path.join(www, "files")
os.makedirs(files_dir)

def b64(d):
    return base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()

def wheel(name, version, requires, payload_bytes, nfiles):
    mod = name.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{mod}/__init__.py": f"__version__ = '{version}'\n".encode()}
    for i in range(nfiles):
        files[f"{mod}/sub{i % 16}/m{i}.py"] = base64.b64encode(os.urandom(rng.randint(300, 3000)))
    if payload_bytes:
        files[f"{mod}/_native.so"] = os.urandom(payload_bytes)
    files[f"{info}/METADATA"] = meta.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{p},sha256={b64(d)},{len(d)}" for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    fname = f"{mod}-{version}-py3-none-any.whl"
    path = os.path.join(files_dir, fname)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for p, d in files.items():
            z.writestr(p, d)
    with open(path + ".metadata", "wb") as f:
        f.write(meta.encode())
    with open(path, "rb") as f:
        whl_sha = hashlib.sha256(f.read()).hexdigest()
    return fname, whl_sha, hashlib.sha256(meta.encode()).hexdigest()

# Large stand-ins first: (name, MiB, files); each one version.
bigs = [("cvb-torch", big_mb, 2500), ("cvb-opencv", max(big_mb * 3 // 8, 1), 300),
        ("cvb-scipy", max(big_mb // 4, 1), 800), ("cvb-numpy", max(big_mb // 8, 1), 400)]
smalls = [f"cvb-pkg-{i:02d}" for i in range(n - len(bigs))]
index = {}
for name, mb, nf in bigs:
    deps = ["cvb-numpy>=1.0"] if name != "cvb-numpy" else []
    index[name] = [(("1.0",) + wheel(name, "1.0", deps, mb << 20, nf))]
for i, name in enumerate(smalls):
    later = smalls[i + 1:]
    deps = [f"{d}<2" if rng.random() < 0.25 else f"{d}>=1.0"
            for d in rng.sample(later, min(len(later), rng.randint(0, 3)))]
    if rng.random() < 0.2:
        deps.append("cvb-numpy>=1.0")
    size = rng.randint(100, 3000) << 10
    nf = rng.randint(10, 60)
    index[name] = [(v,) + wheel(name, v, deps, size, nf) for v in ("1.0", "2.0")]
simple = os.path.join(www, "simple")
os.makedirs(simple)
with open(os.path.join(simple, "index.html"), "w") as f:
    f.write("<!DOCTYPE html><html><body>\n")
    f.write("".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(index)))
    f.write("</body></html>\n")
for p, rels in index.items():
    os.makedirs(os.path.join(simple, p))
    with open(os.path.join(simple, p, "index.html"), "w") as f:
        f.write(f"<!DOCTYPE html><html><body><h1>Links for {p}</h1>\n")
        for _v, fname, sha, msha in rels:
            f.write(f'<a href="../../files/{fname}#sha256={sha}" '
                    f'data-dist-info-metadata="sha256={msha}" data-core-metadata="sha256={msha}">'
                    f"{fname}</a>\n")
        f.write("</body></html>\n")
# Requirements: the core names the large ones and a third of the small ones;
# each pack a few more, some capped.
top = smalls[: len(smalls) // 2]
rng.shuffle(top)
core = ["cvb-torch>=1.0", "cvb-numpy", "cvb-scipy>=1.0"] + [f"{p}>=1.0" for p in top[:12]]
packs = [["cvb-opencv>=1.0"] + [f"{p}" for p in top[12:18]],
         [f"{p}<2" for p in top[18:21]] + [top[0]],
         [f"{p}>=1.0" for p in top[21:26]] + ["cvb-numpy>=1.0"]]
with open(os.path.join(work, "core-requirements.txt"), "w") as f:
    f.write("# stand-in for ComfyUI's requirements.txt\n" + "\n".join(core) + "\n")
for i, reqs in enumerate(packs, 1):
    with open(os.path.join(work, f"pack{i}-requirements.txt"), "w") as f:
        f.write("\n".join(reqs) + "\n")
EOF
du -sm "$work/www" | cut -f1 > "$work/index-mb"

# shellcheck source=bench/lib/serve-repo.sh
source "$here/bench/lib/serve-repo.sh"
core="$work/build/ComfyUI"
cp -r "$here/crates/testkit/fixtures/fake-comfyui" "$core"
find "$core" -name __pycache__ -prune -exec rm -rf {} +
cp "$work/core-requirements.txt" "$core/requirements.txt"
python3 - "$core" "$CORE_FILES" <<'EOF'
import base64, os, random, sys
core, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(64)
for i in range(n):
    d = os.path.join(core, "comfy", f"pad{i % 40}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"module{i}.py"), "wb") as f:
        f.write(b"# padding to the size of a real core\n")
        f.write(base64.b64encode(os.urandom(rng.randint(4000, 32000))))
EOF
git init -q -b main "$core" && serve_repo "$core" ComfyUI
for i in 1 2 3; do
  w="$work/build/pack$i"
  mkdir -p "$w/nodes"
  git init -q -b main "$w"
  echo "NODE_CLASS_MAPPINGS = {}" > "$w/__init__.py"
  for f in $(seq 1 40); do head -c 3000 /dev/urandom | base64 > "$w/nodes/file$f.py"; done
  cp "$work/pack$i-requirements.txt" "$w/requirements.txt"
  serve_repo "$w" "pack$i"
done
cat "$work/core-requirements.txt" "$work"/pack{1,2,3}-requirements.txt > "$work/combined.txt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gport=$(free_port)
"$(git --exec-path)/git-daemon" --export-all --reuseaddr --listen=127.0.0.1 --port="$gport" \
  --base-path="$work/srv" "$work/srv" >/dev/null 2>&1 &
pids+=($!)
limits=(--total "$((LINK_MIB * 1024 * 1024))")
[[ "$PER_CONN_MIB" -gt 0 ]] && limits+=(--per-connection "$((PER_CONN_MIB * 1024 * 1024))")
"$serve" --dir "$work/www" "${limits[@]}" > "$work/serve.url" &
pids+=($!)
for _ in $(seq 1 200); do [[ -s "$work/serve.url" ]] && break; sleep 0.05; done
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$gport") 2>/dev/null && break; sleep 0.05; done
if [[ "$GIT_MIB" -gt 0 ]]; then
  python3 "$here/bench/lib/throttle.py" "$gport" "$((GIT_MIB * 1024 * 1024))" > "$work/throttle.port" &
  pids+=($!)
  for _ in $(seq 1 100); do [[ -s "$work/throttle.port" ]] && break; sleep 0.05; done
  gport="$(cat "$work/throttle.port")"
fi
index="$(cat "$work/serve.url")/simple"

python3 - "$work" "$gport" "$index" <<'EOF'
import json, sys
work, port, index = sys.argv[1], sys.argv[2], sys.argv[3]
spec = {
    "schema_version": 2,
    "version_id": "cold",
    "comfy": {"repo": f"git://127.0.0.1:{port}/ComfyUI.git", "ref": "main"},
    "custom_nodes": [{"repo": f"git://127.0.0.1:{port}/pack{i}.git", "ref": "main", "name": f"pack{i}"}
                     for i in (1, 2, 3)],
    "models": [],
    "python": {"index_url": index},
}
with open(f"{work}/versions/cold.json", "w") as f:
    json.dump(spec, f, indent=2)
EOF

# Wall time of one command, measured around fork+exec+wait by python.
timed() { # log, command...
  local log="$1"
  shift
  python3 - "$log" "$@" <<'EOF'
import subprocess, sys, time
log, cmd = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
with open(log, "ab") as f:
    r = subprocess.run(cmd, stdout=f, stderr=f)
if r.returncode != 0:
    sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")
print(f"{time.perf_counter() - t:.3f}")
EOF
}
uv_alone() { # dir
  mkdir -p "$1"
  UV_CACHE_DIR="$1/uv" "$uv_bin" venv --no-config -q "$1/venv" &&
    UV_CACHE_DIR="$1/uv" "$uv_bin" pip install --no-config -q --python "$1/venv/bin/python" \
      --index-url "$index" -r "$work/combined.txt"
}
export -f uv_alone
export uv_bin index work
frozen() { # python
  "$1" -I -c 'import importlib.metadata as m
for d in sorted(m.distributions(), key=lambda d: d.metadata["Name"]):
    n = d.metadata["Name"].lower().replace("_", "-")
    if n not in ("pip", "setuptools", "wheel"):
        print(f"{n}=={d.version}")'
}
cv() { # cache, args...
  local cache="$1"
  shift
  "$bin" --cache-dir "$cache" --versions-dir "$work/versions" -q "$@"
}

uv_t=() fresh_t=() replay_t=() bfresh_t=() breplay_t=()
# One side of a round: uv alone, or a build's fresh realize then the replay
# of the lock it wrote (prefix "" for $bin, "b" for the baseline).
run_uv() {
  settle
  # shellcheck disable=SC2016 # expanded by the inner bash
  uv_t+=("$(timed "$work/uv$r.log" bash -c 'uv_alone "$0"' "$work/uv$r")")
}
run_comfyver() { # prefix, binary
  local p="$1" b="$2"
  local -n fresh="${p}fresh_t" replay="${p}replay_t"
  rm -rf "$work/${p}fresh$r" "$work/${p}replay$r"
  settle
  fresh+=("$(timed "$work/${p}fresh$r.log" "$b" --cache-dir "$work/${p}fresh$r" \
    --versions-dir "$work/versions" -q realize cold)")
  mkdir -p "$work/${p}replay$r/resolved"
  cp "$work/${p}fresh$r/resolved/cold.lock.json" "$work/${p}replay$r/resolved/"
  settle
  replay+=("$(timed "$work/${p}replay$r.log" "$b" --cache-dir "$work/${p}replay$r" \
    --versions-dir "$work/versions" -q realize cold)")
}
# The sides' order changes from round to round, so that over six rounds
# each side runs as often first, second and last: a machine slowing down or
# speeding up within a round, and what one run leaves to the next
# (writeback, the page cache), weigh on every side alike.
orders=("uv new baseline" "baseline new uv" "new baseline uv"
  "uv baseline new" "baseline uv new" "new uv baseline")
for r in $(seq 1 "$ROUNDS"); do
  sides=()
  for side in ${orders[$(((r - 1) % 6))]}; do
    [[ $side == baseline && -z "$base" ]] || sides+=("$side")
  done
  echo "round $r/$ROUNDS: ${sides[*]} (comfyver: fresh, then the replay of its lock)..." >&2
  rm -rf "$work/uv$r"
  for side in "${sides[@]}"; do
    case "$side" in
      uv) run_uv ;;
      new) run_comfyver "" "$bin" ;;
      baseline) run_comfyver b "$base" ;;
    esac
  done
  frozen "$work/uv$r/venv/bin/python" > "$work/uv$r.set"
  frozen "$work/fresh$r/versions/comfy-cold/.venv/bin/python" > "$work/fresh$r.set"
  frozen "$work/replay$r/versions/comfy-cold/.venv/bin/python" > "$work/replay$r.set"
  for side in fresh replay; do
    if ! diff -u "$work/uv$r.set" "$work/$side$r.set" >&2; then
      echo "round $r: the $side home's package set differs from uv alone's" >&2
      exit 1
    fi
  done
  python3 - "$work/fresh$r/resolved/cold.lock.json" "$work/fresh$r.set" <<'EOF'
import json, sys
locked = json.load(open(sys.argv[1]))["python"]["packages"]
frozen = open(sys.argv[2]).read().split()
if sorted(locked) != sorted(frozen):
    sys.exit(f"the lock records {len(locked)} packages, the home holds {len(frozen)}")
EOF
  cv "$work/replay$r" verify cold >/dev/null
  rm -rf "$work/bfresh$r" "$work/breplay$r"
  [[ $r -gt 1 ]] && rm -rf "$work/uv$r" "$work/fresh$r" "$work/replay$r"
done

best() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
npk=$(wc -l < "$work/uv1.set")
echo
echo "cold realize vs uv alone: $npk packages installed of $PKGS ($(cat "$work/index-mb") MB index," \
  "link $LINK_MIB MiB/s, per connection ${PER_CONN_MIB:-0} MiB/s (0: none)), core of $CORE_FILES files, 3 packs," \
  "git at ${GIT_MIB} MiB/s (0: unthrottled), partial fetches $([[ "${FILTER:-1}" == 1 ]] && echo served || echo refused);" \
  "release build, $(nproc) cores; work dir on $(stat -f -c %T "$work")"
printf '  %-34s %s\n' "uv alone (venv + pip install -r)" "${uv_t[*]} s"
printf '  %-34s %s\n' "comfyver realize, fresh" "${fresh_t[*]} s"
printf '  %-34s %s\n' "comfyver realize, replay of lock" "${replay_t[*]} s"
ru=() rr=()
for i in $(seq 0 $((ROUNDS - 1))); do
  ru+=("$(ratio "${fresh_t[$i]}" "${uv_t[$i]}")")
  rr+=("$(ratio "${replay_t[$i]}" "${uv_t[$i]}")")
done
# The machine's noise only ever adds time: the best time of each side is
# what it costs when nothing else is in the way.
echo "  fresh / uv alone: per round ${ru[*]}; median $(median "${ru[@]}") (goal <= 1.10);" \
  "best / best $(ratio "$(best "${fresh_t[@]}")" "$(best "${uv_t[@]}")")"
echo "  replay / uv alone: per round ${rr[*]}; median $(median "${rr[@]}");" \
  "best / best $(ratio "$(best "${replay_t[@]}")" "$(best "${uv_t[@]}")")"
if [[ -n "$base" ]]; then
  bu=() br=()
  for i in $(seq 0 $((ROUNDS - 1))); do
    bu+=("$(ratio "${bfresh_t[$i]}" "${uv_t[$i]}")")
    br+=("$(ratio "${breplay_t[$i]}" "${uv_t[$i]}")")
  done
  printf '  %-34s %s\n' "baseline binary, fresh" "${bfresh_t[*]} s"
  printf '  %-34s %s\n' "baseline binary, replay of lock" "${breplay_t[*]} s"
  echo "  baseline fresh / uv alone: per round ${bu[*]}; median $(median "${bu[@]}");" \
    "best / best $(ratio "$(best "${bfresh_t[@]}")" "$(best "${uv_t[@]}")")"
  echo "  baseline replay / uv alone: per round ${br[*]}; median $(median "${br[@]}");" \
    "best / best $(ratio "$(best "${breplay_t[@]}")" "$(best "${uv_t[@]}")")"
fi
echo "  same package set in every round: uv alone = fresh home = replayed home = the lock's"
