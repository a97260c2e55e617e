#!/usr/bin/env bash
# Benchmark: `comfyver nodes fetch` for 10 node repositories, cold (empty
# cache) and warm (everything cached), against a sequential
# `git clone` + `git checkout <commit>` baseline run in the same invocation.
#
# Usage: bench/nodes.sh [COMFYVER_BIN]
#   COMFYVER_BIN defaults to target/release/comfyver (built if missing).
#   REPOS (default 10), FILES per commit (default 40), COMMITS (default 15).
# Repositories are served by `git daemon` on loopback (git://), so both
# sides go through the same transport. Not a test: it only prints figures.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-${COMFYVER_BIN:-}}"
if [[ -z "$bin" ]]; then
  (cd "$here" && cargo build --release -q -p comfyver)
  bin="${CARGO_TARGET_DIR:-$here/target}/release/comfyver"
fi
REPOS="${REPOS:-10}"
FILES="${FILES:-40}"
COMMITS="${COMMITS:-15}"

work="$(mktemp -d)"
daemon_pid=""
cleanup() {
  [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

echo "building $REPOS fixture repositories ($COMMITS commits x $FILES files)..." >&2
mkdir -p "$work/srv" "$work/build"
for i in $(seq 1 "$REPOS"); do
  w="$work/build/node$i"
  git init -q -b main "$w"
  for c in $(seq 1 "$COMMITS"); do
    for f in $(seq 1 "$FILES"); do
      mkdir -p "$w/pkg$((f % 5))"
      head -c 3000 /dev/urandom | base64 > "$w/pkg$((f % 5))/file$f.py"
    done
    git -C "$w" add -A
    git -C "$w" commit -q -m "commit $c"
  done
  git clone -q --bare "$w" "$work/srv/node$i.git"
done
git init -q -b main "$work/build/core" && echo "# core" > "$work/build/core/main.py"
git -C "$work/build/core" add -A && git -C "$work/build/core" commit -q -m core
git clone -q --bare "$work/build/core" "$work/srv/core.git"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$(git --exec-path)/git-daemon" --export-all --reuseaddr --listen=127.0.0.1 --port="$port" \
  --base-path="$work/srv" "$work/srv" >/dev/null 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
url() { echo "git://127.0.0.1:$port/$1.git"; }

# The lock: every node pinned to its tip's parent (a non-tip commit).
mkdir -p "$work/cache/resolved"
{
  echo '{"lock_version":1,"version_id":"bench","spec_digest":"blake3:00","tool_version":"0",'
  echo "\"comfy\":{\"repo\":\"$(url core)\",\"commit\":\"$(git -C "$work/srv/core.git" rev-parse main)\"},"
  echo '"custom_nodes":['
  for i in $(seq 1 "$REPOS"); do
    sep=$([[ $i -lt $REPOS ]] && echo , || true)
    echo "{\"name\":\"node$i\",\"repo\":\"$(url node$i)\",\"commit\":\"$(git -C "$work/srv/node$i.git" rev-parse main~1)\"}$sep"
  done
  echo '],"models":[]}'
} > "$work/cache/resolved/bench.lock.json"

t0=$(now)
for i in $(seq 1 "$REPOS"); do
  git clone -q --no-checkout "$(url node$i)" "$work/baseline/node$i"
  git -C "$work/baseline/node$i" checkout -q "$(git -C "$work/srv/node$i.git" rev-parse main~1)"
done
t1=$(now)
"$bin" -q --cache-dir "$work/cache" nodes fetch bench
t2=$(now)
"$bin" -q --cache-dir "$work/cache" nodes fetch bench
t3=$(now)

git_s=$(elapsed "$t0" "$t1"); cold_s=$(elapsed "$t1" "$t2"); warm_s=$(elapsed "$t2" "$t3")
printf 'repos=%s  git clone+checkout (sequential): %.3f s\n' "$REPOS" "$git_s"
printf 'comfyver nodes fetch cold: %.3f s  (ratio git/cold = %.2fx)\n' "$cold_s" "$(echo "$git_s / $cold_s" | bc -l)"
printf 'comfyver nodes fetch warm: %.3f s  (ratio git/warm = %.1fx)\n' "$warm_s" "$(echo "$git_s / $warm_s" | bc -l)"
if command -v strace >/dev/null; then
  strace -f -qq -o "$work/warm.trace" -e trace=execve,connect,openat \
    "$bin" -q --cache-dir "$work/cache" nodes fetch bench
  spawned=$(grep -c 'execve(' "$work/warm.trace" || true)
  connects=$(grep -c 'connect(' "$work/warm.trace" || true)
  gitopens=$(grep -c 'openat(.*\.git/' "$work/warm.trace" || true)
  echo "warm run: $((spawned - 1)) child processes, $connects connect() calls, $gitopens files opened under .git/ (stat-only)"
fi
