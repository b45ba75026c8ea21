"""`dagbox bench --cluster` on a real local Ray cluster (scripts/ensure-ray-cluster).

Printed side by side, in one run (these machines are shared and noisy):

- throughput of 200 runs of a one-step host DAG whose fake agent sleeps 2 s, 8 slots per
  node, on 1, 2 and 3 worker nodes (targets: >= 1.8x at two nodes, >= 2.6x at three).
  Throughput is runs per second of running (the first run's start to the last run's end,
  from the records); the whole bench's wall time, and the difference (joining the
  cluster, starting an agent per node, summing up), are printed beside it. With 2 s runs,
  200 runs are 25 waves of 8 on one node and 9 of 24 on three: 2.78x at best;
- dagbox's overhead per run (wall time not spent in the step), p50, on the cluster
  against a local bench of the same DAG (target: at most 100 ms more);
- the driver's peak RSS over 1,000 runs (target: < 300 MB);
- 100 step-container runs spread over two nodes' engines: all succeed, both nodes named
  in the results, no container left on either engine.

  python benchmarks/cluster.py [--runs 200] [--rss-runs 1000] [--containers 100]

Starts its own cluster (three workers, each with its own Docker engine) and stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "ensure-ray-cluster"
IMAGE = os.environ.get("DAGBOX_TEST_IMAGE", "dagbox-test/busybox:latest")
NETNS = "/run/netns/dagbox-ray"
STATE = Path(os.environ.get("DAGBOX_RAY_STATE", "/run/dagbox-ray"))


def script(*args: str) -> None:
    subprocess.run([str(SCRIPT), *args], check=True, stdout=subprocess.DEVNULL)


def running_seconds(home: Path) -> float:
    """From the first run's start to the last run's end, from the records the driver keeps:
    the time the bench spent running, without joining the cluster (a once-per-bench cost,
    printed apart)."""
    from datetime import datetime

    starts, ends = [], []
    for record in home.glob("runs/*/*/run.json"):
        data = json.loads(record.read_text())
        starts.append(datetime.fromisoformat(data["started_at"]).timestamp())
        ends.append(datetime.fromisoformat(data["finished_at"]).timestamp())
    return max(ends) - min(starts)


def bench(
    work: Path, name: str, dag: Path, args: list[str], cluster: bool
) -> tuple[float, float, list[dict]]:
    """(wall seconds, peak RSS MB, result lines) of one `dagbox bench` process."""
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DAGBOX_HOME"] = str(work / f"home-{name}")
    command = [
        sys.executable,
        "-m",
        "dagbox",
        "bench",
        str(dag),
        "--out",
        str(out),
        "-o",
        "quiet",
        *args,
    ]
    if cluster:
        address = (STATE / "address").read_text().strip()
        command = ["nsenter", f"--net={NETNS}", *command, "--cluster", address]
    began = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{name} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return wall, usage.ru_maxrss / 1024, lines


def host_dag(work: Path, delay: float) -> Path:
    folder = work / f"host-{delay:g}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "tests" / "fixtures" / "fake-agent", folder / "fake-agent")
    dag = folder / "agent.yaml"
    dag.write_text(
        "name: agent\nparams:\n  - N: '0'\nenv:\n"
        f"  - FAKE_AGENT_DELAY: '{delay:g}'\n"
        "steps:\n  - name: solve\n    command: sh ./fake-agent solve task $N\n"
    )
    return dag


def container_dag(work: Path) -> Path:
    folder = work / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    dag = folder / "agent.yaml"
    dag.write_text(
        "name: agentc\nparams:\n  - N: '0'\nsteps:\n  - name: solve\n"
        f"    container:\n      image: {IMAGE}\n    command: fake-agent solve task $N\n"
    )
    return dag


def matrix(count: int) -> list[str]:
    return ["-m", "N=" + ",".join(str(i) for i in range(count))]


def labelled(worker: int) -> int:
    line = (STATE / f"env-{worker}").read_text().strip()
    host = line.partition("=")[2]
    listed = subprocess.run(
        ["docker", "-H", host, "ps", "-aq", "--filter", "label=dagbox.run_id"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(listed.stdout.split())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rss-runs", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=100)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dagbox-cluster-bench-"))
    script("start", "--workers", "3", "--slots", "8")
    try:
        rows = run_all(work, options)
    finally:
        script("stop")
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def scaling(work: Path, options: argparse.Namespace) -> list[tuple[str, str]]:
    """200 runs of 2 s on 1, 2 and 3 nodes: throughput over the time spent running."""
    rows: list[tuple[str, str]] = []
    slow = host_dag(work, 2)
    walls: dict[int, float] = {}
    script("kill-worker", "2")
    script("kill-worker", "3")
    for nodes in (1, 2, 3):
        if nodes > 1:
            script("start-worker", str(nodes))
        wall, _, lines = bench(
            work, f"scale{nodes}", slow, [*matrix(options.runs), "-c", "24"], True
        )
        assert len(lines) == options.runs and all(line["status"] == "succeeded" for line in lines)
        running = running_seconds(work / f"home-scale{nodes}")
        walls[nodes] = running
        used = len({line["node"] for line in lines})
        rows.append(
            (
                f"{options.runs} runs x 2 s on {nodes} node(s), 8 slots each",
                f"running {running:5.1f} s  {options.runs / running:5.2f} runs/s"
                f"  speed-up {walls[1] / running:4.2f}x  | whole bench {wall:5.1f} s"
                f" (joining and summing up {wall - running:3.1f} s)  nodes used {used}",
            )
        )
    for nodes, want in {2: 1.8, 3: 2.6}.items():
        got = walls[1] / walls[nodes]
        rows.append(
            (
                f"throughput at {nodes} nodes against 1 (target >= {want}x)",
                f"{got:4.2f}x {'met' if got >= want else 'MISSED'}",
            )
        )
    return rows


def run_all(work: Path, options: argparse.Namespace) -> list[tuple[str, str]]:
    rows = scaling(work, options)
    quick = host_dag(work, 0.2)
    _, _, local = bench(work, "local", quick, [*matrix(100), "-c", "8"], False)
    _, _, remote = bench(work, "remote", quick, [*matrix(100), "-c", "8"], True)
    p50_local = statistics.median(line["overhead_ms"] for line in local)
    p50_remote = statistics.median(line["overhead_ms"] for line in remote)
    rows.append(
        (
            "overhead per run p50: local | cluster | more (target <= 100 ms)",
            f"{p50_local:.1f} ms | {p50_remote:.1f} ms | {p50_remote - p50_local:+.1f} ms",
        )
    )
    instant = host_dag(work, 0)
    wall, rss, lines = bench(work, "rss", instant, [*matrix(options.rss_runs), "-c", "24"], True)
    rows.append(
        (
            f"driver peak RSS over {options.rss_runs} runs (target < 300 MB)",
            f"{rss:.0f} MB  ({wall:.1f} s, {len(lines)} results)",
        )
    )
    script("kill-worker", "3")
    wall, _, lines = bench(
        work, "containers", container_dag(work), [*matrix(options.containers), "-c", "16"], True
    )
    ok = sum(line["status"] == "succeeded" for line in lines)
    nodes = sorted({line["node"] for line in lines})
    left = labelled(1) + labelled(2)
    rows.append(
        (
            f"{options.containers} step-container runs over two engines",
            f"{ok}/{len(lines)} succeeded in {wall:.1f} s, nodes {len(nodes)}, containers left {left}",
        )
    )
    return rows


if __name__ == "__main__":
    main()
