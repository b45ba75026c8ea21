"""Warnings for files that look written for Dagu 1.x and rely on a meaning 2.x changed.

dagbox follows Dagu 2.x (docs/format.md, "Dagu 1.x traps"). A file in 1.x's spelling
still loads, but where 1.x meant something else the run would silently differ, so
``validate`` and ``run`` say so, with what to write instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dagbox.spec.issues import Sink
from dagbox.spec.model import Dag

_CAMEL = re.compile(r"^[a-z]+[A-Z]")


def warn(dag: Dag, raw: Any, path: Path, sink: Sink) -> None:
    if not isinstance(raw, dict):
        return
    steps = raw.get("steps")
    listed = steps if isinstance(steps, list) else []
    if (
        camel_case(raw, listed)
        and "type" not in raw
        and len(dag.steps) > 1
        and all(step.depends is None for step in dag.steps)
    ):
        sink.warn(
            "this file looks written for Dagu 1.x (camelCase keys), which ran steps without "
            "depends one after another in file order; Dagu 2.x and dagbox run them at the "
            "same time: add type: chain to keep the order (or depends to each step)",
            "steps",
            at_key=True,
        )


def camel_case(raw: dict[str, Any], steps: list[Any]) -> bool:
    mappings = [raw, *(s for s in steps if isinstance(s, dict))]
    return any(isinstance(k, str) and _CAMEL.match(k) for m in mappings for k in m)
