"""Load: 300 host steps and 50 step containers running at the same moment, in one run.

Every step opens a FIFO (the gate) and then marks itself ready; the test holds the
FIFO's write end until all 350 are ready, so all of them are provably running at once;
closing it lets them all finish together. The run happens in this process, so the
test can count its own file descriptors before and after.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from tests.conftest import TEST_IMAGE
from tests.helpers import run_text, wait_for

HOST, AGENTS, CONTAINERS = 250, 50, 50
GATED = '{ touch "$GATE/ready.$1"; cat >/dev/null; } < "$GATE/go"'


def open_descriptors() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def load_dag(gate: Path) -> str:
    agent = gate / "agent.sh"
    agent.write_text(f'#!/bin/sh\n{GATED.replace("$1", "$AGENT_ID")}\necho "agent $AGENT_ID"\n')
    agent.chmod(0o755)
    steps = [f"  - {{id: h{i}, run: 'sh $GATE/gate.sh h{i}; echo h{i}'}}" for i in range(HOST)]
    steps += [
        f"  - {{id: a{i}, action: harness.run, env: [AGENT_ID: a{i}],"
        f" with: {{provider: gated, prompt: 'task {i}'}}}}"
        for i in range(AGENTS)
    ]
    steps += [
        f"  - {{id: c{i}, run: 'sh $GATE/gate.sh c{i}; echo c{i}', container: {{image: {TEST_IMAGE},"
        f" network: none, volumes: ['{gate}:{gate}']}}}}"
        for i in range(CONTAINERS)
    ]
    (gate / "gate.sh").write_text(GATED + "\n")
    return (
        f"env:\n  - GATE: {gate}\nharnesses:\n  gated: {{binary: {agent}}}\nsteps:\n"
        + "\n".join(steps)
        + "\n"
    )


def test_350_steps_at_once_finish_exactly_without_leaks(tmp_path, docker_engine):
    gate = tmp_path / "gate"
    gate.mkdir()
    os.mkfifo(gate / "go")
    text = load_dag(gate)
    names = [f"h{i}" for i in range(HOST)]
    names += [f"a{i}" for i in range(AGENTS)]
    names += [f"c{i}" for i in range(CONTAINERS)]

    before = open_descriptors()
    # Read and write: opening never blocks, and the steps' reads block until it closes.
    held = os.open(gate / "go", os.O_RDWR)
    all_running: list[bool] = []

    def open_the_gate_once_all_run() -> None:
        try:
            wait_for(
                lambda: sum(1 for p in gate.iterdir() if p.name.startswith("ready.")) == len(names),
                timeout=240,
                what=f"all {len(names)} steps running at once",
            )
            all_running.append(True)
        finally:
            os.close(held)

    watcher = threading.Thread(target=open_the_gate_once_all_run, daemon=True)
    watcher.start()
    result = run_text(tmp_path, text)  # in the main thread: it handles signals
    watcher.join(timeout=10)
    after = open_descriptors()
    assert all_running == [True], "the steps were never all running at once"

    assert result.result.status == "succeeded"
    assert {s.name: s.status for s in result.result.steps} == dict.fromkeys(names, "succeeded")
    for name in names:
        expected = f"agent {name}\n" if name.startswith("a") else f"{name}\n"
        assert result.stdout(name) == expected, name
    assert after == before, f"{after - before} file descriptors left open"

    record = result.record
    log = next((tmp_path / "home").glob("runs/*/*/events.jsonl"))
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("step.started") == kinds.count("step.finished") == len(names)
    assert len(record["steps"]) == len(names)
    for i in range(AGENTS):
        journal = next((tmp_path / "home").glob(f"runs/*/*/attempts/*-a{i}/1.jsonl"))
        lines = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
        assert lines == [
            "attempt.started",
            "try.started",
            "try.phase",
            "try.finished",
            "attempt.finished",
        ], (i, lines)
