"""Speed of `dagbox run`, side by side with Dagu on the same YAML files.

Scenarios (issue: run engine):
  - engine overhead: 10,000 no-op steps with an in-process fake runtime (dagbox only);
    target under 1 s;
  - chain20: a chain of 20 `true` steps, whole process included; target ratio <= 1.0;
  - fan100: 100 independent `true` steps with maxActiveSteps 100; target ratio <= 1.0.

Each process scenario runs dagbox and the peer alternately, several times, and prints
medians and the dagbox/peer ratio. Not a timed test: read the figures.

    benchmarks/peers/get-dagu            # once: Dagu 1.30.2 from the npm registry
    python benchmarks/run.py --peer dagu [--repeat 7]
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

# One file per scenario, read by both tools: keys Dagu 1.30.2 knows (camelCase where it
# needs them), `type` explicit because the two default differently.
SCENARIOS = {
    "chain20": "type: chain\nsteps:\n"
    + "".join(f'  - name: s{i}\n    command: "true"\n' for i in range(20)),
    "fan100": "type: graph\nmaxActiveSteps: 100\nsteps:\n"
    + "".join(f'  - name: s{i}\n    command: "true"\n' for i in range(100)),
}


def engine_overhead(steps: int = 10_000) -> float:
    """Seconds for the engine alone to get through ``steps`` no-op steps (no processes)."""
    import anyio

    from dagbox.engine.run import Engine, RunOptions
    from dagbox.runtimes import Exit
    from dagbox.spec import load

    class Instant:
        async def run(self, command, on_output, stop):
            return Exit(0)

    text = "steps:\n" + "".join(
        f"  - {{id: s{i}, run: 'true'{', depends: s' + str(i - 1) if i % 10 else ''}}}\n"
        for i in range(steps)
    )
    dag = load(Path("overhead.yaml"), text).dag
    events: list[object] = []
    engine = Engine(
        dag, {"host": Instant()}, events.append, RunOptions(run_id="bench", file=Path("overhead.yaml"))
    )
    started = time.perf_counter()
    result = anyio.run(engine.run)
    elapsed = time.perf_counter() - started
    assert result.status == "succeeded", result.status
    return elapsed


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed with exit {done.returncode}: {' '.join(command)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=["dagu", "none"], default="dagu")
    parser.add_argument("--dagu", type=Path, default=HERE / "peers" / "bin" / "dagu")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    overhead = engine_overhead()
    print(f"engine overhead, 10,000 no-op steps (fake runtime): {overhead:.2f} s   (target < 1 s)")

    if args.peer == "dagu" and not args.dagu.exists():
        raise SystemExit(f"no Dagu binary at {args.dagu}: run benchmarks/peers/get-dagu first")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = {**os.environ, "DAGBOX_HOME": str(base / "dagbox"), "DAGU_HOME": str(base / "dagu")}
        print(
            f"\n{'scenario':<10} {'dagbox':>9} {'dagu':>9} {'ratio':>7}   (medians of {args.repeat}, whole process)"
        )
        for name, text in SCENARIOS.items():
            file = base / f"{name}.yaml"
            file.write_text(text)
            ours = [sys.executable, "-m", "dagbox", "run", str(file), "--output", "quiet"]
            theirs = [str(args.dagu), "start", str(file)]
            timed(ours, env)  # warm caches for both before measuring
            if args.peer == "dagu":
                timed(theirs, env)
            mine, peer = [], []
            for _ in range(args.repeat):
                mine.append(timed(ours, env))
                if args.peer == "dagu":
                    peer.append(timed(theirs, env))
            a = statistics.median(mine)
            if peer:
                b = statistics.median(peer)
                print(
                    f"{name:<10} {a * 1000:7.0f}ms {b * 1000:7.0f}ms {a / b:7.2f}   (target <= 1.00)"
                )
            else:
                print(f"{name:<10} {a * 1000:7.0f}ms")


if __name__ == "__main__":
    main()
