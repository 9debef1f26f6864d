"""A training phase's progress for the person watching: in a terminal, a bar with the loss and the
time left; anywhere else (a cluster job's log, a file, a pipe) one line every `every` seconds
(GENBAC_PROGRESS_SECONDS, default 30) and at the phase's last step:

    genbac: phase-1 step 120/9,000 (1.3%) · loss 3.2104 · 12,345 tokens/s · 1.2 h left

The time left is the steps to go at the mean step time of this attempt (a resumed phase does not
count the steps done before it started). Data preparation reports the same way, per process
(PrepProgress).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from genbac.text import duration

from . import metrics as names

EVERY_ENV = "GENBAC_PROGRESS_SECONDS"
EVERY_DEFAULT = 30.0


def every_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(EVERY_ENV, EVERY_DEFAULT)))
    except ValueError:
        return EVERY_DEFAULT


class Progress:
    def __init__(self, phase, start_step: int, write: Callable[[str], None],
                 terminal: bool | None = None, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.phase = phase
        self.write = write
        self.every = every_seconds() if every is None else every
        self.clock = clock
        self.first = max(start_step, phase.start_step)  # where this attempt started
        self.started = clock()
        self.last_line = None  # when the last line was written; None: none yet
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = None
        if terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=phase.steps, initial=self.first - phase.start_step,
                            desc=f"phase {phase.index}", unit="step", leave=False)

    def update(self, step: int, metrics: dict[str, float] | None = None) -> None:
        """`step` optimizer steps are done (counted over the run); `metrics` are that step's."""
        if step <= self.first:
            return  # nothing trained yet (the step-0 baseline evaluation reports at step 0)
        metrics = metrics or {}
        now = self.clock()
        if self.bar is not None:
            self.bar.update(step - self.phase.start_step - self.bar.n)
            if names.LOSS in metrics:
                self.bar.set_postfix(loss=f"{metrics[names.LOSS]:.4f}", refresh=False)
            return
        due = self.last_line is None or now - self.last_line >= self.every
        if due or step >= self.phase.end_step:
            self.last_line = now
            self.write(self.line(step, metrics, now))

    def line(self, step: int, metrics: dict[str, float], now: float) -> str:
        phase = self.phase
        done = step - phase.start_step
        parts = [f"genbac: phase-{phase.index} step {done:,}/{phase.steps:,} "
                 f"({done / max(phase.steps, 1):.1%})"]
        if names.LOSS in metrics:
            parts.append(f"loss {metrics[names.LOSS]:.4f}")
        if names.TOKENS_PER_SEC in metrics:
            parts.append(f"{metrics[names.TOKENS_PER_SEC]:,.0f} tokens/s")
        this_attempt = step - self.first
        if this_attempt > 0 and step < phase.end_step:
            left = (now - self.started) / this_attempt * (phase.end_step - step)
            parts.append(f"{duration(left)} left")
        return " · ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_line(line: str) -> None:
    print(line, flush=True)


class PrepProgress:
    """A line every GENBAC_PROGRESS_SECONDS (30 s) while a process tokenises its shard:
    `genbac: en/train [process 1/2]: 120,000 documents, 1.2 GB, 3.4 MB/s, 0.9M tokens/s`. Each
    tokenising process counts its own pieces (a copy of this object lives in each)."""

    def __init__(self, what: str, processes: int, every: float | None = None,
                 write: Callable[[str], Any] | None = None):
        self.what, self.processes = what, processes
        self.every = every_seconds() if every is None else every
        self.write = write or print_line
        self.documents = self.bytes = self.tokens = 0
        # CLOCK_MONOTONIC is one clock for the whole machine: the processes' copies share it
        self.started = self.last = time.monotonic()

    def update(self, rank: int | None, documents: int, nbytes: int, tokens: int) -> None:
        now = time.monotonic()
        self.documents += documents
        self.bytes += nbytes
        self.tokens += tokens
        if now - self.last >= self.every:
            self.last = now
            where = (f" [process {(rank or 0) + 1}/{self.processes}]" if self.processes > 1
                     else "")
            seconds = max(now - self.started, 1e-9)
            self.write(f"genbac: {self.what}{where}: {self.documents:,} documents, "
                       f"{self.bytes / 1e6:,.1f} MB, {self.bytes / 1e6 / seconds:,.1f} MB/s, "
                       f"{self.tokens / seconds:,.0f} tokens/s")
