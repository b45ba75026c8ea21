"""Bad input for real: broken bytes in DAG files and in step output, and very large DAGs.

The generated-document half of this promise (the loader and the ``with:``/``harnesses:``
renderer never raise) is tests/test_properties.py; CI runs it with enough examples for
10,000 documents.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE
from tests.helpers import DAGBOX

BROKEN_FILES = {
    "invalid-utf8": (b"steps:\n  - id: a\n    run: echo \xff\n", "3:15: file is not valid UTF-8"),
    "raw-nul": (b"steps:\n  - id: a\n    run: echo \x00\n", "3:15: invalid YAML: control"),
    "escaped-nul": (
        b'steps:\n  - id: a\n    env: {X: "a\\0b"}\n    run: "true"\n',
        "3:14: steps[0].env.X: a NUL byte",
    ),
}


def dagbox(
    tmp_path: Path, *args: str, limit_files: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    def lower_limit() -> None:  # a common distribution default, hard limit included
        if limit_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_files, limit_files))

    return subprocess.run(
        [*DAGBOX, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        timeout=timeout,
        check=False,
        preexec_fn=lower_limit,
    )


@pytest.mark.parametrize("command", ["validate", "dry-run", "run"])
@pytest.mark.parametrize("broken", BROKEN_FILES)
def test_broken_bytes_in_a_dag_file_give_one_located_line(tmp_path, broken, command):
    content, expected = BROKEN_FILES[broken]
    dag = tmp_path / "broken.yaml"
    dag.write_bytes(content)
    done = dagbox(tmp_path, command, str(dag))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert done.stderr.startswith(f"{dag}:{expected}"), done.stderr


@pytest.mark.parametrize("place", ["host", "step-container"])
def test_nul_and_invalid_utf8_in_step_output(tmp_path, place, request):
    container = ""
    if place != "host":
        request.getfixturevalue("docker_engine")
        container = f"container: {{image: {TEST_IMAGE}, network: none}}"
    dag = tmp_path / "bytes.yaml"
    dag.write_text(
        f"""
steps:
  - id: junk
    {container}
    run: printf 'a\\000b\\377c\\n'; printf 'e\\000\\376' >&2
  - id: captured
    {container}
    output: JUNK
    run: printf 'x\\000y'
  - id: after
    depends: captured
    run: echo "never $JUNK"
"""
    )
    done = dagbox(tmp_path, "run", str(dag))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "junk     | ab\ufffdc\n" in done.stdout  # decoded; the NUL is not for a terminal
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert [steps[n]["status"] for n in ("junk", "captured", "after")] == [
        "succeeded",
        "failed",
        "aborted",
    ]
    assert "output holds a NUL byte" in steps["captured"]["error"]
    assert Path(steps["junk"]["stdout_file"]).read_bytes() == b"a\x00b\xffc\n"  # bytes as printed
    assert Path(steps["junk"]["stderr_file"]).read_bytes() == b"e\x00\xfe"
    events = next((tmp_path / "home").glob("runs/*/*/events.jsonl"))
    for line in events.read_text().splitlines():
        json.loads(line)


def test_a_dag_of_5000_steps_under_a_1024_open_file_limit(tmp_path):
    dag = tmp_path / "wide.yaml"
    dag.write_text("steps:\n" + "".join(f"  - {{id: s{i}, run: 'true'}}\n" for i in range(5000)))
    for command in ("validate", "dry-run"):
        assert dagbox(tmp_path, command, str(dag)).returncode == 0
    # max_active_steps 0 (unlimited) still stops short of running out of descriptors.
    done = dagbox(tmp_path, "run", str(dag), "-o", "quiet", limit_files=1024, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    assert [s["status"] for s in record["steps"]] == ["succeeded"] * 5000


def test_a_chain_100_deep_passes_outputs_to_the_end(tmp_path):
    dag = tmp_path / "deep.yaml"
    dag.write_text(
        "type: chain\nsteps:\n"
        + "".join(f"  - {{id: s{i}, output: OUT{i}, run: 'echo {i}'}}\n" for i in range(99))
        + "  - {id: last, run: 'echo $OUT0-$OUT50-$OUT98'}\n"
    )
    assert dagbox(tmp_path, "validate", str(dag)).returncode == 0
    plan = dagbox(tmp_path, "dry-run", str(dag))
    assert plan.returncode == 0 and "last" in plan.stdout
    done = dagbox(tmp_path, "run", str(dag))
    assert done.returncode == 0, done.stderr
    assert "last | 0-50-98\n" in done.stdout


def test_a_bench_of_wide_dags_shares_one_open_file_budget(tmp_path):
    """8 runs at once of a 300-step DAG with no max_active_steps, under `ulimit -n 1024`:
    the runs of one process share the budget instead of each taking all of it."""
    dag = tmp_path / "wide.yaml"
    dag.write_text(
        "steps:\n" + "".join(f"  - {{id: s{i}, run: 'sleep 0.2'}}\n" for i in range(300))
    )
    done = dagbox(
        tmp_path,
        "bench",
        str(dag),
        "--repeat",
        "8",
        "-c",
        "8",
        "--out",
        str(tmp_path / "out"),
        "-o",
        "quiet",
        limit_files=1024,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [
        json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    ]
    assert [line["status"] for line in lines] == ["succeeded"] * 8


# --- bad input around the DAG: one line, the documented exit code, nothing lost -------------

HELLO = "steps:\n  - {id: hello, run: echo hello}\n"


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, asserted to be one line and no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_unreadable_run_records_give_one_line(tmp_path):
    dag = tmp_path / "hello.yaml"
    dag.write_text(HELLO)
    for run_id in ("truncated", "nullname"):
        assert dagbox(tmp_path, "run", str(dag), "--run-id", run_id).returncode == 0
    records = tmp_path / "home" / "runs" / "hello"
    truncated = records / "truncated" / "run.json"
    truncated.write_bytes(truncated.read_bytes()[:40])
    nullname = records / "nullname" / "run.json"
    record = json.loads(nullname.read_text())
    record["steps"][0]["name"] = None
    nullname.write_text(json.dumps(record))
    for run_id in ("truncated", "nullname"):
        for command in (["status", run_id], ["status", run_id, "--json"], ["logs", run_id]):
            done = dagbox(tmp_path, *command)
            assert done.returncode == 2, (command, done.stderr)
            assert "is not a run record dagbox can read" in one_line(done)
    # The other commands skip a broken record instead of failing on it.
    assert dagbox(tmp_path, "history").returncode == 0


@pytest.mark.parametrize(
    "args, said",
    [
        (["--params", 'A="unterminated B=2'], "cannot read params from column 3"),
        (["-p", "weird key=1"], "invalid param name 'weird key'"),
        (["-p", "=1"], "invalid param name ''"),
        (["--params", "a.b=1"], "invalid param name 'a.b'"),
    ],
    ids=["unterminated", "space", "empty", "dot"],
)
def test_params_that_are_not_params_are_refused(tmp_path, args, said):
    dag = tmp_path / "hello.yaml"
    dag.write_text(HELLO)
    for command in ("run", "dry-run"):
        done = dagbox(tmp_path, command, str(dag), *args)
        assert done.returncode == 2, done.stdout
        assert said in one_line(done)
    assert not (tmp_path / "home" / "runs").exists()  # nothing ran


@pytest.mark.parametrize(
    "setting",
    [
        "DAGBOX_ENGINE_CALL_TIMEOUT=abc",
        "DAGBOX_ENGINE_CONNECT_TIMEOUT=-1",
        "DAGBOX_MAX_STARTING=abc",
        "DAGBOX_MAX_STARTING=-3",
        "DAGBOX_MAX_STARTING=0",
        "DOCKER_HOST=garbage://x",
        "DAGU_CONTAINER_RUNTIME=lxc",
        "DAGU_DEFAULT_SHELL=bash '-e",
    ],
)
def test_bad_settings_are_one_line_naming_the_variable_even_for_host_runs(tmp_path, setting):
    dag = tmp_path / "hello.yaml"
    dag.write_text(HELLO)
    name, _, value = setting.partition("=")
    done = subprocess.run(
        [*DAGBOX, "run", str(dag)],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), name: value},
        timeout=60,  # DAGBOX_MAX_STARTING=0 must not hang either
        check=False,
    )
    assert done.returncode == 2
    assert one_line(done).startswith(f"dagbox: {name}=")


def test_bench_out_that_cannot_be_a_folder_is_one_line(tmp_path):
    dag = tmp_path / "hello.yaml"
    dag.write_text(HELLO)
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    (tmp_path / "results-is-a-folder" / "results.jsonl").mkdir(parents=True)
    for out, said in (
        (taken, "cannot use --out"),
        (taken / "below", "cannot use --out"),
        (tmp_path / "results-is-a-folder", "results.jsonl: Is a directory"),
    ):
        done = dagbox(tmp_path, "bench", str(dag), "--out", str(out))
        assert done.returncode == 2
        assert said in one_line(done)
    assert taken.read_text() == "not a folder"


def _python_start_seconds() -> float:
    times = []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.monotonic() - began)
    return sorted(times)[1]


def test_an_early_ctrl_c_exits_130_without_a_traceback(tmp_path):
    """Ctrl-C at any moment of dagbox's first half second (imports, loading the DAG, setting
    up, the engine's first events, which import structlog): exit 130 and one line. Before Python has started to run dagbox's code
    (its own start-up, measured here) the signal is Python's to handle."""
    dag = tmp_path / "hello.yaml"
    dag.write_text("steps:\n  - {id: s, run: sleep 5}\n")
    start = _python_start_seconds()
    for delay in (2 * start, 0.05, 0.08, 0.1, 0.15, 0.25, 0.35, 0.5):
        proc = subprocess.Popen(
            [*DAGBOX, "run", str(dag)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        )
        time.sleep(max(delay, 2 * start))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (delay, err)
        assert "Traceback" not in err, (delay, err)


def test_a_ctrl_c_python_cannot_raise_is_not_printed(tmp_path):
    """A Ctrl-C that lands in a weakref callback or a __del__ (importlib's module locks have
    one) is dropped by Python with an "Exception ignored" traceback; dagbox counts it and
    stops the run later, so the traceback is noise. Other lost exceptions are still shown."""
    code = (
        "import sys\n"
        "from dagbox.__main__ import _lost_interrupt\n"
        "sys.unraisablehook = _lost_interrupt\n"
        "class Gone:\n"
        "    def __init__(self, exc): self.exc = exc\n"
        "    def __del__(self): raise self.exc\n"
        "Gone(KeyboardInterrupt())\n"
        "Gone(ValueError('a bug'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "KeyboardInterrupt" not in done.stderr
    assert "ValueError: a bug" in done.stderr


def test_a_closed_stdout_does_not_stop_a_run(tmp_path):
    dag = tmp_path / "hello.yaml"
    dag.write_text(HELLO)
    done = subprocess.run(
        [*DAGBOX, "run", str(dag)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DAGBOX_HOME": str(tmp_path / "home")},
        timeout=60,
        check=False,
        # the shell's >&-: descriptor 1 closed before dagbox starts
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    assert record["status"] == "succeeded"
    log = Path(record["steps"][0]["stdout_file"])
    assert log.read_text() == "hello\n"


@pytest.mark.docker
def test_parallel_steps_sharing_a_container_name_take_turns(tmp_path):
    """Two steps that may run at once name one container: validate says so, and the run
    is the same every time (one after the other), not a race between 409 and an exec."""
    dag = tmp_path / "named.yaml"
    box = f"dagbox-test-named-{os.getpid()}"
    dag.write_text(
        "steps:\n"
        + "".join(
            f"  - id: s{i}\n"
            f"    container: {{image: {TEST_IMAGE}, network: none, name: {box}}}\n"
            f"    run: echo s{i}; sleep 0.3\n"
            for i in range(3)
        )
    )
    checked = dagbox(tmp_path, "validate", str(dag))
    assert checked.returncode == 0
    assert checked.stderr.count("may run at the same time; dagbox runs them one after") == 2
    try:
        for _ in range(3):
            done = dagbox(tmp_path, "run", str(dag), "-o", "quiet")
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", box], capture_output=True, timeout=120, check=False)


def test_values_from_params_and_outputs_are_never_run_as_code(tmp_path):
    """A param or an output that holds a backtick or ``$(...)`` is text: in an env value
    (where a backtick of the DAG's own is text too, as in Dagu 2.x) and in a precondition's
    eval: beside a command of the DAG's own, which runs."""
    marks = tmp_path / "marks"
    marks.mkdir()
    dag = tmp_path / "inject.yaml"
    dag.write_text(
        "params:\n  - X: unset\n"
        "steps:\n"
        "  - id: out\n"
        "    output: OUT\n"
        f"    run: echo '`touch {marks}/from-output`'\n"
        "  - id: use\n"
        "    depends: out\n"
        "    env:\n"
        '      - MSG: "$OUT ${params.X} `echo written`"\n'
        "    preconditions:\n"
        '      - eval: "${params.X} ${OUT} $(echo evaluated)"\n'
        '        expected: "re:touch.* evaluated$"\n'
        '    run: echo "$MSG"\n'
    )
    param = f"X=$(touch {marks}/from-param) `touch {marks}/from-param-backtick`"
    done = dagbox(tmp_path, "run", str(dag), "-p", param)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(marks.iterdir()) == []
    assert f"use | `touch {marks}/from-output` {param[2:]} `echo written`\n" in done.stdout
