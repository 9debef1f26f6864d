#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: genbac, editable, with the local
# runtime (torch, transformers, datasets, MLflow) and the test tools. Safe to rerun. Uses pip (not
# uv/poetry: they ignore the local CPU torch wheel and the version cap on these machines).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# The CPU build of torch first: a torch-dependent install into a venv without torch would pull a
# multi-GB CUDA build. TORCH_SPEC overrides it (e.g. a CUDA build on a GPU machine).
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi
"${pip[@]}" -e '.[run,test]'
# The editor grammar's test tokenizes with the real vscode-textmate and vscode-oniguruma (npm), as
# VS Code does; `npm ci` installs the locked versions into editors/vscode/node_modules (a few MB).
if command -v npm >/dev/null; then
  (cd editors/vscode && npm ci --no-audit --no-fund --silent)
else
  echo "setup: npm not found: the TextMate grammar test (tests/editors) will be skipped" >&2
fi
