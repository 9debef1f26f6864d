"""Text -> AST. The grammar is `genba.lark`; this module runs its parser and shapes the tree.

The parser is lark's LALR parser for that grammar, generated once and cached as bytecode
(`spec.lalr`), so a CLI start neither analyses the grammar nor imports lark. Syntax errors become
`Diagnostic`s (spec.syntax): every syntax error of a file is reported in one run, the parser going
on after each by blanking the statement that failed; the later stages run only on a file without
syntax errors, and report every problem they find.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING

from . import ast, lalr, limits, syntax
from .diagnostics import Diagnostic, SpecError, error
from .lalr import runtime
from .span import Span, token_span

if TYPE_CHECKING:  # the classes come from whichever runtime `spec.lalr` loaded
    from lark import Token, Tree

GRAMMAR = lalr.GRAMMAR  # tools and tests read the grammar from here

_SCALE = {"K": Decimal(10) ** 3, "M": Decimal(10) ** 6, "B": Decimal(10) ** 9, "T": Decimal(10) ** 12}
_UNIT_WORDS = {"step": "steps", "steps": "steps", "token": "tokens", "tokens": "tokens",
               "sequence": "sequences", "sequences": "sequences", "seq": "sequences",
               "seqs": "sequences"}
_QUANTITY = re.compile(r"(?P<approx>~)?(?P<number>[+-]?[\d_.]+(?:[eE][+-]?\d+)?)[ \t]*(?P<unit>.*)")


def parse(text: str, path: str = "<spec>") -> ast.Document:
    """Parse a spec (see _parse); the same text and path parse once per process, since `check`
    and the compose step may both ask, and the tree is immutable."""
    return _parse(text, path)


@lru_cache(maxsize=8)
def _parse(text: str, path: str) -> ast.Document:
    """Parse a spec; raise SpecError with its syntax diagnostics if the text is not valid .genba.

    Before the parser runs, the text is checked in one linear pass for what no spec may hold (see
    spec.limits): its size, characters that are not allowed, brackets nested too deep. Number
    literals are range-checked as the tree is shaped, so no later stage does arithmetic on a
    quantity no experiment could need."""
    problems = source_problems(text, path)
    if problems:
        raise SpecError(problems)
    tree = _tree(text, path)
    shaper = _ToAst(path, runtime().Tree)
    items = tuple(shaper.items(tree))
    if shaper.problems:
        raise SpecError(shaper.problems)
    return ast.Document(path=path, text=text, items=items)


def _tree(text: str, path: str):
    """The parse tree, or SpecError with every syntax error of the file (up to a cap): after each
    error the failed statement is blanked and the text parsed again (spec.syntax.recover)."""
    rt = runtime()
    diagnostics: list[Diagnostic] = []
    current, last = text, -1
    while current is not None and len(diagnostics) < syntax.MAX_SYNTAX_ERRORS:
        try:
            tree = rt.parser.parse(current)
        except rt.UnexpectedInput as exc:
            at = syntax.error_offset(exc)
            if diagnostics and at <= last:
                break  # the repair did not get past this point: what follows is guesswork
            diagnostics.append(syntax.syntax_diagnostic(exc, current, path))
            last = at
            current = syntax.recover(exc, current)
        else:
            if not diagnostics:
                return tree
            break  # the rest parses: every syntax error is found
    raise SpecError(diagnostics)


# Strings and comments are skipped when brackets are counted (a `{` in a string opens nothing).
_NESTING_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[\[({]|[\])}]')
# An upper bound on the parser's tokens: strings, words and numbers (runs of their characters),
# single punctuation; comments match but are not counted.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[\w.~%+\-]+|\S')


def token_count(text: str) -> int:
    return sum(1 for m in _TOKENS.finditer(text) if m.group()[0] != "#")
_MAX_CHAR_PROBLEMS = 10


def source_problems(text: str, path: str) -> list[Diagnostic]:
    """What makes a text unreadable as a spec before any parsing: too large, characters that are
    not allowed anywhere (GB004), brackets nested deeper than the limit (GB005)."""
    if len(text) > limits.MAX_FILE_BYTES:
        return [error("GB007", f"the spec is larger than {limits.MAX_FILE_BYTES // 1024} KiB, the "
                      "limit for one spec file", Span.at_offset(path, text, 0, 0), "too large",
                      help=("split it: shared languages or settings can live in files it "
                            "imports",))]
    tokens = token_count(text)
    if tokens > limits.MAX_FILE_TOKENS:
        return [error("GB007", f"the spec has {tokens:,} words, numbers and symbols; one spec "
                      f"file may have at most {limits.MAX_FILE_TOKENS:,}",
                      Span.at_offset(path, text, 0, 0), "too long",
                      help=("split it: shared languages or settings can live in files it "
                            "imports",))]
    found = []
    for m in limits.FORBIDDEN_IN_SOURCE.finditer(text):
        found.append(error(
            "GB004", f"the character {limits.describe_char(m.group())} is not allowed in a spec",
            Span.at_offset(path, text, m.start(), 1), "not allowed here",
            help=("control characters, line separators and bidirectional controls are refused "
                  "anywhere in a spec, comments included; in a string write `\\n` or `\\t`",)))
        if len(found) == _MAX_CHAR_PROBLEMS:
            break
    if found:
        return found
    depth = 0
    for m in _NESTING_TOKENS.finditer(text):
        c = m.group()
        if c in "[({":
            depth += 1
            if depth > limits.MAX_NESTING:
                return [error("GB005", f"brackets and blocks are nested more than "
                              f"{limits.MAX_NESTING} deep", Span.at_offset(path, text, m.start()),
                              "too deep", help=("no setting needs values nested this deep",))]
        elif c in "])}":
            depth = max(0, depth - 1)
    return []


# --------------------------------------------------------------------------------------------------
# Tree shaping
# --------------------------------------------------------------------------------------------------

def _span(path: str, meta) -> Span:
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column, meta.start_pos,
                meta.end_pos)



class LiteralOutOfRange(ValueError):
    """A number literal no setting could take (`1e400`, 5,000 digits): refused before arithmetic."""


def parse_quantity(text: str) -> tuple[Decimal, str | None, bool]:
    m = _QUANTITY.fullmatch(text)
    if m is None:  # pragma: no cover - the lexer only produces matching tokens
        raise ValueError(text)
    number, unit = m["number"], m["unit"].strip()
    if number.endswith("%"):
        number, unit = number[:-1], "%"
    value = Decimal(number.replace("_", ""))
    _check_literal(value, unit in _SCALE)
    if unit in _SCALE:
        value, unit = value * _SCALE[unit], None
    elif unit == "%":
        pass
    elif unit:
        unit = _UNIT_WORDS[unit]
    else:
        unit = None
    return value, unit, bool(m["approx"])


def _check_literal(value: Decimal, scaled: bool) -> None:
    """Bounds on the literal itself, each O(1) on Decimal's representation: how many digits it
    has, and its power of ten (including the scale, at most 10^12 for `T`)."""
    digits = len(value.as_tuple().digits)
    if digits > limits.MAX_LITERAL_DIGITS:
        raise LiteralOutOfRange(f"a number with {digits} digits is longer than any setting needs "
                                f"(at most {limits.MAX_LITERAL_DIGITS})")
    if not value.is_finite():  # pragma: no cover - the grammar has no NaN or Infinity
        raise LiteralOutOfRange("not a finite number")
    if value.is_zero():
        return
    power = value.adjusted() + (12 if scaled else 0)
    if power > limits.MAX_LITERAL_EXPONENT:
        raise LiteralOutOfRange(f"{value:.3g} is larger than any setting takes (below "
                                f"1e{limits.MAX_LITERAL_EXPONENT + 1})")
    if value.adjusted() < limits.MIN_LITERAL_EXPONENT:
        raise LiteralOutOfRange(f"{value:.3g} is smaller than any setting takes (at least "
                                f"1e{limits.MIN_LITERAL_EXPONENT}, or 0)")


class _ToAst:
    """Bottom-up: each rule's method gets the rule's span info (`meta`) and its shaped children."""

    def __init__(self, path: str, tree_class: type):
        self.path = path
        self.tree_class = tree_class
        self.problems: list[Diagnostic] = []  # number literals out of range, all of them

    def items(self, start: Tree) -> list:
        return [self.shape(item) for item in start.children]

    def shape(self, tree: Tree):
        children = [self.shape(c) if isinstance(c, self.tree_class) else c for c in tree.children]
        return getattr(self, tree.data)(tree.meta, children)  # one method per rule of genba.lark

    def _tspan(self, tok: Token) -> Span:
        return token_span(self.path, tok)

    def _label(self, tok: Token):
        if tok.type == "STRING":
            return ast.Str(_unquote(tok), self._tspan(tok))
        if tok.type == "QUANTITY":
            return self._quantity(tok)
        return ast.Name(str(tok), self._tspan(tok))

    def _quantity(self, tok: Token) -> ast.Quantity:
        try:
            value, unit, approx = parse_quantity(str(tok))
        except LiteralOutOfRange as exc:
            if len(self.problems) < limits.MAX_DIAGNOSTICS:
                self.problems.append(error("GB006", str(exc), self._tspan(tok), "out of range"))
            value, unit, approx = Decimal(0), None, False
        return ast.Quantity(value, unit, approx, str(tok).strip(), self._tspan(tok))

    def import_stmt(self, meta, children):
        alias = ast.Name(str(children[1]), self._tspan(children[1])) if len(children) > 1 else None
        return ast.Import(ast.Str(_unquote(children[0]), self._tspan(children[0])), alias,
                          _span(self.path, meta))

    def block(self, meta, children):
        kind, rest = children[0], children[1:]
        labels = tuple(self._label(c) for c in rest if isinstance(c, str))
        entries = tuple(c for c in rest if not isinstance(c, str))
        return ast.Block(ast.Name(str(kind), self._tspan(kind)), labels, entries,
                         _span(self.path, meta))

    def assign(self, meta, children):
        key, value = children
        return ast.Setting(ast.Name(str(key), self._tspan(key)), "=", value, _span(self.path, meta))

    def every(self, meta, children):
        key, value = children
        return ast.Setting(ast.Name(str(key), self._tspan(key)), "every", value,
                           _span(self.path, meta))

    def value(self, meta, children):
        if len(children) == 1:
            return children[0]
        return ast.Chain(tuple(children[0::2]), tuple(str(c) for c in children[1::2]),
                         _span(self.path, meta))

    def connector(self, meta, children):
        return str(children[0])

    def string(self, meta, children):
        return ast.Str(_unquote(children[0]), self._tspan(children[0]))

    def quantity(self, meta, children):
        return self._quantity(children[0])

    def name(self, meta, children):
        return ast.Name(str(children[0]), self._tspan(children[0]))

    def true(self, meta, children):
        return ast.Bool(True, _span(self.path, meta))

    def false(self, meta, children):
        return ast.Bool(False, _span(self.path, meta))

    def call(self, meta, children):
        name = children[0]
        return ast.Call(ast.Name(str(name), self._tspan(name)), tuple(children[1:]),
                        _span(self.path, meta))

    def keyword_arg(self, meta, children):
        key, value = children
        return ast.Arg(ast.Name(str(key), self._tspan(key)), value, _span(self.path, meta))

    def positional_arg(self, meta, children):
        return ast.Arg(None, children[0], _span(self.path, meta))

    def list(self, meta, children):
        return ast.ListValue(tuple(children), _span(self.path, meta))

    def tuple(self, meta, children):
        return ast.TupleValue(tuple(children), _span(self.path, meta))


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _unquote(tok: Token) -> str:
    body = str(tok)[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], body)


def quantity_of(text: str) -> Decimal:
    """Parse a quantity literal outside a spec (CLI flags such as `--set train.batch=480`)."""
    try:
        return parse_quantity(text)[0]
    except (ValueError, InvalidOperation, KeyError):  # LiteralOutOfRange is a ValueError
        raise ValueError(f"not a number: {text!r}") from None
