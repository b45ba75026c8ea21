"""The entry point of ``dagbox`` and ``python -m dagbox``.

It imports nothing heavy before it is ready for the two things that can go wrong before
the command line is even parsed (and ``dagbox --version`` is answered here, without the
command line's parser, which is most of dagbox's start-up): a Ctrl-C while dagbox is still importing (its first
tenth of a second) exits 130 quietly instead of with a traceback, and a closed stdout,
stderr or stdin (``dagbox run x.yaml >&-``) is replaced by /dev/null, so that the run
goes on (recorded as usual) instead of failing on its first write.
"""

from __future__ import annotations

import os
import sys


def _interrupted(signum: int, frame: object) -> None:
    import dagbox  # imported already: the package of this module

    dagbox.early_interrupts += 1
    raise KeyboardInterrupt


def _lost_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
    # A Ctrl-C that lands in code whose exceptions Python cannot raise (a weakref callback
    # of importlib's module locks, a __del__) is printed as "Exception ignored in ...",
    # with a traceback, and dropped. It is counted (dagbox.early_interrupts) and honoured
    # once the run starts, so that print is noise; anything else is reported as usual.
    if unraisable.exc_type is KeyboardInterrupt:
        return
    sys.__unraisablehook__(unraisable)


def _say_interrupted() -> None:
    try:
        sys.stderr.write("dagbox: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.exit(130)


def _reopen_closed_streams() -> None:
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def main() -> None:
    try:
        import signal  # here, not above: it imports enum, a Ctrl-C there must exit 130 too

        sys.unraisablehook = _lost_interrupt
        signal.signal(signal.SIGINT, _interrupted)
        _reopen_closed_streams()
        if sys.argv[1:] == ["--version"]:  # answered before typer loads: it is most of the wait
            from dagbox import __version__

            try:
                sys.stdout.write(f"dagbox {__version__}\n")
                sys.stdout.flush()
            except OSError as exc:
                sys.stderr.write(f"dagbox: cannot write to stdout: {exc.strerror or exc}\n")
                sys.exit(1)
            return
        from dagbox.cli import main as cli

        cli()
    except BaseExceptionGroup as group:
        # A Ctrl-C in a task group before the run's signal watcher took over (setting up
        # containers): the same quiet exit. Anything else in the group is a bug to show.
        if group.split(KeyboardInterrupt)[1] is not None:
            raise
        _say_interrupted()
    except KeyboardInterrupt:
        _say_interrupted()
    except Exception as exc:
        # Python wraps what a class's __set_name__ raises (msgspec and dataclass fields,
        # at import time) in a RuntimeError: a Ctrl-C there is still a Ctrl-C.
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
        _say_interrupted()
    finally:
        # CPython (3.11, 3.12) remembers a KeyboardInterrupt that ended a string exec()
        # (dataclasses and namedtuple build their methods that way, at import time) even
        # once it was caught (by typer too), and under ``python -m`` then kills itself with
        # SIGINT as it exits, instead of exiting 130. A string exec() that ends normally
        # clears that memory.
        exec("")
        _drop_unwritable_output()


def _drop_unwritable_output() -> None:
    """Output a full disk will not take is dropped now: left in its buffer, Python's own
    flush at exit fails and turns dagbox's exit code into 120. dagbox has already said
    that the terminal output stopped."""
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            stream.flush()
        except (OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


if __name__ == "__main__":
    main()
