"""Memory and time bounds: no value, log, held output, pattern, file or number a user gives
makes dagbox take unbounded memory or time, crash, or stop answering."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import DAGBOX

RSS_LIMIT_MB = 150


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}


def dagbox(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DAGBOX, *args],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=timeout,
        check=False,
    )


#: Runs argv[1:] as a child and prints the child's peak RSS (kB) on stderr's last line.
#: The kernel counts, in a process's peak, the memory of the process it was exec'd from
#: (Linux keeps the high-water mark across exec): dagbox started straight from pytest
#: would report pytest's own size (180 MB once scipy and altair are loaded). Forked from
#: this small launcher instead, dagbox starts from the launcher's few MB.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"peak-rss-kb {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_mb(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, float]:
    """Run ``dagbox ARGS`` with stdout to /dev/null; its exit code and peak RSS in MB, as the
    kernel accounts it for the process (``ru_maxrss`` from wait4: no peak is missed)."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, *DAGBOX, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("peak-rss-kb "), done.stderr[-2000:]
    return done.returncode, int(last.split()[1]) / 1024


def test_a_doubling_env_chain_is_found_by_validate_and_capped_at_run_time(tmp_path):
    dag = tmp_path / "double.yaml"
    lines = ["env:", "  - A0: xx"]
    lines += [f"  - A{i}: ${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 32)]
    dag.write_text("\n".join([*lines, "steps:", "  - run: echo ${#A31}", ""]))
    done = dagbox(tmp_path, "validate", str(dag))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"{dag}:23:5: env[21]: A21 would be 25,169,908 bytes once its references are "
        "expanded; dagbox stops values at 16 MiB"
    ]
    # At run time (a param far larger than its default), the same cap, as a plain error.
    grows = tmp_path / "grows.yaml"
    grows.write_text(
        "params:\n  - A: small\nenv:\n  - B: " + "${A}" * 20 + "\nsteps:\n  - run: 'true'\n"
    )
    params = tmp_path / "params"
    params.write_text("A=" + "a" * 1_000_000 + "\n")
    code, peak = peak_rss_mb(["run", str(grows), "--params-file", str(params)], env_for(tmp_path))
    assert code == 1
    assert peak < RSS_LIMIT_MB, peak
    record = json.loads(next((tmp_path / "home").glob("runs/grows/*/run.json")).read_text())
    assert "env B: cannot evaluate" in record["error"]
    assert "larger than 16 MiB" in record["error"]


def test_logs_of_a_huge_step_print_in_bounded_memory(tmp_path):
    size = 300_000_000
    dag = tmp_path / "huge.yaml"
    dag.write_text(f"steps:\n  - {{id: huge, run: \"head -c {size} /dev/zero | tr '\\\\0' a\"}}\n")
    assert dagbox(tmp_path, "run", str(dag), "--run-id", "big", "-o", "quiet").returncode == 0
    for args in (["logs", "big"], ["logs", "big", "huge"]):
        code, peak = peak_rss_mb(args, env_for(tmp_path))
        assert code == 0
        assert peak < RSS_LIMIT_MB, (args, peak)


def test_held_output_counts_what_it_really_takes(tmp_path):
    dag = tmp_path / "empty.yaml"
    dag.write_text("steps:\n  - {id: blanks, run: \"yes '' | head -n 3000000; exit 1\"}\n")
    for mode in ("failures", "grouped"):
        code, peak = peak_rss_mb(["run", str(dag), "-o", mode], env_for(tmp_path))
        assert code == 1
        assert peak < RSS_LIMIT_MB, (mode, peak)


def test_a_catastrophic_pattern_does_not_freeze_the_runner(tmp_path):
    dag = tmp_path / "redos.yaml"
    dag.write_text(
        "steps:\n"
        "  - id: matched\n"
        "    run: \"printf 'a%.0s' $(seq 34); echo b; exit 1\"\n"
        '    continue_on: {output: "re:^(a+)+$"}\n'
        "  - id: slow\n"
        "    timeout_sec: 2\n"
        "    run: sleep 60\n"
    )
    began = time.monotonic()
    done = dagbox(tmp_path, "run", str(dag), timeout=60)
    took = time.monotonic() - began
    assert done.returncode == 1
    assert took < 30, took  # Python's re took hours on this; the timeout never fired
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["matched"]["status"] == "failed"
    assert steps["slow"]["error"] == "step timed out after 2s"
    # Patterns are Go's (RE2) syntax, as in Dagu: a backreference is refused, located.
    bad = tmp_path / "backref.yaml"
    bad.write_text('steps:\n  - run: "true"\n    continue_on: {output: "re:(a)\\\\1"}\n')
    refused = dagbox(tmp_path, "validate", str(bad))
    assert refused.returncode == 2
    assert "steps[0].continue_on.output[0]: invalid regular expression" in refused.stderr


def test_a_dag_file_that_never_ends_is_refused(tmp_path):
    def one_gib_at_most() -> None:  # without the cap, the read would take all memory
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run(
        [*DAGBOX, "validate", "/dev/zero"],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=30,
        check=False,
        preexec_fn=one_gib_at_most,
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "/dev/zero:1:1: the file is larger than 16 MiB; dagbox reads DAG files up to that size\n"
    )


def test_outputs_too_deep_or_too_large_for_a_program_are_plain_errors(tmp_path):
    dag = tmp_path / "outs.yaml"
    dag.write_text(
        "steps:\n"
        "  - id: deep\n"
        "    output: DEEP\n"
        "    run: python3 -c \"print('{\\\"a\\\":' * 5000 + '1' + '}' * 5000)\"\n"
        "  - id: reads_deep\n"
        "    depends: deep\n"
        '    env: [X: "${DEEP.a}"]\n'
        "    run: echo unreachable\n"
        "  - id: wide\n"
        "    output: WIDE\n"
        "    run: head -c 200000 /dev/zero | tr '\\0' w\n"
        "  - id: gets_wide\n"
        "    depends: wide\n"
        "    run: echo unreachable\n"
    )
    done = dagbox(tmp_path, "run", str(dag))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "internal error" not in done.stdout
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["reads_deep"]["error"] == (
        "env X: cannot evaluate '${DEEP.a}': DEEP holds JSON nested too deeply for "
        "${DEEP.a} to read it"
    )
    assert steps["gets_wide"]["error"].startswith(
        "environment variable WIDE (the output of step wide) holds 195 KiB, more than the "
        "128 KiB a program can receive in one variable"
    )


def test_a_huge_backoff_cannot_overflow(tmp_path):
    dag = tmp_path / "backoff.yaml"
    dag.write_text(
        "steps:\n"
        "  - id: flaky\n"
        "    run: exit 7\n"
        "    retry_policy: {limit: 3, interval_sec: 1, backoff: 1e200, max_interval_sec: 1}\n"
    )
    done = dagbox(tmp_path, "run", str(dag))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "internal error" not in done.stdout
    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    assert record["steps"][0]["retry_count"] == 3
    assert record["steps"][0]["error"] == "exit code 7"
    events = next((tmp_path / "home").glob("runs/*/*/events.jsonl")).read_text().splitlines()
    delays = [e["delay_sec"] for e in map(json.loads, events) if e["event"] == "step.retrying"]
    assert delays == [1.0, 1.0, 1.0]  # 1, then 1e200 and 1e400 seconds: capped, no overflow
