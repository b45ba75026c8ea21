"""Output floods: a gigabyte without a newline and millions of short lines, through a real run.

The runner is a real ``dagbox run`` whose stdout (the terminal, prefix mode) is read here
line by line. A third step prints a timestamp every quarter second: each must reach the
terminal promptly while the flood is going on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE

FLOOD_BYTES = 1_000_000_000
LINES = 2_000_000
LINE = b"a short line\n"
RSS_LIMIT_MB = 150


def flood_dag(tmp_path: Path, container: str) -> Path:
    dag = tmp_path / "flood.yaml"
    dag.write_text(
        f"""
steps:
  - id: flood
    {container}
    run: head -c {FLOOD_BYTES} /dev/zero | tr '\\0' a
  - id: lines
    {container}
    run: yes 'a short line' | head -n {LINES}
  - id: capture
    {container}
    output: BIG
    run: head -c 5000000 /dev/zero | tr '\\0' a
  - id: beat
    run: for i in $(seq 40); do echo "beat $(date +%s%N)"; sleep 0.25; done
"""
    )
    return dag


class Watched:
    """A ``dagbox run`` whose peak RSS is sampled and whose terminal lines are timestamped."""

    def __init__(self, dag: Path, home: Path) -> None:
        env = {**os.environ, "DAGBOX_HOME": str(home), "FLOOD_TOKEN": "tok-flood-9876"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dagbox", "run", str(dag)], stdout=subprocess.PIPE, env=env
        )
        self.peak_kb = 0
        self.beats: list[tuple[float, float]] = []  # (printed, seen) in epoch seconds
        self.terminal_bytes = 0
        self.first_line = self.last_line = 0.0  # when the "lines" step's output arrived
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.proc.poll() is None:
            try:
                text = status.read_text()
            except OSError:
                return
            found = re.search(r"VmHWM:\s+(\d+)", text)
            if found:  # the kernel's high-water mark: no peak between samples is missed
                self.peak_kb = int(found.group(1))
            time.sleep(0.05)

    def read_terminal(self) -> int:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.terminal_bytes += len(line)
            if line.startswith(b"lines ") and line.endswith(b"| a short line\n"):
                self.last_line = time.time()
                self.first_line = self.first_line or self.last_line
            beat = re.search(rb"\| beat (\d+)$", line.rstrip())
            if beat:
                self.beats.append((int(beat.group(1)) / 1e9, time.time()))
        return self.proc.wait(timeout=300)


def seconds(step: dict) -> float:
    started, finished = (datetime.fromisoformat(step[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def is_filled(path: Path, size: int, byte: bytes) -> bool:
    """The file is exactly ``size`` copies of ``byte``, read a megabyte at a time."""
    if path.stat().st_size != size:
        return False
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            if block.count(byte) != len(block):
                return False
    return True


@pytest.mark.parametrize("place", ["host", "step-container"])
def test_floods_keep_memory_bounded_logs_whole_and_the_terminal_live(
    tmp_path: Path, place: str, request: pytest.FixtureRequest
) -> None:
    container = ""
    if place != "host":
        request.getfixturevalue("docker_engine")
        container = f"container: {{image: {TEST_IMAGE}, network: none}}"
    watched = Watched(flood_dag(tmp_path, container), tmp_path / "home")
    code = watched.read_terminal()

    record = json.loads(next((tmp_path / "home").glob("runs/*/*/run.json")).read_text())
    steps = {step["name"]: step for step in record["steps"]}
    logs = {name: Path(step["stdout_file"]) for name, step in steps.items()}
    try:
        # Output capture over max_output_size fails the step cleanly; the rest succeed.
        assert code == 1
        assert steps["capture"]["status"] == "failed"
        assert "exceeded maximum size limit of 1048576 bytes" in steps["capture"]["error"]
        assert [steps[n]["status"] for n in ("flood", "lines", "beat")] == ["succeeded"] * 3

        # Every byte is in the log files.
        assert is_filled(logs["flood"], FLOOD_BYTES, b"a")
        assert logs["lines"].read_bytes() == LINE * LINES
        assert is_filled(logs["capture"], 5_000_000, b"a")

        # The runner's memory stays bounded while a gigabyte passes through it.
        peak_mb = watched.peak_kb / 1024
        assert 0 < peak_mb < RSS_LIMIT_MB, peak_mb

        # The lines step was not throttled below 200,000 lines per second, as the terminal
        # saw it (container start-up is not output).
        rate = LINES / (watched.last_line - watched.first_line)
        assert rate > 200_000, rate

        # The terminal kept up: every beat shown within a second of being printed, several
        # of them while the gigabyte was still streaming.
        assert len(watched.beats) == 40
        lag = max(seen - printed for printed, seen in watched.beats)
        assert lag < 1.0, lag
        flood_end = datetime.fromisoformat(steps["flood"]["finished_at"]).timestamp()
        assert sum(printed < flood_end for printed, _ in watched.beats) >= 3
        assert watched.terminal_bytes > FLOOD_BYTES  # the terminal showed the flood too
        print(
            f"{place}: peak RSS {peak_mb:.0f} MB, {rate:,.0f} lines/s, "
            f"terminal lag max {lag * 1000:.0f} ms, flood {seconds(steps['flood']):.1f} s"
        )
    finally:
        for path in logs.values():  # a gigabyte per run: do not keep it in pytest's tmp dirs
            path.unlink(missing_ok=True)
