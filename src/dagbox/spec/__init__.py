"""Loading DAG files: text in, a validated :class:`~dagbox.spec.model.Dag` out.

Pure: no processes, no Docker, no asyncio. ``load`` either returns the DAG and
its warnings, or raises :class:`~dagbox.spec.issues.DagError` with every
problem found, each located as ``FILE:LINE:COL: PATH: MESSAGE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dagbox.spec import calls, defaults, rules, traps
from dagbox.spec.build import Builder
from dagbox.spec.forms import INVALID
from dagbox.spec.issues import DagError, Issue, LocatedIssue, Sink, format_path
from dagbox.spec.model import Dag, Step
from dagbox.spec.source import Source, read

__all__ = ["Dag", "DagError", "Loaded", "load"]


@dataclass(frozen=True)
class Loaded:
    """A valid DAG, where it came from, the warnings met while loading it, and the
    sub-DAGs it can call (by the name a step calls them, with the file each is in)."""

    dag: Dag
    path: Path
    warnings: list[LocatedIssue]
    dags: dict[str, tuple[Dag, Path]] = field(default_factory=dict)


def load(
    path: str | os.PathLike[str],
    text: bytes | str | None = None,
    *,
    _loading: tuple[Path, ...] = (),
    _loaded: dict[Path, Loaded] | None = None,
) -> Loaded:
    """Load and validate the DAG file at ``path`` (or ``text``, reported as ``path``),
    and the sub-DAGs it calls: the file's other documents, and files beside it."""
    path = Path(path)
    source = read(path, text)
    local_names = {
        str(d.data["name"]).strip()
        for d in source.documents
        if isinstance(d.data, dict) and d.data.get("name") is not None
    }
    documents = [_Document(source, path, local_names, 1)]
    documents += [_Document(d, path, local_names, n) for n, d in enumerate(source.documents, 2)]
    local: dict[str, Dag] = {}
    for number, document in enumerate(documents[1:], 2):
        child = document.dag
        if child is not None and child.name is not None:
            if child.name in local:
                document.sink.error(
                    f'document {number} is a second sub-DAG named "{child.name}": the names '
                    "of a file's documents must be unique",
                    "name",
                )
            local.setdefault(child.name, child)
    located: list[LocatedIssue] = []
    dag = documents[0].dag
    dags: dict[str, tuple[Dag, Path]] = {}
    if dag is not None and not any(d.failed for d in documents):
        owner = {id(s): d for d in documents for s in (d.dag.every_step() if d.dag else ())}

        def report(step: Step, message: str) -> None:
            owner[id(step)].at(step).error(message, "call")

        cache = {} if _loaded is None else _loaded  # a file two calls reach is read once

        def load_sibling(
            file: Path, loading: tuple[Path, ...]
        ) -> tuple[Dag, dict[str, tuple[Dag, Path]]]:
            if file not in cache:
                cache[file] = load(file, _loading=loading, _loaded=cache)
            return cache[file].dag, cache[file].dags

        dags = calls.collect(dag, path, local, report, located, load_sibling, _loading)
    for document in documents:
        located.extend(_locate(document.source, document.issues))
    located.sort(key=lambda i: (i.file != str(path), i.file, i.line, i.col))
    if dag is None or any(i.severity == "error" for i in located):
        raise DagError(str(path), located)
    if dag.name is None:
        dag.name = path.stem
    return Loaded(dag, path, located, dags)


class _Document:
    """One document of a file, built as a DAG (``dag`` None if it is not one), with its
    issues. A document after the first is a sub-DAG: it needs a ``name:``."""

    def __init__(self, source: Source, path: Path, local: set[str], number: int) -> None:
        first = number == 1
        self.source = source
        self.issues = list(source.issues)
        self.sink = Sink(self.issues)
        self.builder = Builder()
        self.dag: Dag | None = None
        if any(i.severity == "error" and i.line is not None for i in self.issues):
            return
        if source.root is None or source.data is None:
            if not first:
                self.sink.error(
                    f"document {number} of the file is empty: a sub-DAG needs a name: and steps:"
                )
            elif source.root is not None or not self.issues:
                self.sink.error("the file is empty: a DAG needs at least a steps: list")
            return
        dag = self.builder.build(defaults.apply(source.data, self.sink), Dag, self.sink)
        if dag is INVALID:
            return
        self.dag = dag
        calls.legacy_run(dag, source.data, path, local, self.builder.sinks, self.sink)
        rules.check(dag, self.builder.sinks, self.builder.flawed, self.sink)
        calls.check_names(dag, path, local, self.builder.sinks, self.sink)
        traps.warn(dag, source.data, path, self.sink)
        if not first and dag.name is None:
            self.sink.error(
                f"document {number} of the file is a sub-DAG: it needs a name: to be called by"
            )
        elif dag.name is None and (problem := rules.dag_name_problem(path.stem)):
            self.sink.error(
                f"without a name: key, the DAG is named after its file, {path.stem!r}; "
                f"{problem}: add a name: key"
            )

    def at(self, obj: object) -> Sink:
        return self.builder.sinks.get(id(obj), self.sink)

    @property
    def failed(self) -> bool:
        return any(i.severity == "error" for i in self.issues)


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
    return out
