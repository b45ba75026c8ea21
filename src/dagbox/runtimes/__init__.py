"""Runtimes: where a step's process runs. They know commands, not DAGs.

A runtime turns a :class:`Command` into a running process, feeds its stdout
and stderr to a callback as raw byte chunks, and returns how it ended. The
engine never imports a runtime module; it is handed one object that follows
:class:`Runtime`. The host runtime is here; containers come through the same
protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio

Stream = Literal["stdout", "stderr"]
OnOutput = Callable[[Stream, bytes], None]


@dataclass(frozen=True, slots=True)
class Command:
    """What to run. Exactly one of ``argv`` (exec'd directly) and ``script`` (shell text).

    ``shell`` is the step's or DAG's shell (words); empty means the runtime's
    default. With ``interpreter`` set, ``script`` is a file for that program
    (Dagu's ``command: python3`` plus ``script:``).
    """

    argv: tuple[str, ...] = ()
    script: str | None = None
    shell: tuple[str, ...] = ()
    interpreter: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: bytes | None = None
    name: str = "step"  # used for scratch file names only


@dataclass(slots=True)
class Stop:
    """How to stop a process that is cancelled or timed out.

    ``signal`` first, then SIGKILL after ``grace`` seconds, or at once when
    ``now`` is set (a second Ctrl-C).
    """

    signal: int
    grace: float
    now: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True, slots=True)
class Exit:
    """How a process ended. ``code`` follows the shell convention (128 + signal)."""

    code: int
    error: str | None = None  # set when the process could not be started at all


class Runtime(Protocol):
    async def run(self, command: Command, on_output: OnOutput, stop: Stop) -> Exit:
        """Run ``command`` to the end. On cancellation, stop it per ``stop`` before returning."""
        ...
