"""A step that runs another DAG: once, or once per item of a fan-out (docs/format.md,
"Sub-DAGs").

Each child is a run of its own, run by the ChildRuns the runner gives (its record, its
sinks, its containers). This module decides what each child gets (its plan and params,
``${ITEM}`` resolved) and what the step gives back, as Dagu does: its stdout is the
child's result object, or for a fan-out the aggregate ``{summary, results, outputs}``,
as indented JSON, so ``output:`` and ``${OUT.outputs.KEY}`` read it as in Dagu.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dagbox.engine.context import Context, Parent
from dagbox.engine.output import OutputRouter
from dagbox.engine.state import RunResult, StepRun
from dagbox.params import PARAM_NAME, ParamsTextError, numbered, parse_params_text
from dagbox.plan import MAX_ITEMS, Call, Plan, host_path, item_text
from dagbox.runtimes import Exit
from dagbox.values import Scope, ValueProblem

#: How deep calls may nest at run time (validate refuses a circle of calls; a plan read
#: from JSON is not validated).
MAX_DEPTH = 16
_OK = ("succeeded", "partially_succeeded")


class CallError(Exception):
    """The call cannot start: its items or params cannot be read."""


@dataclass
class Child:
    """One child run to make: its DAG, its params (by name), and its label."""

    dag: str
    overrides: dict[str, str]
    label: str
    result: RunResult | None = None
    run_id: str = ""
    #: Why it could not run (a reference named no DAG).
    problem: str | None = None
    #: The DAG's own name (a file called by its path is named by its ``name:``).
    name: str = ""


async def run_call(
    ctx: Context,
    run: StepRun,
    env: dict[str, str],
    out: OutputRouter,
    now: anyio.Event,
) -> Exit:
    """Run the step's child runs, write the step's stdout through ``out``; how it ended."""
    call = run.step.call
    assert call is not None
    children = ctx.options.children
    if children is None:
        return Exit(1, "this run cannot run sub-DAGs (it was started without a child runner)")
    parent = ctx.options.parent
    depth = (parent.depth if parent is not None else 0) + 1
    if depth > MAX_DEPTH:
        return Exit(1, f"sub-DAG calls nest deeper than {MAX_DEPTH}: {call.dag} is not run")
    try:
        made = planned(call, ctx.scope(env), run.name)
    except (CallError, ValueProblem) as exc:
        return Exit(1, str(exc))
    here = Parent(
        run_id=ctx.run_id,
        step=run.name,
        root_run_id=parent.root_run_id if parent is not None else ctx.run_id,
        depth=depth,
        record=ctx.layout.dir if ctx.layout is not None else None,
        now=now,
    )
    limit = anyio.CapacityLimiter(call.max_concurrent)

    async def one(k: int, child: Child) -> None:
        child.run_id = f"{ctx.run_id}.{run.index}.{run.attempts}" + (
            f".{k}" if call.items is not None else ""
        )
        plan = ctx.dags.get(child.dag)
        child.name = plan.dag if plan is not None else child.dag
        if plan is None:
            child.problem = (
                f'no DAG named "{child.dag}" (a document of the file, or a file beside it)'
            )
            return
        child.problem = checked(plan, child.overrides)
        if child.problem is not None:
            return
        async with limit:
            child.result = await children.run(
                with_params(plan, child.overrides), child.run_id, child.label, here
            )

    async with anyio.create_task_group() as tg:
        for k, child in enumerate(made):
            tg.start_soon(one, k, child)
    document = aggregate(made) if call.items is not None else result_object(made[0])
    out.renew()  # the children's secrets are known now: their values must not show
    out("stdout", go_json(document) + b"\n")
    run.partial = any(
        c.result is not None and c.result.status == "partially_succeeded" for c in made
    )
    return outcome(made, call)


def planned(call: Call, scope: Scope, step: str) -> list[Child]:
    """The child runs of one call: one, or one per item, items that give the same params
    made one run (as Dagu coalesces them)."""
    if call.items is None:
        return [Child(scope.value(call.dag), _params(call, scope), step)]
    items = _items(call.items, scope)
    if not items:
        raise CallError("parallel execution requires at least one item")
    if len(items) > MAX_ITEMS:
        raise CallError(
            f"parallel execution exceeds the maximum: {len(items)} items (max: {MAX_ITEMS})"
        )
    made: dict[tuple[str, tuple[tuple[str, str], ...]], Child] = {}
    for item in items:
        with_item = scope.with_env({**scope.env, "ITEM": item})
        name, overrides = with_item.value(call.dag), _params(call, with_item, item)
        key = (name, tuple(sorted(overrides.items())))
        if key not in made:
            made[key] = Child(name, overrides, f"{step}[{len(made)}]")
    return list(made.values())


def _items(items: tuple[str | dict[str, str], ...] | str, scope: Scope) -> list[str]:
    """Each item as ``${ITEM}`` reads it: text, or an object as compact JSON with sorted
    keys. Written items are resolved in the caller's scope; a reference to a list is read
    as Dagu reads it (split_items)."""
    if isinstance(items, str):
        return split_items(scope.value(items))
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(item_text({k: scope.value(v) for k, v in item.items()}))
        else:
            out.append(scope.value(item))
    return out


def split_items(text: str) -> list[str]:
    """A list of items from text, as Dagu reads a reference: a JSON array (an item per
    element; objects and numbers as compact JSON), a JSON object (one item), lines, else
    the separator it has most of (tab, ``|``, ``;``, ``,``), else whitespace."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list):
            return [item_text(v) for v in value]
        if isinstance(value, dict):
            return [item_text(value)]
    if "\n" in text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    counts = {sep: text.count(sep) for sep in ("\t", "|", ";", ",")}
    best = max(counts, key=lambda sep: counts[sep])  # the first of a tie wins
    if counts[best]:
        return [part.strip() for part in text.split(best) if part.strip()]
    return text.split()


def _params(call: Call, scope: Scope, item: str | None = None) -> dict[str, str]:
    """The params a child gets: the call's ``params`` resolved (``${ITEM}`` in ``scope``),
    else the item itself (an object's fields, ``NAME=value`` text, or one positional)."""
    pairs: list[tuple[str | None, str]]
    if isinstance(call.params, str):
        try:
            pairs = _text_params(call.params, scope)
        except ParamsTextError as exc:
            raise CallError(f"params: {exc}") from None
    elif call.params is not None:
        pairs = [(name, scope.value(value)) for name, value in call.params]
    elif item is None:
        return {}
    elif isinstance(fields := _object(item), dict):
        pairs = [(str(k), item_text(v)) for k, v in sorted(fields.items())]
    else:
        try:
            pairs = list(parse_params_text(item))
        except ParamsTextError:
            pairs = [(None, item)]
    return numbered(pairs)


def _text_params(text: str, scope: Scope) -> list[tuple[str | None, str]]:
    """Params written as text, as Dagu reads them: split, each value resolved; a named
    value stays one value (``NOTE=${X}`` with spaces in X), and a positional one written
    as one word is split again once resolved (``${ITEM}`` that holds ``A=1 B=2``)."""
    pairs: list[tuple[str | None, str]] = []
    for name, raw in parse_params_text(text):
        value = scope.value(raw)
        if name is None and value != raw and not any(c in raw for c in " \t\"'"):
            fields = _object(value)  # ${ITEM} that holds an object: its fields, by name
            if isinstance(fields, dict):
                pairs.extend((str(k), item_text(v)) for k, v in sorted(fields.items()))
            else:
                pairs.extend(parse_params_text(value))
        else:
            pairs.append((name, value))
    return pairs


def checked(plan: Plan, overrides: dict[str, str]) -> str | None:
    """Why a child cannot take these params (a name that is not a param's; one its DAG does
    not declare, when it declares named ones, as Dagu refuses it), or None. A param is a
    variable of the child's processes: item data must not name ``LD_PRELOAD`` or ``PATH``."""
    bad = [name for name in overrides if not PARAM_NAME.match(name)]
    if bad:
        return f"invalid param name {bad[0]!r}: use letters, digits and _"
    named = [n for n in plan.param_names if not n.isdigit()]
    unknown = [n for n in overrides if not n.isdigit() and n not in named]
    if named and unknown:
        listed = ", ".join(f'"{n}"' for n in unknown)
        return f"unknown parameter(s): {listed}; accepted parameters are: {', '.join(named)}"
    return None


def _object(item: str) -> Any:
    if not item.startswith("{"):
        return None
    try:
        return json.loads(item)
    except ValueError:
        return None


def with_params(plan: Plan, overrides: dict[str, str]) -> Plan:
    """The child's plan with the params its call gives (an ``eval:`` param given a value
    is not evaluated, as on the command line)."""
    if not overrides:
        return plan
    evals = {k: v for k, v in plan.evals.items() if k not in overrides}
    params = {**plan.params, **overrides}
    work_dir = plan.work_dir
    if plan.work_dir_template is not None:  # it reads a param: resolved with the call's
        written = Scope(params, {}, plan.consts).shell(plan.work_dir_template)
        work_dir = str(host_path(written, Path(plan.file).parent))
    return msgspec.structs.replace(plan, params=params, evals=evals, work_dir=work_dir)


def result_object(child: Child) -> dict[str, Any]:
    """Dagu's result of one child run: ``{name, dagRunId, params, outputs, status}``."""
    result = child.result
    document: dict[str, Any] = {"name": child.name or child.dag, "dagRunId": child.run_id}
    params = result.params if result is not None else {}
    if params:
        document["params"] = " ".join(f"{k}={v}" for k, v in params.items())
    document["outputs"] = outputs_of(result) if result is not None else {}
    values = output_values(result) if result is not None else {}
    if values:
        document["outputValues"] = values
    document["status"] = result.status if result is not None else "failed"
    return document


def output_values(result: RunResult) -> dict[str, Any]:
    """``outputValues``: what the child's steps and handlers published with ``stdout:
    {outputs}`` (or an ``output:`` object), merged in the order they ran, as Dagu."""
    merged: dict[str, Any] = {}
    for step in [*result.steps, *result.handlers.values()]:
        for key, text in step.outputs.items():
            if key.endswith(".outputs") and not key.startswith("steps."):
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    merged.update(value)
    return merged


def outputs_of(result: RunResult) -> dict[str, str]:
    """A child's ``output:`` values, by name (what a caller reads as ``outputs.NAME``)."""
    out: dict[str, str] = {}
    for step in [*result.steps, *result.handlers.values()]:
        name = step.step.output.lstrip("$") if step.step.output else None
        if name and name in step.outputs:
            out[name] = step.outputs[name]
    return dict(sorted(out.items()))  # a Go map: its keys sorted


def aggregate(made: list[Child]) -> dict[str, Any]:
    """A fan-out's result: counts, each child's result, the outputs of those that
    succeeded (in the order of the items; Dagu's order is random)."""
    results = [result_object(child) for child in made]
    good = [r for r in results if r["status"] in _OK]
    return {
        "summary": {"total": len(made), "succeeded": len(good), "failed": len(made) - len(good)},
        "results": results,
        "outputs": [r["outputs"] for r in good],
    }


def outcome(made: list[Child], call: Call) -> Exit:
    """The step succeeds when every child did; else it fails with the (first) child's error."""
    failed = [c for c in made if c.result is None or c.result.status not in _OK]
    if not failed:
        return Exit(0)
    first = failed[0]
    why = child_error(first)
    if call.items is None:
        return Exit(1, f"sub-DAG run {first.run_id} {_status(first)}{why}")
    return Exit(
        1,
        f"{len(failed)} of {len(made)} sub-DAG runs failed; the first, {first.label} "
        f"(run {first.run_id}), {_status(first)}{why}",
    )


def _status(child: Child) -> str:
    return child.result.status if child.result is not None else "did not run"


def child_error(child: Child) -> str:
    """``: `` and why a child failed: its own error, else its first failed step's."""
    result = child.result
    if result is None:
        return f": {child.problem}" if child.problem else ""
    for step in [*result.steps, *result.handlers.values()]:
        if step.status == "failed" and not step.continued:
            return f": step {step.name}: {step.error or 'failed'}"
    return f": {result.error}" if result.error else ""


def go_json(document: Any) -> bytes:
    """JSON as Go's ``json.MarshalIndent(v, "", "  ")`` writes Dagu's result structs (their
    fields in order; the maps in them, outputs, sorted already): ``<``, ``>``, ``&`` and
    the line separators escaped. Text and whole numbers only, so ``json`` writes the rest
    as Go does (gotext.json_text does the same, a hundred times slower on 1,000 results)."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
