"""Run steps as processes on this machine, with ``anyio.open_process``.

Each step gets its own process group (a new session), so that cancelling it
reaches whatever it started too: the stop signal goes to the whole group,
then SIGKILL after the grace period. When the step's main process exits but
something it left in the background still holds its stdout or stderr open,
the group is killed after a short drain, so nothing in the group outlives its
step. A process that leaves the group (``setsid``, a daemon) lives until its
run ends, when the runner stops it (children.py): nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import anyio
import anyio.abc

from dagbox.owner import ENV_OWNER
from dagbox.owner import token as owner_token
from dagbox.runtimes import Command, Exit, OnOutput, Stop, Stream, Trace, children, no_trace
from dagbox.shells import default_shell

#: A one-line script longer than this runs from a file, as a multi-line one does: Linux
#: refuses an argument over 128 KiB.
ON_ARGV_MAX = 64 * 1024
#: How long output may keep flowing after the main process exited (background children).
DRAIN_SECONDS = 1.0
#: Descriptors a running step holds (two pipes, a pidfd, two log files, an engine socket)
#: with room to spare, and what the runner keeps for itself (records, journals, engine).
FDS_PER_STEP, FDS_RESERVED = 8, 128


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one, as Go programs (Dagu) do at start.

    Distributions often set the soft limit to 1024, which a few hundred concurrent steps
    exhaust. Returns the soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def step_budget(runs_at_once: int = 1) -> int:
    """How many steps a run may run at once before open files run out (``max_active_steps:
    0``), when ``runs_at_once`` runs share this process (``dagbox bench -c``).

    Unlimited means as many as the machine allows: past this, further steps wait for a
    slot instead of failing with "Too many open files".
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (1 << 20) if soft == resource.RLIM_INFINITY else soft
    return max(4, (room - FDS_RESERVED) // FDS_PER_STEP // max(runs_at_once, 1))


class ShebangError(Exception):
    """A script's ``#!`` line names no interpreter that can be found."""


def _interpreter(script: str, env: Mapping[str, str]) -> list[str]:
    """The words of a script's ``#!`` line, its program found in the step's PATH when the
    line does not give a path (``#!env sh``, which the kernel would not run), as in Dagu."""
    line = script.split("\n", 1)[0][2:].strip()
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ShebangError(f"cannot read the script's #! line: {exc}") from None
    if not words:
        raise ShebangError("the script's #! line names no interpreter")
    if "/" not in words[0]:
        found = shutil.which(words[0], path=env.get("PATH", os.defpath))
        if found is None:
            raise ShebangError(f"cannot find {words[0]} (the script's #! line) in the step's PATH")
        words[0] = found
    return words


class HostRuntime:
    """Processes on the host. ``scratch`` gives the folder for script files, when one is needed."""

    def __init__(self, scratch: Path | Callable[[], Path]) -> None:
        self._scratch = scratch
        self._counter = itertools.count(1)
        #: Working directories known to be there: made once, not once per step (making
        #: one is a trip to a worker thread, since a dead network mount blocks).
        self.made: set[str] = set()

    def argv(self, command: Command) -> list[str]:
        """The argv that runs ``command`` (writes a script file for multi-line scripts)."""
        if command.argv:
            return list(command.argv)
        text = command.script or ""
        if command.interpreter is not None:
            return [*shlex.split(command.interpreter), str(self._script_file(command, text))]
        shell = list(command.shell or default_shell(command.env))
        short = len(text) < ON_ARGV_MAX // 4 or len(text.encode()) < ON_ARGV_MAX
        if "\n" not in text.strip() and not command.private and short:
            return [*shell, text] if shell[-1:] == ["-c"] else [*shell, "-c", text]
        if shell[-1:] == ["-c"]:
            shell = shell[:-1]
        path = self._script_file(command, text)
        if text.startswith("#!") and not command.shell:
            return [*_interpreter(text, command.env), str(path)]
        return [*shell, str(path)]

    def _script_file(self, command: Command, text: str) -> Path:
        if callable(self._scratch):
            self._scratch = self._scratch()  # made on first use: most runs need none
        folder = self._scratch / "scripts"
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in command.name)[:80]
        path = folder / f"{safe}-{next(self._counter)}.sh"
        path.write_text(text)
        return path

    async def run(
        self, command: Command, on_output: OnOutput, stop: Stop, trace: Trace = no_trace
    ) -> Exit:
        try:
            argv = self.argv(command)
        except ShebangError as exc:
            return Exit(127, str(exc), "binary_missing")
        problem = await self._working_dir(command.cwd)
        if problem is not None:
            return Exit(1, problem)
        try:
            process = await start(argv, command.env, command.cwd, stdin=command.stdin is not None)
        except FileNotFoundError:
            cwd = command.cwd
            if cwd is not None and cwd in self.made and not await anyio.Path(cwd).is_dir():
                self.made.discard(cwd)  # removed since (by a step): made again
                return await self.run(command, on_output, stop, trace)
            return Exit(127, f"command not found: {argv[0]}", "binary_missing")
        except PermissionError:
            return Exit(126, f"permission denied: {argv[0]}")
        except OSError as exc:
            return Exit(126, f"cannot start {argv[0]}: {exc.strerror or exc}")
        try:
            return await supervise(process, command, on_output)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _stop(process, stop)
            raise
        finally:
            await close(process)

    async def _working_dir(self, cwd: str | None) -> str | None:
        """Make a working directory that is not there yet, as Dagu does; why it cannot be."""
        if cwd is None or cwd in self.made:
            return None
        try:
            await anyio.Path(cwd).mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create working directory {cwd}: {exc.strerror or exc}"
        self.made.add(cwd)
        return None


async def start(
    argv: list[str], env: Mapping[str, str], cwd: str | None, stdin: bool = False
) -> anyio.abc.Process:
    """``argv`` in a session (and process group) of its own, its stdout and stderr piped,
    carrying the owner mark that lets the next dagbox stop what it leaves if we die, and
    registered as dagbox's own child (runtimes/children.py) before anything else runs.
    Raises OSError when it cannot be started; :func:`close` ends what this started."""
    with children.spawning():
        process = await anyio.open_process(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**env, ENV_OWNER: owner_token()},
            start_new_session=True,
        )
        children.started(process.pid)
    return process


async def close(process: anyio.abc.Process) -> None:
    """Wait for ``process`` and release it (shielded), then forget it was ours."""
    with anyio.CancelScope(shield=True):
        await process.aclose()
    children.ended(process.pid)


async def supervise(process: anyio.abc.Process, command: Command, on_output: OnOutput) -> Exit:
    streams_done = anyio.Event()
    open_streams = 2

    async def pump(stream: anyio.abc.ByteReceiveStream | None, name: Stream) -> None:
        nonlocal open_streams
        try:
            if stream is not None:
                async for chunk in stream:
                    on_output(name, chunk)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            open_streams -= 1
            if open_streams == 0:
                streams_done.set()

    async def feed() -> None:
        assert process.stdin is not None and command.stdin is not None
        try:
            await process.stdin.send(command.stdin)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the process did not read all of its stdin; that is its business
        finally:
            await process.stdin.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, process.stdout, "stdout")
        tg.start_soon(pump, process.stderr, "stderr")
        if command.stdin is not None:
            tg.start_soon(feed)
        code = await process.wait()
        with anyio.move_on_after(DRAIN_SECONDS):
            await streams_done.wait()
        if not streams_done.is_set():
            _signal_group(process, signal.SIGKILL)  # background leftovers hold the pipes
            with anyio.move_on_after(DRAIN_SECONDS):
                await streams_done.wait()
            tg.cancel_scope.cancel()
    return Exit(128 - code if code < 0 else code)


def _signal_group(process: anyio.abc.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _stop(process: anyio.abc.Process, stop: Stop) -> None:
    """Stop signal to the group, then SIGKILL after the grace period (or at once on ``stop.now``)."""
    if process.returncode is None and not stop.now.is_set():
        _signal_group(process, stop.signal)

        async def exited() -> None:
            await process.wait()
            tg.cancel_scope.cancel()

        async def forced() -> None:
            await stop.now.wait()
            tg.cancel_scope.cancel()

        with anyio.move_on_after(stop.grace):
            async with anyio.create_task_group() as tg:
                tg.start_soon(exited)
                tg.start_soon(forced)
    _signal_group(process, signal.SIGKILL)  # the group, even if the leader already exited
    with anyio.move_on_after(5):
        await process.wait()
