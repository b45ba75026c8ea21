"""Secrets: the values of API keys and tokens never reach a file, a terminal or a process listing.

A real ``dagbox run`` with ANTHROPIC_API_KEY, OPENAI_API_KEY and DEPLOY_TOKEN in its
environment; steps on the host, in a container and through an agent CLI use them. While
every step is held at a gate, the test reads ``/proc/*/cmdline`` of every process on the
host (container processes included); then it opens the gate and searches everything the
run wrote.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE
from tests.helpers import wait_for

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
    working_dir: /dev/null/${{DEPLOY_TOKEN}}  # cannot be made: the error names the path
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


# --- every form, every helper shell, every error, every output -----------------------------

#: Values with a quote, a backslash, a single quote and non-ASCII: their JSON-escaped and
#: shell-quoted forms differ from the raw value, and each form must be hidden.
HOSTILE = {
    "API_KEY": 'pa"ss\\wörd-1234',
    "DB_PASSWORD": "it's-s3cret",
    "DEPLOY_TOKEN": "ghp_plainDeployToken77",
    "GH_TOKEN": "ghp_outputTokenValue42",  # only ever printed by a step, as its output
}


def forms(value: str) -> set[bytes]:
    """The raw value, JSON-escaped (ASCII or not, and as dash's echo prints that) and
    shell-quoted."""
    as_json = [json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    return {
        f.encode()
        for f in (
            value,
            *as_json,
            *(form.replace("\\\\", "\\") for form in as_json),
            shlex.quote(value),
            value.replace("'", "'\"'\"'"),
        )
    }


def hostile_leaks(data: bytes) -> list[str]:
    return [
        f"{name} as {form!r}"
        for name, value in HOSTILE.items()
        for form in forms(value)
        if form in data
    ]


HOSTILE_HELD = ("params_json", "backtick", "pre_test", "pre_expected", "tok")

HOSTILE_DAG = """
params:
  - API_KEY: unset
  - DB_PASSWORD: unset
  - name: FROM_EVAL  # a shell's output that holds a secret's value
    eval: '`printf "%s" "$API_KEY"`'
env:
  - GATE: {gate}
steps:
  - id: params_json
    run: echo "$DAG_PARAMS_JSON"; sh $GATE/gate.sh params_json; echo "$API_KEY"
  - id: backtick
    preconditions:
      - eval: "`sh $GATE/gate.sh backtick; echo ${{env.DEPLOY_TOKEN}} $API_KEY`"
        expected: "re:.+"
    run: echo "got $FROM_EVAL"
  - id: pre_test
    # ${{env.X}} is pasted into the command's text: that text is a secret now.
    preconditions: "sh $GATE/gate.sh pre_test && test -n '${{env.DEPLOY_TOKEN}}'"
    run: echo ran
  - id: pre_expected
    preconditions:
      - eval: "`sh $GATE/gate.sh pre_expected`${{env.DEPLOY_TOKEN}}$DB_PASSWORD"
        expected: "re:.+"
    run: echo ran
  - id: tok
    run: sh $GATE/gate.sh tok; cat $GATE/token  # as `gh auth token` would print it
    output: GH_TOKEN
  - id: uses_token
    depends: tok
    run: echo "token is $GH_TOKEN"
  - id: fails
    run: echo "$DB_PASSWORD" >&2; echo "pw=$DB_PASSWORD"; exit 3
"""


def test_hostile_secret_values_in_every_form_reach_no_file_terminal_or_argv(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "gate.sh").write_text(GATE)
    dag = tmp_path / "hostile.yaml"
    (gate / "token").write_text(HOSTILE["GH_TOKEN"] + "\n")
    dag.write_text(HOSTILE_DAG.format(gate=gate))
    home = tmp_path / "home"
    env = {
        **os.environ,
        "DAGBOX_HOME": str(home),
        "DEPLOY_TOKEN": HOSTILE["DEPLOY_TOKEN"],
        # POSIX sh, whatever $SHELL says: its echo rewrites backslashes (a form to hide too).
        "DAGU_DEFAULT_SHELL": "sh",
    }
    args = ["-p", f"API_KEY={HOSTILE['API_KEY']}", "-p", f"DB_PASSWORD={HOSTILE['DB_PASSWORD']}"]

    for extra in ([], ["--json"]):
        planned = subprocess.run(
            [sys.executable, "-m", "dagbox", "dry-run", str(dag), *args, *extra],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert planned.returncode == 0, planned.stderr
        assert hostile_leaks(planned.stdout + planned.stderr) == [], planned.stdout.decode()

    # The params come from a file, so that they are not on dagbox's own command line.
    params = tmp_path / "params.env"
    params.write_text("".join(f"{k}={HOSTILE[k]}\n" for k in ("API_KEY", "DB_PASSWORD")))
    run = subprocess.Popen(
        [sys.executable, "-m", "dagbox", "run", str(dag), "--params-file", str(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_for(
            lambda: all((gate / f"ready.{name}").exists() for name in HOSTILE_HELD),
            timeout=90,
            what="every step at the gate",
        )
        on_argv = [line for line in command_lines() if hostile_leaks(line)]
    finally:
        (gate / "go").touch()
        out, err = run.communicate(timeout=120)
    assert on_argv == []
    assert run.returncode == 1, err.decode()  # "fails" fails
    assert hostile_leaks(out + err) == [], (out + err).decode()
    # Each value reached its step (the run worked), and was shown masked.
    shown = {tuple(line.split(None, 2)) for line in out.decode().splitlines()}
    for step, mark, line in [
        ("params_json", "|", '{"API_KEY":"***","DB_PASSWORD":"***","FROM_EVAL":"***"}'),
        ("params_json", "|", "***"),
        ("backtick", "|", "got ***"),
        ("pre_test", "|", "ran"),
        ("pre_expected", "|", "ran"),
        ("tok", "|", "***"),
        ("uses_token", "|", "token is ***"),
        ("fails", "!", "***"),
        ("fails", "|", "pw=***"),
    ]:
        assert (step, mark, line) in shown, (step, line, out.decode())

    written = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written)
    for path in written:
        assert hostile_leaks(path.read_bytes()) == [], path
    record = json.loads(next(home.glob("runs/*/*/run.json")).read_text())
    assert record["params"] == {"API_KEY": "***", "DB_PASSWORD": "***", "FROM_EVAL": "***"}
    assert next(s for s in record["steps"] if s["name"] == "tok")["outputs"] == {"GH_TOKEN": "***"}


@pytest.mark.parametrize(
    "where",
    [
        "  - name: X\n    eval: \"`echo $API_KEY >&2; exit 3`\"\nsteps:\n  - run: 'true'\n",
        'preconditions:\n  - eval: "`echo $API_KEY >&2; kill $$`"\n    expected: x\n'
        "steps:\n  - run: 'true'\n",
        'steps:\n  - preconditions:\n      - eval: "`echo ${params.API_KEY} >&2; false`"\n'
        "        expected: x\n    run: 'true'\n",
    ],
    ids=["params-eval", "dag-precondition", "step-precondition"],
)
def test_errors_raised_anywhere_are_redacted(tmp_path, where):
    dag = tmp_path / "fails.yaml"
    dag.write_text("params:\n  - API_KEY: unset\n" + where)
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "dagbox", "run", str(dag), "-p", f"API_KEY={HOSTILE['API_KEY']}"],
        capture_output=True,
        env={**os.environ, "DAGBOX_HOME": str(home)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert hostile_leaks(done.stdout + done.stderr) == []
    for path in (p for p in home.rglob("*") if p.is_file()):
        assert hostile_leaks(path.read_bytes()) == [], path
    record = json.loads(next(home.glob("runs/*/*/run.json")).read_text())
    errors = [record["error"] or "", *(s["error"] or "" for s in record["steps"])]
    assert any("***" in error for error in errors), errors  # the error said it, masked


def test_argv_forms_naming_a_secret_are_refused_with_a_located_error(tmp_path):
    dag = tmp_path / "argv.yaml"
    dag.write_text(
        "steps:\n"
        "  - id: listed\n"
        '    exec: {command: curl, args: [-H, "Authorization: ${GH_TOKEN}"]}\n'
        "  - id: boxed\n"
        "    container:\n"
        "      image: busybox\n"
        '      command: [sh, -c, "echo $1", x, "${API_KEY}"]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "dagbox", "validate", str(dag)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert (
        f"{dag}:3:38: steps[0].exec.args[1]: ${{GH_TOKEN}} would put a secret on a command line"
        in (done.stderr)
    )
    assert f"{dag}:7:39: steps[1].container.command[4]: ${{API_KEY}}" in done.stderr


def test_bench_results_mask_secret_params(tmp_path):
    dag = tmp_path / "bench.yaml"
    dag.write_text('params:\n  - API_KEY: unset\nsteps:\n  - run: test -n "$API_KEY"\n')
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t1", "API_KEY": HOSTILE["API_KEY"]}) + "\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagbox",
            "bench",
            str(dag),
            "--tasks",
            str(tasks),
            "--out",
            str(out),
            "-o",
            "quiet",
        ],
        capture_output=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = (out / "results.jsonl").read_text().splitlines()
    assert json.loads(line)["params"] == {"id": "t1", "API_KEY": "***"}
    assert hostile_leaks(done.stdout + done.stderr) == []
    for path in (p for p in tmp_path.rglob("*") if p.is_file() and p != tasks):
        assert hostile_leaks(path.read_bytes()) == [], path


def test_a_secret_named_output_never_shows_what_the_step_printed(tmp_path):
    """Its stdout is the secret, whatever its size or bytes: one mask stands for it. Its
    stderr is held until the value is known, then shown redacted."""
    dag = tmp_path / "outputs.yaml"
    dag.write_text(
        "max_output_size: 64\n"
        "steps:\n"
        "  - id: token\n"
        "    output: GH_TOKEN\n"
        f"    run: cat {tmp_path}/token; cat {tmp_path}/token >&2\n"
        "  - id: binary\n"
        "    output: RAW_KEY\n"
        f"    run: cat {tmp_path}/binary\n"
        "  - id: overflowing\n"
        "    output: BIG_SECRET\n"
        f"    run: cat {tmp_path}/big\n"
    )
    (tmp_path / "token").write_text(HOSTILE["GH_TOKEN"] + "\n")
    binary = bytes(range(256))[::7] * 2  # not UTF-8
    (tmp_path / "binary").write_bytes(binary)
    big = b"bigsecret-" * 100  # past max_output_size: no output, and still no leak
    (tmp_path / "big").write_bytes(big)
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "dagbox", "run", str(dag)],
        capture_output=True,
        env={**os.environ, "DAGBOX_HOME": str(home)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1  # "overflowing" fails: its output is too large
    said = done.stdout + done.stderr
    for leaked in (HOSTILE["GH_TOKEN"].encode(), binary[:16], b"bigsecret-"):
        assert leaked not in said
        for path in (p for p in home.rglob("*") if p.is_file()):
            assert leaked not in path.read_bytes(), path
    shown = {tuple(line.split(None, 2)) for line in done.stdout.decode().splitlines()}
    assert ("token", "|", "***") in shown and ("token", "!", "***") in shown


def test_a_literal_word_equal_to_a_secret_is_no_leak(tmp_path, docker_engine):
    """``POSTGRES_PASSWORD: postgres`` and a command that says ``postgres``: the word was
    written in the file, not brought in by a reference, so the step runs (its output is
    masked all the same)."""
    dag = tmp_path / "pg.yaml"
    box = f"{{image: {TEST_IMAGE}, network: none, env: [POSTGRES_PASSWORD: postgres]}}"
    dag.write_text(
        "steps:\n"
        f"  - {{id: script, container: {box}, run: 'echo connect -U postgres'}}\n"
        f"  - id: argv\n    container: {box[:-1]}, command: [echo, postgres]}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "dagbox", "run", str(dag)],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "script | connect -U ***" in done.stdout and "argv   | ***" in done.stdout
