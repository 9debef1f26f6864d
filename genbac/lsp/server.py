"""The language server itself: LSP over stdio (pygls), wired to the pure modules beside it.

Each open document is analysed again on every change (full text sync: a spec is a few KB, and the
whole check of the GENBA example takes milliseconds, see BENCHMARKS.md), and its diagnostics are
published at once, no debounce. A change to a file also re-checks the open specs that import it,
with the unsaved text.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from genbac import __version__
from genbac.spec.compose import project_root
from genbac.spec.diagnostics import SpecError
from genbac.spec.format import FormatError, format_source

from . import complete, convert, hover, outline
from .analysis import Analysis, analyse, editor_reader, internal_error
from .positions import LineIndex

_DECLARED = {kind: re.compile(rf"^[ \t]*{kind}[ \t]+([A-Za-z_][\w.\-]*)", re.M)
             for kind in ("language", "architecture")}

_SYMBOL_KINDS = {"module": lsp.SymbolKind.Module, "namespace": lsp.SymbolKind.Namespace,
                 "object": lsp.SymbolKind.Object, "property": lsp.SymbolKind.Property,
                 "event": lsp.SymbolKind.Event, "file": lsp.SymbolKind.File,
                 "class": lsp.SymbolKind.Class}
_ITEM_KINDS = {"key": lsp.CompletionItemKind.Property, "block": lsp.CompletionItemKind.Module,
               "value": lsp.CompletionItemKind.EnumMember, "call": lsp.CompletionItemKind.Function,
               "language": lsp.CompletionItemKind.Variable,
               "argument": lsp.CompletionItemKind.Field}


class GenbaServer(LanguageServer):
    def __init__(self):
        super().__init__("genbac", __version__,
                         text_document_sync_kind=lsp.TextDocumentSyncKind.Full)
        self.analyses: dict[str, Analysis] = {}

    @property
    def encoding(self) -> str:
        return str(self.workspace.position_encoding or "utf-16")

    def path_of(self, uri: str) -> str:
        return to_fs_path(uri) or uri

    def analysis(self, uri: str) -> Analysis:
        doc = self.workspace.get_text_document(uri)
        found = self.analyses.get(uri)
        if found is not None and found.text == doc.source:
            return found
        path = self.path_of(uri)
        root = project_root(Path(path)) if os.path.isabs(path) else Path.cwd()
        open_texts = {os.path.realpath(self.path_of(u)): d.source
                      for u, d in self.workspace.text_documents.items() if u != uri}
        try:
            found = analyse(doc.source, path, editor_reader(root, open_texts))
        except Exception as exc:  # a genbac bug: said in the editor, and the server goes on
            logging.getLogger("genbac.lsp").exception("checking %s failed", path)
            found = internal_error(doc.source, path, exc)
        self.analyses[uri] = found
        return found

    def refresh(self, uri: str) -> None:
        """Check a document and publish its diagnostics; then every open spec that imports it."""
        self.publish(uri, self.analysis(uri))
        self.recheck_importers(uri)

    def recheck_importers(self, uri: str) -> None:
        """Check again the open specs that read `uri` (an edit, or closing it unsaved)."""
        changed = os.path.realpath(self.path_of(uri))
        for other, previous in list(self.analyses.items()):
            if other != uri and other in self.workspace.text_documents and any(
                    os.path.realpath(p) == changed for p in previous.sources if p != previous.path):
                self.analyses.pop(other)
                self.publish(other, self.analysis(other))

    def publish(self, uri: str, analysis: Analysis) -> None:
        version = self.workspace.get_text_document(uri).version
        found = convert.diagnostics(analysis, self.encoding, uri)
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            uri=uri, version=version, diagnostics=found))

    def ranges(self, analysis: Analysis, uri: str) -> convert.Ranges:
        return convert.Ranges(analysis.sources, self.encoding, {analysis.path: uri})

    def offset(self, uri: str, position: lsp.Position) -> tuple[Analysis, int]:
        analysis = self.analysis(uri)
        index = LineIndex(analysis.text, self.encoding)
        return analysis, index.offset(position.line, position.character)


server = GenbaServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: GenbaServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: GenbaServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: GenbaServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: GenbaServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
    ls.recheck_importers(uri)  # they read its unsaved text: now the saved file


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def on_hover(ls: GenbaServer, params: lsp.HoverParams) -> lsp.Hover | None:
    analysis, offset = ls.offset(params.text_document.uri, params.position)
    found = hover.hover(analysis, offset)
    if found is None:
        return None
    text, span = found
    ranges = ls.ranges(analysis, params.text_document.uri)
    return lsp.Hover(contents=lsp.MarkupContent(lsp.MarkupKind.Markdown, text),
                     range=ranges.range(span) if span is not None else None)


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION)
def on_completion(ls: GenbaServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    analysis, offset = ls.offset(params.text_document.uri, params.position)
    declared = {kind: sorted({m.group(1) for text in analysis.sources.values()
                              for m in pattern.finditer(text)})
                for kind, pattern in _DECLARED.items()}
    found = complete.items(analysis.text, offset, declared["language"], declared["architecture"])
    index = LineIndex(analysis.text, ls.encoding)
    typed = lsp.Range(lsp.Position(*index.position(complete.word_start(analysis.text, offset))),
                      params.position)
    return lsp.CompletionList(is_incomplete=False, items=[
        lsp.CompletionItem(
            label=item.label, kind=_ITEM_KINDS[item.kind],
            documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, item.doc),
            text_edit=lsp.TextEdit(typed, item.insert),
            insert_text_format=(lsp.InsertTextFormat.Snippet if item.snippet
                                else lsp.InsertTextFormat.PlainText))
        for item in found])


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def on_formatting(ls: GenbaServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
    """The whole document as `genbac fmt` writes it (nothing for a file that does not parse:
    its diagnostics say why)."""
    analysis = ls.analysis(params.text_document.uri)
    try:
        formatted = format_source(analysis.text, analysis.path)
    except (SpecError, FormatError):
        return []
    if formatted == analysis.text:
        return []
    index = LineIndex(analysis.text, ls.encoding)
    end = lsp.Position(*index.position(len(analysis.text)))
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), formatted)]


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def on_symbols(ls: GenbaServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    analysis = ls.analysis(params.text_document.uri)
    if analysis.document is None:
        return []
    ranges = ls.ranges(analysis, params.text_document.uri)

    def convert_symbol(s: outline.Symbol) -> lsp.DocumentSymbol:
        return lsp.DocumentSymbol(
            name=s.name, detail=s.detail or None, kind=_SYMBOL_KINDS[s.kind],
            range=ranges.range(s.span), selection_range=ranges.range(s.selection),
            children=[convert_symbol(c) for c in s.children] or None)

    return [convert_symbol(s) for s in outline.symbols(analysis.document)]


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: GenbaServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    analysis, offset = ls.offset(params.text_document.uri, params.position)
    target = outline.definition(analysis, offset)
    if target is None:
        return None
    if target.span is None:
        start = lsp.Position(0, 0)
        return lsp.Location(convert.uri_of(target.path), lsp.Range(start, start))
    ranges = ls.ranges(analysis, params.text_document.uri)
    return ranges.location(target.span)


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def on_code_action(ls: GenbaServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    uri = params.text_document.uri
    return convert.quick_fixes(ls.analysis(uri), uri, params.range, ls.encoding)


def serve() -> None:
    server.start_io()
