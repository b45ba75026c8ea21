"""The terminal sink on its own: colours, line safety and modes, fed events directly."""

import io

from dagbox.engine.events import RunFinished, RunStarted, StepFinished, StepOutput, StepStarted
from dagbox.modes import OutputMode
from dagbox.terminal import Terminal


def feed(terminal: Terminal, *events) -> str:
    for event in events:
        terminal(event)
    return terminal.out.getvalue()


def started(*steps: str) -> RunStarted:
    return RunStarted(run_id="r", dag="d", file="f", params={}, steps=list(steps), handlers=[])


def out(step: str, data: bytes, stream: str = "stdout") -> StepOutput:
    return StepOutput(run_id="r", step=step, attempt=1, stream=stream, data=data)


def test_each_step_keeps_one_colour_on_a_terminal():
    terminal = Terminal(OutputMode.prefix, io.StringIO(), color=True)
    text = feed(
        terminal,
        started("alpha", "beta"),
        out("alpha", b"1\n2\n"),
        out("beta", b"x\n"),
        out("alpha", b"3\n"),
    )
    lines = text.splitlines()
    alpha = {line.split(" ")[0] for line in lines if "alpha" in line}
    assert len(alpha) == 1 and "\x1b[" in next(iter(alpha))
    assert next(line for line in lines if "beta" in line).split(" ")[0] not in alpha


def test_plain_when_not_a_terminal():
    terminal = Terminal(OutputMode.prefix, io.StringIO(), color=False)
    assert "\x1b" not in feed(terminal, started("a"), out("a", b"x\n"))


def test_chunks_are_joined_into_whole_lines_and_utf8_split_across_chunks_is_kept():
    terminal = Terminal(OutputMode.prefix, io.StringIO(), color=False)
    text = feed(
        terminal,
        started("a", "b"),
        out("a", b"hel"),
        out("b", b"other\n"),
        out("a", b"lo caf\xc3"),
        out("a", b"\xa9\nlast"),
        StepFinished(run_id="r", step="a", status="succeeded", exit_code=0, attempts=1),
    )
    assert text.splitlines()[:3] == ["b | other", "a | hello café", "a | last"]


def test_grouped_mode_prints_one_block_per_step():
    terminal = Terminal(OutputMode.grouped, io.StringIO(), color=False)
    text = feed(
        terminal,
        started("a", "b"),
        out("a", b"a1\n"),
        out("b", b"b1\n"),
        out("a", b"a2\n"),
        out("b", b"oops\n", "stderr"),
        StepFinished(run_id="r", step="b", status="failed", exit_code=1, attempts=1),
        StepFinished(run_id="r", step="a", status="succeeded", exit_code=0, attempts=1),
        RunFinished(run_id="r", status="failed", duration_sec=0.1),
    )
    lines = text.splitlines()
    assert lines[:6] == [
        "── b ✘ failed (exit 1)",
        "   b1",
        "   ! oops",
        "── a ✔ succeeded (exit 0)",
        "   a1",
        "   a2",
    ]


def test_status_lines_show_attempt_duration_and_exit():
    terminal = Terminal(OutputMode.prefix, io.StringIO(), color=False)
    text = feed(
        terminal,
        started("a"),
        StepStarted(run_id="r", step="a", attempt=2),
        StepFinished(
            run_id="r",
            step="a",
            status="failed",
            exit_code=3,
            attempts=2,
            duration_sec=1.5,
            error="exit code 3",
        ),
    )
    assert text.splitlines() == [
        "a ● started (attempt 2)",
        "a ✘ failed in 1.50s (exit 3): exit code 3",
    ]


def test_step_output_cannot_steer_the_terminal_but_keeps_its_colours():
    noisy = (
        b"\x1b[2J\x1b[Hcleared\n"  # clear the screen, cursor home
        b"\x1b]0;pwned\x07titled\n"  # window title
        b"bell\x07 nul\x00 back\x08space\n"
        b"10%\r50%\r100%\r\n"  # a progress bar, CRLF at the end
        b"\x1b[1;31mred without a reset\n"
        b"tab\tkept\n"
        b"\x1bPq#0;2;0;0;0#0~~\x1b\\image\n"  # a sixel image (DCS string)
        b"\xc2\x9b2Jc1 \xc2\x9d0;title\xc2\x9clink\n"  # 8-bit CSI and OSC, as UTF-8
    )
    coloured = feed(
        Terminal(OutputMode.prefix, io.StringIO(), color=True), started("a"), out("a", noisy)
    )
    name = coloured.splitlines()[0].split(" ")[0]
    assert coloured.splitlines() == [
        f"{name} | cleared",
        f"{name} | titled",
        f"{name} | bell nul backspace",
        f"{name} | 100%",
        f"{name} | \x1b[1;31mred without a reset\x1b[0m",  # closed before the next line
        f"{name} | tab\tkept",
        f"{name} | image",
        f"{name} | c1 link",
    ]
    plain = feed(
        Terminal(OutputMode.prefix, io.StringIO(), color=False), started("a"), out("a", noisy)
    )
    assert "\x1b" not in plain and "\x07" not in plain and "\x00" not in plain
    assert "a | red without a reset" in plain.splitlines()
