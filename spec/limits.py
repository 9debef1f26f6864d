"""What genbac accepts from a spec, in one place: sizes, depths, ranges and character sets.

A spec is untrusted input (it arrives in pull requests and is compiled on CI runners and cluster
login nodes), so the work it can cause is bounded before any of it is done: a file is read only if
it is a regular file under the size limit, brackets are counted before the parser builds a tree,
every number literal is range-checked before arithmetic sees it, and the planner refuses a layout
with more phases than it can solve in a moment. Each limit is far beyond what a real experiment
needs; hitting one is a located diagnostic, never a hang or a traceback. The README's language
reference lists them (keep the two in step).

Strings follow three rules, by what becomes of them:
- identifiers (experiment and architecture names, language codes) become directory names, MLflow
  labels and cluster job labels: a fixed ASCII set, checked where they are lowered;
- text shown to people (`language de "German"`) may be any printable text;
- paths (data, eval, weights, tokenizer, imports) may hold anything but control characters.
No spec string can carry a control character anyway: the source itself may not contain one (but tab
and line ends), and the only escapes in a string are `\\"`, `\\\\`, `\\n` and `\\t`.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata

# -- sizes and depths ------------------------------------------------------------------------------

MAX_FILE_BYTES = 64 * 1024  # one spec or imported file (GENBA's spec is 1.4 KB)
MAX_SOURCE_BYTES = 128 * 1024  # a spec and everything it imports, together
# Words, numbers, strings and punctuation (comments not counted): what the parser's time follows
# (GENBA's spec has about 200; a 64-language catalogue about 1,500).
MAX_FILE_TOKENS = 16_384
MAX_SOURCE_TOKENS = 32_768
MAX_IMPORT_DEPTH = 16  # a spec imports a file that imports a file … at most this deep
MAX_IMPORTED_FILES = 64  # files read for one spec, however they are imported
MAX_NESTING = 32  # brackets and blocks inside each other: `[[…]]`, `f(g(…))`, `a { b { … } }`
MAX_DIAGNOSTICS = 200  # reported per command; the rest are counted, not listed

# -- what a spec may declare -----------------------------------------------------------------------

MAX_LANGUAGES = 64
MAX_PHASES = 64  # after entry/exit points and explicit mixtures split the run
# The schedule solver's work follows languages x phases; a sweep solves once per variant. At most
# this many language-phase cells are solved for one spec, all variants together (64 x 64 for one
# experiment; GENBA has 3 x 2, so 64 GENBA variants take 384).
MAX_SCHEDULE_CELLS = 4096
MAX_SWEPT_LANGUAGES = 1024  # variants x languages lowered for one spec (64 GENBA variants: 192)
MAX_LIST_ITEMS = 1024  # data sources of one language, `after = […]` positions
MAX_LITERAL_DIGITS = 40  # digits of one number literal, before its scale
MAX_LITERAL_EXPONENT = 18  # |a literal| < 10^19 (a quintillion; the token limit is 10^15) …
MIN_LITERAL_EXPONENT = -30  # … and either 0 or at least 10^-30

# The largest value of each count a spec gives (GB113): beyond any real model or run (Llama
# 3.1-405B has 126 layers, hidden 16,384, ffn 53,248, vocabulary 128,256), and small enough that no
# pass that scales with a value (a layer list, a step loop) can take long.
MAX_TOKENS = 10**15  # a quadrillion tokens: keeps arithmetic sane
MAX_LAYERS = 1024
MAX_WIDTH = 2**20  # hidden, ffn, heads, head_dim
MAX_VOCAB = 2**24
MAX_SEQUENCE = 2**24  # context, sequence, batch, micro_batch
MAX_STEPS = 10**9  # intervals and schedule lengths in steps
MAX_SYSTEMS = 2**16
MAX_SEED = 2**32 - 1  # what numpy's and most samplers' seeds take
MAX_ANY = MAX_TOKENS  # every other whole number

# -- the character sets ----------------------------------------------------------------------------

# Characters a .genba file may not contain anywhere, comments included: C0 and C1 control
# characters but tab and line ends, DEL, the Unicode line and paragraph separators (YAML and
# JavaScript read them as line ends), and the bidirectional controls that make a line display
# differently from what it says ("Trojan Source", CVE-2021-42574).
FORBIDDEN_IN_SOURCE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

IDENTIFIER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")  # experiment names
LANGUAGE_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")

_CONTROL_CATEGORIES = {"Cc", "Zl", "Zp", "Cs"}


def is_identifier(text: str) -> bool:
    return IDENTIFIER.fullmatch(text) is not None  # fullmatch: `$` would accept a trailing "\n"


def is_language_code(text: str) -> bool:
    return LANGUAGE_CODE.fullmatch(text) is not None


def bad_text_char(text: str) -> str | None:
    """The first character that text shown to people may not hold (None if all are printable)."""
    return next((c for c in text if not c.isprintable()), None)


def bad_path_char(text: str) -> str | None:
    """The first control character (or line separator, or lone surrogate) in a path."""
    return next((c for c in text if unicodedata.category(c) in _CONTROL_CATEGORIES
                 or FORBIDDEN_IN_SOURCE.match(c)), None)


def describe_char(c: str) -> str:
    """`U+001B (ESCAPE)`: a character as a person can read it in an error message."""
    name = unicodedata.name(c, "") or {"\x00": "NULL", "\x1b": "ESCAPE", "\x7f": "DELETE",
                                        "\n": "LINE FEED", "\t": "TAB", "\r": "CARRIAGE RETURN",
                                        "\x85": "NEXT LINE", "\x07": "BELL", "\x08": "BACKSPACE",
                                        "\x0b": "LINE TABULATION", "\x0c": "FORM FEED"}.get(c, "")
    return f"U+{ord(c):04X}" + (f" ({name})" if name else "")


def visible(text: str) -> str:
    """Text safe to print on a terminal or in a log, one character for one: control characters
    become their Unicode control pictures (U+2400 …) or U+FFFD, so an ESC in a file name or a spec
    line can never drive the terminal, and carets still line up under the columns they mark."""
    if FORBIDDEN_IN_SOURCE.search(text) is None and "\r" not in text and "\n" not in text:
        return text
    out = []
    for c in text:
        o = ord(c)
        if o < 0x20 and c not in "\t":
            out.append(chr(0x2400 + o))
        elif o == 0x7f:
            out.append("\u2421")
        elif FORBIDDEN_IN_SOURCE.match(c):
            out.append("\ufffd")
        else:
            out.append(c)
    return "".join(out)


# -- reading files ---------------------------------------------------------------------------------

class SourceProblem(Exception):
    """A file that cannot be a spec: missing, not a regular file, too large, not UTF-8."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def read_source(path: str | os.PathLike, limit: int = MAX_FILE_BYTES) -> str:
    """The text of a spec file, read with bounded work: only a regular file (never a FIFO, a
    device or a directory, which could block or never end), at most `limit` bytes, strict UTF-8,
    line ends as universal newlines read them."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except FileNotFoundError:
        raise SourceProblem("no such file", missing=True) from None
    except OSError as exc:
        raise SourceProblem(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode  # of what was opened, so no swap after a check can fool it
        if stat.S_ISDIR(mode):
            raise SourceProblem("it is a directory, not a .genba file")
        if not stat.S_ISREG(mode):
            raise SourceProblem("it is not a regular file (a FIFO, socket or device cannot be a "
                                "spec)")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SourceProblem(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise SourceProblem(f"it is larger than {limit // 1024} KiB, the limit for one spec file")
    return decode_source(b"".join(chunks))


def decode_source(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceProblem(f"it is not UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as open() in text mode reads it
