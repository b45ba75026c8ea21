"""Test bed: helpers for DAG text, and the ``docker`` marker backed by a real engine.

Tests marked ``docker`` run against the Docker engine that answers on this
machine (``scripts/ensure-docker`` starts one and builds the offline image).
Without an engine they are skipped, unless ``DAGBOX_REQUIRE_DOCKER=1``, which
CI sets: then a missing engine is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from dagbox.spec import DagError, Loaded, load
from dagbox.spec.issues import LocatedIssue

TEST_IMAGE = os.environ.get("DAGBOX_TEST_IMAGE", "dagbox-test/busybox:latest")
REPO = Path(__file__).resolve().parent.parent
FAKE_AGENT = REPO / "tests" / "fixtures" / "fake-agent"
#: Every example DAG, in subfolders too (examples/*-in-docker/dag.yaml, examples/bench/).
EXAMPLE_DAGS = sorted((REPO / "examples").rglob("*.yaml"))


def dag_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def load_text(text: str, name: str = "dag.yaml") -> Loaded:
    return load(Path(name), dag_text(text))


def problems(text: str, name: str = "dag.yaml") -> list[LocatedIssue]:
    """Every error in ``text``; fails the test if the text loads."""
    with pytest.raises(DagError) as info:
        load(Path(name), dag_text(text))
    return [i for i in info.value.issues if i.severity == "error"]


def one_problem(text: str) -> LocatedIssue:
    found = problems(text)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


PODMAN_SOCKET = "/run/podman/podman.sock"


class Engine:
    """A container engine the tests run against: its CLI, and the env that makes dagbox use it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.env = {"DAGU_CONTAINER_RUNTIME": name}
        if name == "podman":
            self.env["DAGU_PODMAN_HOST"] = f"unix://{PODMAN_SOCKET}"

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.name, *args], capture_output=True, text=True, timeout=120, check=check
        )

    def problem(self) -> str | None:
        script = f"scripts/ensure-{self.name}"
        if shutil.which(self.name) is None:
            return f"no {self.name} client on PATH (run {script})"
        probe = (
            ["docker", "info"]
            if self.name == "docker"
            else ["podman", "--remote", "--url", f"unix://{PODMAN_SOCKET}", "version"]
        )
        try:
            answered = (
                subprocess.run(probe, capture_output=True, timeout=20, check=False).returncode == 0
            )
        except subprocess.TimeoutExpired:
            answered = False
        if not answered:
            return f"no {self.name} engine answers (run {script})"
        if self("image", "inspect", TEST_IMAGE, check=False).returncode != 0:
            return f"test image {TEST_IMAGE} is missing from {self.name} (run {script})"
        return None

    def required(self) -> bool:
        flag = "DAGBOX_REQUIRE_DOCKER" if self.name == "docker" else "DAGBOX_REQUIRE_PODMAN"
        return os.environ.get(flag) == "1"

    def labelled(self, label: str = "dagbox.run_id") -> list[str]:
        return self("ps", "-aq", "--filter", f"label={label}").stdout.split()


ENGINES = {name: Engine(name) for name in ("docker", "podman")}


def _usable(engine: Engine) -> Engine:
    problem = engine.problem()
    if problem is not None:
        if engine.required():
            pytest.fail(f"{engine.name} is required here but {problem}", pytrace=False)
        pytest.skip(problem)
    return engine


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The test image name, once a Docker engine is known to answer."""
    _usable(ENGINES["docker"])
    return TEST_IMAGE


@pytest.fixture(scope="session", params=sorted(ENGINES))
def container_engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn (Docker, then Podman), once it is known to answer."""
    return _usable(ENGINES[request.param])


@pytest.fixture(autouse=True)
def _needs_engine(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_engine")


@pytest.fixture(scope="session", autouse=True)
def no_leaked_containers():
    """After the session, no dagbox-labelled container may remain on either engine."""
    yield
    for engine in ENGINES.values():
        if engine.problem() is None:
            left = engine.labelled()
            if left:
                labels = engine("inspect", "-f", "{{json .Config.Labels}}", *left, check=False)
                engine("rm", "-f", *left, check=False)
                pytest.fail(f"tests leaked {engine.name} containers:\n{labels.stdout}")


def pytest_report_header(config: pytest.Config) -> str:
    from tests.test_properties import EXAMPLES, SEED

    return f"property tests: {EXAMPLES} examples each, seed {SEED} (DAGBOX_HYPOTHESIS_SEED)"


@pytest.fixture
def agents_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """claude, codex, gemini and fake-agent on PATH, each the fake agent (as that CLI)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("claude", "codex", "gemini", "fake-agent"):
        (folder / name).symlink_to(FAKE_AGENT)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return folder
