"""Short shells dagbox runs for itself: a backtick in a value, a precondition.

Their text has its ``${...}`` references already expanded, secrets included, and a
process's command line is readable by every user of the machine (``/proc/*/cmdline``,
``ps``). So the text travels in the shell's environment, which only its owner can read,
and the command line is always the same three words. What the shell prints is kept up
to a bound, so a precondition that prints forever cannot take the runner's memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import anyio.abc

from dagbox.owner import ENV_OWNER
from dagbox.owner import token as owner_token
from dagbox.runtimes import children

#: The variable that carries the script; ``eval`` runs it in the shell's own scope.
SCRIPT_VARIABLE = "DAGBOX_SCRIPT"
ARGV = ("sh", "-c", f'eval "${SCRIPT_VARIABLE}"')
#: How long output may keep coming once the shell has exited.
DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class Captured:
    code: int
    stdout: bytes
    stderr: bytes


async def capture(
    script: str, env: Mapping[str, str], cwd: str | None, limit: int = 1024 * 1024
) -> Captured:
    """Run ``script`` with ``sh``; its exit code, and up to ``limit`` bytes of each stream.

    Cancelled, it kills the shell's process group before it returns.
    """
    with children.spawning():
        process = await anyio.open_process(
            list(ARGV),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            # The owner mark, as every host step has: what the shell leaves running is ours.
            env={**env, SCRIPT_VARIABLE: script, ENV_OWNER: owner_token()},
            start_new_session=True,
        )
        children.started(process.pid)
    kept = {"stdout": bytearray(), "stderr": bytearray()}

    open_streams = 2
    drained = anyio.Event()

    async def drain(stream: anyio.abc.ByteReceiveStream | None, name: str) -> None:
        nonlocal open_streams
        try:
            if stream is not None:
                async for chunk in stream:
                    room = limit - len(kept[name])
                    if room > 0:
                        kept[name] += chunk[:room]
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            open_streams -= 1
            if not open_streams:
                drained.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, process.stdout, "stdout")
            tg.start_soon(drain, process.stderr, "stderr")
            code = await process.wait()
            with anyio.move_on_after(DRAIN_SECONDS):  # a background child may hold a pipe
                await drained.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # what it left in its group, too
            await process.aclose()
            children.ended(process.pid)
    return Captured(code, bytes(kept["stdout"]), bytes(kept["stderr"]))
