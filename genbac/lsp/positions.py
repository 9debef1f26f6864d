"""Offsets into a document's text <-> LSP positions (line, character).

Lines are split at "\\n" only, as the parser counts them (a `\\r` before it is the line's last
character, never addressed by an editor); characters are counted in the encoding the client and
server agreed on at initialisation: UTF-16 code units by default, or UTF-8 bytes, or code points.
"""

from __future__ import annotations

import bisect
import re

_NEWLINE = re.compile("\n")


class LineIndex:
    def __init__(self, text: str, encoding: str = "utf-16"):
        self.text = text
        self.encoding = encoding
        self.starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]

    def _units(self, chars: str) -> int:
        if self.encoding == "utf-32" or chars.isascii():
            return len(chars)
        if self.encoding == "utf-8":
            return len(chars.encode("utf-8"))
        return len(chars.encode("utf-16-le")) // 2

    def position(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, self._units(self.text[self.starts[line]:offset])

    def offset(self, line: int, character: int) -> int:
        """The offset of a client position; a position past a line's end is its end, a line past
        the text's end is the end of the text (as the LSP specification asks)."""
        if line >= len(self.starts):
            return len(self.text)
        start = self.starts[max(0, line)]
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else len(self.text)
        text = self.text[start:end]
        if text.isascii() or self.encoding == "utf-32":
            return start + min(character, len(text))
        units = 0
        for i, char in enumerate(text):
            if units >= character:
                return start + i
            units += self._units(char)
        return end
