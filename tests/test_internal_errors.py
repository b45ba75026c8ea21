"""Bugs in dagbox itself, injected on purpose: whatever breaks, the run's record still ends.

The bug is injected with monkeypatch (it stands for code that is wrong); the processes,
files and records around it are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from dagbox.compiler import compile
from dagbox.engine.commands import Commands
from dagbox.engine.events import StepStarted
from dagbox.engine.scheduler import Scheduler
from dagbox.runner import RunRequest, execute
from dagbox.runtimes import children
from dagbox.spec import load
from tests.helpers import alive, run_text


class Bug(RuntimeError):
    pass


def test_a_bug_inside_one_step_fails_that_step_only(tmp_path, monkeypatch):
    original = Commands.build

    def broken(self, run, env):
        if run.name == "b":
            raise Bug("step b")
        return original(self, run, env)

    monkeypatch.setattr(Commands, "build", broken)
    ran = run_text(
        tmp_path,
        """
        steps:
          - {id: a, run: echo a}
          - {id: b, run: echo b}
          - {id: c, depends: a, run: echo c}
        """,
    )
    assert (ran.status("a"), ran.status("b"), ran.status("c")) == (
        "succeeded",
        "failed",
        "succeeded",
    )
    assert ran.step("b").error == "internal error: Bug: step b"
    record = json.loads(next(ran.home.glob("runs/*/r1/run.json")).read_text())
    assert record["status"] == "failed" and record["finished_at"] is not None


def test_a_bug_in_the_engine_loop_still_ends_the_record_and_the_processes(tmp_path, monkeypatch):
    pid_file = tmp_path / "slow.pid"
    dag = tmp_path / "dag.yaml"
    dag.write_text(
        "steps:\n"
        f"  - {{id: slow, run: 'echo $$ > {pid_file}; exec sleep 300'}}\n"
        f"  - {{id: quick, run: 'while [ ! -s {pid_file} ]; do sleep 0.01; done'}}\n"
    )

    def broken(self, finished, ready):
        raise Bug("settling")

    monkeypatch.setattr(Scheduler, "_settle", broken)
    request = RunRequest(plan=compile(load(dag).dag, file=dag), run_id="r1", home=tmp_path / "home")
    with pytest.raises(BaseExceptionGroup) as caught:
        anyio.run(execute, request)
    assert caught.group_contains(Bug)
    pid = int(pid_file.read_text())
    assert not alive(pid), "the running step's process outlived the bug"
    record = json.loads(next((tmp_path / "home").glob("runs/*/r1/run.json")).read_text())
    assert record["status"] == "failed"
    assert record["error"] == "internal error: Bug: settling"
    assert {s["name"]: s["status"] for s in record["steps"]} == {
        "slow": "aborted",
        "quick": "succeeded",
    }


def test_a_bug_in_an_output_drops_that_output_not_the_run(tmp_path, capfd):
    dag = tmp_path / "dag.yaml"
    dag.write_text("steps:\n  - {id: a, run: echo a}\n  - {id: b, depends: a, run: echo b}\n")

    class BrokenOutput:
        def __call__(self, event):
            if isinstance(event, StepStarted):
                raise Bug("output")

    request = RunRequest(
        plan=compile(load(dag).dag, file=dag),
        run_id="r1",
        home=tmp_path / "home",
        sinks=[BrokenOutput()],
    )
    result = anyio.run(execute, request)
    assert [s.status for s in result.steps] == ["succeeded", "succeeded"]
    assert result.record_error == "the brokenoutput output stopped: Bug: output"
    assert result.exit_code == 1
    told = capfd.readouterr().err
    assert "internal error in an output" in told and "Traceback" in told
    assert Path(result.steps[1].stdout_file).read_text() == "b\n"


@pytest.fixture
def in_process_cli(tmp_path, monkeypatch):
    """The command line, called in this process. The test process must not become a
    subreaper (it would adopt, and at the end stop, what other tests start): that part of
    `dagbox run` and `bench` is left out here."""
    from dagbox.cli import app

    monkeypatch.setattr(children, "become_subreaper", lambda: False)
    monkeypatch.setattr(children, "stop_adopted", lambda: [])
    monkeypatch.setenv("DAGBOX_HOME", str(tmp_path / "home"))

    def call(*args: str) -> int | str | None:
        with pytest.raises(SystemExit) as exited:
            app(list(args), prog_name="dagbox")
        return exited.value.code

    return call


def test_the_traceback_of_a_bug_shows_no_secret(tmp_path, monkeypatch, capfd, in_process_cli):
    """The command line prints a bug's traceback (exit 1), with the run's secrets masked:
    an exception's message can hold any value the code was handling."""
    secret = "sk-bug-report-secret-4242"
    dag = tmp_path / "dag.yaml"
    dag.write_text("steps:\n  - {id: a, run: 'true'}\n")

    def broken(self, finished, ready):
        raise Bug(f"settling with {secret}")

    monkeypatch.setattr(Scheduler, "_settle", broken)
    monkeypatch.setenv("SERVICE_TOKEN", secret)
    assert in_process_cli("run", str(dag)) == 1
    told = capfd.readouterr()
    assert "dagbox: internal error, please report it:" in told.err
    assert "Bug: settling with ***" in told.err
    assert secret not in told.out + told.err


def test_the_traceback_of_a_bug_in_a_bench_shows_no_secret(
    tmp_path, monkeypatch, capfd, in_process_cli
):
    secret = "sk-bench-bug-secret-4242"
    dag = tmp_path / "dag.yaml"
    dag.write_text("params:\n  - API_KEY: unset\nsteps:\n  - {id: a, run: 'true'}\n")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"API_KEY": secret}) + "\n")

    def broken(self, finished, ready):
        raise Bug(f"settling with {self.plan.params['API_KEY']}")

    monkeypatch.setattr(Scheduler, "_settle", broken)
    args = ["bench", str(dag), "--tasks", str(tasks), "--out", str(tmp_path / "out")]
    assert in_process_cli(*args, "-o", "quiet") == 1
    told = capfd.readouterr()
    assert "dagbox: internal error, please report it:" in told.err
    assert "Bug: settling with ***" in told.err
    assert secret not in told.out + told.err
