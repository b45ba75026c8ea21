"""What a run shows in the terminal: a sink over the engine's events.

Modes (``--output``):

- ``prefix`` (default): every output line as it arrives, as ``step | line`` (``step ! line``
  for stderr), with a stable colour per step on a terminal; a line per step start and end.
- ``grouped``: each step's output as one block when the step ends.
- ``failures``: only the output of steps that failed, as a block.
- ``json``: one JSON event per line, output lines included.
- ``live``: a line per finished step, and a failed step's output as a block; on a terminal,
  the panel of running steps below (dagbox/live.py).
- ``quiet``: only the final line.

Everything goes to one stream (stdout), written a whole line at a time, so lines of
concurrent steps never mix. Lines come from a :class:`LineSplitter` per step and stream.
A step's output cannot steer the terminal: cursor movement, screen clearing, titles and
other control characters are dropped (colours are kept on a terminal, and closed at the
end of the line), and a line redrawn with ``\r`` shows what a terminal would show, its
last state. Log files keep every byte.
"""

from __future__ import annotations

import os
import re
import sys
import zlib
from collections import deque
from typing import TextIO

import msgspec

from dagbox.engine.events import (
    AnyEvent,
    Notice,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepRetrying,
    StepStarted,
)
from dagbox.lines import CONTROL_CHARS, STEERING, LineSplitter
from dagbox.modes import OutputMode

_PALETTE = (36, 33, 35, 32, 34, 96, 93, 95, 92, 94, 91, 31)
_STATUS_STYLE = {
    "succeeded": ("✔", 32),
    "failed": ("✘", 31),
    "aborted": ("✘", 31),
    "skipped": ("–", 2),
    "partially_succeeded": ("✔", 33),
}
#: Per step, at most this much memory holds output back for grouped and failures modes.
GROUP_LIMIT = 2 * 1024 * 1024
#: A held line's slot in its deque, beyond the str itself.
SLOT = 8


#: The cheap test that lets most lines through as they are.
_CONTROL = re.compile(CONTROL_CHARS)
_SGR = re.compile(r"\x1b\[[0-9;:]*m")


def safe_line(line: str, colour: bool) -> str:
    """``line`` as a terminal should show it inside dagbox's own lines (see the module doc)."""
    if not _CONTROL.search(line):
        return line
    line = line.rstrip("\r").rpartition("\r")[2]  # a progress bar's last state
    kept = False

    def keep(match: re.Match[str]) -> str:
        nonlocal kept
        if colour and _SGR.fullmatch(match.group()):
            kept = True
            return match.group()
        return ""

    line = STEERING.sub(keep, line)
    return line + "\x1b[0m" if kept else line


_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """A name (of a step, a DAG, a run) as one line of plain text: every control character,
    a newline or an escape included, is shown as its escape (``\\n``, ``\\x1b``), so that a
    name cannot forge a line of dagbox's own or steer the terminal."""
    if not _ANY_CONTROL.search(text):
        return text
    return _ANY_CONTROL.sub(lambda m: _NAMED.get(m[0], f"\\x{ord(m[0]):02x}"), text)


def first_line(text: str) -> str:
    """The first line of a message (an error, a notice), filtered like output, with `` …``
    when more lines follow."""
    first, *more = text.splitlines() or [""]
    return safe_line(first, False) + (" …" if more else "")


def safe_text(text: str) -> str:
    """A message of several lines, each filtered like a line of output."""
    return "\n".join(safe_line(line, False) for line in text.split("\n"))


def wants_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class _Held:
    """A step's held-back lines (grouped/failures), keeping the tail past the limit."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.size = 0
        self.dropped = 0

    def add(self, line: str) -> None:
        # What the line really takes in memory, not its length: 20 M empty lines took
        # 1.7 GB when they were counted as 0 bytes each.
        self.lines.append(line)
        self.size += sys.getsizeof(line) + SLOT
        while self.size > GROUP_LIMIT and self.lines:
            self.size -= sys.getsizeof(self.lines.popleft()) + SLOT
            self.dropped += 1


class Terminal:
    def __init__(
        self,
        mode: OutputMode = OutputMode.prefix,
        out: TextIO | None = None,
        color: bool | None = None,
        label: str = "",
        summary: bool = True,
    ) -> None:
        """``label`` prefixes step names (one run among many); ``summary`` ends with a summary."""
        self.label = label
        self.summary = summary
        self.mode = mode
        self.out = out or sys.stdout
        self.color = wants_color(self.out) if color is None else color
        self.width = 0
        self.splitters: dict[tuple[str, str], LineSplitter] = {}
        self.held: dict[str, _Held] = {}
        self.started: RunStarted | None = None
        self.finished: dict[str, StepFinished] = {}
        self._json = msgspec.json.Encoder()
        self.closed = False

    # --- styling -------------------------------------------------------------------------

    def _paint(self, text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _name(self, step: str) -> str:
        colour = _PALETTE[zlib.crc32(step.encode()) % len(_PALETTE)]
        return self._paint(f"{self.label}{printable(step).ljust(self.width)}", colour)

    def _write(self, text: str) -> None:
        self.out.write(text)

    # --- events --------------------------------------------------------------------------

    def __call__(self, event: AnyEvent) -> None:
        if self.closed:
            return
        try:
            self._render(event)
        except (BrokenPipeError, ValueError):
            # The reader went away (`dagbox run | head`): the run goes on, recorded as usual.
            self.closed = True

    def _render(self, event: AnyEvent) -> None:
        if self.mode is OutputMode.json:
            self._as_json(event)
            return
        if isinstance(event, StepOutput):
            self._output(event)
        elif isinstance(event, RunStarted):
            self.started = event
            self.width = min(
                max(
                    (len(printable(s)) for s in [*event.steps, *_handler_names(event)]),
                    default=0,
                ),
                24,
            )
        elif isinstance(event, StepStarted):
            if self.mode is OutputMode.prefix:
                suffix = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                self._write(f"{self._name(event.step)} {self._paint('●', 2)} started{suffix}\n")
        elif isinstance(event, StepRetrying):
            self._flush_lines(event.step)
            if self.mode is not OutputMode.quiet:
                self._write(
                    f"{self._name(event.step)} {self._paint('↻', 33)} attempt {event.attempt} exited "
                    f"{event.exit_code}; retrying in {event.delay_sec:g}s\n"
                )
        elif isinstance(event, StepFinished):
            self._flush_lines(event.step)
            self.finished[event.step] = event
            self._step_finished(event)
        elif isinstance(event, Notice):
            if self.mode is not OutputMode.quiet:
                self._write(self._paint(f"dagbox: {safe_text(event.message)}", 2) + "\n")
        elif isinstance(event, RunFinished) and self.summary:
            self._summary(event)
        self.out.flush()

    def _output(self, event: StepOutput) -> None:
        key = (event.step, event.stream)
        splitter = self.splitters.get(key)
        if splitter is None:
            splitter = self.splitters[key] = LineSplitter()
        self._lines(event.step, event.stream, splitter.feed(event.data))

    def _lines(self, step: str, stream: str, lines: list[str]) -> None:
        if not lines or self.mode is OutputMode.quiet:
            return
        mark = "|" if stream == "stdout" else self._paint("!", 31)
        lines = [safe_line(line, self.color) for line in lines]
        if self.mode is OutputMode.prefix:
            name = self._name(step)
            self._write("".join(f"{name} {mark} {line}\n" for line in lines))
        else:
            held = self.held.setdefault(step, _Held())
            for line in lines:
                held.add(f"{mark} {line}" if stream == "stderr" else line)

    def _flush_lines(self, step: str) -> None:
        for stream in ("stdout", "stderr"):
            splitter = self.splitters.pop((step, stream), None)
            if splitter is not None:
                self._lines(step, stream, splitter.flush())

    def _step_finished(self, event: StepFinished) -> None:
        symbol, colour = _STATUS_STYLE.get(event.status, ("?", 0))
        timing = (
            f" in {event.duration_sec:.2f}s"
            if event.duration_sec is not None and event.attempts
            else ""
        )
        code = f" (exit {event.exit_code})" if event.exit_code is not None else ""
        why = ""
        if event.error and event.status != "succeeded":
            why = f": {first_line(event.error)}"
        line = f"{self._paint(symbol, colour)} {event.status}{timing}{code}{why}"
        held = self.held.pop(event.step, None)
        failed = event.status == "failed"
        if self.mode is OutputMode.prefix or (self.mode is OutputMode.live and not failed):
            self._write(f"{self._name(event.step)} {line}\n")
        elif self.mode is OutputMode.grouped or (
            self.mode in (OutputMode.failures, OutputMode.live) and failed
        ):
            self._write(f"{self._paint('──', 2)} {self._name(event.step).rstrip()} {line}\n")
            if held is not None:
                if held.dropped:
                    self._write(f"   … {held.dropped} earlier lines not shown (see the log file)\n")
                self._write("".join(f"   {text}\n" for text in held.lines))

    def _summary(self, event: RunFinished) -> None:
        started = self.started
        name = printable(started.dag) if started else ""
        symbol, colour = _STATUS_STYLE.get(event.status, ("✘", 31))
        head = f"{self._paint(symbol, colour)} run {event.run_id} of {name}: {event.status} in {event.duration_sec:.2f}s"
        if event.error:
            head += f" ({first_line(event.error)})"
        if self.mode is OutputMode.quiet:
            self._write(head + "\n")
            return
        counts: dict[str, int] = {}
        for finished in self.finished.values():
            if finished.handler is None:
                counts[finished.status] = counts.get(finished.status, 0) + 1
        total = len(started.steps) if started else 0
        not_started = total - sum(counts.values())
        if not_started:
            counts["not_started"] = not_started
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self._write(f"{head}\n  steps: {parts or 'none'}\n")
        trouble = [f for f in self.finished.values() if f.status in ("failed", "aborted")]
        for finished in trouble[:20]:
            self._write(
                f"  {self._paint('✘', 31)} {printable(finished.step)}: {finished.status}: "
                f"{first_line(finished.error or '')}\n"
            )
        if len(trouble) > 20:
            self._write(f"  … and {len(trouble) - 20} more\n")
        if started and started.record_dir:
            self._write(f"  record: {started.record_dir}\n")

    def _as_json(self, event: AnyEvent) -> None:
        if isinstance(event, StepOutput):
            key = (event.step, event.stream)
            splitter = self.splitters.setdefault(key, LineSplitter())
            lines = splitter.feed(event.data)
        elif isinstance(event, StepRetrying | StepFinished):
            lines = []
            for stream in ("stdout", "stderr"):
                splitter = self.splitters.pop((event.step, stream), None)  # type: ignore[arg-type]
                if splitter is not None:
                    for line in splitter.flush():
                        self._json_line(
                            {
                                "event": "step.output",
                                "run_id": event.run_id,
                                "ts": event.ts,
                                "step": event.step,
                                "stream": stream,
                                "line": line,
                            }
                        )
        if isinstance(event, StepOutput):
            for line in lines:
                self._json_line(
                    {
                        "event": "step.output",
                        "run_id": event.run_id,
                        "ts": event.ts,
                        "step": event.step,
                        "attempt": event.attempt,
                        "stream": event.stream,
                        "line": line,
                    }
                )
        else:
            self.out.write(self._json.encode(event).decode() + "\n")
        self.out.flush()

    def _json_line(self, data: dict[str, object]) -> None:
        self.out.write(self._json.encode(data).decode() + "\n")


def _handler_names(event: RunStarted) -> list[str]:
    return ["on" + h.capitalize() for h in event.handlers]
