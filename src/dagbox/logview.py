"""``dagbox logs``: print, or follow, the log files a run record points to.

Logs are streamed a chunk at a time, so a log of any size is printed in bounded memory.
Only files inside the run's own folder are read: a record names its logs, and a record
that names ``/etc/shadow`` is not a reason to print it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import BinaryIO

from dagbox.layout import RunLayout
from dagbox.lines import LineSplitter
from dagbox.records import RecordError, RunRecord, read_record, runner_gone
from dagbox.terminal import printable

FINAL = {"succeeded", "failed", "aborted", "partially_succeeded"}
POLL_SECONDS = 0.2
CHUNK = 64 * 1024


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


def _inside(path: str, run_dir: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(run_dir.resolve())
    except (OSError, RuntimeError):
        return False


def show_logs(record: RunRecord, run_dir: Path, step: str | None, stream: str, follow: bool) -> int:
    if step is not None and step not in {s.name for s in record.steps} | {
        f"on{k.capitalize()}" for k in record.handlers
    }:
        sys.stderr.write(f"run {record.run_id} has no step {printable(step)!r}\n")
        return 2
    offsets: dict[str, int] = {}
    splitters: dict[str, LineSplitter] = {}
    out = sys.stdout
    raw: BinaryIO | None = getattr(out, "buffer", None)
    while True:
        done = record.status in FINAL or runner_gone(record)
        for name, path in _files(record, step, stream):
            if not _inside(path, run_dir):
                continue
            try:
                handle = Path(path).open("rb")  # noqa: SIM115 (closed below, in the loop)
            except FileNotFoundError:
                continue
            with handle:
                handle.seek(offsets.get(path, 0))
                label = printable(name)
                splitter = splitters.setdefault(path, LineSplitter())
                while chunk := handle.read(CHUNK):
                    offsets[path] = offsets.get(path, 0) + len(chunk)
                    if step is not None:  # one step: its bytes, as they are
                        if raw is not None:
                            raw.write(chunk)
                        else:
                            out.write(chunk.decode(errors="replace"))
                        continue
                    out.write("".join(f"{label} | {line}\n" for line in splitter.feed(chunk)))
            if step is None and (done or not follow):
                out.write("".join(f"{label} | {line}\n" for line in splitter.flush()))
        out.flush()
        if done or not follow:
            return 0
        time.sleep(POLL_SECONDS)
        try:
            record = read_record(RunLayout(run_dir).record)
        except RecordError as exc:
            sys.stderr.write(f"dagbox: {exc}\n")
            return 2
