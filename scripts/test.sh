#!/usr/bin/env bash
# Install everything the tests need, then run them (real Redis, workers and AutoGen Studio are
# started by the tests themselves on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python3 -m pytest -q "$@"
