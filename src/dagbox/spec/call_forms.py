"""The document forms of a sub-DAG call: ``action: dag.run`` (``call:``), its ``params``
and ``parallel`` (docs/format.md, "Sub-DAGs"), normalised as Dagu 2.x reads them."""

from __future__ import annotations

from typing import Any

import msgspec

from dagbox.params import ParamsTextError, parse_params_text
from dagbox.plan import DEFAULT_MAX_CONCURRENT, MAX_ITEMS
from dagbox.spec.forms import INVALID, Context, Form, _named_params, _param_pairs, kind, scalar_text
from dagbox.spec.issues import Sink

DAG_RUN = "dag.run"


class Parallel(msgspec.Struct, frozen=True):
    """A fan-out: one child run per item. ``items`` as written (scalars as text, flat
    objects with text values), or a template whose value is the list."""

    items: tuple[str | dict[str, str], ...] | str
    max_concurrent: int = DEFAULT_MAX_CONCURRENT


def call_params(value: Any, sink: Sink, ctx: Context | None = None) -> Any:
    """``params`` of a call: a string (``A=1 B="x y"``, positional words), a mapping (sorted
    by name, as Dagu), or a list of ``NAME=value`` strings and mappings -> (name or None for
    a positional one, value) pairs."""
    if value is None:
        return None
    if isinstance(value, str):  # split once its references are resolved (${ITEM} may be "A=1 B=2")
        try:
            parse_params_text(value)
        except ParamsTextError as exc:
            sink.error(str(exc))
            return INVALID
        return value
    pairs = _param_pairs(value, sink)
    if pairs is None:
        return INVALID
    named = {name for name, _, _ in _named_params(pairs, sink)}  # reports bad names
    return tuple((name, text or "") for name, text, _, _ in pairs if name is None or name in named)


CALL_PARAMS = Form(
    call_params,
    {
        "description": "Params for the sub-DAG: 'A=1 B=2', a mapping, or a list of 'K=V' "
        "strings and mappings. ${ITEM} is each item of a fan-out.",
        "anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
    },
)


def parallel(value: Any, sink: Sink, ctx: Context) -> Any:
    """``parallel:``: a list of items, a template (``${params.items}``), or ``{items,
    max_concurrent}``."""
    if value is None:
        return None
    if isinstance(value, dict):
        for key in value:
            if key not in ("items", "max_concurrent"):
                sink.error(f'unknown parallel field "{key}"', key, at_key=True)
        if "items" not in value:
            sink.error("parallel needs items: a list, or a reference to one")
            return INVALID
        limit = value.get("max_concurrent", DEFAULT_MAX_CONCURRENT)
        if not isinstance(limit, int) or isinstance(limit, bool):
            sink.error(
                f"parallel.max_concurrent must be an integer, not {kind(limit)}", "max_concurrent"
            )
            return INVALID
        if not 1 <= limit <= MAX_ITEMS:
            sink.error(
                f"parallel.max_concurrent must be an integer from 1 through {MAX_ITEMS}, not {limit}",
                "max_concurrent",
            )
            return INVALID
        items = _items(value["items"], sink.at("items"))
        return INVALID if items is INVALID else Parallel(items, limit)
    items = _items(value, sink)
    return INVALID if items is INVALID else Parallel(items)


def _items(value: Any, sink: Sink) -> Any:
    if isinstance(value, str):
        if not value.strip():
            sink.error("parallel items are a list, or a reference to one, not an empty string")
            return INVALID
        return value
    if not isinstance(value, list):
        sink.error(f"parallel items are a list, or a reference to one, not {kind(value)}")
        return INVALID
    if not value:
        sink.error("parallel needs at least one item")
        return INVALID
    if len(value) > MAX_ITEMS:
        sink.error(f"parallel takes at most {MAX_ITEMS} items, not {len(value)}")
        return INVALID
    out: list[str | dict[str, str]] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            fields: dict[str, str] = {}
            for key, field in item.items():
                text = scalar_text(field)
                if field is None or text is None:
                    sink.error(
                        "the values of an item are strings, numbers or booleans, "
                        f"not {kind(field)} (key {key})",
                        i,
                        key,
                    )
                    continue
                fields[str(key)] = text
            out.append(fields)
        elif isinstance(item, bool) or item is None or scalar_text(item) is None:
            sink.error(f"parallel items are strings, numbers or flat mappings, not {kind(item)}", i)
        else:
            out.append(scalar_text(item) or "")
    return tuple(out)


PARALLEL = Form(
    parallel,
    {
        "description": "Run the sub-DAG once per item: a list (strings, numbers, flat "
        "mappings), a reference to a JSON list, or {items, max_concurrent} (default 10).",
        "anyOf": [
            {"type": "string"},
            {"type": "array"},
            {
                "type": "object",
                "properties": {
                    "items": {"anyOf": [{"type": "string"}, {"type": "array"}]},
                    "max_concurrent": {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS},
                },
                "required": ["items"],
                "additionalProperties": False,
            },
        ],
    },
)


def dag_run(step: Any, sink: Sink) -> None:
    """``action: dag.run`` with ``with: {dag, params}`` -> the step's ``call`` and
    ``params``: one form for the rest to read (Dagu rewrites it the same way)."""
    if step.action != DAG_RUN:
        return
    if step.call is not None:
        sink.error('action cannot be used together with "call"', "call", at_key=True)
    if step.params is not None:
        sink.error(
            "with action: dag.run, params go in with: (with: {dag, params})", "params", at_key=True
        )
    options = step.with_ if isinstance(step.with_, dict) else {}
    if step.with_ is not None and not isinstance(step.with_, dict):
        sink.error(f"with must be a mapping, not {kind(step.with_)}", "with")
    for key in options:
        if key not in ("dag", "params"):
            sink.error(f"dag.run does not support with.{key}", "with", key, at_key=True)
    name = options.get("dag")
    if not isinstance(name, str) or not name.strip():
        sink.error("dag.run needs with.dag: the name of the DAG to run", "with")
        name = None
    params = call_params(options.get("params"), sink.at("with", "params"))
    step.action, step.with_ = None, None
    step.call = name.strip() if name else None
    step.params = None if params is INVALID else params
