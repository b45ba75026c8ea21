"""The live panel (dagbox/live.py) on real terminals: tmux panes for what a user sees
(rows of running attempts, a clean screen and a visible cursor after an exit or a
Ctrl-C, a narrow window), a pseudo-terminal for the bytes (NO_COLOR, redraw rate), and
pipes, where nothing is drawn.

Every wait is bounded: the panes are polled until what is awaited shows."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.helpers import DAGBOX

TMUX = shutil.which("tmux")

#: Each run prints ``task N step i`` every 0.2 s, 15 times (~3 s).
BENCH_DAG = """
params: [N=0]
steps:
  - id: work
    command: bash -c 'for i in $(seq 1 {lines}); do echo "task ${{N}} step $i{tail}"; sleep 0.2; done'
"""
#: Four steps at once, printing as they go; gamma fails at the end.
RUN_DAG = """
type: graph
steps:
  - id: alpha
    command: bash -c 'for i in $(seq 1 12); do echo "alpha line $i"; sleep 0.2; done'
  - id: beta
    command: bash -c 'for i in $(seq 1 12); do echo "beta line $i"; sleep 0.2; done'
  - id: gamma
    command: bash -c 'for i in $(seq 1 12); do echo "gamma line $i"; sleep 0.2; done; echo "gamma broke" >&2; exit 3'
  - id: delta
    command: bash -c 'for i in $(seq 1 8); do echo "delta line $i"; sleep 0.2; done'
"""
MATRIX = ["-m", "N=1,2,3,4,5,6", "-c", "3"]
#: A bench's row on the panel: label, elapsed, latest line.
BENCH_ROW = re.compile(r"^  (N=(\d)#0) +(\d+\.\d)s  (task (\d) step (\d+).*)$")
#: A step's row of ``dagbox run -o live``.
STEP_ROW = re.compile(r"^  (alpha|beta|gamma|delta) +(\d+\.\d)s  ((\w+) line (\d+))$")
#: A headline of a panel that was still running: never left on the screen.
STALE_HEADLINE = re.compile(r"running [1-9]\d* · done")
#: Every erase of the panel (each redraw, and the close) erases to the screen's end once.
ERASE = b"\x1b[J"
SGR = re.compile(rb"\x1b\[[0-9;:]*m")
BOUND = 30.0


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def bench_dag(tmp_path: Path, lines: int = 15, tail: str = "") -> Path:
    return write(tmp_path, BENCH_DAG.format(lines=lines, tail=tail), "bench.yaml")


# --- tmux: what the user sees --------------------------------------------------------------


class Pane:
    """A tmux pane of its own server running ``command``, then ``echo EXIT=$?``; the
    shell survives a Ctrl-C (trapped) so that the exit code and the screen stay."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run(
            [TMUX, "-S", str(self.socket), "-f", os.devnull, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=BOUND,
            check=True,
        )
        return done.stdout

    def start(self, command: list[str], columns: int, rows: int) -> None:
        script = f"trap : INT; {shlex.join(command)}; echo EXIT=$?; exec sleep 600"
        self.tmux(
            "new-session", "-d", "-s", "t", "-x", str(columns), "-y", str(rows),
            "bash", "-c", script,
        )  # fmt: skip

    def screen(self, history: bool = False) -> list[str]:
        """The lines shown (with ``history``: the scrollback too), wrapped lines joined."""
        extra = ["-S", "-"] if history else []
        text = self.tmux("capture-pane", "-p", "-J", "-t", "t", *extra)
        return [line.rstrip() for line in text.splitlines()]

    def wait(self, holds: Callable[[list[str]], object], what: str) -> list[str]:
        """Poll the screen until ``holds(lines)``; the lines it held on."""
        deadline = time.monotonic() + BOUND
        while True:
            lines = self.screen()
            if holds(lines):
                return lines
            if time.monotonic() > deadline:
                shown = "\n".join(lines)
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            time.sleep(0.1)

    def exit_code(self) -> int:
        lines = self.wait(lambda ls: any(line.startswith("EXIT=") for line in ls), "the exit")
        return int(next(line for line in lines if line.startswith("EXIT="))[5:])

    def cursor_visible(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "t", "#{cursor_flag}").strip() == "1"


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    """A pane on a tmux server of this test's own, killed however the test ends. Its
    options are tmux's defaults (scroll-on-clear on, as most users have it)."""
    if TMUX is None:
        # CI installs tmux with Chromium (scripts/ensure-chromium): there, never a skip.
        if os.environ.get("DAGBOX_REQUIRE_CHROMIUM") == "1":
            pytest.fail("tmux is required here but missing (apt-get install -y tmux)")
        pytest.skip("needs tmux (apt-get install -y tmux)")
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "NO_COLOR")}
    env["DAGBOX_HOME"] = str(tmp_path / "home")
    # A short path of its own (a socket's may not pass 107 bytes), removed with the server.
    folder = Path(tempfile.mkdtemp(prefix="dagbox-tmux-"))
    made = Pane(folder / "socket", env)
    try:
        yield made
    finally:
        subprocess.run(
            [TMUX, "-S", str(made.socket), "kill-server"],
            capture_output=True,
            timeout=BOUND,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


def bench_rows(lines: list[str]) -> list[re.Match[str]]:
    return [m for line in lines if (m := BENCH_ROW.match(line))]


def assert_clean(history: list[str], row: re.Pattern[str]) -> None:
    """No row of the panel and no headline of a running panel, on the screen or above."""
    text = "\n".join(history)
    assert not [line for line in history if row.match(line)], text
    assert not [line for line in history if STALE_HEADLINE.search(line)], text


def test_bench_shows_its_running_runs_in_a_narrow_window_and_leaves_a_clean_screen(tmp_path, pane):
    dag = bench_dag(tmp_path)
    pane.start([*DAGBOX, "bench", str(dag), *MATRIX, "--out", str(tmp_path / "o")], 40, 12)

    def three_running(lines: list[str]) -> bool:
        rows = bench_rows(lines)
        return (
            bool(lines)
            and lines[0].startswith("running 3 · done ")
            and len(rows) == 3
            # a while into the runs: their latest lines, not their first ones
            and all(int(m[6]) >= 3 for m in rows)
        )

    lines = pane.wait(three_running, "3 rows of running runs")
    text = "\n".join(lines)
    for m in bench_rows(lines):
        assert m[2] == m[5], text  # each row's latest line is its own run's
    assert len({m[1] for m in bench_rows(lines)}) == 3, text
    assert all(cell_len(line) <= 40 for line in lines), text  # joined: nothing wrapped
    assert "/6" in lines[0] and " · failed 0" in lines[0], text  # the headline, on one line
    assert not pane.cursor_visible()  # hidden while the panel is drawn

    assert pane.exit_code() == 0
    history = pane.screen(history=True)
    assert_clean(history, BENCH_ROW)
    text = "\n".join(history)
    assert any(line.startswith("cell ") and "success" in line for line in history), text
    for n in range(1, 7):
        assert any(line.startswith(f"N={n} ") for line in history), text
    assert any(line.startswith("running 0 · done 6/6 · failed 0") for line in history), text
    assert pane.cursor_visible()


def test_ctrl_c_leaves_a_clean_screen_and_a_visible_cursor(tmp_path, pane):
    # Lines too long for the window: the rows fill it, and the ^C that the terminal
    # echoes after the last one must not push the panel out of place.
    dag = bench_dag(tmp_path, lines=300, tail=" and a tail too long for forty columns")
    pane.start([*DAGBOX, "bench", str(dag), *MATRIX, "--out", str(tmp_path / "o")], 40, 12)
    lines = pane.wait(lambda ls: len(bench_rows(ls)) == 3, "3 rows of running runs")
    assert all(cell_len(line) <= 40 for line in lines), "\n".join(lines)
    pane.tmux("send-keys", "-t", "t", "C-c")
    began = time.monotonic()
    assert pane.exit_code() == 130
    assert time.monotonic() - began < 20
    history = pane.screen(history=True)
    assert_clean(history, BENCH_ROW)
    assert any(line.startswith("running 0 · done 0/6") for line in history), "\n".join(history)
    assert pane.cursor_visible()


def test_run_output_live_shows_running_steps_then_what_they_did(tmp_path, pane):
    dag = write(tmp_path, RUN_DAG, "run.yaml")
    pane.start([*DAGBOX, "run", "-o", "live", str(dag)], 40, 12)

    def four_running(lines: list[str]) -> bool:
        rows = [m for line in lines if (m := STEP_ROW.match(line))]
        return (
            bool(lines)
            and lines[0].startswith("running 4 · done 0")
            and len(rows) == 4
            and all(int(m[5]) >= 3 for m in rows)  # their latest lines
        )

    lines = pane.wait(four_running, "a row per running step")
    text = "\n".join(lines)
    for line in lines:
        if m := STEP_ROW.match(line):
            assert m[4] == m[1], text  # its own latest line
    assert all(cell_len(line) <= 40 for line in lines), text

    assert pane.exit_code() == 1
    history = pane.screen(history=True)
    assert_clean(history, STEP_ROW)
    text = "\n".join(history)
    for step in ("alpha", "beta", "delta"):
        assert any(re.match(rf"{step} +✔ succeeded in ", line) for line in history), text
    assert any(re.match(r"── gamma ✘ failed in .*exit 3", line) for line in history), text
    assert "   gamma line 12" in history and "   ! gamma broke" in history, text
    assert "   alpha line 1" not in history, text  # a step that succeeded: one line only
    assert "  steps: 1 failed, 3 succeeded" in history, text
    assert any(line.startswith("running 0 · done 4 · failed 1") for line in history), text
    assert pane.cursor_visible()


def test_more_runs_than_the_window_has_rows_are_counted(tmp_path, pane):
    dag = bench_dag(tmp_path, lines=10)
    out = str(tmp_path / "o")
    pane.start([*DAGBOX, "bench", str(dag), MATRIX[0], MATRIX[1], "-c", "6", "--out", out], 40, 6)
    lines = pane.wait(
        lambda ls: bool(ls) and ls[0].startswith("running 6 ·") and len(bench_rows(ls)) == 3,
        "6 running runs",
    )
    assert "  … and 3 more running" in lines, "\n".join(
        lines
    )  # 6 lines: the headline, 3 runs, the count
    assert pane.exit_code() == 0
    assert_clean(pane.screen(history=True), BENCH_ROW)
    assert pane.cursor_visible()


# --- a pseudo-terminal: the bytes ----------------------------------------------------------


def pty_run(
    command: list[str], env: dict[str, str], columns: int = 40, rows: int = 12
) -> tuple[int, bytes, float, float | None]:
    """``command`` with stdout and stderr on a pseudo-terminal of that size. Returns its
    exit code, every byte it wrote, when it ended and when the first erase came (monotonic)."""
    main, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=env
    )
    os.close(secondary)
    chunks: list[bytes] = []
    first: float | None = None
    deadline = time.monotonic() + 2 * BOUND
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.1)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # EIO: every writer has gone
                    break
                if not data:
                    break
                chunks.append(data)
                if first is None and ERASE in b"".join(chunks):
                    first = time.monotonic()
            elif proc.poll() is not None:
                break
        ended = time.monotonic()
        code = proc.wait(timeout=BOUND)
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks), ended, first


def test_no_color_is_honoured_and_redraws_stay_under_ten_a_second(tmp_path):
    dag = bench_dag(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(DAGBOX_HOME=str(tmp_path / "home"), TERM="xterm-256color")
    command = [*DAGBOX, "bench", str(dag), *MATRIX]

    code, plain, ended, first = pty_run(
        [*command, "--out", str(tmp_path / "a")], {**env, "NO_COLOR": "1"}
    )
    assert code == 0, plain.decode(errors="replace")
    assert not SGR.search(plain), SGR.findall(plain)[:5]
    assert b"running 0 \xc2\xb7 done 6/6" in plain  # the panel was there
    assert first is not None
    erases = plain.count(ERASE)
    rate = erases / max(ended - first, 1e-3)
    assert erases >= 5, erases  # redrawn as it ran, not only closed
    assert rate <= 10, f"{erases} redraws in {ended - first:.2f}s"
    # Every line of the panel fits the 40 columns (never the last one, where terminals
    # wrap); what follows the last erase is the output that stays (the summary table).
    for frame in plain.split(ERASE)[1:-1]:
        for line in frame.decode(errors="replace").split("\n"):
            shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", line)
            assert cell_len(shown) < 40, repr(line)

    short = [*DAGBOX, "bench", str(bench_dag(tmp_path, lines=3)), *MATRIX[2:], "-m", "N=1,2,3"]
    code, coloured, _, _ = pty_run([*short, "--out", str(tmp_path / "b")], env)
    assert code == 0, coloured.decode(errors="replace")
    assert SGR.search(coloured)  # coloured without NO_COLOR: the check above can fail


# --- pipes: nothing changes ------------------------------------------------------------------


def test_without_a_terminal_nothing_is_drawn(tmp_path):
    env = {**os.environ, "DAGBOX_HOME": str(tmp_path / "home"), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    dag = bench_dag(tmp_path, lines=3)
    done = subprocess.run(
        [*DAGBOX, "bench", str(dag), *MATRIX, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=2 * BOUND,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout + done.stderr
    assert "running" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cell ") and [line[:4] for line in lines[1:7]] == [
        f"N={n} " for n in range(1, 7)
    ]
    assert lines[7].startswith("6 runs now, 0 already done (--resume), 6 in all; results: ")
    assert len(lines) == 8 and done.stderr == ""  # the table and its last line, nothing else

    ran = subprocess.run(
        [*DAGBOX, "run", "-o", "live", str(write(tmp_path, RUN_DAG, "run.yaml"))],
        capture_output=True,
        text=True,
        env=env,
        timeout=2 * BOUND,
        check=False,
    )
    assert ran.returncode == 1
    assert "\x1b[" not in ran.stdout + ran.stderr
    assert "running" not in ran.stdout + ran.stderr
    assert "   gamma line 12" in ran.stdout.splitlines()
    assert "  steps: 1 failed, 3 succeeded" in ran.stdout.splitlines()


# --- what the review found: errors, pipes beside the panel, tabs, SIGTERM ------------------


def test_a_run_error_under_the_panel_is_its_one_line_not_a_traceback(tmp_path, pane):
    dag = write(tmp_path, "steps:\n  - id: a\n    command: echo hi\n", "one.yaml")
    command = [*DAGBOX, "run", "-o", "live", "--run-id", "fixed", str(dag)]
    pane.start(
        ["bash", "-c", f"{shlex.join(command)} >/dev/null 2>&1; {shlex.join(command)}"], 60, 12
    )
    assert pane.exit_code() == 2  # RunExists: a usage error, as without the panel
    history = pane.screen(history=True)
    text = "\n".join(history)
    assert any(line.startswith("dagbox: a run with id fixed already exists") for line in history), (
        text
    )
    assert "Traceback" not in text and "internal error" not in text, text
    assert pane.cursor_visible()


def test_with_stdout_piped_every_line_reaches_the_screen(tmp_path, pane):
    """``| tee``: the reader writes to the terminal behind dagbox's back, so no panel."""
    dag = bench_dag(tmp_path, lines=4)
    bench = shlex.join(
        [*DAGBOX, "bench", str(dag), *MATRIX, "-o", "prefix", "--out", str(tmp_path / "o")]
    )
    pane.start(["bash", "-c", f"{bench} | tee {tmp_path / 'tee.log'}"], 60, 40)
    assert pane.exit_code() == 0
    history = pane.screen(history=True)
    shown = [line for line in history if re.search(r"\| task \d step \d", line)]
    assert len(shown) == 6 * 4, "\n".join(history)
    assert not [line for line in history if STALE_HEADLINE.search(line)]


def test_on_the_terminal_every_line_of_every_run_is_shown_in_order(tmp_path, pane):
    dag = bench_dag(tmp_path, lines=6, tail="\\tand a tab")  # a tab: one cell on the panel
    pane.start(
        [*DAGBOX, "bench", str(dag), *MATRIX, "-o", "prefix", "--out", str(tmp_path / "o")], 40, 12
    )
    lines = pane.wait(lambda ls: len(bench_rows(ls)) == 3, "three rows")
    assert all(cell_len(line) <= 40 for line in lines), "\n".join(lines)
    assert pane.exit_code() == 0
    history = pane.screen(history=True)
    assert_clean(history, BENCH_ROW)
    for n in range(1, 7):
        steps = [
            int(m[1])
            for line in history
            if (m := re.search(rf"\[N={n}#0\] work +\| task {n} step (\d)", line))
        ]
        assert steps == list(range(1, 7)), "\n".join(history)


def test_sigterm_while_a_retry_waits_leaves_the_output_and_the_cursor(tmp_path, pane):
    marker = tmp_path / "failed-once"
    dag = write(
        tmp_path,
        f"""
        retry_policy: {{limit: 1, interval_sec: 60}}
        steps:
          - id: flaky
            command: bash -c 'echo flaky says hello; touch {marker}; exit 1'
        """,
        "retry.yaml",
    )
    pane.start([*DAGBOX, "run", "-o", "live", str(dag)], 60, 12)
    pane.wait(lambda ls: any("runs it again as" in line for line in ls), "the retry's notice")
    shell = pane.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip()
    children = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True, check=True)
    (dagbox,) = children.stdout.split()  # the pane's shell runs dagbox, then echo
    os.kill(int(dagbox), signal.SIGTERM)
    assert pane.exit_code() == 128 + signal.SIGTERM
    history = pane.screen(history=True)
    text = "\n".join(history)
    assert "   flaky says hello" in history, text  # the failed step's output, shown
    assert any("runs it again as" in line for line in history), text
    assert not [line for line in history if STALE_HEADLINE.search(line)], text
    assert pane.cursor_visible()
