"""Targets: Plan -> step plan and generated files. One registry, one class per target.

A target is a `Target` subclass with its name, its checks (what it cannot express although the
spec is valid), its steps (the step plan of compiler/artifact.py, which every way of running the
compiled directory executes) and its files (rendered from the plan and those steps). The registry
maps a name to its class; `get` imports a known target's module the first time it is asked for.
"""

from __future__ import annotations

import importlib

from genbac.compiler.artifact import Step
from genbac.compiler.plan import Plan
from genbac.spec.diagnostics import Diagnostic

# name -> module that defines it: imported on first use, so the CLI stays light
KNOWN = {"cszoo": "genbac.compiler.targets.cszoo"}
TARGETS: dict[str, type["Target"]] = {}


class Target:
    name: str

    def check(self, plan: Plan) -> list[Diagnostic]:
        """Problems (errors stop the compile) and warnings of this target, with their spans."""
        return []

    def steps(self, plan: Plan) -> list[Step]:
        raise NotImplementedError

    def files(self, plan: Plan, steps: list[Step], *, spec_file: str, project_dir: str
              ) -> dict[str, bytes]:
        raise NotImplementedError


def register(cls: type[Target]) -> type[Target]:
    TARGETS[cls.name] = cls
    return cls


def get(name: str) -> Target:
    if name not in TARGETS and name in KNOWN:
        importlib.import_module(KNOWN[name])
    if name not in TARGETS:
        raise KeyError(f"no target {name!r} (known: {', '.join(sorted(KNOWN))})")
    return TARGETS[name]()
