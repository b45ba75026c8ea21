"""`action: harness.run` end to end, with the fake agent, on the host and in containers.

The fake agent (tests/fixtures/fake-agent) answers as the CLI it is called as, so
the built-in claude and codex adapters are exercised for real. In containers it
is baked into the offline test image as fake-agent, claude and codex.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_DAGS, FAKE_AGENT, REPO, TEST_IMAGE
from tests.helpers import run_text

# One custom provider per prompt mode and position; "generic answered: P" plus the flags.
MODES = {
    "arg_before": "{binary: BIN}",
    "arg_after": "{binary: BIN, prompt_position: after_flags}",
    "flag_before": "{binary: BIN, prompt_mode: flag, prompt_flag: --prompt}",
    "flag_after": "{binary: BIN, prompt_mode: flag, prompt_flag: --message, prompt_position: after_flags}",
    "stdin": "{binary: BIN, prompt_mode: stdin}",
}
# Reads stdin and says what the prompt was: `sh -c '...' PROMPT`.
ECHO_STDIN = "{binary: sh, prefix_args: ['-c', 'printf \"prompt=%s stdin=\" \"$0\"; cat']}"


def harnesses(binary: str) -> str:
    lines = [f"  {name}: {spec.replace('BIN', binary)}" for name, spec in MODES.items()]
    return "harnesses:\n" + "\n".join(lines) + f"\n  echo_stdin: {ECHO_STDIN}\n"


def mode_steps(container: str = "") -> str:
    out = []
    for name in MODES:
        out.append(
            f"  - id: {name}\n    action: harness.run\n{container}"
            f"    with: {{provider: {name}, prompt: 'hello {name}', model: m1}}\n"
        )
    out.append(
        f"  - id: piped\n    action: harness.run\n{container}"
        "    with: {provider: echo_stdin, prompt: the-prompt, stdin: '  extra context  '}\n"
    )
    return "".join(out)


def check_modes(ran) -> None:
    assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
    for name in MODES:
        assert ran.stdout(name) == f"generic answered: hello {name}\nflags: --model m1\n", name
    assert ran.stdout("piped") == "prompt=the-prompt stdin=extra context"


def journal(ran, step: str, attempt: int = 1) -> list[dict]:
    path = next(ran.home.glob(f"runs/*/*/attempts/*-{step}/{attempt}.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- host ----------------------------------------------------------------------------------


def test_prompt_modes_and_stdin_on_the_host(tmp_path):
    ran = run_text(tmp_path, harnesses(str(FAKE_AGENT)) + "steps:\n" + mode_steps())
    check_modes(ran)


def test_builtin_claude_and_codex_end_to_end(tmp_path, agents_on_path):
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: claude
            action: harness.run
            with: {provider: claude, prompt: 'fix it', model: sonnet, max_turns: 3}
          - id: codex
            action: harness.run
            with: {provider: codex, prompt: '- fix it', sandbox: workspace-write}
        """,
    )
    assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
    assert ran.stdout("claude") == "claude answered: fix it\nflags: --max-turns 3 --model sonnet\n"
    assert (
        ran.stdout("codex")
        == "codex answered: - fix it\nflags: --sandbox workspace-write --skip-git-repo-check\n"
    )


def test_fallback_order_and_stdout_selection(tmp_path, agents_on_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_FAIL_AS", "claude")
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: agent
            action: harness.run
            output: ANSWER
            with:
              provider: claude
              prompt: do it
              fallback: [{provider: codex}]
          - id: after
            depends: agent
            run: 'echo "got $ANSWER"'
        """,
    )
    step = ran.step("agent")
    assert step.status == "succeeded"
    assert step.outputs == {"ANSWER": "codex answered: do it\nflags: --skip-git-repo-check"}
    assert (
        Path(step.stdout_file).name == "1-agent.1.2.stdout"
    )  # the successful try's stdout is the step's
    first_try = Path(step.stdout_file).with_name("1-agent.1.1.stdout").read_text()
    assert first_try == "claude answered: do it\n"  # kept, in that try's own file
    stderr = Path(step.stdout_file).with_name("1-agent.1.1.stderr").read_text()
    assert (
        "harness: attempt 1/2 with claude failed (exit 1); trying fallback 2/2 with codex" in stderr
    )
    events = journal(ran, "agent")
    assert [e["event"] for e in events] == [
        "attempt.started",
        "try.started",
        "try.phase",
        "try.finished",
        "try.started",
        "try.phase",
        "try.finished",
        "attempt.finished",
    ]
    tries = [e for e in events if e["event"] == "try.finished"]
    assert [(t["try"], t["provider"], t["outcome"], t["failure_class"]) for t in tries] == [
        (1, "claude", "failed", "exit_nonzero"),
        (2, "codex", "succeeded", "ok"),
    ]
    assert events[0]["providers"] == ["claude", "codex"]
    assert events[-1]["outcome"] == "succeeded" and events[-1]["tries"] == 2


def test_all_tries_fail(tmp_path, agents_on_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_EXIT", "5")
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: agent
            action: harness.run
            with: {provider: claude, prompt: p, fallback: [{provider: codex}]}
        """,
    )
    step = ran.step("agent")
    assert (step.status, step.exit_code) == ("failed", 5)
    assert "recent stdout: codex answered: p" in step.error
    assert journal(ran, "agent")[-1] == {
        **journal(ran, "agent")[-1],
        "outcome": "failed",
        "tries": 2,
        "exit_code": 5,
    }


def test_timeout_stops_the_chain_with_124(tmp_path, agents_on_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_DELAY", "30")
    marker = tmp_path / "fallback-ran"
    ran = run_text(
        tmp_path,
        f"""
        harnesses:
          marker: {{binary: touch, prefix_args: ['{marker}']}}
        steps:
          - id: agent
            action: harness.run
            timeout_sec: 1
            retry_policy: {{limit: 2}}
            with: {{provider: claude, prompt: slow, fallback: [{{provider: marker}}]}}
        """,
    )
    step = ran.step("agent")
    assert (step.status, step.exit_code, step.attempts) == ("failed", 124, 1)
    assert not marker.exists()
    events = journal(ran, "agent")
    assert events[-2]["event"] == "try.finished" and events[-2]["outcome"] == "timeout"
    assert events[-1]["event"] == "attempt.finished" and events[-1]["failure_class"] == "timeout"


def test_templated_provider_and_retries(tmp_path, agents_on_path):
    ran = run_text(
        tmp_path,
        f"""
        params: [AGENT=codex]
        harnesses:
          flaky: {{binary: sh, prefix_args: ['-c', 'n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/n; [ $n -ge 1 ]']}}
        steps:
          - id: templated
            action: harness.run
            with: {{provider: '${{params.AGENT}}', prompt: hi}}
          - id: retried
            action: harness.run
            retry_policy: {{limit: 2}}
            with: {{provider: flaky, prompt: x}}
        """,
    )
    assert ran.stdout("templated").startswith("codex answered: hi")
    assert ran.step("retried").attempts == 2
    assert len(list(ran.home.glob("runs/*/*/attempts/*-retried/*.jsonl"))) == 2


def test_journal_of_a_success_has_every_field(tmp_path, agents_on_path):
    ran = run_text(
        tmp_path,
        "steps:\n  - {id: a, action: harness.run, with: {provider: claude, prompt: secret-free prompt}}\n",
    )
    events = journal(ran, "a")
    for event in events:
        assert {"ts", "run_id", "step", "attempt", "event"} <= set(event)
        assert event["step"] == "a" and event["attempt"] == 1
    started = next(e for e in events if e["event"] == "try.started")
    assert started["runtime"] == "host" and started["binary"] == "claude"
    assert started["argv"][:3] == ["claude", "-p", "--"]
    assert started["argv"][3].startswith("<prompt: 18 chars, sha256 ")
    phase = next(e for e in events if e["event"] == "try.phase")
    assert phase["first_byte_ms"] is not None
    finished = next(e for e in events if e["event"] == "try.finished")
    assert finished["stdout_bytes"] == len("claude answered: secret-free prompt\n")
    assert finished["failure_class"] == "ok" and finished["exit_code"] == 0


def test_no_secret_in_journals_or_logs(tmp_path, agents_on_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak-1234")
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: a
            action: harness.run
            with: {provider: claude, prompt: 'key is $ANTHROPIC_API_KEY', token: '${ANTHROPIC_API_KEY}'}
          - id: b
            action: harness.run
            with: {provider: claude, prompt: 'secret-free prompt'}
            env: {SEEN: '${ANTHROPIC_API_KEY}'}
          - {id: c, run: 'echo "key is $ANTHROPIC_API_KEY"'}
        """,
    )
    # A secret in a prompt would sit on the CLI's argv, readable by every user of the host:
    # that try is refused, not run. The key still reaches programs through their environment.
    assert ran.status("a") == "failed"
    assert "ANTHROPIC_API_KEY would appear on the command line of claude" in ran.step("a").error
    assert ran.status("b") == "succeeded"
    assert ran.stdout("c") == "key is ***\n"
    everything = b"".join(p.read_bytes() for p in ran.home.rglob("*") if p.is_file())
    assert b"sk-ant-do-not-leak-1234" not in everything
    assert journal(ran, "a")[-1]["failure_class"] == "refused"


def test_log_format_json_streams_the_journal_to_stderr(tmp_path, agents_on_path):
    import subprocess
    import sys

    dag = tmp_path / "d.yaml"
    dag.write_text(
        "steps:\n  - {id: a, action: harness.run, with: {provider: claude, prompt: hi}}\n"
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [sys.executable, "-m", "dagbox", "run", str(dag), "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    events = [json.loads(line) for line in out.stderr.splitlines()]
    assert [e["event"] for e in events] == [
        "attempt.started",
        "try.started",
        "try.phase",
        "try.finished",
        "attempt.finished",
    ]


# --- containers ------------------------------------------------------------------------------

docker = pytest.mark.docker


@pytest.fixture
def engine_env(container_engine, monkeypatch):
    for key, value in container_engine.env.items():
        monkeypatch.setenv(key, value)
    return container_engine


@docker
def test_prompt_modes_and_stdin_in_the_shared_container(tmp_path, engine_env):
    ran = run_text(
        tmp_path,
        f"container: {{image: {TEST_IMAGE}}}\n"
        + harnesses("fake-agent")
        + "steps:\n"
        + mode_steps(),
    )
    check_modes(ran)


@docker
def test_prompt_modes_and_stdin_in_step_containers(tmp_path, engine_env):
    container = f"    container: {{image: {TEST_IMAGE}, network: none}}\n"
    ran = run_text(tmp_path, harnesses("fake-agent") + "steps:\n" + mode_steps(container))
    check_modes(ran)


@docker
def test_prompt_modes_and_stdin_in_a_named_container(tmp_path, engine_env):
    name = f"dagbox-test-{uuid.uuid4().hex[:8]}"
    engine_env(
        "run",
        "-d",
        "--init",
        "--name",
        name,
        TEST_IMAGE,
        "sh",
        "-c",
        "while :; do sleep 3600; done",
    )
    try:
        ran = run_text(
            tmp_path, harnesses("fake-agent") + "steps:\n" + mode_steps(f"    container: {name}\n")
        )
        check_modes(ran)
    finally:
        engine_env("rm", "-f", name, check=False)


@docker
def test_builtins_fallback_and_fresh_container_per_try(tmp_path, engine_env):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: agent
            action: harness.run
            container: {{image: {TEST_IMAGE}, env: [FAKE_AGENT_FAIL_AS=claude]}}
            with: {{provider: claude, prompt: boxed, fallback: [{{provider: codex}}]}}
        """,
    )
    step = ran.step("agent")
    assert step.status == "succeeded", step.error
    assert (
        Path(step.stdout_file).read_text()
        == "codex answered: boxed\nflags: --skip-git-repo-check\n"
    )
    events = journal(ran, "agent")
    phases = [e for e in events if e["event"] == "try.phase"]
    assert len(phases) == 2
    assert phases[0]["container_id"] != phases[1]["container_id"]  # a fresh container per try
    for phase in phases:
        assert phase["image_ready_ms"] is not None and phase["container_create_ms"] is not None
        assert phase["container_start_ms"] is not None and phase["first_byte_ms"] is not None
    started = [e for e in events if e["event"] == "try.started"]
    assert {(e["runtime"], e["image"]) for e in started} == {("step", TEST_IMAGE)}


@docker
def test_retries_and_timeout_in_the_shared_container(tmp_path, engine_env):
    ran = run_text(
        tmp_path,
        f"""
        container: {{image: {TEST_IMAGE}}}
        harnesses:
          flaky: {{binary: sh, prefix_args: ['-c', 'n=$(cat /tmp/n 2>/dev/null || echo 0); echo $((n+1)) > /tmp/n; [ $n -ge 2 ]']}}
        steps:
          - id: retried
            action: harness.run
            retry_policy: {{limit: 3}}
            with: {{provider: flaky, prompt: x}}
          - id: slow
            action: harness.run
            timeout_sec: 1
            env: [FAKE_AGENT_DELAY=30]
            with: {{provider: claude, prompt: slow}}
        """,
    )
    assert (ran.status("retried"), ran.step("retried").attempts) == ("succeeded", 3)
    assert (ran.step("slow").exit_code, ran.status("slow")) == (124, "failed")
    started = next(e for e in journal(ran, "slow") if e["event"] == "try.started")
    assert started["runtime"] == "root" and started["container_id"] is None
    phase = next(e for e in journal(ran, "retried") if e["event"] == "try.phase")
    assert phase["container_id"]


def test_every_example_validates():
    from dagbox.spec import load

    assert len(EXAMPLE_DAGS) >= 11
    for file in EXAMPLE_DAGS:
        assert load(file).dag.steps, file


@docker
def test_custom_cli_example_runs_with_the_fake_agent(tmp_path, engine_env):
    import subprocess
    import sys

    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagbox",
            "run",
            "examples/custom-cli-in-docker/dag.yaml",
            "-p",
            f"PROJECT={project}",
            "-p",
            f"IMAGE={TEST_IMAGE}",
            "-p",
            "AGENT_CLI=fake-agent",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "task | generic answered: add a CHANGELOG entry for the last commit" in out.stdout
    assert "task ! run-agent: fake-agent, 3 extra flags" in out.stdout


def test_the_journal_schema_is_documented():
    import msgspec

    from dagbox.engine import events

    doc = (REPO / "docs" / "events.md").read_text()
    for kind in events.JOURNAL_EVENTS:
        tag = kind.__struct_config__.tag
        section = doc.split(f"### `{tag}`", 1)
        assert len(section) == 2, f"docs/events.md has no section for {tag}"
        body = section[1].split("### ", 1)[0]
        for field in msgspec.structs.fields(kind):
            assert f"`{field.encode_name}`" in body, f"{tag}.{field.encode_name} is not documented"


def test_an_agent_step_repeats_until_the_tests_pass(tmp_path):
    """The agent loop: repeat an agent step until a check passes; each repetition is an
    attempt with its own journal."""
    ran = run_text(
        tmp_path,
        """
        harnesses:
          agent: {binary: sh, prefix_args: ['-c', 'echo fix >> work.txt; echo "$0"']}
        steps:
          - id: fix
            action: harness.run
            with: {provider: agent, prompt: make the tests pass}
            repeat_policy:
              repeat: until
              condition: test "$(wc -l < work.txt)" -ge 3
              limit: 5
        """,
    )
    assert ran.status("fix") == "succeeded"
    assert ran.step("fix").attempts == 3
    assert (tmp_path / "work.txt").read_text() == "fix\n" * 3
    for attempt in (1, 2, 3):
        events = [e["event"] for e in journal(ran, "fix", attempt)]
        assert events[0] == "attempt.started" and events[-1] == "attempt.finished", events
