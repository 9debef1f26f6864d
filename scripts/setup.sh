#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: genbac, editable, with its test
# tools. Safe to rerun. Uses pip (not uv/poetry: they ignore this machine's local CPU torch wheel).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
