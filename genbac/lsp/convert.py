"""genbac's diagnostics as the editor shows them, and their fixes as quick fixes.

A diagnostic keeps its code, its primary span (the squiggle), its label and help lines (the
message's further lines, as the CLI prints them under the snippet) and its secondary spans (LSP
related information, which can point into other files). A diagnostic in a file this one imports is
shown on the import statement that brought that file in, and points into it.
"""

from __future__ import annotations

import os

from lsprotocol import types as lsp
from pygls.uris import from_fs_path

from genbac.spec import ast
from genbac.spec.diagnostics import Diagnostic
from genbac.spec.span import Span

from .analysis import Analysis
from .positions import LineIndex

SOURCE = "genbac"


def uri_of(path: str) -> str:
    return from_fs_path(path) or path


class Ranges:
    """Spans -> LSP ranges, for every file an analysis read (a line index per file, built once)."""

    def __init__(self, sources: dict[str, str], encoding: str, uris: dict[str, str] | None = None):
        self.sources, self.encoding = sources, encoding
        self.uris = uris or {}  # paths whose URI is not their file's (an unsaved new document)
        self._index: dict[str, LineIndex] = {}

    def index(self, path: str) -> LineIndex:
        if path not in self._index:
            self._index[path] = LineIndex(self.sources.get(path, ""), self.encoding)
        return self._index[path]

    def range(self, span: Span) -> lsp.Range:
        index = self.index(span.path)
        start, end = index.position(span.start), index.position(span.end)
        return lsp.Range(lsp.Position(*start), lsp.Position(*end))

    def location(self, span: Span) -> lsp.Location:
        return lsp.Location(self.uris.get(span.path) or uri_of(span.path), self.range(span))


def diagnostics(analysis: Analysis, encoding: str, uri: str) -> list[lsp.Diagnostic]:
    ranges = Ranges(analysis.sources, encoding, {analysis.path: uri})
    return [_diagnostic(d, analysis, ranges) for d in analysis.diagnostics]


def _diagnostic(d: Diagnostic, analysis: Analysis, ranges: Ranges) -> lsp.Diagnostic:
    message = d.message
    if d.label:
        message += f" ({d.label})"
    message += "".join(f"\nhelp: {h}" for h in d.help)
    related = [lsp.DiagnosticRelatedInformation(ranges.location(s), m) for s, m in d.secondary]
    if d.span is None:
        where = lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
    elif d.span.path == analysis.path:
        where = ranges.range(d.span)
    else:  # in an imported file: on the import that leads there, pointing into the file
        where = ranges.range(_import_of(analysis, d.span.path))
        shown = os.path.relpath(d.span.path, os.path.dirname(analysis.path))
        message = f"in {shown}: {message}"
        related.insert(0, lsp.DiagnosticRelatedInformation(ranges.location(d.span), d.message))
    return lsp.Diagnostic(
        range=where, message=message, code=d.code, source=SOURCE,
        severity=lsp.DiagnosticSeverity.Error if d.is_error else lsp.DiagnosticSeverity.Warning,
        related_information=related or None)


def _import_of(analysis: Analysis, path: str) -> Span:
    """The import statement of this document that `path` was read through (directly, or as an
    import of an import: then the first import), or the top of the file."""
    imports = [i for i in (analysis.document.items if analysis.document else ())
               if isinstance(i, ast.Import)]
    here = os.path.dirname(analysis.path)
    for item in imports:
        if os.path.normpath(os.path.join(here, item.path.value)) == os.path.normpath(path):
            return item.span
    if imports:
        return imports[0].span
    return Span.at_offset(analysis.path, analysis.text, 0, 0)


def quick_fixes(analysis: Analysis, uri: str, wanted: lsp.Range, encoding: str
                ) -> list[lsp.CodeAction]:
    """A quick fix for each fix of each diagnostic in this file whose range meets `wanted`."""
    ranges = Ranges(analysis.sources, encoding, {analysis.path: uri})
    actions = []
    for d in analysis.diagnostics:
        if d.span is None or d.span.path != analysis.path or not d.fixes:
            continue
        where = ranges.range(d.span)
        if not _meets(where, wanted):
            continue
        shown = _diagnostic(d, analysis, ranges)
        for i, (span, text) in enumerate(d.fixes):
            if span.path != analysis.path:
                continue
            edit = lsp.TextEdit(ranges.range(span), text)
            actions.append(lsp.CodeAction(
                title=f"Write `{text.strip()}`" if text.strip() else "Apply the fix",
                kind=lsp.CodeActionKind.QuickFix, diagnostics=[shown], is_preferred=i == 0,
                edit=lsp.WorkspaceEdit(changes={uri: [edit]})))
    return actions


def _meets(a: lsp.Range, b: lsp.Range) -> bool:
    def key(p: lsp.Position):
        return p.line, p.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)
