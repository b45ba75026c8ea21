"""``dagbox report --html``: one self-contained page, charts drawn by Vega-Lite.

The charts are specified with altair and drawn in the browser by Vega-Lite, whose
JavaScript (vega, vega-lite and vega-embed bundled by vl-convert) is inlined once, so
the file opens anywhere without a network. The per-task table is plain HTML, so it
reads even with scripts off; each run's mark links to its log and harness journal by
a path relative to the page, when the run's record is on this machine.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import msgspec

from dagbox import __version__
from dagbox.layout import home, safe_name
from dagbox.records import RunRecord
from dagbox.report.numbers import cells_of, spoiled
from dagbox.report.read import Output, Run
from dagbox.report.text import render, shown_ks

_record = msgspec.json.Decoder(RunRecord)


def page(outputs: Sequence[Output], document: Mapping[str, Any], folder: Path) -> str:
    """The HTML of the report; ``folder``: where the page will be, for relative links."""
    cells = cells_of(outputs)
    charts = []
    for title, chart, datasets in _charts(cells, document):
        # Validated without its data (checking 10,000 values against the schema takes
        # seconds), which Vega-Lite then finds by name in the spec's own datasets.
        spec = chart.to_dict()
        spec["datasets"] = datasets
        charts.append((title, spec))
    table, base = _task_table(outputs, cells, folder)
    parts = [
        "<h1>dagbox report</h1>",
        f"<p class=muted>{len(document['cells'])} cells from "
        + ", ".join(
            f"<code>{_e(o['label'])}</code> ({o['runs']} runs)" for o in document["outputs"]
        )
        + f"; dagbox {_e(__version__)}. How the numbers are made: docs/report.md.</p>",
        "<h2>Summary</h2>",
        f"<pre>{_e(render(document))}</pre>",
        "<h2>Charts</h2><div class=grid>",
        *(
            f"<figure><figcaption>{_e(title)}</figcaption><div id=chart{i} class=chart></div></figure>"
            for i, (title, _) in enumerate(charts)
        ),
        "</div>",
        *_flips(document["comparisons"]),
        "<h2>Tasks</h2>",
        table,
    ]
    script = "const specs = " + _json([spec for _, spec in charts]) + ";\n" + _DRAW
    return _PAGE.format(
        style=_STYLE,
        base=base,
        body="\n".join(parts),
        bundle=_bundle(),
        script=script,
    )


#: A chart: its title, its altair specification, and the data it names, by name.
Chart = tuple[str, alt.TopLevelMixin, dict[str, list[dict[str, Any]]]]
WIDTH = 420


def _charts(runs: Mapping[str, list[Run]], document: Mapping[str, Any]) -> list[Chart]:
    """Every chart that has data to draw, in the page's order."""
    rows = document["cells"]
    cells = [row["cell"] for row in rows]
    y = alt.Y("cell:N", sort=cells, title=None, axis=alt.Axis(labelLimit=320))
    made = [
        _success(rows, y),
        _pass_at_k(rows, cells),
        _durations(runs, cells, y),
        _failures(rows, y),
        _cost(rows, y),
        _differences(document["comparisons"]),
    ]
    return [chart for chart in made if chart is not None]


def _interval_chart(name: str, y: alt.Y, x: alt.X, label: str) -> alt.TopLevelMixin:
    """A point per row of dataset ``name`` at ``value``, with a rule from ``low`` to ``high``."""
    base = alt.Chart(_data(name)).encode(y=y)
    rule = (
        base.mark_rule(strokeWidth=2)
        .encode(x=x, x2="high:Q")
        .transform_calculate(value="datum.low")
    )
    point = base.mark_point(filled=True, size=70).encode(
        x=x, tooltip=[label, alt.Tooltip("value:Q", format=".1%")]
    )
    chart: alt.TopLevelMixin = rule + point
    return chart


def _success(rows: Sequence[Mapping[str, Any]], y: alt.Y) -> Chart | None:
    values = [
        {
            "cell": r["cell"],
            "value": r["success_rate"],
            "low": r["success_ci95"][0],
            "high": r["success_ci95"][1],
        }
        for r in rows
        if r["success_rate"] is not None
    ]
    if not values:
        return None  # an empty chart draws nothing and warns in the console
    x = alt.X(
        "value:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="success rate"
    )
    chart = _interval_chart("rates", y, x, "cell:N").properties(width=WIDTH, height=alt.Step(24))
    return "Success rate per cell, with its 95% interval (Wilson)", chart, {"rates": values}


def _pass_at_k(rows: Sequence[Mapping[str, Any]], cells: list[str]) -> Chart | None:
    curve = [
        {"cell": r["cell"], "k": k, "value": r[f"pass@{k}"]} for r in rows for k in shown_ks(r)
    ]
    if not curve:
        return None
    legend = alt.Legend(orient="bottom", columns=1, labelLimit=480)
    chart = (
        alt.Chart(_data("pass_at_k"))
        .mark_line(point=True)
        .encode(
            x=alt.X("k:O", title="k"),
            y=alt.Y(
                "value:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="pass@k"
            ),
            color=alt.Color("cell:N", sort=cells, legend=legend),
            tooltip=["cell:N", "k:O", alt.Tooltip("value:Q", format=".1%")],
        )
    )
    return "pass@k per cell", chart.properties(width=WIDTH, height=260), {"pass_at_k": curve}


def _durations(runs: Mapping[str, list[Run]], cells: list[str], y: alt.Y) -> Chart | None:
    values = [
        {"cell": cell, "s": round(r.duration_ms / 1000, 3)}
        for cell, rs in runs.items()
        for r in rs
        if r.duration_ms is not None
    ]
    if not values:
        return None
    chart = (
        alt.Chart(_data("durations"))
        .mark_boxplot(size=14, extent="min-max")
        .encode(
            x=alt.X("s:Q", title="seconds"), y=y, color=alt.Color("cell:N", sort=cells, legend=None)
        )
    )
    title = "Run duration per cell (box: quartiles and median; whiskers: fastest and slowest)"
    return title, chart.properties(width=WIDTH, height=alt.Step(24)), {"durations": values}


def _failures(rows: Sequence[Mapping[str, Any]], y: alt.Y) -> Chart | None:
    values = [
        {"cell": r["cell"], "class": name, "kind": kind, "runs": n}
        for r in rows
        for kind, key in (("agent", "failures_agent"), ("infra", "failures_infra"))
        for name, n in r[key].items()
    ]
    if not values:
        return None
    chart = (
        alt.Chart(_data("failures"))
        .mark_bar()
        .encode(
            x=alt.X("sum(runs):Q", title="runs"),
            y=y,
            color=alt.Color("class:N", title="failure class", legend=alt.Legend(orient="bottom")),
            tooltip=["cell:N", "class:N", "kind:N", "runs:Q"],
        )
    )
    title = (
        "Failures per cell, by class (infra: the environment's fault, left out of success rates)"
    )
    return title, chart.properties(width=WIDTH, height=alt.Step(24)), {"failures": values}


def _cost(rows: Sequence[Mapping[str, Any]], y: alt.Y) -> Chart | None:
    values = [
        {"cell": r["cell"], "usd": r["cost_usd_per_success"]}
        for r in rows
        if r.get("cost_usd_per_success") is not None
    ]
    if not values:
        return None
    chart = (
        alt.Chart(_data("cost"))
        .mark_bar()
        .encode(
            x=alt.X("usd:Q", title="US dollars", axis=alt.Axis(format="$.4f")),
            y=y,
            tooltip=["cell:N", alt.Tooltip("usd:Q", format="$.4f")],
        )
    )
    title = "Cost per success (everything spent, failed runs too, over the runs that succeeded)"
    return title, chart.properties(width=WIDTH, height=alt.Step(24)), {"cost": values}


def _differences(comparisons: Sequence[Mapping[str, Any]]) -> Chart | None:
    values = [
        {
            "pair": f"{c['cell']} − {c['baseline']}",
            "value": c["difference"],
            "low": c["ci95"][0],
            "high": c["ci95"][1],
        }
        for c in comparisons
        if c["difference"] is not None and c["ci95"]
    ]
    if not values:
        return None
    y = alt.Y("pair:N", sort=None, title=None, axis=alt.Axis(labelLimit=320))
    x = alt.X(
        "value:Q",
        scale=alt.Scale(domain=[-1, 1]),
        axis=alt.Axis(format="+%"),
        title="difference in success rate",
    )
    zero = alt.Chart(_data("zero")).mark_rule(strokeDash=[4, 3], color="#888").encode(x=x)
    chart = zero + _interval_chart("differences", y, x, "pair:N")
    title = "Differences against the baseline, with 95% intervals"
    datasets = {"differences": values, "zero": [{"value": 0}]}
    return title, chart.properties(width=WIDTH - 60, height=alt.Step(24)), datasets


def _task_table(
    outputs: Sequence[Output], cells: Mapping[str, list[Run]], folder: Path
) -> tuple[str, str]:
    """The per-task table, and the page's base URL: the folder every linked file is in,
    relative to the page, so that each link names only what differs (10,000 runs make
    20,000 links, and a long shared prefix would cost megabytes)."""
    runs: dict[tuple[str | None, str], list[Run]] = {}
    for cell, rs in cells.items():
        for run in rs:
            runs.setdefault((run.task, cell), []).append(run)
    finder = _Records(outputs)
    files = {id(run): finder.files(run) for rs in runs.values() for run in rs}
    linked = [str(p) for pair in files.values() for p in pair if p is not None]
    root = Path(os.path.commonpath(linked)) if linked else folder
    if len(linked) == 1:
        root = root.parent
    body = []
    for task in sorted({task for task, _ in runs}, key=str):
        tds = []
        for cell in cells:
            ordered = sorted(runs.get((task, cell), []), key=lambda r: r.repeat or 0)
            tds.append("<td>" + "".join(_mark(r, *files[id(r)], root) for r in ordered) + "</td>")
        name = task if task is not None else "(no task)"
        body.append(f"<tr><th>{_e(name)}</th>{''.join(tds)}</tr>")
    head = "".join(f"<th>{_e(c)}</th>" for c in cells)
    table = (
        "<p class=muted>Each mark is one run: ✓ succeeded, ✗ failed, ! failed by infrastructure, "
        "· other. A mark links to the log of the step that decided the run, and j to its "
        "harness journal, when its record is on this machine.</p>"
        f"<table class=tasks><thead><tr><th>task</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
    return table, _url(Path(os.path.relpath(root, folder))) + "/"


def _mark(run: Run, log: Path | None, journal: Path | None, root: Path) -> str:
    symbol, kind = _symbol(run)
    title = (
        "" if run.status == "succeeded" else f" title='{_e(run.failure_class or run.status or '')}'"
    )
    if log is None:
        return f"<span class={kind}{title}>{symbol}</span>"
    mark = f"<a class={kind}{title} href='{_url(log.relative_to(root))}'>{symbol}</a>"
    if journal is not None:
        mark += f"<a class=j href='{_url(journal.relative_to(root))}'>j</a>"
    return mark


def _url(path: Path) -> str:
    """A relative path as a URL: ``#``, ``%`` or ``?`` in a folder's name stay its name."""
    return html.escape(urllib.parse.quote(path.as_posix()), quote=True)


class _Records:
    """Finds each run's record: where its line says; else under ``$DAGBOX_HOME/runs``, or
    a ``runs`` folder beside its results file (records copied along with them)."""

    def __init__(self, outputs: Sequence[Output]) -> None:
        roots = [home() / "runs", *(o.path.parent / "runs" for o in outputs)]
        self.dags: list[Path] = []
        for root in dict.fromkeys(roots):
            with contextlib.suppress(OSError):
                self.dags += [p for p in root.iterdir() if p.is_dir()]

    def files(self, run: Run) -> tuple[Path | None, Path | None]:
        record = self._find(run)
        return _files(record.absolute()) if record is not None else (None, None)

    def _find(self, run: Run) -> Path | None:
        if run.record and Path(run.record, "run.json").is_file():
            return Path(run.record)
        if run.run_id:
            for dag in self.dags:
                if (dag / run.run_id / "run.json").is_file():
                    return dag / run.run_id
        return None


def _files(record: Path) -> tuple[Path | None, Path | None]:
    """The log of the step that decided the run (its first failed step, else its last
    step), and a harness journal: that step's newest, else the run's newest."""
    try:
        run = _record.decode((record / "run.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return None, None
    ran = [s for s in run.steps if s.stdout_file]
    step = next((s for s in ran if s.status == "failed"), ran[-1] if ran else None)
    if step is None or step.stdout_file is None:
        return None, None
    journals = sorted((record / "attempts").glob("*/*.jsonl"), key=_newest)
    own = [j for j in journals if j.parent.name.partition("-")[2] == safe_name(step.name)]
    journal = own[-1] if own else journals[-1] if journals else None
    return _moved(Path(step.stdout_file), record), journal


def _moved(path: Path, record: Path) -> Path | None:
    """``path``, written where the record was when it ran, in the record where it is now
    (records move: a copied home, a cluster node's record unpacked on the driver)."""
    parts = path.parts
    if record.name in parts:
        at = len(parts) - 1 - parts[::-1].index(record.name)
        path = record.joinpath(*parts[at + 1 :])
    return path if path.is_file() else None


def _flips(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every task that flipped, each way, per comparison (the summary shows a few)."""
    out = []
    for c in comparisons:
        for side, word in (("better", "better in"), ("worse", "worse in")):
            if c[side]:
                items = ", ".join(
                    f"{_e(f['task'])} {_e(f['baseline'])}→{_e(f['cell'])}" for f in c[side]
                )
                out.append(
                    f"<p class=flips><b>{len(c[side])} task{'s' if len(c[side]) > 1 else ''} {word} {_e(c['cell'])}</b> than in {_e(c['baseline'])}: {items}</p>"
                )
    return (["<h2>Tasks that flipped</h2>", *out]) if out else []


def _newest(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _symbol(run: Run) -> tuple[str, str]:
    if run.status == "succeeded":
        return "✓", "ok"
    if spoiled(run):
        return "!", "infra"
    if run.status in ("failed", "aborted"):
        return "✗", "bad"
    return "·", "other"


@functools.cache
def _bundle() -> str:
    """vega, vega-lite and vega-embed as one script, as altair's own inline template has it."""
    import vl_convert

    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])  # the Vega-Lite altair writes
    bundle: str = vl_convert.javascript_bundle(vl_version=version)  # type: ignore[call-arg]
    return bundle.replace("</script", "<\\/script")


def _data(name: str) -> alt.Data:
    """Data a chart refers to by name: page() puts its values in the spec's datasets."""
    return alt.Data(name=name)  # type: ignore[no-untyped-call]


def _json(value: Any) -> str:
    """JSON to put inside <script>: no ``<``, ``>`` or ``&`` that the HTML parser could
    read as the end of the script (``</script>``, ``<!--<script>``)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_DRAW = """\
window.dagboxReport = {charts: specs.length, drawn: 0, errors: []};
Promise.all(specs.map((spec, i) =>
  vegaEmbed("#chart" + i, spec, {actions: false, renderer: "svg"})
    .then(() => { window.dagboxReport.drawn += 1; })
    .catch((error) => { window.dagboxReport.errors.push(String(error)); console.error(error); })
)).then(() => { window.dagboxReport.done = true; });
"""

_STYLE = """\
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #1d1d1f; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.muted { color: #666; } pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; padding: 8px; border: 1px solid #eee; border-radius: 6px; }
figcaption { font-weight: 600; margin-bottom: 6px; }
table.tasks { border-collapse: collapse; font-size: 12px; }
table.tasks th, table.tasks td { border: 1px solid #e3e3e3; padding: 2px 6px; text-align: left; white-space: nowrap; }
a { text-decoration: none; } .ok { color: #1a7f37; } .bad { color: #cf222e; } .infra { color: #9a6700; }
.other { color: #888; } .j { font-size: 10px; color: #0969da; margin-right: 4px; }
"""

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dagbox report</title>
<base href="{base}">
<style>{style}</style>
<script>{bundle}</script>
</head>
<body>
{body}
<script>
{script}
</script>
</body>
</html>
"""
