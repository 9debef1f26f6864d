#!/usr/bin/env bash
# The GPU benchmark as one prepared command for a lent GPU machine (BENCHMARKS.md, "GPU training
# speed"). That machine has torch, transformers, tokenizers, safetensors, pyarrow and jinja2 but
# not pydantic, lark or datasets, and reaches no package index, so those travel as wheels:
#
#   here, once:   bash bench/gpu_device.sh --download        (wheels into .whl/, git-ignored)
#   there:        bash bench/gpu_device.sh [gpu_train.py options]   (carry [".whl"])
#
# It installs the wheels and genbac into /tmp/site (nothing outside /tmp changes), checks the
# imports the benchmark needs before any GPU time goes to it, and runs bench/gpu_train.py with its
# JSON and log in $OUT (the device tool brings that folder back) or bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${GENBAC_WHEELS:-.whl}
PYTHON=${PYTHON:-python3}
# pinned to what CI installs; datasets' own needs beyond these (pyarrow, fsspec, pandas, …) are in
# the device image
PACKAGES=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
          lark==1.3.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)

if [[ "${1:-}" == "--download" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" "${PACKAGES[@]}"
    ls -l "$WHEELS"
    exit 0
fi

out=${OUT:-bench}
site=${GENBAC_SITE:-/tmp/site}
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$WHEELS"/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
    --upgrade --target "$site" .
# fail here, in seconds, rather than after minutes of GPU set-up
"$PYTHON" - <<'EOF'
import importlib, sys
for name in ("torch", "transformers", "tokenizers", "datasets", "pydantic", "lark", "jinja2",
             "yaml", "genbac.runtime.train"):
    importlib.import_module(name)
import torch
print("python", sys.version.split()[0], "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    > "$out/gpu_device.txt" 2>&1 || true
PYTHONUNBUFFERED=1 "$PYTHON" bench/gpu_train.py --json "$out/gpu_train.json" "$@" \
    2>&1 | tee "$out/gpu_train.log"
