"""Diagnostic renderers (text, concise, JSON, GitHub), many errors at once, and robustness."""

from __future__ import annotations

import json
import re


from genbac.compiler.compile import plan_spec
from genbac.spec.diagnostics import (SpecError, render_concise, render_github, render_json,
                                     render_text)
from genbac.spec.span import Span

from _genba_spec_fixtures import BASE, PATH, diagnose, mutate, plan_ok

DUPLICATE_BATCH = mutate(("    batch = 480\n", "    batch = 480\n    batch = 240\n"))
BAD_PRECISION = mutate(("bf16", "bf61"))


# -- several errors in one run -------------------------------------------------------------------

def test_independent_errors_are_all_reported_in_one_run():
    text = mutate(("    precision = bf16", "    precison = bf16"),  # unknown key in `train`
                  ("cs-2 x 1", "cs2 x 1"),  # unknown hardware
                  ('language de "German"', 'language en "German"'))  # duplicate language
    diagnostics = diagnose(text)
    assert len(diagnostics) == 3
    by_code = {d.code: (d.span.line, d.span.col) for d in diagnostics}
    assert by_code == {"GB101": (17, 5), "GB122": (20, 14), "GB133": (5, 12)}
    assert all(d.is_error for d in diagnostics)


# -- full text ------------------------------------------------------------------------------------

GOLDEN_DUPLICATE = """\
error[GB102]: `batch` is set twice in `train`
  --> mini.genba:15:5
   |
15 |     batch = 240
   |     ^^^^^ set again here
  ::: mini.genba:14:5
   |
14 |     batch = 480
   |     ----- first set here
"""

GOLDEN_PRECISION = """\
error[GB120]: unknown precision `bf61`
  --> mini.genba:17:17
   |
17 |     precision = bf61
   |                 ^^^^ unknown precision
help: did you mean `bf16`?
help: expected one of: `bf16`, `fp16`, `fp32`
"""


def test_text_golden_with_secondary_span():
    out = render_text(diagnose(DUPLICATE_BATCH), {PATH: DUPLICATE_BATCH}, color=False)
    assert out == GOLDEN_DUPLICATE


def test_text_golden_with_help():
    out = render_text(diagnose(BAD_PRECISION), {PATH: BAD_PRECISION}, color=False)
    assert out == GOLDEN_PRECISION


def test_text_blocks_are_separated_by_a_blank_line():
    text = mutate(("bf16", "bf61"), ("cs-2 x 1", "cs2 x 1"))
    out = render_text(diagnose(text), {PATH: text})
    assert out.count("\n\nerror[") == 1
    assert "--> mini.genba:17:17" in out and "--> mini.genba:20:14" in out
    assert "20 |   hardware = cs2 x 1\n   |              ^^^ unknown hardware" in out


def test_text_caret_at_end_of_file():
    text = BASE.rstrip().removesuffix("}")
    out = render_text(diagnose(text), {PATH: text})
    assert "--> mini.genba:20:22" in out
    assert "20 |   hardware = cs-2 x 1\n   |                      ^ expected `}` before the end" in out


def test_text_without_source_shows_location_only():
    out = render_text(diagnose(BAD_PRECISION), {})
    assert "--> mini.genba:17:17" in out
    assert "^" not in out and "help: did you mean `bf16`?" in out


def test_text_colour_only_adds_escape_codes():
    diagnostics = diagnose(DUPLICATE_BATCH)
    coloured = render_text(diagnostics, {PATH: DUPLICATE_BATCH}, color=True)
    assert "\x1b[1;31merror[GB102]\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == GOLDEN_DUPLICATE


def test_text_warning_is_labelled_warning():
    text = mutate(("lr = 1.5e-4", "lr = 0.05"))
    _, diagnostics = plan_ok(text)
    out = render_text(diagnostics, {PATH: text})
    assert out.startswith("warning[GB901]: learning rate 0.05 is unusually high")
    assert "--> mini.genba:15:28" in out


def test_text_columns_stay_aligned_with_tabs():
    text = mutate(("    precision = bf16", "\tprecision =\tbf61"))
    out = render_text(diagnose(text), {PATH: text})
    line, carets = out.splitlines()[3:5]
    assert line == "17 |  precision = bf61"
    assert carets.index("^") == line.index("bf61")


# -- concise, JSON, GitHub ---------------------------------------------------------------------------

def test_concise_format():
    diagnostics = diagnose(DUPLICATE_BATCH) + diagnose(BAD_PRECISION)
    assert render_concise(diagnostics) == (
        "mini.genba:15:5: error[GB102] `batch` is set twice in `train`\n"
        "mini.genba:17:17: error[GB120] unknown precision `bf61` (did you mean `bf16`?)\n")


def test_concise_format_of_a_warning():
    _, diagnostics = plan_ok(mutate(("lr = 1.5e-4", "lr = 0.05")))
    line = render_concise(diagnostics)
    assert re.fullmatch(r"mini\.genba:15:28: warning\[GB901\] learning rate 0\.05 .*\n", line)


def test_json_format():
    doc = json.loads(render_json(diagnose(DUPLICATE_BATCH)))
    assert doc["errors"] == 1 and doc["warnings"] == 0
    [d] = doc["diagnostics"]
    assert d["code"] == "GB102" and d["severity"] == "error"
    assert d["location"] == {"file": PATH, "line": 15, "col": 5, "end_line": 15, "end_col": 10}
    assert d["related"] == [{"location": {"file": PATH, "line": 14, "col": 5, "end_line": 14,
                                          "end_col": 10}, "message": "first set here"}]


def test_json_format_keeps_help_and_counts_warnings():
    text = mutate(("lr = 1.5e-4", "lr = 0.05"), ("bf16", "bf61"))
    doc = json.loads(render_json(diagnose(text)))
    assert (doc["errors"], doc["warnings"]) == (1, 1)
    precision = next(d for d in doc["diagnostics"] if d["code"] == "GB120")
    assert precision["help"][0] == "did you mean `bf16`?"
    assert precision["location"]["line"] == 17 and precision["location"]["col"] == 17


def test_github_format():
    out = render_github(diagnose(BAD_PRECISION))
    assert out == ("::error file=mini.genba,line=17,col=17,endLine=17,endColumn=21,title=GB120::"
                   "unknown precision `bf61`%0Adid you mean `bf16`?%0A"
                   "expected one of: `bf16`, `fp16`, `fp32`\n")


def test_github_format_escapes_percent_and_newlines():
    out = render_github(diagnose(mutate(("enter = 90%", "enter = 120%"))))
    assert out.startswith("::error file=mini.genba,line=9,col=13,")
    assert "the entry point 120%25 is outside 0%25–100%25" in out
    assert out.count("\n") == 1  # one annotation, one line


def test_github_format_escapes_properties():
    diagnostics = diagnose(BAD_PRECISION, path="dir,x/a:b.genba")
    out = render_github(diagnostics)
    assert out.startswith("::error file=dir%2Cx/a%3Ab.genba,line=17,col=17,")


def test_github_format_of_a_warning():
    _, diagnostics = plan_ok(mutate(("lr = 1.5e-4", "lr = 0.05")))
    assert render_github(diagnostics).startswith("::warning file=mini.genba,line=15,col=28,")


def test_renderers_of_nothing():
    assert render_text([], {}) == "" and render_concise([]) == "" and render_github([]) == ""
    assert json.loads(render_json([])) == {"diagnostics": [], "errors": 0, "warnings": 0}


# -- robustness: broken specs produce diagnostics, never Python exceptions ------------------------------

def _broken_variants():
    lines = BASE.splitlines(keepends=True)
    yield from (("truncated", BASE[:i]) for i in range(0, len(BASE), 7))
    yield from (("without-line", "".join(lines[:i] + lines[i + 1:])) for i in range(len(lines)))
    for m in re.finditer(r"[^\s{}()=,\[\]]+", BASE):
        for junk in ("0", "-1", "x", '"s"', "[]", "(1, 2)", "1.5", "~1", "true", "100%",
                     "1 steps", "f()", "f(1, a = 2)"):
            yield "replaced", BASE[:m.start()] + junk + BASE[m.end():]


def test_broken_specs_never_raise_anything_but_spec_error():
    failures = []
    for kind, text in _broken_variants():
        try:
            plan_spec(text, PATH)
        except SpecError as exc:
            for d in exc.diagnostics:
                assert re.fullmatch(r"GB\d{3}", d.code), d.code
                assert d.severity in ("error", "warning")
                s = d.span
                assert s is not None and s.path == PATH
                assert 0 <= s.start <= s.end <= len(text)
                # line and column agree with the character offset
                at = Span.at_offset(PATH, text, s.start, 0)
                assert (s.line, s.col) == (at.line, at.col), (d.code, d.message, text)
                for secondary, _ in d.secondary:
                    assert secondary is not None and 0 <= secondary.start <= len(text)
                render_text(exc.diagnostics, {PATH: text})
                render_github(exc.diagnostics)
                json.loads(render_json(exc.diagnostics))
        except Exception as exc:  # noqa: BLE001 - any other exception is the failure under test
            failures.append(f"{kind}: {type(exc).__name__}: {exc}\n{text}")
    assert not failures, failures[0]
