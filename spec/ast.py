"""The syntax tree of a .genba file: what was written, with where it was written.

The AST knows shapes only (blocks, settings, values). Meaning is given to it by `spec.lower`, which
turns it into the typed IR. Keeping the two apart lets the parser stay small and lets every semantic
error (an unknown key, a value of the wrong kind) be reported with a span and a "did you mean".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Union

from .span import Span


@dataclass(frozen=True)
class Str:
    value: str
    span: Span

    def describe(self) -> str:
        return f"string {self.value!r}"


@dataclass(frozen=True)
class Quantity:
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


@dataclass(frozen=True)
class Name:
    value: str
    span: Span

    def describe(self) -> str:
        return f"name {self.value!r}"


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span

    def describe(self) -> str:
        return f"boolean {str(self.value).lower()}"


@dataclass(frozen=True)
class Arg:
    key: Name | None
    value: "Value"
    span: Span


@dataclass(frozen=True)
class Call:
    name: Name
    args: tuple[Arg, ...]
    span: Span

    def describe(self) -> str:
        return f"call {self.name.value}(…)"


@dataclass(frozen=True)
class ListValue:
    items: tuple["Value", ...]
    span: Span

    def describe(self) -> str:
        return "list"


@dataclass(frozen=True)
class TupleValue:
    items: tuple["Value", ...]
    span: Span

    def describe(self) -> str:
        return "tuple"


@dataclass(frozen=True)
class Chain:
    """Terms joined by connector words: `llama3.1-8b from "hf:…"`, `warmup(1%) then cosine(…)`."""

    terms: tuple["Term", ...]
    connectors: tuple[str, ...]  # len(terms) - 1 words: "from", "then", "x"
    span: Span

    def describe(self) -> str:
        return "`" + " … ".join(self.connectors) + "` expression"


Term = Union[Str, Quantity, Name, Bool, Call, ListValue, TupleValue]
Value = Union[Term, Chain]


@dataclass(frozen=True)
class Setting:
    key: Name
    op: str  # "=" or "every"
    value: Value
    span: Span


@dataclass(frozen=True)
class Block:
    kind: Name
    labels: tuple[Str | Name | Quantity, ...]
    entries: tuple[Union[Setting, "Block"], ...]
    span: Span


@dataclass(frozen=True)
class Import:
    path: Str
    alias: Name | None
    span: Span


@dataclass(frozen=True)
class Document:
    path: str
    text: str
    items: tuple[Union[Import, Block, Setting], ...] = field(default=())
