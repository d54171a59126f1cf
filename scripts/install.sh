#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: redis-server, prometheus, tmux and
# rabbitmq-server (apt, when missing), the project with its test extras (pip), and AutoGen Studio in a venv of
# its own (its pinned dependencies stay out of the project's environment).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)   # the tests scrape with a real one
command -v tmux >/dev/null 2>&1 || missing+=(tmux)               # drives `producer monitor` in a test
# the RabbitMQ broker tests start a private node of their own (tests/rabbitmq.py); /usr/sbin is not on every PATH
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# the project goes into a virtual environment, never into the system's Python: the active one
# ($VIRTUAL_ENV), else .venv in the checkout (made here); `source .venv/bin/activate` to use it
source scripts/python.sh
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
# an editable install leaves the project's own modules uncompiled, and where PYTHONDONTWRITEBYTECODE
# is set (as on some CI machines) every process would compile them again: 0.5 s of each command's start
PYTHONDONTWRITEBYTECODE= "$PY" -m compileall -q producer shared workers monitoring benchmarks >/dev/null

STUDIO_VENV="${AGENTQ_STUDIO_VENV:-$HOME/.cache/agentq-ags}"
if [ ! -x "$STUDIO_VENV/bin/autogenstudio" ]; then
  python3 -m venv "$STUDIO_VENV"
  "$STUDIO_VENV/bin/pip" install -q --disable-pip-version-check 'autogenstudio==0.4.2.2'
fi
