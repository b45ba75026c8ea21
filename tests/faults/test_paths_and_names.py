"""Paths and names: no name, id or path a user gives can put a record in the wrong place,
share a file with another step, or forge a line on the terminal."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import DAGBOX, wait_for


def dagbox(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DAGBOX, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"},
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    "file, text, where",
    [
        ("dots.yaml", "name: ..\nsteps:\n  - run: echo hi\n", ":1:7: name: a DAG name"),
        ("dot.yaml", "name: .\nsteps:\n  - run: echo hi\n", ":1:7: name: a DAG name"),
        ("...yaml", "steps:\n  - run: echo hi\n", ":1:1: without a name: key, the DAG is named"),
    ],
    ids=["name-dotdot", "name-dot", "file-stem-dotdot"],
)
def test_dag_names_that_would_leave_runs_are_refused(tmp_path, file, text, where):
    work = tmp_path / "work"
    work.mkdir()
    dag = work / file
    dag.write_text(text)
    for command in ("validate", "run"):
        done = dagbox(tmp_path, command, str(dag))
        assert done.returncode == 2
        assert done.stderr.startswith(f"{dag}{where}"), done.stderr
    assert not (tmp_path / "home").exists()
    assert sorted(p.name for p in work.iterdir()) == [file]


def test_every_step_and_handler_has_a_log_of_its_own(tmp_path):
    long = "x" * 130
    dag = tmp_path / "alike.yaml"
    dag.write_text(
        "steps:\n"
        '  - {name: "a/b", run: echo slash}\n'
        '  - {name: "a_b", run: echo underscore}\n'
        f'  - {{name: "{long}1", run: echo long-one}}\n'
        f'  - {{name: "{long}2", run: echo long-two}}\n'
        '  - {name: "onExit", run: echo step-named-onExit}\n'
        "handler_on:\n"
        "  exit: {run: echo the-exit-handler}\n"
    )
    done = dagbox(tmp_path, "run", str(dag))
    assert done.returncode == 0, done.stderr
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    said = [step["stdout_file"] for step in record["steps"]]
    said.append(record["handlers"]["exit"]["stdout_file"])
    assert len(set(said)) == 6
    contents = [Path(path).read_text() for path in said]
    assert contents == [
        "slash\n",
        "underscore\n",
        "long-one\n",
        "long-two\n",
        "step-named-onExit\n",
        "the-exit-handler\n",
    ]


def test_two_runs_with_one_run_id_never_share_a_folder(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    dag = tmp_path / "dup.yaml"
    dag.write_text(
        "steps:\n"
        f"  - run: touch {gate}/ready.$$; "
        f"i=0; while [ ! -e {gate}/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n"
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    procs = [
        subprocess.Popen(
            [*DAGBOX, "run", str(dag), "--run-id", "dup"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        # Either one of them refused at once, or (without the fix) both got to the step.
        wait_for(
            lambda: (
                any(p.poll() is not None for p in procs) or len(list(gate.glob("ready.*"))) == 2
            ),
            timeout=60,
            what="a refusal, or both runs running",
        )
    finally:
        (gate / "go").touch()
        results = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    refused = next(err for p, (_, err) in zip(procs, results, strict=True) if p.returncode == 2)
    assert "a run with id dup already exists" in refused
    events = (tmp_path / "home" / "runs" / "dup" / "dup" / "events.jsonl").read_text()
    assert [json.loads(line)["event"] for line in events.splitlines()].count("run.started") == 1


@pytest.mark.parametrize(
    "command",
    [
        ["run", "{dag}", "--run-id", "abc\n"],
        ["status", "abc\n"],
        ["status", "../../../etc"],
        ["logs", "/etc", "passwd"],
        ["logs", "../hello"],
    ],
    ids=["run-newline", "status-newline", "status-dotdot", "logs-absolute", "logs-dotdot"],
)
def test_run_ids_are_checked_the_same_way_on_every_command(tmp_path, command):
    dag = tmp_path / "hello.yaml"
    dag.write_text("steps:\n  - run: echo hi\n")
    done = dagbox(tmp_path, *(word.format(dag=dag) for word in command))
    assert done.returncode == 2
    assert done.stderr.startswith("dagbox: invalid run id"), done.stderr
    assert "root:" not in done.stdout  # nothing of /etc/passwd


def test_logs_only_prints_files_of_the_run_itself(tmp_path):
    dag = tmp_path / "hello.yaml"
    dag.write_text("steps:\n  - {id: hi, run: echo hi}\n")
    assert dagbox(tmp_path, "run", str(dag), "--run-id", "r1").returncode == 0
    record_file = tmp_path / "home" / "runs" / "hello" / "r1" / "run.json"
    record = json.loads(record_file.read_text())
    secret = tmp_path / "not-a-log"
    secret.write_text("outside the run\n")
    record["steps"][0]["stdout_file"] = str(secret)
    record_file.write_text(json.dumps(record))
    for args in (["r1"], ["r1", "hi"]):
        done = dagbox(tmp_path, "logs", *args)
        assert done.returncode == 0, done.stderr
        assert "outside the run" not in done.stdout


def test_step_names_cannot_forge_lines_or_steer_the_terminal(tmp_path):
    dag = tmp_path / "forge.yaml"
    dag.write_text(
        "steps:\n"
        '  - {name: "fake\\n✔ run X of uni: succeeded", run: "false"}\n'
        '  - {name: "clear\\u001b[2J\\u001b]0;title\\u0007", run: echo hi}\n'
    )
    done = dagbox(tmp_path, "run", str(dag))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert not any(line.startswith("✔ run X") for line in lines), done.stdout
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert any(line.startswith("fake\\n✔ run X of uni: succeeded") for line in lines)
    assert any(line.startswith("clear\\x1b[2J") for line in lines)
    status = dagbox(tmp_path, "status")
    assert "\x1b" not in status.stdout and "fake\\n✔" in status.stdout
