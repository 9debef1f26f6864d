#!/usr/bin/env bash
# The main job: set up, then compile the Llama-GENBA-10B experiment and the tiny rehearsal, and
# explain what the GENBA run will do.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
genbac=.venv/bin/genbac
$genbac check examples/*.genba
$genbac compile examples/llama-genba-10b.genba -o out/llama-genba-10b
$genbac compile examples/tiny-rehearsal.genba -o out/tiny-rehearsal
$genbac explain examples/llama-genba-10b.genba
