"""One ``dagbox run``: wires a loaded DAG to a runtime, the sinks and the signals.

Kept apart from the CLI so that tests and ``dagbox bench`` can run DAGs the
same way without going through argument parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
from anyio.abc import TaskStatus

import dagbox
from dagbox.engine.context import Parent, RunOptions
from dagbox.engine.events import AnyEvent, RunFinished
from dagbox.engine.scheduler import Scheduler
from dagbox.engine.state import RunResult
from dagbox.layout import RunLayout
from dagbox.owner import orphan_report, stop_orphans
from dagbox.owner import token as owner_token
from dagbox.plan import Plan
from dagbox.records import JournalWriter, JsonLog, LostWrites, RecordWriter, make_dir
from dagbox.runtimes import ContainerRuntime, Runtimes, children
from dagbox.runtimes.host import HostRuntime, raise_open_file_limit, step_budget
from dagbox.secrets import Secrets

Sink = Callable[[AnyEvent], None]
T = TypeVar("T")


@dataclass
class ContainerEngine:
    """One container engine connection shared by many runs (``dagbox bench``)."""

    client: Any
    starting: anyio.CapacityLimiter
    images: Any
    #: A lock per container name, so that runs which name one container take turns.
    names: dict[str, anyio.Lock] = field(default_factory=dict)


def warn(message: str) -> None:
    """A line for the user on stderr, as ``dagbox: ...``; a closed stderr is no error."""
    with contextlib.suppress(OSError, ValueError):
        print(f"dagbox: {message}", file=sys.stderr, flush=True)


@dataclass
class RunRequest:
    plan: Plan
    run_id: str
    max_active: int | None = None
    home: Path | None = None
    sinks: list[Sink] = field(default_factory=list)
    #: A connection to reuse; None connects when the DAG uses containers.
    container_engine: ContainerEngine | None = None
    #: False when the caller handles SIGINT/SIGTERM itself (``dagbox bench``).
    watch_signals: bool = True
    #: Called with the Scheduler before it starts, e.g. to interrupt it later.
    on_scheduler: Callable[[Scheduler], None] | None = None
    #: Where a failed write of the record is told, as it happens.
    warn: Callable[[str], None] = warn
    #: Stop host processes that dead dagbox processes left (``dagbox bench`` does it once).
    stop_orphans: bool = True
    #: How many runs this process runs at once: they share its open-file budget.
    runs_at_once: int = 1
    #: The sinks of a child run (a sub-DAG call), given the label its lines carry
    #: (``solve[12]``); None: a child's events go to its record only.
    child_sinks: Callable[[str], list[Sink]] | None = None


async def execute(request: RunRequest) -> RunResult:
    """Run the DAG once, recording it, until it ends or SIGINT/SIGTERM stop it."""
    use_pidfd_child_watcher()
    raise_open_file_limit()
    plan = request.plan
    layout = RunLayout.for_run(plan.dag or "dag", request.run_id, request.home)
    lost = LostWrites(request.warn)
    writer = RecordWriter(layout, {s.name: s.id for s in plan.steps}, lost=lost)
    journals = JournalWriter(lost=lost)
    emit = _Fanout([writer, journals, *request.sinks], lost, request.warn)

    options = RunOptions(
        run_id=request.run_id,
        # "Unlimited" (0) still stops short of running out of open files.
        max_active=(plan.max_active_steps if request.max_active is None else request.max_active)
        or step_budget(request.runs_at_once),
        layout=layout,
    )
    if request.stop_orphans:
        options.notices.extend(await stop_orphans_within())
    async with contextlib.AsyncExitStack() as stack:
        # Script files hold expanded values (secrets too): private, and gone after the run.
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="dagbox-"))
        schedulers: list[Scheduler] = []

        def said(event: AnyEvent) -> None:  # through the run's redaction, once there is one
            (schedulers[0].emit if schedulers else emit)(event)

        containers = None
        engine = request.container_engine
        if plan.uses_containers():
            if engine is None:  # the run has not started yet: its notices wait for it
                engine = await connect_container_engine(stack, options.notices.append)
            containers = _docker(engine, request.run_id, said)
        host = HostRuntime(Path(scratch))
        runtimes = Runtimes(host, containers)
        if plan.dags:  # its sub-DAG calls run children beside it, all in one budget
            options.secrets = Secrets()
            options.slots = anyio.CapacityLimiter(options.max_active or 1)
            options.dags = plan.dags
            options.children = ChildRunner(request, host, engine, journals, lost, options)
        claim(layout)  # once the run can start: a run that cannot records nothing
        scheduler = Scheduler(plan, runtimes, emit, options)
        schedulers.append(scheduler)
        if request.on_scheduler is not None:
            request.on_scheduler(scheduler)
        stack.push_async_callback(_stop_leftovers, request)
        result = await _supervised(scheduler, request, writer)
        if containers is not None:
            # Containers the run could not remove in time; after an interrupt, a timeout
            # or a failure, any other container of this run the container engine lists.
            await containers.sweep(thorough=result.interrupted or result.status != "succeeded")
    journals.close()
    with contextlib.suppress(Exception):  # a second chance for a final write that failed
        writer.close()
    result.record_error = lost.summary
    if writer.unfinished:  # say it plainly: `dagbox status` would still show it running
        result.record_error = f"{lost.summary}; {layout.record} does not hold the run's end"
    return result


class ChildRunner:
    """Runs the child runs of a run's sub-DAG calls (engine/calls.py decides what they
    are), in this process, as real runs: each its own id, record (in the ``children/``
    folder of its parent's), sinks (the terminal labels its lines) and containers. They
    share the host runtime, the container engine connection, the journal writer and the
    budget of running steps of the whole tree (docs/format.md, "Sub-DAGs")."""

    def __init__(
        self,
        request: RunRequest,
        host: HostRuntime,
        engine: ContainerEngine | None,
        journals: JournalWriter,
        lost: LostWrites,
        root: RunOptions,
    ) -> None:
        self.request, self.host, self.engine = request, host, engine
        self.journals, self.lost = journals, lost
        # What the whole tree shares: the root run's.
        self.host_env, self.secrets, self.slots = root.host_env, root.secrets, root.slots

    async def run(self, plan: Plan, run_id: str, label: str, parent: Parent) -> RunResult:
        layout = RunLayout(parent.record / "children" / run_id, "") if parent.record else None
        # A folder of its own, as in Dagu: not its caller's; its steps run there unless its
        # DAG names a working_dir.
        work = layout.dir / "work" if layout else Path(tempfile.mkdtemp(prefix="dagbox-"))
        run_dir = None
        if not plan.work_dir_given:
            plan = msgspec.structs.replace(plan, work_dir=str(work))
        else:
            run_dir = work
        writer = None
        sinks: list[Sink] = [self.journals]
        if layout is not None:
            writer = RecordWriter(layout, {s.name: s.id for s in plan.steps}, lost=self.lost)
            sinks.insert(0, writer)
        if self.request.child_sinks is not None:
            sinks += self.request.child_sinks(label)
        emit = _Fanout(sinks, self.lost, self.request.warn)
        options = RunOptions(
            run_id=run_id,
            layout=layout,
            host_env=self.host_env,
            children=self,
            parent=parent,
            dags=self.request.plan.dags,
            slots=self.slots,
            run_dir=run_dir,
            secrets=self.secrets,
        )
        containers = None
        if self.engine is not None and plan.uses_containers():
            containers = _docker(self.engine, run_id, emit)
        # Its folders, in a worker thread: making a folder costs a filesystem far more than
        # making a file (0.5 ms against 0.02 ms on this machine's ext4), and the thread
        # does it beside the event loop, on another core.
        try:
            await anyio.to_thread.run_sync(_make_folders, layout, work, plan)
        except RunExists as exc:
            return RunResult(run_id, "failed", [], {}, error=str(exc))
        self.host.made.add(str(work))
        scheduler = Scheduler(plan, Runtimes(self.host, containers), emit, options)
        try:
            return await _to_its_end(scheduler, writer)
        except Exception as exc:  # a bug: the child's record still ends, its caller goes on
            return _ended_by(scheduler, exc)
        finally:
            if containers is not None:
                with anyio.CancelScope(shield=True):
                    await containers.sweep(thorough=True)
            if writer is not None:  # closed at run.finished already, unless a bug stopped it
                writer.close()


def _make_folders(layout: RunLayout | None, work: Path, plan: Plan) -> None:
    """A child run's record folder (claimed) with its events file and its steps' first log
    files, and its work folder. The first file made in a new folder costs as much as the
    folder; the record writer opens these, made here, at no cost."""
    if layout is not None:
        claim(layout, made=True)
        with contextlib.suppress(OSError):  # the record writer tells a full disk
            layout.events.touch()
            for i, step in enumerate(plan.steps, 1):
                if step.kind != "harness":  # an agent step's logs are its tries'
                    layout.log(i, step.name, 1, "stdout").touch()
                    layout.log(i, step.name, 1, "stderr").touch()
    with contextlib.suppress(OSError):  # the step says it when it cannot run there
        work.mkdir(mode=0o750, exist_ok=True)


def _ended_by(scheduler: Scheduler, exc: Exception) -> RunResult:
    """A child run that a bug in dagbox stopped: its record ends failed, with the bug's
    traceback as a notice, and its caller's step fails with it (not the whole tree)."""
    trace = "".join(traceback.format_exception(exc))
    error = f"internal error: {type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        scheduler.ctx.notice(
            f"internal error in run {scheduler.run_id}, please report it:\n{trace}"
        )
        scheduler.emit(
            RunFinished(run_id=scheduler.run_id, status="failed", duration_sec=0.0, error=error)
        )
    return RunResult(scheduler.run_id, "failed", scheduler.steps, scheduler.handlers, error)


async def _to_its_end(scheduler: Scheduler, writer: RecordWriter | None) -> RunResult:
    """A child run to its end, even when its caller is cancelled: that stops it as an
    interrupt does (its processes stopped, its handlers run, its record ended); a second
    interrupt of the root stops its processes at once (its Interrupt shares the root's)."""
    done = anyio.Event()
    results: list[RunResult] = []

    async def at_once() -> None:  # the root's second interrupt: the child's second too
        await scheduler.interrupt.now.wait()
        scheduler.interrupt.request()
        scheduler.interrupt.request()

    async def body() -> None:
        with anyio.CancelScope(shield=True):
            try:
                async with anyio.create_task_group() as tg:
                    if writer is not None:
                        tg.start_soon(writer.keep_fresh)
                    tg.start_soon(at_once)
                    try:
                        results.append(await scheduler.run())
                    finally:
                        tg.cancel_scope.cancel()
            finally:
                done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(body)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            scheduler.interrupt.request()
            raise
    return results[0]


class _Fanout:
    """Each event to every sink. A sink that fails is dropped and the loss recorded (the
    run exits 1 and says what is missing), but its failure never becomes the run's."""

    def __init__(self, sinks: list[Sink], lost: LostWrites, warn: Callable[[str], None]) -> None:
        self.sinks, self.lost, self.warn = sinks, lost, warn

    def __call__(self, event: AnyEvent) -> None:
        for sink in tuple(self.sinks):  # a copy: a failing sink is removed on the way
            try:
                sink(event)
            except Exception as exc:
                self.sinks.remove(sink)
                if not isinstance(exc, OSError):  # a bug: keep what is needed to fix it
                    self.warn("internal error in an output:\n" + traceback.format_exc().rstrip())
                self.lost.lost(f"{_sink_name(sink)} stopped: {type(exc).__name__}: {exc}")


async def _supervised(scheduler: Scheduler, request: RunRequest, writer: RecordWriter) -> RunResult:
    """The run, with what goes beside it: the signal watcher, the record kept fresh, and
    the reaping of processes steps left to this process."""
    async with anyio.create_task_group() as tg:
        if request.watch_signals:
            await tg.start(_watch_signals, scheduler)  # in place before the first step
        tg.start_soon(writer.keep_fresh)
        if children.is_subreaper():
            tg.start_soon(_reap_adopted)
        began = time.monotonic()
        try:
            result = await scheduler.run()
        except Exception as raised:
            # A bug in the scheduler: the record still ends (failed), then the bug surfaces.
            exc: BaseException = raised
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]  # the bug itself, not the task groups around it
            if writer.record is not None and writer.record.finished_at is None:
                scheduler.emit(  # redacted like every other event
                    RunFinished(
                        run_id=request.run_id,
                        status="failed",
                        duration_sec=round(time.monotonic() - began, 3),
                        error=f"internal error: {type(exc).__name__}: {exc}",
                    )
                )
            raise
        tg.cancel_scope.cancel()
    return result


async def _stop_leftovers(request: RunRequest, bound: float = 10.0) -> None:
    """Stop the processes steps of this run started and left running (a ``setsid``
    daemon): nothing a run starts outlives it (runtimes/children.py). In a daemon thread,
    bounded like the orphan scan: reading a process stuck on a dead network mount blocks."""
    stopped: list[int] = []
    with anyio.CancelScope(shield=True), anyio.move_on_after(bound) as scope:
        stopped = await _in_daemon_thread(
            lambda: children.stop_run_leftovers(request.run_id, owner_token())
        )
    if scope.cancelled_caught:
        request.warn(f"stopping what run {request.run_id} left running took over {bound:g}s")
    if stopped:
        many = len(stopped) != 1
        request.warn(
            f"stopped {len(stopped)} process{'es' * many} that steps of run {request.run_id} "
            f"left running ({', '.join(map(str, stopped[:5]))}{' …' * (len(stopped) > 5)})"
        )


async def _reap_adopted() -> None:
    """Collect, now and then, the zombies of processes this subreaper adopted."""
    while True:
        await anyio.sleep(1.0)
        children.reap()


class RunExists(Exception):
    """Another run (maybe running right now) has this run id already."""


def claim(layout: RunLayout, made: bool = False) -> None:
    """Make the run's folder, or raise RunExists: the one atomic step that lets two
    ``--run-id`` runs of one id never share a folder. A failure for any other reason (a
    full disk) is the record writer's to tell; the run goes on. ``made``: its parent
    folder is made once per process (a fan-out's thousand children share one)."""
    try:
        if made:
            make_dir(layout.dir.parent)
        else:
            layout.dir.parent.mkdir(parents=True, exist_ok=True)
        layout.dir.mkdir()
        make_dir(layout.dir)  # known to be there now: the record writer need not ask
    except FileExistsError:
        raise RunExists(
            f"a run with id {layout.dir.name} already exists for {layout.dir.parent.name} "
            f"({layout.dir})"
        ) from None
    except OSError:
        pass


async def stop_orphans_within(bound: float = 2.0) -> list[str]:
    """Stop what dead dagbox runs left; notices for the run. Reading /proc takes a
    millisecond or two, but a process stuck on a dead network mount can block it: past
    ``bound`` seconds the run starts anyway."""
    with anyio.move_on_after(bound):
        try:
            return orphan_report(await _in_daemon_thread(stop_orphans))
        except Exception as exc:  # never worth failing a run for
            return [f"could not look for processes that dead dagbox runs left: {exc}"]
    return [f"looking for processes that dead dagbox runs left took over {bound:g}s; skipped"]


async def _in_daemon_thread(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread: unlike anyio's worker threads, one that never returns
    neither holds up the run (cancelling abandons it) nor the process's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (work(), None)
        except BaseException as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="dagbox: orphan scan", daemon=True).start()
    return await future


def _sink_name(sink: Sink) -> str:
    names = {
        RecordWriter: "the run record",
        JournalWriter: "the attempt journals",
        JsonLog: "the JSON log",
    }
    return names.get(type(sink), f"the {type(sink).__name__.lower()} output")


def _docker(
    engine: ContainerEngine, run_id: str, emit: Callable[[AnyEvent], None]
) -> ContainerRuntime:
    """The container runtime of one run over a shared engine connection."""
    from dagbox.engine.events import Notice
    from dagbox.runtimes.docker import DockerRuntime

    def notify(message: str) -> None:
        emit(Notice(run_id=run_id, message=message))

    return DockerRuntime(
        engine.client, run_id, notify, engine.starting, engine.images, engine.names
    )


async def connect_container_engine(
    stack: contextlib.AsyncExitStack, notify: Callable[[str], None], max_starting: int | None = None
) -> ContainerEngine:
    """Connect to the engine for the life of ``stack`` and remove orphaned containers."""
    from dagbox.runtimes.container_engine import connect, endpoint
    from dagbox.runtimes.docker import default_max_starting
    from dagbox.runtimes.gc import reap
    from dagbox.runtimes.images import Images

    client = await stack.enter_async_context(connect(endpoint()))
    for container, owner_run in await reap(client):
        notify(f"removed container {container} left behind by run {owner_run}")
    limit = max_starting or default_max_starting()
    return ContainerEngine(client, anyio.CapacityLimiter(limit), Images(client, notify))


def use_pidfd_child_watcher() -> None:
    """On Python 3.11, wait for child processes with pidfds instead of a thread each.

    3.11's default child watcher starts one thread per process; with 100
    steps at once that cost about 40 ms of a 200 ms run. Python 3.12 and later
    use pidfds by default, and deprecate this API, so this only acts on 3.11.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    import asyncio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_running_loop()
        current = asyncio.get_child_watcher()
        if (
            isinstance(current, asyncio.PidfdChildWatcher)
            and getattr(current, "_loop", None) is loop
        ):
            return  # already in place for this loop (many runs in one process: dagbox bench)
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return  # kernel without pidfd support
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)


async def _watch_signals(
    scheduler: Scheduler, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """First SIGINT/SIGTERM: stop the run gracefully. Second: stop processes at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        if dagbox.early_interrupts:  # a Ctrl-C that Python lost while dagbox was importing
            scheduler.interrupt.request()
        async for _ in signals:
            scheduler.interrupt.request()
