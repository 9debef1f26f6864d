#!/usr/bin/env bash
# The main job: set up, compile the Llama-GENBA-10B experiment (Cerebras Model Zoo configs, explained),
# then compile and run the tiny rehearsal on this machine's CPU, tracked in the local MLflow store
# ./mlflow.db. Rerunning continues where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
genbac=.venv/bin/genbac
$genbac check examples/*.genba
$genbac compile examples/llama-genba-10b.genba -o out/llama-genba-10b
$genbac explain examples/llama-genba-10b.genba
$genbac run examples/tiny-rehearsal.genba -o out/tiny-rehearsal
echo
echo "See the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db   (then open http://127.0.0.1:5000)"
