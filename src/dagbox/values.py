"""Dagu's ``${...}`` references (dagu-format.md §4.11), resolved against a scope.

``${params.X}`` and ``${env.X}`` are namespaced references; ``$X`` and ``${X}``
are plain ones. Who expands which depends on the field: a host ``run:`` line
gets only the namespaced ones (the shell sees the rest in its environment),
while harness ``with:`` values and container fields get both. A name the scope
does not know stays as written, so a later shell may still expand it, and
``\\${...}`` is an escape that leaves ``${...}`` for the shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(
    r"\\(?P<escaped>\$\{[^}]*\})"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


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
            return match[0]
        name = braced if braced is not None else bare
        if plain and name in env:
            return env[name]
        return match[0]

    return _REFERENCE.sub(replace, text)
