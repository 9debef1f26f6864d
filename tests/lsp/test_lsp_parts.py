"""The language server's pure parts: the reference kept in step with the lowering, where the
cursor is for completion, positions in each encoding, hover and definitions over plans."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genbac.lsp import complete
from genbac.lsp.analysis import analyse, editor_reader
from genbac.lsp.hover import hover
from genbac.lsp.outline import definition, symbols
from genbac.lsp.positions import LineIndex
from genbac.spec import lower, reference

ROOT = Path(__file__).resolve().parents[2]
GENBA = ROOT / "examples" / "llama-genba-10b.genba"


def test_every_key_the_lowering_knows_is_documented_and_nothing_else():
    for context, keys in reference.BLOCK_KEYS.items():
        assert set(reference.KEY_DOCS[context]) == keys, context
    assert set(reference.BLOCK_DOCS) == lower.EXPERIMENT_BLOCKS | {"experiment"}
    assert set(reference.BLOCK_SNIPPETS) == set(reference.BLOCK_DOCS)


@pytest.mark.parametrize("context, key, expected", [
    ("train", "precision", lower.PRECISIONS),
    ("train", "optimizer", tuple(lower.OPTIMIZERS)),
    ("train", "schedule", lower.SCHEDULE_PIECES),
    ("grow blocks", "place", lower.PLACEMENTS),
    ("grow blocks", "init", lower.GROW_INITS),
    ("vocab", "init", lower.VOCAB_INITS),
])
def test_value_choices_are_the_lowerings(context, key, expected):
    found = reference.values(context, key)
    assert tuple(e.name for e in found) == tuple(expected)
    assert all(e.doc for e in found)


def where(text_with_cursor: str):
    offset = text_with_cursor.index("|")
    return complete.where(text_with_cursor.replace("|", ""), offset)


@pytest.mark.parametrize("text, kind, context, key", [
    ("|", "key", "", None),
    ('experiment "x" {\n  |\n}', "key", "experiment", None),
    ('experiment "x" {\n  language bar {\n    data = "d"\n    to|\n  }\n}', "key", "language",
     None),
    ('experiment "x" {\n  language bar { data = "d"  to| }\n}', "key", "language", None),
    ('experiment "x" {\n  train {\n    checkpoint every 500 steps\n    |\n  }\n}', "key", "train",
     None),
    ('experiment "x" {\n  train {\n    precision = b|\n  }\n}', "value", "train", "precision"),
    ('experiment "x" {\n  train {\n    schedule = warmup(1%) then |\n  }\n}', "value", "train",
     "schedule"),
    ('experiment "x" {\n  train {\n    optimizer = adamw(|\n  }\n}', "argument", "train",
     "optimizer"),
    ('experiment "x" {\n  train {\n    optimizer = adamw(lr = 3e-4, |)\n  }\n}', "argument",
     "train", "optimizer"),
    ('experiment "x" {\n  hardware = |\n}', "value", "experiment", "hardware"),
    ('experiment "x" {\n  hardware = cs-2 x |\n}', "none", "experiment", None),
    ('experiment "x" {\n  grow |\n}', "label", "experiment", "grow"),
    ('experiment "x" {\n  grow blocks { |', "key", "grow blocks", None),
    ('experiment "x" {\n  phase 90% { |', "key", "phase", None),
    ('experiment "x" {\n  language bar { data = "da|', "none", "language", None),  # a string
    ('experiment "x" {\n  # a comment wh|', "none", "experiment", None),
    ('experiment "x" {\n  language bar { data = "abc\\"|', "none", "language", None),
    ('experiment "x" {\n  language bar { data = "{" }\n  |', "key", "experiment", None),
])
def test_where_the_cursor_is(text, kind, context, key):
    w = where(text)
    assert (w.kind, w.context) == (kind, context)
    if key is not None:
        assert w.key == key


def test_keys_set_before_and_after_the_cursor_are_not_offered():
    text = ('experiment "x" {\n  train {\n    batch = 8\n    |\n    sequence = 64\n  }\n'
            "  base = t\n}")
    labels = {i.label for i in complete.items(text.replace("|", ""), text.index("|"))}
    assert "batch" not in labels and "sequence" not in labels and "base" not in labels
    assert {"tokens", "optimizer", "schedule", "checkpoint"} <= labels


def test_phase_keys_are_the_declared_languages_and_base_values_include_declared_architectures():
    text = 'experiment "x" {\n  phase 50% { en = 50%  | }\n}'
    found = complete.items(text.replace("|", ""), text.index("|"), ["en", "de", "bar"])
    assert [i.label for i in found] == ["de", "bar"]
    text = 'experiment "x" {\n  base = |\n}'
    found = complete.items(text.replace("|", ""), text.index("|"), architectures=["tiny"])
    assert {"llama3.1-8b", "smollm2-135m", "tiny"} <= {i.label for i in found}


@given(st.text(alphabet=st.sampled_from(["a", "é", "🥨", "\n", "\r", " ", "中"]), max_size=40),
       st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_positions_round_trip_in_every_encoding(text, encoding):
    index = LineIndex(text, encoding)
    for offset in range(len(text) + 1):
        line, character = index.position(offset)
        assert line == text.count("\n", 0, offset)
        if offset == len(text) or not ("\udc00" <= text[offset:offset + 1] <= "\udfff"):
            assert index.offset(line, character) == offset
        chars = text[text.rfind("\n", 0, offset) + 1:offset]
        units = {"utf-16": len(chars.encode("utf-16-le")) // 2,
                 "utf-8": len(chars.encode("utf-8")), "utf-32": len(chars)}[encoding]
        assert character == units


def test_a_position_past_the_end_is_clamped():
    index = LineIndex("ab\ncd")
    assert index.offset(0, 99) == 2 and index.offset(7, 0) == 5


@pytest.fixture(scope="module")
def genba():
    text = GENBA.read_text()
    return text, analyse(text, str(GENBA), editor_reader(str(ROOT), {}))


def test_hover_over_a_spec_with_errors_explains_keys_only(genba):
    text, _ = genba
    broken = text.replace("enter  = 90%", "enter  = 190%")
    analysis = analyse(broken, str(GENBA), editor_reader(str(ROOT), {}))
    assert analysis.planned == () and analysis.diagnostics
    found, _ = hover(analysis, broken.index("enter  ="))
    assert "When the language enters training" in found and "37,536" not in found
    assert hover(analysis, broken.index('"data/bar')) is None


def test_hover_over_a_phase_block_shows_its_mixture():
    text = GENBA.read_text().replace(
        "  train {", "  phase 90% { en = 49.75%  de = 49.75%  bar = 0.5% }\n\n  train {")
    analysis = analyse(text, str(GENBA), editor_reader(str(ROOT), {}))
    assert analysis.planned, analysis.diagnostics
    found, _ = hover(analysis, text.index("phase 90%") + 2)
    assert "explicit mixture" in found and "- bar: 0.500%" in found
    assert "steps 37,536–41,707" in found


def test_hover_over_gpu_hardware_shows_the_parallelism():
    text = GENBA.read_text().replace("hardware = cs-2 x 1", "hardware = h100 x 8 x 4").replace(
        "    micro_batch      = 20\n", "")
    analysis = analyse(text, str(GENBA), editor_reader(str(ROOT), {}))
    found, _ = hover(analysis, text.index("hardware =") + 2)
    assert "HSDP over 32 GPUs (shards of 8)" in found and "GB per GPU of 72 GB usable" in found


def test_definition_of_a_declared_architecture():
    path = ROOT / "examples" / "tiny-rehearsal.genba"
    text = path.read_text()
    analysis = analyse(text, str(path), editor_reader(str(ROOT), {}))
    target = definition(analysis, text.index("base = tiny") + len("base = t"))
    assert target.path == str(path)
    assert target.span.start == text.index("architecture tiny") + len("architecture ")


def test_hover_over_a_phase_placed_by_tokens():
    path = ROOT / "examples" / "tiny-rehearsal.genba"
    text = path.read_text().replace(
        "  train {", "  phase 80282 tokens { en = 45%  de = 45%  bar = 10% }\n\n  train {")
    analysis = analyse(text, str(path), editor_reader(str(ROOT), {}))
    assert analysis.planned, analysis.diagnostics
    found, _ = hover(analysis, text.index("phase 80282") + 2)
    assert "explicit mixture" in found and "- bar: " in found


def test_symbols_never_have_empty_names():
    from genbac.spec.parser import parse

    found = symbols(parse('import ""\nexperiment "" {\n  hardware = cpu\n}\n', "f.genba"))
    assert all(s.name for s in found) and [s.name for s in found] == ['""', "experiment"]


def test_symbols_of_a_fragment_and_an_import():
    text = 'import "shared.genba"\nhardware = cpu\nlanguage en { data = "x"  tokens = 1M }\n'
    from genbac.spec.parser import parse

    found = symbols(parse(text, "f.genba"))
    assert [(s.name, s.kind) for s in found] == [("shared.genba", "file"), ("hardware", "property"),
                                                ("language en", "namespace")]
