"""The registry of processes dagbox starts, against real processes: a zombie whose spawn is
still in flight (its pid not registered yet) is never collected by the reaper."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from dagbox.runtimes import children
from tests.helpers import wait_for


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_the_reaper_never_takes_a_process_whose_spawn_is_in_flight():
    with children.spawning():
        process = subprocess.Popen(["sh", "-c", "exit 5"])
        wait_for(lambda: state(process.pid) == "Z", what="the child to exit")
        assert process.pid in children.adopted()  # a child, not registered yet
        assert children.reap() == 0
        children.started(process.pid)
    try:
        assert children.reap() == 0  # registered now: its starter waits for it
        assert process.wait(timeout=10) == 5  # a stolen status would read 0 here
    finally:
        children.ended(process.pid)


def test_the_reaper_collects_a_settled_unregistered_zombie():
    process = subprocess.Popen(["sh", "-c", "exit 5"])
    wait_for(lambda: state(process.pid) == "Z", what="the child to exit")

    def age() -> float:
        stat = children._stat(process.pid)
        assert stat is not None
        return time.clock_gettime(time.CLOCK_BOOTTIME) - stat[2]

    wait_for(lambda: age() > 0.2, what="the zombie to be older than a clock tick's slack")
    with children.spawning():  # a later spawn in flight does not protect an older zombie
        assert children.reap() == 1
    assert not Path(f"/proc/{process.pid}").exists()
    process.wait(timeout=10)  # (collected already: Popen reads 0)
