"""The one vocabulary of why an attempt failed, shared by runtimes, the engine and bench."""

from __future__ import annotations

from typing import Literal

#: Why an attempt failed, in one word (journals, run records, ``dagbox bench``): its exit
#: code, the step's own timeout or a cancel, or what the runtime found (a missing
#: program, a refused argv, an agent CLI without credentials, the OOM killer, an image
#: that cannot be had, an engine that fails).
FailureClass = Literal[
    "ok",
    "exit_nonzero",
    "timeout",
    "cancelled",
    "binary_missing",
    "refused",
    "auth",
    "oom",
    "infra_image",
    "infra_engine",
    "infra_node",
]
