"""Diagnostics: one data model, several renderers (full text, concise, JSON, GitHub annotations,
SARIF).

Every error and warning genbac reports about a spec is a `Diagnostic` with a stable code, a primary
span and optional secondary spans ("the total is declared here"). The codes are listed in
`spec/diagnostics.md`. Nothing here raises for a user's mistake: errors are collected and rendered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from .limits import visible
from .span import Span


@dataclass(frozen=True)
class Diagnostic:
    code: str  # "GB101"
    severity: str  # "error" | "warning"
    message: str
    span: Span | None
    label: str | None = None  # printed after the carets
    secondary: tuple[tuple[Span, str], ...] = ()
    help: tuple[str, ...] = ()
    # edits that apply what a help line says, best first: (span, text to write there); an editor
    # offers each as a quick fix, so only a change that is surely what the help means goes here
    fixes: tuple[tuple[Span, str], ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self):
        s = self.span
        return (s.path, s.start, self.code) if s else ("", -1, self.code)

    def to_json(self) -> dict:
        def loc(s: Span | None):
            if s is None:
                return None
            return {"file": s.path, "line": s.line, "col": s.col, "end_line": s.end_line,
                    "end_col": s.end_col}

        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "location": loc(self.span),
            "label": self.label,
            "related": [{"location": loc(s), "message": m} for s, m in self.secondary],
            "help": list(self.help),
            "fixes": [{"location": loc(s), "replacement": text} for s, text in self.fixes],
        }


def error(code: str, message: str, span: Span | None, label: str | None = None, *,
          secondary: Iterable[tuple[Span, str]] = (), help: Iterable[str] = (),
          fixes: Iterable[tuple[Span, str]] = ()) -> Diagnostic:
    return Diagnostic(code, "error", message, span, label, tuple(secondary), tuple(help),
                      tuple(fixes))


def warning(code: str, message: str, span: Span | None, label: str | None = None, *,
            secondary: Iterable[tuple[Span, str]] = (), help: Iterable[str] = (),
            fixes: Iterable[tuple[Span, str]] = ()) -> Diagnostic:
    return Diagnostic(code, "warning", message, span, label, tuple(secondary), tuple(help),
                      tuple(fixes))


def unique(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Each diagnostic once, in order (a problem shared by sweep variants is reported once);
    linear, since a large spec can carry thousands."""
    return list(dict.fromkeys(diagnostics))


class SpecError(Exception):
    """Raised by a stage that cannot go on; carries every diagnostic collected so far."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__(f"{sum(d.is_error for d in self.diagnostics)} error(s) in spec")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest known name, if one is close enough to be a likely typo."""
    import difflib  # only on the error path

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return lowered[word.lower()]
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        match = [lowered[m] for m in match]
    return match[0] if match else None


def suggestion(word: str, choices: Iterable[str], span: Span | None = None) -> dict:
    """The `help` (a "did you mean" when there is a close name, and the list of valid names) and
    the `fixes` (the close name written over `span`) of a diagnostic about an unknown name:
    `error(…, **suggestion(word, choices, span))`."""
    choices = sorted(choices)
    close = did_you_mean(word, choices)
    lines = []
    if close:
        lines.append(f"did you mean `{close}`?")
    lines.append("expected one of: " + ", ".join(f"`{c}`" for c in choices))
    fixes = ((span, close),) if close and span is not None else ()
    return {"help": tuple(lines), "fixes": fixes}


# --------------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------------

class _Style:
    def __init__(self, color: bool):
        self.color = color

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, t):
        return self._wrap("1", t)

    def red(self, t):
        return self._wrap("1;31", t)

    def yellow(self, t):
        return self._wrap("1;33", t)

    def blue(self, t):
        return self._wrap("1;34", t)

    def cyan(self, t):
        return self._wrap("1;36", t)


def use_color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _snippet(span: Span, source: str, marker: str, label: str | None, gutter: int,
             style: _Style, paint) -> list[str]:
    lines = source.split("\n")  # line numbers count "\n" only, as the parser does (not U+2028)
    out = []
    bar = style.blue(" " * gutter + " |")
    out.append(bar)
    last = min(span.end_line, span.line + 2)  # multi-line spans: show at most three lines
    for number in range(span.line, last + 1):
        if number - 1 >= len(lines):
            text = ""
        else:
            text = visible(lines[number - 1]).expandtabs(1)
        out.append(style.blue(f"{number:>{gutter}} |") + (" " + text if text else ""))
        start_col = span.col if number == span.line else 1
        end_col = span.end_col if number == span.end_line else len(text) + 1
        width = max(1, end_col - start_col)
        underline = " " * (start_col - 1) + marker * width
        tail = f" {label}" if label and number == last else ""
        out.append(bar + " " + paint(underline + tail))
    return out


def render_text(diagnostics: Sequence[Diagnostic], sources: dict[str, str], *,
                color: bool = False) -> str:
    """The full, human format (ruff/rustc style). What comes from the user (file names, source
    lines, values in messages) is printed through `visible`: no control character reaches the
    terminal."""
    style = _Style(color)
    blocks = []
    for d in diagnostics:
        paint = style.red if d.is_error else style.yellow
        head = paint(f"{d.severity}[{d.code}]") + style.bold(f": {visible(d.message)}")
        lines = [head]
        spans = [s for s in [d.span, *(s for s, _ in d.secondary)] if s is not None]
        gutter = max((len(str(s.end_line)) for s in spans), default=1)
        if d.span is not None:
            lines.append(" " * gutter + style.blue("--> ") + visible(str(d.span)))
            src = sources.get(d.span.path)
            if src is not None:
                lines += _snippet(d.span, src, "^", d.label and visible(d.label), gutter, style,
                                  paint)
        for span, message in d.secondary:
            lines.append(" " * gutter + style.blue("::: ") + visible(str(span)))
            src = sources.get(span.path)
            if src is not None:
                lines += _snippet(span, src, "-", visible(message), gutter, style, style.cyan)
        for h in d.help:
            lines.append(style.bold("help") + f": {visible(h)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def render_concise(diagnostics: Sequence[Diagnostic]) -> str:
    out = []
    for d in diagnostics:
        where = f"{d.span}: " if d.span else ""
        hint = f" ({d.help[0]})" if d.help else ""
        out.append(visible(f"{where}{d.severity}[{d.code}] {d.message}{hint}"))
    return "\n".join(out) + ("\n" if out else "")


def _escape_github(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands: `::error file=…,line=…,col=…::message`."""
    out = []
    for d in diagnostics:
        command = "error" if d.is_error else "warning"
        props = [f"title={_escape_github(d.code, prop=True)}"]
        if d.span:
            props = [
                f"file={_escape_github(visible(d.span.path), prop=True)}",
                f"line={d.span.line}", f"col={d.span.col}",
                f"endLine={d.span.end_line}", f"endColumn={d.span.end_col}",
            ] + props
        message = visible(d.message) + "".join(f"\n{visible(h)}" for h in d.help)
        out.append(f"::{command} {','.join(props)}::{_escape_github(message)}")
    return "\n".join(out) + ("\n" if out else "")


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps({"diagnostics": [d.to_json() for d in diagnostics],
                       "errors": sum(d.is_error for d in diagnostics),
                       "warnings": sum(not d.is_error for d in diagnostics)},
                      indent=2, ensure_ascii=False) + "\n"


def summary_line(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts) if parts else "no problems"


# SARIF viewers (GitHub code scanning, IDEs) show a rule's help text beside each result. The text
# comes with the log rather than as a link (helpUri): genbac has no published home to point at.
CODES_DOC = "spec/diagnostics.md"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVELS = {"error": "error", "warning": "warning"}  # anything else is a "note"


def code_descriptions() -> dict[str, str]:
    """Each documented code's one-line meaning, from the table in spec/diagnostics.md."""
    import re
    from pathlib import Path

    table = Path(__file__).with_name("diagnostics.md").read_text(encoding="utf-8")
    return {m[1]: m[2].strip() for m in re.finditer(r"^\| (GB\d{3}) \| \w+ \| (.+?) \|$", table,
                                                     re.M)}


def render_sarif(diagnostics: Sequence[Diagnostic], *, tool_version: str) -> str:
    """One SARIF 2.1.0 log for a whole command: a run of genbac with a result per diagnostic."""
    from urllib.parse import quote

    descriptions = code_descriptions()
    codes = sorted({d.code for d in diagnostics})
    rules = [{"id": code,
              "shortDescription": {"text": descriptions.get(code, code)},
              "help": {"text": f"{code}: {descriptions.get(code, 'an undocumented code')}. "
                               f"All codes: {CODES_DOC} in genbac."}} for code in codes]

    def location(span: Span, message: str | None = None) -> dict:
        where = {"physicalLocation": {
            "artifactLocation": {"uri": quote(span.path, safe="/:")},
            "region": {"startLine": span.line, "startColumn": span.col,
                       "endLine": span.end_line, "endColumn": span.end_col}}}
        if message:
            where["message"] = {"text": message}
        return where

    results = []
    for d in diagnostics:
        result = {"ruleId": d.code, "ruleIndex": codes.index(d.code),
                  "level": _SARIF_LEVELS.get(d.severity, "note"),
                  "message": {"text": d.message + "".join(f"\n{h}" for h in d.help)},
                  "locations": [location(d.span)] if d.span else []}
        if d.secondary:
            result["relatedLocations"] = [dict(location(s, m), id=i)
                                          for i, (s, m) in enumerate(d.secondary)]
        results.append(result)
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "genbac", "version": tool_version, "rules": rules}},
        # genbac counts columns in characters, SARIF by default in UTF-16 code units
        "columnKind": "unicodeCodePoints",
        "results": results}]}
    return json.dumps(log, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
