"""Bytes to lines, safely: the one place output turns into text.

Output arrives in chunks that do not respect line ends or UTF-8 sequences.
A :class:`LineSplitter` per stream keeps the unfinished line and an
incremental decoder, so a line is only ever handed on whole, a multi-byte
character split across chunks is decoded correctly, invalid bytes become
U+FFFD instead of vanishing, and the last line is flushed even without a
newline. A line longer than ``max_line`` is handed on in pieces so that a
step printing gigabytes without a newline cannot exhaust memory.

It is dagbox's own, not the engine's: the terminal, ``dagbox logs``, the engine's
``continue_on.output`` matching and an agent try's reader (harness/reading.py) all
split with it, and :data:`STEERING` is what each of them takes out of a line that is
to be shown or matched as a terminal would show it.
"""

from __future__ import annotations

import codecs
import re

MAX_LINE = 64 * 1024

#: Any C0 or C1 control character but tab (and newline, which never reaches a line).
CONTROL_CHARS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
#: Escape sequences (CSI, OSC, two-character ones), then any control character left over:
#: what steers a terminal rather than prints.
STEERING = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours (SGR, ending in m), cursor, erase, ...
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    # ^ strings: OSC (titles, links), DCS (sixel images), SOS, PM, APC; to ST, BEL or the end
    r"|\x1b[ -/]*[0-~]"  # other escapes
    "|" + CONTROL_CHARS
)


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

    @property
    def pending(self) -> str:
        """The unfinished line so far (a prompt waiting for an answer on its own line)."""
        return self._pending

    def flush(self) -> list[str]:
        """The unfinished last line, if any, at end of stream."""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [text] if text else []
