"""Fan-out over a sub-DAG (``parallel:`` with ``call:``), side by side with Dagu 1.30.2.

Scenarios (issue targets in brackets):
  - fan1000: 1,000 items over a one-step host child (``true``), Dagu's default
    max_concurrent of 10: dagbox's time [under 4 s on a 2-core machine], Dagu's for the
    same file (it starts a process per child), and dagbox's peak RSS [under 200 MB];
  - with --containers (a Docker engine and scripts/ensure-docker's image):
    fan100-containers: 100 items over a child whose step runs in a container of its own,
    against 100 independent step containers in one DAG at the same concurrency (10)
    [within 15%].

Both tools read the same file: ``call:`` and ``command:`` are spellings Dagu 1.30.2 and
2.x (and dagbox) all accept. Runs alternate between the tools, several times, and the
medians and ratios print in one run, since these machines are shared and noisy. Not a
timed test: read the figures.

    benchmarks/peers/get-dagu          # once: Dagu 1.30.2 from the npm registry
    python benchmarks/fanout.py [--repeat 3] [--items 1000] [--containers] [--peer none]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE = os.environ.get("DAGBOX_TEST_IMAGE", "dagbox-test/busybox:latest")


def fan_file(items: int, box: str = "") -> str:
    listed = ", ".join(str(i) for i in range(items))
    return (
        f"steps:\n  - name: fanout\n    call: child\n    parallel: [{listed}]\n"
        f'---\nname: child\nsteps:\n  - name: ok\n{box}    command: "true"\n'
    )


def flat_file(items: int, box: str) -> str:
    """The same work without a sub-DAG: ``items`` independent steps, 10 at a time."""
    steps = "".join(f'  - name: s{i}\n{box}    command: "true"\n' for i in range(items))
    return f"type: graph\nmax_active_steps: 10\nsteps:\n{steps}"


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall time and peak RSS (KB) of one process; fails loudly if it fails. Its output
    goes to a file: a pipe nobody reads would stop a chatty process (Dagu logs a lot)."""
    log = cwd / "last.log"
    with log.open("wb") as sink:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sink, stderr=sink)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{argv[:4]} exited {code}: {log.read_text(errors='replace')[-2000:]}")
    return took, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--containers", action="store_true")
    parser.add_argument("--peer", choices=["dagu", "none"], default="dagu")
    parser.add_argument("--dagu", type=Path, default=HERE / "peers" / "bin" / "dagu")
    args = parser.parse_args()
    if args.peer == "dagu" and not args.dagu.exists():
        raise SystemExit(f"{args.dagu} is missing: run benchmarks/peers/get-dagu (or --peer none)")
    folder = Path(tempfile.mkdtemp(prefix="dagbox-fanout-"))
    dagbox = [sys.executable, "-m", "dagbox", "run", "-o", "quiet"]
    try:
        rows = [_fan1000(folder, dagbox, args)]
        if args.containers:
            rows.append(_containers(folder, dagbox, args))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print()
    for row in rows:
        print(row)


def _fresh_env(folder: Path) -> dict[str, str]:
    """A fresh record folder per run: one run's thousand records do not slow the next."""
    home = folder / f"home-{time.monotonic_ns()}"
    return {**os.environ, "DAGBOX_HOME": str(home / "dagbox"), "DAGU_HOME": str(home / "dagu")}


def _fan1000(folder: Path, dagbox: list[str], args: argparse.Namespace) -> str:
    path = folder / "fan.yaml"
    path.write_text(fan_file(args.items))
    ours: list[float] = []
    peaks: list[int] = []
    theirs: list[float] = []
    for turn in range(args.repeat):
        took, peak = measured([*dagbox, str(path)], _fresh_env(folder), folder)
        ours.append(took)
        peaks.append(peak)
        line = f"  fan{args.items} turn {turn + 1}: dagbox {took:.2f}s ({peak / 1024:.0f} MB)"
        if args.peer == "dagu":
            took, _ = measured([str(args.dagu), "start", str(path)], _fresh_env(folder), folder)
            theirs.append(took)
            line += f", dagu {took:.2f}s"
        print(line, flush=True)
    mine = statistics.median(ours)
    row = (
        f"fan{args.items} (host child, max_concurrent 10): dagbox {mine:.2f}s (target < 4 s), "
        f"peak RSS {max(peaks) / 1024:.0f} MB (target < 200 MB)"
    )
    if theirs:
        row += f"; Dagu 1.30.2 {statistics.median(theirs):.2f}s; ratio {mine / statistics.median(theirs):.2f}"
    return row


def _containers(folder: Path, dagbox: list[str], args: argparse.Namespace) -> str:
    box = f"    container:\n      image: {IMAGE}\n      pull_policy: never\n"
    fan, flat = folder / "fan100c.yaml", folder / "flat100c.yaml"
    fan.write_text(fan_file(100, box))
    flat.write_text(flat_file(100, box))
    fans: list[float] = []
    flats: list[float] = []
    for turn in range(args.repeat):
        fans.append(measured([*dagbox, str(fan)], _fresh_env(folder), folder)[0])
        flats.append(measured([*dagbox, str(flat)], _fresh_env(folder), folder)[0])
        print(
            f"  containers turn {turn + 1}: fan-out {fans[-1]:.2f}s, flat {flats[-1]:.2f}s",
            flush=True,
        )
    a, b = statistics.median(fans), statistics.median(flats)
    return (
        f"fan100 over step containers: {a:.2f}s; 100 independent step containers: {b:.2f}s; "
        f"ratio {a / b:.2f} (target <= 1.15)"
    )


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    main()
