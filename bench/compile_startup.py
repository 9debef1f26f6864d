"""Benchmark: whole-process `genbac compile` of the GENBA example against a bare interpreter start.

Both are measured in the same run, interleaved, as wall time of a fresh process (what a user waits
for). Reports min and median over N runs and the ratio of medians. Usage:

    .venv/bin/python bench/compile_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

from processes import interleaved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "python -c pass": [py, "-c", "pass"],
            # what the compile path must import anyway, for context: pydantic (a model class
            # needs pydantic.fields too), jinja2 and PyYAML; lark only on the very first start,
            # to generate the cached parser (spec/lalr.py)
            "import deps": [py, "-c", "import jinja2, yaml; from pydantic import BaseModel, Field"],
            "genbac check": [py, "-m", "genbac", "check", "examples/llama-genba-10b.genba"],
            "genbac compile": [py, "-m", "genbac", "compile", "examples/llama-genba-10b.genba",
                               "-o", f"{tmp}/out"],
        }
        samples = interleaved(cases, args.runs)
    floor = statistics.median(samples["python -c pass"])
    print(f"{'command':<16} {'min ms':>8} {'median ms':>10} {'x floor':>8}   ({args.runs} runs, "
          f"interleaved)")
    for name, xs in samples.items():
        med = statistics.median(xs)
        print(f"{name:<16} {1000 * min(xs):8.1f} {1000 * med:10.1f} {med / floor:8.1f}")
    deps = statistics.median(samples["import deps"])
    own = statistics.median(samples["genbac compile"]) - deps
    print(f"genbac compile beyond importing its dependencies: {1000 * own:.0f} ms")


if __name__ == "__main__":
    main()
