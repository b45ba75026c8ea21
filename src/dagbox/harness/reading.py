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
from dagbox.regex import compile_pattern
from dagbox.runtimes import OnOutput, Stream

#: A trap only needs the start of a line.
_TRAP_LINE_BYTES = 4096
#: One JSON event (a tool's result can hold a whole file); past this it is shown as is.
_EVENT_BYTES = 64 * 1024 * 1024


class TryOutput:
    def __init__(
        self,
        provider: Provider,
        options: Mapping[str, Any],
        on_output: OnOutput,
        on_trap: Callable[[], None],
    ) -> None:
        self.on_output = on_output
        self.on_trap = on_trap
        self.traps = [(compile_pattern(t.pattern), t.message) for t in provider.traps]
        model = options.get("model")
        self.reader = (
            Reader(provider.usage or "", model if isinstance(model, str) else None)
            if wants_usage(provider, options)
            else None
        )
        self.partial: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.sprung: str | None = None

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
        if lines:
            text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
            self.on_output("stderr", text.encode())

    def _check(self, text: str) -> None:
        if self.sprung is not None:
            return
        for pattern, message in self.traps:
            if pattern.search(text.rstrip("\r")):
                self.sprung = message
                self.on_trap()
                return
