"""Remove containers that a dagbox process left behind when it died (SIGKILL, power loss).

Every container dagbox creates carries ``dagbox.owner`` (host and pid) and the
owner's start time. A container whose owner is gone from this host, or whose
pid now belongs to another process, is removed. Containers of a live dagbox
process, those owned by other hosts, and those made with ``keep_container: true``
(labelled ``dagbox.keep``) are never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from dagbox.owner import alive as owner_alive
from dagbox.runtimes.container_engine import call, status_of
from dagbox.runtimes.docker import (
    LABEL_KEEP,
    LABEL_OWNER,
    LABEL_OWNER_NS,
    LABEL_OWNER_START,
    LABEL_RUN,
)

if TYPE_CHECKING:
    import aiodocker


async def reap(client: aiodocker.Docker) -> list[tuple[str, str]]:
    """Remove orphaned dagbox containers; returns (container id, run id) of each removed."""
    listed = await call(
        client.containers.list(all=True, filters={"label": [LABEL_OWNER]}), "listing containers"
    )
    removed = []
    for container in listed:
        labels = container._container.get("Labels") or {}
        if LABEL_KEEP in labels:  # the user asked to keep it: theirs to remove
            continue
        if owner_alive(
            labels.get(LABEL_OWNER, ""),
            labels.get(LABEL_OWNER_START, ""),
            labels.get(LABEL_OWNER_NS, ""),
        ):
            continue
        with anyio.move_on_after(30):
            try:
                await container.delete(force=True, v=True)
            except Exception as exc:
                if status_of(exc) != 404:  # gone already is removed too
                    continue
            removed.append((container.id[:12], labels.get(LABEL_RUN, "?")))
    return removed
