"""The syntax tree of a .genba file: what was written, with where it was written.

The AST knows shapes only (blocks, settings, values). Meaning is given to it by `spec.lower`, which
turns it into the typed IR. Keeping the two apart lets the parser stay small and lets every semantic
error (an unknown key, a value of the wrong kind) be reported with a span and a "did you mean".

The nodes are named tuples rather than frozen dataclasses because every CLI start defines them:
a dataclass costs about 1 ms to create (its methods are generated with exec), a named tuple a tenth
of that. Nodes are compared by type first (`isinstance`), never by `==` across node types.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple, Union

from .span import Span


class Str(NamedTuple):
    value: str
    span: Span

    def describe(self) -> str:
        return f"string {self.value!r}"


class Quantity(NamedTuple):
    """A number with an optional unit: `82B`, `90%`, `1.5e-4`, `1000 steps`, `~82B`.

    `value` is exact (Decimal) and already scaled: `82B` -> 82000000000, `90%` -> 90 with unit "%".
    """

    value: Decimal
    unit: str | None  # None, "%", "steps", "tokens", "sequences"
    approx: bool  # written with a leading "~": the compiler may adjust it
    text: str
    span: Span

    def describe(self) -> str:
        return f"number {self.text!r}"


class Name(NamedTuple):
    value: str
    span: Span

    def describe(self) -> str:
        return f"name {self.value!r}"


class Bool(NamedTuple):
    value: bool
    span: Span

    def describe(self) -> str:
        return f"boolean {str(self.value).lower()}"


class Arg(NamedTuple):
    key: Name | None
    value: "Value"
    span: Span


class Call(NamedTuple):
    name: Name
    args: tuple[Arg, ...]
    span: Span

    def describe(self) -> str:
        return f"call {self.name.value}(…)"


class ListValue(NamedTuple):
    items: tuple["Value", ...]
    span: Span

    def describe(self) -> str:
        return "list"


class TupleValue(NamedTuple):
    items: tuple["Value", ...]
    span: Span

    def describe(self) -> str:
        return "tuple"


class Chain(NamedTuple):
    """Terms joined by connector words: `llama3.1-8b from "hf:…"`, `warmup(1%) then cosine(…)`."""

    terms: tuple["Term", ...]
    connectors: tuple[str, ...]  # len(terms) - 1 words: "from", "then", "x"
    span: Span

    def describe(self) -> str:
        return "`" + " … ".join(self.connectors) + "` expression"


Term = Union[Str, Quantity, Name, Bool, Call, ListValue, TupleValue]
Value = Union[Term, Chain]


class Setting(NamedTuple):
    key: Name
    op: str  # "=" or "every"
    value: Value
    span: Span


class Block(NamedTuple):
    kind: Name
    labels: tuple[Str | Name | Quantity, ...]
    entries: tuple[Union[Setting, "Block"], ...]
    span: Span


def label_text(label: "Str | Name | Quantity") -> str:
    """A block label as the block is named by it: `bar`, `Bavarian`, `90%` as written."""
    return label.text if isinstance(label, Quantity) else str(label.value)


class Import(NamedTuple):
    path: Str
    alias: Name | None
    span: Span


class Document(NamedTuple):
    path: str
    text: str
    items: tuple[Union[Import, Block, Setting], ...] = ()
