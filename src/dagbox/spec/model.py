"""The DAG model: what a Dagu-format file means, in one canonical shape.

Field names are the current snake_case keys. Fields annotated with a
:class:`~dagbox.spec.forms.Form` accept several document forms (see forms.py);
after loading they always hold the canonical value described by their type.
Values are kept as written (``${params.X}`` is resolved when the run starts),
except that structure is normalised and checked here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from dagbox.plan import HANDLERS
from dagbox.spec import call_forms, forms, legacy
from dagbox.spec.build import Builder, KeyRules, Model
from dagbox.spec.forms import Context
from dagbox.spec.issues import Sink

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
EnvVars = Annotated[tuple[tuple[str, str], ...], forms.ENV]
Strings = Annotated[tuple[str, ...], forms.STRINGS]

_SERVER_ONLY = "is only used by Dagu's server and scheduler; dagbox ignores it"


def _server_only(*keys: str) -> dict[str, str]:
    return {k: f'"{k}" {_SERVER_ONLY}' for k in keys}


def _unsupported(**reasons: str) -> dict[str, str]:
    return {k: f'"{k}" is not supported by dagbox ({why})' for k, why in reasons.items()}


class Volume(msgspec.Struct, frozen=True, array_like=True):
    """``source:target[:ro|rw]``. ``source`` is expanded ($VAR, ~, relative) when the run starts."""

    source: str
    target: str
    read_only: bool = False


class Healthcheck(Model, frozen=True, kw_only=True):  # type: ignore[misc]  # msgspec allows it
    test: Annotated[tuple[str, ...], forms.STRINGS]
    interval: str | None = None
    timeout: str | None = None
    start_period: str | None = None
    retries: NonNegative | None = None


class Container(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """Root-level (one shared container per run) or step-level (one per attempt) container.

    Exactly one of ``image`` (image mode) and ``exec`` (run inside an existing
    container, which dagbox never creates, stops or removes) is set.
    """

    image: str | None = None
    exec: str | None = None
    name: str | None = None
    pull_policy: Annotated[str, forms.PULL_POLICY] = "missing"
    env: EnvVars = ()
    volumes: Annotated[tuple[Volume, ...], forms.VOLUMES] = ()
    working_dir: str | None = None
    user: str | None = None
    network: str | None = None
    platform: str | None = None
    ports: Annotated[tuple[str, ...], forms.PORTS] = ()
    keep_container: bool = False
    startup: Literal["keepalive", "entrypoint", "command"] = "keepalive"
    command: Annotated[tuple[str, ...], forms.WORDS] = ()
    wait_for: Literal["running", "healthy"] = "running"
    log_pattern: str | None = None
    restart_policy: Literal["no", "always", "unless-stopped"] | None = None
    healthcheck: Healthcheck | None = None
    shell: Annotated[tuple[str, ...], forms.WORDS] = ()

    keys: ClassVar[KeyRules] = KeyRules(aliases={"auto_remove": "keep_container"})

    def fields_set(self) -> list[str]:
        """Names of the fields that differ from their defaults, in declaration order."""
        defaults = Container()
        return [f for f in self.__struct_fields__ if getattr(self, f) != getattr(defaults, f)]


class RetryPolicy(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """Retry failed attempts. ``limit`` counts extra attempts; numbers may be ``${...}`` text."""

    limit: int | str = 0
    interval_sec: int | str = 0
    exit_code: Annotated[tuple[int, ...], forms.INTS] = ()
    backoff: bool | float | None = None
    max_interval_sec: NonNegative | None = None


class RepeatPolicy(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """Run a step again while (or until) a condition holds or its exit code is listed."""

    repeat: bool | str | None = None
    condition: str | None = None
    expected: str | None = None
    exit_code: Annotated[tuple[int, ...], forms.INTS] = ()
    limit: int | str = 0
    interval_sec: int | str = 0
    backoff: bool | float | None = None
    max_interval_sec: NonNegative | None = None


class ContinueOn(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """When a failed (or skipped) step lets its dependents run anyway."""

    failed: bool = False
    skipped: bool = False
    exit_code: Annotated[tuple[int, ...], forms.INTS] = ()
    output: Strings = ()
    mark_success: bool = False

    keys: ClassVar[KeyRules] = KeyRules(aliases={"failure": "failed"})


class Condition(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """A precondition: a command that must exit 0, or a value that must match ``expected``:
    ``condition`` with its references resolved, or ``eval`` expanded by a shell (its
    ``$(...)`` and backticks run), as Dagu 2.x."""

    condition: str = ""
    eval: str | None = None
    expected: str | None = None
    negate: bool = False


Conditions = Annotated[
    tuple[Condition, ...],
    forms.conditions(
        {"description": "A command (string), a {condition, expected, negate} object, or a list."}
    ),
]


class Exec(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """A program and its arguments, exec'd without a shell (Dagu 2.x's ``exec:``)."""

    command: str
    args: Strings = ()


class Secret(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """A secret a step gets as the variable ``name``: from dagbox's environment (``env``:
    ``key`` is the variable) or a file (``file``: ``key`` is its path)."""

    name: str
    provider: str
    key: str
    options: dict[str, Any] | None = None


class Artifacts(Model, frozen=True):  # type: ignore[misc]  # msgspec allows it
    """Where a run keeps files worth keeping (``$DAG_RUN_ARTIFACTS_DIR``): ``dir`` is the
    base folder (relative to the DAG file's folder; else the run's record), ``enabled``
    turns it on (a DAG that uses one turns it on by itself)."""

    enabled: bool | None = None
    dir: str | None = None


class Param(msgspec.Struct, frozen=True):
    """One DAG parameter. Positional parameters are named "1", "2", ..."""

    name: str
    default: str | None = None
    description: str | None = None
    #: Text a shell expands when the run starts (``$(...)``, backticks), unless given.
    eval: str | None = None
    #: What values it takes (Dagu 2.x's typed params; dagbox/params.py checks them).
    type: str | None = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    required: bool = False


class HarnessDef(Model, frozen=True, kw_only=True):  # type: ignore[misc]  # msgspec allows it
    """A custom agent CLI (``harnesses:``); shadows a built-in provider of the same name."""

    binary: str
    prefix_args: Strings = ()
    prompt_mode: Literal["arg", "flag", "stdin"] = "arg"
    prompt_flag: str | None = None
    prompt_position: Literal["before_flags", "after_flags"] = "before_flags"
    flag_style: Literal["gnu_long", "single_dash"] = "gnu_long"
    option_flags: dict[str, str] = msgspec.field(default_factory=dict)


_STEP_SERVER_ONLY = _server_only("mail_on_error", "log_output", "worker_selector")
_STEP_UNSUPPORTED = _unsupported(
    shell_args="shell_args; put the arguments in shell:",
    shell_packages="nix-shell packages",
    foreach="parallel/foreach fan-out",
    inputs="declared inputs",
    dependencies="file dependencies",
    output_schema="output schemas",
    value="router steps",
    routes="router steps",
    approval="approval steps",
    agent="agent steps; use action: harness.run",
    messages="chat steps",
    llm="chat steps",
    router="router steps",
)


class Step(Model):
    """One node of the graph: a shell command, a list of them, a script, a program exec'd
    without a shell (``exec:``, ``shell: direct``), or an agent CLI (harness.run)."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    run: Annotated[str | tuple[str, ...] | None, forms.COMMAND] = None
    command: Annotated[str | tuple[str, ...] | None, forms.COMMAND] = None
    script: str | None = None
    exec: Exec | None = None
    shell: Annotated[tuple[str, ...], forms.WORDS] = ()
    action: str | None = None
    with_: dict[str, Any] | None = msgspec.field(default=None, name="with")
    depends: Annotated[tuple[str, ...] | None, forms.DEPENDS] = None
    container: Annotated[
        Container | None,
        forms.struct_or_name("exec", {"description": "A running container's name, or an object."}),
    ] = None
    env: EnvVars = ()
    working_dir: str | None = None
    output: Annotated[str | dict[str, Any] | None, forms.OUTPUT] = None
    outputs: Annotated[tuple[tuple[str, str], ...] | None, forms.OUTPUTS] = None
    stdout: Annotated[str | dict[str, Any] | None, forms.stream_file("stdout")] = None
    stderr: Annotated[str | dict[str, Any] | None, forms.stream_file("stderr")] = None
    retry_policy: RetryPolicy | None = None
    repeat_policy: RepeatPolicy | None = None
    continue_on: Annotated[ContinueOn, forms.CONTINUE_ON] = ContinueOn()
    timeout_sec: NonNegative = 0
    preconditions: Conditions = ()
    signal_on_stop: str | None = None
    #: Another DAG this step runs as a child run (``action: dag.run`` is rewritten to it),
    #: with its params, once per item of ``parallel`` when given (docs/format.md, "Sub-DAGs").
    call: str | None = None
    params: Annotated[tuple[tuple[str | None, str], ...] | str | None, call_forms.CALL_PARAMS] = (
        None
    )
    parallel: Annotated[call_forms.Parallel | None, call_forms.PARALLEL] = None
    # Older spellings of a Docker step; rewritten to container:/with: on load (legacy.py).
    executor: str | dict[str, Any] | None = None
    type: str | None = None
    config: dict[str, Any] | None = None

    keys: ClassVar[KeyRules] = KeyRules(
        aliases={"dir": "working_dir", "precondition": "preconditions"},
        ignored=_STEP_SERVER_ONLY,
        unsupported=_STEP_UNSUPPORTED,
    )

    def finish(self, sink: Sink, builder: Builder) -> None:
        # Dagu trims a step's id and name (and each depends entry, forms.depends).
        self.id = self.id.strip() if self.id is not None else None
        self.name = self.name.strip() if self.name is not None else None
        legacy.rewrite(self, sink, Context(Container, builder.build))
        call_forms.dag_run(self, sink)

    @property
    def key(self) -> str:
        """The name other steps use in ``depends`` (name, else id)."""
        return self.name or self.id or ""


class HandlerOn(Model):
    """Steps run after the graph: init before it; success/failure/abort by outcome; exit always."""

    init: Step | None = None
    success: Step | None = None
    failure: Step | None = None
    abort: Step | None = None
    exit: Step | None = None

    keys: ClassVar[KeyRules] = KeyRules(
        aliases={"cancel": "abort"},
        ignored={"wait": '"wait" handlers never run in dagbox (it has no approval steps)'},
    )

    def finish(self, sink: Sink, builder: Builder) -> None:
        for key in HANDLERS:
            step = getattr(self, key)
            if step is not None and step.name is None:
                step.name = "on" + key.capitalize()  # Dagu's handler step names


_ROOT_SERVER_ONLY = _server_only(
    "schedule",
    "skip_if_successful",
    "restart_wait_sec",
    "stop_schedule",
    "restart_schedule",
    "tags",
    "group",
    "queue",
    "max_active_runs",
    "hist_retention_days",
    "log_dir",
    "log_output",
    "mail_on",
    "smtp",
    "error_mail",
    "info_mail",
    "wait_mail",
    "catchup_window",
    "overlap_policy",
    "worker_selector",
    "run_config",
    "otel",
    "max_history_days",
    "labels",
    "hist_retention_runs",
    "webhook",
)
_ROOT_UNSUPPORTED = _unsupported(
    ssh="ssh execution",
    redis="redis steps",
    llm="chat steps",
    resources="resource limits",
    registry_auths="registry credentials",
    tasks="agent DAGs",
    step_types="custom step types",
    actions="custom actions",
    s3="S3 steps",
    kubernetes="Kubernetes execution",
    tools="tool installation",
)


class Dag(Model, kw_only=True):
    """A whole DAG file."""

    name: str | None = None
    description: str | None = None
    type: Annotated[Literal["graph", "chain"], forms.DAG_TYPE] = "graph"
    params: Annotated[tuple[Param, ...], forms.PARAMS] = ()
    consts: Annotated[tuple[tuple[str, str], ...], forms.CONSTS] = ()
    #: Step keys every step gets unless it sets them: merged into the steps before they
    #: are read (spec/defaults.py), so never set here; declared for the JSON Schema.
    defaults: dict[str, Any] | None = None
    #: Run the whole DAG again when it fails (Dagu's scheduler does it; ``dagbox run`` too).
    retry_policy: RetryPolicy | None = None
    env: EnvVars = ()
    #: Files of NAME=value lines read after ``env`` (None: just ``.env``, as Dagu).
    dotenv: Annotated[tuple[str, ...] | None, forms.STRINGS] = None
    secrets: tuple[Secret, ...] = ()
    artifacts: Artifacts | None = None
    shell: Annotated[tuple[str, ...], forms.WORDS] = ()
    working_dir: str | None = None
    max_active_steps: NonNegative = 0
    timeout_sec: NonNegative = 0
    max_output_size: Annotated[int, msgspec.Meta(gt=0)] = 1024 * 1024
    max_clean_up_time_sec: NonNegative = 5
    delay_sec: NonNegative = 0
    preconditions: Conditions = ()
    handler_on: HandlerOn = msgspec.field(default_factory=HandlerOn)
    container: Annotated[
        Container | None,
        forms.struct_or_name("exec", {"description": "A running container's name, or an object."}),
    ] = None
    harnesses: dict[str, HarnessDef | None] = msgspec.field(default_factory=dict)
    harness: dict[str, Any] | None = None
    steps: Annotated[tuple[Step, ...], forms.STEPS]

    keys: ClassVar[KeyRules] = KeyRules(
        aliases={"precondition": "preconditions"},
        ignored=_ROOT_SERVER_ONLY,
        unsupported=_ROOT_UNSUPPORTED,
    )

    def handlers(self) -> dict[str, Step]:
        """The handlers it has, by name, in the order of :data:`~dagbox.plan.HANDLERS`."""
        return {k: s for k in HANDLERS if (s := getattr(self.handler_on, k)) is not None}

    def every_step(self) -> list[Step]:
        """The steps, then the handlers."""
        return [*self.steps, *self.handlers().values()]
