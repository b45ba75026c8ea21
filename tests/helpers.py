"""What many tests need: dagbox as a command, a DAG run in process, a fake runtime, and
waiting on state with a bound (never a sleep as synchronisation)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from dagbox.compiler import compile
from dagbox.engine.context import RunOptions
from dagbox.engine.scheduler import Scheduler
from dagbox.engine.state import RunResult
from dagbox.plan import Plan
from dagbox.runner import RunRequest, execute
from dagbox.runtimes import Command, Exit, OnOutput, Runtimes, Stop
from dagbox.spec import load

#: dagbox as a user runs it (``python -m dagbox``, this interpreter).
DAGBOX = [sys.executable, "-m", "dagbox"]


class Ran:
    """A finished run: its result, its events and its record."""

    def __init__(self, result: RunResult, events: list[Any], home: Path) -> None:
        self.result, self.events, self.home = result, events, home
        self.record = json.loads(next(home.glob("runs/*/*/run.json")).read_text())

    def status(self, name: str) -> str:
        return next(s.status for s in self.result.steps if s.name == name)

    def step(self, name: str) -> Any:
        return next(s for s in self.result.steps if s.name == name)

    def stdout(self, name: str) -> str:
        return Path(self.step(name).stdout_file).read_text()

    def error(self, name: str) -> str:
        return str(self.step(name).error or "")

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def run_plan(tmp_path: Path, plan: Plan, max_active: int | None = None, run_id: str = "r1") -> Ran:
    """Run ``plan`` as ``dagbox run`` does (host processes, records under tmp_path/home)."""
    events: list[Any] = []
    request = RunRequest(
        plan=plan,
        run_id=run_id,
        max_active=max_active,
        home=tmp_path / "home",
        sinks=[events.append],
    )
    result = anyio.run(execute, request)
    return Ran(result, events, tmp_path / "home")


def run_text(
    tmp_path: Path,
    text: str,
    params: Mapping[str, str] | None = None,
    max_active: int | None = None,
    run_id: str = "r1",
) -> Ran:
    """Write ``text`` as tmp_path/dag.yaml, then run it as ``dagbox run`` does."""
    path = tmp_path / "dag.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    loaded = load(path)
    plan = compile(loaded.dag, params, loaded.path, loaded.dags)
    return run_plan(tmp_path, plan, max_active, run_id)


@dataclass
class FakeRuntime:
    """A runtime without processes, for scheduling semantics where the process is not
    the point: each command exits with ``exits[step name]`` (0 by default), after
    printing ``says[step name]``, and is remembered in ``ran``."""

    exits: Mapping[str, int] = field(default_factory=dict)
    says: Mapping[str, bytes] = field(default_factory=dict)
    ran: list[Command] = field(default_factory=list)

    async def run(
        self, command: Command, on_output: OnOutput, stop: Stop, trace: object = None
    ) -> Exit:
        self.ran.append(command)
        if command.name in self.says:
            on_output("stdout", self.says[command.name])
        await anyio.lowlevel.checkpoint()
        return Exit(self.exits.get(command.name, 0))


@dataclass
class Scheduled:
    result: RunResult
    events: list[Any]
    runtime: FakeRuntime

    def status(self, name: str) -> str:
        return next(s.status for s in self.result.steps if s.name == name)


def schedule(
    text: str, runtime: FakeRuntime | None = None, tmp_path: Path | None = None, **options: Any
) -> Scheduled:
    """Run a DAG's text through the scheduler alone, on ``runtime`` (a FakeRuntime)."""
    runtime = runtime or FakeRuntime()
    loaded = load(Path("dag.yaml"), textwrap.dedent(text).lstrip("\n"))
    plan = compile(loaded.dag, file=(tmp_path or Path.cwd()) / "dag.yaml")
    events: list[Any] = []
    scheduler = Scheduler(plan, Runtimes(runtime), events.append, RunOptions("fake", **options))
    return Scheduled(anyio.run(scheduler.run), events, runtime)


def alive(pid: int) -> bool:
    """The process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_for(
    predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
