#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with torch and the project's requirements.
# On a machine without CUDA, torch is pinned to the CPU build 2.13.0 (an unpinned torch would pull
# gigabytes of CUDA wheels); with an NVIDIA driver present, pip's default CUDA build is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${NAVA_VENV:-.venv}
# System tools the tests use to make real speech (espeak-ng) when running as root on Debian.
if ! command -v espeak-ng >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
    || echo "warning: could not install espeak-ng; voice tests will report it missing" >&2
fi
# The slow tests drive Debian's Chromium with Playwright; CI runs them, so install it there.
if [ "${CI:-}" = "true" ] || [ "${NAVA_SLOW:-}" = "1" ]; then
  if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser tests will fail to start it" >&2
  fi
fi
# CI runs the slow tests, which include the Ray render-farm tests: there the cluster extra is installed too.
extras=""
if [ "${CI:-}" = "true" ] || [ "${NAVA_SLOW:-}" = "1" ]; then extras="[cluster]"; fi
stamp="$VENV/.nava-setup-$( (cat requirements.txt pyproject.toml; echo "$extras") | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  pip_ "torch==2.13.0" || pip_ torch
else
  pip_ "torch==2.13.0"
fi
pip_ -r requirements.txt
pip_ --no-deps -e .
if [ -n "$extras" ]; then pip_ -e ".$extras"; fi  # torch etc. are already satisfied: this adds only Ray
rm -f "$VENV"/.nava-setup-*
touch "$stamp"
