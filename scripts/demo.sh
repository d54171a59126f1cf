#!/usr/bin/env bash
# The main job on the embedded default: a local AutoGen Studio, an embedded Redis and worker,
# and `producer sync examples/`; then the example workflow against the stand-in model endpoint.
# Run it twice: the second time everything comes from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/python.sh  # the project's virtual environment (scripts/install.sh made it)
"$PY" -m producer.cli sync examples/ --local-studio "$@"
"$PY" -m producer.cli run examples/workflows/research.yaml --standin-llm
