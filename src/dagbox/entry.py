"""The process entry point: ``dagbox`` and ``python -m dagbox`` start here.

``dagbox validate FILE...`` runs in editors' save hooks and pre-commit, so it
must start fast. typer (0.26 and later) coerces every parameter through
pydantic, which costs about 90 ms of imports before any work is done; a plain
``validate`` with file arguments and no options is therefore served here
directly, with the same output and exit codes. Everything else, including
``--help`` and usage errors, goes through the typer app in ``cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def validate_files(files: Sequence[Path]) -> int:
    """Print "FILE: ok" per valid file (stdout) and every problem (stderr); the exit code."""
    from dagbox.spec import DagError, load

    failed = False
    for file in files:
        try:
            loaded = load(file)
        except DagError as exc:
            failed = True
            for issue in exc.issues:
                sys.stderr.write(f"{issue}\n")
            continue
        for warning in loaded.warnings:
            sys.stderr.write(f"{warning}\n")
        sys.stdout.write(f"{file}: ok\n")
    sys.stdout.flush()
    return EXIT_USAGE if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 and args[0] == "validate" and not any(a.startswith("-") for a in args[1:]):
        sys.exit(validate_files([Path(a) for a in args[1:]]))
    from dagbox.cli import app

    app(args=args, prog_name="dagbox")
