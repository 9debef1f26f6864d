"""Text for people, the one definition of each way of showing a thing: aligned or Markdown
tables, durations, and a value inside a `#` comment (YAML or shell)."""

from __future__ import annotations


def table(headers: list[str], rows: list[list[str]], markdown: bool,
           align: str | None = None) -> list[str]:
    align = align or "l" * len(headers)
    if markdown:
        sep = ["---:" if a == "r" else "---" for a in align]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return lines
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def fmt(row):
        cells = [str(c).rjust(w) if a == "r" else str(c).ljust(w)
                 for c, w, a in zip(row, widths, align)]
        return "  " + "  ".join(cells).rstrip()

    return [fmt(headers), "  " + "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days ({seconds / 3600:,.0f} h)"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:.2g} s"


def comment_line(value) -> str:
    """A value inside a `#` comment, written so that it cannot end the comment: every character
    that is not printable (line ends of any kind, NUL, ESC, U+2028 …) is shown as a Python-style
    escape. Printable text, non-ASCII letters included, stays as it is."""
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text
