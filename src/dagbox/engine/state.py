"""What a run knows as it goes: each step's state, the result, and the interrupt switch."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from dagbox.engine.events import RunStatus, StepStatus
from dagbox.failures import FailureClass
from dagbox.plan import PlannedStep

FINAL: frozenset[StepStatus] = frozenset({"succeeded", "failed", "aborted", "skipped"})


@dataclass(eq=False, repr=False)
class StepRun:
    """One step (or handler) of this run, and what became of it."""

    def __repr__(self) -> str:
        # Not the dataclass repr: that would walk deps/dependents through the whole graph.
        return f"<StepRun {self.name} {self.status}>"

    step: PlannedStep
    #: Its place in the file, from 1 (handlers follow the steps): unique, unlike names
    #: once made safe for file names, so log files are per index.
    index: int
    handler: str | None = None
    status: StepStatus = "not_started"
    exit_code: int | None = None
    attempts: int = 0
    started_at: str | None = None
    started: float | None = None
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    #: What dependents may reference once it ended: ``${ID.stdout}``, ``${ID.exit_code}``.
    references: dict[str, str] = field(default_factory=dict)
    stdout_file: str | None = None
    stderr_file: str | None = None
    continued: bool = False  # failed, but continue_on lets dependents run
    #: A call whose child runs partially succeeded (none failed): the run does too.
    partial: bool = False
    failure_class: FailureClass | None = None
    deps: list[StepRun] = field(default_factory=list)
    dependents: list[StepRun] = field(default_factory=list)
    waiting: int = 0

    def publish(self) -> None:
        """What its dependents may reference now that it ended (Dagu's step properties):
        ``${ID.stdout}`` and ``${ID.stderr}`` (its log files), ``${ID.exit_code}``."""
        if self.step.id is None or self.handler is not None:
            return
        at = self.step.id
        code = "" if self.exit_code is None else str(self.exit_code)
        self.references = {
            f"{at}.stdout": self.stdout_file or "",
            f"{at}.stderr": self.stderr_file or "",
            f"{at}.exit_code": code,
            f"{at}.exitCode": code,
        }

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def done(self) -> bool:
        return self.status in FINAL


def run_status(steps: list[StepRun]) -> RunStatus:
    """A run's status from its steps' (docs/format.md, "Statuses and what a failure does")."""
    statuses = [r.status for r in steps]
    if any(r.status == "failed" and not r.continued for r in steps) or "aborted" in statuses:
        return "failed"
    if "failed" in statuses:
        return "partially_succeeded" if "succeeded" in statuses else "failed"
    return "partially_succeeded" if any(r.partial for r in steps) else "succeeded"


@dataclass
class RunResult:
    run_id: str
    status: RunStatus
    steps: list[StepRun]
    handlers: dict[str, StepRun]
    error: str | None = None
    precondition_unmet: bool = False
    interrupted: bool = False
    #: Set by whoever records the run when part of the record could not be written.
    record_error: str | None = None
    #: The params it ran with (evaluated): a caller's result object shows them.
    params: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """docs/format.md, D8: 0 succeeded (or DAG precondition not met), 130 interrupted, 1 otherwise.

        A run whose record is incomplete (a full disk) exits 1 even when its steps
        succeeded: the record is part of what a run promises.
        """
        if self.interrupted:
            return 130
        if self.record_error is not None:
            return 1
        if self.status == "succeeded" or self.precondition_unmet:
            return 0
        return 1


class Interrupt:
    """Lets a signal handler stop a run.

    Every signal cancels what is running now (the graph, or a handler). From the
    second signal on, processes are killed at once instead of after the grace
    period. Handlers that start after the graph was stopped still run.
    """

    def __init__(self, now: anyio.Event | None = None) -> None:
        """``now``: a child run's is its root's (a second interrupt reaches every run)."""
        self.requested = False
        self.scope: anyio.CancelScope | None = None
        self.now = now or anyio.Event()

    def request(self) -> None:
        if self.requested:
            self.now.set()
        self.requested = True
        if self.scope is not None:
            self.scope.cancel()
