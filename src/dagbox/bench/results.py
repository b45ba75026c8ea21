"""``results.jsonl``: one line per finished run, appended whole, read back for --resume.

A line is written only once its run has ended, in one write followed by fsync,
so an interrupted bench leaves complete lines and at most one torn last line,
which reading ignores. A run that did not end is simply absent, so ``--resume``
runs it again instead of counting half of it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagbox.engine.events import (
    AnyEvent,
    RunStarted,
    StepFinished,
    StepStarted,
    TryFinished,
    TryPhase,
    TryStarted,
)
from dagbox.harness.usage import Usage


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write
        if isinstance(value, dict) and "key" in value:
            out.append(value)
    return out


def _cut_torn_tail(fd: int) -> None:
    """A line torn by a killed bench is dropped (reading ignores it anyway), so that the
    first line of a --resume starts on a line of its own."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(end - 65536, 0)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


class ResultsFile:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        _cut_torn_tail(self._fd)

    def append(self, result: Mapping[str, Any]) -> None:
        """One whole line, or (OSError, e.g. a full disk) none: a torn line is cut off again,
        so that the next line cannot be glued to it."""
        data = memoryview(json.dumps(result, separators=(",", ":")).encode() + b"\n")
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise

    def close(self) -> None:
        os.close(self._fd)


class StepTimings:
    """Sink for one run: per step, what its result line needs (provider, tries, phases)."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self._last_try: dict[str, dict[str, Any]] = {}
        self.started_at: str | None = None
        #: Tokens and dollars of every try of the run that reported them, failed ones too.
        self.usage: dict[str, Any] = {}

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, RunStarted):
            self.started_at = event.ts
        elif isinstance(event, StepStarted):
            self.steps.setdefault(event.step, {"first_started": event.ts})
        elif isinstance(event, TryStarted):
            self._last_try[event.step] = {"provider": event.provider, "try": event.try_}
        elif isinstance(event, TryPhase):
            self._last_try.setdefault(event.step, {}).update(
                image_ready_ms=event.image_ready_ms,
                create_ms=event.container_create_ms,
                start_ms=event.container_start_ms,
                first_byte_ms=event.first_byte_ms,
                teardown_ms=event.container_remove_ms,
            )
        elif isinstance(event, TryFinished):
            entry = self._last_try.setdefault(event.step, {})
            entry["try_ms"] = event.duration_ms
            step = self.steps.setdefault(event.step, {})
            step["inside_ms"] = step.get("inside_ms", 0.0) + event.duration_ms
            if event.usage is not None:
                add_usage(step.setdefault("usage", {}), event.usage)
                add_usage(self.usage, event.usage)
        elif isinstance(event, StepFinished) and event.handler is None:
            step = self.steps.setdefault(event.step, {})
            last = self._last_try.get(event.step, {})
            duration_ms = (event.duration_sec or 0.0) * 1000
            if "inside_ms" not in step and event.attempts:
                step["inside_ms"] = duration_ms  # a command step: all of it is the process
            outside = ("image_ready_ms", "create_ms", "start_ms", "teardown_ms")
            setup = sum(last.get(k) or 0.0 for k in outside)
            started = step.get("first_started")
            step["line"] = {
                "name": event.step,
                "status": event.status,
                "exit_code": event.exit_code,
                "provider": last.get("provider"),
                "tries": last.get("try", 1 if event.attempts else 0),
                "attempts": event.attempts,
                "failure_class": event.failure_class,
                "usage": step.get("usage") or None,
                "phases": {
                    "queue_wait_ms": _between(self.started_at, started),
                    "image_ready_ms": last.get("image_ready_ms"),
                    "create_ms": last.get("create_ms"),
                    "start_ms": last.get("start_ms"),
                    "first_byte_ms": last.get("first_byte_ms"),
                    "run_ms": round(last["try_ms"] - setup, 1)
                    if "try_ms" in last
                    else round(duration_ms, 1),
                    "teardown_ms": last.get("teardown_ms"),
                },
            }

    def step_lines(self) -> list[dict[str, Any]]:
        return [s["line"] for s in self.steps.values() if "line" in s]

    def inside_ms(self) -> float:
        """Time spent in harness processes and engine calls (the tries), summed over steps."""
        return float(sum(s.get("inside_ms", 0.0) for s in self.steps.values()))


#: The usage fields a bench adds up; ``model`` and ``turns`` stay in the journals.
SUMMED = ("input_tokens", "output_tokens", "cached_tokens", "cost_usd")


def add_usage(total: dict[str, Any], usage: Usage) -> None:
    """Add one try's reported usage to ``total`` (a field nobody reported stays absent)."""
    for name in SUMMED:
        value = getattr(usage, name)
        if value is not None:
            total[name] = round(total.get(name, 0) + value, 6)


def _between(start: str | None, end: str | None) -> float | None:
    """Milliseconds between two event timestamps."""
    if start is None or end is None:
        return None
    from datetime import datetime

    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds() * 1000, 1)
