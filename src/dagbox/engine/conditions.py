"""Preconditions: a command that must exit 0, or a value that must match (docs/format.md)."""

from __future__ import annotations

from collections.abc import Mapping

from dagbox.engine.context import Context, StepError
from dagbox.plan import Condition
from dagbox.regex import regex_of
from dagbox.runtimes.helpers import capture


async def all_met(ctx: Context, conditions: tuple[Condition, ...], env: Mapping[str, str]) -> bool:
    """All conditions met (an AND). Each is evaluated, in order, even after one is not met
    (as Dagu does: their side effects happen). Raises StepError if one cannot be evaluated."""
    scope = {**ctx.host_env, **env}
    met = True
    for condition in conditions:
        if await _met(ctx, condition, scope) == condition.negate:
            met = False
    return met


async def _met(ctx: Context, condition: Condition, env: Mapping[str, str]) -> bool:
    cwd = str(ctx.work_dir)
    limit = ctx.plan.max_output_size
    scope = ctx.scope(env)
    if condition.expected is None:  # a command: ${params.X} pasted, as in a run: line
        text = scope.shell(condition.condition)
        return (await capture(text, {**env, **ctx.marks}, cwd, limit)).code == 0
    # A value, evaluated by an unquoted here-document: the shell expands $X, $(cmd) and
    # `cmd` written in the text, without the quoting pitfalls of a printf command line.
    # What dagbox resolves itself (${params.X}, ${OUT.a.b}) reaches the shell through
    # its environment, so a value is read as text, never run as code.
    values: dict[str, str] = {}
    text = scope.shell(condition.condition, into=values)
    script = f"cat <<__DAGBOX_EOF__\n{text}\n__DAGBOX_EOF__\n"
    result = await capture(script, {**env, **values, **ctx.marks}, cwd, limit)
    if result.code != 0:
        raise StepError(
            f"cannot evaluate precondition {condition.condition!r}: "
            + result.stderr.decode(errors="replace").strip()
        )
    value = result.stdout.decode(errors="replace").rstrip("\n")
    expected, lines = condition.expected, value.split("\n")
    pattern = regex_of(expected)
    if pattern is not None:
        return any(pattern.search(line) for line in lines)
    return value.strip() == expected or expected in lines
