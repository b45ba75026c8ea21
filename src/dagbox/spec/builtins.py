"""The ``with:`` of the builtin actions dagbox runs itself (engine/builtins.py), checked
as Dagu checks them when the file loads; and why the other actions are refused
(docs/format.md, "Builtin actions")."""

from __future__ import annotations

import re
from typing import Any

from dagbox.spec.forms import kind
from dagbox.spec.issues import Sink

_BOOL = "a boolean"
_STR = "a string"
#: Per action: its keys, what each must be, and the ones it needs.
_KEYS: dict[str, dict[str, str]] = {
    "file.write": {
        "path": _STR,
        "content": _STR,
        "mode": _STR,
        "overwrite": _BOOL,
        "create_dirs": _BOOL,
        "atomic": _BOOL,
        "dry_run": _BOOL,
    },
    "file.read": {"path": _STR, "format": _STR, "max_bytes": "an integer"},
    "jq.filter": {"filter": _STR, "data": "any", "input": _STR, "raw": _BOOL},
}
_REQUIRED = {"file.write": ("path", "content"), "file.read": ("path",), "jq.filter": ("filter",)}
ACTIONS = frozenset(_KEYS)
_MODE = re.compile(r"^(0o|0O)?[0-7]{3,4}$")
_FILE_OPERATIONS = ("stat", "copy", "move", "delete", "mkdir", "list")


def check(action: str, options: dict[str, Any] | None, at: Sink) -> None:
    options = options or {}
    keys = _KEYS[action]
    if action == "jq.filter" and isinstance(options.get("filter"), list):
        at.error(
            'jq.filter takes one filter, not a list (action "jq" supports only one command)',
            "with",
            "filter",
        )
        return
    for key, value in options.items():
        wanted = keys.get(key)
        if wanted is None:
            at.error(
                f"{action} has no with.{key} (it takes {', '.join(keys)})", "with", key, at_key=True
            )
        elif wanted != "any" and kind(value) != wanted and not _reference(value, wanted):
            at.error(f"with.{key} of {action} must be {wanted}, not {kind(value)}", "with", key)
    for key in _REQUIRED[action]:
        if key not in options:
            at.error(
                f"{action} needs with.{key}", "with" if "with" in options or options else "action"
            )
    mode = options.get("mode")
    if isinstance(mode, str) and not _MODE.match(mode):
        at.error(f'invalid mode "{mode}": an octal mode such as "0644"', "with", "mode")
    if options.get("format", "raw") not in ("raw", "json"):
        at.error("with.format of file.read is raw or json", "with", "format")
    if action == "jq.filter" and "data" in options and "input" in options:
        at.error("jq.filter takes with.data or with.input, not both", "with", "input")
    filter_ = options.get("filter")
    if isinstance(filter_, str) and not filter_.strip():
        at.error("with.filter of jq.filter is empty", "with", "filter")


def _reference(value: Any, wanted: str) -> bool:
    """A string that a run resolves (``${MAX}``) where a number is wanted."""
    return wanted == "an integer" and isinstance(value, str) and "$" in value


def unsupported(action: str) -> str:
    """Why dagbox refuses ``action``, and what it runs instead."""
    supported = f"it runs shell commands, harness.run, dag.run, {', '.join(sorted(ACTIONS))}"
    if action == "template.render":
        return (
            'action "template.render" is not supported by dagbox: no kept Python library '
            "renders Go's text/template with the 147 functions Dagu allows faithfully enough "
            f"({supported}); render with a command instead"
        )
    if action.startswith("file.") and action[5:] in _FILE_OPERATIONS:
        return f'action "{action}" is not supported by dagbox yet ({supported})'
    return f'action "{action}" is not supported by dagbox ({supported})'
