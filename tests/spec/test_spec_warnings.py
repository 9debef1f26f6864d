"""Warnings (GB9xx): reported with their position, and never a reason to stop planning."""

from __future__ import annotations

import pytest

from _genba_spec_fixtures import BASE, Case, diagnose, mutate, only, params, plan_ok, where

WARNINGS = [
    Case("high-learning-rate", mutate(("lr = 1.5e-4", "lr = 0.05")),
         "GB901", (15, 28), "learning rate 0.05 is unusually high", help="1e-5 … 3e-4",
         severity="warning"),
    Case("many-epochs", mutate(("tokens = 80M", "tokens = 80M\n    corpus = 10M")),
         "GB902", (8, 14), "`bar` repeats its corpus 8.0 times (80M tokens from 10M)",
         secondary=((9, 14, "corpus size"),), severity="warning"),
    Case("approximate-budgets-scaled", mutate(("    tokens = 164B", "    tokens = 200B")),
         "GB905", (12, 14), "approximate budgets are scaled by 1.2190 to fit the total of 200B",
         secondary=((4, 62, "~82B -> 99.96B"), (5, 61, "~82B -> 99.96B")), severity="warning"),
    Case("warmup-rounds-to-zero", mutate(("warmup(1%)", "warmup(0.001%)")),
         "GB906", (16, 16), "the warmup rounds to 0 of 41707 steps", severity="warning"),
    Case("big-model-on-cpu", mutate(("cs-2 x 1", "cpu")),
         "GB907", (20, 14), "training 9.8B parameters on a CPU", severity="warning"),
    Case("checkpoint-interval-longer-than-run",
         mutate(("checkpoint every 500 steps", "checkpoint every 50000 steps")),
         "GB908", (18, 22), "checkpoint every 50000 steps, but the run has only 41707",
         severity="warning"),
    Case("eval-interval-longer-than-run",
         mutate(("    checkpoint every", "    eval every 41708 steps\n    checkpoint every")),
         "GB908", (18, 16), "evaluation every 41708 steps, but the run has only 41707",
         severity="warning"),
    Case("sequence-in-thousands", mutate(("sequence = 8192", "sequence = 8K")),
         "GB911", (13, 16), "`sequence = 8K` is 8,000 tokens, not 8,192",
         help="write `sequence = 8192`", severity="warning"),
    Case("copied-blocks-train-alone", mutate(("init = identity  train = all",
                                              "init = copy  train = new")),
         "GB909", (3, 33), "the grown model does not start from the base model's function",
         severity="warning"),
]


@pytest.mark.parametrize("case", params(WARNINGS))
def test_warning_is_reported_and_planning_goes_on(case):
    plan, diagnostics = plan_ok(case.text)
    assert plan is not None and plan.schedule.total_steps > 0
    d = only(diagnostics, case.code)
    assert d.severity == "warning" and not d.is_error
    assert where(d.span) == case.at
    assert case.message in d.message
    if case.secondary is not None:
        assert [(s.line, s.col) for s, _ in d.secondary] == [(l, c) for l, c, _ in case.secondary]
        for (_, _, label), (_, got) in zip(case.secondary, d.secondary):
            assert label in got
    if case.help is not None:
        assert any(case.help in h for h in d.help)
    assert all(not x.is_error for x in diagnostics)


def test_reference_spec_has_no_diagnostics():
    plan, diagnostics = plan_ok(BASE)
    assert diagnostics == []
    assert plan.schedule.total_steps == 41707


@pytest.mark.parametrize("text", [
    pytest.param(mutate(("lr = 1.5e-4", "lr = 0.01")), id="lr-at-threshold"),
    pytest.param(mutate(("tokens = 80M", "tokens = 80M\n    corpus = 20M")), id="four-epochs"),
    pytest.param(mutate(("    tokens = 164B", "    tokens = 172B")), id="scaled-under-5-percent"),
    pytest.param(mutate(("checkpoint every 500 steps", "checkpoint every 41707 steps")),
                 id="checkpoint-equals-run"),
    pytest.param(mutate(("init = identity  train = all", "init = copy  train = all")),
                 id="copied-blocks-train-with-base"),
])
def test_no_warning_at_or_below_the_threshold(text):
    _, diagnostics = plan_ok(text)
    assert diagnostics == []


def test_several_warnings_in_one_spec_all_come_back():
    text = mutate(("lr = 1.5e-4", "lr = 0.05"), ("    tokens = 164B", "    tokens = 200B"),
                  ("checkpoint every 500 steps", "checkpoint every 60000 steps"))
    _, diagnostics = plan_ok(text)  # 200B at 480 x 8192 is 50,863 steps
    assert sorted(d.code for d in diagnostics) == ["GB901", "GB905", "GB908"]


def test_warnings_travel_with_errors():
    # a warning found before an error is still part of the SpecError's diagnostics
    text = mutate(("lr = 1.5e-4", "lr = 0.05"), ("cs-2 x 1", "cs2 x 1"))
    codes = {d.code: d.severity for d in diagnose(text)}
    assert codes == {"GB901": "warning", "GB122": "error"}
