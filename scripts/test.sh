#!/usr/bin/env bash
# Set up, then run the whole test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# One worker per core, each taking whole files (module fixtures such as a trained rehearsal are built
# once); GENBAC_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -n "${GENBAC_TEST_WORKERS:-auto}" --dist loadfile "$@"
