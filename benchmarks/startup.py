"""How long dagbox takes to start, side by side with `python -c pass` and Dagu.

A user of a CLI feels every 100 ms. Each command runs alternately with the others,
several times, and the medians and their ratio to `python -c pass` (and to Dagu, when
benchmarks/peers/get-dagu has fetched it) are printed in one run, since these machines
are shared and noisy. Targets (issue 12): `dagbox validate` of a one-step file <= 5x
`python -c pass`; chain20 <= 1.5x Dagu 1.30.2. The rows "import ..." show the floor the
chosen stack sets (typer, PyYAML, msgspec; asyncio, anyio, structlog for a run): the
part of the time no change to dagbox's own code can remove. Not a timed test: read the
figures.

    python benchmarks/startup.py [--repeat 9]
    python -X importtime -m dagbox --version 2>&1 | sort -t'|' -k2 -n | tail   # where it goes
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_STEP = "steps:\n  - name: s\n    command: 'true'\n"
CHAIN20 = "type: chain\nsteps:\n" + "".join(
    f'  - name: s{i}\n    command: "true"\n' for i in range(20)
)


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--dagu", type=Path, default=HERE / "peers" / "bin" / "dagu")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dagbox-startup-"))
    one, chain = folder / "one.yaml", folder / "chain20.yaml"
    one.write_text(ONE_STEP)
    chain.write_text(CHAIN20)
    env = {**os.environ, "DAGBOX_HOME": str(folder / "home"), "DAGU_HOME": str(folder / "dagu")}
    dagbox = [sys.executable, "-m", "dagbox"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        # The floors the stack sets: what validate must import (typer for the command
        # line, PyYAML, msgspec), and what a run adds (asyncio, anyio, structlog).
        "import typer": [sys.executable, "-c", "import typer"],
        "import validate's stack": [sys.executable, "-c", "import typer, yaml, msgspec"],
        "import run's stack": [
            sys.executable,
            "-c",
            "import typer, yaml, msgspec, asyncio, anyio, anyio.streams.memory, structlog",
        ],
        "dagbox --version": [*dagbox, "--version"],
        "dagbox validate one.yaml": [*dagbox, "validate", str(one)],
        "dagbox run chain20": [*dagbox, "run", "-o", "quiet", str(chain)],
    }
    if args.dagu.exists():
        commands["dagu version"] = [str(args.dagu), "version"]
        commands["dagu start chain20"] = [str(args.dagu), "start", str(chain)]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, argv in commands.items():  # alternately: noise hits every command alike
            times[name].append(timed(argv, env))
    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    base = median["python -c pass"]
    print(f"{'command':28} {'median ms':>10} {'x python':>9}")
    for name, ms in median.items():
        print(f"{name:28} {ms:10.1f} {ms / base:9.2f}")
    floor = median["import validate's stack"] / base
    print(
        f"validate / python -c pass: {median['dagbox validate one.yaml'] / base:.2f} "
        f"(target <= 5; importing its stack alone: {floor:.2f})"
    )
    if "dagu start chain20" in median:
        dagu = median["dagu start chain20"]
        ratio = median["dagbox run chain20"] / dagu
        floor = median["import run's stack"] / dagu
        print(
            f"chain20 dagbox / Dagu: {ratio:.2f} (target <= 1.5; importing its stack alone: "
            f"{floor:.2f})"
        )
    else:
        print("Dagu: not fetched (benchmarks/peers/get-dagu), chain20 shown without it")


if __name__ == "__main__":
    main()
