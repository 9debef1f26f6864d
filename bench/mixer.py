"""Benchmark: the Mixer at the GENBA plan's scale, against the Mixer of an earlier revision.

    .venv/bin/python bench/mixer.py [--baseline REV] [--steps 40] [--repeats 3]

The plan is examples/llama-genba-10b.genba's (41,707 steps of 480 x 8192 tokens, 20.0M sequences in
two phases, Bavarian entering in phase 2). Each language gets synthetic packed data of exactly the
rows it draws (one epoch per language): an object with the Mixer's view of a PackedData
(n_sequences, sequence, sequence_ids), whose rows are one shared array, so that only the Mixer's
own memory is measured.

Each implementation runs in a fresh child process, alternating, --repeats times:
  floor     the interpreter with numpy and genbac.runtime.data imported, the plan read (its RSS is
            what the Mixer's memory is measured above)
  first     constructing the Mixer and the first batch of a run resumed at step 0, and separately
            of one resumed in the last phase (what a resume waits for)
  batch     the median time of a batch at --steps steps spread over the whole run, in random order
            (a fresh process resuming anywhere)
  memory    peak RSS above the floor (ru_maxrss; the row data itself is not counted)
The baseline is genbac.runtime.data as it was at REV (default: the last revision with the
materialised slot layout), loaded from `git show`. Targets (issue 12): at most 50 MB above the
interpreter and at most 50 ms for the batch of any step.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples/llama-genba-10b.genba"


class SyntheticPacked:
    """What the Mixer reads of a PackedData, without the data: every row is the same array."""

    def __init__(self, code: str, n_sequences: int, sequence: int, row):
        self.code, self.n_sequences, self.sequence, self._row = code, n_sequences, sequence, row

    def sequence_ids(self, i: int):
        return self._row


def data_module(rev: str | None):
    """genbac.runtime.data now, or as it was at `rev` (run under the genbac.runtime package)."""
    if rev is None:
        from genbac.runtime import data
        return data
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:runtime/data.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("genbac.runtime._data_baseline", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "genbac.runtime"
    sys.modules[spec.name] = module
    exec(compile(source, f"{rev}:runtime/data.py", "exec"), module.__dict__)
    return module


def child(plan_file: str, rev: str | None, steps: int, seed: int) -> dict:
    import numpy as np

    data = data_module(rev)
    plan = json.loads(Path(plan_file).read_text())
    schedule = plan["schedule"]
    row = np.zeros(schedule["sequence"] + 1, np.int32)
    packed = {lang["code"]: SyntheticPacked(lang["code"], lang["compiled_tokens"]
                                            // schedule["sequence"], schedule["sequence"], row)
              for lang in schedule["languages"]}
    # the floor holds one batch as returned (int64 rows): any data loader hands that over
    batch_bytes = np.ones((schedule["batch"], schedule["sequence"] + 1), np.int64).nbytes
    floor_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def first_batch(step: int) -> float:
        start = time.perf_counter()
        mixer = data.Mixer(plan, packed, seed)
        mixer.batch(step)
        return time.perf_counter() - start

    first = first_batch(0)
    last_phase = schedule["phases"][-1]["start_step"] + 1
    first_late = first_batch(last_phase)
    mixer = data.Mixer(plan, packed, seed)
    total = schedule["total_steps"]
    chosen = [round(i * (total - 1) / (steps - 1)) for i in range(steps)]
    random.Random(seed).shuffle(chosen)
    times = []
    for step in chosen:
        start = time.perf_counter()
        mixer.batch(step)
        mixer.tokens_seen(step)
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the Mixer's own working memory in a batch, beyond the rows it returns (numpy reports its
    # allocations to tracemalloc), after the timing so as not to slow it
    tracemalloc.start()
    working = 0
    for step in chosen[:5]:
        tracemalloc.reset_peak()
        mixer.batch(step)
        working = max(working, tracemalloc.get_traced_memory()[1] - batch_bytes)
    tracemalloc.stop()
    return {"floor_mb": floor_kb / 1024, "first_s": first, "first_late_s": first_late,
            "batch_median_ms": statistics.median(times) * 1e3, "batch_max_ms": max(times) * 1e3,
            "above_floor_mb": (peak_kb - floor_kb) / 1024, "working_mb": working / 2**20,
            "batch_mb": batch_bytes / 2**20,
            "sequences": sum(p.n_sequences for p in packed.values())}


def baseline_revision() -> str:
    """The parent of the commit that removed the materialised slot layout."""
    removed = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "-S",
                              "class _PhaseLayout", "--", "runtime/data.py"],
                             check=True, capture_output=True, text=True).stdout.strip()
    return f"{removed}^"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision of the baseline Mixer")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # plan file, rev or "-"
    args = parser.parse_args()
    if args.child:
        rev = None if args.child[1] == "-" else args.child[1]
        print(json.dumps(child(args.child[0], rev, args.steps, seed=1234)))
        return

    from genbac.compiler.compile import plan_spec

    baseline = args.baseline or baseline_revision()
    plan, _ = plan_spec(SPEC.read_text(), str(SPEC))
    with tempfile.TemporaryDirectory() as scratch:
        plan_file = Path(scratch) / "plan.json"
        plan_file.write_text(plan.model_dump_json())
        results: dict[str, list[dict]] = {"current": [], "baseline": []}
        for _ in range(args.repeats):
            for name, rev in (("current", "-"), ("baseline", baseline)):
                out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps),
                                      "--child", str(plan_file), rev],
                                     check=True, capture_output=True, text=True).stdout
                results[name].append(json.loads(out))
    sequences = results["current"][0]["sequences"]
    print(f"GENBA plan: {plan.schedule.total_steps} steps of {plan.schedule.batch}, "
          f"{sequences / 1e6:.1f}M sequences; {args.repeats} runs each, medians; baseline: "
          f"runtime/data.py at {baseline}")
    print(f"one batch of rows is {results['current'][0]['batch_mb']:.1f} MB (int64), counted in "
          f"the floor")
    print(f"{'mixer':<14}{'floor MB':>9}{'above MB':>10}{'working MB':>11}{'first s':>9}"
          f"{'resume late s':>14}{'batch ms':>10}{'max ms':>8}")
    for name, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"{name:<14}{med['floor_mb']:>9.1f}{med['above_floor_mb']:>10.1f}{med['working_mb']:>11.2f}"
              f"{med['first_s']:>9.3f}{med['first_late_s']:>14.3f}{med['batch_median_ms']:>10.2f}"
              f"{med['batch_max_ms']:>8.2f}")


if __name__ == "__main__":
    main()
