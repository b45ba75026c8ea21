"""Dagu 2.x's ``defaults:``: keys every step gets unless it sets them itself.

Applied to the file's steps before they are read, so each step is checked as if it
had written the key: a step's own key wins (even ``0`` or ``false``); ``env`` and
``preconditions`` add up, the defaults' first (a step's ``env`` entry wins on a name).
"""

from __future__ import annotations

from typing import Any

from dagbox.spec.build import snake
from dagbox.spec.forms import kind
from dagbox.spec.issues import Sink

#: The keys ``defaults:`` may give (Dagu's list; ``mail_on_error`` only matters to a server).
KEYS = frozenset(
    {"continue_on", "retry_policy", "repeat_policy", "timeout_sec", "signal_on_stop", "env",
     "preconditions", "mail_on_error"}
)  # fmt: skip
_ADDED = ("env", "preconditions")


def apply(raw: Any, sink: Sink) -> Any:
    """``raw`` (the file's mapping) with ``defaults`` merged into each step, and removed."""
    if not isinstance(raw, dict) or "defaults" not in raw:
        return raw
    raw = dict(raw)
    given = raw.pop("defaults")
    if given is None:
        return raw
    if not isinstance(given, dict):
        sink.error(f"defaults must be a mapping of step keys, not {kind(given)}", "defaults")
        return raw
    usable = {}
    for key, value in given.items():
        name = snake(key) if isinstance(key, str) else key
        if name not in KEYS:
            sink.error(
                f'"{key}" cannot be a default (defaults take {", ".join(sorted(KEYS))})',
                "defaults",
                key,
                at_key=True,
            )
        elif name != "mail_on_error":
            usable[name] = value
    steps = raw.get("steps")
    if isinstance(steps, list):
        raw["steps"] = [_merged(step, usable) for step in steps]
    elif isinstance(steps, dict):  # name -> step
        raw["steps"] = {name: _merged(step, usable) for name, step in steps.items()}
    for key in ("handler_on", "handlerOn"):  # handlers too, as in Dagu
        if isinstance(raw.get(key), dict):
            raw[key] = {name: _merged(step, usable) for name, step in raw[key].items()}
    return raw


def _merged(step: Any, defaults: dict[str, Any]) -> Any:
    if isinstance(step, str):  # a bare command
        step = {"command": step}
    if not isinstance(step, dict):
        return step
    own = {snake(k): k for k in step if isinstance(k, str)}
    out = dict(step)
    for name, value in defaults.items():
        key = own.get(name, own.get("precondition") if name == "preconditions" else None)
        if key is None:
            out[name] = value
        elif name in _ADDED:
            out[key] = _as_list(value) + _as_list(step[key])
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and not {"condition", "eval", "expected"} & set(value):
        return [{k: v} for k, v in value.items()]  # an env mapping
    return [value]
