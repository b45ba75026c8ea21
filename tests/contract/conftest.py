"""The real agent CLIs, installed by ``scripts/ensure-agent-clis`` and run offline.

Every CLI runs in a private network namespace (only loopback, so no test traffic
leaves the machine and "the network is down" is the same everywhere) and a private
PID namespace (so a daemon a CLI leaves behind, as cline does, dies with it), with
an empty ``HOME``, no key, and stdin closed: a new user's first run, unattended.
Without the CLIs the tests are skipped, unless ``DAGBOX_REQUIRE_AGENT_CLIS=1``
(``.ci/run`` sets it), which makes a failed install a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ran:
    code: int | None  # None: still running when the test had seen enough, and stopped it
    output: str  # stdout and stderr, interleaved as they came
    seconds: float
    home: Path
    cwd: Path


def _isolate() -> list[str]:
    """A command prefix for a private network (loopback up) and PID namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the contract tests need root and unshare for their private namespaces")
    return [
        "unshare",
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        'ip link set lo up 2>/dev/null || true; exec "$@"',
        "isolated",
    ]


@pytest.fixture(scope="session")
def clis() -> Path:
    """The folder of the installed CLIs' entry points (node 22 among them)."""
    required = os.environ.get("DAGBOX_REQUIRE_AGENT_CLIS") == "1"
    if not required:  # never a 3 GB install for tests that would skip anyway
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed")
        _isolate()
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure-agent-clis")],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        message = f"scripts/ensure-agent-clis failed:\n{done.stderr[-3000:]}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return Path(done.stdout.strip()) / "bin"


@pytest.fixture
def run_cli(clis: Path, tmp_path: Path):
    """Run a CLI's argv offline; stop once ``until`` shows in its output or ``bound`` passes."""
    import re

    prefix = _isolate()

    def run(
        argv: list[str] | tuple[str, ...],
        until: str | None = None,
        bound: float = 60,
        env: dict[str, str] | None = None,
    ) -> Ran:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))  # a new user each time
        home, cwd = folder / "home", folder / "work"
        home.mkdir()
        cwd.mkdir()
        log = folder / "output.log"
        base = {"PATH": f"{clis}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        with log.open("wb") as out:
            began = time.monotonic()
            process = subprocess.Popen(
                [*prefix, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**base, **(env or {})},
                start_new_session=True,
            )
            pattern = re.compile(until, re.M) if until else None
            code: int | None = None
            try:
                while True:
                    try:
                        code = process.wait(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    text = log.read_text(errors="replace")
                    if pattern is not None and pattern.search(text):
                        break
                    if time.monotonic() - began > bound:
                        break
            finally:  # also when the test is interrupted: amp and cline would run for ever
                seconds = time.monotonic() - began
                if process.poll() is None:
                    process.kill()  # unshare --kill-child: the whole PID namespace goes with it
                    process.wait(timeout=30)
        output = log.read_text(errors="replace")
        sys.stdout.write(f"$ {' '.join(argv)}\n{output}\n")  # shown when a test fails
        return Ran(code, output, seconds, home, cwd)

    return run
