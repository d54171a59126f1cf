#!/usr/bin/env bash
# Install everything the tests need, then run them (real Redis, workers and AutoGen Studio are
# started by the tests themselves on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/python.sh  # the project's virtual environment (scripts/install.sh made it)
# lint, format and types first: they fail in seconds where the tests take minutes
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
# Two processes, each taking whole modules (a module's servers stay in one process): most tests
# wait on servers, faults and timeouts rather than compute, so two halve the suite even on two
# cores. Arguments come after, so `-n 0` runs it in one process.
"$PY" -m pytest -q -n 2 --dist loadfile "$@"
