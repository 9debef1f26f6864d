"""Syntax errors: what the parser could not read, said the way the user would fix it, all at once.

`syntax_diagnostic` turns one lark error into a Diagnostic that names the intended form where the
mistake is a common one (`80GB`, `2 billion`, `95 %`, `4 x h100`, `1,000`, `key: value`).

`recover` lets the parser go on after an error, so that one run reports every syntax error of a
file: it blanks the statement that failed (the setting or block header being read, from its first
word to the end of its line, or to where its brackets close) and the file is parsed again. Blanking
with spaces keeps every offset, line and column of the rest of the file, so later diagnostics point
at the right place; braces are kept, so the blocks around the failed statement stay balanced.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .diagnostics import Diagnostic, error
from .lalr import runtime
from .span import Span, token_span

if TYPE_CHECKING:
    from lark import Token, UnexpectedInput

MAX_SYNTAX_ERRORS = 20  # beyond this a file is more likely not a spec at all

_TERMINAL_WORDS = {
    "NAME": "a name", "STRING": "a string", "QUANTITY": "a number", "LBRACE": "`{`",
    "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`",
    "EQUAL": "`=`", "EVERY": "`every`", "FROM": "`from`", "THEN": "`then`", "TIMES": "`x`",
    "TRUE": "`true`", "FALSE": "`false`", "IMPORT": "`import`", "AS": "`as`", "$END": "end of file",
}

UNITS_HELP = ("a number takes K, M, B or T (thousand, million, billion, trillion), `%`, or one of "
              "the words steps, tokens, sequences: `82B`, `90%`, `2000 steps`")
# Scales written out or in bytes, and what the language spells them
_SCALE_WORDS = {"thousand": "K", "k": "K", "million": "M", "mio": "M", "m": "M", "mn": "M",
                "billion": "B", "bn": "B", "b": "B", "trillion": "T", "t": "T"}
_BYTE_UNITS = {"kb": "K", "mb": "M", "gb": "B", "tb": "T", "kib": "K", "mib": "M", "gib": "B",
               "tib": "T"}
# A number just before a position, on the same line (the lexer's QUANTITY, without a unit)
_NUMBER_BEFORE = re.compile(r"(?<![\w.\-])~?[+-]?(?:\d[\d_]*(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?"
                            r"(?P<space>[ \t]*)$")


def _expected_words(names) -> list[str]:
    words = {_TERMINAL_WORDS.get(n, f"`{n}`") for n in names if not n.startswith("__")}
    return sorted(words)


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    kind = {"NAME": "name", "STRING": "string", "QUANTITY": "number"}.get(tok.type)
    return f"{kind} `{tok}`" if kind else f"`{tok}`"



def _number_before(text: str, offset: int) -> re.Match | None:
    line_start = text.rfind("\n", 0, offset) + 1
    return _NUMBER_BEFORE.search(text, line_start, offset)


def error_offset(exc: UnexpectedInput) -> int:
    rt = runtime()
    if isinstance(exc, rt.UnexpectedCharacters):
        return exc.pos_in_stream
    return exc.token.start_pos if exc.token.start_pos is not None else -1


def syntax_diagnostic(exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    rt = runtime()
    if isinstance(exc, rt.UnexpectedCharacters):
        return _character_diagnostic(exc, text, path)
    if isinstance(exc, (rt.UnexpectedToken, rt.UnexpectedEOF)):
        return _token_diagnostic(exc, text, path)
    return error("GB001", str(exc).splitlines()[0], Span.at_offset(path, text, 0, 0))  # pragma: no cover


def _character_diagnostic(exc, text: str, path: str) -> Diagnostic:
    pos = exc.pos_in_stream
    span = Span.at_offset(path, text, pos, 1)
    char = text[pos] if pos < len(text) else ""
    if char == '"':
        return error("GB001", "unterminated string", span, "this string is never closed",
                     help=("strings end on the line they start; close it with `\"`",))
    if char == ":":
        return error("GB001", "unexpected `:`", span, "settings use `=`",
                     help=("write `key = value`, not `key: value`",), fixes=((span, " ="),)
                     if pos > 0 and text[pos - 1] not in " \t" else ((span, "="),))
    number = _number_before(text, pos)
    if char == "%" and number is not None and number["space"]:
        written = text[number.start():number.start("space")]
        gap = Span.at_offset(path, text, number.start(), pos + 1 - number.start())
        return error("GB001", f"a space between `{written}` and `%`", gap, "no space before `%`",
                     help=(f"write `{written}%`",), fixes=((gap, f"{written}%"),))
    return error("GB001", f"unexpected character {char!r}", span, "not valid here",
                 help=("expected: " + ", ".join(_expected_words(exc.allowed or [])),)
                 if exc.allowed else ())


def _token_diagnostic(exc, text: str, path: str) -> Diagnostic:
    tok = exc.token
    expected = set(exc.expected or [])
    if tok.type == "$END":
        span = Span.at_offset(path, text, len(text.rstrip()), 0)
        if "RBRACE" in expected:
            return error("GB002", "unexpected end of file: a block is not closed", span,
                         "expected `}` before the end", help=("close every `{` with `}`",))
        return error("GB002", "unexpected end of file", span, "the file ends here",
                     help=("expected " + " or ".join(_expected_words(expected)),))
    span = token_span(path, tok)
    header = _header_tokens(exc) if "LBRACE" in expected else []
    if header and (_number_before(text, header[0].start_pos) is not None
                   or re.fullmatch(r"x\d+", str(header[0]))):
        return _header_diagnostic(header, text, path)  # `80GB`, `2 billion`, `cs-2 x4`
    if "LBRACE" in expected and ("EQUAL" not in expected or tok.type == "EQUAL"):
        # `tokens 82B` then something else: words that start neither a setting nor a block
        if tok.type == "EQUAL" and len(header) > 1:
            header = header[:-1]  # `tokens 164B` then `sequence = …`: the last word is a key
        if header:
            return _header_diagnostic(header, text, path)
    unclosed = _unclosed_bracket(exc, tok)
    if unclosed is not None:
        opener = token_span(path, unclosed)
        closer = {"(": ")", "[": "]"}[str(unclosed)]
        return error("GB003", f"`{unclosed}` is never closed", opener, "opened here",
                     secondary=[(span, f"the next setting starts here, before `{closer}`")],
                     help=(f"close it with `{closer}`",))
    if tok.type == "COMMA" and "COMMA" not in expected:
        before = _number_before(text, tok.start_pos)
        after = re.match(r"\d{3}(?:,\d{3})*(?!\d)", text[tok.end_pos:tok.end_pos + 64])
        if before is not None and not before["space"] and after is not None:
            written = text[before.start():tok.end_pos + after.end()]
            number = Span.at_offset(path, text, before.start(), len(written))
            return error("GB003", f"`{written}`: numbers have no thousands separators", span,
                         "a separator", help=(f"write `{written.replace(',', '')}` or "
                                              f"`{written.replace(',', '_')}`",),
                         fixes=((number, written.replace(",", "")),
                                (number, written.replace(",", "_"))))
        return error("GB003", "unexpected `,`", span, "a setting holds one value",
                     help=("several values are written as a list `[a, b]` or a tuple `(a, b)`",))
    label = "expected " + " or ".join(_expected_words(expected))
    helps = []
    if "EQUAL" in expected and tok.type in ("QUANTITY", "STRING", "NAME", "LSQB"):
        helps.append("a setting is written `key = value`")
    if expected == {"RBRACE", "NAME"} or expected >= {"RBRACE", "NAME"} and tok.type == "EQUAL":
        helps.append("each setting starts with its key: `key = value`")
    return error("GB003", f"unexpected {_found(tok)}", span, label, help=tuple(helps))


def _header_diagnostic(header: list[Token], text: str, path: str) -> Diagnostic:
    """Words that are neither a setting nor a block; most often a number's unit gone wrong."""
    hstart, hend = header[0].start_pos, header[-1].end_pos
    words = " ".join(str(t) for t in header)
    first = str(header[0])
    number = _number_before(text, hstart)
    if number is not None:
        written = text[number.start():number.start("space")]
        whole = Span.at_offset(path, text, number.start(), header[0].end_pos - number.start())
        word = first.lower()
        if first == "x" and len(header) > 1:
            kind = str(header[1])
            rest = " ".join(text[header[1].end_pos:hend].split())  # `4 x h100 x 2`: the nodes
            fixed = f"{kind} x {written}" + (f" {rest}" if rest else "")
            swapped = Span.at_offset(path, text, number.start(), hend - number.start())
            return error("GB003", f"`{written} x {kind}`: the count comes after the kind",
                         swapped, "count first", help=(f"write `{fixed}`",),
                         fixes=((swapped, fixed),))
        if word in _BYTE_UNITS:
            fix = f"{written}{_BYTE_UNITS[word]}"
            return error("GB003", f"`{first}` is not a unit: budgets count tokens, not bytes",
                         whole, "a unit of bytes",
                         help=(f"write `{fix}` for {_scale_name(fix)} tokens", UNITS_HELP),
                         fixes=((whole, fix),))
        if word in _SCALE_WORDS:
            fix = f"{written}{_SCALE_WORDS[word]}"
            return error("GB003", f"`{written}{number['space']}{first}` is not how a number is "
                         "written", whole, "unknown unit",
                         help=(f"write `{fix}` for {_scale_name(fix)}", UNITS_HELP),
                         fixes=((whole, fix),))
        return error("GB003", f"`{first}` after the number `{written}` is not a unit", whole,
                     "unknown unit", help=(UNITS_HELP,))
    if re.fullmatch(r"x\d+", first):
        glued = token_span(path, header[0])
        return error("GB003", f"`{first}` is neither a setting nor a block", glued,
                     "a count needs spaces around `x`",
                     help=(f"write `x {first[1:]}`, e.g. `cs-2 x {first[1:]}`",),
                     fixes=((glued, f"x {first[1:]}"),))
    return error("GB003", f"`{words}` is neither a setting nor a block",
                 Span.at_offset(path, text, hstart, hend - hstart),
                 "expected `=` after the key, or `{` to open a block",
                 help=(f"a setting is written `{first} = …`",))


def _scale_name(quantity: str) -> str:
    names = {"K": "thousand", "M": "million", "B": "billion", "T": "trillion"}
    return f"{quantity[:-1]} {names[quantity[-1]]}"


def _header_tokens(exc: UnexpectedInput) -> list[Token]:
    """The words the parser has read of an unfinished block header (`tokens 82B` before `}`)."""
    words: list[Token] = []
    rt = runtime()
    for item in reversed(_stack(exc)):
        # lark folds repeated labels (`_label*`) into helper trees named `__…`
        parts = (item.children if isinstance(item, rt.Tree) and item.data.startswith("__")
                 else [item])
        if not all(isinstance(p, rt.Token) and p.type in ("NAME", "STRING", "QUANTITY")
                   for p in parts):
            break
        words[:0] = parts
    return words


def _stack(exc: UnexpectedInput) -> list:
    state = getattr(getattr(exc, "interactive_parser", None), "parser_state", None)
    return list(getattr(state, "value_stack", []) or [])


def _unclosed_bracket(exc, tok: Token):
    """The `(` or `[` still open when the next line's setting begins (`adamw(lr = 1e-4` and then
    `schedule = …` on the next line), or None."""
    if tok.type != "NAME":
        return None
    rt = runtime()
    depth, opener = 0, None
    for item in reversed(_stack(exc)):
        if isinstance(item, rt.Token):
            if item.type in ("RPAR", "RSQB"):
                depth += 1
            elif item.type in ("LPAR", "LSQB"):
                if depth == 0:
                    opener = item
                    break
                depth -= 1
            elif item.type == "LBRACE":
                break
    if opener is None or opener.line >= tok.line:
        return None
    return opener


# --------------------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------------------

# A string is only what is closed on its line: after an unterminated one, a `{` or `(` on the same
# line is most likely the structure the missing quote ran into.
_STRING_OR_COMMENT = r'"(?:[^"\\\n]|\\.)*"|#[^\n]*'
_SCAN = re.compile(_STRING_OR_COMMENT + r'|[\[(]|[\])]|[{}]|\n')


def recover(exc: UnexpectedInput, text: str) -> str | None:
    """`text` with the failed statement blanked, to parse again; None where nothing sensible is
    left to read (the end of the file, or a statement that cannot be cut out)."""
    rt = runtime()
    if isinstance(exc, (rt.UnexpectedToken, rt.UnexpectedEOF)) and exc.token.type == "$END":
        return None
    at = error_offset(exc)
    if at < 0:
        return None
    start = _statement_start(exc, at)
    next_line = _next_line_start(text, start, at)
    if next_line is not None:
        end = next_line  # the statement ran into the next line's setting: cut it off there
    else:
        end = _statement_end(text, start, at)
    return _blank(text, start, end)


_ENTRIES = {"assign", "every", "block", "import_stmt"}


def _statement_start(exc, at: int) -> int:
    """Where the setting or block header being read began: the first item on the parser's stack
    after the innermost open `{` that is not a finished entry."""
    rt = runtime()
    stack = _stack(exc)
    opened = max((i for i, item in enumerate(stack)
                  if isinstance(item, rt.Token) and item.type == "LBRACE"), default=-1)
    for item in stack[opened + 1:]:
        if isinstance(item, rt.Tree) and _finished(item, rt.Tree):
            continue
        start = _first_offset(item, rt.Tree)
        return at if start is None else min(start, at)
    return at


def _finished(tree, tree_class) -> bool:
    if tree.data in _ENTRIES:
        return True
    return tree.data.startswith("__") and all(
        isinstance(c, tree_class) and _finished(c, tree_class) for c in tree.children)


def _first_offset(item, tree_class) -> int | None:
    if isinstance(item, tree_class):
        for child in item.children:
            offset = _first_offset(child, tree_class)
            if offset is not None:
                return offset
        return None
    return getattr(item, "start_pos", None)


def _next_line_start(text: str, start: int, at: int) -> int | None:
    """When the error sits on a later line than the statement's start, the offset of that line's
    first word: the statement ran on (a bracket not closed, a key without `=`) and that word
    likely begins the next setting. None when the error is on the statement's own line."""
    line_start = text.rfind("\n", 0, at) + 1
    if line_start <= start:
        return None
    return line_start + len(text[line_start:at]) - len(text[line_start:at].lstrip())


def _statement_end(text: str, start: int, at: int) -> int:
    """The end of the line holding the error, or further while brackets opened in the statement
    stay open; never past a `}` that closes the enclosing block."""
    depth = 0
    for m in _SCAN.finditer(text, start):
        piece = m.group()
        if piece == "\n":
            if m.start() >= at and depth <= 0:
                return m.start()
        elif piece in "([":
            depth += 1
        elif piece in ")]":
            depth -= 1
        elif piece == "}" and m.start() >= at:
            return m.start()
    return len(text)


def _blank(text: str, start: int, end: int) -> str | None:
    """Spaces over text[start:end], keeping newlines and braces (a `{` gets a placeholder name
    before it, so that its block still parses); None if a `{` has no room for one."""
    out = list(text[start:end])
    for m in re.finditer(_STRING_OR_COMMENT + r"|[^\n{}]", text[start:end]):
        out[m.start():m.end()] = " " * (m.end() - m.start())
    for i, char in enumerate(out):
        if char == "{":
            if i == 0 or out[i - 1] != " ":
                return None
            out[i - 1] = "_"
    return text[:start] + "".join(out) + text[end:]
