"""The environment of a run and of each step's process (docs/format.md, "Values")."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from dagbox.engine.context import Context, StepError
from dagbox.engine.state import StepRun
from dagbox.values import evaluate


async def dag_env(ctx: Context) -> dict[str, str]:
    """Params (exported by name) and the DAG's env, evaluated in order."""
    scope = {k: v for k, v in ctx.params.items() if not k.isdigit()}
    for name, raw in ctx.plan.env:
        scope[name] = await value(ctx, name, raw, {**ctx.host_env, **scope})
    return scope


async def value(ctx: Context, name: str, raw: str, scope: Mapping[str, str]) -> str:
    """An env value, evaluated; a secret-named one is a secret from here on, so that
    no later error (a failing backtick in the next line, say) can show it."""
    try:
        result = await evaluate(
            raw, ctx.params, scope, str(ctx.work_dir), ctx.marks, ctx.plan.consts
        )
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
    """A step's process env: params, DAG env (``base``), ``outputs``, step env and run
    variables.

    On the host these overlay dagbox's own environment. In a container they
    overlay the container's env instead, and host paths stay out (docs/format.md, D3).
    """
    on_host = run.step.runtime == "host"
    env = {**ctx.host_env, **base} if on_host else dict(base)
    env.update(outputs)
    for name, raw in run.step.env:
        env[name] = await value(ctx, name, raw, {**ctx.host_env, **env})
    env.update(
        {
            "DAG_NAME": ctx.plan.dag,
            "DAG_RUN_ID": ctx.run_id,
            "DAG_RUN_STEP_NAME": run.name,
            "DAG_PARAMS_JSON": json.dumps(ctx.params),
        }
    )
    if on_host:
        env.update({"DAG_RUN_WORK_DIR": str(ctx.work_dir), "PWD": cwd(ctx, run, env)})
        if ctx.layout is not None:
            env["DAG_RUN_LOG_FILE"] = str(ctx.layout.events)
    env.update(extra)
    return env


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
        queue.extend(dep.deps)
    return out


def cwd(ctx: Context, run: StepRun, env: Mapping[str, str]) -> str:
    """Where a step runs: its ``working_dir`` (relative to the run's), else the run's."""
    if run.step.working_dir:
        path = Path(ctx.scope(env).value(run.step.working_dir)).expanduser()
        return str(path if path.is_absolute() else ctx.work_dir / path)
    return str(ctx.work_dir)
