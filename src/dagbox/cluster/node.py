"""The agent on each node: runs whole runs there, as a local bench would (a Ray actor).

One agent per node and bench, started by the driver on that node and holding the
node's ``dagbox_slots`` for the bench. It is an asyncio actor: every run it is given
runs concurrently in its one event loop, through :func:`dagbox.runner.execute`,
against the node's own container engine (its ``DOCKER_HOST`` or Podman, one shared
connection, ``--max-containers`` starting at once). A run's events wait in a bounded
buffer until the driver drains them (a few times a second); its record is written on
the node, then handed back whole when the run ends and removed here.

Ray pickles this class by reference, so a node runs the dagbox it has installed: the
driver asks each agent for its version before giving it work (:meth:`hello`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import os
import shutil
import socket
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import dagbox
from dagbox.cluster import wire
from dagbox.engine.events import AnyEvent, Notice, StepOutput

if TYPE_CHECKING:
    from dagbox.engine.scheduler import Scheduler
    from dagbox.runner import ContainerEngine
    from dagbox.spec import Loaded

#: Events held per node for a driver that is slow to drain, in bytes of output: past
#: it, output is left out of the live view (it stays in the record), never the rest.
BUFFER_BYTES = 8 * 1024 * 1024


class NodeAgent:
    """Runs the runs the driver orders on this node. Every method takes and returns bytes."""

    def __init__(self) -> None:
        self.slots = 1
        self.max_containers: int | None = None
        self.stack = contextlib.AsyncExitStack()
        self.engine: ContainerEngine | None = None
        self.pending: dict[str, list[AnyEvent]] = {}
        self.pending_bytes = 0
        self.left_out: dict[str, int] = {}
        self.schedulers: dict[str, Scheduler] = {}
        self.interrupts = 0
        self.loaded: Loaded | None = None
        self.connecting = asyncio.Lock()
        #: Secret values of this node's environment: masked in what it says of itself.
        self.secret_values: set[str] = set()

    async def version(self) -> str:
        """``VERSION PROTOCOL``: the first thing the driver asks, the same in every version,
        so that a node of another version is told apart before anything else is said."""
        return f"{dagbox.__version__} {wire.PROTOCOL}"

    async def hello(self, setup_bytes: bytes) -> bytes:
        """Say who this node is, and whether it can serve the bench (its secrets, the DAG).

        First stop what dead runs left here (a killed node's containers and processes),
        load what a run needs (so that the first runs do not wait for imports), then look
        up the bench's images on this engine.
        """
        from dagbox.runner import stop_orphans_within
        from dagbox.secrets import Redactor, secret_values
        from dagbox.spec import DagError, load

        setup = wire.decode_setup(setup_bytes)
        self.slots, self.max_containers = setup.slots, setup.max_containers
        self.secret_values = secret_values(os.environ)
        redact = Redactor(self.secret_values)
        notices = [redact.text(n) or n for n in await stop_orphans_within()]
        for module in ("dagbox.compiler", "dagbox.engine.scheduler"):
            importlib.import_module(module)
        problem = wire.missing_secrets(setup, os.environ)
        try:  # the bench's folder, as Ray unpacked it here: this process's working dir
            self.loaded = load(Path(setup.dag))  # once: every run reads the same file
        except (DagError, OSError) as exc:
            problem = problem or f"it cannot load {setup.dag}: {exc}"
        ids: dict[str, str] = {}
        if setup.containers and problem is None:
            engine = await self._engine(notices.append)
            from dagbox.bench.run import image_ids

            ids = await image_ids(engine, set(setup.images))
        hello = wire.Hello(
            host=socket.gethostname(),
            images=ids,
            notices=notices,
            problem=problem,
        )
        return wire.encode(hello)

    async def _engine(self, notify: Callable[[str], None] | None = None) -> ContainerEngine:
        """The node's engine, one connection for every run here (one ``--max-containers``)."""
        from dagbox.runner import connect_container_engine

        async with self.connecting:
            if self.engine is None:
                said = notify or (lambda _: None)
                self.engine = await connect_container_engine(self.stack, said, self.max_containers)
        return self.engine

    async def run(self, order_bytes: bytes) -> bytes:
        """One run, whole: its outcome, the events not drained yet, and its record."""
        order = wire.decode_order(order_bytes)
        self.pending[order.run_id] = []
        try:
            return await self._run(order)
        except Exception as exc:  # a bug, or this node's trouble (a run id taken here)
            from dagbox.secrets import Redactor

            said = f"dagbox failed here: {type(exc).__name__}: {exc}"
            return self._refused(order, Redactor(self.secret_values).text(said) or said)
        finally:
            self._take(order.run_id)  # what was buffered no longer counts against the rest
            self.pending.pop(order.run_id, None)
            self.schedulers.pop(order.run_id, None)

    async def _run(self, order: wire.Order) -> bytes:
        import anyio

        from dagbox.compiler import compile
        from dagbox.layout import RunLayout
        from dagbox.runner import RunRequest, execute

        if self.loaded is None or self.interrupts:
            return self._refused(order, "the bench is stopping")
        params = {**order.params, **{name: os.environ[name] for name in order.secret_params}}
        loaded = self.loaded
        plan = compile(loaded.dag, params, loaded.path, loaded.dags)
        engine = await self._engine() if plan.uses_containers() else None
        result = await execute(
            RunRequest(
                plan=plan,
                run_id=order.run_id,
                sinks=[self._collector(order.run_id, order.live_output)],
                container_engine=engine,
                watch_signals=False,
                on_scheduler=self._track,
                warn=lambda _: None,  # record_error comes back in the outcome
                stop_orphans=False,  # once per node, in hello()
                runs_at_once=self.slots,
            )
        )
        folder = RunLayout.for_run(plan.dag or "dag", order.run_id).dir
        record = await anyio.to_thread.run_sync(_packed, folder)  # other runs go on
        outcome = wire.Outcome(
            run_id=order.run_id,
            status=result.status,
            interrupted=result.interrupted,
            error=result.error,
            record_error=result.record_error,
            record_dir=str(folder),
            record=record,
            events=wire.encode_events(self._take(order.run_id)),
        )
        # The driver keeps the record now.
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
        return wire.encode(outcome)

    def _refused(self, order: wire.Order, problem: str) -> bytes:
        outcome = wire.Outcome(
            run_id=order.run_id,
            status="failed",
            interrupted=self.interrupts > 0,
            error=f"{socket.gethostname()}: {problem}",
            record_error=None,
            record_dir="",
            record=b"",
            refused=True,
        )
        return wire.encode(outcome)

    def _collector(self, run_id: str, live_output: bool) -> Callable[[AnyEvent], None]:
        def collect(event: AnyEvent) -> None:
            if isinstance(event, StepOutput):
                if not live_output:
                    return
                if self.pending_bytes + len(event.data) > BUFFER_BYTES:
                    self.left_out[run_id] = self.left_out.get(run_id, 0) + len(event.data)
                    return
                self.pending_bytes += len(event.data)
            self.pending.setdefault(run_id, []).append(event)

        return collect

    def _take(self, run_id: str) -> list[AnyEvent]:
        events = self.pending.get(run_id, [])
        self.pending[run_id] = []
        self.pending_bytes -= sum(len(e.data) for e in events if isinstance(e, StepOutput))
        left_out = self.left_out.pop(run_id, 0)
        if left_out:  # said once the driver has caught up, so that it shows
            message = f"{left_out} bytes of output were not shown live (the driver fell behind); the record has them"
            events.append(Notice(run_id=run_id, message=message))
        return events

    async def drain(self) -> bytes:
        """Every event of every run here that the driver has not had yet."""
        batch = [(run_id, self._take(run_id)) for run_id in list(self.pending)]
        return wire.encode_batch([(run_id, events) for run_id, events in batch if events])

    def _track(self, scheduler: Scheduler) -> None:
        self.schedulers[scheduler.run_id] = scheduler
        for _ in range(self.interrupts):
            scheduler.interrupt.request()

    async def interrupt(self) -> None:
        """Ctrl-C on the driver: the first stops every run here gracefully, the next at once."""
        self.interrupts += 1
        for scheduler in list(self.schedulers.values()):
            scheduler.interrupt.request()


def _packed(folder: Path) -> bytes:
    """The record folder as an uncompressed tar stream (logs are read far more than sent).

    Regular files and folders only: a child run's ``work/`` folder may hold links (a
    virtualenv's) and pipes, which mean nothing on another machine."""
    if not folder.is_dir():
        return b""

    def plain(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return member if member.isfile() or member.isdir() else None

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".", filter=plain)
    return buffer.getvalue()
