"""The plan: what a run executes, decided once, as one plain value.

``compiler.compile`` turns a loaded DAG into a Plan; the scheduler (engine/) runs a
Plan and nothing else, and ``dagbox dry-run --json`` prints the same object. It is a
msgspec value, so it can be written, read back and run elsewhere.

What is decided here: each step's kind and runtime, its dependencies (as positions in
``Plan.steps``, which are in file order), its shell, the container configuration that
applies to it, and an agent step's chain of tries. What is not: values. Params are
known (``Plan.params``), but every ``${...}`` stays a template, resolved when the run
reaches it (docs/format.md, "Values"), because env values, outputs and backticks only
exist then. This module imports nothing from spec/: the engine reads only this.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from dagbox.harness.catalog import Provider

#: Steps run outside the graph: init before it; success, failure or abort by its outcome;
#: exit last (docs/format.md, "Statuses and what a failure does").
Handler = Literal["init", "success", "failure", "abort", "exit"]
HANDLERS: tuple[Handler, ...] = get_args(Handler)

#: Where a step runs: the host; the DAG's shared container; a fresh container of its own
#: per attempt; or a running container it names (which dagbox never creates or stops).
RuntimeKind = Literal["host", "root", "step", "exec"]
#: What a step runs: one shell line; a shell script (several lines, or ``script:``);
#: several commands in turn (a ``run:`` list); a program without a shell (``exec:``,
#: ``shell: direct``); an agent CLI (``action: harness.run``); its image's own command;
#: another DAG, once or once per item (``action: dag.run``, ``call:``); or a builtin action
#: dagbox runs itself (``file.write``, ``jq.filter``, ...).
StepKind = Literal["command", "script", "commands", "argv", "harness", "image", "call", "builtin"]

#: The most items one fan-out runs, and its default ``max_concurrent`` (Dagu's).
MAX_ITEMS = 1000
DEFAULT_MAX_CONCURRENT = 10


#: Variables dagbox sets for every step (docs/format.md, "Values").
RUN_VARIABLES = (
    "DAG_NAME",
    "DAG_RUN_ID",
    "DAG_RUN_LOG_FILE",
    "DAG_RUN_WORK_DIR",
    "DAG_PARAMS_JSON",
    "DAG_RUN_STEP_NAME",
    "DAG_RUN_STEP_STDOUT_FILE",
    "DAG_RUN_STEP_STDERR_FILE",
    "DAGU_OUTPUT_FILE",
    "DAG_RUN_ARTIFACTS_DIR",
    "DAG_RUN_STATUS",
    "PWD",
)


class Volume(msgspec.Struct, frozen=True, array_like=True):
    source: str
    target: str
    read_only: bool = False


class Healthcheck(msgspec.Struct, frozen=True, omit_defaults=True):
    test: tuple[str, ...]
    interval: str | None = None
    timeout: str | None = None
    start_period: str | None = None
    retries: int | None = None


class ContainerConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """A ``container:`` as written (templates unresolved); see docs/format.md."""

    image: str | None = None
    exec: str | None = None
    name: str | None = None
    pull_policy: str = "missing"
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    working_dir: str | None = None
    user: str | None = None
    network: str | None = None
    platform: str | None = None
    ports: tuple[str, ...] = ()
    keep_container: bool = False
    startup: str = "keepalive"
    command: tuple[str, ...] = ()
    wait_for: str = "running"
    log_pattern: str | None = None
    restart_policy: str | None = None
    healthcheck: Healthcheck | None = None
    shell: tuple[str, ...] = ()


class RetryPolicy(msgspec.Struct, frozen=True, omit_defaults=True):
    limit: int | str = 0
    interval_sec: int | str = 0
    exit_code: tuple[int, ...] = ()
    backoff: bool | float | None = None
    max_interval_sec: int | None = None


class RepeatPolicy(msgspec.Struct, frozen=True, omit_defaults=True):
    """``repeat_policy`` decided: repeat ``while`` or ``until`` the ``condition`` holds, else
    the exit code is in ``exit_code``, else the step succeeds (docs/format.md)."""

    mode: Literal["while", "until"]
    condition: Condition | None = None
    exit_code: tuple[int, ...] = ()
    limit: int | str = 0
    interval_sec: int | str = 0
    backoff: bool | float | None = None
    max_interval_sec: int | None = None


class ContinueOn(msgspec.Struct, frozen=True, omit_defaults=True):
    failed: bool = False
    skipped: bool = False
    exit_code: tuple[int, ...] = ()
    output: tuple[str, ...] = ()
    mark_success: bool = False


class Condition(msgspec.Struct, frozen=True, omit_defaults=True):
    condition: str = ""
    expected: str | None = None
    negate: bool = False
    #: ``eval:``: the shell expands the text (``$(...)`` runs); else only references resolve.
    shell: bool = False


class Try(msgspec.Struct, frozen=True, omit_defaults=True):
    """One provider invocation of an agent step, rendered with the params (for reading:
    the run renders it again once the step's env is known)."""

    provider: str
    argv: tuple[str, ...]
    stdin: str | None = None


class DeclaredOutput(msgspec.Struct, frozen=True, omit_defaults=True):
    """One of a step's ``outputs:``: a ``NAME=value`` its DAGU_OUTPUT_FILE must hold."""

    name: str
    type: Literal["string", "json"] = "string"


class Call(msgspec.Struct, frozen=True, omit_defaults=True):
    """A step that runs another DAG as a child run (docs/format.md, "Sub-DAGs").

    ``params`` are (name, or None for a positional one; value template) pairs, resolved
    for each child with ``${ITEM}`` in scope; None: the item itself is the child's params.
    ``items`` makes it a fan-out: the items as written (scalars as text, flat objects as
    text fields; templates resolved in the caller's scope), or a template whose value is
    the list (JSON, else separated text, as Dagu reads it).
    """

    dag: str  # a key of Plan.dags (a template: ``${ITEM}`` may name one)
    #: Pairs, or ``A=1 B=2`` text split once its references are resolved (as Dagu).
    params: tuple[tuple[str | None, str], ...] | str | None = None
    items: tuple[str | dict[str, str], ...] | str | None = None
    max_concurrent: int = DEFAULT_MAX_CONCURRENT


class PlannedStep(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    runtime: RuntimeKind
    kind: StepKind
    #: The steps this one waits for: names in file order (for reading), and positions in
    #: Plan.steps in the order written (a later one's output wins a name both give).
    depends: tuple[str, ...] = ()
    upstream: tuple[int, ...] = ()
    id: str | None = None
    #: The shell text, the script, the commands, the argv, or the image command (by
    #: ``kind``). Commands under ``shell: direct`` are each split into words when run.
    command: str | tuple[str, ...] | None = None
    #: ``command: python3`` with ``script:``: the script is a file for this program.
    interpreter: str | None = None
    shell: tuple[str, ...] = ()
    #: The container configuration that applies (the step's own, else the DAG's).
    container: ContainerConfig | None = None
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    output: str | None = None
    #: ``output:``'s object form (templates): published as ``${ID.output.KEY}``.
    output_object: dict[str, Any] = msgspec.field(default_factory=dict)
    outputs: tuple[DeclaredOutput, ...] = ()
    #: Files that get a copy of the step's stdout and stderr (templates; relative to the
    #: step's working directory), appended to, as Dagu's ``stdout:``/``stderr:``.
    stdout: str | None = None
    stderr: str | None = None
    #: Files in the run's artifacts folder (templates) that get a copy of the stream.
    stdout_artifact: str | None = None
    stderr_artifact: str | None = None
    #: ``stdout: {outputs: ...}``: stdout read into ``${ID.outputs.NAME}``, as
    #: ``{field, decode, select}`` or ``{fields}`` (spec/forms.py gives it that shape).
    stdout_outputs: dict[str, Any] | None = None
    retry_policy: RetryPolicy | None = None
    repeat_policy: RepeatPolicy | None = None
    continue_on: ContinueOn = ContinueOn()
    timeout_sec: int = 0
    preconditions: tuple[Condition, ...] = ()
    signal_on_stop: str | None = None
    #: An agent step: each try's complete ``with:`` (templates), primary then fallbacks.
    chain: tuple[dict[str, Any], ...] = ()
    tries: tuple[Try, ...] = ()
    call: Call | None = None
    #: A builtin action (``file.write``, ``jq.filter``, ...) and its ``with:`` (templates).
    action: str | None = None
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None  # a problem that will fail the step when it runs

    @property
    def image(self) -> str | None:
        return self.container.image if self.container is not None else None


class Plan(msgspec.Struct, frozen=True, omit_defaults=True):
    dag: str
    type: str
    max_active_steps: int
    steps: tuple[PlannedStep, ...]  # in file order
    handlers: dict[str, PlannedStep] = msgspec.field(default_factory=dict)
    params: dict[str, str] = msgspec.field(default_factory=dict)
    #: Params whose value a shell gives when the run starts, in order: name -> text
    #: (``params: [{name, eval}]``; one given a value on the command line is not here).
    evals: dict[str, str] = msgspec.field(default_factory=dict)
    #: ``consts:``, resolved when the file loaded: ``${consts.X}`` wherever params reach.
    consts: dict[str, str] = msgspec.field(default_factory=dict)
    file: str = ""  # the DAG file, absolute
    work_dir: str = ""  # where steps run (docs/format.md, D2)
    env: tuple[tuple[str, str], ...] = ()
    #: dotenv files (templates) read after ``env``, in order; missing ones are skipped.
    dotenv: tuple[str, ...] = (".env",)
    #: (name, provider, key): ``env`` reads dagbox's environment, ``file`` a file.
    secrets: tuple[tuple[str, str, str], ...] = ()
    preconditions: tuple[Condition, ...] = ()
    container: ContainerConfig | None = None  # the shared (root) container
    timeout_sec: int = 0
    delay_sec: int = 0
    #: Whole-run retries: ``dagbox run`` runs a failed DAG again, as Dagu's scheduler does.
    retry_policy: RetryPolicy | None = None
    max_output_size: int = 1024 * 1024
    max_clean_up_time_sec: int = 5
    #: The DAG's own agent CLIs (``harnesses:``), beside and over the built-in ones.
    harnesses: dict[str, Provider] = msgspec.field(default_factory=dict)
    #: The run's artifacts folder: None (off), "" (in the run's record), or a base folder
    #: (absolute) that gets ``<dag>/dag-run_<time>_<run id>/``, as Dagu lays it out.
    artifacts: str | None = None
    #: The DAG sets ``working_dir`` (else ``work_dir`` is its file's folder; a child run
    #: then gets a folder of its own instead, as in Dagu).
    work_dir_given: bool = False
    #: Every param it declares, by name ("1", "2", ... for positional ones): a call that
    #: gives one it does not declare is refused when it declares named ones (as Dagu).
    param_names: tuple[str, ...] = ()
    #: ``working_dir`` as written when it reads a param: a call that gives that param
    #: resolves it again (host_path).
    work_dir_template: str | None = None
    #: The DAGs its steps call, and theirs, by the name they are called by (compiled with
    #: their own defaults; a call gives params when it runs). Only the root plan has them.
    dags: dict[str, Plan] = msgspec.field(default_factory=dict)

    @property
    def every_step(self) -> tuple[PlannedStep, ...]:
        """The steps, then the handlers."""
        return (*self.steps, *self.handlers.values())

    def declares_outputs(self) -> bool:
        return any(step.outputs for step in self.every_step)

    def uses_containers(self) -> bool:
        """A step of this DAG, or of one it calls, runs in a container."""
        return any(step.runtime != "host" for step in self.every_step) or any(
            plan.uses_containers() for plan in self.dags.values()
        )


def item_text(item: Any) -> str:
    """How ``${ITEM}`` reads an item of a fan-out: text as it is, anything else (an
    object, a number read from JSON) as compact JSON with sorted keys, as Dagu."""
    if isinstance(item, str):
        return item
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def host_path(text: str, base: Path) -> Path:
    """A folder the DAG names on the host: ``$VAR`` and ``~`` from dagbox's environment,
    a relative one joined to ``base`` (the DAG file's folder)."""
    path = Path(os.path.expandvars(text)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def dispatch_order(plan: Plan) -> list[PlannedStep]:
    """Steps in the order they become ready: first in, first out, and steps that become
    ready at the same moment in file order (Dagu's order with ``max_active_steps: 1``)."""
    steps = plan.steps
    waiting = [len(step.upstream) for step in steps]
    dependents: list[list[int]] = [[] for _ in steps]
    for i, step in enumerate(steps):
        for d in step.upstream:
            dependents[d].append(i)
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    order: list[PlannedStep] = []
    while ready:
        i = ready.popleft()
        order.append(steps[i])
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    return order
