"""Lowering errors (GB101–GB135): one broken value each, reported with its exact position."""

from __future__ import annotations

import pytest

from _genba_spec_fixtures import (BASE, GROW_LINE, TRAIN_OPEN, Case, check_case, diagnose,
                                  insert_before, mutate, only, params, plan_ok, where)

ARCH = """\
  architecture tiny {
    hidden = 64
    layers = 4
    heads = 4
    kv_heads = 2
    ffn = 256
    vocab = 1024
  }
"""  # inserted before the `grow` line: `architecture` on line 3, `hidden` on 4, … `vocab` on 9


def with_arch(*changes):
    return insert_before(GROW_LINE, mutate(*changes, text=ARCH))


def with_phase(phase: str) -> str:
    return insert_before(TRAIN_OPEN, phase + "\n")  # the phase is line 11


BAR_BLOCK = ('  language bar "Bavarian" {\n    data = "data/bar/*.jsonl"\n    tokens = 80M\n'
             '    enter = 90%\n  }\n')

UNKNOWN_NAMES = [
    # GB101: unknown keys and blocks, with "did you mean"
    Case("unknown-key-in-train", mutate(("    tokens = 164B", "    tokns = 164B")),
         "GB101", (12, 5), "unknown key `tokns` in `train`", help="did you mean `tokens`?"),
    Case("unknown-key-in-language", mutate(("    enter = 90%", "    enetr = 90%")),
         "GB101", (9, 5), "unknown key `enetr` in language `bar`", help="did you mean `enter`?"),
    Case("unknown-block-in-experiment", insert_before(TRAIN_OPEN, "  traning { }\n"),
         "GB101", (11, 3), "unknown block `traning` in the experiment",
         help="did you mean `train`?"),
    Case("setting-written-as-block", mutate(("    precision = bf16", "    precision { x = 1 }")),
         "GB101", (17, 5), "`precision` is a setting, not a block", help="write `precision = …`"),
    Case("block-written-as-setting", mutate(("  hardware = cs-2 x 1\n",
                                             "  hardware = cs-2 x 1\n  train = 5\n")),
         "GB101", (21, 3), "`train` is a block, not a setting", help="write `train { … }`"),
    Case("unknown-top-level-block", mutate(('experiment "mini"', 'experimnt "mini"')),
         "GB101", (1, 1), "unknown top-level block `experimnt`",
         help="did you mean `experiment`?"),
    Case("setting-outside-experiment", mutate(('experiment "mini"', 'seed = 1\nexperiment "mini"')),
         "GB101", (1, 1), "`seed` must be inside the experiment block"),
    Case("unknown-optimizer-argument", mutate(("adamw(lr = 1.5e-4)",
                                               "adamw(lr = 1.5e-4, weight_decy = 0.1)")),
         "GB101", (15, 36), "`adamw` has no argument `weight_decy`",
         help="did you mean `weight_decay`?"),
    # GB120: unknown choices
    Case("unknown-precision", mutate(("bf16", "bf61")),
         "GB120", (17, 17), "unknown precision `bf61`", help="did you mean `bf16`?"),
    Case("unknown-optimizer", mutate(("adamw(", "adamm(")),
         "GB120", (15, 17), "unknown optimizer `adamm`", help="did you mean `adam"),
    Case("unknown-growth-method", mutate(("grow blocks", "grow width")),
         "GB120", (3, 8), "unknown growth method `width`", help="expected one of: `blocks`, `depth`"),
    Case("unknown-init", mutate(("init = identity", "init = identiy")),
         "GB120", (3, 33), "unknown initialisation `identiy`", help="did you mean `identity`?"),
    Case("unknown-schedule-piece", mutate(("cosine(to = 10%)", "cosin(to = 10%)")),
         "GB120", (16, 32), "unknown schedule piece `cosin`", help="did you mean `cosine`?"),
    # GB121: unknown base architecture
    Case("arch-wrong-case", mutate(("llama3.1-8b from", "llama3.1-8B from")),
         "GB121", (2, 10), "unknown base architecture `llama3.1-8B`",
         help="did you mean `llama3.1-8b`?"),
    Case("arch-typo", mutate(("llama3.1-8b from", "lama3.1-8b from")),
         "GB121", (2, 10), "unknown base architecture `lama3.1-8b`",
         help="did you mean `llama3.1-8b`?"),
    # GB122: unknown hardware
    Case("hardware-typo-with-count", mutate(("cs-2 x 1", "cs2 x 1")),
         "GB122", (20, 14), "unknown hardware `cs2`", help="did you mean `cs-2`?"),
    Case("hardware-typo", mutate(("cs-2 x 1", "h10")),
         "GB122", (20, 14), "unknown hardware `h10`", help="did you mean `h100`?"),
]

STRUCTURE = [
    # GB102: set twice
    Case("duplicate-key", mutate(("    batch = 480\n", "    batch = 480\n    batch = 240\n")),
         "GB102", (15, 5), "`batch` is set twice in `train`", secondary=((14, 5, "first set here"),)),
    Case("duplicate-block", insert_before(GROW_LINE, "  grow blocks { add = 4 }\n"),
         "GB102", (4, 3), "`grow` is given twice", secondary=((3, 3, "first here"),)),
    Case("duplicate-argument", mutate(("adamw(lr = 1.5e-4)", "adamw(lr = 1.5e-4, lr = 1e-4)")),
         "GB102", (15, 36), "argument `lr` is given twice", secondary=((15, 28, "first here"),)),
    Case("second-experiment", BASE + BASE,
         "GB102", (22, 1), "a file holds one experiment", secondary=((1, 1, "first here"),)),
    Case("place-and-after", mutate(("add = 8", "after = [3, 7]  place = top")),
         "GB102", (3, 33), "either `place` or `after`", secondary=((3, 17, "`after` here"),)),
    Case("builtin-architecture-redefined",
         insert_before(GROW_LINE, "  architecture llama3.1-8b { hidden = 1 }\n"),
         "GB102", (3, 16), "architecture `llama3.1-8b` is already defined"),
    # GB103: `every` with a key that is not an interval (the key then also counts as missing)
    Case("every-on-plain-key", mutate(("    sequence = 8192", "    sequence every 8192")),
         "GB103", (13, 5), "`sequence every …` is not a setting", help="write `sequence = …`",
         also=frozenset({"GB104"})),
    # GB104: missing required
    Case("missing-sequence", mutate(("    sequence = 8192\n", "")),
         "GB104", (11, 3), "`train` is missing `sequence`", help="add `sequence = 4096`"),
    Case("missing-language-data", mutate(('    data = "data/bar/*.jsonl"\n', "")),
         "GB104", (6, 3), "language `bar` is missing `data`"),
    Case("missing-hardware", mutate(("  hardware = cs-2 x 1\n", "")),
         "GB104", (1, 1), "the experiment is missing `hardware`", help="add `hardware = cs-2 x 1`"),
    Case("missing-train-block", BASE.split(TRAIN_OPEN)[0] + "  hardware = cs-2 x 1\n}\n",
         "GB104", (1, 1), "the experiment has no `train` block"),
    Case("missing-languages", mutate(
        ('  language en "English" { data = "data/en/*.jsonl"  tokens = ~82B }\n', ""),
        ('  language de "German" { data = "data/de/*.jsonl"  tokens = ~82B }\n', ""),
        (BAR_BLOCK, "")),
         "GB104", (1, 1), "the experiment has no `language` block"),
    Case("missing-experiment", "# nothing here\n",
         "GB104", (1, 1), "no `experiment` block in this file"),
    Case("missing-learning-rate", mutate(("adamw(lr = 1.5e-4)", "adamw(weight_decay = 0.1)")),
         "GB104", (15, 17), "`adamw` needs a learning rate"),
    Case("vocab-without-add", insert_before(GROW_LINE, "  vocab { }\n"),
         "GB104", (3, 3), "`vocab` is missing `add`"),
    # GB105: an import without files to resolve it from (in memory; tests/spec/test_compose.py
    # covers imports from files)
    Case("import", mutate(('experiment "mini"', 'import "common.genba"\nexperiment "mini"')),
         "GB105", (1, 8), "import 'common.genba' cannot be resolved without its files"),
    # GB106: bad names and labels
    Case("invalid-experiment-name", mutate(('experiment "mini"', 'experiment "-mini"')),
         "GB106", (1, 12), "invalid experiment name '-mini'"),
    Case("experiment-without-name", mutate(('experiment "mini" {', "experiment {")),
         "GB106", (1, 1), "the experiment needs one name"),
    Case("invalid-language-code", mutate(('language de "German"', 'language de-at "German"')),
         "GB106", (5, 12), "invalid language code `de-at`"),
    Case("language-without-code", mutate(('language de "German"', 'language "German"')),
         "GB106", (5, 3), "a language needs a code"),
    Case("grow-without-method", mutate(("grow blocks {", "grow {")),
         "GB106", (3, 3), "say how to grow"),
    Case("phase-without-start", with_phase("  phase { en = 50%  de = 50% }"),
         "GB106", (11, 3), "a phase is named by where it starts"),
]

VALUES = [
    # GB110: wrong kind of value
    Case("string-for-number", mutate(("    sequence = 8192", '    sequence = "8192"')),
         "GB110", (13, 16), "`sequence` must be a number, found string '8192'",
         help="for example `sequence = 4096`"),
    Case("bool-for-number", mutate(("    batch = 480", "    batch = true")),
         "GB110", (14, 13), "`batch` must be a number, found boolean true"),
    Case("string-for-architecture", mutate(('llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"',
                                            '"llama3.1-8b"')),
         "GB110", (2, 10), "`base` must be an architecture name"),
    Case("name-for-weights", mutate(('from "hf:meta-llama/Llama-3.1-8B"', "from hf")),
         "GB110", (2, 27), "the weights after `from` must be a string"),
    Case("betas-not-a-pair", mutate(("adamw(lr = 1.5e-4)", "adamw(lr = 1.5e-4, betas = 0.9)")),
         "GB110", (15, 44), "`betas` must be a pair"),
    Case("schedule-wrong-connector", mutate(("warmup(1%) then", "warmup(1%) from")),
         "GB110", (16, 16), "`schedule` must be pieces joined by `then`"),
    # GB111: wrong unit / approximate where exact is needed
    Case("wrong-unit", mutate(("    batch = 480", "    batch = 480 steps")),
         "GB111", (14, 13), "`batch` cannot be given in steps", help="for example `batch = 256`"),
    Case("schedule-length-without-unit", mutate(("warmup(1%)", "warmup(1)")),
         "GB111", (16, 23), "a schedule length 1 has no unit",
         help="write `1%` for a share of training, or `1 steps`"),
    Case("micro-batch-in-steps", insert_before("    checkpoint every", "    micro_batch = 20 steps\n"),
         "GB111", (18, 19), "`micro_batch` cannot be given in steps"),
    Case("decay-target-percent-forgotten", mutate(("cosine(to = 10%)", "cosine(to = 10)")),
         "GB113", (16, 44), "`to` is out of range", help="a share is written `10%`"),
    Case("percent-for-count", mutate(("    sequence = 8192", "    sequence = 50%")),
         "GB111", (13, 16), "`sequence` cannot be given in %"),
    Case("approximate-sequence", mutate(("    sequence = 8192", "    sequence = ~8192")),
         "GB111", (13, 16), "`sequence` cannot be approximate"),
    # GB112: not a whole number
    Case("fractional-sequence", mutate(("    sequence = 8192", "    sequence = 8192.5")),
         "GB112", (13, 16), "`sequence` must be a whole number, found 8192.5"),
    Case("fractional-layer-count", mutate(("add = 8", "add = 2.5")),
         "GB112", (3, 23), "`add` must be a whole number"),
    # GB113: out of range
    Case("learning-rate-above-one", mutate(("lr = 1.5e-4", "lr = 2")),
         "GB113", (15, 28), "the learning rate `lr` is out of range: 2 is not in (0, 1]"),
    Case("zero-batch", mutate(("    batch = 480", "    batch = 0")),
         "GB113", (14, 13), "`batch` must be at least 1, found 0"),
    Case("zero-budget", mutate(("tokens = 80M", "tokens = 0")),
         "GB113", (8, 14), "a token budget must be at least 1"),
    Case("zero-systems", mutate(("cs-2 x 1", "cs-2 x 0")),
         "GB113", (20, 21), "the number of systems must be at least 1"),
    Case("zero-cpu-processes", mutate(("cs-2 x 1", "cpu x 0")),
         "GB113", (20, 20), "the number of systems must be at least 1"),
    Case("zero-length-warmup", mutate(("warmup(1%)", "warmup(0%)")),
         "GB113", (16, 23), "a schedule length of 0% is not in (0%, 100%]"),
    # GB114: empty
    Case("empty-string", mutate(('"data/bar/*.jsonl"', '""')),
         "GB114", (7, 12), "`data` must not be empty"),
    Case("empty-list", mutate(('"data/bar/*.jsonl"', "[]")),
         "GB114", (7, 12), "`data` must not be an empty list"),
    # GB115: unnamed arguments
    Case("unnamed-optimizer-argument", mutate(("adamw(lr = 1.5e-4)", "adamw(1.5e-4)")),
         "GB115", (15, 23), "arguments of `adamw` must be named", help="for example `adamw("),
    Case("second-unnamed-schedule-argument", mutate(("cosine(to = 10%)", "cosine(10%, 10%)")),
         "GB115", (16, 44), "arguments of `cosine` must be named"),
    # GB116: schedule piece lengths
    Case("warmup-without-length", mutate(("warmup(1%) then", "warmup then")),
         "GB116", (16, 16), "`warmup` needs a length here", help="for example `warmup(1%)`"),
    Case("middle-piece-without-length", mutate(("warmup(1%) then", "warmup(1%) then constant then")),
         "GB116", (16, 32), "`constant` needs a length here"),
    Case("warmup-not-first", mutate(("warmup(1%) then cosine(to = 10%)",
                                     "constant(5%) then warmup(1%) then cosine")),
         "GB116", (16, 34), "`warmup` can only be the first piece"),
    # GB130: an entry point outside the run
    Case("enter-above-100-percent", mutate(("enter = 90%", "enter = 120%")),
         "GB130", (9, 13), "the entry point 120% is outside 0%–100%"),
    Case("exit-below-0-percent", mutate(("enter = 90%", "enter = 90%\n    exit = -5%")),
         "GB130", (10, 12), "the exit point -5% is outside 0%–100%"),
    Case("enter-beyond-total", mutate(("enter = 90%", "enter = 200B")),
         "GB130", (9, 13), "is beyond the end of training (164B)"),
]

CONSISTENCY = [
    # GB131: architecture inconsistencies
    Case("heads-not-multiple-of-kv-heads", with_arch(("kv_heads = 2", "kv_heads = 3")),
         "GB131", (7, 16), "`heads` (4) must be a multiple of `kv_heads` (3)",
         secondary=((6, 13, "heads"),)),
    Case("hidden-not-divisible-by-heads", with_arch(("heads = 4\n", "heads = 5\n"),
                                                    ("kv_heads = 2", "kv_heads = 1")),
         "GB131", (4, 14), "`hidden` (64) is not divisible by `heads` (5)",
         secondary=((6, 13, "heads"),), help="set `head_dim` explicitly"),
    Case("odd-head-dim", with_arch(("    heads = 4\n", "    heads = 4\n    head_dim = 15\n")),
         "GB131", (7, 16), "the head dimension 15 must be even"),
    # GB132: growth lists
    Case("after-lists-a-layer-twice", mutate(("add = 8", "after = [3, 3]")),
         "GB132", (3, 29), "layer 3 is listed twice in `after`", secondary=((3, 26, "first here"),)),
    Case("add-does-not-match-after", mutate(("add = 8", "add = 3  after = [3, 7]")),
         "GB132", (3, 23), "`add = 3` but `after` lists 2 layers",
         secondary=((3, 34, "2 positions"),)),
    # GB133: duplicate language code
    Case("duplicate-language", mutate(('language de "German"', 'language en "German"')),
         "GB133", (5, 12), "language `en` is declared twice",
         secondary=((4, 12, "first declared here"),)),
    # GB134: unknown language in a phase mixture
    Case("unknown-language-in-phase", with_phase("  phase 90% { en = 50%  de = 50%  fr = 0% }"),
         "GB134", (11, 35), "unknown language `fr` in the mixture",
         help="expected one of: `bar`, `de`, `en`"),
    # GB135: phase weights that do not sum to 1
    Case("phase-weights-do-not-sum-to-one",
         with_phase("  phase 90% { en = 50%  de = 40%  bar = 0.5% }"),
         "GB135", (11, 3), "the weights of this phase sum to 90.5%, not 100%",
         secondary=((11, 15, "50%"), (11, 25, "40%"), (11, 35, "0.5%"))),
    Case("phase-fractions-do-not-sum-to-one",
         with_phase("  phase 90% { en = 0.5  de = 0.4  bar = 0.005 }"),
         "GB135", (11, 3), "the weights of this phase sum to 0.905, not 1",
         secondary=((11, 15, "0.5"), (11, 25, "0.4"), (11, 35, "0.005"))),
    Case("phase-weight-percent-forgotten", with_phase("  phase 90% { en = 50  de = 50% }"),
         "GB113", (11, 20), "the weight of `en` is out of range: 50 is not in [0, 1]",
         help="a share is written `50%` or as a fraction, `0.5`"),
    Case("phase-weight-repeated", with_phase("  phase 90% { en = 50%  de = 49.5%  en = 0.5% }"),
         "GB102", (11, 37), "`en` is given twice in this phase", secondary=((11, 15, "first here"),),
         also=frozenset({"GB135"})),
]


@pytest.mark.parametrize("case", params(UNKNOWN_NAMES))
def test_unknown_name(case):
    check_case(case)


@pytest.mark.parametrize("case", params(STRUCTURE))
def test_structure_error(case):
    check_case(case)


@pytest.mark.parametrize("case", params(VALUES))
def test_value_error(case):
    check_case(case)


@pytest.mark.parametrize("case", params(CONSISTENCY))
def test_consistency_error(case):
    check_case(case)


def test_unknown_names_list_every_valid_choice():
    d = only(diagnose(mutate(("cs-2 x 1", "cs2 x 1"))), "GB122")
    assert d.help[-1] == "expected one of: `a100`, `cpu`, `cs-2`, `cs-3`, `h100`"


def test_no_did_you_mean_for_a_name_close_to_nothing():
    d = only(diagnose(mutate(("cs-2 x 1", "tpu-v5 x 1"))), "GB122")
    assert not any("did you mean" in h for h in d.help)
    assert d.help[0].startswith("expected one of:")


def test_unknown_architecture_suggests_declaring_one():
    d = only(diagnose(mutate(("llama3.1-8b from", "mistral-7b from"))), "GB121")
    assert any("architecture NAME {" in h for h in d.help)


def test_spans_cover_the_offending_text():
    text = mutate(("bf16", "bf61"))
    d = only(diagnose(text), "GB120")
    assert text[d.span.start:d.span.end] == "bf61"
    assert (d.span.end_line, d.span.end_col) == (17, 21)


def test_every_lowering_error_is_collected_not_just_the_first():
    # lowering does not stop at the first problem: four unrelated mistakes, four diagnostics
    text = mutate(("bf16", "bf61"), ("cs-2 x 1", "cs2 x 1"), ("lr = 1.5e-4", "lr = 2"),
                  ("enter = 90%", "enter = 120%"))
    codes = sorted(d.code for d in diagnose(text))
    assert codes == ["GB113", "GB120", "GB122", "GB130"]


def test_cpu_times_n_is_a_multi_process_cpu_run():
    # `cpu x 2` trains with two gloo processes (runtime/distributed.py), so it is not an error
    plan, diagnostics = plan_ok(mutate(("cs-2 x 1", "cpu x 2")))
    assert not [d for d in diagnostics if d.code == "GB113"]
    assert (plan.spec.hardware.kind, plan.spec.hardware.count) == ("cpu", 2)


def test_unknown_language_in_phase_does_not_also_report_a_wrong_sum():
    # regression: the unknown `bra` was dropped before summing, adding "sum to 0.995, not 1"
    text = with_phase("  phase 90% { en = 50%  de = 49.5%  bra = 0.5% }")
    diagnostics = diagnose(text)
    d = only(diagnostics, "GB134")
    assert where(d.span) == (11, 37)
    assert any("did you mean `bar`?" == h for h in d.help)
    assert [x.code for x in diagnostics] == ["GB134"]


def test_argument_to_a_piece_without_arguments_has_no_empty_choice_list():
    d = only(diagnose(mutate(("cosine(to = 10%)", "constant(to = 10%)"))), "GB101")
    assert where(d.span) == (16, 41)
    assert "`constant` has no argument `to`" in d.message
    assert all(h.strip() != "expected one of:" for h in d.help), d.help


def test_empty_after_list_is_reported_as_empty():
    d = only(diagnose(mutate(("add = 8", "after = []"))), "GB114")
    assert where(d.span) == (3, 25)
    assert "empty" in d.message
