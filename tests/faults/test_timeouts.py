"""Timeouts that fire: a step that ignores SIGTERM is killed once the grace period is over.

The step traps TERM and its child inherits the ignored signal, so only SIGKILL ends them.
The bounds prove both halves of the promise: the grace period is honoured (not killed at
once) and then enforced (not left running).
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE
from tests.helpers import alive, run_text

TIMEOUT, GRACE = 1, 2
STUBBORN = "trap '' TERM; sleep 30 & echo $! > child; echo $$ > pid; wait"

PLACES = {
    "host": "",
    "step-container": f"container: {{image: {TEST_IMAGE}, network: none}}",
    "shared-container": "",
}


def seconds(step: dict) -> float:
    started, finished = (datetime.fromisoformat(step[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


@pytest.mark.parametrize("place", PLACES)
def test_a_step_ignoring_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, place: str, request: pytest.FixtureRequest
) -> None:
    if place != "host":
        request.getfixturevalue("docker_engine")
    shared = place == "shared-container"
    ran = run_text(
        tmp_path,
        f"""
        max_clean_up_time_sec: {GRACE}
        {f"container: {{image: {TEST_IMAGE}, network: none}}" if shared else ""}
        handler_on:
          exit: {{run: ps -o args}}
        steps:
          - id: stubborn
            timeout_sec: {TIMEOUT}
            {PLACES[place]}
            run: {STUBBORN}
        """,
    )
    step = ran.record["steps"][0]
    assert (step["status"], step["exit_code"]) == ("failed", 124)
    took = seconds(step)
    assert TIMEOUT + GRACE - 0.3 <= took < TIMEOUT + GRACE + 8, took
    if place == "host":
        for name in ("pid", "child"):
            assert not alive(int((tmp_path / name).read_text())), name
    else:
        if shared:  # the exit handler ran in the same container, after the kill
            ps = Path(ran.record["handlers"]["exit"]["stdout_file"]).read_text()
            assert "sleep 30" not in ps, ps
        assert labelled("r1") == []


def labelled(run_id: str) -> list[str]:
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dagbox.run_id={run_id}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return found.stdout.split()
