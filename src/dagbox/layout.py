"""Where a run's files live. Pure path arithmetic, shared by the engine and the sinks.

    $DAGBOX_HOME/runs/<dag>/<run-id>/run.json
                                    /events.jsonl
                                    /logs/<step>.<attempt>[.<try>].stdout|.stderr
                                    /attempts/<step>/<attempt>.jsonl  (harness attempts)

``$DAGBOX_HOME`` defaults to ``$XDG_DATA_HOME/dagbox``, that is
``~/.local/share/dagbox``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def home(env: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    if env.get("DAGBOX_HOME"):
        return Path(env["DAGBOX_HOME"]).expanduser()
    data = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(data) / "dagbox"


def safe_name(name: str) -> str:
    """A file-name-safe form of a step or DAG name (``build/x y`` -> ``build_x_y``)."""
    return _UNSAFE.sub("_", name)[:120] or "_"


def new_run_id() -> str:
    """Sortable by time, unique enough for one machine: ``20261129-004501-3f9a2c``."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.urandom(3).hex()}"


@dataclass(frozen=True)
class RunLayout:
    dir: Path

    @classmethod
    def for_run(cls, dag: str, run_id: str, root: Path | None = None) -> RunLayout:
        return cls((root or home()) / "runs" / safe_name(dag) / run_id)

    @property
    def record(self) -> Path:
        return self.dir / "run.json"

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    def log(self, step: str, attempt: int, stream: str, try_: int | None = None) -> Path:
        """``logs/<step>.<attempt>.stdout``; a harness try: ``logs/<step>.<attempt>.<try>.stdout``.

        One folder for all logs: creating folders is slow on some filesystems, and
        ``dagbox bench`` makes thousands of runs.
        """
        step = safe_name(step)
        name = (
            f"{step}.{attempt}.{try_}.{stream}"
            if try_ is not None
            else f"{step}.{attempt}.{stream}"
        )
        return self.dir / "logs" / name

    def journal(self, step: str, attempt: int) -> Path:
        return self.dir / "attempts" / safe_name(step) / f"{attempt}.jsonl"
