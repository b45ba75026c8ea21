"""Where a run's files live. Pure path arithmetic, shared by the engine and the sinks.

    $DAGBOX_HOME/runs/<dag>/<run-id>/run.json
                                    /events.jsonl
                                    /logs/<index>-<step>.<attempt>[.<try>].stdout|.stderr
                                    /attempts/<index>-<step>/<attempt>.jsonl  (harness attempts)

``$DAGBOX_HOME`` defaults to ``$XDG_DATA_HOME/dagbox``, that is
``~/.local/share/dagbox``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def run_id_problem(run_id: str) -> str | None:
    """Why ``run_id`` cannot name a run (a folder under ``runs/<dag>/``), or None.

    The same rule for every command that takes a run id, so that none of them can be
    pointed outside ``$DAGBOX_HOME`` (``/etc``, ``..``) or at a name with a newline in it.
    """
    if _RUN_ID.fullmatch(run_id):
        return None
    return (
        f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' "
        "(at most 128, starting with a letter or digit)"
    )


def home(env: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    if env.get("DAGBOX_HOME"):
        return Path(env["DAGBOX_HOME"]).expanduser()
    data = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(data) / "dagbox"


def safe_name(name: str) -> str:
    """A file-name-safe form of a step or DAG name (``build/x y`` -> ``build_x_y``).

    Never ``.`` or ``..``, and not unique: two names may share a safe form, so paths
    that must not collide also carry an index.
    """
    safe = _UNSAFE.sub("_", name)[:120]
    return safe if safe.strip(".") else "_" + safe


def new_run_id() -> str:
    """Sortable by time, unique enough for one machine: ``20261129-004501-3f9a2c``."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.urandom(3).hex()}"


@dataclass(frozen=True)
class RunLayout:
    dir: Path
    #: The log files' folder, inside ``dir``: ``logs``; a child run's are in ``dir`` itself
    #: (a fan-out makes a thousand records, and a folder costs a filesystem far more than
    #: a file).
    logs_folder: str = "logs"

    @classmethod
    def for_run(cls, dag: str, run_id: str, root: Path | None = None) -> RunLayout:
        return cls((root or home()) / "runs" / safe_name(dag) / run_id)

    @functools.cached_property
    def record(self) -> Path:
        return self.dir / "run.json"

    @functools.cached_property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    @functools.lru_cache(maxsize=64)  # noqa: B019  # a run asks for each a few times
    def log(
        self, index: int, step: str, attempt: int, stream: str, try_: int | None = None
    ) -> Path:
        """``logs/<index>-<step>.<attempt>.stdout``; a harness try adds ``.<try>`` (and the
        attempt's own ``.stderr`` then holds every try's, see records.py).

        ``index`` is the step's place in the file (handlers follow the steps): two names
        with one safe form (``a/b`` and ``a_b``) still get two files. One folder for all
        logs: creating folders is slow on some filesystems, and ``dagbox bench`` makes
        thousands of runs.
        """
        base = f"{index}-{safe_name(step)}.{attempt}"
        return (
            self.dir
            / self.logs_folder
            / (f"{base}.{stream}" if try_ is None else f"{base}.{try_}.{stream}")
        )

    def output_file(self, index: int, step: str, attempt: int) -> Path:
        """``outputs/<index>-<step>.<attempt>``: the attempt's ``DAGU_OUTPUT_FILE``."""
        return self.dir / "outputs" / f"{index}-{safe_name(step)}.{attempt}"

    def journal(self, index: int, step: str, attempt: int) -> Path:
        return self.dir / "attempts" / f"{index}-{safe_name(step)}" / f"{attempt}.jsonl"


def artifact_path_problem(path: Any) -> str | None:
    """Why ``path`` cannot name a file in the artifacts folder, or None (Dagu's rule:
    relative, no ``..`` segment, and naming more than the folder itself)."""
    if not isinstance(path, str) or not path.strip():
        return f"artifact is a relative file path, not {path!r}"
    text = path.strip().replace("\\", "/")
    if text.startswith(("/", "~/")) or text == "~" or re.match(r"^[A-Za-z]:", text):
        return f"artifact path {path!r} must be relative (to the artifacts folder)"
    if ".." in text.split("/"):
        return f"artifact path {path!r} must not contain '..'"
    if all(part in ("", ".") for part in text.split("/")):
        return f"artifact path {path!r} must name a file"
    return None
