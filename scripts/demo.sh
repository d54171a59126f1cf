#!/usr/bin/env bash
# The main job on the embedded default: a local AutoGen Studio, an embedded Redis and worker,
# and `producer sync examples/`. Run it twice: the second sync is all cache hits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
producer sync examples/ --local-studio "$@"
