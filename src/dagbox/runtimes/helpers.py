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
from collections.abc import Mapping
from dataclasses import dataclass

from dagbox.runtimes import Command, Stream
from dagbox.runtimes.host import close, start, supervise

#: The variable that carries the script; ``eval`` runs it in the shell's own scope.
SCRIPT_VARIABLE = "DAGBOX_SCRIPT"
ARGV = ("sh", "-c", f'eval "${SCRIPT_VARIABLE}"')


@dataclass(frozen=True)
class Captured:
    code: int
    stdout: bytes
    stderr: bytes


async def capture(
    script: str, env: Mapping[str, str], cwd: str | None, limit: int = 1024 * 1024
) -> Captured:
    """Run ``script`` with ``sh``, as a host step runs (its own session, the owner mark,
    output read until it ends); its exit code, and up to ``limit`` bytes of each stream.

    Whatever it left in its process group is killed when it ends, or is cancelled.
    """
    kept = {"stdout": bytearray(), "stderr": bytearray()}

    def keep(stream: Stream, data: bytes) -> None:
        room = limit - len(kept[stream])
        if room > 0:
            kept[stream] += data[:room]

    process = await start(list(ARGV), {**env, SCRIPT_VARIABLE: script}, cwd)
    try:
        ended = await supervise(process, Command(), keep)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # what it left in its group, too
        await close(process)
    return Captured(ended.code, bytes(kept["stdout"]), bytes(kept["stderr"]))
