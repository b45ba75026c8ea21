"""From a loaded DAG to the Plan a run executes (plan.py): every decision made once.

Pure: it reads the DAG and the params and starts nothing. A step's runtime is its own
container (``step``: a fresh container per attempt; ``exec``: a running container it
names), else the DAG's root container (``root``, or ``exec`` when that names a running
container), else the ``host``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from dagbox.harness.argv import merge_defaults, render, tries
from dagbox.harness.catalog import customs, registry
from dagbox.plan import (
    Call,
    Condition,
    ContainerConfig,
    ContinueOn,
    DeclaredOutput,
    Plan,
    PlannedStep,
    RepeatPolicy,
    RetryPolicy,
    RuntimeKind,
    StepKind,
    Try,
    host_path,
)
from dagbox.shells import DIRECT, with_errexit
from dagbox.spec import builtins
from dagbox.spec.model import Container, Dag, Step
from dagbox.values import Scope, ValueProblem


def compile(  # the word for what it does; the builtin is never needed here
    dag: Dag,
    overrides: Mapping[str, str] | None = None,
    file: Path | None = None,
    dags: Mapping[str, tuple[Dag, Path]] | None = None,
) -> Plan:
    """The plan of ``dag`` with its params (defaults, then ``overrides`` by name).

    ``file`` is where the DAG was read from: steps run in its folder unless the DAG
    says otherwise (docs/format.md, D2). ``dags`` are the sub-DAGs it calls (spec.Loaded):
    each compiled with its own defaults, since a call gives its params as it runs.
    """
    # A param declared without a value, and given none, has no value: ${params.X} then
    # stays as written, as in Dagu (it used to become "").
    params = {p.name: p.default for p in dag.params if p.default is not None}
    params.update(overrides or {})
    evals = {p.name: p.eval for p in dag.params if p.eval and p.name not in (overrides or {})}
    upstream = link(dag)
    harnesses = customs(dag.harnesses)
    compiler = _Compiler(dag, params, harnesses)
    scope = compiler.scope
    steps = tuple(
        compiler.step(
            step, tuple(upstream[i]), tuple(dag.steps[d].key for d in sorted(upstream[i]))
        )
        for i, step in enumerate(dag.steps)
    )
    handlers = {name: compiler.step(step, (), ()) for name, step in dag.handlers().items()}
    path = (file or Path(dag.name or "dag")).resolve()
    return Plan(
        dag=dag.name or "",
        type=dag.type,
        max_active_steps=dag.max_active_steps,
        steps=steps,
        handlers=handlers,
        params=params,
        evals=evals,
        consts=dict(dag.consts),
        file=str(path),
        work_dir=str(_work_dir(dag, path, scope)),
        env=dag.env,
        dotenv=tuple(dict.fromkeys((".env", *(dag.dotenv or ())))),  # .env first, as Dagu
        secrets=tuple((s.name, s.provider, s.key) for s in dag.secrets),
        preconditions=_conditions(dag.preconditions),
        container=_container(dag.container),
        timeout_sec=dag.timeout_sec,
        delay_sec=dag.delay_sec,
        retry_policy=_convert(dag.retry_policy, RetryPolicy),
        max_output_size=dag.max_output_size,
        max_clean_up_time_sec=dag.max_clean_up_time_sec,
        harnesses=harnesses,
        artifacts=_artifacts(dag, path, (*steps, *handlers.values())),
        work_dir_given=bool(dag.working_dir),
        param_names=tuple(p.name for p in dag.params),
        work_dir_template=dag.working_dir if "${" in (dag.working_dir or "") else None,
        dags={name: compile(child, None, where) for name, (child, where) in (dags or {}).items()},
    )


def _streams(step: Step) -> dict[str, Any]:
    """``stdout:``/``stderr:``: a file path, or ``{artifact, outputs}``."""
    out: dict[str, Any] = {}
    for stream in ("stdout", "stderr"):
        value = getattr(step, stream)
        if isinstance(value, dict):
            out[f"{stream}_artifact"] = value.get("artifact")
            if "outputs" in value:
                out["stdout_outputs"] = value["outputs"]
        else:
            out[stream] = value
    return out


#: Text that makes a DAG use its artifacts folder (Dagu turns artifacts on for it).
_ARTIFACT_NAMES = (b"DAG_RUN_ARTIFACTS_DIR", b"paths.artifacts_dir")


def _artifacts(dag: Dag, path: Path, steps: tuple[PlannedStep, ...]) -> str | None:
    """The plan's ``artifacts``: on when ``artifacts.enabled`` says so, or when the DAG
    writes an artifact or names the folder (validate refused ``enabled: false`` then)."""
    config = dag.artifacts
    if config is not None and config.enabled is False:
        return None
    used = any(s.stdout_artifact or s.stderr_artifact for s in steps)
    if not used:
        text = msgspec.json.encode((steps, dag.env))
        used = any(name in text for name in _ARTIFACT_NAMES)
    if not used and not (config is not None and config.enabled):
        return None  # a dir alone does not turn them on, as in Dagu
    if config is None or not config.dir:
        return ""
    return str(host_path(config.dir, path.parent))


def link(dag: Dag) -> list[list[int]]:
    """Each step's dependencies, as positions in ``dag.steps``, in the order written.

    A ``depends`` entry names a step by name or id (the first step that has it); in a
    ``chain`` every step depends on the one before. Validation has refused unknown names.
    """
    by_key: dict[str, int] = {}
    for i, step in enumerate(dag.steps):
        for key in (step.id, step.name):
            if key is not None:
                by_key.setdefault(key, i)
    if dag.type == "chain":
        return [[i - 1] if i else [] for i in range(len(dag.steps))]
    return [list(dict.fromkeys(by_key[d] for d in step.depends or ())) for step in dag.steps]


def runtime_of(step: Step, root: Container | None) -> tuple[RuntimeKind, Container | None]:
    """Where ``step`` runs, and the container configuration that applies to it."""
    container = step.container or root
    if container is None:
        return "host", None
    if container.exec is not None:
        return "exec", container
    return ("step" if step.container is not None else "root"), container


class _Compiler:
    def __init__(self, dag: Dag, params: Mapping[str, str], harnesses: Mapping[str, Any]) -> None:
        self.dag = dag
        self.scope = Scope(params, {}, dict(dag.consts))
        self.providers = registry(harnesses)
        #: The DAG's shell, its ${params.X} resolved (as Dagu), with -e for a Unix shell.
        self.dag_shell = with_errexit(tuple(self.scope.shell(word) for word in dag.shell))

    def step(self, step: Step, upstream: tuple[int, ...], depends: tuple[str, ...]) -> PlannedStep:
        runtime, container = runtime_of(step, self.dag.container)
        on_host = runtime == "host"
        fields: dict[str, Any] = {
            "name": step.key,
            "id": step.id,
            "runtime": runtime,
            "depends": depends,
            "upstream": upstream,
            # The DAG's shell is for the host; in a container only the step's own counts.
            "shell": step.shell or (self.dag_shell if on_host else ()),
            "container": _container(container),
            "env": step.env,
            "working_dir": step.working_dir,
            "output": step.output if isinstance(step.output, str) else None,
            "output_object": step.output if isinstance(step.output, dict) else {},
            "outputs": tuple(DeclaredOutput(n, t) for n, t in step.outputs or ()),  # type: ignore[arg-type]
            **_streams(step),
            "retry_policy": _convert(step.retry_policy, RetryPolicy),
            "repeat_policy": _repeat(step.repeat_policy),
            "continue_on": _convert(step.continue_on, ContinueOn),
            "timeout_sec": step.timeout_sec,
            "preconditions": _conditions(step.preconditions),
            "signal_on_stop": step.signal_on_stop,
        }
        if step.call is not None:
            return PlannedStep(kind="call", call=_call(step), **{**fields, "shell": ()})
        if step.action in builtins.ACTIONS:
            options = dict(step.with_ or {})
            return PlannedStep(
                kind="builtin", action=step.action, options=options, **{**fields, "shell": ()}
            )
        if step.action is not None:
            return self._harness(step, fields)
        if step.exec is not None:
            argv = (step.exec.command, *step.exec.args)
            return PlannedStep(kind="argv", command=argv, **{**fields, "shell": ()})
        if (step.shell or self.dag.shell)[:1] == (DIRECT,) and step.run is not None:
            return self._direct(step.run, fields)
        if step.script is not None:
            interpreter = step.run if isinstance(step.run, str) else None
            if interpreter is None and on_host and _shebang(step.script) and not step.shell:
                fields["shell"] = ()
            return PlannedStep(
                kind="script", command=step.script, interpreter=interpreter, **fields
            )
        if step.run is None:
            command = container.command if container is not None and container.command else None
            return PlannedStep(kind="image", command=command, **fields)
        if isinstance(step.run, tuple) and len(step.run) > 1:
            return PlannedStep(kind="commands", command=step.run, **fields)
        if isinstance(step.run, tuple):  # one command: as if it were written alone
            return self.step(msgspec.structs.replace(step, run=step.run[0]), upstream, depends)
        kind: StepKind = "script" if "\n" in step.run.strip() else "command"
        if kind == "script" and on_host and _shebang(step.run) and not step.shell:
            fields["shell"] = ()
        return PlannedStep(kind=kind, command=step.run, **fields)

    def _direct(self, run: str | tuple[str, ...], fields: dict[str, Any]) -> PlannedStep:
        """``shell: direct``: one command is an argv (its words, templates each); several
        are split when they run (engine/commands.py). Validation refused what cannot split."""
        if isinstance(run, tuple) and len(run) > 1:
            return PlannedStep(kind="commands", command=run, **{**fields, "shell": (DIRECT,)})
        line = run if isinstance(run, str) else run[0]
        return PlannedStep(kind="argv", command=tuple(shlex.split(line)), **{**fields, "shell": ()})

    def _harness(self, step: Step, fields: dict[str, Any]) -> PlannedStep:
        chain = tuple(tries(merge_defaults(step.with_ or {}, self.dag.harness)))
        rendered: list[Try] = []
        error = None
        for options in chain:
            try:
                name = self.scope.shell(str(options.get("provider", "")))
                values = {
                    k: self.scope.shell(v) if isinstance(v, str) else v for k, v in options.items()
                }
            except ValueProblem as exc:  # the step fails with it when it runs, not the run now
                error = str(exc)
                break
            provider = self.providers.get(name)
            if provider is None:
                error = f'unknown provider "{name}"'
                break
            invocation = render(provider, values)
            rendered.append(Try(provider.name, invocation.argv, invocation.stdin))
        return PlannedStep(
            kind="harness", chain=chain, tries=tuple(rendered), error=error, **fields
        )


def _call(step: Step) -> Call:
    """A sub-DAG call: its DAG (a key of Plan.dags), params, and items when it fans out."""
    assert step.call is not None
    parallel = step.parallel
    if parallel is None:
        return Call(dag=step.call, params=step.params)
    return Call(step.call, step.params, parallel.items, parallel.max_concurrent)


def _repeat(policy: Any) -> RepeatPolicy | None:
    """Dagu's modes: ``repeat: while|until`` as written; ``true`` is ``while``; unset,
    a condition with ``expected`` is ``until``, a condition or exit codes alone ``while``."""
    if policy is None or policy.repeat is False:
        return None
    mode = policy.repeat
    if mode is None:
        if policy.condition is None and not policy.exit_code:
            return None
        mode = "until" if policy.condition is not None and policy.expected is not None else "while"
    condition = None
    if policy.condition is not None:
        condition = Condition(policy.condition, policy.expected)
    return RepeatPolicy(
        "while" if mode is True else mode,
        condition,
        policy.exit_code,
        policy.limit,
        policy.interval_sec,
        policy.backoff,
        policy.max_interval_sec,
    )


def _shebang(script: str) -> bool:
    """A script whose first line is ``#!...`` runs by that interpreter on the host unless the
    step names its own shell: the DAG's shell or the default does not stop it (as in Dagu)."""
    return script.startswith("#!")


def _convert(value: Any, kind: type[Any]) -> Any:
    return None if value is None else msgspec.convert(value, kind, from_attributes=True)


def _container(container: Container | None) -> ContainerConfig | None:
    config: ContainerConfig | None = _convert(container, ContainerConfig)
    return config


def _conditions(conditions: tuple[Any, ...]) -> tuple[Condition, ...]:
    return tuple(
        Condition(c.condition, c.expected, c.negate)
        if c.eval is None
        else Condition(c.eval, c.expected, c.negate, shell=True)
        for c in conditions
    )


def _work_dir(dag: Dag, file: Path, scope: Scope) -> Path:
    """The DAG's working_dir (its ${params.X} resolved, then $VAR and ~ from dagbox's
    environment; relative to the file's folder), else the file's folder (docs/format.md, D2)."""
    if dag.working_dir:
        return host_path(scope.shell(dag.working_dir), file.parent)
    return file.parent
