#!/usr/bin/env bash
# Set up (first run only) and run the default test suite (slow tests are opt-in: NAVA_SLOW=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${NAVA_VENV:-.venv}/bin/python" -m pytest "$@"
