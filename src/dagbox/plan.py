"""From a loaded DAG to what will run: order, dependencies, runtime and argv per step.

Pure. ``dagbox dry-run`` prints a Plan; the engine will run one. A step's
runtime is decided here, once: its own container (``step``: a fresh container
per attempt; ``exec``: an existing named container), else the DAG's root
container (``root``, or ``exec`` when it names an existing container), else
the ``host``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from dagbox.harness.argv import merge_defaults, render, tries
from dagbox.harness.catalog import registry
from dagbox.spec.model import Container, Dag, Step
from dagbox.values import expand

Runtime = Literal["host", "root", "step", "exec"]


class Try(msgspec.Struct, frozen=True, omit_defaults=True):
    """One provider invocation of a harness attempt (primary, then each fallback)."""

    provider: str
    argv: tuple[str, ...]
    stdin: str | None = None


class PlannedStep(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    runtime: Runtime
    kind: Literal["command", "script", "argv", "harness", "image"]
    depends: tuple[str, ...] = ()
    id: str | None = None
    image: str | None = None
    container: str | None = None  # the named container of exec mode
    command: str | tuple[str, ...] | None = None
    tries: tuple[Try, ...] = ()
    error: str | None = None  # a problem that will fail the step when it runs


class Plan(msgspec.Struct, frozen=True, omit_defaults=True):
    dag: str
    type: str
    max_active_steps: int
    steps: tuple[PlannedStep, ...]
    handlers: dict[str, PlannedStep] = msgspec.field(default_factory=dict)
    params: dict[str, str] = msgspec.field(default_factory=dict)


def params_of(dag: Dag, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Param values: defaults from the file, then ``overrides`` by name."""
    values = {p.name: p.default or "" for p in dag.params}
    values.update(overrides or {})
    return values


def dispatch_order(dag: Dag) -> list[tuple[Step, tuple[str, ...]]]:
    """Steps in the order they become ready, with their dependencies resolved to names.

    Ready steps queue first-in first-out, and steps that become ready at the
    same moment queue in file order: the order Dagu dispatches them in with
    ``max_active_steps: 1``.
    """
    steps = dag.steps
    by_key: dict[str, int] = {}
    for i, step in enumerate(steps):
        for key in (step.id, step.name):
            if key is not None:
                by_key.setdefault(key, i)
    deps: list[list[int]] = []
    for i, step in enumerate(steps):
        if dag.type == "chain":
            deps.append([i - 1] if i else [])
        else:
            deps.append(sorted({by_key[d] for d in step.depends or () if d in by_key}))
    waiting = [len(d) for d in deps]
    dependents: list[list[int]] = [[] for _ in steps]
    for i, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(i)
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    order: list[tuple[Step, tuple[str, ...]]] = []
    while ready:
        i = ready.popleft()
        order.append((steps[i], tuple(steps[d].key for d in deps[i])))
        for j in sorted(dependents[i]):
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    return order


def runtime_of(step: Step, root: Container | None) -> tuple[Runtime, Container | None]:
    """Where ``step`` runs, and the container configuration that applies to it."""
    container = step.container or root
    if container is None:
        return "host", None
    if container.exec is not None:
        return "exec", container
    return ("step" if step.container is not None else "root"), container


def plan_step(
    dag: Dag, step: Step, depends: tuple[str, ...], params: Mapping[str, str]
) -> PlannedStep:
    runtime, container = runtime_of(step, dag.container)
    fields: dict[str, Any] = {
        "name": step.key,
        "id": step.id,
        "runtime": runtime,
        "depends": depends,
        "image": container.image if container else None,
        "container": container.exec if container else None,
    }
    if step.action is not None:
        options = merge_defaults(step.with_ or {}, dag.harness)
        providers = registry(dag.harnesses)
        planned: list[Try] = []
        error = None
        for opts in tries(options):
            name = expand(str(opts.get("provider", "")), params, {}, plain=False)
            provider = providers.get(name)
            if provider is None:
                error = f'unknown provider "{name}"'
                break
            resolved = {
                k: expand(v, params, {}, plain=False) if isinstance(v, str) else v
                for k, v in opts.items()
            }
            invocation = render(provider, resolved)
            planned.append(Try(provider.name, invocation.argv, invocation.stdin))
        return PlannedStep(kind="harness", tries=tuple(planned), error=error, **fields)
    if step.script is not None:
        return PlannedStep(kind="script", command=step.script, **fields)
    if step.run is None:
        command = container.command if container is not None and container.command else None
        return PlannedStep(kind="image", command=command, **fields)
    if isinstance(step.run, tuple):
        return PlannedStep(kind="argv", command=step.run, **fields)
    if "\n" in step.run.strip():
        return PlannedStep(kind="script", command=step.run, **fields)
    return PlannedStep(kind="command", command=step.run, **fields)


def build(dag: Dag, overrides: Mapping[str, str] | None = None) -> Plan:
    params = params_of(dag, overrides)
    steps = tuple(plan_step(dag, s, deps, params) for s, deps in dispatch_order(dag))
    handlers = {
        name: plan_step(dag, step, (), params)
        for name in ("init", "success", "failure", "abort", "exit")
        if (step := getattr(dag.handler_on, name)) is not None
    }
    return Plan(
        dag=dag.name or "",
        type=dag.type,
        max_active_steps=dag.max_active_steps,
        steps=steps,
        handlers=handlers,
        params=params,
    )
