"""Document symbols (the editor's outline) and go to definition.

Symbols: the experiment, and in it the base, growth, vocabulary, each language, each phase, the
training block with its settings, the hardware; imports at the top. Definition: an import's path
opens the file; a declared architecture's name (`base = tiny`) goes to its block; a language code
(in a phase, or a `language bar { … }` that overrides an imported one) goes to the block that
declares the language, in this file or an imported one.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from genbac.spec import ast
from genbac.spec.ast import label_text
from genbac.spec.diagnostics import SpecError
from genbac.spec.parser import parse
from genbac.spec.span import Span

from .analysis import Analysis
from .tree import blocks_of, chain_at, walk_blocks


class Symbol(NamedTuple):
    name: str
    detail: str
    kind: str  # "module" | "namespace" | "object" | "property" | "event" | "file" | "class"
    span: Span  # the whole statement
    selection: Span  # its name
    children: tuple["Symbol", ...] = ()


_BLOCK_KINDS = {"experiment": "module", "language": "namespace", "phase": "event",
                "train": "object", "grow": "class", "vocab": "object", "architecture": "class"}


def symbols(document: ast.Document) -> list[Symbol]:
    return [_symbol(item, document.text) for item in document.items]


def _symbol(item, text: str) -> Symbol:
    if isinstance(item, ast.Import):  # names may not be empty (VS Code refuses the outline)
        return Symbol(item.path.value or '""', "import", "file", item.span, item.path.span)
    if isinstance(item, ast.Setting):
        return Symbol(item.key.value, _written(item.value.span, text), "property", item.span,
                      item.key.span)
    kind = item.kind.value
    labels = [label_text(label) for label in item.labels]
    name = (labels[0] or kind) if kind == "experiment" and labels else " ".join(
        [kind, *(label or '""' for label in labels[:1])])
    detail = " ".join(labels[1:]) if kind != "experiment" else ""
    children = () if kind in ("language", "phase") else tuple(
        _symbol(e, text) for e in item.entries)
    selection = item.labels[0].span if item.labels else item.kind.span
    return Symbol(name, detail, _BLOCK_KINDS.get(kind, "object"), item.span, selection, children)


def _written(span: Span, text: str, limit: int = 60) -> str:
    """A value as written, on one line, shortened."""
    written = " ".join(text[span.start:span.end].split())
    return written if len(written) <= limit else written[:limit - 1] + "…"


class Target(NamedTuple):
    path: str
    span: Span | None  # None: the top of the file


def definition(analysis: Analysis, offset: int) -> Target | None:
    if analysis.document is None:
        return None
    chain = chain_at(analysis.document, offset)
    if not chain:
        return None
    word = chain[-1]
    if isinstance(chain[0], ast.Import) and word is chain[0].path:
        target = os.path.normpath(os.path.join(os.path.dirname(analysis.path), word.value))
        return Target(target, None) if target in analysis.sources else None
    blocks = blocks_of(chain)
    inner = blocks[-1] if blocks else None
    setting = next((n for n in reversed(chain) if isinstance(n, ast.Setting)), None)
    if isinstance(word, ast.Name) and setting is not None and setting.key.value == "base":
        return _declared(analysis, "architecture", word.value)
    if inner is not None and inner.kind.value == "phase" and setting is not None \
            and word is setting.key:
        return _declared(analysis, "language", word.value)
    if inner is not None and inner.kind.value == "language" and inner.labels \
            and word is inner.labels[0]:
        return _declared(analysis, "language", label_text(word), elsewhere=inner.span)
    return None


def _declared(analysis: Analysis, kind: str, name: str, elsewhere: Span | None = None
              ) -> Target | None:
    """The block `kind name { … }` in this file, else in the files it imports (the first found);
    `elsewhere`: a block not to return (the one the cursor is on)."""
    for path in (analysis.path, *sorted(p for p in analysis.sources if p != analysis.path)):
        document = _document(analysis, path)
        if document is None:
            continue
        for block, _ in walk_blocks(document.items):
            if (block.kind.value == kind and block.labels
                    and label_text(block.labels[0]) == name and block.span != elsewhere):
                return Target(path, block.labels[0].span)
    return None


def _document(analysis: Analysis, path: str) -> ast.Document | None:
    if path == analysis.path:
        return analysis.document
    try:
        return parse(analysis.sources[path], path)
    except SpecError:
        return None
