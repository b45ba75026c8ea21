"""What a bench runs: the cells of the matrix, the tasks, the repeats, and their keys.

Every run of a bench is a job: one DAG run with one set of params. A job's key
is the sha256 of everything that decides its outcome: the DAG as dagbox reads
it, the params, the repeat index and the images (by id when the engine knows
them). ``--resume`` skips a key only when that exact job has a result, so a
changed DAG, param or image is run again, and never mistaken for a done job.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from dagbox.secrets import MASK, is_secret_name
from dagbox.spec.model import Dag


class BenchInputError(ValueError):
    """A bad --matrix or --tasks value (a usage error)."""


@dataclass(frozen=True)
class Cell:
    """One combination of matrix values (and a task): the unit results are grouped by."""

    matrix: tuple[tuple[str, str], ...] = ()
    task: str | None = None
    #: How each matrix value is shown: a secret-named axis by its place (``***2``), so that
    #: its values stay out of results.jsonl, summary.json and the terminal.
    shown: tuple[str, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        parts = self._parts()
        if self.task is not None:
            parts.insert(0, f"task={self.task}")
        return " ".join(parts) or "all"

    @property
    def matrix_label(self) -> str:
        return " ".join(self._parts()) or "all"

    def _parts(self) -> list[str]:
        shown = self.shown or tuple(v for _, v in self.matrix)
        return [f"{k}={v}" for (k, _), v in zip(self.matrix, shown, strict=True)]


@dataclass(frozen=True)
class Job:
    cell: Cell
    repeat: int
    params: Mapping[str, str] = field(default_factory=dict)
    key: str = ""


def parse_matrix(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["MODEL=a,b", "PROVIDER=x"]`` -> ``[("MODEL", ["a", "b"]), ("PROVIDER", ["x"])]``."""
    out: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BenchInputError(f"--matrix {item!r}: use KEY=value1,value2")
        if name in seen:
            raise BenchInputError(f"--matrix {name} is given twice")
        seen.add(name)
        choices = [v.strip() for v in values.split(",")]
        if not all(choices):
            raise BenchInputError(f"--matrix {item!r}: a value is empty")
        out.append((name, choices))
    return out


def load_tasks(path: Path) -> list[tuple[str, dict[str, str]]]:
    """A JSON-lines file of param objects -> [(label, params)]; label from id/name, else the line."""
    tasks = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BenchInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise BenchInputError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BenchInputError(f"{path}:{number}: a task is a JSON object of params")
        params = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        label = params.get("id") or params.get("name") or str(number)
        tasks.append((label, params))
    if not tasks:
        raise BenchInputError(f"{path} has no tasks")
    return tasks


def dag_hash(dag: Dag) -> str:
    """The DAG as loaded (not its file's bytes: comments and key order do not count)."""
    return _sha256(msgspec.to_builtins(dag))


def content_key(dag: Dag, params: Mapping[str, str], repeat: int, images: Mapping[str, str]) -> str:
    document = {
        "dag": msgspec.to_builtins(dag),
        "params": dict(sorted(params.items())),
        "repeat": repeat,
        "images": dict(sorted(images.items())),
    }
    return _sha256(document)


def _sha256(document: object) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def jobs(
    dag: Dag,
    matrix: Sequence[tuple[str, list[str]]],
    tasks: Sequence[tuple[str, dict[str, str]]] | None,
    repeat: int,
    images: Mapping[str, str],
) -> list[Job]:
    """Every (task x matrix cell x repeat), in a stable order, each with its key."""
    names = [name for name, _ in matrix]
    combos = list(itertools.product(*(values for _, values in matrix))) or [()]
    shown_as = {
        name: {v: f"{MASK}{i}" if is_secret_name(name) else v for i, v in enumerate(values, 1)}
        for name, values in matrix
    }
    out = []
    no_task: list[tuple[str | None, dict[str, str]]] = [(None, {})]
    for task_label, task_params in tasks or no_task:
        for combo in combos:
            shown = tuple(shown_as[n][v] for n, v in zip(names, combo, strict=True))
            cell = Cell(tuple(zip(names, combo, strict=True)), task_label, shown)
            params = {**task_params, **dict(cell.matrix)}
            for index in range(repeat):
                out.append(Job(cell, index, params, content_key(dag, params, index, images)))
    return out


def image_references(dag: Dag) -> set[str]:
    """Images the DAG names, as written (templates and all)."""
    containers = [dag.container, *(s.container for s in dag.every_step())]
    return {c.image for c in containers if c is not None and c.image}
