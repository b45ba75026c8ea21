"""Speed of harness steps (issue: harness.run).

- rendering the argv of 10,000 harness steps: target under 100 ms;
- per-try overhead in the shared container, with the fake agent exiting at once: target
  at most 20 ms above a bare aiodocker exec round trip measured in the same run
  (needs a Docker engine and scripts/ensure-docker's image).

  python benchmarks/harness.py [--tries 30] [--no-containers]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

IMAGE = os.environ.get("DAGBOX_TEST_IMAGE", "dagbox-test/busybox:latest")


def render_10k(with_fallback: bool = True) -> float:
    from dagbox.harness.argv import merge_defaults, render, tries
    from dagbox.harness.catalog import registry

    providers = registry({})
    names = ["claude", "codex", "gemini", "aider", "goose", "cursor"]
    steps = [
        {
            "provider": names[i % len(names)],
            "prompt": f"Fix test number {i} in module {i % 37}",
            "model": "large",
            "max_turns": str(i % 9 + 1),
            "temperature": "0.5",
            "verbose": "true",
            "tags": ["a", "b"],
            **(
                {"fallback": [{"provider": "codex", "sandbox": "workspace-write"}]}
                if with_fallback
                else {}
            ),
        }
        for i in range(10_000)
    ]
    defaults = {"provider": "claude", "permission_mode": "acceptEdits"}
    started = time.perf_counter()
    for options in steps:
        for attempt in tries(merge_defaults(options, defaults)):
            render(providers[attempt["provider"]], attempt)
    return time.perf_counter() - started


async def bare_exec_ms(count: int) -> float:
    """Median of create+start+read+inspect of `true` in a running container."""
    import aiodocker
    import aiohttp
    import anyio

    connector = aiohttp.UnixConnector("/var/run/docker.sock", limit=0)
    async with aiodocker.Docker(url="unix://localhost", connector=connector) as client:
        container = await client.containers.create(
            {
                "Image": IMAGE,
                "Cmd": ["sh", "-c", "while :; do sleep 3600; done"],
                "HostConfig": {"Init": True},
            }
        )
        await container.start()
        times = []
        try:
            for _ in range(count):
                began = time.perf_counter()
                execution = await container.exec(["fake-agent", "hi"], stdout=True, stderr=True)
                async with execution.start(detach=False) as stream:
                    while await stream.read_out() is not None:
                        pass
                await execution.inspect()
                times.append((time.perf_counter() - began) * 1000)
        finally:
            with anyio.CancelScope(shield=True):
                await container.delete(force=True)
    await connector.close()
    return statistics.median(times)


def dagbox_try_ms(count: int) -> float:
    """Median try duration (from the journal) of fake-agent tries in the shared container."""
    import anyio

    from dagbox.compiler import compile
    from dagbox.runner import RunRequest, execute
    from dagbox.spec import load

    with tempfile.TemporaryDirectory() as tmp:
        dag = Path(tmp) / "tries.yaml"
        steps = "".join(
            f"  - {{id: s{i}, action: harness.run, with: {{provider: fake, prompt: hi}}}}\n"
            for i in range(count)
        )
        dag.write_text(
            f"type: chain\ncontainer: {{image: {IMAGE}, pull_policy: never}}\n"
            "harnesses: {fake: {binary: fake-agent}}\nsteps:\n" + steps
        )
        result = anyio.run(
            execute,
            RunRequest(
                plan=compile(load(dag).dag, file=dag), run_id="bench", home=Path(tmp) / "home"
            ),
        )
        assert result.status == "succeeded", result.error
        durations = []
        for journal in (Path(tmp) / "home").rglob("attempts/*/1.jsonl"):
            for line in journal.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "try.finished":
                    durations.append(event["duration_ms"])
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--no-containers", action="store_true")
    args = parser.parse_args()
    single = statistics.median(render_10k(with_fallback=False) for _ in range(5))
    both = statistics.median(render_10k() for _ in range(5))
    print(f"argv for 10,000 harness steps: {single * 1000:.0f} ms   (target < 100 ms)")
    print(f"  each with a fallback too (20,000 argvs): {both * 1000:.0f} ms")
    if args.no_containers:
        return
    import anyio

    bare, ours = [], []
    for _ in range(3):  # alternate, in one run: the engine's speed drifts
        bare.append(anyio.run(bare_exec_ms, args.tries))
        ours.append(dagbox_try_ms(args.tries))
    a, b = statistics.median(ours), statistics.median(bare)
    print(
        f"shared container, per try: dagbox {a:.1f} ms, bare aiodocker exec {b:.1f} ms, "
        f"overhead {a - b:+.1f} ms   (target <= +20 ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
