"""Read bench outputs for a report: every ``results.jsonl`` any dagbox version wrote.

Each line is read on its own and every field may be absent: the earliest lines have
no ``usage`` or ``node``, and none before this version has ``dag_hash``, ``images`` or
``record``. A line that is not a JSON object of the expected shape (the torn last line
of a killed bench, a hand edit) is counted and left out, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec


class Run(msgspec.Struct, kw_only=True):
    """One line of results.jsonl; None where the line does not say."""

    key: str | None = None
    cell: str = "all"
    task: str | None = None
    params: dict[str, Any] | None = None
    repeat: int | None = None
    status: str | None = None
    run_id: str | None = None
    duration_ms: float | None = None
    queue_wait_ms: float | None = None
    overhead_ms: float | None = None
    failure_class: str | None = None
    infra: bool | None = None
    usage: dict[str, Any] | None = None
    node: str | None = None
    dag_hash: str | None = None
    images: dict[str, str] | None = None
    record: str | None = None
    steps: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ReportInputError(ValueError):
    """A bench output that cannot be read at all (no results file): a usage error."""


@dataclass
class Output:
    """One bench output folder (or results file), as the report names it."""

    label: str
    path: Path
    runs: list[Run] = field(default_factory=list)
    #: Lines left out: torn, not JSON, or not shaped like a result.
    unreadable: int = 0


_decoder = msgspec.json.Decoder(Run)


def read_outputs(given: list[str]) -> list[Output]:
    """Each output once: two spellings of one file (``out``, ``./out/``,
    ``out/results.jsonl``) or two outputs with one name are a usage error."""
    outputs = [read_output(g) for g in given]
    seen: dict[Path, str] = {}
    labels: dict[str, str] = {}
    for g, output in zip(given, outputs, strict=True):
        again = seen.setdefault(output.path.resolve(), g)
        if again != g:
            raise ReportInputError(f"{again} and {g} are the same results file")
        named = labels.setdefault(output.label, g)
        if named != g:
            raise ReportInputError(
                f"{named} and {g} would have one name ({output.label}); give their paths"
            )
    return outputs


def read_output(given: str) -> Output:
    """``given``: a bench's ``--out`` folder, or its ``results.jsonl`` itself."""
    path = Path(given)
    results = path / "results.jsonl" if path.is_dir() else path
    try:
        data = results.read_bytes()
    except OSError as exc:
        what = "has no results.jsonl" if path.is_dir() else "cannot be read"
        raise ReportInputError(f"{given} {what} ({exc.strerror or exc})") from None
    label = str(results.parent) if results.name == "results.jsonl" else given
    output = Output(label.rstrip("/") or label, results)
    by_key: dict[str, int] = {}
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            run = _decoder.decode(line)
        except msgspec.DecodeError:
            output.unreadable += 1
            continue
        if run.key is not None and run.key in by_key:  # a run resumed twice: the last one
            output.runs[by_key[run.key]] = run
            continue
        if run.key is not None:
            by_key[run.key] = len(output.runs)
        output.runs.append(run)
    return output
