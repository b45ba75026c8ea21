"""The dagbox command as users run it: a real process, real files, real exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_DAGS, REPO
from tests.helpers import DAGBOX


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    return subprocess.run(
        [*DAGBOX, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )


def test_version():
    from dagbox import __version__

    out = run("--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"dagbox {__version__}")


def test_validate_ok_lines_for_every_example():
    files = [str(p.relative_to(REPO)) for p in EXAMPLE_DAGS]
    out = run("validate", *files)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{f}: ok" for f in files]


def test_validate_reports_every_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "steps:\n  - id: a\n    run: echo\n    dependz: a\n  - action: harness.run\n    with: {provider: cluade, prompt: x}\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text("steps: [{run: echo}]\n")
    out = run("validate", str(good), str(bad))
    assert out.returncode == 2
    assert out.stdout == f"{good}: ok\n"
    assert out.stderr.splitlines() == [
        f'{bad}:4:5: steps[0].dependz: unknown key "dependz" (did you mean "depends"?)',
        f'{bad}:6:22: steps[1].with.provider: unknown provider "cluade" (did you mean "claude"?)',
    ]


def test_validate_warnings_go_to_stderr_and_keep_exit_0(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("schedule: '* * * * *'\nsteps: [{run: echo}]\n")
    out = run("validate", str(f))
    assert out.returncode == 0
    assert "warning: schedule" in out.stderr


def test_validate_missing_file(tmp_path):
    out = run("validate", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2
    assert "cannot read file" in out.stderr


def test_validate_without_files_is_a_usage_error():
    assert run("validate").returncode == 2


def test_validate_does_not_import_the_docker_client(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("steps: [{run: echo}]\n")
    code = (
        f"import sys\nfrom dagbox.cli import main\nsys.argv=['dagbox','validate',{str(f)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('aiodocker','aiohttp','anyio','structlog')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr


def test_schema_is_json_and_describes_the_format():
    out = run("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    step = schema["$defs"]["Step"]["properties"]
    assert {"run", "depends", "container", "with", "retry_policy", "retryPolicy"} <= set(step)
    assert step["retryPolicy"]["deprecated"] is True
    assert "anyOf" in schema["$defs"]["Dag"]["properties"]["env"]
    subprocess.run(
        [sys.executable, "-m", "json.tool"],
        input=out.stdout,
        text=True,
        check=True,
        capture_output=True,
    )


def test_schema_accepts_the_examples():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(run("schema").stdout)
    for file in EXAMPLE_DAGS:
        for document in yaml.safe_load_all(file.read_text()):  # a DAG and its sub-DAGs
            jsonschema.validate(document, schema)


def test_dry_run_shows_order_runtime_and_argv():
    out = run("dry-run", "examples/agents.yaml", "-p", "TASK=write tests")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "DAG agents (graph; max_active_steps unlimited)"
    assert "  1. plan       [host]" in lines
    assert "  2. implement  [host]  after plan" in lines
    assert (
        "         try 1 fake: ./bin/fake-agent --prompt 'Plan how to write tests' --model small"
        in lines
    )
    assert (
        "         fallback 2 fake: ./bin/fake-agent --prompt 'Do it: $PLAN' --model large" in lines
    )


def test_dry_run_params_forms_and_json():
    for args in (["--params", "TASK=x"], ["-p", "TASK=x"], ["--", "TASK=x"]):
        out = run("dry-run", "examples/agents.yaml", "--json", *args)
        assert out.returncode == 0, out.stderr
        plan = json.loads(out.stdout)
        assert plan["params"] == {"TASK": "x"}
        assert plan["steps"][0]["tries"][0]["argv"][2] == "Plan how to x"


def test_dry_run_of_an_invalid_file_exits_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("steps: [{run: echo, bogus: 1}]\n")
    out = run("dry-run", str(f))
    assert out.returncode == 2
    assert 'unknown key "bogus"' in out.stderr


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("dagbox")
    if not exe.exists():
        pytest.skip("package not installed with its console script")
    out = subprocess.run(
        [str(exe), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0
    assert "validate" in out.stdout


def test_dry_run_hides_secret_values(tmp_path):
    dag = tmp_path / "s.yaml"
    dag.write_text(
        "params: [API_KEY=pk-1234567890]\nenv: [GH_TOKEN=ghp-abcdefgh]\nsteps:\n"
        "  - action: harness.run\n    with: {provider: claude, prompt: 'use ${params.API_KEY}', token: ghp-abcdefgh}\n"
    )
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-zzzzzzzz"}
    for extra in ([], ["--json"]):
        out = subprocess.run(
            [*DAGBOX, "dry-run", str(dag), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "pk-1234567890" not in out.stdout and "ghp-abcdefgh" not in out.stdout
        assert "***" in out.stdout
