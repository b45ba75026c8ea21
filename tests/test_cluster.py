"""`dagbox bench --cluster` against a real local Ray cluster whose nodes have their own engines.

The cluster is ``scripts/ensure-ray-cluster``: a head and two worker nodes on this
machine, each worker with its own Docker engine, all inside a private network namespace
(Ray binds the machine's interface address; test traffic stays on loopback). The bench
driver runs in that namespace too, as a user's would run beside their cluster. Faults are
real: a worker node is SIGKILLed, the driver is SIGKILLed, the driver gets SIGINT.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import REPO, TEST_IMAGE
from tests.helpers import DAGBOX, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "ensure-ray-cluster"
STATE = Path(os.environ.get("DAGBOX_RAY_STATE", "/run/dagbox-ray"))
NETNS = Path("/run/netns/dagbox-ray")
#: A credential every worker node has in its environment (the script gives it), and the
#: driver passes as a param: its value must never be seen by Ray.
NODE_TOKEN = "node-token-7f3a9c1e5b2d4f60"


class RayCluster:
    """The running test cluster: its address, its workers' engines, dagbox beside it."""

    def __init__(self) -> None:
        self.address = (STATE / "address").read_text().strip()

    def engine(self, worker: int) -> str:
        line = (STATE / f"env-{worker}").read_text().strip()
        return line.partition("=")[2]

    def docker(self, worker: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.engine(worker), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def labelled(self, worker: int) -> list[str]:
        return self.docker(worker, "ps", "-aq", "--filter", "label=dagbox.run_id").stdout.split()

    def command(self, *args: str) -> list[str]:
        """dagbox inside the cluster's network namespace (nsenter execs: same pid)."""
        return ["nsenter", f"--net={NETNS}", *DAGBOX, *args]

    def bench(
        self,
        tmp_path: Path,
        dag: Path,
        *args: str,
        address: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``dagbox bench DAG --cluster ADDRESS ARGS`` beside the cluster, to its end."""
        return subprocess.run(
            self.command("bench", str(dag), "--cluster", address or self.address, *args),
            env=env or _env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def started(
        self, tmp_path: Path, dag: Path, sink: IO[str], *args: str
    ) -> subprocess.Popen[str]:
        """The same, started: its stdout into ``sink``, its stderr to read at its end."""
        return subprocess.Popen(
            self.command("bench", str(dag), "--cluster", self.address, *args),
            env=_env(tmp_path),
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )

    def script(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([str(SCRIPT), *args], check=True, timeout=timeout, capture_output=True)


def _cluster_problem() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install -e '.[ray]')"
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("dockerd") is None:
        return "the test cluster needs root, nsenter and dockerd"
    return None


@pytest.fixture(scope="session")
def ray_cluster() -> object:
    problem = _cluster_problem()
    if problem is not None:
        if os.environ.get("DAGBOX_REQUIRE_RAY") == "1":
            pytest.fail(f"a Ray cluster is required here but {problem}", pytrace=False)
        pytest.skip(problem)
    env = {**os.environ, "DAGBOX_RAY_NODE_ENV": f"NODE_TOKEN={NODE_TOKEN}"}
    # A fresh cluster: one left up may lack the nodes' env, and Ray remembers past jobs.
    subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=300, check=False)
    started = subprocess.run(
        [str(SCRIPT), "start", "--workers", "2", "--slots", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"the test cluster did not start:\n{started.stderr[-3000:]}", pytrace=False)
    cluster = RayCluster()
    left: dict[int, list[str]] = {}
    try:
        yield cluster
        left = {worker: cluster.labelled(worker) for worker in (1, 2)}
    finally:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=300, check=False)
    if any(left.values()):  # stop removes them: say so first
        pytest.fail(f"cluster tests leaked containers on the nodes' engines: {left}")


@pytest.fixture
def cluster(ray_cluster: RayCluster) -> RayCluster:
    """The cluster with both workers up (a test before may have killed one)."""
    for worker in (1, 2):
        ray_cluster.script("start-worker", str(worker), timeout=180)
    return ray_cluster


def _dag(folder: Path, text: str, name: str = "bench.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DAGU_"))}
    env["DAGBOX_HOME"] = str(tmp_path / "home")
    return env


def _dagbox(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """dagbox on this side of the namespace (nothing here reaches a cluster)."""
    return subprocess.run(
        [*DAGBOX, *args],
        env=env or _env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def _results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ran_on(cluster: RayCluster, worker: int, since: float) -> set[str]:
    """Run ids of the dagbox containers the worker's own engine created since ``since``."""
    events = cluster.docker(
        worker,
        "events",
        "--since",
        str(int(since) - 1),
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        "event=create",
        "--filter",
        "label=dagbox.run_id",
        "--format",
        '{{index .Actor.Attributes "dagbox.run_id"}}',
    )
    return set(events.stdout.split())


# --- a bench across nodes ---------------------------------------------------------------------


def test_runs_spread_over_nodes_each_on_its_own_engine(cluster, tmp_path):
    folder = tmp_path / "project"
    dag = _dag(
        folder,
        f"""
        name: spread
        params:
          - N: "0"
        container:
          image: {TEST_IMAGE}
          volumes: [".:/workspace"]
        steps:
          - name: read
            command: sh -c 'cat /workspace/input.txt; echo "n=$N"'
        """,
    )
    (folder / "input.txt").write_text("from the driver's folder\n")
    out = tmp_path / "out"
    since = time.time()
    done = cluster.bench(
        tmp_path,
        dag,
        "-m",
        "N=" + ",".join(map(str, range(12))),
        "-c",
        "12",
        "--out",
        str(out),
        "-o",
        "prefix",
    )
    assert done.returncode == 0, done.stderr
    lines = _results(out)
    assert len(lines) == 12
    assert {line["status"] for line in lines} == {"succeeded"}
    nodes = Counter(line["node"] for line in lines)
    assert len(nodes) == 2, nodes  # 12 runs at once do not fit on one node's 8 slots
    # Each run's container was made by the engine of the node its result names.
    by_engine = {worker: _ran_on(cluster, worker, since) for worker in (1, 2)}
    assert set().union(*by_engine.values()) == {line["run_id"] for line in lines}
    for worker, run_ids in by_engine.items():
        assert len({line["node"] for line in lines if line["run_id"] in run_ids}) == 1, worker
    # The driver's terminal got each run's lines, labelled with its node, as they came.
    for line in lines:
        assert f"#0 @{line['node']}] read | from the driver's folder" in done.stdout
    # The whole record of each run is here, under the driver's DAGBOX_HOME.
    home = tmp_path / "home"
    for line in lines:
        record = home / "runs" / "spread" / line["run_id"]
        assert json.loads((record / "run.json").read_text())["status"] == "succeeded"
        assert (record / "events.jsonl").read_text().count("run.finished") == 1
        logs = _dagbox(tmp_path, "logs", line["run_id"], check=True)
        assert "from the driver's folder" in logs.stdout
        assert f"n={line['params']['N']}" in logs.stdout
    assert cluster.labelled(1) == cluster.labelled(2) == []
    # --resume on the cluster: every key is known, nothing runs again.
    again = cluster.bench(
        tmp_path,
        dag,
        "-m",
        "N=" + ",".join(map(str, range(12))),
        "--out",
        str(out),
        "--resume",
        "-o",
        "quiet",
    )
    assert again.returncode == 0, again.stderr
    assert "0 runs now, 12 already done" in again.stdout
    assert len(_results(out)) == 12


# --- faults -----------------------------------------------------------------------------------


def _started_on(output: Path) -> set[str]:
    """Node labels of the runs whose step has started, from the driver's -o prefix lines."""
    text = output.read_text() if output.exists() else ""
    return {
        line.split(" @", 1)[1].split("]", 1)[0] for line in text.splitlines() if "● started" in line
    }


def test_a_killed_node_s_runs_run_again_elsewhere_and_its_containers_go(cluster, tmp_path):
    dag = _dag(
        tmp_path / "project",
        f"""
        name: lost
        params:
          - N: "0"
        steps:
          - name: work
            container:
              image: {TEST_IMAGE}
            command: sh -c 'sleep 4; echo "n=$N"'
        """,
    )
    out, stdout = tmp_path / "out", tmp_path / "driver.out"
    with stdout.open("w") as sink:
        driver = cluster.started(
            tmp_path,
            dag,
            sink,
            "-m",
            "N=" + ",".join(map(str, range(24))),
            "-c",
            "16",
            "--out",
            str(out),
            "-o",
            "prefix",
        )
        try:
            wait_for(lambda: len(_started_on(stdout)) == 2, 120, "runs started on both nodes")
            wait_for(lambda: cluster.labelled(2), 60, "containers on worker 2's engine")
            cluster.script("kill-worker", "2")
            _, err = driver.communicate(timeout=300)
        finally:
            driver.kill()
    assert driver.returncode == 0, err
    assert "is lost" in err or "was lost" in stdout.read_text()
    lines = _results(out)
    keys = Counter(line["key"] for line in lines)
    assert len(keys) == 24 and set(keys.values()) == {1}  # every run exactly once
    assert {line["status"] for line in lines} == {"succeeded"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cells"] and sum(c["runs"] for c in summary["cells"]) == 24
    # The killed node left containers on its engine; it removes them when it next serves.
    left = cluster.labelled(2)
    assert left, "the killed node's runs had containers running"
    cluster.script("start-worker", "2", timeout=180)
    again = cluster.bench(
        tmp_path,
        dag,
        "-m",
        "N=100,101,102,103,104,105,106,107,108,109",
        "-c",
        "16",
        "--out",
        str(tmp_path / "out2"),
        "-o",
        "quiet",
    )
    assert again.returncode == 0, again.stderr
    assert cluster.labelled(2) == [] and cluster.labelled(1) == []


def test_a_killed_driver_resumes_without_running_a_finished_run_again(cluster, tmp_path):
    dag = _dag(
        tmp_path / "project",
        """
        name: resumed
        params:
          - N: "0"
        steps:
          - name: work
            command: sh -c 'sleep 1; echo "n=$N"'
        """,
    )
    out = tmp_path / "out"
    values = "N=" + ",".join(map(str, range(30)))
    args = [
        "bench",
        str(dag),
        "--cluster",
        cluster.address,
        "-m",
        values,
        "-c",
        "4",
        "--out",
        str(out),
    ]
    driver = subprocess.Popen(
        cluster.command(*args, "-o", "quiet"),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(_results(out)) >= 6, 120, "some results")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        driver.kill()
    before = {line["key"] for line in _results(out)}
    assert 6 <= len(before) < 30
    resumed = subprocess.run(
        cluster.command(*args, "--resume", "-o", "quiet"),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    lines = _results(out)
    keys = Counter(line["key"] for line in lines)
    assert len(keys) == 30 and set(keys.values()) == {1}, keys
    assert "already done (--resume)" in resumed.stdout
    ran_now = {line["key"] for line in lines} - before
    assert len(ran_now) == 30 - len(before)


def test_ctrl_c_stops_every_run_on_every_node(cluster, tmp_path):
    dag = _dag(
        tmp_path / "project",
        f"""
        name: stopped
        params:
          - N: "0"
        steps:
          - name: work
            container:
              image: {TEST_IMAGE}
            command: sh -c 'echo "n=$N"; sleep 120'
        """,
    )
    out, stdout = tmp_path / "out", tmp_path / "driver.out"
    with stdout.open("w") as sink:
        driver = cluster.started(
            tmp_path,
            dag,
            sink,
            "-m",
            "N=" + ",".join(map(str, range(12))),
            "-c",
            "12",
            "--out",
            str(out),
            "-o",
            "prefix",
        )
        try:
            wait_for(lambda: stdout.read_text().count("| n=") == 12, 120, "12 runs printing")
            assert cluster.labelled(1) and cluster.labelled(2)
            began = time.monotonic()
            driver.send_signal(signal.SIGINT)
            _, err = driver.communicate(timeout=120)
            took = time.monotonic() - began
        finally:
            driver.kill()
    assert driver.returncode == 130, err
    assert took < 60, took
    assert cluster.labelled(1) == [] and cluster.labelled(2) == []
    assert _results(out) == []  # an interrupted run is never half-counted
    records = list((tmp_path / "home" / "runs" / "stopped").glob("*/run.json"))
    assert len(records) == 12
    assert {json.loads(r.read_text())["status"] for r in records} == {"aborted"}


def test_an_unreachable_cluster_is_one_line_and_exit_3(tmp_path):
    dag = _dag(tmp_path, "steps:\n  - name: a\n    command: 'true'\n")
    began = time.monotonic()
    done = _dagbox(
        tmp_path, "bench", str(dag), "--cluster", "127.0.0.1:9", "--out", str(tmp_path / "out")
    )
    assert done.returncode == 3
    assert time.monotonic() - began < 30
    assert done.stderr.strip().splitlines() == [
        "dagbox: cannot reach the Ray cluster at 127.0.0.1:9: Connection refused"
    ]


def test_auto_without_ray_address_is_one_line_and_exit_3(tmp_path):
    dag = _dag(tmp_path, "steps:\n  - name: a\n    command: 'true'\n")
    env = {k: v for k, v in _env(tmp_path).items() if k != "RAY_ADDRESS"}
    done = _dagbox(
        tmp_path, "bench", str(dag), "--cluster", "auto", "--out", str(tmp_path / "o"), env=env
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "dagbox: --cluster auto reads RAY_ADDRESS, which is not set"
    ]


def test_secret_params_with_several_values_are_refused_before_joining(tmp_path):
    dag = _dag(tmp_path, "params:\n  - API_KEY: x\nsteps:\n  - name: a\n    command: 'true'\n")
    done = _dagbox(
        tmp_path,
        "bench",
        str(dag),
        "--cluster",
        "127.0.0.1:9",
        "-m",
        "API_KEY=sk-first-1234,sk-second-5678",
        "--out",
        str(tmp_path / "o"),
    )
    assert done.returncode == 2
    assert "API_KEY takes 2 values" in done.stderr
    assert "sk-first" not in done.stderr + done.stdout


# --- credentials, versions, addresses ---------------------------------------------------------


def _ray_visible_text(cluster: RayCluster) -> str:
    """What Ray keeps and shows: its state API (what the dashboard lists) and its files."""
    script = textwrap.dedent(
        f"""
        import json, ray
        from ray.util import state
        ray.init({cluster.address!r}, logging_level="ERROR", log_to_driver=False)
        shown = []
        for lister in (state.list_tasks, state.list_actors, state.list_jobs, state.list_objects,
                       state.list_workers, state.list_nodes):
            shown.append(json.dumps([str(item) for item in lister(detail=True, limit=10000)]))
        print("\\n".join(shown))
        """
    )
    listed = subprocess.run(
        ["nsenter", f"--net={NETNS}", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = [listed.stdout]
    for root in (Path("/tmp/dagbox-ray"), Path("/dev/shm")):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    found.append(path.read_bytes().decode(errors="replace"))
                except OSError:
                    continue
    return "\n".join(found)


def test_secret_values_never_reach_ray(cluster, tmp_path):
    driver_only = "driver-only-secret-9d8e7f6a5b4c"
    dag = _dag(
        tmp_path / "project",
        """
        name: secretive
        params:
          - NODE_TOKEN: none
          - N: "0"
        steps:
          - name: use
            command: sh -c 'test ${#NODE_TOKEN} -eq 27 && echo "token $NODE_TOKEN n=$N"'
        """,
    )
    out = tmp_path / "out"
    env = {**_env(tmp_path), "DRIVER_API_KEY": driver_only}
    # Files in the DAG's folder that hold secrets stay on the driver: a tasks file that
    # gives NODE_TOKEN, and the DAG's dotenv file.
    in_dotenv = "dotenv-secret-1c2d3e4f5a6b"
    (dag.parent / ".env").write_text(f"DOTENV_TOKEN={in_dotenv}\n")
    tasks = dag.parent / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t", "N": "5", "NODE_TOKEN": NODE_TOKEN}) + "\n")
    by_task = cluster.bench(
        tmp_path,
        dag,
        "--tasks",
        str(tasks),
        "--out",
        str(tmp_path / "out-tasks"),
        "-o",
        "quiet",
        env=env,
    )
    assert by_task.returncode == 0, by_task.stderr
    assert _results(tmp_path / "out-tasks")[0]["status"] == "succeeded"
    tasks.unlink()  # the next bench does not know it for a tasks file: it would upload it
    done = cluster.bench(
        tmp_path,
        dag,
        "-m",
        f"NODE_TOKEN={NODE_TOKEN}",
        "-m",
        "N=1,2,3,4",
        "--out",
        str(out),
        "-o",
        "prefix",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = _results(out)
    assert [line["status"] for line in lines] == ["succeeded"] * 4
    assert "token *** n=" in done.stdout  # the node's value, masked on the node
    seen = _ray_visible_text(cluster)
    assert "secretive" in seen or "NodeAgent" in seen  # the listing did see the bench
    assert "bench.yaml" in seen  # the DAG's folder did reach the nodes (unpacked there)
    assert NODE_TOKEN not in seen
    assert driver_only not in seen
    assert in_dotenv not in seen
    for line in lines:
        record = (tmp_path / "home" / "runs" / "secretive" / line["run_id"]).rglob("*")
        for path in record:
            if path.is_file():
                assert NODE_TOKEN not in path.read_text(errors="replace")


def test_nodes_without_the_driver_s_secret_value_are_not_used(cluster, tmp_path):
    dag = _dag(
        tmp_path / "project",
        "params:\n  - NODE_TOKEN: none\nsteps:\n  - name: use\n    command: 'true'\n",
    )
    out = tmp_path / "out"
    began = time.monotonic()
    done = cluster.bench(
        tmp_path, dag, "-m", "NODE_TOKEN=not-the-nodes-value", "--out", str(out), "-o", "quiet"
    )
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - began < 30
    (said,) = done.stderr.strip().splitlines()  # one line, naming each node's reason
    assert said.startswith("dagbox: no node could serve the bench: ")
    assert said.count("its NODE_TOKEN is not the value the driver has; not used") == 2
    assert "not-the-nodes-value" not in done.stderr + done.stdout
    assert _results(out) == []


def test_a_node_running_another_dagbox_version_is_refused_in_one_line(cluster, tmp_path):
    skew = tmp_path / "skew"
    shutil.copytree(REPO / "src" / "dagbox", skew / "dagbox")
    init = skew / "dagbox" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.1-skew+'))
    cluster.script("kill-worker", "2")
    try:
        subprocess.run(
            [str(SCRIPT), "start-worker", "2"],
            env={**os.environ, "DAGBOX_RAY_WORKER_ENV": f"PYTHONPATH={skew}"},
            check=True,
            capture_output=True,
            timeout=180,
        )
        dag = _dag(
            tmp_path / "project", "params:\n  - N: '0'\nsteps:\n  - name: a\n    command: 'true'\n"
        )
        out = tmp_path / "out"
        done = cluster.bench(tmp_path, dag, "-m", "N=1,2,3,4,5,6", "--out", str(out), "-o", "quiet")
    finally:
        cluster.script("kill-worker", "2")
        cluster.script("start-worker", "2", timeout=180)
    assert done.returncode == 0, done.stderr
    refused = [line for line in done.stderr.splitlines() if "skew" in line]
    assert len(refused) == 1, done.stderr
    assert "runs dagbox 0.0.1-skew+" in refused[0] and "not used" in refused[0]
    lines = _results(out)
    assert len(lines) == 6 and len({line["node"] for line in lines}) == 1


def test_a_bench_through_ray_client(cluster, tmp_path):
    dag = _dag(
        tmp_path / "project", "params:\n  - N: '0'\nsteps:\n  - name: a\n    command: echo n=$N\n"
    )
    out = tmp_path / "out"
    done = cluster.bench(
        tmp_path,
        dag,
        "-m",
        "N=1,2,3",
        "--out",
        str(out),
        "-o",
        "prefix",
        address="ray://127.0.0.1:10001",
    )
    assert done.returncode == 0, done.stderr
    lines = _results(out)
    assert [line["status"] for line in lines] == ["succeeded"] * 3
    assert all(line["node"] for line in lines)
    assert done.stdout.count("| n=") == 3


def _in_session(sid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_a_cluster_without_slots_is_one_line_and_exit_3(tmp_path):
    problem = _cluster_problem()
    if problem is not None:
        pytest.skip(problem)
    ray = Path(sys.executable).with_name("ray")
    # Short: Ray's unix sockets live under it, and their paths may not pass 107 bytes.
    temp, said = Path(tempfile.mkdtemp(prefix="dbx-ray-", dir="/tmp")), tmp_path / "head.out"
    with said.open("w") as out:
        head = subprocess.Popen(
            [
                "unshare",
                "--net",
                "sh",
                "-c",
                f"ip link set lo up && exec {ray} start --head --block --port 6400 --num-cpus 1 "
                f"--include-dashboard=false --disable-usage-stats --temp-dir {temp}",
            ],
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        netns = f"/proc/{head.pid}/ns/net"
        wait_for(lambda: "block forever" in said.read_text(), 60, "the head")
        dag = _dag(tmp_path / "project", "steps:\n  - name: a\n    command: 'true'\n")
        began = time.monotonic()
        done = subprocess.run(
            [
                "nsenter",
                f"--net={netns}",
                *DAGBOX,
                "bench",
                str(dag),
                "--cluster",
                "127.0.0.1:6400",
                "--out",
                str(tmp_path / "out"),
            ],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        took = time.monotonic() - began
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and all it started: one session
        head.wait(timeout=30)
        subprocess.run(["pkill", "-9", "-f", str(temp)], check=False)
        wait_for(lambda: not _in_session(head.pid), 30, "the head's processes to go")
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 3, done.stderr
    assert took < 30, took
    assert done.stderr.strip().splitlines() == [
        "dagbox: no node of the Ray cluster offers dagbox_slots "
        """(start workers with: ray start --resources '{"dagbox_slots": 8}')"""
    ]
