"""Bad input for real: broken bytes in DAG files and in step output, and very large DAGs.

The generated-document half of this promise (the loader and the ``with:``/``harnesses:``
renderer never raise) is tests/test_properties.py; CI runs it with enough examples for
10,000 documents.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE

DAGBOX = [sys.executable, "-m", "dagbox"]

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
