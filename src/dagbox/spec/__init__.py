"""Loading DAG files: text in, a validated :class:`~dagbox.spec.model.Dag` out.

Pure: no processes, no Docker, no asyncio. ``load`` either returns the DAG and
its warnings, or raises :class:`~dagbox.spec.issues.DagError` with every
problem found, each located as ``FILE:LINE:COL: PATH: MESSAGE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dagbox.spec import defaults, rules, traps
from dagbox.spec.build import Builder
from dagbox.spec.forms import INVALID
from dagbox.spec.issues import DagError, Issue, LocatedIssue, Sink, format_path
from dagbox.spec.model import Dag
from dagbox.spec.source import Source, read

__all__ = ["Dag", "DagError", "Loaded", "load"]


@dataclass(frozen=True)
class Loaded:
    """A valid DAG, where it came from, and the warnings met while loading it."""

    dag: Dag
    path: Path
    warnings: list[LocatedIssue]


def load(path: str | os.PathLike[str], text: bytes | str | None = None) -> Loaded:
    """Load and validate the DAG file at ``path`` (or ``text``, reported as ``path``)."""
    path = Path(path)
    source = read(path, text)
    issues = list(source.issues)
    dag = None
    if (
        not any(i.severity == "error" and i.line is not None for i in issues)
        and source.root is not None
    ):
        builder = Builder()
        sink = Sink(issues)
        if source.data is None:
            sink.error("the file is empty: a DAG needs at least a steps: list")
        else:
            dag = builder.build(defaults.apply(source.data, sink), Dag, sink)
            if dag is not INVALID:
                rules.check(dag, builder.sinks, builder.flawed, sink)
                traps.warn(dag, source.data, path, sink)
                if dag.name is None and (problem := rules.dag_name_problem(path.stem)):
                    sink.error(
                        f"without a name: key, the DAG is named after its file, {path.stem!r}; "
                        f"{problem}: add a name: key"
                    )
    elif source.root is None and not issues:
        issues.append(Issue((), "the file is empty: a DAG needs at least a steps: list"))
    located = _locate(source, issues)
    errors = [i for i in located if i.severity == "error"]
    if errors or dag is None or dag is INVALID:
        raise DagError(str(path), located)
    if dag.name is None:
        dag.name = path.stem
    return Loaded(dag, path, located)


def _locate(source: Source, issues: list[Issue]) -> list[LocatedIssue]:
    out = []
    for issue in issues:
        if issue.line is not None:
            line, col = issue.line, issue.col or 1
        else:
            line, col = source.locate(issue.path, issue.at_key)
        out.append(
            LocatedIssue(
                str(source.path), line, col, format_path(issue.path), issue.message, issue.severity
            )
        )
    out.sort(key=lambda i: (i.line, i.col))
    return out
