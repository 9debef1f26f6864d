"""The grammar and its parser: the generated, cached parser parses exactly like lark itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lark import Lark

from genbac.spec import lalr
from genbac.spec import parser as spec_parser
from genbac.spec.diagnostics import SpecError

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.genba"))


BROKEN = [
    'experiment "x" {\n  tokens: 82B\n}\n',          # `:` for `=`
    'experiment "x" {\n  train { batch = 8\n}\n',     # unclosed block
    'experiment "x" {\n  tokens 164B\n  sequence = 8\n}\n',  # neither setting nor block
    'experiment "x" {\n  name = "open\n}\n',          # unterminated string
    'experiment "x" {\n  = 3\n}\n',
]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty genbac cache; the parser runtime is loaded anew for the test and after it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lalr.runtime.cache_clear()
    yield tmp_path
    lalr.runtime.cache_clear()


def _lark_parser():
    return Lark(spec_parser.GRAMMAR.read_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=False)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_generated_parser_gives_lark_trees(path, fresh_cache):
    text = path.read_text()
    generated = lalr.runtime()  # generates and caches the standalone parser
    assert list(fresh_cache.rglob("genba-parser-*.pyc")), "no cached parser written"
    lalr.runtime.cache_clear()
    cached = lalr.runtime()  # loads it
    assert cached.parser.parse(text) == generated.parser.parse(text) == _lark_parser().parse(text)


def test_a_warm_start_does_not_import_lark(fresh_cache):
    probe = ("import sys; from genbac.spec.parser import parse; "
             "parse(open(sys.argv[1]).read(), 's'); print('lark' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", probe, str(EXAMPLES[0])], capture_output=True,
                           text=True, env={**os.environ, "XDG_CACHE_HOME": str(fresh_cache)})
            for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["True", "False"], [r.stderr for r in runs]


@pytest.mark.parametrize("text", BROKEN)
def test_lark_fallback_reports_the_same_syntax_errors(text, tmp_path, monkeypatch):
    def diagnostic():
        with pytest.raises(SpecError) as exc:
            spec_parser.parse(text, "b.genba")
        return exc.value.diagnostics

    lalr.runtime.cache_clear()
    try:
        standalone = diagnostic()
        blocked = tmp_path / "not-a-directory"
        blocked.write_text("")
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # no cache can be written: lark itself
        lalr.runtime.cache_clear()
        assert "lark" in type(lalr.runtime().parser).__module__
        assert diagnostic() == standalone
    finally:
        lalr.runtime.cache_clear()


def test_a_corrupt_cache_is_regenerated(fresh_cache):
    lalr.runtime()
    (cached,) = fresh_cache.rglob("genba-parser-*.pyc")
    cached.write_bytes(b"not bytecode")
    lalr.runtime.cache_clear()
    assert spec_parser.parse(EXAMPLES[0].read_text(), "e.genba").items
    assert cached.read_bytes() != b"not bytecode"


def test_grammar_is_lalr_without_conflicts():
    # strict=True turns shift/reduce conflicts and terminal collisions into errors
    pytest.importorskip("interegular")
    Lark(spec_parser.GRAMMAR.read_text(), parser="lalr", strict=True)


@pytest.mark.parametrize("text, value, unit, approx", [
    ("82B", 82_000_000_000, None, False),
    ("~82B", 82_000_000_000, None, True),
    ("80M", 80_000_000, None, False),
    ("1.5T", 1_500_000_000_000, None, False),
    ("90%", 90, "%", False),
    ("1.5e-4", 0.00015, None, False),
    ("1000 steps", 1000, "steps", False),
    ("1_000", 1000, None, False),
    ("480 sequences", 480, "sequences", False),
])
def test_quantities(text, value, unit, approx):
    from decimal import Decimal

    got = spec_parser.parse_quantity(text)
    assert got == (Decimal(str(value)), unit, approx)


def test_spans_are_one_based_and_exact():
    doc = spec_parser.parse('experiment "x" {\n  hardware = cs-2 x 4\n}\n', "s.genba")
    setting = doc.items[0].entries[0]
    assert (setting.key.span.line, setting.key.span.col) == (2, 3)
    chain = setting.value
    assert chain.connectors == ("x",)
    assert (chain.terms[1].span.line, chain.terms[1].span.col, chain.terms[1].span.end_col) == \
        (2, 21, 22)


def test_reserved_looking_words_are_names_where_a_name_is_expected():
    doc = spec_parser.parse('experiment "a" {\n  language as "Assamese" { x = 1 }\n'
                            '  hardware = cs-2 x 4\n}\n', "t.genba")
    language, hardware = doc.items[0].entries
    assert language.labels[0].value == "as" and language.entries[0].key.value == "x"
    assert hardware.value.connectors == ("x",)


def test_a_unit_word_that_is_the_next_key_stays_a_key():
    # `5120  sequence` would otherwise lex as one quantity "5120 sequences"
    doc = spec_parser.parse('experiment "a" { train { tokens = 5120  sequence = 64  '
                            "checkpoint every 10 steps } }", "u.genba")
    tokens, sequence, checkpoint = doc.items[0].entries[0].entries
    assert (tokens.value.text, tokens.value.unit) == ("5120", None)
    assert sequence.key.value == "sequence" and sequence.value.text == "64"
    assert (checkpoint.value.text, checkpoint.value.unit) == ("10 steps", "steps")
