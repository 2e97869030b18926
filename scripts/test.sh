#!/usr/bin/env bash
# Set up (first run only) and run the test suite. Locally the slow tests (browser, multi-process,
# clean-venv install; ~6 min) are opt-in with NAVA_SLOW=1; under CI (CI=true) they run too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${CI:-}" = "true" ]; then export NAVA_SLOW=1; fi
exec "${NAVA_VENV:-.venv}/bin/python" -m pytest "$@"
