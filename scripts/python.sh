# Sourced by the scripts: PY is the Python of the project's virtual environment, the active one
# ($VIRTUAL_ENV) or .venv in the checkout, made when missing.
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY="$PWD/.venv/bin/python"
fi
export PY
