"""The two aiodocker internals dagbox needs, and only here.

aiodocker's public API cannot create a container for a platform (``create()`` has no
``platform`` parameter) nor half-close an exec's stdin (the process would never see EOF).
Both are reached through private attributes; pyproject.toml keeps aiodocker below its
next major, and ``tests/test_docker.py::test_the_aiodocker_internals_dagbox_uses_are_there``
fails loudly, without an engine, if a release moves them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any


def create_container(client: Any, config: bytes, params: Mapping[str, str]) -> Awaitable[Any]:
    """``POST /containers/create`` with query params (``name``, ``platform``)."""
    answer: Awaitable[Any] = client._query_json(
        "containers/create", method="POST", data=config, params=params
    )
    return answer


def half_close(stream: Any) -> None:
    """End an exec stream's stdin (EOF to the process) while its output still comes."""
    transport = stream._resp.connection.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
