"""Talking to the container engine: where it is, one client per run, calls that cannot hang.

The endpoint is resolved here, not by aiodocker: a ``currentContext`` in
``~/.docker/config.json`` would otherwise override ``DOCKER_HOST`` (the
opposite of the docker CLI). The client gets its own connection pool without a
limit, because every attach, exec and wait holds a connection and aiohttp's
default of 100 deadlocks at about 100 concurrent steps. Every call that is not
a stream goes through :func:`call`, which bounds it in time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio

from dagbox import settings

if TYPE_CHECKING:
    import aiodocker

T = TypeVar("T")


class ContainerEngineUnavailable(Exception):
    """The container engine cannot be reached (dagbox exits 3)."""


class ContainerEngineError(Exception):
    """An engine call failed or did not answer in time."""


@dataclass(frozen=True)
class Endpoint:
    url: str  # as the user would write it: unix:///var/run/docker.sock, tcp://host:2375
    kind: str  # "docker" or "podman"


def endpoint(env: Mapping[str, str] = os.environ) -> Endpoint:
    """The engine to use: ``DAGU_CONTAINER_RUNTIME`` picks Docker (default) or Podman.

    Docker: ``DOCKER_HOST``, else the local socket. Podman: ``DAGU_PODMAN_HOST``, else the
    rootful socket; ``DOCKER_HOST`` is ignored for Podman, as in Dagu.
    """
    runtime = env.get("DAGU_CONTAINER_RUNTIME", "").strip().lower() or "docker"
    if runtime == "podman":
        return Endpoint(env.get("DAGU_PODMAN_HOST") or "unix:///run/podman/podman.sock", "podman")
    if runtime != "docker":
        raise ContainerEngineUnavailable(
            f"DAGU_CONTAINER_RUNTIME={env['DAGU_CONTAINER_RUNTIME']!r} is not supported: use docker or podman"
        )
    if env.get("DOCKER_HOST"):
        return Endpoint(env["DOCKER_HOST"], "docker")
    for path in ("/var/run/docker.sock", "/run/docker.sock", "~/.docker/run/docker.sock"):
        if Path(path).expanduser().is_socket():
            return Endpoint(f"unix://{Path(path).expanduser()}", "docker")
    return Endpoint("unix:///var/run/docker.sock", "docker")


@asynccontextmanager
async def connect(where: Endpoint) -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client for ``where`` with an unlimited pool, checked to answer."""
    import aiodocker
    import aiohttp

    connector: aiohttp.BaseConnector | None = None
    url = where.url
    if url.startswith("unix://"):
        connector = aiohttp.UnixConnector(url.removeprefix("unix://"), limit=0)
        client = aiodocker.Docker(url="unix://localhost", connector=connector)
    elif url.startswith(("tcp://", "http://")) and os.environ.get("DOCKER_TLS_VERIFY", "0") != "1":
        connector = aiohttp.TCPConnector(limit=0)
        client = aiodocker.Docker(url="http://" + url.split("://", 1)[1], connector=connector)
    else:  # TLS, ssh://, npipe://: aiodocker's own connector (pool limit 100)
        client = aiodocker.Docker(url=url)
    bound = settings.current().engine_connect_timeout
    try:
        try:
            with anyio.fail_after(bound):
                await client.version()
        except TimeoutError:
            raise ContainerEngineUnavailable(
                f"the {where.kind} engine at {where.url} did not answer within {bound:g}s"
            ) from None
        except Exception as exc:
            raise ContainerEngineUnavailable(
                f"cannot reach the {where.kind} engine at {where.url}: {_reason(exc)}"
            ) from None
        yield client
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await client.close()
            if connector is not None:
                await connector.close()


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def call(awaitable: Awaitable[T], what: str, timeout: float | None = None) -> T:
    """Await an engine call, bounded: an engine that never answers is an error, not a hang."""
    timeout = settings.current().engine_call_timeout if timeout is None else timeout
    try:
        with anyio.fail_after(timeout):
            return await awaitable
    except TimeoutError:
        raise ContainerEngineError(
            f"the engine did not answer {what} within {timeout:g}s"
        ) from None


async def inspect(awaitable: Awaitable[T], what: str) -> T | None:
    """An engine object (``container X``, ``image X``) as the engine describes it, or None
    when the engine says there is none (404). Any other refusal is a SetupError; an
    engine that does not answer, an ContainerEngineError."""
    from dagbox.runtimes import SetupError

    try:
        return await call(awaitable, f"inspecting {what}")
    except ContainerEngineError:
        raise
    except Exception as exc:
        if status_of(exc) == 404:
            return None
        raise SetupError(f"cannot inspect {what}: {message_of(exc)}") from None


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an aiodocker error, if it is one."""
    return getattr(exc, "status", None)


def message_of(exc: BaseException) -> str:
    return _reason(exc)
