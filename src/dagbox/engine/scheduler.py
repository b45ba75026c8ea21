"""The scheduler: one run of a Plan, from preconditions to the exit handler.

Ready steps are dispatched first in, first out, in file order, up to
``max_active_steps`` at a time; each runs in its own task, and reports back
to the dispatcher when it reaches a final status. The dispatcher then settles
the step's dependents (ready, skipped or aborted, per docs/format.md, "Statuses").
The scheduler knows statuses, values and timing; processes are the runtime's
business, and everything the user sees or finds on disk comes from the events
it emits. What a step's environment, command and conditions are is decided in
env.py, commands.py and conditions.py; one attempt runs in attempt.py.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections import deque
from collections.abc import Mapping

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from dagbox.engine import env as envs
from dagbox.engine.attempt import Attempt, Attempts
from dagbox.engine.commands import Commands
from dagbox.engine.conditions import all_met
from dagbox.engine.containers import ContainerValueError, container_spec, with_run_folders
from dagbox.engine.context import Context, Emit, RunOptions, StepError
from dagbox.engine.events import (
    AnyEvent,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStatus,
    now_iso,
)
from dagbox.engine.journal import failure_class
from dagbox.engine.repeat import repeated
from dagbox.engine.state import Interrupt, RunResult, StepRun, run_status
from dagbox.harness.catalog import registry
from dagbox.plan import Plan
from dagbox.runtimes import Runtime, Runtimes, SetupError
from dagbox.secrets import MASK, is_secret_name
from dagbox.values import ValueProblem


class Scheduler:
    def __init__(self, plan: Plan, runtimes: Runtimes, emit: Emit, options: RunOptions) -> None:
        self.plan = plan
        self.runtimes = runtimes
        self.ctx = Context(plan, options, emit)
        self.interrupt = Interrupt(options.parent.now if options.parent is not None else None)
        self.steps = [StepRun(s, i) for i, s in enumerate(plan.steps, 1)]
        self.handlers = {
            name: StepRun(step, len(self.steps) + i, handler=name)
            for i, (name, step) in enumerate(plan.handlers.items(), 1)
        }
        for run in self.steps:
            run.deps = [self.steps[d] for d in run.step.upstream]
            run.waiting = len(run.deps)
            for dep in run.deps:
                dep.dependents.append(run)
        self.env: dict[str, str] = {}  # params and DAG env, once evaluated
        self.has_outputs = envs.passes_values(plan)
        limit = plan.max_active_steps if options.max_active is None else options.max_active
        self.limit = limit if limit > 0 else math.inf
        self.commands = Commands(self.ctx)
        self.root: Runtime | None = None  # the shared container, once it runs
        self.attempts = Attempts(
            self.ctx,
            self.commands,
            registry(plan.harnesses),
            self._runtime_for,
            self.interrupt.now,
        )
        self.setup_failed = False

    @property
    def run_id(self) -> str:
        return self.ctx.run_id

    def emit(self, event: AnyEvent) -> None:
        """An event of this run, redacted as every other (see Context.emit)."""
        self.ctx.emit(event)

    # --- the whole run -----------------------------------------------------------------

    async def run(self) -> RunResult:
        started = time.monotonic()
        unevaluated = await envs.evaluate_params(self.ctx)  # before anything sees the params
        self.plan = self.ctx.plan
        plan, ctx = self.plan, self.ctx
        parent = ctx.options.parent
        ctx.emit(
            RunStarted(
                run_id=self.run_id,
                dag=plan.dag,
                file=plan.file,
                params={k: MASK if is_secret_name(k) else v for k, v in plan.params.items()},
                steps=[s.name for s in self.steps],
                handlers=list(self.handlers),
                record_dir=str(ctx.layout.dir) if ctx.layout else None,
                parent_run_id=parent.run_id if parent else None,
                parent_step=parent.step if parent else None,
                root_run_id=parent.root_run_id if parent else None,
            )
        )
        for message in ctx.options.notices:
            ctx.notice(message)
        error: str | None = None
        status: RunStatus | None = None
        unmet = False
        async with contextlib.AsyncExitStack() as stack:  # closes the shared container last
            with anyio.CancelScope() as scope:
                self.interrupt.scope = scope
                if self.interrupt.requested:
                    scope.cancel()
                try:
                    if unevaluated is not None:
                        raise StepError(unevaluated)
                    unmet, status, error = await self._main(stack)
                except (StepError, ValueProblem) as exc:
                    status, error = "failed", str(exc)
                except SetupError as exc:  # no step and no handler runs (docs/format.md)
                    status, error = "failed", str(exc)
                    self.setup_failed = True
            self.interrupt.scope = None
            if self.interrupt.requested:
                status, error = "aborted", "interrupted"
            elif status is None:
                status = run_status(self.steps)
            root = plan.container
            if not self.setup_failed and (
                root is None or self.root is not None or root.exec is not None
            ):
                status = await self._closing_handlers(status)
        duration = round(time.monotonic() - started, 3)
        ctx.emit(RunFinished(run_id=self.run_id, status=status, duration_sec=duration, error=error))
        return RunResult(
            self.run_id,
            status,
            self.steps,
            self.handlers,
            ctx.redact(error),
            precondition_unmet=unmet,
            interrupted=self.interrupt.requested,
            params=dict(self.plan.params),
        )

    async def _main(
        self, stack: contextlib.AsyncExitStack
    ) -> tuple[bool, RunStatus | None, str | None]:
        """The DAG's env, its container, preconditions, init and the graph: (preconditions
        unmet, status, error), the status None when the steps decide it."""
        self.env = await envs.dag_env(self.ctx)
        self.ctx.secrets.learn(self.env)
        await self._open_root(stack)
        init = self.handlers.get("init")
        if not await all_met(self.ctx, self.plan.preconditions, self.env, str(self.ctx.work_dir)):
            return True, "aborted", "the DAG's preconditions were not met"
        if init is not None and await self._run_handler(init, "running") not in (
            "succeeded",
            "skipped",  # its preconditions were not met: the steps run (as in Dagu)
        ):
            return False, "aborted", "the init handler failed"
        timeout = self.plan.timeout_sec
        with anyio.move_on_after(timeout or math.inf) as timer:
            await self._graph()
        if not timer.cancelled_caught:
            return False, None, None
        error = f"the DAG timed out after {timeout}s"
        for run in self.steps:
            if not run.done:
                self._finish(run, "aborted", error=error)
        return False, "failed", error

    async def _open_root(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the DAG's shared container (image mode) before preconditions and steps."""
        container = self.plan.container
        if container is None or container.exec is not None:
            return
        provider = self.runtimes.containers
        if provider is None:
            raise SetupError(
                "this DAG runs in a container, and this dagbox cannot run containers yet"
            )
        try:
            spec = container_spec(
                container, self.ctx.scope(self.env), self.ctx.work_dir, self.ctx.host_env
            )
        except (ContainerValueError, ValueProblem) as exc:
            raise SetupError(str(exc)) from None
        spec = with_run_folders(spec, self.ctx.outputs_dir, self.ctx.artifacts_dir)
        self.commands.root_spec = spec
        self.ctx.secrets.learn(dict(spec.env))
        self.root = await stack.enter_async_context(provider.shared(spec, self.ctx.notice))

    def _runtime_for(self, run: StepRun) -> Runtime | None:
        kind = run.step.runtime
        if kind == "host":
            return self.runtimes.host
        return self.root if kind == "root" else self.runtimes.containers

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
                    if self.plan.delay_sec:
                        await anyio.sleep(self.plan.delay_sec)
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
        run.started, run.started_at = time.monotonic(), now_iso()
        try:
            env = await envs.step_env(self.ctx, run, self.env, self._outputs_for(run), extra or {})
            where = envs.cwd(self.ctx, run, env)
            if not await all_met(self.ctx, run.step.preconditions, env, where):
                self._finish(run, "skipped", error="preconditions not met")
                return
            await self._attempts(run, env)
        except (StepError, ValueProblem) as exc:
            self._finish(run, "failed", exit_code=1, error=str(exc))
        except Exception as exc:  # a bug in dagbox: fail this step, keep the run and its record
            trace = "".join(traceback.format_exception(exc))
            self.ctx.notice(f"internal error in step {run.name}, please report it:\n{trace}")
            if not run.done:
                error = f"internal error: {type(exc).__name__}: {exc}"
                self._finish(run, "failed", exit_code=1, error=error)
        except anyio.get_cancelled_exc_class():
            if not run.done:
                if run.attempts:
                    run.failure_class = "cancelled"
                self._finish(run, "aborted", error="the run was stopped")
            raise

    def _outputs_for(self, run: StepRun) -> dict[str, str]:
        """The outputs a step sees: its ancestors'; a handler sees every step's."""
        if run.handler is not None:  # not ${steps.*}: Dagu gives handlers no step outputs
            every = (other.outputs.items() for other in self.steps)
            return {k: v for items in every for k, v in items if not k.startswith("steps.")}
        return envs.ancestor_outputs(run) if self.has_outputs else {}

    async def _attempts(self, run: StepRun, env: dict[str, str]) -> None:
        self._conclude(run, await repeated(self.ctx, self.attempts, run, env))

    def _conclude(self, run: StepRun, result: Attempt) -> None:
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
                    and result.capture.matches(rule.output)
                )
            )
        )
        for document in (result.output_object, result.outputs_object):
            if document is not None:
                self.ctx.secrets.learn(envs.secret_keys(document))
        if code != 0 and not (allowed and rule.mark_success):
            run.continued = allowed
            run.outputs.update(result.published(step, run.name))  # output: still set, as Dagu
            self._finish(run, "failed", exit_code=code, error=error)
            return
        capture = result.capture
        problem = capture.problem() if step.output and capture is not None else None
        if problem is not None:
            self._finish(run, "failed", exit_code=code, error=problem)
            return
        run.outputs.update(result.published(step, run.name))
        self._finish(run, "succeeded", exit_code=code, error=error)

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
        if self.has_outputs:
            run.publish()
        self.ctx.emit(
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
