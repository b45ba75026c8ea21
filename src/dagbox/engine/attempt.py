"""One attempt of a step: its log files, its command, its process (or chain of agent
tries) under the step's timeout, its output, and for an agent step its journal."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio

from dagbox.engine import output_object, step_outputs
from dagbox.engine.builtins import run_builtin
from dagbox.engine.calls import run_call
from dagbox.engine.commands import Commands
from dagbox.engine.containers import CONTAINER_OUTPUTS
from dagbox.engine.context import Context, StepError, make_working_dir
from dagbox.engine.env import cwd
from dagbox.engine.events import Outcome, StepStarted
from dagbox.engine.journal import AttemptJournal, failure_class
from dagbox.engine.output import Capture, OutputRouter
from dagbox.engine.state import StepRun
from dagbox.harness.catalog import Provider
from dagbox.harness.tries import provider_names, run_tries
from dagbox.layout import artifact_path_problem
from dagbox.plan import PlannedStep
from dagbox.runtimes import Command, Exit, Runtime, Stop, Stream
from dagbox.signals import signal_of
from dagbox.values import ValueProblem

#: Kinds of step dagbox runs itself, in this process: no command, no runtime.
IN_PROCESS = ("call", "builtin")
#: The exit code of a step that timed out (as coreutils' ``timeout`` says it).
TIMEOUT_EXIT = 124
_WHERE = {"root": "the DAG's container", "step": "its own container", "exec": "a named container"}


@dataclass
class Attempt:
    """How an attempt ended."""

    exit: Exit
    capture: Capture | None
    timed_out: bool = False
    failed_early: bool = False  # could not start: retrying would not help
    #: The declared outputs its DAGU_OUTPUT_FILE gave (read only after a success).
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``output:``'s object form, as JSON (after a success).
    output_object: str | None = None
    #: ``stdout: {outputs}``, as JSON (after a success).
    outputs_object: str | None = None

    def published(self, step: PlannedStep, name: str) -> dict[str, str]:
        """What the attempt gives the steps downstream, by the names they reference:
        ``output:`` (when its stdout can be a value), ``${steps.ID.outputs.NAME}``,
        ``${ID.output.KEY}`` and ``${ID.outputs.KEY}``. The scheduler records it; a repeat condition reads it."""
        out = {f"steps.{step.id}.outputs.{k}": v for k, v in self.outputs.items()}
        if step.output and self.capture is not None and self.capture.problem() is None:
            out[step.output.lstrip("$")] = self.capture.text().strip()
        if self.output_object is not None:  # Dagu gives it as both
            out[f"{step.id or name}.output"] = self.output_object
            out[f"{step.id or name}.outputs"] = self.output_object
        if self.outputs_object is not None:
            out[f"{step.id or name}.outputs"] = self.outputs_object
        return out


class Attempts:
    """Runs attempts of the steps of one run."""

    def __init__(
        self,
        ctx: Context,
        commands: Commands,
        providers: dict[str, Provider],
        runtime_for: Callable[[StepRun], Runtime | None],
        now: anyio.Event,
    ) -> None:
        self.ctx = ctx
        self.commands = commands
        self.providers = providers
        self.runtime_for = runtime_for
        self.now = now  # set: stop processes at once (a second Ctrl-C)

    async def run(self, run: StepRun, env: dict[str, str]) -> Attempt:
        ctx, step = self.ctx, run.step
        harness = step.kind == "harness"
        # An agent step's stdout is its successful try's (each try has its own files); its
        # stderr is the attempt's, every try in order, each after a header (records.py).
        run.stdout_file = self._log_files(run, 1 if harness else None)[0]
        run.stderr_file = self._log_files(run, None)[1]
        env = dict(env)
        output_file = self._output_file(run, env)
        _add_attempt_paths(run, env)
        run.status = "running"
        ctx.emit(
            StepStarted(
                run_id=ctx.run_id,
                step=run.name,
                attempt=run.attempts,
                handler=run.handler,
                stdout_file=run.stdout_file,
                stderr_file=run.stderr_file,
            )
        )
        wanted = step.output or step.continue_on.output or step.output_object
        capture = (
            Capture(ctx.plan.max_output_size) if wanted or step.stdout_outputs is not None else None
        )
        ctx.secrets.learn(env)
        try:
            command = self.commands.build(run, env) if step.kind not in IN_PROCESS else None
            copies = self._copies(run, env)
        except (StepError, ValueProblem) as exc:
            if output_file is not None:
                output_file.unlink(missing_ok=True)
            return Attempt(Exit(1, str(exc)), capture, failed_early=True)
        journal = self._journal(run, command) if harness and command is not None else None
        router = OutputRouter(ctx, run.name, run.attempts, step.output, capture, journal, copies)
        if journal is not None:

            def next_try(stdout_file: str | None, stderr_file: str | None) -> None:
                router.flush()  # the last bytes of the previous try go to its own files
                run.stdout_file = stdout_file
                if capture is not None:
                    capture.reset()  # only the successful try's stdout counts (docs/format.md, D4)

            journal.on_try_start = next_try
        try:
            result = await self._execute(run, env, command, capture, router, journal)
        except anyio.get_cancelled_exc_class():
            if journal is not None:
                journal.interrupted("cancelled", 130)
                journal.finish("cancelled", Exit(130), "cancelled")
            raise
        finally:
            router.flush()
            for file in {id(f): f for f in copies.values()}.values():
                file.close()
        if journal is not None:
            self._journal_end(journal, result, tail=not router.secret_output)
        result = self._read_outputs(run, result, output_file)
        if step.output_object or step.stdout_outputs is not None:
            result = await self._object(run, env, result)
        return result

    async def _execute(
        self,
        run: StepRun,
        env: dict[str, str],
        command: Command | None,
        capture: Capture | None,
        router: OutputRouter,
        journal: AttemptJournal | None,
    ) -> Attempt:
        step = run.step
        runtime = self.runtime_for(run)
        if runtime is None:
            where = _WHERE.get(step.runtime, step.runtime)
            message = f"this step runs in {where}, and this dagbox cannot run containers yet"
            return Attempt(Exit(1, message), capture, failed_early=True)
        stop = Stop(
            signal_number(step.signal_on_stop),
            float(self.ctx.plan.max_clean_up_time_sec),
            self.now,
        )
        with anyio.move_on_after(step.timeout_sec or math.inf) as timer:
            if step.kind == "call":
                exit_ = await run_call(self.ctx, run, env, router, self.now)
            elif step.kind == "builtin":
                exit_ = await run_builtin(self.ctx, run, env, router)
            elif step.kind != "harness":
                assert command is not None
                exit_ = await runtime.run(command, router, stop)
            else:
                assert command is not None
                exit_ = await run_tries(
                    step.chain,
                    self.providers,
                    runtime,
                    command,
                    router,
                    stop,
                    resolve=self.ctx.scope(env).value,
                    observer=journal,
                    guard=self.commands.unsafe_argv,
                    redact=lambda text: self.ctx.redact(text) or "",
                )
        if timer.cancelled_caught:
            return Attempt(
                Exit(TIMEOUT_EXIT, f"step timed out after {step.timeout_sec}s"),
                capture,
                timed_out=True,
            )
        failed_early = exit_.error is not None and step.kind not in ("harness", *IN_PROCESS)
        return Attempt(exit_, capture, failed_early=failed_early)

    def _output_file(self, run: StepRun, env: dict[str, str]) -> Path | None:
        """A new, empty DAGU_OUTPUT_FILE for this attempt, in ``env`` (the path a container
        sees, in a container), when a step of the run declares outputs (every step gets
        one then, so that a record a step did not declare is an error, as in Dagu); none
        in a container dagbox does not create."""
        layout = self.ctx.layout
        if layout is None or self.ctx.outputs_dir is None or run.step.runtime == "exec":
            return None
        path = layout.output_file(run.index, run.name, run.attempts)
        path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o666 if run.step.runtime != "host" else 0o600)  # a container's user
        os.close(fd)
        inside = run.step.runtime != "host"
        env["DAGU_OUTPUT_FILE"] = f"{CONTAINER_OUTPUTS}/{path.name}" if inside else str(path)
        return path

    def _read_outputs(self, run: StepRun, result: Attempt, path: Path | None) -> Attempt:
        """After a success, the declared outputs from the file (a broken rule fails the
        attempt, with retries as for any failure); the file is removed either way."""
        if path is None:
            return result
        try:
            data = path.read_bytes()
            path.unlink()
        except OSError as exc:
            data = b""
            if result.exit.code == 0 and run.step.outputs:
                return Attempt(Exit(1, f"cannot read DAGU_OUTPUT_FILE: {exc}"), result.capture)
        if result.exit.code != 0 or result.timed_out or not (data or run.step.outputs):
            return result
        limit = self.ctx.plan.max_output_size
        try:
            result.outputs = step_outputs.read(data, run.step.outputs, limit)
        except step_outputs.OutputFileError as exc:
            return Attempt(Exit(1, str(exc)), result.capture)
        return result

    async def _object(self, run: StepRun, env: dict[str, str], result: Attempt) -> Attempt:
        """After a success, ``output:``'s object form and ``stdout: {outputs}`` (a value
        they cannot have fails the step)."""
        spec, config = run.step.output_object, run.step.stdout_outputs
        if result.exit.code != 0 or result.timed_out:
            return result
        stdout = result.capture.text() if result.capture is not None else ""
        problem = result.capture.problem() if result.capture is not None else None
        reads_stdout = config is not None or any(
            isinstance(e, dict) and e.get("from") == "stdout" for e in spec.values()
        )
        if problem is not None and reads_stdout:
            return Attempt(Exit(1, problem), result.capture)
        scope, where = self.ctx.scope(env), cwd(self.ctx, run, env)

        def build() -> None:  # in a thread: a jq filter may take its time
            if spec:
                result.output_object = output_object.build(
                    spec, scope, stdout, run.stderr_file, where
                )
            if config is not None:
                result.outputs_object = output_object.build_outputs(config, scope, stdout)

        try:
            await anyio.to_thread.run_sync(build, abandon_on_cancel=True)
        except output_object.OutputObjectError as exc:
            return Attempt(Exit(1, str(exc)), result.capture)
        return result

    def _copies(self, run: StepRun, env: dict[str, str]) -> dict[Stream, BinaryIO]:
        """The step's ``stdout:``/``stderr:`` files and artifacts, opened to append (made
        0600 if new; one file when both name it), a file relative to its working
        directory, as Dagu."""
        step = run.step
        if not (step.stdout or step.stderr or step.stdout_artifact or step.stderr_artifact):
            return {}  # most steps
        if step.stdout or step.stderr:
            make_working_dir(cwd(self.ctx, run, env))
        wanted: tuple[tuple[Stream, str | None, bool], ...] = (
            ("stdout", step.stdout, False),
            ("stderr", step.stderr, False),
            ("stdout", step.stdout_artifact, True),
            ("stderr", step.stderr_artifact, True),
        )
        opened: dict[str, BinaryIO] = {}
        copies: dict[Stream, BinaryIO] = {}
        try:
            for stream, template, artifact in wanted:
                if not template:
                    continue
                name = self.ctx.scope(env).value(template)
                if artifact:
                    path = artifact_path(self.ctx.artifacts_dir, name)
                else:
                    path = os.path.normpath(Path(cwd(self.ctx, run, env)) / name)
                if path not in opened:
                    opened[path] = _open_to_append(stream, path, follow=not artifact)
                copies[stream] = opened[path]
        except StepError:
            for file in opened.values():
                file.close()
            raise
        return copies

    def _log_files(self, run: StepRun, try_: int | None) -> tuple[str | None, str | None]:
        layout = self.ctx.layout
        if layout is None:
            return None, None
        return (
            str(layout.log(run.index, run.name, run.attempts, "stdout", try_)),
            str(layout.log(run.index, run.name, run.attempts, "stderr", try_)),
        )

    def _journal(self, run: StepRun, command: Command) -> AttemptJournal:
        ctx = self.ctx
        image = command.container.image if command.container else None
        if run.step.runtime == "root" and self.commands.root_spec is not None:
            image = self.commands.root_spec.image
        layout = ctx.layout
        journal = AttemptJournal(
            ctx.emit,
            ctx.run_id,
            run.name,
            run.attempts,
            run.step.runtime,
            image,
            log_files=lambda index: self._log_files(run, index),
            redact=lambda text: ctx.redact(text) or "",
            journal_file=(
                str(layout.journal(run.index, run.name, run.attempts)) if layout else None
            ),
        )
        journal.start(provider_names(run.step.chain, ctx.scope(command.env).value))
        return journal

    def _journal_end(self, journal: AttemptJournal, result: Attempt, tail: bool = True) -> None:
        if result.timed_out:
            journal.interrupted("timeout", TIMEOUT_EXIT)
            journal.finish("timeout", result.exit, "timeout")
            return
        outcome: Outcome = "succeeded" if result.exit.code == 0 else "failed"
        journal.finish(outcome, result.exit, failure_class(result.exit))
        if tail and result.exit.code != 0 and journal.last_tail.strip():
            recent = self.ctx.redact(journal.last_tail.decode(errors="replace").strip()) or ""
            base = result.exit.error or f"exit code {result.exit.code}"
            result.exit = dataclasses.replace(result.exit, error=f"{base}; recent stdout: {recent}")


def _add_attempt_paths(run: StepRun, env: dict[str, str]) -> None:
    """The attempt's files, as variables and ``${context.paths.*}`` (not in handlers, as
    in Dagu)."""
    if run.stdout_file and run.stderr_file and run.handler is None:
        env["DAG_RUN_STEP_STDOUT_FILE"] = run.stdout_file
        env["DAG_RUN_STEP_STDERR_FILE"] = run.stderr_file
        env["context.paths.step_stdout_file"] = run.stdout_file
        env["context.paths.step_stderr_file"] = run.stderr_file
    if "DAGU_OUTPUT_FILE" in env:
        env["context.paths.step_output_file"] = env["DAGU_OUTPUT_FILE"]


def signal_number(name: str | None) -> int:
    """``signal_on_stop`` as a number (validate refused one that names no signal); SIGTERM
    when unset."""
    return (signal_of(name) if name else None) or signal.SIGTERM


def _open_to_append(stream: Stream, path: str, follow: bool) -> BinaryIO:
    """``path`` opened to append, made 0600 if new; without ``follow``, a link put there
    since it was checked is refused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise StepError(f"cannot open {stream} file {path}: {exc.strerror}") from None
    return os.fdopen(fd, "ab", buffering=0)


def artifact_path(folder: Path | None, name: str) -> str:
    """Where ``stdout: {artifact: NAME}`` writes: NAME inside the run's artifacts folder,
    its folders made; never outside it, through ``..`` or a symlink (Dagu's rules)."""
    if folder is None:
        raise StepError("this run has no artifacts folder (it keeps no record)")
    problem = artifact_path_problem(name)
    if problem is not None:
        raise StepError(problem)
    root = folder.resolve()
    parts = Path(name.strip()).parts
    where = root
    for part in parts[:-1]:  # made one by one: none through a link out of the folder
        where = where / part
        try:
            if where.is_symlink() and not where.resolve().is_relative_to(root):
                raise StepError(f"artifact path {name!r} leaves the artifacts folder")
            where.mkdir(mode=0o750, exist_ok=True)
        except OSError as exc:
            raise StepError(
                f"cannot create the folder of artifact {name!r}: {exc.strerror}"
            ) from None
    target = where / parts[-1]
    if not where.resolve().is_relative_to(root) or target.is_symlink():
        raise StepError(f"artifact path {name!r} leaves the artifacts folder")
    return str(target)
