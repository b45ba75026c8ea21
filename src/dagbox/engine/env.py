"""The environment of a run and of each step's process (docs/format.md, "Values")."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import msgspec

from dagbox.engine.conditions import expanded_by_shell
from dagbox.engine.containers import CONTAINER_ARTIFACTS
from dagbox.engine.context import Context, StepError
from dagbox.engine.state import StepRun
from dagbox.plan import Plan
from dagbox.values import params_json


async def evaluate_params(ctx: Context) -> str | None:
    """Give the params that have an ``eval:`` their value, expanded by a shell, in order
    (each may use the params before it; a failure falls back to the param's default, as
    Dagu): ``ctx.plan`` is replaced by one with them. Why one has no value, if one has
    none (the run then fails before any step)."""
    for name, text in ctx.plan.evals.items():
        params = dict(ctx.params)
        env = {**ctx.host_env, **{k: v for k, v in params.items() if not k.isdigit()}}
        try:
            ctx.work_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            params[name] = await expanded_by_shell(ctx, text, env, str(ctx.work_dir))
        except (OSError, ValueError) as exc:
            if name not in params:
                return f'parameter "{name}" eval failed: {exc}'
        ctx.secrets.learn({name: params[name]})
        ctx.plan = msgspec.structs.replace(ctx.plan, params=params)
    return None


async def dag_env(ctx: Context) -> dict[str, str]:
    """Params (exported by name) and the DAG's env, evaluated in order."""
    scope = {**ctx.references, **{k: v for k, v in ctx.params.items() if not k.isdigit()}}
    for name, raw in ctx.plan.env:
        scope[name] = value(ctx, name, raw, {**ctx.host_env, **scope})
    scope.update(_dotenv(ctx, scope))
    scope.update(_secrets(ctx, scope))
    return scope


def _found(ctx: Context, path: str) -> Path | None:
    """``path`` as given, else in the run's working directory, else beside the DAG file."""
    given = Path(path).expanduser()
    if given.is_absolute():
        return given if given.is_file() else None
    for base in (ctx.work_dir, Path(ctx.plan.file).parent):
        if (base / given).is_file():
            return base / given
    return None


def _dotenv(ctx: Context, scope: Mapping[str, str]) -> dict[str, str]:
    """The dotenv files' variables (``.env``, then the DAG's list), later files winning;
    a file that is not there is skipped, as in Dagu."""
    out: dict[str, str] = {}
    for template in ctx.plan.dotenv:
        path = _found(ctx, ctx.scope({**ctx.host_env, **scope}).value(template))
        if path is None:
            continue
        from dotenv import dotenv_values  # only runs that have one pay for the import

        try:
            read = dotenv_values(path, interpolate=False)
        except (OSError, UnicodeDecodeError) as exc:
            raise StepError(f"cannot read the dotenv file {path}: {exc}") from None
        out.update({k: v for k, v in read.items() if v is not None})
    ctx.secrets.learn(out)
    return out


def _secrets(ctx: Context, scope: Mapping[str, str]) -> dict[str, str]:
    """``secrets:``: each value a secret whatever its name, masked everywhere from here
    on. An ``env`` secret's source variable stays out of the steps' environment."""
    out: dict[str, str] = {}
    for name, provider, key in ctx.plan.secrets:
        if provider == "env":
            found = scope.get(key, ctx.host_env.get(key))
            if found is None:
                raise StepError(f"secret {name}: the variable {key} is not set")
            ctx.hidden.add(key)
            out[key] = ""  # the source is not the steps' (set empty over the DAG's env)
        else:
            path = _found(ctx, key)
            if path is None:
                raise StepError(f"secret {name}: no file {key}")
            try:
                found = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise StepError(f"secret {name}: cannot read {path}: {exc}") from None
        ctx.secrets.add(name, found)
        if found.rstrip("\r\n") != found:  # a file's last newline: the value a shell sees
            ctx.secrets.add(name, found.rstrip("\r\n"))
        out[name] = found
    return out


def value(ctx: Context, name: str, raw: str, scope: Mapping[str, str]) -> str:
    """An env value, its references resolved (a backtick is text, as in Dagu 2.x: only a
    param's or a precondition's ``eval:`` runs commands); a secret-named one is a secret
    from here on, so that no later error can show it."""
    try:
        result = ctx.scope(scope).value(raw)
    except ValueError as exc:
        raise StepError(f"env {name}: cannot evaluate {raw!r}: {exc}") from None
    ctx.secrets.learn({name: result})
    return result


async def step_env(
    ctx: Context,
    run: StepRun,
    base: Mapping[str, str],
    outputs: Mapping[str, str],
    extra: Mapping[str, str],
) -> dict[str, str]:
    """A step's process env: params, DAG env (``base``), ``outputs``, run variables, then
    the step's env, which may read the run variables and set its own (as Dagu 2.x: the
    DAG's env cannot override a run variable, a step's env can).

    On the host these overlay dagbox's own environment. In a container they
    overlay the container's env instead, and host paths stay out (docs/format.md, D3).
    """
    on_host = run.step.runtime == "host"
    host = {k: v for k, v in ctx.host_env.items() if k not in ctx.hidden}
    # A step dagbox runs itself (a call, a builtin action) has no process to hand dagbox's
    # environment to: its values read the DAG's, as Dagu's actions do.
    inherits = on_host and run.step.kind not in ("call", "builtin")
    env = {**host, **base} if inherits else dict(base)
    env.update(outputs)
    env.update({"context.step.name": run.name, "step.name": run.name})
    if run.step.id is not None:
        env["context.step.id"] = run.step.id
    if "DAG_RUN_STATUS" in extra:  # a handler
        env["context.run.status"] = extra["DAG_RUN_STATUS"]
    env.update({"DAG_NAME": ctx.plan.dag, "DAG_RUN_ID": ctx.run_id, "DAG_RUN_STEP_NAME": run.name})
    payload = params_json(ctx.params)
    if payload is not None:
        env["DAG_PARAMS_JSON"] = payload
    if on_host:
        env["DAG_RUN_WORK_DIR"] = str(ctx.run_dir)
        if ctx.layout is not None:
            env["DAG_RUN_LOG_FILE"] = str(ctx.layout.events)
    artifacts = ctx.artifacts_dir
    if artifacts is not None and run.step.runtime != "exec":  # mounted, in a container
        env["DAG_RUN_ARTIFACTS_DIR"] = str(artifacts) if on_host else CONTAINER_ARTIFACTS
        env["context.paths.artifacts_dir"] = env["DAG_RUN_ARTIFACTS_DIR"]
    env.update(extra)
    for name, raw in run.step.env:
        env[name] = value(ctx, name, raw, {**ctx.host_env, **env})
    if on_host:
        env["PWD"] = cwd(ctx, run, env)
    return env


def secret_keys(document: str) -> dict[str, str]:
    """The keys of an output object (JSON) with their values as text: for ``learn``,
    which keeps those named like secrets."""
    try:
        found = json.loads(document)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in found.items()}


def passes_values(plan: Plan) -> bool:
    """A step of ``plan`` gives its dependents values: ``output:``, ``outputs:``, or a
    property a reference names (``${ID.stdout}``). Finding a step's ancestors costs,
    so a run without any does not."""
    if any(s.output or s.outputs or s.output_object or s.stdout_outputs for s in plan.steps):
        return True
    text = msgspec.json.encode(plan)
    return any(m in text for m in (b".stdout}", b".stderr}", b".exit_code}", b".exitCode}"))


def ancestor_outputs(run: StepRun) -> dict[str, str]:
    """Outputs of every step ``run`` depends on, directly or not (later in BFS wins)."""
    out: dict[str, str] = {}
    seen: set[int] = set()
    queue = deque(run.deps)
    while queue:
        dep = queue.popleft()
        if id(dep) in seen:
            continue
        seen.add(id(dep))
        out.update(dep.outputs)
        out.update(dep.references)
        queue.extend(dep.deps)
    return out


def cwd(ctx: Context, run: StepRun, env: Mapping[str, str]) -> str:
    """Where a step runs: its ``working_dir`` (relative to the run's), else the run's."""
    if run.step.working_dir:
        path = Path(ctx.scope(env).value(run.step.working_dir)).expanduser()
        return str(path if path.is_absolute() else ctx.work_dir / path)
    return str(ctx.work_dir)
