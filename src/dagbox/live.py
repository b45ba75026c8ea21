"""A live panel of what is running, redrawn in place at the bottom of a terminal.

::

    running 3 · done 37/200 · failed 2 · infra 1 · 4.1/s · ETA 40s
      provider=claude task=t-07 #2 @node1  12.3s  editing src/app.py
      provider=codex task=t-09 #0           3.1s  running tests…

One line per running attempt (a bench's run, or a step of ``dagbox run -o live``):
its label, how long it has run, and the last line it printed, cut to the terminal's
width. What finishes scrolls above the panel, in the chosen ``--output`` mode.

Only on a terminal (stderr), and never more than :data:`REDRAW_SECONDS` apart is it
redrawn: the lines runs print are held until the next redraw and written with it,
so a flood of output costs one write per redraw, not one per line. ``NO_COLOR`` and
``TERM=dumb`` are honoured, and the cursor is shown again however dagbox leaves.
Without a terminal the panel is off, and lines go straight through: nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TextIO, TypeVar, cast

from dagbox.engine.events import AnyEvent, StepFinished, StepOutput, StepStarted
from dagbox.terminal import printable, safe_line, wants_color

T = TypeVar("T")

#: At most five redraws a second.
REDRAW_SECONDS = 0.2
#: The tail of a chunk of output searched for its last line.
TAIL = 512

_HIDE, _SHOW, _ERASE_DOWN = "\x1b[?25l", "\x1b[?25h", "\x1b[J"


@dataclass
class _Row:
    label: str
    began: float
    #: The tail of its output, kept as it came (its last line is found when drawn).
    last: bytes = b""


class Panel:
    def __init__(
        self, total: int | None, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:  # stdout piped on (| tee) would land where the panel is erased
            enabled = _is_terminal(self.stream) and _not_on_screen_apart(sys.stdout)
        self.enabled = enabled
        self.color = self.enabled and wants_color(self.stream)
        self.total = total
        self.done = self.failed = self.infra = 0
        self.rows: dict[str, _Row] = {}
        self.began = time.monotonic()
        self._pending: list[str] = []
        self._height = 0  # lines of the panel on screen now, below the cursor's line
        self._shown = False
        self._drawn_at = 0.0
        #: Lines that runs print (stdout): held for the next redraw when stdout is this
        #: same terminal; straight through otherwise.
        self.above: TextIO = (
            cast(TextIO, _Held(self, sys.stdout))
            if self.enabled and _is_terminal(sys.stdout)
            else sys.stdout
        )
        #: stderr for what else writes there while the panel is up (``--log-format json``).
        self.beside: TextIO = cast(TextIO, _Held(self, sys.stderr)) if self.enabled else sys.stderr

    # --- what is running -----------------------------------------------------------------

    def start(self, key: str, label: str) -> None:
        self.rows[key] = _Row(printable(label), time.monotonic())

    def output(self, key: str, data: bytes) -> None:
        row = self.rows.get(key)
        if row is not None and data.strip():  # a line can come in several chunks
            row.last = (row.last + data[-TAIL:])[-TAIL:]

    def stop(self, key: str) -> None:
        self.rows.pop(key, None)

    def count(self, *, failed: bool, infra: bool = False) -> None:
        """One more attempt done (an interrupted one is not: it will run again)."""
        self.done += 1
        self.failed += failed
        self.infra += infra

    def say(self, message: str) -> None:
        """A line of dagbox's own (``dagbox: ...``), above the panel."""
        if self.enabled:
            self._pending.append(f"dagbox: {message}\n")
        else:
            from dagbox.runner import warn

            warn(message)

    def catch_sigterm(self) -> None:
        """SIGTERM ends dagbox through Python (SystemExit), so that the panel is closed:
        for the moments no run's own handler is there (before a run, a retry's wait)."""
        if self.enabled:
            signal.signal(signal.SIGTERM, _exit_on_signal)

    # --- drawing -------------------------------------------------------------------------

    async def keep_drawn(self) -> None:
        """Redraw every :data:`REDRAW_SECONDS` until cancelled."""
        import anyio

        while self.enabled:
            wait = self._drawn_at + REDRAW_SECONDS - time.monotonic()
            if wait <= 0:  # never sooner than that after the last draw, whoever made it
                self.draw()
                wait = REDRAW_SECONDS
            await anyio.sleep(wait)

    def draw(self) -> None:
        """Erase the panel, write what runs printed since, and draw it anew: one write."""
        if not self.enabled:
            return
        size = _size(self.stream)
        parts = [self._erase()]
        if not self._shown:
            parts.append(_HIDE)
            self._shown = True
        held = len(self._pending)
        parts += self._pending[:held]
        lines = self._lines(*size)
        # The cursor waits at the start of the last line: a ^C the terminal echoes lands
        # on the panel (erased next), not past a full line, where it would wrap a line down.
        parts.append("\n".join(lines) + "\r")
        self._drawn_at = time.monotonic()
        if self._write("".join(parts)):
            del self._pending[:held]  # written: kept for close() otherwise
            self._height = len(lines) - 1

    def close(self) -> None:
        """Erase the panel, write what is held, show the cursor, and end with the counts."""
        if not self.enabled and not self._shown:
            return
        self.enabled = False
        text = self._erase() + "".join(self._pending) + (_SHOW if self._shown else "")
        self._pending.clear()
        self._shown = False
        self._write(text + self.headline() + "\n")

    def headline(self) -> str:
        elapsed = max(time.monotonic() - self.began, 1e-6)
        rate = self.done / elapsed
        total = f"/{self.total}" if self.total is not None else ""
        failed = f"failed {self.failed}" + (f" (infra {self.infra})" if self.infra else "")
        parts = [f"running {len(self.rows)}", f"done {self.done}{total}", failed]
        parts.append(f"{rate:.1f}/s" if rate >= 1 or not self.done else f"{rate * 60:.1f}/min")
        if self.total is not None:
            left = self.total - self.done
            parts.append(f"ETA {left / rate:.0f}s" if rate > 0 and left > 0 else "ETA -")
        return " · ".join(parts)

    def _lines(self, columns: int, rows: int) -> list[str]:
        from rich.cells import cell_len, set_cell_size

        width = max(columns - 1, 10)  # never the last column: the terminal would wrap there

        def fit(text: str) -> str:
            return set_cell_size(text, width).rstrip() if cell_len(text) > width else text

        lines = [self._paint(fit(self.headline()), "1")]
        room = max(rows - 2, 1)
        now = time.monotonic()
        shown = list(self.rows.values())
        if len(shown) > room:
            shown = shown[: room - 1]
        label_width = min(max((cell_len(r.label) for r in shown), default=0), width // 2)
        for row in shown:
            label = _middle(row.label, label_width)
            elapsed = f"{now - row.began:6.1f}s"
            head = f"  {label} {elapsed}"
            tail = _last_line(row.last)
            line = fit(f"{head}  {tail}" if tail else head)
            lines.append(line[: len(head)] + self._paint(line[len(head) :], "2"))
        hidden = len(self.rows) - len(shown)
        if hidden:
            lines.append(fit(f"  … and {hidden} more running"))
        return lines

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def _erase(self) -> str:
        """From the end of the panel back to its first line, erased to the screen's end."""
        up = f"\x1b[{self._height}A" if self._height else ""
        self._height = 0
        # Erased to the end of the screen from the second column, the first apart: tmux
        # (scroll-on-clear, on by default) pushes the screen into its history when that
        # erase starts at the top left, as it would for a panel at the top of a pane.
        return f"\r{up}\x1b[K\x1b[C{_ERASE_DOWN}\r"

    def _write(self, text: str) -> bool:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away (or is busy): the runs go on
            self.enabled = False
            return False
        return True


class _Held:
    """A stream for lines printed while the panel is up: held until the next redraw."""

    def __init__(self, panel: Panel, then: TextIO) -> None:
        self.panel = panel
        self.then = then

    def write(self, text: str) -> int:
        if self.panel.enabled:
            self.panel._pending.append(text)
        else:  # the panel is closed: what comes after goes straight out
            self.then.write(text)
        return len(text)

    def flush(self) -> None:
        if not self.panel.enabled:
            self.then.flush()

    def isatty(self) -> bool:
        return True


class StepRows:
    """Sink for ``dagbox run -o live``: each running step (of the run or a child run) a row."""

    def __init__(self, panel: Panel, label: str = "") -> None:
        self.panel = panel
        self.label = label

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, StepOutput):
            self.panel.output(self._key(event.run_id, event.step), event.data)
        elif isinstance(event, StepStarted):
            attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            self.panel.start(
                self._key(event.run_id, event.step), f"{self.label}{event.step}{attempt}"
            )
        elif isinstance(event, StepFinished):
            key = self._key(event.run_id, event.step)
            if key in self.panel.rows:
                self.panel.stop(key)
                self.panel.count(failed=event.status in ("failed", "aborted"))

    @staticmethod
    def _key(run_id: str, step: str) -> str:
        return f"{run_id}\0{step}"


class LastLine:
    """Sink for a bench's run: its latest output, shown on its row of the panel."""

    def __init__(self, panel: Panel, key: str) -> None:
        self.panel = panel
        self.key = key

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, StepOutput):
            self.panel.output(self.key, event.data)


def _last_line(data: bytes) -> str:
    text = data[-TAIL:].decode(errors="replace").rstrip()
    # A tab takes no cell to rich but up to 8 columns on a terminal: one space here.
    return safe_line(text.rpartition("\n")[2], False).replace("\t", " ").strip()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _middle(text: str, width: int) -> str:
    """``text`` in ``width`` cells, cut in the middle: a label's end (``#2 @node``) tells
    rows apart as much as its start does."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return set_cell_size(text, width)
    tail = width // 3
    head = set_cell_size(text, width - tail - 1)
    end = text[-tail:] if tail else ""
    while cell_len(end) > tail:
        end = end[1:]
    return set_cell_size(head + "…" + end, width)


def _not_on_screen_apart(stream: TextIO) -> bool:
    """True unless ``stream`` is a pipe or socket, whose reader (``| tee``) may write to the
    terminal behind the panel's back."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return True
    return not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns, size.lines
    except (OSError, ValueError, AttributeError):
        return 80, 24


async def drawn(panel: Panel, main: Callable[[], Awaitable[T]]) -> T:
    """``main()``, with ``panel`` kept drawn while it runs."""
    if not panel.enabled:
        return await main()
    import anyio

    outcome: list[T] = []
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            outcome.append(await main())
        except BaseException as exc:  # raised as it is, not inside an ExceptionGroup
            failure.append(exc)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(panel.keep_drawn)
        tg.start_soon(run)
    panel.draw()  # what the run printed last, now (a retry may wait a while)
    panel.catch_sigterm()  # asyncio, done with its own handler, left the default
    if failure:
        raise failure[0]
    return outcome[0]


@contextlib.contextmanager
def shown(panel: Panel) -> Iterator[Panel]:
    """The panel, closed (cursor shown, screen clean) however the block ends: SIGTERM
    too, where no run is there to catch it (a retry's wait)."""

    previous = signal.getsignal(signal.SIGTERM)
    panel.catch_sigterm()
    try:
        yield panel
    finally:
        if panel.enabled:
            signal.signal(signal.SIGTERM, previous)
        panel.close()
