"""The scheduler: one DAG run, from preconditions to the exit handler.

Ready steps are dispatched first in, first out, in file order, up to
``max_active_steps`` at a time; each runs in its own task, and reports back
to the dispatcher when it reaches a final status. The dispatcher then settles
the step's dependents (ready, skipped or aborted, per docs/format.md, "Statuses").
The engine knows statuses, values and timing; processes are the runtime's
business, and everything the user sees or finds on disk comes from the events
it emits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from dagbox.engine.containers import ContainerValueError, container_spec
from dagbox.engine.events import (
    AnyEvent,
    Notice,
    Outcome,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepOutput,
    StepRetrying,
    StepStarted,
    StepStatus,
    now_iso,
)
from dagbox.engine.exec_limits import argv_problem, env_problem, total_problem
from dagbox.engine.journal import AttemptJournal, failure_class
from dagbox.harness.argv import merge_defaults
from dagbox.harness.catalog import registry
from dagbox.harness.tries import provider_names, run_tries
from dagbox.layout import RunLayout
from dagbox.lines import LineSplitter
from dagbox.plan import params_of, runtime_of
from dagbox.regex import compile_pattern
from dagbox.runtimes import Command, ContainerSpec, Exit, Runtime, SetupError, Stop, Stream
from dagbox.runtimes.helpers import capture
from dagbox.runtimes.host import with_errexit
from dagbox.secrets import MASK, Redactor, Secrets, StreamRedactor, is_secret_name
from dagbox.spec.model import Condition, Dag, RetryPolicy, Step
from dagbox.values import ValueProblem, evaluate, expand

HANDLERS = ("init", "success", "failure", "abort", "exit")
TIMEOUT_EXIT = 124
#: The longest wait between retries when ``max_interval_sec`` does not set one.
MAX_RETRY_DELAY = 24 * 3600
Emit = Callable[[AnyEvent], None]


@dataclass
class RunOptions:
    run_id: str
    file: Path
    params: Mapping[str, str] = field(default_factory=dict)  # overrides of the DAG's params
    max_active: int | None = None  # -j; None keeps max_active_steps
    layout: RunLayout | None = None  # None: no log files (tests, benchmarks)
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: Said right after run.started (things found while preparing, such as reaped containers).
    notices: list[str] = field(default_factory=list)


@dataclass(eq=False, repr=False)
class StepRun:
    """One step (or handler) of this run, and what became of it."""

    def __repr__(self) -> str:
        # Not the dataclass repr: that would walk deps/dependents through the whole graph.
        return f"<StepRun {self.name} {self.status}>"

    step: Step
    #: Its place in the file, from 1 (handlers follow the steps): unique, unlike names
    #: once made safe for file names, so log files are per index.
    index: int
    handler: str | None = None
    status: StepStatus = "not_started"
    exit_code: int | None = None
    attempts: int = 0
    started_at: str | None = None
    started: float | None = None
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    stdout_file: str | None = None
    stderr_file: str | None = None
    continued: bool = False  # failed, but continue_on lets dependents run
    failure_class: str | None = None
    deps: list[StepRun] = field(default_factory=list)
    dependents: list[StepRun] = field(default_factory=list)
    waiting: int = 0

    @property
    def name(self) -> str:
        return self.step.key

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "aborted", "skipped")


@dataclass
class RunResult:
    run_id: str
    status: RunStatus
    steps: list[StepRun]
    handlers: dict[str, StepRun]
    error: str | None = None
    precondition_unmet: bool = False
    interrupted: bool = False
    #: Set by whoever records the run when part of the record could not be written.
    record_error: str | None = None

    @property
    def exit_code(self) -> int:
        """docs/format.md, D8: 0 succeeded (or DAG precondition not met), 130 interrupted, 1 otherwise.

        A run whose record is incomplete (a full disk) exits 1 even when its steps
        succeeded: the record is part of what a run promises.
        """
        if self.interrupted:
            return 130
        if self.record_error is not None:
            return 1
        if self.status == "succeeded" or self.precondition_unmet:
            return 0
        return 1


class Interrupt:
    """Lets a signal handler stop a run.

    Every signal cancels what is running now (the graph, or a handler). From the
    second signal on, processes are killed at once instead of after the grace
    period. Handlers that start after the graph was stopped still run.
    """

    def __init__(self) -> None:
        self.requested = False
        self.scope: anyio.CancelScope | None = None
        self.now = anyio.Event()

    def request(self) -> None:
        if self.requested:
            self.now.set()
        self.requested = True
        if self.scope is not None:
            self.scope.cancel()


class Engine:
    def __init__(
        self, dag: Dag, runtimes: Mapping[str, Runtime], emit: Emit, options: RunOptions
    ) -> None:
        self.dag = dag
        self.runtimes = runtimes  # by plan.runtime_of kind: host, root, step, exec
        self._sink = emit
        self.options = options
        self.run_id = options.run_id
        self.params = params_of(dag, options.params)
        self.interrupt = Interrupt()
        self.steps = [StepRun(s, i) for i, s in enumerate(dag.steps, 1)]
        handlers = [(k, s) for k in HANDLERS if (s := getattr(dag.handler_on, k)) is not None]
        self.handlers = {
            kind: StepRun(step, len(self.steps) + i, handler=kind)
            for i, (kind, step) in enumerate(handlers, 1)
        }
        self._link()
        self.work_dir = _work_dir(dag, options.file)
        self.env: dict[str, str] = {}  # params and DAG env, once evaluated
        self.has_outputs = any(s.output for s in dag.steps)
        limit = dag.max_active_steps if options.max_active is None else options.max_active
        self.limit = limit if limit > 0 else math.inf
        self.providers = registry(dag.harnesses)
        self.secrets = Secrets(options.host_env, self.params)
        #: In the environment of the helper shells (backticks, preconditions): whatever
        #: they leave running is found as this run's, and stopped when it ends.
        self._marks = {"DAG_RUN_ID": self.run_id}
        self.root: Runtime | None = None  # the shared container, once it runs
        self.root_spec: ContainerSpec | None = None
        self.setup_failed = False

    def _link(self) -> None:
        by_key: dict[str, StepRun] = {}
        for run in self.steps:
            for key in (run.step.id, run.step.name):
                if key is not None:
                    by_key.setdefault(key, run)
        for i, run in enumerate(self.steps):
            if self.dag.type == "chain":
                deps = [self.steps[i - 1]] if i else []
            else:
                deps = list(dict.fromkeys(by_key[d] for d in run.step.depends or ()))
            run.deps, run.waiting = deps, len(deps)
            for dep in deps:
                dep.dependents.append(run)

    # --- the whole run -----------------------------------------------------------------

    async def run(self) -> RunResult:
        started = time.monotonic()
        self.emit(
            RunStarted(
                run_id=self.run_id,
                dag=self.dag.name or "",
                file=str(self.options.file.resolve()),
                params={k: MASK if is_secret_name(k) else v for k, v in self.params.items()},
                steps=[s.name for s in self.steps],
                handlers=list(self.handlers),
                record_dir=str(self.options.layout.dir) if self.options.layout else None,
            )
        )
        for message in self.options.notices:
            self._notice(message)
        error: str | None = None
        status: RunStatus | None = None
        unmet = False
        async with contextlib.AsyncExitStack() as stack:  # closes the shared container last
            with anyio.CancelScope() as scope:
                self.interrupt.scope = scope
                if self.interrupt.requested:
                    scope.cancel()
                try:
                    self.env = await self._dag_env()
                    self._learn_secrets(self.env)
                    await self._open_root(stack)
                    init = self.handlers.get("init")
                    if not await self._conditions(self.dag.preconditions, self.env):
                        unmet, status, error = (
                            True,
                            "aborted",
                            "the DAG's preconditions were not met",
                        )
                    elif (
                        init is not None and await self._run_handler(init, "running") != "succeeded"
                    ):
                        status, error = "aborted", "the init handler failed"
                    else:
                        with anyio.move_on_after(self.dag.timeout_sec or math.inf) as timer:
                            await self._graph()
                        if timer.cancelled_caught:
                            status, error = (
                                "failed",
                                f"the DAG timed out after {self.dag.timeout_sec}s",
                            )
                            for run in self.steps:
                                if not run.done:
                                    self._finish(run, "aborted", error=error)
                except (_ConditionError, ValueProblem) as exc:
                    status, error = "failed", str(exc)
                except SetupError as exc:  # no step and no handler runs (docs/format.md)
                    status, error = "failed", str(exc)
                    self.setup_failed = True
            self.interrupt.scope = None
            if self.interrupt.requested:
                status, error = "aborted", "interrupted"
            elif status is None:
                status = self._status()
            if not self.setup_failed and (
                self.dag.container is None
                or self.root is not None
                or self.dag.container.exec is not None
            ):
                status = await self._closing_handlers(status)
        self.emit(
            RunFinished(
                run_id=self.run_id,
                status=status,
                duration_sec=round(time.monotonic() - started, 3),
                error=error,
            )
        )
        return RunResult(
            self.run_id,
            status,
            self.steps,
            self.handlers,
            self._redact(error),
            precondition_unmet=unmet,
            interrupted=self.interrupt.requested,
        )

    async def _open_root(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the DAG's shared container (image mode) before preconditions and steps."""
        container = self.dag.container
        if container is None or container.exec is not None:
            return
        provider = self.runtimes.get("root")
        if provider is None or not hasattr(provider, "shared"):
            raise SetupError(
                "this DAG runs in a container, and this dagbox cannot run containers yet"
            )
        try:
            spec = container_spec(
                container, self.params, self.env, self.work_dir, self.options.host_env
            )
        except (ContainerValueError, ValueProblem) as exc:
            raise SetupError(str(exc)) from None
        self.root_spec = spec
        self._learn_secrets(dict(spec.env))
        self.root = await stack.enter_async_context(provider.shared(spec, self._notice))

    def _notice(self, message: str, step: str | None = None) -> None:
        self.emit(Notice(run_id=self.run_id, message=message, step=step))

    def _status(self) -> RunStatus:
        statuses = [r.status for r in self.steps]
        if any(r.status == "failed" and not r.continued for r in self.steps):
            return "failed"
        if "aborted" in statuses:
            return "failed"
        if any(r.status == "failed" for r in self.steps):
            return "partially_succeeded" if "succeeded" in statuses else "failed"
        return "succeeded"

    async def _closing_handlers(self, status: RunStatus) -> RunStatus:
        """success | failure | abort, then exit; a failing handler fails a succeeded run."""
        kind = {"succeeded": "success", "partially_succeeded": "success", "failed": "failure"}.get(
            status, "abort"
        )
        for name in (kind, "exit"):
            handler = self.handlers.get(name)
            if handler is None:
                continue
            outcome: StepStatus = "aborted"
            with anyio.CancelScope() as scope:
                self.interrupt.scope = scope
                outcome = await self._run_handler(handler, status)
            self.interrupt.scope = None
            if outcome != "succeeded" and status in ("succeeded", "partially_succeeded"):
                status = "failed"
        return status

    async def _run_handler(self, run: StepRun, status: str) -> StepStatus:
        await self._run_step(run, extra={"DAG_RUN_STATUS": status})
        return run.status

    # --- the graph ---------------------------------------------------------------------

    async def _graph(self) -> None:
        send, receive = anyio.create_memory_object_stream[StepRun](max_buffer_size=math.inf)
        ready = deque(r for r in self.steps if r.waiting == 0)
        remaining = len(self.steps)
        active = 0
        async with send, receive, anyio.create_task_group() as tg:
            while remaining:
                while ready and active < self.limit:
                    run = ready.popleft()
                    active += 1
                    tg.start_soon(self._step_task, run, send)
                    if self.dag.delay_sec:
                        await anyio.sleep(self.dag.delay_sec)
                run = await receive.receive()
                active -= 1
                remaining -= 1 + self._settle(run, ready)

    async def _step_task(self, run: StepRun, done: MemoryObjectSendStream[StepRun]) -> None:
        try:
            await self._run_step(run)
        finally:
            done.send_nowait(run)

    def _settle(self, finished: StepRun, ready: deque[StepRun]) -> int:
        """Decide the dependents of ``finished``; returns how many were settled without running."""
        settled = 0
        queue = deque([finished])
        while queue:
            upstream = queue.popleft()
            verdict: StepStatus | None
            if upstream.status in ("succeeded",) or (
                upstream.status == "failed" and upstream.continued
            ):
                verdict = None
            elif upstream.status == "skipped":
                verdict = None if upstream.step.continue_on.skipped else "skipped"
            else:
                verdict = "aborted"
            for dependent in upstream.dependents:
                if dependent.done:
                    continue
                dependent.waiting -= 1
                if verdict is not None:
                    reason = "upstream failed" if verdict == "aborted" else "upstream skipped"
                    self._finish(dependent, verdict, error=f"{reason} ({upstream.name})")
                    settled += 1
                    queue.append(dependent)
                elif dependent.waiting == 0:
                    ready.append(dependent)
        return settled

    # --- one step ----------------------------------------------------------------------

    async def _run_step(self, run: StepRun, extra: Mapping[str, str] | None = None) -> None:
        step = run.step
        run.started, run.started_at = time.monotonic(), now_iso()
        try:
            env = await self._step_env(run, extra or {})
            if not await self._conditions(step.preconditions, env):
                self._finish(run, "skipped", error="preconditions not met")
                return
            await self._attempts(run, env)
        except (_ConditionError, ValueProblem) as exc:
            self._finish(run, "failed", exit_code=1, error=str(exc))
        except Exception as exc:  # a bug in dagbox: fail this step, keep the run and its record
            trace = "".join(traceback.format_exception(exc))
            self._notice(f"internal error in step {run.name}, please report it:\n{trace}")
            if not run.done:
                error = f"internal error: {type(exc).__name__}: {exc}"
                self._finish(run, "failed", exit_code=1, error=error)
        except anyio.get_cancelled_exc_class():
            if not run.done:
                if run.attempts:
                    run.failure_class = "cancelled"
                self._finish(run, "aborted", error="the run was stopped")
            raise

    async def _attempts(self, run: StepRun, env: dict[str, str]) -> None:
        step = run.step
        policy = step.retry_policy
        limit = self._number(policy.limit, env) if policy else 0
        while True:
            run.attempts += 1
            result = await self._attempt(run, env)
            if result.timed_out or result.exit.code == 0 or result.failed_early:
                break
            if not policy or run.attempts > limit:
                break
            if policy.exit_code and result.exit.code not in policy.exit_code:
                break
            delay = self._retry_delay(policy, run.attempts, env)
            run.status = "retrying"
            self.emit(
                StepRetrying(
                    run_id=self.run_id,
                    step=run.name,
                    attempt=run.attempts,
                    exit_code=result.exit.code,
                    delay_sec=delay,
                )
            )
            await anyio.sleep(delay)  # the step keeps its slot while it waits (as Dagu)
        self._conclude(run, result)

    def _retry_delay(self, policy: RetryPolicy, attempt: int, env: Mapping[str, str]) -> float:
        """``interval × backoff^(attempt-1)``, capped by ``max_interval_sec``, else by a day.

        The power is computed in a way that cannot overflow (``backoff: 1e200`` raised
        OverflowError at the third attempt).
        """
        interval = float(self._number(policy.interval_sec, env))
        backoff = policy.backoff
        factor = 2.0 if backoff is True else float(backoff) if backoff else 1.0
        cap = MAX_RETRY_DELAY if policy.max_interval_sec is None else policy.max_interval_sec
        if interval <= 0 or cap <= 0:
            return 0.0
        if math.log(interval) + (attempt - 1) * math.log(factor) >= math.log(cap):
            return float(cap)
        return interval * factor ** (attempt - 1)

    def _number(self, value: int | str, env: Mapping[str, str]) -> int:
        if isinstance(value, int):
            return value
        text = expand(value, self.params, env, plain=True)
        try:
            return int(text)
        except ValueError:
            raise _ConditionError(
                f"retry_policy value {value!r} is not a number ({text!r})"
            ) from None

    async def _attempt(self, run: StepRun, env: dict[str, str]) -> _Attempt:
        step = run.step
        harness = step.action is not None
        attempt = run.attempts
        run.stdout_file, run.stderr_file = self._log_files(run, 1 if harness else None)
        env = dict(env)
        if run.stdout_file and run.stderr_file:
            env["DAG_RUN_STEP_STDOUT_FILE"] = run.stdout_file
            env["DAG_RUN_STEP_STDERR_FILE"] = run.stderr_file
        run.status = "running"
        self.emit(
            StepStarted(
                run_id=self.run_id,
                step=run.name,
                attempt=attempt,
                handler=run.handler,
                stdout_file=run.stdout_file,
                stderr_file=run.stderr_file,
            )
        )
        capture = (
            _Capture(self.dag.max_output_size) if step.output or step.continue_on.output else None
        )
        self._learn_secrets(env)
        try:
            command = self._command(run, env)
        except (_ConditionError, ValueProblem) as exc:
            return _Attempt(Exit(1, str(exc)), capture, failed_early=True)
        redactor = self._redactor()
        streams: dict[Stream, StreamRedactor] = {
            "stdout": redactor.stream(),
            "stderr": redactor.stream(),
        }
        journal = self._journal(run, command) if harness else None
        # A step whose output is named like a secret prints a secret: all of its stdout is
        # the value, so none of it is shown (one mask stands for it), and its stderr is held
        # back (up to max_output_size) until the value is known, then shown redacted.
        output_name = step.output.lstrip("$") if step.output else ""
        secret_output = capture is not None and is_secret_name(output_name)
        held = bytearray()
        printed = False

        def emit_output(stream: Stream, data: bytes) -> None:
            if data:
                self.emit(
                    StepOutput(
                        run_id=self.run_id, step=run.name, attempt=attempt, stream=stream, data=data
                    )
                )

        def release() -> None:
            nonlocal held, printed
            if not secret_output:
                return
            assert capture is not None
            self.secrets.add(output_name, capture.text().strip())
            if printed:
                emit_output("stdout", MASK.encode() + b"\n")
                printed = False
            streams["stderr"] = self._redactor().stream()
            data, held = bytes(held), bytearray()
            emit_output("stderr", streams["stderr"].feed(data))

        def flush() -> None:
            release()
            for stream, redacting in streams.items():
                emit_output(stream, redacting.flush())

        def on_output(stream: Stream, data: bytes) -> None:
            nonlocal printed
            if capture is not None and stream == "stdout":
                capture.add(data)  # the real bytes: a dependent gets the real output value
            if journal is not None:
                journal.output(stream, data)
            if secret_output:
                if stream == "stdout":
                    printed = printed or bool(data)
                    return
                if len(held) < self.dag.max_output_size:
                    held.extend(data)
                    return
                release()  # past the bound: shown as it comes, with what is known by now
            emit_output(stream, streams[stream].feed(data))

        if journal is not None:

            def next_try(stdout_file: str | None, stderr_file: str | None) -> None:
                flush()  # the last bytes of the previous try go to its own files
                run.stdout_file, run.stderr_file = stdout_file, stderr_file
                if capture is not None:
                    capture.reset()  # only the successful try's stdout counts (docs/format.md, D4)

            journal.on_try_start = next_try
        try:
            result = await self._execute(run, env, command, capture, on_output, journal)
        except anyio.get_cancelled_exc_class():
            if journal is not None:
                journal.interrupted("cancelled", 130)
                journal.finish("cancelled", Exit(130), "cancelled")
            raise
        finally:
            flush()
        if journal is not None:
            self._journal_end(journal, result, tail=not secret_output)
        return result

    def _log_files(self, run: StepRun, try_: int | None) -> tuple[str | None, str | None]:
        layout = self.options.layout
        if layout is None:
            return None, None
        return (
            str(layout.log(run.index, run.name, run.attempts, "stdout", try_)),
            str(layout.log(run.index, run.name, run.attempts, "stderr", try_)),
        )

    def _journal(self, run: StepRun, command: Command) -> AttemptJournal:
        kind, _ = runtime_of(run.step, self.dag.container)
        image = command.container.image if command.container else None
        if kind == "root" and self.root_spec is not None:
            image = self.root_spec.image
        journal = AttemptJournal(
            self.emit,
            self.run_id,
            run.name,
            run.attempts,
            kind,
            image,
            log_files=lambda index: self._log_files(run, index),
            redact=lambda text: self._redact(text) or "",
            journal_file=(
                str(self.options.layout.journal(run.index, run.name, run.attempts))
                if self.options.layout is not None
                else None
            ),
        )
        options = merge_defaults(run.step.with_ or {}, self.dag.harness)
        journal.start(
            provider_names(options, lambda text: expand(text, self.params, command.env, plain=True))
        )
        return journal

    def _journal_end(self, journal: AttemptJournal, result: _Attempt, tail: bool = True) -> None:
        if result.timed_out:
            journal.interrupted("timeout", TIMEOUT_EXIT)
            journal.finish("timeout", result.exit, "timeout")
            return
        outcome: Outcome = "succeeded" if result.exit.code == 0 else "failed"
        journal.finish(outcome, result.exit, failure_class(result.exit))
        if tail and result.exit.code != 0 and journal.last_tail.strip():
            recent = self._redact(journal.last_tail.decode(errors="replace").strip()) or ""
            base = result.exit.error or f"exit code {result.exit.code}"
            result.exit = dataclasses.replace(result.exit, error=f"{base}; recent stdout: {recent}")

    async def _execute(
        self,
        run: StepRun,
        env: dict[str, str],
        command: Command,
        capture: _Capture | None,
        on_output: Callable[[Stream, bytes], None],
        journal: AttemptJournal | None = None,
    ) -> _Attempt:
        step = run.step
        stop = Stop(
            _signal_number(step.signal_on_stop),
            float(self.dag.max_clean_up_time_sec),
            self.interrupt.now,
        )
        kind, _ = runtime_of(step, self.dag.container)
        runtime = self.root if kind == "root" else self.runtimes.get(kind)
        if runtime is None:
            where = {
                "root": "the DAG's container",
                "step": "its own container",
                "exec": "a named container",
            }
            message = f"this step runs in {where.get(kind, kind)}, and this dagbox cannot run containers yet"
            return _Attempt(Exit(1, message), capture, failed_early=True)
        timeout = step.timeout_sec or math.inf
        with anyio.move_on_after(timeout) as timer:
            if step.action is None:
                exit_ = await runtime.run(command, on_output, stop)
            else:
                exit_ = await run_tries(
                    merge_defaults(step.with_ or {}, self.dag.harness),
                    self.providers,
                    runtime,
                    command,
                    on_output,
                    stop,
                    resolve=lambda text: expand(text, self.params, env, plain=True),
                    observer=journal,
                    guard=self._unsafe_argv,
                    redact=lambda text: self._redact(text) or "",
                )
        if timer.cancelled_caught:
            return _Attempt(
                Exit(TIMEOUT_EXIT, f"step timed out after {step.timeout_sec}s"),
                capture,
                timed_out=True,
            )
        return _Attempt(
            exit_, capture, failed_early=exit_.error is not None and step.action is None
        )

    def _conclude(self, run: StepRun, result: _Attempt) -> None:
        step, exit_ = run.step, result.exit
        code = exit_.code
        run.failure_class = "timeout" if result.timed_out else failure_class(exit_)
        error = None if code == 0 else exit_.error or f"exit code {code}"
        rule = step.continue_on
        allowed = (
            code != 0
            and not result.timed_out
            and (
                rule.failed
                or code in rule.exit_code
                or (
                    bool(rule.output)
                    and result.capture is not None
                    and _output_matches(rule.output, result.capture)
                )
            )
        )
        if code == 0 or (allowed and rule.mark_success):
            if step.output and result.capture is not None:
                if result.capture.overflow:
                    limit = self.dag.max_output_size
                    error = f"output exceeded maximum size limit of {limit} bytes"
                    self._finish(run, "failed", exit_code=code, error=error)
                    return
                value = result.capture.text().strip()
                if "\0" in value:
                    error = "the output holds a NUL byte, which no environment variable can carry"
                    self._finish(run, "failed", exit_code=code, error=error)
                    return
                run.outputs[step.output.lstrip("$")] = value
            self._finish(run, "succeeded", exit_code=code, error=error)
            return
        run.continued = allowed
        self._finish(run, "failed", exit_code=code, error=error)

    # --- secrets -----------------------------------------------------------------------

    def emit(self, event: AnyEvent) -> None:
        """Every event leaves through here, redacted as it finally is: one path for every
        error, notice and value, wherever it was raised. Output is redacted as a stream
        (a secret may span two chunks) before it gets here."""
        if self.secrets and not isinstance(event, StepOutput):
            event = self.secrets.redactor().event(event)
        self._sink(event)

    def _learn_secrets(self, *envs: Mapping[str, str]) -> None:
        self.secrets.learn(*envs)

    def _redactor(self) -> Redactor:
        return self.secrets.redactor()

    def _redact(self, text: str | None) -> str | None:
        return self._redactor().text(text) if text else text

    def _finish(
        self,
        run: StepRun,
        status: StepStatus,
        *,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        run.status, run.error = status, error
        if exit_code is not None:
            run.exit_code = exit_code
        self.emit(
            StepFinished(
                run_id=self.run_id,
                step=run.name,
                status=status,
                exit_code=run.exit_code,
                attempts=run.attempts,
                handler=run.handler,
                started_at=run.started_at,
                duration_sec=round(time.monotonic() - run.started, 3) if run.started else None,
                error=error,
                outputs={k: MASK if is_secret_name(k) else v for k, v in run.outputs.items()},
                stdout_file=run.stdout_file,
                stderr_file=run.stderr_file,
                failure_class=run.failure_class,
            )
        )

    # --- values ------------------------------------------------------------------------

    async def _dag_env(self) -> dict[str, str]:
        """Params (exported by name) and the DAG's env, evaluated in order."""
        scope = {k: v for k, v in self.params.items() if not k.isdigit()}
        host = self.options.host_env
        for name, raw in self.dag.env:
            scope[name] = await self._value(name, raw, {**host, **scope})
        return scope

    async def _value(self, name: str, raw: str, scope: Mapping[str, str]) -> str:
        """An env value, evaluated; a secret-named one is a secret from here on, so that
        no later error (a failing backtick in the next line, say) can show it."""
        try:
            value = await evaluate(raw, self.params, scope, str(self.work_dir), self._marks)
        except ValueError as exc:
            raise _ConditionError(f"env {name}: cannot evaluate {raw!r}: {exc}") from None
        self._learn_secrets({name: value})
        return value

    async def _step_env(self, run: StepRun, extra: Mapping[str, str]) -> dict[str, str]:
        """A step's process env: params, DAG env, outputs, step env and run variables.

        On the host these overlay dagbox's own environment. In a container they
        overlay the container's env instead, and host paths stay out (docs/format.md, D3).
        """
        on_host = runtime_of(run.step, self.dag.container)[0] == "host"
        env = {**self.options.host_env, **self.env} if on_host else dict(self.env)
        if self.has_outputs and run.handler is None:
            env.update(self._ancestor_outputs(run))
        elif run.handler is not None:
            for other in self.steps:
                env.update(other.outputs)
        for name, raw in run.step.env:
            env[name] = await self._value(name, raw, {**self.options.host_env, **env})
        env.update(
            {
                "DAG_NAME": self.dag.name or "",
                "DAG_RUN_ID": self.run_id,
                "DAG_RUN_STEP_NAME": run.name,
                "DAG_PARAMS_JSON": json.dumps(self.params),
            }
        )
        if on_host:
            env.update({"DAG_RUN_WORK_DIR": str(self.work_dir), "PWD": self._cwd(run, env)})
            if self.options.layout is not None:
                env["DAG_RUN_LOG_FILE"] = str(self.options.layout.events)
        env.update(extra)
        return env

    def _ancestor_outputs(self, run: StepRun) -> dict[str, str]:
        """Outputs of every step ``run`` depends on, directly or not (later in BFS wins)."""
        out: dict[str, str] = {}
        seen: set[int] = set()
        queue = deque(run.deps)
        while queue:
            dep = queue.popleft()
            if id(dep) in seen:
                continue
            seen.add(id(dep))
            out.update(dep.outputs)
            queue.extend(dep.deps)
        return out

    def _cwd(self, run: StepRun, env: Mapping[str, str]) -> str:
        if run.step.working_dir:
            path = Path(expand(run.step.working_dir, self.params, env, plain=True)).expanduser()
            return str(path if path.is_absolute() else self.work_dir / path)
        return str(self.work_dir)

    def _command(self, run: StepRun, env: dict[str, str]) -> Command:
        """What the step runs, where; _ConditionError when no program could be given it
        (a secret on its command line, a NUL byte, more than Linux lets exec carry)."""
        command = self._placed(run, env, self._host_command(run, env))
        script = command.script
        if script is not None and self.secrets.name_in(script):
            # It holds a secret (one a container's env brought in, too): off the command line.
            command = dataclasses.replace(command, private=True)
        words, written = command.argv, run.step.run if command.argv else ()
        if not words and script is None and command.container is not None:
            words = command.container.command  # the image's own program, with these words
            _, container = runtime_of(run.step, self.dag.container)
            written = container.command if container is not None else ()
        if script is not None and "\0" in script:
            raise _ConditionError("the command holds a NUL byte, which no program can receive")
        if script is not None and command.container is not None and not command.private:
            words = (*words, script)  # sh -c SCRIPT: an argument like any other
        problem = (
            env_problem(command.env, self._origin)
            or argv_problem(words)
            or total_problem(words, command.env)
            or self._secret_on_argv(words, written if isinstance(written, tuple) else ())
        )
        if problem:
            raise _ConditionError(problem)
        return command

    def _secret_on_argv(
        self, words: tuple[str, ...], written: tuple[str, ...] | None = None
    ) -> str | None:
        """A secret on a command line. Given the words as ``written`` in the DAG file, only
        those a ``${...}`` reference brought in are looked at: a word written as it is
        (``postgres``, which is also the container's password) is no leak."""
        for index, word in enumerate(words):
            if written is not None and (index >= len(written) or "$" not in written[index]):
                continue
            name = self.secrets.name_in(word)
            if name is not None:
                return (
                    f"the value of {name} would appear on the command line of {words[0]}, "
                    "which every user of this machine can read; let the program read it "
                    "from its environment instead"
                )
        return None

    def _origin(self, name: str) -> str:
        """Where a variable of a step's environment comes from, for an error about it."""
        for other in self.steps:
            if other.step.output and other.step.output.lstrip("$") == name:
                return f" (the output of step {other.name})"
        return ""

    def _placed(self, run: StepRun, env: dict[str, str], command: Command) -> Command:
        """``command`` moved into the step's container, if it has one."""
        step = run.step
        kind, container = runtime_of(step, self.dag.container)
        if kind == "host":
            return command
        spec = self.root_spec if kind == "root" else None
        if spec is None and container is not None:
            try:
                spec = container_spec(
                    container, self.params, env, Path(self._cwd(run, env)), self.options.host_env
                )
            except (ContainerValueError, ValueProblem) as exc:
                raise _ConditionError(str(exc)) from None
            self._learn_secrets(dict(spec.env))
        return dataclasses.replace(
            command, cwd=None, shell=step.shell, container=spec, entrypoint=step.action is not None
        )

    def _host_command(self, run: StepRun, env: dict[str, str]) -> Command:
        step = run.step
        cwd = env.get("PWD")
        shell = step.shell or (with_errexit(self.dag.shell) if self.dag.shell else ())
        if step.script is not None:
            if isinstance(step.run, str):  # command: python3 + script: the interpreter form
                return Command(
                    script=step.script, interpreter=step.run, env=env, cwd=cwd, name=run.name
                )
            return Command(script=step.script, shell=shell, env=env, cwd=cwd, name=run.name)
        if isinstance(step.run, tuple):
            argv = tuple(expand(a, self.params, env, plain=True) for a in step.run)
            return Command(argv=argv, env=env, cwd=cwd, name=run.name)
        if step.action is not None:
            return Command(env=env, cwd=cwd, name=run.name)  # the harness fills in argv per try
        if step.run is None:  # a container that runs its image's own command
            return Command(env=env, cwd=cwd, name=run.name)
        text = expand(step.run, self.params, env, plain=False)
        return Command(script=text, shell=shell, env=env, cwd=cwd, name=run.name)

    def _unsafe_argv(self, argv: tuple[str, ...]) -> str | None:
        """Why an agent CLI's ``argv`` may not run: a NUL byte, a word too large for exec,
        or a secret anywhere in it (its flags and prompt are all rendered from values)."""
        return argv_problem(argv, f"the command line of {argv[0]}") or self._secret_on_argv(argv)

    # --- preconditions -----------------------------------------------------------------

    async def _conditions(self, conditions: tuple[Condition, ...], env: Mapping[str, str]) -> bool:
        """All conditions met (an AND, in order). Raises _ConditionError if one cannot be evaluated."""
        scope = {**self.options.host_env, **env}
        for condition in conditions:
            met = await self._condition(condition, scope)
            if met == condition.negate:
                return False
        return True

    async def _condition(self, condition: Condition, env: Mapping[str, str]) -> bool:
        cwd = str(self.work_dir)
        limit = self.dag.max_output_size
        if condition.expected is None:  # a command: ${params.X} pasted, as in a run: line
            text = expand(condition.condition, self.params, env, plain=False)
            return (await capture(text, {**env, **self._marks}, cwd, limit)).code == 0
        # A value, evaluated by an unquoted here-document: the shell expands $X, $(cmd) and
        # `cmd` written in the text, without the quoting pitfalls of a printf command line.
        # What dagbox resolves itself (${params.X}, ${OUT.a.b}) reaches the shell through
        # its environment, so a value is read as text, never run as code.
        values: dict[str, str] = {}
        text = expand(condition.condition, self.params, env, plain=False, fields=True, into=values)
        script = f"cat <<__DAGBOX_EOF__\n{text}\n__DAGBOX_EOF__\n"
        result = await capture(script, {**env, **values, **self._marks}, cwd, limit)
        if result.code != 0:
            raise _ConditionError(
                f"cannot evaluate precondition {condition.condition!r}: "
                + result.stderr.decode(errors="replace").strip()
            )
        value = result.stdout.decode(errors="replace").rstrip("\n")
        expected = condition.expected
        if expected.startswith("re:"):
            pattern = compile_pattern(expected[3:])
            return any(pattern.search(line) for line in value.split("\n"))
        return value.strip() == expected or expected in value.split("\n")


@dataclass
class _Capture:
    """A step's stdout kept for ``output:`` and ``continue_on.output``, up to the size limit."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    overflow: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.overflow = True
            chunk = chunk[: max(room, 0)]
        self.data += chunk

    def text(self) -> str:
        return self.data.decode(errors="replace")

    def reset(self) -> None:
        """A new harness try: only the successful try's stdout counts (docs/format.md, D4)."""
        self.data.clear()
        self.overflow = False


@dataclass
class _Attempt:
    exit: Exit
    capture: _Capture | None
    timed_out: bool = False
    failed_early: bool = False  # could not start: retrying would not help


class _ConditionError(Exception):
    """A value or precondition that cannot be evaluated: the step (or run) fails."""


def _output_matches(patterns: tuple[str, ...], capture: _Capture) -> bool:
    splitter = LineSplitter()
    lines = splitter.feed(bytes(capture.data)) + splitter.flush()
    for pattern in patterns:
        if pattern.startswith("re:"):
            regex = compile_pattern(pattern[3:])
            if any(regex.search(line) for line in lines):
                return True
        elif any(pattern in line for line in lines):
            return True
    return False


def _signal_number(name: str | None) -> int:
    if not name:
        return signal.SIGTERM
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])


def _work_dir(dag: Dag, file: Path) -> Path:
    """docs/format.md, D2: the DAG's working_dir (relative to the file's folder), else the file's folder."""
    base = file.resolve().parent
    if dag.working_dir:
        path = Path(os.path.expandvars(dag.working_dir)).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    return base
