"""What the live panel (docs/report.md, "The live panel") costs a bench.

1,000 runs of a one-step host DAG at --concurrency 8, the same bench (a) on a
pseudo-terminal, where the panel is drawn, and (b) with stdout and stderr to pipes, where
it is off. Targets: the panel makes the bench at most 5% slower (median wall times), and
it is redrawn at most 10 times a second (counted in the terminal's bytes: each redraw
erases to the screen's end once, ``ESC [ J``).

The modes alternate, A B A B ..., several times, and the medians, the ratio and each
round's figures print in one run, since these machines are shared and noisy. CPU time
(user + system, dagbox's process and its children) prints too: it is steadier than wall
time on a busy machine. Not a timed test: read the figures.

    python benchmarks/live.py [--runs 1000] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

ERASE = b"\x1b[J"
#: The pseudo-terminal's size: a common window.
ROWS, COLUMNS = 40, 120


@dataclass
class Measured:
    wall: float  # seconds, from start to exit
    cpu: float  # user + system seconds: dagbox and the processes it waited for (wait4)
    redraws: int  # erases seen on the terminal (0 on pipes)
    drawing: float  # seconds from the first erase to the exit


def measured(argv: list[str], env: dict[str, str], terminal: bool) -> Measured:
    """One bench, its output read as it comes (a full pipe or terminal would stop it)."""
    if terminal:
        main, secondary = os.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        readers, writers = [main], [secondary, secondary]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        readers, writers = [out_r, err_r], [out_w, err_w]
    began = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=writers[0], stderr=writers[1]
    )
    for fd in set(writers):
        os.close(fd)
    data = bytearray()
    first: float | None = None
    status = None
    while readers:
        ready, _, _ = select.select(readers, [], [], 0.5)
        for fd in ready:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # EIO: the terminal's last writer has gone
                chunk = b""
            if not chunk:
                readers.remove(fd)
                os.close(fd)
                continue
            data += chunk
            if first is None and ERASE in chunk:
                first = time.perf_counter()
        if not ready and status is None:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                status = None
            else:  # gone, and a descendant holds the output open: stop reading
                ended = time.perf_counter()
                for fd in readers:
                    os.close(fd)
                break
    if status is None:
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.perf_counter()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{argv[:5]} exited {code}: {data[-2000:].decode(errors='replace')}")
    return Measured(
        wall=ended - began,
        cpu=usage.ru_utime + usage.ru_stime,
        redraws=data.count(ERASE),
        drawing=ended - first if first is not None else 0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dagbox-live-"))
    try:
        dag = folder / "dag.yaml"
        dag.write_text("params: [N=0]\nsteps:\n  - id: say\n    command: echo task ${N}\n")
        tasks = folder / "tasks.jsonl"
        tasks.write_text("".join(json.dumps({"N": str(n)}) + "\n" for n in range(args.runs)))
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX")}
        env["TERM"] = "xterm-256color"
        figures: dict[str, list[Measured]] = {"terminal": [], "pipes": []}
        print(
            f"{args.runs} host runs at -c {args.concurrency}, {args.rounds} rounds, "
            f"terminal {COLUMNS}x{ROWS} (panel on) and pipes (panel off), alternating",
            flush=True,
        )
        for round_ in range(args.rounds):
            for mode in ("terminal", "pipes"):
                home = folder / f"home-{mode}-{round_}"
                out = folder / f"out-{mode}-{round_}"
                argv = [sys.executable, "-m", "dagbox", "bench", str(dag), "--tasks", str(tasks)]
                argv += ["-c", str(args.concurrency), "--out", str(out)]
                got = measured(argv, {**env, "DAGBOX_HOME": str(home)}, mode == "terminal")
                runs = sum(
                    row["runs"] for row in json.loads((out / "summary.json").read_text())["cells"]
                )
                if runs != args.runs:
                    raise SystemExit(f"{mode}: {runs} runs summarised, not {args.runs}")
                figures[mode].append(got)
                rate = f", {got.redraws / got.drawing:.1f} redraws/s" if got.drawing else ""
                print(
                    f"  round {round_ + 1} {mode:<8}  wall {got.wall:6.2f} s  "
                    f"CPU {got.cpu:6.2f} s{rate}",
                    flush=True,
                )
                shutil.rmtree(home, ignore_errors=True)  # the next round starts as empty
        on, off = figures["terminal"], figures["pipes"]
        wall_on = statistics.median(m.wall for m in on)
        wall_off = statistics.median(m.wall for m in off)
        cpu_on = statistics.median(m.cpu for m in on)
        cpu_off = statistics.median(m.cpu for m in off)
        rates = [m.redraws / m.drawing for m in on if m.drawing]
        print()
        print(
            f"median wall: panel on {wall_on:.2f} s, off {wall_off:.2f} s, "
            f"ratio {wall_on / wall_off:.3f} (target <= 1.05)"
        )
        print(
            f"median CPU (dagbox and its steps): panel on {cpu_on:.2f} s, off {cpu_off:.2f} s, "
            f"ratio {cpu_on / cpu_off:.3f}"
        )
        print(
            f"redraws per second on the terminal: median {statistics.median(rates):.2f}, "
            f"max {max(rates):.2f} (target <= 10)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
