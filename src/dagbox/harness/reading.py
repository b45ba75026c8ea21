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

import re
from collections.abc import Callable, Mapping
from typing import Any

from dagbox.harness.argv import wants_usage
from dagbox.harness.catalog import Provider
from dagbox.harness.usage import Reader, Usage
from dagbox.regex import compile_pattern
from dagbox.runtimes import OnOutput, Stream

#: A trap only needs the start of a line.
_TRAP_LINE_BYTES = 4096
#: One JSON event (a tool's result can hold a whole file); past this it is shown as is.
_EVENT_BYTES = 64 * 1024 * 1024
#: A tool call is shown on one line of at most this many characters.
_TOOL_LINE_CHARS = 200
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-_])")


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
        self.partial: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
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
        buffer = self.partial[stream]
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line(stream, bytes(buffer) + data[start:end] if buffer else data[start:end])
            buffer.clear()
            start = end + 1
        rest = data[start:]
        limit = _EVENT_BYTES if reading else _TRAP_LINE_BYTES
        if len(buffer) + len(rest) <= limit:
            buffer.extend(rest)
        elif reading:
            self.on_output("stderr", bytes(buffer) + rest)  # not an event we can read: shown
            buffer.clear()
        else:
            buffer.extend(rest[: max(0, limit - len(buffer))])
        if self.traps and buffer and not reading:
            self._check(buffer.decode(errors="replace"))  # a prompt that waits on its line

    def close(self) -> None:
        """The try ended: read what is left, and give the final answer as its stdout."""
        for stream, buffer in self.partial.items():
            if buffer:
                line, buffer[:] = bytes(buffer), b""
                self._line(stream, line)
        if self.reader is not None:
            answer, left = self.reader.finish()
            self._progress(left)
            if answer:
                self.on_output(
                    "stdout", (answer if answer.endswith("\n") else answer + "\n").encode()
                )

    def _line(self, stream: Stream, line: bytes) -> None:
        text = line.decode(errors="replace")
        if self.reader is not None and stream == "stdout":
            self._progress(self.reader.line(text))
            self._check(text)
            return
        self._check(text[:_TRAP_LINE_BYTES])

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
        text = _ANSI.sub("", text.rstrip("\r")).rpartition("\r")[2]  # as a terminal shows it
        for pattern, message in self.traps:
            if pattern.search(text):
                self.sprung = message
                self.on_trap()
                return
