#!/usr/bin/env bash
# Set up (first run only) and start NAVA Studio. Extra arguments go to app.py (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${NAVA_VENV:-.venv}/bin/python" app.py "$@"
