"""The driver's side of a cluster bench: connect, place runs on nodes, bring back what they say.

:func:`connect` joins the Ray cluster and ships the bench's folder to it (Ray's
``working_dir``), so that relative paths in the DAG mean the same folder on every
node. :class:`Cluster` starts an agent on each node offering ``dagbox_slots``, gives
each run to the node with the most free slots, forwards the run's events to the
bench's sinks as the agent hands them over, and, when a node is lost, runs the runs it
had again elsewhere: a run lost with its node never counts against the agent.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import msgspec

import dagbox
from dagbox.cluster import wire
from dagbox.engine.events import AnyEvent, Notice

if TYPE_CHECKING:
    from dagbox.plan import Plan

#: The Ray custom resource a node offers dagbox: how many runs it takes at once.
SLOTS = "dagbox_slots"
#: How long a new node's agent may take to start and answer (a Ray worker's start-up).
HELLO_SECONDS = 30.0
#: How long a bench waits for a node when it has none left (a node restarting, an
#: autoscaler adding one) before it stops.
NO_NODE_SECONDS = 60.0
DRAIN_SECONDS = 0.1
REFRESH_SECONDS = 2.0

Sink = Callable[[AnyEvent], None]


class ClusterUnavailable(Exception):
    """The cluster cannot take the bench: unreachable, no node offering slots, all refused."""


#: A run placed this many times, its node lost each time, is not placed again: a run that
#: kills its node (out of memory, a fork bomb) would otherwise take down every node.
MOST_PLACEMENTS = 3


def _node_errors() -> tuple[type[BaseException], ...]:
    """What awaiting an agent raises when its node died, is unreachable or lost the
    result (Ray's errors, or the connection of Ray Client)."""
    from ray.exceptions import RayError

    return (RayError, ConnectionError)


def address_of(value: str) -> str:
    """``--cluster`` as ``ray.init`` takes it; ``auto`` is ``$RAY_ADDRESS``."""
    if value != "auto":
        return value
    address = os.environ.get("RAY_ADDRESS", "")
    if not address:
        raise ClusterUnavailable("--cluster auto reads RAY_ADDRESS, which is not set")
    return address


def _check_reachable(address: str, bound: float = 10.0) -> None:
    """Fail in seconds, with one line, where Ray would retry for minutes."""
    target = urlsplit(address if "://" in address else f"gcs://{address}")
    default_port = 10001 if target.scheme == "ray" else 6379
    host, port = target.hostname, target.port or default_port
    if not host:
        raise ClusterUnavailable(f"--cluster {address!r}: give HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=bound).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at {host}:{port}: {reason}"
        ) from None


def connect(
    address: str,
    folder: Path,
    excludes: Sequence[str],
    log: Path,
    mask: Callable[[str], str],
) -> None:
    """Join the cluster at ``address`` with ``folder`` as every node's working dir.

    What Ray's C++ core says on stderr while it connects ("Failed to determine local IP
    ...") goes to ``log``: the bench's terminal is for the runs. Ray shows the driver's
    command line to whoever reaches the cluster (a job's "entrypoint", read from /proc):
    ``mask`` hides the secret values a user gave on it (``-m API_KEY=...``).
    """
    _check_reachable(address)
    # Ray's `uv run` support would make nodes run `uv run python`, not their dagbox.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # HOST:6379 needs a Ray node on this machine; Ray waits 60 s for one by default.
    os.environ.setdefault("RAY_gcs_server_request_timeout_seconds", "20")
    import ray
    import ray._private.utils as ray_utils

    entrypoint: Callable[[], str] | None = getattr(ray_utils, "get_entrypoint_name", None)
    if entrypoint is not None:
        ray_utils.get_entrypoint_name = lambda: mask(entrypoint())

    logging.getLogger("ray").setLevel(logging.ERROR)
    try:
        with _stderr_to(log):
            ray.init(
                address=address,
                runtime_env={"working_dir": str(folder), "excludes": list(excludes)},
                namespace="dagbox",
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
    except Exception as exc:  # Ray's own words, on one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if address.startswith("ray://") else "; off the cluster, use ray://HOST:10001"
        raise ClusterUnavailable(
            f"cannot join the Ray cluster at {address}: {first} (more in {log}{hint})"
        ) from None


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 (C++ code writes there, not to sys.stderr) goes to ``path``."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def held_back(plan: Plan, folder: Path, also: Iterable[Path]) -> list[str]:
    """What of the bench's folder does not go to the cluster (Ray's ``excludes``).

    ``.git``; ``also`` (the results, ``$DAGBOX_HOME``, the tasks file) when inside it; and
    the files that hold secrets, which must never travel through Ray: the DAG's dotenv
    files and the files of ``secrets: provider: file``, of it and of its sub-DAGs. A node
    has its own (docs/cluster.md, "Credentials").
    """
    kept = [".git"]
    secret_files: list[str] = []
    for each in (plan, *plan.dags.values()):
        secret_files += [*each.dotenv, *(key for _, kind, key in each.secrets if kind == "file")]
    folder = folder.resolve()
    paths = [
        *(Path(path).resolve() for path in also),  # relative to where dagbox runs
        *(folder / name for name in secret_files if "${" not in name),
    ]
    for path in paths:
        with contextlib.suppress(ValueError, OSError):
            kept.append("/" + str(path.resolve().relative_to(folder)))
    return sorted(set(kept))


def disconnect() -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()


@dataclass(eq=False)
class Node:
    id: str
    label: str
    agent: Any
    slots: int
    hello: wire.Hello
    running: int = 0
    lost: bool = False
    draining: anyio.Lock = field(default_factory=anyio.Lock)
    sinks: dict[str, list[Sink]] = field(default_factory=dict)


class Cluster:
    """The nodes serving one bench, and the runs they have."""

    def __init__(
        self,
        concurrency: int,
        max_containers: int | None,
        containers: bool,
        images: Iterable[str],
        dag: str,
        secrets: Mapping[str, str],
    ) -> None:
        """``dag``: the DAG file in the bench's folder; ``secrets``: the value of each
        secret-named param the bench gives (one per name), which nodes must hold."""
        self.concurrency = concurrency
        salt = os.urandom(16).hex()
        self.setup = wire.Setup(
            slots=0,
            max_containers=max_containers,
            containers=containers,
            images=sorted(images),
            dag=dag,
            secrets={name: wire.digest(salt, value) for name, value in secrets.items()},
            salt=salt,
        )
        #: Image ids the jobs' keys were made with, once known: a node joining later with
        #: other ids would mix builds.
        self.keyed: dict[str, str] | None = None
        self.nodes: dict[str, Node] = {}
        self.ignored: set[str] = set()  # refused or gone: never asked again
        self.changed = anyio.Event()
        self.closing, self.watched = anyio.Event(), anyio.Event()
        self.warnings: list[str] = []
        self.interrupts = 0

    # -- nodes -----------------------------------------------------------------------

    async def start(self) -> None:
        """Agents on every node offering slots, checked; ClusterUnavailable when none serve."""
        try:
            offered = await self._offering()
        except Exception as exc:
            raise ClusterUnavailable(f"cannot list the cluster's nodes: {exc}") from None
        if not offered:
            raise ClusterUnavailable(
                f"no node of the Ray cluster offers {SLOTS} "
                f"(start workers with: ray start --resources '{{\"{SLOTS}\": 8}}')"
            )
        await self._join(offered)
        if not self.nodes:
            raise ClusterUnavailable(
                "no node could serve the bench: " + "; ".join(self.warnings[-3:])
            )
        self.keyed = self.image_ids()

    async def _offering(self) -> dict[str, tuple[str, int]]:
        """Alive nodes offering slots that are not serving yet: id -> (address, slots)."""
        import ray

        nodes = await anyio.to_thread.run_sync(ray.nodes)
        return {
            n["NodeID"]: (n.get("NodeManagerAddress", "?"), int(n["Resources"][SLOTS]))
            for n in nodes
            if n.get("Alive")
            and n.get("Resources", {}).get(SLOTS, 0) >= 1
            and n["NodeID"] not in self.nodes
            and n["NodeID"] not in self.ignored
        }

    async def _join(self, offered: dict[str, tuple[str, int]]) -> None:
        async with anyio.create_task_group() as tg:
            for node_id, (address, slots) in offered.items():
                tg.start_soon(self._join_one, node_id, address, slots)

    async def _join_one(self, node_id: str, address: str, slots: int) -> None:
        short = f"{address}/{node_id[:8]}"
        setup = msgspec.structs.replace(self.setup, slots=min(slots, self.concurrency))
        agent = None
        try:
            agent = self._agent_on(node_id, setup.slots)
            with anyio.fail_after(HELLO_SECONDS):
                version, _, protocol = (await agent.version.remote()).partition(" ")
                if (version, protocol) != (dagbox.__version__, str(wire.PROTOCOL)):
                    self._refuse(
                        node_id,
                        agent,
                        f"node {short} runs dagbox {version}, this driver {dagbox.__version__}:"
                        " not used (install the same version on every node)",
                    )
                    return
                hello = wire.decode_hello(await agent.hello.remote(wire.encode(setup)))
        except TimeoutError:
            self._refuse(
                node_id,
                agent,
                f"node {short} did not start dagbox's agent within "
                f"{HELLO_SECONDS:g}s (are its {SLOTS} held by another bench?): not used",
            )
            return
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            self._refuse(node_id, agent, f"node {short} cannot run dagbox's agent: {first}")
            return
        label = f"{hello.host}/{node_id[:8]}"
        self.warnings.extend(f"node {label}: {notice}" for notice in hello.notices)
        problem = hello.problem or self._mixes_builds(hello)
        if problem is not None or self.interrupts:
            self._refuse(
                node_id,
                agent,
                f"node {label}: {problem or 'joined after Ctrl-C'}"
                + ("; not used" if problem else ""),
            )
            return
        self.nodes[node_id] = Node(node_id, label, agent, setup.slots, hello)
        self._notify()

    def _agent_on(self, node_id: str, slots: int) -> Any:
        """A new agent on that node, holding ``slots`` of its dagbox_slots for the bench."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from dagbox.cluster.node import NodeAgent

        actor: Any = ray.remote(NodeAgent)
        return actor.options(
            num_cpus=0,
            resources={SLOTS: slots},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            max_concurrency=1000,
            max_restarts=0,
        ).remote()

    def _mixes_builds(self, hello: wire.Hello) -> str | None:
        """Why a node joining mid-bench would mix image builds into keys made without them."""
        if self.keyed is None:
            return None
        for reference, image_id in hello.images.items():
            if image_id not in self.keyed.get(reference, "").split("|"):
                return (
                    f"its {reference} is another build ({image_id[:19]}) than the bench's keys hold"
                )
        return None

    def _refuse(self, node_id: str, agent: Any, message: str) -> None:
        import ray

        self.ignored.add(node_id)
        self.warnings.append(message)
        if agent is not None:
            with contextlib.suppress(Exception):
                ray.kill(agent, no_restart=True)

    def image_ids(self) -> dict[str, str]:
        """Per image, the id every serving node has; nodes that built it apart give
        several, all in the key (docs/cluster.md, "Keys and --resume")."""
        seen: dict[str, set[str]] = {}
        for node in self.nodes.values():
            for reference, image_id in node.hello.images.items():
                seen.setdefault(reference, set()).add(image_id)
        return {reference: "|".join(sorted(ids)) for reference, ids in seen.items()}

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def _lose(self, node: Node) -> None:
        import ray

        if node.lost:
            return
        node.lost = True
        self.ignored.add(node.id)
        self.nodes.pop(node.id, None)
        with contextlib.suppress(Exception):  # unreachable is not surely dead: make it so
            ray.kill(node.agent, no_restart=True)
        self._notify()

    async def watch(self, say: Callable[[str], None]) -> None:
        """Drain every node's events a few times a second; look for new nodes now and then
        (a node restarted, an autoscaler's), apart, so that a slow join holds up no output."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._refresh, say)
            while not self.closing.is_set():  # a hung node's drain holds up no other's
                for node in list(self.nodes.values()):
                    if node.sinks and not node.draining.locked():
                        tg.start_soon(self._drain, node, say)
                with anyio.move_on_after(DRAIN_SECONDS):
                    await self.closing.wait()
        self.watched.set()

    async def stop_watching(self) -> None:
        """Let the calls to nodes under way end, instead of cancelling them: Ray Client
        answers a cancelled call with errors on stderr, and its connection may not recover."""
        self.closing.set()
        await self.watched.wait()

    async def _refresh(self, say: Callable[[str], None]) -> None:
        while not self.interrupts and not self.closing.is_set():
            with anyio.move_on_after(REFRESH_SECONDS):
                await self.closing.wait()
            if self.closing.is_set():
                return
            before = len(self.warnings)
            with contextlib.suppress(Exception):  # the GCS busy or away: next time
                await self._join(await self._offering())
            for message in self.warnings[before:]:
                say(message)

    async def _drain(self, node: Node, say: Callable[[str], None]) -> None:
        if not node.sinks or node.draining.locked():
            return
        async with node.draining:
            try:
                data = await node.agent.drain.remote()
            except _node_errors():
                if not node.lost:
                    say(f"node {node.label} is lost; its runs go to other nodes")
                self._lose(node)
                return
            for run_id, events in wire.decode_batch(data):
                for event in events:
                    for sink in node.sinks.get(run_id, ()):
                        sink(event)

    # -- runs ------------------------------------------------------------------------

    async def _place(self) -> Node | None:
        """The node with the most free slots, waiting for one to free (or to join); None
        after Ctrl-C."""
        waited_since: float | None = None
        while True:
            if self.interrupts:
                return None
            free = [n for n in self.nodes.values() if n.running < n.slots]  # lost: gone
            if free:
                node = max(free, key=lambda n: n.slots - n.running)
                node.running += 1
                return node
            if not self.nodes:
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > NO_NODE_SECONDS:
                    raise ClusterUnavailable(
                        f"no node offering {SLOTS} is left in the cluster "
                        f"(waited {NO_NODE_SECONDS:g}s for one)"
                    )
            with anyio.move_on_after(REFRESH_SECONDS):
                await self.changed.wait()

    async def run(
        self, order: wire.Order, sinks_for: Callable[[str], list[Sink]]
    ) -> tuple[wire.Outcome, str, list[Sink], float]:
        """Run ``order`` on some node, again on another when its node is lost: how it
        ended, the node's label, the sinks its events went to, and when it was placed."""
        base = order.run_id
        for placed in range(1, MOST_PLACEMENTS + 1):
            if placed > 1:  # a run of its own: the lost one may have left a record there
                order = msgspec.structs.replace(order, run_id=f"{base}.{placed}")
            node = await self._place()
            if node is None:  # Ctrl-C while it waited for a slot: it never starts
                aborted = wire.Outcome(order.run_id, "aborted", True, None, None, "", b"")
                return aborted, "", [], time.monotonic()
            placed_at = time.monotonic()
            sinks = sinks_for(node.label)
            node.sinks[order.run_id] = sinks
            try:
                data = await node.agent.run.remote(wire.encode(order))
            except _node_errors():
                node.sinks.pop(order.run_id, None)
                lost = f"node {node.label} was lost while this run ran there"
                for sink in sinks:
                    sink(Notice(run_id=order.run_id, message=lost))
                self._lose(node)
                continue
            finally:
                node.running -= 1
                self._notify()
            async with node.draining:  # a drain already under way is handed over first
                node.sinks.pop(order.run_id, None)
            outcome = wire.decode_outcome(data)
            for event in wire.decode_events(outcome.events):
                for sink in sinks:
                    sink(event)
            return outcome, node.label, sinks, placed_at
        error = f"its node was lost each of the {MOST_PLACEMENTS} times it ran"
        failed = wire.Outcome(base, "failed", False, error, None, "", b"", refused=True)
        return failed, "", sinks_for(""), time.monotonic()

    def interrupt(self) -> None:
        """Ctrl-C: every node stops its runs (the first time gracefully, then at once)."""
        self.interrupts += 1
        self._notify()  # runs waiting for a slot give up
        for node in list(self.nodes.values()):
            with contextlib.suppress(Exception):
                node.agent.interrupt.remote()


def unpack(outcome: wire.Outcome, target: Path) -> None:
    """Write a run's record where a local bench would have, its paths made local.

    Paths are rewritten only in the record's own files (``run.json``, ``events.jsonl``,
    journals), never in what steps wrote (a child's ``work/``), in every form dagbox writes
    a path in (JSON with and without ``\\u`` escapes)."""
    if not outcome.record:
        return
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(outcome.record), mode="r") as tar:
        members = tar.getmembers()
        for member in members:  # what a node packs; anything else is not a record's
            inside = not Path(member.name).is_absolute() and ".." not in Path(member.name).parts
            if not inside or not (member.isfile() or member.isdir()):
                raise tarfile.TarError(f"a record holds {member.name!r}, not a plain file")
        # Python before 3.11.4 has no extraction filters; the check above does their work.
        safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=members, **safe)
    if not outcome.record_dir or outcome.record_dir == str(target):
        return
    import json

    forms = {
        json.dumps(outcome.record_dir, ensure_ascii=escaped)[1:-1]: json.dumps(
            str(target), ensure_ascii=escaped
        )[1:-1]
        for escaped in (True, False)
    }
    for path in target.rglob("*"):
        own = path.name in ("run.json", "events.jsonl") or path.parent.parent.name == "attempts"
        if not own or "work" in path.relative_to(target).parts or not path.is_file():
            continue
        text = path.read_text(errors="surrogateescape")
        changed = text
        for old, new in forms.items():
            changed = changed.replace(old, new)
        if changed != text:
            path.write_text(changed, errors="surrogateescape")
