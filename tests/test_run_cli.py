"""`dagbox run`, `status`, `logs` and `history` as real processes, signals included."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import DAGBOX, alive, wait_for


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "200"}


def write(tmp_path: Path, text: str, name: str = "dag.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def dagbox(env, *args, cwd=None, timeout=60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DAGBOX, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def test_hello_example_runs_and_status_says_succeeded(env):
    out = dagbox(env, "run", "examples/hello.yaml", cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "greet  | Hello, world!" in out.stdout
    assert "report | greet said 'Hello, world!' and count finished" in out.stdout
    status = dagbox(env, "status", "--last", "examples/hello.yaml", "--json", cwd=REPO)
    assert json.loads(status.stdout)["status"] == "succeeded"


def test_lines_stream_live(tmp_path, env):
    """The first line must reach our pipe while the step is still running (it waits for us)."""
    dag = write(
        tmp_path,
        f"""
        steps:
          - id: talk
            run: echo first; for i in $(seq 400); do [ -f {tmp_path}/go ] && break; sleep 0.05; done; test -f {tmp_path}/go; echo second
        """,
    )
    proc = subprocess.Popen([*DAGBOX, "run", str(dag)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        while not any("talk | first" in line for line in lines):
            lines.append(proc.stdout.readline())
        assert not any("second" in line for line in lines)
        (tmp_path / "go").touch()
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
        assert "talk | second" in rest
    finally:
        proc.kill()


def test_exit_codes(tmp_path, env):
    assert (
        dagbox(
            env, "run", str(write(tmp_path, "steps: [{id: a, run: 'true'}]\n", "ok.yaml"))
        ).returncode
        == 0
    )
    assert (
        dagbox(
            env, "run", str(write(tmp_path, "steps: [{id: a, run: 'exit 4'}]\n", "bad.yaml"))
        ).returncode
        == 1
    )
    partial = write(
        tmp_path,
        "steps:\n  - {id: a, run: 'exit 4', continue_on: failed}\n  - {id: b, run: 'true'}\n",
        "partial.yaml",
    )
    assert dagbox(env, "run", str(partial)).returncode == 1
    invalid = write(tmp_path, "steps: [{id: a, runn: x}]\n", "invalid.yaml")
    out = dagbox(env, "run", str(invalid))
    assert out.returncode == 2 and 'unknown key "runn"' in out.stderr


def test_run_id_option(tmp_path, env):
    dag = write(tmp_path, "steps: [{id: a, run: 'true'}]\n")
    assert dagbox(env, "run", str(dag), "--run-id", "my-run").returncode == 0
    again = dagbox(env, "run", str(dag), "--run-id", "my-run")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert dagbox(env, "run", str(dag), "--run-id", "../escape").returncode == 2
    assert json.loads(dagbox(env, "status", "my-run", "--json").stdout)["run_id"] == "my-run"


def test_params_on_the_command_line(tmp_path, env):
    dag = write(
        tmp_path, "params: [A=1, B=2]\nsteps:\n  - {id: a, run: 'echo $A-$B-${params.C}'}\n"
    )
    for args in (["--params", "A=x C=z"], ["-p", "A=x", "-p", "C=z"], ["--", "A=x", "C=z"]):
        out = dagbox(env, "run", str(dag), *args)
        assert "a | x-2-z" in out.stdout, (args, out.stdout, out.stderr)


def test_output_modes(tmp_path, env):
    dag = write(
        tmp_path,
        """
        steps:
          - {id: good, run: 'echo good-line'}
          - {id: bad, run: 'echo bad-line; exit 1', continue_on: failed}
        """,
    )
    grouped = dagbox(env, "run", str(dag), "--output", "grouped").stdout
    assert "── good ✔ succeeded" in grouped and "   good-line" in grouped
    failures = dagbox(env, "run", str(dag), "--output", "failures").stdout
    assert "bad-line" in failures and "good-line" not in failures
    quiet = dagbox(env, "run", str(dag), "--output", "quiet").stdout
    assert quiet.count("\n") == 1 and "partially_succeeded" in quiet
    lines = [
        json.loads(line) for line in dagbox(env, "run", str(dag), "-o", "json").stdout.splitlines()
    ]
    kinds = [e["event"] for e in lines]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    assert {"step": "good", "line": "good-line"}.items() <= next(
        e for e in lines if e["event"] == "step.output" and e["step"] == "good"
    ).items()


def test_concurrent_output_lines_never_mix(tmp_path, env):
    long_a = "a" * 5000
    long_b = "b" * 5000
    dag = write(
        tmp_path,
        f"""
        steps:
          - {{id: one, run: 'for i in $(seq 300); do echo {long_a}; done'}}
          - {{id: two, run: 'for i in $(seq 300); do echo {long_b}; printf "{long_b}" >&2; echo >&2; done'}}
        """,
    )
    out = dagbox(env, "run", str(dag))
    body = [line for line in out.stdout.splitlines() if " | " in line or " ! " in line]
    assert len(body) == 900
    for line in body:
        name, _, text = line.partition(" | ") if " | " in line else line.partition(" ! ")
        assert text in (long_a, long_b), line[:80]
        assert (name.strip(), text[0]) in (("one", "a"), ("two", "b"))


def test_invalid_utf8_and_partial_last_line_reach_the_terminal(tmp_path, env):
    dag = write(tmp_path, "steps:\n  - id: s\n    run: printf 'caf\\303\\251 \\377 end'\n")
    out = subprocess.run(
        [*DAGBOX, "run", str(dag)], capture_output=True, env=env, timeout=60, check=False
    )
    assert "s | café \ufffd end\n".encode() in out.stdout


def test_logs_and_history(tmp_path, env):
    dag = write(
        tmp_path,
        "steps:\n  - {id: a, run: 'echo out-a; echo err-a >&2'}\n  - {id: b, run: 'echo out-b'}\n",
    )
    dagbox(env, "run", str(dag), "--run-id", "one")
    assert dagbox(env, "logs", "one", "a").stdout == "out-a\n"
    assert dagbox(env, "logs", "one", "a", "--stderr").stdout == "err-a\n"
    assert dagbox(env, "logs", "one").stdout.splitlines() == ["a | out-a", "b | out-b"]
    assert dagbox(env, "logs", "one", "zzz").returncode == 2
    dagbox(env, "run", str(dag), "--run-id", "two")
    history = dagbox(env, "history", str(dag)).stdout.splitlines()
    assert [line.split()[0] for line in history] == ["two", "one"]
    assert len(dagbox(env, "history", "-n", "1").stdout.splitlines()) == 1
    status = dagbox(env, "status", "one").stdout
    assert "run one of dag: succeeded" in status


def _start_long_run(tmp_path, env, grace=5, trap="", body=None):
    dag = write(
        tmp_path,
        f"""
        max_clean_up_time_sec: {grace}
        handler_on:
          abort: {{run: touch {tmp_path}/abort.ran}}
          exit: {{run: 'echo "$DAG_RUN_STATUS" > {tmp_path}/exit.ran'}}
        steps:
          - id: long
            run: {body or f"{trap} sleep 120 & echo $! > {tmp_path}/child; echo $$ > {tmp_path}/pid; wait"}
          - id: fast
            run: 'true'
          - id: later
            depends: long
            run: touch {tmp_path}/later.ran
        """,
    )
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", "sig"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    wait_for(
        lambda: (tmp_path / "child").exists() and (tmp_path / "pid").exists(),
        what="the step to start",
    )
    wait_for(lambda: _statuses(tmp_path).get("fast") == "succeeded", what="the fast step to finish")
    return proc


def _statuses(tmp_path) -> dict[str, str]:
    try:
        record = json.loads(next((tmp_path / "home").glob("runs/*/sig/run.json")).read_text())
    except (StopIteration, ValueError):
        return {}
    return {s["name"]: s["status"] for s in record["steps"]}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_run_cleanly(tmp_path, env, sig):
    proc = _start_long_run(tmp_path, env)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 130
    record = json.loads(next((tmp_path / "home").glob("runs/*/sig/run.json")).read_text())
    steps = {s["name"]: s["status"] for s in record["steps"]}
    assert record["status"] == "aborted" and record["finished_at"]
    assert steps == {"long": "aborted", "fast": "succeeded", "later": "not_started"}
    assert (tmp_path / "abort.ran").exists()
    assert (tmp_path / "exit.ran").read_text() == "aborted\n"
    for name in ("pid", "child"):
        assert not alive(int((tmp_path / name).read_text())), name


def test_second_interrupt_skips_the_grace_period(tmp_path, env):
    # The step notes the stop signal and goes on; its child ignores it: only SIGKILL ends them.
    got = tmp_path / "got"
    body = (
        f"trap 'echo TERM >> {got}' TERM; trap '' INT; "
        f"(trap '' INT TERM; exec sleep 120) & echo $! > {tmp_path}/child; "
        f"echo $$ > {tmp_path}/pid; while :; do wait || :; done"  # (the shell has -e)
    )
    proc = _start_long_run(tmp_path, env, grace=60, body=body)
    try:
        proc.send_signal(signal.SIGINT)
        wait_for(got.exists, what="the first signal to reach the step")  # its grace began
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:  # a failure here must not leave the step (it ignores SIGTERM) running
        proc.kill()
        for name in ("pid", "child"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((tmp_path / name).read_text()), signal.SIGKILL)
    assert time.monotonic() - started < 20  # far below the 60 s grace
    assert not alive(int((tmp_path / "pid").read_text()))
    assert (tmp_path / "exit.ran").read_text() == "aborted\n"  # handlers still run


def test_logs_follow_prints_while_the_run_goes_on(tmp_path, env):
    dag = write(
        tmp_path,
        f"""
        steps:
          - id: talk
            run: echo early; for i in $(seq 400); do [ -f {tmp_path}/go ] && break; sleep 0.05; done; test -f {tmp_path}/go; echo late
        """,
    )
    run = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", "live"], stdout=subprocess.DEVNULL, env=env
    )
    follow = None
    try:
        wait_for(
            lambda: _statuses_of(tmp_path, "live").get("talk") == "running", what="the step to run"
        )
        follow = subprocess.Popen(
            [*DAGBOX, "logs", "live", "--follow"], stdout=subprocess.PIPE, text=True, env=env
        )
        assert follow.stdout is not None
        assert follow.stdout.readline() == "talk | early\n"
        (tmp_path / "go").touch()
        assert follow.stdout.readline() == "talk | late\n"
        assert follow.wait(timeout=30) == 0
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
        if follow is not None:
            follow.kill()


def _statuses_of(tmp_path, run_id) -> dict[str, str]:
    try:
        record = json.loads(next((tmp_path / "home").glob(f"runs/*/{run_id}/run.json")).read_text())
    except (StopIteration, ValueError):
        return {}
    return {s["name"]: s["status"] for s in record["steps"]}


def test_the_dags_retry_policy_runs_a_failed_run_again(tmp_path):
    """Root retry_policy (Dagu's whole-run retry): a failed run is run again, as a new run
    whose id is the first's with .2, .3, up to the limit; a success stops it."""
    dag = tmp_path / "flaky.yaml"
    dag.write_text(
        "retry_policy: {limit: 3, interval_sec: 0}\n"
        "steps:\n"
        "  - run: echo x >> tries; test $(wc -l < tries) -ge 3\n"
    )
    done = subprocess.run(
        [*DAGBOX, "run", str(dag), "--run-id", "first"],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "tries").read_text() == "x\n" * 3
    runs = sorted(p.name for p in (tmp_path / "home" / "runs" / "flaky").iterdir())
    assert runs == ["first", "first.2", "first.3"]
    assert "its retry_policy runs it again as first.2" in done.stderr
    # The same --run-id again (its first record removed): the retries take ids not used yet.
    (tmp_path / "tries").unlink()
    shutil.rmtree(tmp_path / "home" / "runs" / "flaky" / "first")
    again = subprocess.run(
        [*DAGBOX, "run", str(dag), "--run-id", "first"],
        capture_output=True, text=True, env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    runs = sorted(p.name for p in (tmp_path / "home" / "runs" / "flaky").iterdir())
    assert runs == ["first", "first.2", "first.3", "first.4", "first.5"]
