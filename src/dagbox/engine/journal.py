"""What one harness attempt did, try by try, as events for its JSON journal.

:class:`AttemptJournal` is the engine's observer of a fallback chain. For each
try it emits ``try.started`` (with the argv, the prompt replaced by its length
and sha256), moves the step's logs to that try's own files, collects the
runtime's phase timings and the first output byte, and emits ``try.phase`` and
``try.finished`` with a failure class. ``attempt.started``/``attempt.finished``
frame it all. Sinks write these events to ``attempts/<step>/<attempt>.jsonl``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypedDict, get_args

from dagbox.engine.events import (
    AnyEvent,
    AttemptFinished,
    AttemptStarted,
    Outcome,
    TryFinished,
    TryPhase,
    TryStarted,
)
from dagbox.failures import FailureClass
from dagbox.harness.argv import Invocation
from dagbox.harness.usage import Usage
from dagbox.runtimes import Exit, Trace

#: How much of a failed try's stdout ends up in the step's error.
TAIL_BYTES = 1024

_PHASES = ("image_ready_ms", "container_create_ms", "container_start_ms", "container_remove_ms")


#: The classes an Exit carries as it is: every class but those the exit code or the
#: engine's own timeout and cancel decide.
_FROM_EXIT = frozenset(get_args(FailureClass)) - {"ok", "exit_nonzero", "timeout", "cancelled"}


def failure_class(exit_: Exit) -> FailureClass:
    if exit_.code == 0:
        return "ok"
    if exit_.failure_class in _FROM_EXIT:
        return exit_.failure_class  # type: ignore[return-value]
    if exit_.code in (126, 127):
        return "binary_missing"  # an agent CLI runs directly: the runtime could not exec it
    return "exit_nonzero"


def hide_prompt(invocation: Invocation) -> list[str]:
    """The argv with the prompt replaced by its length and sha256: journals stay small and private.

    Only the prompt's own word is touched (alone, or after its ``--flag=``), so a flag
    or value that happens to read like the prompt is left as it is.
    """
    argv, prompt, index = list(invocation.argv), invocation.prompt, invocation.prompt_index
    if not prompt or index is None:
        return argv
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    word = argv[index]
    argv[index] = (
        word[: len(word) - len(prompt)] + f"<prompt: {len(prompt)} chars, sha256 {digest}>"
    )
    return argv


class _Ids(TypedDict):
    run_id: str
    step: str
    attempt: int


class AttemptJournal:
    def __init__(
        self,
        emit: Callable[[AnyEvent], None],
        run_id: str,
        step: str,
        attempt: int,
        runtime: str,
        image: str | None,
        log_files: Callable[[int], tuple[str | None, str | None]],
        redact: Callable[[str], str],
        journal_file: str | None = None,
    ) -> None:
        self.emit = emit
        self.ids: _Ids = {"run_id": run_id, "step": step, "attempt": attempt}
        self.runtime = runtime
        self.image = image
        self.log_files = log_files
        self.redact = redact
        self.journal_file = journal_file
        self.began = time.monotonic()
        self.tries = 0
        self.current: _Try | None = None
        self.last_tail = b""
        self.on_try_start: Callable[[str | None, str | None], None] = lambda out, err: None

    def start(self, providers: list[str]) -> None:
        self.emit(AttemptStarted(**self.ids, providers=providers, journal_file=self.journal_file))

    # --- TryObserver -----------------------------------------------------------------

    def started(self, index: int, provider: str, invocation: Invocation | None) -> Trace:
        self.tries = index
        stdout_file, stderr_file = self.log_files(index)
        self.on_try_start(stdout_file, stderr_file)
        self.current = current = _Try(index, provider)
        argv = hide_prompt(invocation) if invocation else []
        self.emit(
            TryStarted(
                **self.ids,
                try_=index,
                provider=provider,
                binary=invocation.argv[0] if invocation else "",
                argv=[self.redact(a) for a in argv],
                runtime=self.runtime,
                image=self.image,
                container_id=None,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
        )
        return current.trace

    def finished(self, index: int, result: Exit) -> None:
        outcome: Outcome = "succeeded" if result.code == 0 else "failed"
        self._end(result, outcome, failure_class(result))

    # --- what the engine tells us ------------------------------------------------------

    def output(self, stream: str, data: bytes) -> None:
        if self.current is not None:
            self.current.output(stream, data)

    def interrupted(self, outcome: Outcome, exit_code: int) -> None:
        """A timeout or cancel cut the try in flight (if any)."""
        if self.current is not None:
            self._end(Exit(exit_code), outcome, outcome)  # type: ignore[arg-type]

    def finish(self, outcome: Outcome, exit_: Exit, failure: FailureClass) -> None:
        self.emit(
            AttemptFinished(
                **self.ids,
                outcome=outcome,
                tries=self.tries,
                exit_code=exit_.code,
                duration_ms=_ms(self.began),
                failure_class=failure,
            )
        )

    def _end(self, result: Exit, outcome: Outcome, failure: FailureClass) -> None:
        current, self.current = self.current, None
        if current is None:
            return
        self.last_tail = current.tail
        phases = {k: current.phases.get(k) for k in _PHASES}
        if (
            any(v is not None for v in phases.values())
            or current.first_byte is not None
            or current.container_id
        ):
            self.emit(
                TryPhase(
                    **self.ids,
                    try_=current.index,
                    first_byte_ms=current.first_byte,
                    container_id=current.container_id,
                    **phases,  # type: ignore[arg-type]
                )
            )
        self.emit(
            TryFinished(
                **self.ids,
                try_=current.index,
                provider=current.provider,
                exit_code=result.code,
                duration_ms=_ms(current.began),
                stdout_bytes=current.bytes["stdout"],
                stderr_bytes=current.bytes["stderr"],
                outcome=outcome,
                failure_class=failure,
                error=self.redact(result.error) if result.error else None,
                usage=current.usage,
            )
        )


class _Try:
    def __init__(self, index: int, provider: str) -> None:
        self.index = index
        self.provider = provider
        self.began = time.monotonic()
        self.phases: dict[str, float] = {}
        self.container_id: str | None = None
        self.first_byte: float | None = None
        self.bytes = {"stdout": 0, "stderr": 0}
        self.tail = b""
        self.usage: Usage | None = None

    def trace(self, name: str, value: object) -> None:
        if name == "container_id":
            self.container_id = str(value)
        elif isinstance(value, Usage):
            self.usage = value
        elif isinstance(value, int | float):
            self.phases[name] = float(value)

    def output(self, stream: str, data: bytes) -> None:
        if self.first_byte is None and data:
            self.first_byte = _ms(self.began)
        self.bytes[stream] += len(data)
        if stream == "stdout":
            self.tail = (self.tail + data)[-TAIL_BYTES:]


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)
