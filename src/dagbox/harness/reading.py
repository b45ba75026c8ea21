"""Between one try's process and the step's output: traps, and structured output.

Plain output passes through byte for byte; a copy of each line is checked
against the provider's traps (a login prompt, an auth failure reported with
exit 0), and the first one that matches ends the try. With ``usage: true`` the
CLI's stdout is its JSON event stream: the agent's messages and tool calls are
shown on stderr as they arrive, the final answer is the try's stdout (written
when the try ends, so a step's ``output:`` is the same as in text mode), and
what the try cost is in :attr:`TryOutput.usage`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dagbox.harness.argv import wants_usage
from dagbox.harness.catalog import Provider
from dagbox.harness.usage import Reader, Usage
from dagbox.lines import STEERING, LineSplitter
from dagbox.regex import compile_pattern
from dagbox.runtimes import OnOutput, Stream

#: A trap needs no more of a line than this: a longer one is checked piece by piece.
_TRAP_LINE_CHARS = 4096
#: One JSON event (a tool's result can hold a whole file); past this it is shown as is.
_EVENT_CHARS = 64 * 1024 * 1024
#: A tool call is shown on one line of at most this many characters.
_TOOL_LINE_CHARS = 200


class TryOutput:
    def __init__(
        self,
        provider: Provider,
        options: Mapping[str, Any],
        on_output: OnOutput,
        on_trap: Callable[[], None],
        redact: Callable[[str], str] = str,
    ) -> None:
        self.on_output = on_output
        self.on_trap = on_trap
        self.redact = redact
        self.traps = [(compile_pattern(t.pattern), t.message) for t in provider.traps]
        model = options.get("model")
        self.reader = (
            Reader(provider.usage or "", model if isinstance(model, str) else None)
            if wants_usage(provider, options)
            else None
        )
        event_lines = self.reader is not None
        self.splitters: dict[Stream, LineSplitter] = {
            "stdout": LineSplitter(_EVENT_CHARS if event_lines else _TRAP_LINE_CHARS),
            "stderr": LineSplitter(_TRAP_LINE_CHARS),
        }
        self.sprung: str | None = None
        #: Errors the CLI reported in its events: the try's error when it fails.
        self.errors: list[str] = []

    @property
    def usage(self) -> Usage | None:
        return self.reader.usage if self.reader is not None else None

    def feed(self, stream: Stream, data: bytes) -> None:
        reading = self.reader is not None and stream == "stdout"
        if not reading:
            self.on_output(stream, data)
            if not self.traps:
                return
        splitter = self.splitters[stream]
        for line in splitter.feed(data):
            self._line(stream, line)
        if self.traps and not reading and splitter.pending:
            self._check(splitter.pending)  # a prompt that waits on its line

    def close(self) -> None:
        """The try ended: read what is left, and give the final answer as its stdout."""
        for stream, splitter in self.splitters.items():
            for line in splitter.flush():
                self._line(stream, line)
        if self.reader is not None:
            answer, left = self.reader.finish()
            self._progress(left)
            if answer:
                self.on_output(
                    "stdout", (answer if answer.endswith("\n") else answer + "\n").encode()
                )

    def _line(self, stream: Stream, text: str) -> None:
        """A whole line (or, past the bound, a piece of one: read, and shown if not JSON)."""
        if self.reader is not None and stream == "stdout":
            self._progress(self.reader.line(text))
        self._check(text)

    def _progress(self, lines: list[str]) -> None:
        """Show made-up lines: masked whole first, then made short (a cut secret is not one)."""
        shown = []
        for line in lines:
            line = self.redact(line)
            if line.startswith("error: "):
                self.errors.append(line.removeprefix("error: ").strip())
            if line.startswith("> "):
                line = " ".join(line.split())
                line = (
                    line if len(line) <= _TOOL_LINE_CHARS else line[: _TOOL_LINE_CHARS - 3] + "..."
                )
            shown.append(line if line.endswith("\n") else line + "\n")
        if shown:
            self.on_output("stderr", "".join(shown).encode())

    def _check(self, text: str) -> None:
        if self.sprung is not None:
            return
        text = STEERING.sub("", text.rstrip("\r").rpartition("\r")[2])  # as a terminal shows it
        for pattern, message in self.traps:
            if pattern.search(text):
                self.sprung = message
                self.on_trap()
                return
