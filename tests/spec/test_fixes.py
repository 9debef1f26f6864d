"""Fixes: the edits a diagnostic carries for an editor's quick fix (and `--format json`).

Each case is BASE with one slip; the diagnostic's first fix, applied to the text, must give back a
spec that checks clean, and for a slip whose intended form is known, exactly BASE. A fix is only
offered where it surely means what the help says: errors without one are checked to have none.
"""

from __future__ import annotations

import json

import pytest

from _genba_spec_fixtures import BASE, PATH, diagnose, mutate

from genbac.compiler.compile import plan_spec
from genbac.spec.diagnostics import render_json


def apply(text: str, span, replacement: str) -> str:
    return text[:span.start] + replacement + text[span.end:]


# (slip as (old, new) in BASE, code, every fix's replacement); the first fix restores BASE
RESTORING = [
    (("enter = 90%", "enter = 90"), "GB111", ["90%", "90 tokens"]),
    (("enter = 90%", "enter = 90 %"), "GB001", ["90%"]),
    (("tokens = 80M", "tokens = 80MB"), "GB003", ["80M"]),
    (("tokens = 80M", "tokens = 80 million"), "GB003", ["80M"]),
    (("tokens = 164B", "tokens = 164 B"), "GB003", ["164B"]),
    (("hardware = cs-2 x 1", "hardware = 1 x cs-2"), "GB003", ["cs-2 x 1"]),
    (("hardware = cs-2 x 1", "hardware = cs-2 x1"), "GB003", ["x 1"]),
    (("sequence = 8192", "sequence: 8192"), "GB001", [" ="]),
    (("sequence = 8192", "sequence : 8192"), "GB001", ["="]),
    (("warmup(1%)", "warmup(1)"), "GB111", ["1%", "1 steps"]),
    (("cosine(to = 10%)", "cosine(to = 10)"), "GB113", ["10%", "0.1"]),
    (("enter = 90%", "entr = 90%"), "GB101", ["enter"]),
    (("precision = bf16", "precision = bf61"), "GB120", ["bf16"]),
    (("base = llama3.1-8b", "base = llama3.1-8"), "GB121", ["llama3.1-8b"]),
    (("adamw(lr = 1.5e-4)", "adamw(l_r = 1.5e-4)"), "GB101", ["lr"]),
    (("grow blocks { add", "grwo blocks { add"), "GB101", ["grow"]),
]


@pytest.mark.parametrize("change, code, replacements", RESTORING,
                         ids=[new for (_, new), _, _ in RESTORING])
def test_the_first_fix_restores_the_spec(change, code, replacements):
    text = mutate(change)
    found = [d for d in diagnose(text) if d.code == code]
    assert len(found) == 1, found
    d = found[0]
    assert [r for _, r in d.fixes] == replacements
    assert apply(text, *d.fixes[0]) == BASE
    for span, _ in d.fixes:
        assert span.path == PATH and 0 <= span.start <= span.end <= len(text)


def test_a_thousands_separator_is_fixed_either_way():
    text = mutate(("batch = 480", "batch = 1,024"))
    (d,) = diagnose(text)
    assert [r for _, r in d.fixes] == ["1024", "1_024"]
    for span, replacement in d.fixes:
        plan, _ = plan_spec(apply(text, span, replacement), PATH)
        assert plan.schedule.batch == 1024


def test_a_tuple_without_brackets_gets_them():
    text = mutate(("adamw(lr = 1.5e-4)", "adamw(lr = 1.5e-4, betas = 0.9, 0.95)"))
    (d,) = diagnose(text)
    assert d.code == "GB115" and "`betas = (0.9, 0.95)`" in d.help[0]
    (span, replacement), = d.fixes
    assert (text[span.start:span.end], replacement) == ("0.9, 0.95", "(0.9, 0.95)")
    plan, _ = plan_spec(apply(text, span, replacement), PATH)
    assert plan.spec.train.optimizer.betas == (0.9, 0.95)


@pytest.mark.parametrize("old, new, fixed", [
    ("hardware = cs-2 x 1", "hardware = 4 x h100 x 2", "h100 x 4 x 2"),  # the nodes kept
    ("batch = 480", "batch = 1,000,000", "1000000"),  # every group
])
def test_fixes_keep_the_whole_value(old, new, fixed):
    text = mutate((old, new))
    d = [d for d in diagnose(text) if d.fixes][0]
    span, replacement = d.fixes[0]
    assert replacement == fixed
    assert apply(text, span, replacement) == mutate((old, old.split("= ")[0] + "= " + fixed))


def test_a_did_you_mean_of_another_shape_is_no_fix():
    text = mutate(("  hardware = cs-2 x 1\n", "  hardware = cs-2 x 1\n  hardwre { x = 1 }\n"))
    (d,) = [d for d in diagnose(text) if d.code == "GB101"]
    assert "did you mean `hardware`?" in d.help and d.fixes == ()


def test_sequence_8k_offers_both_lengths():
    text = mutate(("sequence = 8192", "sequence = 8K"))
    plan, warnings = plan_spec(text, PATH)
    (w,) = [d for d in warnings if d.code == "GB911"]
    assert [r for _, r in w.fixes] == ["8192", "8000"]
    assert apply(text, *w.fixes[0]) == BASE


@pytest.mark.parametrize("change", [
    ("tokens = 80M", "tokens = 80 epochs"),  # no unit meant: nothing to write for the user
    ("tokens = 80M", "tokens = 80M 90M"),
    ("enter = 90%", "enter = 190%"),
    ("precision = bf16", "precision = zzzz"),  # nothing close to `zzzz`
])
def test_no_fix_where_the_intent_is_unknown(change):
    assert all(not d.fixes for d in diagnose(mutate(change)))


def test_fixes_reach_the_json_output():
    text = mutate(("enter = 90%", "entr = 90%"))
    doc = json.loads(render_json(diagnose(text)))
    (d,) = doc["diagnostics"]
    assert d["fixes"] == [{"location": {"file": PATH, "line": 9, "col": 5, "end_line": 9,
                                        "end_col": 9}, "replacement": "enter"}]
