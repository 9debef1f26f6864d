"""Planner errors (GB136–GB180): checks that need the whole experiment, still pointing at the source."""

from __future__ import annotations

import pytest

from genbac.compiler.compile import compile_spec
from genbac.spec.diagnostics import SpecError

from _genba_spec_fixtures import (GROW_LINE, TRAIN_OPEN, Case, check_case, diagnose, insert_before,
                                  mutate, only, params, where)

EN = '"data/en/*.jsonl"  tokens = ~82B'
DE = '"data/de/*.jsonl"  tokens = ~82B'


def with_phase(*phases: str) -> str:
    return insert_before(TRAIN_OPEN, "".join(p + "\n" for p in phases))  # first phase: line 11


SEVENTY_B = 'llama3.1-70b'  # 80 layers: `add = 8` still divides them

SCHEDULE = [
    # GB136: empty window
    Case("exit-before-enter", mutate(("enter = 90%", "enter = 90%\n    exit = 50%")),
         "GB136", (9, 13), "`bar` has an empty window: it enters at 90% and exits at 50%",
         secondary=((10, 12, "exits here"),)),
    Case("enter-equals-exit-in-tokens", mutate(("enter = 90%", "enter = 150B\n    exit = 150B")),
         "GB136", (9, 13), "`bar` has an empty window", secondary=((10, 12, "exits here"),)),
    # GB137: a window shorter than one step, no language active, not enough data
    Case("window-shorter-than-a-step", mutate(("enter = 90%", "enter = 90%\n    exit = 90.0001%")),
         "GB137", (9, 13), "is shorter than one step (41707 steps in total)",
         secondary=((10, 12, "exits here"),), help="widen the window"),
    Case("no-language-active", mutate((EN, EN + "  enter = 10%"), (DE, DE + "  enter = 10%")),
         "GB137", (1, 1), "no language is active in 0%–10% of training",
         also=frozenset({"GB139"})),
    Case("not-enough-data", mutate((EN, EN + "  exit = 50%"), (DE, DE + "  exit = 50%"),
                                   ("enter = 90%", "enter = 50%")),
         "GB137", (8, 14), "not enough data for 50%–100% of training",
         help="raise these budgets", also=frozenset({"GB139"})),
    Case("phase-at-the-end", with_phase("  phase 100% { en = 50%  de = 50% }"),
         "GB137", (11, 9), "the phase starting at 100% has no steps"),
    # GB130 in the planner: absolute token positions beyond the declared total
    Case("phase-beyond-total", with_phase("  phase 200B { en = 50%  de = 50% }"),
         "GB130", (11, 9), "the phase at 200B tokens is beyond the end of training (164B)"),
    Case("two-phases-same-step", with_phase("  phase 50% { en = 50%  de = 50% }",
                                            "  phase 50% { en = 40%  de = 60% }"),
         "GB102", (12, 9), "two phases start at step 20854", secondary=((11, 9, "other phase"),)),
    # GB138: explicit weight outside a language's window
    Case("weight-outside-window", with_phase("  phase 50% { en = 50%  de = 49.5%  bar = 0.5% }"),
         "GB138", (11, 37), "`bar` gets weight 0.005 in the phase at 50%, outside its window",
         secondary=((9, 13, "window"),)),
    # GB139: a budget that does not fit its window; an explicit mixture that misses a budget
    Case("budget-larger-than-window", mutate(("tokens = 80M", "tokens = 20B")),
         "GB139", (8, 14), "`bar` needs 20B tokens in 90%–100%, which holds only 16.4012B",
         secondary=((9, 13, "window"),), help="widen the window",
         also=frozenset({"GB137"})),
    Case("explicit-mixture-misses-budget",
         with_phase("  phase 90% { en = 50%  de = 50%  bar = 0% }"),
         "GB139", (8, 14), "the explicit mixtures give `bar` 0 tokens, but its budget is 80M"),
    # the weights are shown as shares, as written, not as the fraction 0.2
    Case("explicit-mixture-over-budget",
         with_phase("  phase 90% { en = 40%  de = 40%  bar = 20% }"),
         "GB139", (8, 14), "the explicit mixtures give `bar` 3.28",
         secondary=((11, 35, "20% of the phase"),)),
    # GB140: budgets against the declared total
    Case("exact-budgets-do-not-sum", mutate((EN, EN.replace("~", "")), (DE, DE.replace("~", ""))),
         "GB140", (12, 14), "the language budgets sum to 164.08B, but the declared total is 164B",
         secondary=((4, 62, "en: 82B"), (5, 61, "de: 82B"), (8, 14, "bar: 80M")),
         help="`tokens = ~82B`"),
    Case("exact-budgets-exceed-total", mutate((EN, EN.replace("~", "")),
                                              ("    tokens = 164B", "    tokens = 80B")),
         "GB140", (12, 14), "the exact budgets alone (82.08B) reach the declared total of 80B",
         help="raise the total"),
    # GB141: the whole run is shorter than one step
    Case("run-shorter-than-a-step", mutate(("    tokens = 164B", "    tokens = 1M"),
                                           ("tokens = 80M", "tokens = 80K")),
         "GB141", (12, 14), "the run of 1M tokens is shorter than one step of 480 x 8192",
         secondary=((14, 13, "batch"), (13, 16, "sequence"))),
    # GB142: the schedule's fixed lengths exceed the run
    Case("schedule-longer-than-run", mutate(("warmup(1%)", "warmup(50000 steps)")),
         "GB142", (16, 16), "the schedule's pieces last 50000 steps, longer than the run (41707"),
]

MODEL = [
    # GB150: sequence longer than context
    Case("sequence-longer-than-context", mutate(("sequence = 8192", "sequence = 262144")),
         "GB150", (13, 16), "sequence 262144 is longer than llama3.1-8b's context of 131072",
         secondary=((2, 10, "context 131072"),)),
    # GB151: vocabulary extension without a tokenizer
    Case("vocab-without-tokenizer", insert_before(GROW_LINE, "  vocab { add = 27447 }\n"),
         "GB151", (3, 17), "the vocabulary grows by 27,447 tokens", help="tokenizer ="),
    # GB160–GB163: growth layouts
    Case("depth-drop-too-large", mutate((GROW_LINE, "  grow depth { drop = 16 }\n")),
         "GB160", (3, 23), "`drop = 16` leaves nothing to grow", secondary=((2, 10, "32 layers"),)),
    Case("more-blocks-than-positions", mutate(("add = 8", "add = 40")),
         "GB161", (3, 23), "cannot interleave 40 new blocks into 32 layers",
         secondary=((2, 10, "llama3.1-8b: 32 layers"),), help="place = top"),
    Case("layers-do-not-split-into-groups", mutate(("add = 8", "add = 5")),
         "GB162", (3, 23), "32 layers do not split into 5 equal groups",
         help="use one of 1, 2, 4, 8, 16, 32"),
    Case("after-names-a-missing-layer", mutate(("add = 8", "after = [3, 40]")),
         "GB163", (3, 29), "layer 40 is out of range: llama3.1-8b has layers 0–31",
         secondary=((2, 10, "32 layers"),)),
    # GB170: precision the hardware cannot train in
    Case("fp32-on-cs2", mutate(("precision = bf16", "precision = fp32")),
         "GB170", (17, 17), "cs-2 x 1 cannot train in fp32", secondary=((20, 14, "hardware"),),
         help="use one of `bf16`, `fp16`"),
    Case("fp16-on-cpu", mutate(("precision = bf16", "precision = fp16"), ("cs-2 x 1", "cpu")),
         "GB170", (17, 17), "cpu cannot train in fp16", help="use one of `bf16`, `fp32`"),
    Case("fp16-on-gpus", mutate(("precision = bf16", "precision = fp16"), ("cs-2 x 1", "h100 x 8")),
         "GB170", (17, 17), "h100 x 8 cannot train in fp16: genbac's GPU trainer runs bfloat16 "
         "or float32", help="use one of `bf16`, `fp32`"),
    # GB171: the model does not fit one GPU
    Case("70b-on-h100", mutate(('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"', SEVENTY_B),
                               ("cs-2 x 1", "h100 x 8")),
         "GB171", (20, 14), "sharded over all 8, with activation checkpointing and micro-batch 1, "
         "a GPU needs 179 GB (training state 155 GB", secondary=((2, 10, "parameters"),),
         help="FSDP over 30 or more h100 GPUs would fit (`hardware = h100 x 8 x 4`: 32 GPUs"),
    # GB172: batches that do not divide
    Case("batch-over-systems", mutate(("cs-2 x 1", "cs-2 x 7")),
         "GB172", (14, 13), "batch 480 does not split over 7 systems",
         secondary=((20, 21, "7 systems"),)),
    Case("micro-batch-per-system", mutate(("    precision = bf16", "    precision = bf16\n"
                                           "    micro_batch = 7")),
         "GB172", (18, 19), "the per-system batch 480 is not a multiple of micro_batch 7",
         secondary=((14, 13, "global batch"),)),
    Case("micro-batch-on-gpus", mutate(("    precision = bf16", "    precision = bf16\n"
                                        "    micro_batch = 7"), ("cs-2 x 1", "h100 x 8"),
                                       ('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"',
                                        "llama3.2-1b"), ("add = 8", "add = 4")),
         "GB172", (18, 19), "the per-device batch 60 is not a multiple of micro_batch 7",
         secondary=((14, 13, "global batch"),)),
    Case("batch-over-gpus", mutate(("cs-2 x 1", "h100 x 7"),
                                   ('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"',
                                    "llama3.2-1b"), ("add = 8", "add = 4")),
         "GB172", (14, 13), "batch 480 does not split over 7 devices",
         secondary=((20, 21, "7 devices"),)),
    Case("micro-batch-on-one-cpu", mutate(("    precision = bf16", "    precision = fp32\n"
                                           "    micro_batch = 7"), ("cs-2 x 1", "cpu"),
                                          ('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"',
                                           "llama3.2-1b"), ("add = 8", "add = 4")),
         "GB172", (18, 19), "batch 480 is not a multiple of micro_batch 7",
         secondary=((14, 13, "batch"),)),
]


@pytest.mark.parametrize("case", params(SCHEDULE))
def test_schedule_error(case):
    check_case(case)


@pytest.mark.parametrize("case", params(MODEL))
def test_model_and_hardware_error(case):
    check_case(case)


@pytest.mark.parametrize("changes, codes", [
    pytest.param([("add = 8", "add = 5"), ("sequence = 8192", "sequence = 262144")],
                 ["GB150", "GB162"], id="growth-and-context"),
    # regression: the hardware checks used to be skipped when the growth plan failed, and the
    # training checks when the schedule failed, hiding independent errors
    pytest.param([("add = 8", "add = 5"), ("precision = bf16", "precision = fp32")],
                 ["GB162", "GB170"], id="growth-and-precision"),
    pytest.param([("warmup(1%)", "warmup(50000 steps)"), ("sequence = 8192", "sequence = 262144")],
                 ["GB142", "GB150"], id="schedule-and-context"),
])
def test_independent_planner_errors_are_reported_together(changes, codes):
    assert sorted(d.code for d in diagnose(mutate(*changes))) == codes


def test_cszoo_target_rejects_a_head_dim_it_cannot_express():
    arch = ("  architecture tiny {\n    hidden = 64\n    layers = 4\n    heads = 4\n"
            "    head_dim = 32\n    kv_heads = 2\n    ffn = 256\n    vocab = 1024\n"
            "    context = 8192\n  }\n")
    text = insert_before("  grow blocks", arch, text=mutate(
        ('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"', "tiny"), ("add = 8", "add = 2")))
    with pytest.raises(SpecError) as info:
        compile_spec(text, "mini.genba", project_dir="..")
    d = only(info.value.diagnostics, "GB180")
    assert where(d.span) == (7, 16)
    assert "head_dim = hidden / heads (64 / 4)" in d.message


# regression: Node.where() falls back to the node's own span, so `x.where("a") or x.where("b")`
# never reached "b"; these two diagnostics pointed at whole blocks
def test_run_shorter_than_a_step_without_total_points_at_batch():
    text = mutate(("    tokens = 164B\n", ""), (EN, EN.replace("~82B", "~500K")),
                  (DE, DE.replace("~82B", "~500K")), ("tokens = 80M", "tokens = 80K"))
    d = only(diagnose(text), "GB141")
    assert "the run of 1.08M tokens is shorter than one step" in d.message
    assert where(d.span) == (13, 13)  # `480` after `batch =` (the tokens line is gone)


def test_empty_window_without_enter_points_at_the_language_code():
    d = only(diagnose(mutate((EN, EN + "  exit = 0%"))), "GB136")
    assert "`en` has an empty window" in d.message
    assert [where(s) for s, _ in d.secondary] == [(4, 75)]  # `0%`
    assert where(d.span) == (4, 12)  # `en`


def test_empty_phase_is_a_diagnostic_not_a_crash():
    # regression: this used to raise ValueError("no language to fill a phase") in the solver
    diagnostics = diagnose(with_phase("  phase 50% { }"))
    assert [(d.code, where(d.span)) for d in diagnostics] == [("GB135", (11, 3))]
    assert "no weights" in diagnostics[0].message
