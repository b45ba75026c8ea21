"""Run records on disk: ``run.json``, ``events.jsonl`` and the step log files.

:class:`RecordWriter` is a sink: it follows the engine's events and keeps the
files of one run. ``run.json`` is rewritten atomically (write, then rename)
when the run's state changes, at most every ``interval`` seconds while steps
keep changing and always at the end, so a reader sees a whole file that is
never more than a fraction of a second old (a run shorter than that is written
once, at its end). ``events.jsonl`` gets one line per
event through structlog, flushed whenever ``run.json`` is written. Log files receive the
bytes exactly as the process wrote them.

The functions at the end read records back for ``dagbox status``, ``logs``
and ``history``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec

from dagbox import __version__
from dagbox.engine.events import (
    JOURNAL_EVENTS,
    AnyEvent,
    AttemptFinished,
    AttemptStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepRetrying,
    StepStarted,
    TryStarted,
    now_iso,
)
from dagbox.layout import RunLayout, home, run_id_problem, safe_name
from dagbox.lazy import import_structlog
from dagbox.owner import alive as owner_alive
from dagbox.owner import token as owner_token


class StepRecord(msgspec.Struct):
    name: str
    id: str | None = None
    status: str = "not_started"
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    retry_count: int = 0
    outputs: dict[str, str] = msgspec.field(default_factory=dict)
    error: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None


class HandlerRecord(msgspec.Struct):
    status: str = "not_started"
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None


class RunRecord(msgspec.Struct):
    """The schema of ``run.json``."""

    run_id: str
    dag: str
    file: str
    status: str
    params: dict[str, str]
    started_at: str
    finished_at: str | None = None
    error: str | None = None
    steps: list[StepRecord] = msgspec.field(default_factory=list)
    handlers: dict[str, HandlerRecord] = msgspec.field(default_factory=dict)
    duration_sec: float | None = None
    pid: int = 0
    #: ``host:pid@start`` of the dagbox process that runs it: see :func:`runner_gone`.
    owner: str = ""
    dagbox_version: str = __version__
    #: A child run: who called it (docs/format.md, "Sub-DAGs"); its record is in the
    #: ``children/`` folder of its parent's.
    parent_run_id: str | None = None
    parent_step: str | None = None
    root_run_id: str | None = None


def runner_gone(record: RunRecord) -> bool:
    """An unfinished record whose dagbox process died (SIGKILL, a crash): it will not end."""
    return record.finished_at is None and bool(record.owner) and not owner_alive(record.owner)


def shown_status(record: RunRecord) -> str:
    return f"{record.status} (its dagbox process is gone)" if runner_gone(record) else record.status


_encoder = msgspec.json.Encoder()


def _json_line(_: Any, __: str, event_dict: dict[str, Any]) -> bytes:
    return _encoder.encode(event_dict)


class LostWrites:
    """What a full disk (or a lost permission) kept out of a run's record.

    A write that fails must not end the run: the steps' work matters more than its
    record, and a crash would lose the record entirely. So each failure is caught where
    it happens, the first one is told at once, the rest are counted, and the run ends
    with exit 1 and a summary (:attr:`summary`).
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.first: str | None = None
        self.count = 0

    @contextlib.contextmanager
    def guard(self, path: object) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            self.failed(path, exc)

    def failed(self, path: object, exc: OSError) -> None:
        self.lost(f"cannot write {path}: {exc.strerror or exc}")

    def lost(self, message: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = message
            self.warn(f"{message}; the run goes on, but its record or output will be incomplete")

    @property
    def summary(self) -> str | None:
        if self.first is None:
            return None
        more = self.count - 1
        return self.first + (f" (and {more} more failed write{'s' * (more > 1)})" if more else "")


#: An agent step's own stderr file, beside its tries' files: every try's stderr, in order.
ATTEMPT_STDERR = "attempt-stderr"


class RecordWriter:
    """Sink that keeps one run's record directory."""

    def __init__(
        self,
        layout: RunLayout,
        step_ids: dict[str, str | None],
        interval: float = 0.25,
        lost: LostWrites | None = None,
    ) -> None:
        self.layout = layout
        self.step_ids = step_ids
        self.interval = interval
        self.lost = lost or LostWrites(lambda _: None)
        self.record: RunRecord | None = None
        self._steps: dict[str, StepRecord] = {}
        self._files: dict[tuple[str, str], IO[bytes]] = {}
        self._events: IO[bytes] | None = None
        self._log: Any = None
        self._dirty = False
        self._written = 0.0
        self._wake = anyio.Event()

    # --- events ------------------------------------------------------------------------

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, StepOutput):
            self._to_file(event.step, event.stream, event.data)
            if event.stream == "stderr":
                self._to_file(event.step, ATTEMPT_STDERR, event.data)
            return
        if isinstance(event, RunStarted):
            self._start(event)
        else:
            assert self.record is not None
            self._update(event)
        if self._log is not None:
            fields = msgspec.to_builtins(event)
            with self.lost.guard(self.layout.events):
                self._log.info(fields.pop("event"), **fields)
        if isinstance(event, RunFinished):
            self._dirty = True
            self.close()
        else:
            self._changed()

    def _start(self, event: RunStarted) -> None:
        self.record = RunRecord(
            run_id=event.run_id,
            dag=event.dag,
            file=event.file,
            status="running",
            params=event.params,
            started_at=event.ts,
            pid=os.getpid(),
            owner=owner_token(),
            steps=[StepRecord(name=n, id=self.step_ids.get(n)) for n in event.steps],
            handlers={h: HandlerRecord() for h in event.handlers},
            parent_run_id=event.parent_run_id,
            parent_step=event.parent_step,
            root_run_id=event.root_run_id,
        )
        self._steps = {s.name: s for s in self.record.steps}
        self._open_events()
        # The first write waits like any other (a run shorter than the interval is written
        # once, when it ends): thousands of short runs in a bench make this count.
        self._written = time.monotonic()
        self._changed()

    def _open_events(self) -> None:
        with self.lost.guard(self.layout.events):
            make_dir(self.layout.dir)
            # Buffered: flushed with each write of run.json and at the end, not line by line.
            self._events = self.layout.events.open("ab")
            structlog = import_structlog()
            self._log = structlog.wrap_logger(
                _BufferedLines(self._events),
                processors=[_json_line],
                wrapper_class=structlog.BoundLogger,
            )

    def _update(self, event: AnyEvent) -> None:
        assert self.record is not None
        if isinstance(event, StepStarted):
            self._open_files(event.step, event.stdout_file, event.stderr_file)
            target = self._target(event.step, event.handler)
            target.status = "running"
            target.started_at = target.started_at or event.ts
            target.stdout_file, target.stderr_file = event.stdout_file, event.stderr_file
        elif isinstance(event, TryStarted):  # each harness try has its own log files
            self._open_try(event)
        elif isinstance(event, StepRetrying):
            self._close_files(event.step)
            step = self._steps[event.step]
            step.status, step.retry_count, step.exit_code = (
                "retrying",
                event.attempt,
                event.exit_code,
            )
        elif isinstance(event, StepFinished):
            self._close_files(event.step)
            target = self._target(event.step, event.handler)
            target.status, target.exit_code, target.error = (
                event.status,
                event.exit_code,
                event.error,
            )
            target.started_at = event.started_at or target.started_at
            target.finished_at = event.ts
            target.stdout_file = event.stdout_file or target.stdout_file
            target.stderr_file = event.stderr_file or target.stderr_file
            if isinstance(target, StepRecord):
                target.outputs = dict(event.outputs)
                target.retry_count = max(event.attempts - 1, 0)
        elif isinstance(event, RunFinished):
            every: list[StepRecord | HandlerRecord] = [
                *self.record.steps,
                *self.record.handlers.values(),
            ]
            for target in every:
                if target.status in ("running", "retrying"):  # only after an internal error
                    target.status, target.finished_at = "aborted", event.ts
            self.record.status = event.status
            self.record.error = event.error
            self.record.finished_at = event.ts
            self.record.duration_sec = event.duration_sec

    def _open_files(self, step: str, stdout_file: str | None, stderr_file: str | None) -> None:
        self._close_files(step)
        self._open_stream(step, "stdout", stdout_file)
        self._open_stream(step, "stderr", stderr_file)

    def _open_stream(self, step: str, stream: str, path: str | None) -> None:
        if path is not None:
            with self.lost.guard(path):
                make_dir(Path(path).parent)
                # unbuffered: `dagbox logs -f` and tail -f see each chunk as it comes
                self._files[(step, stream)] = Path(path).open("wb", buffering=0)  # noqa: SIM115

    def _open_try(self, event: TryStarted) -> None:
        """A harness try's own files. The attempt's stderr file (the step's, opened at
        step.started) stays open beside them: every try's stderr goes there too, in order,
        after a header line, with the harness's own lines between the tries."""
        step = event.step
        if (step, ATTEMPT_STDERR) not in self._files:
            attempt = self._files.pop((step, "stderr"), None)
            if attempt is not None:
                self._files[(step, ATTEMPT_STDERR)] = attempt
        current = self._files.get((step, "stdout"))
        if current is None or current.name != event.stdout_file:  # the first try's: open
            self._close_files(step, ("stdout", "stderr"))
            self._open_stream(step, "stdout", event.stdout_file)
        self._open_stream(step, "stderr", event.stderr_file)
        header = f"--- try {event.try_}: {event.provider} ---\n"
        self._to_file(step, ATTEMPT_STDERR, header.encode())

    def _to_file(self, step: str, stream: str, data: bytes) -> None:
        handle = self._files.get((step, stream))
        if handle is None:
            return
        try:
            _write_all(handle, data)
        except OSError as exc:
            # A log with its end missing is honest; one with a hole in it is not.
            del self._files[(step, stream)]
            with contextlib.suppress(OSError):
                handle.close()
            self.lost.failed(handle.name, exc)

    def _target(self, step: str, handler: str | None) -> StepRecord | HandlerRecord:
        assert self.record is not None
        return self.record.handlers[handler] if handler is not None else self._steps[step]

    def _close_files(
        self, step: str, streams: tuple[str, ...] = ("stdout", "stderr", ATTEMPT_STDERR)
    ) -> None:
        for stream in streams:
            handle = self._files.pop((step, stream), None)
            if handle is not None:
                with self.lost.guard(handle.name):
                    handle.close()

    # --- run.json ----------------------------------------------------------------------

    def _changed(self) -> None:
        self._dirty = True
        if time.monotonic() - self._written >= self.interval:
            self._write()
        else:
            self._wake.set()

    def _write(self) -> None:
        """Flush events.jsonl and replace run.json; on failure, the next change tries again."""
        assert self.record is not None
        self._written = time.monotonic()
        if self._events is None and self.record.finished_at is None:
            self._open_events()  # it could not be opened at the start: space may be back
        if self._events is not None:
            with self.lost.guard(self.layout.events):
                self._events.flush()
        data = msgspec.json.format(_encoder.encode(self.record), indent=2)
        try:
            make_dir(self.layout.dir)
            write_whole(self.layout.record, data)
        except OSError as exc:
            self.lost.failed(self.layout.record, exc)
        else:
            self._dirty = False

    async def keep_fresh(self) -> None:
        """Run beside the engine: writes changes that arrived too soon after the last write."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(max(0.0, self.interval - (time.monotonic() - self._written)))
            if self._dirty and self.record is not None:
                self._write()

    def close(self) -> None:
        """Idempotent. Called again after the run, it retries a final write that failed."""
        for key in list(self._files):
            self._close_files(key[0])
        if self.record is not None and self._dirty:
            self._write()
        if self._events is not None:
            with self.lost.guard(self.layout.events):
                self._events.close()
            self._events = self._log = None

    @property
    def unfinished(self) -> bool:
        """run.json does not hold the run's last state (a write failed)."""
        return self._dirty


def write_whole(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (a temporary file beside it, then a rename), so that a
    reader never sees half of it; on OSError (a full disk) the old file stays."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a partial copy only takes space
        raise


def _write_all(handle: IO[bytes], data: bytes) -> None:
    """An unbuffered write may take only part of the data (a nearly full disk): loop."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(errno.EIO, "the file took no more bytes")
        view = view[written:]


class _BufferedLines:
    """A structlog logger that appends lines to a file without flushing each one."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    def msg(self, message: bytes) -> None:
        self._handle.write(message + b"\n")

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


_made: set[Path] = set()


def make_dir(path: Path) -> None:
    """mkdir -p, once per folder: on some filesystems each mkdir costs a tenth of a millisecond."""
    if path not in _made:
        path.mkdir(parents=True, exist_ok=True)
        _made.add(path)


class JournalWriter:
    """Sink that writes each harness attempt's events to its ``journal_file``
    (``attempts/<index>-<step>/<attempt>.jsonl``)."""

    def __init__(self, lost: LostWrites | None = None) -> None:
        self.lost = lost or LostWrites(lambda _: None)
        self._open: dict[tuple[str, int], tuple[Path, IO[bytes], Any]] = {}

    def __call__(self, event: AnyEvent) -> None:
        if not isinstance(event, JOURNAL_EVENTS):
            return
        key = (event.step, event.attempt)
        if isinstance(event, AttemptStarted) and event.journal_file is not None:
            path = Path(event.journal_file)
            with self.lost.guard(path):
                make_dir(path.parent)
                handle: IO[bytes] = path.open("ab")
                structlog = import_structlog()
                logger = structlog.wrap_logger(
                    structlog.BytesLogger(handle),
                    processors=[_json_line],
                    wrapper_class=structlog.BoundLogger,
                )
                self._open[key] = (path, handle, logger)
        entry = self._open.get(key)
        if entry is None:
            return
        path, handle, logger = entry
        fields = msgspec.to_builtins(event)
        with self.lost.guard(path):
            logger.info(fields.pop("event"), **fields)
        if isinstance(event, AttemptFinished):
            del self._open[key]
            with self.lost.guard(path):
                handle.close()

    def close(self) -> None:
        for path, handle, _ in self._open.values():
            with self.lost.guard(path):
                handle.close()
        self._open.clear()


class JsonLog:
    """Sink for ``--log-format json``: the journal events as JSON lines on a stream (stderr)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream: IO[str] | None = stream

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, JOURNAL_EVENTS) and self.stream is not None:
            try:
                self.stream.write(_encoder.encode(event).decode() + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                self.stream = None  # the reader went away; the run goes on


# --- reading records back --------------------------------------------------------------


class RecordError(Exception):
    """A run record that cannot be read (a half-copied or hand-edited run.json)."""


def read_record(path: Path) -> RunRecord:
    try:
        return msgspec.json.decode(path.read_bytes(), type=RunRecord)
    except OSError as exc:
        raise RecordError(f"cannot read {path}: {exc.strerror or exc}") from None
    except msgspec.DecodeError as exc:  # ValidationError too
        raise RecordError(f"{path} is not a run record dagbox can read: {exc}") from None


def all_runs(dag: str | None = None, root: Path | None = None) -> list[tuple[RunRecord, Path]]:
    """Records of every run (of one DAG), oldest first."""
    base = (root or home()) / "runs"
    folders = (
        [base / safe_name(dag)]
        if dag
        else ([p for p in base.iterdir() if p.is_dir()] if base.is_dir() else [])
    )
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for run_dir in folder.iterdir():
            record_file = RunLayout(run_dir).record
            if record_file.is_file():
                try:
                    found.append((read_record(record_file), run_dir))
                except RecordError:
                    continue  # one broken record does not hide the others
    found.sort(key=lambda pair: (pair[0].started_at, pair[0].run_id))
    return found


def find_run(run_id: str, root: Path | None = None) -> tuple[RunRecord, Path] | None:
    """The run with this id under ``$DAGBOX_HOME``; RecordError if its record is unreadable.

    Only a valid run id is looked up, so nothing outside ``runs/`` can be named.
    """
    base = (root or home()) / "runs"
    if run_id_problem(run_id) is not None or not base.is_dir():
        return None
    for folder in base.iterdir():
        record_file = RunLayout(folder / run_id).record
        if record_file.is_file():
            return read_record(record_file), record_file.parent
    # A child run (a sub-DAG call) is in the children/ folder of its parent's record, and
    # its id is its parent's, then "." and more (engine/calls.py).
    head = run_id
    while "." in head:
        head = head.rpartition(".")[0]
        for folder in base.iterdir():
            found = _child(folder / head, run_id)
            if found is not None:
                return found
    return None


def _child(run_dir: Path, run_id: str) -> tuple[RunRecord, Path] | None:
    children = run_dir / "children"
    if not children.is_dir():
        return None
    record_file = RunLayout(children / run_id).record
    if record_file.is_file():
        return read_record(record_file), record_file.parent
    for child in children.iterdir():
        if run_id.startswith(child.name + "."):
            found = _child(child, run_id)
            if found is not None:
                return found
    return None


def child_runs(run_dir: Path) -> list[tuple[RunRecord, Path]]:
    """The records of a run's child runs (its sub-DAG calls), in the order they started."""
    children = run_dir / "children"
    found = []
    for child in children.iterdir() if children.is_dir() else ():
        record_file = RunLayout(child).record
        if record_file.is_file():
            try:
                found.append((read_record(record_file), child))
            except RecordError:
                continue
    found.sort(key=lambda pair: (pair[0].started_at, _item_order(pair[0].run_id)))
    return found


def _item_order(run_id: str) -> tuple[int, ...]:
    tail = run_id.rsplit(".", 3)[1:]
    return tuple(int(part) if part.isdigit() else 0 for part in tail)


__all__ = [
    "RecordError",
    "RecordWriter",
    "RunRecord",
    "all_runs",
    "find_run",
    "now_iso",
    "read_record",
]
