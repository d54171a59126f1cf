#!/usr/bin/env bash
# The main job on the embedded default: a local AutoGen Studio (left running, its URL printed at
# the end), an embedded Redis and worker, and `producer sync examples/`; then the example workflow
# against the stand-in model endpoint.
# Run it twice: the second time everything comes from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/python.sh  # the project's virtual environment (scripts/install.sh made it)
# a local Studio that stays up after the demo, so what it synced can be looked at
"$PY" -m producer.cli studio up
"$PY" -m producer.cli sync examples/ --local-studio "$@"
# while it runs, its metrics and Flower are up too (the URLs are printed)
"$PY" -m producer.cli run examples/workflows/research.yaml --standin-llm --flower
url=$("$PY" -m producer.cli studio status --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["url"])')
echo
echo "The synced teams and the gallery entry are in AutoGen Studio at $url"
echo "(\`producer studio down\` stops it; \`source .venv/bin/activate\` puts producer on your PATH)."
