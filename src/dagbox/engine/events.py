"""What the engine says while a run goes on. Sinks subscribe; the engine never renders.

Events are msgspec Structs, tagged by their ``event`` name so that the JSON
form of each is self-describing (``{"event": "step.finished", ...}``). Output
travels as raw bytes (:class:`StepOutput`); each sink decides whether it
wants lines (the terminal) or bytes (the log files).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec

from dagbox.failures import FailureClass
from dagbox.harness.usage import Usage

StepStatus = Literal[
    "not_started", "running", "succeeded", "failed", "aborted", "skipped", "retrying"
]
RunStatus = Literal["running", "succeeded", "failed", "aborted", "partially_succeeded"]


def now_iso() -> str:
    """An ISO 8601 UTC timestamp with milliseconds: ``2026-11-29T00:45:01.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Event(msgspec.Struct, tag_field="event", kw_only=True, frozen=True):
    run_id: str
    ts: str = msgspec.field(default_factory=now_iso)


class RunStarted(Event, tag="run.started", frozen=True):
    dag: str
    file: str
    params: dict[str, str]
    steps: list[str]
    handlers: list[str]
    record_dir: str | None = None
    #: A child run (a sub-DAG call): the run and step that called it, and the run at the
    #: top of the tree (docs/format.md, "Sub-DAGs").
    parent_run_id: str | None = None
    parent_step: str | None = None
    root_run_id: str | None = None


class StepStarted(Event, tag="step.started", frozen=True):
    step: str
    attempt: int
    handler: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None


class StepOutput(Event, tag="step.output", frozen=True):
    """A chunk of a step's output, as the process wrote it (not line-aligned)."""

    step: str
    attempt: int
    stream: Literal["stdout", "stderr"]
    data: bytes


class StepRetrying(Event, tag="step.retrying", frozen=True):
    step: str
    attempt: int  # the attempt that failed
    exit_code: int
    delay_sec: float


class StepFinished(Event, tag="step.finished", frozen=True):
    """A step reached its final status: run to the end, or skipped/aborted without running."""

    step: str
    status: StepStatus
    exit_code: int | None = None
    attempts: int = 0
    handler: str | None = None
    started_at: str | None = None
    duration_sec: float | None = None
    error: str | None = None
    outputs: dict[str, str] = msgspec.field(default_factory=dict)
    stdout_file: str | None = None
    stderr_file: str | None = None
    #: Why the last attempt ended as it did (docs/events.md); None if the step never ran.
    failure_class: FailureClass | None = None


class AttemptStarted(Event, tag="attempt.started", frozen=True):
    """A harness attempt begins: its tries are the primary provider, then each fallback."""

    step: str
    attempt: int
    providers: list[str]
    #: Where the journal sink writes this attempt's events (None: nowhere).
    journal_file: str | None = None


class TryStarted(Event, tag="try.started", frozen=True):
    step: str
    attempt: int
    try_: int = msgspec.field(name="try")
    provider: str
    binary: str
    argv: list[str]  # the prompt replaced by <prompt: N chars, sha256 ...>
    runtime: str  # host, root, step, exec
    image: str | None = None
    container_id: str | None = None  # known here for shared and named containers
    stdout_file: str | None = None
    stderr_file: str | None = None


class TryPhase(Event, tag="try.phase", frozen=True):
    """How long the steps before the agent's first output took, in milliseconds."""

    step: str
    attempt: int
    try_: int = msgspec.field(name="try")
    image_ready_ms: float | None = None
    container_create_ms: float | None = None
    container_start_ms: float | None = None
    first_byte_ms: float | None = None
    container_remove_ms: float | None = None
    container_id: str | None = None


Outcome = Literal["succeeded", "failed", "timeout", "cancelled"]


class TryFinished(Event, tag="try.finished", frozen=True):
    step: str
    attempt: int
    try_: int = msgspec.field(name="try")
    provider: str
    exit_code: int
    duration_ms: float
    stdout_bytes: int
    stderr_bytes: int
    outcome: Outcome
    failure_class: FailureClass
    error: str | None = None
    #: What the try cost, as the CLI reported it (``with: {usage: true}``); else null.
    usage: Usage | None = None


class AttemptFinished(Event, tag="attempt.finished", frozen=True):
    step: str
    attempt: int
    outcome: Outcome
    tries: int
    exit_code: int
    duration_ms: float
    failure_class: FailureClass


JOURNAL_EVENTS = (AttemptStarted, TryStarted, TryPhase, TryFinished, AttemptFinished)


class Notice(Event, tag="run.notice", frozen=True):
    """Something dagbox itself has to say: an image being pulled, a fallback taken."""

    message: str
    step: str | None = None


class RunFinished(Event, tag="run.finished", frozen=True):
    status: RunStatus
    duration_sec: float
    error: str | None = None


AnyEvent = (
    RunStarted
    | StepStarted
    | StepOutput
    | StepRetrying
    | StepFinished
    | AttemptStarted
    | TryStarted
    | TryPhase
    | TryFinished
    | AttemptFinished
    | Notice
    | RunFinished
)
