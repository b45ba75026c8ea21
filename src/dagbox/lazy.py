"""Imports that cost more start-up time than they have to.

structlog imports rich, when rich is installed, for the pretty tracebacks of its
console renderer. dagbox only writes JSON lines through structlog, yet rich
costs about 45 ms of every ``dagbox run`` start (measured: 113 ms against
67 ms for ``import asyncio, anyio, structlog``). Hiding rich while structlog is
imported makes structlog take its plain fallbacks.
"""

from __future__ import annotations

import sys
from types import ModuleType


def import_structlog() -> ModuleType:
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail fast
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog
