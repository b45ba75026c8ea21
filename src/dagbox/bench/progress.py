"""A one-line live progress display on stderr, for terminals only.

``done 37/200 · running 16 · failed 3 · 4.1 runs/s · ETA 40s``. It is redrawn in
place at most five times a second. Lines that runs print go through
:class:`AboveProgress`, which clears the progress line first, so the two never
overwrite each other. When stderr is not a terminal, nothing is drawn.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.2


class Progress:
    def __init__(
        self, total: int, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.done = self.running = self.failed = 0
        self.began = time.monotonic()
        self._shown = False
        self._drawn_at = 0.0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.began, 1e-6)
        rate = self.done / elapsed
        eta = (
            f"{(self.total - self.done) / rate:.0f}s"
            if rate > 0 and self.done < self.total
            else "-"
        )
        return (
            f"done {self.done}/{self.total} · running {self.running} · failed {self.failed}"
            f" · {rate:.1f} runs/s · ETA {eta}"
        )

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_SECONDS:
            return
        self._drawn_at = now
        self.stream.write("\r\x1b[K" + self.line())
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def finish(self) -> None:
        if self.enabled:
            self.clear()
            self.stream.write(self.line() + "\n")
            self.stream.flush()


class AboveProgress:
    """A text stream (stdout) whose writes appear above the progress line."""

    def __init__(self, progress: Progress, stream: TextIO | None = None) -> None:
        self.progress = progress
        self.stream = stream or sys.stdout

    def write(self, text: str) -> int:
        self.progress.clear()
        count = self.stream.write(text)
        self.stream.flush()
        self.progress.draw()
        return count

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()
