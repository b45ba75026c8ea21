"""Run the jobs of a bench: admission, the shared engine, results, progress, Ctrl-C.

Up to ``concurrency`` runs at once share one connection to the container
engine, and across all of them at most ``max_containers`` containers are in
creation and start at a time: creation is where the engine is slowest, so it
is admitted apart from execs and log streams. Each run is an ordinary dagbox
run (recorded under ``$DAGBOX_HOME``) plus one line in ``results.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import tarfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

import dagbox
from dagbox.bench.jobs import BenchInputError, Job, dag_hash, image_references
from dagbox.bench.results import ResultsFile, StepTimings, read_results
from dagbox.bench.stats import INFRA, INFRA_NODE, summarize
from dagbox.cluster.wire import Order
from dagbox.compiler import compile
from dagbox.engine.scheduler import Scheduler
from dagbox.engine.state import RunResult
from dagbox.layout import RunLayout
from dagbox.live import LastLine, Panel, shown
from dagbox.modes import OutputMode
from dagbox.records import write_whole
from dagbox.runner import (
    ContainerEngine,
    RunRequest,
    Sink,
    connect_container_engine,
    execute,
    stop_orphans_within,
    warn,
)
from dagbox.secrets import MASK, is_secret_name
from dagbox.spec import Loaded
from dagbox.terminal import Terminal

if TYPE_CHECKING:
    from dagbox.cluster.driver import Cluster


@dataclass
class BenchOptions:
    out: Path
    repeat: int = 1
    concurrency: int = 4
    max_containers: int | None = None
    resume: bool = False
    output: OutputMode = OutputMode.failures
    home: Path | None = None
    #: The Ray cluster the runs go to (``--cluster``), joined already; None: this machine.
    cluster: Cluster | None = None


@dataclass
class BenchReport:
    planned: int
    skipped: int
    ran: int
    interrupted: bool
    rows: list[dict[str, Any]]
    #: Results that could not be written (a full disk): the bench stopped admitting runs.
    error: str | None = None


async def image_ids(shared: ContainerEngine | None, references: set[str]) -> dict[str, str]:
    """Image id per reference, so that a rebuilt image changes the jobs' keys."""
    ids: dict[str, str] = {}
    if shared is None:
        return ids
    for reference in sorted(references):
        if "${" in reference:
            continue
        with contextlib.suppress(Exception), anyio.fail_after(30):
            ids[reference] = (await shared.client.images.inspect(reference))["Id"]
    return ids


async def run_bench(
    loaded: Loaded, make_jobs: Callable[[dict[str, str]], list[Job]], options: BenchOptions
) -> BenchReport:
    """``make_jobs(image_ids) -> list[Job]``: keys depend on the images, known once connected."""
    results_path = options.out / "results.jsonl"
    try:
        if not options.resume and results_path.exists():
            results_path.unlink()
        done = {r["key"] for r in read_results(results_path)}
        results = ResultsFile(results_path)
    except OSError as exc:
        raise BenchInputError(f"cannot use {results_path}: {exc.strerror or exc}") from None
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(results.close)
        shared = None
        cluster = options.cluster
        if cluster is not None:
            await cluster.start()  # or ClusterUnavailable: no node can serve
            for message in cluster.warnings:
                warn(message)
            ids = cluster.image_ids()
        else:
            if compile(
                loaded.dag, {}, loaded.path, loaded.dags
            ).uses_containers():  # whatever the params
                shared = await connect_container_engine(
                    stack, lambda message: None, options.max_containers
                )
            for message in await stop_orphans_within():
                warn(message)
            ids = await image_ids(shared, image_references(loaded.dag))
        jobs: list[Job] = make_jobs(ids)
        todo = [job for job in jobs if job.key not in done]
        panel = stack.enter_context(shown(Panel(len(todo))))
        bench = _Bench(loaded, options, shared, results, panel)
        bench.identity = {"dag_hash": dag_hash(loaded.dag), "images": ids or None}
        async with anyio.create_task_group() as tg:
            await tg.start(bench.watch_signals)  # in place before the first run starts
            tg.start_soon(panel.keep_drawn)
            if cluster is not None:
                tg.start_soon(cluster.watch, bench.say)
            await bench.admit(todo)
            if cluster is not None:
                await cluster.stop_watching()
            tg.cancel_scope.cancel()
    # Results of inputs that changed since (other keys) stay in the file but not in the summary.
    planned = {job.key for job in jobs}
    rows = summarize([r for r in read_results(results_path) if r["key"] in planned], options.repeat)
    summary = {"repeat": options.repeat, "jobs": len(jobs), "cells": rows}
    target = options.out / "summary.json"
    try:  # a full disk leaves the previous summary, not half of a new one
        write_whole(target, (json.dumps(summary, indent=2) + "\n").encode())
    except OSError as exc:
        bench.error = bench.error or f"cannot write {target}: {exc.strerror or exc}"
    return BenchReport(
        len(jobs), len(jobs) - len(todo), bench.finished, bench.signalled, rows, bench.error
    )


class _Bench:
    def __init__(
        self,
        loaded: Loaded,
        options: BenchOptions,
        shared: ContainerEngine | None,
        results: ResultsFile,
        panel: Panel,
    ) -> None:
        self.loaded = loaded
        self.options = options
        self.shared = shared
        self.results = results
        self.panel = panel
        self.slots = anyio.Semaphore(options.concurrency)
        self.schedulers: dict[str, Scheduler] = {}
        self.stopping = False
        self.signalled = False
        self.finished = 0
        self.error: str | None = None
        #: What every result line says of the inputs beyond its params (a report compares it).
        self.identity: dict[str, Any] = {}

    async def admit(self, todo: Sequence[Job]) -> None:
        async with anyio.create_task_group() as runs:
            for job in todo:
                queued = time.monotonic()
                await self.slots.acquire()
                if self.stopping:
                    self.slots.release()
                    break
                runs.start_soon(self.run_one, job, queued)

    def _sinks(self, job: Job, run_id: str, node: str | None) -> list[Sink]:
        """A run's sinks, made when it starts (on a node: once placed there): its timings
        for the result line, its row on the panel, and its lines on the terminal."""
        sinks: list[Sink] = [StepTimings()]
        label = f"{job.cell.label}#{job.repeat}" + (f" @{node}" if node else "")
        if self.panel.enabled:
            self.panel.start(run_id, label)
            sinks.append(LastLine(self.panel, run_id))
        if self.options.output is not OutputMode.quiet:
            out = self.panel.above
            sinks.append(Terminal(self.options.output, out, label=f"[{label}] ", summary=False))
        return sinks

    async def run_one(self, job: Job, queued: float) -> None:
        began = time.monotonic()
        run_id = f"bench-{job.key[:12]}-{uuid.uuid4().hex[:6]}"
        on_node: dict[str, Any] = {}  # what a cluster adds to the result line
        try:
            if self.options.cluster is not None:
                from dagbox.cluster.driver import ClusterUnavailable

                try:
                    result, sinks, began, on_node = await self._on_cluster(
                        self.options.cluster, job, run_id
                    )
                except ClusterUnavailable as exc:  # no node left: no line, --resume runs it
                    self._stop_for(str(exc))
                    return
            else:
                sinks = self._sinks(job, run_id, None)
                result, record = await self._here(job, run_id, sinks)
                on_node = {"record": str(record.absolute())}
        finally:
            self.panel.stop(run_id)
            self.slots.release()
            self.schedulers.pop(run_id, None)
        if result.interrupted:
            return  # never half-counted: --resume runs it again
        timings = sinks[0]
        assert isinstance(timings, StepTimings)
        line = _result_line(job, result, result.run_id, timings, (queued, began, time.monotonic()))
        line.update(self.identity)
        line.update(on_node)
        if result.record_error is not None:
            line["record_error"] = result.record_error
            # The same disk will fail the next runs too: stop admitting (the line is kept).
            self._stop_for(f"a run's record is incomplete: {result.record_error}")
        try:
            self.results.append(line)
        except OSError as exc:
            # Runs whose results cannot be kept are not worth their cost: stop admitting;
            # the lines already written are whole, and --resume goes on from them.
            self._stop_for(f"cannot write {self.results.path}: {exc.strerror or exc}")
            return
        self.finished += 1
        self.panel.count(failed=result.status != "succeeded", infra=bool(line["infra"]))

    async def _here(self, job: Job, run_id: str, sinks: list[Sink]) -> tuple[RunResult, Path]:
        """The run on this machine, and the folder of its record."""
        plan = compile(self.loaded.dag, job.params, self.loaded.path, self.loaded.dags)
        record = RunLayout.for_run(plan.dag or "dag", run_id, self.options.home).dir
        result = await execute(
            RunRequest(
                plan=plan,
                run_id=run_id,
                home=self.options.home,
                sinks=sinks,
                container_engine=self.shared,
                watch_signals=False,
                on_scheduler=self._track,
                warn=lambda _: None,  # told once for the bench, from record_error
                stop_orphans=False,  # once for the bench, not once per run
                runs_at_once=self.options.concurrency,
            )
        )
        return result, record

    async def _on_cluster(
        self, cluster: Cluster, job: Job, run_id: str
    ) -> tuple[RunResult, list[Sink], float, dict[str, Any]]:
        """The run on some node; its record is brought here, as a local run's would be.
        Also its sinks, when it was placed on its node (waiting for a slot is queue time),
        and what its result line says of the node."""
        from dagbox.cluster.driver import unpack

        order = Order(
            run_id=run_id,
            params={k: v for k, v in job.params.items() if not is_secret_name(k)},
            secret_params=[k for k in job.params if is_secret_name(k)],
            live_output=self.options.output is not OutputMode.quiet or self.panel.enabled,
        )
        outcome, node, sinks, placed_at = await cluster.run(
            order, lambda label: self._sinks(job, run_id, label)
        )
        record_error = None  # the node's own (a full disk there) is the line's, not ours
        target = None
        if outcome.record:
            dag_folder = Path(outcome.record_dir).parent.name
            target = RunLayout.for_run(dag_folder, outcome.run_id, self.options.home).dir
            try:
                await anyio.to_thread.run_sync(unpack, outcome, target)
            except (OSError, tarfile.TarError) as exc:
                record_error = f"cannot write {target}: {getattr(exc, 'strerror', None) or exc}"
        result = RunResult(
            run_id=outcome.run_id,  # bench-...-abc123.2 when a lost node made it run again
            status=outcome.status,  # type: ignore[arg-type]
            steps=[],
            handlers={},
            error=outcome.error,
            interrupted=outcome.interrupted,
            record_error=record_error,
        )
        on_node: dict[str, Any] = {
            "node": node or None,
            "record": target and str(target.absolute()),
        }
        if outcome.refused:  # the node could not run it, or every node it went to was lost
            on_node.update(failure_class=INFRA_NODE, infra=True, error=outcome.error)
        if outcome.record_error is not None:  # that node's trouble: the bench goes on
            on_node["record_error"] = outcome.record_error
        return result, sinks, placed_at, on_node

    def say(self, message: str) -> None:
        """A line from the bench itself, above the panel."""
        self.panel.say(message)

    def _stop_for(self, error: str) -> None:
        if self.error is None:
            self.error = error
            self.panel.say(f"{error}; no new runs start")
        self.stopping = True

    def _track(self, scheduler: Scheduler) -> None:
        self.schedulers[scheduler.run_id] = scheduler
        if self.stopping:
            scheduler.interrupt.request()

    async def watch_signals(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Ctrl-C or SIGTERM: stop admitting, stop running runs; a second one kills at once."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            if dagbox.early_interrupts:  # a Ctrl-C that Python lost while dagbox was importing
                self._stop_all()
            async for _ in signals:
                self._stop_all()

    def _stop_all(self) -> None:
        self.stopping = self.signalled = True
        if self.options.cluster is not None:
            self.options.cluster.interrupt()
        for scheduler in list(self.schedulers.values()):
            scheduler.interrupt.request()


def _result_line(
    job: Job,
    result: RunResult,
    run_id: str,
    timings: StepTimings,
    times: tuple[float, float, float],
) -> dict[str, Any]:
    """The results.jsonl line of one run; ``times``: queued, began and ended (monotonic)."""
    queued, began, ended = times
    wall_ms = (ended - began) * 1000
    steps = timings.step_lines()
    failure = next(
        (s["failure_class"] for s in steps if s["status"] != "succeeded" and s["failure_class"]),
        None,
    )
    return {
        "key": job.key,
        "cell": job.cell.matrix_label,
        "task": job.cell.task,
        "params": {k: MASK if is_secret_name(k) else v for k, v in job.params.items()},
        "repeat": job.repeat,
        "status": result.status,
        "run_id": run_id,
        "duration_ms": round(wall_ms, 1),
        "queue_wait_ms": round((began - queued) * 1000, 1),
        "overhead_ms": round(max(wall_ms - timings.inside_ms(), 0.0), 1),
        "failure_class": "ok" if result.status == "succeeded" else failure or "exit_nonzero",
        "infra": failure in INFRA,
        "usage": timings.usage or None,
        "steps": steps,
    }
