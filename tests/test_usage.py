"""``with: {usage: true}``: what each try cost, from the CLI's own JSON events.

The streams in tests/fixtures/usage/ were recorded from the real Claude Code
2.1.332, Codex 0.171.0 and Gemini CLI 0.61.0 (run against a stand-in model API on
loopback, so the tokens are made up but every shape and total is the CLI's own).
The fake agent replays them when it is asked for JSON, which also checks that
dagbox asks with the flags each CLI needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dagbox.engine.events import TryFinished
from dagbox.harness.usage import Reader, Usage
from tests.conftest import REPO
from tests.helpers import run_text
from tests.test_bench import bench, results, write

RECORDED = REPO / "tests" / "fixtures" / "usage"


def read(name: str, fmt: str, model: str | None = None) -> tuple[Reader, list[str], str]:
    reader = Reader(fmt, model)
    shown = []
    for line in (RECORDED / f"{name}.jsonl").read_text().splitlines():
        shown += reader.line(line)
    answer, left = reader.finish()
    return reader, shown + left, answer


@pytest.mark.parametrize(
    ("name", "fmt", "usage"),
    [
        (
            "claude",
            "claude",
            Usage(
                input_tokens=4 + 31432 + 5642,  # cached tokens counted in, as codex and gemini do
                output_tokens=129,
                cached_tokens=31432 + 5642,
                cost_usd=0.0370924,
                turns=2,
                model="claude-opus-5-5",
            ),
        ),
        (
            "codex",
            "codex",
            Usage(input_tokens=16634, output_tokens=239, cached_tokens=11136, model="gpt-5.5"),
        ),
        (
            "gemini",
            "gemini",
            Usage(
                input_tokens=19001,
                output_tokens=67,
                cached_tokens=8123,
                model="gemini-3.1-pro-preview",  # not "auto", nor the router's flash-lite
            ),
        ),
    ],
)
def test_a_recorded_run_gives_its_usage_answer_and_progress(name, fmt, usage):
    reader, shown, answer = read(name, fmt, "gpt-5.5" if fmt == "codex" else None)
    assert reader.usage == usage
    assert answer == "All 3 tests pass."  # what the CLI prints in text mode
    assert shown[0] in ("I will run the test suite.", "I'll run the test suite.")
    assert any(line.startswith("> ") and "pytest" in line for line in shown)  # the tool call
    assert answer not in shown  # shown once, as the answer


def test_a_failed_run_has_no_answer_and_says_why():
    reader, shown, answer = read("claude-error", "claude")
    assert answer == "" and reader.usage.cost_usd == 0.032172  # what it spent before failing
    assert any(line.startswith("error: API Error: 500") for line in shown)
    reader, shown, answer = read("codex-failed", "codex")
    assert answer == ""
    errors = [line for line in shown if line.startswith("error: ")]
    assert len(errors) == 1 and "context window" in errors[0]  # said twice by codex, shown once


def test_a_line_that_is_not_json_is_shown_not_lost():
    reader = Reader("claude")
    assert reader.line("Warning: something odd") == ["Warning: something odd"]
    assert reader.line("[1, 2]") == ["[1, 2]"]
    assert reader.line("") == []


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_a_run_with_usage_journals_it_and_keeps_the_answer_as_output(
    tmp_path, agents_on_path, monkeypatch, provider
):
    monkeypatch.setenv("FAKE_AGENT_REPLAY", str(RECORDED / f"{provider}.jsonl"))
    ran = run_text(
        tmp_path,
        f"""
        steps:
          - id: agent
            action: harness.run
            output: ANSWER
            with: {{provider: {provider}, prompt: '- run the tests', model: m1, usage: true}}
          - id: after
            depends: [agent]
            run: echo "got ${{ANSWER}}"
        """,
    )
    assert ran.result.status == "succeeded", [(s.name, s.error) for s in ran.result.steps]
    assert ran.stdout("agent") == "All 3 tests pass.\n"
    assert ran.stdout("after") == "got All 3 tests pass.\n"
    stderr = Path(ran.step("agent").stderr_file).read_text()
    assert "pytest" in stderr and '"type"' not in stderr  # readable, not raw events
    finished = ran.of(TryFinished)[0]
    assert finished.usage is not None and finished.usage.output_tokens in (129, 239, 67)
    journal = next(ran.home.rglob("attempts/*/1.jsonl")).read_text().splitlines()
    usage = next(json.loads(e)["usage"] for e in journal if '"try.finished"' in e)
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "turns",
        "model",
    }
    if provider == "codex":
        assert usage["model"] == "m1" and usage["cost_usd"] is None  # codex says neither


def test_without_usage_the_output_is_the_clis_own(tmp_path, agents_on_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_REPLAY", str(RECORDED / "claude.jsonl"))
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: agent
            action: harness.run
            with: {provider: claude, prompt: hi}
        """,
    )
    assert ran.stdout("agent") == "claude answered: hi\n"  # not asked for JSON: no replay
    assert ran.of(TryFinished)[0].usage is None


def test_bench_sums_tokens_and_cost_per_run_and_per_success(tmp_path, agents_on_path):
    dag = write(
        tmp_path,
        f"""
        params: [CODE=0]
        steps:
          - id: agent
            action: harness.run
            env:
              - FAKE_AGENT_EXIT: ${{params.CODE}}
              - FAKE_AGENT_REPLAY: {RECORDED / "claude.jsonl"}
            with: {{provider: claude, prompt: 'go', usage: true}}
        """,
    )
    out = tmp_path / "out"
    done = bench(tmp_path, str(dag), "--matrix", "CODE=0,1", "--out", str(out), "-o", "quiet")
    assert done.returncode == 0, done.stderr
    lines = {r["cell"]: r for r in results(out)}
    assert lines["CODE=0"]["usage"] == {
        "input_tokens": 37078,
        "output_tokens": 129,
        "cached_tokens": 37074,
        "cost_usd": 0.037092,
    }
    assert lines["CODE=1"]["steps"][0]["usage"]["cost_usd"] == 0.037092  # failed, still paid
    summary = {row["cell"]: row for row in json.loads((out / "summary.json").read_text())["cells"]}
    assert summary["CODE=0"]["tokens_per_success"] == 37078 + 129
    assert summary["CODE=1"]["cost_usd_per_run"] == 0.037092
    assert summary["CODE=1"]["cost_usd_per_success"] is None  # nothing solved
    assert "$/ok" in done.stdout and "0.0371" in done.stdout


# --- TryOutput: what stands between a try's process and the step's output ---------------------


def output_of(provider: str, options: dict, chunks: list[tuple[str, bytes]], redact=str):
    from dagbox.harness.catalog import BUILTIN
    from dagbox.harness.reading import TryOutput

    seen: list[tuple[str, bytes]] = []
    stopped: list[bool] = []
    out = TryOutput(
        BUILTIN[provider],
        options,
        lambda s, d: seen.append((s, d)),
        lambda: stopped.append(True),
        redact,
    )
    for stream, data in chunks:
        out.feed(stream, data)
    out.close()
    return out, seen, bool(stopped)


def joined(seen, stream):
    return b"".join(d for s, d in seen if s == stream).decode()


@pytest.mark.parametrize(
    "line",
    [
        b"No API key found. Starting login flow...\n",
        b"\x1b[33mNo API key found. Starting login flow...\x1b[0m\n",  # in colour
        b"checking\rNo API key found. Starting login flow...",  # after \r, no newline yet
    ],
)
def test_a_trap_line_stops_the_try_however_it_is_printed(line):
    out, seen, stopped = output_of("amp", {}, [("stdout", line[:7]), ("stdout", line[7:])])
    assert stopped and out.sprung is not None and "AMP_API_KEY" in out.sprung
    assert joined(seen, "stdout").encode() == line  # plain output passes byte for byte


def test_plain_output_passes_unchanged_and_other_lines_spring_nothing():
    data = [("stdout", b"No API key found in the docs\r\n"), ("stderr", b"\xff\xfe partial")]
    out, seen, stopped = output_of("amp", {}, data)
    assert not stopped and out.sprung is None
    assert seen == data


def test_usage_lines_split_across_chunks_are_read_whole():
    stream = (RECORDED / "codex.jsonl").read_bytes()
    chunks = [("stdout", stream[i : i + 7]) for i in range(0, len(stream), 7)]
    out, seen, _ = output_of("codex", {"usage": True}, chunks)
    assert joined(seen, "stdout") == "All 3 tests pass.\n"
    assert out.usage is not None and out.usage.output_tokens == 239


def test_a_tool_line_is_masked_whole_before_it_is_cut():
    secret = "sk-SECRETVALUE-0123456789abcdef"
    command = "echo " + "x" * 170 + " " + secret  # the secret straddles the 200th character
    event = {"type": "item.started", "item": {"type": "command_execution", "command": command}}
    line = (json.dumps(event) + "\n").encode()
    _, seen, _ = output_of(
        "codex", {"usage": True}, [("stdout", line)], redact=lambda t: t.replace(secret, "***")
    )
    shown = joined(seen, "stderr")
    assert "sk-SECRET" not in shown and shown.startswith("> command: echo xxx")
    assert len(shown.strip()) <= 200


def test_a_failed_try_says_why_in_its_error(tmp_path, agents_on_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_REPLAY", str(RECORDED / "claude-error.jsonl"))
    monkeypatch.setenv("FAKE_AGENT_EXIT", "1")
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: agent
            action: harness.run
            with: {provider: claude, prompt: go, usage: true}
        """,
    )
    assert "API Error: 500" in ran.step("agent").error
    stderr = Path(ran.step("agent").stderr_file).read_text()
    assert stderr.count("API Error: 500") == 1  # said once, not as a message and an error
    assert ran.of(TryFinished)[0].usage.cost_usd == 0.032172  # what it spent is kept


def test_a_timed_out_try_keeps_what_it_cost(tmp_path, agents_on_path, monkeypatch):
    """Timeouts are the dearest runs: their usage must reach the journal and the bench."""
    replay = tmp_path / "slow.jsonl"
    lines = (RECORDED / "codex.jsonl").read_text().splitlines()
    replay.write_text("\n".join(line for line in lines if "agent_message" not in line) + "\n")
    monkeypatch.setenv("FAKE_AGENT_REPLAY", str(replay))
    monkeypatch.setenv("FAKE_AGENT_REPLAY_THEN_SLEEP", "60")  # cut by the 2 s timeout
    ran = run_text(
        tmp_path,
        """
        steps:
          - id: agent
            action: harness.run
            timeout_sec: 2
            with: {provider: codex, prompt: go, usage: true}
        """,
    )
    assert ran.step("agent").status == "failed"
    journal = next(ran.home.rglob("attempts/*/1.jsonl")).read_text().splitlines()
    finished = next(json.loads(e) for e in journal if '"try.finished"' in e)
    assert finished["outcome"] == "timeout"
    assert finished["usage"]["output_tokens"] == 239
    stderr = Path(ran.step("agent").stderr_file).read_text()
    assert "> command:" in stderr  # what it did before the timeout is shown
