"""Whatever state a file is in while it is typed, the server's features answer and never raise:
the GENBA example with a slice cut out or a character put in, then hover, completion, definition
and the outline at many offsets."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbac.lsp import complete
from genbac.lsp.analysis import analyse, editor_reader
from genbac.lsp.hover import hover
from genbac.lsp.outline import definition, symbols
from genbac.lsp.positions import LineIndex

ROOT = Path(__file__).resolve().parents[2]
GENBA = ROOT / "examples" / "llama-genba-10b.genba"
TEXT = GENBA.read_text()
READ = editor_reader(str(ROOT), {})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(TEXT)), st.integers(0, 40),
       st.sampled_from(["", "{", "}", "(", '"', "=", "%", "x", " 4", "\n", "#", "é", "🥨"]),
       st.lists(st.integers(0, len(TEXT) + 40), min_size=1, max_size=8))
def test_features_answer_on_any_partial_text(at, cut, put, offsets):
    text = TEXT[:at] + put + TEXT[at + cut:]
    analysis = analyse(text, str(GENBA), READ)
    assert analysis.planned or analysis.diagnostics or analysis.fragment
    index = LineIndex(text)
    for offset in offsets:
        offset = min(offset, len(text))
        hover(analysis, offset)
        definition(analysis, offset)
        complete.items(text, offset, ["en", "de", "bar"])
        assert index.offset(*index.position(offset)) == offset
    if analysis.document is not None:
        symbols(analysis.document)
