"""A report on the terminal: the bench's table with intervals, then each cell's
details and the comparisons. Plain text, so it reads the same in a pipe or a CI log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def _interval(bounds: Sequence[float] | None) -> str:
    return "-" if bounds is None else f"{bounds[0] * 100:.0f}-{bounds[1] * 100:.0f}%"


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def cell_table(rows: Sequence[Mapping[str, Any]], repeat: int, interval: bool = False) -> str:
    """The table a bench ends with, one row per cell; ``interval``: with the 95% interval
    of each success rate (a report's table)."""
    ks = [k for k in range(1, repeat + 1) if k in (1, 2, 5, 10, repeat)]
    head = [
        "cell",
        "runs",
        "ok",
        "agent✘",
        "infra✘",
        "success",
        *(["95% CI"] if interval else []),
        *[f"pass@{k}" for k in ks],
        "p50",
        "p95",
        "overhead",
    ]
    costs = any(row.get("usage_runs") for row in rows)
    if costs:
        head += ["tokens/run", "tokens/ok", "$/run", "$/ok"]

    def number(value: Any, scale: float = 1.0, suffix: str = "") -> str:
        if value is None:
            return "-"
        if isinstance(value, float) and suffix == "%":
            return f"{value * 100:.0f}%"
        return f"{float(value) / scale:.2f}{suffix}" if suffix else str(value)

    table = [head]
    for row in rows:
        table.append(
            [
                row["cell"],
                str(row["runs"]),
                str(row["succeeded"]),
                str(row["harness_failed"]),
                str(row["infra_failed"]),
                number(row["success_rate"], suffix="%"),
                *([_interval(row.get("success_ci95"))] if interval else []),
                *[number(row.get(f"pass@{k}"), suffix="%") for k in ks],
                number(row["duration_p50_ms"], 1000, "s"),
                number(row["duration_p95_ms"], 1000, "s"),
                number(row["overhead_p50_ms"], 1, "ms"),
            ]
        )
        if costs:
            table[-1] += [
                number(_whole(row.get("tokens_per_run"))),
                number(_whole(row.get("tokens_per_success"))),
                _dollars(row.get("cost_usd_per_run")),
                _dollars(row.get("cost_usd_per_success")),
            ]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    )


#: Tasks that flipped, listed per comparison; --json and the HTML report list them all.
SHOWN = 8


def render(document: Mapping[str, Any]) -> str:
    rows = document["cells"]
    most = max((ks[-1] for row in rows if (ks := shown_ks(row))), default=1)
    out = [cell_table(rows, most, interval=True), ""]
    for row in rows:
        out.append(f"{row['cell']}:")
        ks = shown_ks(row)
        if ks:
            out.append("  pass@k   " + "  ".join(f"{k}: {_percent(row[f'pass@{k}'])}" for k in ks))
        out.append("  agent✘   " + _classes(row["failures_agent"]))
        out.append("  infra✘   " + _classes(row["failures_infra"]))
        if row["usage_runs"]:
            out.append(
                f"  usage    {row['usage_runs']} of {row['runs']} runs reported it; per run "
                f"{_amount(row['tokens_per_run'])} tokens, {_money(row['cost_usd_per_run'])}; "
                f"per success {_amount(row['tokens_per_success'])} tokens, "
                f"{_money(row['cost_usd_per_success'])}"
            )
        if row["nodes"]:
            out.append("  nodes    " + _classes(row["nodes"]))
    for comparison in document["comparisons"]:
        out += ["", *_comparison(comparison)]
    for output in document["outputs"]:
        for note in output["notes"]:
            out += ["", f"{output['results']}: {note}"]
    return "\n".join(out)


def _comparison(c: Mapping[str, Any]) -> list[str]:
    head = f"{c['cell']} against {c['baseline']}: "
    if c["difference"] is None:
        return [head + "no runs to compare"]
    interval = ""
    if c["ci95"]:
        low, high = c["ci95"]
        interval = f" [95% CI {_points(low)}, {_points(high)}]"
    paired = f"{c['tasks']} tasks paired" if c["paired"] else "not paired by task"
    if c["paired"] and not c["ci95"]:
        interval = " [no interval: every task moved by the same amount]"
    lines = [
        head + f"{_points(c['difference'])} points{interval}, p = {c['p_value']:.3g} ({paired})",
        f"  method   {c['method']}",
    ]
    for side, whose in (("only_baseline", c["baseline"]), ("only_cell", c["cell"])):
        if c[side]:
            lines.append(f"  unpaired {len(c[side])} tasks with valid runs in {whose} only")
    for side in ("better", "worse"):
        if c[side]:
            flips = [f"{f['task']} {f['baseline']}→{f['cell']}" for f in c[side]]
            more = (
                f", and {len(flips) - SHOWN} more (--json lists all)" if len(flips) > SHOWN else ""
            )
            lines.append(f"  {side:<8} {len(flips)}: {', '.join(flips[:SHOWN])}{more}")
    differs = c["differs"]
    for what in ("dag_hash", "images", "params"):
        if what in differs:
            lines.append(f"  differs  {what}: {_difference(differs[what])}")
    return lines


def _difference(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "baseline" in value:
        return f"{_short(value['baseline'])} → {_short(value['cell'])}"
    return "; ".join(
        f"{name} {_short(v['baseline'])} → {_short(v['cell'])}" for name, v in value.items()
    )


def _short(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, list):
        return ",".join(_short(v) for v in value)
    text = str(value)
    return text[:19] if text.startswith("sha256:") or len(text) == 64 else text


def shown_ks(row: Mapping[str, Any]) -> list[int]:
    """The k of pass@k shown: 1, 2, 3, 5, 10, 20, 50, ... and the largest (--json has all)."""
    ks = [int(k[5:]) for k, v in row.items() if k.startswith("pass@") and v is not None]
    return [k for k in ks if k == ks[-1] or k in SHOWN_KS or _round_number(k)]


SHOWN_KS = {1, 2, 3, 5}


def _round_number(k: int) -> bool:
    """10, 20, 50, 100, 200, 500, ...: a 1, 2 or 5 followed by zeros."""
    text = str(k)
    return text[0] in "125" and set(text[1:]) == {"0"}


def _classes(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _money(value: float | None) -> str:
    return "cost not reported" if value is None else f"${value:.4f}"


def _amount(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
