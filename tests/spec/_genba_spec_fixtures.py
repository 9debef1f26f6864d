"""Shared material for the tests/spec/test_spec_*.py modules.

BASE is a compact, valid spec modelled on examples/llama-genba-10b.genba. Every broken spec in these
tests is BASE with one (or a few) textual changes, so that the expected line and column of each
diagnostic can be read off the listing below:

     1  experiment "mini" {
     2    base = llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"
     3    grow blocks { add = 8  init = identity  train = all }
     4    language en "English" { data = "data/en/*.jsonl"  tokens = ~82B }
     5    language de "German" { data = "data/de/*.jsonl"  tokens = ~82B }
     6    language bar "Bavarian" {
     7      data = "data/bar/*.jsonl"
     8      tokens = 80M
     9      enter = 90%
    10    }
    11    train {
    12      tokens = 164B
    13      sequence = 8192
    14      batch = 480
    15      optimizer = adamw(lr = 1.5e-4)
    16      schedule = warmup(1%) then cosine(to = 10%)
    17      precision = bf16
    18      checkpoint every 500 steps
    19    }
    20    hardware = cs-2 x 1
    21  }
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from genbac.compiler.compile import plan_spec
from genbac.spec.diagnostics import Diagnostic, SpecError

PATH = "mini.genba"

BASE = """\
experiment "mini" {
  base = llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"
  grow blocks { add = 8  init = identity  train = all }
  language en "English" { data = "data/en/*.jsonl"  tokens = ~82B }
  language de "German" { data = "data/de/*.jsonl"  tokens = ~82B }
  language bar "Bavarian" {
    data = "data/bar/*.jsonl"
    tokens = 80M
    enter = 90%
  }
  train {
    tokens = 164B
    sequence = 8192
    batch = 480
    optimizer = adamw(lr = 1.5e-4)
    schedule = warmup(1%) then cosine(to = 10%)
    precision = bf16
    checkpoint every 500 steps
  }
  hardware = cs-2 x 1
}
"""

# Lines of BASE that several cases insert something before.
TRAIN_OPEN = "  train {\n"
GROW_LINE = "  grow blocks { add = 8  init = identity  train = all }\n"


def mutate(*changes: tuple[str, str], text: str = BASE) -> str:
    """BASE with each `old` replaced by `new`; every `old` must occur exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def insert_before(anchor: str, lines: str, text: str = BASE) -> str:
    return mutate((anchor, lines + anchor), text=text)


def diagnose(text: str, path: str = PATH) -> list[Diagnostic]:
    """The diagnostics of a spec that must fail: plan_spec raises SpecError and nothing else."""
    with pytest.raises(SpecError) as info:
        plan_spec(text, path)
    diagnostics = info.value.diagnostics
    assert diagnostics, "SpecError without diagnostics"
    assert any(d.is_error for d in diagnostics), "SpecError without an error diagnostic"
    return diagnostics


def plan_ok(text: str, path: str = PATH):
    """Plan a spec that must succeed; return (plan, diagnostics)."""
    try:
        return plan_spec(text, path)
    except SpecError as exc:  # pragma: no cover - shows what went wrong
        pytest.fail("expected a valid spec, got: " +
                    "; ".join(f"{d.code} {d.span}: {d.message}" for d in exc.diagnostics))


def only(diagnostics: list[Diagnostic], code: str) -> Diagnostic:
    found = [d for d in diagnostics if d.code == code]
    assert len(found) == 1, f"expected one {code}, got {[(d.code, str(d.span)) for d in diagnostics]}"
    return found[0]


def where(span) -> tuple[int, int]:
    return (span.line, span.col)


@dataclass(frozen=True)
class Case:
    """One broken spec and the diagnostic it must produce."""

    id: str
    text: str
    code: str
    at: tuple[int, int]  # (line, col) of the primary span
    message: str  # a fragment of the message
    secondary: tuple[tuple[int, int, str], ...] | None = None  # (line, col, label fragment)
    help: str | None = None  # a fragment of one help line
    severity: str = "error"
    also: frozenset[str] = field(default_factory=frozenset)  # other error codes allowed


def check_case(case: Case) -> Diagnostic:
    diagnostics = diagnose(case.text)
    d = only(diagnostics, case.code)
    assert d.severity == case.severity
    assert d.span is not None and d.span.path == PATH
    assert where(d.span) == case.at, f"{case.code} at {d.span}, expected {case.at}"
    assert case.message in d.message
    if case.secondary is not None:
        got = [(s.line, s.col, label) for s, label in d.secondary]
        assert len(got) == len(case.secondary), got
        for (line, col, label), (gl, gc, glabel) in zip(case.secondary, got):
            assert (gl, gc) == (line, col), got
            assert label in glabel, got
    if case.help is not None:
        assert any(case.help in h for h in d.help), d.help
    other_errors = {x.code for x in diagnostics if x.is_error and x is not d}
    assert other_errors <= case.also, f"unexpected extra errors: {other_errors}"
    return d


def params(cases: list[Case]):
    return [pytest.param(c, id=c.id) for c in cases]
