"""Nothing a run starts outlives it: not a container whose create was in flight at Ctrl-C,
not a daemon a step detached with setsid and a double fork; and what the user asked to
keep is kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE
from tests.helpers import DAGBOX, alive, run_text, wait_for


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}


def remove_labelled(engine: str, run_id: str) -> None:
    """A failed test leaves nothing behind either."""
    if left := labelled(engine, run_id):
        subprocess.run([engine, "rm", "-f", *left], capture_output=True, timeout=120, check=False)


def labelled(engine: str, run_id: str) -> list[str]:
    done = subprocess.run(
        [engine, "ps", "-aq", "--filter", f"label=dagbox.run_id={run_id}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_while_containers_are_being_created_leaves_none(tmp_path, sig):
    """The signal comes as soon as the first of 30 containers exists, so most creates are
    in flight: each one's answer is awaited and its container removed."""
    dag = tmp_path / "many.yaml"
    dag.write_text(
        "steps:\n"
        + "".join(
            f"  - {{id: c{i}, container: {{image: {TEST_IMAGE}, network: none}}, run: sleep 60}}\n"
            for i in range(30)
        )
    )
    run_id = f"early-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", run_id, "-o", "quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(tmp_path),
    )
    try:
        wait_for(lambda: labelled("docker", run_id), timeout=120, what="a first container")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 130, err.decode()
        # None now, and none a moment later: a create the engine finished after dagbox had
        # given up on it would show up only then.
        watched_until = time.monotonic() + 8  # 30 creates take about 4 s on this engine
        while time.monotonic() < watched_until:
            assert labelled("docker", run_id) == []
    finally:
        proc.kill()
        remove_labelled("docker", run_id)


@pytest.mark.docker
def test_a_kept_container_is_never_reaped(tmp_path):
    kept = tmp_path / "kept.yaml"
    kept.write_text(
        "steps:\n"
        f"  - {{id: k, container: {{image: {TEST_IMAGE}, network: none, keep_container: true}},"
        " run: 'true'}\n"
    )
    other = tmp_path / "other.yaml"
    other.write_text(
        f"steps:\n  - {{id: o, container: {{image: {TEST_IMAGE}, network: none}}, run: 'true'}}\n"
    )
    env = env_for(tmp_path)
    keep_id = f"keep-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            [*DAGBOX, "run", str(kept), "--run-id", keep_id],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        (container,) = labelled("docker", keep_id)
        # Its dagbox is gone now: a later run, and gc, would reap an orphan. Not this one.
        later = subprocess.run(
            [*DAGBOX, "run", str(other)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert later.returncode == 0, later.stderr
        assert "left behind" not in later.stdout + later.stderr
        gc = subprocess.run(
            [*DAGBOX, "gc"], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert gc.returncode == 0, gc.stderr
        assert labelled("docker", keep_id) == [container]
    finally:
        remove_labelled("docker", keep_id)


DAEMON = """\
steps:
  - id: starts
    # setsid and a double fork: the daemon leaves the step's process group and session,
    # and its parent exits, so that it is nobody's child.
    run: |
      setsid sh -c 'sleep 300 & echo $! > {tmp}/daemon.pid' < /dev/null > /dev/null 2>&1 &
      env -i setsid sh -c 'sleep 301 & echo $! > {tmp}/bare.pid' < /dev/null > /dev/null 2>&1 &
      i=0; while [ ! -s {tmp}/daemon.pid ] || [ ! -s {tmp}/bare.pid ]; do
        i=$((i + 1)); [ $i -lt 200 ] || exit 1; sleep 0.05; done
  - id: uses
    depends: starts
    # A later step of the same run still finds the service running.
    run: kill -0 "$(cat {tmp}/daemon.pid)" && echo "service is up"
"""


def test_a_detached_daemon_lives_until_its_run_ends_then_stops(tmp_path):
    dag = tmp_path / "daemon.yaml"
    dag.write_text(DAEMON.format(tmp=tmp_path))
    done = subprocess.run(
        [*DAGBOX, "run", str(dag)],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=120,
        check=False,
    )
    pids = [int((tmp_path / name).read_text()) for name in ("daemon.pid", "bare.pid")]
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "uses   | service is up" in done.stdout
        assert [alive(pid) for pid in pids] == [False, False]
        assert "stopped 1 process that steps of run" in done.stderr  # the marked one, at run end
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_each_bench_run_stops_its_own_daemons_as_it_ends(tmp_path):
    """One run at a time: the daemon of the first run is gone before the second starts."""
    dag = tmp_path / "daemon.yaml"
    dag.write_text(
        "steps:\n"
        "  - id: check\n"
        f'    run: for f in {tmp_path}/*.pid; do [ -e "$f" ] || continue;'
        ' ! kill -0 "$(cat "$f")" 2>/dev/null || exit 9; done\n'
        "  - id: starts\n"
        "    depends: check\n"
        f"    run: setsid sh -c 'sleep 300 & echo $! > {tmp_path}/$DAG_RUN_ID.pid'"
        " < /dev/null > /dev/null 2>&1 &"
        f" i=0; while [ ! -s {tmp_path}/$DAG_RUN_ID.pid ] && [ $i -lt 200 ]; do"
        " i=$((i + 1)); sleep 0.05; done\n"
    )
    done = subprocess.run(
        [*DAGBOX, "bench", str(dag), "--repeat", "3", "-c", "1", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=180,
        check=False,
    )
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        results = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
        assert [json.loads(line)["status"] for line in results] == ["succeeded"] * 3
        assert len(pids) == 3 and not any(alive(pid) for pid in pids)
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_dagbox_as_a_library_still_stops_a_runs_marked_daemon(tmp_path):
    """In-process (no subreaper): the daemon goes to init, and is found by its run's marks."""
    dag = tmp_path / "lib.yaml"
    dag.write_text(
        "steps:\n"
        f"  - run: setsid sh -c 'sleep 300 & echo $! > {tmp_path}/lib.pid'"
        " < /dev/null > /dev/null 2>&1 &"
        f" i=0; while [ ! -s {tmp_path}/lib.pid ] && [ $i -lt 200 ]; do"
        " i=$((i + 1)); sleep 0.05; done\n"
    )
    ran = run_text(tmp_path, dag.read_text())
    pid = int((tmp_path / "lib.pid").read_text())
    try:
        assert ran.result.status == "succeeded"
        assert not alive(pid)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_adopted_processes_never_take_a_steps_exit_status(tmp_path):
    """300 steps, each leaving a background child that outlives it by a moment, so that
    dagbox adopts and collects a zombie for nearly every step (about 5 s of them) while
    other steps are being started: every step still reports its own exit code (a
    stolen one reads 255)."""
    dag = tmp_path / "zombies.yaml"
    dag.write_text(
        "steps:\n"
        + "".join(
            f"  - {{id: s{i}, run: 'sleep 0.2 > /dev/null 2>&1 & sleep 0.1; exit 7',"
            " continue_on: {exit_code: [7]}}\n"
            for i in range(300)
        )
        + "  - {id: again, run: 'sleep 0.1; exit 7', continue_on: {exit_code: [7]}}\n"
    )
    done = subprocess.run(
        [*DAGBOX, "run", str(dag), "-o", "quiet", "-j", "20"],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=300,
        check=False,
    )
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    codes = {step["exit_code"] for step in record["steps"]}
    assert codes == {7}, (codes, done.stderr[-2000:])
