"""Syntax errors (GB001–GB003): each points at its cause and names the intended form; every syntax
error of a file is reported in one run, and no later stage runs on a file that has one."""

from __future__ import annotations

import pytest

from _genba_spec_fixtures import BASE, Case, check_case, diagnose, mutate, params, where

CASES = [
    # GB001: the lexer cannot go on
    Case("unexpected-character", mutate(("    batch = 480\n", "    batch = 480 @\n")),
         "GB001", (14, 17), "unexpected character '@'"),
    Case("non-ascii-character", mutate(("    batch = 480\n", "    batch = 480 ü\n")),
         "GB001", (14, 17), "unexpected character 'ü'"),
    Case("unterminated-string", mutate(('"data/bar/*.jsonl"', '"data/bar/*.jsonl')),
         "GB001", (7, 12), "unterminated string", help='close it with `"`'),
    Case("unterminated-experiment-name", mutate(('experiment "mini" {', 'experiment "mini {')),
         "GB001", (1, 12), "unterminated string"),
    Case("yaml-colon", mutate(("    sequence = 8192", "    sequence: 8192")),
         "GB001", (13, 13), "unexpected `:`", help="write `key = value`, not `key: value`"),
    # GB002: the file ends inside a block
    Case("unclosed-block-at-eof", BASE.rstrip().removesuffix("}"),
         "GB002", (20, 22), "a block is not closed", help="close every `{` with `}`"),
    Case("unclosed-train-block", mutate(("    checkpoint every 500 steps\n  }\n",
                                         "    checkpoint every 500 steps\n")),
         "GB002", (20, 2), "a block is not closed"),  # `hardware` and `}` now sit in `train`
    # GB003: a token the grammar does not allow there
    Case("missing-equals-in-call", mutate(("adamw(lr = 1.5e-4)", "adamw(lr 1.5e-4)")),
         "GB003", (15, 26), "unexpected number `1.5e-4`",
         help="a setting is written `key = value`"),
    # a setting without `=`: the words read so far are named, also when the next setting follows
    # (regression: this was reported as "`sequence` is neither a setting nor a block" on line 13)
    Case("missing-equals-in-setting", mutate(("    tokens = 164B", "    tokens 164B")),
         "GB003", (12, 5), "`tokens 164B` is neither a setting nor a block",
         help="a setting is written `tokens = …`"),
    Case("missing-equals-before-brace", mutate(("    checkpoint every 500 steps\n",
                                                "    checkpoint every 500 steps\n    seed 1\n")),
         "GB003", (19, 5), "`seed 1` is neither a setting nor a block",
         help="a setting is written `seed = …`"),
    Case("stray-closing-brace", mutate(("  hardware = cs-2 x 1\n}\n", "  hardware = cs-2 x 1\n}\n}\n")),
         "GB003", (22, 1), "unexpected `}`"),
    Case("value-missing", mutate(("    batch = 480", "    batch =")),
         "GB003", (15, 15), "unexpected `=`"),  # `batch = optimizer`, then `=`
    # the common slips, each said as the user would fix it
    Case("bytes-unit", mutate(("tokens = 80M", "tokens = 80GB")),
         "GB003", (8, 14), "budgets count tokens, not bytes", help="write `80B`"),
    Case("bytes-unit-last-in-block", mutate(("tokens = ~82B }\n  language de", "tokens = 82GB }\n"
                                                                                "  language de")),
         "GB003", (4, 62), "budgets count tokens", help="write `82B`"),
    Case("scale-word", mutate(("tokens = 80M", "tokens = 80 million")),
         "GB003", (8, 14), "`80 million` is not how a number is written", help="write `80M`"),
    Case("scale-after-space", mutate(("tokens = 164B", "tokens = 164 B")),
         "GB003", (12, 14), "is not how a number is written", help="write `164B`"),
    Case("unknown-unit", mutate(("tokens = 164B", "tokens = 164 epochs")),
         "GB003", (12, 14), "`epochs` after the number `164` is not a unit",
         help="K, M, B or T"),
    Case("space-before-percent", mutate(("enter = 90%", "enter = 90 %")),
         "GB001", (9, 13), "a space between `90` and `%`", help="write `90%`"),
    Case("count-before-kind", mutate(("hardware = cs-2 x 1", "hardware = 4 x h100")),
         "GB003", (20, 14), "the count comes after the kind", help="write `h100 x 4`"),
    Case("count-without-spaces", mutate(("hardware = cs-2 x 1", "hardware = cs-2 x4")),
         "GB003", (20, 19), "`x4` is neither", help="write `x 4`"),
    Case("thousands-separator", mutate(("batch = 480", "batch = 1,024")),
         "GB003", (14, 14), "numbers have no thousands separators", help="write `1024` or `1_024`"),
    Case("values-without-brackets", mutate(("adamw(lr = 1.5e-4)", "adamw(lr = 1.5e-4)\n"
                                            "    betas = 0.9, 0.95")),
         "GB003", (16, 16), "unexpected `,`", help="a tuple `(a, b)`"),
    Case("bracket-not-closed", mutate(("adamw(lr = 1.5e-4)", "adamw(lr = 1.5e-4")),
         "GB003", (15, 22), "`(` is never closed", secondary=((16, 5, "the next setting"),),
         help="close it with `)`"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_syntax_error_is_reported_at_its_position(case):
    check_case(case)


@pytest.mark.parametrize("case", params(CASES))
def test_no_semantic_error_follows_a_syntax_error(case):
    # a second, independent mistake that only lowering finds is not reported after a syntax error
    text = case.text.replace("cs-2 x 1", "cs2 x 1")
    diagnostics = diagnose(text)
    assert [d.code for d in diagnostics] == [case.code]


def test_syntax_error_label_says_what_was_expected():
    d = diagnose(mutate(("adamw(lr = 1.5e-4)", "adamw(lr 1.5e-4)")))[0]
    assert d.label.startswith("expected ")
    assert "`=`" in d.label and "`)`" in d.label


def test_every_syntax_error_of_a_file_is_reported_in_one_run():
    text = mutate(("tokens = 80M", "tokens = 80GB"), ("enter = 90%", "enter = 95 %"),
                  ("    batch = 480", "    batch: 480"),
                  ("adamw(lr = 1.5e-4)", "adamw(lr = 1.5e-4, betas = (0.9, 0.95)"),
                  ("precision = bf16", "precision = bf16,"),
                  ("hardware = cs-2 x 1", "hardware = 4 x h100"))
    found = [(d.code, where(d.span), d.message) for d in diagnose(text)]
    assert [(code, at) for code, at, _ in found] == [
        ("GB003", (8, 14)), ("GB001", (9, 13)), ("GB001", (14, 10)), ("GB003", (15, 22)),
        ("GB003", (17, 21)), ("GB003", (20, 14))], found


def test_an_error_inside_a_block_header_line_keeps_the_block():
    # the failed statement is blanked, its braces kept: the block and what follows still parse,
    # so the second error is found where it is and nothing in between is reported
    text = mutate(('language en "English" { data = "data/en/*.jsonl"  tokens = ~82B }',
                   'language en "English" { data = "data/en/*.jsonl"  tokens = 82GB }'),
                  ("batch = 480", "batch = 480 @"))
    found = [(d.code, where(d.span)) for d in diagnose(text)]
    assert found == [("GB003", (4, 62)), ("GB001", (14, 17))], found


def test_syntax_errors_are_capped():
    from genbac.spec.syntax import MAX_SYNTAX_ERRORS

    lines = "".join(f"    seed{i}: 1\n" for i in range(MAX_SYNTAX_ERRORS + 5))
    text = mutate(("    batch = 480\n", "    batch = 480\n" + lines))
    assert len(diagnose(text)) == MAX_SYNTAX_ERRORS


def test_a_clean_spec_after_recovery_text_is_untouched():
    # recovery works on a copy: spans of later errors are in the user's own text
    text = mutate(("batch = 480", "batch: 480"), ("hardware = cs-2 x 1", "hardware = cs-2 x 1 @"))
    second = diagnose(text)[1]
    assert text[second.span.start:second.span.end] == "@"
