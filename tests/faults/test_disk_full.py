"""A full disk, for real: a small tmpfs under the run record, or under the terminal's file.

Promise (docs/reliability.md): a write that fails does not end the run. Every step still
runs, the failure is told once as it happens and again at the end, a record that can be
finished later is, and the run exits 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DAGBOX

FLOOD = r"head -c 2000000 /dev/zero | tr '\\0' x | fold -w 99"  # YAML double quotes: \\0 is \0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB filesystem: root only (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def run(dag: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DAGBOX, "run", str(dag), "--run-id", "full"],
        env={**os.environ, "DAGBOX_HOME": str(home), "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def said(terminal: str, step: str, line: str) -> bool:
    return re.search(rf"^{step} *\| {re.escape(line)}$", terminal, re.MULTILINE) is not None


def test_a_disk_that_fills_mid_run_loses_only_what_could_not_be_written(tmp_path, small_disk):
    home = small_disk / "home"
    logs = home / "runs" / "d" / "full" / "logs"
    dag = tmp_path / "d.yaml"
    dag.write_text(
        "steps:\n"
        f'  - {{id: flood, run: "{FLOOD}"}}\n'
        f"  - {{id: free, depends: flood, run: 'rm {logs}/1-flood.1.stdout; echo freed'}}\n"
        "  - {id: after, depends: free, run: echo after}\n"
    )
    out = run(dag, home)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    told = [line for line in out.stderr.splitlines() if "No space left on device" in line]
    assert len(told) == 2, out.stderr  # once as it happened, once at the end
    assert "the run goes on" in told[0] and "record or output is incomplete" in told[1]
    assert said(out.stdout, "free", "freed") and said(out.stdout, "after", "after")
    # The flood's log was removed, which freed the space: the record was then finished.
    record = json.loads((home / "runs" / "d" / "full" / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert [s["status"] for s in record["steps"]] == ["succeeded"] * 3
    assert (logs / "3-after.1.stdout").read_text() == "after\n"
    assert not list(home.glob("runs/d/full/*.tmp"))


def test_a_disk_that_stays_full_still_runs_every_step(tmp_path, small_disk):
    home = small_disk / "home"
    dag = tmp_path / "d.yaml"
    dag.write_text(
        "steps:\n"
        f'  - {{id: flood, run: "{FLOOD}"}}\n'
        "  - {id: after, depends: flood, run: echo after}\n"
        "  - {id: agent, depends: after, action: harness.run, with: {provider: claude, prompt: p}}\n"
    )
    fixtures = Path(__file__).parents[1] / "fixtures"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(fixtures / "fake-agent")
    out = run(dag, home, PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert said(out.stdout, "after", "after")
    assert said(out.stdout, "agent", "claude answered: p")
    assert "record or output is incomplete" in out.stderr
    assert "run.json does not hold the run's end" in out.stderr
    assert out.stderr.count("the run goes on") == 1  # told once, not once per write


def test_a_terminal_on_a_full_disk_stops_but_the_run_and_record_do_not(tmp_path, small_disk):
    home = tmp_path / "home"
    dag = tmp_path / "d.yaml"
    dag.write_text(
        f'steps:\n  - {{id: flood, run: "{FLOOD}"}}\n  - {{id: after, depends: flood, run: echo after}}\n'
    )
    with (small_disk / "terminal.txt").open("w") as terminal:
        done = subprocess.run(
            [*DAGBOX, "run", str(dag), "--run-id", "full"],
            env={**os.environ, "DAGBOX_HOME": str(home), "NO_COLOR": "1"},
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "the terminal output stopped" in done.stderr
    record = json.loads((home / "runs" / "d" / "full" / "run.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["succeeded", "succeeded"]
    assert (home / "runs" / "d" / "full" / "logs" / "1-flood.1.stdout").stat().st_size == 2020202


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` to the last byte, then give back ``leave`` bytes."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
    with filler.open("r+b") as handle:
        handle.truncate(max(filler.stat().st_size - leave, 0))
    return filler


def test_a_bench_whose_results_fill_the_disk_stops_and_resumes_whole(tmp_path, small_disk):
    dag = tmp_path / "d.yaml"
    dag.write_text("steps:\n  - {id: work, run: echo done}\n")
    out = small_disk / "bench"
    out.mkdir()
    filler = fill(small_disk, leave=8192)
    args = [*DAGBOX, "bench", str(dag), "--repeat", "60", "-c", "1", "--out", str(out)]
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert "bench stopped early: cannot write" in first.stderr
    assert "No space left on device" in first.stderr
    kept = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert 0 < len(kept) < 60  # every line whole: json.loads took each one
    filler.unlink()
    again = subprocess.run(
        [*args, "--resume"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 60 and len({line["key"] for line in lines}) == 60


def test_a_stdout_that_takes_nothing_fails_cleanly(tmp_path):
    """stdout on /dev/full (every write: no space): exit 1 and one line, no traceback and
    no "Exception ignored" from Python's own flush at exit (which would make it 120)."""
    dag = tmp_path / "d.yaml"
    dag.write_text("steps:\n  - {id: a, run: echo hi}\n")
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    for args in (["--version"], ["run", str(dag)]):
        with open("/dev/full", "w") as full:  # noqa: PTH123
            done = subprocess.run(
                [*DAGBOX, *args],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, args
