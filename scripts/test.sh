#!/usr/bin/env bash
# Install everything the tests need, then run them (real Redis, workers and AutoGen Studio are
# started by the tests themselves on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# lint, format and types first: they fail in seconds where the tests take minutes
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
python3 -m pytest -q "$@"
