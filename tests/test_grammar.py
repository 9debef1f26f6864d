"""The grammar: LALR tables from the cache give the same trees as a fresh analysis."""

from pathlib import Path

import pytest
from lark import Lark

from genbac.spec import parser as spec_parser

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.genba"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_cached_and_uncached_parsers_agree(path, tmp_path, monkeypatch):
    text = path.read_text()
    fresh = Lark(spec_parser.GRAMMAR.read_text(), parser="lalr",
                 propagate_positions=True, maybe_placeholders=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec_parser.parser.cache_clear()
    try:
        spec_parser.parser()  # writes the cache
        spec_parser.parser.cache_clear()
        cached = spec_parser.parser()  # reads it
        assert list(tmp_path.rglob("*.cache")), "no cache file written"
        assert cached.parse(text) == fresh.parse(text)
    finally:
        spec_parser.parser.cache_clear()


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
