"""``dagbox logs``: print, or follow, the log files a run record points to."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dagbox.engine.lines import LineSplitter
from dagbox.records import RunRecord, find_run, read_record, runner_gone

FINAL = {"succeeded", "failed", "aborted", "partially_succeeded"}
POLL_SECONDS = 0.2


def _files(record: RunRecord, step: str | None, stream: str) -> list[tuple[str, str]]:
    """(label, path) of the chosen stream for the chosen step(s), in record order."""
    rows = [(s.name, s.stdout_file if stream == "stdout" else s.stderr_file) for s in record.steps]
    rows += [
        (f"on{k.capitalize()}", h.stdout_file if stream == "stdout" else h.stderr_file)
        for k, h in record.handlers.items()
    ]
    if step is not None:
        rows = [(name, path) for name, path in rows if name == step]
    return [(name, path) for name, path in rows if path]


def show_logs(run_id: str, step: str | None, stream: str, follow: bool) -> int:
    found = find_run(run_id)
    if found is None:
        sys.stderr.write(f"no run with id {run_id}\n")
        return 2
    record, run_dir = found
    if step is not None and step not in {s.name for s in record.steps} | {
        f"on{k.capitalize()}" for k in record.handlers
    }:
        sys.stderr.write(f"run {run_id} has no step {step!r}\n")
        return 2
    offsets: dict[str, int] = {}
    splitters: dict[str, LineSplitter] = {}
    out = sys.stdout
    while True:
        done = record.status in FINAL or runner_gone(record)
        for name, path in _files(record, step, stream):
            position = offsets.get(path, 0)
            try:
                with Path(path).open("rb") as handle:
                    handle.seek(position)
                    data = handle.read()
            except FileNotFoundError:
                continue
            offsets[path] = position + len(data)
            if step is not None:
                out.buffer.write(data) if hasattr(out, "buffer") else out.write(
                    data.decode(errors="replace")
                )
                continue
            splitter = splitters.setdefault(path, LineSplitter())
            lines = splitter.feed(data) + (splitter.flush() if done or not follow else [])
            out.write("".join(f"{name} | {line}\n" for line in lines))
        out.flush()
        if done or not follow:
            return 0
        time.sleep(POLL_SECONDS)
        record = read_record(run_dir / "run.json")
