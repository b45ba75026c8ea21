"""A SIGKILLed runner and its host processes, for real.

Promise (docs/reliability.md): the host processes a killed dagbox left (the step's shell, its
background children, even one that moved to a process group of its own) are stopped by the
next dagbox run, which says so; processes of a live dagbox are never touched; `dagbox
status` says the dead run's dagbox process is gone, and `dagbox logs -f` does not wait for
it forever. (A daemon that a run which *ended* left is stopped by that run as it ends:
test_leftovers.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from tests.helpers import DAGBOX, alive, wait_for


def busy_dag(folder: Path) -> Path:
    folder.mkdir()
    dag = folder / "busy.yaml"
    dag.write_text(
        "steps:\n  - id: busy\n    run: |\n"
        f"      echo $$ > {folder}/shell.pid\n"
        f"      sleep 300 & echo $! > {folder}/child.pid\n"
        f"      setsid sleep 301 & echo $! > {folder}/own-group.pid\n"
        "      wait\n"
    )
    return dag


def dagbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DAGBOX, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def pids(folder: Path) -> list[int]:
    files = [folder / f"{name}.pid" for name in ("shell", "child", "own-group")]
    return [int(f.read_text()) for f in files if f.exists() and f.read_text().strip()]


def test_a_killed_runners_processes_are_stopped_by_the_next_run_but_live_ones_are_not(tmp_path):
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    dead, live = tmp_path / "dead", tmp_path / "live"
    runners = {
        name: subprocess.Popen(
            [*DAGBOX, "run", str(dag), "--run-id", name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, dag in (("dead", busy_dag(dead)), ("live", busy_dag(live)))
    }
    record = tmp_path / "home" / "runs" / "busy" / "dead" / "run.json"
    daemon_pid = tmp_path / "daemon.pid"
    try:
        wait_for(lambda: len(pids(dead)) == 3 and len(pids(live)) == 3, 30, "the steps")
        wait_for(
            lambda: record.exists() and json.loads(record.read_text())["owner"], 30, "run.json"
        )
        # A daemon that a run which *ended* left is stopped as that run ends, not later.
        ended = tmp_path / "ended.yaml"
        ended.write_text(
            f"steps:\n  - {{id: d, run: 'setsid sleep 303 >/dev/null 2>&1 & echo $! > {daemon_pid}'}}\n"
        )
        assert dagbox(env, "run", str(ended), "--run-id", "ended").returncode == 0
        daemon = int(daemon_pid.read_text())
        assert not alive(daemon)

        runners["dead"].send_signal(signal.SIGKILL)
        runners["dead"].wait(timeout=30)
        assert all(alive(pid) for pid in pids(dead)), "the fault is real: they outlive the runner"

        status = dagbox(env, "status", "dead")
        assert "running (its dagbox process is gone)" in status.stdout
        follow = dagbox(env, "logs", "-f", "dead")  # ends: does not wait for a dead runner
        assert follow.returncode == 0

        quick = tmp_path / "quick.yaml"
        quick.write_text("steps:\n  - {id: q, run: 'true'}\n")
        reaper = dagbox(env, "run", str(quick))
        assert reaper.returncode == 0, reaper.stderr
        assert "dagbox: stopped 3 processes left by run dead, whose dagbox process is gone" in (
            reaper.stdout
        )
        wait_for(lambda: not any(alive(pid) for pid in pids(dead)), 10, "the orphans to end")
        assert all(alive(pid) for pid in pids(live)), "a live runner's processes were touched"
        assert "left by run ended" not in reaper.stdout
    finally:
        for runner in runners.values():
            runner.kill()
            runner.wait(timeout=30)
        daemons = [int(daemon_pid.read_text())] if daemon_pid.exists() else []
        for pid in pids(dead) + pids(live) + daemons:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
