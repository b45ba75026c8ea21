"""Runtimes: where a step's process runs. They know commands, not DAGs.

A runtime turns a :class:`Command` into a running process, feeds its stdout
and stderr to a callback as raw byte chunks, and returns how it ended. The
engine never imports a runtime module; it is handed :class:`Runtimes`: the host
runtime, and when the run uses containers one that follows :class:`ContainerRuntime`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio

from dagbox.failures import FailureClass

Stream = Literal["stdout", "stderr"]
OnOutput = Callable[[Stream, bytes], None]
#: Runtimes report what they measured as they go: ("image_ready_ms", 12.5),
#: ("container_create_ms", ...), ("container_start_ms", ...), ("container_id", "3f2a...").
Trace = Callable[[str, object], None]


def no_trace(name: str, value: object) -> None:
    """The default Trace: measurements nobody asked for go nowhere."""


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """A container to run in, with every value already resolved (no ``${...}`` left).

    ``image`` set: create a container from it (per attempt, or the shared one).
    ``target`` set: exec into that existing container (by name or id), which is
    never created, stopped or removed.
    """

    image: str | None = None
    target: str | None = None
    name: str | None = None
    pull_policy: str = "missing"
    env: tuple[tuple[str, str], ...] = ()
    binds: tuple[str, ...] = ()  # "source:target:ro|rw" or "volume:target:ro|rw"
    working_dir: str | None = None
    user: str | None = None
    network: str | None = None
    platform: str | None = None
    ports: tuple[str, ...] = ()
    keep: bool = False
    startup: str = "keepalive"
    command: tuple[str, ...] = ()
    wait_for: str = "running"
    log_pattern: str | None = None
    restart_policy: str | None = None
    healthcheck: Mapping[str, object] | None = None
    shell: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Command:
    """What to run. At most one of ``argv`` (exec'd directly) and ``script`` (shell text).

    ``shell`` is the step's or DAG's shell (words); empty means the runtime's
    default. With ``interpreter`` set, ``script`` is a file for that program
    (Dagu's ``command: python3`` plus ``script:``). ``container`` says where a
    container runtime runs it; with ``entrypoint`` the first argv word replaces
    the image's entrypoint (agent CLIs). Neither argv nor script: the image's own
    command runs.
    """

    argv: tuple[str, ...] = ()
    script: str | None = None
    shell: tuple[str, ...] = ()
    interpreter: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: bytes | None = None
    name: str = "step"  # scratch file names and container labels
    container: ContainerSpec | None = None
    entrypoint: bool = False
    #: The script holds a secret: never put it on a command line (use a file or the env).
    private: bool = False


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
    #: Why it failed when that is not the step's fault: "infra_image", "infra_engine", "oom".
    failure_class: FailureClass | None = None


class SetupError(Exception):
    """A runtime could not prepare what a run needs (an image, the shared container)."""

    def __init__(self, message: str, failure_class: FailureClass = "infra_engine") -> None:
        super().__init__(message)
        self.failure_class = failure_class


Notify = Callable[[str], None]


class Runtime(Protocol):
    async def run(
        self, command: Command, on_output: OnOutput, stop: Stop, trace: Trace = no_trace
    ) -> Exit:
        """Run ``command`` to the end. On cancellation, stop it per ``stop`` before returning."""
        ...


class ContainerRuntime(Runtime, Protocol):
    """A runtime for containers: a fresh one per attempt, or exec into a running one
    (by ``Command.container``), and the run's shared container."""

    def shared(
        self, spec: ContainerSpec, notify: Notify
    ) -> contextlib.AbstractAsyncContextManager[Runtime]:
        """The shared (root) container of a run, started, and removed on exit."""
        ...

    async def sweep(self, thorough: bool = False) -> None:
        """Remove what the run's attempts could not remove in time; ``thorough``: any
        container of this run the container engine still lists."""
        ...


@dataclass(frozen=True, slots=True)
class Runtimes:
    """What a run's steps run on: the host, and containers when the run can use them."""

    host: Runtime
    containers: ContainerRuntime | None = None
