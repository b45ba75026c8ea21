"""The numbers of a report, as one JSON-ready document: ``dagbox report --json`` prints
it, the terminal and HTML renderings only lay it out.

A report's columns are *cells*, as in a bench: one combination of matrix values. With
several outputs, a cell is named ``OUT/cell`` (``OUT`` alone for a bench without a
matrix). Comparisons put every cell against a baseline (docs/report.md):

- one output: each cell against the first (or ``--baseline``);
- several outputs that share cell names: each such cell against the same cell of the
  first output (a before/after of one change);
- several outputs with no cell name in common: each cell against the first cell.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from dagbox.bench.stats import is_infra, summarize
from dagbox.report.inference import (
    fisher_exact,
    mcnemar_exact,
    newcombe_difference,
    paired_rate_interval,
)
from dagbox.report.read import Output, Run

PAIRED = "paired t interval over tasks; McNemar's exact test (sign test) over tasks"
UNPAIRED = "Newcombe's hybrid score interval; Fisher's exact test (runs are not paired by task)"


class BaselineError(ValueError):
    """--baseline names no cell of the report."""


def cells_of(outputs: Sequence[Output]) -> dict[str, list[Run]]:
    """Runs per cell: the outputs in the order given, the cells of each by name, so that
    the baseline (the first) does not depend on which run happened to finish first."""
    cells: dict[str, list[Run]] = {}
    for output in outputs:
        for run in sorted(output.runs, key=lambda r: r.cell):
            cells.setdefault(cell_name(output, run, several=len(outputs) > 1), []).append(run)
    return cells


def cell_name(output: Output, run: Run, *, several: bool) -> str:
    if not several:
        return run.cell
    return output.label if run.cell == "all" else f"{output.label}/{run.cell}"


def report(outputs: Sequence[Output], baseline: str | None = None) -> dict[str, Any]:
    cells = cells_of(outputs)
    rows = []
    for name, runs in cells.items():
        repeat = max(_runs_per_task(runs).values(), default=1)
        lines = [{**msgspec.structs.asdict(r), "cell": name} for r in runs]
        row = summarize(lines, repeat)[0]
        row["failures_agent"] = {
            k: v for k, v in row["failures"].items() if not is_infra({"failure_class": k})
        }
        row["failures_infra"] = {
            k: v for k, v in row["failures"].items() if is_infra({"failure_class": k})
        }
        row["nodes"] = dict(sorted(Counter(r.node for r in runs if r.node).items()))
        rows.append(row)
    return {
        "outputs": [_describe(o) for o in outputs],
        "cells": rows,
        "comparisons": [
            compare(cells, base, other) for base, other in pairs(outputs, cells, baseline)
        ],
        "tasks": _task_table(cells),
    }


def pairs(
    outputs: Sequence[Output], cells: dict[str, list[Run]], baseline: str | None
) -> list[tuple[str, str]]:
    names = list(cells)
    if baseline is not None:
        if baseline not in cells:
            raise BaselineError(
                f"--baseline {baseline!r} is not a cell of this report; its cells: "
                + ", ".join(names)
            )
        return [(baseline, n) for n in names if n != baseline]
    if len(outputs) > 1:
        first = outputs[0]
        own = {r.cell for r in first.runs}
        shared = [
            (cell_name(first, run, several=True), name)
            for output in outputs[1:]
            for name, run in _first_of_each_cell(output).items()
            if run.cell in own
        ]
        if shared:
            return list(dict.fromkeys(shared))
    return [(names[0], n) for n in names[1:]]


def _first_of_each_cell(output: Output) -> dict[str, Run]:
    out: dict[str, Run] = {}
    for run in sorted(output.runs, key=lambda r: r.cell):
        out.setdefault(cell_name(output, run, several=True), run)
    return out


def compare(cells: dict[str, list[Run]], base: str, other: str) -> dict[str, Any]:
    """``other`` against ``base``: the difference in success rate (other - base)."""
    a, b = _by_task(cells[base]), _by_task(cells[other])
    shared = [t for t in a if t in b and t is not None]
    out: dict[str, Any] = {"baseline": base, "cell": other}
    if len(shared) >= 2:
        rates = {t: (_rate(a[t]), _rate(b[t])) for t in shared}
        differences = [o - s for s, o in rates.values()]
        interval = paired_rate_interval(differences)
        better = [t for t, (s, o) in rates.items() if o > s]
        worse = [t for t, (s, o) in rates.items() if o < s]
        out.update(
            paired=True,
            method=PAIRED,
            tasks=len(shared),
            # Tasks one side has no valid run of: they cannot be paired, and are counted.
            only_baseline=sorted(str(t) for t in a if t not in b),
            only_cell=sorted(str(t) for t in b if t not in a),
            difference=round(sum(differences) / len(differences), 4),
            ci95=[round(interval[1], 4), round(interval[2], 4)] if interval else None,
            p_value=round(mcnemar_exact(len(better), len(worse)), 6),
            better=[_flip(t, a[t], b[t]) for t in better],
            worse=[_flip(t, a[t], b[t]) for t in worse],
        )
    else:
        x1, n1 = _successes(cells[other])
        x2, n2 = _successes(cells[base])
        bounds = newcombe_difference(x1, n1, x2, n2)
        out.update(
            paired=False,
            method=UNPAIRED,
            tasks=len(shared),
            difference=round(x1 / n1 - x2 / n2, 4) if n1 and n2 else None,
            ci95=[round(bounds[0], 4), round(bounds[1], 4)] if bounds else None,
            p_value=round(fisher_exact(x1, n1, x2, n2), 6) if n1 and n2 else None,
            only_baseline=[],
            only_cell=[],
            better=[],
            worse=[],
        )
    out["differs"] = _differences(cells[base], cells[other])
    return out


def _successes(runs: Sequence[Run]) -> tuple[int, int]:
    valid = [r for r in runs if not spoiled(r)]
    return sum(r.status == "succeeded" for r in valid), len(valid)


def spoiled(run: Run) -> bool:
    """The run failed through no fault of the agent (the bench's own rule)."""
    return is_infra({"status": run.status, "infra": run.infra, "failure_class": run.failure_class})


def _by_task(runs: Sequence[Run]) -> dict[str | None, list[Run]]:
    """Runs per task, infrastructure failures left out (they say nothing of the agent)."""
    out: dict[str | None, list[Run]] = defaultdict(list)
    for run in runs:
        if not spoiled(run):
            out[run.task].append(run)
    return out


def _runs_per_task(runs: Sequence[Run]) -> dict[str | None, int]:
    return {task: len(rs) for task, rs in _by_task(runs).items()}


def _rate(runs: Sequence[Run]) -> float:
    return sum(r.status == "succeeded" for r in runs) / len(runs)


def _flip(task: str | None, base: Sequence[Run], other: Sequence[Run]) -> dict[str, Any]:
    def score(runs: Sequence[Run]) -> str:
        return f"{sum(r.status == 'succeeded' for r in runs)}/{len(runs)}"

    return {"task": task, "baseline": score(base), "cell": score(other)}


def _differences(base: Sequence[Run], other: Sequence[Run]) -> dict[str, Any]:
    """What the two sides ran differently, beyond their matrix values: the DAG, the images,
    and the params every run of a side shared. Absent: the lines do not say (older dagbox)."""
    out: dict[str, Any] = {}
    hashes = [sorted({r.dag_hash for r in side if r.dag_hash}) for side in (base, other)]
    if all(hashes) and hashes[0] != hashes[1]:
        out["dag_hash"] = {"baseline": hashes[0], "cell": hashes[1]}
    elif not all(hashes):
        out["dag_hash"] = "unknown: the results do not say (written by an older dagbox)"
    images = [_merged(r.images for r in side if r.images) for side in (base, other)]
    if all(images):
        changed = {
            ref: {"baseline": images[0].get(ref), "cell": images[1].get(ref)}
            for ref in sorted(images[0].keys() | images[1].keys())
            if images[0].get(ref) != images[1].get(ref)
        }
        if changed:
            out["images"] = changed
    elif any(images):
        out["images"] = "unknown: one side's results do not say (written by an older dagbox)"
    params = [_constant_params(side) for side in (base, other)]
    axes = {name for side in (base, other) for name in _axes(side)}  # the cells' own values
    changed = {
        name: {"baseline": params[0].get(name), "cell": params[1].get(name)}
        for name in sorted(params[0].keys() | params[1].keys())
        if params[0].get(name) != params[1].get(name) and name not in axes
    }
    if changed:
        out["params"] = changed
    return out


def _axes(runs: Sequence[Run]) -> set[str]:
    """The matrix params a cell's label names (``MODEL=a PROVIDER=codex``)."""
    return {
        part.partition("=")[0] for run in runs[:1] for part in run.cell.split(" ") if "=" in part
    }


def _merged(dicts: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for d in dicts:
        out.update(d)
    return out


def _constant_params(runs: Sequence[Run]) -> dict[str, Any]:
    """Params with one value over every run of a side (task params vary, so they drop out)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        for name, value in (run.params or {}).items():
            seen[name].add(str(value))
    total = len(runs)
    counts = Counter(name for run in runs for name in (run.params or {}))
    return {n: next(iter(v)) for n, v in seen.items() if len(v) == 1 and counts[n] == total}


def _task_table(cells: dict[str, list[Run]]) -> list[dict[str, Any]]:
    """One row per task: in each cell, its runs' successes out of its runs."""
    tasks: dict[str | None, dict[str, list[int]]] = {}
    for name, runs in cells.items():
        for run in runs:
            counts = tasks.setdefault(run.task, {}).setdefault(name, [0, 0, 0])
            counts[0] += run.status == "succeeded"
            counts[1] += 1
            counts[2] += spoiled(run)
    return [
        {
            "task": task,
            "cells": {
                name: {"succeeded": c[0], "runs": c[1], "infra_failed": c[2]}
                for name, c in by_cell.items()
            },
        }
        for task, by_cell in sorted(tasks.items(), key=lambda item: str(item[0]))
    ]


def _describe(output: Output) -> dict[str, Any]:
    """An output, and what to know before trusting its numbers."""
    hashes = sorted({r.dag_hash for r in output.runs if r.dag_hash})
    notes = []
    if not output.runs:
        notes.append("no results")
    if output.unreadable:
        notes.append(f"{output.unreadable} unreadable lines left out")
    if len(hashes) > 1:
        notes.append(
            f"results of {len(hashes)} versions of the DAG together (a --resume after the DAG "
            "changed); the bench's own summary counts only the latest version's"
        )
    return {
        "label": output.label,
        "results": str(output.path),
        "runs": len(output.runs),
        "unreadable_lines": output.unreadable,
        "dag_hashes": hashes,
        "notes": notes,
    }
