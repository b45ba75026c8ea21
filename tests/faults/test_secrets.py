"""Secrets: the values of API keys and tokens never reach a file, a terminal or a process listing.

A real ``dagbox run`` with ANTHROPIC_API_KEY, OPENAI_API_KEY and DEPLOY_TOKEN in its
environment; steps on the host, in a container and through an agent CLI use them. While
every step is held at a gate, the test reads ``/proc/*/cmdline`` of every process on the
host (container processes included); then it opens the gate and searches everything the
run wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE
from tests.test_run_cli import wait_for

pytestmark = pytest.mark.docker

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-faultsuite-anthropic-7f3a",
    "OPENAI_API_KEY": "sk-proj-faultsuite-openai-91c2",
    "DEPLOY_TOKEN": "ghp_faultsuiteDeployToken5e81",
}
HELD = ("host_inline", "host_multi", "in_container", "agent")

GATE = """\
touch "$GATE/ready.$1"
i=0
while [ ! -e "$GATE/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
"""
AGENT = """\
#!/bin/sh
sh "$GATE/gate.sh" agent
env
"""


def dag_text(gate: Path) -> str:
    return f"""
env:
  - GATE: {gate}
  - OPENAI_API_KEY: ${{OPENAI_API_KEY}}  # containers see dagbox's environment only this way
harnesses:
  gated: {{binary: {gate}/agent.sh}}
steps:
  - id: host_inline
    # ${{env.X}} is expanded by dagbox, so the script text itself holds the secret; the echo
    # comes last so that sh cannot exec the gate in its own place.
    run: sh $GATE/gate.sh host_inline; echo "a=${{ANTHROPIC_API_KEY}} e=${{env.ANTHROPIC_API_KEY}}"
  - id: host_multi
    run: |
      echo "o=${{OPENAI_API_KEY}}"
      sh $GATE/gate.sh host_multi
      echo "t=$DEPLOY_TOKEN"
  - id: in_container
    container:
      image: {TEST_IMAGE}
      network: none
      volumes: ["{gate}:{gate}"]
      env: ["KEY=${{OPENAI_API_KEY}}"]
    run: sh $GATE/gate.sh in_container; echo "o=${{env.OPENAI_API_KEY}} k=$KEY"
  - id: agent
    action: harness.run
    with: {{provider: gated, prompt: hello}}
  - id: fails
    run: echo "t=${{DEPLOY_TOKEN}}"; exit 3
  - id: bad_dir
    working_dir: /nonexistent/${{DEPLOY_TOKEN}}
    run: "true"
"""


def command_lines() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:  # the process ended meanwhile
                continue
    return lines


def leaks(data: bytes) -> list[str]:
    return [name for name, value in SECRETS.items() if value.encode() in data]


def test_secret_values_reach_no_file_terminal_or_argv(tmp_path, docker_engine):
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "gate.sh").write_text(GATE)
    (gate / "agent.sh").write_text(AGENT)
    (gate / "agent.sh").chmod(0o755)
    dag = tmp_path / "secrets.yaml"
    dag.write_text(dag_text(gate))
    home = tmp_path / "home"
    env = {**os.environ, **SECRETS, "DAGBOX_HOME": str(home)}

    planned = subprocess.run(
        [sys.executable, "-m", "dagbox", "dry-run", str(dag)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert planned.returncode == 0, planned.stderr
    assert leaks(planned.stdout + planned.stderr) == []

    run = subprocess.Popen(
        [sys.executable, "-m", "dagbox", "run", str(dag)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_for(
            lambda: all((gate / f"ready.{name}").exists() for name in HELD),
            timeout=90,
            what="every step at the gate",
        )
        on_argv = [line for line in command_lines() if leaks(line)]
    finally:
        (gate / "go").touch()
        out, err = run.communicate(timeout=120)
    assert on_argv == []
    assert run.returncode == 1  # "fails" and "bad_dir" fail, with their errors recorded
    assert leaks(out + err) == [], (out + err).decode(errors="replace")
    for shown in (b"a=*** e=***", b"o=*** k=***", b"t=***", b"ANTHROPIC_API_KEY=***"):
        assert shown in out, shown

    written = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written)
    assert any(p.suffix == ".jsonl" and p.parent.name.endswith("-agent") for p in written)
    for path in written:
        assert leaks(path.read_bytes()) == [], path
