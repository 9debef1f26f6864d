"""Benchmark: `genbac check` of the worst specs within the limits (spec/limits.py), as whole
processes, against `python -c pass` and `genbac check` of the GENBA example, measured in the same
run, interleaved.

Each case is a shape that makes some stage work hardest at the size limit: the most tokens
(a 16K-token list), the most diagnostics (thousands of repeated settings), the most blocks, a
64 KiB string, 64 KiB of comments, 64 languages with long source lists and distinct entry points,
nesting at the depth limit. The README promises under a second for each on a 2-core machine.

    .venv/bin/python bench/hostile_check.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from processes import ROOT, interleaved

BASE = (ROOT / "examples" / "tiny-rehearsal.genba").read_text()
LIMIT = 64 * 1024 - 1500  # room for the rest of the example


def cases() -> dict[str, str]:
    def fill(unit: str, count: int) -> str:
        return BASE.replace("seed = 1234", unit * count)

    data = '"data/en/train.jsonl"'
    langs = "\n".join(f'  language l{i} "L{i}" {{ data = [{", ".join([data] * 20)}]  '
                      f'tokens = 1K  enter = {i}% }}' for i in range(60))
    deep = "x = " + "[" * 30 + "1" + "]" * 30
    return {
        "16K tokens (a list)": fill("after = [" + ",".join(["1"] * 7_900) + "]", 1),
        "5K repeated settings": fill("seed = 1  ", 5_300),
        "1.5K unknown blocks": fill("b { c = 1 } ", 1_500),
        "64 KiB string": BASE.replace('"English"', '"' + "E" * LIMIT + '"'),
        "64 KiB of comments": BASE + ("# " + "x" * 78 + "\n") * (LIMIT // 81),
        "60 languages": BASE.replace("  train {", langs + "\n  train {"),
        "nesting at the limit": fill(deep + "  ", 200),
        "60 languages x 64 variants": BASE.replace("  train {", langs + "\n  train {").replace(
            "seed = 1234", "seed = sweep(" + ", ".join(str(i) for i in range(64)) + ")"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"python -c pass": [py, "-c", "pass"],
                    "check GENBA": [py, "-m", "genbac", "check", "examples/llama-genba-10b.genba"]}
        sizes = {}
        for name, text in cases().items():
            path = Path(tmp) / (name.replace(" ", "_") + ".genba")
            path.write_text(text)
            sizes[name] = len(text.encode())
            assert sizes[name] <= 64 * 1024, (name, sizes[name])
            commands[name] = [py, "-m", "genbac", "check", str(path)]
        samples = interleaved(commands, args.runs, check=False)  # checks fail
    floor = statistics.median(samples["python -c pass"])
    print(f"{'case':<24} {'bytes':>7} {'median s':>9} {'max s':>7} {'x floor':>8}   "
          f"({args.runs} runs, interleaved)")
    for name, times in samples.items():
        med = statistics.median(times)
        print(f"{name:<24} {sizes.get(name, 0):>7,} {med:>9.3f} {max(times):>7.3f} "
              f"{med / floor:>8.1f}")


if __name__ == "__main__":
    main()
