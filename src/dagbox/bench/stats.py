"""Bench arithmetic: pass@k, percentiles, and the summary of a results file."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dagbox.report.inference import wilson

#: A run a cluster node could not run at all (a credential it lacks, a DAG it cannot load).
INFRA_NODE = "infra_node"
#: Failure classes that are the environment's fault, not the agent's.
INFRA = frozenset({"infra_image", "infra_engine", "binary_missing", "refused", "auth", INFRA_NODE})


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n or n == 0:
        return math.nan
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def is_infra(result: Mapping[str, Any]) -> bool:
    """A run that failed through no fault of the agent: the one rule for every count."""
    if result.get("status") == "succeeded":
        return False
    return bool(result.get("infra")) or result.get("failure_class") in INFRA


def summarize(results: Iterable[Mapping[str, Any]], repeat: int) -> list[dict[str, Any]]:
    """One row per matrix cell: counts, success rate and pass@k over valid runs, timings.

    Runs failed by infrastructure are counted apart and left out of the success rate and
    pass@k, so a broken environment is not scored as a bad agent. pass@k is computed per
    task and averaged over tasks, for k = 1 .. repeat.
    """
    cells: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for result in results:
        cells[result["cell"]].append(result)
    rows = []
    for label, runs in sorted(cells.items()):
        valid = [r for r in runs if not is_infra(r)]
        succeeded = [r for r in valid if r.get("status") == "succeeded"]
        by_task: dict[str | None, list[Mapping[str, Any]]] = defaultdict(list)
        for run in valid:
            by_task[run.get("task")].append(run)
        # pass@k needs k valid runs of every task: past the fewest any task has, it would
        # be averaged over the tasks infrastructure spared, and could fall as k grows.
        tallies = [
            (len(rs), sum(r.get("status") == "succeeded" for r in rs)) for rs in by_task.values()
        ]
        most = min((n for n, _ in tallies), default=0)
        pass_k: dict[str, float | None] = {}
        for k in range(1, max(repeat, 1) + 1):
            scores = [pass_at_k(n, c, k) for n, c in tallies] if k <= most else []
            pass_k[f"pass@{k}"] = round(sum(scores) / len(scores), 4) if scores else None
        durations = [r["duration_ms"] for r in runs if r.get("duration_ms") is not None]
        overheads = [r["overhead_ms"] for r in runs if r.get("overhead_ms") is not None]
        failures: dict[str, int] = defaultdict(int)
        for run in runs:
            if run.get("status") != "succeeded":
                failures[run.get("failure_class") or "unknown"] += 1
        rows.append(
            {
                "cell": label,
                "runs": len(runs),
                "succeeded": len(succeeded),
                "harness_failed": len(valid) - len(succeeded),
                "infra_failed": len(runs) - len(valid),
                "success_rate": round(len(succeeded) / len(valid), 4) if valid else None,
                "success_ci95": _interval(wilson(len(succeeded), len(valid))),
                **pass_k,
                "duration_p50_ms": _round(percentile(durations, 50)),
                "duration_p95_ms": _round(percentile(durations, 95)),
                "overhead_p50_ms": _round(percentile(overheads, 50)),
                **_costs(runs),
                "failures": dict(sorted(failures.items())),
            }
        )
    return rows


def _costs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tokens and dollars per run and per success, over the runs whose CLI reported them.

    Per success divides everything those runs spent (failed ones included) by those of
    them that succeeded: what one solved task costs. None where nothing was reported.
    """
    reported = [r for r in runs if r.get("usage")]
    out: dict[str, Any] = {"usage_runs": len(reported)}
    for name, digits in (("tokens", 1), ("cost_usd", 6)):
        known = [(r, v) for r in reported if (v := _amount(r["usage"], name)) is not None]
        total = sum(v for _, v in known)
        solved = sum(r.get("status") == "succeeded" for r, _ in known)
        out[f"{name}_per_run"] = round(total / len(known), digits) if known else None
        out[f"{name}_per_success"] = round(total / solved, digits) if solved else None
    return out


def _amount(usage: Mapping[str, Any], name: str) -> float | None:
    """Tokens (input + output) or dollars of one run; None when its CLI did not say."""
    if name == "cost_usd":
        return usage.get("cost_usd")
    tokens = [usage.get("input_tokens"), usage.get("output_tokens")]
    return None if tokens == [None, None] else sum(t or 0 for t in tokens)


def _interval(bounds: tuple[float, float] | None) -> list[float] | None:
    return None if bounds is None else [round(bounds[0], 4), round(bounds[1], 4)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
