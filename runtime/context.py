"""What every step of a run sees: the compiled experiment, its state file, the tracker, the log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from genbac import atomic
from genbac.compiler import artifact as layout
from genbac.compiler.artifact import Artifact
from genbac.compiler.plan import Plan
from genbac.errors import UserError


class RunError(UserError):
    """A problem the user can fix (bad input, mismatched state); reported without a traceback."""


@dataclass
class Context:
    artifact: Artifact
    state: dict = field(default_factory=dict)
    tracker: object = None  # runtime.tracking.Tracker; None for `genbac step` and the workers
    log: Callable[[str], None] = print
    device: object = None  # runtime.preflight.Device: where training runs
    run_id: str | None = None  # the MLflow run of the step being executed

    @property
    def compiled(self) -> Path:
        return self.artifact.directory

    @property
    def project(self) -> Path:
        return self.artifact.project

    @property
    def plan(self) -> Plan:
        return self.artifact.plan

    @property
    def work(self) -> Path:
        return self.artifact.path(layout.WORK)

    def path(self, relative: str) -> Path:
        return self.artifact.path(relative)

    def save_state(self) -> None:
        atomic.write_file(self.path(layout.STATE), json.dumps(self.state, indent=2,
                                                              sort_keys=True))


class Backend:
    """How the step plan's tool steps (prepare, convert, baseline, phase) are done: by Model Zoo's
    `cszoo` (runtime/cszoo_backend.py) or by genbac here (runtime/local_backend.py). genbac's own
    steps are runtime/steps.py's under every backend."""

    name: str

    def __init__(self, plan: Plan):
        self.plan = plan

    def run(self, ctx: "Context", step) -> dict | None:
        do = {"prepare": self.prepare, "convert": self.convert, "baseline": self.baseline,
              "phase": self.phase}.get(step.kind)
        if do is None:
            raise RunError(f"the {self.name} backend has no step of kind {step.kind} "
                           f"({step.name})")
        return do(ctx, step)

    def prepare(self, ctx: "Context", step) -> dict | None:
        raise NotImplementedError

    def convert(self, ctx: "Context", step) -> dict | None:
        raise NotImplementedError

    def baseline(self, ctx: "Context", step) -> dict | None:
        raise NotImplementedError

    def phase(self, ctx: "Context", step) -> dict | None:
        raise NotImplementedError
