"""A step's attempts: tried again after a failure (``retry_policy``), and run again while
or until something holds (``repeat_policy``), as Dagu does: retries come first, and each
repetition is a fresh attempt (for an agent step, a fresh attempt in its journal)."""

from __future__ import annotations

import anyio

from dagbox.engine.attempt import Attempt, Attempts
from dagbox.engine.conditions import all_met
from dagbox.engine.context import Context
from dagbox.engine.env import cwd
from dagbox.engine.events import StepRetrying
from dagbox.engine.retry import backoff_delay, retry_delay, retry_limit, whole_number
from dagbox.engine.state import StepRun


async def repeated(ctx: Context, attempts: Attempts, run: StepRun, env: dict[str, str]) -> Attempt:
    """The step's last attempt, once no retry and no repetition is due."""
    policy = run.step.repeat_policy
    done = 0
    while True:
        result = await retried(ctx, attempts, run, env)
        done += 1
        if policy is None or result.timed_out or result.failed_early:
            return result
        scope = ctx.scope(env)
        limit = whole_number(policy.limit, scope, "repeat_policy")
        if limit and done >= limit:
            return result
        if policy.condition is not None:
            # The condition sees what the step gave: its output, as its dependents will.
            seen = {**env, **result.published(run.step, run.name)}
            met = await all_met(ctx, (policy.condition,), seen, cwd(ctx, run, env))
            again = met if policy.mode == "while" else not met
        elif policy.exit_code:
            listed = result.exit.code in policy.exit_code
            again = listed if policy.mode == "while" else not listed
        else:
            succeeded = result.exit.code == 0
            again = succeeded if policy.mode == "while" else not succeeded
        if not again:
            return result
        await anyio.sleep(backoff_delay(policy, done, scope, "repeat_policy"))


async def _in_a_slot(
    ctx: Context, attempts: Attempts, run: StepRun, env: dict[str, str]
) -> Attempt:
    """One attempt, in a slot of the budget a tree of runs shares (docs/format.md, "How many
    run at once"): taken for the attempt, not for the waits between attempts, so that a step
    that waits to repeat does not hold up the step it waits for. A call holds none."""
    slots = ctx.options.slots
    if slots is None or run.step.kind == "call":
        return await attempts.run(run, env)
    async with slots:
        return await attempts.run(run, env)


async def retried(ctx: Context, attempts: Attempts, run: StepRun, env: dict[str, str]) -> Attempt:
    """Attempts until one succeeds, or the retry policy gives up."""
    policy = run.step.retry_policy
    scope = ctx.scope(env)
    limit = retry_limit(policy, scope)
    retries = 0
    while True:
        run.attempts += 1
        result = await _in_a_slot(ctx, attempts, run, env)
        if result.timed_out or result.exit.code == 0 or result.failed_early:
            return result
        if policy is None or retries >= limit:
            return result
        if policy.exit_code and result.exit.code not in policy.exit_code:
            return result
        retries += 1
        delay = retry_delay(policy, retries, scope)
        run.status = "retrying"
        ctx.emit(
            StepRetrying(
                run_id=ctx.run_id,
                step=run.name,
                attempt=run.attempts,
                exit_code=result.exit.code,
                delay_sec=delay,
            )
        )
        await anyio.sleep(delay)  # the step keeps its slot while it waits (as Dagu)
