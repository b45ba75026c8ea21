"""Who owns a container, a host process or a run record: a host, a pid, and that pid's start time.

A dagbox process that dies without cleaning up (SIGKILL, the OOM killer, a closed laptop)
leaves its step containers and host processes running, and its record saying "running".
Each of them names its owner: a container by label, a process by the ``DAGBOX_OWNER``
environment variable (inherited by everything the step starts), a record by its ``owner``
field. An owner is gone when its pid is dead on this host, or belongs to a process that
started at another time (a reused pid). Nothing owned by another host, or by a live
process, is ever touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dagbox import procfs
from dagbox.layout import RunLayout

#: The environment variable that marks every process a host step starts.
ENV_OWNER = "DAGBOX_OWNER"


def start_time(pid: int) -> str:
    """The pid's start time in clock ticks since boot, or "" when it cannot be read."""
    fields = procfs.stat(pid)
    return fields[procfs.START].decode() if fields is not None else ""


def _namespace() -> str:
    """This process's pid namespace: pids from another one (a container) are not comparable."""
    try:
        return str(Path("/proc/self/ns/pid").readlink()).removeprefix("pid:[").removesuffix("]")
    except OSError:
        return ""


@cache
def _this(pid: int) -> tuple[str, str, str]:
    return f"{socket.gethostname()}:{pid}", start_time(pid), _namespace()


def this_process() -> tuple[str, str, str]:
    """(``host:pid``, start time, pid namespace) of the running process (fork-safe)."""
    return _this(os.getpid())


def token() -> str:
    """``host:pid@start@namespace``: one string for an environment variable or a record."""
    return "@".join(this_process())


def alive(owner: str, start: str = "", namespace: str = "") -> bool:
    """False only when ``owner`` (``host:pid``, or a whole token) is surely gone from here.

    Anything this process cannot judge (another host, another pid namespace, a value it
    cannot read) counts as alive: what is not surely ours is never touched.
    """
    if "@" in owner:
        owner, _, rest = owner.partition("@")
        start, _, namespace = rest.partition("@")
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or namespace not in ("", this_process()[2]):
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):
        return True
    return not start or start_time(pid) == start


@dataclass(frozen=True)
class Orphan:
    pid: int
    pgid: int
    run_id: str
    command: str
    started: str = ""  # the pid's start time when found: a reused pid is not it


def orphaned_processes() -> list[Orphan]:
    """Processes of runs whose dagbox process died before the run ended.

    Found by ``DAGBOX_OWNER`` in ``/proc/*/environ``. A process left by a run that *ended*
    (a daemon a step started on purpose: a build server, an agent) is not an orphan, and
    neither is a child of this process.
    """
    marker = f"\0{ENV_OWNER}=".encode()
    me, own_group = os.getpid(), os.getpgrp()
    crashed: dict[tuple[str, str], bool] = {}
    found: list[Orphan] = []
    for name in procfs.pids():
        environ = procfs.environ(name)
        if environ is None or marker not in environ:
            continue
        try:
            variables = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
            owner = variables[ENV_OWNER.encode()].decode(errors="replace")
            if alive(owner):
                continue
            record = variables.get(b"DAG_RUN_LOG_FILE", b"").decode(errors="replace")
            if not crashed.setdefault((owner, record), _ended_early(record, owner)):
                continue
            pid = int(name)
            fields = procfs.stat(name)
            if fields is None:
                continue
            parent = int(fields[procfs.PARENT])
            pgid = os.getpgid(pid)
            with open(f"/proc/{name}/cmdline", "rb") as handle:  # noqa: PTH123
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, KeyError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if parent != me and pgid not in (own_group, 0, 1):
            run_id = variables.get(b"DAG_RUN_ID", b"?").decode(errors="replace")
            found.append(
                Orphan(pid, pgid, _printable(run_id), _printable(command[:120]), start_time(pid))
            )
    return found


def _ended_early(events_file: str, owner: str) -> bool:
    """True when the run's record (beside its events.jsonl) says this owner never ended it."""
    if not events_file:
        return False
    try:
        with RunLayout(Path(events_file).parent).record.open("rb") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return False  # no record to prove it: leave the process alone
    return (
        isinstance(record, dict) and record.get("owner") == owner and not record.get("finished_at")
    )


def orphan_report(orphans: list[Orphan]) -> list[str]:
    """One line per run whose processes were stopped."""
    by_run: dict[str, list[Orphan]] = {}
    for orphan in orphans:
        by_run.setdefault(orphan.run_id, []).append(orphan)
    return [
        f"stopped {len(found)} process{'es' * (len(found) != 1)} left by run {run_id}, "
        f"whose dagbox process is gone ({found[0].command})"
        for run_id, found in by_run.items()
    ]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def stop_orphans() -> list[Orphan]:
    """SIGKILL the process groups of orphaned step processes; returns what was found."""
    orphans = orphaned_processes()
    for group in {orphan.pgid for orphan in orphans}:
        members = [o for o in orphans if o.pgid == group]
        # Still the same processes, in the same group, as when the scan found them?
        if any(_still(o) for o in members):
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
    return orphans


def _still(orphan: Orphan) -> bool:
    try:
        return start_time(orphan.pid) == orphan.started and os.getpgid(orphan.pid) == orphan.pgid
    except OSError:
        return False
