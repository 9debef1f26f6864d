"""Targets: Plan -> generated files. Each target registers itself under a name."""

from __future__ import annotations

from typing import Callable

# name -> function(plan, context) -> {relative path: bytes}
TARGETS: dict[str, Callable] = {}


def register(name: str):
    def wrap(fn):
        TARGETS[name] = fn
        return fn
    return wrap


def get(name: str) -> Callable:
    if name not in TARGETS:
        import importlib

        importlib.import_module(f"genbac.compiler.targets.{name}")
    return TARGETS[name]
