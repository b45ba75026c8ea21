"""Faults injected for real: signals to a busy run, a killed runner, an engine that goes away.

Each test names the promise it proves in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE
from tests.faults.proxy import EngineProxy
from tests.helpers import DAGBOX, wait_for

pytestmark = pytest.mark.docker


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=check
    )


def labelled(run_id: str | None = None) -> list[str]:
    label = f"label=dagbox.run_id={run_id}" if run_id else "label=dagbox.run_id"
    return docker("ps", "-aq", "--filter", label).stdout.split()


def running(run_id: str) -> int:
    return len(
        docker(
            "ps", "-q", "--filter", f"label=dagbox.run_id={run_id}", "--filter", "status=running"
        ).stdout.split()
    )


def busy_dag(tmp_path: Path, containers: int = 20) -> Path:
    steps = "".join(
        f"  - {{id: c{i}, run: 'trap \"\" TERM; sleep 300', container: {{image: {TEST_IMAGE}, network: none}}}}\n"
        for i in range(containers)
    )
    dag = tmp_path / "busy.yaml"
    dag.write_text(
        f"max_clean_up_time_sec: 2\ncontainer: {{image: {TEST_IMAGE}, network: none}}\nsteps:\n"
        "  - {id: shared, run: 'sleep 300 & sleep 300 & wait'}\n" + steps
    )
    return dag


def start(tmp_path: Path, dag: Path, run_id: str, **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), **env}
    return subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", run_id],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
    )


def events(tmp_path: Path, run_id: str, kind: str) -> int:
    """How many ``kind`` events (``step.finished``) the run's events.jsonl holds yet."""
    found = list((tmp_path / "home").glob(f"runs/*/{run_id}/events.jsonl"))
    text = found[0].read_text() if found else ""
    return sum(json.loads(line)["event"] == kind for line in text.splitlines() if line)


def record(tmp_path: Path, run_id: str) -> dict:
    found = list((tmp_path / "home").glob(f"runs/*/{run_id}/run.json"))
    return json.loads(found[0].read_text()) if found else {"steps": [{"status": "not_started"}]}


@pytest.mark.parametrize(
    "signals", [["INT"], ["TERM"], ["INT", "INT"]], ids=["sigint", "sigterm", "double-sigint"]
)
def test_signals_stop_a_busy_run_without_leftovers(tmp_path, docker_engine, signals):
    run_id = f"sig-{'-'.join(signals).lower()}"
    proc = start(tmp_path, busy_dag(tmp_path), run_id)
    try:
        wait_for(
            lambda: running(run_id) == 21, timeout=120, what="20 step containers and the shared one"
        )
        for i, name in enumerate(signals):
            if i:  # the first one was taken: the step that does not trap TERM has ended
                wait_for(
                    lambda: events(tmp_path, run_id, "step.finished") >= 1,
                    timeout=60,
                    what="the first signal to stop a step",
                )
            proc.send_signal(getattr(signal, f"SIG{name}"))
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
    assert labelled(run_id) == []
    final = record(tmp_path, run_id)
    assert final["status"] == "aborted" and final["finished_at"]
    assert {s["status"] for s in final["steps"]} == {"aborted"}


def test_a_killed_runner_is_cleaned_up_by_the_next_run_but_live_owners_are_not(
    tmp_path, docker_engine
):
    proc = start(tmp_path, busy_dag(tmp_path, containers=3), "killed")
    wait_for(lambda: running("killed") == 4, timeout=120, what="4 containers")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(labelled("killed")) == 4  # SIGKILL: nothing could clean up
    live = docker(
        "create",
        "--label",
        "dagbox.run_id=live-owner",
        "--label",
        f"dagbox.owner={socket.gethostname()}:{os.getpid()}",
        TEST_IMAGE,
        "true",
    ).stdout.strip()
    try:
        next_run = tmp_path / "next.yaml"
        next_run.write_text(
            f"steps:\n  - {{id: a, run: 'true', container: {{image: {TEST_IMAGE}}}}}\n"
        )
        out = subprocess.run(
            [*DAGBOX, "run", str(next_run)],
            capture_output=True,
            text=True,
            env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("left behind by run killed") == 4
        assert labelled("killed") == []
        assert labelled("live-owner") == [live[:12]]
    finally:
        docker("rm", "-f", live, check=False)


def test_engine_stopped_before_a_run_exits_3_with_one_line(tmp_path):
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    listener.close()  # a socket file nobody listens on: what a stopped dockerd leaves
    dag = tmp_path / "d.yaml"
    dag.write_text(f"steps:\n  - {{id: a, run: 'true', container: {{image: {TEST_IMAGE}}}}}\n")
    out = subprocess.run(
        [*DAGBOX, "run", str(dag)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DOCKER_HOST": f"unix://{dead}", "DAGBOX_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 3
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"dagbox: cannot reach the docker engine at unix://{dead}")


def test_an_engine_that_never_answers_times_out(tmp_path):
    proxy = EngineProxy(tmp_path / "silent.sock", silent=True)
    proxy.start()
    try:
        dag = tmp_path / "d.yaml"
        dag.write_text(f"steps:\n  - {{id: a, run: 'true', container: {{image: {TEST_IMAGE}}}}}\n")
        began = time.monotonic()
        out = subprocess.run(
            [*DAGBOX, "run", str(dag)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **os.environ,
                "DOCKER_HOST": proxy.url,
                "DAGBOX_ENGINE_CONNECT_TIMEOUT": "2",
                "DAGBOX_HOME": str(tmp_path / "home"),
            },
        )
        assert out.returncode == 3
        assert "did not answer within 2s" in out.stderr
        assert time.monotonic() - began < 30
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    ("hang_on", "container", "what"),
    [
        (rb"/containers/create", "step", "creating"),
        (rb"/containers/[0-9a-f]+/attach\?", "step", "attaching to a step container"),
        (rb"/exec/[0-9a-f]+/start", "shared", "starting an exec"),
        # The engine creates the container but its answer never comes: the run, which
        # never learnt the container's id, finds it by its labels and removes it.
        (rb"mute:/containers/create", "step", "creating"),
    ],
    ids=["create", "attach", "exec-start", "create-answer"],
)
def test_an_engine_call_that_hangs_mid_run_fails_the_step_not_the_runner(
    tmp_path, docker_engine, hang_on, container, what
):
    """One engine call never answers; the others do. The step fails, the run ends, and
    the container the step had already created is removed. (In the shared container the
    first step is the one whose exec hangs.)"""
    proxy = EngineProxy(tmp_path / "engine.sock")
    if hang_on.startswith(b"mute:"):
        proxy.mute_answer_on = re.compile(hang_on.removeprefix(b"mute:"))
    else:
        proxy.hang_on = re.compile(hang_on)
    proxy.start()
    image = f"{{image: {TEST_IMAGE}, network: none}}"
    dag = tmp_path / "d.yaml"
    dag.write_text(
        (f"container: {image}\n" if container == "shared" else "")
        + "steps:\n  - {id: first, run: 'echo up'}\n"
        + "  - {id: second, depends: first, run: 'true'"
        + (f", container: {image}}}\n" if container == "step" else "}\n")
    )
    env = {
        **os.environ,
        "DOCKER_HOST": proxy.url,
        "DAGBOX_ENGINE_CALL_TIMEOUT": "3",
        "DAGBOX_HOME": str(tmp_path / "home"),
    }
    began = time.monotonic()
    try:
        out = subprocess.run(
            [*DAGBOX, "run", str(dag), "--run-id", "hang"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        took = time.monotonic() - began
        assert out.returncode == 1, out.stderr
        assert proxy.hung >= 1
        assert took < 60, took
        failed = [s for s in record(tmp_path, "hang")["steps"] if s["status"] == "failed"]
        assert [s["name"] for s in failed] == ["first" if container == "shared" else "second"]
        assert f"did not answer {what}" in (failed[0]["error"] or ""), failed[0]["error"]
        assert labelled("hang") == []
    finally:
        proxy.stop()
        if leftovers := labelled("hang"):
            docker("rm", "-f", *leftovers, check=False)


def test_engine_restart_mid_run_fails_steps_as_infra_and_retries_recover(tmp_path, docker_engine):
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    dag = tmp_path / "d.yaml"
    gate = tmp_path / "gate"
    gate.mkdir()
    dag.write_text(
        "steps:\n"
        "  - id: agent\n    action: harness.run\n    retry_policy: {limit: 5, interval_sec: 1}\n"
        f"    container: {{image: {TEST_IMAGE}, network: none, volumes: ['{gate}:/gate'],"
        " env: [FAKE_AGENT_WAIT_FOR=/gate/open]}\n"
        "    with: {provider: claude, prompt: survive}\n"
    )
    env = {**os.environ, "DOCKER_HOST": proxy.url, "DAGBOX_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", "restart"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_for(lambda: running("restart") == 1, timeout=60, what="the agent container")
        proxy.stop()  # the engine goes away: streams break, calls fail
        wait_for(
            lambda: events(tmp_path, "restart", "step.retrying") >= 1,
            timeout=60,
            what="the first attempt to fail with the engine gone",
        )
        proxy.start()  # ...and comes back
        (gate / "open").touch()  # only now may an agent answer: attempt 1 was cut off
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.kill()
        proxy.stop()
    journals = sorted((tmp_path / "home").glob("runs/*/restart/attempts/*-agent/*.jsonl"))
    outcomes = [json.loads(p.read_text().splitlines()[-1]) for p in journals]
    assert outcomes[0]["failure_class"] == "infra_engine"
    assert outcomes[-1]["outcome"] == "succeeded"
    final = record(tmp_path, "restart")
    assert final["status"] == "succeeded" and final["steps"][0]["retry_count"] >= 1
    wait_for(
        lambda: labelled("restart") == [], timeout=60, what="the orphaned container to be gone"
    )
