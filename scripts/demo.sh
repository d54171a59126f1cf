#!/usr/bin/env bash
# The main job on the embedded default: a local AutoGen Studio, an embedded Redis and worker,
# and `producer sync examples/`; then the example workflow against the stand-in model endpoint.
# Run it twice: the second time everything comes from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
producer sync examples/ --local-studio "$@"
producer run examples/workflows/research.yaml --standin-llm
