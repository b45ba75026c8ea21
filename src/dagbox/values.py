"""Dagu's ``${...}`` references (dagu-format.md §4.11), resolved against a scope.

``${params.X}`` and ``${env.X}`` are namespaced references; ``$X`` and ``${X}``
are plain ones. Who expands which depends on the field: a host ``run:`` line
gets only the namespaced ones (the shell sees the rest in its environment),
while harness ``with:`` values and container fields get both. A name the scope
does not know stays as written, so a later shell may still expand it, and
``\\${...}`` is an escape that leaves ``${...}`` for the shell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

_REFERENCE = re.compile(
    r"\\(?P<escaped>\$\{[^}]*\})"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_BACKTICKS = re.compile(r"`([^`]*)`")


def expand(
    text: str,
    params: Mapping[str, str],
    env: Mapping[str, str],
    *,
    plain: bool,
) -> str:
    """Resolve references in ``text``; with ``plain`` also ``$X``/``${X}`` from ``env``."""
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return match["escaped"]
        braced, bare = match["braced"], match["bare"]
        if braced is not None and "." in braced:
            space, _, name = braced.partition(".")
            table = params if space == "params" else env if space == "env" else None
            if table is not None and name in table:
                return table[name]
            if table is None and plain and space in env:
                found = _json_field(env[space], name.split("."))
                if found is not None:
                    return found
            return match[0]
        name = braced if braced is not None else bare
        if plain and name in env:
            return env[name]
        return match[0]

    return _REFERENCE.sub(replace, text)


def plain_names(text: str) -> list[str]:
    """The names of the plain references (``$X``, ``${X}``) in ``text``, in order."""
    if "$" not in text:
        return []
    return [
        m["braced"] or m["bare"]
        for m in _REFERENCE.finditer(text)
        if (m["braced"] and "." not in m["braced"]) or m["bare"]
    ]


def _json_field(document: str, keys: list[str]) -> str | None:
    """``${OUT.a.b}``: field ``a.b`` of an output that holds a JSON object."""
    try:
        value = json.loads(document)
    except ValueError:
        return None
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, str) else json.dumps(value)


async def substitute_commands(text: str, env: Mapping[str, str], cwd: str | None = None) -> str:
    """Replace each `` `command` `` with its trimmed stdout, as Dagu does in env values.

    Raises ValueError naming the command when it fails.
    """
    if "`" not in text:
        return text
    import anyio

    out: list[str] = []
    last = 0
    for match in _BACKTICKS.finditer(text):
        result = await anyio.run_process(
            ["sh", "-c", match[1]], env=dict(env), cwd=cwd, check=False
        )
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()
            raise ValueError(f"`{match[1]}` exited with {result.returncode}: {detail}")
        out += [text[last : match.start()], result.stdout.decode(errors="replace").rstrip("\n")]
        last = match.end()
    out.append(text[last:])
    return "".join(out)
