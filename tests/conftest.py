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


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return "no Docker engine answers (run scripts/ensure-docker)"
    image = subprocess.run(
        ["docker", "image", "inspect", TEST_IMAGE], capture_output=True, timeout=20, check=False
    )
    if image.returncode != 0:
        return f"test image {TEST_IMAGE} is missing (run scripts/ensure-docker)"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The test image name, once an engine is known to answer."""
    problem = _engine_problem()
    if problem is not None:
        if os.environ.get("DAGBOX_REQUIRE_DOCKER") == "1":
            pytest.fail(f"DAGBOX_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    return TEST_IMAGE


@pytest.fixture(autouse=True)
def _needs_engine(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_engine")


def _dagbox_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=dagbox.run_id"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return out.stdout.split()


@pytest.fixture(scope="session", autouse=True)
def no_leaked_containers(request: pytest.FixtureRequest):
    """After the session, no dagbox-labelled container may remain on the engine."""
    yield
    if _engine_problem() is None:
        left = _dagbox_containers()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)
            pytest.fail(f"tests leaked {len(left)} dagbox-labelled containers: {left}")
