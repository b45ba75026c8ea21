"""`dagbox bench`: matrices, results, pass@k, resume, the infra/agent split, progress."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from dagbox.bench.jobs import BenchInputError, Cell, jobs, parse_matrix
from dagbox.bench.stats import pass_at_k, percentile, summarize
from tests.conftest import FAKE_AGENT, TEST_IMAGE, load_text
from tests.helpers import DAGBOX, wait_for

# --- arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 0, 1, 0.0),
        (5, 5, 3, 1.0),
        (5, 2, 1, 0.4),
        (5, 2, 2, 0.7),
        (4, 1, 2, 0.5),
        (3, 1, 3, 1.0),
    ],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_percentiles():
    assert percentile([3, 1, 2, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert percentile([], 50) is None


def test_summary_leaves_infra_failures_out_of_the_success_rate():
    runs = [
        {
            "cell": "a",
            "task": None,
            "status": "succeeded",
            "failure_class": "ok",
            "duration_ms": 10,
            "overhead_ms": 1,
        },
        {
            "cell": "a",
            "task": None,
            "status": "failed",
            "failure_class": "exit_nonzero",
            "duration_ms": 20,
            "overhead_ms": 2,
        },
        {
            "cell": "a",
            "task": None,
            "status": "failed",
            "failure_class": "infra_image",
            "duration_ms": 5,
            "overhead_ms": 1,
        },
    ]
    (row,) = summarize(runs, repeat=3)
    assert (row["runs"], row["succeeded"], row["harness_failed"], row["infra_failed"]) == (
        3,
        1,
        1,
        1,
    )
    assert row["success_rate"] == 0.5
    assert row["pass@1"] == 0.5 and row["pass@2"] == 1.0 and row["pass@3"] is None
    assert row["failures"] == {"exit_nonzero": 1, "infra_image": 1}


def test_jobs_and_keys():
    dag = load_text("params: [M=x]\nsteps: [{id: a, run: 'echo ${params.M}'}]\n").dag
    axes = parse_matrix(["M=a,b,c", "P=1,2"])
    planned = jobs(dag, axes, None, repeat=2, images={})
    assert len(planned) == 12
    assert len({j.key for j in planned}) == 12
    assert planned[0].cell == Cell((("M", "a"), ("P", "1")))
    assert planned[0].params == {"M": "a", "P": "1"}
    again = jobs(dag, axes, None, repeat=2, images={})
    assert [j.key for j in again] == [j.key for j in planned]  # stable
    other_image = jobs(dag, axes, None, repeat=2, images={"img": "sha256:1"})
    assert not {j.key for j in other_image} & {j.key for j in planned}  # images are part of the key
    with pytest.raises(BenchInputError):
        parse_matrix(["M"])


# --- real runs ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "bench.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def bench(tmp_path, *args, env=None, timeout=300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [*DAGBOX, "bench", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


HOST_DAG = f"""
params: [CODE=0]
harnesses:
  fake: {{binary: {FAKE_AGENT}}}
steps:
  - id: agent
    action: harness.run
    env:
      - FAKE_AGENT_EXIT: ${{params.CODE}}
    with: {{provider: fake, prompt: 'exit ${{params.CODE}}'}}
"""


@pytest.mark.docker
def test_a_3x2_matrix_with_repeats_in_step_containers(tmp_path, container_engine, monkeypatch):
    for key, value in container_engine.env.items():
        monkeypatch.setenv(key, value)
    dag = write(
        tmp_path,
        f"""
        params: [MODEL=a, FLAKY=0]
        steps:
          - id: agent
            action: harness.run
            container:
              image: {TEST_IMAGE}
              pull_policy: never
              network: none
              env: ['FAKE_AGENT_EXIT=${{params.FLAKY}}']
            with: {{provider: claude, prompt: 'solve ${{params.MODEL}}'}}
        """,
    )
    out = tmp_path / "out"
    done = bench(
        tmp_path,
        str(dag),
        "--matrix",
        "MODEL=a,b,c",
        "--matrix",
        "FLAKY=0,1",
        "--repeat",
        "2",
        "--out",
        str(out),
        "-c",
        "4",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = results(out)
    assert len(lines) == 12
    assert len({line["key"] for line in lines}) == 12
    summary = {row["cell"]: row for row in json.loads((out / "summary.json").read_text())["cells"]}
    assert set(summary) == {f"FLAKY={f} MODEL={m}" for f in (0, 1) for m in "abc"} or set(
        summary
    ) == {f"MODEL={m} FLAKY={f}" for m in "abc" for f in (0, 1)}
    for label, row in summary.items():
        good = "FLAKY=0" in label
        assert row["runs"] == 2 and row["infra_failed"] == 0
        assert row["pass@1"] == (1.0 if good else 0.0) and row["pass@2"] == (1.0 if good else 0.0)
    step = lines[0]["steps"][0]
    assert step["provider"] == "claude" and step["tries"] == 1
    assert step["phases"]["create_ms"] is not None and step["phases"]["start_ms"] is not None
    assert "MODEL=a" in done.stdout and "pass@2" in done.stdout


def test_pass_at_k_counts_repeats_per_cell(tmp_path):
    dag = write(
        tmp_path,
        f"""
        params: [RUN=x]
        harnesses:
          fake: {{binary: sh, prefix_args: ['-c', 'n=$(cat {tmp_path}/count 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/count; [ $((n % 4)) -eq 0 ]']}}
        steps:
          - {{id: agent, action: harness.run, with: {{provider: fake, prompt: p}}}}
        """,
    )
    out = tmp_path / "out"
    done = bench(tmp_path, str(dag), "--repeat", "4", "--out", str(out), "-c", "1")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((out / "summary.json").read_text())["cells"]
    assert (row["runs"], row["succeeded"]) == (4, 1)
    assert row["pass@1"] == 0.25 and row["pass@2"] == 0.5 and row["pass@4"] == 1.0


@pytest.mark.docker
def test_infra_and_agent_failures_are_told_apart(tmp_path, container_engine, monkeypatch):
    for key, value in container_engine.env.items():
        monkeypatch.setenv(key, value)
    dag = write(
        tmp_path,
        """
        params: [IMAGE=x, EXIT=0]
        steps:
          - id: agent
            action: harness.run
            container: {image: '${params.IMAGE}', pull_policy: never, env: ['FAKE_AGENT_EXIT=${params.EXIT}']}
            with: {provider: claude, prompt: p}
        """,
    )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"id": "missing-image", "IMAGE": "dagbox-test/absent:1", "EXIT": "0"})
        + "\n"
        + json.dumps({"id": "failing-agent", "IMAGE": TEST_IMAGE, "EXIT": "3"})
        + "\n"
        + json.dumps({"id": "passing", "IMAGE": TEST_IMAGE, "EXIT": "0"})
        + "\n"
    )
    out = tmp_path / "out"
    done = bench(tmp_path, str(dag), "--tasks", str(tasks), "--out", str(out))
    assert done.returncode == 0, done.stderr
    by_task = {line["task"]: line for line in results(out)}
    assert (by_task["missing-image"]["failure_class"], by_task["missing-image"]["infra"]) == (
        "infra_image",
        True,
    )
    assert (by_task["failing-agent"]["failure_class"], by_task["failing-agent"]["infra"]) == (
        "exit_nonzero",
        False,
    )
    (row,) = json.loads((out / "summary.json").read_text())["cells"]
    assert (row["infra_failed"], row["harness_failed"], row["succeeded"]) == (1, 1, 1)
    assert row["success_rate"] == 0.5  # the missing image does not count against the agent


def test_resume_after_an_interrupted_bench_runs_exactly_the_missing_and_changed(tmp_path):
    dag = write(
        tmp_path,
        f"""
        params: [N=0]
        harnesses:
          slow: {{binary: sh, prefix_args: ['-c', 'echo "$0" >> {tmp_path}/ran; [ "$0" -lt 3 ] || sleep 300']}}
        steps:
          - {{id: agent, action: harness.run, with: {{provider: slow, prompt: '${{params.N}}'}}}}
        """,
    )
    out = tmp_path / "out"
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    command = [*DAGBOX, "bench", str(dag), "--matrix", "N=0,1,2,3,4", "--out", str(out), "-c", "5"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    wait_for(
        lambda: (out / "results.jsonl").exists() and len(results(out)) == 3,
        timeout=60,
        what="3 results",
    )
    wait_for(
        lambda: (tmp_path / "ran").exists() and len((tmp_path / "ran").read_text().split()) == 5,
        what="all started",
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert sorted(r["params"]["N"] for r in results(out)) == [
        "0",
        "1",
        "2",
    ]  # interrupted: not recorded
    # N=3 and N=4 were interrupted; make them quick now, and add a new cell value
    dag.write_text(dag.read_text().replace("sleep 300", "true"))
    (tmp_path / "ran").unlink()
    done = bench(tmp_path, str(dag), "--matrix", "N=0,1,2,3,4,5", "--out", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    # the DAG changed, so every key changed: all six run again
    assert sorted((tmp_path / "ran").read_text().split()) == ["0", "1", "2", "3", "4", "5"]
    (tmp_path / "ran").unlink()
    done = bench(tmp_path, str(dag), "--matrix", "N=0,1,2,3,4,5,6", "--out", str(out), "--resume")
    assert (tmp_path / "ran").read_text().split() == ["6"]  # only the new key
    keys = [r["key"] for r in results(out)]
    assert len(keys) == len(set(keys)) == 10  # 3 stale results of the old DAG stay in the file...
    cells = json.loads((out / "summary.json").read_text())["cells"]
    assert sum(row["runs"] for row in cells) == 7  # ...but only the current keys count
    assert "1 runs now, 6 already done" in done.stdout


def _pty_run(command: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``command`` with stdout and stderr on a pseudo-terminal; returns (exit, text)."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(main)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_progress_shows_on_a_terminal_and_not_when_piped(tmp_path):
    dag = write(
        tmp_path,
        f"""
        params: [N=0]
        harnesses:
          fake: {{binary: {FAKE_AGENT}}}
        steps:
          - id: agent
            action: harness.run
            env: [FAKE_AGENT_DELAY='0.3']
            with: {{provider: fake, prompt: 'p ${{params.N}}'}}
        """,
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    code, text = _pty_run(
        [
            *DAGBOX,
            "bench",
            str(dag),
            "--matrix",
            "N=1,2,3,4",
            "--out",
            str(tmp_path / "tty"),
            "-c",
            "2",
        ],
        env,
    )
    assert code == 0, text
    assert "running 0 · done 4/4 · failed 0 · " in text
    assert "\x1b[J" in text  # redrawn in place
    piped = bench(tmp_path, str(dag), "--matrix", "N=1,2,3,4", "--out", str(tmp_path / "pipe"))
    assert piped.returncode == 0
    assert "running" not in piped.stderr and "\x1b[" not in piped.stderr + piped.stdout


def test_failures_output_shows_only_failed_runs(tmp_path):
    dag = write(tmp_path, HOST_DAG)
    out = subprocess.run(
        [*DAGBOX, "bench", str(dag), "--matrix", "MODEL=a,b", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DAGBOX_HOME": str(tmp_path / "home"),
            "NO_COLOR": "1",
            "MODE_EXIT": "0",
        },
        timeout=120,
        check=False,
    )
    assert out.returncode == 0
    assert "answered" not in out.stdout  # nothing failed: no run output shown


def test_a_torn_last_line_is_cut_before_the_next_is_appended(tmp_path):
    from dagbox.bench.results import ResultsFile, read_results

    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"key":"a"}\n{"key":"b","stat')  # a bench killed mid-write
    results = ResultsFile(path)
    results.append({"key": "c"})
    results.close()
    assert [r["key"] for r in read_results(path)] == ["a", "c"]
    assert path.read_bytes() == b'{"key":"a"}\n{"key":"c"}\n'
