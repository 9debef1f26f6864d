"""Source spans: where in which file a piece of a spec came from.

Lines and columns are 1-based, like lark's `meta` and like every editor; `end_col` is exclusive.
Spans are carried through the AST and the IR so that every diagnostic can point at its cause, but they
never reach generated output.
"""

from __future__ import annotations

from typing import NamedTuple


class Span(NamedTuple):  # a named tuple, not a dataclass: cheaper to define at start-up
    path: str
    line: int
    col: int
    end_line: int
    end_col: int
    start: int  # character offsets into the file's text
    end: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"

    @classmethod
    def at_offset(cls, path: str, text: str, offset: int, length: int = 1) -> "Span":
        """A span for a raw offset (for errors raised before a tree exists, e.g. by the lexer)."""
        offset = max(0, min(offset, len(text)))
        line = text.count("\n", 0, offset) + 1
        line_start = text.rfind("\n", 0, offset) + 1
        col = offset - line_start + 1
        end = min(len(text), offset + length)
        end_line = text.count("\n", 0, end) + 1
        end_col = end - (text.rfind("\n", 0, end) + 1) + 1
        return cls(path, line, col, end_line, end_col, offset, end)

    def cover(self, other: "Span") -> "Span":
        """The smallest span containing both (same file)."""
        first = self if self.start <= other.start else other
        last = self if self.end >= other.end else other
        return Span(self.path, first.line, first.col, last.end_line, last.end_col,
                    first.start, last.end)


def token_span(path: str, tok) -> Span:
    """The span of a lark token (anything with lark's line/column/position attributes)."""
    return Span(path, tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)
