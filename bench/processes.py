"""Timing whole processes, as a user waits for them: shared by the start-up benchmarks."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Steady state, as on a user's machine: modules load from their cached bytecode. With
# PYTHONDONTWRITEBYTECODE set (as in some shells and CI images), every edited module would be
# compiled from source on every run, which is not what a user waits for.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], check: bool = True) -> float:
    """Wall seconds of one run of `cmd` from the repository root, output discarded."""
    t = time.perf_counter()
    subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT, env=ENV)
    return time.perf_counter() - t


def interleaved(commands: dict[str, list[str]], runs: int, check: bool = True
                ) -> dict[str, list[float]]:
    """Each command once to warm the caches, then `runs` rounds of all of them in turn, so that
    the floor and the measured commands share the machine's noise."""
    for cmd in commands.values():
        timed(cmd, check)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            samples[name].append(timed(cmd, check))
    return samples
