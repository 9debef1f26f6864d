"""Syntax errors (GB001–GB003): the parser stops at the first one and points at it exactly."""

from __future__ import annotations

import pytest

from _genba_spec_fixtures import BASE, Case, check_case, diagnose, mutate, params

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
]


@pytest.mark.parametrize("case", params(CASES))
def test_syntax_error_is_reported_at_its_position(case):
    check_case(case)


@pytest.mark.parametrize("case", params(CASES))
def test_parser_stops_at_the_first_syntax_error(case):
    # a second, independent mistake further down is not reported after a syntax error
    text = case.text.replace("cs-2 x 1", "cs2 x 1")
    diagnostics = diagnose(text)
    assert [d.code for d in diagnostics] == [case.code]


def test_syntax_error_label_says_what_was_expected():
    d = diagnose(mutate(("adamw(lr = 1.5e-4)", "adamw(lr 1.5e-4)")))[0]
    assert d.label.startswith("expected ")
    assert "`=`" in d.label and "`)`" in d.label
