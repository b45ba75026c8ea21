"""Which DAG each sub-DAG call runs, decided when the file loads (docs/format.md,
"Sub-DAGs").

A name is a later document of the same file (by its ``name:``), else ``NAME.yaml`` or
``NAME.yml`` beside the file, as Dagu looks them up. Dagu finds out that a name names
nothing, or that calls go round in a circle, only when the run reaches the step; here
both are located errors at ``validate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dagbox.plan import item_text
from dagbox.spec.issues import DagError, LocatedIssue, Sink
from dagbox.spec.model import Dag, Step
from dagbox.spec.traps import camel_case
from dagbox.values import Scope

_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")

#: Loads a sibling file (spec.load, with the files being loaded, to stop a circle).
Loader = Callable[[Path, tuple[Path, ...]], tuple[Dag, dict[str, tuple[Dag, Path]]]]


def sibling(path: Path, name: str) -> Path | None:
    """The file NAME calls from the file ``path``: ``NAME.yaml`` (or ``.yml``) in its folder,
    or NAME as a path to a ``.yaml``/``.yml`` file (relative to that folder); not ``path``."""
    folder = path.resolve().parent
    if "/" in name or name.endswith((".yaml", ".yml")):
        candidates = [Path(name).expanduser()]
        candidates = [c if c.is_absolute() else folder / c for c in candidates]
    elif _WORD.match(name) and name not in (".", ".."):
        candidates = [folder / f"{name}.yaml", folder / f"{name}.yml"]
    else:
        return None
    for candidate in candidates:
        try:
            if (
                candidate.suffix in (".yaml", ".yml")
                and candidate.is_file()
                and candidate.resolve() != path.resolve()
            ):
                return candidate.resolve()
        except OSError:  # a name too long for a file: no DAG is called that
            return None
    return None


def names(step: Step) -> list[str] | None:
    """The names a step calls: its name, or one per written item when the name holds
    ``${ITEM}``; None when only a run can tell (a reference to a list)."""
    name = step.call
    if name is None:
        return []
    if "$" not in name:
        return [name]
    items = step.parallel.items if step.parallel is not None else None
    if items is None or isinstance(items, str):
        return None
    out = []
    for item in items:
        resolved = Scope({}, {"ITEM": item_text(item)}).value(name)
        if "$" in resolved:
            return None
        out.append(resolved)
    return list(dict.fromkeys(out))


def legacy_run(
    dag: Dag, raw: Any, path: Path, local: set[str], sinks: Mapping[int, Sink], sink: Sink
) -> None:
    """Dagu 1.x's ``run: NAME`` called the DAG NAME (its commands were ``command:``); 2.x
    runs NAME as a command. Where a step says ``run:`` (not ``command:``) and NAME names a
    sub-DAG (a document of this file, a file beside it), dagbox calls it, as the file
    meant, and says how 2.x spells it."""
    written = raw.get("steps") if isinstance(raw, dict) else None
    if not isinstance(written, list) or len(written) != len(dag.steps):
        return  # the mapping form of steps: not Dagu 1.x's
    old = _looks_1x(raw, written)
    for step, text in zip(dag.steps, written, strict=True):
        run = step.run
        if (
            step.call is not None
            or not isinstance(text, dict)
            or "run" not in text
            or "command" in text
            or not isinstance(run, str)
            or not _WORD.match(run.strip())
        ):
            continue
        name = run.strip()
        if name not in local and sibling(path, name) is None:
            continue
        if old or step.params is not None or step.parallel is not None:
            step.call, step.run = name, None
            sinks.get(id(step), sink).warn(
                f"run: {name} calls the sub-DAG {name}, as Dagu 1.x did (Dagu 2.x would run "
                f"it as a command): write action: dag.run with with: {{dag: {name}}}",
                "run",
            )
        else:  # a 2.x file: a command, as it says; but maybe it meant the DAG
            sinks.get(id(step), sink).warn(
                f"run: {name} names the sub-DAG {name}, which Dagu 1.x called; Dagu 2.x and "
                f"dagbox run the command {name}: to call the DAG, write action: dag.run "
                f"with with: {{dag: {name}}}",
                "run",
            )


def _looks_1x(raw: dict[str, Any], steps: list[Any]) -> bool:
    """A file written for Dagu 1.x: camelCase keys, or ``command:`` steps (1.x's spelling
    of a command, when ``run:`` was a sub-DAG)."""
    return camel_case(raw, steps) or any(isinstance(s, dict) and "command" in s for s in steps)


def check_names(
    dag: Dag, path: Path, local: set[str], sinks: Mapping[int, Sink], sink: Sink
) -> None:
    """Every call names a DAG that exists."""
    for step in dag.every_step():
        for name in names(step) or ():  # None: a reference only a run can resolve
            if name not in local and sibling(path, name) is None:
                sinks.get(id(step), sink).error(
                    f'no DAG named "{name}": not a document of this file (name: {name}), '
                    f"nor {name}.yaml beside it",
                    "call",
                )


def collect(
    dag: Dag,
    path: Path,
    local: Mapping[str, Dag],
    report: Callable[[Step, str], None],
    located: list[LocatedIssue],
    load: Loader,
    loading: tuple[Path, ...],
) -> dict[str, tuple[Dag, Path]]:
    """Every DAG ``dag`` can reach through calls, by the name it is called by, with the
    file it is in; a circle of calls and two DAGs under one name are reported."""
    found: dict[str, tuple[Dag, Path]] = {}

    def add(name: str, entry: tuple[Dag, Path], step: Step) -> None:
        held = found.get(name)
        if held is not None and held[1] != entry[1]:  # one file reached twice is one DAG
            report(step, f'two different DAGs are called "{name}" ({held[1]}, {entry[1]})')
        found.setdefault(name, entry)

    def visit(current: Dag, trail: tuple[str, ...]) -> None:
        for step in current.every_step():
            called = names(step)
            if called is None:  # a reference only a run resolves: any document of the file
                for key, document in local.items():
                    if key not in found:
                        add(key, (document, path), step)
                        visit(document, (*trail, key))
                continue
            for name in called:
                reach(step, name, trail)

    def reach(step: Step, name: str, trail: tuple[str, ...]) -> None:
        if name in trail or (name not in local and sibling(path, name) in (*loading, path)):
            circle = " -> ".join((*trail, name))
            report(step, f"sub-DAG calls go round in a circle: {circle}")
            return
        if name in local:
            first = name not in found
            add(name, (local[name], path), step)
            if first:
                visit(local[name], (*trail, name))
            return
        file = sibling(path, name)
        if file is None or name in found:
            return
        try:
            child, reached = load(file, (*loading, path))
        except DagError as exc:
            located.extend(exc.issues)
            return
        add(name, (child, file), step)
        for key, entry in reached.items():
            add(key, entry, step)

    visit(dag, (dag.name or path.stem,))
    return found
