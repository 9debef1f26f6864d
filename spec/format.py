"""The canonical layout of a .genba file: what `genbac fmt` writes.

    format_source(text, path) -> text in canonical style (raises SpecError for a syntax error)

The layout is computed from the AST (spans give every node's place in the text) plus the comments,
which the grammar ignores and the AST therefore lacks; `find_comments` recovers them from the text.
The style is the one of examples/*.genba:

- two spaces of indentation per block; one blank line kept wherever the source has one or more
  (never right after `{` or before `}`); a file ends with exactly one newline;
- a block, a call, a list or a tuple stays on one line if its first entry is on the same line as its
  opening bracket in the source and nothing inside it needs a line of its own (a comment, a nested
  block); otherwise one entry per line, and bracket entries end with a comma. The author chooses
  by where the first entry goes, as with Prettier's objects; fmt never wraps long lines;
- one space around `=`, `every` and the connectors (`from`, `then`, `x`); two spaces between the
  settings of a one-line block; `, ` between arguments and items;
- consecutive `key = value` settings (no blank line between them; comment lines do not count) align
  their `=`; consecutive blocks of one kind with as many labels (`language en "English" { … }`) are
  laid out as a table: labels and `{` aligned, and the settings of one-line blocks in columns, from
  the left for as long as a column's cells share their key and differ in width by at most 8;
- trailing comments on consecutive lines start in one column, two spaces after the longest code;
- numbers keep their spelling (`82B` stays `82B`) except that a unit word is separated by one space
  (`1000 steps`) and an exponent is written with a lower-case `e`; strings keep theirs.

Comments stay where they are: a comment on its own line stays on its own line before the same entry,
a trailing comment stays at the end of its entry's line (or of the line with the opening bracket). A
comment in a place that has no line of its own in the canonical layout (between a key and its `=`,
inside a one-line value) moves to its own line just above the entry it was in.

Adding a rule to the grammar means adding its AST node to `_VALUE_LAYOUTS` (a value) or to
`_Layout.entry` and `ENTRY_NODES` (a statement or a block's entry); a node without a layout raises
`FormatError`, and the formatter checks its own output (same AST apart from spans, same comments)
before returning it, so a rule it does not know can never silently lose text.
tests/spec/test_format.py keeps `GRAMMAR_RULES` in step with spec/genba.lark.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, NamedTuple, Sequence

from . import ast
from .diagnostics import Diagnostic, SpecError, warning
from .parser import parse
from .span import Span

INDENT = "  "

# The rules and aliases of genba.lark this layout was written for (tests compare it with the grammar).
GRAMMAR_RULES = frozenset({
    "start", "import_stmt", "block", "assign", "every", "value", "connector", "string", "quantity",
    "name", "true", "false", "call", "keyword_arg", "positional_arg", "list", "tuple",
})


class FormatError(Exception):
    """The formatter cannot lay a spec out without changing it: a genbac bug, not a spec mistake."""


class Comment(NamedTuple):
    start: int  # offset of the `#`
    end: int
    text: str  # as written, without trailing whitespace


# Only strings and comments can hold `"` or `#`, so a scan that steps over strings finds exactly the
# comments the lexer skips (in a text that parses; tests compare it with lark's own lexer).
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_SKIP = re.compile(r"(?:\s+|#[^\n]*)*")  # what the grammar ignores between tokens


def find_comments(text: str) -> list[Comment]:
    return [Comment(m.start(), m.end(), m.group().rstrip())
            for m in _STRING_OR_COMMENT.finditer(text) if m.group().startswith("#")]


def leading_comment(text: str) -> str:
    """The comment a spec opens with (its lines before the first setting or block, `#` and one
    space taken off): what the experiment is, in its author's words. "" if it opens with code."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" ").rstrip() if line else "")
    return "\n".join(lines).strip("\n")


def format_source(text: str, path: str = "<spec>") -> str:
    """The canonical layout of a spec. Raises SpecError (one syntax diagnostic) if it does not parse."""
    doc = parse(text, path)
    comments = find_comments(text)
    out = _render(_Layout(text, comments).document(doc))
    _check_unchanged(doc, comments, out, path)
    return out


def unformatted_diagnostic(path: str, before: str, after: str) -> Diagnostic:
    """A warning at the first line `genbac fmt` would change (for --check in machine formats)."""
    old, new = before.splitlines(), after.splitlines()
    line = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    lines_before = before.splitlines(keepends=True)
    start = sum(len(s) for s in lines_before[:line])
    length = len(old[line]) if line < len(old) else 0
    span = Span.at_offset(path, before, start, length)
    return warning("GB950", "not in canonical format", span, "`genbac fmt` changes this line",
                   help=(f"run `genbac fmt {path}`",))


# --------------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------------

class Line(NamedTuple):
    indent: int
    code: str  # "" for a comment line or a blank line
    comment: str | None = None


BLANK = Line(0, "")


def _render(lines: Sequence[Line]) -> str:
    columns = _comment_columns(lines)
    out = []
    for line, column in zip(lines, columns):
        code = INDENT * line.indent + line.code if line.code else ""
        if line.comment is None:
            out.append(code)
        elif not line.code:
            out.append(INDENT * line.indent + line.comment)
        else:
            out.append(code.ljust(column) + line.comment)
    return "".join(s.rstrip() + "\n" for s in out)


def _comment_columns(lines: Sequence[Line]) -> list[int]:
    """Trailing comments on consecutive lines share a column, two spaces after the longest code."""
    columns = [0] * len(lines)
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j].code and lines[j].comment is not None:
            j += 1
        if j > i:
            column = max(len(INDENT * l.indent + l.code) for l in lines[i:j]) + 2
            columns[i:j] = [column] * (j - i)
        i = j + 1
    return columns


# --------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------

class _Align(NamedTuple):
    """How a child lines up with its neighbours: key width, label widths, one-line cell widths."""

    key: int = 0
    labels: tuple[int, ...] = ()
    cells: tuple[int, ...] = ()


NO_ALIGN = _Align()

# `8` then `steps` on one line would be read as one number, `8 steps`
_BARE_NUMBER_END = re.compile(r"(?<![\w.~\-])[+-]?(?:\d[\d_]*(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?$")
_UNIT_WORD_START = re.compile(r"(?:steps?|tokens?|sequences?|seqs?)(?![A-Za-z0-9_])")
_QUANTITY = re.compile(r"(?P<approx>~?)(?P<number>[+-]?(?:\d[\d_]*(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?)"
                       r"(?P<scale>%|[KMBT])?[ \t]*(?P<word>[a-z]*)")


def quantity_text(written: str) -> str:
    m = _QUANTITY.fullmatch(written.strip())
    if m is None:  # pragma: no cover - the lexer only produces matching tokens
        raise FormatError(f"unexpected number {written!r}")
    number = m["number"].replace("E", "e")
    return m["approx"] + number + (m["scale"] or "") + (" " + m["word"] if m["word"] else "")


def _joins_safely(left: str, right: str) -> bool:
    return not (_BARE_NUMBER_END.search(left) and _UNIT_WORD_START.match(right))


class _Layout:
    def __init__(self, text: str, comments: list[Comment]):
        self.text = text
        self.comments = comments
        self.placed: set[int] = set()  # starts of the comments given a place

    def document(self, doc: ast.Document) -> list[Line]:
        _, lines = self.body(doc.items, 0, len(self.text), 0, self.entry, self.entry_kind,
                             has_opening=False)
        lost = [c for c in self.comments if c.start not in self.placed]
        if lost:  # pragma: no cover - every comment is in a gap or inside an entry
            raise FormatError(f"comment at offset {lost[0].start} has no place")
        return lines

    # -- comments ---------------------------------------------------------------------------------

    def comments_in(self, start: int, end: int) -> list[Comment]:
        return [c for c in self.comments if start <= c.start < end]

    def next_char(self, pos: int, char: str) -> int:
        """Offset of `char`, the next token after `pos` (skipping whitespace and comments)."""
        pos = _SKIP.match(self.text, pos).end()
        if not self.text.startswith(char, pos):  # pragma: no cover - the parser saw this token
            raise FormatError(f"expected {char!r} at offset {pos}")
        return pos

    # -- a sequence of entries between brackets (or a whole file) ---------------------------------

    def body(self, children: Sequence, open_end: int, close_start: int, indent: int,
             lay_child: Callable, child_kind: Callable, *, has_opening: bool = True,
             comma: bool = False) -> tuple[str | None, list[Line]]:
        """Lines for `children` and the comments between them; and the comment that belongs on the
        line of the opening bracket, if any."""
        text = self.text
        gaps = [c for c in self.comments_in(open_end, close_start)
                if not any(ch.span.start <= c.start < ch.span.end for ch in children)]
        opening = None
        trailing: dict[int, Comment] = {}
        elements: list[tuple[int, object]] = [(ch.span.start, i) for i, ch in enumerate(children)]
        for c in gaps:
            self.placed.add(c.start)
            before = [i for i, ch in enumerate(children) if ch.span.end <= c.start]
            anchor = children[before[-1]].span.end if before else open_end
            same_line = "\n" not in text[anchor:c.start]
            if same_line and before and before[-1] not in trailing:
                trailing[before[-1]] = c
            elif same_line and not before and has_opening and opening is None:
                opening = c
            else:
                elements.append((c.start, c))
        elements.sort(key=lambda e: e[0])

        # blank lines, then the runs of children that align with each other
        blank_before = []
        end = open_end
        for start, element in elements:
            blank_before.append(bool(blank_before) and text.count("\n", end, start) >= 2)
            if isinstance(element, Comment):
                end = element.end
            else:
                end = max(children[element].span.end,
                          trailing[element].end if element in trailing else 0)
        aligns = self.alignments(children, elements, blank_before, child_kind)

        lines: list[Line] = []
        for (start, element), blank in zip(elements, blank_before):
            if blank:
                lines.append(BLANK)
            if isinstance(element, Comment):
                lines.append(Line(indent, "", element.text))
                continue
            child = children[element]
            child_lines = lay_child(child, indent, aligns[element])
            moved = [c for c in self.comments_in(child.span.start, child.span.end)
                     if c.start not in self.placed]
            self.placed.update(c.start for c in moved)
            lines += [Line(indent, "", c.text) for c in moved]
            if comma:
                child_lines[-1] = child_lines[-1]._replace(code=child_lines[-1].code + ",")
            if element in trailing:  # a last line (closing bracket, one-line entry) has no comment
                child_lines[-1] = child_lines[-1]._replace(comment=trailing[element].text)
            lines += child_lines
        return (opening.text if opening else None), lines

    def alignments(self, children, elements, blank_before, child_kind) -> dict[int, _Align]:
        runs: list[list[int]] = []
        previous = None
        for (start, element), blank in zip(elements, blank_before):
            if isinstance(element, Comment):
                if blank:
                    previous = None
                continue
            kind = child_kind(children[element])
            if kind is not None and kind == previous and not blank:
                runs[-1].append(element)
            else:
                runs.append([element])
            previous = kind
        aligns = {}
        for run in runs:
            kind = child_kind(children[run[0]])
            members = [children[i] for i in run]
            if kind is None:
                align = [NO_ALIGN] * len(run)
            elif kind[0] == "assign":
                width = max(len(_key(m)) for m in members)
                align = [_Align(key=width)] * len(run)
            else:  # a table of blocks
                align = self.table(members)
            aligns.update(zip(run, align))
        return aligns

    def table(self, blocks: Sequence[ast.Block]) -> list[_Align]:
        labels = [[self.label(l) for l in b.labels] for b in blocks]
        label_widths = tuple(max(len(row[j]) for row in labels) for j in range(len(labels[0])))
        rows = [r for r in map(self.one_line_cells, blocks) if r]
        cell_widths = []
        for j in range(max((len(r) for r in rows), default=0)):
            column = [r[j] for r in rows if len(r) > j]
            widths = [len(c) for c in column]
            if len({c.split(" ", 1)[0] for c in column}) > 1 or max(widths) - min(widths) > 8:
                break  # a table of different keys, or of a long path beside short ones
            cell_widths.append(max(widths))
        return [_Align(labels=label_widths, cells=tuple(cell_widths))] * len(blocks)

    # -- entries: settings, blocks, imports -------------------------------------------------------

    @staticmethod
    def entry_kind(node):
        if isinstance(node, ast.Setting) and node.op == "=":
            return ("assign",)
        if isinstance(node, ast.Block):
            return ("block", node.kind.value, len(node.labels))
        return None

    def entry(self, node, indent: int, align: _Align) -> list[Line]:
        if isinstance(node, ast.Setting):
            return self.setting(node, indent, align.key)
        if isinstance(node, ast.Block):
            return self.block(node, indent, align)
        if isinstance(node, ast.Import):
            alias = f" as {node.alias.value}" if node.alias else ""
            return [Line(indent, f"import {self.source(node.path)}{alias}")]
        raise FormatError(f"no layout for a {type(node).__name__} entry (add it to spec/format.py)")

    def setting(self, node: ast.Setting, indent: int, key_width: int = 0) -> list[Line]:
        key = node.key.value.ljust(key_width) if node.op == "=" else node.key.value
        return _prefix(f"{key} {node.op} ", self.value(node.value, indent))

    def block(self, node: ast.Block, indent: int, align: _Align = NO_ALIGN) -> list[Line]:
        labels = [self.label(l) for l in node.labels]
        if align.labels:
            labels = [l.ljust(w) for l, w in zip(labels, align.labels)]
        header = " ".join([node.kind.value, *labels])
        cells = self.one_line_cells(node)
        if cells is not None:
            padded = min(len(align.cells), len(cells) - 1)  # the last cell is never padded
            cells = [c.ljust(w) for c, w in zip(cells, align.cells[:padded])] + cells[padded:]
            inside = f" {'  '.join(cells)} " if cells else ""
            return [Line(indent, f"{header} {{{inside}}}")]
        brace = self.brace(node)
        opening, lines = self.body(node.entries, brace + 1, node.span.end - 1, indent + 1,
                                   self.entry, self.entry_kind)
        return [Line(indent, header + " {", opening), *lines, Line(indent, "}")]

    def brace(self, node: ast.Block) -> int:
        last = node.labels[-1] if node.labels else node.kind
        return self.next_char(last.span.end, "{")

    def one_line_cells(self, node: ast.Block) -> list[str] | None:
        """The settings of a block that stays on one line, laid out; None if it takes several."""
        brace = self.brace(node)
        first = node.entries[0].span.start if node.entries else node.span.end - 1
        if ("\n" in self.text[brace:first] or self.comments_in(brace, node.span.end)
                or not all(isinstance(e, ast.Setting) for e in node.entries)):
            return None
        cells = []
        for entry in node.entries:
            lines = self.setting(entry, 0)
            if len(lines) > 1 or (cells and not _joins_safely(cells[-1], lines[0].code)):
                return None
            cells.append(lines[0].code)
        return cells

    def label(self, node) -> str:
        if isinstance(node, (ast.Str, ast.Name, ast.Quantity)):
            return self.value(node, 0)[0].code
        raise FormatError(f"no layout for a {type(node).__name__} label (add it to spec/format.py)")

    # -- values -----------------------------------------------------------------------------------

    def value(self, node, indent: int) -> list[Line]:
        """A value's lines: the first continues the line it starts on, the others stand alone."""
        layout = _VALUE_LAYOUTS.get(type(node))
        if layout is None:
            raise FormatError(f"no layout for a {type(node).__name__} value (add it to "
                              "_VALUE_LAYOUTS in spec/format.py)")
        return layout(self, node, indent)

    def source(self, node) -> str:
        return self.text[node.span.start:node.span.end]

    def chain(self, node: ast.Chain, indent: int) -> list[Line]:
        lines = self.value(node.terms[0], indent)
        for connector, term in zip(node.connectors, node.terms[1:]):
            lines = _join(lines, f" {connector} ", self.value(term, indent))
        return lines

    def call(self, node: ast.Call, indent: int) -> list[Line]:
        paren = self.next_char(node.name.span.end, "(")
        return _prefix(node.name.value, self.bracket(node.args, paren, node.span.end - 1, indent,
                                                     "(", ")", self.arg, self.arg_kind))

    def list_value(self, node: ast.ListValue, indent: int) -> list[Line]:
        return self.bracket(node.items, node.span.start, node.span.end - 1, indent, "[", "]",
                            self.item, lambda n: None)

    def tuple_value(self, node: ast.TupleValue, indent: int) -> list[Line]:
        return self.bracket(node.items, node.span.start, node.span.end - 1, indent, "(", ")",
                            self.item, lambda n: None, one_comma=True)

    def bracket(self, items, open_pos: int, close_pos: int, indent: int, opener: str,
                closer: str, lay_item: Callable, item_kind: Callable, *,
                one_comma: bool = False) -> list[Line]:
        first = items[0].span.start if items else close_pos
        if "\n" not in self.text[open_pos:first] and not self.comments_in(open_pos, close_pos):
            laid = [lay_item(item, indent, NO_ALIGN) for item in items]
            if all(len(lines) == 1 for lines in laid):
                inner = ", ".join(lines[0].code for lines in laid)
                if one_comma and len(items) == 1:
                    inner += ","  # `(x,)` is a tuple, `(x)` would not parse
                return [Line(indent, opener + inner + closer)]
        opening, lines = self.body(items, open_pos + 1, close_pos, indent + 1, lay_item,
                                   item_kind, comma=True)
        return [Line(indent, opener, opening), *lines, Line(indent, closer)]

    @staticmethod
    def arg_kind(node: ast.Arg):
        return ("assign",) if node.key is not None else None

    def arg(self, node: ast.Arg, indent: int, align: _Align) -> list[Line]:
        if node.key is None:
            return self.value(node.value, indent)
        return _prefix(f"{node.key.value.ljust(align.key)} = ", self.value(node.value, indent))

    def item(self, node, indent: int, align: _Align) -> list[Line]:
        return self.value(node, indent)


def _key(node) -> str:
    return node.key.value


def _prefix(prefix: str, lines: list[Line]) -> list[Line]:
    return [lines[0]._replace(code=prefix + lines[0].code), *lines[1:]]


def _join(left: list[Line], connector: str, right: list[Line]) -> list[Line]:
    last = left[-1]  # a closing bracket or a one-line term: never a comment of its own
    return [*left[:-1], right[0]._replace(indent=last.indent, code=last.code + connector +
                                          right[0].code), *right[1:]]


_VALUE_LAYOUTS: dict[type, Callable[[_Layout, object, int], list[Line]]] = {
    ast.Str: lambda self, node, indent: [Line(indent, self.source(node))],
    ast.Quantity: lambda self, node, indent: [Line(indent, quantity_text(node.text))],
    ast.Name: lambda self, node, indent: [Line(indent, node.value)],
    ast.Bool: lambda self, node, indent: [Line(indent, "true" if node.value else "false")],
    ast.Chain: _Layout.chain,
    ast.Call: _Layout.call,
    ast.ListValue: _Layout.list_value,
    ast.TupleValue: _Layout.tuple_value,
}
ENTRY_NODES = (ast.Setting, ast.Block, ast.Import)  # what `_Layout.entry` lays out


# --------------------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------------------

def shape(node):
    """A node without its spans and spellings: what formatting must not change."""
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        if isinstance(node, Span):
            return None
        return (type(node).__name__,
                *(shape(getattr(node, f)) for f in node._fields if f not in ("span", "text")))
    if isinstance(node, tuple):
        return tuple(shape(n) for n in node)
    return node


def _check_unchanged(doc: ast.Document, comments: list[Comment], out: str, path: str) -> None:
    try:
        again = parse(out, path)
    except SpecError as exc:
        raise FormatError(f"{path}: the formatted text does not parse "
                          f"({exc.diagnostics[0].message}); nothing was written") from None
    if shape(again.items) != shape(doc.items):
        raise FormatError(f"{path}: formatting would change the spec's meaning; nothing was written")
    if Counter(c.text for c in find_comments(out)) != Counter(c.text for c in comments):
        raise FormatError(f"{path}: formatting would lose a comment; nothing was written")
