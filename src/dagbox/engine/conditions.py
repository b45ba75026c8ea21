"""Preconditions: a command that must exit 0, or a value that must match (docs/format.md)."""

from __future__ import annotations

from collections.abc import Mapping

from dagbox.engine.context import Context, StepError, exported, make_working_dir
from dagbox.plan import Condition
from dagbox.regex import regex_of
from dagbox.runtimes.helpers import capture


async def all_met(
    ctx: Context, conditions: tuple[Condition, ...], env: Mapping[str, str], cwd: str
) -> bool:
    """All conditions met (an AND). Each is evaluated, in order, even after one is not met
    (as Dagu does: their side effects happen), in ``cwd`` (the step's working directory).
    Raises StepError if one cannot be evaluated."""
    scope = {**ctx.host_env, **env}
    if conditions:
        make_working_dir(cwd)
    met = True
    for condition in conditions:
        if await _met(ctx, condition, scope, cwd) == condition.negate:
            met = False
    return met


async def _met(ctx: Context, condition: Condition, env: Mapping[str, str], cwd: str) -> bool:
    scope = ctx.scope(env)
    if condition.expected is None:  # a command: ${params.X} pasted, as in a run: line
        text = scope.shell(condition.condition)
        limit = ctx.plan.max_output_size
        return (
            await capture(text, {**exported(env, ctx.hidden), **ctx.marks}, cwd, limit)
        ).code == 0
    if not condition.shell:  # Dagu 2.x: a value's references resolve; $(...) is text
        return _matches(scope.value(condition.condition), condition.expected)
    try:
        value = await expanded_by_shell(ctx, condition.condition, env, cwd)
    except ValueError as exc:
        raise StepError(f"cannot evaluate precondition {condition.condition!r}: {exc}") from None
    return _matches(value, condition.expected)


async def expanded_by_shell(ctx: Context, text: str, env: Mapping[str, str], cwd: str) -> str:
    """``text`` as ``eval:`` means it (Dagu 2.x): each ``$(cmd)`` and `` `cmd` `` in it run by
    a shell, its trimmed stdout in its place, and the references around them resolved.
    A command gets ``${params.X}`` and ``${OUT.a}`` through its environment (pasted only
    inside single quotes, where the shell would not expand them, and only when the value
    holds no quote), so a value is read as text, never run as code. Raises ValueError
    naming a command that fails."""
    scope = ctx.scope(env)
    out: list[str] = []
    last = 0
    for start, end, command in substitutions(text):
        out.append(scope.value(text[last:start]))
        values: dict[str, str] = {}
        script = scope.shell(command, into=values)
        limit = ctx.plan.max_output_size
        result = await capture(
            script, {**exported(env, ctx.hidden), **values, **ctx.marks}, cwd, limit
        )
        if result.code != 0:
            detail = result.stderr.decode(errors="replace").strip()
            raise ValueError(f"`{command}` exited with {result.code}: {detail}".rstrip(": "))
        out.append(result.stdout.decode(errors="replace").rstrip("\n"))
        last = end
    out.append(scope.value(text[last:]))
    return "".join(out)


def substitutions(text: str) -> list[tuple[int, int, str]]:
    """Where ``text`` has `` `cmd` `` or ``$(cmd)`` (nested parentheses and quotes counted;
    not ``$((`` arithmetic, nor after a backslash): (start, end, cmd)."""
    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(text):
        escaped = text[i - 1 : i] == "\\"
        if text[i] == "`" and not escaped:
            end = text.find("`", i + 1)
            if end < 0:
                break
            found.append((i, end + 1, text[i + 1 : end]))
            i = end + 1
        elif text.startswith("$(", i) and not text.startswith("$((", i) and not escaped:
            close = _closing_paren(text, i + 2)
            if close is None:
                break
            found.append((i, close + 1, text[i + 2 : close]))
            i = close + 1
        else:
            i += 1
    return found


def _closing_paren(text: str, start: int) -> int | None:
    depth, quote = 0, ""
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return i
            depth -= 1
    return None


def _matches(value: str, expected: str) -> bool:
    """``value`` is ``expected`` (trimmed, or one of its lines), or has a line that
    matches ``re:PATTERN``."""
    lines = value.split("\n")
    pattern = regex_of(expected)
    if pattern is not None:
        return any(pattern.search(line) for line in lines)
    return value.strip() == expected or expected in lines
