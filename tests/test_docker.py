"""The container runtime against real engines: shared, per-step and named containers.

Every test runs twice: against Docker, and against Podman's Docker-compatible
API (``DAGU_CONTAINER_RUNTIME=podman``). The offline test image stands in for
every image; ``alpine:3.20`` is that image under another tag (no registry is
reachable here), made by the fixture below.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_IMAGE, Engine
from tests.helpers import DAGBOX, Ran, run_text, wait_for

pytestmark = pytest.mark.docker
IMAGE = TEST_IMAGE
_current: list[Engine] = []


@pytest.fixture(autouse=True)
def engine(container_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Point dagbox (in process and in subprocesses) at the engine under test."""
    for key, value in container_engine.env.items():
        monkeypatch.setenv(key, value)
    _current[:] = [container_engine]
    return container_engine


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The CLI of the engine under test (docker or podman)."""
    return _current[0](*args, check=check)


def dagbox_containers() -> list[str]:
    return _current[0].labelled()


@pytest.fixture
def alpine_stand_in(engine):
    """``alpine:3.20`` for the seed example: the offline image under that tag (a test stand-in)."""
    had = docker("image", "inspect", "alpine:3.20", check=False).returncode == 0
    docker("tag", IMAGE, "alpine:3.20")
    yield "alpine:3.20"
    if not had:
        docker("rmi", "alpine:3.20", check=False)


@pytest.fixture
def named_container(engine):
    name = f"dagbox-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--init", "--name", name, IMAGE, "sh", "-c", "while :; do sleep 3600; done")
    yield name
    docker("rm", "-f", name, check=False)


def test_seed_example_end_to_end(tmp_path, alpine_stand_in):
    shutil.copy(REPO / "examples" / "docker-sandbox.yaml", tmp_path / "docker-sandbox.yaml")
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    out = subprocess.run(
        [*DAGBOX, "run", "docker-sandbox.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "read_file  | from command step" in out.stdout
    assert (tmp_path / "shared.txt").read_text() == "from command step\n"
    assert dagbox_containers() == []


def test_redirect_in_the_shared_container_writes_the_workspace(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        container: {{image: {IMAGE}, volumes: ['.:/workspace'], working_dir: /workspace}}
        steps:
          - id: write
            run: echo "a | b" > out.txt && echo piped | tr a-z A-Z >> out.txt
        """,
    )
    assert ran.result.status == "succeeded", ran.step("write").error
    assert (tmp_path / "out.txt").read_text() == "a | b\nPIPED\n"


def test_root_and_step_containers_are_isolated(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        type: chain
        container: {{image: {IMAGE}}}
        steps:
          - {{id: mark, run: touch /tmp/root-mark}}
          - {{id: own, run: 'test ! -e /tmp/root-mark && echo isolated', container: {{image: {IMAGE}}}}}
          - {{id: again, run: 'test -e /tmp/root-mark && echo shared'}}
        """,
    )
    assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
    assert (ran.stdout("own"), ran.stdout("again")) == ("isolated\n", "shared\n")


def test_exec_mode_runs_in_the_named_container_and_leaves_it(tmp_path, named_container):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: inside
            container: {named_container}
            run: hostname
          - id: as_nobody
            container: {{exec: {named_container}, user: '65534', working_dir: /tmp, env: [X=1]}}
            run: echo "$(id -u) $(pwd) $X"
        """,
    )
    assert ran.result.status == "succeeded"
    assert ran.stdout("as_nobody") == "65534 /tmp 1\n"
    assert docker("inspect", "-f", "{{.State.Running}}", named_container).stdout.strip() == "true"


def test_root_exec_mode(tmp_path, named_container):
    ran = run_text(
        tmp_path, f"container: {named_container}\nsteps:\n  - {{id: a, run: 'echo in-named'}}\n"
    )
    assert ran.stdout("a") == "in-named\n"


def test_exec_mode_waits_for_a_container_that_never_runs(tmp_path, monkeypatch):
    from dagbox.runtimes import docker as docker_runtime

    monkeypatch.setattr(docker_runtime, "READY_TIMEOUT", 1.0)
    ran = run_text(tmp_path, "steps:\n  - {id: a, container: no-such-container-xyz, run: 'true'}\n")
    assert ran.status("a") == "failed"
    assert "container no-such-container-xyz is not running" in ran.step("a").error


@pytest.mark.parametrize(
    ("policy", "image", "ok", "message"),
    [
        ("never", IMAGE, True, None),
        ("missing", IMAGE, True, None),
        ("false", IMAGE, True, None),
        (
            "never",
            "dagbox-test/absent:1",
            False,
            "image dagbox-test/absent:1 is not present and pull_policy is never",
        ),
        ("missing", "dagbox-test/absent:1", False, "cannot pull dagbox-test/absent:1"),
        ("always", IMAGE, False, f"cannot pull {IMAGE}"),
        ("true", IMAGE, False, f"cannot pull {IMAGE}"),
        ("fallback", IMAGE, True, None),
        ("fallback", "dagbox-test/absent:1", False, "cannot pull dagbox-test/absent:1"),
    ],
)
def test_pull_policies(tmp_path, policy, image, ok, message):
    ran = run_text(
        tmp_path,
        f"steps:\n  - id: a\n    run: echo ran\n    container: {{image: '{image}', pull_policy: {policy}}}\n",
    )
    step = ran.step("a")
    assert (step.status == "succeeded") == ok, step.error
    if message:
        assert message in step.error
        assert step.error.count("\n") == 0


def test_shared_container_setup_failure_fails_the_run_before_any_step(tmp_path):
    ran = run_text(
        tmp_path,
        """
        container: {image: 'dagbox-test/absent:1', pull_policy: never}
        handler_on: {exit: {run: 'true'}}
        steps:
          - {id: a, run: 'true'}
        """,
    )
    assert ran.result.status == "failed"
    assert "image dagbox-test/absent:1 is not present" in ran.result.error
    assert ran.status("a") == "not_started"
    assert ran.record["handlers"]["exit"]["status"] == "not_started"


def test_volume_forms(tmp_path, monkeypatch):
    volume = f"dagbox-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("from-host\n")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        ran = run_text(
            tmp_path,
            f"""
            type: chain
            steps:
              - id: relative
                container: {{image: {IMAGE}, volumes: ['./data:/d:ro']}}
                run: cat /d/in.txt && ! touch /d/nope 2>/dev/null
              - id: variable
                container: {{image: {IMAGE}, volumes: ['$DATA_DIR:/d', '~/data:/h']}}
                run: cat /d/in.txt /h/in.txt && echo written > /d/out.txt
              - id: named_write
                container: {{image: {IMAGE}, volumes: ['{volume}:/v']}}
                run: echo kept > /v/file
              - id: named_read
                container: {{image: {IMAGE}, volumes: ['{volume}:/v:ro']}}
                run: cat /v/file
            """,
        )
        assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
        assert ran.stdout("relative") == "from-host\n"
        assert ran.stdout("variable") == "from-host\nfrom-host\n"
        assert (tmp_path / "data" / "out.txt").read_text() == "written\n"
        assert ran.stdout("named_read") == "kept\n"
    finally:
        docker("volume", "rm", "-f", volume, check=False)


def test_unset_variable_in_a_volume_source_fails_the_step(tmp_path):
    ran = run_text(
        tmp_path,
        f"steps:\n  - {{id: a, run: 'true', container: {{image: {IMAGE}, volumes: ['$NOPE_NOT_SET/x:/x']}}}}\n",
    )
    assert "$NOPE_NOT_SET is not set" in ran.step("a").error


def test_network_none_and_user(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: net
            container: {{image: {IMAGE}, network: none}}
            run: ls /sys/class/net
          - id: user
            container: {{image: {IMAGE}, user: '65534:65534'}}
            run: id -u; id -g
        """,
    )
    assert ran.stdout("net") == "lo\n"
    assert ran.stdout("user") == "65534\n65534\n"


def test_env_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOST_ONLY", "leak")
    ran = run_text(
        tmp_path,
        f"""
        params: [P=param]
        env: [SHARED=dag, DAGVAR=dag]
        container:
          image: {IMAGE}
          env: [SHARED=container, CONTAINER_ONLY=c]
        steps:
          - id: root
            env: [STEPVAR=step]
            run: echo "$SHARED $DAGVAR $CONTAINER_ONLY $STEPVAR $P $DAG_RUN_STEP_NAME [${{HOST_ONLY:-}}] [${{DAG_RUN_WORK_DIR:-}}]"
          - id: own
            env: [SHARED=step, STEPVAR=step]
            container: {{image: {IMAGE}, env: [SHARED=container]}}
            run: echo "$SHARED $DAGVAR $STEPVAR $P [${{HOST_ONLY:-}}]"
        """,
    )
    assert (
        ran.stdout("root") == "dag dag c step param root [] []\n"
    )  # exec env overlays the container's
    assert (
        ran.stdout("own") == "container dag step param []\n"
    )  # in a step container, container env wins


def test_stdin_in_a_step_container_and_in_the_shared_container(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        container: {{image: {IMAGE}}}
        harnesses:
          catter: {{binary: cat, prompt_mode: stdin}}
        steps:
          - id: shared
            action: harness.run
            with: {{provider: catter, prompt: "line one\\nline two", stdin: extra}}
          - id: own
            action: harness.run
            container: {{image: {IMAGE}}}
            with: {{provider: catter, prompt: hello}}
        """,
    )
    assert ran.stdout("shared") == "line one\nline two\n\nextra"
    assert ran.stdout("own") == "hello"


def test_timeout_leaves_no_process_in_the_shared_container(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        max_clean_up_time_sec: 1
        container: {{image: {IMAGE}}}
        handler_on:
          exit: {{run: ps -o args}}
        steps:
          - id: slow
            timeout_sec: 1
            run: trap '' TERM; sleep 300 & sleep 301; wait
        """,
    )
    assert (ran.status("slow"), ran.step("slow").exit_code) == ("failed", 124)
    ps = Path(ran.record["handlers"]["exit"]["stdout_file"]).read_text()
    assert "sleep 30" not in ps, ps
    assert dagbox_containers() == []


def test_timeout_kills_and_removes_a_step_container(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: slow
            timeout_sec: 1
            container: {{image: {IMAGE}}}
            run: sleep 300
        """,
    )
    assert ran.step("slow").exit_code == 124
    assert dagbox_containers() == []


def test_keep_container_keeps_it(tmp_path):
    ran = run_text(
        tmp_path,
        f"steps:\n  - {{id: a, run: 'true', container: {{image: {IMAGE}, keep_container: true}}}}\n",
        run_id="keep-me",
    )
    assert ran.result.status == "succeeded"
    kept = docker("ps", "-aq", "--filter", "label=dagbox.run_id=keep-me").stdout.split()
    assert len(kept) == 1
    docker("rm", "-f", *kept)


def test_container_labels(tmp_path):
    ran = run_text(
        tmp_path,
        f"steps:\n  - {{id: a, run: 'true', container: {{image: {IMAGE}, keep_container: true}}}}\n",
        run_id="labelled",
    )
    assert ran.result.status == "succeeded"
    (cid,) = docker("ps", "-aq", "--filter", "label=dagbox.run_id=labelled").stdout.split()
    labels = json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", cid).stdout)
    docker("rm", "-f", cid)
    assert labels["dagbox.step"] == "a"
    assert labels["dagbox.owner"].endswith(f":{os.getpid()}")


def test_missing_binary_in_a_container(tmp_path):
    ran = run_text(
        tmp_path,
        f"steps:\n  - id: a\n    action: harness.run\n    container: {{image: {IMAGE}}}\n    with: {{provider: gemini, prompt: hi}}\n",
    )
    assert ran.status("a") == "failed"
    assert ran.step("a").exit_code in (126, 127)


def test_engine_unreachable_exits_3(tmp_path, engine):
    dag = tmp_path / "d.yaml"
    dag.write_text(f"steps:\n  - {{id: a, run: 'true', container: {{image: {IMAGE}}}}}\n")
    variable = "DOCKER_HOST" if engine.name == "docker" else "DAGU_PODMAN_HOST"
    env = {
        **os.environ,
        variable: "unix:///nonexistent/engine.sock",
        "DAGBOX_HOME": str(tmp_path / "home"),
    }
    out = subprocess.run(
        [*DAGBOX, "run", str(dag)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 3
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(
        f"dagbox: cannot reach the {engine.name} engine at unix:///nonexistent/engine.sock: "
    )
    assert not (tmp_path / "home").exists()  # nothing is recorded for a run that could not start


def _ten_containers(tmp_path) -> Path:
    steps = "\n".join(
        f"  - {{id: s{i}, run: 'sleep 300', container: {{image: {IMAGE}}}}}" for i in range(10)
    )
    dag = tmp_path / "ten.yaml"
    dag.write_text(
        textwrap.dedent(
            f"""
            container: {{image: {IMAGE}}}
            steps:
              - {{id: shared, run: 'sleep 300'}}
            """
        ).lstrip()
        + steps
        + "\n"
    )
    return dag


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_leave_no_container(tmp_path, sig):
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(_ten_containers(tmp_path)), "--run-id", "ten"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_for(lambda: len(dagbox_containers()) == 11, timeout=90, what="11 running containers")
        wait_for(
            lambda: (
                docker(
                    "ps", "-q", "--filter", "label=dagbox.run_id=ten", "--filter", "status=running"
                ).stdout.count("\n")
                == 11
            ),
            timeout=60,
            what="all running",
        )
        proc.send_signal(sig)
        assert proc.wait(timeout=90) == 130
    finally:
        proc.kill()
    assert dagbox_containers() == []
    record = json.loads(next((tmp_path / "home").glob("runs/*/ten/run.json")).read_text())
    assert {s["status"] for s in record["steps"]} == {"aborted"}


def test_gc_reaps_containers_of_a_killed_runner_only(tmp_path):
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    dag = tmp_path / "one.yaml"
    dag.write_text(f"steps:\n  - {{id: s, run: 'sleep 300', container: {{image: {IMAGE}}}}}\n")
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", "killed"], stdout=subprocess.DEVNULL, env=env
    )
    wait_for(
        lambda: docker("ps", "-q", "--filter", "label=dagbox.run_id=killed").stdout.strip() != "",
        timeout=60,
        what="the container",
    )
    proc.kill()
    proc.wait(timeout=30)
    assert docker("ps", "-aq", "--filter", "label=dagbox.run_id=killed").stdout.strip()
    # a container "owned" by a live process (this test) must survive gc
    import socket

    live = docker(
        "create",
        "--label",
        "dagbox.run_id=alive",
        "--label",
        f"dagbox.owner={socket.gethostname()}:{os.getpid()}",
        IMAGE,
        "true",
    ).stdout.strip()
    try:
        out = subprocess.run(
            [*DAGBOX, "gc"], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert out.returncode == 0, out.stderr
        assert "run killed" in out.stdout
        assert docker("ps", "-aq", "--filter", "label=dagbox.run_id=killed").stdout.strip() == ""
        assert docker("ps", "-aq", "--filter", "label=dagbox.run_id=alive").stdout.strip() != ""
    finally:
        docker("rm", "-f", live, check=False)


def test_startup_command_and_healthy_fallback(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        container:
          image: {IMAGE}
          startup: command
          command: [sh, -c, 'echo ready; while :; do sleep 3600; done']
          wait_for: healthy
          log_pattern: ^ready$
        steps:
          - {{id: a, run: echo ok}}
        """,
    )
    assert ran.result.status == "succeeded", ran.result.error
    notices = [e.message for e in ran.events if type(e).__name__ == "Notice"]
    assert any("no healthcheck" in m for m in notices)


def test_many_parallel_step_containers(tmp_path):
    steps = "\n".join(
        f"  - {{id: s{i}, run: 'echo {i}', container: {{image: {IMAGE}, network: none}}}}"
        for i in range(20)
    )
    started = time.monotonic()
    ran = run_text(tmp_path, "steps:\n" + steps + "\n")
    assert ran.result.status == "succeeded"
    assert [ran.stdout(f"s{i}") for i in range(20)] == [f"{i}\n" for i in range(20)]
    assert time.monotonic() - started < 120


def test_platform_ports_and_keep_of_the_shared_container(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        container:
          image: {IMAGE}
          platform: linux/amd64
          ports: ['127.0.0.1:18080:80', '9090/udp']
          keep_container: true
        steps:
          - {{id: a, run: echo ok}}
        """,
        run_id="kept-root",
    )
    assert ran.result.status == "succeeded", ran.result.error
    (cid,) = docker("ps", "-aq", "--filter", "label=dagbox.run_id=kept-root").stdout.split()
    try:
        bindings = json.loads(
            docker("inspect", "-f", "{{json .HostConfig.PortBindings}}", cid).stdout
        )
        assert bindings["80/tcp"][0]["HostPort"] == "18080"
        assert "9090/udp" in bindings
        assert (
            docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "false"
        )  # stopped, kept
    finally:
        docker("rm", "-f", cid)


def test_startup_entrypoint_that_exits_fails_fast(tmp_path):
    started = time.monotonic()
    ran = run_text(
        tmp_path,
        f"container: {{image: {IMAGE}, startup: entrypoint}}\nsteps:\n  - {{id: a, run: 'true'}}\n",
    )
    assert ran.result.status == "failed"
    # Either readiness saw it exit, or it exited just after: then the step's exec says so.
    said = f"{ran.result.error} {ran.step('a').error}"
    assert "exited with 0 before it was ready" in said or "running" in said, said
    assert time.monotonic() - started < 60


def test_a_step_whose_shared_container_stops_under_it_says_so(tmp_path):
    ran = run_text(
        tmp_path,
        f"container: {{image: {IMAGE}, network: none}}\n"
        "steps:\n  - {id: a, run: 'kill -TERM 1; sleep 30'}\n",
    )
    step = ran.step("a")
    assert step.status == "failed" and step.exit_code != 0
    assert step.error.startswith("the shared container is not running any more"), step.error


def test_networks(tmp_path, engine):
    network = f"dagbox-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", network)
    try:
        ran = run_text(
            tmp_path,
            f"""
            steps:
              - {{id: host, container: {{image: {IMAGE}, network: host}}, run: 'ls /sys/class/net | wc -l'}}
              - {{id: custom, container: {{image: {IMAGE}, network: {network}}}, run: 'ls /sys/class/net'}}
            """,
        )
        assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
        assert int(ran.stdout("host")) > 1
        assert "eth0" in ran.stdout("custom")
    finally:
        docker("network", "rm", network, check=False)


def test_pull_is_announced_before_it_fails(tmp_path):
    ran = run_text(
        tmp_path,
        f"steps:\n  - {{id: a, run: 'true', container: {{image: {IMAGE}, pull_policy: always}}}}\n",
    )
    stderr = Path(ran.step("a").stderr_file).read_text()
    assert f"dagbox: pulling {IMAGE}" in stderr


def test_secrets_in_container_env_are_masked(tmp_path):
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: a
            container: {{image: {IMAGE}, env: [DEPLOY_TOKEN=tok-in-container-42]}}
            run: echo "$DEPLOY_TOKEN"
        """,
    )
    assert ran.stdout("a") == "***\n"


def test_docker_host_wins_over_a_docker_context(tmp_path, engine, monkeypatch):
    if engine.name != "docker":
        pytest.skip("docker contexts are a Docker CLI setting")
    home = tmp_path / "fakehome"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": "bogus"}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    ran = run_text(tmp_path, f"steps:\n  - {{id: a, run: 'true', container: {{image: {IMAGE}}}}}\n")
    assert ran.result.status == "succeeded"


def test_the_client_pool_has_no_limit():
    import anyio

    from dagbox.runtimes.container_engine import connect, endpoint

    async def main() -> int:
        async with connect(endpoint()) as client:
            return client.connector.limit

    assert anyio.run(main) == 0


def test_the_aiodocker_internals_dagbox_uses_are_there():
    """runtimes/aiodocker_private.py reaches into aiodocker; a release that moves what it
    uses must fail here, loudly and without an engine, not in a user's run."""
    import inspect

    import aiodocker
    import aiodocker.stream

    query = inspect.signature(aiodocker.Docker._query_json)
    assert {"method", "data", "params"} <= set(query.parameters)
    assert "self._resp" in inspect.getsource(aiodocker.stream.Stream)


def run_in_container(tmp_path, where: str, box: str, steps) -> Ran:
    """Run ``steps(own)`` with ``box`` as the shared container (``where="shared"``) or as
    each step's own (``own`` is then ``, container: BOX``, for a flow-style step)."""
    root, own = (f"container: {box}\n", "") if where == "shared" else ("", f", container: {box}")
    return run_text(tmp_path, root + textwrap.dedent(steps(own)))


@pytest.mark.parametrize("where", ["shared", "step"])
def test_run_lists_direct_and_exec_in_containers(tmp_path, where):
    """A run: list runs in one container, each command through the shell in a fresh shell
    (a file the first makes is there for the second; cd and export are not), stopping at the
    first failure; shell: direct and exec: run programs without a shell; stdout:/stderr:
    files get the streams."""
    ran = run_in_container(
        tmp_path,
        where,
        f"{{image: {IMAGE}}}",
        lambda own: (
            f"""\
            params: [WHO=a b]
            env: [X=ex]
            steps:
              - {{id: in_turn{own}, run: ['mkdir -p /tmp/s && cd /tmp/s && touch /tmp/made && export L=1',
                  'test -f /tmp/made && test "$PWD" != /tmp/s && test "${{L-unset}}" = unset && echo fresh',
                  'echo two >&2'], stdout: out.txt, stderr: err.txt}}
              - {{id: stops{own}, run: [echo first, exit 3, echo third]}}
              - {{id: direct{own}, shell: direct, run: ['printf [%s] "${{params.WHO}}" *', 'printf [%s] $X']}}
              - {{id: exec{own}, exec: {{command: printf, args: ['[%s]', 'a;b']}}}}
            """
        ),
    )
    assert ran.stdout("in_turn") == "fresh\n", ran.error("in_turn")
    # stdout:/stderr: files are on the host, in the step's working directory.
    assert (tmp_path / "out.txt").read_text() == "fresh\n"
    assert (tmp_path / "err.txt").read_text() == "two\n"
    assert (ran.status("stops"), ran.step("stops").exit_code) == ("failed", 3)
    assert ran.stdout("stops") == "first\n"
    assert ran.stdout("direct") == "[a b][*][ex]", ran.error("direct")
    assert ran.stdout("exec") == "[a;b]", ran.error("exec")
    assert dagbox_containers() == []


@pytest.mark.parametrize("where", ["shared", "step"])
def test_declared_outputs_from_a_container(tmp_path, where):
    """DAGU_OUTPUT_FILE reaches the container through a mount, writable by a container
    user that is not root; a dependent reads ${steps.ID.outputs.NAME}."""
    ran = run_in_container(
        tmp_path,
        where,
        f"{{image: {IMAGE}, user: '1000'}}",
        lambda own: (
            f"""\
            steps:
              - {{id: make{own}, outputs: [{{name: tag}}, {{name: who}}],
                  run: ['echo tag=v9 >> "$DAGU_OUTPUT_FILE"', 'echo who=$(id -u) >> "$DAGU_OUTPUT_FILE"']}}
              - {{id: use{own}, depends: make, run: 'echo "${{steps.make.outputs.tag}}"'}}
            """
        ),
    )
    assert ran.status("make") == "succeeded", ran.error("make")
    assert ran.step("make").outputs == {
        "steps.make.outputs.tag": "v9",
        "steps.make.outputs.who": "1000",
    }
    assert ran.stdout("use") == "v9\n"
    assert dagbox_containers() == []


@pytest.mark.parametrize("where", ["shared", "step"])
def test_artifacts_and_stdout_outputs_from_a_container(tmp_path, where):
    """The artifacts folder is mounted (a container user that is not root can write it)
    and named by $DAG_RUN_ARTIFACTS_DIR; a stream artifact and ``stdout: {outputs}`` take
    the container's output."""
    ran = run_in_container(
        tmp_path,
        where,
        f"{{image: {IMAGE}, user: '1000'}}",
        lambda own: (
            f"""\
            steps:
              - {{id: make{own}, run: 'echo inside > "$DAG_RUN_ARTIFACTS_DIR/made.txt"; echo "{{\\"who\\": \\"$(id -u)\\"}}"',
                  stdout: {{artifact: logs/make.txt, outputs: {{field: who, select: .who}}}}}}
              - {{id: use, depends: make, run: 'echo "${{make.outputs.who}}"'}}
            """
        ),
    )
    assert ran.status("make") == "succeeded", ran.error("make")
    folder = tmp_path / "home" / "runs" / "dag" / "r1" / "artifacts"
    assert folder.stat().st_mode & 0o7777 == 0o1777  # user 1000 writes; sticky
    assert (folder / "made.txt").read_text() == "inside\n"
    assert (folder / "logs" / "make.txt").read_text() == '{"who": "1000"}\n'
    assert ran.stdout("use") == "1000\n"
    assert dagbox_containers() == []


def test_sub_dags_with_step_containers_and_a_root_container_of_their_own(tmp_path):
    """A fan-out whose child runs each step in a container of its own, and a child whose
    root container is its own shared one: the caller's root container is not theirs."""
    ran = run_text(
        tmp_path,
        f"""
        container: {{image: {IMAGE}}}
        steps:
          - {{id: where, run: hostname, output: PARENT}}
          - id: fan
            call: stepwise
            params: value=${{ITEM}}
            parallel: {{items: [a, b, c], max_concurrent: 3}}
          - {{id: shared, call: rooted}}
        ---
        name: stepwise
        params: [value=none]
        steps:
          - {{id: s, container: {{image: {IMAGE}}}, run: 'echo "$(hostname) ${{params.value}}"', output: OUT}}
        ---
        name: rooted
        container: {{image: {IMAGE}}}
        steps:
          - {{id: one, run: hostname, output: FIRST}}
          - {{id: two, depends: one, run: hostname, output: SECOND}}
        """,
    )
    assert ran.result.status == "succeeded", (ran.error("fan"), ran.error("shared"))
    parent = ran.step("where").outputs["PARENT"]
    fanned = [o["OUT"].split() for o in json.loads(ran.stdout("fan"))["outputs"]]
    assert [item for _, item in fanned] == ["a", "b", "c"]
    assert len({host for host, _ in fanned} | {parent}) == 4  # a container each
    rooted = json.loads(ran.stdout("shared"))["outputs"]
    assert rooted["FIRST"] == rooted["SECOND"] != parent  # its own shared container
    assert dagbox_containers() == []


def test_interrupting_a_parent_with_twenty_children_in_containers(tmp_path):
    dag = tmp_path / "boxes.yaml"
    dag.write_text(
        textwrap.dedent(
            f"""\
            steps:
              - id: fan
                call: boxed
                parallel:
                  items: [{", ".join(str(i) for i in range(20))}]
                  max_concurrent: 20
            ---
            name: boxed
            steps:
              - {{id: s, container: {{image: {IMAGE}}}, run: exec sleep 300}}
            """
        )
    )
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [*DAGBOX, "run", str(dag), "--run-id", "boxes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(
            lambda: (
                docker(
                    "ps", "-q", "--filter", "label=dagbox.run_id", "--filter", "status=running"
                ).stdout.count("\n")
                == 20
            ),
            timeout=180,
            what="20 running containers",
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
    assert dagbox_containers() == []
    records = list((tmp_path / "home/runs/boxes/boxes/children").glob("*/run.json"))
    assert {json.loads(r.read_text())["status"] for r in records} == {"aborted"}
    assert len(records) == 20
