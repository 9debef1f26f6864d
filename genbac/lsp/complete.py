"""Completion: the keys, blocks and values that fit where the cursor is.

Read from the text before the cursor, not from the syntax tree: while a user types, the file
rarely parses. A small scanner (strings and comments skipped) tracks the blocks opened and not
closed, the keys already set in each, and the statement being written; the reference
(spec/reference.py) says what fits there.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from genbac.spec import reference

# strings (closed or not), comments, words (names, numbers with units), single punctuation
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*(?P<closed>")?|#[^\n]*|[A-Za-z_~0-9][\w.\-%~]*|\S')
_WORD = re.compile(r"[A-Za-z_][\w.\-]*$")
CONNECTORS = {"from", "then", "x"}
UNIT_WORDS = {"step", "steps", "token", "tokens", "sequence", "sequences", "seq", "seqs"}


class Frame(NamedTuple):
    context: str  # the reference's name for the block's settings ("experiment", "grow blocks"…)
    keys: set  # keys already set in it


class Where(NamedTuple):
    """What the cursor is writing."""

    kind: str  # "key" | "value" | "label" | "argument" | "none"
    context: str  # innermost block's settings ("" at the top of the file)
    key: str | None = None  # the setting whose value is written
    call: str | None = None  # the call whose argument is written
    keys: frozenset = frozenset()  # keys already set in the block


def _context(header: list[str]) -> str:
    if not header:
        return ""
    kind = header[0]
    if kind == "grow":
        return f"grow {header[1]}" if len(header) > 1 else "grow blocks"
    return kind


def word_start(text: str, offset: int) -> int:
    """Where the name being typed at `offset` starts (names hold `.` and `-`: `llama3.1-8b`), so
    that a completion replaces all of it whatever the editor takes for a word."""
    word = _WORD.search(text, 0, offset)
    return word.start() if word else offset


def where(text: str, offset: int) -> Where:
    before = text[:offset]
    word = _WORD.search(before)
    start = word.start() if word else offset
    stack: list[Frame] = []
    statement: list[str] = []  # tokens of the statement being written, in this block
    parens: list[str] = []  # calls and brackets open in the statement
    for m in _TOKEN.finditer(before, 0, start):
        tok = m.group()
        if tok.startswith("#"):
            if m.end() == start:
                return Where("none", stack[-1].context if stack else "")  # inside a comment
            continue
        if tok.startswith('"') and m.group("closed") is None and m.end() == start:
            return Where("none", stack[-1].context if stack else "")  # inside a string
        if tok == "{" and not parens:
            stack.append(Frame(_context([t for t in statement if not t.startswith('"')]), set()))
            statement = []
        elif tok == "}" and not parens:
            if stack:
                stack.pop()
            statement = []
        elif tok in "([":
            parens.append(statement[-1] if tok == "(" and statement else tok)
            statement.append(tok)
        elif tok in ")]":
            if parens:
                parens.pop()
            statement.append(tok)
        elif tok in ("=", "every") and not parens:
            if len(statement) >= 1 and _starts_setting(statement):
                key = statement[-1]
                if stack:
                    stack[-1].keys.add(key)
                statement = [key, "="]
            else:
                statement.append(tok)
        elif tok in UNIT_WORDS and statement and statement[-1][-1:].isdigit():
            statement.append(tok)  # `500 steps`: the number's unit
        elif not parens and statement and _value_done(statement) and tok not in CONNECTORS \
                and statement[-1] not in CONNECTORS and tok[0].isalpha():
            statement = [tok]  # the next setting on the same line: `data = "x"  tokens = 1B`
        else:
            statement.append(tok)
    context = stack[-1].context if stack else ""
    keys = frozenset(stack[-1].keys | _keys_after(text, offset)) if stack else frozenset()
    if parens:
        call = parens[-1]
        last = statement[-1] if statement else ""
        if last in ("(", ","):
            return Where("argument", context, statement[0] if statement else None, call, keys)
        return Where("none", context)
    if not statement:
        return Where("key", context, keys=keys)
    if len(statement) >= 2 and statement[1] == "=":
        value = statement[2:]
        if not value or value[-1] in ("then",):
            return Where("value", context, statement[0], keys=keys)
        if value[-1] in CONNECTORS:
            return Where("none", context)
        return Where("key", context, keys=keys | {statement[0]})  # the value is written
    if len(statement) == 1 and statement[0] == "grow":
        return Where("label", context, "grow", keys=keys)
    return Where("none", context)


def _keys_after(text: str, offset: int) -> set[str]:
    """The keys set after `offset` in the same block (a word followed by `=` or `every` at the
    block's own depth), up to the `}` that closes it."""
    found, depth, previous = set(), 0, None
    start = _WORD.search(text, 0, offset)  # the word at the cursor counts as after it
    for m in _TOKEN.finditer(text, start.start() if start else offset):
        tok = m.group()
        if tok.startswith("#"):
            continue
        if tok in "{([":
            depth += 1
        elif tok in "})]":
            depth -= 1
            if depth < 0:
                break
        elif tok in ("=", "every") and depth == 0 and previous and previous[0].isalpha():
            found.add(previous)
        previous = tok
    return found


def _starts_setting(statement: list[str]) -> bool:
    return len(statement) == 1 or (len(statement) >= 2 and _value_done(statement[:-1]))


def _value_done(statement: list[str]) -> bool:
    """Whether the statement so far is a setting with a whole value (`key = value`)."""
    return (len(statement) >= 3 and statement[1] == "=" and statement[-1] not in CONNECTORS
            and statement[-1] not in ("(", "[", ","))


class Item(NamedTuple):
    label: str
    kind: str  # "key" | "block" | "value" | "call" | "language" | "argument"
    doc: str
    insert: str  # text to insert (snippet syntax when `snippet`)
    snippet: bool


def items(text: str, offset: int, languages: list[str] | None = None,
          architectures: list[str] | None = None) -> list[Item]:
    """Completion items at `offset`. `languages` and `architectures` are the codes and custom
    architecture names the spec declares (with its imports), found by the caller."""
    w = where(text, offset)
    if w.kind == "key":
        return _keys(w, languages or [])
    if w.kind == "label":
        return [Item(e.name, "value", e.doc, e.name, False) for e in reference.grow_labels()]
    if w.kind == "value":
        context = w.context or "experiment"
        found = reference.values(context, w.key)
        out = [Item(e.name, "call" if e.snippet and "(" in e.snippet else "value", e.doc,
                    e.snippet or e.name, bool(e.snippet)) for e in found]
        if context == "experiment" and w.key == "base":
            out += [Item(a, "value", "An architecture declared in the spec.", a, False)
                    for a in architectures or []]
        return out
    if w.kind == "argument":
        return [Item(a, "argument", f"`{w.call}` argument", f"{a} = ", False)
                for a in reference.arguments(w.call)]
    return []


def _keys(w: Where, languages: list[str]) -> list[Item]:
    context = w.context
    out: list[Item] = []
    if context == "phase":
        return [Item(code, "language", f"The share of `{code}` in this phase.",
                     f"{code} = ${{1:50%}}", True) for code in languages if code not in w.keys]
    if context in ("", "experiment"):
        settings = reference.KEY_DOCS["experiment"]
        blocks = reference.SUB_BLOCKS["experiment"]
        if context == "":
            out.append(Item("experiment", "block", reference.BLOCK_DOCS["experiment"],
                            reference.BLOCK_SNIPPETS["experiment"], True))
            out.append(Item("import", "key", "Import a fragment or another spec to extend: "
                            '`import "shared/catalogue.genba"`.', 'import "$1"', True))
    else:
        settings = reference.KEY_DOCS.get(context, {})
        blocks = set()
    for key, doc in sorted(settings.items()):
        if key in w.keys:
            continue
        if context == "train" and key in ("checkpoint", "eval"):
            out.append(Item(key, "key", doc, f"{key} every ${{1:1000}} steps", True))
        else:
            out.append(Item(key, "key", doc, f"{key} = ", False))
    for block in sorted(blocks):
        out.append(Item(block, "block", reference.BLOCK_DOCS[block],
                        reference.BLOCK_SNIPPETS[block], True))
    return out
