"""Scale of `dagbox bench` (issue: bench).

- 200 runs of a one-step DAG with the fake agent in step-level containers at
  --concurrency 16: throughput within 10% of a bare aiodocker create/start/wait/delete
  loop at the same concurrency (both whole processes, alternately), and the dagbox
  process under 200 MB RSS;
- 1,000 runs of a host fake agent at --concurrency 64: orchestration overhead (wall time
  not spent in the agent process) under 10 ms per attempt at p50.

  python benchmarks/bench.py [--containers 200] [--host 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("DAGBOX_TEST_IMAGE", "dagbox-test/busybox:latest")
FAKE = REPO / "tests" / "fixtures" / "fake-agent"


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one process."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - began, usage.ru_maxrss / 1024


async def bare(count: int, concurrency: int) -> None:
    import aiodocker
    import aiohttp
    import anyio

    connector = aiohttp.UnixConnector("/var/run/docker.sock", limit=0)
    async with aiodocker.Docker(url="unix://localhost", connector=connector) as client:
        slots = anyio.Semaphore(concurrency)

        async def one() -> None:
            async with slots:
                container = await client.containers.create(
                    {
                        "Image": IMAGE,
                        "Cmd": ["fake-agent", "hi"],
                        "HostConfig": {"Init": True, "NetworkMode": "none"},
                    }
                )
                await container.start()
                await container.wait()
                await container.delete(force=True)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    await connector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--host", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bare", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        import anyio

        anyio.run(bare, *args.bare)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = {**os.environ, "DAGBOX_HOME": str(base / "home")}
        if args.containers:
            dag = base / "containers.yaml"
            dag.write_text(
                "params: [N=0]\nsteps:\n  - id: agent\n    action: harness.run\n"
                f"    container: {{image: {IMAGE}, pull_policy: never, network: none}}\n"
                "    with: {provider: claude, prompt: 'task ${params.N}'}\n"
            )
            ours, theirs, rss = [], [], 0.0
            for round_ in range(args.rounds):
                out = base / f"c{round_}"
                command = [
                    sys.executable,
                    "-m",
                    "dagbox",
                    "bench",
                    str(dag),
                    "--repeat",
                    str(args.containers),
                    "--concurrency",
                    "16",
                    "--out",
                    str(out),
                    "--output",
                    "quiet",
                ]
                wall, peak = measured(command, env)
                ours.append(wall)
                rss = max(rss, peak)
                theirs.append(
                    measured([sys.executable, __file__, "--bare", str(args.containers), "16"], env)[
                        0
                    ]
                )
            a, b = min(ours), min(theirs)
            print(
                f"{args.containers} step-container runs at -c 16: dagbox {args.containers / a:.2f} runs/s, "
                f"bare aiodocker {args.containers / b:.2f} containers/s, ratio {b / a:.2f} "
                f"(target >= 0.90); dagbox peak RSS {rss:.0f} MB (target < 200 MB)"
            )
        if args.host:
            dag = base / "host.yaml"
            dag.write_text(
                f"params: [N=0]\nharnesses:\n  fake: {{binary: {FAKE}}}\nsteps:\n"
                "  - {id: agent, action: harness.run, with: {provider: fake, prompt: 'task ${params.N}'}}\n"
            )
            out = base / "host"
            command = [
                sys.executable,
                "-m",
                "dagbox",
                "bench",
                str(dag),
                "--repeat",
                str(args.host),
                "--concurrency",
                "64",
                "--out",
                str(out),
                "--output",
                "quiet",
            ]
            wall, peak = measured(command, env)
            (row,) = json.loads((out / "summary.json").read_text())["cells"]
            print(
                f"{args.host} host runs at -c 64: {wall:.1f} s ({args.host / wall:.0f} runs/s), "
                f"orchestration overhead p50 {row['overhead_p50_ms']:.1f} ms per attempt (target < 10 ms), "
                f"peak RSS {peak:.0f} MB"
            )


if __name__ == "__main__":
    main()
