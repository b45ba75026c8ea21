"""What every part of one run reads: its plan, its options, its secrets, its event sink.

The scheduler makes one Context per run and hands it to the parts that build a step's
environment, command and conditions, so that none of them needs the scheduler itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio

from dagbox.engine.events import AnyEvent, Notice, StepOutput
from dagbox.layout import RunLayout, safe_name
from dagbox.plan import RUN_VARIABLES, Plan
from dagbox.secrets import Secrets
from dagbox.values import Scope

if TYPE_CHECKING:
    from dagbox.engine.state import RunResult

Emit = Callable[[AnyEvent], None]


@dataclass(frozen=True)
class Parent:
    """The run and step that called a child run (docs/format.md, "Sub-DAGs")."""

    run_id: str
    step: str
    root_run_id: str
    #: How many calls deep the child is (a child of the root is 1).
    depth: int
    #: The parent's record folder: the child's goes in its ``children/`` (None: no record).
    record: Path | None
    #: Set by a second interrupt of the root run: every process of the tree stops at once.
    now: anyio.Event


class ChildRuns(Protocol):
    """Runs a child run to its end: what a call step needs of whoever runs the root run
    (runner.py), so that the engine knows neither records nor sinks nor containers."""

    async def run(self, plan: Plan, run_id: str, label: str, parent: Parent) -> RunResult:
        """Cancelling the caller stops the child as an interrupt would: its handlers
        run, its record ends."""
        ...


class StepError(Exception):
    """A value, command or precondition that cannot be used: the step (or run) fails."""


@dataclass
class RunOptions:
    run_id: str
    max_active: int | None = None  # -j; None keeps max_active_steps
    layout: RunLayout | None = None  # None: no log files (tests, benchmarks)
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: Said right after run.started (things found while preparing, such as reaped containers).
    notices: list[str] = field(default_factory=list)
    #: Sub-DAG calls: who runs a child, who called this run (None: the root), the DAGs the
    #: tree can call (the root plan's), and the budget of running steps the whole tree
    #: shares (docs/format.md, "Sub-DAGs"); None where the run calls no other DAG.
    children: ChildRuns | None = None
    parent: Parent | None = None
    dags: Mapping[str, Plan] = field(default_factory=dict)
    slots: anyio.CapacityLimiter | None = None
    #: The run's own folder (``$DAG_RUN_WORK_DIR``), where it is not its steps' working
    #: directory: a child run whose DAG names a ``working_dir`` (as in Dagu 2.x).
    run_dir: Path | None = None
    #: The secrets of the tree of runs a child run is part of (its root's): what one run
    #: learns, every other masks (a parent secret passed as a param, a child's output).
    secrets: Secrets | None = None


def make_working_dir(path: str | Path) -> None:
    """A step's working directory, made as the step itself would make it (Dagu makes a
    missing one): before its preconditions and its ``stdout:`` files. Raises StepError."""
    try:
        Path(path).mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise StepError(f"cannot create working directory {path}: {exc.strerror}") from None


def exported(env: Mapping[str, str], hidden: Collection[str] = ()) -> dict[str, str]:
    """What a process gets of a step's ``env``: not the dotted names references use
    (``${steps.ID.outputs.NAME}``), nor the ``hidden`` ones (an env secret's source)."""
    return {k: v for k, v in env.items() if "." not in k and k not in hidden}


class Context:
    def __init__(self, plan: Plan, options: RunOptions, sink: Emit) -> None:
        self.plan = plan
        self.options = options
        self.work_dir = Path(plan.work_dir or ".")
        #: ``$DAG_RUN_WORK_DIR``: the working directory, but for a child (RunOptions.run_dir).
        self.run_dir = options.run_dir or self.work_dir
        self._host_env = {k: v for k, v in options.host_env.items() if k not in RUN_VARIABLES}
        self.secrets = options.secrets if options.secrets is not None else Secrets()
        self.secrets.learn(self._host_env, plan.params)
        self.secrets.learn(plan.consts)  # a secret-named const is masked as any value
        #: In the environment of the helper shells (backticks, preconditions): whatever
        #: they leave running is found as this run's, and stopped when it ends.
        self.marks = {"DAG_RUN_ID": options.run_id}
        self._sink = sink
        #: Variables of dagbox's environment no step gets (the source of an env secret).
        self.hidden: set[str] = set()
        #: ``${context.*}`` and its older spellings that stay the same for the whole run.
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        run = {
            "dag.name": plan.dag,
            "run.id": options.run_id,
            "run.started_at": started,
            "attempt.id": f"{options.run_id}.1",  # a run has one attempt in dagbox
            "attempt.started_at": started,
            "trigger.type": "manual",
            "paths.work_dir": str(self.run_dir),
        }
        if options.layout is not None:
            run["paths.log_file"] = str(options.layout.events)
        self.references = {
            **{f"context.{k}": v for k, v in run.items()},
            **{k: run[k] for k in ("dag.name", "run.id", "run.started_at", "attempt.id")},
        }

    @property
    def run_id(self) -> str:
        return self.options.run_id

    @property
    def dags(self) -> Mapping[str, Plan]:
        """The DAGs a call step may run: the root plan's (a child's plan has none)."""
        return self.options.dags or self.plan.dags

    @property
    def host_env(self) -> Mapping[str, str]:
        """dagbox's environment without the run variables of a run that started dagbox
        (from one of its steps): every value read from it gets this run's, or none."""
        return self._host_env

    @property
    def layout(self) -> RunLayout | None:
        return self.options.layout

    @property
    def outputs_dir(self) -> Path | None:
        """Where the attempts' DAGU_OUTPUT_FILEs are, when a step declares outputs."""
        if self.layout is None or not self.plan.declares_outputs():
            return None
        return self.layout.dir / "outputs"

    @functools.cached_property
    def artifacts_dir(self) -> Path | None:
        """The run's artifacts folder, made when first asked for: under the run's record,
        or ``<dir>/<dag>/dag-run_<UTC time>_<run id>`` for ``artifacts: {dir}``, as Dagu
        lays it out. Open to any user (sticky) only when a container of the run runs as
        a user that is not root."""
        base = self.plan.artifacts
        if base is None or (base == "" and self.layout is None):
            return None
        if base == "":
            assert self.layout is not None
            path = self.layout.dir / "artifacts"
        else:
            when = datetime.now(UTC).strftime("%Y%m%d_%H%M%SZ")
            path = Path(base) / safe_name(self.plan.dag) / f"dag-run_{when}_{self.run_id}"
        path.mkdir(mode=0o750, parents=True, exist_ok=True)
        if self._user_containers():  # sticky: no one removes or replaces others' files
            path.chmod(0o1777)
        return path

    def _user_containers(self) -> bool:
        """A container of the run runs as a user that is not root (``user: '1000'``), so
        it cannot write a folder only dagbox's user can."""
        configs = [self.plan.container, *(s.container for s in self.plan.every_step)]
        users = {c.user.split(":")[0] for c in configs if c is not None and c.user}
        return bool(users - {"root", "0"})

    @property
    def params(self) -> Mapping[str, str]:
        return self.plan.params

    def scope(self, env: Mapping[str, str]) -> Scope:
        """How ``${...}`` resolves against ``env`` in this run."""
        return Scope(self.params, env, self.plan.consts)

    def emit(self, event: AnyEvent) -> None:
        """Every event leaves through here, redacted as it finally is: one path for every
        error, notice and value, wherever it was raised. Output is redacted as a stream
        (a secret may span two chunks) before it gets here."""
        if self.secrets and not isinstance(event, StepOutput):
            event = self.secrets.redactor().event(event)
        self._sink(event)

    def notice(self, message: str, step: str | None = None) -> None:
        self.emit(Notice(run_id=self.run_id, message=message, step=step))

    def redact(self, text: str | None) -> str | None:
        return self.secrets.redactor().text(text) if text else text
