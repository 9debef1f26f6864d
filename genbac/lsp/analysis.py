"""One document, checked as `genbac check` checks a file (compiler.compile.check_source): its syntax
tree, its plans (one per sweep variant) and every diagnostic, in this file or in one it imports.

Pure but for reading imports, which goes through the `read` function given (spec.compose.Reader);
the server passes one that prefers the text of files open in the editor over the saved files.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from genbac.compiler.compile import Planned, check_source
from genbac.spec import ast
from genbac.spec.compose import Files
from genbac.spec.diagnostics import Diagnostic, error
from genbac.spec.span import Span


class Analysis(NamedTuple):
    path: str  # the document's file system path, as spans name it
    text: str
    document: ast.Document | None  # this file's own syntax tree; None when it does not parse
    planned: tuple[Planned, ...]  # empty for a fragment or a spec with errors
    diagnostics: tuple[Diagnostic, ...]  # of every file read, sorted
    sources: dict[str, str]  # every file read, by path (imports included)
    fragment: bool  # shared settings for other specs to import: checked where imported


def analyse(text: str, path: str, read) -> Analysis:
    sources: dict[str, str] = {}
    checked = check_source(text, path, read, sources)
    return Analysis(path, text, checked.document, checked.planned, checked.diagnostics, sources,
                    checked.fragment)


def internal_error(text: str, path: str, exc: Exception) -> Analysis:
    """What a document shows when checking it failed inside genbac: the CLI's GB999 line."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    d = error("GB999", f"internal error in genbac: {type(exc).__name__}"
              f"{': ' + detail if detail else ''}", Span.at_offset(path, text, 0, 0),
              help=("this is a genbac bug, please report it with the spec; the server's log "
                    "has the traceback",))
    return Analysis(path, text, None, (), (d,), {path: text}, False)


def editor_reader(root: str, open_texts: dict[str, str]):
    """Imports read from disk under `root` (with the CLI's rules: relative, inside the project),
    but the text of a file open in the editor is its unsaved text, so that an edit to an imported
    file shows in the specs that import it before it is saved."""
    files = Files(root)

    def read(importer: str, target: str) -> tuple[str, str]:
        shown, text = files.read(importer, target)
        return shown, open_texts.get(os.path.realpath(shown), text)

    return read
