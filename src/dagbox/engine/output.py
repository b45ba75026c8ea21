"""Where an attempt's output goes: the events (redacted), the journal, and the capture
that ``output:`` and ``continue_on.output`` read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from dagbox.engine.context import Context
from dagbox.engine.events import StepOutput
from dagbox.lines import LineSplitter
from dagbox.regex import regex_of
from dagbox.runtimes import Stream
from dagbox.secrets import MASK, StreamRedactor, is_secret_name


@dataclass
class Capture:
    """A step's stdout kept for ``output:`` and ``continue_on.output``, up to the size limit."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    overflow: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.overflow = True
            chunk = chunk[: max(room, 0)]
        self.data += chunk

    def text(self) -> str:
        return self.data.decode(errors="replace")

    def reset(self) -> None:
        """A new harness try: only the successful try's stdout counts (docs/format.md, D4)."""
        self.data.clear()
        self.overflow = False

    def problem(self) -> str | None:
        """Why this stdout cannot be a step's ``output:`` value."""
        if self.overflow:
            return f"output exceeded maximum size limit of {self.limit} bytes"
        if b"\0" in self.data:
            return "the output holds a NUL byte, which no environment variable can carry"
        return None

    def matches(self, patterns: tuple[str, ...]) -> bool:
        """A line holds one of ``patterns`` (text, or ``re:PATTERN``)."""
        splitter = LineSplitter()
        lines = splitter.feed(bytes(self.data)) + splitter.flush()
        for text in patterns:
            pattern = regex_of(text)
            if pattern is not None:
                if any(pattern.search(line) for line in lines):
                    return True
            elif any(text in line for line in lines):
                return True
        return False


class Recorder(Protocol):
    def output(self, stream: Stream, data: bytes) -> None: ...


class OutputRouter:
    """The ``on_output`` of one attempt.

    A step whose output is named like a secret prints a secret: all of its stdout is
    the value, so none of it is shown (one mask stands for it), and its stderr is held
    back (up to max_output_size) until the value is known, then shown redacted.
    """

    def __init__(
        self,
        ctx: Context,
        step: str,
        attempt: int,
        output: str | None,
        capture: Capture | None,
        journal: Recorder | None,
        copies: Mapping[Stream, BinaryIO] | None = None,
    ) -> None:
        self.ctx, self.step, self.attempt = ctx, step, attempt
        self.capture, self.journal = capture, journal
        #: The step's ``stdout:``/``stderr:`` files: what the log gets, redacted the same.
        self.copies = copies or {}
        self.output_name = output.lstrip("$") if output else ""
        self.secret_output = capture is not None and is_secret_name(self.output_name)
        redactor = ctx.secrets.redactor()
        self.streams: dict[Stream, StreamRedactor] = {
            "stdout": redactor.stream(),
            "stderr": redactor.stream(),
        }
        self.held = bytearray()
        self.printed = False

    def __call__(self, stream: Stream, data: bytes) -> None:
        if self.capture is not None and stream == "stdout":
            self.capture.add(data)  # the real bytes: a dependent gets the real output value
        if self.journal is not None:
            self.journal.output(stream, data)
        if self.secret_output:
            if stream == "stdout":
                self.printed = self.printed or bool(data)
                return
            if len(self.held) < self.ctx.plan.max_output_size:
                self.held.extend(data)
                return
            self._release()  # past the bound: shown as it comes, with what is known by now
        self._emit(stream, self.streams[stream].feed(data))

    def renew(self) -> None:
        """Redact with every secret known by now (a call step's children learned some
        while it waited): what was held back goes out first."""
        self.flush()
        redactor = self.ctx.secrets.redactor()
        self.streams = {"stdout": redactor.stream(), "stderr": redactor.stream()}

    def flush(self) -> None:
        """The end of the attempt, or of a harness try: what is held back goes out."""
        self._release()
        for stream, redacting in self.streams.items():
            self._emit(stream, redacting.flush())

    def _release(self) -> None:
        if not self.secret_output:
            return
        assert self.capture is not None
        self.ctx.secrets.add(self.output_name, self.capture.text().strip())
        if self.printed:
            self._emit("stdout", MASK.encode() + b"\n")
            self.printed = False
        self.streams["stderr"] = self.ctx.secrets.redactor().stream()
        data, self.held = bytes(self.held), bytearray()
        self._emit("stderr", self.streams["stderr"].feed(data))

    def _emit(self, stream: Stream, data: bytes) -> None:
        copy = self.copies.get(stream)
        if data and copy is not None:
            copy.write(data)
        if data:
            self.ctx.emit(
                StepOutput(
                    run_id=self.ctx.run_id,
                    step=self.step,
                    attempt=self.attempt,
                    stream=stream,
                    data=data,
                )
            )
