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
import os
import signal
import socket
from dataclasses import dataclass
from functools import cache

#: The environment variable that marks every process a host step starts.
ENV_OWNER = "DAGBOX_OWNER"


def start_time(pid: int) -> str:
    """The pid's start time in clock ticks since boot, or "" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:  # noqa: PTH123
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


@cache
def _this(pid: int) -> tuple[str, str]:
    return f"{socket.gethostname()}:{pid}", start_time(pid)


def this_process() -> tuple[str, str]:
    """(``host:pid``, start time) of the running process (keyed by pid: fork-safe)."""
    return _this(os.getpid())


def token() -> str:
    """``host:pid@start``: one string for an environment variable or a record."""
    owner, start = this_process()
    return f"{owner}@{start}"


def alive(owner: str, start: str = "") -> bool:
    """False when ``owner`` (``host:pid``, or a whole token) is gone from this host."""
    if "@" in owner and not start:
        owner, _, start = owner.rpartition("@")
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # not ours to judge
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or start_time(pid) == start


@dataclass(frozen=True)
class Orphan:
    pid: int
    pgid: int
    run_id: str
    command: str


def orphaned_processes() -> list[Orphan]:
    """Processes whose ``DAGBOX_OWNER`` is gone (read from ``/proc/*/environ``)."""
    marker = f"\0{ENV_OWNER}=".encode()
    own_group = os.getpgrp()
    found: list[Orphan] = []
    names: list[str] = []
    with contextlib.suppress(OSError):
        names = os.listdir("/proc")  # noqa: PTH208 (plain names: cheaper than Paths)
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:  # noqa: PTH123
                environ = b"\0" + handle.read()
            if marker not in environ:
                continue
            variables = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
            owner = variables[ENV_OWNER.encode()].decode(errors="replace")
            if alive(owner):
                continue
            pid = int(name)
            pgid = os.getpgid(pid)
            with open(f"/proc/{name}/cmdline", "rb") as handle:  # noqa: PTH123
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, KeyError, ValueError):
            continue  # gone meanwhile, or not ours to read
        if pgid not in (own_group, 0, 1):
            run_id = variables.get(b"DAG_RUN_ID", b"?").decode(errors="replace")
            found.append(Orphan(pid, pgid, run_id, command[:120]))
    return found


def stop_orphans() -> list[Orphan]:
    """SIGKILL the process groups of orphaned step processes; returns what was found."""
    orphans = orphaned_processes()
    for group in {orphan.pgid for orphan in orphans}:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    return orphans
