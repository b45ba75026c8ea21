"""Bytes to lines, safely: the one place output turns into text.

Output arrives in chunks that do not respect line ends or UTF-8 sequences.
A :class:`LineSplitter` per stream keeps the unfinished line and an
incremental decoder, so a line is only ever handed on whole, a multi-byte
character split across chunks is decoded correctly, invalid bytes become
U+FFFD instead of vanishing, and the last line is flushed even without a
newline. A line longer than ``max_line`` is handed on in pieces so that a
step printing gigabytes without a newline cannot exhaust memory.
"""

from __future__ import annotations

import codecs

MAX_LINE = 64 * 1024


class LineSplitter:
    __slots__ = ("_decoder", "_max", "_pending")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._max = max_line

    def feed(self, chunk: bytes) -> list[str]:
        """Complete lines (without their line ends) found so far."""
        text = self._pending + self._decoder.decode(chunk)
        lines = text.split("\n")
        self._pending = lines.pop()
        if len(self._pending) > self._max:
            lines.append(self._pending)
            self._pending = ""
        return [line[:-1] if line.endswith("\r") else line for line in lines]

    def flush(self) -> list[str]:
        """The unfinished last line, if any, at end of stream."""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [text] if text else []
