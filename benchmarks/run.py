"""Speed of `dagbox run`, side by side with Dagu on the same YAML files.

Scenarios:
  - engine overhead: 10,000 no-op steps with an in-process fake runtime (dagbox only);
    target under 1 s;
  - chain20: a chain of 20 `true` steps, whole process included; target ratio <= 1.0;
  - fan100: 100 independent `true` steps with maxActiveSteps 100; target ratio <= 1.0;
  with --containers (needs a Docker engine and scripts/ensure-docker's image):
  - root-chain20: a root container and a chain of 20 exec'd `true` steps; target <= 0.2;
  - containers20: 20 step-level containers at once; target ratio <= 1.0, and within 15%
    of a bare aiodocker create/start/wait/delete loop over 20 containers (also a process);
  - output200mb: one step container printing 200 MB: peak RSS of dagbox under 100 MB.

Each process scenario runs dagbox and the peer alternately, several times, and prints
medians and the dagbox/peer ratio. Not a timed test: read the figures.

    benchmarks/peers/get-dagu            # once: Dagu 1.30.2 from the npm registry
    python benchmarks/run.py --peer dagu [--repeat 7] [--containers]

``--baseline SRC`` compares with another dagbox instead (the ``src`` folder of a checkout
of an earlier commit, ``git worktree add /tmp/before REV``): no regression means a ratio
of at most 1.05.
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


IMAGE = os.environ.get("DAGBOX_TEST_IMAGE", "dagbox-test/busybox:latest")
CONTAINER_SCENARIOS = {
    "root-chain20": f"type: chain\ncontainer:\n  image: {IMAGE}\n  pullPolicy: never\nsteps:\n"
    + "".join(f'  - name: s{i}\n    command: "true"\n' for i in range(20)),
    "containers20": "type: graph\nmaxActiveSteps: 20\nsteps:\n"
    + "".join(
        f"  - name: s{i}\n    container:\n      image: {IMAGE}\n      pullPolicy: never\n"
        f'    command: "true"\n'
        for i in range(20)
    ),
}


async def bare_loop(count: int) -> None:
    """The engine's own limit: create/start/wait/delete ``count`` containers at once."""
    import aiodocker
    import aiohttp
    import anyio

    connector = aiohttp.UnixConnector("/var/run/docker.sock", limit=0)
    async with aiodocker.Docker(url="unix://localhost", connector=connector) as client:

        async def one() -> None:
            container = await client.containers.create(
                {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"Init": True}}
            )
            await container.start()
            await container.wait()
            await container.delete(force=True)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    await connector.close()


def peak_rss_mb(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command} failed with exit {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def engine_overhead(steps: int = 10_000) -> float:
    """Seconds for the engine alone to get through ``steps`` no-op steps (no processes)."""
    import anyio

    from dagbox.compiler import compile
    from dagbox.engine.context import RunOptions
    from dagbox.engine.scheduler import Scheduler
    from dagbox.runtimes import Exit, Runtimes
    from dagbox.spec import load

    class Instant:
        async def run(self, command, on_output, stop, trace=None):
            return Exit(0)

    text = "steps:\n" + "".join(
        f"  - {{id: s{i}, run: 'true'{', depends: s' + str(i - 1) if i % 10 else ''}}}\n"
        for i in range(steps)
    )
    dag = load(Path("overhead.yaml"), text).dag
    events: list[object] = []
    engine = Scheduler(
        compile(dag, file=Path("overhead.yaml")),
        Runtimes(Instant()),
        events.append,
        RunOptions(run_id="bench"),
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
    parser.add_argument("--containers", action="store_true", help="also the container scenarios")
    parser.add_argument("--bare-loop", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline", type=Path, help="compare with the dagbox in this src folder, not Dagu"
    )
    args = parser.parse_args()
    if args.baseline is not None:
        args.peer = "baseline"
    if args.bare_loop:
        import anyio

        anyio.run(bare_loop, args.bare_loop)
        return

    overhead = engine_overhead()
    print(f"engine overhead, 10,000 no-op steps (fake runtime): {overhead:.2f} s   (target < 1 s)")

    if args.peer == "dagu" and not args.dagu.exists():
        raise SystemExit(f"no Dagu binary at {args.dagu}: run benchmarks/peers/get-dagu first")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = {**os.environ, "DAGBOX_HOME": str(base / "dagbox"), "DAGU_HOME": str(base / "dagu")}
        peer_name = "before" if args.peer == "baseline" else "dagu"
        header = f"{'scenario':<13} {'dagbox':>9} {peer_name:>9} {'ratio':>7}"
        print(f"\n{header}   (medians of {args.repeat}, whole process)")
        scenarios = {**SCENARIOS, **(CONTAINER_SCENARIOS if args.containers else {})}
        targets = {"root-chain20": 0.2}
        for name, text in scenarios.items():
            file = base / f"{name}.yaml"
            file.write_text(text)
            ours = [sys.executable, "-m", "dagbox", "run", str(file), "--output", "quiet"]
            theirs = [str(args.dagu), "start", str(file)]
            peer_env = env
            if args.peer == "baseline":
                theirs = ours
                peer_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
            timed(ours, env)  # warm caches for both before measuring
            if args.peer != "none":
                timed(theirs, peer_env)
            mine, peer = [], []
            for _ in range(args.repeat):
                mine.append(timed(ours, env))
                if args.peer != "none":
                    peer.append(timed(theirs, peer_env))
            a = statistics.median(mine)
            if peer:
                b = statistics.median(peer)
                target = 1.05 if args.peer == "baseline" else targets.get(name, 1.0)
                print(
                    f"{name:<13} {a * 1000:7.0f}ms {b * 1000:7.0f}ms {a / b:7.2f}   (target <= {target:.2f})"
                )
            else:
                print(f"{name:<13} {a * 1000:7.0f}ms")
            if name == "containers20":
                bare_command = [sys.executable, __file__, "--bare-loop", "20"]
                bare = statistics.median([timed(bare_command, env) for _ in range(args.repeat)])
                print(
                    f"{'  bare loop':<13} {bare * 1000:7.0f}ms {'':>9} {a / bare:7.2f}   (dagbox / bare aiodocker, target <= 1.15)"
                )
        if args.containers:
            file = base / "output200mb.yaml"
            file.write_text(
                f"steps:\n  - id: flood\n    container: {{image: {IMAGE}, pull_policy: never}}\n"
                "    run: yes 0123456789012345678901234567890123456789012345678 | head -c 200000000\n"
            )
            wall, rss = peak_rss_mb(
                [sys.executable, "-m", "dagbox", "run", str(file), "-o", "quiet"], env
            )
            logged = sum(
                p.stat().st_size for p in (base / "dagbox").rglob("*.stdout") if "flood" in p.name
            )
            print(
                f"\noutput200mb: {wall:.1f}s, peak RSS {rss:.0f} MB (target < 100 MB), "
                f"log file {logged / 1e6:.0f} MB of 200 MB"
            )


if __name__ == "__main__":
    main()
